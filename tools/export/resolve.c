/* ferry-export — host names to addresses, with or without glibc's NSS.
 *
 * A numeric address never needs a resolver: it is parsed first, with
 * AI_NUMERICHOST, which glibc answers without loading anything. A name
 * goes to getaddrinfo() in a normal build, so that nsswitch.conf is
 * honoured. A static build (-Dstatic_export=true, FERRY_STATIC) cannot
 * load NSS modules from whatever glibc the source server has, so there
 * names are resolved by libevent's evdns, which reads /etc/hosts and
 * /etc/resolv.conf itself and speaks DNS on its own sockets.
 */
#include <errno.h>
#include <stdio.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "tools/export/export.h"

#ifdef FERRY_STATIC
struct lookup {
	int err;
	struct evutil_addrinfo *res;
	bool done;
};

static void
lookup_done(int err, struct evutil_addrinfo *res, void *arg)
{
	struct lookup *l = arg;

	l->err = err;
	l->res = res;
	l->done = true;
}

/* @host by evdns, within 10 s (evdns retries each server thrice). */
static int
resolve_evdns(const char *host, const char *port,
	      const struct evutil_addrinfo *hints, struct evutil_addrinfo **res)
{
	struct event_base *base = event_base_new();
	struct evdns_base *dns;
	struct lookup l = { 0 };

	if (!base)
		return EVUTIL_EAI_MEMORY;
	dns = evdns_base_new(base, 0);
	if (!dns) {
		event_base_free(base);
		return EVUTIL_EAI_MEMORY;
	}
	/* /etc/hosts, then the name servers of /etc/resolv.conf; either may
	 * be missing (a chroot, a container). */
	evdns_base_load_hosts(dns, "/etc/hosts");
	evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL & ~DNS_OPTION_HOSTSFILE,
				     "/etc/resolv.conf");
	evdns_base_set_option(dns, "timeout:", "3");
	evdns_base_set_option(dns, "attempts:", "3");
	/* NULL: answered at once (the callback has run). */
	evdns_getaddrinfo(dns, host, port, hints, lookup_done, &l);
	if (!l.done)
		event_base_dispatch(base);
	evdns_base_free(dns, 0);
	event_base_free(base);
	if (!l.done)
		return EVUTIL_EAI_FAIL;
	*res = l.res;
	return l.err;
}
#endif

int
export_resolve(const char *host, const char *port, bool passive,
	       struct addrinfo **res, char *why, size_t whylen)
{
	struct evutil_addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
		.ai_protocol = IPPROTO_TCP,
		.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_NUMERICHOST |
			    (passive ? EVUTIL_AI_PASSIVE : 0),
	};
	int r;

	*res = NULL;
	r = evutil_getaddrinfo(host && host[0] ? host : NULL, port, &hints, res);
	if (r == 0)
		return 0;
	if (!host || !host[0] || r != EVUTIL_EAI_NONAME) {
		snprintf(why, whylen, "%s: %s", host && host[0] ? host : "*",
			 evutil_gai_strerror(r));
		return -EINVAL;
	}
	hints.ai_flags &= ~EVUTIL_AI_NUMERICHOST;
#ifdef FERRY_STATIC
	r = resolve_evdns(host, port, &hints, res);
#else
	r = evutil_getaddrinfo(host, port, &hints, res);
#endif
	if (r) {
		snprintf(why, whylen, "%s: %s", host, evutil_gai_strerror(r));
		return -EHOSTUNREACH;
	}
	return 0;
}

void
export_freeaddrinfo(struct addrinfo *res)
{
	if (res)
		evutil_freeaddrinfo(res);
}
