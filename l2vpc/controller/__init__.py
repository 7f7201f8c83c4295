"""The controller: a long-running service in front of the engine (API, agents, reconciliation)."""
