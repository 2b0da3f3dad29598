/* ferry — os-release parsing. See osrelease.h. */
#include <stdbool.h>
#include <string.h>

#include "common/osrelease.h"

#define VALUE_MAX 256

static const char *const keys[] = {
	"NAME", "PRETTY_NAME", "ID", "ID_LIKE", "VERSION", "VERSION_ID",
	"VERSION_CODENAME", "VARIANT_ID",
};

/* The value after '=' in [p, end): bare, or in '' or "" (backslash escapes
 * outside single quotes), into @out (at most VALUE_MAX - 1 bytes kept).
 * @return 0, or -1 if malformed (bare whitespace, an unterminated quote,
 * text after it, a control byte). */
static int
value(const char *p, const char *end, char *out)
{
	bool closed = false;
	size_t n = 0;
	char q = 0;

	if (p < end && (*p == '"' || *p == '\''))
		q = *p++;
	while (p < end) {
		char c = *p++;

		if (q && c == q) {
			closed = true;
			break;
		}
		if (!q && (c == ' ' || c == '\t' || c == '\r'))
			break;
		if (c == '\\' && q != '\'') {
			if (p == end)
				return -1;
			c = *p++;
		}
		if ((unsigned char)c < 0x20 || c == 0x7f)
			return -1;
		if (n < VALUE_MAX - 1)
			out[n++] = c;
	}
	if (q && !closed)
		return -1;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++;
	if (p != end)
		return -1;
	out[n] = '\0';
	return 0;
}

json_t *
ferry_os_release(const char *text, size_t len)
{
	json_t *o = json_object();
	const char *p = text, *end = text + len;

	while (o && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end, *eq;
		char v[VALUE_MAX];

		eq = memchr(p, '=', (size_t)(eol - p));
		for (size_t i = 0; eq && i < sizeof keys / sizeof *keys; i++) {
			size_t k = strlen(keys[i]);

			if ((size_t)(eq - p) == k && memcmp(p, keys[i], k) == 0 &&
			    value(eq + 1, eol, v) == 0)
				json_object_set_new(o, keys[i], json_string(v));
		}
		p = nl ? nl + 1 : end;
	}
	return o;
}
