/* ferryfs — pause points for tests (pause.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/pause.h"

static struct {
	atomic_bool armed;
	char point[16];
	uint64_t chunk;
	char file[PATH_MAX];
} P;

void
pause_init(void)
{
	const char *v = getenv("FERRYFS_TEST_PAUSE");
	const char *colon;
	size_t n;

	if (!v || !*v)
		return;
	colon = strchr(v, ':');
	n = colon ? (size_t)(colon - v) : 0;
	if (!colon || n == 0 || n >= sizeof P.point)
		goto bad;
	memcpy(P.point, v, n);
	P.point[n] = '\0';
	v = colon + 1;
	if (strcmp(P.point, "run") == 0 || strcmp(P.point, "reply") == 0) {
		char *end;

		errno = 0;
		P.chunk = strtoull(v, &end, 10);
		if (errno || end == v || *end != ':')
			goto bad;
		v = end + 1;
	} else if (strcmp(P.point, "restamp") != 0) {
		goto bad;
	}
	if (!*v || strlen(v) >= sizeof P.file - 8)
		goto bad;
	snprintf(P.file, sizeof P.file, "%s", v);
	ferry_info("FERRYFS_TEST_PAUSE: %s armed", P.point);
	P.armed = true;
	return;
bad:
	ferry_error("FERRYFS_TEST_PAUSE=%s: expected restamp:FILE or "
		    "run|reply:CHUNK:FILE; nothing armed", getenv("FERRYFS_TEST_PAUSE"));
}

void
pause_at(const char *point, uint64_t first, uint64_t n,
	 const atomic_bool *stop)
{
	char held[PATH_MAX + 8];
	int fd;

	if (!atomic_load_explicit(&P.armed, memory_order_relaxed) ||
	    strcmp(point, P.point) != 0)
		return;
	if (strcmp(point, "restamp") != 0 &&
	    (P.chunk < first || P.chunk - first >= n))
		return;
	if (!atomic_exchange(&P.armed, false))
		return;		/* another thread took it */
	snprintf(held, sizeof held, "%s.held", P.file);
	fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	ferry_info("FERRYFS_TEST_PAUSE: held at %s until %s exists", point,
		   P.file);
	while (access(P.file, F_OK) != 0 && !atomic_load(stop))
		usleep(10000);
	ferry_info("FERRYFS_TEST_PAUSE: %s released", point);
}
