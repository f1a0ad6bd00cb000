/*
 * Framing of the control channel (see include/socketnaut/proto.h): strict
 * parsing of untrusted bytes from workers, and frame building.
 */
#include <string.h>

#include "socketnaut/proto.h"

const char *
sn_proto_type_name(uint8_t type)
{
	switch (type) {
	case SN_MSG_READY:
		return ("ready");
	case SN_MSG_PEER_QUERY:
		return ("peer-query");
	case SN_MSG_LOG:
		return ("log");
	case SN_MSG_DRAINED:
		return ("drained");
	case SN_MSG_HELLO:
		return ("hello");
	case SN_MSG_PEER_INFO:
		return ("peer-info");
	case SN_MSG_DRAIN:
		return ("drain");
	case SN_MSG_CLOSED:
		return ("closed");
	case SN_MSG_HANDOFF:
		return ("handoff");
	}
	return (NULL);
}

/* Every line before a "text=" field must be key=value with a lowercase key. */
static int
payload_valid(const char *p, size_t len)
{
	const char *end = p + len, *nl, *eq, *k;

	while (p < end) {
		if (end - p >= 5 && memcmp(p, "text=", 5) == 0)
			return (1);
		nl = memchr(p, '\n', end - p);
		if (nl == NULL)
			nl = end;
		eq = memchr(p, '=', nl - p);
		if (eq == NULL || eq == p)
			return (0);
		for (k = p; k < eq; k++) {
			if (!((*k >= 'a' && *k <= 'z') || *k == '_'))
				return (0);
		}
		for (k = eq + 1; k < nl; k++) {
			if ((unsigned char)*k < 0x20 || *k == 0x7f)
				return (0);
		}
		p = nl + 1;
	}
	return (1);
}

/*
 * One frame from the start of buf.  Returns its size, 0 when more bytes
 * are needed, -1 when the bytes can never be a valid frame (*cause says
 * why).
 */
ssize_t
sn_proto_parse(
    const void *buf, size_t len, struct sn_msg *m, const char **cause)
{
	const unsigned char *b = buf;
	size_t               plen;

	if (len < SN_PROTO_HDR)
		return (0);
	if (b[0] != SN_PROTO_VERSION) {
		*cause = "unsupported protocol version";
		return (-1);
	}
	if (sn_proto_type_name(b[1]) == NULL) {
		*cause = "unknown message type";
		return (-1);
	}
	plen = (size_t)b[2] << 8 | b[3];
	if (plen > SN_PROTO_MAX) {
		*cause = "message too long";
		return (-1);
	}
	if (len < SN_PROTO_HDR + plen)
		return (0);
	m->type = b[1];
	m->len = (uint16_t)plen;
	m->payload = (const char *)b + SN_PROTO_HDR;
	if (!payload_valid(m->payload, plen)) {
		*cause = "malformed payload";
		return (-1);
	}
	return ((ssize_t)(SN_PROTO_HDR + plen));
}

/* Build one frame into out; -1 when it does not fit or is too long. */
ssize_t
sn_proto_frame(
    void *out, size_t outlen, uint8_t type, const char *payload, size_t len)
{
	unsigned char *b = out;

	if (len > SN_PROTO_MAX || outlen < SN_PROTO_HDR + len)
		return (-1);
	b[0] = SN_PROTO_VERSION;
	b[1] = type;
	b[2] = (unsigned char)(len >> 8);
	b[3] = (unsigned char)len;
	if (len > 0)
		memcpy(b + SN_PROTO_HDR, payload, len);
	return ((ssize_t)(SN_PROTO_HDR + len));
}

/*
 * Copy the value of field key into out (NUL-terminated).  Returns 0, or -1
 * when the field is absent or does not fit.
 */
int
sn_proto_field(
    const struct sn_msg *m, const char *key, char *out, size_t outlen)
{
	const char *p = m->payload, *end = p + m->len, *nl;
	size_t      klen = strlen(key), vlen;
	int         text;

	while (p < end) {
		text = end - p >= 5 && memcmp(p, "text=", 5) == 0;
		nl = text ? end : memchr(p, '\n', end - p);
		if (nl == NULL)
			nl = end;
		if ((size_t)(nl - p) > klen && memcmp(p, key, klen) == 0 &&
		    p[klen] == '=') {
			vlen = nl - p - klen - 1;
			if (vlen >= outlen)
				return (-1);
			memcpy(out, p + klen + 1, vlen);
			out[vlen] = '\0';
			return (0);
		}
		p = nl + 1;
	}
	return (-1);
}
