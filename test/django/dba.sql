-- Run once by the DBA, as a superuser, in the app's database (myapp),
-- before "manage.py migrate".  The app's role (myapp) needs no superuser
-- rights: these grants let its migration register the dependency map and
-- put the triggers on the tables it owns.  test/django/run runs this file.
CREATE EXTENSION IF NOT EXISTS tenant_cache;

GRANT USAGE ON SCHEMA tenant_cache TO myapp;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_cache.dependency TO myapp;
-- register_dependency and watch_table check placeholders against the
-- watched tables' columns.
GRANT SELECT ON tenant_cache.watched_tables TO myapp;
GRANT EXECUTE ON FUNCTION
    tenant_cache.register_dependency(text, text[], text),
    tenant_cache.unregister_dependency(text, text[]),
    tenant_cache.check_pattern(text),
    tenant_cache.pattern_columns(text),
    tenant_cache.trigger_arguments(bytea),
    tenant_cache.watch_table(regclass, text, name, name, name, boolean, name[]),
    tenant_cache.unwatch_table(regclass),
    tenant_cache.invalidate_trigger(),
    tenant_cache.model_columns(text),
    tenant_cache.install_row_triggers(regclass, text, name, name, name, name[], "char"),
    tenant_cache.reinstall_row_triggers(text)
  TO myapp;
