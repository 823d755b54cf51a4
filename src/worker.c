/*-------------------------------------------------------------------------
 *
 * worker.c
 *		Background worker that drains the invalidation queue into Redis.
 *
 * Modelled on src/test/modules/worker_spi: WaitLatch with
 * WL_EXIT_ON_PM_DEATH, SIGHUP re-reads the settings, SIGTERM ends the
 * process at the next interrupt check (also while waiting on Redis, see
 * redis.c), one transaction per batch.  A batch reads the inbox (absorb.c)
 * and takes up to batch_size entries: the due rows of the queue
 * (tenant_cache.pending, FOR UPDATE SKIP LOCKED), then the globs just read
 * from the inbox that have no twin waiting there ("fresh").  Its distinct
 * globs are cleared together (apply.c); a queue row is deleted in the same
 * transaction only after Redis succeeded, and a fresh glob enters the queue
 * only if it failed or was not reached.  Failed entries stay, with
 * attempts, last_error and an exponential next_attempt_at.  The worker
 * starts only once recovery has finished, so a standby runs none and a
 * promoted one drains its queue.
 * There is one worker per database of tenant_cache.database, each on its
 * own queue (the queue tables are per database), latch and statistics.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "globmatch.h"
#include "tenant_cache.h"

#define TC_MIN_BACKOFF_MS 100

/*
 * An entry of a batch: a row of the queue, or (id 0) a fresh glob just read
 * from the inbox, which enters the queue only if it is not applied now.
 */
typedef struct QueueRow
{
	int64		id;
	char	   *glob;
	int			attempts;
	bool		applied;		/* applied once, this is its repeat */
	TimestampTz enqueued_at;
	bool		ok;				/* its glob was applied in this batch */
	char	   *error;			/* or why it failed (NULL: not attempted) */
} QueueRow;

/*
 * Batches are taken in id order from just after the previous batch, so a
 * sustained backlog is walked once even while an old snapshot keeps deleted
 * rows from being vacuumed; a pass from the start (which finds entries that
 * committed late with a lower id, and due retries) follows every short
 * batch, and at least every poll_interval_ms.
 */
static int64 scan_after_id = 0;
static TimestampTz last_full_pass = 0;

/*
 * Redis health, for backoff and for logging state changes only: the first
 * failure of an outage is a WARNING, the rest DEBUG1, and the first success
 * after it a LOG line, so an outage does not flood the log.
 */
static bool redis_ok = true;
static int	redis_failures = 0;		/* in a row */
static int	redis_backoff_ms = 0;
static TimestampTz next_connect_at = 0;

/* The worker's statements, prepared once (tc_spi_run). */
static SPIPlanPtr fetch_plan = NULL;
static SPIPlanPtr delete_plan = NULL;
static SPIPlanPtr repeat_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr park_plan = NULL;

/*
 * Batches of a busy stream of commits start no sooner than
 * TC_BATCH_PERIOD_US_PER_ROW per entry of the previous batch after it, up
 * to TC_MAX_BATCH_PERIOD_MS; see coalesce_commits.
 */
#define TC_BATCH_PERIOD_US_PER_ROW 100
#define TC_MAX_BATCH_PERIOD_MS 20

/* Upper bound on the time one batch holds its transaction open. */
#define TC_BATCH_TIME_LIMIT_MS 2000

/* The database this worker drains (tc_databases[its index]). */
static const char *my_database = NULL;

/* One worker per database of tenant_cache.database; main_arg: its index. */
void
tc_register_worker(void)
{
	for (int i = 0; i < tc_ndatabases; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		worker.bgw_main_arg = Int32GetDatum(i);
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "tenant_cache");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "tc_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "tenant_cache worker for %s",
				 tc_databases[i]);
		snprintf(worker.bgw_type, BGW_MAXLEN, "tenant_cache worker");
		RegisterBackgroundWorker(&worker);
	}
}

static int
backoff_ms(int attempts)
{
	int64		ms = TC_MIN_BACKOFF_MS;

	while (attempts-- > 1 && ms < tc_max_retry_interval_ms)
		ms *= 2;
	return (int) Min(ms, (int64) tc_max_retry_interval_ms);
}

static void
wait_for(long timeout_ms)
{
	int			rc;

	if (timeout_ms <= 0)
		return;
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   timeout_ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Testing only: a window between applying a batch and committing it, that
 * commits waking the worker do not shorten (SIGTERM still ends it).
 */
static void
debug_pause(int ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	long		left;

	pgstat_report_activity(STATE_RUNNING, "debug pause before commit");
	while ((left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end)) > 0)
		wait_for(left);
}

/*
 * Under a stream of commits each one would start a batch of its own, and
 * the worker's wake-ups, transactions and round trips would take the CPU
 * the writers need.  After a batch of `taken` entries, let a period that
 * grows with it pass since it began before the next, so that commits
 * arriving meanwhile share it: a quiet stream (a commit now and then) is
 * applied at once, a heavy one in batches every TC_MAX_BATCH_PERIOD_MS.
 * Latches set meanwhile are not lost: the next batch reads all that
 * committed.  A backlog (a batch that took batch_size entries, or an inbox
 * pass that stopped at its row limit) is followed at once; inbox rows read
 * do not make one, however many a heavy stream brings.
 */
static void
coalesce_commits(TimestampTz batch_start, int taken, bool backlog)
{
	int64		period_us = Min((int64) taken * TC_BATCH_PERIOD_US_PER_ROW,
								TC_MAX_BATCH_PERIOD_MS * 1000L);
	int64		left = period_us - (GetCurrentTimestamp() - batch_start);

	if (backlog)
		return;
	if (left > 0)
		pg_usleep((long) left);	/* a signal (SIGTERM) ends it early */
	CHECK_FOR_INTERRUPTS();
}

static void
reload_settings(void)
{
	char	   *before = tc_redis_settings_signature();
	char	   *after;

	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	after = tc_redis_settings_signature();
	if (strcmp(before, after) != 0 && tc_redis_is_connected())
	{
		ereport(LOG,
				(errmsg("tenant_cache worker: Redis settings changed, reconnecting")));
		tc_redis_disconnect();
	}
	if (strcmp(before, after) != 0)
	{
		next_connect_at = 0;
		redis_failures = 0;
		redis_ok = true;
	}
	pfree(before);
	pfree(after);
}

static void
note_redis_failure(const char *what, const char *err)
{
	redis_backoff_ms = backoff_ms(++redis_failures);
	next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  redis_backoff_ms);
	ereport(redis_ok ? WARNING : DEBUG1,
			(errmsg("tenant_cache worker %s Redis at %s: %s",
					what, tc_redis_address(), err),
			 errdetail("Invalidations stay queued; retrying with backoff up to %d ms.",
					   tc_max_retry_interval_ms)));
	redis_ok = false;
}

static void
note_redis_success(void)
{
	if (!redis_ok)
		ereport(LOG,
				(errmsg("tenant_cache worker: Redis at %s works again",
						tc_redis_address())));
	redis_ok = true;
	redis_failures = 0;
}

/* Connect if needed, not before the backoff allows; false: wait *wait_ms. */
static bool
ensure_redis(long *wait_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	char	   *err = NULL;

	if (tc_redis_is_connected())
		return true;
	if (now < next_connect_at)
	{
		*wait_ms = TimestampDifferenceMilliseconds(now, next_connect_at);
		return false;
	}
	pgstat_report_activity(STATE_RUNNING, "connecting to Redis");
	if (tc_redis_connect(&err))
	{
		ereport(redis_ok ? LOG : DEBUG1,
				(errmsg("tenant_cache worker connected to Redis at %s",
						tc_redis_address())));
		return true;
	}
	tc_stats_redis_error(err);
	note_redis_failure("cannot reach", err);
	pfree(err);
	*wait_ms = redis_backoff_ms;
	pgstat_report_activity(STATE_IDLE, NULL);
	return false;
}

/*
 * Run one of the worker's statements with a plan prepared once and kept
 * (each batch runs the same few statements; planning them every time cost
 * more than running them).  *plan caches the plan.
 */
int
tc_spi_run(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
		   Datum *args, int expected)
{
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, args, NULL, false, 0);
	if (rc != expected)
		elog(ERROR, "statement \"%s\" failed: %s", sql, SPI_result_code_string(rc));
	return rc;
}

static int
compare_rows(const void *a, const void *b)
{
	const QueueRow *ra = a;
	const QueueRow *rb = b;
	int			c = strcmp(ra->glob, rb->glob);

	if (c != 0)
		return c;
	return ra->id < rb->id ? -1 : ra->id > rb->id;
}

/* A one-dimensional array of n elements of type, some NULL. */
static Datum
array_with_nulls(Datum *elems, bool *nulls, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, type,
											  len, byval, align));
}

/*
 * The fresh globs (id 0) of rows[0..n) that must wait in the queue enter
 * it, in one statement: those not attempted, those that failed (with their
 * error and the backoff of a first failed attempt), and, with
 * repeat_after_ms, those applied, marked as waiting for their repeat.
 */
static void
park_rows(QueueRow *rows, int n)
{
	static const Oid types[6] = {TEXTOID, TIMESTAMPTZOID, INT4OID, TEXTOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID};
	Oid			argtypes[6] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[6];
	Datum	   *v[6];
	bool	   *isnull[6];
	TimestampTz now = GetCurrentTimestamp();
	int			m = 0;

	for (int c = 0; c < 6; c++)
	{
		v[c] = palloc(sizeof(Datum) * Max(n, 1));
		isnull[c] = palloc0(sizeof(bool) * Max(n, 1));
	}
	for (int i = 0; i < n; i++)
	{
		QueueRow   *r = &rows[i];
		bool		repeat = r->ok && tc_repeat_after_ms > 0;

		if (r->id != 0 || (r->ok && !repeat))
			continue;
		v[0][m] = CStringGetTextDatum(r->glob);
		v[1][m] = TimestampTzGetDatum(r->enqueued_at);
		v[2][m] = Int32GetDatum(r->error != NULL ? 1 : 0);
		isnull[3][m] = r->error == NULL;
		v[3][m] = r->error != NULL ? CStringGetTextDatum(r->error) : (Datum) 0;
		isnull[4][m] = r->error == NULL && !repeat;
		v[4][m] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(now, repeat ?
																  tc_repeat_after_ms :
																  backoff_ms(1)));
		isnull[5][m] = !repeat;
		v[5][m] = TimestampTzGetDatum(now);
		m++;
	}
	if (m == 0)
		return;
	for (int c = 0; c < 6; c++)
		args[c] = array_with_nulls(v[c], isnull[c], m, types[c]);
	tc_spi_run(&park_plan, "INSERT INTO tenant_cache.pending "
			   "(glob, enqueued_at, attempts, last_error, next_attempt_at, applied_at) "
			   "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
			   "pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
			   "pg_catalog.unnest($6))",
			   6, argtypes, args, SPI_OK_INSERT);
}

/* Up to limit due rows of the queue, in id order, into rows[]. */
static int
fetch_due(QueueRow *rows, int limit)
{
	Oid			argtypes[2] = {INT4OID, INT8OID};
	Datum		args[2];
	TimestampTz now = GetCurrentTimestamp();
	int			n;

	if (TimestampDifferenceExceeds(last_full_pass, now, tc_poll_interval_ms))
		scan_after_id = 0;
	if (scan_after_id == 0)
		last_full_pass = now;
	args[0] = Int32GetDatum(limit);
	args[1] = Int64GetDatum(scan_after_id);
	tc_spi_run(&fetch_plan, "SELECT id, glob, attempts, applied_at IS NOT NULL, enqueued_at "
							  "FROM tenant_cache.pending "
							  "WHERE id OPERATOR(pg_catalog.>) $2 "
							  "  AND (next_attempt_at IS NULL "
							  "       OR next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()) "
							  "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
			   2, argtypes, args, SPI_OK_SELECT);
	n = SPI_processed;
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		memset(&rows[i], 0, sizeof(QueueRow));
		rows[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		rows[i].glob = SPI_getvalue(tup, desc, 2);
		rows[i].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		rows[i].applied = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		rows[i].enqueued_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	}
	/* Rows come in id order: continue after the last, or start over. */
	scan_after_id = n == limit ? rows[n - 1].id : 0;
	return n;
}

/* Fresh globs of the inbox as entries of a batch (id 0). */
static void
fresh_rows(QueueRow *rows, TcInboxGlob *fresh, int n)
{
	for (int i = 0; i < n; i++)
	{
		memset(&rows[i], 0, sizeof(QueueRow));
		rows[i].glob = fresh[i].glob;
		rows[i].enqueued_at = fresh[i].enqueued_at;
	}
}

/*
 * The batch: up to batch_size entries, the due rows of the queue first (in
 * id order, so a backlog is walked in commit order), then the fresh globs
 * just read from the inbox.  Fresh globs beyond the batch enter the queue
 * at once.  Sorted by glob, for apply_batch.
 */
static int
take_batch(QueueRow **rows, TcInboxGlob *fresh, int nfresh)
{
	int			n;
	int			ndirect;

	*rows = palloc(sizeof(QueueRow) * (tc_batch_size + Max(nfresh, 1)));
	n = fetch_due(*rows, tc_batch_size);
	ndirect = Min(nfresh, tc_batch_size - n);
	fresh_rows(*rows + n, fresh, nfresh);
	park_rows(*rows + n + ndirect, nfresh - ndirect);
	n += ndirect;
	qsort(*rows, n, sizeof(QueueRow), compare_rows);
	return n;
}

/*
 * The ids of the queue's rows among rows[from..to), all of them or only
 * those (not) applied before; *n: how many.
 */
static Datum
ids_array(QueueRow *rows, int from, int to, int applied, bool only_ok, int *n)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(to - from, 1));

	*n = 0;
	for (int i = from; i < to; i++)
		if (rows[i].id != 0 &&
			(applied < 0 || rows[i].applied == (applied > 0)) &&
			(!only_ok || rows[i].ok))
			ids[(*n)++] = Int64GetDatum(rows[i].id);
	return PointerGetDatum(construct_array(ids, *n, INT8OID, 8,
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * The rows whose glob was applied (ok) go, in one statement for the batch,
 * except that with repeat_after_ms the rows applied for the first time stay,
 * marked, until their repeat is due.
 */
static void
finish_rows(QueueRow *rows, int n)
{
	Oid			argtypes[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
	Datum		args[2];
	bool		repeat = tc_repeat_after_ms > 0;
	int			nids;

	args[0] = ids_array(rows, 0, n, repeat ? 1 : -1, true, &nids);
	if (nids > 0)
		tc_spi_run(&delete_plan, "DELETE FROM tenant_cache.pending "
				   "WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
				   1, argtypes, args, SPI_OK_DELETE);
	if (!repeat)
		return;
	args[0] = ids_array(rows, 0, n, 0, true, &nids);
	if (nids == 0)
		return;
	args[1] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															  tc_repeat_after_ms));
	tc_spi_run(&repeat_plan, "UPDATE tenant_cache.pending "
							  "SET applied_at = pg_catalog.clock_timestamp(), next_attempt_at = $2, "
							  "    attempts = 0, last_error = NULL "
							  "WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
			   2, argtypes, args, SPI_OK_UPDATE);
}

/* Keep the rows, note the error, schedule the next attempt. */
static void
fail_rows(QueueRow *rows, int from, int to, const char *err)
{
	Oid			argtypes[3] = {INT8ARRAYOID, TEXTOID, TIMESTAMPTZOID};
	Datum		args[3];
	int			attempts = 0;
	int			nids;

	for (int i = from; i < to; i++)
		attempts = Max(attempts, rows[i].attempts + 1);
	args[0] = ids_array(rows, from, to, -1, false, &nids);
	if (nids == 0)
		return;					/* fresh globs only: park_rows adds them */
	args[1] = CStringGetTextDatum(err);
	args[2] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															  backoff_ms(attempts)));
	tc_spi_run(&fail_plan, "UPDATE tenant_cache.pending "
							  "SET attempts = attempts OPERATOR(pg_catalog.+) 1, "
							  "    last_error = $2, next_attempt_at = $3 "
							  "WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
			   3, argtypes, args, SPI_OK_UPDATE);
}

/* For the lag: enqueued_at of the oldest first-time row of rows[from..to). */
static TimestampTz
first_enqueued_at(QueueRow *rows, int from, int to)
{
	TimestampTz oldest = 0;

	for (int i = from; i < to; i++)
		if (!rows[i].applied && (oldest == 0 || rows[i].enqueued_at < oldest))
			oldest = rows[i].enqueued_at;
	return oldest;
}

/* For pub/sub: enqueued_at of the oldest row of rows[from..to). */
static TimestampTz
oldest_enqueued_at(QueueRow *rows, int from, int to)
{
	TimestampTz oldest = rows[from].enqueued_at;

	for (int i = from + 1; i < to; i++)
		oldest = Min(oldest, rows[i].enqueued_at);
	return oldest;
}

/*
 * Apply the rows of one batch: their distinct globs go to tc_apply_globs()
 * (apply.c) together.  A refused command fails only its glob; a lost
 * connection fails the globs under way and leaves the rest of the batch
 * untouched for the next attempt, and so does running past the batch's time
 * limit (so no transaction stays open for long).  Returns false when it
 * stopped early.
 */
static bool
apply_batch(QueueRow *rows, int n)
{
	TcGlobJob  *jobs = palloc(sizeof(TcGlobJob) * n);
	int		   *first = palloc(sizeof(int) * (n + 1));
	TcPublishItem *published = palloc(sizeof(TcPublishItem) * n);
	int			njobs = 0;
	int			npublished = 0;
	bool		complete;
	char	   *io_error = NULL;

	/* Rows are sorted by glob: one job per run of equal globs. */
	for (int i = 0; i < n; i++)
	{
		if (i > 0 && strcmp(rows[i].glob, rows[i - 1].glob) == 0)
			continue;
		first[njobs] = i;
		jobs[njobs++].glob = rows[i].glob;
	}
	first[njobs] = n;
	tc_stats_worker_state(TC_WORKER_APPLYING);
	for (int j = 0; j < njobs; j++)
		if (!tc_glob_is_literal(jobs[j].glob, strlen(jobs[j].glob)))
		{
			tc_stats_scan_pass();	/* one merged SCAN for the batch */
			break;
		}
	complete = tc_apply_globs(jobs, njobs, TC_BATCH_TIME_LIMIT_MS);
	for (int j = 0; j < njobs; j++)
	{
		TcGlobJob  *job = &jobs[j];

		if (!job->done)
			continue;
		if (job->status == TC_REDIS_OK)
		{
			for (int i = first[j]; i < first[j + 1]; i++)
				rows[i].ok = true;
			tc_stats_applied(job->glob, job->deleted,
							 first_enqueued_at(rows, first[j], first[j + 1]));
			published[npublished].glob = job->glob;
			published[npublished].keys_deleted = job->deleted;
			published[npublished++].committed_at =
				oldest_enqueued_at(rows, first[j], first[j + 1]);
			note_redis_success();
			elog(DEBUG1, "tenant_cache worker cleared %lld keys for \"%s\"%s",
				 (long long) job->deleted, job->glob,
				 job->literal ? " (UNLINK, no SCAN)" : "");
			continue;
		}
		for (int i = first[j]; i < first[j + 1]; i++)
			rows[i].error = job->error;
		fail_rows(rows, first[j], first[j + 1], job->error);
		tc_stats_redis_error(job->error);
		if (job->status == TC_REDIS_IO_ERROR && io_error == NULL)
			io_error = job->error;
	}
	finish_rows(rows, n);
	park_rows(rows, n);
	/* Lost messages of a lost connection are counted and logged there. */
	tc_publish_applied(published, npublished);
	if (io_error != NULL)
		note_redis_failure("lost its connection to", io_error);
	return complete;
}

/*
 * One transaction: read the inbox and, when Redis can be reached
 * (with_redis), take a batch (due queue rows and fresh globs) and apply it;
 * without Redis the fresh globs enter the queue, which keeps an outage at
 * one entry per glob.  Returns the number of entries and inbox rows taken,
 * or -1 when the extension is not installed in this database; *backlog:
 * more is waiting already (see coalesce_commits).
 */
static int
process_batch(bool with_redis, bool *backlog)
{
	QueueRow   *rows;
	TcInboxGlob *fresh;
	int			nfresh;
	int			n = -1;
	int			absorbed = 0;

	*backlog = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(tc_catalog_relid(TC_QUEUE_TABLE, true)))
	{
		pgstat_report_activity(STATE_RUNNING, with_redis ?
							   "draining tenant_cache queue" :
							   "folding tenant_cache inbox into the queue");
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		absorbed = tc_absorb_inbox(&fresh, &nfresh);
		if (with_redis)
			n = take_batch(&rows, fresh, nfresh);
		else
		{
			rows = palloc(sizeof(QueueRow) * Max(nfresh, 1));
			fresh_rows(rows, fresh, nfresh);
			park_rows(rows, nfresh);
			n = 0;
		}
		*backlog = n >= tc_batch_size || tc_absorb_has_more();
		if (n > 0 && !apply_batch(rows, n))
			scan_after_id = 0;	/* the rest of the batch is due again */
		if (n > 0 && tc_debug_pause_before_commit_ms > 0)
			debug_pause(tc_debug_pause_before_commit_ms);
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return n < 0 ? n : n + absorbed;
}

static bool
extension_installed(void)
{
	bool		installed;

	StartTransactionCommand();
	installed = OidIsValid(tc_catalog_relid(TC_QUEUE_TABLE, true));
	CommitTransactionCommand();
	return installed;
}

void
tc_worker_main(Datum main_arg)
{
	sigjmp_buf	local_sigjmp_buf;
	volatile bool ext_missing = true;
	volatile bool missing_logged = false;
	int			index = DatumGetInt32(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (index < 0 || index >= tc_ndatabases)
		elog(ERROR, "tenant_cache worker %d has no database", index);
	my_database = tc_databases[index];
	/* Settings of ALTER DATABASE ... SET (key_format) apply here too. */
	BackgroundWorkerInitializeConnection(my_database, NULL, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "tenant_cache worker", PGC_USERSET, PGC_S_OVERRIDE);

	/*
	 * The worker's commits only record work done (inbox rows read, globs
	 * applied or queued): one lost in a crash is done again (the inbox rows
	 * come back with it), which is harmless, so
	 * they need not wait for the WAL flush the writers' commits wait for.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * The queue is small but churns (entries inserted and deleted many times
	 * a second, vacuumed now and then): its statistics say "tiny", its heap
	 * is full of dead rows.  Reach it through its indexes, never a scan.
	 */
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Its statements (tc_spi_run) are prepared once; a custom plan per
	 * execution would plan them again every batch for nothing.
	 */
	SetConfigOption("plan_cache_mode", "force_generic_plan", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("tenant_cache worker");
	tc_worker_attach(index);
	tc_stats_worker_started(index);
	ereport(LOG,
			(errmsg("tenant_cache worker started for database \"%s\"", my_database)));

	/*
	 * An error in a batch (say, the extension dropped under us) is reported,
	 * its transaction rolled back (the rows stay queued), and the loop goes
	 * on after a pause, instead of the process exiting and restarting.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		/* Callbacks of the frames we jumped out of (say, SPI's) are gone. */
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		tc_redis_disconnect();
		tc_absorb_reset();
		RESUME_INTERRUPTS();
		ext_missing = true;
		wait_for(Min(tc_poll_interval_ms * 5, tc_max_retry_interval_ms));
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		long		wait_ms = tc_poll_interval_ms;
		int			taken;
		bool		backlog;
		TimestampTz cycle_start;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
			reload_settings();
		/* Nothing to do (and no Redis to bother) until the extension exists. */
		if (ext_missing && (ext_missing = !extension_installed()))
		{
			if (!missing_logged)
				ereport(LOG,
						(errmsg("tenant_cache worker: extension \"tenant_cache\" is not installed in database \"%s\"; waiting",
								my_database)));
			missing_logged = true;
			tc_stats_worker_state(TC_WORKER_NO_EXTENSION);
			wait_for(tc_poll_interval_ms);
			continue;
		}
		missing_logged = false;
		if (!ensure_redis(&wait_ms))
		{
			/* Redis or not, commits fold into one queue entry per glob. */
			tc_stats_worker_state(TC_WORKER_RETRYING);
			cycle_start = GetCurrentTimestamp();
			taken = process_batch(false, &backlog);
			if (taken <= 0)
				wait_for(wait_ms);
			else
				coalesce_commits(cycle_start, taken, backlog);
			continue;
		}
		cycle_start = GetCurrentTimestamp();
		taken = process_batch(true, &backlog);
		ext_missing = taken < 0;
		/* More may be waiting, or a wake-up was consumed during Redis I/O. */
		if (taken > 0)
		{
			coalesce_commits(cycle_start, taken, backlog);
			continue;
		}
		if (!ext_missing)
		{
			tc_stats_worker_state(TC_WORKER_IDLE);
			wait_for(tc_poll_interval_ms);
		}
	}
}
