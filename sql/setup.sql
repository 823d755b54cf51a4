-- Installing the extension: objects, privileges, settings.
\set SHOW_CONTEXT never
CREATE EXTENSION tenant_cache;

SELECT extname, extversion, extrelocatable, n.nspname
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'tenant_cache';

-- Every function exists with EXECUTE revoked from PUBLIC.
SELECT p.oid::regprocedure AS function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
FROM pg_proc p WHERE p.pronamespace = 'tenant_cache'::regnamespace
ORDER BY p.oid::regprocedure::text;

-- No table, view or sequence is readable by PUBLIC.
SELECT c.relname, c.relkind,
       has_table_privilege('public', c.oid, 'SELECT') AS public_can_select
FROM pg_class c WHERE c.relnamespace = 'tenant_cache'::regnamespace
  AND c.relkind IN ('r', 'v', 'S')
ORDER BY 1;

SELECT has_schema_privilege('public', 'tenant_cache', 'USAGE') AS public_usage;

-- Settings and their defaults.
SELECT name, setting, unit, context FROM pg_settings
WHERE name LIKE 'tenant_cache.%' ORDER BY name;

-- The prefix is reserved: typos are errors, not silent placeholders.
SET tenant_cache.redis_prot = 6380;

-- key_format is validated (ALTER SYSTEM runs the check hook) and is not
-- settable per session.
ALTER SYSTEM SET tenant_cache.key_format = 'static:key';
ALTER SYSTEM SET tenant_cache.key_format = 'tenant:{tenant}:{pattern';
ALTER SYSTEM SET tenant_cache.key_format = 'tenant:{tenant}:{user}:{pattern}';
ALTER SYSTEM SET tenant_cache.key_format = '{tenant}:{tenant}:{pattern}';
ALTER SYSTEM SET tenant_cache.key_format = 'client:{client}:{pattern}';
SET tenant_cache.key_format = ':1:tenant:{tenant}:{pattern}';
ALTER SYSTEM SET tenant_cache.redis_password_file = 'relative/path';
ALTER SYSTEM SET tenant_cache.redis_port = 0;
ALTER SYSTEM SET tenant_cache.batch_size = 0;
ALTER SYSTEM RESET ALL;

-- A second CREATE EXTENSION refuses; so does one over a schema holding
-- somebody else's objects, or owned by somebody else.
CREATE EXTENSION tenant_cache;
DROP EXTENSION tenant_cache;
CREATE TABLE tenant_cache.pending (id int);
CREATE EXTENSION tenant_cache;
DROP SCHEMA tenant_cache CASCADE;
CREATE ROLE regress_tc_squatter;
CREATE SCHEMA tenant_cache AUTHORIZATION regress_tc_squatter;
CREATE EXTENSION tenant_cache;
DROP SCHEMA tenant_cache;
DROP ROLE regress_tc_squatter;
CREATE EXTENSION tenant_cache;
