/* Connection strings: the good forms parse, format back identically, and
 * every broken one is refused with a reason. */
#include <errno.h>
#include <string.h>

#include "common/connstr.h"
#include "check.h"

#define PIN "sha256//VImhEGwrybNU9RQL3xOXBQwNEiwqcICpvSyvfs4xnkg="

int
main(void)
{
	static const char *good[] = {
		"ferry://abc123@127.0.0.1:8703/?pin=" PIN,
		"ferry://tok-en_1.~@host.example:1/?pin=" PIN,
		"ferry://t@[::1]:65535/?pin=" PIN,
	};
	static const struct { const char *s, *why; } bad[] = {
		{ "", "ferry://" },
		{ "https://t@h:1/?pin=" PIN, "ferry://" },
		{ "ferry://h:1/?pin=" PIN, "TOKEN" },
		{ "ferry://@h:1/?pin=" PIN, "TOKEN" },
		{ "ferry://t%20@h:1/?pin=" PIN, "URL-safe" },
		{ "ferry://t@:1/?pin=" PIN, "empty host" },
		{ "ferry://t@h/?pin=" PIN, "PORT" },
		{ "ferry://t@h:0/?pin=" PIN, "range" },
		{ "ferry://t@h:65536/?pin=" PIN, "range" },
		{ "ferry://t@h:x/?pin=" PIN, "number" },
		{ "ferry://t@[::1/?pin=" PIN, "IPv6" },
		{ "ferry://t@[?1]:1/?pin=" PIN, "IPv6" },	/* fuzzer */
		{ "ferry://t@[host]:1/?pin=" PIN, "IPv6" },
		{ "ferry://t@h%41:1/?pin=" PIN, "host" },
		{ "ferry://t@h~x:1/?pin=" PIN, "host" },
		{ "ferry://t@h:1/", "pin" },
		{ "ferry://t@h:1/?pin=md5//abc", "sha256//" },
		{ "ferry://t@h:1/?pin=sha256//short=", "44" },
		{ "ferry://t@h:1/?pin=sha256//VImhEGwrybNU9RQL3xOXBQwNEiwqcICpvSyvfs4xnk!=", "44" },
		{ "ferry://t@h:1/?pin=" PIN "&pin=" PIN, "twice" },
	};
	struct ferry_connstr c;
	char why[200], out[600];

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		CHECK(ferry_connstr_parse(good[i], &c, why, sizeof why) == 0);
		CHECK(ferry_connstr_format(&c, out, sizeof out) > 0);
		CHECK(strcmp(out, good[i]) == 0);
	}
	CHECK(ferry_connstr_parse(good[2], &c, why, sizeof why) == 0);
	CHECK(strcmp(c.host, "::1") == 0 && c.port == 65535);
	CHECK(strcmp(c.token, "t") == 0 && strcmp(c.pin, PIN) == 0);
	CHECK(ferry_connstr_base_url(&c, out, sizeof out) > 0);
	CHECK(strcmp(out, "https://[::1]:65535") == 0);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why[0] = '\0';
		CHECK(ferry_connstr_parse(bad[i].s, &c, why, sizeof why) ==
		      -EINVAL);
		if (!strstr(why, bad[i].why))
			fprintf(stderr, "%s: reason \"%s\" lacks \"%s\"\n",
				bad[i].s, why, bad[i].why);
		CHECK(strstr(why, bad[i].why) != NULL);
	}
	return check_result("unit-connstr");
}
