-- Version 4: per-tenant quotas (engine/quotas.py) count a tenant's objects of each kind in an
-- index pool `count:<kind>:<tenant>` of the allocations table; index the objects already there.
INSERT INTO allocations (pool, value, owner)
SELECT 'count:' || kind || ':' || tenant, id, id FROM objects
WHERE kind IN ('vpc', 'attachment', 'direct_connect', 'vpn')
ON CONFLICT DO NOTHING;
