-- Administration API: dependencies, watched tables, manual invalidation.
\set SHOW_CONTEXT never

-- register_dependency returns the number of pairs added or changed.
SELECT tenant_cache.register_dependency('People',
    ARRAY['dropdown:people', 'dashboard:metrics', 'attendance:summary']);
SELECT tenant_cache.register_dependency('People', ARRAY['dropdown:people']);
SELECT tenant_cache.register_dependency('People', ARRAY['dropdown:people'], 'client');
SELECT tenant_cache.register_dependency('Asset',
    ARRAY['dropdown:asset', 'dashboard:metrics', 'asset:status', 'asset:status'], 'bu');
SELECT tenant_cache.register_dependency('PeopleEventlog',
    ARRAY['dashboard:metrics', 'attendance:summary', 'trends:monthly']);
SELECT tenant_cache.register_dependency('Holiday', ARRAY['calendar:holidays'], 'global');
SELECT * FROM tenant_cache.dependencies ORDER BY model, pattern;

-- Bad input: clear errors, nothing changed.
SELECT tenant_cache.register_dependency('People', ARRAY['x'], 'tenants');
SELECT tenant_cache.register_dependency('People', ARRAY[]::text[]);
SELECT tenant_cache.register_dependency('People', NULL);
SELECT tenant_cache.register_dependency('People', ARRAY['ok:pattern', NULL]);
SELECT tenant_cache.register_dependency('People', ARRAY['ok:pattern', '']);
SELECT tenant_cache.register_dependency('', ARRAY['x']);
SELECT tenant_cache.register_dependency(repeat('m', 201), ARRAY['x']);
SELECT tenant_cache.register_dependency('People', ARRAY['ok:pattern', repeat('p', 1025)]);
SELECT tenant_cache.register_dependency('People', ARRAY['ends:with\']);
SELECT tenant_cache.register_dependency('People', ARRAY['ends:with\\\']);
SELECT count(*) FROM tenant_cache.dependencies;
-- An escaped trailing backslash is fine.
SELECT tenant_cache.register_dependency('Escaped', ARRAY['a\\']);
SELECT tenant_cache.unregister_dependency('Escaped');

-- unregister_dependency: some patterns, then all of a model.
SELECT tenant_cache.unregister_dependency('People', ARRAY['attendance:summary', 'no:such']);
SELECT tenant_cache.unregister_dependency('Holiday');
SELECT tenant_cache.unregister_dependency('NoSuchModel');
SELECT model, pattern, scope FROM tenant_cache.dependencies ORDER BY model, pattern;

-- glob_for shows what invalidate_pattern would queue: values escaped,
-- NULL is every value, the pattern (a glob) is followed by '*'.
SELECT tenant_cache.glob_for('dropdown:people', '1');
SELECT tenant_cache.glob_for('dropdown:people', '1', '2', '3');
SELECT tenant_cache.glob_for('dashboard', NULL, '2');
SELECT tenant_cache.glob_for('report:*');
SELECT tenant_cache.glob_for('x', 'a*b?c[d]e\f');
SELECT tenant_cache.glob_for('x', '');
SELECT tenant_cache.glob_for('');
SELECT tenant_cache.glob_for(repeat('p', 1025));
SELECT tenant_cache.glob_for('a*b*c*d*e*f*g*h*');
SELECT tenant_cache.glob_for('a*b*c*d*e*f*g*h*i*');
SELECT tenant_cache.register_dependency('People', ARRAY['a*b*c*d*e*f*g*h*i*']);
SELECT tenant_cache.check_pattern('fine:pattern');
SELECT tenant_cache.glob_for('foo[*');
SELECT tenant_cache.glob_for('foo[ab\]');
SELECT tenant_cache.glob_for('a[bc]*');
SELECT tenant_cache.glob_for('a[*]');
SELECT tenant_cache.glob_for('a\[b*');
SELECT tenant_cache.glob_for('odd\');
SELECT tenant_cache.glob_for('even\\');

-- A value containing the separator that follows its placeholder in
-- key_format (":client:" after {tenant}, so ":") is refused: its keys could
-- be matched by another tenant's globs.
SELECT tenant_cache.glob_for('x', '1:client:2');
SELECT tenant_cache.glob_for('x', '1', 'a:b');
SELECT tenant_cache.glob_for('x', '1', '2', '3:4');

-- Wildcards everywhere would clear every key of every tenant: only with force.
BEGIN;
SELECT tenant_cache.invalidate_pattern('*');
ROLLBACK;
BEGIN;
SELECT tenant_cache.invalidate_pattern('?*');
ROLLBACK;
BEGIN;
SELECT tenant_cache.invalidate_pattern('*', force => true);
SELECT tenant_cache.invalidate_pattern('*', '1');
SELECT tenant_cache.invalidate_pattern('*', NULL, '2');
SELECT count(*) AS queued_in_xact FROM tenant_cache.queue;
ROLLBACK;

-- watch_table
CREATE TABLE people (
    id int PRIMARY KEY, tenant_id int, client_id int, bu_id int, name text);
CREATE TABLE asset (
    id int PRIMARY KEY, tenant_id text, client_id text, bu_id text, status text);
CREATE VIEW people_view AS SELECT * FROM people;
CREATE SEQUENCE some_seq;

SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
SELECT tenant_cache.watch_table('asset', 'Asset', client_column => 'client_id', bu_column => 'bu_id');
SELECT * FROM tenant_cache.watched_tables ORDER BY table_name::text;
SELECT tgname, tgtype, tgenabled FROM pg_trigger
WHERE tgrelid = 'people'::regclass ORDER BY tgname;

-- Bad input: clear errors, nothing changed.
SELECT tenant_cache.watch_table('people', 'People');
SELECT tenant_cache.watch_table('people_view', 'People');
SELECT tenant_cache.watch_table('some_seq', 'People');
SELECT tenant_cache.watch_table('no_such_table', 'People');
CREATE TABLE other (id int, tenant int);
SELECT tenant_cache.watch_table('other', 'People');
SELECT tenant_cache.watch_table('other', 'People', 'tenant', 'no_client');
SELECT tenant_cache.watch_table('other', '');
SELECT tenant_cache.watch_table('other', NULL);
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'other'::regclass;

-- A generated tenant column is watched like any other (the row triggers
-- see the row after it is computed).
CREATE TABLE gen (id int, t int, tenant_id int GENERATED ALWAYS AS (t * 10) STORED);
SELECT tenant_cache.watch_table('gen', 'People');
TRUNCATE tenant_cache.pending, tenant_cache.inbox;
INSERT INTO gen (id, t) VALUES (1, 4);
SELECT DISTINCT glob FROM tenant_cache.queue WHERE glob LIKE 'tenant:40:%' ORDER BY 1;
TRUNCATE tenant_cache.pending, tenant_cache.inbox;
DROP TABLE gen;

-- A model without dependencies can be watched, with a notice.
SELECT tenant_cache.watch_table('other', 'Unregistered', 'tenant');
SELECT tenant_cache.unwatch_table('other');
SELECT tenant_cache.unwatch_table('other');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'other'::regclass;

-- A table without a tenant column: every write clears every tenant.
SELECT tenant_cache.watch_table('other', 'People', NULL);
SELECT table_name, model, tenant_column FROM tenant_cache.watched_tables
WHERE table_name = 'other'::regclass;
SELECT tenant_cache.unwatch_table('other');

-- A dropped table leaves nothing behind.
CREATE TABLE short_lived (tenant_id int);
SELECT tenant_cache.watch_table('short_lived', 'People');
DROP TABLE short_lived;
SELECT count(*) FROM tenant_cache.watched_tables;

-- invalidate_model: unknown model, bad input.
SELECT tenant_cache.invalidate_model('NoSuchModel');
SELECT tenant_cache.invalidate_model('');
SELECT tenant_cache.invalidate_pattern('');
SELECT tenant_cache.invalidate_pattern(NULL);
SELECT count(*) FROM tenant_cache.queue;
