"""Generated protobuf and gRPC code (committed); regenerate with scripts/gen_proto.py."""
