/* Durations, command splitting, placeholders and addresses. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "util.h"

static long long
dur(const char *s)
{
	long long ms = -1;
	char     *cause = NULL;

	if (duration_parse(s, &ms, &cause) == -1) {
		free(cause);
		return (-1);
	}
	return (ms);
}

START_TEST(duration_units_convert_to_milliseconds)
{
	ck_assert_int_eq(dur("500ms"), 500);
	ck_assert_int_eq(dur("10s"), 10000);
	ck_assert_int_eq(dur("2m"), 120000);
	ck_assert_int_eq(dur("1h"), 3600000);
	ck_assert_int_eq(dur("7"), 7000);
	ck_assert_int_eq(dur("0"), 0);
	ck_assert_int_eq(dur("24h"), 86400000);
}
END_TEST

START_TEST(duration_rejects_bad_units_and_overflow)
{
	long long ms;
	char     *cause = NULL;

	ck_assert_int_eq(dur("10parsecs"), -1);
	ck_assert_int_eq(dur("ms"), -1);
	ck_assert_int_eq(dur("-1s"), -1);
	ck_assert_int_eq(dur("1.5s"), -1);
	ck_assert_int_eq(dur("25h"), -1);
	ck_assert_int_eq(dur("99999999999999999999999s"), -1);
	ck_assert_int_eq(duration_parse("3 days", &ms, &cause), -1);
	ck_assert_ptr_nonnull(strstr(cause, "3 days"));
	free(cause);
}
END_TEST

static char **
split(const char *s)
{
	char **argv = NULL, *cause = NULL;

	if (command_split(s, &argv, &cause) == -1) {
		free(cause);
		return (NULL);
	}
	return (argv);
}

START_TEST(command_split_follows_shell_quoting)
{
	char **v;

	v = split("  /usr/bin/gunicorn --bind unix:{socket}\tapp:app ");
	ck_assert_int_eq(argv_count(v), 4);
	ck_assert_str_eq(v[0], "/usr/bin/gunicorn");
	ck_assert_str_eq(v[2], "unix:{socket}");
	ck_assert_str_eq(v[3], "app:app");
	argv_free(v);

	v = split("sh -c 'echo \"a b\"; exit 3' x\\ y \"q\\\"uote\\\\\" ''");
	ck_assert_int_eq(argv_count(v), 6);
	ck_assert_str_eq(v[2], "echo \"a b\"; exit 3");
	ck_assert_str_eq(v[3], "x y");
	ck_assert_str_eq(v[4], "q\"uote\\");
	ck_assert_str_eq(v[5], "");
	argv_free(v);

	v = split("a\"b c\"'d'");
	ck_assert_int_eq(argv_count(v), 1);
	ck_assert_str_eq(v[0], "ab cd");
	argv_free(v);
}
END_TEST

START_TEST(command_split_rejects_unterminated_and_empty)
{
	ck_assert_ptr_null(split("echo 'oops"));
	ck_assert_ptr_null(split("echo \"oops"));
	ck_assert_ptr_null(split("echo \\"));
	ck_assert_ptr_null(split("   "));
	ck_assert_ptr_null(split(""));
}
END_TEST

START_TEST(template_expands_every_placeholder)
{
	struct template_vars tv = { "/run/s/3.sock", 4242, 3, "web" };
	char                *s, *cause = NULL;

	s = template_expand("unix:{socket}", &tv, &cause);
	ck_assert_str_eq(s, "unix:/run/s/3.sock");
	free(s);
	s = template_expand("{service}-{index}:{port}", &tv, &cause);
	ck_assert_str_eq(s, "web-3:4242");
	free(s);
	s = template_expand("{{socket}} }} {", &tv, &cause);
	ck_assert_ptr_null(s);
	free(cause);
	s = template_expand("{{socket}} }}", &tv, &cause);
	ck_assert_str_eq(s, "{socket} }");
	free(s);
}
END_TEST

START_TEST(template_rejects_unknown_and_inapplicable_placeholders)
{
	struct template_vars tcp = { NULL, 4242, 0, "web" };
	struct template_vars unix_ = { "/s", 0, 0, "web" };
	char                *cause = NULL;

	ck_assert_ptr_null(template_expand("{sockett}", &unix_, &cause));
	ck_assert_ptr_nonnull(strstr(cause, "unknown placeholder {sockett}"));
	free(cause);
	ck_assert_ptr_null(template_expand("--bind {socket}", &tcp, &cause));
	ck_assert_ptr_nonnull(strstr(cause, "does not apply"));
	free(cause);
	ck_assert_ptr_null(template_expand("{port}", &unix_, &cause));
	free(cause);
}
END_TEST

START_TEST(addr_parse_accepts_v4_v6_star_and_names)
{
	struct sn_addr *a;
	size_t          n;
	char           *cause = NULL, buf[ADDRSTRLEN];

	ck_assert_int_eq(addr_parse("127.0.0.1:8080", &a, &n, &cause), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(addr_str((struct sockaddr *)&a->ss, buf, sizeof buf),
	    "127.0.0.1:8080");
	free(a);
	ck_assert_int_eq(addr_parse("[::1]:80", &a, &n, &cause), 0);
	ck_assert_str_eq(
	    addr_str((struct sockaddr *)&a->ss, buf, sizeof buf), "[::1]:80");
	ck_assert_int_eq(a->dualstack, 0);
	free(a);
	ck_assert_int_eq(addr_parse("*:9000", &a, &n, &cause), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(a->dualstack, 1);
	free(a);
	ck_assert_int_eq(addr_parse("localhost:9000", &a, &n, &cause), 0);
	ck_assert_int_ge(n, 1);
	free(a);
}
END_TEST

START_TEST(addr_parse_rejects_malformed_addresses)
{
	static const char *bad[] = {
		"127.0.0.1",
		"127.0.0.1:0",
		"127.0.0.1:65536",
		"1.2.3.4:http",
		"::1:80",
		"[::1]80",
		"[::1",
		":",
	};
	struct sn_addr *a;
	size_t          i, n;
	char           *cause;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cause = NULL;
		ck_assert_msg(addr_parse(bad[i], &a, &n, &cause) == -1,
		    "accepted %s", bad[i]);
		ck_assert_ptr_nonnull(cause);
		free(cause);
	}
}
END_TEST

Suite *
util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("parsing");

	tcase_add_test(tc, duration_units_convert_to_milliseconds);
	tcase_add_test(tc, duration_rejects_bad_units_and_overflow);
	tcase_add_test(tc, command_split_follows_shell_quoting);
	tcase_add_test(tc, command_split_rejects_unterminated_and_empty);
	tcase_add_test(tc, template_expands_every_placeholder);
	tcase_add_test(
	    tc, template_rejects_unknown_and_inapplicable_placeholders);
	tcase_add_test(tc, addr_parse_accepts_v4_v6_star_and_names);
	tcase_add_test(tc, addr_parse_rejects_malformed_addresses);
	suite_add_tcase(s, tc);
	return (s);
}
