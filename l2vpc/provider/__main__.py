"""What Terraform runs (through a launcher script): `python -S -P -m l2vpc.provider`.

Deliberately tiny: the handshake must come fast. warm.client.launch has a zygote fork a ready-made
provider process when it can (importing nothing heavy itself), else serves here, cold.
"""

import sys

from l2vpc.provider.warm.client import launch

sys.exit(launch(sys.argv[1:]))
