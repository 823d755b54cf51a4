"""End-to-end tests of the Django example: real PostgreSQL with tenant_cache,
real redis-server, Debian's Django and django-redis.  test/django/run runs
them after "manage.py migrate".

Each test fills the two cached views (dashboard metrics, people dropdown)
for two tenants, A and B (B's id starts with A's digits: tenant 3 and 30),
writes for tenant A one way, waits until A's affected keys are gone from
Redis, then checks that the views return the new data (no stale read) and
that B's entries are still in Redis, byte for byte.

A plain unittest script on the migrated database, not Django's test runner:
TestCase runs each test in a transaction that never commits (nothing would
ever be invalidated), TransactionTestCase empties the tables with TRUNCATE
(which tenant_cache rightly turns into "clear every tenant"), and the runner
would write to a test_ database that tenant_cache.database does not name.
"""
import itertools
import os
import subprocess
import time
import unittest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

import django  # noqa: E402

django.setup()

import psycopg2  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_redis import get_redis_connection  # noqa: E402

from core.models import Asset, People, PeopleEventlog  # noqa: E402

KEY_TIMEOUT = 5.0        # seconds for an invalidation to reach Redis
DRAIN_TIMEOUT = 20.0     # seconds for the queue to empty (first one: worker start)
CLIENT_ID, BU_ID = 2, 3
TENANTS = itertools.count(1)

_admin = None


def admin_sql(query, *params):
    """Run a query as the superuser (the DBA), who may read the queue."""
    global _admin
    if _admin is None:
        db = settings.DATABASES["default"]
        _admin = psycopg2.connect(dbname=db["NAME"], host=db["HOST"], port=db["PORT"],
                                  user=os.environ.get("TC_ADMIN_USER", "postgres"))
        _admin.autocommit = True
    with _admin.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def poll(predicate, what, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def wait_queue_drained():
    """Every invalidation committed so far has been applied to Redis: the
    worker deletes a queue entry only after its SCAN/UNLINK finished."""
    poll(lambda: admin_sql("SELECT count(*) FROM tenant_cache.queue")[0][0] == 0,
         "tenant_cache.queue empty", DRAIN_TIMEOUT)


def redis_key(tenant, name):
    """The key as django-redis stores it (KEY_PREFIX myapp, VERSION 2)."""
    return f"myapp:2:tenant:{tenant}:client:{CLIENT_ID}:bu:{BU_ID}:{name}".encode()


METRICS = "dashboard:metrics"
DROPDOWN = "dropdown:people:all"


class InvalidationTest(unittest.TestCase):

    def setUp(self):
        k = next(TENANTS)
        self.a, self.b = k, 10 * k
        self.redis = get_redis_connection("default")
        self.http = Client()
        for t in (self.a, self.b):
            self.seed(t)
        # The seed's own invalidations must be applied before caches are filled.
        wait_queue_drained()
        self.expected_metrics = {"people_active": 3, "assets": 2, "assets_working": 2,
                                 "assets_assigned": 1, "events": 2}
        for t in (self.a, self.b):
            self.assertEqual(self.metrics(t), self.expected_metrics)
            self.assertEqual(self.dropdown(t), ["Ann", "Bob", "Cem"])
        self.before = {t: self.cached(t) for t in (self.a, self.b)}
        for t in (self.a, self.b):
            self.assertEqual(set(self.before[t]),
                             {redis_key(t, METRICS), redis_key(t, DROPDOWN)},
                             "the views cache under tenant:{t}:client:{c}:bu:{b}:... "
                             "with django-redis' prefix")

    # -- helpers -------------------------------------------------------------
    def seed(self, t):
        scope = {"tenant_id": t, "client_id": CLIENT_ID, "bu_id": BU_ID}
        People.objects.filter(tenant_id=t).delete()
        Asset.objects.filter(tenant_id=t).delete()
        ann, bob, _ = (People.objects.create(peoplecode=f"P{i}", peoplename=name, **scope)
                       for i, name in enumerate(["Ann", "Bob", "Cem"]))
        a1, _ = (Asset.objects.create(assetcode=f"A{i}", assetname=f"Pump {i}", **scope)
                 for i in (1, 2))
        ann.assets.add(a1, through_defaults=scope)
        for who in (ann, bob):
            PeopleEventlog.objects.create(people=who, peventtype="IN",
                                          punchintime=timezone.now(), **scope)

    def get(self, t, path):
        r = self.http.get(path, HTTP_X_TENANT_ID=str(t), HTTP_X_CLIENT_ID=str(CLIENT_ID),
                          HTTP_X_BU_ID=str(BU_ID))
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()

    def metrics(self, t):
        return self.get(t, "/dashboard/metrics/")

    def dropdown(self, t):
        return [name for _, name in self.get(t, "/dropdown/people/")["people"]]

    def cached(self, t):
        """Tenant t's entries in Redis: raw key -> raw value."""
        keys = list(self.redis.scan_iter(match=f"myapp:2:tenant:{t}:*"))
        return dict(zip(keys, self.redis.mget(keys))) if keys else {}

    def scope(self, t):
        return {"tenant_id": t, "client_id": CLIENT_ID, "bu_id": BU_ID}

    def wait_gone(self, t, *names):
        for name in names:
            key = redis_key(t, name)
            poll(lambda: not self.redis.exists(key), f"{key.decode()} invalidated", KEY_TIMEOUT)

    def assert_untouched(self, t, names=(METRICS, DROPDOWN)):
        """Once every queued invalidation is applied, t's entries are still
        there with the bytes they had before the write."""
        wait_queue_drained()
        now = self.cached(t)
        for name in names:
            key = redis_key(t, name)
            self.assertIn(key, now, f"{key.decode()} was cleared")
            self.assertEqual(now[key], self.before[t][key], f"{key.decode()} changed")

    # -- one test per kind of write -----------------------------------------
    def test_model_save(self):
        ann = People.objects.get(peoplename="Ann", **self.scope(self.a))
        ann.peoplename = "Ann Lee"
        ann.save()
        self.wait_gone(self.a, DROPDOWN, METRICS)
        self.assert_untouched(self.b)
        self.assertEqual(self.dropdown(self.a), ["Ann Lee", "Bob", "Cem"])
        self.assertEqual(self.dropdown(self.b), ["Ann", "Bob", "Cem"])

    def test_queryset_update(self):
        n = Asset.objects.filter(**self.scope(self.a)).update(runningstatus=Asset.MAINTENANCE)
        self.assertEqual(n, 2)
        self.wait_gone(self.a, METRICS)
        self.assert_untouched(self.b)
        # Asset feeds dashboard:metrics, not the people dropdown.
        self.assert_untouched(self.a, names=[DROPDOWN])
        self.assertEqual(self.metrics(self.a), {**self.expected_metrics, "assets_working": 0})
        self.assertEqual(self.metrics(self.b), self.expected_metrics)

    def test_bulk_create(self):
        bob = People.objects.get(peoplename="Bob", **self.scope(self.a))
        PeopleEventlog.objects.bulk_create(
            PeopleEventlog(people=bob, peventtype=kind, punchintime=timezone.now(),
                           **self.scope(self.a))
            for kind in ("OUT", "IN", "OUT"))
        self.wait_gone(self.a, METRICS)
        self.assert_untouched(self.b)
        self.assert_untouched(self.a, names=[DROPDOWN])
        self.assertEqual(self.metrics(self.a), {**self.expected_metrics, "events": 5})
        self.assertEqual(self.metrics(self.b), self.expected_metrics)

    def test_delete(self):
        People.objects.get(peoplename="Cem", **self.scope(self.a)).delete()
        self.wait_gone(self.a, DROPDOWN, METRICS)
        self.assert_untouched(self.b)
        self.assertEqual(self.dropdown(self.a), ["Ann", "Bob"])
        self.assertEqual(self.metrics(self.a), {**self.expected_metrics, "people_active": 2})

    def test_m2m_add_and_remove_through_table(self):
        bob = People.objects.get(peoplename="Bob", **self.scope(self.a))
        pump2 = Asset.objects.get(assetcode="A2", **self.scope(self.a))
        bob.assets.add(pump2, through_defaults=self.scope(self.a))
        self.wait_gone(self.a, METRICS)
        self.assert_untouched(self.b)
        self.assertEqual(self.metrics(self.a), {**self.expected_metrics, "assets_assigned": 2})

        bob.assets.remove(pump2)
        self.wait_gone(self.a, METRICS)
        self.assert_untouched(self.b)
        self.assertEqual(self.metrics(self.a), self.expected_metrics)

    def test_raw_sql_from_psql(self):
        # Another session, another program: no Django signal can see this.
        subprocess.run(
            [os.environ.get("PSQL", "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
             "UPDATE people_people SET peoplename = 'Bob Raw' "
             f"WHERE tenant_id = {self.a} AND peoplename = 'Bob'"],
            check=True)
        self.wait_gone(self.a, DROPDOWN, METRICS)
        self.assert_untouched(self.b)
        self.assertEqual(self.dropdown(self.a), ["Ann", "Bob Raw", "Cem"])

    def test_rolled_back_transaction_leaves_cache(self):
        with self.assertRaises(RuntimeError):
            with transaction.atomic():
                People.objects.filter(**self.scope(self.a)).update(enable=False)
                Asset.objects.filter(**self.scope(self.a)).delete()
                raise RuntimeError("roll back")
        self.assertEqual(People.objects.filter(enable=True, **self.scope(self.a)).count(), 3)
        self.assert_untouched(self.a)
        self.assert_untouched(self.b)


class WithoutTriggersTest(unittest.TestCase):
    """Control: with migration 0002 reversed (its reverse_sql unwatches the
    tables), a QuerySet.update() leaves the cached dropdown stale, which is
    what the tests above would see without tenant_cache."""

    def test_reversed_migration_leaves_stale_entries(self):
        t = next(TENANTS)
        scope = {"tenant_id": t, "client_id": CLIENT_ID, "bu_id": BU_ID}
        People.objects.filter(tenant_id=t).delete()
        People.objects.create(peoplecode="P1", peoplename="Ann", **scope)
        wait_queue_drained()
        http = Client()
        headers = {"HTTP_X_TENANT_ID": str(t), "HTTP_X_CLIENT_ID": str(CLIENT_ID),
                   "HTTP_X_BU_ID": str(BU_ID)}
        self.assertEqual(http.get("/dropdown/people/", **headers).json()["people"][0][1], "Ann")

        call_command("migrate", "core", "0001", verbosity=0)
        try:
            self.assertEqual(admin_sql("SELECT count(*) FROM tenant_cache.watched_tables"),
                             [(0,)])
            self.assertEqual(admin_sql("SELECT count(*) FROM tenant_cache.dependencies"),
                             [(0,)])
            People.objects.filter(**scope).update(peoplename="Ann Lee")
            wait_queue_drained()
            self.assertTrue(get_redis_connection("default").exists(redis_key(t, DROPDOWN)))
            self.assertEqual(http.get("/dropdown/people/", **headers).json()["people"][0][1],
                             "Ann", "stale without the triggers")
        finally:
            call_command("migrate", "core", verbosity=0)
        self.assertEqual(admin_sql("SELECT count(*) FROM tenant_cache.watched_tables"), [(4,)])
        self.assertEqual(admin_sql("SELECT count(*) FROM tenant_cache.dependencies"), [(9,)])


if __name__ == "__main__":
    unittest.main()
