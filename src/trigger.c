/*-------------------------------------------------------------------------
 *
 * trigger.c
 *		The C trigger installed on watched tables by watch_table().
 *
 * One function serves the three triggers of a watched table: BEFORE UPDATE
 * OR DELETE and AFTER INSERT row triggers, and an AFTER TRUNCATE statement
 * trigger.  Its arguments are the model, the tenant, client and bu column
 * names ('' for none) and, since 1.1, the column filter: a name[] literal
 * ('' for none).  Column positions and output functions are resolved once
 * per trigger and relation, and forgotten on a relcache invalidation of that
 * relation (ALTER TABLE) or when the model's patterns change (the columns
 * their placeholders name).  Per row the work is: read the scope and
 * placeholder columns, print them, and one hash lookup when the values
 * repeat; an UPDATE also compares the old and new images of the columns
 * that decide whether, and for which rows, it queues.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "tenant_cache.h"

PG_FUNCTION_INFO_V1(tc_invalidate_trigger);

#define TC_TRIGGER_MIN_NARGS 4	/* 1.0: model, tenant, client, bu columns */
#define TC_TRIGGER_MAX_NARGS 5	/* 1.1: and the column filter */

/* Columns read by the trigger: position, storage and output function. */
typedef struct ColumnSet
{
	int			n;
	AttrNumber *attnum;			/* 0: not mapped (scope levels only) */
	int16	   *typlen;
	bool	   *typbyval;
	FmgrInfo   *output;
} ColumnSet;

typedef struct TriggerInfo
{
	Oid			tgoid;			/* hash key: trigger OID ... */
	Oid			relid;			/* ... and the relation it fired on */
	bool		valid;
	uint64		deps_gen;		/* dependency cache it was resolved for */
	const TcModelDeps *deps;	/* the model's entry in it (NULL: none) */
	MemoryContext cxt;			/* everything below */
	char	   *model;
	ColumnSet	scope;			/* tenant, client, bu */
	ColumnSet	placeholders;	/* the model's TcColumns, in that order */
	ColumnSet	filter;			/* UPDATEs changing none of these (and none
								 * of the above) queue nothing; n = 0: off */
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

/* The column's number, or 0 when the table has no such column. */
static AttrNumber
find_column(Relation rel, const char *colname)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), colname) == 0)
			return att->attnum;
	}
	return InvalidAttrNumber;
}

static AttrNumber
resolve_column(Relation rel, const char *colname)
{
	AttrNumber	attnum = find_column(rel, colname);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of watched table \"%s\" does not exist",
						colname, RelationGetRelationName(rel)),
				 errdetail("tenant_cache.watch_table() named this column; it was dropped or renamed since."),
				 errhint("Call tenant_cache.unwatch_table() and tenant_cache.watch_table() again with the current column names.")));
	return attnum;
}

static AttrNumber
resolve_placeholder(Relation rel, const char *model, const char *colname)
{
	AttrNumber	attnum = find_column(rel, colname);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of watched table \"%s\" does not exist",
						colname, RelationGetRelationName(rel)),
				 errdetail("A pattern of model \"%s\" names it in a placeholder \"{%s}\".",
						   model, colname),
				 errhint("Change the model's patterns with tenant_cache.unregister_dependency() and tenant_cache.register_dependency(), or add the column.")));
	return attnum;
}

/* Room for n columns, in the current memory context. */
static void
init_columns(ColumnSet *set, int n)
{
	set->n = n;
	set->attnum = palloc0(sizeof(AttrNumber) * Max(n, 1));
	set->typlen = palloc0(sizeof(int16) * Max(n, 1));
	set->typbyval = palloc0(sizeof(bool) * Max(n, 1));
	set->output = palloc0(sizeof(FmgrInfo) * Max(n, 1));
}

/* Column i of the set is attnum: look up its storage and output function. */
static void
set_column(ColumnSet *set, int i, Relation rel, AttrNumber attnum)
{
	Oid			typid = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid;
	Oid			typoutput;
	bool		varlena;

	set->attnum[i] = attnum;
	getTypeOutputInfo(typid, &typoutput, &varlena);
	get_typlenbyval(typid, &set->typlen[i], &set->typbyval[i]);
	fmgr_info_cxt(typoutput, &set->output[i], CurrentMemoryContext);
}

/* The column filter argument: a name[] literal, or '' for none. */
static void
fill_filter(ColumnSet *set, const char *arg, Relation rel)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (arg[0] == '\0')
	{
		init_columns(set, 0);
		return;
	}
	arr = DatumGetArrayTypeP(OidInputFunctionCall(F_ARRAY_IN, (char *) arg,
												  NAMEOID, -1));
	deconstruct_array(arr, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &elems, &nulls, &n);
	init_columns(set, n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			set_column(set, i, rel, resolve_column(rel, NameStr(*DatumGetName(elems[i]))));
}

static void
fill_trigger_info(TriggerInfo *info, Trigger *trigger, Relation rel,
				  const TcModelDeps *deps, uint64 gen)
{
	MemoryContext old;

	if (trigger->tgnargs < TC_TRIGGER_MIN_NARGS ||
		trigger->tgnargs > TC_TRIGGER_MAX_NARGS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" has %d arguments, expected %d or %d",
						trigger->tgname, RelationGetRelationName(rel),
						trigger->tgnargs, TC_TRIGGER_MIN_NARGS, TC_TRIGGER_MAX_NARGS),
				 errhint("Create tenant_cache triggers with tenant_cache.watch_table().")));

	info->valid = false;
	if (info->cxt == NULL)
		info->cxt = AllocSetContextCreate(trigger_cxt, "tenant_cache trigger",
										  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(info->cxt);
	old = MemoryContextSwitchTo(info->cxt);
	info->model = pstrdup(trigger->tgargs[0]);
	init_columns(&info->scope, TC_NLEVELS);
	for (int level = 0; level < TC_NLEVELS; level++)
	{
		const char *colname = trigger->tgargs[level + 1];

		if (colname[0] != '\0')
			set_column(&info->scope, level, rel, resolve_column(rel, colname));
	}
	init_columns(&info->placeholders, deps ? deps->columns.n : 0);
	for (int i = 0; i < info->placeholders.n; i++)
		set_column(&info->placeholders, i, rel,
				   resolve_placeholder(rel, info->model, deps->columns.names[i]));
	fill_filter(&info->filter,
				trigger->tgnargs > TC_TRIGGER_MIN_NARGS ? trigger->tgargs[4] : "",
				rel);
	MemoryContextSwitchTo(old);
	info->deps_gen = gen;
	info->valid = true;
}

/*
 * The trigger's resolved columns, for the current dependencies.  Rows of
 * one statement fire the same trigger one after the other: the last one
 * used is kept, and needs no look-up while still valid.  Entries are never
 * removed from trigger_infos (only marked invalid), so the pointer stays.
 */
static TriggerInfo *
get_trigger_info(Trigger *trigger, Relation rel, const TcModelDeps **deps)
{
	static TriggerInfo *last = NULL;
	TriggerKey	key;
	TriggerInfo *info;
	bool		found;
	uint64		gen = tc_depcache_generation();	/* reloads it if needed */

	if (last != NULL && last->valid && last->deps_gen == gen &&
		last->tgoid == trigger->tgoid && last->relid == RelationGetRelid(rel))
	{
		*deps = last->deps;
		return last;
	}
	*deps = trigger->tgnargs > 0 ? tc_lookup_model(trigger->tgargs[0]) : NULL;
	key.tgoid = trigger->tgoid;
	key.relid = RelationGetRelid(rel);
	info = hash_search(trigger_infos, &key, HASH_ENTER, &found);
	if (!found)
	{
		info->valid = false;
		info->cxt = NULL;
	}
	if (!info->valid || info->deps_gen != gen)
		fill_trigger_info(info, trigger, rel, *deps, gen);
	info->deps = *deps;
	last = info;
	return info;
}

/* Print the columns' values (NULL where unmapped or SQL NULL). */
static void
print_columns(const ColumnSet *set, TupleTableSlot *slot, const char **values)
{
	for (int i = 0; i < set->n; i++)
	{
		bool		isnull = true;
		Datum		d = 0;

		if (set->attnum[i] > 0)
			d = slot_getattr(slot, set->attnum[i], &isnull);
		values[i] = isnull ? NULL : OutputFunctionCall(&set->output[i], d);
	}
}

/* Append the binary images of the columns' values to a row key. */
static void
append_images(StringInfo key, const ColumnSet *set, TupleTableSlot *slot)
{
	for (int i = 0; i < set->n; i++)
	{
		bool		isnull = true;
		Datum		d = 0;
		char		tag;

		if (set->attnum[i] > 0)
			d = slot_getattr(slot, set->attnum[i], &isnull);
		tag = set->attnum[i] == 0 ? 'u' : isnull ? 'n' : 'v';
		appendStringInfoChar(key, tag);
		if (tag != 'v')
			continue;
		if (set->typbyval[i])
			appendBinaryStringInfo(key, (char *) &d, sizeof(Datum));
		else
		{
			struct varlena *v = NULL;
			const char *data;
			uint32		len;

			if (set->typlen[i] == -1)
			{
				v = PG_DETOAST_DATUM_PACKED(d);
				data = VARDATA_ANY(v);
				len = VARSIZE_ANY_EXHDR(v);
			}
			else
			{
				data = DatumGetPointer(d);
				len = set->typlen[i] > 0 ? set->typlen[i] : strlen(data);
			}
			appendBinaryStringInfo(key, (char *) &len, sizeof(len));
			appendBinaryStringInfo(key, data, len);
			if (v != NULL && (Pointer) v != DatumGetPointer(d))
				pfree(v);
		}
	}
}

/*
 * Queue the model's patterns for one row.  A row whose columns have the
 * same binary images as one queued before in this transaction costs a hash
 * lookup (equal images print equally), not the printing of its values.
 */
static void
queue_row(TriggerInfo *info, const TcModelDeps *deps, TupleTableSlot *slot)
{
	static StringInfo key = NULL;
	const char *values[TC_NLEVELS];
	const char *local[16];
	const char **colvals;

	if (key == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		key = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(key);
	appendBinaryStringInfo(key, (char *) &deps, sizeof(deps));
	append_images(key, &info->scope, slot);
	append_images(key, &info->placeholders, slot);
	if (tc_queue_row_seen(key->data, key->len))
		return;

	colvals = info->placeholders.n <= lengthof(local) ? local :
		palloc(sizeof(char *) * info->placeholders.n);
	print_columns(&info->scope, slot, values);
	print_columns(&info->placeholders, slot, colvals);
	tc_queue_model_values(deps, values, colvals);
	tc_queue_row_mark(key->data, key->len);
}

/*
 * Does the UPDATE change any column of the set?  Compared by binary image
 * (datum_image_eq, which detoasts): a value rewritten as an equal but
 * differently stored one (say numeric 1.0 -> 1.00) counts as changed.
 */
static bool
columns_changed(const ColumnSet *set, TupleTableSlot *old, TupleTableSlot *new)
{
	for (int i = 0; i < set->n; i++)
	{
		bool		oldnull,
					newnull;
		Datum		o,
					n;

		if (set->attnum[i] == 0)
			continue;
		o = slot_getattr(old, set->attnum[i], &oldnull);
		n = slot_getattr(new, set->attnum[i], &newnull);
		if (oldnull != newnull)
			return true;
		if (!oldnull && !datum_image_eq(o, n, set->typbyval[i], set->typlen[i]))
			return true;
	}
	return false;
}

/*
 * An UPDATE queues the new row's globs, and the old row's too when a column
 * they are built from changed (a row moved to another tenant, an id named
 * by a placeholder changed).  With a column filter, an UPDATE that changes
 * neither a filter column nor one of those queues nothing.
 */
static void
queue_update(TriggerInfo *info, const TcModelDeps *deps, TupleTableSlot *old,
			 TupleTableSlot *new)
{
	bool		keys_changed = columns_changed(&info->scope, old, new) ||
		columns_changed(&info->placeholders, old, new);

	if (!keys_changed && info->filter.n > 0 &&
		!columns_changed(&info->filter, old, new))
		return;
	queue_row(info, deps, new);
	if (keys_changed)
		queue_row(info, deps, old);
}

Datum
tc_invalidate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const TcModelDeps *deps;
	TriggerInfo *info;
	TriggerEvent ev;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.invalidate_trigger() must be called as a trigger")));

	ev = trigdata->tg_event;
	info = get_trigger_info(trigdata->tg_trigger, trigdata->tg_relation, &deps);

	if (TRIGGER_FIRED_BY_TRUNCATE(ev))
	{
		const char *every[TC_NLEVELS] = {NULL, NULL, NULL};

		tc_queue_model_values(deps, every, NULL);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.invalidate_trigger() must be fired for each row, or for TRUNCATE")));

	if (deps == NULL)
		;						/* the model has no patterns: nothing to do */
	else if (TRIGGER_FIRED_BY_INSERT(ev) || TRIGGER_FIRED_BY_DELETE(ev))
		queue_row(info, deps, trigdata->tg_trigslot);
	else if (TRIGGER_FIRED_BY_UPDATE(ev))
		queue_update(info, deps, trigdata->tg_trigslot, trigdata->tg_newslot);

	if (TRIGGER_FIRED_AFTER(ev))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(ev))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}
