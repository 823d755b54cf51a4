/*
 * redis_diff.c
 *		Differential property test of tc_glob_match() (src/globmatch.c)
 *		against a real Redis server.
 *
 * Usage: redis_diff PORT [SEED [NKEYS [NPATTERNS]]]
 *
 * Connects to 127.0.0.1:PORT (a scratch server started by redis_diff.sh:
 * the database is FLUSHALLed), loads NKEYS random binary keys plus a few
 * special ones (empty key, long keys, 1500 'a's for the nesting limit), then
 * for NPATTERNS random patterns compares the set of keys Redis returns for
 * SCAN 0 MATCH pattern COUNT 100000 (iterated to cursor 0) with the set
 * tc_glob_match() selects from all keys.
 *
 * SCAN does not call the matcher at all when the pattern is exactly "*"
 * (Redis: use_pattern = !(patlen == 1 && pat[0] == '*')), so "*" returns
 * every key including the empty one, although stringmatchlen("*", "") is
 * false.  The expected set models that rule explicitly.
 *
 * The same SCAN results then check the worker's merged-SCAN matcher
 * (src/globset.c): all the patterns put in one prefix-indexed set must
 * select, for every key, exactly the patterns whose SCAN MATCH returned
 * it; and for random subsets of the patterns, SCAN MATCH on the subset's
 * cover (tc_glob_cover(): common prefix and common literal runs, what the
 * worker sends) must return every key that any pattern of the subset
 * matches.
 *
 * A second, smaller comparison covers nocase matching, which Redis 7.0
 * exposes through COMMAND LIST FILTERBY PATTERN (stringmatchlen(..., 1)
 * against the command names, e.g. "config|get").
 *
 * Prints "matcher vs redis: N patterns x M keys, mismatches: K" (and the
 * same for the nocase part) and exits 1 when any mismatch was found, 2 on
 * errors.  Deterministic for a given SEED (default 20240601).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "globmatch.h"
#include "globset.h"

typedef struct
{
	char	   *p;
	size_t		len;
} bstr;

typedef struct
{
	bstr	   *v;
	size_t		n,
				cap;
} bstr_list;

static uint64_t rng_state;

static uint64_t
rnd(void)
{
	/* splitmix64 */
	uint64_t	z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static size_t
rnd_below(size_t n)
{
	return n ? (size_t) (rnd() % n) : 0;
}

static bool
chance(unsigned percent)
{
	return rnd_below(100) < percent;
}

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

static void
list_add(bstr_list *l, const char *p, size_t len)
{
	if (l->n == l->cap)
	{
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = realloc(l->v, l->cap * sizeof(bstr));
		if (l->v == NULL)
		{
			fprintf(stderr, "out of memory\n");
			exit(2);
		}
	}
	l->v[l->n].p = xmalloc(len);
	if (len)
		memcpy(l->v[l->n].p, p, len);
	l->v[l->n].len = len;
	l->n++;
}

static void
list_clear(bstr_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].p);
	l->n = 0;
}

static int
bstr_cmp(const void *a, const void *b)
{
	const bstr *x = a,
			   *y = b;
	size_t		m = x->len < y->len ? x->len : y->len;
	int			c = m ? memcmp(x->p, y->p, m) : 0;

	if (c)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

/* Sort and drop duplicates. */
static void
list_sort_unique(bstr_list *l)
{
	size_t		n = 0;

	if (l->n == 0)
		return;
	qsort(l->v, l->n, sizeof(bstr), bstr_cmp);
	for (size_t i = 1; i < l->n; i++)
	{
		if (bstr_cmp(&l->v[n], &l->v[i]) == 0)
			free(l->v[i].p);
		else
			l->v[++n] = l->v[i];
	}
	l->n = n + 1;
}

static void
print_bstr(FILE *f, const char *p, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len && i < 120; i++)
	{
		unsigned char c = (unsigned char) p[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			fputc(c, f);
		else
			fprintf(f, "\\x%02x", c);
	}
	fprintf(f, "%s\"", len > 120 ? "..." : "");
	if (len > 120)
		fprintf(f, " (%zu bytes)", len);
}

static redisReply *
command_argv(redisContext *c, int argc, const char **argv, const size_t *lens)
{
	redisReply *r = redisCommandArgv(c, argc, argv, lens);

	if (r == NULL)
	{
		fprintf(stderr, "redis error: %s\n", c->errstr);
		exit(2);
	}
	if (r->type == REDIS_REPLY_ERROR)
	{
		fprintf(stderr, "redis replied: %s\n", r->str);
		exit(2);
	}
	return r;
}

/* SCAN from cursor 0 to cursor 0, optionally with MATCH; keys into out. */
static void
scan_all(redisContext *c, const char *pat, size_t plen, bool match, bstr_list *out)
{
	char		cursor[32] = "0";

	list_clear(out);
	do
	{
		const char *argv[6] = {"SCAN", cursor, "COUNT", "100000", "MATCH", pat};
		size_t		lens[6] = {4, strlen(cursor), 5, 6, 5, plen};
		redisReply *r = command_argv(c, match ? 6 : 4, argv, lens);

		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
			r->element[0]->type != REDIS_REPLY_STRING ||
			r->element[1]->type != REDIS_REPLY_ARRAY ||
			r->element[0]->len >= sizeof(cursor))
		{
			fprintf(stderr, "unexpected SCAN reply\n");
			exit(2);
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len);
		cursor[r->element[0]->len] = '\0';
		for (size_t i = 0; i < r->element[1]->elements; i++)
		{
			redisReply *k = r->element[1]->element[i];

			list_add(out, k->str, k->len);
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	/* SCAN may return a key more than once. */
	list_sort_unique(out);
}

/* ---- random keys and patterns ---- */

/* The brief's alphabet, plus 'A', '}', NUL and bytes >= 0x80 (signedness). */
static const char key_alphabet[] = "ab:*?[]\\^-{0123456789" "A}" "\x80\xc8\xff";
#define KEY_ALPHABET_LEN (sizeof(key_alphabet) - 1 + 1)	/* + NUL byte */

static char
key_char(void)
{
	size_t		i = rnd_below(KEY_ALPHABET_LEN);

	return i == sizeof(key_alphabet) - 1 ? '\0' : key_alphabet[i];
}

static void
random_key(char *buf, size_t *len, size_t maxlen)
{
	size_t		n = rnd_below(maxlen + 1);

	for (size_t i = 0; i < n; i++)
		buf[i] = key_char();
	*len = n;
}

typedef struct
{
	char	   *p;
	size_t		len,
				cap;
} sbuf;

static void
sb_put(sbuf *b, const char *s, size_t n)
{
	if (b->len + n > b->cap)
	{
		while (b->len + n > b->cap)
			b->cap = b->cap ? 2 * b->cap : 256;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL)
		{
			fprintf(stderr, "out of memory\n");
			exit(2);
		}
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
sb_putc(sbuf *b, char c)
{
	sb_put(b, &c, 1);
}

/* A random class body such as "^a-\\]x", possibly unterminated. */
static void
random_class(sbuf *b, char must_contain)
{
	size_t		n = rnd_below(4);

	sb_putc(b, '[');
	if (chance(25))
		sb_putc(b, '^');
	if (must_contain && chance(50))
	{
		if (chance(30))
			sb_putc(b, '\\');
		sb_putc(b, must_contain);
	}
	for (size_t i = 0; i < n; i++)
	{
		switch (rnd_below(4))
		{
			case 0:				/* range, sometimes reversed */
				sb_putc(b, key_char());
				sb_putc(b, '-');
				sb_putc(b, key_char());
				break;
			case 1:				/* escaped byte */
				sb_putc(b, '\\');
				sb_putc(b, key_char());
				break;
			default:
				sb_putc(b, key_char());
				break;
		}
	}
	if (!chance(10))
		sb_putc(b, ']');
}

/* Pattern made of random tokens. */
static void
pattern_tokens(sbuf *b)
{
	size_t		n = rnd_below(10);

	for (size_t i = 0; i < n; i++)
	{
		switch (rnd_below(8))
		{
			case 0:
				sb_putc(b, '*');
				break;
			case 1:
				sb_putc(b, '?');
				break;
			case 2:
				random_class(b, 0);
				break;
			case 3:
				sb_putc(b, '\\');
				sb_putc(b, key_char());
				break;
			default:
				sb_putc(b, key_char());
				break;
		}
	}
	if (chance(10))
		sb_putc(b, '\\');		/* trailing backslash */
}

/* Pattern derived from a key, so that it matches it or keys like it. */
static void
pattern_from_key(sbuf *b, const bstr *k)
{
	size_t		n = k->len;

	if (n > 40 && chance(70))
		n = rnd_below(40);
	for (size_t i = 0; i < n; i++)
	{
		char		c = k->p[i];

		switch (rnd_below(12))
		{
			case 0:
				sb_putc(b, '?');
				break;
			case 1:
				sb_putc(b, '*');
				break;
			case 2:
				random_class(b, c);
				break;
			case 3:
				sb_putc(b, '\\');
				sb_putc(b, c);
				break;
			case 4:
				sb_putc(b, '*');
				sb_putc(b, c);
				break;
			default:
				if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\')
				{
					if (chance(80))
						sb_putc(b, '\\');
				}
				sb_putc(b, c);
				break;
		}
	}
	if (n < k->len || chance(20))
	{
		switch (rnd_below(5))
		{
			case 0:
				sb_putc(b, '[');	/* unterminated bracket */
				break;
			case 1:
				sb_putc(b, '\\');	/* trailing backslash */
				break;
			default:
				sb_putc(b, '*');
				break;
		}
	}
}

/* Patterns worth trying every time. */
static void
fixed_patterns(bstr_list *out)
{
	static const char *const fixed[] = {
		"", "*", "**", "?", "??", "[", "[^", "[]", "[]]", "[^]", "[^]]", "[a-]",
		"[a-]*", "[z-a]*", "[-a]*", "[--a]*", "[\\-]*", "[a-b-c]*", "\\", "\\\\",
		"a\\", "*\\", "[\\", "[\\]", "[\\]]", "*[", "*[^", "a[", "a[b", "[ab",
		"[!a]*", "[^a]*", "[a-\xff]*", "[\xff-a]*", "[\x80-\xff]*", "[\x80-a]*",
		"*\xff", "{*", "*}", "*:*", "a*b*", "*a*b*", "*?*?*", "?*?", "\\a*",
		"\\*", "\\?*", "*\\*", "[*]*", "[?]*", "[[]*", "[\\[]*", "[]-a]*",
		"[^-]*", "[0-9]*", "[9-0]*", "*[0-9]", "*[^0-9]", "a", "b", "ab",
		NULL
	};

	for (const char *const *f = fixed; *f; f++)
		list_add(out, *f, strlen(*f));
	/* a pattern holding a NUL byte */
	list_add(out, "a\0*", 3);
	list_add(out, "[\0-a]*", 6);

	/*
	 * Nesting limit (CVE-2022-36021): (*a)^n against keys of 1500 'a's
	 * matches for n <= 1000 and never for n > 1000.
	 */
	{
		static const size_t counts[] = {999, 1000, 1001, 1002, 1200};

		for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		{
			sbuf		b = {0};

			for (size_t j = 0; j < counts[i]; j++)
				sb_put(&b, "*a", 2);
			list_add(out, b.p, b.len);
			sb_putc(&b, '*');
			list_add(out, b.p, b.len);
			free(b.p);
		}
	}
}

/* ---- comparison ---- */

static void
report(const char *label, const bstr *pat, const char *what, const bstr *k,
	   size_t *shown)
{
	if ((*shown)++ >= 5)
		return;
	fprintf(stderr, "%s mismatch for pattern ", label);
	print_bstr(stderr, pat->p, pat->len);
	fprintf(stderr, ": %s ", what);
	print_bstr(stderr, k->p, k->len);
	fputc('\n', stderr);
}

/*
 * Does the sorted, unique list got (what Redis returned for pat) equal the
 * members of universe that tc_glob_match() selects?  With scan_star_rule,
 * the pattern "*" selects every key, as SCAN and KEYS do.
 */
static bool
compare(const char *label, const bstr *pat, const bstr_list *got,
		const bstr_list *universe, bool nocase, bool scan_star_rule,
		size_t *nonempty)
{
	size_t		gi = 0,
				shown = 0;
	bool		all = scan_star_rule && pat->len == 1 && pat->p[0] == '*';

	for (size_t ui = 0; ui < universe->n; ui++)
	{
		const bstr *k = &universe->v[ui];
		bool		ours = all || tc_glob_match(pat->p, pat->len, k->p, k->len, nocase);
		bool		theirs;

		for (; gi < got->n && bstr_cmp(&got->v[gi], k) < 0; gi++)
			report(label, pat, "redis returned the unknown key", &got->v[gi], &shown);
		theirs = gi < got->n && bstr_cmp(&got->v[gi], k) == 0;
		if (theirs)
			gi++;
		if (ours != theirs)
			report(label, pat, ours ? "only the matcher selects" : "only redis returns",
				   k, &shown);
	}
	for (; gi < got->n; gi++)
		report(label, pat, "redis returned the unknown key", &got->v[gi], &shown);
	if (got->n > 0)
		(*nonempty)++;
	return shown == 0;
}

/* ---- the worker's set matcher (src/globset.c) against the same results ---- */

/* Mark in row which members of universe Redis returned (got: sorted, unique). */
static void
record_row(unsigned char *row, const bstr_list *got, const bstr_list *universe)
{
	size_t		gi = 0;

	for (size_t ui = 0; ui < universe->n && gi < got->n; ui++)
	{
		while (gi < got->n && bstr_cmp(&got->v[gi], &universe->v[ui]) < 0)
			gi++;
		if (gi < got->n && bstr_cmp(&got->v[gi], &universe->v[ui]) == 0)
			row[ui] = 1;
	}
}

typedef struct
{
	unsigned char *hit;
} SetHits;

static void
set_hit(size_t index, void *arg)
{
	((SetHits *) arg)->hit[index]++;
}

/*
 * One set of all patterns: for every key, the patterns it reports must be
 * exactly those whose SCAN MATCH returned the key (matrix[p * nkeys + k]).
 */
static size_t
check_globset(const bstr_list *patterns, const bstr_list *keys,
			  const unsigned char *matrix, size_t *pairs)
{
	const char **p = xmalloc(patterns->n * sizeof(char *));
	size_t	   *lens = xmalloc(patterns->n * sizeof(size_t));
	SetHits		hits;
	size_t		mismatches = 0;
	TcGlobSet  *set;

	hits.hit = xmalloc(patterns->n);
	for (size_t i = 0; i < patterns->n; i++)
	{
		p[i] = patterns->v[i].p;
		lens[i] = patterns->v[i].len;
	}
	set = tc_globset_build(p, lens, patterns->n, malloc, free);
	if (set == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	for (size_t k = 0; k < keys->n; k++)
	{
		size_t		shown = 0;

		memset(hits.hit, 0, patterns->n);
		*pairs += tc_globset_match(set, keys->v[k].p, keys->v[k].len, set_hit, &hits);
		for (size_t i = 0; i < patterns->n; i++)
			if (hits.hit[i] != matrix[i * keys->n + k])
			{
				mismatches++;
				report("set", &patterns->v[i],
					   hits.hit[i] ? "only the set selects" : "only redis returns",
					   &keys->v[k], &shown);
			}
	}
	tc_globset_destroy(set);
	free(hits.hit);
	free(p);
	free(lens);
	return mismatches;
}

/*
 * For nsubsets random subsets of the patterns (those sharing a random key's
 * first bytes, and in every fourth subset a few random ones), the worker's SCAN MATCH on the
 * subset's escaped common prefix + "*" must return every key that a pattern
 * of the subset matched.  Returns the number of keys it missed.
 */
static size_t
check_cover(redisContext *c, const bstr_list *patterns,
					const bstr_list *keys, const unsigned char *matrix,
					size_t nsubsets, size_t *narrowed)
{
	const char **p = xmalloc(patterns->n * sizeof(char *));
	size_t	   *lens = xmalloc(patterns->n * sizeof(size_t));
	size_t	   *members = xmalloc(patterns->n * sizeof(size_t));
	size_t		missed = 0;
	bstr_list	got = {0};

	for (size_t s = 0; s < nsubsets; s++)
	{
		const bstr *seed = &keys->v[rnd_below(keys->n)];
		size_t		want = 1 + rnd_below(3);
		size_t		n = 0;
		size_t		clen;
		const char *common;
		TcGlobSet  *set;
		char	   *match;
		size_t		mlen;
		size_t		shown = 0;

		for (size_t i = 0; i < patterns->n; i++)
		{
			const bstr *pt = &patterns->v[i];
			bool		take = want <= pt->len && want <= seed->len &&
				memcmp(pt->p, seed->p, want) == 0 && chance(60);

			if (take || (s % 4 == 0 && chance(1)))
			{
				p[n] = pt->p;
				lens[n] = pt->len;
				members[n++] = i;
			}
		}
		set = tc_globset_build(p, lens, n, malloc, free);
		if (set == NULL)
		{
			fprintf(stderr, "out of memory\n");
			exit(2);
		}
		common = tc_globset_common_prefix(set, &clen);
		(void) common;
		match = xmalloc(n ? TC_GLOB_COVER_SIZE(lens[0]) : 1);
		mlen = n ? tc_glob_cover(p, lens, n, match, malloc, free) : 0;
		if (mlen > 0)
			(*narrowed)++;
		scan_all(c, match, mlen, mlen > 0, &got);
		for (size_t k = 0; k < keys->n; k++)
		{
			bool		needed = false;
			bstr		m = {match, mlen};

			for (size_t j = 0; j < n && !needed; j++)
				needed = matrix[members[j] * keys->n + k];
			if (needed && !bsearch(&keys->v[k], got.v, got.n, sizeof(bstr), bstr_cmp))
			{
				missed++;
				report("common prefix", &m, "SCAN MATCH missed", &keys->v[k], &shown);
			}
		}
		free(match);
		tc_globset_destroy(set);
	}
	list_clear(&got);
	free(got.v);
	free(p);
	free(lens);
	free(members);
	return missed;
}

int
main(int argc, char **argv)
{
	int			port;
	uint64_t	seed = 20240601;
	size_t		nkeys = 4000,
				npatterns = 400;
	redisContext *c;
	bstr_list	keys = {0},
				patterns = {0},
				got = {0},
				names = {0};
	size_t		mismatches = 0,
				nonempty = 0,
				pending = 0;
	char	   *buf = xmalloc(8192);
	unsigned char *matrix;

	if (argc < 2 || argc > 5)
	{
		fprintf(stderr, "usage: %s PORT [SEED [NKEYS [NPATTERNS]]]\n", argv[0]);
		return 2;
	}
	port = atoi(argv[1]);
	if (argc > 2)
		seed = strtoull(argv[2], NULL, 0);
	if (argc > 3)
		nkeys = strtoull(argv[3], NULL, 0);
	if (argc > 4)
		npatterns = strtoull(argv[4], NULL, 0);
	rng_state = seed;

	c = redisConnect("127.0.0.1", port);
	if (c == NULL || c->err)
	{
		fprintf(stderr, "cannot connect to 127.0.0.1:%d: %s\n", port,
				c ? c->errstr : "out of memory");
		return 2;
	}
	freeReplyObject(command_argv(c, 1, (const char *[]) {"FLUSHALL"}, NULL));

	/* keys: special ones, many short random ones, some long ones */
	{
		bstr_list	gen = {0};
		size_t		len;

		list_add(&gen, "", 0);
		memset(buf, 'a', 1500);
		list_add(&gen, buf, 1500);
		list_add(&gen, buf, 1000);
		list_add(&gen, buf, 999);
		list_add(&gen, "a\0b", 3);
		for (size_t i = 0; i < nkeys; i++)
		{
			random_key(buf, &len, 10);
			list_add(&gen, buf, len);
		}
		for (size_t i = 0; i < 40; i++)
		{
			random_key(buf, &len, 5000);
			list_add(&gen, buf, len);
		}
		for (size_t i = 0; i < gen.n; i++)
		{
			redisAppendCommand(c, "SET %b 1", gen.v[i].p, gen.v[i].len);
			if (++pending == 1000 || i + 1 == gen.n)
			{
				for (; pending > 0; pending--)
				{
					redisReply *r;

					if (redisGetReply(c, (void **) &r) != REDIS_OK || r == NULL ||
						r->type == REDIS_REPLY_ERROR)
					{
						fprintf(stderr, "SET failed\n");
						return 2;
					}
					freeReplyObject(r);
				}
			}
		}
		list_clear(&gen);
		free(gen.v);
	}
	/* what Redis holds is the universe */
	scan_all(c, NULL, 0, false, &keys);

	/* patterns: fixed ones, then random ones */
	fixed_patterns(&patterns);
	while (patterns.n < npatterns)
	{
		sbuf		b = {0};

		if (chance(35))
			pattern_tokens(&b);
		else
			pattern_from_key(&b, &keys.v[rnd_below(keys.n)]);
		list_add(&patterns, b.p ? b.p : "", b.len);
		free(b.p);
	}

	matrix = calloc(patterns.n * keys.n, 1);
	if (matrix == NULL)
	{
		fprintf(stderr, "out of memory\n");
		return 2;
	}
	for (size_t i = 0; i < patterns.n; i++)
	{
		scan_all(c, patterns.v[i].p, patterns.v[i].len, true, &got);
		if (!compare("scan", &patterns.v[i], &got, &keys, false, true, &nonempty))
			mismatches++;
		record_row(matrix + i * keys.n, &got, &keys);
	}
	printf("matcher vs redis: %zu patterns x %zu keys, mismatches: %zu "
		   "(%zu patterns matched at least one key)\n",
		   patterns.n, keys.n, mismatches, nonempty);

	/* the worker's merged-SCAN matcher, against the same SCAN results */
	{
		size_t		pairs = 0,
					narrowed = 0,
					set_mismatches = check_globset(&patterns, &keys, matrix, &pairs),
					missed = check_cover(c, &patterns, &keys, matrix, 100,
												 &narrowed);

		printf("prefix-indexed set vs redis: %zu patterns in one set x %zu keys, "
			   "mismatches: %zu (%zu key-pattern matches)\n",
			   patterns.n, keys.n, set_mismatches, pairs);
		printf("merged SCAN MATCH on the cover of a set: 100 random subsets "
			   "(%zu with a MATCH), keys missed: %zu\n", narrowed, missed);
		mismatches += set_mismatches + missed;
	}
	free(matrix);

	/* nocase, through COMMAND LIST FILTERBY PATTERN */
	{
		size_t		nc_mismatches = 0,
					nc_nonempty = 0,
					nc_patterns = 0;
		redisReply *r = command_argv(c, 2, (const char *[]) {"COMMAND", "LIST"}, NULL);

		for (size_t i = 0; i < r->elements; i++)
			list_add(&names, r->element[i]->str, r->element[i]->len);
		freeReplyObject(r);
		list_sort_unique(&names);

		list_clear(&patterns);
		{
			static const char *const nc_fixed[] = {
				"*", "CONFIG*", "Config|GET", "[A-C]*", "[a-c]*", "*[A-z]", "[Z-a]*",
				"*[_-a]*", "[\x80-z]*", "[\xc8-z]*", "[\xff-z]*", "[a-\xff]*",
				"*|[^A-Z]*", "[\\C]*", "[\\c]*", "\\C*", "?LIENT|*", "*-*", NULL
			};

			for (const char *const *f = nc_fixed; *f; f++)
				list_add(&patterns, *f, strlen(*f));
		}
		while (patterns.n < 200)
		{
			sbuf		b = {0};
			const bstr *n = &names.v[rnd_below(names.n)];
			bstr		flipped;

			/* a command name with random case, turned into a pattern */
			flipped.p = xmalloc(n->len);
			flipped.len = n->len;
			for (size_t j = 0; j < n->len; j++)
			{
				char		ch = n->p[j];

				if (ch >= 'a' && ch <= 'z' && chance(50))
					ch = (char) (ch - 'a' + 'A');
				flipped.p[j] = ch;
			}
			pattern_from_key(&b, &flipped);
			free(flipped.p);
			list_add(&patterns, b.p ? b.p : "", b.len);
			free(b.p);
		}
		for (size_t i = 0; i < patterns.n; i++)
		{
			const char *argv4[5] = {"COMMAND", "LIST", "FILTERBY", "PATTERN", patterns.v[i].p};
			size_t		lens[5] = {7, 4, 8, 7, patterns.v[i].len};

			r = command_argv(c, 5, argv4, lens);
			list_clear(&got);
			for (size_t j = 0; j < r->elements; j++)
				list_add(&got, r->element[j]->str, r->element[j]->len);
			freeReplyObject(r);
			list_sort_unique(&got);
			nc_patterns++;
			if (!compare("nocase", &patterns.v[i], &got, &names, true, false, &nc_nonempty))
				nc_mismatches++;
		}
		printf("matcher vs redis (nocase, COMMAND LIST FILTERBY PATTERN): "
			   "%zu patterns x %zu command names, mismatches: %zu "
			   "(%zu patterns matched at least one name)\n",
			   nc_patterns, names.n, nc_mismatches, nc_nonempty);
		mismatches += nc_mismatches;
	}

	freeReplyObject(command_argv(c, 1, (const char *[]) {"FLUSHALL"}, NULL));
	redisFree(c);
	list_clear(&keys);
	list_clear(&patterns);
	list_clear(&got);
	list_clear(&names);
	free(keys.v);
	free(patterns.v);
	free(got.v);
	free(names.v);
	free(buf);
	return mismatches ? 1 : 0;
}
