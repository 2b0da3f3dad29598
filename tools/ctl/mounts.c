/* ferryctl — ferry mounts in /proc/self/mountinfo.
 *
 * A line is "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] -
 * FSTYPE SOURCE SUPEROPTIONS" (proc(5)); the optional fields end at a
 * lone "-". Fields are separated by single spaces; a space, tab, newline
 * or backslash inside one is written as a three-digit octal escape.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ctl/mounts.h"

/* The field starting at *@p, up to the next space or the end; *@p moves
 * past it and one space. @return its length. */
static size_t
field(const char **p, const char **start)
{
	size_t n = 0;

	*start = *p;
	while ((*p)[n] && (*p)[n] != ' ' && (*p)[n] != '\n')
		n++;
	*p += n;
	if (**p == ' ')
		(*p)++;
	return n;
}

/* Decode @n bytes of @s, octal escapes and all, into @out. */
static int
unescape(const char *s, size_t n, char *out, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '\\' && i + 3 < n &&
		    s[i + 1] >= '0' && s[i + 1] <= '3' &&
		    s[i + 2] >= '0' && s[i + 2] <= '7' &&
		    s[i + 3] >= '0' && s[i + 3] <= '7') {
			c = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
				   (s[i + 3] - '0'));
			i += 3;
		}
		if (c == '\0')
			return -EINVAL;
		if (o + 1 >= len)
			return -ENAMETOOLONG;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

int
ctl_mountinfo_line(const char *line, char *mnt, size_t len)
{
	const char *p = line, *f, *point;
	size_t n, npoint;
	int r;

	for (int i = 0; i < 4; i++)		/* ID PARENT MAJ:MIN ROOT */
		if (field(&p, &f) == 0)
			return -EINVAL;
	npoint = field(&p, &point);
	if (npoint == 0 || field(&p, &f) == 0)	/* OPTIONS */
		return -EINVAL;
	for (;;) {			/* optional fields, then "-" */
		n = field(&p, &f);
		if (n == 0)
			return -EINVAL;
		if (n == 1 && f[0] == '-')
			break;
	}
	n = field(&p, &f);
	if (n == 0)
		return -EINVAL;
	if (!((n == 10 && memcmp(f, "fuse.ferry", 10) == 0) ||
	      (n == 12 && memcmp(f, "fuse.ferryfs", 12) == 0)))
		return 0;
	r = unescape(point, npoint, mnt, len);
	return r < 0 ? r : 1;
}

int
ctl_find_mounts(const char *path, char ***out)
{
	FILE *f = fopen(path ? path : "/proc/self/mountinfo", "re");
	char *line = NULL, **v = NULL;
	size_t cap = 0;
	int n = 0, r = 0;

	*out = NULL;
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char mnt[4096];
		char **nv;

		if (ctl_mountinfo_line(line, mnt, sizeof mnt) != 1)
			continue;
		nv = realloc(v, (size_t)(n + 1) * sizeof *v);
		if (!nv || !(nv[n] = strdup(mnt))) {
			v = nv ? nv : v;
			r = -ENOMEM;
			break;
		}
		v = nv;
		n++;
	}
	free(line);
	fclose(f);
	if (r < 0) {
		while (n > 0)
			free(v[--n]);
		free(v);
		return r;
	}
	*out = v;
	return n;
}
