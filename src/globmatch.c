/*-------------------------------------------------------------------------
 *
 * globmatch.c
 *		Redis glob patterns without PostgreSQL: escape values so that they
 *		match only themselves, match patterns exactly as Redis 7.0 does, and
 *		tell literal patterns apart.
 *
 * This file is plain C99 and includes no PostgreSQL header, so that it can
 * be linked both into the extension and into the standalone fuzz and
 * differential tests in test/fuzz/ (see test/fuzz/run.sh and
 * test/fuzz/redis_diff.sh).
 *
 * tc_glob_match() is a port of stringmatchlen_impl() / stringmatchlen() from
 * Redis 7.0's src/util.c, including the nesting limit and the
 * skipLongerMatches optimisation added by the fix for CVE-2022-36021.  The
 * port keeps Redis' logic statement for statement; the only changes are:
 *
 *	- lengths are size_t and the result is bool;
 *	- Redis relies on the pattern being an sds string, so that the byte just
 *	  past its end is a NUL; it reads that byte in four places ("pattern[1]"
 *	  after a '*', "pattern[0]" when looking for '^' after a '[' and when a
 *	  bracket class reaches the end, "*pattern" after the string is used
 *	  up).  Here those reads are replaced by length checks with the same
 *	  outcome (a NUL is none of '*', '^', '\\' and ']'), so the pattern need
 *	  not be NUL-terminated;
 *	- the fall-through from case '\\' to the default case is written out
 *	  (same_char()), so that no compiler warns about it;
 *	- tolower() is redis_tolower() below, which reproduces what glibc's
 *	  tolower() returns in the "C" locale (Redis never sets LC_CTYPE), so the
 *	  result does not depend on the locale of the process we are linked into.
 *
 * As in Redis, pattern and string bytes are compared as plain "char" values.
 * On x86-64 char is signed, so in a range such as [a-\xff] the byte 0xff is
 * -1 and sorts before 'a'; Redis on the same platform does the same.
 *
 * Portions copyright (c) 2009-2012, Salvatore Sanfilippo <antirez at gmail
 * dot com>; copyright (c) 2009-current, Redis Ltd.; copyright (c) 2012,
 * Twitter, Inc.  All rights reserved.  Used under the BSD 3-Clause licence:
 *
 * Redistribution and use in source and binary forms, with or without
 * modification, are permitted provided that the following conditions are met:
 *
 *   * Redistributions of source code must retain the above copyright notice,
 *     this list of conditions and the following disclaimer.
 *   * Redistributions in binary form must reproduce the above copyright
 *     notice, this list of conditions and the following disclaimer in the
 *     documentation and/or other materials provided with the distribution.
 *   * Neither the name of Redis nor the names of its contributors may be used
 *     to endorse or promote products derived from this software without
 *     specific prior written permission.
 *
 * THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
 * AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
 * IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
 * ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE
 * LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
 * CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
 * SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
 * INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
 * CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
 * ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
 * POSSIBILITY OF SUCH DAMAGE.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "globmatch.h"

static inline bool
is_glob_meta(char c)
{
	return c == '*' || c == '?' || c == '[' || c == ']' || c == '\\';
}

size_t
tc_glob_escaped_len(const char *src, size_t len)
{
	size_t		n = len;

	for (size_t i = 0; i < len; i++)
		if (is_glob_meta(src[i]))
			n++;
	return n;
}

size_t
tc_glob_escape(char *dst, const char *src, size_t len)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		if (is_glob_meta(src[i]))
			dst[n++] = '\\';
		dst[n++] = src[i];
	}
	return n;
}

bool
tc_glob_is_literal(const char *pattern, size_t plen)
{
	for (size_t i = 0; i < plen; i++)
	{
		switch (pattern[i])
		{
			case '*':
			case '?':
			case '[':
				return false;
			case '\\':
				/* Escapes the next byte; a trailing backslash is literal. */
				if (i + 1 < plen)
					i++;
				break;
			default:
				break;
		}
	}
	return true;
}

/*
 * glibc's tolower() in the "C" locale, which is what Redis calls: ASCII
 * letters are folded, and (because glibc's table also covers negative
 * "signed char" values) -128..-2 map to 128..254, while -1 is EOF and stays
 * -1.  This matters in nocase ranges with bytes >= 0x80: Redis folds the
 * range ends after ordering them, so with nocase [\x80-z] matches nothing.
 */
static inline int
redis_tolower(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c + ('a' - 'A');
	if (c >= -128 && c <= -2)
		return c + 256;
	return c;
}

/* The default case of Redis' matcher: one literal byte. */
static inline bool
same_char(char p, char s, bool nocase)
{
	if (!nocase)
		return p == s;
	return redis_tolower((int) p) == redis_tolower((int) s);
}

/* Redis 7.0 stringmatchlen_impl(), see the file header. */
static bool
stringmatchlen_impl(const char *pattern, size_t patternLen,
					const char *string, size_t stringLen, bool nocase,
					bool *skipLongerMatches, int nesting)
{
	/* Protection against abusive patterns. */
	if (nesting > TC_GLOB_MAX_NESTING)
		return false;

	while (patternLen && stringLen)
	{
		switch (pattern[0])
		{
			case '*':
				/* Redis: while (patternLen && pattern[1] == '*') */
				while (patternLen > 1 && pattern[1] == '*')
				{
					pattern++;
					patternLen--;
				}
				if (patternLen == 1)
					return true;	/* match */
				while (stringLen)
				{
					if (stringmatchlen_impl(pattern + 1, patternLen - 1,
											string, stringLen, nocase,
											skipLongerMatches, nesting + 1))
						return true;	/* match */
					if (*skipLongerMatches)
						return false;	/* no match */
					string++;
					stringLen--;
				}

				/*
				 * There was no match for the rest of the pattern starting from
				 * anywhere in the rest of the string.  If there were any '*'
				 * earlier in the pattern, we can terminate the search early
				 * without trying to match them to longer substrings, because a
				 * longer match for the earlier part of the pattern would
				 * require the rest of the pattern to match starting later in
				 * the string.
				 */
				*skipLongerMatches = true;
				return false;	/* no match */
			case '?':
				string++;
				stringLen--;
				break;
			case '[':
				{
					bool		negate,
								match;

					pattern++;
					patternLen--;
					negate = patternLen > 0 && pattern[0] == '^';
					if (negate)
					{
						pattern++;
						patternLen--;
					}
					match = false;
					for (;;)
					{
						/*
						 * Redis tests this third, after '\\' and ']', reading
						 * the NUL past the end of the sds pattern; testing it
						 * first gives the same result without that read.  An
						 * unterminated class stops at the end of the pattern.
						 */
						if (patternLen == 0)
						{
							pattern--;
							patternLen++;
							break;
						}
						else if (pattern[0] == '\\' && patternLen >= 2)
						{
							/* Escaped byte: compared exactly, even if nocase. */
							pattern++;
							patternLen--;
							if (pattern[0] == string[0])
								match = true;
						}
						else if (pattern[0] == ']')
						{
							break;
						}
						else if (patternLen >= 3 && pattern[1] == '-')
						{
							int			start = pattern[0];
							int			end = pattern[2];
							int			c = string[0];

							if (start > end)
							{
								int			t = start;

								start = end;
								end = t;
							}
							if (nocase)
							{
								start = redis_tolower(start);
								end = redis_tolower(end);
								c = redis_tolower(c);
							}
							pattern += 2;
							patternLen -= 2;
							if (c >= start && c <= end)
								match = true;
						}
						else
						{
							if (!nocase)
							{
								if (pattern[0] == string[0])
									match = true;
							}
							else
							{
								if (redis_tolower((int) pattern[0]) ==
									redis_tolower((int) string[0]))
									match = true;
							}
						}
						pattern++;
						patternLen--;
					}
					if (negate)
						match = !match;
					if (!match)
						return false;	/* no match */
					string++;
					stringLen--;
					break;
				}
			case '\\':
				if (patternLen >= 2)
				{
					pattern++;
					patternLen--;
				}
				/* Redis falls through to the default case here. */
				if (!same_char(pattern[0], string[0], nocase))
					return false;	/* no match */
				string++;
				stringLen--;
				break;
			default:
				if (!same_char(pattern[0], string[0], nocase))
					return false;	/* no match */
				string++;
				stringLen--;
				break;
		}
		pattern++;
		patternLen--;
		if (stringLen == 0)
		{
			/* Redis: while (*pattern == '*'), the sds NUL ending the loop */
			while (patternLen > 0 && *pattern == '*')
			{
				pattern++;
				patternLen--;
			}
			break;
		}
	}
	if (patternLen == 0 && stringLen == 0)
		return true;
	return false;
}

bool
tc_glob_match(const char *pattern, size_t plen,
			  const char *string, size_t slen, bool nocase)
{
	bool		skipLongerMatches = false;

	return stringmatchlen_impl(pattern, plen, string, slen, nocase,
							   &skipLongerMatches, 0);
}
