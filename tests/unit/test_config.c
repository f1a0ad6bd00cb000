/*
 * The configuration: a good file loads into the expected structures, and
 * every validation error is reported as file:line with a readable reason.
 */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "unit.h"

static char dir[64];
static char cpath[256], lpath[256];

static void
setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/sn-unit-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(cpath, sizeof cpath, "%s/t.conf", dir);
	snprintf(lpath, sizeof lpath, "%s/log", dir);
	ck_assert_int_eq(log_open(lpath, NULL), 0);
}

static void
teardown(void)
{
	char cmd[512];

	log_open("stderr", NULL);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Load len bytes as the whole config file; *out gets what was logged. */
static struct sn_config *
load_bytes(const char *text, size_t len, char **out)
{
	struct sn_config *c;
	FILE             *f;
	long              n;

	f = fopen(cpath, "w");
	fwrite(text, 1, len, f);
	fclose(f);
	truncate(lpath, 0);
	c = config_load(cpath);
	f = fopen(lpath, "r");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	*out = calloc(1, n + 1);
	fread(*out, 1, n, f);
	fclose(f);
	return (c);
}

/* Load text as the whole config file; *out gets what was logged. */
static struct sn_config *
load_raw(const char *text, char **out)
{
	return (load_bytes(text, strlen(text), out));
}

/* Load text after a runtime_dir line of the test's own. */
static struct sn_config *
load(const char *text, char **out)
{
	struct sn_config *c;
	char             *full;

	if (asprintf(&full, "runtime_dir = \"%s/run\"\n%s", dir, text) == -1)
		return (NULL);
	c = load_raw(full, out);
	free(full);
	return (c);
}

/* The text fails to load with msg reported on the given line (1 = first line of
 * text). */
static void
assert_error(const char *text, int line, const char *msg)
{
	struct sn_config *c;
	char             *out, want[512];

	c = load(text, &out);
	ck_assert_msg(c == NULL, "config accepted: %s", text);
	snprintf(want, sizeof want, "%s:%d: ", cpath, line + 1);
	ck_assert_msg(strstr(out, want) != NULL, "no \"%s\" in: %s", want, out);
	ck_assert_msg(strstr(out, msg) != NULL, "no \"%s\" in: %s", msg, out);
	free(out);
}

#define SVC_HEAD "service \"web\" {\n  listen = { \"127.0.0.1:18080\" }\n"
#define SVC_CMD  "  command = \"/bin/sh -c 'exit 0'\"\n"

START_TEST(good_config_loads_with_defaults_and_overrides)
{
	struct sn_config       *c;
	struct sn_service_conf *sc;
	char                   *out;

	c = load("shutdown_timeout = 2s\n"
		 "service \"web\" {\n"
		 "  listen = { \"127.0.0.1:18080\", \"[::1]:18080\" }\n"
		 "  command = { \"/bin/sh\", \"-c\", \"exec x {index}\" }\n"
		 "  min_workers = 2\n"
		 "  max_workers = 16\n"
		 "  workers_checking_interval = 500ms\n"
		 "  env = { \"A=1\", \"B=two words\" }\n"
		 "  idle_timeout = 0\n"
		 "}\n"
		 "service \"api\" {\n"
		 "  listen = { \"127.0.0.1:18081\" }\n"
		 "  command = \"sh -c 'exit 0'\"\n"
		 "  worker_count = 3\n"
		 "  min_workers = 7\n"
		 "  backend = tcp\n"
		 "  shutdown_timeout = 1m\n"
		 "}\n",
	    &out);
	ck_assert_msg(c != NULL, "%s", out);
	ck_assert_int_eq(c->nservices, 2);
	sc = &c->services[0];
	ck_assert_str_eq(sc->name, "web");
	ck_assert_int_eq(sc->nlisten, 2);
	ck_assert_int_eq(argv_count(sc->argv), 3);
	ck_assert_str_eq(sc->exec_path, "/bin/sh");
	ck_assert_int_eq(sc->line, 3);
	ck_assert_int_eq(sc->min_workers, 2);
	ck_assert_int_eq(sc->max_workers, 16);
	ck_assert_int_eq(sc->check_interval, 500);
	ck_assert_int_eq(sc->idle_timeout, 0);
	ck_assert_int_eq(sc->connect_timeout, 5000);
	ck_assert_int_eq(sc->shutdown_timeout, 2000);
	ck_assert_int_eq(sc->backend, BACKEND_UNIX);
	ck_assert_str_eq(sc->env[1], "B=two words");
	sc = &c->services[1];
	ck_assert_int_eq(sc->min_workers, 3);
	ck_assert_int_eq(sc->max_workers, 3);
	ck_assert_int_eq(sc->backend, BACKEND_TCP);
	ck_assert_int_eq(sc->shutdown_timeout, 60000);
	ck_assert_ptr_nonnull(strstr(sc->exec_path, "/sh"));
	config_unref(c);
	free(out);
}
END_TEST

START_TEST(min_greater_than_max_names_max_workers_line)
{
	assert_error(SVC_HEAD SVC_CMD
	    "  min_workers = 5\n  max_workers = 2\n}\n",
	    5, "min_workers (5) is greater than max_workers (2)");
}
END_TEST

START_TEST(unknown_option_is_reported)
{
	assert_error(SVC_HEAD SVC_CMD "  max_wokers = 2\n}\n", 4, "max_wokers");
}
END_TEST

START_TEST(bad_duration_is_reported)
{
	assert_error(SVC_HEAD SVC_CMD "  ready_timeout = 10parsecs\n}\n", 4,
	    "invalid duration \"10parsecs\"");
}
END_TEST

START_TEST(bad_listen_address_is_reported)
{
	assert_error(
	    "service \"web\" {\n  listen = { \"127.0.0.1:99999\" }\n" SVC_CMD
	    "}\n",
	    2, "invalid port");
}
END_TEST

START_TEST(missing_binary_is_reported)
{
	assert_error(SVC_HEAD
	    "  command = \"/nonexistent/x --socket {socket}\"\n"
	    "}\n",
	    3, "cannot execute \"/nonexistent/x\"");
}
END_TEST

START_TEST(unknown_user_and_group_are_reported)
{
	assert_error(SVC_HEAD SVC_CMD "  user = \"no-such-user-xyz\"\n}\n", 4,
	    "unknown user \"no-such-user-xyz\"");
	assert_error(SVC_HEAD SVC_CMD "  group = \"no-such-group-xyz\"\n}\n", 4,
	    "unknown group");
}
END_TEST

START_TEST(two_services_on_one_address_are_reported)
{
	assert_error(SVC_HEAD SVC_CMD
	    "}\n"
	    "service \"two\" {\n  listen = { \"127.0.0.1:18080\" }\n" SVC_CMD
	    "}\n",
	    6, "127.0.0.1:18080 is already used by service \"web\"");
}
END_TEST

START_TEST(no_service_is_reported)
{
	struct sn_config *c;
	char             *out;

	c = load("log_level = debug\n", &out);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(out, "no service defined"));
	free(out);
}
END_TEST

START_TEST(bad_values_are_each_reported)
{
	assert_error(SVC_HEAD SVC_CMD "  backend = udp\n}\n", 4,
	    "unknown backend \"udp\"");
	assert_error(SVC_HEAD SVC_CMD "  max_workers = 0\n}\n", 4,
	    "max_workers (0) must be between 1 and 4096");
	assert_error(SVC_HEAD SVC_CMD "  backlog = 70000\n}\n", 4, "backlog");
	assert_error(SVC_HEAD SVC_CMD "  env = { \"NOEQUALS\" }\n}\n", 4,
	    "\"NOEQUALS\" is not NAME=value");
	assert_error(SVC_HEAD SVC_CMD "  directory = \"/nonexistent-dir\"\n}\n",
	    4, "/nonexistent-dir");
	assert_error(SVC_HEAD "  command = \"sh -c 'unterminated\"\n}\n", 3,
	    "unterminated");
	assert_error(SVC_HEAD "  command = \"x {sockt}\"\n}\n", 3,
	    "unknown placeholder {sockt}");
	assert_error(SVC_HEAD "  backend = tcp\n  command = \"sh --bind "
			      "{socket}\"\n}\n",
	    4, "does not apply");
	assert_error(SVC_HEAD SVC_CMD "  connect_timeout = 0\n}\n", 4,
	    "connect_timeout must be at least");
	assert_error("log_level = chatty\n" SVC_HEAD SVC_CMD "}\n", 1,
	    "unknown level \"chatty\"");
	assert_error("log_target = relative.log\n" SVC_HEAD SVC_CMD "}\n", 1,
	    "log_target must be");
	assert_error(
	    "service \"bad name\" {\n  listen = { \"127.0.0.1:1\" }\n" SVC_CMD
	    "}\n",
	    1, "service name \"bad name\"");
}
END_TEST

START_TEST(unusable_runtime_dir_is_reported)
{
	struct sn_config *c;
	char             *out, want[512];

	/* A runtime_dir under a regular file can never be created. */
	c = load_raw("runtime_dir = \"/etc/hostname/run\"\n" SVC_HEAD SVC_CMD
		     "}\n",
	    &out);
	ck_assert_ptr_null(c);
	snprintf(want, sizeof want,
	    "%s:1: runtime_dir: /etc/hostname is not a directory", cpath);
	ck_assert_msg(strstr(out, want) != NULL, "no \"%s\" in: %s", want, out);
	free(out);
}
END_TEST

START_TEST(missing_command_and_listen_are_reported)
{
	assert_error("service \"web\" {\n  listen = { \"127.0.0.1:1\" }\n}\n",
	    1, "command is required");
	assert_error(
	    "service \"web\" {\n" SVC_CMD "}\n", 1, "listen is required");
}
END_TEST

START_TEST(every_error_in_a_file_is_reported)
{
	struct sn_config *c;
	char             *out;

	c = load(SVC_HEAD SVC_CMD "  min_workers = 9000\n"
				  "  ready_timeout = \"3 parsecs\"\n  user = "
				  "\"no-such-user-xyz\"\n}\n",
	    &out);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(out, "3 errors"));
	free(out);
}
END_TEST

START_TEST(comments_do_not_shift_line_numbers)
{
	assert_error("# one\n// two\n/* three\n four */\n"
		     "service \"web\" { # a \"quoted\" comment\n"
		     "  listen = { \"127.0.0.1:18080\" } // trailing\n"
		     "  command = \"/bin/sh -c '# not a comment'\"\n"
		     "  min_workers = 5\n  max_workers = 2\n}\n",
	    9, "min_workers (5) is greater than max_workers (2)");
}
END_TEST

START_TEST(unreadable_file_is_reported)
{
	ck_assert_ptr_null(config_load("/nonexistent/socketnaut.conf"));
}
END_TEST

/* The file fails to load with msg on the given line of the whole file. */
static void
assert_raw_error(const char *text, size_t len, int line, const char *msg)
{
	struct sn_config *c;
	char             *out, want[512];

	c = load_bytes(text, len, &out);
	ck_assert_msg(c == NULL, "config accepted: %s", text);
	if (line > 0)
		snprintf(want, sizeof want, "%s:%d: %s", cpath, line, msg);
	else
		snprintf(want, sizeof want, "%s: %s", cpath, msg);
	ck_assert_msg(strstr(out, want) != NULL, "no \"%s\" in: %s", want, out);
	free(out);
}

#define SVC_B "service \"b\" {\n  listen = { \"127.0.0.1:18081\" }\n" SVC_CMD

START_TEST(unclosed_comment_names_the_line_it_opens_on)
{
	assert_error(SVC_HEAD SVC_CMD "}\n/* the rest\n\n" SVC_B "}\n", 5,
	    "comment /* is not closed");
}
END_TEST

START_TEST(nul_byte_names_its_line)
{
	const char text[] = "runtime_dir = \"/tmp\"\n" SVC_HEAD SVC_CMD
			    "}\n\n  \0\n" SVC_B "}\n";

	assert_raw_error(text, sizeof text - 1, 7, "NUL byte");
}
END_TEST

START_TEST(missing_final_brace_names_the_section_line)
{
	assert_error(SVC_HEAD SVC_CMD "}\n# b\n" SVC_B, 6,
	    "section opened here is not closed");
	/* A section's title may be on a line of its own. */
	assert_error(SVC_HEAD SVC_CMD "}\nservice\n  \"b\"\n{\n"
				      "  listen = { \"127.0.0.1:18081\" }\n",
	    5, "section opened here is not closed");
}
END_TEST

START_TEST(unterminated_string_names_its_line)
{
	assert_error(SVC_HEAD "  command = \"/bin/sh\n}\n" SVC_B "}\n", 3,
	    "string opened on this line is not closed");
	assert_error(SVC_HEAD SVC_CMD "  user = 'root\n}\n", 4,
	    "string opened on this line is not closed");
}
END_TEST

START_TEST(lexer_corners_are_read_as_libconfuse_reads_them)
{
	struct sn_config *c;
	char             *out;

	/* // inside a word is no comment; \ ends a line inside a string. */
	c = load("log_target = /tmp//sn-unit-b.log\n"
		 "service web {\n"
		 "  listen = { \"127.0.0.1:18080\" } /* a\n"
		 "  comment */ command = \"/bin/sh -c \\\n"
		 "    'exit 0'\"\n"
		 "  env = { \"A=${NO_SUCH_VAR_XYZ:-x}\", \"B=\\${HOME}\",\n"
		 "    \"C=\xff\xfe not UTF-8\" } # \xc3\x28\n"
		 "}\n",
	    &out);
	ck_assert_msg(c != NULL, "%s", out);
	ck_assert_str_eq(c->log_target, "/tmp//sn-unit-b.log");
	ck_assert_str_eq(c->services[0].env[0], "A=x");
	ck_assert_str_eq(c->services[0].env[1], "B=${HOME}");
	ck_assert_str_eq(c->services[0].env[2], "C=\xff\xfe not UTF-8");
	ck_assert_int_eq(c->services[0].line, 3);
	config_unref(c);
	free(out);
}
END_TEST

START_TEST(duplicate_service_name_names_both_lines)
{
	assert_error(SVC_HEAD SVC_CMD "}\n"
				      "service \"web\" {\n  listen = { "
				      "\"127.0.0.1:18081\" }\n" SVC_CMD "}\n",
	    5, "service \"web\" is already defined on line 2");
}
END_TEST

START_TEST(same_address_twice_in_one_service_is_reported)
{
	assert_error("service \"web\" {\n" SVC_CMD
		     "  listen = { \"127.0.0.1:18080\", \"127.0.0.1:18080\" }\n"
		     "}\n",
	    3, "127.0.0.1:18080 is already used by service \"web\"");
}
END_TEST

START_TEST(directory_fifo_and_huge_file_are_refused)
{
	struct sn_config *c;
	char              fifo[300], *big;
	size_t            n = 16 * 1024 * 1024 + 1;

	snprintf(fifo, sizeof fifo, "%s/fifo.conf", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	/* Opening a FIFO without a writer must not block. */
	ck_assert_ptr_null(config_load(fifo));
	ck_assert_ptr_null(config_load(dir));
	big = malloc(n);
	memset(big, '#', n);
	assert_raw_error(big, n, 0, "larger than 16 MiB");
	free(big);
	c = config_load("/dev/null");
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(ten_thousand_services_load)
{
	struct sn_config *c;
	char             *text, *out;
	size_t            i, len = 0, cap = 10000 * 160;

	text = malloc(cap);
	len += snprintf(text, cap, "runtime_dir = \"%s/run\"\n", dir);
	for (i = 0; i < 10000; i++)
		len += snprintf(text + len, cap - len,
		    "service \"s%zu\" {\n  listen = { \"127.0.0.1:%zu\" }\n"
		    "  command = \"/bin/sh\"\n  max_workers = 2\n}\n",
		    i, 10000 + i);
	c = load_bytes(text, len, &out);
	ck_assert_msg(c != NULL, "%s", out);
	ck_assert_int_eq(c->nservices, 10000);
	ck_assert_str_eq(c->services[9999].name, "s9999");
	ck_assert_int_eq(c->services[9999].line, 2 + 9999 * 5);
	config_unref(c);
	free(out);
	free(text);
}
END_TEST

Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("validation");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, good_config_loads_with_defaults_and_overrides);
	tcase_add_test(tc, min_greater_than_max_names_max_workers_line);
	tcase_add_test(tc, unknown_option_is_reported);
	tcase_add_test(tc, bad_duration_is_reported);
	tcase_add_test(tc, bad_listen_address_is_reported);
	tcase_add_test(tc, missing_binary_is_reported);
	tcase_add_test(tc, unknown_user_and_group_are_reported);
	tcase_add_test(tc, two_services_on_one_address_are_reported);
	tcase_add_test(tc, no_service_is_reported);
	tcase_add_test(tc, bad_values_are_each_reported);
	tcase_add_test(tc, missing_command_and_listen_are_reported);
	tcase_add_test(tc, unusable_runtime_dir_is_reported);
	tcase_add_test(tc, every_error_in_a_file_is_reported);
	tcase_add_test(tc, comments_do_not_shift_line_numbers);
	tcase_add_test(tc, unreadable_file_is_reported);
	tcase_add_test(tc, unclosed_comment_names_the_line_it_opens_on);
	tcase_add_test(tc, nul_byte_names_its_line);
	tcase_add_test(tc, missing_final_brace_names_the_section_line);
	tcase_add_test(tc, unterminated_string_names_its_line);
	tcase_add_test(tc, lexer_corners_are_read_as_libconfuse_reads_them);
	tcase_add_test(tc, duplicate_service_name_names_both_lines);
	tcase_add_test(tc, same_address_twice_in_one_service_is_reported);
	tcase_add_test(tc, directory_fifo_and_huge_file_are_refused);
	suite_add_tcase(s, tc);
	/* A hang guard, not a speed test: sanitizers and a loaded host. */
	tc = tcase_create("scale");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, ten_thousand_services_load);
	suite_add_tcase(s, tc);
	return (s);
}
