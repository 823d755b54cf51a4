/*-------------------------------------------------------------------------
 *
 * toolbox.c
 *		SQL toolbox for operators: health(), redis_info(), explore(),
 *		count_keys(), memory_by_pattern(), invalidate_all().
 *
 * The functions that talk to Redis open their own short-lived connection
 * from the calling backend through redis.c (same settings, timeouts and
 * latch-aware waits as the worker; the password is read from the password
 * file and never kept or shown), and always close it, on error too.  Work
 * on Redis is bounded: explore() by max_keys, and every SCAN walk by
 * tenant_cache.toolbox_time_limit_ms, after which the result says it is
 * incomplete.  Globs are built exactly as invalidate_pattern() builds them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <hiredis/hiredis.h>

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "globmatch.h"

#include "tenant_cache.h"

PG_FUNCTION_INFO_V1(tc_health);
PG_FUNCTION_INFO_V1(tc_redis_info);
PG_FUNCTION_INFO_V1(tc_explore);
PG_FUNCTION_INFO_V1(tc_count_keys);
PG_FUNCTION_INFO_V1(tc_memory_by_pattern);
PG_FUNCTION_INFO_V1(tc_invalidate_all);

int			tc_health_max_queue_age_ms = 60000;
int			tc_toolbox_time_limit_ms = 10000;

#define TC_EXPLORE_MAX_KEYS 100000

void
tc_toolbox_init(void)
{
	DefineCustomIntVariable("tenant_cache.health_max_queue_age_ms",
							gettext_noop("Queue age above which tenant_cache.health() reports degraded."),
							NULL, &tc_health_max_queue_age_ms, 60000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("tenant_cache.toolbox_time_limit_ms",
							gettext_noop("Time limit of one SCAN walk by explore(), count_keys() and memory_by_pattern()."),
							NULL, &tc_toolbox_time_limit_ms, 10000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------
 * Connection and commands
 * ---------------------------------------------------------------------
 */

/* An error message from redis.c or Redis as a sentence for errdetail. */
static const char *
sentence(const char *err)
{
	size_t		len = strlen(err);

	if (len > 0 && err[len - 1] == '.')
		return err;
	return psprintf("%s.", err);
}

static void
toolbox_connect(void)
{
	char	   *err = NULL;

	if (!tc_redis_connect(&err))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not reach Redis at %s", tc_redis_endpoint(tc_redis_host, tc_redis_port)),
				 errdetail("%s", sentence(err)),
				 errhint("The toolbox connects with the worker's settings (tenant_cache.redis_host, redis_port, redis_db, redis_username, redis_password_file) and timeouts; check that Redis runs there.")));
}

static void
redis_failed(TcRedisStatus st, const char *err)
{
	if (st == TC_REDIS_ERROR_REPLY)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("Redis refused a command of the tenant_cache toolbox"),
				 errdetail("%s", sentence(err)),
				 errhint("With a Redis ACL user, the toolbox needs +ping +info +scan +type +pttl +memory|usage besides the worker's commands.")));
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("lost the connection to Redis at %s", tc_redis_endpoint(tc_redis_host, tc_redis_port)),
			 errdetail("%s", sentence(err))));
}

/* Run one command; errors are raised.  The caller frees the reply. */
static redisReply *
command(int argc, const char **argv)
{
	size_t	   *lens = palloc(sizeof(size_t) * argc);
	redisReply *reply;
	char	   *err;
	TcRedisStatus st;

	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	st = tc_redis_command(argc, argv, lens, &reply, &err);
	if (st != TC_REDIS_OK)
		redis_failed(st, err);
	pfree(lens);
	return reply;
}

/* One SCAN walk: cursor, glob, deadline. */
typedef struct ScanWalk
{
	char		cursor[32];
	const char *glob;
	TimestampTz deadline;
	bool		done;			/* Redis returned cursor 0 */
} ScanWalk;

static void
scan_begin(ScanWalk *walk, const char *glob)
{
	strcpy(walk->cursor, "0");
	walk->glob = glob;
	walk->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												 tc_toolbox_time_limit_ms);
	walk->done = false;
}

static bool
scan_time_left(ScanWalk *walk)
{
	return GetCurrentTimestamp() < walk->deadline;
}

/* The next SCAN page: the reply, whose element[1] holds the keys. */
static redisReply *
scan_next(ScanWalk *walk)
{
	char		count[16];
	const char *argv[6] = {"SCAN", walk->cursor, "MATCH", walk->glob, "COUNT", count};
	redisReply *reply;

	snprintf(count, sizeof(count), "%d", tc_scan_count);
	reply = command(6, argv);
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		reply->element[0]->type != REDIS_REPLY_STRING ||
		reply->element[1]->type != REDIS_REPLY_ARRAY ||
		reply->element[0]->len >= sizeof(walk->cursor))
	{
		freeReplyObject(reply);
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("unexpected reply to Redis SCAN")));
	}
	strcpy(walk->cursor, reply->element[0]->str);
	walk->done = strcmp(walk->cursor, "0") == 0;
	return reply;
}

/* A Redis key as text: as is when valid, otherwise with \xNN escapes. */
static text *
key_text(const char *key, size_t len)
{
	StringInfoData buf;

	if (memchr(key, '\0', len) == NULL && pg_verifymbstr(key, len, true))
		return cstring_to_text_with_len(key, len);
	initStringInfo(&buf);
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = key[i];

		if (c == '\\')
			appendStringInfoString(&buf, "\\\\");
		else if (c >= 0x20 && c < 0x7f)
			appendStringInfoChar(&buf, c);
		else
			appendStringInfo(&buf, "\\x%02x", c);
	}
	return cstring_to_text(buf.data);
}

/* ---------------------------------------------------------------------
 * Globs, built as invalidate_pattern() builds them
 * ---------------------------------------------------------------------
 */

static char *
call_glob(const char *pattern, const char *tenant, const char *client,
		  const char *bu)
{
	const char *values[TC_NLEVELS] = {tenant, client, bu};
	StringInfoData buf;

	initStringInfo(&buf);
	tc_call_glob(&buf, pattern, values);
	return buf.data;
}

/* The glob of every key of key_format, for every tenant. */
static char *
all_keys_glob(void)
{
	return call_glob("*", NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------
 * health()
 * ---------------------------------------------------------------------
 */

typedef struct QueueHealth
{
	int64		waiting;		/* entries not yet applied */
	double		oldest_ms;		/* age of the oldest of them; -1: none */
	int64		failing;		/* entries that failed at least once */
	char	   *last_error;		/* of the most recent failing entry */
} QueueHealth;

static void
read_queue_health(QueueHealth *q)
{
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	MemoryContext caller = CurrentMemoryContext;
	char	   *err;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT pg_catalog.count(*) FILTER (WHERE applied_at IS NULL), "
					"  pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) "
					"    pg_catalog.min(enqueued_at) FILTER (WHERE applied_at IS NULL)), "
					"  pg_catalog.count(*) FILTER (WHERE attempts OPERATOR(pg_catalog.>) 0), "
					"  (SELECT p.last_error FROM tenant_cache.pending p "
					"   WHERE p.last_error IS NOT NULL ORDER BY p.id DESC LIMIT 1) "
					"FROM tenant_cache.pending", true, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read tenant_cache.pending");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	q->waiting = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	q->oldest_ms = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull)) * 1000.0;
	if (isnull)
		q->oldest_ms = -1;
	q->failing = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	err = SPI_getvalue(tup, desc, 4);
	q->last_error = err ? MemoryContextStrdup(caller, err) : NULL;
	SPI_finish();
}

/* NULL when Redis answers PING; otherwise why not. */
static char *
redis_ping_error(void)
{
	char	   *err = NULL;
	const char *argv[1] = {"PING"};
	size_t		lens[1] = {4};
	redisReply *reply = NULL;

	PG_TRY();
	{
		if (tc_redis_connect(&err) &&
			tc_redis_command(1, argv, lens, &reply, &err) == TC_REDIS_OK)
			err = NULL;
		if (reply != NULL)
			freeReplyObject(reply);
	}
	PG_FINALLY();
	{
		tc_redis_disconnect();
	}
	PG_END_TRY();
	return err;
}

static void
add_reason(StringInfo buf, const char *fmt,...) pg_attribute_printf(2, 3);

static void
add_reason(StringInfo buf, const char *fmt,...)
{
	va_list		args;
	int			needed;

	if (buf->len > 0)
		appendStringInfoString(buf, "; ");
	for (;;)
	{
		va_start(args, fmt);
		needed = appendStringInfoVA(buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(buf, needed);
	}
}

/*
 * health() RETURNS TABLE(status text, message text): one row, "down" when
 * invalidations cannot be applied at all (no worker for this database,
 * Redis unreachable), "degraded" when they are late or failing, "healthy"
 * otherwise; message gives every reason found.
 */
Datum
tc_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TcWorkerStatus ws = {0};
	QueueHealth q;
	StringInfoData down;
	StringInfoData degraded;
	char	   *dbname = get_database_name(MyDatabaseId);
	bool		have_worker;
	char	   *redis_err;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	const char *status;
	const char *message;

	InitMaterializedSRF(fcinfo, 0);
	initStringInfo(&down);
	initStringInfo(&degraded);

	have_worker = tc_stats_worker_status(&ws);
	if (!have_worker)
		add_reason(&down, "no worker: tenant_cache is not in shared_preload_libraries");
	else if (ws.pid == 0)
		add_reason(&down, "the worker is not running");
	if (tc_database_index(dbname) < 0)
	{
		if (tc_ndatabases == 1)
			add_reason(&down, "the worker drains database \"%s\", not \"%s\"",
					   tc_databases[0], dbname);
		else
			add_reason(&down, "no worker drains database \"%s\" (tenant_cache.database is \"%s\")",
					   dbname, tc_database);
	}

	redis_err = redis_ping_error();
	if (redis_err != NULL)
		add_reason(&down, "Redis at %s is unreachable: %s",
				   tc_redis_endpoint(tc_redis_host, tc_redis_port), redis_err);
	else if (have_worker && ws.pid != 0 && ws.state == TC_WORKER_RETRYING)
		add_reason(&degraded, "the worker is waiting to retry Redis after: %s",
				   ws.last_error[0] ? ws.last_error : "an error");
	if (have_worker && ws.pid != 0 && ws.state == TC_WORKER_NO_EXTENSION &&
		tc_database_index(dbname) >= 0)
		add_reason(&degraded, "the worker has not yet seen the extension in this database");

	read_queue_health(&q);
	if (q.oldest_ms > tc_health_max_queue_age_ms)
		add_reason(&degraded,
				   "the oldest of %lld queue entries has waited %.1f s (tenant_cache.health_max_queue_age_ms is %d ms)",
				   (long long) q.waiting, q.oldest_ms / 1000.0,
				   tc_health_max_queue_age_ms);
	if (q.failing > 0)
		add_reason(&degraded, "%lld queue entries failed and wait for a retry; last error: %s",
				   (long long) q.failing, q.last_error ? q.last_error : "unknown");

	if (down.len > 0)
	{
		status = "down";
		message = down.data;
		if (degraded.len > 0)
			message = psprintf("%s; %s", down.data, degraded.data);
	}
	else if (degraded.len > 0)
	{
		status = "degraded";
		message = degraded.data;
	}
	else
	{
		status = "healthy";
		message = psprintf("worker pid %d is %s; Redis at %s answers; %lld queue entries waiting%s",
						   ws.pid, tc_worker_state_name(ws.state),
						   tc_redis_endpoint(tc_redis_host, tc_redis_port),
						   (long long) q.waiting,
						   q.oldest_ms >= 0 ?
						   psprintf(", the oldest for %.1f s", q.oldest_ms / 1000.0) : "");
	}
	values[0] = CStringGetTextDatum(status);
	values[1] = CStringGetTextDatum(message);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * redis_info()
 * ---------------------------------------------------------------------
 */

/* The value of "name:value" in INFO output, or NULL. */
static char *
info_field(const char *info, const char *name)
{
	size_t		nlen = strlen(name);
	const char *p = info;

	while (p != NULL && *p)
	{
		if (strncmp(p, name, nlen) == 0 && p[nlen] == ':')
			return pnstrdup(p + nlen + 1, strcspn(p + nlen + 1, "\r\n"));
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static bool
info_int64(const char *info, const char *name, int64 *value)
{
	char	   *s = info_field(info, name);
	char	   *end;

	if (s == NULL)
		return false;
	errno = 0;
	*value = strtoll(s, &end, 10);
	return errno == 0 && end != s;
}

/* keys=N of "db<redis_db>:keys=N,expires=M,..." */
static bool
info_db_keys(const char *info, int64 *value)
{
	char		name[32];
	char	   *s;

	snprintf(name, sizeof(name), "db%d", tc_redis_db);
	s = info_field(info, name);
	if (s == NULL)
	{
		*value = 0;				/* Redis lists only databases with keys */
		return true;
	}
	return sscanf(s, "keys=" INT64_FORMAT, value) == 1;
}

/* The columns of redis_info(), in order, and the INFO fields they show. */
typedef enum InfoKind
{
	INFO_TEXT,
	INFO_INT,
	INFO_HIT_RATIO,
	INFO_DB_KEYS
} InfoKind;

static const struct
{
	const char *field;
	InfoKind	kind;
}			info_columns[] =
{
	{"redis_version", INFO_TEXT},
	{"uptime_in_seconds", INFO_INT},
	{"connected_clients", INFO_INT},
	{"used_memory", INFO_INT},
	{"used_memory_human", INFO_TEXT},
	{"maxmemory", INFO_INT},
	{"maxmemory_policy", INFO_TEXT},
	{"keyspace_hits", INFO_INT},
	{"keyspace_misses", INFO_INT},
	{NULL, INFO_HIT_RATIO},
	{"evicted_keys", INFO_INT},
	{"expired_keys", INFO_INT},
	{NULL, INFO_DB_KEYS},
};

static char *
fetch_info(void)
{
	char	   *info = NULL;

	PG_TRY();
	{
		const char *argv[1] = {"INFO"};
		redisReply *reply;

		toolbox_connect();
		reply = command(1, argv);
		if (reply->type == REDIS_REPLY_STRING)
			info = pnstrdup(reply->str, reply->len);
		freeReplyObject(reply);
	}
	PG_FINALLY();
	{
		tc_redis_disconnect();
	}
	PG_END_TRY();
	if (info == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("unexpected reply to Redis INFO")));
	return info;
}

/*
 * redis_info(): one row of figures from INFO: server version, uptime,
 * clients, memory, keyspace hits and misses with the hit ratio (NULL before
 * any lookup), evicted and expired keys, and the keys of
 * tenant_cache.redis_db.  A field this Redis does not report is NULL.
 */
Datum
tc_redis_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[lengthof(info_columns)];
	bool		nulls[lengthof(info_columns)];
	char	   *info;
	int64		hits;
	int64		misses;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != lengthof(info_columns))
		elog(ERROR, "tenant_cache.redis_info() is declared with %d columns, not %d",
			 tupdesc->natts, (int) lengthof(info_columns));
	info = fetch_info();
	for (int i = 0; i < lengthof(info_columns); i++)
	{
		char	   *s;
		int64		v = 0;

		switch (info_columns[i].kind)
		{
			case INFO_TEXT:
				s = info_field(info, info_columns[i].field);
				nulls[i] = s == NULL;
				values[i] = s ? CStringGetTextDatum(s) : (Datum) 0;
				break;
			case INFO_INT:
				nulls[i] = !info_int64(info, info_columns[i].field, &v);
				values[i] = Int64GetDatum(v);
				break;
			case INFO_HIT_RATIO:
				nulls[i] = !(info_int64(info, "keyspace_hits", &hits) &&
							 info_int64(info, "keyspace_misses", &misses) &&
							 hits + misses > 0);
				values[i] = Float8GetDatum(nulls[i] ? 0 : (double) hits / (hits + misses));
				break;
			case INFO_DB_KEYS:
				nulls[i] = !info_db_keys(info, &v);
				values[i] = Int64GetDatum(v);
				break;
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---------------------------------------------------------------------
 * explore() and count_keys()
 * ---------------------------------------------------------------------
 */

typedef struct ExploredKey
{
	char	   *key;
	size_t		len;
	char	   *type;
	int64		pttl;
	int64		memory;			/* -1: unknown */
} ExploredKey;

static int
compare_keys(const void *a, const void *b)
{
	const ExploredKey *x = a;
	const ExploredKey *y = b;
	int			c = memcmp(x->key, y->key, Min(x->len, y->len));

	if (c != 0)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

/* TYPE, PTTL and MEMORY USAGE of keys[0..n), in one round trip. */
static void
describe_keys(ExploredKey *keys, int n)
{
	int			ncmds = n * 3;
	int		   *argc;
	const char ***argv;
	const size_t **lens;
	redisReply **replies;
	char	   *err;
	TcRedisStatus st;

	if (n == 0)
		return;
	argc = palloc(sizeof(int) * ncmds);
	argv = palloc(sizeof(char **) * ncmds);
	lens = palloc(sizeof(size_t *) * ncmds);
	replies = palloc0(sizeof(redisReply *) * ncmds);
	for (int i = 0; i < n; i++)
	{
		static const char *const names[3][2] = {{"TYPE", NULL}, {"PTTL", NULL}, {"MEMORY", "USAGE"}};

		for (int c = 0; c < 3; c++)
		{
			int			k = i * 3 + c;
			int			nargs = names[c][1] ? 3 : 2;
			const char **a = palloc(sizeof(char *) * nargs);
			size_t	   *l = palloc(sizeof(size_t) * nargs);

			a[0] = names[c][0];
			l[0] = strlen(a[0]);
			if (names[c][1])
			{
				a[1] = names[c][1];
				l[1] = strlen(a[1]);
			}
			a[nargs - 1] = keys[i].key;
			l[nargs - 1] = keys[i].len;
			argc[k] = nargs;
			argv[k] = a;
			lens[k] = l;
		}
	}
	st = tc_redis_pipeline(ncmds, argc, argv, lens, replies, &err);
	if (st != TC_REDIS_OK)
		redis_failed(st, err);
	for (int k = 0; k < ncmds; k++)
	{
		ExploredKey *key = &keys[k / 3];
		redisReply *r = replies[k];

		if (tc_redis_reply_is_error(r, k % 3 == 0 ? "Redis TYPE failed" :
									k % 3 == 1 ? "Redis PTTL failed" :
									"Redis MEMORY USAGE failed", &err))
		{
			for (int j = k; j < ncmds; j++)
				freeReplyObject(replies[j]);
			redis_failed(TC_REDIS_ERROR_REPLY, err);
		}
		if (k % 3 == 0)
			key->type = (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) ?
				pnstrdup(r->str, r->len) : pstrdup("none");
		else if (k % 3 == 1)
			key->pttl = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
		else
			key->memory = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
		freeReplyObject(r);
	}
}

static int
explore_max_keys(FunctionCallInfo fcinfo)
{
	int			max_keys = PG_ARGISNULL(2) ? -1 : PG_GETARG_INT32(2);

	if (max_keys < 1 || max_keys > TC_EXPLORE_MAX_KEYS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_keys must be between 1 and %d", TC_EXPLORE_MAX_KEYS)));
	return max_keys;
}

/*
 * explore(pattern, tenant_id, max_keys, client_id, bu_id): the keys that
 * invalidate_pattern() with these arguments would clear now, with their
 * type, TTL (NULL: none) and MEMORY USAGE, sorted.  At most max_keys keys;
 * a NOTICE says when the list may be partial (max_keys reached, or the
 * time limit).
 */
Datum
tc_explore(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *glob = call_glob(tc_text_arg(fcinfo, 0), tc_text_arg(fcinfo, 1),
								 tc_text_arg(fcinfo, 3), tc_text_arg(fcinfo, 4));
	int			max_keys = explore_max_keys(fcinfo);
	ExploredKey *keys = palloc(sizeof(ExploredKey) * max_keys);
	int			nkeys = 0;
	ScanWalk	walk;

	InitMaterializedSRF(fcinfo, 0);
	PG_TRY();
	{
		toolbox_connect();
		scan_begin(&walk, glob);
		while (!walk.done && nkeys < max_keys && scan_time_left(&walk))
		{
			redisReply *page = scan_next(&walk);
			redisReply *found = page->element[1];
			int			first = nkeys;

			for (size_t i = 0; i < found->elements && nkeys < max_keys; i++)
			{
				keys[nkeys].key = pnstrdup(found->element[i]->str, found->element[i]->len);
				keys[nkeys++].len = found->element[i]->len;
			}
			if (nkeys == max_keys && found->elements > (size_t) (nkeys - first))
				walk.done = false;	/* keys left over on this page */
			freeReplyObject(page);
			describe_keys(keys + first, nkeys - first);
		}
	}
	PG_FINALLY();
	{
		tc_redis_disconnect();
	}
	PG_END_TRY();

	qsort(keys, nkeys, sizeof(ExploredKey), compare_keys);
	for (int i = 0; i < nkeys; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		/* Gone since SCAN saw it, or returned twice by SCAN. */
		if (strcmp(keys[i].type, "none") == 0 ||
			(i > 0 && compare_keys(&keys[i - 1], &keys[i]) == 0))
			continue;
		values[0] = PointerGetDatum(key_text(keys[i].key, keys[i].len));
		values[1] = CStringGetTextDatum(keys[i].type);
		nulls[2] = keys[i].pttl < 0;
		if (!nulls[2])
		{
			Interval   *ttl = palloc0(sizeof(Interval));

			ttl->time = keys[i].pttl * 1000;
			values[2] = IntervalPGetDatum(ttl);
		}
		nulls[3] = keys[i].memory < 0;
		values[3] = Int64GetDatum(keys[i].memory);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (!walk.done && nkeys >= max_keys)
		ereport(NOTICE,
				(errmsg("explore() stopped at max_keys (%d): more keys may match \"%s\"",
						max_keys, glob)));
	else if (!walk.done)
		ereport(NOTICE,
				(errmsg("explore() stopped after tenant_cache.toolbox_time_limit_ms (%d ms) before SCAN finished: the list is partial",
						tc_toolbox_time_limit_ms)));
	return (Datum) 0;
}

/*
 * count_keys(pattern, tenant_id, client_id, bu_id) RETURNS TABLE(glob,
 * keys, complete): the dry run of invalidate_pattern(): how many keys
 * match its glob now (as SCAN returns them), nothing cleared; complete is
 * false when the time limit stopped the walk, keys then being a lower bound.
 */
Datum
tc_count_keys(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	char	   *glob = call_glob(tc_text_arg(fcinfo, 0), tc_text_arg(fcinfo, 1),
								 tc_text_arg(fcinfo, 2), tc_text_arg(fcinfo, 3));
	int64		count = 0;
	ScanWalk	walk;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	PG_TRY();
	{
		toolbox_connect();
		scan_begin(&walk, glob);
		while (!walk.done && scan_time_left(&walk))
		{
			redisReply *page = scan_next(&walk);

			count += page->element[1]->elements;
			freeReplyObject(page);
		}
	}
	PG_FINALLY();
	{
		tc_redis_disconnect();
	}
	PG_END_TRY();
	values[0] = CStringGetTextDatum(glob);
	values[1] = Int64GetDatum(count);
	values[2] = BoolGetDatum(walk.done);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---------------------------------------------------------------------
 * memory_by_pattern()
 * ---------------------------------------------------------------------
 */

typedef struct PatternMemory
{
	char	   *pattern;
	Datum		models;			/* text[] */
	char	   *glob;			/* every tenant */
	int64		keys;
	int64		sampled;
	int64		sampled_bytes;
} PatternMemory;

/* The registered patterns, with their models, read as the caller. */
static PatternMemory *
registered_patterns(int *n)
{
	PatternMemory *pats;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT pattern, pg_catalog.array_agg(model ORDER BY model) "
					"FROM tenant_cache.dependencies GROUP BY pattern ORDER BY pattern",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read tenant_cache.dependencies");
	*n = SPI_processed;
	pats = SPI_palloc(sizeof(PatternMemory) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];

		char	   *pattern = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);

		pats[i].pattern = SPI_palloc(strlen(pattern) + 1);
		strcpy(pats[i].pattern, pattern);
		pats[i].models = SPI_datumTransfer(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull),
										   false, -1);
		pats[i].keys = pats[i].sampled = pats[i].sampled_bytes = 0;
	}
	SPI_finish();
	for (int i = 0; i < *n; i++)
		pats[i].glob = call_glob(pats[i].pattern, NULL, NULL, NULL);
	return pats;
}

/* MEMORY USAGE of keys[0..n) in one round trip; -1 for a key gone meanwhile. */
static void
memory_usage(redisReply **keys, int n, int64 *bytes)
{
	int		   *argc = palloc(sizeof(int) * n);
	const char ***argv = palloc(sizeof(char **) * n);
	const size_t **lens = palloc(sizeof(size_t *) * n);
	redisReply **replies = palloc(sizeof(redisReply *) * n);
	char	   *err;
	TcRedisStatus st;

	for (int i = 0; i < n; i++)
	{
		const char **a = palloc(sizeof(char *) * 3);
		size_t	   *l = palloc(sizeof(size_t) * 3);

		a[0] = "MEMORY";
		l[0] = 6;
		a[1] = "USAGE";
		l[1] = 5;
		a[2] = keys[i]->str;
		l[2] = keys[i]->len;
		argc[i] = 3;
		argv[i] = a;
		lens[i] = l;
	}
	st = tc_redis_pipeline(n, argc, argv, lens, replies, &err);
	if (st != TC_REDIS_OK)
		redis_failed(st, err);
	for (int i = 0; i < n; i++)
	{
		if (tc_redis_reply_is_error(replies[i], "Redis MEMORY USAGE failed", &err))
		{
			for (int j = i; j < n; j++)
				freeReplyObject(replies[j]);
			redis_failed(TC_REDIS_ERROR_REPLY, err);
		}
		bytes[i] = replies[i]->type == REDIS_REPLY_INTEGER ? replies[i]->integer : -1;
		freeReplyObject(replies[i]);
	}
}

/* Count a page's keys per pattern; MEMORY USAGE for those still sampled. */
static void
measure_page(PatternMemory *pats, int npats, redisReply *found, int sample)
{
	int			nkeys = found->elements;
	bool	   *wanted = palloc0(sizeof(bool) * Max(nkeys * npats, 1));
	redisReply **measure = palloc(sizeof(redisReply *) * Max(nkeys, 1));
	int64	   *bytes = palloc(sizeof(int64) * Max(nkeys, 1));
	int			nmeasure = 0;

	for (int i = 0; i < nkeys; i++)
	{
		redisReply *key = found->element[i];
		bool		any = false;

		for (int p = 0; p < npats; p++)
		{
			if (!tc_glob_match(pats[p].glob, strlen(pats[p].glob),
							   key->str, key->len, false))
				continue;
			pats[p].keys++;
			if (pats[p].sampled < sample)
			{
				pats[p].sampled++;	/* counted now, measured below */
				wanted[nmeasure * npats + p] = true;
				any = true;
			}
		}
		if (any)
			measure[nmeasure++] = key;
	}
	if (nmeasure > 0)
		memory_usage(measure, nmeasure, bytes);
	for (int m = 0; m < nmeasure; m++)
	{
		for (int p = 0; p < npats; p++)
		{
			if (!wanted[m * npats + p])
				continue;
			if (bytes[m] >= 0)
				pats[p].sampled_bytes += bytes[m];
			else
				pats[p].sampled--;	/* gone meanwhile: not a sample */
		}
	}
	pfree(wanted);
	pfree(measure);
	pfree(bytes);
}

/*
 * memory_by_pattern(sample) RETURNS TABLE(pattern, models, keys, sampled,
 * sampled_bytes, estimated_bytes, complete): one SCAN walk over every key
 * of key_format (all tenants), each key counted for every registered
 * pattern whose all-tenant glob it matches (tenant_cache's copy of Redis'
 * matcher), MEMORY USAGE of the first `sample` keys of each pattern, and
 * keys x average sampled size as the estimate.
 */
Datum
tc_memory_by_pattern(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			sample = PG_ARGISNULL(0) ? -1 : PG_GETARG_INT32(0);
	PatternMemory *pats;
	int			npats;
	char	   *glob = all_keys_glob();
	ScanWalk	walk;

	if (sample < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sample must be zero or more")));
	InitMaterializedSRF(fcinfo, 0);
	pats = registered_patterns(&npats);
	scan_begin(&walk, glob);
	if (npats == 0)
		return (Datum) 0;
	PG_TRY();
	{
		toolbox_connect();
		while (!walk.done && scan_time_left(&walk))
		{
			redisReply *page = scan_next(&walk);

			PG_TRY();
			{
				measure_page(pats, npats, page->element[1], sample);
			}
			PG_FINALLY();
			{
				freeReplyObject(page);
			}
			PG_END_TRY();
		}
	}
	PG_FINALLY();
	{
		tc_redis_disconnect();
	}
	PG_END_TRY();

	for (int p = 0; p < npats; p++)
	{
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};

		values[0] = CStringGetTextDatum(pats[p].pattern);
		values[1] = pats[p].models;
		values[2] = Int64GetDatum(pats[p].keys);
		values[3] = Int64GetDatum(pats[p].sampled);
		values[4] = Int64GetDatum(pats[p].sampled_bytes);
		if (pats[p].keys == 0)
			values[5] = Int64GetDatum(0);
		else if (pats[p].sampled == 0)
			nulls[5] = true;
		else
			values[5] = Int64GetDatum((int64) llround((double) pats[p].sampled_bytes /
													  pats[p].sampled * pats[p].keys));
		values[6] = BoolGetDatum(walk.done);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * invalidate_all()
 * ---------------------------------------------------------------------
 */

/*
 * invalidate_all(confirm boolean) RETURNS text: queue, in this
 * transaction, the glob of every key of key_format for every tenant, and
 * return it.  Refuses unless confirm is true.
 */
Datum
tc_invalidate_all(PG_FUNCTION_ARGS)
{
	char	   *glob = all_keys_glob();

	if (PG_ARGISNULL(0) || !PG_GETARG_BOOL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalidate_all() needs confirm => true"),
				 errdetail("It queues \"%s\", which clears every cached key of every tenant.",
						   glob),
				 errhint("Call tenant_cache.invalidate_all(confirm => true).")));
	tc_check_can_queue();
	tc_queue_glob(glob);
	PG_RETURN_TEXT_P(cstring_to_text(glob));
}
