/* The PROXY protocol (v1 text, v2 binary): pure encode and parse. */
#ifndef SN_PROXY_H
#define SN_PROXY_H

#include <sys/socket.h>
#include <netinet/in.h>

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum proxy_version {
	PROXY_OFF = 0,
	PROXY_V1 = 1,
	PROXY_V2 = 2,
	PROXY_ANY = 3, /* parse only: either version */
};

#define PROXY_V1_MAX        107 /* a v1 line with its CRLF, at most */
#define PROXY_V2_HDR        16  /* signature, version/command, family, length */
#define PROXY_UNIQUE_ID_MAX 128
#define PROXY_IN_MAX                                                           \
	536 /* a header we accept, at most (v2: 520 after the fixed part) */
#define PROXY_OUT_MAX 512 /* a header we send, at most */

#define PROXY_TLV_UNIQUE_ID 0x05
#define PROXY_TLV_SSL       0x20

union proxy_sockaddr {
	struct sockaddr     sa;
	struct sockaddr_in  sin;
	struct sockaddr_in6 sin6;
};

/* A TLV to send (v2): the SSL one goes here once TLS exists. */
struct proxy_tlv {
	uint8_t     type;
	uint16_t    len;
	const void *value;
};

/* What a parsed header says. */
struct proxy_hdr {
	int version;
	int local; /* LOCAL, UNKNOWN, or no inet address: use the real peer */
	union proxy_sockaddr src;
	union proxy_sockaddr dst;
	uint8_t              unique_id[PROXY_UNIQUE_ID_MAX];
	size_t               unique_id_len;
};

/* One trusted_proxies entry: an address and a prefix length. */
struct proxy_cidr {
	int     family;
	uint8_t addr[16];
	int     bits;
};

ssize_t     proxy_encode(void *out, size_t outlen, enum proxy_version,
	const struct sockaddr *src, const struct sockaddr *dst,
	const struct proxy_tlv *tlvs, size_t ntlvs);
ssize_t     proxy_parse(const void *buf, size_t len, enum proxy_version accept,
	struct proxy_hdr *, const char **cause);
const char *proxy_version_name(enum proxy_version);
int         proxy_cidr_parse(const char *, struct proxy_cidr *);
int
proxy_cidr_match(const struct proxy_cidr *, size_t n, const struct sockaddr *);

#endif
