/* ferry — reverse connections: hello lines and CONNECT replies. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/reverse.h"

#define MAGIC "FERRY-SOURCE/1"
#define PROXY_HEAD_MAX 16384

bool
ferry_source_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > FERRY_SOURCE_NAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789_.-") == n;
}

static bool
token_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 16 && n <= 255 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789-._~") == n;
}

static bool
hex32_ok(const char *s)
{
	return strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

static bool
pin_ok(const char *s)
{
	return strlen(s) == 52 && strncmp(s, "sha256//", 8) == 0 &&
	       strspn(s + 8, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
		      "wxyz0123456789+/=") == 44 && s[51] == '=';
}

int
ferry_hello_format(const struct ferry_hello *h, char *out, size_t len)
{
	int n = snprintf(out, len, MAGIC " %s %s %s %s %s\n", h->token,
			 h->name, h->host_id, h->session, h->pin);

	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

/* The next space-separated word of [*p, end) into @out (@outlen with its
 * NUL). @return false if there is none or it does not fit. */
static bool
word(const char **p, const char *end, char *out, size_t outlen)
{
	const char *s = *p, *e;

	if (s >= end || *s != ' ')
		return false;
	s++;
	e = s;
	while (e < end && *e != ' ')
		e++;
	if (e == s || (size_t)(e - s) >= outlen)
		return false;
	memcpy(out, s, (size_t)(e - s));
	out[e - s] = '\0';
	*p = e;
	return true;
}

int
ferry_hello_parse(const char *line, size_t len, struct ferry_hello *h,
		  char *why, size_t whylen)
{
	const char *p = line, *end;

	memset(h, 0, sizeof *h);
	if (len > 0 && line[len - 1] == '\n')
		len--;
	end = line + len;
	if (memchr(line, '\0', len) || memchr(line, '\n', len)) {
		snprintf(why, whylen, "a control character in the hello");
		return -EPROTO;
	}
	if (len < sizeof MAGIC - 1 || memcmp(line, MAGIC, sizeof MAGIC - 1)) {
		snprintf(why, whylen, "not a ferry-export (no " MAGIC ")");
		return -EPROTO;
	}
	p += sizeof MAGIC - 1;
	if (!word(&p, end, h->token, sizeof h->token) || !token_ok(h->token)) {
		snprintf(why, whylen, "a malformed token");
		return -EPROTO;
	}
	if (!word(&p, end, h->name, sizeof h->name) ||
	    !ferry_source_name_ok(h->name)) {
		snprintf(why, whylen, "a malformed source name");
		return -EPROTO;
	}
	if (!word(&p, end, h->host_id, sizeof h->host_id) ||
	    !hex32_ok(h->host_id) ||
	    !word(&p, end, h->session, sizeof h->session) ||
	    !hex32_ok(h->session)) {
		snprintf(why, whylen, "a malformed host id or session");
		return -EPROTO;
	}
	if (!word(&p, end, h->pin, sizeof h->pin) || !pin_ok(h->pin)) {
		snprintf(why, whylen, "a malformed key pin");
		return -EPROTO;
	}
	if (p != end) {
		snprintf(why, whylen, "trailing words in the hello");
		return -EPROTO;
	}
	return 0;
}

int
ferry_hello_reply_parse(const char *line, size_t len, bool *ok, char *text,
			size_t textlen)
{
	size_t k = 0;

	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len >= 3 && memcmp(line, "OK ", 3) == 0)
		*ok = true;
	else if (len >= 3 && memcmp(line, "NO ", 3) == 0)
		*ok = false;
	else
		return -EPROTO;
	if (textlen == 0)
		return -EPROTO;
	for (size_t i = 3; i < len && k + 1 < textlen; i++)
		if ((unsigned char)line[i] >= 0x20 && line[i] != 0x7f)
			text[k++] = line[i];
	text[k] = '\0';
	if (*ok && !ferry_source_name_ok(text))
		return -EPROTO;
	return 0;
}

int
ferry_proxy_reply_parse(const char *buf, size_t len, int *code,
			size_t *head_len)
{
	const char *end = NULL;
	size_t n = len < PROXY_HEAD_MAX ? len : PROXY_HEAD_MAX;

	/* The status line can be judged before the head ends. */
	if (n >= 5 && memcmp(buf, "HTTP/", 5) != 0)
		return -EPROTO;
	for (size_t i = 0; i + 3 < n; i++)
		if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
			end = buf + i + 4;
			break;
		}
	if (!end)
		return len >= PROXY_HEAD_MAX ? -EPROTO : -EAGAIN;
	/* "HTTP/1.x NNN" */
	if (end - buf < 12 || memcmp(buf, "HTTP/1.", 7) != 0 ||
	    (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' ||
	    buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' ||
	    buf[11] < '0' || buf[11] > '9')
		return -EPROTO;
	*code = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	*head_len = (size_t)(end - buf);
	return 0;
}
