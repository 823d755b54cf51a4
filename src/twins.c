/*-------------------------------------------------------------------------
 *
 * twins.c
 *		Shared table of globs waiting in committed, unread inbox rows: a
 *		commit whose globs all wait there already writes no inbox row.
 *
 * Under many commits to few tenants most commits repeat globs that another
 * committed transaction's inbox row already holds, and the worker has not
 * read yet.  Such a commit (a rider) writes nothing: the worker applies the
 * glob when it reads that row, and it must then apply it after the rider's
 * commit.  The protocol, per database with a worker:
 *
 * - A commit that wrote an inbox row registers its globs, at COMMIT (the row
 *   is visible), tagged with the epoch it saw at PRE_COMMIT, and only if the
 *   epoch has not changed since.
 * - A commit whose globs are all registered in the current epoch rides: at
 *   PRE_COMMIT it counts itself in riders[epoch] and writes no row; at
 *   COMMIT or ABORT it counts itself out.
 * - Each worker pass takes its snapshot, then starts a new epoch (entries
 *   of the old one no longer count, once their rides are added to the
 *   statistics) and waits until the old epoch has no riders, before it
 *   applies anything.  A worker that ends during that wait leaves it to the
 *   next one, which waits before it starts an epoch of its own.
 *
 * Why a rider's glob is applied after its commit: it was registered in
 * epoch E by a commit that saw E at PRE_COMMIT, so after the snapshot of the
 * pass that started E; that pass cannot read the row.  The pass that starts
 * E + 1 (or a later one) reads it, and that pass waits for E's riders before
 * applying anything; later passes come after it.
 *
 * Rows deleted by hand (TRUNCATE tenant_cache.inbox) take the globs of the
 * commits that rode on them with them, as they take their own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/wait_event.h"

#include "tenant_cache.h"

#define TC_TWINS 512			/* entries per database, a power of 2 */
#define TC_TWIN_PROBES 8
#define TC_TWIN_GLOB_MAX 116	/* longer globs are never registered */
#define TC_TWIN_RIDE_MAX 32		/* commits with more globs always write */

typedef struct TcTwin
{
	uint64		epoch;			/* valid while equal to the slot's */
	uint32		hash;
	uint32		rides;			/* commits that rode on it, for statistics */
	char		glob[TC_TWIN_GLOB_MAX + 1];
} TcTwin;

typedef struct TcTwinSlot
{
	slock_t		lock;
	Oid			dboid;			/* database whose worker runs, or Invalid */
	uint64		epoch;
	uint64		waited;			/* last epoch whose riders the worker
								 * waited for */
	int			riders[2];		/* riders of epoch e: riders[e % 2] */
	TcTwin		twins[TC_TWINS];
} TcTwinSlot;

static TcTwinSlot *twin_slots = NULL;
static int	my_index = -1;		/* the worker's slot */

static void wait_riders(TcTwinSlot *slot, uint64 epoch);

Size
tc_twins_shmem_size(void)
{
	return mul_size(tc_ndatabases, sizeof(TcTwinSlot));
}

void
tc_twins_shmem_init(void)
{
	bool		found;

	twin_slots = ShmemInitStruct("tenant_cache twins", tc_twins_shmem_size(), &found);
	if (found)
		return;
	for (int i = 0; i < tc_ndatabases; i++)
	{
		SpinLockInit(&twin_slots[i].lock);
		twin_slots[i].dboid = InvalidOid;
		twin_slots[i].epoch = 1;
		twin_slots[i].waited = 0;
		twin_slots[i].riders[0] = twin_slots[i].riders[1] = 0;
		memset(twin_slots[i].twins, 0, sizeof(twin_slots[i].twins));
	}
}

/* This database's slot index while its worker runs (checked again under the lock), or -1. */
static int
my_database_slot(void)
{
	if (twin_slots == NULL)
		return -1;
	for (int i = 0; i < tc_ndatabases; i++)
		if (twin_slots[i].dboid == MyDatabaseId)
			return i;
	return -1;
}

/*
 * Under the lock: an entry is free unless it is of the current epoch, or
 * of the previous one with rides the worker has not counted yet.
 */
static bool
twin_free(const TcTwinSlot *slot, const TcTwin *t)
{
	return t->epoch != slot->epoch &&
		(t->rides == 0 || t->epoch + 1 < slot->epoch);
}

/*
 * Under the lock: the glob's entry in the current epoch, or NULL; with
 * insert, a new entry in the first free place when there is none.  A free
 * place ends the search (a place freed behind a later entry can hide it:
 * the glob is then not ridden on, or registered twice, both harmless).
 */
static TcTwin *
find_twin(TcTwinSlot *slot, const char *glob, uint32 hash, bool insert)
{
	for (int probe = 0; probe < TC_TWIN_PROBES; probe++)
	{
		TcTwin	   *t = &slot->twins[(hash + probe) & (TC_TWINS - 1)];

		if (t->epoch == slot->epoch)
		{
			if (t->hash == hash && strcmp(t->glob, glob) == 0)
				return t;
			continue;
		}
		if (!twin_free(slot, t))
			continue;
		if (!insert)
			return NULL;
		t->epoch = slot->epoch;
		t->hash = hash;
		t->rides = 0;
		strcpy(t->glob, glob);
		return t;
	}
	return NULL;
}

/*
 * PRE_COMMIT: ride when every glob is registered in the current epoch.
 * Returns true when riding (the caller writes no row and must call
 * tc_twins_ride_end() at COMMIT or ABORT); *ticket is the slot and epoch,
 * for that call or for tc_twins_register() (epoch 0: no worker runs for
 * this database, nothing is registered).
 */
bool
tc_twins_ride(int n, char *const *globs, const uint32 *hashes, TcTwinTicket *ticket)
{
	int			index = my_database_slot();
	TcTwinSlot *slot;
	TcTwin	   *found[TC_TWIN_RIDE_MAX];
	bool		ride = n > 0 && n <= TC_TWIN_RIDE_MAX;

	ticket->slot = index;
	ticket->epoch = 0;
	if (index < 0)
		return false;
	slot = &twin_slots[index];
	SpinLockAcquire(&slot->lock);
	if (slot->dboid == MyDatabaseId)
	{
		ticket->epoch = slot->epoch;
		for (int i = 0; i < n && ride; i++)
			ride = strlen(globs[i]) <= TC_TWIN_GLOB_MAX &&
				(found[i] = find_twin(slot, globs[i], hashes[i], false)) != NULL;
		if (ride)
		{
			slot->riders[slot->epoch % 2]++;
			for (int i = 0; i < n; i++)
				found[i]->rides++;
		}
	}
	else
		ride = false;
	SpinLockRelease(&slot->lock);
	return ride;
}

/* COMMIT or ABORT of a rider: count it out of the epoch it rode in. */
void
tc_twins_ride_end(const TcTwinTicket *ticket)
{
	TcTwinSlot *slot = &twin_slots[ticket->slot];

	SpinLockAcquire(&slot->lock);
	slot->riders[ticket->epoch % 2]--;
	SpinLockRelease(&slot->lock);
}

/*
 * COMMIT of a transaction that wrote an inbox row: register its globs,
 * unless a worker pass started since its PRE_COMMIT (epoch changed).
 */
void
tc_twins_register(int n, char *const *globs, const uint32 *hashes,
				  const TcTwinTicket *ticket)
{
	TcTwinSlot *slot;

	if (ticket->slot < 0 || ticket->epoch == 0)
		return;
	slot = &twin_slots[ticket->slot];
	SpinLockAcquire(&slot->lock);
	if (slot->dboid == MyDatabaseId && slot->epoch == ticket->epoch)
	{
		for (int i = 0; i < n; i++)
			if (strlen(globs[i]) <= TC_TWIN_GLOB_MAX)
				(void) find_twin(slot, globs[i], hashes[i], true);
	}
	SpinLockRelease(&slot->lock);
}

static void
twins_detach(int code, Datum arg)
{
	TcTwinSlot *slot = &twin_slots[my_index];

	SpinLockAcquire(&slot->lock);
	slot->dboid = InvalidOid;
	SpinLockRelease(&slot->lock);
}

/* The worker of tc_databases[index], connected: commits may ride from now. */
void
tc_twins_attach(int index)
{
	TcTwinSlot *slot;
	bool		pending_wait;

	if (twin_slots == NULL)
		return;
	my_index = index;
	slot = &twin_slots[index];
	SpinLockAcquire(&slot->lock);
	slot->dboid = MyDatabaseId;
	pending_wait = slot->waited + 1 < slot->epoch;
	SpinLockRelease(&slot->lock);
	before_shmem_exit(twins_detach, (Datum) 0);

	/*
	 * A worker that ended after starting an epoch and before its riders
	 * ended: wait for them now, before a new epoch shares their counter.
	 */
	if (pending_wait)
		wait_riders(slot, slot->epoch - 1);
}

/*
 * Count the commits that rode in the epoch that just ended as queued, as
 * the inbox rows the worker reads are (a rider's glob is in one of them);
 * a counted entry is free again.
 */
static int64
count_rides(TcTwinSlot *slot, uint64 old)
{
	int64		total = 0;

	for (int i = 0; i < TC_TWINS; i++)
	{
		TcTwin	   *t = &slot->twins[i];
		char		glob[TC_TWIN_GLOB_MAX + 1];
		uint32		rides = 0;

		if (t->epoch != old || t->rides == 0)
			continue;			/* racy pre-check, confirmed below */
		SpinLockAcquire(&slot->lock);
		if (t->epoch == old)
		{
			rides = t->rides;
			strcpy(glob, t->glob);
			t->rides = 0;
		}
		SpinLockRelease(&slot->lock);
		if (rides > 0)
			tc_stats_queued_n(glob, rides);
		total += rides;
	}
	return total;
}

/*
 * The worker: wait until the riders of an epoch that ended have ended too
 * (they are between PRE_COMMIT and the end of their commit: a WAL flush at
 * most, unless synchronous replication holds them).  Their number can only
 * go down.
 */
static void
wait_riders(TcTwinSlot *slot, uint64 epoch)
{
	bool		woken = false;

	for (;;)
	{
		int			riders;

		SpinLockAcquire(&slot->lock);
		riders = slot->riders[epoch % 2];
		SpinLockRelease(&slot->lock);
		if (riders <= 0)
			break;
		if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					  1L, PG_WAIT_EXTENSION) & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			woken = true;
		}
		CHECK_FOR_INTERRUPTS();
	}
	if (woken)
		SetLatch(MyLatch);		/* for the main loop: commits came meanwhile */
	SpinLockAcquire(&slot->lock);
	slot->waited = epoch;
	SpinLockRelease(&slot->lock);
}

/*
 * The worker, after taking a pass's snapshot and before applying anything:
 * start a new epoch, and wait for the riders of the one that ended.
 * Returns their number of globs (rides), counted as queued.
 */
int64
tc_twins_new_epoch(void)
{
	TcTwinSlot *slot;
	uint64		old;

	if (twin_slots == NULL || my_index < 0)
		return 0;
	slot = &twin_slots[my_index];
	SpinLockAcquire(&slot->lock);
	old = slot->epoch++;
	SpinLockRelease(&slot->lock);
	wait_riders(slot, old);
	return count_rides(slot, old);
}
