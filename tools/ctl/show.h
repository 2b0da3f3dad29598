/* ferryctl — a mount's status.json as a table, and the pieces of it. */
#ifndef FERRY_CTL_SHOW_H
#define FERRY_CTL_SHOW_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/*! ctl_size() : @n bytes in binary units without a space ("8.0MiB",
 * "512B"), so that a plain table splits on blanks. @return @buf. */
char *ctl_size(uint64_t n, char *buf, size_t len);

/*! ctl_eta() : the time @left bytes take at @rate bytes/s: "-" with no
 * rate, "0s" with nothing left, else "42s", "3m20s", "5h07m" or "3d04h".
 * @return @buf. */
char *ctl_eta(uint64_t left, double rate, char *buf, size_t len);

/*! ctl_percent() : the whole percent @part is of @whole, rounded down,
 * 100 only when they are equal (0 of 0 is 100: nothing to fetch). */
unsigned ctl_percent(uint64_t part, uint64_t whole);

/*! ctl_bar() : a bar @width cells wide, @frac (0..1) of it filled, in
 * brackets: "[#####.....]". @len must be at least @width + 3. @return @buf. */
char *ctl_bar(double frac, unsigned width, char *buf, size_t len);

/*! ctl_show_mount() : print the table of one mount: a line for the mount
 * (link, cap, resync, verify), a heading and a line per disk. With @tty
 * the percent comes with a bar. @prefix starts every line (a fleet's
 * members are indented). */
void ctl_show_mount(FILE *out, const char *name, const json_t *st, bool tty,
		    const char *prefix);

/*! ctl_show_fleet() : the line of a fleet mount and of each source, from
 * the fleet's status.json. */
void ctl_show_fleet(FILE *out, const char *mnt, const json_t *st);

#endif
