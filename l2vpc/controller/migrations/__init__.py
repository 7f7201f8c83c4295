"""Schema migrations of the controller's plane tables (heartbeats, shared records, events), a
ladder of their own beside the engine's (l2vpc/engine/store/migrations, same file names and
rules), recorded in `plane_schema_version`; applied by planestore.PlaneStore on opening."""
