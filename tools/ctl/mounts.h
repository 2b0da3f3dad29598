/* ferryctl — which mounts are ferry mounts, from /proc/self/mountinfo. */
#ifndef FERRY_CTL_MOUNTS_H
#define FERRY_CTL_MOUNTS_H

#include <stddef.h>

/*! ctl_mountinfo_line() : read one line of /proc/self/mountinfo (no
 * newline needed). When its filesystem type is a ferry mount's
 * (fuse.ferry, or fuse.ferryfs as mount -t gives it), copy its mount
 * point, octal escapes (\040 for a space) decoded, into @mnt.
 * @return 1 for a ferry mount, 0 for another, -EINVAL for a line that is
 * not mountinfo's, -ENAMETOOLONG when the mount point does not fit. */
int ctl_mountinfo_line(const char *line, char *mnt, size_t len);

/*! ctl_find_mounts() : every ferry mount in @path (NULL:
 * /proc/self/mountinfo), in its order. @return how many were put in
 * *@out (an array of strings to free, then free the array), or -errno. */
int ctl_find_mounts(const char *path, char ***out);

#endif
