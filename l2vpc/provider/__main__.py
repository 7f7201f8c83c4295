"""What Terraform runs (through a launcher script): `python -m l2vpc.provider`.

Deliberately tiny: the handshake must come fast, so nothing is imported here beyond the server
module, which itself loads the provider only after the handshake.
"""

import sys

from l2vpc.provider.server import main

sys.exit(main())
