/* One client connection and its worker connection: the byte path. */
#ifndef SN_RELAY_H
#define SN_RELAY_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "counters.h"
#include "proxy.h"

struct listener;
struct service;
struct tls_conn;
struct worker;

#define RELAY_ATTEMPTS 5 /* workers a client may fail to reach */

/* One direction; bytes the destination could not take yet wait in buf. */
struct relay_half {
	char    *buf;
	size_t   off;
	size_t   len;
	uint64_t total;    /* bytes delivered to the destination */
	unsigned done : 1; /* FIN passed on, or direction dropped */
};

/*
 * [handshake ->] queued -> connecting -> open -> closing; connecting or
 * open -> queued
 * again when the pool moves the client to another worker.  A closing
 * relay holds no descriptor and no worker; it is freed once the current
 * callback is over, so no caller has to learn that it was.
 */
enum relay_state {
	RELAY_HANDSHAKE, /* tls: accepted, before any worker is involved */
	RELAY_QUEUED,    /* accepted, waiting for a worker */
	RELAY_CONNECTING,
	RELAY_OPEN,
	RELAY_CLOSING,
};

/*
 * How a relay's worker names our end of their connection in peer-info
 * queries: its address for TCP, or for Unix the abstract name
 * control_bind() gave it, else the inode of our end.
 */
enum relay_peer {
	RELAY_PEER_NONE,  /* not indexed for peer-info queries */
	RELAY_PEER_BOUND, /* our end has a name, not indexed yet */
	RELAY_PEER_TCP,   /* indexed by our end's address */
	RELAY_PEER_NAME,  /* indexed by our end's name */
	RELAY_PEER_INODE, /* unnamed: indexed by our end's inode */
};

struct relay {
	TAILQ_ENTRY(relay) entry; /* on the service's queue while waiting */
	TAILQ_ENTRY(relay) all;   /* the service's relays */
	TAILQ_ENTRY(relay) keyed; /* peer-info index of its worker */
	TAILQ_ENTRY(relay) kick;  /* to run again after the next poll */
	struct service   *svc;
	struct listener  *listener; /* that accepted it */
	struct worker    *worker;
	struct worker    *peer_worker;
	enum relay_state  state;
	short             cmask;  /* cev added (OPEN); the handshake's wait */
	short             wmask;  /* wev added (OPEN) */
	short             cready; /* edges seen on the client, not used up */
	short             wready; /* and on the worker connection */
	unsigned          awaiting : 1; /* sent to the worker, no reply yet */
	unsigned          replied : 1;  /* the worker sent a byte */
	unsigned          keep : 1;    /* keep a copy of what the client sent */
	unsigned          waiting : 1; /* on the service's queue */
	unsigned          owed : 1;    /* proxy_protocol header not sent yet */
	unsigned          wait_counted : 1; /* in the queue wait histogram */
	unsigned          kicked : 1;       /* on the kick list */
	unsigned          finished : 1; /* the worker ended its side (FIN) */
	int               half_end;     /* the first direction to end, or -1 */
	int               attempts;
	unsigned          tried[RELAY_ATTEMPTS]; /* serials that failed it */
	int               cfd;
	int               wfd;
	long long         accepted; /* ms */
	long long         queued;   /* ms: queue_timeout runs from here */
	long long         since;    /* ms: connect started */
	long long         opened;   /* ms: worker connected, 0 before */
	long long         last_active;
	long long         wait_since; /* ms: entered the queue */
	long long         waited;     /* ms in the queue, all told */
	struct tls_conn  *tls;        /* the client's TLS session, if any */
	short             tlsrd;      /* what a TLS read waits for */
	short             tlswr;      /* what a TLS write waits for */
	char             *replay;     /* what the client sent, while kept */
	size_t            replaylen;  /* bytes the client sent before a reply */
	struct relay_half up;         /* client to worker */
	struct relay_half down;       /* worker to client */
	/*
	 * Two events: cev is the client's (a plain timer while the client
	 * waits for a worker), wev the worker connection's.
	 */
	struct event cev;
	struct event wev;
	union {
		struct sockaddr     sa;
		struct sockaddr_in  sin;
		struct sockaddr_in6 sin6;
	} peer; /* the client, or the one a trusted PROXY header names */

	/* The address the client reached (AF_UNSPEC: not looked up yet). */
	union proxy_sockaddr local;
	/* A serial, for the PROXY v2 unique id. */
	uint64_t id;

	/* How its worker names our end, for peer-info queries (control.c). */
	enum relay_peer      peer_kind;
	uint32_t             key; /* port, name serial or inode: a bucket */
	uint64_t             name_tag; /* the random part of our end's name */
	union proxy_sockaddr wend;     /* RELAY_PEER_TCP: our end's address */
};
TAILQ_HEAD(relay_head, relay);

struct relay *relay_new(
    struct listener *, int fd, const struct sockaddr *peer, socklen_t len);
void        relay_wait(struct relay *);
void        relay_wait_first(struct relay *);
void        relay_unwait(struct relay *);
void        relay_connect(struct relay *);
int         relay_unread(const struct relay *);
int         relay_replayable(struct relay *);
void        relay_rewind(struct relay *);
void        relay_close(struct relay *, enum relay_end, int error);
void        relay_handed(struct relay *);
void        relay_finished(struct relay *);
int         relay_handshake(struct relay *);
const char *relay_peer(const struct relay *, char *buf, size_t len);

void relay_set_local(struct relay *, const struct sockaddr *local);

#endif
