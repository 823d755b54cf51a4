/*-------------------------------------------------------------------------
 *
 * queue.c
 *		Transaction-local set of globs, written to the durable queue at commit.
 *
 * Triggers and invalidate_*() add globs here.  Each distinct glob is kept
 * once per transaction.  Globs are grouped in frames, one per subtransaction
 * that added any: a rolled-back savepoint drops its frame's globs (so that a
 * later identical write queues them again), a released one hands them to its
 * parent.  At PRE_COMMIT (and PRE_PREPARE, for two-phase commit) the set is
 * appended to tenant_cache.inbox as one row, as part of the writing
 * transaction: nothing for a rollback, nothing lost after a commit.  The
 * worker reads the inbox rows and applies their globs, or queues them in
 * tenant_cache.pending, one waiting entry per glob (absorb.c, worker.c).
 * At COMMIT the worker's latch is set.  The structure follows the transaction
 * callbacks of contrib/postgres_fdw/connection.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "tenant_cache.h"

/* A set of C strings (simplehash). */
typedef struct StrEntry
{
	char	   *key;
	uint32		hash;
	char		status;
} StrEntry;

#define SH_PREFIX strset
#define SH_ELEMENT_TYPE StrEntry
#define SH_KEY_TYPE char *
#define SH_KEY key
#define SH_HASH_KEY(tb, k) hash_bytes((const unsigned char *) (k), strlen(k))
#define SH_EQUAL(tb, a, b) (strcmp(a, b) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * A set of binary row keys (the raw images of a row's columns, see
 * tc_queue_row_seen), checked before the values are printed.
 */
typedef struct BinKey
{
	const char *data;
	uint32		len;
} BinKey;

typedef struct BinEntry
{
	BinKey		key;
	uint32		hash;
	char		status;
} BinEntry;

#define SH_PREFIX binset
#define SH_ELEMENT_TYPE BinEntry
#define SH_KEY_TYPE BinKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) hash_bytes((const unsigned char *) (k).data, (k).len)
#define SH_EQUAL(tb, a, b) ((a).len == (b).len && memcmp((a).data, (b).data, (a).len) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* Globs added while one subtransaction was the innermost to add any. */
typedef struct QueueFrame
{
	SubTransactionId subid;
	List	   *globs;
} QueueFrame;

static MemoryContext xact_cxt = NULL;	/* NULL: nothing queued (quick exit) */
static strset_hash *globs = NULL;
static List *frames = NIL;		/* QueueFrame *, innermost last */
static strset_hash *seen_values = NULL; /* row values already expanded */
static binset_hash *seen_rows = NULL;	/* ... and their binary images */
static uint64 seen_epoch = 0;	/* changes whenever seen_rows is emptied */
static uint64 seen_values_gen = 0;	/* dependency cache generation ... */
static uint64 seen_values_kfgen = 0;	/* ... and key format it assumes */
static bool flushed = false;	/* this transaction's set was written */
static bool wake_at_commit = false;
static BlockNumber inbox_block = InvalidBlockNumber;	/* written at commit */

static StringInfo
scratch(int which)
{
	static StringInfo bufs[2];

	if (bufs[which] == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		bufs[which] = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(bufs[which]);
	return bufs[which];
}

static void
ensure_xact_state(void)
{
	if (xact_cxt != NULL)
		return;
	xact_cxt = AllocSetContextCreate(TopTransactionContext,
									 "tenant_cache queue",
									 ALLOCSET_DEFAULT_SIZES);
	/* Most transactions queue a few globs: small sets, that grow. */
	globs = strset_create(xact_cxt, 8, NULL);
	seen_values = strset_create(xact_cxt, 8, NULL);
	seen_rows = binset_create(xact_cxt, 8, NULL);
	seen_epoch++;
	seen_values_gen = 0;
	frames = NIL;
}

static void
reset_xact_state(void)
{
	/* The memory goes with TopTransactionContext. */
	xact_cxt = NULL;
	globs = NULL;
	seen_values = NULL;
	seen_rows = NULL;
	frames = NIL;
}

static QueueFrame *
current_frame(void)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	QueueFrame *frame;
	MemoryContext old;

	if (frames != NIL && ((QueueFrame *) llast(frames))->subid == subid)
		return llast(frames);
	old = MemoryContextSwitchTo(xact_cxt);
	frame = palloc(sizeof(QueueFrame));
	frame->subid = subid;
	frame->globs = NIL;
	frames = lappend(frames, frame);
	MemoryContextSwitchTo(old);
	return frame;
}

/*
 * Refuse early, with a clear message, where the commit could not write the
 * queue.
 */
void
tc_check_can_queue(void)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot queue cache invalidations during recovery"),
				 errhint("Run it on the primary server.")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot queue cache invalidations in a read-only transaction")));
}

/* Add one glob to this transaction's set; false when it was there. */
bool
tc_queue_glob(const char *glob)
{
	QueueFrame *frame;
	MemoryContext old;
	char	   *copy;
	bool		found;

	if (flushed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot queue cache invalidations after the transaction's queue was written"),
				 errdetail("A commit-time callback that runs after tenant_cache's wrote to a watched table."),
				 errhint("List tenant_cache after the other library in shared_preload_libraries.")));
	ensure_xact_state();
	if (strset_lookup(globs, (char *) glob) != NULL)
		return false;
	frame = current_frame();
	old = MemoryContextSwitchTo(xact_cxt);
	copy = pstrdup(glob);
	strset_insert(globs, copy, &found);
	frame->globs = lappend(frame->globs, copy);
	MemoryContextSwitchTo(old);
	return true;
}

static void
append_key_part(StringInfo key, const char *value)
{
	char		digits[12];
	size_t		len;

	if (value == NULL)
	{
		appendBinaryStringInfo(key, "|-", 2);
		return;
	}
	/* "|<length>:<value>", without the cost of a printf per row */
	len = strlen(value);
	appendStringInfoChar(key, '|');
	appendBinaryStringInfo(key, digits, pg_ultoa_n((uint32) len, digits));
	appendStringInfoChar(key, ':');
	appendBinaryStringInfo(key, value, len);
}

/* Unambiguous key of (model, values): length-prefixed parts. */
static void
build_values_key(StringInfo key, const TcModelDeps *deps,
				 const char *const values[TC_NLEVELS],
				 const char *const *colvals)
{
	append_key_part(key, deps->model);
	for (int i = 0; i < TC_NLEVELS; i++)
		append_key_part(key, values[i]);
	for (int i = 0; i < deps->columns.n; i++)
		append_key_part(key, colvals ? colvals[i] : NULL);
}

/* Forget the rows and values seen: they will be expanded again. */
static void
forget_seen(void)
{
	strset_reset(seen_values);
	binset_reset(seen_rows);
	seen_epoch++;				/* tc_queue_seen_epoch(): remembered rows too */
}

/*
 * What was seen was expanded with the dependency cache and key format of
 * then: forget it when either changed.
 */
static void
check_seen_generation(void)
{
	uint64		gen = tc_depcache_generation();
	uint64		kfgen = tc_key_format_generation();

	if (seen_values_gen != gen || seen_values_kfgen != kfgen)
	{
		forget_seen();
		seen_values_gen = gen;
		seen_values_kfgen = kfgen;
	}
}

/*
 * Row keys: a trigger describes a row by the binary images of the columns
 * its globs are built from (with the model's identity); a key seen before in
 * this transaction was queued already, and the row costs one hash lookup
 * instead of printing its values.  tc_queue_row_seen() asks,
 * tc_queue_row_mark() records after the row was queued.
 */
bool
tc_queue_row_seen(const char *key, uint32 len)
{
	BinKey		k = {key, len};

	ensure_xact_state();
	check_seen_generation();
	return binset_lookup(seen_rows, k) != NULL;
}

/*
 * A number that stays the same as long as no row key is forgotten: callers
 * may remember keys they saw marked under it.  0: nothing is marked yet.
 */
uint64
tc_queue_seen_epoch(void)
{
	if (xact_cxt == NULL)
		return 0;
	check_seen_generation();
	return seen_epoch;
}

void
tc_queue_row_mark(const char *key, uint32 len)
{
	BinKey		k;
	bool		found;

	k.data = MemoryContextAlloc(xact_cxt, len);
	memcpy((char *) k.data, key, len);
	k.len = len;
	binset_insert(seen_rows, k, &found);
}

/* The glob of the model's i-th pattern for these values (a scratch buffer). */
static const char *
build_dep_glob(const TcModelDeps *deps, int i,
			   const char *const values[TC_NLEVELS], const char *const *colvals)
{
	const char *scoped[TC_NLEVELS];
	StringInfo	glob = scratch(1);

	for (int level = 0; level < TC_NLEVELS; level++)
		scoped[level] = level < (int) deps->deps[i].scope ? values[level] : NULL;
	tc_build_glob(glob, tc_current_key_format(), scoped,
				  deps->deps[i].parsed, colvals);
	return glob->data;
}

/*
 * Queue every pattern of a model for one row's values (NULL: every value at
 * that level) and the values of the columns its placeholders name
 * (colvals[i] for deps->columns.names[i]; NULL or colvals NULL: every
 * value).  Repeated values cost one hash lookup.  Returns the number of
 * globs covered, queued now or earlier in this transaction.
 */
int
tc_queue_model_values(const TcModelDeps *deps,
					  const char *const values[TC_NLEVELS],
					  const char *const *colvals)
{
	StringInfo	key;
	bool		found;

	if (deps == NULL)
		return 0;
	ensure_xact_state();
	check_seen_generation();
	key = scratch(0);
	build_values_key(key, deps, values, colvals);
	if (strset_lookup(seen_values, key->data) != NULL)
		return deps->ndeps;

	for (int i = 0; i < deps->ndeps; i++)
		tc_queue_glob(build_dep_glob(deps, i, values, colvals));
	strset_insert(seen_values, MemoryContextStrdup(xact_cxt, key->data), &found);
	return deps->ndeps;
}

/*
 * The globs of every pattern of a model for one row's values (as
 * tc_queue_model_values takes them), built in cxt, for a caller that queues
 * them and keeps them for later rows with the same values.
 */
char	  **
tc_model_globs(const TcModelDeps *deps, const char *const values[TC_NLEVELS],
			   const char *const *colvals, MemoryContext cxt)
{
	char	  **globs = MemoryContextAlloc(cxt, sizeof(char *) * Max(deps->ndeps, 1));

	for (int i = 0; i < deps->ndeps; i++)
		globs[i] = MemoryContextStrdup(cxt, build_dep_glob(deps, i, values, colvals));
	return globs;
}

static Oid
queue_table_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * The committing transaction's globs, and their hashes (for the twin
 * table), kept until its COMMIT or ABORT in TopTransactionContext.
 */
static int	commit_nglobs = 0;
static char **commit_globs = NULL;
static uint32 *commit_hashes = NULL;

static void
collect_globs(void)
{
	int			n = 0;
	ListCell   *lc;

	commit_globs = MemoryContextAlloc(TopTransactionContext,
									  sizeof(char *) * Max(globs->members, 1));
	commit_hashes = MemoryContextAlloc(TopTransactionContext,
									   sizeof(uint32) * Max(globs->members, 1));
	foreach(lc, frames)
	{
		ListCell   *lc2;

		foreach(lc2, ((QueueFrame *) lfirst(lc))->globs)
		{
			commit_globs[n] = (char *) lfirst(lc2);
			commit_hashes[n] = hash_bytes((const unsigned char *) commit_globs[n],
										  strlen(commit_globs[n]));
			n++;
		}
	}
	commit_nglobs = n;
}

static Datum
globs_as_array(void)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(commit_nglobs, 1));

	for (int i = 0; i < commit_nglobs; i++)
		elems[i] = CStringGetTextDatum(commit_globs[i]);
	return PointerGetDatum(construct_array(elems, commit_nglobs, TEXTOID, -1,
										   false, TYPALIGN_INT));
}

/*
 * tenant_cache.inbox is the extension's own table, written and read below
 * SQL (here and in absorb.c): its shape is checked, not trusted.
 */
void
tc_check_inbox_shape(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relhasindex ||
		desc->natts != 2 ||
		TupleDescAttr(desc, 0)->atttypid != TEXTARRAYOID ||
		TupleDescAttr(desc, 1)->atttypid != TIMESTAMPTZOID ||
		TupleDescAttr(desc, 0)->attisdropped || TupleDescAttr(desc, 1)->attisdropped)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table tenant_cache.inbox has been altered"),
				 errdetail("It must have exactly the columns (globs text[], enqueued_at timestamptz) and no index."),
				 errhint("Reinstall the extension: DROP EXTENSION tenant_cache; CREATE EXTENSION tenant_cache.")));
}

/*
 * Append the transaction's globs to tenant_cache.inbox as one row, with a
 * plain heap insert: no executor, no index, no lookup of other rows, so
 * concurrent writers never touch the same tuple and never wait.  The worker
 * reads the rows and deletes them (absorb.c).
 */
static void
append_to_inbox(Oid relid, Datum globs_array)
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	Datum		values[2];
	bool		nulls[2] = {false, false};
	HeapTuple	tuple;

	tc_check_inbox_shape(rel);
	values[0] = globs_array;
	values[1] = TimestampTzGetDatum(GetCurrentTimestamp());
	tuple = heap_form_tuple(desc, values, nulls);
	simple_heap_insert(rel, tuple);
	inbox_block = ItemPointerGetBlockNumber(&tuple->t_self);
	heap_freetuple(tuple);
	table_close(rel, NoLock);
}

/*
 * A database still at extension version 1.0 (ALTER EXTENSION ... UPDATE not
 * yet run) has no inbox: insert into tenant_cache.pending as 1.0 did, as the
 * table's owner, every name schema-qualified.
 */
static void
insert_into_pending(Oid relid, Datum globs_array)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtype = TEXTARRAYOID;
	Oid			save_userid;
	int			save_sec;
	int			rc;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(queue_table_owner(relid),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan == NULL)
	{
		plan = SPI_prepare("INSERT INTO tenant_cache.pending (glob, enqueued_at) "
						   "SELECT g, pg_catalog.clock_timestamp() "
						   "FROM pg_catalog.unnest($1) AS g",
						   1, &argtype);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	rc = SPI_execute_plan(plan, &globs_array, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not queue cache invalidations: %s",
			 SPI_result_code_string(rc));
	SPI_finish();
	PopActiveSnapshot();
	SetUserIdAndSecContext(save_userid, save_sec);
}

/*
 * tenant_cache.inbox's OID, looked up once per backend (two catalog cache
 * lookups per commit saved) and forgotten on any relcache invalidation of
 * that table (dropped, renamed, moved) or a reset of the whole relcache.
 * InvalidOid (extension at 1.0, or not installed) is looked up each time.
 */
static Oid	cached_inbox = InvalidOid;

static void
inbox_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cached_inbox)
		cached_inbox = InvalidOid;
}

static Oid
inbox_relid(void)
{
	if (!OidIsValid(cached_inbox))
		cached_inbox = tc_catalog_relid(TC_INBOX_TABLE, true);
	return cached_inbox;
}

/* A commit whose globs all wait in unread inbox rows writes none (twins.c). */
static bool riding = false;
static TcTwinTicket twin_ticket = {-1, 0};

/*
 * Write the transaction's globs to the durable queue, as part of the
 * transaction: nothing for a rollback, nothing lost after a commit.  A
 * commit (not a PREPARE: its COMMIT PREPARED happens elsewhere) whose
 * globs all wait in committed inbox rows the worker has not read rides on
 * them instead.
 */
static void
flush_to_queue(bool may_ride)
{
	Oid			inbox = inbox_relid();

	collect_globs();
	if (commit_nglobs == 0)
		return;
	if (may_ride && OidIsValid(inbox) &&
		tc_twins_ride(commit_nglobs, commit_globs, commit_hashes, &twin_ticket))
	{
		riding = true;
		if (tc_debug_pause_after_ride_ms > 0)
			pg_usleep(tc_debug_pause_after_ride_ms * 1000L);
		return;
	}
	if (OidIsValid(inbox))
		append_to_inbox(inbox, globs_as_array());
	else						/* extension at 1.0 */
		insert_into_pending(tc_catalog_relid(TC_QUEUE_TABLE, false), globs_as_array());
	wake_at_commit = true;
}

static void
queue_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (xact_cxt != NULL)
				flush_to_queue(event == XACT_EVENT_PRE_COMMIT);
			reset_xact_state();
			flushed = true;
			break;
		case XACT_EVENT_COMMIT:
			if (wake_at_commit)
			{
				/* The row is visible: commits may ride on it from now. */
				tc_twins_register(commit_nglobs, commit_globs, commit_hashes,
								  &twin_ticket);
				tc_wake_worker(inbox_block);	/* 1.0: Invalid, read all */
			}
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			if (riding)
				tc_twins_ride_end(&twin_ticket);
			riding = false;
			twin_ticket.slot = -1;
			twin_ticket.epoch = 0;
			commit_nglobs = 0;
			commit_globs = NULL;
			commit_hashes = NULL;
			wake_at_commit = false;
			inbox_block = InvalidBlockNumber;
			flushed = false;
			reset_xact_state();
			break;
		default:
			break;
	}
}

static void
queue_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	QueueFrame *top;

	if (xact_cxt == NULL || frames == NIL)
		return;
	top = llast(frames);
	if (top->subid != mySubid)
		return;

	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		QueueFrame *below = list_length(frames) > 1 ?
			list_nth(frames, list_length(frames) - 2) : NULL;

		if (below != NULL && below->subid == parentSubid)
		{
			MemoryContext old = MemoryContextSwitchTo(xact_cxt);

			below->globs = list_concat(below->globs, top->globs);
			frames = list_delete_last(frames);
			MemoryContextSwitchTo(old);
		}
		else
			top->subid = parentSubid;
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		ListCell   *lc;

		foreach(lc, top->globs)
			strset_delete(globs, (char *) lfirst(lc));
		frames = list_delete_last(frames);
		/* Values seen in the aborted savepoint must be expanded again. */
		forget_seen();
	}
}

void
tc_queue_init(void)
{
	RegisterXactCallback(queue_xact_callback, NULL);
	RegisterSubXactCallback(queue_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(inbox_relcache_callback, (Datum) 0);
}
