/*-------------------------------------------------------------------------
 *
 * when.c
 *		The WHEN clauses of tenant_cache's row triggers, prepared once per
 *		backend and shared by the statements that write to watched tables.
 *
 * PostgreSQL prepares a trigger's WHEN clause (pg_trigger.tgqual, a node
 * string) again for every statement, the first time the statement tests
 * it: it parses the string, plans the expression and builds its ExprState.
 * For a single-row UPDATE that costs more than the row's capture.  The
 * clause of tenant_cache's triggers is one call of capture_row() on columns
 * of OLD and NEW; its ExprState, built exactly as TriggerEnabled() builds
 * it (OLD and NEW as INNER_VAR and OUTER_VAR, implicit AND form, no parent
 * plan, so no JIT), keeps no state from one evaluation to the next and
 * depends only on the trigger and the table's row type.  So it is built
 * once per backend and handed to every INSERT, UPDATE and DELETE at
 * executor start, where PostgreSQL would build its own.
 *
 * A relcache invalidation of the table (any ALTER TABLE, CREATE or DROP
 * TRIGGER) makes the next statement build it again; a statement that still
 * runs with the old one keeps it until it ends: a reset callback on the
 * statement's memory context counts the statements using each ExprState.
 * ExecInitFunc() checks the EXECUTE privilege on capture_row() for the user
 * who builds the state; a statement run by another user checks it here,
 * and the answer is remembered until pg_proc or a role membership changes;
 * the function execute hook (sepgsql) runs for every statement, as there.
 * A change of track_functions (which ExecInitFunc() reads) rebuilds it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/objectaccess.h"
#include "catalog/pg_trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "pgstat.h"
#include "rewrite/prs2lock.h"
#include "rewrite/rewriteManip.h"
#include "utils/acl.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "tenant_cache.h"

/* One prepared WHEN clause. */
typedef struct PreparedWhen
{
	MemoryContext cxt;			/* holds this struct and the ExprState */
	ExprState  *state;
	Oid			funcid;			/* capture_row() */
	Oid			allowed_user;	/* may execute it; InvalidOid: not known */
	int			track_functions;	/* the setting it was built under */
	int			users;			/* statements running with it */
	bool		replaced;		/* delete it when the last of them ends */
} PreparedWhen;

/* A trigger's entry: its prepared clause while valid. */
typedef struct WhenClause
{
	Oid			tgoid;			/* hash key */
	Oid			relid;
	bool		valid;
	PreparedWhen *prepared;		/* NULL: not one capture_row() call */
} WhenClause;

static HTAB *when_clauses = NULL;
static MemoryContext when_cxt = NULL;

static void
release_prepared(PreparedWhen *prepared)
{
	if (prepared->users == 0)
		MemoryContextDelete(prepared->cxt);
	else
		prepared->replaced = true;
}

/* The statement's memory context is going away: it no longer uses it. */
static void
statement_done(void *arg)
{
	PreparedWhen *prepared = arg;

	if (--prepared->users == 0 && prepared->replaced)
		MemoryContextDelete(prepared->cxt);
}

static void
when_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	WhenClause *when;

	hash_seq_init(&status, when_clauses);
	while ((when = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || when->relid == relid)
			when->valid = false;
}

/* pg_proc or a role membership changed: check the privilege again. */
static void
when_acl_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS status;
	WhenClause *when;

	hash_seq_init(&status, when_clauses);
	while ((when = hash_seq_search(&status)) != NULL)
		if (when->valid && when->prepared != NULL)
			when->prepared->allowed_user = InvalidOid;
}

void
tc_when_init(void)
{
	HASHCTL		ctl;

	when_cxt = AllocSetContextCreate(TopMemoryContext,
									 "tenant_cache WHEN clauses",
									 ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(WhenClause);
	ctl.hcxt = when_cxt;
	when_clauses = hash_create("tenant_cache WHEN clauses", 32, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(when_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, when_acl_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, when_acl_callback, (Datum) 0);
}

/*
 * The function of a clause that is one call of a function on columns
 * (watch_table's shape); InvalidOid for anything else, which is left to
 * PostgreSQL.
 */
static Oid
capture_call(List *qual)
{
	FuncExpr   *call;
	ListCell   *lc;

	if (list_length(qual) != 1 || !IsA(linitial(qual), FuncExpr))
		return InvalidOid;
	call = linitial(qual);
	foreach(lc, call->args)
		if (!IsA(lfirst(lc), Var))
			return InvalidOid;
	return call->funcid;
}

/*
 * Build the trigger's clause as TriggerEnabled() would.  Built in a context
 * of the statement's, moved under ours once complete: an error leaves
 * nothing behind.
 */
static PreparedWhen *
prepare_when(Trigger *trigger)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "tenant_cache WHEN clause",
											  ALLOCSET_START_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	PreparedWhen *prepared = palloc0(sizeof(PreparedWhen));
	Node	   *qual = stringToNode(trigger->tgqual);
	List	   *quals;

	ChangeVarNodes(qual, PRS2_OLD_VARNO, INNER_VAR, 0);
	ChangeVarNodes(qual, PRS2_NEW_VARNO, OUTER_VAR, 0);
	quals = (List *) expression_planner((Expr *) make_ands_implicit((Expr *) qual));
	prepared->funcid = capture_call(quals);
	if (!OidIsValid(prepared->funcid))
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return NULL;
	}
	prepared->cxt = cxt;
	prepared->state = ExecInitQual(quals, NULL);	/* checks EXECUTE */
	prepared->allowed_user = GetUserId();
	prepared->track_functions = pgstat_track_functions;
	MemoryContextSwitchTo(old);
	MemoryContextSetParent(cxt, when_cxt);
	return prepared;
}

/* The trigger's prepared clause, (re)built if needed; NULL: not ours to do. */
static PreparedWhen *
prepared_when(Trigger *trigger, Oid relid)
{
	WhenClause *when;
	PreparedWhen *fresh;
	bool		found;

	when = hash_search(when_clauses, &trigger->tgoid, HASH_ENTER, &found);
	if (!found)
	{
		when->valid = false;
		when->prepared = NULL;
	}
	if (when->valid && when->relid == relid &&
		(when->prepared == NULL ||
		 when->prepared->track_functions == pgstat_track_functions))
		return when->prepared;
	when->valid = false;
	fresh = prepare_when(trigger);	/* on error the entry stays invalid */
	if (when->prepared != NULL)
		release_prepared(when->prepared);
	when->prepared = fresh;
	when->relid = relid;
	when->valid = true;
	return fresh;
}

/*
 * What ExecInitFunc() does for each statement that prepares the clause:
 * the object access hook (sepgsql), and the privilege check, done again
 * only for a user other than the last one it passed for.
 */
static void
check_execute(PreparedWhen *prepared)
{
	Oid			user = GetUserId();
	AclResult	aclresult;

	InvokeFunctionExecuteHook(prepared->funcid);
	if (prepared->allowed_user == user)
		return;
	aclresult = pg_proc_aclcheck(prepared->funcid, user, ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(prepared->funcid));
	prepared->allowed_user = user;
}

/* Is the trigger one of tenant_cache's row triggers for this operation? */
static bool
is_capture_trigger(Trigger *trigger, int operation)
{
	int16		event = operation == CMD_INSERT ? TRIGGER_TYPE_INSERT :
		operation == CMD_UPDATE ? TRIGGER_TYPE_UPDATE : TRIGGER_TYPE_DELETE;

	return trigger->tgqual != NULL &&
		strncmp(trigger->tgname, "zz_tenant_cache_", 16) == 0 &&
		TRIGGER_TYPE_MATCHES(trigger->tgtype, TRIGGER_TYPE_ROW,
							 TRIGGER_TYPE_AFTER, event) &&
		tc_is_invalidate_trigger(trigger->tgfoid);
}

/* Give the statement the prepared clause, counted until it ends. */
static void
use_prepared(EState *estate, PreparedWhen *prepared, ExprState **slot)
{
	MemoryContextCallback *cb;

	check_execute(prepared);
	cb = MemoryContextAlloc(estate->es_query_cxt, sizeof(MemoryContextCallback));
	cb->func = statement_done;
	cb->arg = prepared;
	MemoryContextRegisterResetCallback(estate->es_query_cxt, cb);
	prepared->users++;
	*slot = prepared->state;
}

/*
 * ExecutorStart of an INSERT, UPDATE or DELETE: give tenant_cache's row
 * triggers on its result relations their prepared WHEN clauses.  Result
 * relations opened later (rows routed to partitions) take PostgreSQL's way.
 */
void
tc_prepare_when_clauses(EState *estate, int operation)
{
	if (estate->es_result_relations == NULL)
		return;
	for (Index i = 0; i < estate->es_range_table_size; i++)
	{
		ResultRelInfo *rri = estate->es_result_relations[i];
		TriggerDesc *trigdesc = rri ? rri->ri_TrigDesc : NULL;

		if (trigdesc == NULL || rri->ri_TrigWhenExprs == NULL)
			continue;
		for (int j = 0; j < trigdesc->numtriggers; j++)
		{
			Trigger    *trigger = &trigdesc->triggers[j];
			PreparedWhen *prepared;

			if (rri->ri_TrigWhenExprs[j] != NULL ||
				!is_capture_trigger(trigger, operation))
				continue;
			prepared = prepared_when(trigger, RelationGetRelid(rri->ri_RelationDesc));
			if (prepared != NULL)
				use_prepared(estate, prepared, &rri->ri_TrigWhenExprs[j]);
		}
	}
}
