/* tenant_cache--1.0--1.1.sql: upgrade 1.0 to 1.1 (ALTER EXTENSION tenant_cache UPDATE) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION tenant_cache UPDATE TO '1.1'" to load this file. \quit

-- Everything below must leave a 1.0 installation identical to a fresh 1.1
-- install (sql/tenant_cache--1.1.sql); the regression test "upgrade"
-- compares the two object by object.

------------------------------------------------------------------------
-- Queue: one inbox row per committing transaction, deduplicated per glob
-- by the worker (writers no longer look up and lock twins).
------------------------------------------------------------------------
-- Each committing transaction appends one row with all its globs (one heap
-- insert, no index, no lookup: writers never wait on each other or on the
-- worker).  The worker moves the rows into tenant_cache.pending, keeping one
-- waiting entry per glob, and deletes them.
CREATE TABLE tenant_cache.inbox (
    globs       text[] NOT NULL,
    enqueued_at timestamptz NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
-- Deletes by the worker must not fail under a FOR ALL TABLES publication.
ALTER TABLE tenant_cache.inbox REPLICA IDENTITY FULL;
COMMENT ON TABLE tenant_cache.inbox IS
    'Globs of committed transactions not yet moved into tenant_cache.pending by the worker';
REVOKE ALL ON tenant_cache.inbox FROM PUBLIC;

CREATE OR REPLACE VIEW tenant_cache.queue AS
    SELECT id, glob, enqueued_at, attempts, last_error, next_attempt_at, applied_at
    FROM tenant_cache.pending
    UNION ALL
    SELECT NULL::bigint, g.glob, i.enqueued_at, 0, NULL::text, NULL::timestamptz, NULL::timestamptz
    FROM tenant_cache.inbox AS i CROSS JOIN LATERAL pg_catalog.unnest(i.globs) AS g(glob);
-- Row placeholders "{column}" and exact patterns ("...$")
------------------------------------------------------------------------
CREATE FUNCTION tenant_cache.pattern_columns(pattern text)
    RETURNS name[] LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'tc_pattern_columns';
COMMENT ON FUNCTION tenant_cache.pattern_columns(text) IS
    'The columns named by the placeholders "{column}" of a pattern';
REVOKE EXECUTE ON FUNCTION tenant_cache.pattern_columns(text) FROM PUBLIC;

-- In 1.0 "{" and a final "$" were plain characters of a pattern; now they
-- name columns and mark exact patterns.  Refuse to upgrade while a pattern
-- would name a column that a watched table of its model lacks (every write
-- to that table would fail), and say which patterns change meaning.
DO $placeholders$
DECLARE
    bad record;
    n integer;
BEGIN
    SELECT d.model, d.pattern, c, w.table_name INTO bad
    FROM tenant_cache.dependency d
    CROSS JOIN LATERAL pg_catalog.unnest(tenant_cache.pattern_columns(d.pattern)) AS c
    JOIN pg_catalog.pg_trigger t
      ON t.tgname OPERATOR(pg_catalog.=) 'zz_tenant_cache_row'
     AND t.tgparentid OPERATOR(pg_catalog.=) 0
     AND t.tgfoid OPERATOR(pg_catalog.=) 'tenant_cache.invalidate_trigger()'::pg_catalog.regprocedure
     AND (tenant_cache.trigger_arguments(t.tgargs))[1] OPERATOR(pg_catalog.=) d.model
    CROSS JOIN LATERAL (SELECT t.tgrelid::pg_catalog.regclass AS table_name) AS w
    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid OPERATOR(pg_catalog.=) t.tgrelid
                        AND a.attname OPERATOR(pg_catalog.=) c
                        AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pattern "%" of model "%" would name column "%", which watched table "%" lacks',
            bad.pattern, bad.model, bad.c, bad.table_name
            USING DETAIL = 'Since version 1.1, "{column}" in a pattern stands for that column of the written row.',
                  HINT = 'Re-register the pattern with the braces escaped as "\{" and "\}", then update the extension again.';
    END IF;
    SELECT pg_catalog.count(*) INTO n FROM tenant_cache.dependency d
    WHERE pg_catalog.cardinality(tenant_cache.pattern_columns(d.pattern)) OPERATOR(pg_catalog.>) 0
       OR d.pattern OPERATOR(pg_catalog.~~) '%$';
    IF n OPERATOR(pg_catalog.>) 0 THEN
        RAISE NOTICE '% registered patterns now use placeholders "{column}" or end in "$" (exact unless escaped)', n
            USING HINT = 'See tenant_cache.dependencies; escape a literal "{" or final "$" with a backslash.';
    END IF;
END
$placeholders$;

-- register_dependency: placeholders must name columns of the watched tables.
CREATE OR REPLACE FUNCTION tenant_cache.register_dependency(
    model text, patterns text[], scope text DEFAULT 'tenant')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed integer;
    bad record;
BEGIN
    IF register_dependency.model IS NULL OR register_dependency.model = '' THEN
        RAISE EXCEPTION 'model name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(register_dependency.model) > 200 THEN
        RAISE EXCEPTION 'model name is too long'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('The name has %s bytes; the limit is 200.',
                                  octet_length(register_dependency.model));
    END IF;
    IF register_dependency.scope IS NULL
       OR register_dependency.scope <> ALL (ARRAY['global', 'tenant', 'client', 'bu']) THEN
        RAISE EXCEPTION 'unknown scope "%"', register_dependency.scope
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The scope must be one of global, tenant, client, bu.';
    END IF;
    IF patterns IS NULL OR cardinality(patterns) = 0 THEN
        RAISE EXCEPTION 'pattern list must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the patterns as an array, for example ARRAY[''dropdown:people''].';
    END IF;
    IF array_position(patterns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'patterns must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tenant_cache.check_pattern(p) FROM unnest(patterns) AS p;
    -- A placeholder must name a column of every table watched for the model.
    SELECT p, c, w.table_name, a.attgenerated <> '' AS generated INTO bad
    FROM unnest(patterns) AS p
    CROSS JOIN LATERAL unnest(tenant_cache.pattern_columns(p)) AS c
    JOIN tenant_cache.watched_tables w ON w.model = register_dependency.model
    LEFT JOIN pg_attribute a ON a.attrelid = w.table_name AND a.attname = c
                            AND a.attnum > 0 AND NOT a.attisdropped
    WHERE a.attnum IS NULL OR a.attgenerated <> ''
    ORDER BY p, c, w.table_name::text LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pattern "%" names column "%", which table "%" watched for model "%" %',
            bad.p, bad.c, bad.table_name, register_dependency.model,
            CASE WHEN bad.generated THEN 'has only as a generated column' ELSE 'lacks' END
            USING ERRCODE = 'undefined_column',
                  DETAIL = 'A placeholder "{column}" is replaced by that column''s value in the written row; generated columns cannot be used.',
                  HINT = 'Name a column every watched table of the model has, or escape a literal brace as "\{".';
    END IF;

    WITH input AS (
        SELECT DISTINCT p FROM unnest(patterns) AS p
    ), upserted AS (
        INSERT INTO tenant_cache.dependency AS d (model, pattern, scope)
        SELECT register_dependency.model, input.p, register_dependency.scope FROM input
        ON CONFLICT ON CONSTRAINT dependency_pkey DO UPDATE
            SET scope = excluded.scope
            WHERE d.scope IS DISTINCT FROM excluded.scope
        RETURNING 1
    )
    SELECT count(*) INTO changed FROM upserted;
    RETURN changed;
END
$$;
COMMENT ON FUNCTION tenant_cache.register_dependency(text, text[], text) IS
    'Map a model to cache patterns; returns the number of (model, pattern) pairs added or changed';

-- watch_table: new last parameter "columns" (a new signature).
DROP FUNCTION tenant_cache.watch_table(regclass, text, name, name, name, boolean);
CREATE FUNCTION tenant_cache.watch_table(
    tbl regclass, model text,
    tenant_column name DEFAULT 'tenant_id',
    client_column name DEFAULT NULL,
    bu_column name DEFAULT NULL,
    fire_on_replica boolean DEFAULT false,
    columns name[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind "char";
    col name;
    args text;
    part regclass;
    bad record;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF watch_table.model IS NULL OR watch_table.model = '' THEN
        RAISE EXCEPTION 'model name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = tbl;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Only ordinary and partitioned tables can be watched.';
    END IF;
    IF columns IS NOT NULL AND cardinality(columns) = 0 THEN
        RAISE EXCEPTION 'column list must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (the default) to queue invalidations for every UPDATE.';
    END IF;
    IF array_position(columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'column list must not contain NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH col IN ARRAY ARRAY[tenant_column, client_column, bu_column] || coalesce(columns, '{}') LOOP
        CONTINUE WHEN col IS NULL;
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                       WHERE a.attrelid = tbl AND a.attname = col
                         AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of relation "%" does not exist', col, tbl
                USING ERRCODE = 'undefined_column';
        END IF;
        IF EXISTS (SELECT 1 FROM pg_attribute a
                   WHERE a.attrelid = tbl AND a.attname = col AND a.attgenerated <> '') THEN
            RAISE EXCEPTION 'column "%" of relation "%" is a generated column', col, tbl
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'Row triggers that run before the update cannot see the new value of a generated column.',
                      HINT = 'Watch the columns it is generated from, or store the value in an ordinary column.';
        END IF;
    END LOOP;
    -- Every column the model's placeholders name must be there.
    SELECT d.pattern, c, a.attgenerated <> '' AS generated INTO bad
    FROM tenant_cache.dependency d
    CROSS JOIN LATERAL unnest(tenant_cache.pattern_columns(d.pattern)) AS c
    LEFT JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = c
                            AND a.attnum > 0 AND NOT a.attisdropped
    WHERE d.model = watch_table.model AND (a.attnum IS NULL OR a.attgenerated <> '')
    ORDER BY 1, 2 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pattern "%" of model "%" names column "%", which table "%" %',
            bad.pattern, watch_table.model, bad.c, tbl,
            CASE WHEN bad.generated THEN 'has only as a generated column' ELSE 'lacks' END
            USING ERRCODE = 'undefined_column',
                  DETAIL = 'A placeholder "{column}" is replaced by that column''s value in the written row; generated columns cannot be used.',
                  HINT = 'Watch the table for another model, or change the model''s patterns.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger t
               WHERE t.tgrelid = tbl
                 AND t.tgfoid = 'tenant_cache.invalidate_trigger()'::regprocedure) THEN
        RAISE EXCEPTION 'table "%" is already watched', tbl
            USING ERRCODE = 'duplicate_object',
                  HINT = 'To change how it is watched, call tenant_cache.unwatch_table() first. A partition is watched through its watched parent.';
    END IF;

    args := format('%L, %L, %L, %L, %L', watch_table.model, coalesce(tenant_column, ''),
                   coalesce(client_column, ''), coalesce(bu_column, ''),
                   coalesce(columns::text, ''));
    -- BEFORE UPDATE/DELETE: cheapest per row; named "zz_" to fire after
    -- the table's own BEFORE triggers (they fire in name order), so it sees
    -- the row they produce.
    EXECUTE format('CREATE TRIGGER zz_tenant_cache_row BEFORE UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION tenant_cache.invalidate_trigger(%s)', tbl, args);
    -- AFTER INSERT: sees defaults and keeps COPY's multi-row inserts.
    EXECUTE format('CREATE TRIGGER zz_tenant_cache_insert AFTER INSERT ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION tenant_cache.invalidate_trigger(%s)', tbl, args);
    -- TRUNCATE of the table, and of each existing partition on its own.
    FOR part IN SELECT tbl UNION SELECT relid FROM pg_partition_tree(tbl) LOOP
        EXECUTE format('CREATE TRIGGER zz_tenant_cache_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION tenant_cache.invalidate_trigger(%s)',
                       part, args);
        -- Rows applied by a logical replication subscription fire only
        -- triggers enabled ALWAYS (or REPLICA).
        IF fire_on_replica THEN
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_tenant_cache_truncate', part);
            IF part <> tbl THEN
                EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_tenant_cache_row', part);
                EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_tenant_cache_insert', part);
            END IF;
        END IF;
    END LOOP;
    IF fire_on_replica THEN
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_tenant_cache_row', tbl);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_tenant_cache_insert', tbl);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM tenant_cache.dependency d WHERE d.model = watch_table.model) THEN
        RAISE NOTICE 'model "%" has no registered dependencies yet', watch_table.model
            USING HINT = 'Writes to this table queue nothing until tenant_cache.register_dependency() names patterns for the model.';
    END IF;
END
$$;
COMMENT ON FUNCTION tenant_cache.watch_table(regclass, text, name, name, name, boolean, name[]) IS
    'Install the invalidation triggers on a table, mapping it to a model and its tenant, client and bu columns; with columns, UPDATEs changing none of them queue nothing';
REVOKE EXECUTE ON FUNCTION tenant_cache.watch_table(regclass, text, name, name, name, boolean, name[]) FROM PUBLIC;

-- watched_tables: the column filter, appended.
CREATE OR REPLACE VIEW tenant_cache.watched_tables AS
    SELECT t.tgrelid::pg_catalog.regclass AS table_name,
           a[1] AS model,
           NULLIF(a[2], '')::pg_catalog.name AS tenant_column,
           NULLIF(a[3], '')::pg_catalog.name AS client_column,
           NULLIF(a[4], '')::pg_catalog.name AS bu_column,
           c.relkind OPERATOR(pg_catalog.=) 'p' AS partitioned,
           t.tgenabled AS enabled,
           NULLIF(a[5], '')::pg_catalog.name[] AS columns
    FROM pg_catalog.pg_trigger t
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
    CROSS JOIN LATERAL tenant_cache.trigger_arguments(t.tgargs) AS a
    WHERE t.tgname OPERATOR(pg_catalog.=) 'zz_tenant_cache_row'
      AND t.tgparentid OPERATOR(pg_catalog.=) 0
      AND t.tgfoid OPERATOR(pg_catalog.=) 'tenant_cache.invalidate_trigger()'::pg_catalog.regprocedure;
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
                FROM tenant_cache.queue p WHERE p.applied_at IS NULL) AS q;
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
