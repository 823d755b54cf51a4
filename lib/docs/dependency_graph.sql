-- The README's example configuration, rendered in test/docs/dependency_graph.svg:
--   psql -X -f test/docs/dependency_graph.sql mydb
--   psql -X -Atc 'SELECT tenant_cache.dependency_graph()' mydb | dot -Tsvg > test/docs/dependency_graph.svg
CREATE TABLE people_people (id int PRIMARY KEY, tenant_id int, client_id int, bu_id int, name text);
CREATE TABLE activity_asset (id int PRIMARY KEY, tenant_id int, client_id int, bu_id int, status text);
CREATE TABLE attendance_peopleeventlog (id bigint PRIMARY KEY, tenant_id int, client_id int, bu_id int,
                                        people_id int, at timestamptz);
SELECT tenant_cache.register_dependency('People',
         ARRAY['dropdown:people', 'dashboard:metrics', 'attendance:summary']);
SELECT tenant_cache.register_dependency('Asset',
         ARRAY['dropdown:asset', 'dashboard:metrics', 'asset:status']);
SELECT tenant_cache.register_dependency('PeopleEventlog',
         ARRAY['dashboard:metrics', 'attendance:summary', 'trends:monthly']);
SELECT tenant_cache.watch_table('people_people', 'People',
         tenant_column => 'tenant_id', client_column => 'client_id', bu_column => 'bu_id');
SELECT tenant_cache.watch_table('activity_asset', 'Asset', 'tenant_id', 'client_id', 'bu_id');
SELECT tenant_cache.watch_table('attendance_peopleeventlog', 'PeopleEventlog',
         'tenant_id', 'client_id', 'bu_id');
