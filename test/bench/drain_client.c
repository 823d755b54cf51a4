/*
 * drain_client.c
 *		Measuring client of the drain benchmark (test/t/013_drain_bench.pl,
 *		test/bench/drain): libpq and hiredis, blocking, timed with
 *		CLOCK_MONOTONIC.  Each subcommand prints one line of "name value"
 *		pairs for the TAP file to parse.
 *
 *   drain_client load PORT NKEYS NTENANTS
 *       FLUSHALL, then NKEYS keys "tenant:T:client:C:bu:1:CAT:I" spread over
 *       NTENANTS tenants (5 categories: dash, list, report, prefs, misc).
 *   drain_client floor PORT
 *       Seconds of one bare "SCAN cursor MATCH x COUNT 1000" iteration over
 *       the keyspace (no key matches): the median of 5 runs.
 *   drain_client drain PORT CONNINFO NGLOBS [TENANTS]
 *       One transaction queues invalidate_pattern('dash', T) for tenants
 *       1..NGLOBS, or for the tenants of the comma-separated list TENANTS
 *       (NGLOBS of them): NGLOBS distinct SCAN globs; prints the seconds
 *       from its COMMIT to the queue being empty.
 *   drain_client loadexact PORT NKEYS
 *       FLUSHALL, then NKEYS keys "tenant:T:client:1:bu:1:user:U:prefs",
 *       U = 1..NKEYS, T = U % 100.
 *   drain_client latency PORT CONNINFO NSAMPLES
 *       NSAMPLES times, one at a time: UPDATE one row of table profiles
 *       (watched for the model of "user:{user_id}:prefs$", scope bu) and
 *       poll EXISTS on its key until it is gone; prints p50, p99 and max of
 *       the time from the COMMIT's return to the key gone, in ms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#define POLL_US 500				/* between two polls of the queue */

static const char *const categories[] = {"dash", "list", "report", "prefs", "misc"};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "drain_client: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	exit(2);
}

static redisContext *
redis_connect(int port)
{
	redisContext *c = redisConnect("127.0.0.1", port);

	if (c == NULL || c->err)
		die("cannot connect to Redis", c ? c->errstr : "out of memory");
	return c;
}

static redisReply *
redis_cmd(redisContext *c, const char *fmt, const char *arg)
{
	redisReply *r = redisCommand(c, fmt, arg);

	if (r == NULL)
		die("Redis command failed", c->errstr);
	if (r->type == REDIS_REPLY_ERROR)
		die("Redis refused a command", r->str);
	return r;
}

static PGconn *
pg_connect(const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);

	if (PQstatus(conn) != CONNECTION_OK)
		die("cannot connect to PostgreSQL", PQerrorMessage(conn));
	return conn;
}

static PGresult *
pg_exec(PGconn *conn, const char *sql, ExecStatusType want)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != want)
		die("query failed", PQerrorMessage(conn));
	return res;
}

/* Pipelined SETs, 1000 replies at a time. */
static void
load(redisContext *c, long nkeys, long ntenants, int exact)
{
	long		pending = 0;
	char		key[160];

	freeReplyObject(redis_cmd(c, "FLUSHALL", NULL));
	for (long i = 0; i < nkeys; i++)
	{
		if (exact)
			snprintf(key, sizeof(key), "tenant:%ld:client:1:bu:1:user:%ld:prefs",
					 (i + 1) % 100, i + 1);
		else
			snprintf(key, sizeof(key), "tenant:%ld:client:%ld:bu:1:%s:%ld",
					 i % ntenants + 1, (i / ntenants) % 3 + 1,
					 categories[(i / ntenants / 3) % 5], i);
		redisAppendCommand(c, "SET %s 1", key);
		if (++pending == 1000 || i + 1 == nkeys)
		{
			for (; pending > 0; pending--)
			{
				redisReply *r;

				if (redisGetReply(c, (void **) &r) != REDIS_OK || r->type == REDIS_REPLY_ERROR)
					die("SET failed", NULL);
				freeReplyObject(r);
			}
		}
	}
	printf("loaded %ld\n", nkeys);
}

static double
scan_pass(redisContext *c)
{
	char		cursor[32] = "0";
	double		t0 = now();

	do
	{
		redisReply *r = redisCommand(c, "SCAN %s MATCH x COUNT 1000", cursor);

		if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
			die("SCAN failed", NULL);
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	return now() - t0;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

static void
floor_pass(redisContext *c)
{
	double		t[5];

	for (int i = 0; i < 5; i++)
		t[i] = scan_pass(c);
	qsort(t, 5, sizeof(double), cmp_double);
	printf("floor_s %.6f\n", t[2]);
}

static void
drain(PGconn *pg, long nglobs, const char *tenants)
{
	char		sql[512];
	double		t0,
				waited;
	PGresult   *res;

	/*
	 * The poll is prepared and runs every POLL_US: on two cores a client
	 * polling as fast as it can takes CPU from the worker and Redis.
	 */
	PQclear(PQprepare(pg, "poll", "SELECT NOT EXISTS (SELECT 1 FROM tenant_cache.queue)",
					  0, NULL));
	PQclear(pg_exec(pg, "BEGIN", PGRES_COMMAND_OK));
	if (tenants != NULL && strspn(tenants, "0123456789,") == strlen(tenants))
		snprintf(sql, sizeof(sql),
				 "SELECT count(tenant_cache.invalidate_pattern('dash', t::text)) "
				 "FROM unnest('{%s}'::int[]) t", tenants);
	else if (tenants != NULL)
		die("bad tenant list", tenants);
	else
		snprintf(sql, sizeof(sql),
				 "SELECT count(tenant_cache.invalidate_pattern('dash', t::text)) "
				 "FROM generate_series(1, %ld) t", nglobs);
	PQclear(pg_exec(pg, sql, PGRES_TUPLES_OK));
	PQclear(pg_exec(pg, "COMMIT", PGRES_COMMAND_OK));
	t0 = now();
	for (;;)
	{
		int			empty;

		res = PQexecPrepared(pg, "poll", 0, NULL, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			die("query failed", PQerrorMessage(pg));
		empty = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
		waited = now() - t0;
		if (empty)
			break;
		if (waited > 600)
			die("the queue did not drain within 600 s", NULL);
		usleep(getenv("DRAIN_POLL_US") ? atoi(getenv("DRAIN_POLL_US")) : POLL_US);
	}
	printf("drain_s %.6f\n", waited);
}

static void
latency(redisContext *c, PGconn *pg, long nsamples)
{
	double	   *ms = malloc(sizeof(double) * nsamples);
	char		sql[128];
	char		key[128];

	for (long i = 0; i < nsamples; i++)
	{
		long		id = i + 1;
		double		t0;

		snprintf(key, sizeof(key), "tenant:%ld:client:1:bu:1:user:%ld:prefs", id % 100, id);
		snprintf(sql, sizeof(sql),
				 "UPDATE profiles SET theme = 'v%ld' WHERE id = %ld", i, id);
		PQclear(pg_exec(pg, sql, PGRES_COMMAND_OK));
		t0 = now();
		for (;;)
		{
			redisReply *r = redis_cmd(c, "EXISTS %s", key);
			long long	n = r->integer;

			freeReplyObject(r);
			if (n == 0)
				break;
			if (now() - t0 > 30)
				die("a key was not cleared within 30 s", key);
		}
		ms[i] = (now() - t0) * 1000;
	}
	qsort(ms, nsamples, sizeof(double), cmp_double);
	printf("p50_ms %.3f p99_ms %.3f max_ms %.3f samples %ld\n",
		   ms[(nsamples - 1) / 2], ms[(long) ((nsamples - 1) * 0.99)],
		   ms[nsamples - 1], nsamples);
	free(ms);
}

int
main(int argc, char **argv)
{
	redisContext *c;

	if (argc < 3)
		die("usage: drain_client load|floor|drain|loadexact|latency PORT ...", NULL);
	c = redis_connect(atoi(argv[2]));
	if (strcmp(argv[1], "load") == 0 && argc == 5)
		load(c, atol(argv[3]), atol(argv[4]), 0);
	else if (strcmp(argv[1], "loadexact") == 0 && argc == 4)
		load(c, atol(argv[3]), 0, 1);
	else if (strcmp(argv[1], "floor") == 0 && argc == 3)
		floor_pass(c);
	else if (strcmp(argv[1], "drain") == 0 && (argc == 5 || argc == 6))
		drain(pg_connect(argv[3]), atol(argv[4]), argc == 6 ? argv[5] : NULL);
	else if (strcmp(argv[1], "latency") == 0 && argc == 5)
		latency(c, pg_connect(argv[3]), atol(argv[4]));
	else
		die("bad arguments", NULL);
	redisFree(c);
	return 0;
}
