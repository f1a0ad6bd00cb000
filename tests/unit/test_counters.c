/* Counters: the queue wait histogram's buckets and the names of end reasons. */
#include <string.h>

#include "counters.h"
#include "unit.h"

START_TEST(wait_lands_in_the_first_bucket_whose_bound_holds_it)
{
	struct service_counters c;

	memset(&c, 0, sizeof c);
	counters_wait(&c, 0);       /* le 1 ms */
	counters_wait(&c, 1);       /* le 1 ms: bounds are inclusive */
	counters_wait(&c, 2);       /* le 5 ms */
	counters_wait(&c, 999);     /* le 1 s */
	counters_wait(&c, -5);      /* a clock step: counted as 0 */
	counters_wait(&c, 1000000); /* +Inf */
	ck_assert_uint_eq(c.wait_buckets[0], 3);
	ck_assert_uint_eq(c.wait_buckets[1], 1);
	ck_assert_uint_eq(c.wait_buckets[6], 1);
	ck_assert_uint_eq(c.wait_buckets[COUNTERS_WAIT_BUCKETS], 1);
	ck_assert_uint_eq(c.wait_count, 6);
	ck_assert_uint_eq(c.wait_sum_ms, 1 + 2 + 999 + 1000000);
}
END_TEST

START_TEST(every_end_reason_and_exit_kind_has_a_distinct_name)
{
	int i, j;

	for (i = 0; i < RELAY_END_COUNT; i++) {
		ck_assert_str_ne(relay_end_name(i), "unknown");
		for (j = 0; j < i; j++)
			ck_assert_str_ne(relay_end_name(i), relay_end_name(j));
	}
	for (i = 0; i < WORKER_EXIT_COUNT; i++)
		ck_assert_str_ne(worker_exit_name(i), "unknown");
	ck_assert_str_eq(relay_end_name(RELAY_END_COUNT), "unknown");
	ck_assert_str_eq(relay_end_name(RELAY_END_REFUSED), "refused");
}
END_TEST

Suite *
counters_suite(void)
{
	Suite *s = suite_create("counters");
	TCase *tc = tcase_create("counters");

	tcase_add_test(tc, wait_lands_in_the_first_bucket_whose_bound_holds_it);
	tcase_add_test(tc, every_end_reason_and_exit_kind_has_a_distinct_name);
	suite_add_tcase(s, tc);
	return (s);
}
