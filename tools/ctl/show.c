/* ferryctl — status tables.
 *
 * One row per disk, in the order of status.json, columns separated by
 * blanks so that a plain table (not a terminal) is easy to cut: DISK,
 * STATE, %, CACHED (of USED), RECEIVED, WIRE, RATE, ETA, LINK.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "tools/ctl/show.h"

char *
ctl_size(uint64_t n, char *buf, size_t len)
{
	char *sp;

	/* ferry_format_size()'s "8.0 MiB", without its space. */
	ferry_format_size(n, buf, len);
	if ((sp = strchr(buf, ' ')))
		memmove(sp, sp + 1, strlen(sp));
	return buf;
}

char *
ctl_eta(uint64_t left, double rate, char *buf, size_t len)
{
	double s;
	uint64_t t;

	if (left == 0) {
		snprintf(buf, len, "0s");
		return buf;
	}
	if (!(rate >= 1)) {
		snprintf(buf, len, "-");
		return buf;
	}
	s = ceil((double)left / rate);
	if (s > 99.0 * 86400) {
		snprintf(buf, len, ">99d");
		return buf;
	}
	t = (uint64_t)s;
	if (t < 60)
		snprintf(buf, len, "%" PRIu64 "s", t);
	else if (t < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", t / 3600,
			 t / 60 % 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", t / 86400,
			 t / 3600 % 24);
	return buf;
}

unsigned
ctl_percent(uint64_t part, uint64_t whole)
{
	if (part >= whole)
		return 100;
	/* Never 100 while something is missing. */
	if (whole > UINT64_MAX / 100)
		return (unsigned)FERRY_MIN(99, part / (whole / 100));
	return (unsigned)(part * 100 / whole);
}

char *
ctl_bar(double frac, unsigned width, char *buf, size_t len)
{
	unsigned fill;

	if (len < (size_t)width + 3) {
		if (len)
			buf[0] = '\0';
		return buf;
	}
	if (!(frac >= 0))
		frac = 0;
	if (frac > 1)
		frac = 1;
	fill = (unsigned)(frac * width);
	if (fill == width && frac < 1)
		fill--;
	buf[0] = '[';
	memset(buf + 1, '#', fill);
	memset(buf + 1 + fill, '.', width - fill);
	buf[width + 1] = ']';
	buf[width + 2] = '\0';
	return buf;
}

static uint64_t
num(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		return json_integer_value(v) > 0 ?
			(uint64_t)json_integer_value(v) : 0;
	if (json_is_real(v))
		return json_real_value(v) > 0 ?
			(uint64_t)json_real_value(v) : 0;
	return 0;
}

static double
real(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : 0;
}

static const char *
str(const json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : dflt;
}

void
ctl_show_mount(FILE *out, const char *name, const json_t *st, bool tty,
	       const char *prefix)
{
	const json_t *disks = json_object_get(st, "disks");
	const json_t *link = json_object_get(st, "link");
	const char *lstate = str(link, "state", "?");
	char a[32], b[32], c[32], d[32], e[32], f[32];
	size_t i;
	const json_t *dj;

	fprintf(out, "%s%s  link %s  bwlimit %s  resync %s  verify %s\n",
		prefix, name, lstate,
		num(st, "bwlimit") ? strcat(ctl_size(num(st, "bwlimit"), a,
						     sizeof a - 3), "/s") : "none",
		str(json_object_get(st, "resync"), "state", "?"),
		str(json_object_get(st, "reverify"), "state", "?"));
	if (json_string_value(json_object_get(link, "last_error")) &&
	    strcmp(lstate, "ok") != 0)
		fprintf(out, "%s  link error: %s\n", prefix,
			str(link, "last_error", ""));
	fprintf(out, "%s  %-12s %-12s %s%4s %-19s %9s %9s %11s %7s %s\n",
		prefix, "DISK", "STATE", tty ? "             " : "", "%",
		"CACHED/USED", "RECEIVED", "WIRE", "RATE", "ETA", "LINK");
	json_array_foreach(disks, i, dj) {
		uint64_t used = num(dj, "used"), cached = num(dj, "cached");
		double rate = real(dj, "rate");
		unsigned pct = ctl_percent(cached, used);
		char bar[16] = "", cu[48], r[32];

		if (tty)
			ctl_bar(used ? (double)cached / (double)used : 1, 10,
				bar, sizeof bar);
		snprintf(cu, sizeof cu, "%s/%s", ctl_size(cached, a, sizeof a),
			 ctl_size(used, b, sizeof b));
		snprintf(f, sizeof f, "%s/s", ctl_size((uint64_t)rate, r,
						      sizeof r));
		fprintf(out, "%s  %-12s %-12s %s%s%3u%% %-19s %9s %9s %11s %7s %s\n",
			prefix, str(dj, "name", "?"), str(dj, "state", "?"),
			bar, tty ? " " : "", pct, cu,
			ctl_size(num(dj, "data_bytes"), c, sizeof c),
			ctl_size(num(dj, "wire_bytes"), d, sizeof d), f,
			ctl_eta(used > cached ? used - cached : 0, rate, e,
				sizeof e), lstate);
		if (json_string_value(json_object_get(dj, "error")))
			fprintf(out, "%s    error: %s\n", prefix,
				str(dj, "error", ""));
	}
}

void
ctl_show_fleet(FILE *out, const char *mnt, const json_t *st)
{
	const json_t *states = json_object_get(st, "states");
	const json_t *sources = json_object_get(st, "sources");
	const char *k;
	const json_t *v, *sj;
	size_t i;

	fprintf(out, "%s  fleet, listening on %s, %zu sources:", mnt,
		str(st, "listen", "?"), json_array_size(sources));
	json_object_foreach((json_t *)states, k, v)
		if (json_integer_value(v))
			fprintf(out, " %" PRIu64 " %s",
				(uint64_t)json_integer_value(v), k);
	fputc('\n', out);
	json_array_foreach(sources, i, sj) {
		uint64_t used = num(sj, "used"), cached = num(sj, "cached");
		char a[32], b[32], e[32];

		fprintf(out, "  source %s (%s) %s from %s, %" PRIu64
			" connections, %u%% of %s, %s/s, ETA %s\n",
			str(sj, "name", "?"), str(sj, "hostname", "?"),
			str(sj, "state", "?"), str(sj, "address", "?"),
			num(sj, "connections"), ctl_percent(cached, used),
			ctl_size(used, a, sizeof a),
			ctl_size((uint64_t)real(sj, "rate"), b, sizeof b),
			ctl_eta(used > cached ? used - cached : 0,
				real(sj, "rate"), e, sizeof e));
		if (json_string_value(json_object_get(sj, "error")))
			fprintf(out, "    error: %s\n", str(sj, "error", ""));
	}
}
