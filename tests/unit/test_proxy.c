/*
 * The PROXY protocol codec, byte-exact against the examples and layouts of
 * HAProxy's doc/proxy-protocol.txt, and every malformed header the master
 * must refuse.
 */
#include <arpa/inet.h>

#include <string.h>

#include "proxy.h"
#include "unit.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"

static void
in4(struct sockaddr_in *sin, const char *host, int port)
{
	memset(sin, 0, sizeof *sin);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	ck_assert_int_eq(inet_pton(AF_INET, host, &sin->sin_addr), 1);
}

static void
in6(struct sockaddr_in6 *sin6, const char *host, int port)
{
	memset(sin6, 0, sizeof *sin6);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	ck_assert_int_eq(inet_pton(AF_INET6, host, &sin6->sin6_addr), 1);
}

static ssize_t
parse(const void *b, size_t len, enum proxy_version v, struct proxy_hdr *h,
    const char **cause)
{
	*cause = NULL;
	return (proxy_parse(b, len, v, h, cause));
}

START_TEST(v1_tcp4_is_the_specification_example)
{
	static const char want[] =
	    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	struct sockaddr_in s, d;
	char               out[PROXY_OUT_MAX];
	ssize_t            n;

	in4(&s, "192.168.0.1", 56324);
	in4(&d, "192.168.0.11", 443);
	n = proxy_encode(out, sizeof out, PROXY_V1, (struct sockaddr *)&s,
	    (struct sockaddr *)&d, NULL, 0);
	ck_assert_int_eq(n, sizeof want - 1);
	ck_assert(memcmp(out, want, n) == 0);
}
END_TEST

START_TEST(v1_longest_lines_fit_and_unknown_is_short)
{
	struct sockaddr_in6 s, d;
	struct sockaddr_in  s4, d4;
	char                out[PROXY_OUT_MAX];
	ssize_t             n;

	in6(&s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
	in6(&d, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
	n = proxy_encode(out, sizeof out, PROXY_V1, (struct sockaddr *)&s,
	    (struct sockaddr *)&d, NULL, 0);
	ck_assert_int_eq(n, 104);
	in4(&s4, "255.255.255.255", 65535);
	in4(&d4, "255.255.255.255", 65535);
	n = proxy_encode(out, sizeof out, PROXY_V1, (struct sockaddr *)&s4,
	    (struct sockaddr *)&d4, NULL, 0);
	ck_assert_int_eq(n, 56);
	n = proxy_encode(out, sizeof out, PROXY_V1, NULL, NULL, NULL, 0);
	ck_assert_int_eq(n, 15);
	ck_assert(memcmp(out, "PROXY UNKNOWN\r\n", 15) == 0);
	/* Too small a buffer: -1, never a cut line. */
	ck_assert_int_eq(proxy_encode(out, 20, PROXY_V1, (struct sockaddr *)&s4,
			     (struct sockaddr *)&d4, NULL, 0),
	    -1);
}
END_TEST

START_TEST(v1_mapped_ipv4_is_tcp4_and_mixed_is_tcp6)
{
	struct sockaddr_in6 s, d;
	struct sockaddr_in  d4;
	char                out[PROXY_OUT_MAX];
	ssize_t             n;
	static const char   w4[] = "PROXY TCP4 127.0.0.2 127.0.0.1 1000 80\r\n";
	static const char w6[] = "PROXY TCP6 ::1 ::ffff:127.0.0.1 1000 80\r\n";

	in6(&s, "::ffff:127.0.0.2", 1000);
	in6(&d, "::ffff:127.0.0.1", 80);
	n = proxy_encode(out, sizeof out, PROXY_V1, (struct sockaddr *)&s,
	    (struct sockaddr *)&d, NULL, 0);
	ck_assert_int_eq(n, sizeof w4 - 1);
	ck_assert(memcmp(out, w4, n) == 0);
	in6(&s, "::1", 1000);
	in4(&d4, "127.0.0.1", 80);
	n = proxy_encode(out, sizeof out, PROXY_V1, (struct sockaddr *)&s,
	    (struct sockaddr *)&d4, NULL, 0);
	ck_assert_int_eq(n, sizeof w6 - 1);
	ck_assert(memcmp(out, w6, n) == 0);
}
END_TEST

START_TEST(v2_tcp4_tcp6_local_and_tlv_bytes)
{
	static const uint8_t w4[] = SIG "\x21\x11\x00\x0c"
					"\xc0\xa8\x00\x01\xc0\xa8\x00\x0b"
					"\xdc\x04\x01\xbb";
	static const uint8_t wl[] = SIG "\x20\x00\x00\x00";
	static const uint8_t wt[] = SIG "\x21\x11\x00\x14"
					"\x7f\x00\x00\x02\x7f\x00\x00\x01"
					"\x03\xe8\x00\x50"
					"\x05\x00\x05"
					"ab-01";
	struct proxy_tlv     tlv = { PROXY_TLV_UNIQUE_ID, 5, "ab-01" };
	struct sockaddr_in   s, d;
	struct sockaddr_in6  s6, d6;
	uint8_t              out[PROXY_OUT_MAX];
	ssize_t              n;

	in4(&s, "192.168.0.1", 56324);
	in4(&d, "192.168.0.11", 443);
	n = proxy_encode(out, sizeof out, PROXY_V2, (struct sockaddr *)&s,
	    (struct sockaddr *)&d, NULL, 0);
	ck_assert_int_eq(n, sizeof w4 - 1);
	ck_assert(memcmp(out, w4, n) == 0);

	n = proxy_encode(out, sizeof out, PROXY_V2, NULL, NULL, NULL, 0);
	ck_assert_int_eq(n, 16);
	ck_assert(memcmp(out, wl, n) == 0);

	in4(&s, "127.0.0.2", 1000);
	in4(&d, "127.0.0.1", 80);
	n = proxy_encode(out, sizeof out, PROXY_V2, (struct sockaddr *)&s,
	    (struct sockaddr *)&d, &tlv, 1);
	ck_assert_int_eq(n, sizeof wt - 1);
	ck_assert(memcmp(out, wt, n) == 0);

	in6(&s6, "2001:db8::1", 1);
	in6(&d6, "::1", 2);
	n = proxy_encode(out, sizeof out, PROXY_V2, (struct sockaddr *)&s6,
	    (struct sockaddr *)&d6, NULL, 0);
	ck_assert_int_eq(n, 16 + 36);
	ck_assert(memcmp(out, SIG "\x21\x21\x00\x24", 16) == 0);
	ck_assert(memcmp(out + 16, &s6.sin6_addr, 16) == 0);
	ck_assert(memcmp(out + 32, &d6.sin6_addr, 16) == 0);
	ck_assert(memcmp(out + 48, "\x00\x01\x00\x02", 4) == 0);
	/* A TLV that does not fit: -1. */
	tlv.len = 400;
	ck_assert_int_eq(proxy_encode(out, 100, PROXY_V2, (struct sockaddr *)&s,
			     (struct sockaddr *)&d, &tlv, 1),
	    -1);
}
END_TEST

START_TEST(encoded_headers_parse_back)
{
	struct proxy_tlv    tlv = { PROXY_TLV_UNIQUE_ID, 3, "xyz" };
	struct sockaddr_in6 s, d;
	struct proxy_hdr    h;
	const char         *cause;
	uint8_t             out[PROXY_OUT_MAX];
	ssize_t             n;
	int                 v;

	in6(&s, "2001:db8::7", 4242);
	in6(&d, "fe80::1", 443);
	for (v = PROXY_V1; v <= PROXY_V2; v++) {
		n = proxy_encode(out, sizeof out, v, (struct sockaddr *)&s,
		    (struct sockaddr *)&d, &tlv, 1);
		ck_assert_int_gt(n, 0);
		ck_assert_int_eq(parse(out, n, PROXY_ANY, &h, &cause), n);
		ck_assert_int_eq(h.version, v);
		ck_assert_int_eq(h.local, 0);
		ck_assert_int_eq(h.src.sa.sa_family, AF_INET6);
		ck_assert(memcmp(&h.src.sin6.sin6_addr, &s.sin6_addr, 16) == 0);
		ck_assert(memcmp(&h.dst.sin6.sin6_addr, &d.sin6_addr, 16) == 0);
		ck_assert_int_eq(ntohs(h.src.sin6.sin6_port), 4242);
		ck_assert_int_eq(ntohs(h.dst.sin6.sin6_port), 443);
		ck_assert_int_eq(h.unique_id_len, v == PROXY_V2 ? 3 : 0);
	}
}
END_TEST

START_TEST(v1_parses_with_client_bytes_after_it)
{
	static const char b[] =
	    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
	struct proxy_hdr h;
	const char      *cause;
	size_t           i;

	ck_assert_int_eq(parse(b, sizeof b - 1, PROXY_V1, &h, &cause), 47);
	ck_assert_int_eq(h.src.sa.sa_family, AF_INET);
	ck_assert_int_eq(ntohl(h.src.sin.sin_addr.s_addr), 0xc0a80001);
	ck_assert_int_eq(ntohs(h.src.sin.sin_port), 56324);
	ck_assert_int_eq(ntohs(h.dst.sin.sin_port), 443);
	/* Every prefix of the line: more bytes needed, never an error. */
	for (i = 0; i < 47; i++)
		ck_assert_int_eq(parse(b, i, PROXY_ANY, &h, &cause), 0);
	ck_assert_int_eq(
	    parse("PROXY UNKNOWN\r\n", 15, PROXY_V1, &h, &cause), 15);
	ck_assert_int_eq(h.local, 1);
	ck_assert_int_eq(parse("PROXY UNKNOWN ffff::1 ::1 1 2\r\nX", 32,
			     PROXY_ANY, &h, &cause),
	    31);
	ck_assert_int_eq(h.local, 1);
}
END_TEST

START_TEST(v1_malformed_lines_are_refused)
{
	static const char *bad[] = {
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX\n",
		"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
		"PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
		"PROXY TCP4 ::1 ::1 1 2\r\n",
		"PROXY TCP6 192.168.0.1 192.168.0.11 1 2\r\n",
		"PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",
		"PROXY UDP4 192.168.0.1 192.168.0.11 1 2\r\n",
		"PROXY UNKNOWNX\r\n",
		"PROXY \r\n",
		"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
		"GET / HTTP/1.0\r\n",
	};
	struct proxy_hdr h;
	const char      *cause;
	size_t           i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(
		    parse(bad[i], strlen(bad[i]), PROXY_ANY, &h, &cause) == -1,
		    "accepted: %s", bad[i]);
		ck_assert_ptr_nonnull(cause);
	}
}
END_TEST

START_TEST(v1_line_limit_is_107_bytes_with_crlf)
{
	char             b[200];
	struct proxy_hdr h;
	const char      *cause;

	/* "PROXY UNKNOWN" padded to exactly 107 bytes with its CRLF: taken. */
	memset(b, 'x', sizeof b);
	memcpy(b, "PROXY UNKNOWN ", 14);
	memcpy(b + 105, "\r\n", 2);
	ck_assert_int_eq(parse(b, 107, PROXY_V1, &h, &cause), 107);
	/* One byte more: refused as soon as 107 bytes hold no CRLF. */
	memset(b, 'x', sizeof b);
	memcpy(b, "PROXY UNKNOWN ", 14);
	memcpy(b + 106, "\r\n", 2);
	ck_assert_int_eq(parse(b, 106, PROXY_V1, &h, &cause), 0);
	ck_assert_int_eq(parse(b, 108, PROXY_V1, &h, &cause), -1);
	ck_assert_int_eq(parse(b, 200, PROXY_V1, &h, &cause), -1);
}
END_TEST

START_TEST(v2_parses_local_unspec_unix_and_tlvs)
{
	static const uint8_t local[] = SIG "\x20\x11\x00\x0c"
					   "\x01\x02\x03\x04\x05\x06\x07\x08"
					   "\x00\x01\x00\x02"
					   "rest";
	static const uint8_t unspec[] = SIG "\x21\x00\x00\x03"
					    "\x04\x00\x00";
	static const uint8_t tlvs[] = SIG "\x21\x11\x00\x1b"
					  "\x0a\x00\x00\x01\x0a\x00\x00\x02"
					  "\x30\x39\x00\x50"
					  "\x04\x00\x02"
					  "zz"
					  "\x05\x00\x04"
					  "abcd"
					  "\x20\x00\x00";
	uint8_t              unix_hdr[16 + 216];
	struct proxy_hdr     h;
	const char          *cause;
	size_t               i;

	ck_assert_int_eq(
	    parse(local, sizeof local - 1, PROXY_V2, &h, &cause), 28);
	ck_assert_int_eq(h.local, 1);
	ck_assert_int_eq(
	    parse(unspec, sizeof unspec - 1, PROXY_V2, &h, &cause), 19);
	ck_assert_int_eq(h.local, 1);
	ck_assert_int_eq(parse(tlvs, sizeof tlvs - 1, PROXY_ANY, &h, &cause),
	    sizeof tlvs - 1);
	ck_assert_int_eq(h.local, 0);
	ck_assert_int_eq(ntohl(h.src.sin.sin_addr.s_addr), 0x0a000001);
	ck_assert_int_eq(ntohs(h.src.sin.sin_port), 12345);
	ck_assert_int_eq(h.unique_id_len, 4);
	ck_assert(memcmp(h.unique_id, "abcd", 4) == 0);
	for (i = 0; i < sizeof tlvs - 1; i++)
		ck_assert_int_eq(parse(tlvs, i, PROXY_ANY, &h, &cause), 0);

	memset(unix_hdr, 0, sizeof unix_hdr);
	memcpy(unix_hdr, SIG "\x21\x31\x00\xd8", 16);
	ck_assert_int_eq(parse(unix_hdr, sizeof unix_hdr, PROXY_V2, &h, &cause),
	    sizeof unix_hdr);
	ck_assert_int_eq(h.local, 1);
}
END_TEST

START_TEST(v2_malformed_headers_are_refused)
{
	static const struct {
		const char *b;
		size_t      len;
	} bad[] = {
		{ SIG "\x11\x11\x00\x00", 16 }, /* version 1 */
		{ SIG "\x31\x11\x00\x00", 16 }, /* version 3 */
		{ SIG "\x22\x11\x00\x0c", 16 }, /* command 2 */
		{ SIG "\x21\x41\x00\x00", 16 }, /* family 4 */
		{ SIG "\x21\x13\x00\x00", 16 }, /* protocol 3 */
		{ SIG "\x21\x11\x00\x08"
		      "\0\0\0\0\0\0\0\0",
		    24 }, /* short inet */
		{ SIG "\x21\x21\x00\x0c"
		      "\0\0\0\0\0\0\0\0\0\0\0\0",
		    28 },
		{ SIG "\x21\x11\x02\x10", 16 }, /* 528: longer than we take */
		{ SIG "\x21\x11\xff\xff", 16 },
		{ SIG "\x21\x11\x00\x0e"
		      "\0\0\0\0\0\0\0\0\0\0\0\0\x05\x00",
		    30 },
		{ SIG "\x21\x11\x00\x10"
		      "\0\0\0\0\0\0\0\0\0\0\0\0\x05\x00\x02\x01",
		    32 },
		{ "\r\n\r\n\0\r\nQUIX", 12 },
		{ "\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c",
		    15 }, /* partial, bad? no */
	};
	uint8_t          big[16 + 3 + 129];
	struct proxy_hdr h;
	const char      *cause;
	size_t           i;

	for (i = 0; i + 1 < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(
		    parse(bad[i].b, bad[i].len, PROXY_ANY, &h, &cause) == -1,
		    "accepted vector %zu", i);
	/* The last one is a prefix: more bytes needed. */
	ck_assert_int_eq(parse(bad[i].b, bad[i].len, PROXY_ANY, &h, &cause), 0);
	/* A unique id longer than the specification's 128 bytes. */
	memset(big, 'u', sizeof big);
	memcpy(big, SIG "\x21\x00\x00\x84\x05\x00\x81", 19);
	ck_assert_int_eq(parse(big, sizeof big, PROXY_V2, &h, &cause), -1);
	/* v2 refused when only v1 is accepted, and the reverse. */
	ck_assert_int_eq(
	    parse(SIG "\x20\x00\x00\x00", 16, PROXY_V1, &h, &cause), -1);
	ck_assert_int_eq(
	    parse("PROXY UNKNOWN\r\n", 15, PROXY_V2, &h, &cause), -1);
}
END_TEST

START_TEST(trusted_proxies_parse_and_match)
{
	struct proxy_cidr   c[4];
	struct sockaddr_in  a;
	struct sockaddr_in6 a6;
	static const char *bad[] = { "", "10.0.0.0/33", "10.0.0.1/8", "::1/129",
		"10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8x", "example.com",
		"10.0.0.0/0008", "1.2.3.4/ 8" };
	size_t             i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(proxy_cidr_parse(bad[i], &c[0]) == -1,
		    "accepted %s", bad[i]);
	ck_assert_int_eq(proxy_cidr_parse("10.0.0.0/8", &c[0]), 0);
	ck_assert_int_eq(proxy_cidr_parse("192.0.2.1", &c[1]), 0);
	ck_assert_int_eq(proxy_cidr_parse("2001:db8::/33", &c[2]), 0);
	ck_assert_int_eq(proxy_cidr_parse("::1/128", &c[3]), 0);
	in4(&a, "10.255.1.2", 1);
	ck_assert(proxy_cidr_match(c, 4, (struct sockaddr *)&a));
	in4(&a, "11.0.0.1", 1);
	ck_assert(!proxy_cidr_match(c, 4, (struct sockaddr *)&a));
	in4(&a, "192.0.2.1", 1);
	ck_assert(proxy_cidr_match(c, 4, (struct sockaddr *)&a));
	in4(&a, "192.0.2.2", 1);
	ck_assert(!proxy_cidr_match(c, 4, (struct sockaddr *)&a));
	in6(&a6, "::ffff:10.1.2.3",
	    1); /* a dual-stack listener's IPv4 client */
	ck_assert(proxy_cidr_match(c, 4, (struct sockaddr *)&a6));
	in6(&a6, "2001:db8:7fff::1", 1);
	ck_assert(proxy_cidr_match(c, 4, (struct sockaddr *)&a6));
	in6(&a6, "2001:db8:8000::1", 1);
	ck_assert(!proxy_cidr_match(c, 4, (struct sockaddr *)&a6));
	in6(&a6, "::1", 1);
	ck_assert(proxy_cidr_match(c, 4, (struct sockaddr *)&a6));
	ck_assert(!proxy_cidr_match(c, 3, (struct sockaddr *)&a6));
	ck_assert(!proxy_cidr_match(c, 0, (struct sockaddr *)&a6));
	ck_assert_int_eq(proxy_cidr_parse("0.0.0.0/0", &c[0]), 0);
	in4(&a, "203.0.113.1", 1);
	ck_assert(proxy_cidr_match(c, 1, (struct sockaddr *)&a));
}
END_TEST

Suite *
proxy_suite(void)
{
	Suite *s = suite_create("proxy");
	TCase *tc = tcase_create("codec");

	tcase_add_test(tc, v1_tcp4_is_the_specification_example);
	tcase_add_test(tc, v1_longest_lines_fit_and_unknown_is_short);
	tcase_add_test(tc, v1_mapped_ipv4_is_tcp4_and_mixed_is_tcp6);
	tcase_add_test(tc, v2_tcp4_tcp6_local_and_tlv_bytes);
	tcase_add_test(tc, encoded_headers_parse_back);
	tcase_add_test(tc, v1_parses_with_client_bytes_after_it);
	tcase_add_test(tc, v1_malformed_lines_are_refused);
	tcase_add_test(tc, v1_line_limit_is_107_bytes_with_crlf);
	tcase_add_test(tc, v2_parses_local_unspec_unix_and_tlvs);
	tcase_add_test(tc, v2_malformed_headers_are_refused);
	tcase_add_test(tc, trusted_proxies_parse_and_match);
	suite_add_tcase(s, tc);
	return (s);
}
