/*
 * libFuzzer target for the master's control-message parser: any bytes a
 * worker may send are cut into frames and every field the master reads is
 * extracted, as control_read() and control_dispatch() do.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "socketnaut/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *keys[] = {
		"address",
		"port",
		"id",
		"key",
		"level",
		"text",
		"status",
	};
	struct sn_msg m;
	const char   *cause;
	char          v[SN_PROTO_MAX + 1], out[SN_PROTO_HDR + SN_PROTO_MAX];
	size_t        off = 0, i;
	ssize_t       n;

	while (off < size) {
		n = sn_proto_parse(data + off, size - off, &m, &cause);
		if (n <= 0)
			break;
		if (m.len > SN_PROTO_MAX || (size_t)n != SN_PROTO_HDR + m.len)
			__builtin_trap();
		for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
			if (sn_proto_field(&m, keys[i], v, sizeof v) == 0 &&
			    strlen(v) > m.len)
				__builtin_trap();
		}
		/* What parses must frame back to the same bytes. */
		if (sn_proto_frame(out, sizeof out, m.type, m.payload, m.len) !=
			n ||
		    memcmp(out, data + off, n) != 0)
			__builtin_trap();
		off += n;
	}
	return (0);
}
