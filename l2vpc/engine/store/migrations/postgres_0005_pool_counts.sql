-- Version 5: the size of every counted pool (`count:<kind>:<tenant>`, engine/quotas.py) kept in
-- pool_counts by triggers, in the transaction that inserts or deletes its rows: a quota check
-- reads one row instead of counting the tenant's objects. A row's pool never changes (it is
-- half its key), so inserts and deletes are all the triggers follow. Statement triggers: a
-- batch's multi-row insert updates each pool's row once. Rows are locked in pool order, so two
-- transactions adding to the same pools (keyed attachment creates run side by side) wait for
-- each other instead of deadlocking. The functions keep the schema they were made in (a
-- database may hold several l2vpc states, one per schema; psql may run with another path).
-- Safe to run again (a state whose version rows were lost): the sizes are counted afresh.
CREATE TABLE IF NOT EXISTS pool_counts (
    pool text COLLATE "C" PRIMARY KEY,
    size bigint NOT NULL
);
DROP TRIGGER IF EXISTS allocations_counted_insert ON allocations;
DROP TRIGGER IF EXISTS allocations_counted_delete ON allocations;
DELETE FROM pool_counts;
INSERT INTO pool_counts (pool, size)
SELECT pool, count(*) FROM allocations WHERE left(pool, 6) = 'count:' GROUP BY pool;
CREATE OR REPLACE FUNCTION pool_counts_add() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO pool_counts (pool, size)
    SELECT pool, count(*) FROM added WHERE left(pool, 6) = 'count:' GROUP BY pool ORDER BY pool
    ON CONFLICT (pool) DO UPDATE SET size = pool_counts.size + excluded.size;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION pool_counts_remove() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE pool_counts AS c SET size = c.size - r.n
    FROM (SELECT pool, count(*) AS n FROM removed WHERE left(pool, 6) = 'count:' GROUP BY pool) AS r
    WHERE c.pool = r.pool;
    RETURN NULL;
END $$;
CREATE TRIGGER allocations_counted_insert AFTER INSERT ON allocations
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION pool_counts_add();
CREATE TRIGGER allocations_counted_delete AFTER DELETE ON allocations
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION pool_counts_remove();
