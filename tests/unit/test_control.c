/*
 * A worker's log budget: the token bucket the master charges each LOG
 * line to, in lines and in bytes, and how it refills.
 */
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

Suite *
control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("log budget");

	tcase_add_test(tc, burst_passes_then_lines_are_dropped);
	tcase_add_test(tc, refill_is_the_rate_and_never_above_the_burst);
	tcase_add_test(tc, every_256_bytes_count_as_a_line);
	suite_add_tcase(s, tc);
	return (s);
}
