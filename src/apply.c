/*-------------------------------------------------------------------------
 *
 * apply.c
 *		Apply a batch of distinct globs to Redis: exact keys with pipelined
 *		UNLINK, everything else with one SCAN pass over the keyspace.
 *
 * The worker hands over the distinct globs of a batch (tc_apply_globs) and
 * gets, per glob, whether it was cleared, refused by Redis, hit by a lost
 * connection, or not attempted.  The work is done in units, each a few
 * round trips of pipelined commands through redis.c:
 *
 *	- Literal globs (no wildcard once unescaped, tc_glob_is_literal) name one
 *	  key each: they are removed with UNLINK, up to TC_UNLINK_KEYS keys per
 *	  command and TC_PIPELINE_CMDS commands per round trip, no SCAN.  A
 *	  command refused by Redis (say ACL NOPERM on one tenant's key) removed
 *	  nothing; its keys are sent again one per command, so that the refusal
 *	  fails exactly the globs whose key Redis refuses.
 *	- The other globs are cleared by ONE SCAN iteration for all of them
 *	  (tenant_cache.merge_scans): MATCH on their common literal prefix plus
 *	  "*" when they have one (on the glob itself when there is only one), and
 *	  each key Redis returns matched client-side against every glob through
 *	  the prefix trie of globset.c, whose matcher is Redis' own (fuzzed and
 *	  compared with redis-server by test/fuzz/).  The matched keys of each
 *	  page are UNLINKed with one command per glob (a key two globs match is
 *	  sent for both, so a refusal of one glob never leaves the other's key
 *	  behind), pipelined with the request for the next page.  A glob is
 *	  cleared only when the iteration, started after the glob was taken,
 *	  returned cursor 0: a Redis restart in between makes the iteration miss
 *	  nothing that it must catch, and a lost connection fails the unit.
 *	  With merge_scans off each glob gets its own SCAN MATCH glob iteration.
 *
 * Outcomes: an error reply to a glob's UNLINK fails that glob only; an
 * error reply to SCAN fails the globs of that SCAN; a lost connection or a
 * timeout fails the globs of the unit under way and leaves later units
 * untouched; so does the time limit, checked between units (the first unit
 * always runs, so a batch always makes progress).  The deleted counts add
 * up to the keys removed; a multi-key UNLINK's count goes to its first glob.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "globmatch.h"
#include "globset.h"
#include "tenant_cache.h"

#define TC_UNLINK_KEYS		256		/* keys per UNLINK of literal globs */
#define TC_PIPELINE_CMDS	64		/* UNLINKs of literal globs per round trip */
#define TC_MAX_CURSOR_LEN	32

/* A unit of work: some of the batch's jobs, cleared together. */
typedef struct Unit
{
	TcGlobJob **jobs;
	int			n;
	bool		literal;
} Unit;

/* Scratch of a merged SCAN: the matches of one page, grouped per job. */
typedef struct ScanPage
{
	const TcGlobSet *set;
	redisReply *key;			/* the key being matched */
	int			npairs;
	int			cap;
	int		   *pair_job;		/* (job, key) pairs of this page */
	redisReply **pair_key;
	int		   *count;			/* pairs per job */
	int		   *unlink_job;		/* job of each UNLINK sent, in order */
	int			nunlinks;
	const char **argv;			/* argument vectors of the page's UNLINKs */
	size_t	   *lens;
} ScanPage;

static void *
set_alloc(size_t size)
{
	return MemoryContextAllocHuge(CurrentMemoryContext, size);
}

static void
set_free(void *ptr)
{
	pfree(ptr);
}

static void
finish_job(TcGlobJob *job, TcRedisStatus status, const char *error)
{
	job->done = true;
	job->status = status;
	job->error = error ? pstrdup(error) : NULL;
}

/* Every job of the unit not finished yet gets this outcome. */
static void
finish_rest(Unit *unit, TcRedisStatus status, const char *error)
{
	for (int i = 0; i < unit->n; i++)
		if (!unit->jobs[i]->done)
			finish_job(unit->jobs[i], status, error);
}

/* A lost connection or timeout: the unit's open jobs fail; stop here. */
static bool
unit_io_error(Unit *unit, const char *error)
{
	finish_rest(unit, TC_REDIS_IO_ERROR, error);
	return false;
}

/* An UNLINK's reply for job: count, or refusal of that job. */
static bool
take_unlink_reply(TcGlobJob *job, redisReply *reply, char **err)
{
	char	   *refusal = NULL;

	if (tc_redis_error_reply(reply, "Redis UNLINK failed", &refusal))
	{
		if (!job->done)
			finish_job(job, TC_REDIS_ERROR_REPLY, refusal);
	}
	else if (reply->type == REDIS_REPLY_INTEGER)
		job->deleted += reply->integer;
	else
	{
		freeReplyObject(reply);
		tc_redis_protocol_error("unexpected reply to Redis UNLINK", err);
		return false;
	}
	freeReplyObject(reply);
	return true;
}

/* ---- literal globs: one key each, pipelined UNLINK ---- */

/*
 * Send UNLINK for the keys of jobs [from, to) one per command, in one round
 * trip, after a command holding them all was refused.
 */
static bool
unlink_one_by_one(Unit *unit, int from, int to, char **keys, size_t *keylens,
				  char **err)
{
	int			n = to - from;
	redisReply **replies = palloc(sizeof(redisReply *) * n);

	for (int i = from; i < to; i++)
	{
		const char *argv[2] = {"UNLINK", keys[i]};
		size_t		lens[2] = {6, keylens[i]};

		if (!tc_redis_append_argv(2, argv, lens))
		{
			tc_redis_protocol_error("could not format Redis UNLINK", err);
			return false;
		}
	}
	if (tc_redis_exchange(n, replies, err) != TC_REDIS_OK)
		return false;
	for (int i = 0; i < n; i++)
		if (!take_unlink_reply(unit->jobs[from + i], replies[i], err))
		{
			for (int j = i + 1; j < n; j++)
				freeReplyObject(replies[j]);
			return false;
		}
	pfree(replies);
	return true;
}

/* One round trip: UNLINK commands for jobs [from, to), TC_UNLINK_KEYS each. */
static bool
unlink_chunk(Unit *unit, int from, int to, char **keys, size_t *keylens,
			 char **err)
{
	int			ncmds = (to - from + TC_UNLINK_KEYS - 1) / TC_UNLINK_KEYS;
	redisReply **replies = palloc(sizeof(redisReply *) * ncmds);
	const char **argv = palloc(sizeof(char *) * (TC_UNLINK_KEYS + 1));
	size_t	   *lens = palloc(sizeof(size_t) * (TC_UNLINK_KEYS + 1));
	bool		ok = true;

	argv[0] = "UNLINK";
	lens[0] = 6;
	for (int c = 0; c < ncmds; c++)
	{
		int			first = from + c * TC_UNLINK_KEYS;
		int			nkeys = Min(TC_UNLINK_KEYS, to - first);

		for (int k = 0; k < nkeys; k++)
		{
			argv[k + 1] = keys[first + k];
			lens[k + 1] = keylens[first + k];
		}
		if (!tc_redis_append_argv(nkeys + 1, argv, lens))
		{
			tc_redis_protocol_error("could not format Redis UNLINK", err);
			return false;
		}
	}
	if (tc_redis_exchange(ncmds, replies, err) != TC_REDIS_OK)
		return false;
	for (int c = 0; c < ncmds; c++)
	{
		int			first = from + c * TC_UNLINK_KEYS;
		int			last = Min(first + TC_UNLINK_KEYS, to);
		redisReply *r = replies[c];

		if (!ok)
			freeReplyObject(r);
		else if (r->type == REDIS_REPLY_ERROR && last - first > 1)
		{
			/* Refused as a whole: find out which keys Redis refuses. */
			freeReplyObject(r);
			ok = unlink_one_by_one(unit, first, last, keys, keylens, err);
		}
		else
			ok = take_unlink_reply(unit->jobs[first], r, err);
	}
	pfree(replies);
	pfree(argv);
	pfree(lens);
	return ok;
}

static bool
apply_literal(Unit *unit)
{
	char	  **keys = palloc(sizeof(char *) * unit->n);
	size_t	   *keylens = palloc(sizeof(size_t) * unit->n);
	int			chunk = TC_UNLINK_KEYS * TC_PIPELINE_CMDS;
	char	   *err = NULL;

	for (int i = 0; i < unit->n; i++)
	{
		const char *glob = unit->jobs[i]->glob;
		size_t		glen = strlen(glob);

		keys[i] = palloc(glen + 1);
		keylens[i] = tc_glob_literal_prefix(glob, glen, keys[i]);
		unit->jobs[i]->literal = true;
	}
	for (int from = 0; from < unit->n; from += chunk)
		if (!unlink_chunk(unit, from, Min(from + chunk, unit->n), keys, keylens, &err))
			return unit_io_error(unit, err);
	finish_rest(unit, TC_REDIS_OK, NULL);
	return true;
}

/* ---- the other globs: one SCAN iteration, matched client-side ---- */

static void
note_match(size_t index, void *arg)
{
	ScanPage   *page = arg;

	if (page->npairs == page->cap)
	{
		page->cap *= 2;
		page->pair_job = repalloc(page->pair_job, sizeof(int) * page->cap);
		page->pair_key = repalloc(page->pair_key, sizeof(redisReply *) * page->cap);
	}
	page->pair_job[page->npairs] = (int) index;
	page->pair_key[page->npairs++] = page->key;
}

/*
 * Match the keys of one SCAN page against every job and append one UNLINK
 * per job with matches (refused jobs are left alone).
 */
static bool
unlink_page(Unit *unit, ScanPage *page, redisReply *keys, char **err)
{
	int			nargs = 0;
	int		   *offset;

	page->npairs = 0;
	page->nunlinks = 0;
	for (size_t i = 0; i < keys->elements; i++)
	{
		page->key = keys->element[i];
		tc_globset_match(page->set, page->key->str, page->key->len,
						 note_match, page);
	}
	if (page->npairs == 0)
		return true;

	/* Group the pairs by job: counts, then a run of argv per job. */
	memset(page->count, 0, sizeof(int) * unit->n);
	for (int i = 0; i < page->npairs; i++)
		page->count[page->pair_job[i]]++;
	offset = palloc(sizeof(int) * unit->n);
	page->argv = repalloc(page->argv, sizeof(char *) * (page->npairs + unit->n));
	page->lens = repalloc(page->lens, sizeof(size_t) * (page->npairs + unit->n));
	for (int j = 0; j < unit->n; j++)
	{
		offset[j] = nargs;
		if (page->count[j] == 0)
			continue;
		page->argv[nargs] = "UNLINK";
		page->lens[nargs] = 6;
		nargs += page->count[j] + 1;
		page->count[j] = 1;		/* next free slot after "UNLINK" */
	}
	for (int i = 0; i < page->npairs; i++)
	{
		int			j = page->pair_job[i];
		int			slot = offset[j] + page->count[j]++;

		page->argv[slot] = page->pair_key[i]->str;
		page->lens[slot] = page->pair_key[i]->len;
	}
	for (int j = 0; j < unit->n; j++)
	{
		if (page->count[j] == 0 || unit->jobs[j]->done)
			continue;
		if (!tc_redis_append_argv(page->count[j], page->argv + offset[j],
								  page->lens + offset[j]))
		{
			pfree(offset);
			tc_redis_protocol_error("could not format Redis UNLINK", err);
			return false;
		}
		page->unlink_job[page->nunlinks++] = j;
	}
	pfree(offset);
	return true;
}

/* The MATCH of the unit's SCAN; NULL when every key must be looked at. */
static char *
scan_match(Unit *unit, const TcGlobSet *set, size_t *len)
{
	const char *common;
	size_t		clen;
	char	   *match;

	if (unit->n == 1)
	{
		*len = strlen(unit->jobs[0]->glob);
		return pstrdup(unit->jobs[0]->glob);
	}
	common = tc_globset_common_prefix(set, &clen);
	if (clen == 0)
		return NULL;
	match = palloc(tc_glob_escaped_len(common, clen) + 2);
	*len = tc_glob_escape(match, common, clen);
	match[(*len)++] = '*';
	match[*len] = '\0';
	return match;
}

static bool
apply_scan(Unit *unit)
{
	const char **globs = palloc(sizeof(char *) * unit->n);
	size_t	   *glens = palloc(sizeof(size_t) * unit->n);
	ScanPage	page;
	char	   *match;
	size_t		matchlen = 0;
	char		cursor[TC_MAX_CURSOR_LEN] = "0";
	bool		more = true;
	redisReply **replies = palloc(sizeof(redisReply *) * (unit->n + 1));
	char	   *err = NULL;

	for (int i = 0; i < unit->n; i++)
	{
		globs[i] = unit->jobs[i]->glob;
		glens[i] = strlen(globs[i]);
	}
	memset(&page, 0, sizeof(page));
	page.set = tc_globset_build(globs, glens, unit->n, set_alloc, set_free);
	page.cap = 1024;
	page.pair_job = palloc(sizeof(int) * page.cap);
	page.pair_key = palloc(sizeof(redisReply *) * page.cap);
	page.count = palloc(sizeof(int) * unit->n);
	page.unlink_job = palloc(sizeof(int) * unit->n);
	page.argv = palloc(sizeof(char *));
	page.lens = palloc(sizeof(size_t));
	match = scan_match(unit, page.set, &matchlen);

	if (!tc_redis_append_scan(cursor, match, matchlen))
	{
		tc_redis_protocol_error("could not format Redis SCAN", &err);
		return unit_io_error(unit, err);
	}
	while (more || page.nunlinks > 0)
	{
		int			nreplies = page.nunlinks + (more ? 1 : 0);
		redisReply *scan;
		int			nunlinks = page.nunlinks;

		if (tc_redis_exchange(nreplies, replies, &err) != TC_REDIS_OK)
			return unit_io_error(unit, err);
		page.nunlinks = 0;
		for (int i = 0; i < nunlinks; i++)
			if (!take_unlink_reply(unit->jobs[page.unlink_job[i]], replies[i], &err))
			{
				for (int j = i + 1; j < nreplies; j++)
					freeReplyObject(replies[j]);
				return unit_io_error(unit, err);
			}
		if (!more)
			break;
		scan = replies[nunlinks];
		if (tc_redis_error_reply(scan, "Redis SCAN failed", &err))
		{
			freeReplyObject(scan);
			finish_rest(unit, TC_REDIS_ERROR_REPLY, err);
			return true;
		}
		if (!tc_redis_valid_scan_reply(scan) ||
			scan->element[0]->len >= TC_MAX_CURSOR_LEN)
		{
			freeReplyObject(scan);
			tc_redis_protocol_error("unexpected reply to Redis SCAN", &err);
			return unit_io_error(unit, err);
		}
		memcpy(cursor, scan->element[0]->str, scan->element[0]->len);
		cursor[scan->element[0]->len] = '\0';
		more = strcmp(cursor, "0") != 0;
		/* hiredis copies the arguments: the reply can go after this. */
		if (!unlink_page(unit, &page, scan->element[1], &err) ||
			(more && !tc_redis_append_scan(cursor, match, matchlen)))
		{
			freeReplyObject(scan);
			if (err == NULL)
				tc_redis_protocol_error("could not format Redis SCAN", &err);
			return unit_io_error(unit, err);
		}
		freeReplyObject(scan);
	}
	/* A full iteration, from cursor 0 back to 0, started after the globs. */
	finish_rest(unit, TC_REDIS_OK, NULL);
	tc_globset_destroy((TcGlobSet *) page.set);
	return true;
}

static bool
apply_unit(Unit *unit)
{
	return unit->literal ? apply_literal(unit) : apply_scan(unit);
}

/* Forget the outcome of a unit's jobs, to run it again. */
static void
reset_unit(Unit *unit)
{
	for (int i = 0; i < unit->n; i++)
	{
		unit->jobs[i]->done = false;
		unit->jobs[i]->deleted = 0;
		unit->jobs[i]->error = NULL;
	}
}

/* Split the jobs: the literal ones, then one unit per SCAN. */
static int
make_units(TcGlobJob *jobs, int n, Unit *units)
{
	TcGlobJob **literal = palloc(sizeof(TcGlobJob *) * n);
	TcGlobJob **scan = palloc(sizeof(TcGlobJob *) * n);
	int			nlit = 0,
				nscan = 0,
				nunits = 0;

	for (int i = 0; i < n; i++)
	{
		const char *glob = jobs[i].glob;

		jobs[i].done = false;
		jobs[i].status = TC_REDIS_OK;
		jobs[i].error = NULL;
		jobs[i].deleted = 0;
		jobs[i].literal = false;
		if (tc_glob_is_literal(glob, strlen(glob)))
			literal[nlit++] = &jobs[i];
		else
			scan[nscan++] = &jobs[i];
	}
	if (nlit > 0)
		units[nunits++] = (Unit) {literal, nlit, true};
	if (nscan > 0 && tc_merge_scans)
		units[nunits++] = (Unit) {scan, nscan, false};
	else
		for (int i = 0; i < nscan; i++)
			units[nunits++] = (Unit) {scan + i, 1, false};
	return nunits;
}

/*
 * Apply n distinct globs (see the file header).  Returns false when it
 * stopped early, after a lost connection or past time_limit_ms: jobs not
 * done are left for a later batch.  A connection that Redis or a middlebox
 * closed while it was idle fails its first command: the first unit is run
 * once more on a new connection then (not after a timeout: a hung Redis
 * would only make us wait twice).
 */
bool
tc_apply_globs(TcGlobJob *jobs, int n, int time_limit_ms)
{
	TimestampTz start = GetCurrentTimestamp();
	Unit	   *units = palloc(sizeof(Unit) * (n + 1));
	int			nunits = make_units(jobs, n, units);

	for (int u = 0; u < nunits; u++)
	{
		char	   *err = NULL;

		if (u > 0 && TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
												time_limit_ms))
			return false;
		pgstat_report_activity(STATE_RUNNING, units[u].literal ?
							   "unlinking keys in Redis" :
							   "scanning Redis keys");
		if (apply_unit(&units[u]))
			continue;
		if (u == 0 && !tc_redis_last_error_was_timeout() && tc_redis_connect(&err))
		{
			reset_unit(&units[u]);
			if (apply_unit(&units[u]))
				continue;
		}
		return false;
	}
	return true;
}
