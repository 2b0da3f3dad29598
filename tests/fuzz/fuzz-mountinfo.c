/* libFuzzer target: a line of /proc/self/mountinfo as ferryctl reads it.
 * Whatever the bytes, the answer is -EINVAL, -ENAMETOOLONG, 0, or 1 with
 * a mount point that is a string inside the buffer and holds no NUL. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ctl/mounts.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1), mnt[256];
	int r;

	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	memset(mnt, 'x', sizeof mnt);
	r = ctl_mountinfo_line(line, mnt, sizeof mnt);
	CHECK(r == 1 || r == 0 || r == -EINVAL || r == -ENAMETOOLONG);
	if (r == 1) {
		CHECK(memchr(mnt, '\0', sizeof mnt) != NULL);
		CHECK(strlen(mnt) > 0);
	}
	free(line);
	return 0;
}
