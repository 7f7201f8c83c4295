-- Version 1: the initial schema.

-- One row per applied migration; the highest version is the file's schema version.
CREATE TABLE schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- Desired state: one JSON document per (kind, id), with the generation writers must name.
CREATE TABLE objects (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    tenant     TEXT NOT NULL DEFAULT '',
    generation INTEGER NOT NULL CHECK (generation >= 1),
    data       TEXT NOT NULL CHECK (json_valid(data)),
    PRIMARY KEY (kind, id)
);
-- list(kind, tenant) in id order without a sort.
CREATE INDEX objects_by_tenant ON objects (kind, tenant, id);

-- Allocated values (VNIs, MACs, names, addresses); the key makes double allocation impossible.
-- Rows are tiny, so a clustered WITHOUT ROWID table saves the separate key index.
CREATE TABLE allocations (
    pool  TEXT NOT NULL,
    value TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (pool, value)
) WITHOUT ROWID;
CREATE INDEX allocations_by_owner ON allocations (owner, pool);

-- The HostConfig each agent last reported and the config generation it converged to.
CREATE TABLE host_reports (
    host       TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    config     TEXT NOT NULL CHECK (json_valid(config)),
    updated_at REAL NOT NULL
);

CREATE TABLE sequences (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
