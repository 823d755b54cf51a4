/*-------------------------------------------------------------------------
 *
 * glob.c
 *		Parse tenant_cache.key_format and build Redis glob patterns from it.
 *
 * A key format such as "tenant:{tenant}:client:{client}:bu:{bu}:{pattern}"
 * is parsed once (in the setting's check hook) into literal parts and
 * placeholders.  Literal parts and values taken from rows are escaped so
 * that Redis' glob matcher treats them as plain characters; a missing value
 * becomes "*"; {pattern} is the administrator's pattern, a glob by design,
 * followed by "*" unless it ends in an unescaped "$" (exact).  Inside the
 * pattern, "{column}" stands for that column of the row being written,
 * escaped like the tenant values ("*" when there is no row or the value is
 * NULL).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "globmatch.h"

#include "tenant_cache.h"

typedef enum TcPartKind
{
	TC_PART_LITERAL,
	TC_PART_TENANT,
	TC_PART_CLIENT,
	TC_PART_BU,
	TC_PART_PATTERN
} TcPartKind;

typedef struct TcPart
{
	TcPartKind	kind;
	const char *text;			/* escaped literal, for TC_PART_LITERAL */
} TcPart;

struct TcKeyFormat
{
	char		separator[TC_NLEVELS];	/* first char after each value, or 0 */
	int			nparts;
	TcPart		parts[FLEXIBLE_ARRAY_MEMBER];
};

static const char *const level_names[TC_NLEVELS] = {"tenant", "client", "bu"};

static const TcKeyFormat *current_key_format = NULL;
static uint64 key_format_gen = 0;

static const struct
{
	const char *name;
	TcPartKind	kind;
}			placeholders[] =
{
	{"{tenant}", TC_PART_TENANT},
	{"{client}", TC_PART_CLIENT},
	{"{bu}", TC_PART_BU},
	{"{pattern}", TC_PART_PATTERN},
};

/* Append value with Redis glob metacharacters escaped (globmatch.c, fuzzed). */
void
tc_append_escaped(StringInfo buf, const char *value)
{
	size_t		len = strlen(value);
	size_t		need = tc_glob_escaped_len(value, len);

	enlargeStringInfo(buf, need);
	buf->len += tc_glob_escape(buf->data + buf->len, value, len);
	buf->data[buf->len] = '\0';
}

/* Length of the placeholder at s, with its kind; 0 when s starts none. */
static int
match_placeholder(const char *s, TcPartKind *kind)
{
	for (int i = 0; i < lengthof(placeholders); i++)
	{
		int			len = strlen(placeholders[i].name);

		if (strncmp(s, placeholders[i].name, len) == 0)
		{
			*kind = placeholders[i].kind;
			return len;
		}
	}
	return 0;
}

/*
 * Parse a key format.  The result is one malloc'd block (GUC "extra" data is
 * released with free()); NULL with *errmsg set when the format is invalid.
 */
TcKeyFormat *
tc_parse_key_format(const char *format, char **errmsg)
{
	int			nparts = 0;
	int			seen[TC_PART_PATTERN + 1] = {0};
	size_t		len = strlen(format);
	TcPart		parts[64];
	char		escaped[4096];
	size_t		used = 0;
	const char *p = format;
	TcKeyFormat *kf;
	char	   *text;

	if (len > 1024)
	{
		*errmsg = "The format is longer than 1024 bytes.";
		return NULL;
	}
	while (*p)
	{
		TcPartKind	kind;
		int			plen = match_placeholder(p, &kind);

		if (nparts >= lengthof(parts) - 1)
		{
			*errmsg = "The format has too many parts.";
			return NULL;
		}
		if (plen > 0)
		{
			if (seen[kind]++)
			{
				*errmsg = "A placeholder appears more than once.";
				return NULL;
			}
			parts[nparts].kind = kind;
			parts[nparts++].text = NULL;
			p += plen;
			continue;
		}
		if (*p == '{' || *p == '}')
		{
			*errmsg = "Braces may only be used in the placeholders {tenant}, {client}, {bu} and {pattern}.";
			return NULL;
		}
		/* Literal run up to the next brace, stored escaped. */
		parts[nparts].kind = TC_PART_LITERAL;
		parts[nparts++].text = (const char *) (uintptr_t) used;
		{
			size_t		run = strcspn(p, "{}");

			used += tc_glob_escape(escaped + used, p, run);
			escaped[used++] = '\0';
			p += run;
		}
	}
	if (!seen[TC_PART_TENANT] || !seen[TC_PART_PATTERN])
	{
		*errmsg = "The format must contain {tenant} and {pattern}.";
		return NULL;
	}
	for (int i = 0; i < nparts; i++)
	{
		if (parts[i].kind == TC_PART_LITERAL || parts[i].kind == TC_PART_PATTERN)
			continue;
		if (i + 1 >= nparts || parts[i + 1].kind != TC_PART_LITERAL)
		{
			*errmsg = "Each of {tenant}, {client} and {bu} must be followed by a separator, such as \":\".";
			return NULL;
		}
	}

	kf = malloc(offsetof(TcKeyFormat, parts) + nparts * sizeof(TcPart) + used);
	if (kf == NULL)
	{
		*errmsg = "Out of memory.";
		return NULL;
	}
	text = (char *) kf + offsetof(TcKeyFormat, parts) + nparts * sizeof(TcPart);
	memcpy(text, escaped, used);
	memset(kf->separator, 0, sizeof(kf->separator));
	kf->nparts = nparts;
	for (int i = 0; i < nparts; i++)
	{
		kf->parts[i].kind = parts[i].kind;
		kf->parts[i].text = parts[i].kind == TC_PART_LITERAL ?
			text + (uintptr_t) parts[i].text : NULL;
	}
	for (int i = 0; i + 1 < nparts; i++)
	{
		const char *next = kf->parts[i + 1].text;
		int			level = parts[i].kind - TC_PART_TENANT;

		/* The separator as the key has it: skip an escaping backslash. */
		if (parts[i].kind >= TC_PART_TENANT && parts[i].kind <= TC_PART_BU)
			kf->separator[level] = next[0] == '\\' ? next[1] : next[0];
	}
	return kf;
}

const TcKeyFormat *
tc_current_key_format(void)
{
	if (current_key_format == NULL)
		elog(ERROR, "tenant_cache.key_format is not set");
	return current_key_format;
}

void
tc_set_current_key_format(TcKeyFormat *kf)
{
	current_key_format = kf;
	key_format_gen++;
}

/* Changes with every new key format; lets callers drop derived state. */
uint64
tc_key_format_generation(void)
{
	return key_format_gen;
}

/*
 * Does buf (from start) end with a wildcard "*"?  Not when that "*" is
 * escaped or a member of a bracket class ("[*]"), and never after an
 * unclosed class.  Only saves a redundant "*".
 */
static bool
ends_with_wildcard(StringInfo buf, int start)
{
	bool		star = false;

	for (int i = start; i < buf->len; i++)
	{
		star = false;
		if (buf->data[i] == '\\')
			i++;
		else if (buf->data[i] == '[')
		{
			for (i++; i < buf->len && buf->data[i] != ']'; i++)
				if (buf->data[i] == '\\')
					i++;
			if (i >= buf->len)
				return false;
		}
		else if (buf->data[i] == '*')
			star = true;
	}
	return star;
}

/*
 * A value that contains the separator following its placeholder would make
 * keys ambiguous: with the default format, tenant "1" and tenant "1:client"
 * would both own keys starting "tenant:1:client:", and one's write could
 * clear the other's keys.  Values without the separator's first character
 * can never be confused (the glob fixes every character up to the next
 * separator), so that is the rule, enforced here for every glob built.
 */
static void
check_value(const TcKeyFormat *kf, int level, const char *value)
{
	char		sep = kf->separator[level];

	if (value != NULL && sep != '\0' && strchr(value, sep) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s value \"%s\" contains \"%c\", the separator that follows {%s} in tenant_cache.key_format",
						level_names[level],
						pnstrdup(value, pg_mbcliplen(value, strlen(value), 64)),
						sep, level_names[level]),
				 errdetail("Cache keys built from such a value could be matched by another %s's invalidations.",
						   level_names[level]),
				 errhint("Use %s values without \"%c\", or a key_format with another separator.",
						 level_names[level], sep)));
}

static void
append_value(StringInfo buf, const TcKeyFormat *kf, int level, const char *value)
{
	if (value == NULL)
	{
		if (!ends_with_wildcard(buf, 0))
			appendStringInfoChar(buf, '*');
		return;
	}
	check_value(kf, level, value);
	tc_append_escaped(buf, value);
}

/*
 * Append a parsed pattern: its text, each placeholder's value escaped (or
 * "*" for no value), and a final "*" unless the pattern is exact.
 */
static void
append_pattern(StringInfo buf, const TcPattern *pattern,
			   const char *const *colvals)
{
	int			start = buf->len;

	for (int i = 0; i < pattern->nparts; i++)
	{
		const TcPatternPart *part = &pattern->parts[i];
		const char *value = colvals ? colvals[part->column] : NULL;

		if (part->text != NULL)
			appendBinaryStringInfo(buf, part->text, part->len);
		else if (value != NULL)
			tc_append_escaped(buf, value);
		else if (!ends_with_wildcard(buf, start))
			appendStringInfoChar(buf, '*');
	}
	if (!pattern->exact && !ends_with_wildcard(buf, start))
		appendStringInfoChar(buf, '*');
}

/*
 * Build the glob for one pattern: values[level] is the raw value of that
 * level, or NULL for "every value"; colvals[i] the value of the i-th column
 * of the pattern's column list (NULL: every value; colvals NULL: no row).
 * Appends to buf.
 */
void
tc_build_glob(StringInfo buf, const TcKeyFormat *kf,
			  const char *const values[TC_NLEVELS], const TcPattern *pattern,
			  const char *const *colvals)
{
	for (int i = 0; i < kf->nparts; i++)
	{
		const TcPart *part = &kf->parts[i];

		switch (part->kind)
		{
			case TC_PART_LITERAL:
				appendStringInfoString(buf, part->text);
				break;
			case TC_PART_TENANT:
				append_value(buf, kf, TC_LEVEL_TENANT, values[TC_LEVEL_TENANT]);
				break;
			case TC_PART_CLIENT:
				append_value(buf, kf, TC_LEVEL_CLIENT, values[TC_LEVEL_CLIENT]);
				break;
			case TC_PART_BU:
				append_value(buf, kf, TC_LEVEL_BU, values[TC_LEVEL_BU]);
				break;
			case TC_PART_PATTERN:
				append_pattern(buf, pattern, colvals);
				break;
		}
	}
}

/*
 * Patterns are read token by token: an escape pair, a bracket class, a
 * placeholder "{name}", or one byte.  Returns the end of the token at i and
 * its kind.  Unclosed classes and placeholders are reported as such (the
 * strict check refuses them; the parser takes them as plain text).
 */
typedef enum PatToken
{
	PAT_BYTE,
	PAT_ESCAPE,
	PAT_TRAILING_BACKSLASH,
	PAT_CLASS,
	PAT_UNCLOSED_CLASS,
	PAT_PLACEHOLDER,
	PAT_BAD_PLACEHOLDER			/* "{" without "}", or "{}" or too long */
} PatToken;

static int
next_token(const char *p, int len, int i, PatToken *kind)
{
	int			j;

	switch (p[i])
	{
		case '\\':
			*kind = i + 1 < len ? PAT_ESCAPE : PAT_TRAILING_BACKSLASH;
			return Min(i + 2, len);
		case '[':
			for (j = i + 1; j < len && p[j] != ']'; j++)
				if (p[j] == '\\')
					j++;
			*kind = j < len ? PAT_CLASS : PAT_UNCLOSED_CLASS;
			return Min(j + 1, len);
		case '{':
			for (j = i + 1; j < len && p[j] != '}' && p[j] != '{'; j++)
				;
			if (j < len && p[j] == '}' && j > i + 1 && j - i - 1 < NAMEDATALEN)
			{
				*kind = PAT_PLACEHOLDER;
				return j + 1;
			}
			*kind = PAT_BAD_PLACEHOLDER;
			return i + 1;
		default:
			*kind = PAT_BYTE;
			return i + 1;
	}
}

/* Length without a final unescaped "$" (the exact marker), if there is one. */
static int
length_before_exact_marker(const char *p, int len)
{
	int			last = -1;
	PatToken	kind = PAT_BYTE;

	for (int i = 0; i < len;)
	{
		last = i;
		i = next_token(p, len, i, &kind);
	}
	if (last == len - 1 && kind == PAT_BYTE && p[last] == '$')
		return len - 1;
	return len;
}

static int
column_index(TcColumns *columns, const char *name, int len)
{
	for (int i = 0; i < columns->n; i++)
		if (strncmp(columns->names[i], name, len) == 0 &&
			columns->names[i][len] == '\0')
			return i;
	if (columns->n == 0)
		columns->names = palloc(sizeof(char *));
	else
		columns->names = repalloc(columns->names, sizeof(char *) * (columns->n + 1));
	columns->names[columns->n] = pnstrdup(name, len);
	return columns->n++;
}

/*
 * Parse a pattern (in the current memory context); its placeholders get
 * indexes into *columns, which is extended with names it lacks.  Lenient:
 * whatever tc_check_pattern() would refuse is taken as plain text.
 */
TcPattern *
tc_parse_pattern(const char *pattern, TcColumns *columns)
{
	int			len = strlen(pattern);
	int			end = length_before_exact_marker(pattern, len);
	TcPattern  *parsed = palloc(sizeof(TcPattern));
	int			lit = 0;

	parsed->exact = end < len;
	parsed->nparts = 0;
	parsed->parts = palloc(sizeof(TcPatternPart) * (end + 1));
	for (int i = 0; i < end;)
	{
		PatToken	kind;
		int			next = next_token(pattern, end, i, &kind);

		if (kind == PAT_PLACEHOLDER)
		{
			TcPatternPart *part;

			if (i > lit)
				parsed->parts[parsed->nparts++] =
					(TcPatternPart) {pattern + lit, i - lit, -1};
			part = &parsed->parts[parsed->nparts++];
			part->text = NULL;
			part->len = 0;
			part->column = column_index(columns, pattern + i + 1, next - i - 2);
			lit = next;
		}
		i = next;
	}
	if (end > lit)
		parsed->parts[parsed->nparts++] = (TcPatternPart) {pattern + lit, end - lit, -1};
	return parsed;
}

/*
 * Rules for patterns written by administrators (globs by design): not empty,
 * bounded length, a bounded number of "*" (Redis' matcher backtracks on
 * each), no unpaired trailing backslash and no unclosed "[" (either would
 * swallow the "*" that follows every pattern), placeholders "{column}"
 * closed and naming a column (at most NAMEDATALEN - 1 bytes).
 */
void
tc_check_pattern(const char *pattern)
{
	int			len = strlen(pattern);
	int			end;
	int			stars = 0;

	if (len > TC_MAX_PATTERN_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("pattern is too long"),
				 errdetail("The pattern has %d bytes; the limit is %d.",
						   len, TC_MAX_PATTERN_LEN)));
	end = length_before_exact_marker(pattern, len);
	if (end == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pattern must not be empty"),
				 len > 0 ? errdetail("A final \"$\" only marks the pattern as exact.") : 0));
	for (int i = 0; i < end;)
	{
		PatToken	kind;
		int			next = next_token(pattern, end, i, &kind);

		if (kind == PAT_TRAILING_BACKSLASH)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("pattern must not end with an unpaired backslash"),
					 errdetail("It would escape the \"*\" appended to every pattern.")));
		if (kind == PAT_UNCLOSED_CLASS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("pattern has an unclosed \"[\""),
					 errdetail("Redis would read the rest of the pattern, and the \"*\" appended to it, as one character class."),
					 errhint("Close the class with \"]\", or escape the bracket as \"\\[\".")));
		if (kind == PAT_BAD_PLACEHOLDER)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("pattern has a \"{\" that does not start a column placeholder"),
					 errdetail("\"{column}\" stands for a column of the written row; the name must be 1 to %d bytes, without braces.",
							   NAMEDATALEN - 1),
					 errhint("Close the placeholder with \"}\", or escape a literal brace as \"\\{\".")));
		if (kind == PAT_BYTE && pattern[i] == '*')
			stars++;
		i = next;
	}
	if (stars > TC_MAX_PATTERN_STARS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("pattern has too many \"*\" wildcards"),
				 errdetail("The pattern has %d; the limit is %d, because Redis' matcher backtracks on each.",
						   stars, TC_MAX_PATTERN_STARS)));
}

/*
 * Does the pattern consist of wildcards only ("*", "?*", "{id}", ...)?
 * Without a row a placeholder is "*".
 */
bool
tc_pattern_matches_everything(const TcPattern *pattern)
{
	for (int i = 0; i < pattern->nparts; i++)
	{
		const TcPatternPart *part = &pattern->parts[i];

		for (int j = 0; part->text != NULL && j < part->len; j++)
			if (part->text[j] != '*' && part->text[j] != '?')
				return false;
	}
	return true;
}

/*
 * Length of the value at glob[pos..end) of the placeholder of the given
 * level, as tc_build_glob() writes it: "*" for every value, or an escaped
 * value, which has no unescaped metacharacter and no separator; -1 when
 * there is none.  After a wildcard a missing value adds nothing (0).
 */
static int
match_value(const TcKeyFormat *kf, int level, const char *glob, int pos,
			int end)
{
	char		sep = kf->separator[level];
	int			i = pos;

	if (i < end && glob[i] == '*')
		return 1;
	while (i < end)
	{
		char		c = glob[i];
		int			toklen = 1;

		if (c == '\\' && i + 1 < end)
		{
			c = glob[i + 1];
			toklen = 2;
		}
		else if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\')
			return -1;
		if (c == sep)
			break;
		i += toklen;
	}
	return i - pos;
}

/*
 * Does glob[pos..end) have the shape of kf's parts from part on?  When it
 * does, sets the {pattern} part's span and, if spans is not NULL, the span
 * of each level's value (spans[2 * level], spans[2 * level + 1]: start and
 * length; left alone for levels the format lacks).
 */
static bool
match_parts(const TcKeyFormat *kf, int part, const char *glob, int pos,
			int end, int *pattern_start, int *pattern_len, int *spans)
{
	const TcPart *p;
	int			n;

	if (part == kf->nparts)
		return pos == end;
	p = &kf->parts[part];
	switch (p->kind)
	{
		case TC_PART_LITERAL:
			n = strlen(p->text);
			return end - pos >= n && memcmp(glob + pos, p->text, n) == 0 &&
				match_parts(kf, part + 1, glob, pos + n, end,
							pattern_start, pattern_len, spans);
		case TC_PART_TENANT:
		case TC_PART_CLIENT:
		case TC_PART_BU:
			n = match_value(kf, p->kind - TC_PART_TENANT, glob, pos, end);
			if (n < 0 || !match_parts(kf, part + 1, glob, pos + n, end,
									  pattern_start, pattern_len, spans))
				return false;
			if (spans != NULL)
			{
				spans[2 * (p->kind - TC_PART_TENANT)] = pos;
				spans[2 * (p->kind - TC_PART_TENANT) + 1] = n;
			}
			return true;
		case TC_PART_PATTERN:
			/* Longest first: at the end of the format, one try. */
			for (int e = end; e > pos; e--)
			{
				if (match_parts(kf, part + 1, glob, e, end,
								pattern_start, pattern_len, spans))
				{
					*pattern_start = pos;
					*pattern_len = e - pos;
					return true;
				}
			}
			return false;
	}
	return false;
}

/*
 * Find the {pattern} part (the pattern as written, with the "*" appended to
 * it) of a glob that tc_build_glob() built with this key format.  False when
 * the glob does not have the format's shape (say, it was queued before
 * key_format changed).  Used to attribute applied globs to patterns.
 */
bool
tc_glob_pattern_part(const TcKeyFormat *kf, const char *glob,
					 int *start, int *len)
{
	return match_parts(kf, 0, glob, 0, strlen(glob), start, len, NULL);
}

/* The value at glob[start..start+len) without its escaping backslashes. */
static char *
unescape_value(const char *glob, int start, int len)
{
	char	   *out = palloc(len + 1);
	int			n = 0;

	for (int i = start; i < start + len; i++)
	{
		if (glob[i] == '\\' && i + 1 < start + len)
			i++;
		out[n++] = glob[i];
	}
	out[n] = '\0';
	return out;
}

/*
 * Read back what tc_build_glob() put into a glob: the value of each level
 * (unescaped, palloc'd; NULL where the glob has "*" or the format has no
 * such placeholder) and the span of the {pattern} part.  False when the
 * glob does not have the format's shape.
 */
bool
tc_glob_read_back(const TcKeyFormat *kf, const char *glob,
				  char *values[TC_NLEVELS], int *pattern_start,
				  int *pattern_len)
{
	int			spans[2 * TC_NLEVELS];

	for (int i = 0; i < 2 * TC_NLEVELS; i++)
		spans[i] = -1;
	for (int level = 0; level < TC_NLEVELS; level++)
		values[level] = NULL;
	if (!match_parts(kf, 0, glob, 0, strlen(glob), pattern_start,
					 pattern_len, spans))
		return false;
	for (int level = 0; level < TC_NLEVELS; level++)
	{
		int			start = spans[2 * level];
		int			len = spans[2 * level + 1];

		/* Not in the format, or "*" (every value; 0 bytes after a "*"). */
		if (start < 0 || (len == 1 && glob[start] == '*') ||
			(len == 0 && start > 0 && glob[start - 1] == '*'))
			continue;
		values[level] = unescape_value(glob, start, len);
	}
	return true;
}
