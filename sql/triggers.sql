-- What each kind of write queues (tables and dependencies from api.sql).
\set SHOW_CONTEXT never
-- :q shows the committed queue and empties it for the next step.
\set q 'SELECT glob FROM tenant_cache.queue ORDER BY glob; TRUNCATE tenant_cache.pending, tenant_cache.inbox;'

SELECT model, pattern, scope FROM tenant_cache.dependencies ORDER BY 1, 2;

-- INSERT: the new row's values, per the pattern's scope.
INSERT INTO people VALUES (1, 1, 2, 3, 'Ann');
:q
INSERT INTO asset VALUES (1, 't1', 'c1', 'b1', 'ok');
:q

-- Several rows, two tenants, one statement: each glob once.
INSERT INTO people VALUES (2, 1, 2, 3, 'Bob'), (3, 1, 2, 3, 'Cid'), (4, 2, 5, 6, 'Dan');
:q

-- UPDATE within a tenant: that tenant only.
UPDATE people SET name = 'Ann B.' WHERE id = 1;
:q

-- UPDATE moving a row to another tenant: both tenants.
UPDATE people SET tenant_id = 7 WHERE id = 1;
:q

-- UPDATE changing the client (scope client for dropdown:people).
UPDATE people SET client_id = 9 WHERE id = 2;
:q

-- DELETE: the old row.
DELETE FROM people WHERE id = 4;
:q

-- NULL values match every value at that level.
INSERT INTO people VALUES (5, NULL, NULL, 3, 'Eve');
:q
INSERT INTO people VALUES (6, 1, NULL, 3, 'Fay');
:q

-- Values from rows are glob-escaped.
INSERT INTO asset VALUES (2, 'a*', 'c?', 'b[1]', 'x'), (3, 'back\slash', ']', '[', 'y');
:q

-- A value containing the key_format separator is refused, and the write
-- with it: it could clear another tenant's keys.
INSERT INTO asset VALUES (4, 't1:client:x', 'c', 'b', 'x');
INSERT INTO asset VALUES (4, 't1', 'c', 'b:4', 'x');
:q

-- COPY fires the triggers too.
COPY asset FROM stdin;
10	t10	c	b	new
11	t11	c	b	new
\.
:q

-- TRUNCATE: every tenant of the model.
TRUNCATE asset;
:q

-- A statement that changes nothing queues nothing.
UPDATE people SET name = 'nobody' WHERE id = -1;
DELETE FROM asset;
:q

-- A table watched without a tenant column clears every tenant.
SELECT tenant_cache.watch_table('other', 'People', NULL);
INSERT INTO other VALUES (1, 5);
:q
SELECT tenant_cache.unwatch_table('other');

-- Two models in one transaction, values repeated: each glob once.
BEGIN;
INSERT INTO people VALUES (8, 3, 3, 3, 'Hal');
INSERT INTO asset VALUES (20, '3', '3', '3', 'ok');
UPDATE people SET name = 'Hal 2' WHERE id = 8;
UPDATE asset SET status = 'ok 2' WHERE id = 20;
COMMIT;
:q

-- Model with no dependencies: nothing queued.
CREATE TABLE nodeps (tenant_id int);
SELECT tenant_cache.watch_table('nodeps', 'NoDeps');
INSERT INTO nodeps VALUES (1);
:q

-- Dependencies registered later are used at once; a rolled-back one is not.
SELECT tenant_cache.register_dependency('NoDeps', ARRAY['late:pattern']);
INSERT INTO nodeps VALUES (1);
:q
BEGIN;
SELECT tenant_cache.register_dependency('NoDeps', ARRAY['same:xact']);
INSERT INTO nodeps VALUES (2);
ROLLBACK;
INSERT INTO nodeps VALUES (3);
:q

-- Partitioned table: rows routed to partitions, TRUNCATE of a partition.
CREATE TABLE eventlog (id int, tenant_id int, client_id int, bu_id int, what text)
    PARTITION BY LIST (tenant_id);
CREATE TABLE eventlog_1 PARTITION OF eventlog FOR VALUES IN (1);
CREATE TABLE eventlog_2 PARTITION OF eventlog FOR VALUES IN (2);
SELECT tenant_cache.watch_table('eventlog', 'PeopleEventlog', 'tenant_id', 'client_id', 'bu_id');
SELECT table_name, partitioned FROM tenant_cache.watched_tables WHERE model = 'PeopleEventlog';
SELECT tenant_cache.watch_table('eventlog_1', 'PeopleEventlog');
INSERT INTO eventlog VALUES (1, 1, 1, 1, 'login'), (2, 2, 1, 1, 'login');
:q
-- Partitions created or attached later are watched too, TRUNCATE included.
CREATE TABLE eventlog_3 PARTITION OF eventlog FOR VALUES IN (3);
CREATE TABLE eventlog_4 (LIKE eventlog);
ALTER TABLE eventlog ATTACH PARTITION eventlog_4 FOR VALUES IN (4);
SELECT c.relname, array_agg(t.tgname ORDER BY t.tgname) AS triggers
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relname IN ('eventlog_3', 'eventlog_4') GROUP BY 1 ORDER BY 1;
INSERT INTO eventlog VALUES (5, 4, 1, 1, 'login');
:q
TRUNCATE eventlog_3;
:q
TRUNCATE eventlog_4;
:q
UPDATE eventlog SET what = 'logout' WHERE id = 2;
:q
-- A row moving between partitions clears both tenants.
UPDATE eventlog SET tenant_id = 2 WHERE id = 1;
:q
DELETE FROM eventlog_2 WHERE id = 2;
:q
-- (the second TRUNCATE's globs still wait in the queue: no new rows)
TRUNCATE eventlog_1;
TRUNCATE eventlog_2;
:q
TRUNCATE eventlog;
:q
SELECT tenant_cache.unwatch_table('eventlog');
SELECT count(*) FROM pg_trigger
WHERE tgrelid IN (SELECT relid FROM pg_partition_tree('eventlog'))
  AND tgname LIKE 'zz_tenant_cache%';
INSERT INTO eventlog VALUES (3, 1, 1, 1, 'quiet');
:q

-- Your own BEFORE trigger that sets the tenant runs first; the glob uses
-- the row it produced.
CREATE FUNCTION set_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.tenant_id := 42; RETURN NEW; END $$;
CREATE TRIGGER a_set_tenant BEFORE INSERT OR UPDATE ON people
    FOR EACH ROW EXECUTE FUNCTION set_tenant();
INSERT INTO people VALUES (7, NULL, 1, 1, 'Gus');
:q
UPDATE people SET tenant_id = 1 WHERE id = 7;
:q
DROP TRIGGER a_set_tenant ON people;

-- The WHEN clause is prepared once per backend and shared by statements.  A
-- statement keeps the one it started with while a statement it runs
-- prepares it again (GRANT invalidates the table's relcache entry): the
-- rows of both are queued.
CREATE FUNCTION touch_other(p_id int, p_other int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    GRANT SELECT ON people TO PUBLIC;
    REVOKE SELECT ON people FROM PUBLIC;
    UPDATE people SET tenant_id = 300 + p_id WHERE id = p_other;
    RETURN 'nested ' || p_id;
END $$;
UPDATE people SET tenant_id = 100 + id, name = touch_other(id, 3) WHERE id IN (2, 6);
SELECT id, tenant_id, name FROM people WHERE id IN (2, 3, 6) ORDER BY id;
:q
UPDATE people SET name = 'after' WHERE id = 6;
:q
DROP FUNCTION touch_other(int, int);

-- A backend keeps the globs of rows with integer ids from one transaction
-- to the next: a tenant written again queues them without building them.
-- A change of the model's patterns shows at the next write all the same.
UPDATE people SET name = 'once' WHERE id = 6;
:q
UPDATE people SET name = 'twice' WHERE id = 6;
:q
SELECT tenant_cache.register_dependency('People', ARRAY['report:people'], 'client');
UPDATE people SET name = 'thrice' WHERE id = 6;
:q
SELECT tenant_cache.unregister_dependency('People', ARRAY['report:people']);
UPDATE people SET name = 'four times' WHERE id = 6;
:q
-- Values whose text depends on the session's settings are printed again
-- for every transaction (a float8 tenant id, extra_float_digits).
CREATE TABLE gauges (id int PRIMARY KEY, tenant_id float8);
SELECT tenant_cache.watch_table('gauges', 'People', 'tenant_id');
INSERT INTO gauges VALUES (1, 0.1::float8 + 0.2::float8);
:q
SET extra_float_digits = 0;
UPDATE gauges SET id = 2 WHERE id = 1;
:q
RESET extra_float_digits;
SELECT tenant_cache.unwatch_table('gauges');
DROP TABLE gauges;

-- A renamed column is reported clearly at the next write.
ALTER TABLE nodeps RENAME COLUMN tenant_id TO tenant;
INSERT INTO nodeps VALUES (4);
ALTER TABLE nodeps RENAME COLUMN tenant TO tenant_id;
INSERT INTO nodeps VALUES (4);
:q

-- Manual invalidation.
SELECT tenant_cache.invalidate_pattern('dashboard', '1');
SELECT tenant_cache.invalidate_pattern('dropdown:people', '1', '2', '3');
SELECT tenant_cache.invalidate_pattern('report:*');
SELECT tenant_cache.invalidate_model('People', '1');
SELECT tenant_cache.invalidate_model('Asset');
:q
