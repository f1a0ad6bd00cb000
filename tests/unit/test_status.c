/* The status snapshot's JSON and the admin socket's frame header. */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "admin.h"
#include "service.h"
#include "status.h"
#include "unit.h"

/* What out holds, as a NUL-terminated string (freed by the caller). */
static char *
text(struct evbuffer *out)
{
	size_t n = evbuffer_get_length(out);
	char  *s = calloc(1, n + 1);

	ck_assert_ptr_nonnull(s);
	evbuffer_remove(out, s, n);
	return (s);
}

START_TEST(json_strings_escape_quotes_backslashes_and_control_bytes)
{
	struct evbuffer *out = evbuffer_new();
	char            *s;

	status_json_string(out, "a\"b\\c\n\x01\x7f\xc3\xa9");
	s = text(out);
	ck_assert_str_eq(s, "\"a\\\"b\\\\c\\u000a\\u0001\\u007f\xc3\xa9\"");
	free(s);
	status_json_string(out, "");
	s = text(out);
	ck_assert_str_eq(s, "\"\"");
	free(s);
	evbuffer_free(out);
}
END_TEST

START_TEST(snapshot_without_services_is_complete_json)
{
	static struct service_head none = TAILQ_HEAD_INITIALIZER(none);
	struct evbuffer           *out = evbuffer_new();
	char                      *s;

	status_init(&none);
	status_reloaded(0);
	status_json(out);
	s = text(out);
	ck_assert_msg(strncmp(s, "{\"version\":1,\"time\":", 20) == 0, "%s", s);
	ck_assert_ptr_nonnull(strstr(s,
	    "\"reloads\":{\"ok\":0,\"failed\":1,\"last_result\":\"failed\",\"last_age_s\":"));
	ck_assert_ptr_nonnull(strstr(s, "},\"services\":[]}\n"));
	free(s);
	evbuffer_free(out);
}
END_TEST

START_TEST(admin_header_round_trips_and_refuses_what_is_not_ours)
{
	unsigned char b[ADMIN_HDR];
	uint32_t      len;
	uint16_t      flags;
	uint8_t       type;

	admin_header_put(b, ADMIN_OUT, ADMIN_F_JSON, 65536);
	ck_assert_int_eq(
	    admin_header_get(b, &type, &flags, &len, ADMIN_FRAME_MAX), 0);
	ck_assert_int_eq(type, ADMIN_OUT);
	ck_assert_int_eq(flags, ADMIN_F_JSON);
	ck_assert_int_eq(len, 65536);
	ck_assert_int_eq(
	    admin_header_get(b, &type, &flags, &len, ADMIN_REQUEST_MAX), -1);
	b[0] = 2;
	ck_assert_int_eq(
	    admin_header_get(b, &type, &flags, &len, ADMIN_FRAME_MAX), -1);
	admin_header_put(b, 9, 0, 0);
	ck_assert_int_eq(
	    admin_header_get(b, &type, &flags, &len, ADMIN_FRAME_MAX), -1);
	admin_header_put(b, ADMIN_REQUEST, 0, 0xffffffffU);
	ck_assert_int_eq(
	    admin_header_get(b, &type, &flags, &len, ADMIN_FRAME_MAX), -1);
}
END_TEST

Suite *
status_suite(void)
{
	Suite *s = suite_create("status");
	TCase *tc = tcase_create("status");

	tcase_add_test(
	    tc, json_strings_escape_quotes_backslashes_and_control_bytes);
	tcase_add_test(tc, snapshot_without_services_is_complete_json);
	tcase_add_test(
	    tc, admin_header_round_trips_and_refuses_what_is_not_ours);
	suite_add_tcase(s, tc);
	return (s);
}
