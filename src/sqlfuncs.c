/*-------------------------------------------------------------------------
 *
 * sqlfuncs.c
 *		SQL functions implemented in C: manual invalidation and helpers.
 *
 * invalidate_pattern() and invalidate_model() add globs to the same
 * transaction-local set as the triggers, so they take effect at commit and
 * not at all on rollback.  glob_for() shows the glob a call would queue.
 * trigger_arguments() decodes pg_trigger.tgargs for the watched_tables view;
 * pattern_columns() lists the columns a pattern's placeholders name.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "tenant_cache.h"

PG_FUNCTION_INFO_V1(tc_invalidate_pattern);
PG_FUNCTION_INFO_V1(tc_invalidate_model);
PG_FUNCTION_INFO_V1(tc_glob_for);
PG_FUNCTION_INFO_V1(tc_trigger_arguments);
PG_FUNCTION_INFO_V1(tc_check_pattern_sql);
PG_FUNCTION_INFO_V1(tc_pattern_columns);


/* Text argument n as a C string; NULL when SQL NULL or not passed. */
char *
tc_text_arg(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static void
require_pattern(const char *pattern)
{
	if (pattern == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pattern must not be NULL")));
	tc_check_pattern(pattern);
}

static char *
checked_pattern(FunctionCallInfo fcinfo)
{
	char	   *pattern = tc_text_arg(fcinfo, 0);

	require_pattern(pattern);
	return pattern;
}

/*
 * The glob an administrator's call builds for a pattern and values (NULL:
 * every value; row placeholders stand for every value), into buf, after
 * checking the pattern; returns the pattern, parsed.  invalidate_pattern(),
 * glob_for() and the toolbox (explore, count_keys, ...) all build it here.
 */
TcPattern *
tc_call_glob(StringInfo buf, const char *pattern,
			 const char *const values[TC_NLEVELS])
{
	TcColumns	columns = {0, NULL};
	TcPattern  *parsed;

	require_pattern(pattern);
	parsed = tc_parse_pattern(pattern, &columns);
	tc_build_glob(buf, tc_current_key_format(), values, parsed, NULL);
	return parsed;
}

/* check_pattern(pattern text) RETURNS void: the rules for admin patterns. */
Datum
tc_check_pattern_sql(PG_FUNCTION_ARGS)
{
	checked_pattern(fcinfo);
	PG_RETURN_VOID();
}

/*
 * Build the call's glob into buf (placeholders: every value); returns the
 * (checked) pattern, parsed.
 */
static TcPattern *
build_call_glob(StringInfo buf, FunctionCallInfo fcinfo, char **raw)
{
	const char *values[TC_NLEVELS];

	*raw = tc_text_arg(fcinfo, 0);
	for (int level = 0; level < TC_NLEVELS; level++)
		values[level] = tc_text_arg(fcinfo, level + 1);
	return tc_call_glob(buf, *raw, values);
}

/*
 * invalidate_pattern(pattern, tenant_id, client_id, bu_id, force) RETURNS
 * bigint: queue one glob; returns the number of globs it covers (1).  A
 * pattern that would clear every key of every tenant needs force => true.
 */
Datum
tc_invalidate_pattern(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	bool		force = PG_NARGS() > 4 && !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	char	   *raw;
	TcPattern  *pattern;

	initStringInfo(&buf);
	pattern = build_call_glob(&buf, fcinfo, &raw);
	if (!force && PG_ARGISNULL(1) && PG_ARGISNULL(2) && PG_ARGISNULL(3) &&
		tc_pattern_matches_everything(pattern))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pattern \"%s\" would clear every cached key of every tenant",
						raw),
				 errhint("Name a tenant, a more specific pattern, or pass force => true.")));
	tc_check_can_queue();
	tc_queue_glob(buf.data);
	PG_RETURN_INT64(1);
}

/* glob_for(pattern, tenant_id, client_id, bu_id): the glob, not queued. */
Datum
tc_glob_for(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	char	   *raw;

	initStringInfo(&buf);
	build_call_glob(&buf, fcinfo, &raw);
	PG_RETURN_TEXT_P(cstring_to_text(buf.data));
}

/*
 * invalidate_model(model, tenant_id) RETURNS bigint: queue every pattern of
 * the model for that tenant (NULL: every tenant), whatever the pattern's
 * scope; returns the number of globs covered.
 */
Datum
tc_invalidate_model(PG_FUNCTION_ARGS)
{
	char	   *model = tc_text_arg(fcinfo, 0);
	const char *values[TC_NLEVELS] = {NULL, NULL, NULL};
	const TcModelDeps *deps;
	StringInfoData buf;

	if (model == NULL || model[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));
	values[TC_LEVEL_TENANT] = tc_text_arg(fcinfo, 1);
	deps = tc_lookup_model(model);
	if (deps == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" has no registered dependencies", model),
				 errhint("See tenant_cache.dependencies, and register patterns with tenant_cache.register_dependency().")));
	tc_check_can_queue();

	initStringInfo(&buf);
	for (int i = 0; i < deps->ndeps; i++)
	{
		resetStringInfo(&buf);
		tc_build_glob(&buf, tc_current_key_format(), values,
					  deps->deps[i].parsed, NULL);
		tc_queue_glob(buf.data);
	}
	PG_RETURN_INT64(deps->ndeps);
}

/* trigger_arguments(tgargs bytea) RETURNS text[]: split on NUL bytes. */
Datum
tc_trigger_arguments(PG_FUNCTION_ARGS)
{
	bytea	   *args = PG_GETARG_BYTEA_PP(0);
	const char *p = VARDATA_ANY(args);
	const char *end = p + VARSIZE_ANY_EXHDR(args);
	Datum	   *elems = palloc(sizeof(Datum) * (VARSIZE_ANY_EXHDR(args) + 1));
	int			n = 0;

	while (p < end)
	{
		size_t		len = strnlen(p, end - p);

		elems[n++] = PointerGetDatum(cstring_to_text_with_len(p, len));
		p += len + 1;
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false,
										  TYPALIGN_INT));
}

/*
 * pattern_columns(pattern text) RETURNS name[]: the columns named by the
 * pattern's placeholders, each once, in order of appearance.
 */
Datum
tc_pattern_columns(PG_FUNCTION_ARGS)
{
	char	   *pattern = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TcColumns	columns = {0, NULL};
	Datum	   *elems;

	tc_parse_pattern(pattern, &columns);
	elems = palloc(sizeof(Datum) * Max(columns.n, 1));
	for (int i = 0; i < columns.n; i++)
	{
		Name		name = palloc0(NAMEDATALEN);

		namestrcpy(name, columns.names[i]);
		elems[i] = NameGetDatum(name);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, columns.n, NAMEOID, NAMEDATALEN,
										  false, TYPALIGN_CHAR));
}
