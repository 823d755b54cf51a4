-- Least privilege: writers need no rights on tenant_cache; administration
\set SHOW_CONTEXT never
-- needs them.
\set q 'SELECT glob FROM tenant_cache.queue ORDER BY glob; TRUNCATE tenant_cache.pending, tenant_cache.inbox;'
TRUNCATE tenant_cache.pending, tenant_cache.inbox;
CREATE ROLE regress_tc_writer LOGIN;
CREATE ROLE regress_tc_ops;
GRANT SELECT, UPDATE, INSERT, DELETE ON people TO regress_tc_writer;

-- A writer's writes are queued although it has no privilege on the schema.
SET ROLE regress_tc_writer;
UPDATE people SET name = 'by writer' WHERE id = 1;
INSERT INTO people VALUES (5001, 21, 2, 3, 'by writer');
-- ... and it can neither read nor change the queue or the catalog ...
SELECT * FROM tenant_cache.queue;
SELECT * FROM tenant_cache.pending;
INSERT INTO tenant_cache.pending (glob) VALUES ('*');
DELETE FROM tenant_cache.pending;
SELECT * FROM tenant_cache.dependencies;
-- ... nor call the administration functions.
SELECT tenant_cache.register_dependency('People', ARRAY['x']);
SELECT tenant_cache.unregister_dependency('People');
SELECT tenant_cache.watch_table('people', 'People');
SELECT tenant_cache.unwatch_table('people');
SELECT tenant_cache.invalidate_pattern('dashboard');
SELECT tenant_cache.invalidate_model('People');
RESET ROLE;
:q

-- Anybody may execute capture_row() (the row triggers' WHEN clause runs as
-- the writer), but it queues only as that WHEN clause: not called directly,
-- not from a query, not from a trigger on a table that is not watched.
SELECT tenant_cache.capture_row('people'::regclass::oid, 1);
SELECT tenant_cache.capture_row(p.tableoid, q.tenant_id)
FROM people p JOIN people q ON q.id = p.id WHERE p.id = 1;
CREATE TABLE spoof (tenant_id int);
CREATE FUNCTION spoof_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER spoof AFTER INSERT ON spoof FOR EACH ROW
    WHEN (tenant_cache.capture_row(NEW.tableoid, NEW.tenant_id))
    EXECUTE FUNCTION spoof_noop();
INSERT INTO spoof VALUES (77);
DROP TABLE spoof;
DROP FUNCTION spoof_noop();
:q

-- The WHEN clause is prepared once per backend, by whoever writes first:
-- EXECUTE on capture_row() is still checked for every writer, as
-- PostgreSQL checks it when it prepares the clause, and a REVOKE applies
-- at once.
UPDATE people SET name = 'by owner' WHERE id = 1;
SET ROLE regress_tc_writer;
UPDATE people SET name = 'by writer' WHERE id = 1;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION tenant_cache.capture_row("any") FROM PUBLIC;
SET ROLE regress_tc_writer;
UPDATE people SET name = 'refused' WHERE id = 1;
RESET ROLE;
UPDATE people SET name = 'by owner again' WHERE id = 1;
GRANT EXECUTE ON FUNCTION tenant_cache.capture_row("any") TO PUBLIC;
SET ROLE regress_tc_writer;
UPDATE people SET name = 'by writer again' WHERE id = 1;
RESET ROLE;
SELECT name FROM people WHERE id = 1;
:q

-- A role with only UPDATE (no SELECT, so no WHERE) is enough to queue.
CREATE ROLE regress_tc_updater;
GRANT UPDATE (name) ON people TO regress_tc_updater;
SET ROLE regress_tc_updater;
UPDATE people SET name = 'updater';
RESET ROLE;
SELECT count(*) > 0 AS queued FROM tenant_cache.queue;
TRUNCATE tenant_cache.pending, tenant_cache.inbox;

-- Any role can still create tables (the event trigger that watches new
-- partitions runs as the extension owner and never gets in the way).
SET ROLE regress_tc_writer;
CREATE TEMP TABLE scratch (id int);
DROP TABLE scratch;
RESET ROLE;

-- The writer's session cannot redirect the queue insert with search_path.
CREATE SCHEMA trojan;
CREATE TABLE trojan.pending (id bigint, glob text, enqueued_at timestamptz);
CREATE FUNCTION trojan.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trojan unnest called'; RETURN QUERY SELECT 'trojan'; END $$;
CREATE FUNCTION trojan.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trojan clock_timestamp called'; RETURN now(); END $$;
CREATE FUNCTION trojan.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trojan = called'; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR trojan.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trojan.text_eq);
CREATE FUNCTION trojan.int8_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trojan = called'; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR trojan.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = trojan.int8_eq);
CREATE FUNCTION trojan.cardinality(anyarray) RETURNS int LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trojan cardinality called'; RETURN 1; END $$;
CREATE TABLE trojan.dependency (model text, pattern text, scope text);
GRANT USAGE ON SCHEMA trojan TO regress_tc_writer;
GRANT ALL ON trojan.pending TO regress_tc_writer;
SET ROLE regress_tc_writer;
SET search_path = trojan, pg_catalog, public;
CREATE TEMP TABLE pending (id bigint, glob text, enqueued_at timestamptz);
CREATE TEMP TABLE dependency (model text, pattern text, scope text);
INSERT INTO pg_temp.dependency VALUES ('People', 'temp:trojan', 'global');
UPDATE people SET name = 'hostile path' WHERE id = 1;
SELECT count(*) AS temp_rows FROM pg_temp.pending;
RESET search_path;
RESET ROLE;
SELECT count(*) AS trojan_rows FROM trojan.pending;
:q

-- The administration functions ignore a hostile search_path too.
SET search_path = trojan, pg_catalog, public;
SELECT tenant_cache.register_dependency('Trojan', ARRAY['t:1', 't:2']);
SELECT tenant_cache.unregister_dependency('Trojan', ARRAY['t:1']);
CREATE TABLE public.trojan_watch (tenant_id int);
SELECT tenant_cache.watch_table('public.trojan_watch', 'Trojan');
INSERT INTO public.trojan_watch VALUES (1);
SELECT tenant_cache.unwatch_table('public.trojan_watch');
SELECT tenant_cache.invalidate_model('Trojan', '2');
SELECT count(*) AS trojan_catalog_rows FROM trojan.dependency;
RESET search_path;
DROP TABLE trojan_watch;
SELECT tenant_cache.unregister_dependency('Trojan');
:q

-- The GRANT recipe for an operations role (README).
GRANT USAGE ON SCHEMA tenant_cache TO regress_tc_ops;
GRANT SELECT ON tenant_cache.queue, tenant_cache.dependencies, tenant_cache.watched_tables TO regress_tc_ops;
GRANT EXECUTE ON FUNCTION tenant_cache.invalidate_pattern(text, text, text, text, boolean),
                          tenant_cache.invalidate_model(text, text),
                          tenant_cache.glob_for(text, text, text, text),
                          tenant_cache.trigger_arguments(bytea) TO regress_tc_ops;
SET ROLE regress_tc_ops;
SELECT tenant_cache.invalidate_pattern('dashboard', '1');
SELECT count(*) FROM tenant_cache.queue;
SELECT model FROM tenant_cache.watched_tables ORDER BY 1;
SELECT tenant_cache.register_dependency('People', ARRAY['x']);
RESET ROLE;
:q

DROP SCHEMA trojan CASCADE;
REVOKE ALL ON SCHEMA tenant_cache FROM regress_tc_ops;
REVOKE ALL ON ALL TABLES IN SCHEMA tenant_cache FROM regress_tc_ops;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tenant_cache FROM regress_tc_ops;
REVOKE ALL ON people FROM regress_tc_writer, regress_tc_updater;
DROP ROLE regress_tc_writer;
DROP ROLE regress_tc_updater;
DROP ROLE regress_tc_ops;
