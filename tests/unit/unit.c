/*
 * Unit tests: the daemon's objects minus main().  The two symbols main's
 * file provides to the rest of the master are defined here.
 */
#include <stdlib.h>

#include "socketnautd.h"
#include "unit.h"

struct event_base *sn_base;
int                daemon_started;
struct rlimit      worker_nofile;

void
daemon_status_changed(void)
{
}

void
daemon_check(void)
{
}

void
daemon_defer_free(void *p)
{
	free(p);
}

int
daemon_listens_on(const struct sn_addr *addr)
{
	(void)addr;
	return (0);
}

int
daemon_draining(void)
{
	return (0);
}

int
main(void)
{
	SRunner *sr;
	int      failed;

	sr = srunner_create(util_suite());
	srunner_add_suite(sr, config_suite());
	srunner_add_suite(sr, pick_suite());
	srunner_add_suite(sr, proto_suite());
	srunner_add_suite(sr, control_suite());
	srunner_add_suite(sr, sockdir_suite());
	srunner_add_suite(sr, status_suite());
	srunner_add_suite(sr, counters_suite());
	srunner_add_suite(sr, tls_suite());
	srunner_add_suite(sr, proxy_suite());
	srunner_add_suite(sr, tlskeys_suite());
	srunner_add_suite(sr, tcpowner_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return (failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}
