/*-------------------------------------------------------------------------
 *
 * globset.c
 *		A set of Redis globs indexed by literal prefix: one key is matched
 *		against all of them at a cost that does not grow with their number.
 *
 * Plain C99, no PostgreSQL header (see globset.h): the same code runs in
 * the worker and in the tests under test/fuzz/ that compare it with a real
 * redis-server and with a brute-force loop over tc_glob_match().
 *
 * The trie is built from the prefixes sorted bytewise, so its nodes are
 * created in preorder and every node's children in increasing byte order;
 * each node keeps its children in one sorted run of the edge arrays (found
 * by binary search) and the patterns whose prefix ends there in one run of
 * the pattern list.  A key walks from the root one byte at a time, testing
 * the patterns of every node it passes with tc_glob_match() on the whole
 * pattern and key (not just the rest after the prefix: Redis lets "ab*"
 * match "ab" although "*" does not match "").
 *
 * tc_glob_cover() builds the MATCH of a merged SCAN.  A key that a pattern
 * matches starts with the pattern's literal prefix and then holds each
 * literal run of the rest of the pattern (bytes between wildcards, escapes
 * removed) in order, without overlap.  So "PREFIX*R1*R2*...*", where PREFIX
 * is the prefix common to all patterns and R1, R2, ... runs that every
 * pattern has in that order (a common subsequence, with what each pattern's
 * prefix has beyond PREFIX counted as its first run), matches every key any
 * of them matches: for the globs of many tenants, "tenant:*:bu:*:dash*"
 * lets Redis drop the other patterns' keys before they cross the network.
 * Past PREFIX, while every pattern's literal prefix still has a byte, the
 * cover goes on with that byte if they all have the same, else with the
 * class of their bytes (a few classes, of a few bytes): for the globs of
 * tenants 17, 42 and 99, "tenant:[149][279]:client:*:bu:*:dash*".  Redis
 * rejects most other tenants' keys at those bytes, before the first "*"
 * makes it try every position of the key: a pass over 100,000 keys cost it
 * 10 ms instead of 16 (9 ms when every key fails at its first byte).
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "globmatch.h"
#include "globset.h"

typedef struct TcGlobNode
{
	uint32_t	first_edge;		/* children: edges [first_edge, +nedges) */
	uint32_t	nedges;
	uint32_t	first_pat;		/* patterns: pats [first_pat, +npats) */
	uint32_t	npats;
	uint32_t	chain;			/* see set_chains() */
} TcGlobNode;

struct TcGlobSet
{
	tc_globset_free dealloc;
	const char *const *patterns;
	const size_t *lens;
	size_t		npatterns;
	uint32_t	nnodes;
	TcGlobNode *nodes;
	unsigned char *edge_byte;	/* edge i leads to node edge_child[i] */
	uint32_t   *edge_child;
	unsigned char *node_byte;	/* the byte of the edge into node k */
	uint32_t   *pats;			/* pattern indexes, grouped by node */
	char	   *common;			/* common prefix of all literal prefixes */
	size_t		common_len;
	void	   *block;			/* everything above lives in this block */
};

size_t
tc_glob_literal_prefix(const char *pattern, size_t plen, char *out)
{
	size_t		n = 0;

	for (size_t i = 0; i < plen; i++)
	{
		char		c = pattern[i];

		if (c == '*' || c == '?' || c == '[')
			break;
		/* An escape makes the next byte literal; a trailing '\' is literal. */
		if (c == '\\' && i + 1 < plen)
			c = pattern[++i];
		if (out)
			out[n] = c;
		n++;
	}
	return n;
}

/* Bytewise order of the prefixes, shorter first; ties by index (stable). */
typedef struct PrefixRef
{
	const char *p;
	size_t		len;
	uint32_t	index;
} PrefixRef;

static int
prefix_cmp(const void *a, const void *b)
{
	const PrefixRef *x = a;
	const PrefixRef *y = b;
	size_t		m = x->len < y->len ? x->len : y->len;
	int			c = m ? memcmp(x->p, y->p, m) : 0;

	if (c != 0)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

static size_t
align8(size_t n)
{
	return (n + 7) & ~(size_t) 7;
}

/* One block for the set: nodes, edges, pattern list, common prefix. */
static TcGlobSet *
alloc_set(size_t maxnodes, size_t n, size_t common_len,
		  tc_globset_alloc alloc, tc_globset_free dealloc)
{
	size_t		size = align8(sizeof(TcGlobSet)) +
		align8(maxnodes * sizeof(TcGlobNode)) +
		align8(maxnodes * sizeof(uint32_t)) +
		align8(maxnodes) + align8(maxnodes) +
		align8((n ? n : 1) * sizeof(uint32_t)) + common_len + 1;
	char	   *block = alloc(size);
	TcGlobSet  *set;
	char	   *p;

	if (block == NULL)
		return NULL;
	set = (TcGlobSet *) block;
	memset(set, 0, sizeof(TcGlobSet));
	set->block = block;
	set->dealloc = dealloc;
	p = block + align8(sizeof(TcGlobSet));
	set->nodes = (TcGlobNode *) p;
	p += align8(maxnodes * sizeof(TcGlobNode));
	set->edge_child = (uint32_t *) p;
	p += align8(maxnodes * sizeof(uint32_t));
	set->edge_byte = (unsigned char *) p;
	p += align8(maxnodes);
	set->node_byte = (unsigned char *) p;
	p += align8(maxnodes);
	set->pats = (uint32_t *) p;
	p += align8((n ? n : 1) * sizeof(uint32_t));
	set->common = p;
	return set;
}

/*
 * Create the trie's nodes in preorder from the sorted prefixes: parent[k]
 * and byte[k] of each node k > 0, and the node where each prefix ends.
 */
static uint32_t
create_nodes(const PrefixRef *refs, size_t n, uint32_t *parent,
			 unsigned char *byte, uint32_t *path, uint32_t *end_node)
{
	uint32_t	nnodes = 1;
	const PrefixRef *prev = NULL;

	path[0] = 0;
	for (size_t i = 0; i < n; i++)
	{
		const PrefixRef *r = &refs[i];
		size_t		shared = 0;

		if (prev != NULL)
			while (shared < prev->len && shared < r->len &&
				   prev->p[shared] == r->p[shared])
				shared++;
		for (size_t d = shared + 1; d <= r->len; d++)
		{
			parent[nnodes] = path[d - 1];
			byte[nnodes] = (unsigned char) r->p[d - 1];
			path[d] = nnodes++;
		}
		end_node[i] = path[r->len];
		prev = r;
	}
	return nnodes;
}

/*
 * Chains: a key walks the trie a byte at a time, but most nodes of a set of
 * tenant globs have one child and no pattern ("tenant:", ":client:"), and
 * a node's first child is the next node (preorder).  So a node with one
 * child gets chain = the number of bytes down to the first node that has
 * patterns or not one child: the walk compares them in one memcmp with
 * node_byte[k + 1 ..] and jumps there.  0: take the edges.
 */
static void
set_chains(TcGlobSet *set)
{
	for (uint32_t k = set->nnodes; k-- > 0;)
	{
		TcGlobNode *node = &set->nodes[k];
		const TcGlobNode *child;

		node->chain = 0;
		if (node->nedges != 1 || set->edge_child[node->first_edge] != k + 1)
			continue;
		child = &set->nodes[k + 1];
		node->chain = 1;
		if (child->npats == 0 && child->chain > 0)
			node->chain += child->chain;
	}
}

TcGlobSet *
tc_globset_build(const char *const *patterns, const size_t *lens, size_t n,
				 tc_globset_alloc alloc, tc_globset_free dealloc)
{
	size_t		total = 0,
				maxlen = 0;
	size_t		maxnodes;
	PrefixRef  *refs;
	char	   *prefixes;
	uint32_t   *parent,
			   *path,
			   *end_node;
	unsigned char *byte;
	TcGlobSet  *set = NULL;
	size_t		off = 0;

	for (size_t i = 0; i < n; i++)
	{
		total += lens[i];
		if (lens[i] > maxlen)
			maxlen = lens[i];
	}
	maxnodes = total + 1;
	if (maxnodes >= UINT32_MAX || n >= UINT32_MAX)
		return NULL;

	refs = alloc((n ? n : 1) * sizeof(PrefixRef));
	prefixes = alloc(total ? total : 1);
	parent = alloc(maxnodes * sizeof(uint32_t));
	byte = alloc(maxnodes);
	path = alloc((maxlen + 1) * sizeof(uint32_t));
	end_node = alloc((n ? n : 1) * sizeof(uint32_t));
	if (refs && prefixes && parent && byte && path && end_node)
	{
		byte[0] = 0;			/* the root: no edge leads to it */
		for (size_t i = 0; i < n; i++)
		{
			refs[i].p = prefixes + off;
			refs[i].len = tc_glob_literal_prefix(patterns[i], lens[i], prefixes + off);
			refs[i].index = (uint32_t) i;
			off += refs[i].len;
		}
		qsort(refs, n, sizeof(PrefixRef), prefix_cmp);
		set = alloc_set(maxnodes, n, n ? refs[0].len : 0, alloc, dealloc);
	}
	if (set != NULL)
	{
		uint32_t	nnodes = create_nodes(refs, n, parent, byte, path, end_node);
		uint32_t	next_edge = 0;

		set->patterns = patterns;
		set->lens = lens;
		set->npatterns = n;
		set->nnodes = nnodes;
		/* Children of each node form one run of edges, in creation order. */
		memset(set->nodes, 0, nnodes * sizeof(TcGlobNode));
		for (uint32_t k = 1; k < nnodes; k++)
			set->nodes[parent[k]].nedges++;
		for (uint32_t k = 0; k < nnodes; k++)
		{
			set->nodes[k].first_edge = next_edge;
			next_edge += set->nodes[k].nedges;
			set->nodes[k].nedges = 0;
		}
		for (uint32_t k = 1; k < nnodes; k++)
		{
			TcGlobNode *p = &set->nodes[parent[k]];

			set->edge_byte[p->first_edge + p->nedges] = byte[k];
			set->edge_child[p->first_edge + p->nedges++] = k;
		}
		memcpy(set->node_byte, byte, nnodes);
		/* Patterns come sorted by prefix, so each node's form one run. */
		for (size_t i = 0; i < n; i++)
		{
			TcGlobNode *node = &set->nodes[end_node[i]];

			if (node->npats == 0)
				node->first_pat = (uint32_t) i;
			node->npats++;
			set->pats[i] = refs[i].index;
		}
		set_chains(set);
		/* The common prefix: shared by the first and last sorted prefix. */
		if (n > 0)
		{
			const PrefixRef *a = &refs[0];
			const PrefixRef *b = &refs[n - 1];

			while (set->common_len < a->len && set->common_len < b->len &&
				   a->p[set->common_len] == b->p[set->common_len])
				set->common_len++;
			memcpy(set->common, a->p, set->common_len);
		}
	}
	if (dealloc)
	{
		void	   *temps[] = {refs, prefixes, parent, byte, path, end_node};

		for (size_t i = 0; i < sizeof(temps) / sizeof(temps[0]); i++)
			if (temps[i] != NULL)
				dealloc(temps[i]);
	}
	return set;
}

void
tc_globset_destroy(TcGlobSet *set)
{
	if (set != NULL && set->dealloc != NULL)
		set->dealloc(set->block);
}

/* The child of node for byte c, or 0 (the root is nobody's child). */
static uint32_t
child_for(const TcGlobSet *set, const TcGlobNode *node, unsigned char c)
{
	uint32_t	lo = node->first_edge,
				hi = node->first_edge + node->nedges;

	while (lo < hi)
	{
		uint32_t	mid = lo + (hi - lo) / 2;

		if (set->edge_byte[mid] == c)
			return set->edge_child[mid];
		if (set->edge_byte[mid] < c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

size_t
tc_globset_match(const TcGlobSet *set, const char *key, size_t klen,
				 void (*fn) (size_t index, void *arg), void *arg)
{
	uint32_t	k = 0;
	size_t		d = 0,
				matched = 0;

	if (set->npatterns == 0)
		return 0;
	for (;;)
	{
		const TcGlobNode *node = &set->nodes[k];

		for (uint32_t i = node->first_pat; i < node->first_pat + node->npats; i++)
		{
			uint32_t	idx = set->pats[i];
			const char *p = set->patterns[idx];
			size_t		plen = set->lens[idx];

			/* SCAN does not run its matcher for the pattern "*". */
			if ((plen == 1 && p[0] == '*') ||
				tc_glob_match(p, plen, key, klen, false))
			{
				matched++;
				fn(idx, arg);
			}
		}
		if (d == klen || node->nedges == 0)
			break;
		if (node->chain > 0)
		{
			/* no pattern before the chain's end: a shorter key stops */
			if (klen - d < node->chain ||
				memcmp(key + d, set->node_byte + k + 1, node->chain) != 0)
				break;
			d += node->chain;
			k += node->chain;
			continue;
		}
		k = child_for(set, node, (unsigned char) key[d++]);
		if (k == 0)
			break;
	}
	return matched;
}

const char *
tc_globset_common_prefix(const TcGlobSet *set, size_t *len)
{
	*len = set->common_len;
	return set->common;
}

/* ---- the cover of a set of patterns ---- */

#define TC_COVER_MAX_RUNS 32	/* runs of a pattern considered */

typedef struct Run
{
	const char *p;				/* unescaped bytes, in the scratch buffer */
	size_t		len;
} Run;

/*
 * Step over the class that starts at pattern[*i] exactly as Redis' matcher
 * reads it (see globmatch.c): an escape takes two bytes, "x-y" is a range
 * even when y is "]", a "]" elsewhere closes it.  Leaves *i on the "]";
 * false when the class is not closed.
 */
static bool
skip_class(const char *pattern, size_t plen, size_t *i)
{
	size_t		j = *i + 1;

	if (j < plen && pattern[j] == '^')
		j++;
	for (;;)
	{
		if (j >= plen)
			return false;
		if (pattern[j] == '\\' && plen - j >= 2)
			j += 2;
		else if (pattern[j] == ']')
			break;
		else if (plen - j >= 3 && pattern[j + 1] == '-')
			j += 3;
		else
			j++;
	}
	*i = j;
	return true;
}

/*
 * The literal runs of pattern[from..plen), unescaped into *scratch (which
 * advances); at most TC_COVER_MAX_RUNS, fewer is still sound.
 */
static int
pattern_runs(const char *pattern, size_t plen, size_t from, char **scratch,
			 Run *runs, int nruns)
{
	size_t		len = 0;
	char	   *start = *scratch;

	for (size_t i = from; i <= plen && nruns < TC_COVER_MAX_RUNS; i++)
	{
		char		c = i < plen ? pattern[i] : '*';

		if (c == '*' || c == '?' || c == '[')
		{
			if (len > 0)
				runs[nruns++] = (Run) {start, len};
			start += len;
			len = 0;
			if (c == '[' && !skip_class(pattern, plen, &i))
				break;			/* unclosed: the class takes the rest */
			continue;
		}
		if (c == '\\' && i + 1 < plen)
			c = pattern[++i];
		start[len++] = c;
	}
	*scratch = start + len;
	return nruns;
}

static bool
same_run(const Run *a, const Run *b)
{
	return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* common = a longest common subsequence of common and other (by equality). */
static int
common_runs(Run *common, int ncommon, const Run *other, int nother,
			unsigned short (*dp)[TC_COVER_MAX_RUNS + 1])
{
	int			n = 0;
	Run			out[TC_COVER_MAX_RUNS];

	for (int i = ncommon; i >= 0; i--)
		for (int j = nother; j >= 0; j--)
		{
			if (i == ncommon || j == nother)
				dp[i][j] = 0;
			else if (same_run(&common[i], &other[j]))
				dp[i][j] = dp[i + 1][j + 1] + 1;
			else
				dp[i][j] = dp[i + 1][j] > dp[i][j + 1] ? dp[i + 1][j] : dp[i][j + 1];
		}
	for (int i = 0, j = 0; i < ncommon && j < nother;)
	{
		if (same_run(&common[i], &other[j]))
		{
			out[n++] = common[i];
			i++;
			j++;
		}
		else if (dp[i + 1][j] >= dp[i][j + 1])
			i++;
		else
			j++;
	}
	memcpy(common, out, n * sizeof(Run));
	return n;
}

/* Length of the pattern's bytes that make its literal prefix. */
static size_t
prefix_end(const char *pattern, size_t plen)
{
	size_t		i;

	for (i = 0; i < plen; i++)
	{
		if (pattern[i] == '*' || pattern[i] == '?' || pattern[i] == '[')
			break;
		if (pattern[i] == '\\' && i + 1 < plen)
			i++;
	}
	return i;
}

/* Runs of pattern k: its prefix beyond the common one, then its rest. */
static int
all_runs(const char *pattern, size_t plen, size_t common_len, char **scratch,
		 Run *runs)
{
	size_t		end = prefix_end(pattern, plen);
	size_t		plen_unesc = tc_glob_literal_prefix(pattern, end, *scratch);
	int			n = 0;

	if (plen_unesc > common_len)
	{
		runs[n++] = (Run) {*scratch + common_len, plen_unesc - common_len};
		*scratch += plen_unesc;
	}
	return pattern_runs(pattern, plen, end, scratch, runs, n);
}

/* Classes in a cover, and the most bytes one may have. */
#define TC_COVER_MAX_CLASSES 3
#define TC_COVER_CLASS_MAX_BYTES 8

static bool
is_alnum(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Same kind (digit, lower, upper) and next in order: a range can join them. */
static bool
next_in_range(int a, int b)
{
	return b == a + 1 && is_alnum(a) && is_alnum(b);
}

/*
 * Write the class of the bytes seen to out: "[...]", runs of three or more
 * letters or digits as ranges, other bytes escaped.  At most 2 + 2 * (bytes
 * seen) bytes.
 */
static size_t
write_class(const bool *seen, char *out)
{
	size_t		o = 0;

	out[o++] = '[';
	for (int c = 0; c < 256; c++)
	{
		int			end = c;

		if (!seen[c])
			continue;
		while (end + 1 < 256 && seen[end + 1] && next_in_range(end, end + 1))
			end++;
		if (end - c >= 2)
		{
			out[o++] = (char) c;
			out[o++] = '-';
			out[o++] = (char) end;
			c = end;
			continue;
		}
		if (!is_alnum(c))
			out[o++] = '\\';
		out[o++] = (char) c;
	}
	out[o++] = ']';
	return o;
}

/*
 * What follows the common prefix in the cover, position by position from
 * pos while every pattern's literal prefix (pfx[i], pfxlen[i] bytes, escapes
 * removed) has a byte there: that byte when they all have the same, else
 * the class of their bytes (at most TC_COVER_MAX_CLASSES classes of at most
 * TC_COVER_CLASS_MAX_BYTES bytes).  Written to out; *npos: the positions it
 * takes.  Returns its length: at most 2 x the shortest literal prefix +
 * TC_COVER_MAX_CLASSES x (2 + 2 x TC_COVER_CLASS_MAX_BYTES) bytes.
 */
static size_t
cover_positions(char *const *pfx, const size_t *pfxlen, size_t n, size_t pos,
				char *out, size_t *npos)
{
	size_t		o = 0;
	int			nclasses = 0;

	for (*npos = 0;; (*npos)++, pos++)
	{
		bool		seen[256] = {false};
		int			nseen = 0;
		unsigned char last = 0;

		for (size_t i = 0; i < n; i++)
		{
			if (pfxlen[i] <= pos)
				return o;
			last = (unsigned char) pfx[i][pos];
			if (!seen[last])
				nseen++;
			seen[last] = true;
		}
		if (nseen == 1)
			o += tc_glob_escape(out + o, (const char *) &last, 1);
		else if (nseen <= TC_COVER_CLASS_MAX_BYTES && nclasses < TC_COVER_MAX_CLASSES)
		{
			o += write_class(seen, out + o);
			nclasses++;
		}
		else
			return o;
	}
}

size_t
tc_glob_cover(const char *const *patterns, const size_t *lens, size_t n,
			  char *out, tc_globset_alloc alloc, tc_globset_free dealloc)
{
	size_t		common_len,
				total = 0,
				olen = 0,
				npos;
	char	   *scratch,
			   *first;
	char	   *pfxbuf;
	char	  **pfx;
	size_t	   *pfxlen;
	Run			common[TC_COVER_MAX_RUNS],
				other[TC_COVER_MAX_RUNS];
	int			ncommon;
	unsigned short (*dp)[TC_COVER_MAX_RUNS + 1];

	if (n == 0)
		return 0;
	for (size_t k = 0; k < n; k++)
		total += lens[k];
	scratch = alloc(2 * total + 1);
	pfxbuf = alloc(total + 1);
	pfx = alloc(n * sizeof(char *));
	pfxlen = alloc(n * sizeof(size_t));
	dp = alloc(sizeof(unsigned short) * (TC_COVER_MAX_RUNS + 1) * (TC_COVER_MAX_RUNS + 1));
	if (scratch == NULL || pfxbuf == NULL || pfx == NULL || pfxlen == NULL || dp == NULL)
		goto done;
	/* the literal prefixes, unescaped, and their common one */
	first = pfxbuf;
	for (size_t k = 0; k < n; k++)
	{
		pfx[k] = first;
		pfxlen[k] = tc_glob_literal_prefix(patterns[k], lens[k], pfx[k]);
		first += pfxlen[k];
	}
	common_len = pfxlen[0];
	for (size_t k = 1; k < n; k++)
	{
		size_t		m = 0;

		while (m < pfxlen[k] && m < common_len && pfx[k][m] == pfx[0][m])
			m++;
		common_len = m;
	}
	olen = tc_glob_escape(out, pfx[0], common_len);
	olen += cover_positions(pfx, pfxlen, n, common_len, out + olen, &npos);
	first = scratch;
	ncommon = all_runs(patterns[0], lens[0], common_len + npos, &first, common);
	for (size_t k = 1; k < n && ncommon > 0; k++)
	{
		char	   *s = first;
		int			nother = all_runs(patterns[k], lens[k], common_len + npos, &s, other);

		ncommon = common_runs(common, ncommon, other, nother, dp);
	}
	if (common_len == 0 && npos == 0 && ncommon == 0)
		olen = 0;
	else
	{
		for (int i = 0; i < ncommon; i++)
		{
			out[olen++] = '*';
			olen += tc_glob_escape(out + olen, common[i].p, common[i].len);
		}
		out[olen++] = '*';
	}
done:
	if (dealloc)
	{
		void	   *temps[] = {scratch, pfxbuf, pfx, pfxlen, dp};

		for (size_t i = 0; i < sizeof(temps) / sizeof(temps[0]); i++)
			if (temps[i] != NULL)
				dealloc(temps[i]);
	}
	return olen;
}
