/*-------------------------------------------------------------------------
 *
 * globmatch.h
 *		Redis glob patterns without PostgreSQL: escaping, matching, and
 *		telling literal patterns apart.
 *
 * Plain C99 (no PostgreSQL headers) so that the same code is linked into the
 * extension and into the standalone fuzz and differential tests under
 * test/fuzz/.  Every function is binary safe: strings and patterns are
 * (pointer, length) pairs, need no NUL terminator and may contain NUL bytes.
 *
 * tc_glob_match() follows Redis 7.0's stringmatchlen() (src/util.c) exactly,
 * as used by SCAN ... MATCH and KEYS; see globmatch.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TC_GLOBMATCH_H
#define TC_GLOBMATCH_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Redis gives up (reports "no match") once a pattern makes its matcher
 * recurse more than this many times, i.e. on patterns with more than about
 * a thousand '*' wildcards (CVE-2022-36021).
 */
#define TC_GLOB_MAX_NESTING 1000

/* Length of tc_glob_escape()'s output for src[0..len). */
extern size_t tc_glob_escaped_len(const char *src, size_t len);

/*
 * Write src[0..len) to dst with a backslash before each glob metacharacter
 * ('*', '?', '[', ']', '\\'), so that the result, used as a Redis pattern,
 * matches exactly the string src.  dst must hold tc_glob_escaped_len(src,
 * len) bytes; no NUL is added.  Returns the number of bytes written.
 */
extern size_t tc_glob_escape(char *dst, const char *src, size_t len);

/*
 * Does string[0..slen) match pattern[0..plen) as Redis 7.0's
 * stringmatchlen(pattern, plen, string, slen, nocase) decides?
 */
extern bool tc_glob_match(const char *pattern, size_t plen,
						  const char *string, size_t slen, bool nocase);

/*
 * True when the pattern has no unescaped wildcard ('*', '?' or '['), so that
 * (matched case-sensitively) it matches exactly one string: the pattern with
 * each escaping backslash removed.
 */
extern bool tc_glob_is_literal(const char *pattern, size_t plen);

#endif							/* TC_GLOBMATCH_H */
