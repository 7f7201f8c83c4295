"""The Terraform provider: a generic tfplugin6 layer plus l2vpc's resources.

server.py (process, handshake) -> rpc.py (protobuf) -> planning.py and applying.py (the
generic plan/apply logic) -> resources/ and data_sources/ (l2vpc objects, subclassing
framework.py), with values in cty.py (codec.py on the wire), schemas from schema.py,
validators.py and modifiers.py, and diagnostics.py for errors; warm/ starts providers from
a preloaded zygote. Kept import-free: `python -m l2vpc.provider` loads this package before the handshake.
"""
