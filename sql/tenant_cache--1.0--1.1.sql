/* tenant_cache--1.0--1.1.sql: upgrade 1.0 to 1.1 (ALTER EXTENSION tenant_cache UPDATE) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION tenant_cache UPDATE TO '1.1'" to load this file. \quit

-- Everything below must leave a 1.0 installation identical to a fresh 1.1
-- install (sql/tenant_cache--1.1.sql); the regression test "upgrade"
-- compares the two object by object.
