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
 *	  (tenant_cache.merge_scans).  Its MATCH is the glob itself when there
 *	  is only one, else their cover (tc_glob_cover: the common literal
 *	  prefix and the literal runs all of them share, say
 *	  "tenant:*:bu:*:dash*"), so that Redis drops most other keys itself.
 *	  Each key Redis returns is matched client-side against every glob
 *	  through the prefix trie of globset.c, whose matcher is Redis' own
 *	  (fuzzed, and compared with redis-server by test/fuzz/).  The matches
 *	  of a page are UNLINKed TC_UNLINK_KEYS keys per command whatever glob
 *	  they belong to, pipelined with the request for the next page; a
 *	  refused command removed nothing and is sent again as one command per
 *	  glob, so that a refusal fails exactly the globs Redis refuses (a key
 *	  that two globs match goes with each).  A glob is cleared only when the
 *	  iteration, started after the glob was taken, returned cursor 0: a
 *	  lost connection (a Redis restart, say) fails the unit, and the next
 *	  attempt starts again from cursor 0.  With merge_scans off each glob
 *	  gets its own SCAN MATCH glob iteration.
 *
 * In a Redis Cluster (tenant_cache.redis_mode = cluster) each literal key
 * goes to the master owning its slot, and the merged SCAN iteration runs on
 * every master, a glob being cleared once all have completed; UNLINKs hold
 * one key each (keys of different slots draw CROSSSLOT), MOVED and ASK are
 * followed inside redis.c, and a SCAN pass during which slots moved does
 * not count (cluster_unstable).
 *
 * Outcomes: an error reply to a glob's UNLINK fails that glob only; an
 * error reply to SCAN fails the globs of that SCAN; a lost connection or a
 * timeout fails the globs of the unit under way and leaves later units
 * untouched; so does the time limit, checked between units (the first unit
 * always runs, so a batch always makes progress).  The deleted counts add
 * up to the keys removed, each glob credited with the keys it matched.
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

#define TC_UNLINK_KEYS		256		/* keys per UNLINK command */
#define TC_PIPELINE_CMDS	64		/* UNLINKs of literal globs per round trip */
#define TC_MAX_CURSOR_LEN	32

/*
 * Keys per UNLINK: in a cluster one, since a command whose keys hash to
 * different slots is refused (CROSSSLOT), even on one node.
 */
static inline int
unlink_keys(void)
{
	return tc_redis_mode == TC_REDIS_CLUSTER ? 1 : TC_UNLINK_KEYS;
}

/* A unit of work: some of the batch's jobs, cleared together. */
typedef struct Unit
{
	TcGlobJob **jobs;
	int			n;
	bool		literal;
} Unit;

/*
 * A merged SCAN in progress: the matches of the last page, grouped per job,
 * and the UNLINK commands sent for them (their keys point into the page's
 * reply, kept until those commands have answered).
 */
typedef struct ScanState
{
	TcGlobSet  *set;
	redisReply *key;			/* the key being matched */
	int			npairs;
	int			cap;
	int		   *pair_job;		/* (job, key) pairs of the page, ... */
	redisReply **pair_key;
	int		   *sorted_job;		/* ... grouped by job */
	redisReply **sorted_key;
	int		   *count;			/* pairs per job */
	const char **argv;			/* scratch argument vector */
	size_t	   *lens;
	int			ncmds;			/* UNLINKs in flight: pairs [from, to) */
	int		   *cmd_from;
	int		   *cmd_to;
	redisReply *page;			/* the SCAN reply their keys belong to */
} ScanState;

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

/*
 * The reply to a successful UNLINK of keys owned by owners[0..nkeys) (a key
 * a glob matched belongs to that glob): each glob is credited with its own
 * keys.  When Redis removed fewer (keys expired or removed meanwhile), the
 * count is spread over the keys in order, so the totals stay exact.
 */
static void
credit_deleted(TcGlobJob **owners, int nkeys, long long removed)
{
	for (int i = 0; i < nkeys && removed > 0; i++, removed--)
		owners[i]->deleted++;
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
	int			ncmds = (to - from + unlink_keys() - 1) / unlink_keys();
	redisReply **replies = palloc(sizeof(redisReply *) * ncmds);
	const char **argv = palloc(sizeof(char *) * (TC_UNLINK_KEYS + 1));
	size_t	   *lens = palloc(sizeof(size_t) * (TC_UNLINK_KEYS + 1));
	bool		ok = true;

	argv[0] = "UNLINK";
	lens[0] = 6;
	for (int c = 0; c < ncmds; c++)
	{
		int			first = from + c * unlink_keys();
		int			nkeys = Min(unlink_keys(), to - first);

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
		int			first = from + c * unlink_keys();
		int			last = Min(first + unlink_keys(), to);
		redisReply *r = replies[c];

		if (!ok)
			freeReplyObject(r);
		else if (r->type == REDIS_REPLY_ERROR && last - first > 1)
		{
			/* Refused as a whole: find out which keys Redis refuses. */
			freeReplyObject(r);
			ok = unlink_one_by_one(unit, first, last, keys, keylens, err);
		}
		else if (r->type == REDIS_REPLY_INTEGER)
		{
			credit_deleted(unit->jobs + first, last - first, r->integer);
			freeReplyObject(r);
		}
		else
			ok = take_unlink_reply(unit->jobs[first], r, err);
	}
	pfree(replies);
	pfree(argv);
	pfree(lens);
	return ok;
}

/*
 * Cluster: each key straight to the master owning its slot (MOVED and ASK
 * are followed by redis.c), a pipeline per master.
 */
static bool
unlink_per_node(Unit *unit, char **keys, size_t *keylens, char **err)
{
	int			nnodes = tc_redis_node_count();
	int		   *owner = palloc(sizeof(int) * unit->n);
	Unit		sub;
	char	  **subkeys = palloc(sizeof(char *) * unit->n);
	size_t	   *sublens = palloc(sizeof(size_t) * unit->n);
	int			chunk = TC_UNLINK_KEYS * TC_PIPELINE_CMDS;

	sub.jobs = palloc(sizeof(TcGlobJob *) * unit->n);
	sub.literal = true;
	for (int i = 0; i < unit->n; i++)
		owner[i] = tc_redis_key_node(keys[i], keylens[i]);
	for (int node = 0; node < nnodes; node++)
	{
		sub.n = 0;
		for (int i = 0; i < unit->n; i++)
			if (owner[i] == node)
			{
				sub.jobs[sub.n] = unit->jobs[i];
				subkeys[sub.n] = keys[i];
				sublens[sub.n++] = keylens[i];
			}
		tc_redis_select_node(node);
		for (int from = 0; from < sub.n; from += chunk)
			if (!unlink_chunk(&sub, from, Min(from + chunk, sub.n), subkeys, sublens, err))
				return false;
	}
	return true;
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
	if (tc_redis_node_count() == 1)
	{
		for (int from = 0; from < unit->n; from += chunk)
			if (!unlink_chunk(unit, from, Min(from + chunk, unit->n), keys, keylens, &err))
				return unit_io_error(unit, err);
	}
	else if (!unlink_per_node(unit, keys, keylens, &err))
		return unit_io_error(unit, err);
	finish_rest(unit, TC_REDIS_OK, NULL);
	return true;
}

/* ---- the other globs: one SCAN iteration, matched client-side ---- */

static void
note_match(size_t index, void *arg)
{
	ScanState  *st = arg;

	st->pair_job[st->npairs] = (int) index;
	st->pair_key[st->npairs++] = st->key;
}

/* Append "UNLINK" and the keys of sorted pairs [from, to); false: no memory. */
static bool
append_unlink(ScanState *st, int from, int to)
{
	st->argv[0] = "UNLINK";
	st->lens[0] = 6;
	for (int i = from; i < to; i++)
	{
		st->argv[i - from + 1] = st->sorted_key[i]->str;
		st->lens[i - from + 1] = st->sorted_key[i]->len;
	}
	return tc_redis_append_argv(to - from + 1, st->argv, st->lens);
}

/*
 * Match the keys of a SCAN page against every job and append UNLINKs for
 * the matches of jobs not refused yet: TC_UNLINK_KEYS keys per command,
 * whatever job they belong to (one command per page, usually).
 */
static bool
unlink_page(Unit *unit, ScanState *st, redisReply *page, char **err)
{
	redisReply *keys = page->element[1];
	int			next = 0;

	st->npairs = 0;
	st->ncmds = 0;
	st->page = page;
	for (size_t i = 0; i < keys->elements; i++)
	{
		st->key = keys->element[i];
		/* Room for every glob to match this key. */
		if (st->npairs + unit->n > st->cap)
		{
			st->cap = 2 * (st->npairs + unit->n);
			st->pair_job = repalloc(st->pair_job, sizeof(int) * st->cap);
			st->pair_key = repalloc(st->pair_key, sizeof(redisReply *) * st->cap);
			st->sorted_job = repalloc(st->sorted_job, sizeof(int) * st->cap);
			st->sorted_key = repalloc(st->sorted_key, sizeof(redisReply *) * st->cap);
			st->cmd_from = repalloc(st->cmd_from, sizeof(int) * (st->cap / unlink_keys() + 2));
			st->cmd_to = repalloc(st->cmd_to, sizeof(int) * (st->cap / unlink_keys() + 2));
		}
		tc_globset_match(st->set, st->key->str, st->key->len, note_match, st);
	}

	/* Group by job (counting sort), leaving out refused jobs. */
	memset(st->count, 0, sizeof(int) * (unit->n + 1));
	for (int i = 0; i < st->npairs; i++)
		if (!unit->jobs[st->pair_job[i]]->done)
			st->count[st->pair_job[i] + 1]++;
	for (int j = 0; j < unit->n; j++)
		st->count[j + 1] += st->count[j];
	for (int i = 0; i < st->npairs; i++)
	{
		int			j = st->pair_job[i];

		if (unit->jobs[j]->done)
			continue;
		st->sorted_job[st->count[j]] = j;
		st->sorted_key[st->count[j]++] = st->pair_key[i];
	}
	st->npairs = unit->n > 0 ? st->count[unit->n - 1] : 0;
	st->argv = repalloc(st->argv, sizeof(char *) * (TC_UNLINK_KEYS + 1));
	st->lens = repalloc(st->lens, sizeof(size_t) * (TC_UNLINK_KEYS + 1));
	while (next < st->npairs)
	{
		int			to = Min(next + unlink_keys(), st->npairs);

		if (!append_unlink(st, next, to))
		{
			tc_redis_protocol_error("could not format Redis UNLINK", err);
			return false;
		}
		st->cmd_from[st->ncmds] = next;
		st->cmd_to[st->ncmds++] = to;
		next = to;
	}
	return true;
}

/*
 * A combined UNLINK was refused (say ACL NOPERM on one tenant's keys): it
 * removed nothing.  Send each job's keys of it in a command of their own,
 * so that the refusal fails exactly the jobs Redis refuses.
 */
static bool
unlink_per_job(Unit *unit, ScanState *st, int from, int to, char **err)
{
	int			njobs = 0;
	int		   *jobs = palloc(sizeof(int) * (to - from));
	redisReply **replies;

	for (int i = from; i < to;)
	{
		int			j = st->sorted_job[i];
		int			end = i;

		while (end < to && st->sorted_job[end] == j)
			end++;
		if (!unit->jobs[j]->done)
		{
			if (!append_unlink(st, i, end))
			{
				tc_redis_protocol_error("could not format Redis UNLINK", err);
				return false;
			}
			jobs[njobs++] = j;
		}
		i = end;
	}
	replies = palloc(sizeof(redisReply *) * Max(njobs, 1));
	if (njobs > 0 && tc_redis_exchange(njobs, replies, err) != TC_REDIS_OK)
		return false;
	for (int k = 0; k < njobs; k++)
		if (!take_unlink_reply(unit->jobs[jobs[k]], replies[k], err))
		{
			for (int m = k + 1; m < njobs; m++)
				freeReplyObject(replies[m]);
			return false;
		}
	pfree(jobs);
	pfree(replies);
	return true;
}

/* The replies to the UNLINKs of the last page; then its reply can go. */
static bool
take_page_replies(Unit *unit, ScanState *st, redisReply **replies, char **err)
{
	bool		ok = true;

	for (int c = 0; c < st->ncmds; c++)
	{
		redisReply *r = replies[c];

		if (!ok)
			freeReplyObject(r);
		else if (r->type == REDIS_REPLY_ERROR)
		{
			freeReplyObject(r);
			ok = unlink_per_job(unit, st, st->cmd_from[c], st->cmd_to[c], err);
		}
		else if (r->type == REDIS_REPLY_INTEGER)
		{
			int			n = st->cmd_to[c] - st->cmd_from[c];
			TcGlobJob **owners = palloc(sizeof(TcGlobJob *) * n);

			for (int k = 0; k < n; k++)
				owners[k] = unit->jobs[st->sorted_job[st->cmd_from[c] + k]];
			credit_deleted(owners, n, r->integer);
			pfree(owners);
			freeReplyObject(r);
		}
		else
			ok = take_unlink_reply(unit->jobs[st->sorted_job[st->cmd_from[c]]], r, err);
	}
	st->ncmds = 0;
	if (st->page != NULL)
		freeReplyObject(st->page);
	st->page = NULL;
	return ok;
}

/*
 * The MATCH of the unit's SCAN: the glob itself when there is only one,
 * else the cover of all (globset.c); NULL when every key must be looked at.
 */
static char *
scan_match(Unit *unit, const char **globs, size_t *glens, size_t *len)
{
	char	   *match;

	if (unit->n == 1)
	{
		*len = glens[0];
		return pstrdup(globs[0]);
	}
	match = palloc(TC_GLOB_COVER_SIZE(glens[0]));
	*len = tc_glob_cover(globs, glens, unit->n, match, set_alloc, set_free);
	return *len > 0 ? match : NULL;
}

static void
init_scan_state(ScanState *st, Unit *unit, const char **globs, size_t *glens)
{
	memset(st, 0, sizeof(ScanState));
	st->set = tc_globset_build(globs, glens, unit->n, set_alloc, set_free);
	st->cap = 2048;
	st->pair_job = palloc(sizeof(int) * st->cap);
	st->pair_key = palloc(sizeof(redisReply *) * st->cap);
	st->sorted_job = palloc(sizeof(int) * st->cap);
	st->sorted_key = palloc(sizeof(redisReply *) * st->cap);
	st->cmd_from = palloc(sizeof(int) * (st->cap / unlink_keys() + 2));
	st->cmd_to = palloc(sizeof(int) * (st->cap / unlink_keys() + 2));
	st->count = palloc(sizeof(int) * (unit->n + 1));
	st->argv = palloc(sizeof(char *));
	st->lens = palloc(sizeof(size_t));
}

/* A lost connection mid-SCAN: drop the page kept for its UNLINKs. */
static bool
scan_io_error(Unit *unit, ScanState *st, const char *error)
{
	if (st->page != NULL)
		freeReplyObject(st->page);
	st->page = NULL;
	return unit_io_error(unit, error);
}

/*
 * One SCAN iteration, cursor 0 to 0, on the current node, UNLINKing the
 * matches there.  False after a lost connection (the unit's open jobs
 * failed); a refused SCAN fails the unit's open jobs and returns true.
 */
static bool
scan_node(Unit *unit, ScanState *st, const char *match, size_t matchlen)
{
	char		cursor[TC_MAX_CURSOR_LEN] = "0";
	bool		more = true;
	redisReply **replies = NULL;
	int			nalloc = 0;
	char	   *err = NULL;

	if (!tc_redis_append_scan(cursor, match, matchlen))
	{
		tc_redis_protocol_error("could not format Redis SCAN", &err);
		return unit_io_error(unit, err);
	}
	while (more || st->ncmds > 0)
	{
		int			nreplies = st->ncmds + (more ? 1 : 0);
		redisReply *scan;

		if (nreplies > nalloc)
		{
			nalloc = 2 * nreplies;
			replies = replies ? repalloc(replies, sizeof(redisReply *) * nalloc) :
				palloc(sizeof(redisReply *) * nalloc);
		}
		if (tc_redis_exchange(nreplies, replies, &err) != TC_REDIS_OK)
			return scan_io_error(unit, st, err);
		scan = more ? replies[nreplies - 1] : NULL;
		if (!take_page_replies(unit, st, replies, &err))
		{
			if (scan)
				freeReplyObject(scan);
			return unit_io_error(unit, err);
		}
		if (!more)
			break;
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
		/* The reply stays until its UNLINKs have answered. */
		if (!unlink_page(unit, st, scan, &err) ||
			(more && !tc_redis_append_scan(cursor, match, matchlen)))
		{
			if (err == NULL)
				tc_redis_protocol_error("could not format Redis SCAN", &err);
			return scan_io_error(unit, st, err);
		}
	}
	return true;
}

static bool
all_done(Unit *unit)
{
	for (int i = 0; i < unit->n; i++)
		if (!unit->jobs[i]->done)
			return false;
	return true;
}

/*
 * Cluster: a SCAN pass is complete only if no slot moved meanwhile (a key
 * migrating from a master not scanned yet to one already scanned would be
 * missed).  Compare the masters' view of the slots before and after the
 * pass; while it changes, or a migration is under way, the unit fails (its
 * entries stay queued) and the next connect reads the slot map afresh.
 */
static bool
cluster_unstable(Unit *unit, const char *before)
{
	bool		stable;
	char	   *err = NULL;
	char	   *state = tc_redis_cluster_state(&stable, &err);

	if (state == NULL)
		return !unit_io_error(unit, err);
	if (stable && (before == NULL || strcmp(before, state) == 0))
		return false;
	tc_redis_disconnect();
	unit_io_error(unit, "the Redis cluster's slots are moving (resharding or failover under way); the SCAN pass will be run again");
	return true;
}

/*
 * The merged SCAN: one iteration on Redis, or on every master of a cluster
 * (a glob is cleared once every master's iteration has completed).
 */
static bool
apply_scan(Unit *unit)
{
	const char **globs = palloc(sizeof(char *) * unit->n);
	size_t	   *glens = palloc(sizeof(size_t) * unit->n);
	ScanState	st;
	char	   *match;
	size_t		matchlen = 0;
	char	   *before = NULL;
	bool		cluster = tc_redis_mode == TC_REDIS_CLUSTER;
	int			nnodes = tc_redis_node_count();

	for (int i = 0; i < unit->n; i++)
	{
		globs[i] = unit->jobs[i]->glob;
		glens[i] = strlen(globs[i]);
	}
	if (cluster)
	{
		bool		stable;
		char	   *err = NULL;

		before = tc_redis_cluster_state(&stable, &err);
		if (before == NULL)
			return unit_io_error(unit, err);
		if (!stable && cluster_unstable(unit, NULL))
			return false;
	}
	init_scan_state(&st, unit, globs, glens);
	match = scan_match(unit, globs, glens, &matchlen);
	for (int node = 0; node < nnodes && !all_done(unit); node++)
	{
		tc_redis_select_node(node);
		if (!scan_node(unit, &st, match, matchlen))
			return false;
	}
	if (cluster && !all_done(unit) && cluster_unstable(unit, before))
		return false;
	/* Full iterations, from cursor 0 back to 0, started after the globs. */
	finish_rest(unit, TC_REDIS_OK, NULL);
	tc_globset_destroy(st.set);
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

/* Connect again at once (no backoff); the worker's loop reports failures. */
static bool
reconnect(void)
{
	char	   *err = NULL;

	if (!tc_redis_connect(&err))
		return false;
	ereport(LOG,
			(errmsg("tenant_cache worker reconnected to Redis at %s",
					tc_redis_address())));
	return true;
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
	char	   *err = NULL;

	if (!tc_redis_confirm_master() && !reconnect())
		return false;
	if (!tc_redis_refresh_slots(&err) && !reconnect())
		return false;
	for (int u = 0; u < nunits; u++)
	{
		if (u > 0 && TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
												time_limit_ms))
			return false;
		pgstat_report_activity(STATE_RUNNING, units[u].literal ?
							   "unlinking keys in Redis" :
							   "scanning Redis keys");
		if (apply_unit(&units[u]))
			continue;
		if (u == 0 && !tc_redis_last_error_was_timeout() && reconnect())
		{
			reset_unit(&units[u]);
			if (apply_unit(&units[u]))
				continue;
		}
		return false;
	}
	return true;
}
