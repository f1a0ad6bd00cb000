/*
 * The balancing and scaling decisions (service_pick) on a pool built in
 * memory: no process is started, only the policy is exercised.
 */
#include <stdlib.h>
#include <string.h>

#include "service.h"
#include "unit.h"

static struct sn_service_conf sc;
static struct service         svc;
static struct worker          pool[8];

static void
setup(void)
{
	memset(&sc, 0, sizeof sc);
	memset(&svc, 0, sizeof svc);
	memset(pool, 0, sizeof pool);
	sc.name = "web";
	sc.min_workers = 1;
	sc.max_workers = 3;
	svc.conf = &sc;
	TAILQ_INIT(&svc.workers);
}

static struct worker *
add(enum worker_state state, int nconns)
{
	struct worker *w = &pool[svc.online + 1 < 8 ? svc.online : 7];
	int            i;

	for (i = 0; i < 8 && pool[i].svc != NULL; i++)
		;
	w = &pool[i];
	w->svc = &svc;
	w->state = state;
	w->nconns = nconns;
	TAILQ_INSERT_TAIL(&svc.workers, w, entry);
	if (state == WORKER_READY || state == WORKER_STARTING)
		svc.online++;
	return (w);
}

START_TEST(empty_pool_spawns_a_worker)
{
	struct pick p = service_pick(&svc, NULL);

	ck_assert_ptr_null(p.worker);
	ck_assert_int_eq(p.spawn, 1);
}
END_TEST

START_TEST(idle_worker_takes_the_connection_without_spawning)
{
	struct worker *w = add(WORKER_READY, 0);
	struct pick    p = service_pick(&svc, NULL);

	ck_assert_ptr_eq(p.worker, w);
	ck_assert_int_eq(p.spawn, 0);
}
END_TEST

START_TEST(least_connections_wins)
{
	struct pick    p;
	struct worker *b;

	sc.max_workers = 3;
	add(WORKER_READY, 5);
	b = add(WORKER_READY, 2);
	add(WORKER_READY, 3);
	p = service_pick(&svc, NULL);
	ck_assert_ptr_eq(p.worker, b);
	ck_assert_int_eq(p.spawn, 0); /* the pool is full */
}
END_TEST

START_TEST(busy_pool_below_max_grows)
{
	struct pick p;

	add(WORKER_READY, 1);
	add(WORKER_READY, 4);
	p = service_pick(&svc, NULL);
	ck_assert_ptr_nonnull(p.worker);
	ck_assert_int_eq(p.spawn, 1);
}
END_TEST

START_TEST(ready_beats_starting_on_a_tie_and_starting_can_be_chosen)
{
	struct pick    p;
	struct worker *s, *r;

	s = add(WORKER_STARTING, 0);
	r = add(WORKER_READY, 0);
	p = service_pick(&svc, NULL);
	ck_assert_ptr_eq(p.worker, r);
	r->nconns = 2;
	p = service_pick(&svc, NULL);
	ck_assert_ptr_eq(p.worker, s);
	ck_assert_int_eq(p.spawn, 0);
}
END_TEST

START_TEST(stopping_and_exited_workers_are_never_chosen)
{
	struct pick p;

	add(WORKER_STOPPING, 0);
	add(WORKER_EXITED, 0);
	p = service_pick(&svc, NULL);
	ck_assert_ptr_null(p.worker);
	ck_assert_int_eq(p.spawn, 1);
}
END_TEST

START_TEST(unhealthy_and_draining_workers_are_never_chosen)
{
	struct pick p;

	add(WORKER_UNHEALTHY, 0);
	add(WORKER_DRAINING, 0);
	p = service_pick(&svc, NULL);
	ck_assert_ptr_null(p.worker);
	ck_assert_int_eq(p.spawn, 1);
}
END_TEST

START_TEST(a_worker_the_client_failed_to_reach_is_not_chosen_again)
{
	struct worker *a = add(WORKER_READY, 0), *b = add(WORKER_READY, 3);
	struct relay   r;
	struct pick    p;

	memset(&r, 0, sizeof r);
	a->serial = 7;
	b->serial = 8;
	r.tried[0] = 7;
	r.attempts = 1;
	p = service_pick(&svc, &r);
	ck_assert_ptr_eq(p.worker, b);
	r.tried[1] = 8;
	r.attempts = 2;
	p = service_pick(&svc, &r);
	ck_assert_ptr_null(p.worker);
	ck_assert_int_eq(p.spawn, 1);
}
END_TEST

START_TEST(no_spawn_during_backoff_or_shutdown)
{
	struct pick p;

	svc.backoff_until = now_ms() + 60000;
	p = service_pick(&svc, NULL);
	ck_assert_int_eq(p.spawn, 0);
	svc.backoff_until = 0;
	svc.stopping = 1;
	p = service_pick(&svc, NULL);
	ck_assert_int_eq(p.spawn, 0);
}
END_TEST

START_TEST(backoff_doubles_from_100ms_up_to_30s)
{
	ck_assert_int_eq(service_backoff_ms(0), 0);
	ck_assert_int_eq(service_backoff_ms(1), 100);
	ck_assert_int_eq(service_backoff_ms(2), 200);
	ck_assert_int_eq(service_backoff_ms(5), 1600);
	ck_assert_int_eq(service_backoff_ms(9), 25600);
	ck_assert_int_eq(service_backoff_ms(10), 30000);
	ck_assert_int_eq(service_backoff_ms(1000), 30000);
}
END_TEST

Suite *
pick_suite(void)
{
	Suite *s = suite_create("pick");
	TCase *tc = tcase_create("policy");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, empty_pool_spawns_a_worker);
	tcase_add_test(tc, idle_worker_takes_the_connection_without_spawning);
	tcase_add_test(tc, least_connections_wins);
	tcase_add_test(tc, busy_pool_below_max_grows);
	tcase_add_test(
	    tc, ready_beats_starting_on_a_tie_and_starting_can_be_chosen);
	tcase_add_test(tc, stopping_and_exited_workers_are_never_chosen);
	tcase_add_test(tc, unhealthy_and_draining_workers_are_never_chosen);
	tcase_add_test(
	    tc, a_worker_the_client_failed_to_reach_is_not_chosen_again);
	tcase_add_test(tc, no_spawn_during_backoff_or_shutdown);
	tcase_add_test(tc, backoff_doubles_from_100ms_up_to_30s);
	suite_add_tcase(s, tc);
	return (s);
}
