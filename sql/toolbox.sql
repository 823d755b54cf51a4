-- The operations toolbox without Redis: the regress instance's worker drains
-- database "postgres" (where the extension is not installed) and Redis is
-- tenant_cache.redis_port = 1, where nothing listens.  Run in a database of
-- its own so that other tests' dependencies do not show up here.
\set SHOW_CONTEXT never
SELECT current_database() AS orig_db \gset
CREATE DATABASE regress_tc_toolbox;
\c regress_tc_toolbox
SET client_min_messages = error;
CREATE EXTENSION tenant_cache;
RESET client_min_messages;

-- stats: one row; the worker runs (waiting for the extension in its own
-- database), has never reached Redis, and the queue of this database is empty.
SELECT worker_pid IS NOT NULL AS worker_running, worker_state, redis_connected,
       queue_depth, oldest_pending_age, last_lag_ms, lag_samples,
       invalidations_queued, globs_applied, keys_deleted, scan_passes,
       redis_errors, last_error, worker_starts, stats_reset <= now() AS reset_in_past
FROM tenant_cache.stats;
-- The queue columns follow this database's queue.
SELECT tenant_cache.invalidate_pattern('dashboard', '1');
SELECT queue_depth, oldest_pending_age > interval '0' AS has_age FROM tenant_cache.stats;
TRUNCATE tenant_cache.pending, tenant_cache.inbox;

-- stats_reset() returns the new reset time, which the view shows.
SELECT stats_reset AS before_reset FROM tenant_cache.stats \gset
SELECT tenant_cache.stats_reset() > :'before_reset'::timestamptz AS reset_moved;
SELECT stats_reset > :'before_reset'::timestamptz AS view_shows_it FROM tenant_cache.stats;

-- health(): down, with every reason.
SELECT * FROM tenant_cache.health();

-- memory_by_pattern() with no registered pattern: nothing to measure, no Redis.
SELECT * FROM tenant_cache.memory_by_pattern();

-- Functions that need Redis fail with a clear error when it is unreachable.
SELECT * FROM tenant_cache.redis_info();
SELECT * FROM tenant_cache.explore('dashboard', '1');
SELECT * FROM tenant_cache.count_keys('dashboard');
SELECT tenant_cache.register_dependency('People', ARRAY['dropdown:people', 'dashboard:metrics']);
SELECT * FROM tenant_cache.memory_by_pattern(10);

-- Bad arguments are refused before Redis is contacted.
SELECT * FROM tenant_cache.explore(NULL);
SELECT * FROM tenant_cache.explore('dashboard', max_keys => 0);
SELECT * FROM tenant_cache.explore('dashboard', max_keys => 100001);
SELECT * FROM tenant_cache.explore('dashboard', max_keys => NULL);
SELECT * FROM tenant_cache.explore('[abc');
SELECT * FROM tenant_cache.explore('dashboard', tenant_id => '1:client:2');
SELECT * FROM tenant_cache.count_keys(NULL);
SELECT * FROM tenant_cache.count_keys('a\');
SELECT * FROM tenant_cache.count_keys('dashboard', bu_id => 'x:y');
SELECT * FROM tenant_cache.memory_by_pattern(-1);
SELECT * FROM tenant_cache.memory_by_pattern(NULL);

-- invalidate_all() refuses without confirm => true ...
SELECT tenant_cache.invalidate_all(false);
SELECT tenant_cache.invalidate_all(NULL);
SELECT count(*) AS queued FROM tenant_cache.queue;
-- ... queues, with it, the glob of every key of key_format, in the
-- transaction: nothing on rollback ...
BEGIN;
SELECT tenant_cache.invalidate_all(confirm => true);
SELECT glob FROM tenant_cache.queue;
ROLLBACK;
SELECT count(*) AS queued FROM tenant_cache.queue;
-- ... one entry on commit ...
SELECT tenant_cache.invalidate_all(true);
SELECT glob, attempts FROM tenant_cache.queue;
TRUNCATE tenant_cache.pending, tenant_cache.inbox;
-- ... and not in a read-only transaction.
BEGIN READ ONLY;
SELECT tenant_cache.invalidate_all(true);
ROLLBACK;

-- pattern_stats: a row per registered (model, pattern), zero so far.
SELECT tenant_cache.register_dependency('Asset', ARRAY['dropdown:asset', 'dashboard:metrics']);
SELECT * FROM tenant_cache.pattern_stats ORDER BY model, pattern;

-- dependency_graph(): tables -> models -> patterns in Graphviz DOT, with
-- names escaped; a watched model without patterns is drawn in red.
CREATE TABLE people_people (id int PRIMARY KEY, tenant_id int, client_id int, bu_id int);
CREATE TABLE activity_asset (id int PRIMARY KEY, tenant_id int);
CREATE TABLE "Odd ""quoted"" table" (id int, tenant_id int);
CREATE TABLE settings (id int);
SELECT tenant_cache.watch_table('people_people', 'People', 'tenant_id', 'client_id', 'bu_id');
SELECT tenant_cache.watch_table('activity_asset', 'Asset');
SET client_min_messages = warning;
SELECT tenant_cache.watch_table('"Odd ""quoted"" table"', 'Say "hi"\ model');
SELECT tenant_cache.watch_table('settings', 'Settings', tenant_column => NULL);
RESET client_min_messages;
SELECT tenant_cache.register_dependency('Say "hi"\ model', ARRAY['a\*b', 'q"uote'], 'global');
\pset format unaligned
\pset tuples_only on
SELECT tenant_cache.dependency_graph();
\pset format aligned
\pset tuples_only off

-- Privileges: nothing for PUBLIC (even with USAGE on the schema); the
-- README's GRANT recipe is enough.
CREATE ROLE regress_tc_nobody;
CREATE ROLE regress_tc_cache_ops;
GRANT USAGE ON SCHEMA tenant_cache TO regress_tc_nobody;
SET ROLE regress_tc_nobody;
SELECT * FROM tenant_cache.stats;
SELECT * FROM tenant_cache.pattern_stats;
SELECT * FROM tenant_cache.health();
SELECT tenant_cache.stats_reset();
SELECT tenant_cache.dependency_graph();
SELECT tenant_cache.invalidate_all(true);
SELECT * FROM tenant_cache.explore('x');
SELECT * FROM tenant_cache.worker_stats();
RESET ROLE;
GRANT USAGE ON SCHEMA tenant_cache TO regress_tc_cache_ops;
GRANT SELECT ON tenant_cache.queue, tenant_cache.dependencies, tenant_cache.watched_tables,
                tenant_cache.stats, tenant_cache.pattern_stats TO regress_tc_cache_ops;
GRANT EXECUTE ON FUNCTION tenant_cache.invalidate_pattern(text, text, text, text, boolean),
                          tenant_cache.invalidate_model(text, text),
                          tenant_cache.glob_for(text, text, text, text),
                          tenant_cache.trigger_arguments(bytea),
                          tenant_cache.worker_stats(),
                          tenant_cache.pattern_counters(text[], text[]),
                          tenant_cache.health(),
                          tenant_cache.redis_info(),
                          tenant_cache.explore(text, text, integer, text, text),
                          tenant_cache.count_keys(text, text, text, text),
                          tenant_cache.memory_by_pattern(integer),
                          tenant_cache.dot_label(text),
                          tenant_cache.dependency_graph() TO regress_tc_cache_ops;
SET ROLE regress_tc_cache_ops;
SELECT worker_state, queue_depth FROM tenant_cache.stats;
SELECT count(*) AS patterns FROM tenant_cache.pattern_stats;
SELECT status FROM tenant_cache.health();
SELECT length(tenant_cache.dependency_graph()) > 0 AS graph;
SELECT * FROM tenant_cache.count_keys('dashboard');
-- ... and still no reset and no invalidate_all.
SELECT tenant_cache.stats_reset();
SELECT tenant_cache.invalidate_all(true);
RESET ROLE;
-- A monitoring role needs nothing but EXECUTE on health() (SECURITY
-- DEFINER: it reads the queue as the extension owner).
GRANT EXECUTE ON FUNCTION tenant_cache.health() TO regress_tc_nobody;
SET ROLE regress_tc_nobody;
SELECT status FROM tenant_cache.health();
RESET ROLE;

\c :orig_db
DROP DATABASE regress_tc_toolbox;
DROP ROLE regress_tc_nobody;
DROP ROLE regress_tc_cache_ops;
