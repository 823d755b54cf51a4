/*-------------------------------------------------------------------------
 *
 * absorb.c
 *		Fold the inbox (one row per committed transaction) into the queue
 *		(one waiting entry per glob).
 *
 * Writers append their transaction's globs to tenant_cache.inbox with one
 * heap insert (queue.c).  The worker, in its batch transaction, reads inbox
 * rows, drops each glob that has a twin waiting in tenant_cache.pending (not
 * applied yet, so it will be applied after this commit anyway), and deletes
 * the rows it read.  It applies the other ("fresh") globs in the same batch
 * and adds to pending only those that fail or that the batch does not reach
 * (worker.c), or all of them while Redis is down: an outage still leaves
 * one entry per glob, and a stream of commits with Redis up never writes
 * pending (whose hash index would fill with dead entries of the same globs).
 * Only the worker writes pending, so this needs no locking; a transaction
 * committing meanwhile is read by the next pass.
 *
 * A pass reads only the blocks that commits wrote since the last pass, so
 * deleted rows that cannot be vacuumed yet (an old snapshot holds them) are
 * not read again and again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "storage/itemptr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "tenant_cache.h"

/* Inbox rows read per pass; each may hold many globs. */
#define TC_ABSORB_ROWS 5000

/* Distinct globs of one pass, with the earliest commit that queued each. */
typedef struct GlobEntry
{
	char	   *glob;
	uint32		hash;
	char		status;
	TimestampTz enqueued_at;
	int64		commits;		/* transactions that queued it */
	bool		has_twin;		/* an entry for it waits in the queue */
} GlobEntry;

#define SH_PREFIX globmap
#define SH_ELEMENT_TYPE GlobEntry
#define SH_KEY_TYPE char *
#define SH_KEY glob
#define SH_HASH_KEY(tb, k) hash_bytes((const unsigned char *) (k), strlen(k))
#define SH_EQUAL(tb, a, b) (strcmp(a, b) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * What a pass reads: the blocks that commits wrote since the last pass
 * (they tell the worker through shared memory when they wake it, see
 * tenant_cache.c), from the lowest of them on when there were too many to
 * list (or a COMMIT PREPARED, whose block is not known), and the rest of a
 * pass that hit its row limit.  A pass over the whole inbox runs when the
 * worker starts (commits that found no worker to tell), after an error, and
 * every TC_FULL_PASS_POLLS poll intervals as a safety net.  That pass walks
 * every page the inbox has, the deleted rows that vacuum has not reclaimed
 * yet included (under a heavy stream of commits, thousands of pages between
 * two autovacuum runs), so it is rare.
 */
#define TC_FULL_PASS_POLLS 60
static BlockNumber resume_block = InvalidBlockNumber;
static TimestampTz last_full_pass = 0;
static SPIPlanPtr twins_plan = NULL;

/* Rows read by one pass. */
typedef struct AbsorbPass
{
	Relation	rel;			/* tenant_cache.inbox */
	Snapshot	snapshot;
	TupleTableSlot *slot;
	globmap_hash *map;			/* distinct globs */
	ItemPointerData *tids;		/* of the rows read */
	int			nrows;
	int			cap;
	int64		rides;			/* commits that rode on rows (twins.c) */
} AbsorbPass;

/* Did the last pass stop at its row limit, leaving rows to read? */
bool
tc_absorb_has_more(void)
{
	return resume_block != InvalidBlockNumber;
}

/* After an error: what the failed pass took from committers is lost. */
void
tc_absorb_reset(void)
{
	resume_block = InvalidBlockNumber;
	last_full_pass = 0;
}

/* Add the globs of an inbox row, committed at `at`, to the pass. */
static void
collect_globs(AbsorbPass *pass, ArrayType *arr, TimestampTz at)
{
	Datum	   *elems;
	bool	   *elemnulls;
	int			nelems;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &elemnulls, &nelems);
	for (int j = 0; j < nelems; j++)
	{
		GlobEntry  *e;
		bool		found;

		if (elemnulls[j])
			continue;
		e = globmap_insert(pass->map, TextDatumGetCString(elems[j]), &found);
		if (!found)
		{
			e->commits = 0;
			e->has_twin = false;
		}
		e->commits++;
		if (!found || at < e->enqueued_at)
			e->enqueued_at = at;
	}
}

/* Keep the row in the slot: its TID, and its globs in the pass's map. */
static void
collect_row(AbsorbPass *pass, TupleTableSlot *slot)
{
	bool		isnull[2];
	Datum		globs;
	Datum		at;

	if (pass->nrows == pass->cap)
	{
		pass->cap *= 2;
		pass->tids = repalloc(pass->tids, sizeof(ItemPointerData) * pass->cap);
	}
	pass->tids[pass->nrows++] = slot->tts_tid;
	globs = slot_getattr(slot, 1, &isnull[0]);
	at = slot_getattr(slot, 2, &isnull[1]);
	if (!isnull[0] && !isnull[1])
		collect_globs(pass, DatumGetArrayTypeP(globs), DatumGetTimestampTz(at));
}

/*
 * Read the rows of blocks [from, to), at most limit of them (0: all), with
 * a TID range scan of the heap (no executor: this runs for every batch);
 * returns the block of the last row when the limit was hit, else
 * InvalidBlockNumber.
 */
static BlockNumber
read_blocks(AbsorbPass *pass, BlockNumber from, BlockNumber to, int limit)
{
	ItemPointerData lo;
	ItemPointerData hi;
	TableScanDesc scan;
	int			n = 0;
	BlockNumber last = InvalidBlockNumber;

	ItemPointerSet(&lo, from, FirstOffsetNumber);
	ItemPointerSet(&hi, to == InvalidBlockNumber ? MaxBlockNumber : to - 1,
				   MaxOffsetNumber);
	scan = table_beginscan_tidrange(pass->rel, pass->snapshot, &lo, &hi);
	while (table_scan_getnextslot_tidrange(scan, ForwardScanDirection, pass->slot))
	{
		collect_row(pass, pass->slot);
		/* Rows come in block order: the pass resumes at the last one's. */
		if (limit > 0 && ++n == limit)
		{
			last = ItemPointerGetBlockNumber(&pass->slot->tts_tid);
			break;
		}
	}
	table_endscan(scan);
	return last;
}

/*
 * Read what this pass must read (see the comment above resume_block).  The
 * snapshot is taken after the list of written blocks: a commit adds its
 * block to the list only once it is visible, so every row of a listed block
 * is seen.
 */
static void
read_pass(AbsorbPass *pass)
{
	TcInboxBlocks written;
	BlockNumber from = resume_block;
	TimestampTz now = GetCurrentTimestamp();

	tc_take_inbox_blocks(&written);
	pass->snapshot = RegisterSnapshot(GetLatestSnapshot());
	/* Commits that rode on rows this pass may read are visible (twins.c). */
	pass->rides = tc_twins_new_epoch();
	if (TimestampDifferenceExceeds(last_full_pass, now,
								   tc_poll_interval_ms * TC_FULL_PASS_POLLS))
	{
		last_full_pass = now;
		from = 0;
	}
	else if (written.overflow)
		from = Min(from, written.min);
	else
	{
		for (int i = 0; i < written.n; i++)
			if (from == InvalidBlockNumber || written.blocks[i] < from)
				read_blocks(pass, written.blocks[i], written.blocks[i] + 1, 0);
	}
	if (from != InvalidBlockNumber)
		resume_block = read_blocks(pass, from, InvalidBlockNumber, TC_ABSORB_ROWS);
}

/*
 * Delete the rows read.  Only the worker deletes inbox rows; a row someone
 * else deleted meanwhile (by hand) is gone all the same.
 */
static void
delete_rows(AbsorbPass *pass)
{
	CommandId	cid = GetCurrentCommandId(true);

	for (int i = 0; i < pass->nrows; i++)
	{
		TM_FailureData tmfd;
		TM_Result	result;

		result = heap_delete(pass->rel, &pass->tids[i], cid, InvalidSnapshot,
							 true, &tmfd, false);
		if (result != TM_Ok && result != TM_Deleted)
			elog(ERROR, "could not delete a row of tenant_cache.inbox: result %d",
				 (int) result);
	}
	CommandCounterIncrement();
}

static Datum
text_array(Datum *elems, int n)
{
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/* Mark the globs of the pass that have a twin waiting in the queue. */
static void
mark_twins(globmap_hash *map, Datum *globs, int n)
{
	Oid			argtype = TEXTARRAYOID;
	Datum		arg = text_array(globs, n);

	/* An index probe per glob, never a scan of the queue. */
	tc_spi_run(&twins_plan, "SELECT glob FROM tenant_cache.pending "
			   "WHERE glob OPERATOR(pg_catalog.=) ANY ($1) AND applied_at IS NULL",
			   1, &argtype, &arg, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *glob = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		GlobEntry  *e = globmap_lookup(map, glob);

		if (e != NULL)
			e->has_twin = true;
	}
}

/*
 * The globs of the pass that have no twin waiting in the queue, with the
 * earliest commit that queued each; counts what commits queued.
 */
static int
fresh_globs(globmap_hash *map, TcInboxGlob **out)
{
	Datum	   *globs = palloc(sizeof(Datum) * Max(map->members, 1));
	TcInboxGlob *fresh = palloc(sizeof(TcInboxGlob) * Max(map->members, 1));
	globmap_iterator it;
	GlobEntry  *e;
	int			n = 0;

	globmap_start_iterate(map, &it);
	while ((e = globmap_iterate(map, &it)) != NULL)
	{
		tc_stats_queued_n(e->glob, e->commits);
		globs[n++] = CStringGetTextDatum(e->glob);
	}
	mark_twins(map, globs, n);
	n = 0;
	globmap_start_iterate(map, &it);
	while ((e = globmap_iterate(map, &it)) != NULL)
	{
		if (e->has_twin)
			continue;
		fresh[n].glob = e->glob;
		fresh[n++].enqueued_at = e->enqueued_at;
	}
	*out = fresh;
	return n;
}

/*
 * One pass, inside the caller's transaction and SPI connection: the rows
 * read are deleted, and their globs that have no twin waiting in the queue
 * are returned in *fresh (*nfresh of them), for the caller to apply or add
 * to the queue before it commits.  Returns the number of inbox rows read and of
 * the commits that rode on them (the commits the pass stands for).
 */
int
tc_absorb_inbox(TcInboxGlob **fresh, int *nfresh)
{
	Oid			relid = tc_catalog_relid(TC_INBOX_TABLE, true);
	AbsorbPass	pass;

	*fresh = NULL;
	*nfresh = 0;
	if (!OidIsValid(relid))
		return 0;				/* extension still at version 1.0 */
	pass.rel = table_open(relid, RowExclusiveLock);
	tc_check_inbox_shape(pass.rel);
	pass.slot = table_slot_create(pass.rel, NULL);
	pass.map = globmap_create(CurrentMemoryContext, 256, NULL);
	pass.cap = 64;
	pass.tids = palloc(sizeof(ItemPointerData) * pass.cap);
	pass.nrows = 0;
	pass.rides = 0;
	read_pass(&pass);
	UnregisterSnapshot(pass.snapshot);
	if (pass.nrows > 0)
	{
		delete_rows(&pass);
		*nfresh = fresh_globs(pass.map, fresh);
	}
	ExecDropSingleTupleTableSlot(pass.slot);
	table_close(pass.rel, NoLock);
	return pass.nrows + (int) Min(pass.rides, PG_INT32_MAX / 2);
}
