/* ferryfs — readdir replies, for the mount's and the fleet's directories.
 * Include after <fuse_lowlevel.h>. */
#ifndef FERRY_FS_DIRBUF_H
#define FERRY_FS_DIRBUF_H

#include <stddef.h>
#include <sys/types.h>

/* A readdir reply built entry by entry (an entry that does not fit in
 * memory is left out), then sent from @off and freed. */
struct dirbuf {
	char *p;
	size_t size;
};
void dirbuf_add(fuse_req_t req, struct dirbuf *b, const char *name,
		fuse_ino_t ino, mode_t mode);
void dirbuf_reply(fuse_req_t req, struct dirbuf *b, size_t size, off_t off);

#endif
