-- Transactions: after commit only, once per transaction, savepoints, 2PC.
\set SHOW_CONTEXT never
\set q 'SELECT glob FROM tenant_cache.queue ORDER BY glob; TRUNCATE tenant_cache.pending, tenant_cache.inbox;'
TRUNCATE people;
TRUNCATE tenant_cache.pending, tenant_cache.inbox;

-- Nothing is visible before commit; each glob is queued once.
BEGIN;
INSERT INTO people SELECT g, 1, 2, 3, 'x' FROM generate_series(1, 1000) g;
UPDATE people SET name = 'y';
SELECT tenant_cache.invalidate_pattern('dropdown:people', '1', '2');
SELECT count(*) AS visible_before_commit FROM tenant_cache.queue;
COMMIT;
:q

-- Rollback queues nothing.
BEGIN;
UPDATE people SET name = 'z' WHERE id = 1;
SELECT tenant_cache.invalidate_pattern('dashboard');
ROLLBACK;
:q

-- A failing statement aborts its transaction: nothing queued.
BEGIN;
UPDATE people SET name = 'z' WHERE id = 1;
SELECT 1 / 0;
COMMIT;
:q

-- Rolled-back savepoint: its globs go, the rest stays.
BEGIN;
INSERT INTO people VALUES (2001, 1, 2, 3, 'kept');
SAVEPOINT s1;
INSERT INTO people VALUES (2002, 5, 2, 3, 'rolled back');
ROLLBACK TO SAVEPOINT s1;
COMMIT;
:q

-- A savepoint rollback does not suppress a later identical write.
BEGIN;
SAVEPOINT s1;
UPDATE people SET name = 'a' WHERE id = 1;
ROLLBACK TO SAVEPOINT s1;
UPDATE people SET name = 'b' WHERE id = 1;
COMMIT;
:q

-- ... nor an identical write in a later savepoint, nested ones included.
BEGIN;
SAVEPOINT s1;
SAVEPOINT s2;
UPDATE people SET name = 'a' WHERE id = 1;
RELEASE SAVEPOINT s2;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s3;
UPDATE people SET name = 'b' WHERE id = 1;
RELEASE SAVEPOINT s3;
COMMIT;
:q

-- Globs of a released savepoint belong to its parent.
BEGIN;
SAVEPOINT outer_sp;
SAVEPOINT inner_sp;
INSERT INTO people VALUES (2003, 6, 2, 3, 'released');
RELEASE SAVEPOINT inner_sp;
ROLLBACK TO SAVEPOINT outer_sp;
INSERT INTO people VALUES (2004, 8, 2, 3, 'top');
COMMIT;
:q

-- The same glob in the parent survives the rollback of a savepoint that
-- repeated it.
BEGIN;
UPDATE people SET name = 'p' WHERE id = 1;
SAVEPOINT s1;
UPDATE people SET name = 'q' WHERE id = 1;
ROLLBACK TO SAVEPOINT s1;
COMMIT;
:q

-- PL/pgSQL exception blocks are savepoints too.
DO $$
BEGIN
    BEGIN
        INSERT INTO people VALUES (2005, 9, 2, 3, 'fails');
        PERFORM 1 / 0;
    EXCEPTION WHEN division_by_zero THEN
        NULL;
    END;
    INSERT INTO people VALUES (2006, 10, 2, 3, 'ok');
END $$;
:q

-- Procedures that commit and roll back.
CREATE PROCEDURE write_twice() LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO people VALUES (3001, 11, 2, 3, 'committed');
    COMMIT;
    INSERT INTO people VALUES (3002, 12, 2, 3, 'rolled back');
    ROLLBACK;
END $$;
CALL write_twice();
:q

-- Two-phase commit: nothing until COMMIT PREPARED; nothing after ROLLBACK PREPARED.
BEGIN;
INSERT INTO people VALUES (4001, 13, 2, 3, '2pc');
PREPARE TRANSACTION 'tc_commit';
SELECT count(*) AS visible_while_prepared FROM tenant_cache.queue;
COMMIT PREPARED 'tc_commit';
:q
BEGIN;
INSERT INTO people VALUES (4002, 14, 2, 3, '2pc');
PREPARE TRANSACTION 'tc_rollback';
ROLLBACK PREPARED 'tc_rollback';
:q

-- Read-only transactions cannot queue manual invalidations.
BEGIN READ ONLY;
SELECT tenant_cache.invalidate_pattern('dashboard');
ROLLBACK;

-- Each committing transaction appends one inbox row holding all its globs,
-- however many rows it wrote, in every isolation level and with 2PC;
-- folding repeated globs into one queue entry is the worker's job (TAP
-- test 009).  Nothing touches rows queued by other transactions.
UPDATE people SET name = 'one' WHERE id = 1;
UPDATE people SET name = 'two' WHERE id = 1;
INSERT INTO people VALUES (6001, 1, 2, 3, 'three'), (6002, 1, 2, 3, 'four');
BEGIN ISOLATION LEVEL REPEATABLE READ;
UPDATE people SET name = 'rr' WHERE id = 1;
COMMIT;
BEGIN;
UPDATE people SET name = 'prepared' WHERE id = 1;
PREPARE TRANSACTION 'tc_twin';
COMMIT PREPARED 'tc_twin';
SELECT pg_catalog.cardinality(globs) AS globs, count(*) AS transactions
FROM tenant_cache.inbox GROUP BY 1 ORDER BY 1;
SELECT glob, count(*) FROM tenant_cache.queue GROUP BY glob ORDER BY glob;
TRUNCATE tenant_cache.pending, tenant_cache.inbox;
