/* ferry — reverse connections: the lines a dialling exporter and the
 * transit's listener exchange inside TLS before HTTP, and the reply of an
 * HTTP CONNECT proxy (reverse.c; doc/protocol.md, "Reverse connections").
 *
 *   exporter:  FERRY-SOURCE/1 TOKEN NAME HOSTID SESSION PIN\n
 *   transit:   OK DIRECTORY\n   or   NO REASON\n
 *
 * PIN is the pin of the key the exporter's own HTTPS server shows on this
 * connection once the hello is done (the TLS of the hello ends there; the
 * transit's curl and the exporter's server speak TLS of their own, end to
 * end, through the relays). Pure parsing and formatting: the sockets are
 * relay.c's.
 */
#ifndef FERRY_REVERSE_H
#define FERRY_REVERSE_H

#include <stdbool.h>
#include <stddef.h>

#define FERRY_HELLO_MAX 1024	/* longest line either side sends */
#define FERRY_SOURCE_NAME_MAX 63

struct ferry_hello {
	char token[256];	/* the transit's, URL-safe, 16-255 */
	char name[FERRY_SOURCE_NAME_MAX + 1];	/* hostname or --name */
	char host_id[33];	/* 32 hex digits */
	char session[33];	/* 32 hex digits, new at each start */
	char pin[128];		/* "sha256//" + 44 base64 characters */
};

/*! ferry_source_name_ok() : 1-63 of [A-Za-z0-9_.-], not starting with '.'
 * or '-': a hostname, usable as a directory name. */
bool ferry_source_name_ok(const char *s);

/*! ferry_hello_format() : the exporter's line for @h, with its newline.
 * @return its length, or -ENOSPC. */
int ferry_hello_format(const struct ferry_hello *h, char *out, size_t len);

/*! ferry_hello_parse() : parse the exporter's line (@len bytes, with or
 * without the newline). @return 0, or -EPROTO with the reason in @why. */
int ferry_hello_parse(const char *line, size_t len, struct ferry_hello *h,
		      char *why, size_t whylen);

/*! ferry_hello_reply_parse() : the transit's answer: "OK DIR" sets @ok and
 * puts DIR in @text, "NO REASON" clears it and puts REASON (control
 * characters dropped) in @text. @return 0, or -EPROTO for anything else. */
int ferry_hello_reply_parse(const char *line, size_t len, bool *ok,
			    char *text, size_t textlen);

/*! ferry_proxy_reply_parse() : an HTTP CONNECT proxy's reply in @buf
 * (@len bytes so far). @return 0 once the head is whole, with its status
 * code in @code and its length in @head_len; -EAGAIN if more is needed;
 * -EPROTO if it is not HTTP or is longer than 16 KiB. */
int ferry_proxy_reply_parse(const char *buf, size_t len, int *code,
			    size_t *head_len);

#endif
