/*
 * The control protocol's framing, from the test vectors documented in
 * socketnaut-agent(7), and every malformed case the master must refuse.
 */
#include <string.h>

#include "socketnaut/proto.h"
#include "unit.h"

static ssize_t
parse(const char *bytes, size_t len, struct sn_msg *m, const char **cause)
{
	*cause = NULL;
	return (sn_proto_parse(bytes, len, m, cause));
}

START_TEST(vectors_parse_to_their_messages)
{
	static const struct {
		const char *bytes;
		size_t      len;
		uint8_t     type;
		const char *payload;
	} v[] = {
		{ "\x01\x01\x00\x00", 4, SN_MSG_READY, "" },
		{ "\x01\x01\x00\x09port=8080", 13, SN_MSG_READY, "port=8080" },
		{ "\x01\x02\x00\x0eid=1\nkey=54321", 18, SN_MSG_PEER_QUERY,
		    "id=1\nkey=54321" },
		{ "\x01\x03\x00\x0flevel=6\ntext=hi", 19, SN_MSG_LOG,
		    "level=6\ntext=hi" },
		{ "\x01\x04\x00\x00", 4, SN_MSG_DRAINED, "" },
		{ "\x01\x82\x00\x00", 4, SN_MSG_DRAIN, "" },
		{ "\x01\x81\x00\x13id=7\nstatus=unknown", 23, SN_MSG_PEER_INFO,
		    "id=7\nstatus=unknown" },
		{ "\x01\x06\x00\x04id=3", 8, SN_MSG_CLOSED, "id=3" },
		{ "\x01\x83\x00\x11id=3\nlocal_port=8", 21, SN_MSG_HANDOFF,
		    "id=3\nlocal_port=8" },
	};
	struct sn_msg m;
	const char   *cause;
	size_t        i;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		ck_assert_int_eq(
		    parse(v[i].bytes, v[i].len, &m, &cause), (ssize_t)v[i].len);
		ck_assert_int_eq(m.type, v[i].type);
		ck_assert_int_eq(m.len, strlen(v[i].payload));
		ck_assert(memcmp(m.payload, v[i].payload, m.len) == 0);
	}
}
END_TEST

START_TEST(frames_build_the_documented_bytes)
{
	char out[64];

	ck_assert_int_eq(
	    sn_proto_frame(out, sizeof out, SN_MSG_READY, "port=8080", 9), 13);
	ck_assert(memcmp(out, "\x01\x01\x00\x09port=8080", 13) == 0);
	ck_assert_int_eq(
	    sn_proto_frame(out, sizeof out, SN_MSG_DRAIN, NULL, 0), 4);
	ck_assert(memcmp(out, "\x01\x82\x00\x00", 4) == 0);
	ck_assert_int_eq(
	    sn_proto_frame(out, 8, SN_MSG_READY, "port=8080", 9), -1);
	ck_assert_int_eq(
	    sn_proto_frame(out, sizeof out, SN_MSG_LOG, out, SN_PROTO_MAX + 1),
	    -1);
}
END_TEST

START_TEST(partial_frames_ask_for_more)
{
	const char   *full = "\x01\x02\x00\x0eid=1\nkey=54321";
	struct sn_msg m;
	const char   *cause;
	size_t        n;

	for (n = 0; n < 18; n++)
		ck_assert_int_eq(parse(full, n, &m, &cause), 0);
	ck_assert_int_eq(parse(full, 18, &m, &cause), 18);
}
END_TEST

START_TEST(malformed_frames_are_refused_with_a_reason)
{
	static const struct {
		const char *bytes;
		size_t      len;
		const char *why;
	} v[] = {
		{ "\x02\x01\x00\x00", 4, "version" },
		{ "\x00\x01\x00\x00", 4, "version" },
		{ "\x01\x09\x00\x00", 4, "unknown message type" },
		{ "\x01\x00\x00\x00", 4, "unknown message type" },
		{ "\x01\x02\x10\x01", 4, "too long" },
		{ "\x01\x02\xff\xff", 4, "too long" },
		{ "\x01\x02\x00\x04idx1", 8, "malformed" },
		{ "\x01\x02\x00\x04=abc", 8, "malformed" },
		{ "\x01\x02\x00\x05Id=1\n", 9, "malformed" },
		{ "\x01\x02\x00\x06id=1\x01\n", 10, "malformed" },
		{ "\x01\x01\x00\x07port=8\x7f", 11, "malformed" },
	};
	struct sn_msg m;
	const char   *cause;
	size_t        i;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		ck_assert_msg(parse(v[i].bytes, v[i].len, &m, &cause) == -1,
		    "vector %zu accepted", i);
		ck_assert_ptr_nonnull(strstr(cause, v[i].why));
	}
}
END_TEST

START_TEST(fields_are_found_text_runs_to_the_end)
{
	const char   *b = "\x01\x03\x00\x1alevel=4\ntext=a=b\nline two";
	struct sn_msg m;
	const char   *cause;
	char          v[64], small[3];

	ck_assert_int_eq(parse(b, 30, &m, &cause), 30);
	ck_assert_int_eq(sn_proto_field(&m, "level", v, sizeof v), 0);
	ck_assert_str_eq(v, "4");
	ck_assert_int_eq(sn_proto_field(&m, "text", v, sizeof v), 0);
	ck_assert_str_eq(v, "a=b\nline two");
	ck_assert_int_eq(sn_proto_field(&m, "lev", v, sizeof v), -1);
	ck_assert_int_eq(sn_proto_field(&m, "id", v, sizeof v), -1);
	ck_assert_int_eq(sn_proto_field(&m, "text", small, sizeof small), -1);
}
END_TEST

START_TEST(maximum_size_frame_is_accepted_one_more_is_not)
{
	static char   buf[SN_PROTO_HDR + SN_PROTO_MAX + 1];
	struct sn_msg m;
	const char   *cause;

	memset(buf, 'x', sizeof buf);
	memcpy(buf + SN_PROTO_HDR, "text=", 5);
	ck_assert_int_eq(sn_proto_frame(buf, sizeof buf, SN_MSG_LOG,
			     buf + SN_PROTO_HDR, SN_PROTO_MAX),
	    SN_PROTO_HDR + SN_PROTO_MAX);
	ck_assert_int_eq(
	    parse(buf, sizeof buf, &m, &cause), SN_PROTO_HDR + SN_PROTO_MAX);
	buf[2] = (SN_PROTO_MAX + 1) >> 8;
	buf[3] = (SN_PROTO_MAX + 1) & 0xff;
	ck_assert_int_eq(parse(buf, sizeof buf, &m, &cause), -1);
}
END_TEST

Suite *
proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("framing");

	tcase_add_test(tc, vectors_parse_to_their_messages);
	tcase_add_test(tc, frames_build_the_documented_bytes);
	tcase_add_test(tc, partial_frames_ask_for_more);
	tcase_add_test(tc, malformed_frames_are_refused_with_a_reason);
	tcase_add_test(tc, fields_are_found_text_runs_to_the_end);
	tcase_add_test(tc, maximum_size_frame_is_accepted_one_more_is_not);
	suite_add_tcase(s, tc);
	return (s);
}
