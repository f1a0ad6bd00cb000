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

static struct relay client;

static void
setup(void)
{
	memset(&sc, 0, sizeof sc);
	memset(&svc, 0, sizeof svc);
	memset(pool, 0, sizeof pool);
	memset(&client, 0, sizeof client);
	sc.name = "web";
	sc.min_workers = 1;
	sc.max_workers = 3;
	sc.spawn_concurrency = 4;
	svc.conf = &sc;
	TAILQ_INIT(&svc.workers);
}

static struct worker *
add(enum worker_state state, int nconns)
{
	struct worker *w;
	int            i;

	for (i = 0; i < 7 && pool[i].svc != NULL; i++)
		;
	w = &pool[i];
	w->svc = &svc;
	w->serial = i + 1;
	w->state = state;
	w->nconns = nconns;
	TAILQ_INSERT_TAIL(&svc.workers, w, entry);
	if (state == WORKER_READY || state == WORKER_STARTING)
		svc.online++;
	if (state == WORKER_READY)
		svc.ready++;
	return (w);
}

START_TEST(empty_pool_queues_the_client_and_starts_a_worker)
{
	struct pick p = service_pick(&svc, &client);

	ck_assert_ptr_null(p.worker);
	ck_assert_int_eq(p.spawn, 1);
}
END_TEST

START_TEST(idle_worker_takes_the_client_without_spawning)
{
	struct worker *w = add(WORKER_READY, 0);
	struct pick    p = service_pick(&svc, &client);

	ck_assert_ptr_eq(p.worker, w);
	ck_assert_int_eq(p.spawn, 0);
}
END_TEST

START_TEST(least_connections_wins_at_max_workers)
{
	struct pick    p;
	struct worker *b;

	add(WORKER_READY, 5);
	b = add(WORKER_READY, 2);
	add(WORKER_READY, 3);
	p = service_pick(&svc, &client);
	ck_assert_ptr_eq(p.worker, b);
	ck_assert_int_eq(p.spawn, 0); /* the pool is full */
}
END_TEST

START_TEST(at_max_with_workers_starting_a_busy_worker_has_no_room)
{
	struct pick    p;
	struct worker *a, *c;

	a = add(WORKER_READY, 1);
	add(WORKER_READY, 2);
	c = add(WORKER_STARTING, 0);
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker); /* it waits for c or a free one */
	ck_assert_int_eq(p.spawn, 0);
	c->state = WORKER_READY;
	c->nconns = 3;
	svc.ready++;
	p = service_pick(&svc, &client);
	ck_assert_ptr_eq(p.worker, a); /* all ready: least connections */
}
END_TEST

START_TEST(below_max_a_busy_worker_has_no_room_the_client_queues_the_pool_grows)
{
	struct pick p;

	add(WORKER_READY, 1);
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker);
	ck_assert_int_eq(p.spawn, 1);
}
END_TEST

START_TEST(a_deep_queue_puts_one_client_behind_each_busy_worker_while_growing)
{
	struct pick    p;
	struct worker *a, *b;

	sc.max_workers = 8;
	sc.spawn_concurrency = 1;
	a = add(WORKER_READY, 1);
	b = add(WORKER_READY, 1);
	add(WORKER_STARTING, 0);
	/* 2 queued and this one: the starting worker and a, b take 3 */
	svc.nqueued = 2;
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker);
	/* 4 waiting: one more than they take, so a busy one takes one */
	svc.nqueued = 3;
	p = service_pick(&svc, &client);
	ck_assert_ptr_eq(p.worker, a);
	ck_assert_int_eq(p.spawn, 0); /* spawn_concurrency: 1 starting */
	a->nconns = 2;
	/* the waiting client counts toward the pool's size */
	sc.spawn_concurrency = 8;
	svc.nqueued = 2;
	p = service_pick(&svc, NULL);
	ck_assert_int_eq(p.spawn, 2 + 2 + 1 - 3);
	/* never a third, and never with worker_concurrency */
	b->nconns = 2;
	svc.nqueued = 50;
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker);
	b->nconns = 1;
	sc.worker_concurrency = 1;
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker);
}
END_TEST

START_TEST(starting_workers_are_never_chosen_and_count_against_the_queue)
{
	struct pick p;

	add(WORKER_STARTING, 0);
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker);
	ck_assert_int_eq(p.spawn, 0); /* the starting one is for it */
	svc.nqueued = 1;
	p = service_pick(&svc, &client);
	ck_assert_int_eq(p.spawn, 1); /* a second queued client */
}
END_TEST

START_TEST(worker_concurrency_bounds_the_clients_a_worker_is_given)
{
	struct pick    p;
	struct worker *w;

	sc.max_workers = 1;
	sc.worker_concurrency = 1;
	w = add(WORKER_READY, 1);
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker);
	ck_assert_int_eq(p.spawn, 0); /* at max_workers */
	sc.worker_concurrency = 2;
	p = service_pick(&svc, &client);
	ck_assert_ptr_eq(p.worker, w);
}
END_TEST

START_TEST(starts_follow_the_queue_bounded_by_spawn_concurrency)
{
	struct pick p;

	sc.max_workers = 20;
	sc.spawn_concurrency = 2;
	svc.nqueued = 10;
	p = service_pick(&svc, NULL);
	ck_assert_int_eq(p.spawn, 2);
	add(WORKER_STARTING, 0);
	p = service_pick(&svc, NULL);
	ck_assert_int_eq(p.spawn, 1);
	sc.worker_concurrency = 5; /* 10 queued need 2 workers */
	sc.spawn_concurrency = 8;
	p = service_pick(&svc, NULL);
	ck_assert_int_eq(p.spawn, 1);
}
END_TEST

START_TEST(spare_workers_are_kept_above_the_busy_ones)
{
	struct pick p;

	sc.max_workers = 10;
	sc.spare_workers = 2;
	add(WORKER_READY, 1);
	p = service_pick(&svc, NULL);
	ck_assert_int_eq(p.spawn, 2);
	add(WORKER_READY, 0);
	add(WORKER_READY, 0);
	p = service_pick(&svc, NULL);
	ck_assert_int_eq(p.spawn, 0);
}
END_TEST

START_TEST(workers_out_of_rotation_are_never_chosen)
{
	struct pick p;

	add(WORKER_STOPPING, 0);
	add(WORKER_EXITED, 0);
	add(WORKER_UNHEALTHY, 0);
	add(WORKER_DRAINING, 0);
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker);
	ck_assert_int_eq(p.spawn, 1);
}
END_TEST

START_TEST(a_worker_the_client_failed_to_reach_is_not_chosen_again)
{
	struct worker *a, *b;
	struct pick    p;

	a = add(WORKER_READY, 0);
	b = add(WORKER_READY, 3);
	add(WORKER_READY, 3);
	client.tried[0] = a->serial;
	client.attempts = 1;
	p = service_pick(&svc, &client);
	ck_assert_ptr_eq(p.worker, b);
	client.tried[1] = b->serial;
	client.tried[2] = b->serial + 1;
	client.attempts = 3;
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker);
}
END_TEST

START_TEST(a_worker_whose_backlog_is_full_takes_no_client_until_it_has_room)
{
	struct worker *a, *b;
	struct pick    p;

	a = add(WORKER_READY, 1);
	b = add(WORKER_READY, 4);
	add(WORKER_READY, 5);
	a->full_until = now_ms() + 1000;
	p = service_pick(&svc, &client);
	ck_assert_ptr_eq(p.worker, b); /* busier, but it has room */
	b->full_until = a->full_until;
	pool[2].full_until = a->full_until;
	p = service_pick(&svc, &client);
	ck_assert_ptr_null(p.worker); /* the client waits in the queue */
	ck_assert_int_eq(p.spawn, 0);
	a->full_until = 0;
	p = service_pick(&svc, &client);
	ck_assert_ptr_eq(p.worker, a);
}
END_TEST

START_TEST(no_spawn_during_backoff_or_shutdown)
{
	struct pick p;

	svc.backoff_until = now_ms() + 60000;
	p = service_pick(&svc, &client);
	ck_assert_int_eq(p.spawn, 0);
	svc.backoff_until = 0;
	svc.stopping = 1;
	p = service_pick(&svc, &client);
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
	tcase_add_test(tc, empty_pool_queues_the_client_and_starts_a_worker);
	tcase_add_test(tc, idle_worker_takes_the_client_without_spawning);
	tcase_add_test(tc,
	    a_deep_queue_puts_one_client_behind_each_busy_worker_while_growing);
	tcase_add_test(tc, least_connections_wins_at_max_workers);
	tcase_add_test(
	    tc, at_max_with_workers_starting_a_busy_worker_has_no_room);
	tcase_add_test(tc,
	    below_max_a_busy_worker_has_no_room_the_client_queues_the_pool_grows);
	tcase_add_test(
	    tc, starting_workers_are_never_chosen_and_count_against_the_queue);
	tcase_add_test(
	    tc, worker_concurrency_bounds_the_clients_a_worker_is_given);
	tcase_add_test(
	    tc, starts_follow_the_queue_bounded_by_spawn_concurrency);
	tcase_add_test(tc, spare_workers_are_kept_above_the_busy_ones);
	tcase_add_test(tc, workers_out_of_rotation_are_never_chosen);
	tcase_add_test(
	    tc, a_worker_the_client_failed_to_reach_is_not_chosen_again);
	tcase_add_test(tc,
	    a_worker_whose_backlog_is_full_takes_no_client_until_it_has_room);
	tcase_add_test(tc, no_spawn_during_backoff_or_shutdown);
	tcase_add_test(tc, backoff_doubles_from_100ms_up_to_30s);
	suite_add_tcase(s, tc);
	return (s);
}
