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
