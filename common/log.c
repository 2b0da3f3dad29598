/* ferry — logging. See log.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

static const char *progname = "ferry";
static bool verbose;
static _Thread_local char last_error[512];
static _Thread_local bool quiet;

void
ferry_log_init(const char *prog)
{
	const char *slash = strrchr(prog, '/');

	progname = slash ? slash + 1 : prog;
}

void
ferry_log_verbose(bool on)
{
	verbose = on;
}

static void
vlog(const char *level, char *keep, size_t keeplen, const char *fmt,
     va_list ap)
{
	char line[1024];
	int saved = errno;	/* restored for the caller */

	vsnprintf(line, sizeof line, fmt, ap);
	if (keep) {
		size_t n = strnlen(line, keeplen - 1);

		memcpy(keep, line, n);
		keep[n] = '\0';
	}
	/* One fprintf per line so that threads do not interleave. */
	if (!quiet || !keep)
		fprintf(stderr, "%s: %s%s\n", progname, level, line);
	errno = saved;
}

void
ferry_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("error: ", last_error, sizeof last_error, fmt, ap);
	va_end(ap);
}

void
ferry_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("", NULL, 0, fmt, ap);
	va_end(ap);
}

void
ferry_debug(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	vlog("debug: ", NULL, 0, fmt, ap);
	va_end(ap);
}

bool
ferry_log_quiet(bool on)
{
	bool was = quiet;

	quiet = on;
	return was;
}

const char *
ferry_last_error(void)
{
	return last_error;
}
