/*-------------------------------------------------------------------------
 *
 * depcache.c
 *		Backend-local cache of the model -> pattern dependencies.
 *
 * Triggers never query the catalog per row: the whole dependency table is
 * read once into a hash table, its patterns parsed (with the union of the
 * columns their placeholders name, per model), and kept until the table
 * changes.  A statement
 * trigger on tenant_cache.dependency sends a relcache invalidation for it
 * (the pg_cron way), which reaches every backend at its next transaction and
 * this backend at its next command, and marks the cache stale.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "tenant_cache.h"

PG_FUNCTION_INFO_V1(tc_dependency_changed);

static MemoryContext depcache_cxt = NULL;
static HTAB *depcache = NULL;
static bool depcache_valid = false;
static uint64 depcache_invals = 0;	/* invalidations received */
static Oid	depcache_relid = InvalidOid;
static uint64 depcache_gen = 0;

static void
depcache_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == depcache_relid)
	{
		depcache_valid = false;
		depcache_invals++;
	}
}

void
tc_depcache_init(void)
{
	CacheRegisterRelcacheCallback(depcache_relcache_callback, (Datum) 0);
}

/* OID of a table in schema tenant_cache, looked up without search_path. */
Oid
tc_catalog_relid(const char *relname, bool missing_ok)
{
	Oid			nsp = get_namespace_oid(TC_SCHEMA, missing_ok);
	Oid			relid = InvalidOid;

	if (OidIsValid(nsp))
		relid = get_relname_relid(relname, nsp);
	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"tenant_cache\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION tenant_cache.")));
	return relid;
}

static TcScope
parse_scope(const char *scope)
{
	if (strcmp(scope, "global") == 0)
		return TC_SCOPE_GLOBAL;
	if (strcmp(scope, "client") == 0)
		return TC_SCOPE_CLIENT;
	if (strcmp(scope, "bu") == 0)
		return TC_SCOPE_BU;
	return TC_SCOPE_TENANT;
}

static void
add_dependency(const char *model, const char *pattern, TcScope scope)
{
	TcModelDeps *entry;
	bool		found;

	entry = hash_search(depcache, model, HASH_ENTER, &found);
	if (!found)
	{
		entry->ndeps = 0;
		entry->deps = NULL;
		entry->columns.n = 0;
		entry->columns.names = NULL;
	}
	if (entry->deps == NULL)
		entry->deps = palloc(sizeof(TcDependency));
	else
		entry->deps = repalloc(entry->deps,
							   (entry->ndeps + 1) * sizeof(TcDependency));
	entry->deps[entry->ndeps].pattern = pstrdup(pattern);
	entry->deps[entry->ndeps].parsed =
		tc_parse_pattern(entry->deps[entry->ndeps].pattern, &entry->columns);
	entry->deps[entry->ndeps].scope = scope;
	entry->ndeps++;
}

/*
 * Read the dependency table with the latest snapshot (not the
 * transaction's, which may predate a change whose invalidation we just
 * received), the way the relcache reads catalogs.
 */
static void
depcache_load(void)
{
	HASHCTL		ctl;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tuple;
	Snapshot	snapshot;
	MemoryContext old;
	uint64		invals_before;

	if (depcache_cxt == NULL)
		depcache_cxt = AllocSetContextCreate(CacheMemoryContext,
											 "tenant_cache dependencies",
											 ALLOCSET_SMALL_SIZES);
	depcache_valid = false;
	MemoryContextReset(depcache_cxt);
	depcache = NULL;

	depcache_relid = tc_catalog_relid(TC_DEP_TABLE, false);
	rel = table_open(depcache_relid, AccessShareLock);
	/* An invalidation arriving from here on makes this load stale. */
	invals_before = depcache_invals;
	depcache_gen++;

	old = MemoryContextSwitchTo(depcache_cxt);
	ctl.keysize = sizeof(((TcModelDeps *) NULL)->model);
	ctl.entrysize = sizeof(TcModelDeps);
	ctl.hcxt = depcache_cxt;
	depcache = hash_create("tenant_cache dependencies", 64, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = systable_beginscan(rel, InvalidOid, false, snapshot, 0, NULL);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull[3];
		Datum		d[3];

		for (int i = 0; i < 3; i++)
			d[i] = heap_getattr(tuple, i + 1, desc, &isnull[i]);
		if (isnull[0] || isnull[1] || isnull[2])
			continue;
		add_dependency(TextDatumGetCString(d[0]), TextDatumGetCString(d[1]),
					   parse_scope(TextDatumGetCString(d[2])));
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	MemoryContextSwitchTo(old);
	table_close(rel, AccessShareLock);
	/* Only a complete load counts: an error above leaves the cache invalid. */
	depcache_valid = (depcache_invals == invals_before);
}

/* The dependencies of a model, or NULL when it has none. */
const TcModelDeps *
tc_lookup_model(const char *model)
{
	if (!depcache_valid || depcache == NULL)
		depcache_load();
	if (depcache == NULL)
		return NULL;
	if (strlen(model) >= sizeof(((TcModelDeps *) NULL)->model))
		return NULL;
	return hash_search(depcache, model, HASH_FIND, NULL);
}

/* Changes whenever the cache is rebuilt; lets callers drop derived state. */
uint64
tc_depcache_generation(void)
{
	if (!depcache_valid || depcache == NULL)
		depcache_load();
	return depcache_gen;
}

/*
 * Statement trigger on tenant_cache.dependency: tell every backend (this one
 * at its next command, the others at commit) to reload the cache.
 */
Datum
tc_dependency_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.dependency_changed() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
