/*
 * libFuzzer target for the PROXY protocol codec: any bytes a client may
 * send ahead of its request are parsed in every accept mode and at every
 * prefix length the listener may peek; a header that parses is encoded
 * again and must parse back to the same addresses.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fuzz_roundtrip(const struct proxy_hdr *h)
{
	struct proxy_hdr again;
	const char      *cause;
	uint8_t          out[PROXY_OUT_MAX];
	ssize_t          n;
	int              v;

	/* Mapped IPv4 is sent as TCP4 by design: it cannot come back as is. */
	if (h->local ||
	    (h->src.sa.sa_family == AF_INET6 &&
		(IN6_IS_ADDR_V4MAPPED(&h->src.sin6.sin6_addr) ||
		    IN6_IS_ADDR_V4MAPPED(&h->dst.sin6.sin6_addr))))
		return;
	for (v = PROXY_V1; v <= PROXY_V2; v++) {
		n = proxy_encode(
		    out, sizeof out, v, &h->src.sa, &h->dst.sa, NULL, 0);
		if (n <= 0 || proxy_parse(out, n, v, &again, &cause) != n)
			abort();
		if (again.local || memcmp(&again.src, &h->src, sizeof h->src) ||
		    memcmp(&again.dst, &h->dst, sizeof h->dst))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_hdr h;
	const char      *cause;
	ssize_t          n, full;
	size_t           len;
	int              v;

	if (size > PROXY_IN_MAX)
		size = PROXY_IN_MAX;
	for (v = PROXY_V1; v <= PROXY_ANY; v++) {
		full = proxy_parse(data, size, v, &h, &cause);
		if (full > (ssize_t)size || (full == -1 && cause == NULL))
			abort();
		if (full > 0)
			fuzz_roundtrip(&h);
		/* A shorter peek never says more than the whole: done or wait.
		 */
		for (len = 0; len < size && len < 64; len++) {
			n = proxy_parse(data, len, v, &h, &cause);
			if (n > 0 && n != full)
				abort();
		}
	}
	return (0);
}
