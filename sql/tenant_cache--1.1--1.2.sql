/* tenant_cache--1.1--1.2.sql: upgrade 1.1 to 1.2 (ALTER EXTENSION tenant_cache UPDATE) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION tenant_cache UPDATE TO '1.2'" to load this file. \quit

-- Everything below must leave a 1.1 installation identical to a fresh 1.2
-- install (sql/tenant_cache--1.2.sql); the regression test "upgrade"
-- compares the two object by object.

------------------------------------------------------------------------
-- Row triggers: AFTER triggers whose WHEN clause queues the row
------------------------------------------------------------------------
-- 1.2: the WHEN clause of the row triggers.  It queues the row's globs and
-- is false, so the trigger never fires: PostgreSQL neither locks the row
-- (as for a BEFORE trigger) nor keeps an event per row (as for an AFTER
-- trigger that fires).  Anybody writing to a watched table runs it; it
-- refuses to run anywhere but in the WHEN clause of tenant_cache's triggers.
CREATE FUNCTION tenant_cache.capture_row(VARIADIC "any")
    RETURNS boolean LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'tc_capture_row';
COMMENT ON FUNCTION tenant_cache.capture_row("any") IS
    'WHEN clause of the row triggers installed by watch_table(): queues the row''s invalidations, returns false';

CREATE FUNCTION tenant_cache.model_columns(model text)
RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT c ORDER BY c), '{}')
    FROM tenant_cache.dependency d
    CROSS JOIN LATERAL unnest(tenant_cache.pattern_columns(d.pattern)) AS c
    WHERE d.model OPERATOR(pg_catalog.=) model_columns.model
$$;
COMMENT ON FUNCTION tenant_cache.model_columns(text) IS
    'The columns named by the placeholders of a model''s patterns, sorted';

-- (Re)create the row triggers of a table, for its configuration and the
-- model's current patterns.  Their WHEN clause passes capture_row() the
-- row's tableoid and the values it needs: the tenant, client and bu
-- columns, the columns named by the model's placeholders, the column
-- filter; each column once, ordered by its first role in that list, then by
-- name (as capture_row expects them); an UPDATE passes the old values, then
-- the new ones.  Nothing else: PostgreSQL parses the clause again for every
-- statement.
CREATE FUNCTION tenant_cache.install_row_triggers(
    tbl regclass, model text, tenant_column name, client_column name,
    bu_column name, columns name[], firing "char")
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    olds text;
    news text;
    n integer;
    args text;
    trg record;
    part regclass;
    ev text;
BEGIN
    SELECT coalesce(string_agg(', OLD.' || quote_ident(c.col), '' ORDER BY c.first, c.col), ''),
           coalesce(string_agg(', NEW.' || quote_ident(c.col), '' ORDER BY c.first, c.col), ''),
           count(*)
      INTO olds, news, n
    FROM (SELECT r.col, min(r.ord) AS first
          FROM (SELECT install_row_triggers.tenant_column AS col, 1 AS ord
                UNION ALL SELECT install_row_triggers.client_column, 2
                UNION ALL SELECT install_row_triggers.bu_column, 3
                UNION ALL SELECT p, 4
                          FROM unnest(tenant_cache.model_columns(install_row_triggers.model)) AS p
                UNION ALL SELECT f, 5 FROM unnest(install_row_triggers.columns) AS f) AS r
          WHERE r.col IS NOT NULL
          GROUP BY r.col) AS c;
    IF n > 48 THEN
        RAISE EXCEPTION 'table "%" would pass % columns to tenant_cache''s triggers', tbl, n
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = 'The scope, placeholder and filter columns together are limited to 48.';
    END IF;
    args := format('%L, %L, %L, %L, %L', install_row_triggers.model,
                   coalesce(tenant_column, ''), coalesce(client_column, ''),
                   coalesce(bu_column, ''), coalesce(columns::text, ''));

    FOR trg IN
        SELECT t.tgname FROM pg_trigger t
        WHERE t.tgrelid = tbl AND t.tgparentid = 0
          AND t.tgname IN ('zz_tenant_cache_row', 'zz_tenant_cache_insert',
                           'zz_tenant_cache_update', 'zz_tenant_cache_delete')
          AND t.tgfoid = 'tenant_cache.invalidate_trigger()'::regprocedure
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trg.tgname, tbl);
    END LOOP;
    EXECUTE format('CREATE TRIGGER zz_tenant_cache_insert AFTER INSERT ON %s FOR EACH ROW '
                   'WHEN (tenant_cache.capture_row(NEW.tableoid%s)) '
                   'EXECUTE FUNCTION tenant_cache.invalidate_trigger(%s)', tbl, news, args);
    EXECUTE format('CREATE TRIGGER zz_tenant_cache_update AFTER UPDATE ON %s FOR EACH ROW '
                   'WHEN (tenant_cache.capture_row(NEW.tableoid%s%s)) '
                   'EXECUTE FUNCTION tenant_cache.invalidate_trigger(%s)', tbl, olds, news, args);
    EXECUTE format('CREATE TRIGGER zz_tenant_cache_delete AFTER DELETE ON %s FOR EACH ROW '
                   'WHEN (tenant_cache.capture_row(OLD.tableoid%s)) '
                   'EXECUTE FUNCTION tenant_cache.invalidate_trigger(%s)', tbl, olds, args);
    -- Keep how the triggers fire: ALWAYS (logical replication), REPLICA, or disabled.
    IF firing <> 'O' THEN
        FOR part IN SELECT tbl UNION SELECT relid FROM pg_partition_tree(tbl) LOOP
            FOREACH ev IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
                EXECUTE format('ALTER TABLE %s %s TRIGGER zz_tenant_cache_%s', part,
                               CASE firing WHEN 'A' THEN 'ENABLE ALWAYS'
                                           WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'DISABLE' END, ev);
            END LOOP;
        END LOOP;
    END IF;
END
$$;
COMMENT ON FUNCTION tenant_cache.install_row_triggers(regclass, text, name, name, name, name[], "char") IS
    'Create the row triggers of a watched table for its configuration and its model''s patterns';

CREATE FUNCTION tenant_cache.reinstall_row_triggers(model text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w record;
BEGIN
    FOR w IN
        SELECT * FROM tenant_cache.watched_tables t
        WHERE t.model = reinstall_row_triggers.model
        ORDER BY t.table_name::text
    LOOP
        PERFORM tenant_cache.install_row_triggers(w.table_name, w.model, w.tenant_column,
            w.client_column, w.bu_column, w.columns, w.enabled);
    END LOOP;
END
$$;
COMMENT ON FUNCTION tenant_cache.reinstall_row_triggers(text) IS
    'Recreate the row triggers of the tables watched for a model (its placeholder columns changed)';

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
    WHERE t.tgname OPERATOR(pg_catalog.=) 'zz_tenant_cache_update'
      AND t.tgparentid OPERATOR(pg_catalog.=) 0
      AND t.tgfoid OPERATOR(pg_catalog.=) 'tenant_cache.invalidate_trigger()'::pg_catalog.regprocedure;

CREATE OR REPLACE FUNCTION tenant_cache.register_dependency(
    model text, patterns text[], scope text DEFAULT 'tenant')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed integer;
    bad record;
    cols_before name[];
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
    SELECT p, c, w.table_name INTO bad
    FROM unnest(patterns) AS p
    CROSS JOIN LATERAL unnest(tenant_cache.pattern_columns(p)) AS c
    JOIN tenant_cache.watched_tables w ON w.model = register_dependency.model
    LEFT JOIN pg_attribute a ON a.attrelid = w.table_name AND a.attname = c
                            AND a.attnum > 0 AND NOT a.attisdropped
    WHERE a.attnum IS NULL
    ORDER BY p, c, w.table_name::text LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pattern "%" names column "%", which table "%" watched for model "%" lacks',
            bad.p, bad.c, bad.table_name, register_dependency.model
            USING ERRCODE = 'undefined_column',
                  DETAIL = 'A placeholder "{column}" is replaced by that column''s value in the written row.',
                  HINT = 'Name a column every watched table of the model has, or escape a literal brace as "\{".';
    END IF;

    cols_before := tenant_cache.model_columns(register_dependency.model);
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
    -- The row triggers pass the columns the model's placeholders name.
    IF tenant_cache.model_columns(register_dependency.model) IS DISTINCT FROM cols_before THEN
        PERFORM tenant_cache.reinstall_row_triggers(register_dependency.model);
    END IF;
    RETURN changed;
END
$$;

CREATE OR REPLACE FUNCTION tenant_cache.unregister_dependency(model text, patterns text[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer;
    cols_before name[];
BEGIN
    IF unregister_dependency.model IS NULL THEN
        RAISE EXCEPTION 'model name must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cols_before := tenant_cache.model_columns(unregister_dependency.model);
    WITH gone AS (
        DELETE FROM tenant_cache.dependency AS d
        WHERE d.model = unregister_dependency.model
          AND (patterns IS NULL OR d.pattern = ANY (patterns))
        RETURNING 1
    )
    SELECT count(*) INTO removed FROM gone;
    IF tenant_cache.model_columns(unregister_dependency.model) IS DISTINCT FROM cols_before THEN
        PERFORM tenant_cache.reinstall_row_triggers(unregister_dependency.model);
    END IF;
    RETURN removed;
END
$$;

CREATE OR REPLACE FUNCTION tenant_cache.watch_table(
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
    END LOOP;
    -- Every column the model's placeholders name must be there.
    SELECT d.pattern, c INTO bad
    FROM tenant_cache.dependency d
    CROSS JOIN LATERAL unnest(tenant_cache.pattern_columns(d.pattern)) AS c
    LEFT JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = c
                            AND a.attnum > 0 AND NOT a.attisdropped
    WHERE d.model = watch_table.model AND a.attnum IS NULL
    ORDER BY 1, 2 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pattern "%" of model "%" names column "%", which table "%" lacks',
            bad.pattern, watch_table.model, bad.c, tbl
            USING ERRCODE = 'undefined_column',
                  DETAIL = 'A placeholder "{column}" is replaced by that column''s value in the written row.',
                  HINT = 'Watch the table for another model, or change the model''s patterns.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger t
               WHERE t.tgrelid = tbl
                 AND t.tgfoid = 'tenant_cache.invalidate_trigger()'::regprocedure) THEN
        RAISE EXCEPTION 'table "%" is already watched', tbl
            USING ERRCODE = 'duplicate_object',
                  HINT = 'To change how it is watched, call tenant_cache.unwatch_table() first. A partition is watched through its watched parent.';
    END IF;

    -- AFTER INSERT, UPDATE and DELETE row triggers whose WHEN clause queues
    -- the row (tenant_cache.capture_row) and is false.
    PERFORM tenant_cache.install_row_triggers(tbl, watch_table.model, tenant_column,
        client_column, bu_column, columns,
        CASE WHEN fire_on_replica THEN 'A' ELSE 'O' END::"char");
    args := format('%L, %L, %L, %L, %L', watch_table.model, coalesce(tenant_column, ''),
                   coalesce(client_column, ''), coalesce(bu_column, ''),
                   coalesce(columns::text, ''));
    -- TRUNCATE of the table, and of each existing partition on its own.
    FOR part IN SELECT tbl UNION SELECT relid FROM pg_partition_tree(tbl) LOOP
        EXECUTE format('CREATE TRIGGER zz_tenant_cache_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION tenant_cache.invalidate_trigger(%s)',
                       part, args);
        -- Rows applied by a logical replication subscription fire only
        -- triggers enabled ALWAYS (or REPLICA).
        IF fire_on_replica THEN
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_tenant_cache_truncate', part);
        END IF;
    END LOOP;

    IF NOT EXISTS (SELECT 1 FROM tenant_cache.dependency d WHERE d.model = watch_table.model) THEN
        RAISE NOTICE 'model "%" has no registered dependencies yet', watch_table.model
            USING HINT = 'Writes to this table queue nothing until tenant_cache.register_dependency() names patterns for the model.';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION tenant_cache.unwatch_table(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trg record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t
                   WHERE t.tgrelid = tbl AND t.tgparentid = 0
                     AND t.tgname IN ('zz_tenant_cache_update', 'zz_tenant_cache_row')
                     AND t.tgfoid = 'tenant_cache.invalidate_trigger()'::regprocedure) THEN
        RAISE EXCEPTION 'table "%" is not watched', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'See tenant_cache.watched_tables.';
    END IF;
    FOR trg IN
        SELECT t.tgrelid::regclass AS rel, t.tgname
        FROM pg_trigger t
        WHERE t.tgfoid = 'tenant_cache.invalidate_trigger()'::regprocedure
          AND t.tgparentid = 0
          AND t.tgrelid IN (SELECT tbl UNION SELECT relid FROM pg_partition_tree(tbl))
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trg.tgname, trg.rel);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION tenant_cache.on_ddl_command_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT t.tgrelid::regclass AS rel, a, t.tgenabled
        FROM pg_event_trigger_ddl_commands() AS c
        CROSS JOIN LATERAL (SELECT c.objid AS relid
                            UNION SELECT relid FROM pg_partition_tree(c.objid)) AS tree
        JOIN pg_trigger t ON t.tgrelid = tree.relid
        CROSS JOIN LATERAL tenant_cache.trigger_arguments(t.tgargs) AS a
        WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0
          AND t.tgname = 'zz_tenant_cache_update' AND t.tgparentid <> 0
          AND t.tgfoid = 'tenant_cache.invalidate_trigger()'::regprocedure
          AND NOT EXISTS (SELECT 1 FROM pg_trigger t2
                          WHERE t2.tgrelid = t.tgrelid
                            AND t2.tgname = 'zz_tenant_cache_truncate')
    LOOP
        BEGIN
            EXECUTE format('CREATE TRIGGER zz_tenant_cache_truncate AFTER TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION tenant_cache.invalidate_trigger(%L, %L, %L, %L)',
                           r.rel, r.a[1], r.a[2], r.a[3], r.a[4]);
            IF r.tgenabled = 'A' THEN
                EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_tenant_cache_truncate', r.rel);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'tenant_cache could not watch TRUNCATE on new partition %: %', r.rel, SQLERRM
                USING HINT = 'Call tenant_cache.unwatch_table() and tenant_cache.watch_table() on its parent.';
        END;
    END LOOP;
END
$$;

REVOKE EXECUTE ON FUNCTION tenant_cache.model_columns(text),
    tenant_cache.install_row_triggers(regclass, text, name, name, name, name[], "char"),
    tenant_cache.reinstall_row_triggers(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenant_cache.capture_row("any") FROM PUBLIC;
-- The WHEN clause of the row triggers runs as whoever writes to a watched table.
GRANT EXECUTE ON FUNCTION tenant_cache.capture_row("any") TO PUBLIC;

-- Roles that may register dependencies or watch tables (an application's
-- migration role, say) may run what those functions now call.
DO $grants$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT a.grantee::pg_catalog.regrole AS role
        FROM pg_catalog.pg_proc p
        CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) AS a
        WHERE p.oid OPERATOR(pg_catalog.=) ANY (ARRAY[
                'tenant_cache.register_dependency(text, text[], text)'::pg_catalog.regprocedure,
                'tenant_cache.unregister_dependency(text, text[])'::pg_catalog.regprocedure,
                'tenant_cache.watch_table(regclass, text, name, name, name, boolean, name[])'::pg_catalog.regprocedure])
          AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
          AND a.grantee OPERATOR(pg_catalog.<>) 0
          AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION tenant_cache.model_columns(text), '
            'tenant_cache.install_row_triggers(regclass, text, name, name, name, name[], "char"), '
            'tenant_cache.reinstall_row_triggers(text) TO %s', r.role);
    END LOOP;
END
$grants$;

-- Replace the row triggers of every watched table (1.1: BEFORE UPDATE OR
-- DELETE and AFTER INSERT, without WHEN clause), keeping how they fire.
DO $convert$
DECLARE
    w record;
BEGIN
    FOR w IN
        SELECT t.tgrelid::pg_catalog.regclass AS tbl, a, t.tgenabled
        FROM pg_catalog.pg_trigger t
        CROSS JOIN LATERAL tenant_cache.trigger_arguments(t.tgargs) AS a
        WHERE t.tgname OPERATOR(pg_catalog.=) 'zz_tenant_cache_row'
          AND t.tgparentid OPERATOR(pg_catalog.=) 0
          AND t.tgfoid OPERATOR(pg_catalog.=) 'tenant_cache.invalidate_trigger()'::pg_catalog.regprocedure
        ORDER BY t.tgrelid
    LOOP
        PERFORM tenant_cache.install_row_triggers(w.tbl, w.a[1],
            NULLIF(w.a[2], ''), NULLIF(w.a[3], ''),
            NULLIF(w.a[4], ''), NULLIF(w.a[5], '')::pg_catalog.name[],
            w.tgenabled);
    END LOOP;
END
$convert$;
