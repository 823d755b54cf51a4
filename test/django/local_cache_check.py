"""Helper of test/t/014_publish.pl: core.local_cache against a real Redis.

usage: local_cache_check.py REDIS_PORT CHANNEL GONE KEY...
Fills a local-memory cache (KEY_PREFIX "myapp", VERSION 2) with the KEYs,
starts core.local_cache's listener, prints "ready", waits (up to 60 s) until
the entry GONE was dropped, then prints the KEYs still cached.
"""
import os
import sys
import time

import django
from django.conf import settings

port, channel, gone, *keys = sys.argv[1:]
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
settings.configure(CACHES={
    "default": {"BACKEND": LOCMEM, "LOCATION": "default"},
    "local": {"BACKEND": LOCMEM, "LOCATION": "local",
              "KEY_PREFIX": "myapp", "VERSION": 2},
})
django.setup()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from django.core.cache import caches  # noqa: E402
from core.local_cache import start  # noqa: E402

local = caches["local"]
for key in keys:
    local.set(key, 1, None)
start(url=f"redis://127.0.0.1:{port}/0", channel=channel)
print("ready", flush=True)
deadline = time.monotonic() + 60
while local.get(gone) is not None and time.monotonic() < deadline:
    time.sleep(0.01)
print("left: " + " ".join(sorted(k for k in keys if local.get(k) is not None)),
      flush=True)
