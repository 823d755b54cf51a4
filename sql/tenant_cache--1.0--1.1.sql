/* tenant_cache--1.0--1.1.sql: upgrade 1.0 to 1.1 (ALTER EXTENSION tenant_cache UPDATE) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION tenant_cache UPDATE TO '1.1'" to load this file. \quit

-- Everything below must leave a 1.0 installation identical to a fresh 1.1
-- install (sql/tenant_cache--1.1.sql); the regression test "upgrade"
-- compares the two object by object.

------------------------------------------------------------------------
-- 1.1: operations toolbox (statistics, health, Redis inspection)
------------------------------------------------------------------------
CREATE FUNCTION tenant_cache.worker_stats(
    OUT worker_pid integer, OUT worker_state text,
    OUT worker_started_at timestamptz, OUT redis_connected boolean,
    OUT last_lag_ms double precision, OUT lag_p50_ms double precision,
    OUT lag_p99_ms double precision, OUT lag_samples integer,
    OUT invalidations_queued bigint, OUT globs_applied bigint,
    OUT keys_deleted bigint, OUT scan_passes bigint, OUT redis_errors bigint,
    OUT last_error text, OUT last_error_at timestamptz,
    OUT last_success_at timestamptz, OUT worker_starts bigint,
    OUT stats_reset timestamptz)
RETURNS record LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'tc_worker_stats';
COMMENT ON FUNCTION tenant_cache.worker_stats() IS
    'The worker''s counters in shared memory; read them through the view tenant_cache.stats';

CREATE VIEW tenant_cache.stats AS
    SELECT s.worker_pid, s.worker_state, s.worker_started_at, s.redis_connected,
           q.queue_depth,
           pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) q.oldest AS oldest_pending_age,
           s.last_lag_ms, s.lag_p50_ms, s.lag_p99_ms, s.lag_samples,
           s.invalidations_queued, s.globs_applied, s.keys_deleted, s.scan_passes,
           s.redis_errors, s.last_error, s.last_error_at, s.last_success_at,
           s.worker_starts, s.stats_reset
    FROM tenant_cache.worker_stats() AS s
    CROSS JOIN (SELECT pg_catalog.count(*) AS queue_depth, pg_catalog.min(p.enqueued_at) AS oldest
                FROM tenant_cache.pending p WHERE p.applied_at IS NULL) AS q;
COMMENT ON VIEW tenant_cache.stats IS
    'One row: the worker, the queue, commit-to-applied lag and counters since stats_reset';

CREATE FUNCTION tenant_cache.stats_reset()
RETURNS timestamptz LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'tc_stats_reset';
COMMENT ON FUNCTION tenant_cache.stats_reset() IS
    'Zero the counters of tenant_cache.stats and tenant_cache.pattern_stats; returns the reset time';

CREATE FUNCTION tenant_cache.pattern_counters(
    models text[], patterns text[],
    OUT model text, OUT pattern text, OUT queued bigint, OUT applied bigint,
    OUT keys_deleted bigint, OUT last_applied timestamptz)
RETURNS SETOF record LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'tc_pattern_counters';
COMMENT ON FUNCTION tenant_cache.pattern_counters(text[], text[]) IS
    'Per-pattern counters in shared memory; read them through the view tenant_cache.pattern_stats';

CREATE VIEW tenant_cache.pattern_stats AS
    SELECT c.model, c.pattern, c.queued, c.applied, c.keys_deleted, c.last_applied
    FROM tenant_cache.pattern_counters(
        ARRAY(SELECT d.model FROM tenant_cache.dependency d ORDER BY d.model, d.pattern),
        ARRAY(SELECT d.pattern FROM tenant_cache.dependency d ORDER BY d.model, d.pattern)) AS c;
COMMENT ON VIEW tenant_cache.pattern_stats IS
    'Per model and pattern: queue entries taken up, globs applied, keys deleted, last application';

CREATE FUNCTION tenant_cache.health()
RETURNS TABLE (status text, message text) LANGUAGE c VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'tc_health';
COMMENT ON FUNCTION tenant_cache.health() IS
    'healthy, degraded or down, with the reasons: worker, Redis, queue age, failing entries';

CREATE FUNCTION tenant_cache.redis_info(
    OUT redis_version text, OUT uptime_seconds bigint, OUT connected_clients bigint,
    OUT used_memory bigint, OUT used_memory_human text, OUT maxmemory bigint,
    OUT maxmemory_policy text, OUT keyspace_hits bigint, OUT keyspace_misses bigint,
    OUT hit_ratio double precision, OUT evicted_keys bigint, OUT expired_keys bigint,
    OUT db_keys bigint)
RETURNS record LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'tc_redis_info';
COMMENT ON FUNCTION tenant_cache.redis_info() IS
    'Figures from Redis INFO: version, memory, hits and misses, evictions, clients, keys';

CREATE FUNCTION tenant_cache.explore(
    pattern text, tenant_id text DEFAULT NULL, max_keys integer DEFAULT 100,
    client_id text DEFAULT NULL, bu_id text DEFAULT NULL,
    OUT key text, OUT type text, OUT ttl interval, OUT memory_bytes bigint)
RETURNS SETOF record LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'tc_explore';
COMMENT ON FUNCTION tenant_cache.explore(text, text, integer, text, text) IS
    'The keys invalidate_pattern() would clear now, with type, TTL and memory (at most max_keys)';

CREATE FUNCTION tenant_cache.count_keys(
    pattern text, tenant_id text DEFAULT NULL,
    client_id text DEFAULT NULL, bu_id text DEFAULT NULL,
    OUT glob text, OUT keys bigint, OUT complete boolean)
RETURNS record LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'tc_count_keys';
COMMENT ON FUNCTION tenant_cache.count_keys(text, text, text, text) IS
    'Dry run of invalidate_pattern(): how many keys its glob matches now; nothing is cleared';

CREATE FUNCTION tenant_cache.memory_by_pattern(
    sample integer DEFAULT 100,
    OUT pattern text, OUT models text[], OUT keys bigint, OUT sampled bigint,
    OUT sampled_bytes bigint, OUT estimated_bytes bigint, OUT complete boolean)
RETURNS SETOF record LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'tc_memory_by_pattern';
COMMENT ON FUNCTION tenant_cache.memory_by_pattern(integer) IS
    'Keys and estimated memory of each registered pattern, all tenants, from one SCAN walk';

CREATE FUNCTION tenant_cache.invalidate_all(confirm boolean)
RETURNS text LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'tc_invalidate_all';
COMMENT ON FUNCTION tenant_cache.invalidate_all(boolean) IS
    'Queue the glob of every key of key_format for every tenant (needs confirm => true); applied after commit';

CREATE FUNCTION tenant_cache.dot_label(s text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- A Graphviz DOT string body: control characters become spaces,
    -- backslashes and double quotes are escaped.
    SELECT replace(replace(regexp_replace(s, '[[:cntrl:]]', ' ', 'g'), '\', '\\'), '"', '\"')
$$;
COMMENT ON FUNCTION tenant_cache.dot_label(text) IS
    'Escape text for a quoted Graphviz DOT string (used by dependency_graph())';

CREATE FUNCTION tenant_cache.dependency_graph()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH deps AS (
    SELECT d.model, d.pattern, d.scope FROM tenant_cache.dependencies d
), tabs AS (
    SELECT w.table_name::text AS tbl, w.model,
           coalesce(nullif(concat_ws(', ', w.tenant_column, w.client_column, w.bu_column), ''),
                    'no tenant column') AS cols
    FROM tenant_cache.watched_tables w
), tab_nodes AS (
    SELECT tbl, cols, row_number() OVER (ORDER BY tbl COLLATE "C", cols COLLATE "C") AS n
    FROM (SELECT DISTINCT tbl, cols FROM tabs) t
), model_nodes AS (
    SELECT model, row_number() OVER (ORDER BY model COLLATE "C") AS n,
           NOT EXISTS (SELECT 1 FROM deps WHERE deps.model = m.model) AS no_patterns
    FROM (SELECT model FROM deps UNION SELECT model FROM tabs) m
), pattern_nodes AS (
    SELECT pattern, row_number() OVER (ORDER BY pattern COLLATE "C") AS n
    FROM (SELECT DISTINCT pattern FROM deps) p
)
SELECT concat_ws(E'\n',
    'digraph tenant_cache {',
    '  rankdir=LR;',
    '  graph [fontname="Helvetica", fontsize=12];',
    '  node [fontname="Helvetica", fontsize=11, style=filled];',
    '  edge [fontname="Helvetica", fontsize=9, color="#666666", fontcolor="#666666"];',
    '  subgraph cluster_tables {',
    '    label="watched tables"; style=dashed; color="#999999";',
    (SELECT string_agg(format('    t%s [label="%s\n(%s)", shape=box, fillcolor="#dbe9f6"];',
                              n, tenant_cache.dot_label(tbl), tenant_cache.dot_label(cols)),
                       E'\n' ORDER BY n)
     FROM tab_nodes),
    '  }',
    '  subgraph cluster_models {',
    '    label="models"; style=dashed; color="#999999";',
    (SELECT string_agg(format('    m%s [label="%s", shape=ellipse, fillcolor="%s"];',
                              n, tenant_cache.dot_label(model),
                              CASE WHEN no_patterns THEN '#f4cccc' ELSE '#fde7c8' END),
                       E'\n' ORDER BY n)
     FROM model_nodes),
    '  }',
    '  subgraph cluster_patterns {',
    '    label="cache patterns"; style=dashed; color="#999999";',
    (SELECT string_agg(format('    p%s [label="%s", shape=note, fillcolor="#e2f0d9"];',
                              n, tenant_cache.dot_label(pattern)),
                       E'\n' ORDER BY n)
     FROM pattern_nodes),
    '  }',
    (SELECT string_agg(format('  t%s -> m%s;', t.n, m.n), E'\n' ORDER BY t.n, m.n)
     FROM (SELECT DISTINCT tbl, cols, model FROM tabs) x
     JOIN tab_nodes t ON t.tbl = x.tbl AND t.cols = x.cols
     JOIN model_nodes m ON m.model = x.model),
    -- the scope labels the edge, unless it is the default (tenant)
    (SELECT string_agg(format('  m%s -> p%s%s;', m.n, p.n,
                              CASE WHEN d.scope <> 'tenant' THEN format(' [label="%s"]', d.scope) END),
                       E'\n' ORDER BY m.n, p.n)
     FROM deps d
     JOIN model_nodes m ON m.model = d.model
     JOIN pattern_nodes p ON p.pattern = d.pattern),
    '}') || E'\n'
$$;
COMMENT ON FUNCTION tenant_cache.dependency_graph() IS
    'Graphviz DOT of watched tables -> models -> cache patterns (render with: dot -Tsvg)';

REVOKE ALL ON tenant_cache.stats, tenant_cache.pattern_stats FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenant_cache.worker_stats(), tenant_cache.stats_reset(),
    tenant_cache.pattern_counters(text[], text[]), tenant_cache.health(),
    tenant_cache.redis_info(), tenant_cache.explore(text, text, integer, text, text),
    tenant_cache.count_keys(text, text, text, text),
    tenant_cache.memory_by_pattern(integer), tenant_cache.invalidate_all(boolean),
    tenant_cache.dot_label(text), tenant_cache.dependency_graph() FROM PUBLIC;
