/*-------------------------------------------------------------------------
 *
 * stats.c
 *		Worker statistics in shared memory: the stats and pattern_stats views.
 *
 * The worker reports what it does through a few calls (tc_stats_*): its
 * state, each glob it applies (keys deleted, commit-to-applied lag), each
 * SCAN pass, each Redis error.  The numbers live in shared memory, so they
 * survive worker restarts; a clean server shutdown writes them to
 * pg_stat/tenant_cache.stat and the next start reads them back (as
 * pg_stat_statements does; a crash loses them), and one LWLock protects
 * them: the worker
 * takes it once per glob, readers briefly.  Lags are kept in a ring of the
 * last TC_STATS_LAG_WINDOW applications for the percentiles.  Per-pattern
 * counters are kept in a fixed-size hash keyed by the {pattern} part of the
 * globs (glob.c finds it); once it is full, further patterns are counted
 * in one "other" entry, as are globs whose shape does not match key_format.
 * Error messages stored here are the worker's own, which never contain the
 * Redis password.  Each database of tenant_cache.database has its own
 * worker and its own set of all this (a slot, at the database's index in
 * the list): the views of a database show its worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "commands/dbcommands.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "tenant_cache.h"

PG_FUNCTION_INFO_V1(tc_worker_stats);
PG_FUNCTION_INFO_V1(tc_pattern_counters);
PG_FUNCTION_INFO_V1(tc_stats_reset);

#define TC_STATS_LAG_WINDOW		1024
#define TC_STATS_MAX_PATTERNS	1024
#define TC_STATS_KEY_LEN		(TC_MAX_PATTERN_LEN + 2)	/* pattern, "*", NUL */
#define TC_STATS_OTHER			""	/* key of the catch-all entry */

typedef struct TcPatternCounters
{
	char		key[TC_STATS_KEY_LEN];	/* {pattern} part of the globs */
	int64		queued;
	int64		applied;
	int64		keys_deleted;
	TimestampTz last_applied;
} TcPatternCounters;

typedef struct TcStats
{
	LWLock	   *lock;
	/* The worker process, now. */
	int			worker_pid;
	TcWorkerState worker_state;
	TimestampTz worker_started_at;
	bool		redis_connected;
	/* Since stats_reset. */
	int64		worker_starts;
	int64		queued;
	int64		applied;
	int64		keys_deleted;
	int64		scan_passes;
	int64		redis_errors;
	char		last_error[sizeof(((TcWorkerStatus *) NULL)->last_error)];
	TimestampTz last_error_at;
	TimestampTz last_success_at;
	double		last_lag_ms;
	int			lag_next;		/* ring position of the next sample */
	int			lag_count;		/* samples in the ring */
	double		lag_ms[TC_STATS_LAG_WINDOW];
	TimestampTz lag_at[TC_STATS_LAG_WINDOW];
	TimestampTz stats_reset;
} TcStats;

static TcStats *stats_slots = NULL;	/* one per database */
static TcPatternCounters *counters_for(const char *key);
static HTAB **pattern_hashes = NULL;
/* The slot in use: the worker's own, or the one a view of a database reads. */
static TcStats *stats = NULL;
static HTAB *pattern_counters = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static const char *const state_names[] = {
	[TC_WORKER_STOPPED] = "not running",
	[TC_WORKER_STARTING] = "starting",
	[TC_WORKER_NO_EXTENSION] = "waiting for extension",
	[TC_WORKER_IDLE] = "idle",
	[TC_WORKER_APPLYING] = "applying",
	[TC_WORKER_RETRYING] = "retrying Redis",
};

static Size
stats_shmem_size(void)
{
	return mul_size(tc_ndatabases,
					add_size(MAXALIGN(sizeof(TcStats)),
							 hash_estimate_size(TC_STATS_MAX_PATTERNS + 1,
												sizeof(TcPatternCounters))));
}

static void
select_slot(int index)
{
	stats = &stats_slots[index];
	pattern_counters = pattern_hashes[index];
}

static void
stats_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(stats_shmem_size());
	RequestNamedLWLockTranche("tenant_cache stats", tc_ndatabases);
}

/* The catch-all entry always exists, so counting never needs a new one. */
static void
enter_other_entry(void)
{
	TcPatternCounters *other;
	bool		found;

	other = hash_search(pattern_counters, TC_STATS_OTHER, HASH_ENTER, &found);
	if (!found)
	{
		other->queued = other->applied = other->keys_deleted = 0;
		other->last_applied = 0;
	}
}

/* Zero the counters (not the worker's state).  Caller holds the lock. */
static void
reset_counters(void)
{
	HASH_SEQ_STATUS seq;
	TcPatternCounters *entry;

	stats->worker_starts = 0;
	stats->queued = stats->applied = stats->keys_deleted = 0;
	stats->scan_passes = stats->redis_errors = 0;
	stats->last_error[0] = '\0';
	stats->last_error_at = stats->last_success_at = 0;
	stats->last_lag_ms = 0;
	stats->lag_next = stats->lag_count = 0;
	stats->stats_reset = GetCurrentTimestamp();

	hash_seq_init(&seq, pattern_counters);
	while ((entry = hash_seq_search(&seq)) != NULL)
		hash_search(pattern_counters, entry->key, HASH_REMOVE, NULL);
	enter_other_entry();
}

/*
 * Persistence across clean restarts.  The file holds, per database slot,
 * the database's name, its counters and its pattern entries; a file from
 * another build (header or struct sizes differ) is ignored, and a database
 * no longer in tenant_cache.database is dropped.  Written by the
 * postmaster at a clean shutdown, read (then removed, so that a crash never
 * brings back old numbers) when shared memory is set up.
 */
#define TC_STATS_FILE		PGSTAT_STAT_PERMANENT_DIRECTORY "/tenant_cache.stat"
#define TC_STATS_FILE_MAGIC	0x54435331	/* "TCS1" */

typedef struct TcStatsFileHeader
{
	uint32		magic;
	uint32		stats_size;		/* sizeof(TcStats) */
	uint32		pattern_size;	/* sizeof(TcPatternCounters) */
	int32		nslots;
} TcStatsFileHeader;

/*
 * Take the counters of saved, a slot as written to the file: all of it but
 * the lock and the worker's live state, which start afresh.
 */
static void
restore_counters(const TcStats *saved)
{
	LWLock	   *lock = stats->lock;

	*stats = *saved;
	stats->lock = lock;
	stats->worker_pid = 0;
	stats->worker_state = TC_WORKER_STOPPED;
	stats->worker_started_at = 0;
	stats->redis_connected = false;
	stats->last_error[sizeof(stats->last_error) - 1] = '\0';
	stats->lag_count = Min(Max(stats->lag_count, 0), TC_STATS_LAG_WINDOW);
	stats->lag_next = Min(Max(stats->lag_next, 0), TC_STATS_LAG_WINDOW - 1);
}

static void
restore_pattern(const TcPatternCounters *saved)
{
	char		key[TC_STATS_KEY_LEN];
	TcPatternCounters *entry;

	memcpy(key, saved->key, TC_STATS_KEY_LEN);
	key[TC_STATS_KEY_LEN - 1] = '\0';
	entry = counters_for(key);
	entry->queued += saved->queued;
	entry->applied += saved->applied;
	entry->keys_deleted += saved->keys_deleted;
	entry->last_applied = Max(entry->last_applied, saved->last_applied);
}

/* Read one slot's record; false at the end of the file or on a short read. */
static bool
load_slot(FILE *file)
{
	char		dbname[NAMEDATALEN];
	TcStats		saved;
	int32		npatterns;
	int			index;

	if (fread(dbname, sizeof(dbname), 1, file) != 1 ||
		fread(&saved, sizeof(saved), 1, file) != 1 ||
		fread(&npatterns, sizeof(npatterns), 1, file) != 1 ||
		npatterns < 0 || npatterns > TC_STATS_MAX_PATTERNS + 1)
		return false;
	dbname[NAMEDATALEN - 1] = '\0';
	index = tc_database_index(dbname);
	if (index >= 0)
	{
		select_slot(index);
		restore_counters(&saved);
	}
	for (int i = 0; i < npatterns; i++)
	{
		TcPatternCounters entry;

		if (fread(&entry, sizeof(entry), 1, file) != 1)
			return false;
		if (index >= 0)
			restore_pattern(&entry);
	}
	return true;
}

static void
load_stats_file(void)
{
	FILE	   *file = AllocateFile(TC_STATS_FILE, PG_BINARY_R);
	TcStatsFileHeader header;

	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", TC_STATS_FILE)));
		return;
	}
	if (fread(&header, sizeof(header), 1, file) == 1 &&
		header.magic == TC_STATS_FILE_MAGIC &&
		header.stats_size == sizeof(TcStats) &&
		header.pattern_size == sizeof(TcPatternCounters))
	{
		for (int i = 0; i < header.nslots; i++)
			if (!load_slot(file))
			{
				ereport(LOG,
						(errmsg("file \"%s\" is truncated; tenant_cache statistics partly restored",
								TC_STATS_FILE)));
				break;
			}
	}
	FreeFile(file);
	unlink(TC_STATS_FILE);
}

static bool
write_slot(FILE *file, int index)
{
	char		dbname[NAMEDATALEN];
	int32		npatterns;
	HASH_SEQ_STATUS seq;
	TcPatternCounters *entry;
	bool		ok;

	select_slot(index);
	memset(dbname, 0, sizeof(dbname));
	strlcpy(dbname, tc_databases[index], sizeof(dbname));
	npatterns = hash_get_num_entries(pattern_counters);
	ok = fwrite(dbname, sizeof(dbname), 1, file) == 1 &&
		fwrite(stats, sizeof(TcStats), 1, file) == 1 &&
		fwrite(&npatterns, sizeof(npatterns), 1, file) == 1;
	hash_seq_init(&seq, pattern_counters);
	while ((entry = hash_seq_search(&seq)) != NULL)
		if (ok && fwrite(entry, sizeof(TcPatternCounters), 1, file) != 1)
			ok = false;
	return ok;
}

/* on_shmem_exit in the postmaster: save the counters at a clean shutdown. */
static void
stats_shmem_shutdown(int code, Datum arg)
{
	const char *tmp = TC_STATS_FILE ".tmp";
	TcStatsFileHeader header = {TC_STATS_FILE_MAGIC, sizeof(TcStats),
	sizeof(TcPatternCounters), tc_ndatabases};
	FILE	   *file;
	bool		ok;

	if (code != 0 || stats_slots == NULL)
		return;					/* a crash: the numbers may be inconsistent */
	file = AllocateFile(tmp, PG_BINARY_W);
	if (file == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp)));
		return;
	}
	ok = fwrite(&header, sizeof(header), 1, file) == 1;
	for (int i = 0; ok && i < tc_ndatabases; i++)
		ok = write_slot(file, i);
	if (FreeFile(file) != 0)
		ok = false;
	if (ok)
		(void) durable_rename(tmp, TC_STATS_FILE, LOG);
	else
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp)));
		unlink(tmp);
	}
}

static void
stats_shmem_startup(void)
{
	HASHCTL		info;
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stats_slots = ShmemInitStruct("tenant_cache stats",
								  mul_size(tc_ndatabases, sizeof(TcStats)), &found);
	pattern_hashes = MemoryContextAlloc(TopMemoryContext,
										sizeof(HTAB *) * tc_ndatabases);
	info.keysize = TC_STATS_KEY_LEN;
	info.entrysize = sizeof(TcPatternCounters);
	for (int i = 0; i < tc_ndatabases; i++)
	{
		char		name[64];

		snprintf(name, sizeof(name), "tenant_cache pattern stats %d", i);
		pattern_hashes[i] = ShmemInitHash(name,
										  TC_STATS_MAX_PATTERNS + 1,
										  TC_STATS_MAX_PATTERNS + 1,
										  &info, HASH_ELEM | HASH_STRINGS);
		select_slot(i);
		if (!found)
		{
			memset(stats, 0, sizeof(TcStats));
			stats->lock = &(GetNamedLWLockTranche("tenant_cache stats"))[i].lock;
			stats->worker_state = TC_WORKER_STOPPED;
			reset_counters();
		}
	}
	if (!found)
		load_stats_file();
	stats = NULL;				/* until a slot is chosen */
	pattern_counters = NULL;
	LWLockRelease(AddinShmemInitLock);
	if (!IsUnderPostmaster)
		on_shmem_exit(stats_shmem_shutdown, (Datum) 0);
}

/* From _PG_init, when loaded by shared_preload_libraries. */
void
tc_stats_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

/*
 * For the views: the slot of this database's worker.  A database no worker
 * drains reads the first database's (the only one by default).
 */
static void
select_my_database(void)
{
	char	   *dbname = get_database_name(MyDatabaseId);
	int			index = dbname ? tc_database_index(dbname) : -1;

	select_slot(Max(index, 0));
}

static void
require_stats(void)
{
	if (stats_slots != NULL)
	{
		select_my_database();
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("tenant_cache statistics are not available"),
			 errdetail("They live in shared memory, which tenant_cache only sets up when it is loaded by shared_preload_libraries."),
			 errhint("Add tenant_cache to shared_preload_libraries and restart the server.")));
}

/* The {pattern} part of a glob, or TC_STATS_OTHER. */
static void
pattern_key(const char *glob, char *key)
{
	int			start;
	int			len;

	if (tc_glob_pattern_part(tc_current_key_format(), glob, &start, &len) &&
		len < TC_STATS_KEY_LEN)
	{
		memcpy(key, glob + start, len);
		key[len] = '\0';
	}
	else
		strcpy(key, TC_STATS_OTHER);
}

/* The entry of a pattern: a new one while there is room.  Lock held. */
static TcPatternCounters *
counters_for(const char *key)
{
	TcPatternCounters *entry;
	bool		found;

	entry = hash_search(pattern_counters, key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;
	if (hash_get_num_entries(pattern_counters) > TC_STATS_MAX_PATTERNS)
		return hash_search(pattern_counters, TC_STATS_OTHER, HASH_FIND, NULL);
	entry = hash_search(pattern_counters, key, HASH_ENTER_NULL, &found);
	if (entry == NULL)
		return hash_search(pattern_counters, TC_STATS_OTHER, HASH_FIND, NULL);
	if (!found)
	{
		entry->queued = entry->applied = entry->keys_deleted = 0;
		entry->last_applied = 0;
	}
	return entry;
}

/* Called by the worker with the lock held: is its connection open? */
static void
note_connection(void)
{
	stats->redis_connected = tc_redis_is_connected();
}

static void
stats_worker_exit(int code, Datum arg)
{
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	stats->worker_pid = 0;
	stats->worker_state = TC_WORKER_STOPPED;
	stats->redis_connected = false;
	LWLockRelease(stats->lock);
}

/* The worker of tc_databases[index] started (once connected to it). */
void
tc_stats_worker_started(int index)
{
	if (stats_slots == NULL)
		return;
	select_slot(index);
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	stats->worker_pid = MyProcPid;
	stats->worker_state = TC_WORKER_STARTING;
	stats->worker_started_at = GetCurrentTimestamp();
	stats->worker_starts++;
	note_connection();
	LWLockRelease(stats->lock);
	before_shmem_exit(stats_worker_exit, (Datum) 0);
}

void
tc_stats_worker_state(TcWorkerState state)
{
	if (stats == NULL)
		return;
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	stats->worker_state = state;
	note_connection();
	LWLockRelease(stats->lock);
}

/* The worker took up a queue entry for the first time. */
void
tc_stats_queued(const char *glob)
{
	tc_stats_queued_n(glob, 1);
}

/* ... n committed transactions queued this glob. */
void
tc_stats_queued_n(const char *glob, int64 n)
{
	char		key[TC_STATS_KEY_LEN];

	if (stats == NULL)
		return;
	pattern_key(glob, key);
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	stats->queued += n;
	counters_for(key)->queued += n;
	LWLockRelease(stats->lock);
}

/* The worker starts a SCAN iteration over the keyspace. */
void
tc_stats_scan_pass(void)
{
	if (stats == NULL)
		return;
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	stats->scan_passes++;
	LWLockRelease(stats->lock);
}

/*
 * A glob was applied and keys_deleted keys were removed.  enqueued_at is
 * when its oldest entry applied for the first time was queued (at the
 * writer's commit), 0 when it was a repeat: the lag sample.
 */
void
tc_stats_applied(const char *glob, int64 keys_deleted, TimestampTz enqueued_at)
{
	char		key[TC_STATS_KEY_LEN];
	TimestampTz now = GetCurrentTimestamp();
	TcPatternCounters *entry;

	if (stats == NULL)
		return;
	pattern_key(glob, key);
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	stats->applied++;
	stats->keys_deleted += keys_deleted;
	stats->last_success_at = now;
	stats->redis_connected = true;
	if (enqueued_at != 0)
	{
		double		lag = Max(now - enqueued_at, 0) / 1000.0;

		stats->last_lag_ms = lag;
		stats->lag_ms[stats->lag_next] = lag;
		stats->lag_at[stats->lag_next] = now;
		stats->lag_next = (stats->lag_next + 1) % TC_STATS_LAG_WINDOW;
		stats->lag_count = Min(stats->lag_count + 1, TC_STATS_LAG_WINDOW);
	}
	entry = counters_for(key);
	entry->applied++;
	entry->keys_deleted += keys_deleted;
	entry->last_applied = now;
	LWLockRelease(stats->lock);
}

/* Redis failed the worker: a refused command, a lost connection, a connect. */
void
tc_stats_redis_error(const char *errmsg)
{
	if (stats == NULL)
		return;
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	stats->redis_errors++;
	strlcpy(stats->last_error, errmsg ? errmsg : "unknown error",
			sizeof(stats->last_error));
	stats->last_error_at = GetCurrentTimestamp();
	note_connection();
	LWLockRelease(stats->lock);
}

/* Is the process that registered as the worker still there? */
static bool
worker_alive(int pid)
{
	return pid != 0 && BackendPidGetProc(pid) != NULL;
}

/* The worker's state for health(); false when there is no shared memory. */
bool
tc_stats_worker_status(TcWorkerStatus *status)
{
	if (stats_slots == NULL)
		return false;
	select_my_database();
	LWLockAcquire(stats->lock, LW_SHARED);
	status->pid = stats->worker_pid;
	status->state = stats->worker_state;
	status->redis_connected = stats->redis_connected;
	strlcpy(status->last_error, stats->last_error, sizeof(status->last_error));
	status->last_error_at = stats->last_error_at;
	status->last_success_at = stats->last_success_at;
	LWLockRelease(stats->lock);
	if (!worker_alive(status->pid))
	{
		status->pid = 0;
		status->state = TC_WORKER_STOPPED;
		status->redis_connected = false;
	}
	return true;
}

const char *
tc_worker_state_name(TcWorkerState state)
{
	return state_names[state];
}

static int
compare_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted[0..n). */
static double
percentile(const double *sorted, int n, double p)
{
	int			rank = (int) ceil(p * n);

	return sorted[Max(rank, 1) - 1];
}

static Datum
timestamp_or_null(TimestampTz t, bool *isnull)
{
	*isnull = (t == 0);
	return TimestampTzGetDatum(t);
}

/*
 * worker_stats(): one row, for the view tenant_cache.stats (which adds the
 * queue's depth and age).
 */
Datum
tc_worker_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	TcStats		copy;
	Datum		values[18];
	bool		nulls[18];
	int			i = 0;
	bool		alive;

	require_stats();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	LWLockAcquire(stats->lock, LW_SHARED);
	memcpy(&copy, stats, sizeof(TcStats));
	LWLockRelease(stats->lock);
	alive = worker_alive(copy.worker_pid);
	qsort(copy.lag_ms, copy.lag_count, sizeof(double), compare_double);
	memset(nulls, 0, sizeof(nulls));

	values[i] = Int32GetDatum(copy.worker_pid);
	nulls[i++] = !alive;
	values[i++] = CStringGetTextDatum(state_names[alive ? copy.worker_state :
												  TC_WORKER_STOPPED]);
	values[i] = timestamp_or_null(copy.worker_started_at, &nulls[i]);
	nulls[i++] |= !alive;
	values[i++] = BoolGetDatum(alive && copy.redis_connected);
	values[i] = Float8GetDatum(copy.last_lag_ms);
	nulls[i++] = copy.lag_count == 0;
	values[i] = Float8GetDatum(copy.lag_count ? percentile(copy.lag_ms, copy.lag_count, 0.50) : 0);
	nulls[i++] = copy.lag_count == 0;
	values[i] = Float8GetDatum(copy.lag_count ? percentile(copy.lag_ms, copy.lag_count, 0.99) : 0);
	nulls[i++] = copy.lag_count == 0;
	values[i++] = Int32GetDatum(copy.lag_count);
	values[i++] = Int64GetDatum(copy.queued);
	values[i++] = Int64GetDatum(copy.applied);
	values[i++] = Int64GetDatum(copy.keys_deleted);
	values[i++] = Int64GetDatum(copy.scan_passes);
	values[i++] = Int64GetDatum(copy.redis_errors);
	values[i] = CStringGetTextDatum(copy.last_error);
	nulls[i++] = copy.last_error[0] == '\0';
	values[i] = timestamp_or_null(copy.last_error_at, &nulls[i]);
	i++;
	values[i] = timestamp_or_null(copy.last_success_at, &nulls[i]);
	i++;
	values[i++] = Int64GetDatum(copy.worker_starts);
	values[i] = timestamp_or_null(copy.stats_reset, &nulls[i]);
	i++;
	Assert(i == lengthof(values));
	if (tupdesc->natts != i)
		elog(ERROR, "tenant_cache.worker_stats() is declared with %d columns, not %d",
			 tupdesc->natts, i);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* A {pattern} part for each registered pattern, as the worker's globs have it. */
static char *
registered_key(const char *pattern)
{
	const char *none[TC_NLEVELS] = {NULL, NULL, NULL};
	TcColumns	columns = {0, NULL};
	StringInfoData glob;
	char	   *key = palloc(TC_STATS_KEY_LEN);

	initStringInfo(&glob);
	tc_build_glob(&glob, tc_current_key_format(), none,
				  tc_parse_pattern(pattern, &columns), NULL);
	pattern_key(glob.data, key);
	pfree(glob.data);
	return key;
}

static void
put_counters(Tuplestorestate *ts, TupleDesc desc, const char *model,
			 const char *pattern, const TcPatternCounters *c)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	values[0] = model ? CStringGetTextDatum(model) : (Datum) 0;
	nulls[0] = model == NULL;
	values[1] = pattern ? CStringGetTextDatum(pattern) : (Datum) 0;
	nulls[1] = pattern == NULL;
	values[2] = Int64GetDatum(c ? c->queued : 0);
	values[3] = Int64GetDatum(c ? c->applied : 0);
	values[4] = Int64GetDatum(c ? c->keys_deleted : 0);
	values[5] = timestamp_or_null(c ? c->last_applied : 0, &nulls[5]);
	tuplestore_putvalues(ts, desc, values, nulls);
}

/*
 * pattern_counters(models text[], patterns text[]): the counters of each
 * registered (model, pattern) pair, given by the view pattern_stats (which
 * reads the dependency table with its owner's rights), then those of
 * patterns no longer or never registered (model NULL; invalidate_pattern()
 * and invalidate_all() globs), then the catch-all (pattern NULL) when it
 * counted anything.  A glob names its pattern, not the model whose write
 * queued it: models that share a pattern show the same counters.
 */
Datum
tc_pattern_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *models_arr = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *patterns_arr = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *models;
	Datum	   *patterns;
	bool	   *mnulls;
	bool	   *pnulls;
	int			nmodels;
	int			npatterns;
	char	  **keys;
	int			nentries = 0;
	TcPatternCounters *entries;
	HASH_SEQ_STATUS seq;
	TcPatternCounters *e;

	require_stats();
	InitMaterializedSRF(fcinfo, 0);
	deconstruct_array(models_arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &models, &mnulls, &nmodels);
	deconstruct_array(patterns_arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &patterns, &pnulls, &npatterns);
	if (nmodels != npatterns)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("models and patterns must have the same number of elements")));
	keys = palloc(sizeof(char *) * Max(npatterns, 1));
	for (int i = 0; i < npatterns; i++)
		keys[i] = pnulls[i] ? NULL : registered_key(TextDatumGetCString(patterns[i]));

	/* Copy the entries out, so that no lock is held while building rows. */
	LWLockAcquire(stats->lock, LW_SHARED);
	entries = palloc(sizeof(TcPatternCounters) *
					 (hash_get_num_entries(pattern_counters) + 1));
	hash_seq_init(&seq, pattern_counters);
	while ((e = hash_seq_search(&seq)) != NULL)
		entries[nentries++] = *e;
	LWLockRelease(stats->lock);

	for (int i = 0; i < npatterns; i++)
	{
		const TcPatternCounters *c = NULL;

		if (keys[i] == NULL || mnulls[i])
			continue;
		for (int k = 0; k < nentries && c == NULL; k++)
			if (keys[i][0] != '\0' && strcmp(entries[k].key, keys[i]) == 0)
				c = &entries[k];
		put_counters(rsinfo->setResult, rsinfo->setDesc,
					 TextDatumGetCString(models[i]),
					 TextDatumGetCString(patterns[i]), c);
	}
	for (int k = 0; k < nentries; k++)
	{
		bool		registered = false;
		bool		other = entries[k].key[0] == '\0';

		for (int i = 0; i < npatterns && !registered; i++)
			registered = keys[i] != NULL && strcmp(entries[k].key, keys[i]) == 0;
		if (registered || (other && entries[k].queued == 0 && entries[k].applied == 0))
			continue;
		put_counters(rsinfo->setResult, rsinfo->setDesc, NULL,
					 other ? NULL : entries[k].key, &entries[k]);
	}
	return (Datum) 0;
}

/* stats_reset(): zero the counters; returns the new stats_reset time. */
Datum
tc_stats_reset(PG_FUNCTION_ARGS)
{
	TimestampTz t;

	require_stats();
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	reset_counters();
	t = stats->stats_reset;
	LWLockRelease(stats->lock);
	PG_RETURN_TIMESTAMPTZ(t);
}
