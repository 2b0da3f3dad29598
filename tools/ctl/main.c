/* ferryctl — the state of ferry mounts at a glance, and their commands.
 *
 * Everything goes through the files a mount already has: status.json is
 * read, control is written. ferryctl holds no state of its own and can be
 * stopped at any time; a resync or verify it started goes on without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/log.h"
#include "common/util.h"
#include "tools/ctl/mounts.h"
#include "tools/ctl/show.h"

static bool opt_json, opt_tty;
static double opt_watch, opt_timeout;

static void
usage(FILE *out)
{
	fprintf(out,
"Usage: ferryctl status [--json] [--watch[=SECS]] [MOUNT...]\n"
"       ferryctl resync [--timeout=SECS] MOUNT\n"
"       ferryctl verify [--timeout=SECS] MOUNT\n"
"       ferryctl bwlimit RATE MOUNT\n"
"The state of ferryfs mounts, and the commands of their .ferry/control.\n"
"\n"
"  status    a table per mount (no MOUNT: every ferry mount in\n"
"            /proc/self/mountinfo) and a line per disk: state, percent\n"
"            cached of what is used, received and wire bytes, rate, ETA\n"
"            and the link's state; a fleet (ferryfs --listen) shows each\n"
"            source, then each source's disks\n"
"  resync    follow a source that changed: starts a resync and follows it\n"
"            until every cached chunk is checked and every used one cached\n"
"  verify    re-check every cached chunk against the source's digests;\n"
"            follows it to the end\n"
"  bwlimit   set the cap on bytes/s received (K/M/G suffixes; 0 = none)\n"
"\n"
"MOUNT is a ferryfs mount point, or a source's directory in a fleet\n"
"(resync, verify and bwlimit act on one source: MOUNT/web01).\n"
"\n"
"Options:\n"
"  --json           status as JSON: {\"version\":1,\"mounts\":[{\"mount\",\n"
"                   \"status\" (the mount's status.json), \"sources\" (a\n"
"                   fleet's: each source's status.json by name)}]}\n"
"  --watch[=SECS]   print the status again every SECS (default 2) until\n"
"                   interrupted\n"
"  --timeout=SECS   stop following a resync or verify after SECS (exit 1;\n"
"                   the command goes on in the mount); default: none\n"
"  -h, --help       this text\n"
"  -V, --version    the version\n"
"\n"
"On a terminal the percent comes with a bar and follow commands redraw\n"
"one line; otherwise the output is plain lines.\n"
"Exit status: 0 done; 1 a mount refused, failed or is not a ferry mount;\n"
"2 bad usage.\n");
}

/* MNT/.ferry/NAME. */
static void
ferry_path(char *buf, size_t len, const char *mnt, const char *name)
{
	snprintf(buf, len, "%s/.ferry/%s", mnt, name);
}

/* MNT's status.json, or NULL after a message. */
static json_t *
load_status(const char *mnt)
{
	char p[PATH_MAX];
	json_error_t err;
	json_t *j;

	ferry_path(p, sizeof p, mnt, "status.json");
	if (access(p, F_OK) != 0) {
		ferry_error("%s is not a ferry mount (no .ferry/status.json: %s)",
			    mnt, strerror(errno));
		return NULL;
	}
	j = json_load_file(p, 0, &err);
	if (!j || !json_is_object(j)) {
		ferry_error("%s: cannot read its status: %s", p,
			    j ? "not an object" : err.text);
		json_decref(j);
		return NULL;
	}
	return j;
}

static bool
is_fleet(const json_t *st)
{
	return json_is_array(json_object_get(st, "sources")) &&
	       !json_object_get(st, "disks");
}

/* Each source's own status.json, by name, in a fleet @mnt. */
static json_t *
fleet_members(const char *mnt, const json_t *st)
{
	json_t *m = json_object(), *sj;
	size_t i;

	json_array_foreach(json_object_get(st, "sources"), i, sj) {
		const char *name = json_string_value(json_object_get(sj, "name"));
		char p[PATH_MAX], q[PATH_MAX];
		json_t *ms;

		if (!name)
			continue;
		snprintf(p, sizeof p, "%s/%s", mnt, name);
		ferry_path(q, sizeof q, p, "status.json");
		/* A source still connecting has no disks to show yet. */
		if (access(q, F_OK) != 0)
			continue;
		ms = json_load_file(q, 0, NULL);
		if (ms)
			json_object_set_new(m, name, ms);
	}
	return m;
}

static int
status_once(char **mounts, int n)
{
	json_t *all = json_array();
	int rc = 0;

	for (int i = 0; i < n; i++) {
		json_t *st = load_status(mounts[i]), *members = NULL;

		if (!st) {
			rc = 1;
			continue;
		}
		if (is_fleet(st))
			members = fleet_members(mounts[i], st);
		if (opt_json) {
			json_t *o = json_pack("{sssO}", "mount", mounts[i],
					      "status", st);

			if (members)
				json_object_set(o, "sources", members);
			json_array_append_new(all, o);
		} else if (members) {
			const char *name;
			json_t *ms;

			ctl_show_fleet(stdout, mounts[i], st);
			json_object_foreach(members, name, ms)
				ctl_show_mount(stdout, name, ms, opt_tty, "    ");
		} else {
			ctl_show_mount(stdout, mounts[i], st, opt_tty, "");
		}
		json_decref(members);
		json_decref(st);
	}
	if (opt_json) {
		json_t *root = json_pack("{sisO}", "version", 1, "mounts", all);

		json_dumpf(root, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(root);
	}
	json_decref(all);
	fflush(stdout);
	return rc;
}

static int
cmd_status(int argc, char **argv)
{
	char **mounts = argv;
	int n = argc, rc;

	if (n == 0) {
		n = ctl_find_mounts(NULL, &mounts);
		if (n < 0) {
			ferry_error("/proc/self/mountinfo: %s", strerror(-n));
			return 1;
		}
		if (n == 0 && !opt_json)
			fprintf(stderr, "ferryctl: no ferry mounts\n");
	}
	for (;;) {
		if (opt_watch > 0 && opt_tty && !opt_json)
			fputs("\033[H\033[2J", stdout);
		rc = status_once(mounts, n);
		if (opt_watch <= 0)
			break;
		if (!opt_tty)
			fputc('\n', stdout);
		fflush(stdout);
		usleep((useconds_t)(opt_watch * 1e6));
	}
	if (mounts != argv) {
		for (int i = 0; i < n; i++)
			free(mounts[i]);
		free(mounts);
	}
	return rc;
}

/* Write @line to MNT/.ferry/control. @return 0, or 1 after a message. */
static int
control(const char *mnt, const char *line)
{
	char p[PATH_MAX], buf[256];
	int fd;
	ssize_t w;

	ferry_path(p, sizeof p, mnt, "control");
	fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		ferry_error("%s: %s", p, strerror(errno));
		return 1;
	}
	snprintf(buf, sizeof buf, "%s\n", line);
	w = write(fd, buf, strlen(buf));
	if (w < 0 || (size_t)w != strlen(buf)) {
		int e = w < 0 ? errno : EIO;

		close(fd);
		ferry_error("%s: the mount refused \"%s\": %s (its log says why)",
			    mnt, line, strerror(e));
		return 1;
	}
	if (close(fd) < 0) {
		ferry_error("%s: the mount refused \"%s\": %s", mnt, line,
			    strerror(errno));
		return 1;
	}
	return 0;
}

/* Refuse a fleet's top directory for a command: it acts on one source. */
static json_t *
load_member(const char *mnt, const char *what)
{
	json_t *st = load_status(mnt), *sj;
	size_t i;

	if (st && is_fleet(st)) {
		char names[256] = "";

		json_array_foreach(json_object_get(st, "sources"), i, sj)
			if (strlen(names) < 200)
				snprintf(names + strlen(names),
					 sizeof names - strlen(names), "%s%s",
					 names[0] ? ", " : "",
					 json_string_value(json_object_get(sj, "name")));
		ferry_error("%s is a fleet: %s acts on one source, "
			    "%s/NAME (sources: %s)", mnt, what, mnt,
			    names[0] ? names : "none yet");
		json_decref(st);
		return NULL;
	}
	return st;
}

static uint64_t
sum_disks(const json_t *st, const char *obj, const char *key)
{
	const json_t *dj;
	uint64_t s = 0;
	size_t i;

	json_array_foreach(json_object_get(st, "disks"), i, dj) {
		const json_t *o = obj ? json_object_get(dj, obj) : dj;
		json_int_t v = json_integer_value(json_object_get(o, key));

		s += v > 0 ? (uint64_t)v : 0;
	}
	return s;
}

/* A disk in state error: its name and error, or NULL. */
static const json_t *
failed_disk(const json_t *st)
{
	const json_t *dj;
	size_t i;

	json_array_foreach(json_object_get(st, "disks"), i, dj) {
		const char *s = json_string_value(json_object_get(dj, "state"));

		if (s && strcmp(s, "error") == 0)
			return dj;
	}
	return NULL;
}

static bool
all_complete(const json_t *st)
{
	const json_t *dj;
	size_t i;

	json_array_foreach(json_object_get(st, "disks"), i, dj) {
		const char *s = json_string_value(json_object_get(dj, "state"));

		if (!s || strcmp(s, "complete") != 0)
			return false;
	}
	return true;
}

/* One progress line, redrawn in place on a terminal; plain output gives
 * the stages and the outcome only. */
static void
progress(const char *what, double frac, const char *text)
{
	char bar[32];

	if (!opt_tty)
		return;
	printf("\r%s: %s %3u%% %s\033[K", what,
	       ctl_bar(frac, 20, bar, sizeof bar),
	       (unsigned)(frac >= 1 ? 100 : frac * 100), text);
	fflush(stdout);
}

static void
progress_end(void)
{
	if (opt_tty)
		fputc('\n', stdout);
}

static bool
timed_out(double start)
{
	return opt_timeout > 0 && ferry_now() - start > opt_timeout;
}

static int
cmd_resync(const char *mnt)
{
	json_t *st = load_member(mnt, "resync");
	double start = ferry_now();
	uint64_t total = 0;
	const char *last = "";

	if (!st || control(mnt, "resync")) {
		json_decref(st);
		return 1;
	}
	json_decref(st);
	for (;; usleep(200000)) {
		const json_t *rs, *bad;
		const char *state;
		uint64_t pending, cached, used;
		char a[32], b[32], text[256];

		if (!(st = load_status(mnt)))
			return 1;
		rs = json_object_get(st, "resync");
		state = json_string_value(json_object_get(rs, "state"));
		if (!state)
			state = "?";
		if (strcmp(state, last) != 0 && !opt_tty)
			printf("resync: %s\n", state);
		last = strcmp(state, "running") == 0 ? "running" :
		       strcmp(state, "done") == 0 ? "done" : "other";
		if (strcmp(state, "error") == 0 || strcmp(state, "stopped") == 0) {
			progress_end();
			ferry_error("%s: resync %s: %s", mnt, state,
				    json_string_value(json_object_get(rs, "error")) ?: "the mount is stopping");
			json_decref(st);
			return 1;
		}
		if ((bad = failed_disk(st))) {
			progress_end();
			ferry_error("%s: disk %s failed: %s", mnt,
				    json_string_value(json_object_get(bad, "name")),
				    json_string_value(json_object_get(bad, "error")) ?: "?");
			json_decref(st);
			return 1;
		}
		pending = sum_disks(st, "resync", "pending");
		cached = sum_disks(st, NULL, "cached");
		used = sum_disks(st, NULL, "used");
		if (strcmp(state, "done") == 0) {
			bool prefetch = json_is_true(json_object_get(st, "prefetch"));

			total = FERRY_MAX(total, pending);
			if (pending == 0 && (all_complete(st) || !prefetch)) {
				progress_end();
				printf("resync done: %" PRIu64 " chunks changed and "
				       "fetched again, %" PRIu64 " kept; map +%s -%s%s\n",
				       sum_disks(st, "resync", "changed"),
				       sum_disks(st, "resync", "kept"),
				       ctl_size(sum_disks(st, "resync", "grew"), a, sizeof a),
				       ctl_size(sum_disks(st, "resync", "shrank"), b, sizeof b),
				       prefetch || all_complete(st) ? "" :
				       "; the rest is fetched as it is read (prefetch=0)");
				json_decref(st);
				return 0;
			}
			snprintf(text, sizeof text, "%" PRIu64 " chunks to check, "
				 "%s of %s cached", pending,
				 ctl_size(cached, a, sizeof a), ctl_size(used, b, sizeof b));
			progress("resync", (double)(total - pending + cached) /
				 (double)(total + FERRY_MAX(used, 1)), text);
		} else {
			progress("resync", 0, "taking the source's new maps");
		}
		json_decref(st);
		if (timed_out(start)) {
			progress_end();
			ferry_error("%s: resync not done after %g s (it goes on)",
				    mnt, opt_timeout);
			return 1;
		}
	}
}

static int
cmd_verify(const char *mnt)
{
	json_t *st = load_member(mnt, "verify");
	double start = ferry_now();

	if (!st || control(mnt, "verify")) {
		json_decref(st);
		return 1;
	}
	json_decref(st);
	if (!opt_tty)
		printf("verify: running\n");
	for (;; usleep(200000)) {
		const json_t *rv;
		char state[32], text[128];
		uint64_t checked, differed, total;

		if (!(st = load_status(mnt)))
			return 1;
		rv = json_object_get(st, "reverify");
		snprintf(state, sizeof state, "%s",
			 json_string_value(json_object_get(rv, "state")) ?: "?");
		checked = (uint64_t)json_integer_value(json_object_get(rv, "checked"));
		differed = (uint64_t)json_integer_value(json_object_get(rv, "differed"));
		total = FERRY_MAX(sum_disks(st, NULL, "chunks_cached"), checked);
		json_decref(st);
		if (strcmp(state, "done") == 0) {
			progress_end();
			printf("verify done: %" PRIu64 " chunks checked, %" PRIu64
			       " differed from the source%s\n", checked, differed,
			       differed ? " (forgotten, to be fetched again)" : "");
			return 0;
		}
		if (strcmp(state, "running") != 0) {
			progress_end();
			ferry_error("%s: verify %s after %" PRIu64 " chunks (the "
				    "mount's log says why)", mnt, state,
				    checked);
			return 1;
		}
		snprintf(text, sizeof text, "%" PRIu64 " of %" PRIu64
			 " chunks checked, %" PRIu64 " differed", checked, total,
			 differed);
		progress("verify", total ? (double)checked / (double)total : 0,
			 text);
		if (timed_out(start)) {
			progress_end();
			ferry_error("%s: verify not done after %g s (it goes on)",
				    mnt, opt_timeout);
			return 1;
		}
	}
}

static int
cmd_bwlimit(const char *rate, const char *mnt)
{
	char p[PATH_MAX], line[64], buf[256] = "", a[32];
	json_t *st;
	uint64_t v, now;
	FILE *f;

	if (ferry_parse_size(rate, &v) < 0) {
		ferry_error("bwlimit: \"%s\" is not a rate (bytes/s, K/M/G "
			    "suffixes, 0 = none)", rate);
		return 2;
	}
	if (!(st = load_member(mnt, "bwlimit")))
		return 1;
	json_decref(st);
	snprintf(line, sizeof line, "bwlimit=%" PRIu64, v);
	if (control(mnt, line))
		return 1;
	ferry_path(p, sizeof p, mnt, "control");
	f = fopen(p, "re");
	if (!f || !fgets(buf, sizeof buf, f) ||
	    sscanf(buf, "bwlimit=%" SCNu64, &now) != 1) {
		if (f)
			fclose(f);
		ferry_error("%s: cannot read the cap back", p);
		return 1;
	}
	fclose(f);
	if (now != v) {
		ferry_error("%s: the cap reads %" PRIu64 ", not %" PRIu64, mnt,
			    now, v);
		return 1;
	}
	if (v)
		printf("%s: bwlimit now %s/s\n", mnt, ctl_size(v, a, sizeof a));
	else
		printf("%s: bwlimit now none\n", mnt);
	return 0;
}

/* Take the options in @argv from optind on, stopping at the first word
 * that is not one when @optstring starts with '+'. @return -1 to go on,
 * else the exit status. */
static int
take_opts(int argc, char **argv, const char *optstring)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "watch", optional_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			opt_json = true;
			break;
		case 'w':
			opt_watch = 2;
			if (optarg && (ferry_parse_duration(optarg, &opt_watch) < 0 ||
				       opt_watch <= 0)) {
				ferry_error("--watch: \"%s\" is not a time", optarg);
				return 2;
			}
			break;
		case 't':
			if (ferry_parse_duration(optarg, &opt_timeout) < 0) {
				ferry_error("--timeout: \"%s\" is not a time", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ferryctl %s\n", FERRY_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	return -1;
}

int
main(int argc, char **argv)
{
	const char *cmd;
	int r;

	ferry_log_init("ferryctl");
	if ((r = take_opts(argc, argv, "+hV")) >= 0)
		return r;
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	/* Options may come after the command too. */
	if ((r = take_opts(argc, argv, "hV")) >= 0)
		return r;
	opt_tty = isatty(STDOUT_FILENO);
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc, argv);
	if (strcmp(cmd, "resync") == 0 && argc == 1)
		return cmd_resync(argv[0]);
	if (strcmp(cmd, "verify") == 0 && argc == 1)
		return cmd_verify(argv[0]);
	if (strcmp(cmd, "bwlimit") == 0 && argc == 2)
		return cmd_bwlimit(argv[0], argv[1]);
	if (strcmp(cmd, "resync") && strcmp(cmd, "verify") &&
	    strcmp(cmd, "bwlimit"))
		ferry_error("no command \"%s\" (status, resync, verify, bwlimit)",
			    cmd);
	else
		ferry_error("%s: wrong arguments", cmd);
	usage(stderr);
	return 2;
}
