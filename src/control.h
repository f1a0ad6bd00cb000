/* The master's end of a worker's control channel. */
#ifndef SN_CONTROL_H
#define SN_CONTROL_H

#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "relay.h"
#include "socketnaut/proto.h"

struct relay;
struct sockaddr;
struct worker;

#define CONTROL_PEER_BUCKETS 64

/* A token bucket in thousandths of a log line; see control_log_take(). */
struct control_bucket {
	long long tokens; /* thousandths of a line */
	long long at;     /* ms of the last refill */
	long long rate;   /* lines a second */
	long long burst;  /* lines at once: a full bucket */
};

struct control {
	struct worker *w;
	int            fd;
	struct event   rev;
	struct event   wev;
	struct event   more;    /* a flood: the rest waits for the next turn */
	struct event   summary; /* suppressed log lines are due to be told */
	unsigned char  in[SN_PROTO_HDR + SN_PROTO_MAX];
	size_t         inlen;
	unsigned char *out;
	size_t         outoff;
	size_t         outlen;
	unsigned long long suppressed; /* log lines dropped, not yet told */
	int                dropping;   /* frames wasted since drop_since */
	long long          drop_since;
	int                paused;     /* over its log budget: read later */
	int                readied;    /* a ready message came */
	int                drain_sent; /* we asked it to drain */
	int                drained;    /* it said it drained */
	int                spoke;      /* an agent: drain, do not signal */
	int                hello;      /* a hello message came */
	int                bare_told;  /* its bare-port keys were logged */

	/* Its budget of sock_diag lookups for "ino:" keys. */
	struct control_bucket inodes;
};

/* A peer-info key, parsed: which of a worker's connections it names. */
struct control_key {
	enum relay_peer      kind; /* RELAY_PEER_NONE: none of them */
	uint32_t             key;  /* as relay->key */
	uint64_t             tag;  /* RELAY_PEER_NAME */
	union proxy_sockaddr addr; /* RELAY_PEER_TCP */
	int                  bare; /* a port alone, which is refused */
};

struct control *control_open(struct worker *, int);
void            control_close(struct control *, const char *);
void            control_drain(struct control *);
int             control_names_peers(const struct worker *);
void            control_bind(struct relay *, struct worker *);
void            control_peer_add(struct worker *, struct relay *);
void            control_peer_del(struct relay *);
int  control_log_take(struct control_bucket *, long long now, size_t textlen);
void control_key_parse(const char *key, struct control_key *);

/* mode handoff (handoff.c) */
int control_send_fd(
    struct control *, uint8_t type, const char *payload, size_t len, int fd);
void control_addr_fields(FILE *, const char *side, const struct sockaddr *);

#endif
