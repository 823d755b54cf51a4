"""Settings of the tenant_cache Django example.

The database and Redis come from the environment (test/django/run sets
them for its throwaway servers): PGHOST, PGPORT, PGDATABASE, PGUSER and
REDIS_URL.
"""
import os

SECRET_KEY = "tenant-cache-example-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = ["core"]
MIDDLEWARE = ["core.middleware.TenantMiddleware"]
ROOT_URLCONF = "example.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PGDATABASE", "myapp"),
        "USER": os.environ.get("PGUSER", "myapp"),
        "HOST": os.environ.get("PGHOST", ""),
        "PORT": os.environ.get("PGPORT", ""),
    }
}

# django-redis stores cache.set("tenant:1:client:2:bu:3:dashboard:metrics")
# in Redis as "myapp:2:tenant:1:client:2:bu:3:dashboard:metrics"
# (KEY_PREFIX:VERSION:key).  tenant_cache.key_format must say the same:
#   tenant_cache.key_format = 'myapp:2:tenant:{tenant}:client:{client}:bu:{bu}:{pattern}'
# "python3 manage.py tenant_cache_key_format" prints it from these settings.
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": "myapp",
        "VERSION": 2,
        "TIMEOUT": 15 * 60,
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
    }
}

CACHE_TIMEOUTS = {
    "DASHBOARD_METRICS": 15 * 60,
    "DROPDOWN_DATA": 30 * 60,
}
