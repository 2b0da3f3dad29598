/* Reverse connections' lines: the exporter's hello parses and formats back
 * identically; every broken one is refused with a reason; the transit's
 * OK/NO replies and CONNECT proxies' replies parse as documented. */
#include <errno.h>
#include <string.h>

#include "common/reverse.h"
#include "check.h"

#define TOK "5e3b5e044c0d5eecdd538812a8b06419"
#define HID "25c1086609e250e520720a50d02a9d2c"
#define SES "492233dd0000000000000000000000ab"
#define PIN "sha256//ghibPeJyGeVQEbNtwemVEmABky+GXFMqn1iQJcgz5aw="
#define GOOD "FERRY-SOURCE/1 " TOK " web01 " HID " " SES " " PIN "\n"

int
main(void)
{
	static const struct { const char *s, *why; } bad[] = {
		{ "", "FERRY-SOURCE/1" },
		{ "GET / HTTP/1.1\r\n", "FERRY-SOURCE/1" },
		{ "FERRY-SOURCE/1 short web01 " HID " " SES " " PIN, "token" },
		{ "FERRY-SOURCE/1 " TOK " .hidden " HID " " SES " " PIN, "name" },
		{ "FERRY-SOURCE/1 " TOK " a/b " HID " " SES " " PIN, "name" },
		{ "FERRY-SOURCE/1 " TOK "  web01 " HID " " SES " " PIN, "name" },
		{ "FERRY-SOURCE/1 " TOK " web01 " HID " 492233DD0000000000000000000000AB " PIN, "session" },
		{ "FERRY-SOURCE/1 " TOK " web01 " HID " " SES " md5//x", "pin" },
		{ "FERRY-SOURCE/1 " TOK " web01 " HID " " SES, "pin" },
		{ "FERRY-SOURCE/1 " TOK " web01 " HID " " SES " " PIN " more", "trailing" },
		{ "FERRY-SOURCE/1 " TOK " web01 " HID " " SES " " PIN "\n\n", "control" },
	};
	struct ferry_hello h;
	char why[200], out[FERRY_HELLO_MAX], text[64];
	size_t head;
	bool ok;
	int code;

	CHECK(ferry_hello_parse(GOOD, strlen(GOOD), &h, why, sizeof why) == 0);
	CHECK(strcmp(h.token, TOK) == 0 && strcmp(h.name, "web01") == 0 &&
	      strcmp(h.host_id, HID) == 0 && strcmp(h.session, SES) == 0 &&
	      strcmp(h.pin, PIN) == 0);
	CHECK(ferry_hello_format(&h, out, sizeof out) == (int)strlen(GOOD));
	CHECK(strcmp(out, GOOD) == 0);
	CHECK(ferry_hello_format(&h, out, 20) == -ENOSPC);
	/* The embedded NUL a C string would hide. */
	CHECK(ferry_hello_parse(GOOD, 30, &h, why, sizeof why) == -EPROTO);
	memcpy(out, GOOD, sizeof GOOD);
	out[20] = '\0';
	CHECK(ferry_hello_parse(out, strlen(GOOD), &h, why, sizeof why) == -EPROTO);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why[0] = '\0';
		CHECK(ferry_hello_parse(bad[i].s, strlen(bad[i].s), &h, why,
					sizeof why) == -EPROTO);
		if (!strstr(why, bad[i].why))
			fprintf(stderr, "%s: reason \"%s\" lacks \"%s\"\n",
				bad[i].s, why, bad[i].why);
		CHECK(strstr(why, bad[i].why) != NULL);
	}

	CHECK(ferry_source_name_ok("db01.example-2_b"));
	CHECK(!ferry_source_name_ok("") && !ferry_source_name_ok("-x") &&
	      !ferry_source_name_ok("..") && !ferry_source_name_ok("a b"));
	CHECK(!ferry_source_name_ok("a123456789012345678901234567890123456789012345678901234567890123"));

	CHECK(ferry_hello_reply_parse("OK web01\n", 9, &ok, text, sizeof text) == 0);
	CHECK(ok && strcmp(text, "web01") == 0);
	CHECK(ferry_hello_reply_parse("OK ../etc\n", 10, &ok, text, sizeof text) == -EPROTO);
	CHECK(ferry_hello_reply_parse("NO wrong\ttoken\x1b[2J\n", 19, &ok, text, sizeof text) == 0);
	CHECK(!ok && strcmp(text, "wrongtoken[2J") == 0);
	CHECK(ferry_hello_reply_parse("MAYBE\n", 6, &ok, text, sizeof text) == -EPROTO);

	static const char r200[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	static const char r407[] = "HTTP/1.0 407 Auth\r\nProxy-Authenticate: Basic\r\n\r\nbody";
	CHECK(ferry_proxy_reply_parse(r200, strlen(r200), &code, &head) == 0);
	CHECK(code == 200 && head == strlen(r200));
	CHECK(ferry_proxy_reply_parse(r407, strlen(r407), &code, &head) == 0);
	CHECK(code == 407 && head == strlen(r407) - 4);
	CHECK(ferry_proxy_reply_parse(r200, 20, &code, &head) == -EAGAIN);
	CHECK(ferry_proxy_reply_parse("HTT", 3, &code, &head) == -EAGAIN);
	CHECK(ferry_proxy_reply_parse("SSH-2.0-x\r\n\r\n", 13, &code, &head) == -EPROTO);
	CHECK(ferry_proxy_reply_parse("HTTP/2 200\r\n\r\n", 14, &code, &head) == -EPROTO);
	CHECK(ferry_proxy_reply_parse("HTTP/1.1 2x0 OK\r\n\r\n", 19, &code, &head) == -EPROTO);
	return check_result("unit-reverse");
}
