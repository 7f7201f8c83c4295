-- Plane version 1: the controllers' control loop (the same tables as postgres_0001_plane.sql).
-- Until the store was split this was the engine's version 2 (engine/store/migrations), with
-- these very statements: databases it migrated already hold the tables, which this version
-- then takes over without running (planestore.py).

-- The last heartbeat of each host's agent (`last_seen`: unix seconds).
CREATE TABLE heartbeats (
    host                 TEXT PRIMARY KEY,
    last_seen            REAL NOT NULL,
    accepted_generation  INTEGER NOT NULL,
    converged_generation INTEGER NOT NULL,
    converging           INTEGER NOT NULL,
    digest               TEXT NOT NULL,
    controller           TEXT NOT NULL
) WITHOUT ROWID;

-- Small shared records of the control loop: leader, converged revision, hosts converging.
CREATE TABLE plane_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL CHECK (json_valid(value))
) WITHOUT ROWID;

-- What the reconciler did, newest = highest id; trimmed to the last few hundred by the writer.
CREATE TABLE plane_events (
    id   INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    host TEXT NOT NULL,
    what TEXT NOT NULL
);
