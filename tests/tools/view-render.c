/* view-render FORMAT DISK OUT [CLUSTER_BITS]
 *
 * Writes the view FORMAT (raw, qcow2, vhd, fixedvhd) of the raw image DISK,
 * whose allocation map comes from SEEK_DATA/SEEK_HOLE, into OUT, through
 * the same layout code ferryfs serves. Tests use it to check the views
 * with real image readers (qemu-img, qcowinfo, vhdiinfo) on many shapes of
 * disk without a mount. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/views/view.h"

static const struct view_ops *
ops_by_name(const char *name)
{
	static const struct view_ops *all[] = {
		&view_raw_ops, &view_qcow2_ops, &view_vhd_ops,
		&view_fixedvhd_ops,
	};

	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (strcmp(all[i]->format, name) == 0)
			return all[i];
	return NULL;
}

int
main(int argc, char **argv)
{
	struct ferry_extents map;
	struct view_params p = { 0 };
	const struct view_ops *ops;
	struct view v;
	struct stat st;
	uint8_t *disk = NULL, *buf;
	off_t pos = 0;
	int fd, out, r;

	if (argc < 4 || !(ops = ops_by_name(argv[1]))) {
		fprintf(stderr, "usage: view-render raw|qcow2|vhd|fixedvhd "
			"DISK OUT [CLUSTER_BITS]\n");
		return 2;
	}
	fd = open(argv[2], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(argv[2]);
		return 1;
	}
	ferry_extents_init(&map, (uint64_t)st.st_size);
	while (pos < st.st_size) {
		off_t d = lseek(fd, pos, SEEK_DATA), h;

		if (d < 0)
			break;
		h = lseek(fd, d, SEEK_HOLE);
		if (ferry_extents_add(&map, (uint64_t)d, (uint64_t)(h - d)))
			return 1;
		pos = h;
	}
	if (st.st_size) {
		disk = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
			    fd, 0);
		if (disk == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
	}
	p.size = (uint64_t)st.st_size;
	p.map = &map;
	p.qcow2_cluster_bits = argc > 4 ? (unsigned)atoi(argv[4]) : 0;
	memcpy(p.uuid, "ferry-view-test!", 16);
	r = view_open(&v, ops, &p);
	if (r < 0) {
		fprintf(stderr, "view-render: %s: %s\n", argv[1],
			strerror(-r));
		return 1;
	}
	out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	buf = malloc(1 << 20);
	if (out < 0 || !buf || ftruncate(out, (off_t)v.size) < 0) {
		perror(argv[3]);
		return 1;
	}
	for (uint64_t off = 0; off < v.size; off += 1 << 20) {
		size_t n = view_render(&v, off, 1 << 20, buf, disk);

		if (pwrite(out, buf, n, (off_t)off) != (ssize_t)n) {
			perror(argv[3]);
			return 1;
		}
	}
	printf("%llu %llu\n", (unsigned long long)v.size,
	       (unsigned long long)v.allocated);
	view_close(&v);
	ferry_extents_free(&map);
	free(buf);
	close(out);
	return 0;
}
