/*-------------------------------------------------------------------------
 *
 * trigger.c
 *		The row capture of watched tables: the WHEN clause of their row
 *		triggers, and the trigger function itself.
 *
 * Since 1.2 watch_table() installs AFTER INSERT, AFTER UPDATE and AFTER
 * DELETE row triggers whose WHEN clause is a call of
 * tenant_cache.capture_row(tableoid, values...): it queues the row's globs
 * and returns false, so PostgreSQL neither locks the row (as it does for a
 * BEFORE UPDATE/DELETE trigger) nor keeps an after-trigger event per row
 * (as it does for an AFTER trigger that fires).  The values are those of
 * the row's columns that matter (the tenant, client and bu columns, those
 * named by the model's placeholders, the column filter), each once, in the
 * order build_layout() puts them; an UPDATE passes the old values, then
 * the new ones.  The WHEN clause carries nothing else (the configuration
 * comes from the trigger's arguments); when.c prepares it once per backend.
 *
 * The trigger function tenant_cache.invalidate_trigger() serves the
 * TRUNCATE statement trigger, and rows of 1.1's triggers (BEFORE UPDATE OR
 * DELETE, AFTER INSERT, no WHEN clause) until ALTER EXTENSION UPDATE
 * replaces them.  Its arguments, on every trigger: the model, the tenant,
 * client and bu column names ('' for none) and the column filter (a name[]
 * literal, '' for none).
 *
 * Both use a RowLayout built once per relation (and trigger), forgotten on
 * a relcache invalidation of the relation or when the model's patterns
 * change.  Per row the work is: compare old and new images for an UPDATE,
 * one lookup when the row's scope and placeholder values repeat, else print
 * them and build the globs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "nodes/execnodes.h"
#include "nodes/primnodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "tenant_cache.h"

PG_FUNCTION_INFO_V1(tc_invalidate_trigger);
PG_FUNCTION_INFO_V1(tc_capture_row);

#define TC_TRIGGER_MIN_NARGS 4	/* 1.0: model, tenant, client, bu columns */
#define TC_TRIGGER_MAX_NARGS 5	/* 1.1: and the column filter */
#define TC_MAX_ROW_COLUMNS 48	/* capture_row: 1 + 2 x 48 <= FUNC_MAX_ARGS */

/* A column whose value a row contributes: where it is and how to print it. */
typedef struct RowColumn
{
	AttrNumber	attnum;			/* trigger function: position in the slot */
	int16		typlen;
	bool		typbyval;
	bool		prints_alike;	/* the same text in every session */
	FmgrInfo	output;
} RowColumn;

/*
 * How a table's rows turn into globs, for one trigger (or for capture_row,
 * any of its triggers).  Column indexes point into cols; -1 is a scope
 * level the table does not map.  The row key is the scope levels, then the
 * placeholders (see key_column).
 */
typedef struct RowLayout
{
	/* hash key: trigger OID (0: capture_row's, any trigger), relation */
	Oid			tgoid;
	Oid			relid;

	bool		valid;
	uint64		deps_gen;		/* dependency cache it was resolved for */
	const TcModelDeps *deps;	/* the model's entry in it (NULL: none) */
	MemoryContext cxt;			/* everything below */
	char	   *model;
	int			ncols;
	RowColumn  *cols;
	int			scope[TC_NLEVELS];
	int			nplaceholders;	/* = deps->columns.n, in that order */
	int		   *placeholder;
	int			nfilter;		/* UPDATEs changing none of these (and none
								 * of the above) queue nothing; 0: off */
	int		   *filter;
	bool		fast;			/* every key column is passed by value, and
								 * there are few: see queue_row() */
	bool		keep_globs;		/* fast, and every key column prints alike
								 * in every session: see queue_row() */
	uint64		version;		/* changes with every build */
} RowLayout;

typedef struct LayoutKey
{
	Oid			tgoid;
	Oid			relid;
} LayoutKey;

/*
 * Rows seen lately, for layouts whose row keys are a few by-value columns
 * (integer ids): a direct-mapped table, checked before building the row key.
 * A slot says the row was queued while the transaction's set of row keys
 * keeps its epoch.  For layouts whose key columns print the same in every
 * session (integers, oid, bool: not floats, dates or times, whose output
 * depends on settings), it also keeps the row's globs across transactions:
 * a tenant written again in a later transaction costs queueing them, not
 * printing values and building globs.  Those globs live in glob_cache_cxt,
 * emptied when it grows past GLOB_CACHE_BYTES or the key format changes
 * (glob_cache_epoch tells which slots' globs are gone), and are good for
 * the layout's build (version) they were built with.
 */
#define FAST_SLOTS 1024
#define FAST_MAX_KEYS 6
#define GLOB_CACHE_BYTES (1024 * 1024)

typedef struct FastSlot
{
	uint64		epoch;			/* tc_queue_seen_epoch() when marked */
	const void *layout;
	uint64		version;		/* the layout's */
	uint32		nulls;			/* bit k: key k NULL or unmapped */
	Datum		key[FAST_MAX_KEYS];
	/* the row's layout->deps->ndeps globs (keep_globs layouts), when
	 * globs_epoch is current */
	uint64		globs_epoch;
	char	  **globs;
} FastSlot;

static FastSlot fast_slots[FAST_SLOTS];
static MemoryContext glob_cache_cxt = NULL;
static uint64 glob_cache_epoch = 1;
static uint64 glob_cache_kfgen = 0;	/* the key format its globs are for */
static uint64 layout_versions = 0;

/* One row's values, in the order of its layout's cols. */
typedef struct RowValues
{
	Datum	   *values;
	bool	   *nulls;
} RowValues;

static HTAB *layouts = NULL;
static MemoryContext trigger_cxt = NULL;

static void
trigger_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	RowLayout  *layout;

	if (layouts == NULL)
		return;
	hash_seq_init(&status, layouts);
	while ((layout = hash_seq_search(&status)) != NULL)
	{
		if (relid == InvalidOid || layout->relid == relid)
			layout->valid = false;
	}
}

void
tc_trigger_init(void)
{
	HASHCTL		ctl;

	trigger_cxt = AllocSetContextCreate(TopMemoryContext,
										"tenant_cache triggers",
										ALLOCSET_SMALL_SIZES);
	glob_cache_cxt = AllocSetContextCreate(TopMemoryContext,
										   "tenant_cache row globs",
										   ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(LayoutKey);
	ctl.entrysize = sizeof(RowLayout);
	ctl.hcxt = trigger_cxt;
	layouts = hash_create("tenant_cache row layouts", 32, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(trigger_relcache_callback, (Datum) 0);
}

/*
 * The layout entry for a key, emptied for (re)building when new or stale.
 * Entries are never removed from the hash (only marked invalid), so
 * pointers to them stay valid.
 */
static RowLayout *
layout_entry(Oid tgoid, Oid relid)
{
	LayoutKey	key;
	RowLayout  *layout;
	bool		found;

	memset(&key, 0, sizeof(key));
	key.tgoid = tgoid;
	key.relid = relid;
	layout = hash_search(layouts, &key, HASH_ENTER, &found);
	if (!found)
	{
		layout->valid = false;
		layout->cxt = NULL;
	}
	return layout;
}

/* A column the layout needs, while it is built: its name and roles. */
typedef struct NeededColumn
{
	const char *name;
	int			first;			/* its first role: ROLE_* */
	int			roles;			/* bit per ROLE_* */
} NeededColumn;

#define ROLE_TENANT 0			/* = TC_LEVEL_TENANT, and so on */
#define ROLE_CLIENT 1
#define ROLE_BU 2
#define ROLE_PLACEHOLDER 3
#define ROLE_FILTER 4

static void
need_column(NeededColumn *need, int *n, const char *name, int role)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(need[i].name, name) == 0)
		{
			need[i].roles |= 1 << role;
			return;
		}
	need[*n].name = name;
	need[*n].first = role;
	need[*n].roles = 1 << role;
	(*n)++;
}

/* The order of capture_row()'s values: by first role, then by name. */
static int
needed_column_cmp(const void *a, const void *b)
{
	const NeededColumn *x = a;
	const NeededColumn *y = b;

	if (x->first != y->first)
		return x->first - y->first;
	return strcmp(x->name, y->name);
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

static void
report_missing_column(Relation rel, const char *model, const NeededColumn *col)
{
	if (col->roles == 1 << ROLE_PLACEHOLDER)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of watched table \"%s\" does not exist",
						col->name, RelationGetRelationName(rel)),
				 errdetail("A pattern of model \"%s\" names it in a placeholder \"{%s}\".",
						   model, col->name),
				 errhint("Change the model's patterns with tenant_cache.unregister_dependency() and tenant_cache.register_dependency(), or add the column.")));
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of watched table \"%s\" does not exist",
					col->name, RelationGetRelationName(rel)),
			 errdetail("tenant_cache.watch_table() named this column; it was dropped or renamed since."),
			 errhint("Call tenant_cache.unwatch_table() and tenant_cache.watch_table() again with the current column names.")));
}

/*
 * Does every value of the type print the same in every session?  Integers,
 * oid and bool do; floats, dates and times depend on settings, and others
 * (enum labels) may change without a relcache invalidation.
 */
static bool
prints_alike(Oid typid)
{
	switch (getBaseType(typid))
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case BOOLOID:
			return true;
		default:
			return false;
	}
}

/* Add a column: its position, storage and output function. */
static void
add_column(RowLayout *layout, Relation rel, const NeededColumn *need)
{
	RowColumn  *col = &layout->cols[layout->ncols];
	AttrNumber	attnum = find_column(rel, need->name);
	Oid			typid;
	Oid			typoutput;
	bool		varlena;

	if (attnum == InvalidAttrNumber)
		report_missing_column(rel, layout->model, need);
	typid = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid;
	col->attnum = attnum;
	getTypeOutputInfo(typid, &typoutput, &varlena);
	get_typlenbyval(typid, &col->typlen, &col->typbyval);
	fmgr_info_cxt(typoutput, &col->output, layout->cxt);
	col->prints_alike = prints_alike(typid);
	for (int role = 0; role < TC_NLEVELS; role++)
		if (need->roles & (1 << role))
			layout->scope[role] = layout->ncols;
	if (need->roles & (1 << ROLE_FILTER))
		layout->filter[layout->nfilter++] = layout->ncols;
	layout->ncols++;
}

/* The trigger's column filter argument: a name[] literal, or '' for none. */
static void
filter_names(Trigger *trigger, Datum **elems, bool **nulls, int *n)
{
	const char *arg = trigger->tgnargs > TC_TRIGGER_MIN_NARGS ? trigger->tgargs[4] : "";

	*n = 0;
	if (arg[0] == '\0')
		return;
	deconstruct_array(DatumGetArrayTypeP(OidInputFunctionCall(F_ARRAY_IN, (char *) arg,
															  NAMEOID, -1)),
					  NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, elems, nulls, n);
}

/*
 * Build the layout of a relation for one of tenant_cache's triggers on it
 * (they all have the same arguments) and the model's patterns: the columns
 * that matter, each once, ordered by first role (tenant, client, bu,
 * placeholder, filter) and then by name, as install_row_triggers() passes
 * them to capture_row().
 */
static void
build_layout(RowLayout *layout, Trigger *trigger, Relation rel, uint64 gen)
{
	const TcModelDeps *deps;
	Datum	   *elems = NULL;
	bool	   *nulls = NULL;
	int			nfilter;
	int			nplaceholders;
	NeededColumn *need;
	int			nneed = 0;
	MemoryContext old;

	if (trigger->tgnargs < TC_TRIGGER_MIN_NARGS ||
		trigger->tgnargs > TC_TRIGGER_MAX_NARGS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" has %d arguments, expected %d or %d",
						trigger->tgname, RelationGetRelationName(rel),
						trigger->tgnargs, TC_TRIGGER_MIN_NARGS, TC_TRIGGER_MAX_NARGS),
				 errhint("Create tenant_cache triggers with tenant_cache.watch_table().")));
	deps = tc_lookup_model(trigger->tgargs[0]);
	nplaceholders = deps ? deps->columns.n : 0;
	filter_names(trigger, &elems, &nulls, &nfilter);

	layout->valid = false;
	if (layout->cxt == NULL)
		layout->cxt = AllocSetContextCreate(trigger_cxt, "tenant_cache row layout",
											ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(layout->cxt);
	old = MemoryContextSwitchTo(layout->cxt);
	layout->model = pstrdup(trigger->tgargs[0]);

	need = palloc(sizeof(NeededColumn) * (TC_NLEVELS + nplaceholders + nfilter));
	for (int level = 0; level < TC_NLEVELS; level++)
		if (trigger->tgargs[level + 1][0] != '\0')
			need_column(need, &nneed, trigger->tgargs[level + 1], level);
	for (int i = 0; i < nplaceholders; i++)
		need_column(need, &nneed, deps->columns.names[i], ROLE_PLACEHOLDER);
	for (int i = 0; i < nfilter; i++)
		if (!nulls[i])
			need_column(need, &nneed, NameStr(*DatumGetName(elems[i])), ROLE_FILTER);
	qsort(need, nneed, sizeof(NeededColumn), needed_column_cmp);

	layout->ncols = 0;
	layout->cols = palloc0(sizeof(RowColumn) * Max(nneed, 1));
	for (int level = 0; level < TC_NLEVELS; level++)
		layout->scope[level] = -1;
	layout->nfilter = 0;
	layout->filter = palloc(sizeof(int) * Max(nneed, 1));
	for (int i = 0; i < nneed; i++)
		add_column(layout, rel, &need[i]);

	/* The model's placeholder columns, in its order (cols[c] is need[c]). */
	layout->nplaceholders = nplaceholders;
	layout->placeholder = palloc(sizeof(int) * Max(nplaceholders, 1));
	for (int i = 0; i < nplaceholders; i++)
		for (int c = 0; c < nneed; c++)
			if (strcmp(need[c].name, deps->columns.names[i]) == 0)
				layout->placeholder[i] = c;

	layout->fast = TC_NLEVELS + nplaceholders <= FAST_MAX_KEYS;
	layout->keep_globs = layout->fast;
	for (int c = 0; c < layout->ncols; c++)
	{
		if (need[c].roles == 1 << ROLE_FILTER)
			continue;			/* not a key column */
		if (!layout->cols[c].typbyval)
			layout->fast = layout->keep_globs = false;
		if (!layout->cols[c].prints_alike)
			layout->keep_globs = false;
	}
	layout->version = ++layout_versions;
	MemoryContextSwitchTo(old);
	layout->deps = deps;
	layout->deps_gen = gen;
	layout->valid = true;
}

/* ---------------------------------------------------------------------
 * Rows: from values to globs
 * ---------------------------------------------------------------------
 */

/* Append the binary image of column c's value to a row key. */
static void
append_image(StringInfo key, const RowLayout *layout, const RowValues *row, int c)
{
	const RowColumn *col;
	Datum		d;
	struct varlena *v = NULL;
	const char *data;
	uint32		len;

	if (c < 0 || row->nulls[c])
	{
		appendStringInfoChar(key, c < 0 ? 'u' : 'n');
		return;
	}
	appendStringInfoChar(key, 'v');
	col = &layout->cols[c];
	d = row->values[c];
	if (col->typbyval)
	{
		appendBinaryStringInfo(key, (char *) &d, sizeof(Datum));
		return;
	}
	if (col->typlen == -1)
	{
		v = PG_DETOAST_DATUM_PACKED(d);
		data = VARDATA_ANY(v);
		len = VARSIZE_ANY_EXHDR(v);
	}
	else
	{
		data = DatumGetPointer(d);
		len = col->typlen > 0 ? col->typlen : strlen(data);
	}
	appendBinaryStringInfo(key, (char *) &len, sizeof(len));
	appendBinaryStringInfo(key, data, len);
	if (v != NULL && (Pointer) v != DatumGetPointer(d))
		pfree(v);
}

static const char *
print_value(const RowLayout *layout, const RowValues *row, int c)
{
	if (c < 0 || row->nulls[c])
		return NULL;
	return OutputFunctionCall((FmgrInfo *) &layout->cols[c].output, row->values[c]);
}

/*
 * The row key's k-th column: the scope levels, then the placeholders (the
 * columns its globs are built from); -1 for a level the table does not map.
 */
static inline int
key_column(const RowLayout *layout, int k)
{
	return k < TC_NLEVELS ? layout->scope[k] : layout->placeholder[k - TC_NLEVELS];
}

static inline int
key_columns(const RowLayout *layout)
{
	return TC_NLEVELS + layout->nplaceholders;
}

/* The row's key columns in a slot. */
static uint32
fast_key(const RowLayout *layout, const RowValues *row, FastSlot *probe)
{
	uint64		h = (uint64) (uintptr_t) layout;

	probe->layout = layout;
	probe->version = layout->version;
	probe->nulls = 0;
	probe->globs = NULL;
	for (int k = 0; k < key_columns(layout); k++)
	{
		int			c = key_column(layout, k);

		probe->key[k] = 0;
		if (c < 0 || row->nulls[c])
			probe->nulls |= 1 << k;
		else
			probe->key[k] = row->values[c];
		h = (h ^ (uint64) probe->key[k]) * UINT64CONST(0x9E3779B97F4A7C15);
		h ^= h >> 29;
	}
	h = (h ^ probe->nulls) * UINT64CONST(0x9E3779B97F4A7C15);
	return (uint32) (h >> 40) % FAST_SLOTS;
}

static bool
fast_equal(const FastSlot *a, const FastSlot *b, int nkeys)
{
	if (a->layout != b->layout || a->version != b->version ||
		a->nulls != b->nulls)
		return false;
	for (int k = 0; k < nkeys; k++)
		if (a->key[k] != b->key[k])
			return false;
	return true;
}

/*
 * The epoch of the kept globs, after emptying them if the key format
 * changed or they take more than GLOB_CACHE_BYTES.
 */
static uint64
current_glob_epoch(void)
{
	if (glob_cache_kfgen != tc_key_format_generation() ||
		MemoryContextMemAllocated(glob_cache_cxt, false) > GLOB_CACHE_BYTES)
	{
		MemoryContextReset(glob_cache_cxt);
		glob_cache_epoch++;
		glob_cache_kfgen = tc_key_format_generation();
	}
	return glob_cache_epoch;
}

/*
 * Queue the model's patterns for one row.  A row whose key columns have the
 * same binary images as one queued before in this transaction costs a hash
 * lookup (equal images print equally), not the printing of its values.
 * With keep, the globs are built in glob_cache_cxt and returned (NULL when
 * none was built), for queue_row() to keep.
 */
static char **
queue_row_slow(const RowLayout *layout, const RowValues *row, bool keep)
{
	static StringInfo key = NULL;
	const TcModelDeps *deps = layout->deps;
	const char *values[TC_NLEVELS];
	const char *local[16];
	const char **colvals;
	char	  **globs = NULL;

	if (key == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		key = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(key);
	appendBinaryStringInfo(key, (char *) &deps, sizeof(deps));
	for (int k = 0; k < key_columns(layout); k++)
		append_image(key, layout, row, key_column(layout, k));
	if (tc_queue_row_seen(key->data, key->len))
		return NULL;

	colvals = layout->nplaceholders <= lengthof(local) ? local :
		palloc(sizeof(char *) * layout->nplaceholders);
	for (int level = 0; level < TC_NLEVELS; level++)
		values[level] = print_value(layout, row, layout->scope[level]);
	for (int i = 0; i < layout->nplaceholders; i++)
		colvals[i] = print_value(layout, row, layout->placeholder[i]);
	if (keep)
	{
		(void) current_glob_epoch();	/* room for them, current format */
		globs = tc_model_globs(deps, values, colvals, glob_cache_cxt);
		for (int i = 0; i < deps->ndeps; i++)
			tc_queue_glob(globs[i]);
	}
	else
		tc_queue_model_values(deps, values, colvals);
	tc_queue_row_mark(key->data, key->len);
	return globs;
}

/*
 * queue_row_slow(), first looking the row up in the table of recent rows
 * when its key columns are few and passed by value (integer ids): no key
 * to build, no hash of bytes; and queueing the globs kept there when the
 * row was seen in an earlier transaction.
 */
static void
queue_row(const RowLayout *layout, const RowValues *row)
{
	FastSlot	probe;
	FastSlot   *slot;
	uint64		epoch;

	if (!layout->fast)
	{
		queue_row_slow(layout, row, false);
		return;
	}
	slot = &fast_slots[fast_key(layout, row, &probe)];
	epoch = tc_queue_seen_epoch();
	if (fast_equal(slot, &probe, key_columns(layout)))
	{
		if (epoch != 0 && slot->epoch == epoch)
			return;				/* queued in this transaction */
		if (slot->globs != NULL && slot->globs_epoch == current_glob_epoch())
		{
			for (int i = 0; i < layout->deps->ndeps; i++)
				tc_queue_glob(slot->globs[i]);
			slot->epoch = tc_queue_seen_epoch();	/* one may have started */
			return;
		}
	}
	probe.globs = queue_row_slow(layout, row, layout->keep_globs);
	probe.globs_epoch = glob_cache_epoch;	/* theirs, when built */
	probe.epoch = tc_queue_seen_epoch();	/* the slow path may start one */
	*slot = probe;
}

/*
 * Does the UPDATE change column c?  Compared by binary image
 * (datum_image_eq, which detoasts): a value rewritten as an equal but
 * differently stored one (say numeric 1.0 -> 1.00) counts as changed.
 */
static bool
column_changed(const RowLayout *layout, const RowValues *old,
			   const RowValues *new, int c)
{
	if (c < 0)
		return false;
	if (old->nulls[c] != new->nulls[c])
		return true;
	return !old->nulls[c] &&
		!datum_image_eq(old->values[c], new->values[c],
						layout->cols[c].typbyval, layout->cols[c].typlen);
}

/*
 * An UPDATE queues the new row's globs, and the old row's too when a column
 * they are built from changed (a row moved to another tenant, an id named
 * by a placeholder changed).  With a column filter, an UPDATE that changes
 * neither a filter column nor one of those queues nothing.
 */
static void
queue_update(const RowLayout *layout, const RowValues *old, const RowValues *new)
{
	bool		keys_changed = false;
	bool		filter_changed = layout->nfilter == 0;

	for (int k = 0; k < key_columns(layout) && !keys_changed; k++)
		keys_changed = column_changed(layout, old, new, key_column(layout, k));
	for (int i = 0; i < layout->nfilter && !filter_changed && !keys_changed; i++)
		filter_changed = column_changed(layout, old, new, layout->filter[i]);
	if (!keys_changed && !filter_changed)
		return;
	queue_row(layout, new);
	if (keys_changed)
		queue_row(layout, old);
}

/* ---------------------------------------------------------------------
 * capture_row(): the WHEN clause of 1.2's row triggers
 * ---------------------------------------------------------------------
 */

/*
 * Is the function tenant_cache.invalidate_trigger() (this library's)?  The
 * last OID found to be is remembered (it changes only with the extension).
 */
bool
tc_is_invalidate_trigger(Oid fn)
{
	static Oid	known = InvalidOid;
	FmgrInfo	finfo;

	if (fn == known)
		return true;
	fmgr_info(fn, &finfo);
	if (finfo.fn_addr != tc_invalidate_trigger)
		return false;
	known = fn;
	return true;
}

/*
 * capture_row() queues invalidations, so it must only run as the WHEN
 * clause of a trigger tenant_cache installed: anybody may execute it (the
 * WHEN clause runs as whoever writes to the table).  In a WHEN clause
 * PostgreSQL turns NEW.tableoid and OLD.tableoid into a Var of the outer or
 * inner tuple with the system column's number; in a planned query such a
 * Var always names a column of a subplan's output (a positive number).
 * The table must carry tenant_cache's trigger (checked by capture_layout).
 */
static void
check_called_as_when(FunctionCallInfo fcinfo)
{
	Node	   *expr = fcinfo->flinfo->fn_expr;
	Var		   *var = NULL;

	if (expr != NULL && IsA(expr, FuncExpr) &&
		list_length(((FuncExpr *) expr)->args) >= 1)
	{
		Node	   *arg = linitial(((FuncExpr *) expr)->args);

		if (IsA(arg, Var))
			var = (Var *) arg;
	}
	if (var == NULL || var->varattno != TableOidAttributeNumber ||
		(var->varno != INNER_VAR && var->varno != OUTER_VAR))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.capture_row() must be called from the WHEN clause of a trigger installed by tenant_cache.watch_table()")));
}

/* Build the relation's layout from its tenant_cache trigger with a WHEN clause. */
static void
build_capture_layout(RowLayout *layout, Oid relid, uint64 gen)
{
	Relation	rel = RelationIdGetRelation(relid);	/* locked by the write */
	Trigger    *trigger = NULL;

	if (!RelationIsValid(rel))
		elog(ERROR, "could not open relation with OID %u", relid);
	for (int i = 0; rel->trigdesc && i < rel->trigdesc->numtriggers && !trigger; i++)
	{
		Trigger    *t = &rel->trigdesc->triggers[i];

		if (t->tgqual != NULL && tc_is_invalidate_trigger(t->tgfoid))
			trigger = t;
	}
	if (trigger == NULL)
	{
		RelationClose(rel);
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.capture_row() was called on \"%s\", which is not watched",
						get_rel_name(relid))));
	}
	build_layout(layout, trigger, rel, gen);
	RelationClose(rel);
}

/*
 * The WHEN clause must pass the layout's columns (old, then new for an
 * UPDATE): it does unless the model's patterns changed behind
 * register_dependency()'s back.  Checked once per statement.
 */
static void
check_arguments(FunctionCallInfo fcinfo, const RowLayout *layout, Oid relid)
{
	List	   *args = ((FuncExpr *) fcinfo->flinfo->fn_expr)->args;
	int			nvalues = list_length(args) - 1;
	bool		ok = nvalues == layout->ncols || nvalues == 2 * layout->ncols;

	for (int i = 0; ok && i < nvalues; i++)
	{
		Node	   *arg = list_nth(args, 1 + i);

		ok = IsA(arg, Var) &&
			((Var *) arg)->varattno == layout->cols[i % layout->ncols].attnum;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("the triggers of watched table \"%s\" do not pass the columns it needs",
						get_rel_name(relid)),
				 errdetail("The patterns of model \"%s\" were changed without tenant_cache.register_dependency() or tenant_cache.unregister_dependency(), which recreate them.",
						   layout->model),
				 errhint("Call tenant_cache.unwatch_table() and tenant_cache.watch_table() again.")));
}

/* What a prepared WHEN clause (one per trigger) remembers in fn_extra. */
typedef struct CaptureCall
{
	RowLayout  *layout;
	Oid			relid;
	uint64		deps_gen;
} CaptureCall;

/*
 * The layout for this call.  The WHEN clause is prepared once per trigger
 * (when.c; PostgreSQL's way: once per statement and table): its checks are
 * done once, then fn_extra keeps the layout while it stays valid.
 */
static RowLayout *
capture_layout(FunctionCallInfo fcinfo, Oid relid, uint64 gen)
{
	CaptureCall *call = fcinfo->flinfo->fn_extra;
	RowLayout  *layout;

	if (call != NULL && call->layout->valid && call->deps_gen == gen &&
		call->relid == relid)
		return call->layout;
	if (call == NULL)
	{
		check_called_as_when(fcinfo);
		call = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(CaptureCall));
		fcinfo->flinfo->fn_extra = call;
	}
	layout = layout_entry(InvalidOid, relid);
	if (!layout->valid || layout->deps_gen != gen)
		build_capture_layout(layout, relid, gen);
	check_arguments(fcinfo, layout, relid);
	call->layout = layout;
	call->relid = relid;
	call->deps_gen = gen;
	return layout;
}

Datum
tc_capture_row(PG_FUNCTION_ARGS)
{
	static MemoryContext row_cxt = NULL;
	uint64		gen = tc_depcache_generation();	/* reloads it if needed */
	RowLayout  *layout;
	Datum		values[2 * TC_MAX_ROW_COLUMNS];
	bool		nulls[2 * TC_MAX_ROW_COLUMNS];
	RowValues	old = {values, nulls};
	int			nvalues = PG_NARGS() - 1;
	MemoryContext caller;

	if (PG_NARGS() < 1 || PG_ARGISNULL(0) || nvalues > 2 * TC_MAX_ROW_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.capture_row() must be called from the WHEN clause of a trigger installed by tenant_cache.watch_table()")));

	/*
	 * An UPDATE that moves a row to another partition also evaluates the
	 * partitioned table's WHEN clause, with no table OID: the partitions'
	 * AFTER DELETE and AFTER INSERT triggers capture the row.
	 */
	if (!OidIsValid(PG_GETARG_OID(0)))
		PG_RETURN_BOOL(false);
	layout = capture_layout(fcinfo, PG_GETARG_OID(0), gen);
	if (layout->deps == NULL)
		PG_RETURN_BOOL(false);	/* the model has no patterns */

	/*
	 * A WHEN clause runs in the statement's memory context: what a row
	 * allocates (printed values, detoasted copies) goes into a context of
	 * our own, emptied at the next row.
	 */
	if (row_cxt == NULL)
		row_cxt = AllocSetContextCreate(TopMemoryContext, "tenant_cache row",
										ALLOCSET_SMALL_SIZES);
	MemoryContextReset(row_cxt);
	caller = MemoryContextSwitchTo(row_cxt);

	for (int c = 0; c < nvalues; c++)
	{
		values[c] = fcinfo->args[1 + c].value;
		nulls[c] = fcinfo->args[1 + c].isnull;
	}
	if (nvalues > layout->ncols)	/* UPDATE: old values, then new ones */
	{
		RowValues	new = {values + layout->ncols, nulls + layout->ncols};

		queue_update(layout, &old, &new);
	}
	else
		queue_row(layout, &old);
	MemoryContextSwitchTo(caller);
	PG_RETURN_BOOL(false);		/* the trigger itself never fires */
}

/* ---------------------------------------------------------------------
 * invalidate_trigger(): TRUNCATE, and rows of 1.1's triggers
 * ---------------------------------------------------------------------
 */

/*
 * The trigger's layout, for the current dependencies.  Rows of one
 * statement fire the same trigger one after the other: the last one used
 * is kept, and needs no look-up while still valid.
 */
static RowLayout *
trigger_layout(Trigger *trigger, Relation rel)
{
	static RowLayout *last = NULL;
	uint64		gen = tc_depcache_generation();	/* reloads it if needed */
	RowLayout  *layout;

	if (last != NULL && last->valid && last->deps_gen == gen &&
		last->tgoid == trigger->tgoid && last->relid == RelationGetRelid(rel))
		return last;
	layout = layout_entry(trigger->tgoid, RelationGetRelid(rel));
	if (!layout->valid || layout->deps_gen != gen)
		build_layout(layout, trigger, rel, gen);
	last = layout;
	return layout;
}

/* Read the layout's columns from a slot. */
static void
slot_values(const RowLayout *layout, TupleTableSlot *slot, RowValues *row)
{
	row->values = palloc(sizeof(Datum) * Max(layout->ncols, 1));
	row->nulls = palloc(sizeof(bool) * Max(layout->ncols, 1));
	for (int c = 0; c < layout->ncols; c++)
		row->values[c] = slot_getattr(slot, layout->cols[c].attnum, &row->nulls[c]);
}

Datum
tc_invalidate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	RowLayout  *layout;
	TriggerEvent ev;
	RowValues	old,
				new;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.invalidate_trigger() must be called as a trigger")));

	ev = trigdata->tg_event;
	if (TRIGGER_FIRED_BY_TRUNCATE(ev))
	{
		const char *every[TC_NLEVELS] = {NULL, NULL, NULL};
		Trigger    *trigger = trigdata->tg_trigger;

		(void) tc_depcache_generation();	/* reloads it if needed */
		if (trigger->tgnargs > 0)
			tc_queue_model_values(tc_lookup_model(trigger->tgargs[0]), every, NULL);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache.invalidate_trigger() must be fired for each row, or for TRUNCATE")));
	layout = trigger_layout(trigdata->tg_trigger, trigdata->tg_relation);

	/* Trigger functions run in a per-row memory context. */
	if (layout->deps != NULL)
	{
		slot_values(layout, trigdata->tg_trigslot, &old);
		if (TRIGGER_FIRED_BY_UPDATE(ev))
		{
			slot_values(layout, trigdata->tg_newslot, &new);
			queue_update(layout, &old, &new);
		}
		else
			queue_row(layout, &old);
	}

	if (TRIGGER_FIRED_AFTER(ev))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(ev))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}
