/*
 * The control channel's wire format, shared by the master and the agent
 * library.  A frame is a 4-byte header -- version (1), type, payload
 * length (16 bits, big-endian, at most SN_PROTO_MAX) -- then the payload:
 * "key=value" lines separated by '\n'.  A "text" field, when present, is
 * the last one and runs to the end of the payload.  socketnaut-agent(7)
 * documents every message with test vectors.
 */
#ifndef SOCKETNAUT_PROTO_H
#define SOCKETNAUT_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SN_PROTO_VERSION 1
#define SN_PROTO_HDR     4
#define SN_PROTO_MAX     4096

enum sn_msg_type {
	/* worker to master */
	SN_MSG_READY = 0x01,      /* [address=HOST:PORT | port=N] */
	SN_MSG_PEER_QUERY = 0x02, /* id=N, key=K */
	SN_MSG_LOG = 0x03,        /* level=0..7, text=... */
	SN_MSG_DRAINED = 0x04,    /* (empty) */
	SN_MSG_HELLO = 0x05,      /* (empty): an agent, name my connections */
	SN_MSG_CLOSED = 0x06,     /* id=N: a handed connection closed */
	/* master to worker */
	SN_MSG_PEER_INFO = 0x81, /* id, status, remote_*, local_* */
	SN_MSG_DRAIN = 0x82,     /* (empty) */
	/* id, remote_*, local_*; one fd rides with its first byte */
	SN_MSG_HANDOFF = 0x83,
};

struct sn_msg {
	uint8_t     type;
	uint16_t    len;
	const char *payload; /* not NUL-terminated */
};

ssize_t sn_proto_parse(const void *, size_t, struct sn_msg *, const char **);
ssize_t sn_proto_frame(void *, size_t, uint8_t, const char *, size_t);
int     sn_proto_field(const struct sn_msg *, const char *, char *, size_t);
const char *sn_proto_type_name(uint8_t);

#endif
