"""Drop Django local-memory cache entries when tenant_cache announces a glob.

Redis' UNLINK cannot reach a per-process cache.  With
tenant_cache.publish_channel set, the worker PUBLISHes a JSON message per
glob it applied; start() listens in a thread and deletes the entries of
caches["local"] whose keys match.  The local cache must use the KEY_PREFIX
and VERSION of the Redis cache, so that its keys are the Redis keys.
"""
import fnmatch
import json
import re
import threading

import redis
from django.core.cache import caches


def drop_local_entries(glob, cache):
    """Delete the LocMemCache entries whose keys match a Redis glob."""
    pattern = re.sub(r"\\(.)", r"[\1]", glob)  # Redis' \x escapes, fnmatch's way
    with cache._lock:  # LocMemCache internals: its dict, lock and _delete()
        for key in [k for k in cache._cache if fnmatch.fnmatchcase(k, pattern)]:
            cache._delete(key)


def listen(url="redis://127.0.0.1:6379/0", channel="tenant_cache", alias="local"):
    pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    for message in pubsub.listen():
        drop_local_entries(json.loads(message["data"])["glob"], caches[alias])


def start(**kwargs):
    """Once per process, e.g. in AppConfig.ready()."""
    threading.Thread(target=listen, kwargs=kwargs, daemon=True).start()
