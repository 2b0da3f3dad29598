/* ferryfs --listen: a fleet of sources that dial in.
 *
 *   listen.c  the TCP listener: TLS as the server, the hello and its
 *             token, and per source a Unix socket where curl's
 *             connections are paired with the source's idle ones
 *   fleet.c   the members (a ferryfs of each source), their directories
 *             and names, the fleet's FUSE operations and status.json
 */
#ifndef FERRYFS_FLEET_H
#define FERRYFS_FLEET_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/un.h>

#include <openssl/ssl.h>

#include "common/reverse.h"
#include "fs/ferryfs.h"

#define FLEET_MAX 1024		/* sources one mount takes */
#define SOURCE_CONNS_MAX 64	/* connections of one source at most */
#define PENDING_MAX 64		/* connections in handshake at most */

/* A connection a source dialled, its hello answered, waiting to carry a
 * curl connection. */
struct lconn {
	struct lconn *next;
	int fd;
};

/* A source as the listener knows it. */
struct rsource {
	unsigned idx;			/* in fleet->members */
	char key[33];			/* identity: hash of host id + name */
	struct ferry_hello hello;	/* the last one (token cleared) */
	char dir[FERRY_SOURCE_NAME_MAX + 1];	/* its directory */
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	/* The Unix socket curl connects to; -1 tells its acceptor to stop
	 * (rsource_stop), so read by it without a lock. */
	_Atomic int ufd;
	pthread_t acceptor;
	bool acceptor_started;

	pthread_mutex_t lock;
	pthread_cond_t more;		/* a connection joined @idle */
	struct lconn *idle;
	unsigned nidle, nactive;	/* under lock */
	char peer[80];			/* address of its last connection */
	time_t since;			/* connected since (0: not now) */
	time_t last_seen;
	_Atomic unsigned long long relayed;	/* bytes from it to curl */
	_Atomic unsigned long long dials;	/* connections it made */
	_Atomic unsigned pairs;		/* relay threads alive */
};

struct fleet;
struct fuse_args;
struct fuse_cmdline_opts;

struct listener {
	struct fleet *fleet;
	int fd;
	SSL_CTX *ctx;
	char pin[128];
	char token[256];
	unsigned char token_hash[32];
	char addr[300];			/* HOST:PORT listened on */
	char cert_path[PATH_MAX];	/* our certificate and key, which */
	char key_path[PATH_MAX];	/* curl shows the exporters */
	double hello_timeout;		/* seconds for TLS and the hello */
	_Atomic unsigned pending;	/* connections in handshake */
	pthread_t tid;
	bool started;
	atomic_bool stop;
};

/* listen.c */

/*! listen_open() : bind @addr (HOST:PORT) and load or make the key
 * (@cert/@key, or kept in @dir) and token (kept in @dir). Writes the
 * connection string sources dial to @url. @return 0 or -errno, logged. */
int listen_open(struct listener *l, const char *addr, const char *cert,
		const char *key, const char *dir, const char *advertise,
		char *url, size_t urllen);

/*! listen_start() : accept in a thread (after daemonizing). */
int listen_start(struct listener *l);

/*! listen_stop() : stop accepting and close every connection. */
void listen_stop(struct listener *l);

/*! rsource_start() : open @rs's Unix socket and its acceptor. */
int rsource_start(struct listener *l, struct rsource *rs);

/*! rsource_live() : connections @rs has now (dead idle ones pruned). */
unsigned rsource_live(struct rsource *rs);

/*! rsource_stop() : close @rs's socket and idle connections. */
void rsource_stop(struct rsource *rs);

/* fleet.c */

/*! fleet_hello() : a source's hello passed the token: find or make its
 * source and directory. @return the source, or NULL with the refusal in
 * @why ("busy: ..." when the same source is connected from another
 * process). */
struct rsource *fleet_hello(struct fleet *f, const struct ferry_hello *h,
			    const char *peer, char *why, size_t whylen);

/*! fleet_joined() : @rs has a new idle connection: set up its member if
 * it has none yet (in the background). */
void fleet_joined(struct fleet *f, struct rsource *rs);

struct fleet_opts {
	const char *listen, *cert, *key, *url_file, *advertise, *cache;
	const char *mountpoint;
};

/*! fleet_run() : mount a fleet at @fo->mountpoint and serve it until
 * unmounted; members take their settings from @tmpl and @hopts.
 * @return the exit code. */
int fleet_run(const struct fleet_opts *fo, struct fuse_args *args,
	      struct fuse_cmdline_opts *cmd, struct ferryfs *tmpl,
	      const struct ferry_http_opts *hopts);

#endif
