/* ferry — logging: one line per event, to stderr or syslog.
 *
 * ferry_error() is called where an error is detected, once; the message is
 * also kept in a thread-local buffer so that the caller one level up can copy
 * it into status without logging twice (ferry_last_error()).
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include <stdbool.h>

/*! ferry_log_init() : set the program name printed before each line. */
void ferry_log_init(const char *prog);

/*! ferry_log_verbose() : enable ferry_debug() lines. */
void ferry_log_verbose(bool on);

void ferry_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ferry_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ferry_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*! ferry_log_quiet() : while on, this thread's ferry_error() lines are
 * kept for ferry_last_error() but not printed (a retry loop logs its first
 * failure, not every attempt). @return the previous setting. */
bool ferry_log_quiet(bool on);

/*! ferry_last_error() :
 * @return the text of the last ferry_error() made by this thread, or "". */
const char *ferry_last_error(void);

#endif
