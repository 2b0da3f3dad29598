/* ferry — backends: where blocks come from.
 *
 * A backend is anything that can answer "which disks, how big, which ranges
 * hold data, read these bytes". ferry-export serves local backends (file),
 * ferryfs reads through any backend (http for a remote exporter or any
 * range-capable HTTPS server; file for a local image).
 *
 * One opened backend is a "source" holding one or more disks. Every
 * operation is safe to call from several threads at once.
 *
 * All functions return 0 (or a count >= 0) on success and -errno on
 * failure, after logging one line with ferry_error() naming the object.
 */
#ifndef FERRY_BACKEND_H
#define FERRY_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"
#include "common/extents.h"

#define FERRY_NAME_MAX 96

struct ferry_disk_info {
	char name[FERRY_NAME_MAX + 1];
	uint64_t size;		/* bytes */
	uint32_t sector_size;	/* logical sector size, 512 if unknown */
	uint64_t allocated;	/* data bytes by the allocation map */
	char generation[128];	/* changes whenever the content may have */
	/* The content may change without the generation changing: a block
	 * device, whose writes the exporter cannot see (its generation names
	 * the device and size). A client never takes such a disk as
	 * unchanged: it checks what it holds against the digests. */
	bool live;
	bool digests;		/* the source serves per-chunk digests */
};

/* Where a transfer's bytes go. Each callback returns 0 or -errno, which
 * aborts the transfer and is returned by the read. */
struct ferry_sink {
	/* Disk bytes at @off, in order, as they arrive (decoded). */
	int (*data)(void *arg, uint64_t off, const void *buf, size_t len);
	/* Optional: @n more bytes arrived on the wire, before decoding.
	 * Called before the bytes are decoded, so it may sleep to hold the
	 * transfer back (a bandwidth cap, yielding to other work). */
	int (*wire)(void *arg, size_t n);
	void *arg;
	/* Ask for the bytes as they are, even where the source was opened
	 * to ask for compression (the transfer engine's choice, fetch.c). */
	bool plain;
	/* Background work that yields to readers (hydration): its
	 * connections are kept apart, their receive windows sized to the
	 * link so that little of it waits in the link's queue (the http
	 * backend, common/rwnd.h). */
	bool background;
	/* Optional: ask for the source's digests of the @digest_block-byte
	 * blocks the range touches along with the data (a ferry-export's
	 * in-band digests, doc/protocol.md), given to @digests before the
	 * data: @n blocks from block @first. A source that does not send
	 * them never calls it. */
	uint32_t digest_block;
	void (*digests)(void *arg, uint64_t first,
			const struct ferry_digest *dg, size_t n);
};

struct ferry_source;

struct ferry_backend {
	const char *name;

	/* Release everything. */
	void (*close)(struct ferry_source *src);

	/* Fill @map (already initialised with the disk size) with the data
	 * ranges of disk @disk. */
	int (*extents)(struct ferry_source *src, unsigned disk,
		       struct ferry_extents *map);

	/* Optional: look at the disk again (a file written since it was
	 * opened): update its size and generation. @return 1 if the
	 * generation changed, 0 if not, or -errno. */
	int (*refresh)(struct ferry_source *src, unsigned disk);

	/* Optional (network sources): what the source says of disk @disk
	 * now (generation, size), without following it. */
	int (*look)(struct ferry_source *src, unsigned disk,
		    struct ferry_disk_info *now);
	/* Optional: from now on, ask for generation @gen of disk @disk (the
	 * data requests' If-Match). */
	int (*follow)(struct ferry_source *src, unsigned disk,
		      const char *gen);

	/* Optional: what the source says of its host and disks (a
	 * ferry-export's GET /v1/info) as a JSON text in *@json (malloc'd). */
	int (*info)(struct ferry_source *src, char **json);

	/* Optional (local files and devices): a descriptor that reads disk
	 * @disk as pread does, or -1. Not to be closed by the caller. */
	int (*fd)(struct ferry_source *src, unsigned disk);

	/* Read exactly @len bytes at @off into @buf (short = error). */
	int (*pread)(struct ferry_source *src, unsigned disk, void *buf,
		     size_t len, uint64_t off);

	/* Optional: stream [off, off+len) to @sink as it arrives; network
	 * backends implement this so received bytes go straight to their
	 * destination. Without it, ferry_source_read() uses pread. */
	int (*fetch)(struct ferry_source *src, unsigned disk, uint64_t off,
		     uint64_t len, const struct ferry_sink *sink);

	/* Optional: the digests (common/digest.h) of @count chunks of
	 * @chunk bytes from chunk @first, as the source has them now, into
	 * @out. Without it, ferry_source_digests() reads and hashes. */
	int (*digests)(struct ferry_source *src, unsigned disk, uint64_t chunk,
		       uint64_t first, size_t count, struct ferry_digest *out);
};

/* How the link to a source is doing, for status reports. */
struct ferry_health {
	_Atomic unsigned retrying;	/* requests waiting to try again */
	_Atomic uint64_t failures;	/* failed attempts, in all */
	/* Given up on after -o timeout= of failures, and nothing has gone
	 * through since: a new request tries once, not for another timeout,
	 * so that a reader's retries (the kernel's of a readahead page) do
	 * not stack timeouts. */
	_Atomic bool down;
	pthread_mutex_t lock;
	char last_error[256];		/* the last failure, "" if none */
};

struct ferry_source {
	const struct ferry_backend *ops;
	char id[512];		/* stable identity, for cache naming */
	size_t ndisks;
	struct ferry_disk_info *disks;
	/* If set and true, long operations give up with -ECANCELED. */
	const atomic_bool *cancel;
	struct ferry_health health;	/* network backends keep it */
	void *priv;
};

/*! ferry_source_read() : stream [off, off+len) of @disk to @sink, through
 * the backend's fetch or, lacking it, pread in pieces. */
int ferry_source_read(struct ferry_source *src, unsigned disk, uint64_t off,
		      uint64_t len, const struct ferry_sink *sink);

/*! ferry_source_digests() : the digests of @count chunks of @chunk bytes
 * of @disk from chunk @first (the last chunk of the disk may be short),
 * through the backend's digests op or, lacking it, by reading them.
 * @return 0 or -errno (-EINVAL: chunks outside the disk). */
int ferry_source_digests(struct ferry_source *src, unsigned disk,
			 uint64_t chunk, uint64_t first, size_t count,
			 struct ferry_digest *out);

/*! ferry_health_failed() : note a failed attempt on @src's link. */
void ferry_health_failed(struct ferry_source *src, const char *why);

/*! ferry_health_error() : @src's last failure into @buf ("" if none). */
void ferry_health_error(struct ferry_source *src, char *buf, size_t len);

/*! ferry_source_close() : close and free @src (NULL is fine). */
void ferry_source_close(struct ferry_source *src);

/*! ferry_valid_disk_name() : [A-Za-z0-9_.-]{1,96}, not starting with '.'.
 * Disk names become file names in a mount and path segments on the wire. */
bool ferry_valid_disk_name(const char *name);

/* --- backends/file.c --- */

/*! ferry_file_open() :
 * A raw image file or block device, opened read-only, as one disk named
 * @name. Size by fstat or BLKGETSIZE64; extents by SEEK_DATA/SEEK_HOLE
 * (block devices: all data). */
int ferry_file_open(const char *name, const char *path,
		    struct ferry_source **out);

/* --- backends/image.c --- */

/*! ferry_image_format() : "qcow2", "vhd", "vmdk" (by the file's content,
 * as libyal's libraries recognise it) or "raw". */
const char *ferry_image_format(const char *path);

/*! ferry_image_open() :
 * The virtual disk inside the image at @path (qcow2/qcow, VHD/VHDX, VMDK,
 * with backing images) as one disk named @name; @format "auto" or NULL to
 * detect it, "raw" for ferry_file_open(). Errors name the file and the
 * reason. */
int ferry_image_open(const char *name, const char *path, const char *format,
		     struct ferry_source **out);

/* --- backends/http.c --- */

struct ferry_http_opts {
	const char *cacert;	/* PEM CA bundle for https:// URLs, or NULL
				 * for the system's */
	bool compress;		/* ask a ferry-export for zstd bodies */
	bool verbose;
	/* A read that fails for a reason another connection may cure (reset,
	 * refused, stalled, truncated, 5xx) is tried again with backoff for
	 * up to @timeout seconds after its last progress (0 = forever). */
	double timeout;
	/* No byte for this many seconds on a transfer: stalled (default 30). */
	unsigned stall_timeout;
	/* A source that dialled in (ferryfs --listen): HTTPS over this Unix
	 * socket through the relay, with bearer @token; @spec is then the
	 * source's name, for messages and the source id. */
	const char *unix_socket;
	const char *token;
	/* ... the exporter's pin now (a restart changes it), and the PEM
	 * certificate and key curl shows it (the transit's, which it pins). */
	void (*pin_now)(void *arg, char pin[128]);
	void *pin_arg;
	const char *client_cert, *client_key;
};

#define FERRY_HTTP_TIMEOUT 300.0	/* default opts.timeout */
#define FERRY_HTTP_STALL 30		/* default opts.stall_timeout */

/*! ferry_http_open() :
 * @spec is either a ferry connection string (ferry://TOKEN@HOST:PORT/?pin=)
 * for a ferry-export, whose disks are listed, or an https:// (or http://)
 * URL of one image on any server that supports Range requests.
 * Errors name the cause: a refused token (-EACCES), a key that does not
 * match the pin (-EPERM), an unreachable host, a server without ranges. */
int ferry_http_open(const char *spec, const struct ferry_http_opts *opts,
		    struct ferry_source **out);

#endif
