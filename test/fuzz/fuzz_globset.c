/*
 * fuzz_globset.c
 *		libFuzzer target for src/globset.c: matching a key against a set of
 *		globs through the prefix trie must select exactly the globs that a
 *		brute-force loop over tc_glob_match() selects (with SCAN's rule that
 *		"*" selects everything), whatever the globs and keys.
 *
 * Input: patterns separated by '\n', then an empty line, then keys
 * separated by '\n' (any other byte, NUL included, is part of a pattern or
 * key).  At most MAX_ITEMS of each.  Checks, aborting on violation:
 *   (a) tc_globset_match() reports exactly the patterns the brute force
 *       selects, each once;
 *   (b) every matched key starts with that pattern's literal prefix
 *       (tc_glob_literal_prefix) and with the set's common prefix;
 *   (c) the set's common prefix is a prefix of every literal prefix;
 *   (d) tc_glob_cover() of the patterns matches every key that one of them
 *       matches (its length 0 means: no MATCH, every key).
 * Every buffer is an exactly sized heap copy, so AddressSanitizer sees
 * over-reads; the set's memory is checked for leaks.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "globmatch.h"
#include "globset.h"

#define MAX_ITEMS 64
#define MAX_ITEM_LEN 512

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct
{
	char	   *p[MAX_ITEMS];
	size_t		len[MAX_ITEMS];
	size_t		n;
} Items;

static void
fail(const char *what, const char *pat, size_t plen, const char *key, size_t klen)
{
	fprintf(stderr, "\nPROPERTY VIOLATED: %s\n  pattern (%zu bytes): \"", what, plen);
	for (size_t i = 0; pat && i < plen && i < 200; i++)
		fprintf(stderr, "\\x%02x", (unsigned char) pat[i]);
	fprintf(stderr, "\"\n  key (%zu bytes): \"", klen);
	for (size_t i = 0; key && i < klen && i < 200; i++)
		fprintf(stderr, "\\x%02x", (unsigned char) key[i]);
	fprintf(stderr, "\"\n");
	abort();
}

static void
add_item(Items *items, const uint8_t *p, size_t len)
{
	if (items->n >= MAX_ITEMS)
		return;
	if (len > MAX_ITEM_LEN)
		len = MAX_ITEM_LEN;
	items->p[items->n] = malloc(len ? len : 1);
	if (items->p[items->n] == NULL)
		abort();
	if (len)
		memcpy(items->p[items->n], p, len);
	items->len[items->n++] = len;
}

static void
free_items(Items *items)
{
	for (size_t i = 0; i < items->n; i++)
		free(items->p[i]);
}

typedef struct
{
	unsigned	seen[MAX_ITEMS];
} Hits;

static void
note_hit(size_t index, void *arg)
{
	((Hits *) arg)->seen[index]++;
}

static bool
starts_with(const char *s, size_t slen, const char *prefix, size_t plen)
{
	return slen >= plen && (plen == 0 || memcmp(s, prefix, plen) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Items		pats = {0},
				keys = {0};
	bool		in_keys = false;
	size_t		start = 0;
	TcGlobSet  *set;
	const char *common;
	size_t		common_len;

	for (size_t i = 0; i <= size; i++)
	{
		if (i < size && data[i] != '\n')
			continue;
		if (!in_keys && i == start && i < size)
			in_keys = true;		/* the empty line */
		else
			add_item(in_keys ? &keys : &pats, data + start, i - start);
		start = i + 1;
	}

	set = tc_globset_build((const char *const *) pats.p, pats.len, pats.n,
						   malloc, free);
	if (set == NULL)
		abort();
	common = tc_globset_common_prefix(set, &common_len);
	for (size_t i = 0; i < pats.n; i++)
	{
		char	   *prefix = malloc(pats.len[i] ? pats.len[i] : 1);
		size_t		plen = tc_glob_literal_prefix(pats.p[i], pats.len[i], prefix);

		if (!starts_with(prefix, plen, common, common_len))
			fail("common prefix is not a prefix of a literal prefix",
				 pats.p[i], pats.len[i], NULL, 0);
		for (size_t k = 0; k < keys.n; k++)
			if (tc_glob_match(pats.p[i], pats.len[i], keys.p[k], keys.len[k], false) &&
				!starts_with(keys.p[k], keys.len[k], prefix, plen))
				fail("a matched key lacks the literal prefix",
					 pats.p[i], pats.len[i], keys.p[k], keys.len[k]);
		free(prefix);
	}
	if (pats.n > 0)
	{
		size_t		cap = TC_GLOB_COVER_SIZE(pats.len[0]);
		char	   *cover = malloc(cap);
		size_t		clen;

		if (cover == NULL)
			abort();
		clen = tc_glob_cover((const char *const *) pats.p, pats.len, pats.n,
							 cover, malloc, free);
		if (clen > cap)
			fail("cover overflows its buffer", cover, clen, NULL, 0);
		for (size_t k = 0; k < keys.n && clen > 0; k++)
			for (size_t i = 0; i < pats.n; i++)
			{
				bool		m = (pats.len[i] == 1 && pats.p[i][0] == '*') ||
					tc_glob_match(pats.p[i], pats.len[i], keys.p[k], keys.len[k], false);

				if (m && !tc_glob_match(cover, clen, keys.p[k], keys.len[k], false))
					fail("the cover misses a key that a pattern matches",
						 cover, clen, keys.p[k], keys.len[k]);
			}
		free(cover);
	}
	for (size_t k = 0; k < keys.n; k++)
	{
		Hits		hits = {{0}};
		size_t		count = tc_globset_match(set, keys.p[k], keys.len[k], note_hit, &hits);
		size_t		expected = 0;

		for (size_t i = 0; i < pats.n; i++)
		{
			bool		want = (pats.len[i] == 1 && pats.p[i][0] == '*') ||
				tc_glob_match(pats.p[i], pats.len[i], keys.p[k], keys.len[k], false);

			expected += want;
			if (hits.seen[i] != (unsigned) want)
				fail(want ? "the set missed a matching pattern" :
					 "the set reported a pattern that does not match (or twice)",
					 pats.p[i], pats.len[i], keys.p[k], keys.len[k]);
			if (want && !starts_with(keys.p[k], keys.len[k], common, common_len))
				fail("a matched key lacks the common prefix",
					 pats.p[i], pats.len[i], keys.p[k], keys.len[k]);
		}
		if (count != expected)
			fail("wrong match count", NULL, 0, keys.p[k], keys.len[k]);
	}
	tc_globset_destroy(set);
	free_items(&pats);
	free_items(&keys);
	return 0;
}
