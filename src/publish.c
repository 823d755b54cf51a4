/*-------------------------------------------------------------------------
 *
 * publish.c
 *		Announce applied globs on a Redis pub/sub channel.
 *
 * With tenant_cache.publish_channel set, the worker PUBLISHes one JSON
 * message per glob it applied, so that application servers can drop their
 * in-process caches (which Redis' UNLINK does not reach) for the same keys.
 * All messages of a batch go in one pipelined round trip, after the batch's
 * globs were applied.  A message names the glob, the pattern and the
 * model(s) it belongs to (read back from the glob with key_format and looked
 * up in tenant_cache.dependency), the tenant, client and bu values of the
 * glob (NULL where it has "*"), the keys deleted and the writer's commit
 * time.  Pub/sub delivers at most once, to the subscribers connected at that
 * moment: a failed PUBLISH is logged and counted (stats.redis_errors), never
 * a reason to apply the glob again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "tenant_cache.h"

/* Registered patterns by their {pattern} part as globs have it. */
typedef struct PatternModels
{
	char	   *key;			/* {pattern} part of its globs */
	char	   *pattern;		/* as registered */
	int			nmodels;
	char	  **models;			/* by name */
} PatternModels;

static MemoryContext map_cxt = NULL;
static PatternModels *map = NULL;
static int	map_len = 0;
static bool map_loaded = false;
static uint64 map_depcache_gen = 0;
static uint64 map_key_format_gen = 0;
static char *database_name = NULL;

/* Logging state: the first failure after a success is a WARNING. */
static bool publish_ok = true;

/* The {pattern} part a registered pattern gets in globs; NULL if none. */
static char *
pattern_key(const char *pattern)
{
	const char *none[TC_NLEVELS] = {NULL, NULL, NULL};
	TcColumns	columns = {0, NULL};
	StringInfoData glob;
	int			start;
	int			len;

	initStringInfo(&glob);
	tc_build_glob(&glob, tc_current_key_format(), none,
				  tc_parse_pattern(pattern, &columns), NULL);
	if (!tc_glob_pattern_part(tc_current_key_format(), glob.data, &start, &len))
		return NULL;
	return pnstrdup(glob.data + start, len);
}

/* (Re)read the pattern -> models map when the dependencies or key_format changed. */
static void
load_map(void)
{
	uint64		depgen = tc_depcache_generation();
	uint64		kfgen = tc_key_format_generation();
	MemoryContext old;

	if (map_loaded && depgen == map_depcache_gen && kfgen == map_key_format_gen)
		return;
	if (map_cxt == NULL)
		map_cxt = AllocSetContextCreate(TopMemoryContext, "tenant_cache publish",
										ALLOCSET_SMALL_SIZES);
	MemoryContextReset(map_cxt);
	map = NULL;
	map_len = 0;
	map_loaded = false;

	if (SPI_execute("SELECT pattern, pg_catalog.array_agg(model ORDER BY model) "
					"FROM tenant_cache.dependency GROUP BY pattern ORDER BY pattern",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read tenant_cache.dependency");
	old = MemoryContextSwitchTo(map_cxt);
	map = palloc0(sizeof(PatternModels) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum	   *elems;
		int			nelems;
		PatternModels *pm = &map[map_len];

		pm->pattern = SPI_getvalue(tup, desc, 1);
		pm->key = pattern_key(pm->pattern);
		if (pm->key == NULL)
			continue;
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull)),
						  TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, NULL, &nelems);
		pm->nmodels = nelems;
		pm->models = palloc(sizeof(char *) * Max(nelems, 1));
		for (int m = 0; m < nelems; m++)
			pm->models[m] = TextDatumGetCString(elems[m]);
		map_len++;
	}
	MemoryContextSwitchTo(old);
	map_depcache_gen = depgen;
	map_key_format_gen = kfgen;
	map_loaded = true;
}

static const PatternModels *
find_pattern(const char *key)
{
	for (int i = 0; i < map_len; i++)
		if (strcmp(map[i].key, key) == 0)
			return &map[i];
	return NULL;
}

static void
append_field(StringInfo buf, const char *name, const char *value)
{
	appendStringInfo(buf, "%s\"%s\":", buf->len > 1 ? "," : "", name);
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, value);
}

/* The JSON message for one applied glob. */
static char *
build_message(const TcPublishItem *item)
{
	StringInfoData buf;
	char	   *values[TC_NLEVELS];
	int			start;
	int			len;
	const PatternModels *pm = NULL;
	char	   *pattern = NULL;

	if (tc_glob_read_back(tc_current_key_format(), item->glob, values,
						  &start, &len))
	{
		pattern = pnstrdup(item->glob + start, len);
		pm = find_pattern(pattern);
		if (pm != NULL)
			pattern = pm->pattern;
	}
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	append_field(&buf, "database", database_name);
	append_field(&buf, "glob", item->glob);
	append_field(&buf, "model", pm != NULL && pm->nmodels == 1 ? pm->models[0] : NULL);
	appendStringInfoString(&buf, ",\"models\":[");
	for (int m = 0; pm != NULL && m < pm->nmodels; m++)
	{
		if (m > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, pm->models[m]);
	}
	appendStringInfoChar(&buf, ']');
	append_field(&buf, "pattern", pattern);
	append_field(&buf, "tenant", values[TC_LEVEL_TENANT]);
	append_field(&buf, "client", values[TC_LEVEL_CLIENT]);
	append_field(&buf, "bu", values[TC_LEVEL_BU]);
	appendStringInfo(&buf, ",\"keys_deleted\":" INT64_FORMAT, item->keys_deleted);
	append_field(&buf, "committed_at", item->committed_at == 0 ? NULL :
				 JsonEncodeDateTime(NULL, TimestampTzGetDatum(item->committed_at),
									TIMESTAMPTZOID, NULL));
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

static void
note_failure(int lost, const char *err)
{
	tc_stats_redis_error(err);
	ereport(publish_ok ? WARNING : DEBUG1,
			(errmsg("tenant_cache worker could not publish on channel \"%s\": %s",
					tc_publish_channel, err),
			 errdetail("%d message(s) about applied globs were not sent; the globs were applied.",
					   lost)));
	publish_ok = false;
}

/*
 * PUBLISH one message per applied glob on tenant_cache.publish_channel, in
 * one round trip.  Called by the worker inside its batch transaction, SPI
 * connected, after the globs were applied; does nothing when the setting is
 * empty.
 */
void
tc_publish_applied(const TcPublishItem *items, int n)
{
	redisReply **replies;
	const char *argv[3];
	size_t		lens[3];
	char	   *err = NULL;
	int			refused = 0;

	if (n == 0 || tc_publish_channel == NULL || tc_publish_channel[0] == '\0')
		return;
	if (!tc_redis_is_connected())
	{
		note_failure(n, "not connected to Redis");
		return;
	}
	if (database_name == NULL)
		database_name = MemoryContextStrdup(TopMemoryContext,
											get_database_name(MyDatabaseId));
	load_map();

	argv[0] = "PUBLISH";
	lens[0] = strlen(argv[0]);
	argv[1] = tc_publish_channel;
	lens[1] = strlen(argv[1]);
	for (int i = 0; i < n; i++)
	{
		argv[2] = build_message(&items[i]);
		lens[2] = strlen(argv[2]);
		if (!tc_redis_append_argv(3, argv, lens))
		{
			note_failure(n, "could not format the PUBLISH command");
			tc_redis_disconnect();	/* drop what was appended */
			return;
		}
	}
	replies = palloc(sizeof(redisReply *) * n);
	if (tc_redis_exchange(n, replies, &err) != TC_REDIS_OK)
	{
		note_failure(n, err);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		char	   *why = NULL;

		if (tc_redis_error_reply(replies[i], "PUBLISH", &why))
		{
			if (refused++ == 0)
				err = why;
		}
		freeReplyObject(replies[i]);
	}
	if (refused > 0)
	{
		note_failure(refused, err);
		return;
	}
	if (!publish_ok)
		ereport(LOG,
				(errmsg("tenant_cache worker: publishing on channel \"%s\" works again",
						tc_publish_channel)));
	publish_ok = true;
	elog(DEBUG1, "tenant_cache worker published %d message(s) on \"%s\"",
		 n, tc_publish_channel);
}
