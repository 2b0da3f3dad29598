/* ferry — /etc/os-release (os-release(5)) parsed: KEY=VALUE lines, values
 * optionally quoted with shell-style escapes. Pure code. */
#ifndef FERRY_OSRELEASE_H
#define FERRY_OSRELEASE_H

#include <stddef.h>

#include <jansson.h>

/*! ferry_os_release() : the fields of @text (@len bytes) that a
 * feasibility check reads (NAME, PRETTY_NAME, ID, ID_LIKE, VERSION,
 * VERSION_ID, VERSION_CODENAME, VARIANT_ID), as a JSON object; malformed
 * lines are skipped. @return a new reference, or NULL on ENOMEM. */
json_t *ferry_os_release(const char *text, size_t len);

#endif
