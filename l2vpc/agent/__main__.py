"""`python -m l2vpc.agent run ...`: the agent's commands without loading the engine or provider."""

import sys

from l2vpc.agent.cli import main

sys.exit(main())
