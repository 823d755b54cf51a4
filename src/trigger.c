/*-------------------------------------------------------------------------
 *
 * trigger.c
 *		The C trigger installed on watched tables by watch_table().
 *
 * One function serves the three triggers of a watched table: BEFORE UPDATE
 * OR DELETE and AFTER INSERT row triggers, and an AFTER TRUNCATE statement
 * trigger.  Its arguments are the model and the tenant, client and bu column
 * names ('' for none).  Column positions and output functions are resolved
 * once per trigger and relation, and forgotten on a relcache invalidation of
 * that relation (ALTER TABLE).  Per row the work is: read up to three
 * columns, print them, and one hash lookup when the values repeat.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "tenant_cache.h"

PG_FUNCTION_INFO_V1(tc_invalidate_trigger);

#define TC_TRIGGER_NARGS 4

typedef struct TriggerInfo
{
	Oid			tgoid;			/* hash key: trigger OID ... */
	Oid			relid;			/* ... and the relation it fired on */
	bool		valid;
	char	   *model;
	AttrNumber	attnum[TC_NLEVELS]; /* 0: level not mapped */
	int16		typlen[TC_NLEVELS];
	bool		typbyval[TC_NLEVELS];
	FmgrInfo	output[TC_NLEVELS];
} TriggerInfo;

typedef struct TriggerKey
{
	Oid			tgoid;
	Oid			relid;
} TriggerKey;

static HTAB *trigger_infos = NULL;
static MemoryContext trigger_cxt = NULL;

static void
trigger_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	TriggerInfo *info;

	if (trigger_infos == NULL)
		return;
	hash_seq_init(&status, trigger_infos);
	while ((info = hash_seq_search(&status)) != NULL)
	{
		if (relid == InvalidOid || info->relid == relid)
			info->valid = false;
	}
}

void
tc_trigger_init(void)
{
	HASHCTL		ctl;

	trigger_cxt = AllocSetContextCreate(TopMemoryContext,
										"tenant_cache triggers",
										ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(TriggerKey);
	ctl.entrysize = sizeof(TriggerInfo);
	ctl.hcxt = trigger_cxt;
	trigger_infos = hash_create("tenant_cache triggers", 32, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(trigger_relcache_callback, (Datum) 0);
}

static AttrNumber
resolve_column(Relation rel, const char *colname)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), colname) == 0)
			return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of watched table \"%s\" does not exist",
					colname, RelationGetRelationName(rel)),
			 errdetail("tenant_cache.watch_table() named this column; it was dropped or renamed since."),
			 errhint("Call tenant_cache.unwatch_table() and tenant_cache.watch_table() again with the current column names.")));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

static void
fill_trigger_info(TriggerInfo *info, Trigger *trigger, Relation rel)
{
	MemoryContext old;

	if (trigger->tgnargs != TC_TRIGGER_NARGS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" has %d arguments, expected %d",
						trigger->tgname, RelationGetRelationName(rel),
						trigger->tgnargs, TC_TRIGGER_NARGS),
				 errhint("Create tenant_cache triggers with tenant_cache.watch_table().")));

	old = MemoryContextSwitchTo(trigger_cxt);
	if (info->model != NULL)
		pfree(info->model);
	info->model = pstrdup(trigger->tgargs[0]);
	for (int level = 0; level < TC_NLEVELS; level++)
	{
		const char *colname = trigger->tgargs[level + 1];
		Oid			typoutput;
		bool		varlena;
		Oid			typid;

		info->attnum[level] = 0;
		if (colname[0] == '\0')
			continue;
		info->attnum[level] = resolve_column(rel, colname);
		typid = TupleDescAttr(RelationGetDescr(rel), info->attnum[level] - 1)->atttypid;
		getTypeOutputInfo(typid, &typoutput, &varlena);
		get_typlenbyval(typid, &info->typlen[level], &info->typbyval[level]);
		fmgr_info_cxt(typoutput, &info->output[level], trigger_cxt);
	}
	MemoryContextSwitchTo(old);
	info->valid = true;
}

static TriggerInfo *
get_trigger_info(Trigger *trigger, Relation rel)
{
	TriggerKey	key;
	TriggerInfo *info;
	bool		found;

	key.tgoid = trigger->tgoid;
	key.relid = RelationGetRelid(rel);
	info = hash_search(trigger_infos, &key, HASH_ENTER, &found);
	if (!found)
	{
		info->valid = false;
		info->model = NULL;
	}
	if (!info->valid)
		fill_trigger_info(info, trigger, rel);
	return info;
}

/* Print the row's values (NULL where unmapped or SQL NULL) and queue them. */
static void
queue_row(TriggerInfo *info, TupleTableSlot *slot)
{
	const char *values[TC_NLEVELS];

	for (int level = 0; level < TC_NLEVELS; level++)
	{
		bool		isnull = true;
		Datum		d = 0;

		if (info->attnum[level] > 0)
			d = slot_getattr(slot, info->attnum[level], &isnull);
		values[level] = isnull ? NULL : OutputFunctionCall(&info->output[level], d);
	}
	tc_queue_model_values(info->model, values);
}

/* Did an UPDATE change any of the scoped columns? */
static bool
scoped_columns_changed(TriggerInfo *info, TupleTableSlot *old, TupleTableSlot *new)
{
	for (int level = 0; level < TC_NLEVELS; level++)
	{
		bool		oldnull,
					newnull;
		Datum		o,
					n;

		if (info->attnum[level] == 0)
			continue;
		o = slot_getattr(old, info->attnum[level], &oldnull);
		n = slot_getattr(new, info->attnum[level], &newnull);
		if (oldnull != newnull)
			return true;
		if (!oldnull && !datum_image_eq(o, n, info->typbyval[level], info->typlen[level]))
			return true;
	}
	return false;
}

Datum
tc_invalidate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerInfo *info;
	TriggerEvent ev;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.invalidate_trigger() must be called as a trigger")));

	ev = trigdata->tg_event;
	info = get_trigger_info(trigdata->tg_trigger, trigdata->tg_relation);

	if (TRIGGER_FIRED_BY_TRUNCATE(ev))
	{
		const char *every[TC_NLEVELS] = {NULL, NULL, NULL};

		tc_queue_model_values(info->model, every);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.invalidate_trigger() must be fired for each row, or for TRUNCATE")));

	if (TRIGGER_FIRED_BY_INSERT(ev))
		queue_row(info, trigdata->tg_trigslot);
	else if (TRIGGER_FIRED_BY_DELETE(ev))
		queue_row(info, trigdata->tg_trigslot);
	else if (TRIGGER_FIRED_BY_UPDATE(ev))
	{
		queue_row(info, trigdata->tg_newslot);
		if (scoped_columns_changed(info, trigdata->tg_trigslot, trigdata->tg_newslot))
			queue_row(info, trigdata->tg_trigslot);
	}

	if (TRIGGER_FIRED_AFTER(ev))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(ev))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}
