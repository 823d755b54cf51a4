"""Print the tenant_cache.key_format matching this project's cache keys."""
from django.core.management.base import BaseCommand, CommandError

from core.caching import tenant_cache_key_format


class Command(BaseCommand):
    help = "Print the tenant_cache.key_format for postgresql.conf, from CACHES['default']."

    def handle(self, *args, **options):
        try:
            self.stdout.write(tenant_cache_key_format())
        except ValueError as e:
            raise CommandError(str(e))
