/*
 * A worker's log budget: the token bucket the master charges each LOG
 * line to, in lines and in bytes, and how it refills.  Peer-info keys: a
 * worker's text, parsed strictly into the connection it names.
 */
#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "unit.h"

static struct control_bucket
bucket(long long rate, long long burst)
{
	struct control_bucket b = { burst * 1000, 0, rate, burst };

	return (b);
}

START_TEST(burst_passes_then_lines_are_dropped)
{
	struct control_bucket b = bucket(100, 200);
	int                   i, passed = 0;

	for (i = 0; i < 1000; i++)
		passed += control_log_take(&b, 0, 10);
	ck_assert_int_eq(passed, 200);
}
END_TEST

START_TEST(refill_is_the_rate_and_never_above_the_burst)
{
	struct control_bucket b = bucket(100, 200);
	int                   i, passed = 0;

	for (i = 0; i < 200; i++)
		ck_assert_int_eq(control_log_take(&b, 0, 10), 1);
	/* 10 ms is one line at 100 a second */
	ck_assert_int_eq(control_log_take(&b, 5, 10), 0);
	ck_assert_int_eq(control_log_take(&b, 10, 10), 1);
	ck_assert_int_eq(control_log_take(&b, 10, 10), 0);
	/* an hour later: a full bucket, not 360,000 lines */
	for (i = 0; i < 1000; i++)
		passed += control_log_take(&b, 3600 * 1000, 10);
	ck_assert_int_eq(passed, 200);
}
END_TEST

START_TEST(every_256_bytes_count_as_a_line)
{
	struct control_bucket b = bucket(100, 10);

	ck_assert_int_eq(control_log_take(&b, 0, 0), 1);    /* 1: 9 left */
	ck_assert_int_eq(control_log_take(&b, 0, 256), 1);  /* 1: 8 left */
	ck_assert_int_eq(control_log_take(&b, 0, 257), 1);  /* 2: 6 left */
	ck_assert_int_eq(control_log_take(&b, 0, 1024), 1); /* 4: 2 left */
	ck_assert_int_eq(control_log_take(&b, 0, 1024), 0); /* 4: too many */
	ck_assert_int_eq(control_log_take(&b, 0, 512), 1);  /* 2: 0 left */
	ck_assert_int_eq(control_log_take(&b, 0, 1), 0);
}
END_TEST

static struct control_key
parse(const char *key)
{
	struct control_key k;

	control_key_parse(key, &k);
	return (k);
}

START_TEST(tcp_key_is_the_full_address_and_port)
{
	struct control_key k = parse("127.0.0.1:54321"), m;

	ck_assert_int_eq(k.kind, RELAY_PEER_TCP);
	ck_assert_uint_eq(k.key, 54321);
	ck_assert_int_eq(k.addr.sin.sin_family, AF_INET);
	ck_assert_uint_eq(ntohs(k.addr.sin.sin_port), 54321);
	ck_assert_uint_eq(ntohl(k.addr.sin.sin_addr.s_addr), 0x7f000001);
	k = parse("[::1]:8080");
	ck_assert_int_eq(k.kind, RELAY_PEER_TCP);
	ck_assert_int_eq(k.addr.sin6.sin6_family, AF_INET6);
	ck_assert(IN6_IS_ADDR_LOOPBACK(&k.addr.sin6.sin6_addr));
	/* A dual-stack worker sees an IPv4 master as ::ffff:a.b.c.d. */
	m = parse("[::ffff:127.0.0.2]:80");
	k = parse("127.0.0.2:80");
	ck_assert_int_eq(m.kind, RELAY_PEER_TCP);
	ck_assert_int_eq(m.addr.sin.sin_family, AF_INET);
	ck_assert_uint_eq(
	    m.addr.sin.sin_addr.s_addr, k.addr.sin.sin_addr.s_addr);
}
END_TEST

START_TEST(bare_port_names_no_connection)
{
	struct control_key k = parse("54321");

	ck_assert_int_eq(k.kind, RELAY_PEER_NONE);
	ck_assert_int_eq(k.bare, 1);
	k = parse("65536");
	ck_assert_int_eq(k.kind, RELAY_PEER_NONE);
}
END_TEST

START_TEST(malformed_keys_name_no_connection)
{
	static const char *bad[] = { "", ":80", "127.0.0.1:", "127.0.0.1:0",
		"127.0.0.1:65536", "127.0.0.1:80x", "127.0.0.1:+80",
		"127.0.0.1:000080", "localhost:80", "::1:80", "[::1:80",
		"[127.0.0.1]:80", "[]:80", "127.1:80", " 127.0.0.1:80",
		"ino:", "ino:0", "ino:4294967296", "ino:12a", "ino:-1", "@",
		"@sn-", "@sn-1-2", "@abc" };
	size_t             i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(parse(bad[i]).kind == RELAY_PEER_NONE,
		    "key \"%s\" was taken", bad[i]);
		ck_assert_msg(parse(bad[i]).bare == 0, "%s", bad[i]);
	}
}
END_TEST

START_TEST(inode_key_is_a_32_bit_inode)
{
	struct control_key k = parse("ino:4294967295");

	ck_assert_int_eq(k.kind, RELAY_PEER_INODE);
	ck_assert_uint_eq(k.key, 4294967295U);
}
END_TEST

START_TEST(name_key_needs_our_pid_a_serial_and_a_16_digit_tag)
{
	char               key[64];
	unsigned           pid = (unsigned)getpid();
	struct control_key k;

	snprintf(key, sizeof key, "@sn-%x-1f-0123456789abcdef", pid);
	k = parse(key);
	ck_assert_int_eq(k.kind, RELAY_PEER_NAME);
	ck_assert_uint_eq(k.key, 0x1f);
	ck_assert(k.tag == 0x0123456789abcdefULL);
	snprintf(key, sizeof key, "@sn-%x-1f", pid); /* the old form */
	ck_assert_int_eq(parse(key).kind, RELAY_PEER_NONE);
	snprintf(key, sizeof key, "@sn-%x-1f-0123456789abcde", pid);
	ck_assert_int_eq(parse(key).kind, RELAY_PEER_NONE);
	snprintf(key, sizeof key, "@sn-%x-1f-0123456789ABCDEF", pid);
	ck_assert_int_eq(parse(key).kind, RELAY_PEER_NONE);
	snprintf(key, sizeof key, "@sn-%x--0123456789abcdef", pid);
	ck_assert_int_eq(parse(key).kind, RELAY_PEER_NONE);
	snprintf(key, sizeof key, "@sn-%x-123456789-0123456789abcdef", pid);
	ck_assert_int_eq(parse(key).kind, RELAY_PEER_NONE);
	snprintf(key, sizeof key, "@sn-%x-1f-0123456789abcdef", pid + 1);
	ck_assert_int_eq(parse(key).kind, RELAY_PEER_NONE);
}
END_TEST

Suite *
control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("log budget");

	tcase_add_test(tc, burst_passes_then_lines_are_dropped);
	tcase_add_test(tc, refill_is_the_rate_and_never_above_the_burst);
	tcase_add_test(tc, every_256_bytes_count_as_a_line);
	suite_add_tcase(s, tc);
	tc = tcase_create("peer keys");
	tcase_add_test(tc, tcp_key_is_the_full_address_and_port);
	tcase_add_test(tc, bare_port_names_no_connection);
	tcase_add_test(tc, malformed_keys_name_no_connection);
	tcase_add_test(tc, inode_key_is_a_32_bit_inode);
	tcase_add_test(tc, name_key_needs_our_pid_a_serial_and_a_16_digit_tag);
	suite_add_tcase(s, tc);
	return (s);
}
