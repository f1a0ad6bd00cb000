/* One client connection and its worker connection: the byte path. */
#ifndef SN_RELAY_H
#define SN_RELAY_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

struct service;
struct worker;

/* One direction; bytes the destination could not take yet wait in buf. */
struct relay_half {
	char    *buf;
	size_t   off;
	size_t   len;
	unsigned done : 1; /* FIN passed on, or direction dropped */
};

enum relay_state {
	RELAY_WAITING, /* accepted, no worker connection yet */
	RELAY_CONNECTING,
	RELAY_OPEN,
};

struct relay {
	TAILQ_ENTRY(relay) entry; /* on a waiting list while WAITING */
	TAILQ_ENTRY(relay) all;   /* the service's relays */
	TAILQ_ENTRY(relay) keyed; /* peer-info index of its worker */
	struct relay_head *waitlist;
	struct service    *svc;
	struct worker     *worker;
	struct worker     *peer_worker;
	uint32_t           key;   /* the worker's view of our address */
	int                named; /* control_bind() named our end */
	enum relay_state   state;
	short              cmask; /* events cev waits for while OPEN */
	short              wmask;
	int                attempts;
	int                cfd;
	int                wfd;
	long long          accepted; /* ms */
	long long          since;    /* ms: connect started */
	long long          last_active;
	struct relay_half  up;   /* client to worker */
	struct relay_half  down; /* worker to client */
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
	} peer;
};
TAILQ_HEAD(relay_head, relay);

struct relay      *
relay_new(struct service *, int, const struct sockaddr *, socklen_t);
void relay_wait(struct relay *, struct relay_head *);
void relay_unwait(struct relay *);
void relay_connect(struct relay *);
void relay_redispatch(struct relay *);
void relay_close(struct relay *, const char *);
int  relay_finished(struct relay *);
const char *relay_peer(const struct relay *, char *, size_t);

#endif
