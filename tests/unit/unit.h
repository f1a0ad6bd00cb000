/* The unit suites; unit.c runs them all. */
#ifndef SN_UNIT_H
#define SN_UNIT_H

#include <check.h>

Suite *util_suite(void);
Suite *config_suite(void);
Suite *pick_suite(void);
Suite *proto_suite(void);
Suite *control_suite(void);
Suite *sockdir_suite(void);
Suite *status_suite(void);
Suite *counters_suite(void);
Suite *tls_suite(void);
Suite *proxy_suite(void);
Suite *tlskeys_suite(void);
Suite *tcpowner_suite(void);

#endif
