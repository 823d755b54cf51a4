-- Upgrades: a 1.0 installation in use, updated with ALTER EXTENSION, must
-- match a fresh install of the current version object by object, keep its
-- configuration and keep queueing invalidations.
\set SHOW_CONTEXT never
\set ECHO none
-- One line per member object of the extension: its name and the md5 of
-- everything a user can observe of it (definition, columns in order,
-- constraints, indexes, triggers, privileges, comment, dumped configuration).
\set describe 'SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) || '' '' || pg_catalog.md5(CASE d.classid WHEN ''pg_proc''::regclass THEN (SELECT pg_catalog.pg_get_functiondef(p.oid) || '' acl='' || coalesce(p.proacl::text, ''-'') FROM pg_proc p WHERE p.oid = d.objid) WHEN ''pg_class''::regclass THEN (SELECT c.relkind::text || '' acl='' || coalesce(c.relacl::text, ''-'') || '' opts='' || coalesce(c.reloptions::text, ''-'') || '' ident='' || c.relreplident::text || '' cols='' || coalesce((SELECT string_agg(a.attname || '' '' || pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN '' not null'' ELSE '''' END || coalesce('' default '' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '''') || CASE WHEN a.attidentity <> '''' THEN '' identity '' || a.attidentity::text ELSE '''' END, '', '' ORDER BY a.attnum) FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), ''-'') || '' constraints='' || coalesce((SELECT string_agg(co.conname || '' '' || pg_catalog.pg_get_constraintdef(co.oid), ''; '' ORDER BY co.conname) FROM pg_constraint co WHERE co.conrelid = c.oid), ''-'') || '' indexes='' || coalesce((SELECT string_agg(pg_catalog.pg_get_indexdef(i.indexrelid), ''; '' ORDER BY pg_catalog.pg_get_indexdef(i.indexrelid)) FROM pg_index i WHERE i.indrelid = c.oid), ''-'') || '' triggers='' || coalesce((SELECT string_agg(pg_catalog.pg_get_triggerdef(t.oid), ''; '' ORDER BY t.tgname) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), ''-'') || '' view='' || coalesce(pg_catalog.pg_get_viewdef(c.oid), ''-'') || '' config='' || (c.oid = ANY (e.extconfig))::text FROM pg_class c WHERE c.oid = d.objid) WHEN ''pg_event_trigger''::regclass THEN (SELECT et.evtevent || '' '' || et.evtfoid::regproc::text || '' '' || et.evtenabled::text || '' '' || coalesce(et.evttags::text, ''-'') FROM pg_event_trigger et WHERE et.oid = d.objid) WHEN ''pg_namespace''::regclass THEN (SELECT coalesce(n.nspacl::text, ''-'') FROM pg_namespace n WHERE n.oid = d.objid) ELSE ''-'' END || '' comment='' || coalesce(pg_catalog.obj_description(d.objid, d.classid::regclass::name), ''-'')) AS line FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid WHERE d.refclassid = ''pg_extension''::regclass AND e.extname = ''tenant_cache'' AND d.deptype = ''e'''
\set ECHO all
SELECT current_database() AS orig_db \gset

CREATE DATABASE tc_upgrade_chain;
CREATE DATABASE tc_upgrade_fresh;

-- A 1.0 installation with configuration and a watched table.
\c tc_upgrade_chain
SET client_min_messages = error;
CREATE EXTENSION tenant_cache VERSION '1.0';
SELECT tenant_cache.register_dependency('order', ARRAY['dashboard', 'report:monthly']);
CREATE TABLE orders (id int PRIMARY KEY, tenant_id int, amount int);
SELECT tenant_cache.watch_table('orders', 'order');
CREATE TABLE replicated (id int PRIMARY KEY, tenant_id int);
SELECT tenant_cache.watch_table('replicated', 'order', fire_on_replica => true);
INSERT INTO orders VALUES (1, 7, 100);
SELECT glob FROM tenant_cache.queue ORDER BY glob;

-- Braces in a 1.0 pattern name a column from 1.1 on: the update refuses
-- while one would name a column a watched table lacks, and changes nothing.
SELECT tenant_cache.register_dependency('order', ARRAY['report:{year}']);
ALTER EXTENSION tenant_cache UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'tenant_cache';
SELECT tenant_cache.unregister_dependency('order', ARRAY['report:{year}']);

-- A role that may register dependencies (a migration's) ...
CREATE ROLE regress_tc_migrator;
GRANT EXECUTE ON FUNCTION tenant_cache.register_dependency(text, text[], text) TO regress_tc_migrator;

ALTER EXTENSION tenant_cache UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'tenant_cache';

-- ... may run what register_dependency calls from 1.2 on.
SELECT f, has_function_privilege('regress_tc_migrator', f, 'EXECUTE') AS granted
FROM unnest(ARRAY['tenant_cache.model_columns(text)',
                  'tenant_cache.install_row_triggers(regclass, text, name, name, name, name[], "char")',
                  'tenant_cache.reinstall_row_triggers(text)']) AS f;
REVOKE EXECUTE ON FUNCTION tenant_cache.register_dependency(text, text[], text),
    tenant_cache.model_columns(text),
    tenant_cache.install_row_triggers(regclass, text, name, name, name, name[], "char"),
    tenant_cache.reinstall_row_triggers(text) FROM regress_tc_migrator;
DROP ROLE regress_tc_migrator;

-- Configuration and queue survived; writes still queue.
SELECT model, pattern, scope FROM tenant_cache.dependencies ORDER BY 1, 2;
SELECT table_name, model, tenant_column FROM tenant_cache.watched_tables;
-- 1.2 replaced the row triggers (AFTER, with a WHEN clause), keeping how
-- they fire.
SELECT tgrelid::regclass, tgname, tgtype, tgenabled,
       pg_get_triggerdef(oid) LIKE '%WHEN (tenant_cache.capture_row(%' AS captures
FROM pg_trigger WHERE tgrelid IN ('orders'::regclass, 'replicated'::regclass)
ORDER BY tgrelid::regclass::text, tgname;
UPDATE orders SET amount = 200 WHERE id = 1;
INSERT INTO orders VALUES (2, 8, 5);
DELETE FROM replicated;
INSERT INTO replicated VALUES (1, 9);
SELECT DISTINCT glob FROM tenant_cache.queue ORDER BY glob;

SELECT string_agg(line, E'\n' ORDER BY line) AS chain FROM (:describe) s \gset

-- A fresh install of the default version.
\c tc_upgrade_fresh
SET client_min_messages = error;
CREATE EXTENSION tenant_cache;
SELECT extversion FROM pg_extension WHERE extname = 'tenant_cache';
SELECT count(*) > 10 AS many_objects FROM (:describe) s;

-- What the upgraded installation has and the fresh one lacks, and back.
WITH fresh AS (:describe),
     chain AS (SELECT unnest(string_to_array(:'chain', E'\n')) AS line)
(SELECT 'only after upgrade' AS side, line FROM chain EXCEPT SELECT 'only after upgrade', line FROM fresh)
UNION ALL
(SELECT 'only in fresh install', line FROM fresh EXCEPT SELECT 'only in fresh install', line FROM chain)
ORDER BY 1, 2;

\c :orig_db
DROP DATABASE tc_upgrade_chain;
DROP DATABASE tc_upgrade_fresh;
