-- Version 5: the size of every counted pool (`count:<kind>:<tenant>`, engine/quotas.py) kept in
-- pool_counts by triggers, in the transaction that inserts or deletes its rows: a quota check
-- reads one row instead of counting the tenant's objects. A row's pool never changes (it is
-- half its key), so inserts and deletes are all the triggers follow. Safe to run again (a
-- state whose version rows were lost): the sizes are counted afresh.
CREATE TABLE IF NOT EXISTS pool_counts (
    pool TEXT PRIMARY KEY,
    size INTEGER NOT NULL
) WITHOUT ROWID;
DELETE FROM pool_counts;
INSERT INTO pool_counts (pool, size)
SELECT pool, count(*) FROM allocations WHERE substr(pool, 1, 6) = 'count:' GROUP BY pool;
CREATE TRIGGER IF NOT EXISTS allocations_counted_insert AFTER INSERT ON allocations
WHEN substr(NEW.pool, 1, 6) = 'count:'
BEGIN
    INSERT INTO pool_counts (pool, size) VALUES (NEW.pool, 1)
    ON CONFLICT (pool) DO UPDATE SET size = size + 1;
END;
CREATE TRIGGER IF NOT EXISTS allocations_counted_delete AFTER DELETE ON allocations
WHEN substr(OLD.pool, 1, 6) = 'count:'
BEGIN
    UPDATE pool_counts SET size = size - 1 WHERE pool = OLD.pool;
END;
