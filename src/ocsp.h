/* OCSP responses to staple: checked against their certificate, and dated. */
#ifndef SN_OCSP_H
#define SN_OCSP_H

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "tls.h"

#define OCSP_WARN_S 86400 /* warn this close to nextUpdate */

int ocsp_check(const char *path, const unsigned char *der, size_t len,
    const char *certpath, X509 *leaf, STACK_OF(X509) * chain, time_t now,
    time_t *next, tls_report_fn *report, void *arg);

#endif
