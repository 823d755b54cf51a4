/*-------------------------------------------------------------------------
 *
 * globset.h
 *		Match one key against many Redis globs at once, at a cost per key
 *		that does not grow with the number of globs.
 *
 * Plain C99 like globmatch.h (no PostgreSQL headers), so that the
 * differential test against redis-server and the libFuzzer target in
 * test/fuzz/ link the same code as the extension.  Binary safe: patterns
 * and keys are (pointer, length) pairs.
 *
 * Every key a Redis glob matches starts with the glob's literal prefix (the
 * bytes before its first unescaped '*', '?' or '[', escapes removed).  The
 * set is a trie of those prefixes: a key walks it once, byte by byte, and
 * only the globs whose prefix the key starts with are run through
 * tc_glob_match(), so the cost per key is the key's length plus the globs
 * that share its prefix, however many globs the set holds.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TC_GLOBSET_H
#define TC_GLOBSET_H

#include <stdbool.h>
#include <stddef.h>

typedef struct TcGlobSet TcGlobSet;

/* Memory for a set: alloc may return NULL (the build then fails). */
typedef void *(*tc_globset_alloc) (size_t size);
typedef void (*tc_globset_free) (void *ptr);

/*
 * Length of the literal prefix of pattern[0..plen) with escapes removed;
 * when out is not NULL the prefix is written there (at most plen bytes, no
 * NUL added).  Every string Redis' SCAN MATCH selects with the pattern
 * starts with that prefix.
 */
extern size_t tc_glob_literal_prefix(const char *pattern, size_t plen, char *out);

/*
 * Index n patterns (not copied: they must outlive the set).  Returns NULL
 * when alloc failed.  Free the result with tc_globset_destroy().
 */
extern TcGlobSet *tc_globset_build(const char *const *patterns,
								   const size_t *lens, size_t n,
								   tc_globset_alloc alloc,
								   tc_globset_free dealloc);
extern void tc_globset_destroy(TcGlobSet *set);

/*
 * Call fn(index, arg) for every pattern of the set that matches key exactly
 * as Redis' SCAN MATCH decides (including SCAN's rule that the pattern "*"
 * selects every key, even the empty one).  Returns how many matched.
 */
extern size_t tc_globset_match(const TcGlobSet *set, const char *key,
							   size_t klen,
							   void (*fn) (size_t index, void *arg), void *arg);

/*
 * The longest common prefix of the literal prefixes of all patterns in the
 * set, with escapes removed (not NUL-terminated): every key any of them
 * matches starts with it.  Length 0 when the set is empty.
 */
extern const char *tc_globset_common_prefix(const TcGlobSet *set, size_t *len);

/* Room for a cover: TC_GLOB_COVER_SIZE(lens[0]) bytes. */
#define TC_GLOB_COVER_EXTRA 112
#define TC_GLOB_COVER_SIZE(len0) (3 * (len0) + TC_GLOB_COVER_EXTRA)

/*
 * A glob that matches every key that any of the n patterns matches (and
 * usually more), for SCAN MATCH: their common literal prefix; then, while
 * every literal prefix goes on, the byte they share or a class of the few
 * bytes they have; then the literal runs that every pattern has in the
 * same order, joined and ended by "*"; escaped.  Written to out, which
 * must hold TC_GLOB_COVER_SIZE(lens[0]) bytes (no NUL added); returns its
 * length, or 0 when it would not narrow anything (no common prefix, no
 * class and no common run: SCAN without MATCH) or when alloc failed.
 */
extern size_t tc_glob_cover(const char *const *patterns, const size_t *lens,
							size_t n, char *out, tc_globset_alloc alloc,
							tc_globset_free dealloc);

#endif							/* TC_GLOBSET_H */
