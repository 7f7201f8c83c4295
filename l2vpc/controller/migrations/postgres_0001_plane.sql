-- Plane version 1: the controllers' control loop (the same tables as sqlite_0001_plane.sql).
-- Until the store was split this was the engine's version 2 (engine/store/migrations), with
-- these very statements: databases it migrated already hold the tables, which this version
-- then takes over without running (planestore.py).

-- The last heartbeat of each host's agent. `last_seen` is unix seconds by the database's
-- clock, so controllers with skewed clocks agree on who is late. Every controller writes its
-- buffered heartbeats in one statement per flush; rows are updated in place all the time, so
-- leave room on each page for HOT updates.
CREATE TABLE heartbeats (
    host                 text COLLATE "C" PRIMARY KEY,
    last_seen            double precision NOT NULL,
    accepted_generation  bigint NOT NULL,
    converged_generation bigint NOT NULL,
    converging           boolean NOT NULL,
    digest               text NOT NULL,
    controller           text NOT NULL
) WITH (fillfactor = 50);

-- Small shared records of the control loop: who leads (id, term, lease), the converged
-- revision and its failures, the hosts a converge is working on.
CREATE TABLE plane_state (
    key   text COLLATE "C" PRIMARY KEY,
    value jsonb NOT NULL CHECK (jsonb_typeof(value) = 'object')
);

-- What the reconciler did (host down/up, service moved, drift repaired), newest = highest id;
-- trimmed to the last few hundred by the writer.
CREATE TABLE plane_events (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time double precision NOT NULL,
    host text NOT NULL,
    what text NOT NULL
);
