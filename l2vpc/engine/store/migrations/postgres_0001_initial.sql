-- Version 1: the initial schema (the same tables as sqlite_0001_initial.sql).
-- Keys and ids use the "C" collation: list() orders by id bytewise, as on SQLite, whatever the
-- database's locale.

-- One row per applied migration; the highest version is the database's schema version.
CREATE TABLE schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Desired state: one JSON document per (kind, id), with the generation writers must name.
CREATE TABLE objects (
    kind       text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    tenant     text COLLATE "C" NOT NULL DEFAULT '',
    generation bigint NOT NULL CHECK (generation >= 1),
    data       jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    PRIMARY KEY (kind, id)
);
-- list(kind, tenant) in id order without a sort.
CREATE INDEX objects_by_tenant ON objects (kind, tenant, id);

-- Allocated values (VNIs, MACs, names, addresses); the key makes double allocation impossible.
CREATE TABLE allocations (
    pool  text COLLATE "C" NOT NULL,
    value text COLLATE "C" NOT NULL,
    owner text COLLATE "C" NOT NULL,
    PRIMARY KEY (pool, value)
);
CREATE INDEX allocations_by_owner ON allocations (owner, pool);

-- The HostConfig each agent last reported and the config generation it converged to.
CREATE TABLE host_reports (
    host       text COLLATE "C" PRIMARY KEY,
    generation bigint NOT NULL,
    config     jsonb NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Durable counters (config generations, VNIs, MACs, leadership terms).
CREATE TABLE sequences (
    name  text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
