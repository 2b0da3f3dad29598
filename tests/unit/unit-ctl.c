/* ferryctl's pure parts: mountinfo lines (escapes, optional fields, other
 * filesystems, malformed lines) and the table's pieces (sizes, ETA,
 * percent, bars). */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "tools/ctl/mounts.h"
#include "tools/ctl/show.h"
#include "check.h"

int
main(void)
{
	char m[64], b[64];

	CHECK(ctl_mountinfo_line("46 27 0:41 / /tmp/st/mnt rw,nosuid,nodev,"
		"relatime - fuse.ferry ferry rw,user_id=0,group_id=0", m,
		sizeof m) == 1);
	CHECK(strcmp(m, "/tmp/st/mnt") == 0);
	/* Optional fields, an escaped space and backslash, mount -t's type. */
	CHECK(ctl_mountinfo_line("50 27 0:44 / /mnt/a\\040b\\134c rw shared:1 "
		"master:2 - fuse.ferryfs ferry://x rw\n", m, sizeof m) == 1);
	CHECK(strcmp(m, "/mnt/a b\\c") == 0);
	CHECK(ctl_mountinfo_line("22 1 8:1 / / rw - ext4 /dev/vda1 rw", m,
				 sizeof m) == 0);
	CHECK(ctl_mountinfo_line("23 1 0:5 / /x rw - fuse.ferryfsx y rw", m,
				 sizeof m) == 0);
	CHECK(ctl_mountinfo_line("23 1 0:5 / /x rw - fuse.ferr y rw", m,
				 sizeof m) == 0);
	CHECK(ctl_mountinfo_line("", m, sizeof m) == -EINVAL);
	CHECK(ctl_mountinfo_line("1 2 3 4 /x rw fuse.ferry", m, sizeof m) ==
	      -EINVAL);
	CHECK(ctl_mountinfo_line("1 2 3 4 /x rw -", m, sizeof m) == -EINVAL);
	CHECK(ctl_mountinfo_line("1 2 3 4 /a\\000b rw - fuse.ferry f rw", m,
				 sizeof m) == -EINVAL);
	/* A bad escape is kept as written. */
	CHECK(ctl_mountinfo_line("1 2 3 4 /a\\9 rw - fuse.ferry f rw", m,
				 sizeof m) == 1);
	CHECK(strcmp(m, "/a\\9") == 0);
	CHECK(ctl_mountinfo_line("1 2 3 4 /a/very/long/mount/point rw - "
				 "fuse.ferry f rw", m, 8) == -ENAMETOOLONG);

	CHECK(strcmp(ctl_size(0, b, sizeof b), "0B") == 0);
	CHECK(strcmp(ctl_size(1023, b, sizeof b), "1023B") == 0);
	CHECK(strcmp(ctl_size(1024, b, sizeof b), "1.0KiB") == 0);
	CHECK(strcmp(ctl_size(83 << 20, b, sizeof b), "83.0MiB") == 0);
	CHECK(strcmp(ctl_size(UINT64_MAX, b, sizeof b), "16384.0PiB") == 0);

	CHECK(strcmp(ctl_eta(0, 0, b, sizeof b), "0s") == 0);
	CHECK(strcmp(ctl_eta(1, 0, b, sizeof b), "-") == 0);
	CHECK(strcmp(ctl_eta(1, 0.5, b, sizeof b), "-") == 0);
	CHECK(strcmp(ctl_eta(100, 10, b, sizeof b), "10s") == 0);
	CHECK(strcmp(ctl_eta(101, 10, b, sizeof b), "11s") == 0);
	CHECK(strcmp(ctl_eta(200, 1, b, sizeof b), "3m20s") == 0);
	CHECK(strcmp(ctl_eta(3600 * 5 + 7 * 60, 1, b, sizeof b), "5h07m") == 0);
	CHECK(strcmp(ctl_eta(86400 * 3 + 3600 * 4, 1, b, sizeof b), "3d04h") == 0);
	CHECK(strcmp(ctl_eta(UINT64_MAX, 1, b, sizeof b), ">99d") == 0);

	CHECK_EQ_U64(ctl_percent(0, 0), 100);
	CHECK_EQ_U64(ctl_percent(5, 5), 100);
	CHECK_EQ_U64(ctl_percent(999, 1000), 99);
	CHECK_EQ_U64(ctl_percent(1, 3), 33);
	CHECK_EQ_U64(ctl_percent(UINT64_MAX - 1, UINT64_MAX), 99);
	CHECK_EQ_U64(ctl_percent(UINT64_MAX / 2, UINT64_MAX), 50);

	CHECK(strcmp(ctl_bar(0.5, 10, b, sizeof b), "[#####.....]") == 0);
	CHECK(strcmp(ctl_bar(1, 4, b, sizeof b), "[####]") == 0);
	CHECK(strcmp(ctl_bar(0.999, 4, b, sizeof b), "[###.]") == 0);
	CHECK(strcmp(ctl_bar(-1, 3, b, sizeof b), "[...]") == 0);
	CHECK(strcmp(ctl_bar(0.5, 10, b, 12), "") == 0);
	return check_result("unit-ctl");
}
