/* ferry-export — GET /v1/info: what a pre-migration feasibility check
 * reads about the source. The host: name, OS release (/etc/os-release),
 * kernel, architecture, boot mode (UEFI when /sys/firmware/efi exists);
 * and per disk its format and partition table (read now, through the same
 * parser as ferryfs's partition views). When disks are images on a
 * hypervisor, the host facts are the hypervisor's and the partition
 * tables are the guests'.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <jansson.h>

#include "backends/usedmap.h"
#include "common/osrelease.h"
#include "backends/fsmap/parts.h"
#include "tools/export/export.h"

#define OS_RELEASE_MAX 65536

static json_t *
os_release(void)
{
	static const char *const paths[] = { "/etc/os-release",
					     "/usr/lib/os-release" };
	char *buf = malloc(OS_RELEASE_MAX);
	json_t *o = NULL;

	for (size_t i = 0; buf && !o && i < 2; i++) {
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		ssize_t n;

		if (fd < 0)
			continue;
		n = read(fd, buf, OS_RELEASE_MAX);
		close(fd);
		if (n >= 0)
			o = ferry_os_release(buf, (size_t)n);
	}
	free(buf);
	return o ? o : json_null();
}

static int
read_disk(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct export_disk *d = ctx;
	uint64_t size;

	export_look(d, NULL, 0, &size);
	if (off > size || len > size - off)
		return -EINVAL;
	return d->src->ops->pread(d->src, 0, buf, len, off);
}

static json_t *
disk_info(struct export_disk *d)
{
	struct part_table *t = malloc(sizeof *t);
	json_t *parts = json_array(), *o;
	char why[160] = "";
	uint64_t size;
	int r;

	export_look(d, NULL, 0, &size);
	r = t ? parts_scan(size, read_disk, d, t, why, sizeof why) : -ENOMEM;
	for (size_t i = 0; r == 0 && parts && i < t->n; i++)
		json_array_append_new(parts, json_pack("{sIsIsIss}",
			"number", (json_int_t)t->v[i].num,
			"offset", (json_int_t)t->v[i].off,
			"length", (json_int_t)t->v[i].len,
			"type", t->v[i].type));
	o = json_pack("{sssssIsoso}", "name", d->name, "format", d->format,
		      "size", (json_int_t)size,
		      "partition_table", r == 0 && t->scheme[0] ?
				json_string(t->scheme) : json_null(),
		      "partitions", parts ? parts : json_null());
	if (o) {
		json_t *vols = ferry_usedmap_volumes(d->src);

		json_object_set_new(o, "used", json_integer((json_int_t)
				    ferry_usedmap_used(d->src)));
		json_object_set_new(o, "volumes", vols ? vols : json_null());
	}
	if (o && r < 0)
		json_object_set_new(o, "partition_error", json_string(
			r == -EINVAL ? why : strerror(-r)));
	free(t);
	return o;
}

json_t *
info_json(struct exporter *ex)
{
	struct utsname u;
	char host[256] = "";
	json_t *disks = json_array();

	if (uname(&u) < 0)
		memset(&u, 0, sizeof u);
	gethostname(host, sizeof host - 1);
	for (size_t i = 0; disks && i < ex->ndisks; i++)
		json_array_append_new(disks, disk_info(&ex->disks[i]));
	return json_pack("{sss{sssossssssss}so}", "host_id", ex->host_id,
			 "host", "hostname", host, "os", os_release(),
			 "kernel", u.release, "kernel_version", u.version,
			 "architecture", u.machine,
			 "boot", access("/sys/firmware/efi", F_OK) == 0 ?
				 "UEFI" : "BIOS",
			 "disks", disks);
}
