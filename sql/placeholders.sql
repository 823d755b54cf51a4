-- Row placeholders "{column}", exact patterns ("...$") and the column
-- filter of watch_table.  The regression instance's worker drains another
-- database, so tenant_cache.queue shows exactly what each write queued.
\set SHOW_CONTEXT never
-- :q shows the committed queue and empties it for the next step.
\set q 'SELECT glob FROM tenant_cache.queue ORDER BY glob; TRUNCATE tenant_cache.pending, tenant_cache.inbox;'
TRUNCATE tenant_cache.pending, tenant_cache.inbox;

CREATE TABLE prefs (id int PRIMARY KEY, tenant_id int, client_id int, bu_id int,
                    user_id int, theme text, "my note" text, hits int,
                    code text GENERATED ALWAYS AS ('c' || id) STORED);

-- Patterns: a placeholder names a column; a final "$" makes the pattern
-- exact (no "*" appended); "\$" is a literal dollar; "\{" a literal brace.
SELECT tenant_cache.register_dependency('Prefs',
    ARRAY['user:{user_id}:preferences$', 'user:{user_id}:menu', 'theme:{theme}:{user_id}$'], 'bu');
SELECT tenant_cache.register_dependency('Prefs', ARRAY['price\$', 'literal:\{x\}'], 'tenant');
SELECT tenant_cache.pattern_columns('user:{user_id}:x:{theme}:{user_id}$');
SELECT tenant_cache.pattern_columns('no:placeholders:\{x}:[{y}]');

-- Pattern rules: placeholders closed and named; "$" alone is empty.
SELECT tenant_cache.check_pattern('user:{user_id');
SELECT tenant_cache.check_pattern('user:{}:x');
SELECT tenant_cache.check_pattern('user:{a{b}:x');
SELECT tenant_cache.check_pattern('user:{' || repeat('c', 64) || '}');
SELECT tenant_cache.check_pattern('$');
SELECT tenant_cache.check_pattern('a\$');
SELECT tenant_cache.check_pattern('a\\$');

-- Without a row (glob_for, invalidate_pattern, invalidate_model) a
-- placeholder is every value; exact stays exact.
SELECT tenant_cache.glob_for('user:{user_id}:preferences$', '1', '2', '3');
SELECT tenant_cache.glob_for('user:{user_id}:menu', '1');
SELECT tenant_cache.glob_for('user:42:preferences$', '1', '2', '3');
SELECT tenant_cache.glob_for('price\$', '1');
SELECT tenant_cache.glob_for('a\\$', '1');
SELECT tenant_cache.invalidate_pattern('{user_id}');
SELECT tenant_cache.invalidate_pattern('{user_id}$', '1');
:q

-- watch_table refuses a table lacking a column the model's placeholders
-- name; nothing is created.
CREATE TABLE prefs_no_user (id int PRIMARY KEY, tenant_id int, theme text);
SELECT tenant_cache.watch_table('prefs_no_user', 'Prefs');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'prefs_no_user'::regclass;

-- A generated column serves like any other (the row triggers run after
-- it is computed): as a placeholder, a scope column, a filter column.
SELECT tenant_cache.register_dependency('Generated', ARRAY['code:{code}$']);
SELECT tenant_cache.watch_table('prefs', 'Generated', 'code', columns => ARRAY['code']::name[]);
INSERT INTO prefs (id, tenant_id) VALUES (900, 1);
UPDATE prefs SET id = 901 WHERE id = 900;
UPDATE prefs SET theme = 'x' WHERE id = 901;
:q
SELECT tenant_cache.unwatch_table('prefs');
DELETE FROM prefs;
SELECT tenant_cache.unregister_dependency('Generated');

-- Column filter: unknown, NULL or empty lists are refused.
SELECT tenant_cache.watch_table('prefs', 'Prefs', 'tenant_id', 'client_id', 'bu_id',
                                columns => ARRAY['theme', 'nope']::name[]);
SELECT tenant_cache.watch_table('prefs', 'Prefs', 'tenant_id', 'client_id', 'bu_id',
                                columns => ARRAY[NULL]::name[]);
SELECT tenant_cache.watch_table('prefs', 'Prefs', 'tenant_id', 'client_id', 'bu_id',
                                columns => '{}');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'prefs'::regclass;

SELECT tenant_cache.watch_table('prefs', 'Prefs', 'tenant_id', 'client_id', 'bu_id',
                                columns => ARRAY['theme', 'my note']::name[]);
SELECT table_name, model, columns FROM tenant_cache.watched_tables WHERE model = 'Prefs';

-- register_dependency refuses a placeholder naming a column that a table
-- watched for the model lacks; nothing is registered.
SELECT tenant_cache.register_dependency('Prefs', ARRAY['ok:{theme}', 'bad:{user_name}']);
SELECT count(*) FROM tenant_cache.dependencies WHERE model = 'Prefs';

-- INSERT: the row's values replace the placeholders, escaped.
INSERT INTO prefs VALUES (1, 1, 2, 3, 42, 'dark', 'n', 0);
:q
INSERT INTO prefs VALUES (2, 1, 2, 3, 43, 'a*b', 'n', 0);
:q
-- NULL: every value ("*"), so the exact pattern is no longer exact.
INSERT INTO prefs VALUES (3, 1, 2, 3, NULL, 'dark', 'n', 0);
:q

-- Two rows with different ids in one transaction: one glob each (the
-- per-transaction dedup includes placeholder values); a repeat adds none.
BEGIN;
INSERT INTO prefs VALUES (4, 5, 5, 5, 100, 't', 'n', 0), (5, 5, 5, 5, 101, 't', 'n', 0);
INSERT INTO prefs VALUES (6, 5, 5, 5, 100, 't', 'n', 0);
COMMIT;
:q

-- UPDATE of a column that a placeholder names (theme): the old and the new
-- row's globs.
UPDATE prefs SET theme = 'light' WHERE id = 1;
:q
-- UPDATE changing the id of the exact keys: the old user's and the new
-- user's keys.
UPDATE prefs SET user_id = 44, theme = 'x' WHERE id = 1;
:q
-- UPDATE changing only columns outside the filter: nothing queued.
UPDATE prefs SET hits = hits + 1 WHERE id = 1;
:q
-- Setting a filter column to the value it has (it is in the SET list, its
-- value does not change): nothing queued.
UPDATE prefs SET theme = theme, hits = 7 WHERE id = 1;
:q
-- UPDATE of a filter column that no placeholder names (its name needs
-- quoting): the new row's globs.
UPDATE prefs SET "my note" = 'changed' WHERE id = 1;
:q
-- A value becoming NULL, and NULL becoming a value, count as changes.
UPDATE prefs SET "my note" = NULL WHERE id = 1;
:q
UPDATE prefs SET "my note" = 'back' WHERE id = 1;
:q
-- A row moved to another tenant always counts (both tenants are cleared),
-- filter or not.
UPDATE prefs SET tenant_id = 9 WHERE id = 1;
:q
-- DELETE and TRUNCATE ignore the filter.
DELETE FROM prefs WHERE id = 1;
:q
TRUNCATE prefs;
:q

-- Without a filter every UPDATE queues (1.0 behaviour).
SELECT tenant_cache.unwatch_table('prefs');
SELECT tenant_cache.watch_table('prefs', 'Prefs', 'tenant_id', 'client_id', 'bu_id');
SELECT table_name, columns FROM tenant_cache.watched_tables WHERE model = 'Prefs';
INSERT INTO prefs VALUES (7, 1, 2, 3, 42, 'dark', 'n', 0);
TRUNCATE tenant_cache.pending, tenant_cache.inbox;
UPDATE prefs SET hits = 1 WHERE id = 7;
:q

-- A pattern registered after watch_table() naming another column: the
-- row triggers are recreated to pass it, in the same transaction.
BEGIN;
SELECT tenant_cache.register_dependency('Prefs', ARRAY['hits:{hits}$'], 'tenant');
SELECT tgname FROM pg_trigger
WHERE tgrelid = 'prefs'::regclass AND pg_get_triggerdef(oid) ILIKE '%NEW.hits%' ORDER BY 1;
UPDATE prefs SET hits = 2 WHERE id = 7;
COMMIT;
:q
-- Unregistered: no longer passed, no longer queued.
SELECT tenant_cache.unregister_dependency('Prefs', ARRAY['hits:{hits}$']);
SELECT count(*) FROM pg_trigger
WHERE tgrelid = 'prefs'::regclass AND pg_get_triggerdef(oid) ILIKE '%hits%';
UPDATE prefs SET hits = 3 WHERE id = 7;
:q

-- Patterns changed behind register_dependency()'s back (the catalog table
-- written directly): the triggers do not pass the new column, and writes
-- say so rather than queue wrong globs.
INSERT INTO tenant_cache.dependency (model, pattern, scope) VALUES ('Prefs', 'hits:{hits}$', 'tenant');
UPDATE prefs SET hits = 4 WHERE id = 7;
DELETE FROM tenant_cache.dependency WHERE model = 'Prefs' AND pattern = 'hits:{hits}$';
UPDATE prefs SET hits = 5 WHERE id = 7;
:q

-- A placeholder column cannot be dropped behind tenant_cache's back: the
-- row triggers depend on it.  Renaming it is reported at the next write.
ALTER TABLE prefs DROP COLUMN user_id;
ALTER TABLE prefs RENAME COLUMN user_id TO owner_id;
INSERT INTO prefs (id, tenant_id) VALUES (8, 1);
ALTER TABLE prefs RENAME COLUMN owner_id TO user_id;
INSERT INTO prefs (id, tenant_id) VALUES (8, 1);
:q

SELECT tenant_cache.unwatch_table('prefs');
SELECT tenant_cache.unregister_dependency('Prefs');
DROP TABLE prefs, prefs_no_user;
