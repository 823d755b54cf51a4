/*
 * fuzz_glob_escape.c
 *		libFuzzer target for src/globmatch.c: a value escaped with
 *		tc_glob_escape() must, as a Redis glob, match that value and nothing
 *		else.
 *
 * Built twice by test/fuzz/run.sh:
 *
 *   fuzz_glob_escape (default)
 *     v = input up to the first NUL (at most MAX_VALUE_LEN bytes), s = the
 *     bytes after it up to the next NUL.  Checks, aborting on violation:
 *       (a) tc_glob_match(escape(v), v) (also with nocase);
 *       (b) s != v  =>  !tc_glob_match(escape(v), s);
 *       (c) no mutation of v (a byte changed, appended, removed, or a glob
 *           metacharacter inserted) that differs from v is matched;
 *       (d) tc_glob_is_literal(escape(v)), and escape/escaped_len agree;
 *     and, using v itself as a pattern: when tc_glob_is_literal(v), v
 *     matches its unescaped form and nothing else tried above; in any case
 *     tc_glob_match(v, s) must not crash or read out of bounds (every buffer
 *     is an exactly sized heap copy, so AddressSanitizer sees over-reads).
 *
 *   fuzz_tenant_glob (-DTC_FUZZ_TENANT)
 *     Builds the glob the extension builds for one tenant,
 *         "tenant:" + escape(v) + ":client:*",
 *     and checks that it matches "tenant:" + v + ":client:x" and never
 *     "tenant:" + w + ":client:" + tail for w != v.  This only holds when
 *     neither v nor w contains ':' (otherwise v = "a", w = "a:client:b" is a
 *     counterexample), the separator rule the extension enforces; ':' bytes
 *     are therefore dropped from v and w here (the tail keeps them).
 *
 * LLVMFuzzerInitialize() also runs a table of fixed matcher cases, so a
 * regression in tc_glob_match() fails at once.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "globmatch.h"

#define MAX_VALUE_LEN	12288	/* cap on v, s, w and tail */
#define MAX_RAW_PATTERN	4096	/* cap on v used as an arbitrary pattern */

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
show(const char *label, const char *p, size_t len)
{
	fprintf(stderr, "  %s (%zu bytes): \"", label, len);
	for (size_t i = 0; i < len && i < 200; i++)
	{
		unsigned char c = (unsigned char) p[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			fputc(c, stderr);
		else
			fprintf(stderr, "\\x%02x", c);
	}
	fprintf(stderr, "%s\"\n", len > 200 ? "..." : "");
}

static void
fail(const char *what, const char *pat, size_t plen, const char *str, size_t slen)
{
	fprintf(stderr, "\nPROPERTY VIOLATED: %s\n", what);
	if (pat)
		show("pattern", pat, plen);
	if (str)
		show("string", str, slen);
	abort();
}

/* Exactly sized heap copy (at least 1 byte allocated, never read past len). */
static char *
dup_exact(const char *src, size_t len)
{
	char	   *p = malloc(len ? len : 1);

	if (p == NULL)
		abort();
	if (len)
		memcpy(p, src, len);
	return p;
}

static bool
same(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Match with an exactly sized copy of the string, so over-reads are caught. */
static bool
match_copy(const char *pat, size_t plen, const char *str, size_t slen, bool nocase)
{
	char	   *s = dup_exact(str, slen);
	bool		r = tc_glob_match(pat, plen, s, slen, nocase);

	free(s);
	return r;
}

/* Slice the input at NUL bytes: the next field, at most MAX_VALUE_LEN bytes. */
static void
next_field(const uint8_t **data, size_t *size, const char **field, size_t *flen)
{
	const uint8_t *nul = memchr(*data, 0, *size);
	size_t		len = nul ? (size_t) (nul - *data) : *size;

	*field = (const char *) *data;
	*flen = len > MAX_VALUE_LEN ? MAX_VALUE_LEN : len;
	*data += nul ? len + 1 : len;
	*size -= nul ? len + 1 : len;
}

/* A few positions in [0, len) worth mutating, derived from the input. */
static size_t
pick_positions(size_t len, uint64_t seed, size_t *pos, size_t max)
{
	size_t		n = 0;

	if (len == 0)
		return 0;
	pos[n++] = 0;
	pos[n++] = len - 1;
	pos[n++] = len / 2;
	while (n < max)
	{
		seed ^= seed >> 12;
		seed ^= seed << 25;
		seed ^= seed >> 27;
		pos[n++] = (size_t) ((seed * 2685821657736338717ULL) % len);
	}
	return n;
}

static uint64_t
hash_bytes(const uint8_t *p, size_t len)
{
	uint64_t	h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h | 1;
}

/*
 * Call check(ctx, m, mlen) for mutations of v that differ from v: a byte
 * changed, a byte appended, a byte removed, a metacharacter inserted.
 * Mutated bytes are never NUL when nonul (values cannot hold NUL) and never
 * ':' when nocolon.
 */
typedef void (*mutation_check) (void *ctx, const char *m, size_t mlen);

static void
for_each_mutation(const char *v, size_t vlen, uint64_t seed, bool nocolon,
				  mutation_check check, void *ctx)
{
	static const char inserts[] = {'*', '?', '[', ']', '\\', '^', '-', 'a', 'A', (char) 0xff};
	size_t		pos[8];

	/*
	 * Long values: only the first, middle and last byte, so that a 12 kB
	 * input costs a few dozen copies rather than a few hundred.
	 */
	size_t		npos = pick_positions(vlen, seed, pos, vlen > 1024 ? 3 : 8);
	char	   *m = malloc(vlen + 1);

	if (m == NULL)
		abort();

	for (size_t k = 0; k < npos; k++)
	{
		size_t		i = pos[k];
		char		repl[] = {(char) (v[i] ^ 1), (char) (v[i] + 1), (char) (v[i] ^ 0x20),
		'*', '?', '\\', '[', ']'};

		/* one byte changed */
		for (size_t r = 0; r < sizeof(repl); r++)
		{
			if (repl[r] == v[i] || repl[r] == '\0' || (nocolon && repl[r] == ':'))
				continue;
			memcpy(m, v, vlen);
			m[i] = repl[r];
			check(ctx, m, vlen);
		}
		/* one byte removed */
		memcpy(m, v, i);
		memcpy(m + i, v + i + 1, vlen - i - 1);
		check(ctx, m, vlen - 1);
	}
	/* one byte appended, or a metacharacter inserted (also at the end) */
	for (size_t k = 0; k <= npos; k++)
	{
		size_t		i = k < npos ? pos[k] : vlen;

		for (size_t r = 0; r < sizeof(inserts); r++)
		{
			memcpy(m, v, i);
			m[i] = inserts[r];
			memcpy(m + i + 1, v + i, vlen - i);
			check(ctx, m, vlen + 1);
		}
	}
	free(m);
}

/* ---- fixed cases, run once at start-up ---- */

typedef struct
{
	const char *pattern;
	const char *string;
	bool		nocase;
	bool		expect;
} fixed_case;

static const fixed_case fixed_cases[] = {
	/* the examples of the Redis KEYS documentation */
	{"h?llo", "hello", false, true},
	{"h?llo", "hllo", false, false},
	{"h*llo", "hllo", false, true},
	{"h*llo", "heeeello", false, true},
	{"h[ae]llo", "hallo", false, true},
	{"h[ae]llo", "hillo", false, false},
	{"h[^e]llo", "hallo", false, true},
	{"h[^e]llo", "hello", false, false},
	{"h[a-b]llo", "hbllo", false, true},
	{"h[a-b]llo", "hcllo", false, false},
	/* escapes */
	{"a\\*b", "a*b", false, true},
	{"a\\*b", "axb", false, false},
	{"a\\", "a\\", false, true},		/* trailing backslash is literal */
	{"[\\]]", "]", false, true},
	{"[\\", "\\", false, true},		/* unterminated, trailing backslash */
	/* classes */
	{"[z-a]", "m", false, true},		/* reversed range is swapped */
	{"[a-]", "]", false, true},		/* "a-]" is a range 0x5d..0x61 */
	{"[a-]", "-", false, false},
	{"[abc", "b", false, true},		/* unterminated class */
	{"[abc", "bc", false, false},
	{"[", "[", false, false},
	{"[]", "]", false, false},
	{"[]]", "]", false, false},		/* class is empty, then literal ']' */
	{"[]]", "x]", false, false},
	{"[^", "^", false, true},			/* negated empty class: any byte */
	{"[^", "", false, false},
	{"*", "", false, false},			/* the loop never runs: no match */
	{"", "", false, true},
	{"a*", "a", false, true},
	{"a**", "a", false, true},
	{"?", "", false, false},
	/* nocase */
	{"HELLO", "hello", true, true},
	{"[A-C]x", "bX", true, true},
	{"[\\A]", "a", true, false},		/* escaped class member: exact */
	{NULL, NULL, false, false}
};

static void
run_fixed_cases(void)
{
	for (const fixed_case *c = fixed_cases; c->pattern; c++)
	{
		size_t		plen = strlen(c->pattern);
		char	   *p = dup_exact(c->pattern, plen);

		if (match_copy(p, plen, c->string, strlen(c->string), c->nocase) != c->expect)
			fail(c->expect ? "fixed case should match" : "fixed case should not match",
				 p, plen, c->string, strlen(c->string));
		free(p);
	}

	/*
	 * CVE-2022-36021 nesting limit: (a*)^n against "a"^1200 matches for n = 1000
	 * (the deepest call has nesting 1000) and never for n = 1001.
	 */
	{
		size_t		n = 1200;
		char	   *s = malloc(n);
		char	   *p = malloc(2 * n);

		if (!s || !p)
			abort();
		memset(s, 'a', n);
		for (size_t i = 0; i < n; i++)
		{
			p[2 * i] = '*';
			p[2 * i + 1] = 'a';
		}
		if (!tc_glob_match(p, 2 * 1000, s, n, false))
			fail("1000 nested '*' should still match", NULL, 0, NULL, 0);
		if (tc_glob_match(p, 2 * 1001, s, n, false))
			fail("1001 nested '*' should hit the nesting limit", NULL, 0, NULL, 0);
		free(s);
		free(p);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	run_fixed_cases();
	return 0;
}

#ifndef TC_FUZZ_TENANT

/* ---- fuzz_glob_escape ---- */

typedef struct
{
	const char *pat;
	size_t		plen;
	const char *v;
	size_t		vlen;
	const char *what;
} literal_ctx;

static void
check_no_match(void *arg, const char *m, size_t mlen)
{
	literal_ctx *ctx = arg;

	if (same(m, mlen, ctx->v, ctx->vlen))
		return;
	if (match_copy(ctx->pat, ctx->plen, m, mlen, false))
		fail(ctx->what, ctx->pat, ctx->plen, m, mlen);
}

/* Remove escaping backslashes: the one string a literal pattern matches. */
static size_t
unescape(char *dst, const char *pat, size_t plen)
{
	size_t		n = 0;

	for (size_t i = 0; i < plen; i++)
	{
		if (pat[i] == '\\' && i + 1 < plen)
			i++;
		dst[n++] = pat[i];
	}
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t	seed = hash_bytes(data, size);
	const char *vin,
			   *sin;
	size_t		vlen,
				slen;
	char	   *v,
			   *s,
			   *esc;
	size_t		elen;
	literal_ctx ctx;

	next_field(&data, &size, &vin, &vlen);
	next_field(&data, &size, &sin, &slen);
	v = dup_exact(vin, vlen);
	s = dup_exact(sin, slen);

	/* (d) escape and its length agree; the result is a literal pattern */
	elen = tc_glob_escaped_len(v, vlen);
	esc = malloc(elen ? elen : 1);
	if (esc == NULL)
		abort();
	if (tc_glob_escape(esc, v, vlen) != elen)
		fail("tc_glob_escape() wrote a length other than tc_glob_escaped_len()",
			 esc, elen, v, vlen);
	if (!tc_glob_is_literal(esc, elen))
		fail("(d) escaped value is not a literal pattern", esc, elen, v, vlen);

	/* (a) the escaped value matches the value */
	if (!tc_glob_match(esc, elen, v, vlen, false))
		fail("(a) escaped value does not match the value", esc, elen, v, vlen);
	if (!tc_glob_match(esc, elen, v, vlen, true))
		fail("(a) escaped value does not match the value (nocase)", esc, elen, v, vlen);

	/* (b) nor any other string */
	if (!same(s, slen, v, vlen) && tc_glob_match(esc, elen, s, slen, false))
		fail("(b) escaped value matches a different string", esc, elen, s, slen);

	/* (c) nor any mutation of the value */
	ctx.pat = esc;
	ctx.plen = elen;
	ctx.v = v;
	ctx.vlen = vlen;
	ctx.what = "(c) escaped value matches a mutation of the value";
	for_each_mutation(v, vlen, seed, false, check_no_match, &ctx);

	/*
	 * v used as an arbitrary pattern: no crash or over-read; if it is
	 * literal, it matches exactly its unescaped form.
	 */
	if (vlen <= MAX_RAW_PATTERN)
	{
		(void) tc_glob_match(v, vlen, s, slen, false);
		(void) tc_glob_match(v, vlen, s, slen, true);
		if (tc_glob_is_literal(v, vlen))
		{
			char	   *u = malloc(vlen ? vlen : 1);
			size_t		ulen;

			if (u == NULL)
				abort();
			ulen = unescape(u, v, vlen);
			if (!match_copy(v, vlen, u, ulen, false))
				fail("literal pattern does not match its unescaped form", v, vlen, u, ulen);
			if (!same(s, slen, u, ulen) && tc_glob_match(v, vlen, s, slen, false))
				fail("literal pattern matches a second string", v, vlen, s, slen);
			ctx.pat = v;
			ctx.plen = vlen;
			ctx.v = u;
			ctx.vlen = ulen;
			ctx.what = "literal pattern matches a mutation of its unescaped form";
			for_each_mutation(u, ulen, seed, false, check_no_match, &ctx);
			free(u);
		}
	}

	free(esc);
	free(v);
	free(s);
	return 0;
}

#else							/* TC_FUZZ_TENANT */

/* ---- fuzz_tenant_glob ---- */

#define TENANT_PREFIX	"tenant:"
#define CLIENT_SUFFIX	":client:"

/* Copy without ':' bytes (the separator rule). */
static size_t
strip_colons(char *dst, const char *src, size_t len)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
		if (src[i] != ':')
			dst[n++] = src[i];
	return n;
}

/* "tenant:" + w + ":client:" + tail, exactly sized. */
static char *
tenant_key(const char *w, size_t wlen, const char *tail, size_t tlen, size_t *klen)
{
	size_t		pl = strlen(TENANT_PREFIX),
				sl = strlen(CLIENT_SUFFIX);
	char	   *k;

	*klen = pl + wlen + sl + tlen;
	k = malloc(*klen);
	if (k == NULL)
		abort();
	memcpy(k, TENANT_PREFIX, pl);
	if (wlen)
		memcpy(k + pl, w, wlen);
	memcpy(k + pl + wlen, CLIENT_SUFFIX, sl);
	if (tlen)
		memcpy(k + pl + wlen + sl, tail, tlen);
	return k;
}

typedef struct
{
	const char *pat;
	size_t		plen;
	const char *v;
	size_t		vlen;
	const char *tail;
	size_t		tlen;
} tenant_ctx;

static void
check_other_tenant(void *arg, const char *w, size_t wlen)
{
	tenant_ctx *ctx = arg;
	size_t		klen;
	char	   *k;

	if (same(w, wlen, ctx->v, ctx->vlen) || memchr(w, ':', wlen) != NULL)
		return;
	k = tenant_key(w, wlen, "x", 1, &klen);
	if (tc_glob_match(ctx->pat, ctx->plen, k, klen, false))
		fail("tenant glob matches another tenant's key", ctx->pat, ctx->plen, k, klen);
	free(k);
	k = tenant_key(w, wlen, ctx->tail, ctx->tlen, &klen);
	if (tc_glob_match(ctx->pat, ctx->plen, k, klen, false))
		fail("tenant glob matches another tenant's key (tail)", ctx->pat, ctx->plen, k, klen);
	free(k);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t	seed = hash_bytes(data, size);
	const char *vin,
			   *win,
			   *tin;
	size_t		vlen,
				wlen,
				tlen,
				plen,
				klen,
				n;
	char	   *v,
			   *w,
			   *tail,
			   *pat,
			   *k;
	tenant_ctx	ctx;

	next_field(&data, &size, &vin, &vlen);
	next_field(&data, &size, &win, &wlen);
	next_field(&data, &size, &tin, &tlen);

	v = malloc(vlen ? vlen : 1);
	w = malloc(wlen ? wlen : 1);
	if (v == NULL || w == NULL)
		abort();
	vlen = strip_colons(v, vin, vlen);
	wlen = strip_colons(w, win, wlen);
	tail = dup_exact(tin, tlen);

	/* the glob the extension builds: literal prefix, escaped value, "*" */
	plen = strlen(TENANT_PREFIX) + tc_glob_escaped_len(v, vlen) + strlen(CLIENT_SUFFIX) + 1;
	pat = malloc(plen);
	if (pat == NULL)
		abort();
	n = 0;
	memcpy(pat, TENANT_PREFIX, strlen(TENANT_PREFIX));
	n += strlen(TENANT_PREFIX);
	n += tc_glob_escape(pat + n, v, vlen);
	memcpy(pat + n, CLIENT_SUFFIX, strlen(CLIENT_SUFFIX));
	n += strlen(CLIENT_SUFFIX);
	pat[n++] = '*';
	if (n != plen)
		fail("tenant glob has an unexpected length", pat, n, NULL, 0);

	/* positive control: the tenant's own keys match */
	k = tenant_key(v, vlen, "x", 1, &klen);
	if (!tc_glob_match(pat, plen, k, klen, false))
		fail("tenant glob does not match the tenant's own key", pat, plen, k, klen);
	free(k);
	k = tenant_key(v, vlen, tail, tlen, &klen);
	if (tlen > 0 && !tc_glob_match(pat, plen, k, klen, false))
		fail("tenant glob does not match the tenant's own key (tail)", pat, plen, k, klen);
	free(k);

	/* other tenants' keys never match */
	ctx.pat = pat;
	ctx.plen = plen;
	ctx.v = v;
	ctx.vlen = vlen;
	ctx.tail = tail;
	ctx.tlen = tlen;
	check_other_tenant(&ctx, w, wlen);
	for_each_mutation(v, vlen, seed, true, check_other_tenant, &ctx);

	free(pat);
	free(tail);
	free(v);
	free(w);
	return 0;
}

#endif							/* TC_FUZZ_TENANT */
