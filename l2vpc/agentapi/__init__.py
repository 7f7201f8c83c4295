"""The agent API as both ends use it: protobuf <-> host model (wire.py), mutual-TLS channels and
call metadata (channel.py). The agent serves it (l2vpc.agent.daemon); the engine, the controller
and the lab call it. It imports the host model and the generated code, nothing else of l2vpc,
so the engine can call agents without importing the agent.
"""
