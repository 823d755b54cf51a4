"""Let tenant_cache invalidate the app's caches on writes to these tables.

Registers the app's dependency map (model -> cache patterns) and puts
tenant_cache's triggers on the tables.  The extension itself is created by
the DBA, as a superuser, who also grants this role what these calls need
(test/django/dba.sql).
"""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [("core", "0001_initial")]

    operations = [
        migrations.RunSQL(
            sql=[
                """SELECT tenant_cache.register_dependency('People',
                       ARRAY['dropdown:people', 'dashboard:metrics', 'attendance:summary'])""",
                """SELECT tenant_cache.register_dependency('Asset',
                       ARRAY['dropdown:asset', 'dashboard:metrics', 'asset:status'])""",
                """SELECT tenant_cache.register_dependency('PeopleEventlog',
                       ARRAY['dashboard:metrics', 'attendance:summary', 'trends:monthly'])""",
                "SELECT tenant_cache.watch_table('people_people', 'People', "
                "'tenant_id', 'client_id', 'bu_id')",
                # People.assets' through table: a change of someone's assets
                # is a change of People (what m2m_changed used to signal).
                "SELECT tenant_cache.watch_table('people_assetassignment', 'People', "
                "'tenant_id', 'client_id', 'bu_id')",
                "SELECT tenant_cache.watch_table('activity_asset', 'Asset', "
                "'tenant_id', 'client_id', 'bu_id')",
                "SELECT tenant_cache.watch_table('attendance_peopleeventlog', 'PeopleEventlog', "
                "'tenant_id', 'client_id', 'bu_id')",
            ],
            reverse_sql=[
                "SELECT tenant_cache.unwatch_table('attendance_peopleeventlog')",
                "SELECT tenant_cache.unwatch_table('activity_asset')",
                "SELECT tenant_cache.unwatch_table('people_assetassignment')",
                "SELECT tenant_cache.unwatch_table('people_people')",
                """SELECT tenant_cache.unregister_dependency('PeopleEventlog',
                       ARRAY['dashboard:metrics', 'attendance:summary', 'trends:monthly'])""",
                """SELECT tenant_cache.unregister_dependency('Asset',
                       ARRAY['dropdown:asset', 'dashboard:metrics', 'asset:status'])""",
                """SELECT tenant_cache.unregister_dependency('People',
                       ARRAY['dropdown:people', 'dashboard:metrics', 'attendance:summary'])""",
            ],
        ),
    ]
