/*-------------------------------------------------------------------------
 *
 * tenant_cache.c
 *		Module initialisation: settings, shared memory, hooks.
 *
 * Settings are defined here and validated by check hooks.  There is one
 * worker per database of tenant_cache.database (a list); each has a slot in
 * a small shared-memory array holding its latch, so that a committing
 * backend can wake the worker of its database without NOTIFY (which would
 * serialise commits).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/un.h>

#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "tenant_cache.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *tc_database = NULL;
int			tc_ndatabases = 0;
char	  **tc_databases = NULL;
char	   *tc_redis_host = NULL;
int			tc_redis_port = 6379;
int			tc_redis_db = 0;
char	   *tc_redis_username = NULL;
char	   *tc_redis_password_file = NULL;
int			tc_redis_mode = TC_REDIS_STANDALONE;
char	   *tc_redis_nodes = NULL;
char	   *tc_sentinel_master = NULL;
char	   *tc_key_format = NULL;
int			tc_connect_timeout_ms = 1000;
int			tc_command_timeout_ms = 5000;
int			tc_batch_size = 500;
int			tc_poll_interval_ms = 1000;
int			tc_scan_count = 4000;
int			tc_max_retry_interval_ms = 30000;
int			tc_repeat_after_ms = 0;
int			tc_debug_pause_before_commit_ms = 0;
int			tc_debug_pause_after_ride_ms = 0;
bool		tc_merge_scans = true;
char	   *tc_publish_channel = NULL;

#define TC_DEFAULT_KEY_FORMAT "tenant:{tenant}:client:{client}:bu:{bu}:{pattern}"

/* One per database of tenant_cache.database, at the same index. */
typedef struct TcWorkerSlot
{
	Oid			worker_dboid;	/* database the worker drains, while it runs */
	Latch	   *worker_latch;	/* NULL while no worker runs */
	/* Inbox blocks written by commits since the worker last looked */
	TcInboxBlocks inbox;
} TcWorkerSlot;

typedef struct TcShared
{
	slock_t		mutex;			/* protects all the slots */
	int			nslots;
	TcWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} TcShared;

static TcShared *tc_shared = NULL;
static TcWorkerSlot *my_slot = NULL;	/* the worker's own */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;

static Size
shared_size(void)
{
	return add_size(offsetof(TcShared, slots),
					mul_size(tc_ndatabases, sizeof(TcWorkerSlot)));
}

static void
tc_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(shared_size()));
	RequestAddinShmemSpace(MAXALIGN(tc_twins_shmem_size()));
}

static void
tc_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tc_shared = ShmemInitStruct("tenant_cache", shared_size(), &found);
	if (!found)
	{
		SpinLockInit(&tc_shared->mutex);
		tc_shared->nslots = tc_ndatabases;
		for (int i = 0; i < tc_ndatabases; i++)
		{
			TcWorkerSlot *slot = &tc_shared->slots[i];

			slot->worker_dboid = InvalidOid;
			slot->worker_latch = NULL;
			memset(&slot->inbox, 0, sizeof(TcInboxBlocks));
			slot->inbox.min = InvalidBlockNumber;
		}
	}
	tc_twins_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/* Under the mutex: note an inbox block written (InvalidBlockNumber: all). */
static void
note_inbox_block(TcInboxBlocks *inbox, BlockNumber block)
{
	if (block == InvalidBlockNumber)
	{
		inbox->overflow = true;
		inbox->min = 0;
		return;
	}
	inbox->min = Min(inbox->min, block);
	for (int i = 0; i < inbox->n; i++)
		if (inbox->blocks[i] == block)
			return;
	if (inbox->n < TC_INBOX_BLOCK_SLOTS)
		inbox->blocks[inbox->n++] = block;
	else
		inbox->overflow = true;
}

/*
 * Wake the worker after a commit that queued invalidations, telling it the
 * inbox block the commit wrote (InvalidBlockNumber: unknown, read them all)
 * so that it reads only the blocks written since it last looked.  The
 * commit is visible by now, so the worker's next snapshot sees the row.
 * Cheap when the library was not preloaded (no shared memory: the worker
 * polls) and when no worker drains this database.
 */
void
tc_wake_worker(BlockNumber inbox_block)
{
	Latch	   *latch = NULL;

	if (tc_shared == NULL)
		return;
	SpinLockAcquire(&tc_shared->mutex);
	for (int i = 0; i < tc_shared->nslots; i++)
	{
		TcWorkerSlot *slot = &tc_shared->slots[i];

		if (slot->worker_dboid == MyDatabaseId)
		{
			latch = slot->worker_latch;
			note_inbox_block(&slot->inbox, inbox_block);
			break;
		}
	}
	SpinLockRelease(&tc_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/* The worker: the inbox blocks written since the last call. */
void
tc_take_inbox_blocks(TcInboxBlocks *out)
{
	SpinLockAcquire(&tc_shared->mutex);
	*out = my_slot->inbox;
	memset(&my_slot->inbox, 0, sizeof(TcInboxBlocks));
	my_slot->inbox.min = InvalidBlockNumber;
	SpinLockRelease(&tc_shared->mutex);
}

static void
tc_worker_detach(int code, Datum arg)
{
	SpinLockAcquire(&tc_shared->mutex);
	my_slot->worker_latch = NULL;
	my_slot->worker_dboid = InvalidOid;
	SpinLockRelease(&tc_shared->mutex);
}

/*
 * Called by the worker of tc_databases[index] once connected: publish its
 * latch in its slot.
 */
void
tc_worker_attach(int index)
{
	if (tc_shared == NULL || index < 0 || index >= tc_shared->nslots)
		elog(ERROR, "tenant_cache shared memory is not initialised");
	my_slot = &tc_shared->slots[index];
	SpinLockAcquire(&tc_shared->mutex);
	my_slot->worker_latch = MyLatch;
	my_slot->worker_dboid = MyDatabaseId;
	SpinLockRelease(&tc_shared->mutex);
	before_shmem_exit(tc_worker_detach, (Datum) 0);
	tc_twins_attach(index);
}

/*
 * COMMIT PREPARED commits a transaction that was prepared, maybe by another
 * session: no transaction callback of ours sees it, so wake the worker here.
 */
static void
tc_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				  bool readOnlyTree, ProcessUtilityContext context,
				  ParamListInfo params, QueryEnvironment *queryEnv,
				  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
		tc_wake_worker(InvalidBlockNumber);	/* its inbox block is not known here */
}

/*
 * INSERT, UPDATE, DELETE: give the result relations the WHEN clauses of
 * tenant_cache's row triggers already prepared (when.c).
 */
static void
tc_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) == 0 &&
		(queryDesc->operation == CMD_INSERT ||
		 queryDesc->operation == CMD_UPDATE ||
		 queryDesc->operation == CMD_DELETE))
		tc_prepare_when_clauses(queryDesc->estate, queryDesc->operation);
}

static bool
check_key_format(char **newval, void **extra, GucSource source)
{
	char	   *errmsg = NULL;
	TcKeyFormat *kf;

	kf = tc_parse_key_format(*newval, &errmsg);
	if (kf == NULL)
	{
		GUC_check_errmsg("invalid tenant_cache.key_format \"%s\"", *newval);
		GUC_check_errdetail("%s", errmsg);
		GUC_check_errhint("For example: tenant:{tenant}:client:{client}:bu:{bu}:{pattern}");
		return false;
	}
	*extra = kf;
	return true;
}

static void
assign_key_format(const char *newval, void *extra)
{
	tc_set_current_key_format((TcKeyFormat *) extra);
}

/*
 * key_format may differ per database (ALTER DATABASE ... SET, by a
 * superuser), for clusters whose databases serve differently keyed caches;
 * never per session or role: a session must not point its own writes at
 * another key format.
 */
static bool
check_key_format_source(GucSource source)
{
	switch (source)
	{
		case PGC_S_GLOBAL:
		case PGC_S_USER:
		case PGC_S_DATABASE_USER:
		case PGC_S_CLIENT:
		case PGC_S_SESSION:
			GUC_check_errcode(ERRCODE_CANT_CHANGE_RUNTIME_PARAM);
			GUC_check_errmsg("tenant_cache.key_format cannot be set per session or per role");
			GUC_check_errdetail("Every session of a database must build the keys the application uses.");
			GUC_check_errhint("Set it in postgresql.conf, or per database with ALTER DATABASE ... SET.");
			return false;
		default:
			return true;
	}
}

static bool
check_key_format_setting(char **newval, void **extra, GucSource source)
{
	return check_key_format_source(source) &&
		check_key_format(newval, extra, source);
}

/*
 * Split tenant_cache.database (modified in place): a value without a comma
 * or double quote is one name taken as written, as before lists existed
 * (spaces included); otherwise a comma-separated list, each name trimmed,
 * or double-quoted to hold a comma, a quote or spaces.  Names are never
 * downcased.
 */
static bool
split_databases(char *raw, List **names)
{
	if (strpbrk(raw, ",\"") == NULL)
	{
		*names = list_make1(raw);
		return true;
	}
	return SplitGUCList(raw, ',', names);
}

/* tenant_cache.database: up to TC_MAX_DATABASES distinct database names. */
static bool
check_database_list(char **newval, void **extra, GucSource source)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The value must not be empty.");
		return false;
	}
	raw = pstrdup(*newval);
	if (!split_databases(raw, &names))
	{
		GUC_check_errdetail("The list of database names is malformed.");
		return false;
	}
	if (list_length(names) > TC_MAX_DATABASES)
	{
		GUC_check_errdetail("At most %d databases can be listed.", TC_MAX_DATABASES);
		return false;
	}
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		if (name[0] == '\0' || strlen(name) >= NAMEDATALEN)
		{
			GUC_check_errdetail("A database name must be 1 to %d bytes long.",
								NAMEDATALEN - 1);
			return false;
		}
		for (ListCell *prev = list_head(names); prev != lc; prev = lnext(names, prev))
			if (strcmp(lfirst(prev), name) == 0)
			{
				GUC_check_errdetail("Database \"%s\" is listed more than once.", name);
				return false;
			}
	}
	return true;
}

/* The databases of tenant_cache.database, kept for the life of the process. */
static void
parse_database_list(void)
{
	char	   *raw = MemoryContextStrdup(TopMemoryContext, tc_database);
	List	   *names;
	ListCell   *lc;
	int			i = 0;

	if (!split_databases(raw, &names))
		elog(ERROR, "invalid tenant_cache.database \"%s\"", tc_database);
	tc_databases = MemoryContextAlloc(TopMemoryContext,
									  sizeof(char *) * Max(list_length(names), 1));
	foreach(lc, names)
		tc_databases[i++] = lfirst(lc);
	tc_ndatabases = i;
	list_free(names);
}

/* Index of a database in tenant_cache.database, or -1. */
int
tc_database_index(const char *dbname)
{
	for (int i = 0; i < tc_ndatabases; i++)
		if (strcmp(tc_databases[i], dbname) == 0)
			return i;
	return -1;
}

static bool
check_not_empty(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The value must not be empty.");
		return false;
	}
	return true;
}

/*
 * A host name or address, or the absolute path of a Unix-domain socket,
 * short enough for sockaddr_un (hiredis truncates longer paths silently).
 */
static bool
check_redis_host(char **newval, void **extra, GucSource source)
{
	const int	sun_path_size = (int) sizeof(((struct sockaddr_un *) NULL)->sun_path);

	if (!check_not_empty(newval, extra, source))
		return false;
	if ((*newval)[0] == '/' && strlen(*newval) >= sun_path_size)
	{
		GUC_check_errdetail("A Unix-domain socket path must be shorter than %d bytes.",
							sun_path_size);
		return false;
	}
	if ((*newval)[0] != '/' && strlen(*newval) > TC_MAX_HOST_LEN)
	{
		GUC_check_errdetail("A host name must be at most %d bytes long.", TC_MAX_HOST_LEN);
		return false;
	}
	return true;
}

static bool
check_password_file(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && (*newval)[0] != '\0' && !is_absolute_path(*newval))
	{
		GUC_check_errdetail("The Redis password file must be given as an absolute path.");
		return false;
	}
	return true;
}

static const struct config_enum_entry redis_mode_options[] = {
	{"standalone", TC_REDIS_STANDALONE, false},
	{"cluster", TC_REDIS_CLUSTER, false},
	{"sentinel", TC_REDIS_SENTINEL, false},
	{NULL, 0, false}
};

/* A comma-separated list of host:port (redis.c parses it). */
static bool
check_redis_nodes(char **newval, void **extra, GucSource source)
{
	char	   *errmsg = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (tc_parse_redis_nodes(*newval, NULL, TC_MAX_REDIS_NODES, &errmsg) < 0)
	{
		GUC_check_errmsg("invalid tenant_cache.redis_nodes \"%s\"", *newval);
		GUC_check_errdetail("%s", errmsg);
		GUC_check_errhint("List host:port pairs separated by commas, for example: 127.0.0.1:26379,127.0.0.1:26380");
		return false;
	}
	return true;
}

/* A sentinel master name: a word, as Redis prints it. */
static bool
check_sentinel_master(char **newval, void **extra, GucSource source)
{
	for (const char *p = *newval ? *newval : ""; *p; p++)
		if ((unsigned char) *p <= ' ' || (unsigned char) *p > '~')
		{
			GUC_check_errdetail("A master name must not contain spaces or control characters.");
			return false;
		}
	return true;
}

static void
define_int(const char *name, const char *desc, int *var, int boot, int min,
		   int max, int flags)
{
	DefineCustomIntVariable(name, desc, NULL, var, boot, min, max,
							PGC_SIGHUP, flags, NULL, NULL, NULL);
}

static void
define_settings(void)
{
	DefineCustomStringVariable("tenant_cache.database",
							   gettext_noop("Databases whose invalidation queues are drained, one worker each (comma-separated)."),
							   NULL, &tc_database, "postgres",
							   PGC_POSTMASTER, GUC_LIST_INPUT, check_database_list, NULL, NULL);
	DefineCustomStringVariable("tenant_cache.redis_host",
							   gettext_noop("Redis host (IP address or name) the worker connects to, or the path of its Unix-domain socket (starting with /)."),
							   NULL, &tc_redis_host, "127.0.0.1",
							   PGC_SIGHUP, 0, check_redis_host, NULL, NULL);
	define_int("tenant_cache.redis_port", gettext_noop("Redis TCP port."),
			   &tc_redis_port, 6379, 1, 65535, 0);
	define_int("tenant_cache.redis_db", gettext_noop("Redis logical database number (SELECT)."),
			   &tc_redis_db, 0, 0, INT_MAX, 0);
	DefineCustomStringVariable("tenant_cache.redis_username",
							   gettext_noop("Redis ACL user for AUTH; empty uses the default user."),
							   NULL, &tc_redis_username, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("tenant_cache.redis_password_file",
							   gettext_noop("File holding the Redis password; empty sends no AUTH."),
							   NULL, &tc_redis_password_file, "",
							   PGC_SIGHUP, 0, check_password_file, NULL, NULL);
	DefineCustomEnumVariable("tenant_cache.redis_mode",
							 gettext_noop("How the worker finds Redis: standalone, cluster or sentinel."),
							 NULL, &tc_redis_mode, TC_REDIS_STANDALONE,
							 redis_mode_options, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("tenant_cache.redis_nodes",
							   gettext_noop("Seed nodes (cluster) or sentinels (sentinel), as host:port,..."),
							   gettext_noop("Empty: redis_host:redis_port is the only one."),
							   &tc_redis_nodes, "",
							   PGC_SIGHUP, 0, check_redis_nodes, NULL, NULL);
	DefineCustomStringVariable("tenant_cache.sentinel_master",
							   gettext_noop("Name of the master the sentinels monitor (sentinel mode)."),
							   NULL, &tc_sentinel_master, "",
							   PGC_SIGHUP, 0, check_sentinel_master, NULL, NULL);
	DefineCustomStringVariable("tenant_cache.key_format",
							   gettext_noop("How the application builds cache keys."),
							   gettext_noop("Placeholders: {tenant}, {client}, {bu}, {pattern}."),
							   &tc_key_format, TC_DEFAULT_KEY_FORMAT,
							   PGC_SUSET, 0, check_key_format_setting, assign_key_format, NULL);
	define_int("tenant_cache.connect_timeout_ms", gettext_noop("Timeout for connecting to Redis."),
			   &tc_connect_timeout_ms, 1000, 1, INT_MAX, GUC_UNIT_MS);
	define_int("tenant_cache.command_timeout_ms", gettext_noop("Timeout for one Redis command."),
			   &tc_command_timeout_ms, 5000, 1, INT_MAX, GUC_UNIT_MS);
	define_int("tenant_cache.batch_size", gettext_noop("Globs applied per worker transaction (queue entries and newly committed globs)."),
			   &tc_batch_size, 500, 1, 100000, 0);
	define_int("tenant_cache.poll_interval_ms", gettext_noop("Fallback wake-up interval of the worker."),
			   &tc_poll_interval_ms, 1000, 10, 3600 * 1000, GUC_UNIT_MS);
	define_int("tenant_cache.scan_count", gettext_noop("COUNT hint passed to Redis SCAN."),
			   &tc_scan_count, 4000, 1, 1000000, 0);
	define_int("tenant_cache.max_retry_interval_ms", gettext_noop("Cap of the retry backoff while Redis fails."),
			   &tc_max_retry_interval_ms, 30000, 100, 24 * 3600 * 1000, GUC_UNIT_MS);

	define_int("tenant_cache.repeat_after_ms",
			   gettext_noop("Apply each glob once more this long after it was applied; 0 disables."),
			   &tc_repeat_after_ms, 0, 0, 3600 * 1000, GUC_UNIT_MS);
	DefineCustomBoolVariable("tenant_cache.merge_scans",
							 gettext_noop("Clear all globs of a batch that need SCAN in one merged SCAN pass."),
							 gettext_noop("Off: one SCAN pass per glob (for comparison in benchmarks)."),
							 &tc_merge_scans, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("tenant_cache.publish_channel",
							   gettext_noop("Redis pub/sub channel on which the worker announces each glob it applied; empty: none."),
							   NULL, &tc_publish_channel, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tenant_cache.debug_pause_before_commit_ms",
							gettext_noop("Testing only: the worker waits this long between applying a batch and committing it."),
							NULL, &tc_debug_pause_before_commit_ms, 0, 0, 600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS | GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tenant_cache.debug_pause_after_ride_ms",
							gettext_noop("Testing only: a commit that rides on an unread inbox row waits this long before it completes."),
							NULL, &tc_debug_pause_after_ride_ms, 0, 0, 600 * 1000,
							PGC_SUSET, GUC_UNIT_MS | GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("tenant_cache");
}

void
_PG_init(void)
{
	tc_toolbox_init();			/* its settings, before the prefix is reserved */
	define_settings();
	parse_database_list();
	tc_depcache_init();
	tc_trigger_init();
	tc_when_init();
	tc_queue_init();

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = tc_ProcessUtility;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = tc_ExecutorStart;

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = tc_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = tc_shmem_startup;
	tc_stats_init();
	tc_register_worker();
}
