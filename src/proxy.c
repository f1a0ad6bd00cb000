/*
 * The PROXY protocol (HAProxy's doc/proxy-protocol.txt), versions 1 and 2:
 * build the header the master sends a worker before any client byte, and
 * parse, strictly and incrementally, the one a front load balancer sends
 * the master.  Pure functions over caller buffers: no allocation, no I/O.
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

static const uint8_t proxy_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a,
	0x51, 0x55, 0x49, 0x54, 0x0a };

#define PROXY_V2_VERSION 0x20
#define PROXY_CMD_LOCAL  0x00
#define PROXY_CMD_PROXY  0x01
#define PROXY_AF_UNSPEC  0x00
#define PROXY_TCP4       0x11
#define PROXY_TCP6       0x21
#define PROXY_LEN_INET   12
#define PROXY_LEN_INET6  36
#define PROXY_LEN_UNIX   216
#define PROXY_V2_MAXLEN  (PROXY_IN_MAX - PROXY_V2_HDR)

const char *
proxy_version_name(enum proxy_version v)
{
	switch (v) {
	case PROXY_OFF:
		return ("off");
	case PROXY_V1:
		return ("v1");
	case PROXY_V2:
		return ("v2");
	case PROXY_ANY:
		return ("any");
	}
	return ("?");
}

/* An IPv4-mapped IPv6 address as IPv4 (a dual-stack listener's clients). */
static void
proxy_unmap(const struct sockaddr *sa, union proxy_sockaddr *out)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET)
		memcpy(&out->sin, sa, sizeof out->sin);
	else if (sa->sa_family != AF_INET6)
		out->sa.sa_family = sa->sa_family;
	else if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		out->sin.sin_family = AF_INET;
		out->sin.sin_port = sin6->sin6_port;
		memcpy(&out->sin.sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
	} else
		memcpy(&out->sin6, sa, sizeof out->sin6);
}

/* An IPv4 address as IPv4-mapped IPv6, to pair it with an IPv6 one. */
static void
proxy_map(union proxy_sockaddr *a)
{
	struct sockaddr_in in = a->sin;

	if (a->sa.sa_family != AF_INET)
		return;
	memset(&a->sin6, 0, sizeof a->sin6);
	a->sin6.sin6_family = AF_INET6;
	a->sin6.sin6_port = in.sin_port;
	a->sin6.sin6_addr.s6_addr[10] = 0xff;
	a->sin6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&a->sin6.sin6_addr.s6_addr[12], &in.sin_addr, 4);
}

/*
 * Both ends in one inet family, or AF_UNSPEC when there is none to tell
 * (no addresses, or a family the protocol cannot carry).
 */
static int
proxy_pair(const struct sockaddr *src, const struct sockaddr *dst,
    union proxy_sockaddr *s, union proxy_sockaddr *d)
{
	int fs, fd;

	if (src == NULL || dst == NULL)
		return (AF_UNSPEC);
	proxy_unmap(src, s);
	proxy_unmap(dst, d);
	fs = s->sa.sa_family;
	fd = d->sa.sa_family;
	if ((fs != AF_INET && fs != AF_INET6) ||
	    (fd != AF_INET && fd != AF_INET6))
		return (AF_UNSPEC);
	if (fs != fd) {
		proxy_map(s);
		proxy_map(d);
		return (AF_INET6);
	}
	return (fs);
}

static ssize_t
proxy_encode_v1(char *out, size_t outlen, int af, const union proxy_sockaddr *s,
    const union proxy_sockaddr *d)
{
	char sh[INET6_ADDRSTRLEN], dh[INET6_ADDRSTRLEN];
	int  n;

	if (af == AF_INET) {
		inet_ntop(AF_INET, &s->sin.sin_addr, sh, sizeof sh);
		inet_ntop(AF_INET, &d->sin.sin_addr, dh, sizeof dh);
		n = snprintf(out, outlen, "PROXY TCP4 %s %s %u %u\r\n", sh, dh,
		    ntohs(s->sin.sin_port), ntohs(d->sin.sin_port));
	} else if (af == AF_INET6) {
		inet_ntop(AF_INET6, &s->sin6.sin6_addr, sh, sizeof sh);
		inet_ntop(AF_INET6, &d->sin6.sin6_addr, dh, sizeof dh);
		n = snprintf(out, outlen, "PROXY TCP6 %s %s %u %u\r\n", sh, dh,
		    ntohs(s->sin6.sin6_port), ntohs(d->sin6.sin6_port));
	} else
		n = snprintf(out, outlen, "PROXY UNKNOWN\r\n");
	if (n < 0 || (size_t)n >= outlen || n > PROXY_V1_MAX)
		return (-1);
	return (n);
}

static ssize_t
proxy_encode_v2(uint8_t *out, size_t outlen, int af,
    const union proxy_sockaddr *s, const union proxy_sockaddr *d, int local,
    const struct proxy_tlv *tlvs, size_t ntlvs)
{
	size_t i, len = PROXY_V2_HDR, body;

	if (outlen < PROXY_V2_HDR + PROXY_LEN_INET6)
		return (-1);
	memcpy(out, proxy_sig, sizeof proxy_sig);
	out[12] =
	    PROXY_V2_VERSION | (local ? PROXY_CMD_LOCAL : PROXY_CMD_PROXY);
	if (af == AF_INET) {
		out[13] = PROXY_TCP4;
		memcpy(out + len, &s->sin.sin_addr, 4);
		memcpy(out + len + 4, &d->sin.sin_addr, 4);
		memcpy(out + len + 8, &s->sin.sin_port, 2);
		memcpy(out + len + 10, &d->sin.sin_port, 2);
		len += PROXY_LEN_INET;
	} else if (af == AF_INET6) {
		out[13] = PROXY_TCP6;
		memcpy(out + len, &s->sin6.sin6_addr, 16);
		memcpy(out + len + 16, &d->sin6.sin6_addr, 16);
		memcpy(out + len + 32, &s->sin6.sin6_port, 2);
		memcpy(out + len + 34, &d->sin6.sin6_port, 2);
		len += PROXY_LEN_INET6;
	} else
		out[13] = PROXY_AF_UNSPEC;
	for (i = 0; i < ntlvs; i++) {
		if (outlen - len < 3 || outlen - len - 3 < tlvs[i].len)
			return (-1);
		out[len] = tlvs[i].type;
		out[len + 1] = (uint8_t)(tlvs[i].len >> 8);
		out[len + 2] = (uint8_t)tlvs[i].len;
		if (tlvs[i].len > 0)
			memcpy(out + len + 3, tlvs[i].value, tlvs[i].len);
		len += 3 + (size_t)tlvs[i].len;
	}
	body = len - PROXY_V2_HDR;
	if (body > 0xffff)
		return (-1);
	out[14] = (uint8_t)(body >> 8);
	out[15] = (uint8_t)body;
	return ((ssize_t)len);
}

/*
 * The header for a connection from src to dst (dst: the address the
 * client reached).  No src: a connection of our own, v2 LOCAL or v1
 * "PROXY UNKNOWN".  v1 carries no TLVs.  Returns its length, or -1 when
 * it does not fit in out.
 */
ssize_t
proxy_encode(void *out, size_t outlen, enum proxy_version v,
    const struct sockaddr *src, const struct sockaddr *dst,
    const struct proxy_tlv *tlvs, size_t ntlvs)
{
	union proxy_sockaddr s, d;
	int                  af;

	af = proxy_pair(src, dst, &s, &d);
	switch (v) {
	case PROXY_V1:
		return (proxy_encode_v1(out, outlen, af, &s, &d));
	case PROXY_V2:
		return (proxy_encode_v2(
		    out, outlen, af, &s, &d, src == NULL, tlvs, ntlvs));
	default:
		return (-1);
	}
}

/* A decimal port: digits, no leading zero, at most 65535. */
static int
proxy_v1_port(const char *p, size_t n, in_port_t *port)
{
	unsigned long v = 0;
	size_t        i;

	if (n == 0 || n > 5 || (p[0] == '0' && n > 1))
		return (-1);
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return (-1);
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v > 65535)
		return (-1);
	*port = htons((in_port_t)v);
	return (0);
}

/* One inet address of family af, in text of exactly n bytes. */
static int
proxy_v1_addr(int af, const char *p, size_t n, union proxy_sockaddr *a)
{
	char tmp[INET6_ADDRSTRLEN];

	if (n == 0 || n >= sizeof tmp)
		return (-1);
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	memset(a, 0, sizeof *a);
	a->sa.sa_family = af;
	/* glibc's inet_pton refuses leading zeros in IPv4, as the spec does. */
	if (af == AF_INET)
		return (
		    inet_pton(AF_INET, tmp, &a->sin.sin_addr) == 1 ? 0 : -1);
	return (inet_pton(AF_INET6, tmp, &a->sin6.sin6_addr) == 1 ? 0 : -1);
}

/* The next field of a v1 line: up to the next space or the end. */
static const char *
proxy_v1_field(const char **p, const char *end, size_t *n)
{
	const char *start = *p, *sp;

	sp = memchr(start, ' ', end - start);
	if (sp == NULL)
		sp = end;
	*n = sp - start;
	*p = sp == end ? end : sp + 1;
	return (start);
}

/* "PROXY TCP4|TCP6 src dst sport dport" or "PROXY UNKNOWN ..." (no CRLF). */
static int
proxy_v1_line(
    const char *p, const char *end, struct proxy_hdr *h, const char **cause)
{
	const char *f[4];
	size_t      n[4];
	int         af, i;

	h->version = PROXY_V1;
	if (end - p >= 13 && memcmp(p, "PROXY UNKNOWN", 13) == 0 &&
	    (end - p == 13 || p[13] == ' ')) {
		h->local = 1;
		return (0);
	}
	if (end - p < 11 ||
	    (memcmp(p, "PROXY TCP4 ", 11) != 0 &&
		memcmp(p, "PROXY TCP6 ", 11) != 0)) {
		*cause = "v1: unknown protocol";
		return (-1);
	}
	af = p[9] == '4' ? AF_INET : AF_INET6;
	p += 11;
	for (i = 0; i < 4; i++) {
		if (p >= end) {
			*cause = "v1: missing field";
			return (-1);
		}
		f[i] = proxy_v1_field(&p, end, &n[i]);
	}
	if (f[3] + n[3] != end) {
		*cause = "v1: extra field";
		return (-1);
	}
	if (proxy_v1_addr(af, f[0], n[0], &h->src) == -1 ||
	    proxy_v1_addr(af, f[1], n[1], &h->dst) == -1) {
		*cause = "v1: bad address";
		return (-1);
	}
	if (af == AF_INET &&
	    (proxy_v1_port(f[2], n[2], &h->src.sin.sin_port) == -1 ||
		proxy_v1_port(f[3], n[3], &h->dst.sin.sin_port) == -1)) {
		*cause = "v1: bad port";
		return (-1);
	}
	if (af == AF_INET6 &&
	    (proxy_v1_port(f[2], n[2], &h->src.sin6.sin6_port) == -1 ||
		proxy_v1_port(f[3], n[3], &h->dst.sin6.sin6_port) == -1)) {
		*cause = "v1: bad port";
		return (-1);
	}
	return (0);
}

/* A v1 header: a line of at most 107 bytes ending in CRLF. */
static ssize_t
proxy_parse_v1(
    const char *buf, size_t len, struct proxy_hdr *h, const char **cause)
{
	size_t i, max = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;

	for (i = 0; i < max; i++) {
		if (buf[i] == '\r' && i + 1 < max && buf[i + 1] == '\n')
			break;
		if (buf[i] == '\r' && i + 1 < max) {
			*cause = "v1: CR without LF";
			return (-1);
		}
		if (buf[i] == '\n' || buf[i] == '\0') {
			*cause = "v1: bad character in the line";
			return (-1);
		}
	}
	if (i == max) {
		if (len >= PROXY_V1_MAX) {
			*cause = "v1: no CRLF in the first 107 bytes";
			return (-1);
		}
		return (0);
	}
	if (proxy_v1_line(buf, buf + i, h, cause) == -1)
		return (-1);
	return ((ssize_t)(i + 2));
}

/* The TLVs after a v2 address block: each must fit; we keep the unique id. */
static int
proxy_v2_tlvs(
    const uint8_t *p, size_t len, struct proxy_hdr *h, const char **cause)
{
	size_t vlen;

	while (len > 0) {
		if (len < 3) {
			*cause = "v2: truncated TLV";
			return (-1);
		}
		vlen = (size_t)p[1] << 8 | p[2];
		if (vlen > len - 3) {
			*cause = "v2: TLV longer than the header";
			return (-1);
		}
		if (p[0] == PROXY_TLV_UNIQUE_ID) {
			if (vlen > PROXY_UNIQUE_ID_MAX) {
				*cause = "v2: unique id longer than 128 bytes";
				return (-1);
			}
			memcpy(h->unique_id, p + 3, vlen);
			h->unique_id_len = vlen;
		}
		p += 3 + vlen;
		len -= 3 + vlen;
	}
	return (0);
}

/* The address block of a v2 PROXY command, by family byte. */
static int
proxy_v2_addrs(uint8_t fam, const uint8_t *p, size_t len, struct proxy_hdr *h,
    size_t *used, const char **cause)
{
	*used = 0;
	switch (fam >> 4) {
	case 0x0:
		h->local = 1; /* AF_UNSPEC: no address, TLVs may follow */
		return (0);
	case 0x1:
		*used = PROXY_LEN_INET;
		break;
	case 0x2:
		*used = PROXY_LEN_INET6;
		break;
	case 0x3:
		*used = PROXY_LEN_UNIX;
		break;
	}
	if (len < *used) {
		*cause = "v2: address block shorter than its family";
		return (-1);
	}
	/* UDP or Unix: not a TCP client we could name; keep the real peer. */
	if ((fam & 0x0f) != 0x1 || (fam >> 4) == 0x3) {
		h->local = 1;
		return (0);
	}
	if ((fam >> 4) == 0x1) {
		h->src.sin.sin_family = h->dst.sin.sin_family = AF_INET;
		memcpy(&h->src.sin.sin_addr, p, 4);
		memcpy(&h->dst.sin.sin_addr, p + 4, 4);
		memcpy(&h->src.sin.sin_port, p + 8, 2);
		memcpy(&h->dst.sin.sin_port, p + 10, 2);
	} else {
		h->src.sin6.sin6_family = h->dst.sin6.sin6_family = AF_INET6;
		memcpy(&h->src.sin6.sin6_addr, p, 16);
		memcpy(&h->dst.sin6.sin6_addr, p + 16, 16);
		memcpy(&h->src.sin6.sin6_port, p + 32, 2);
		memcpy(&h->dst.sin6.sin6_port, p + 34, 2);
	}
	return (0);
}

static ssize_t
proxy_parse_v2(
    const uint8_t *b, size_t len, struct proxy_hdr *h, const char **cause)
{
	size_t blen, used;
	int    cmd;

	if (len < PROXY_V2_HDR)
		return (0);
	if ((b[12] & 0xf0) != PROXY_V2_VERSION) {
		*cause = "v2: unsupported version";
		return (-1);
	}
	cmd = b[12] & 0x0f;
	if (cmd != PROXY_CMD_LOCAL && cmd != PROXY_CMD_PROXY) {
		*cause = "v2: unknown command";
		return (-1);
	}
	if ((b[13] >> 4) > 0x3 || (b[13] & 0x0f) > 0x2) {
		*cause = "v2: unknown address family or protocol";
		return (-1);
	}
	blen = (size_t)b[14] << 8 | b[15];
	if (blen > PROXY_V2_MAXLEN) {
		*cause = "v2: header longer than we accept";
		return (-1);
	}
	if (len < PROXY_V2_HDR + blen)
		return (0);
	h->version = PROXY_V2;
	b += PROXY_V2_HDR;
	if (cmd == PROXY_CMD_LOCAL) {
		/* Our own peer's connection: whatever follows is ignored. */
		h->local = 1;
		return ((ssize_t)(PROXY_V2_HDR + blen));
	}
	if (proxy_v2_addrs(b[-3], b, blen, h, &used, cause) == -1)
		return (-1);
	if (proxy_v2_tlvs(b + used, blen - used, h, cause) == -1)
		return (-1);
	return ((ssize_t)(PROXY_V2_HDR + blen));
}

/* Whether the first len bytes can still begin the given prefix. */
static int
proxy_prefix(const void *buf, size_t len, const void *want, size_t wlen)
{
	return (memcmp(buf, want, len < wlen ? len : wlen) == 0);
}

/*
 * A PROXY header at the start of buf (of the versions accept allows).
 * Returns its length once complete, 0 while more bytes are needed, -1
 * when the bytes can never be a valid header (*cause says why).  Bytes
 * after the header are the client's.
 */
ssize_t
proxy_parse(const void *buf, size_t len, enum proxy_version accept,
    struct proxy_hdr *h, const char **cause)
{
	int v1, v2;

	memset(h, 0, sizeof *h);
	if (len == 0)
		return (0);
	v2 = (accept == PROXY_V2 || accept == PROXY_ANY) &&
	    proxy_prefix(buf, len, proxy_sig, sizeof proxy_sig);
	v1 = (accept == PROXY_V1 || accept == PROXY_ANY) &&
	    proxy_prefix(buf, len, "PROXY ", 6);
	if (v2)
		return (proxy_parse_v2(buf, len, h, cause));
	if (v1)
		return (proxy_parse_v1(buf, len, h, cause));
	*cause = "not a PROXY protocol header";
	return (-1);
}

/*
 * "10.0.0.0/8", "::1/128", or an address alone (every bit).  Bits beyond
 * the prefix must be zero, so "10.0.0.1/8" is refused as a likely typo.
 */
int
proxy_cidr_parse(const char *text, struct proxy_cidr *c)
{
	char          host[INET6_ADDRSTRLEN];
	const char   *slash = strchr(text, '/');
	size_t        n = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned long bits;
	char         *end;
	int           i, max;

	memset(c, 0, sizeof *c);
	if (n == 0 || n >= sizeof host)
		return (-1);
	memcpy(host, text, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, c->addr) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, host, c->addr) == 1)
		c->family = AF_INET6;
	else
		return (-1);
	max = c->family == AF_INET ? 32 : 128;
	c->bits = max;
	if (slash != NULL) {
		if (slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 3)
			return (-1);
		bits = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || bits > (unsigned long)max)
			return (-1);
		c->bits = (int)bits;
	}
	for (i = c->bits; i < max; i++) {
		if (c->addr[i / 8] & (0x80 >> (i % 8)))
			return (-1);
	}
	return (0);
}

static int
proxy_cidr_has(const struct proxy_cidr *c, const uint8_t *a)
{
	int full = c->bits / 8, rest = c->bits % 8;

	if (memcmp(c->addr, a, full) != 0)
		return (0);
	return (rest == 0 ||
	    ((c->addr[full] ^ a[full]) & (uint8_t)(0xff00 >> rest)) == 0);
}

/* Whether sa (IPv4-mapped IPv6 counts as IPv4) is inside one of the n. */
int
proxy_cidr_match(
    const struct proxy_cidr *c, size_t n, const struct sockaddr *sa)
{
	union proxy_sockaddr a;
	const uint8_t       *bytes;
	size_t               i;
	int                  af;

	proxy_unmap(sa, &a);
	af = a.sa.sa_family;
	if (af == AF_INET)
		bytes = (const uint8_t *)&a.sin.sin_addr;
	else if (af == AF_INET6)
		bytes = a.sin6.sin6_addr.s6_addr;
	else
		return (0);
	for (i = 0; i < n; i++) {
		if (c[i].family == af && proxy_cidr_has(&c[i], bytes))
			return (1);
	}
	return (0);
}
