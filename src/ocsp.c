/*
 * An OCSP response file, checked when the configuration is loaded (and at
 * `-t`): a successful response that names the certificate it is stapled
 * with (serial number and issuer name hash, and the issuer key hash when
 * the chain holds the issuer), its status, and how close its nextUpdate
 * is.  The nextUpdate found here is what tls.c compares with the clock at
 * staple time, so that a response is never stapled once it is stale.
 * The response's signature is left to the clients, which check it anyway.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "ocsp.h"

static void ocsp_report(tls_report_fn *report, void *arg, int error,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
ocsp_report(tls_report_fn *report, void *arg, int error, const char *fmt, ...)
{
	va_list ap;
	char    msg[768];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	report(arg, "ocsp_response", error, msg);
}

static int
ocsp_time(const ASN1_GENERALIZEDTIME *t, time_t *out)
{
	struct tm tm;

	memset(&tm, 0, sizeof tm);
	if (!ASN1_TIME_to_tm(t, &tm))
		return (-1);
	*out = timegm(&tm);
	return (0);
}

static void
ocsp_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "%lld", (long long)t);
}

/* Is this single response about leaf? */
static int
ocsp_single_for(OCSP_SINGLERESP *single, X509 *leaf, STACK_OF(X509) * chain)
{
	const OCSP_CERTID *cid = OCSP_SINGLERESP_get0_id(single);
	ASN1_OCTET_STRING *namehash = NULL;
	ASN1_OBJECT       *mdoid = NULL;
	ASN1_INTEGER      *serial = NULL;
	const EVP_MD      *md;
	OCSP_CERTID       *want;
	X509              *issuer;
	unsigned char      h[EVP_MAX_MD_SIZE];
	unsigned int       hlen = 0;
	int                i, ok;

	if (cid == NULL ||
	    !OCSP_id_get0_info(
		&namehash, &mdoid, NULL, &serial, (OCSP_CERTID *)cid))
		return (0);
	if (ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(leaf)) != 0 ||
	    (md = EVP_get_digestbyobj(mdoid)) == NULL ||
	    !X509_NAME_digest(X509_get_issuer_name(leaf), md, h, &hlen) ||
	    namehash->length != (int)hlen ||
	    memcmp(namehash->data, h, hlen) != 0)
		return (0);
	for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		issuer = sk_X509_value(chain, i);
		if (X509_check_issued(issuer, leaf) != X509_V_OK)
			continue;
		if ((want = OCSP_cert_to_id(md, leaf, issuer)) == NULL)
			return (0);
		ok = OCSP_id_cmp(want, cid) == 0;
		OCSP_CERTID_free(want);
		return (ok);
	}
	return (1);
}

/* The status and the dates of the response about leaf; -1: refused. */
static int
ocsp_single_check(const char *path, OCSP_SINGLERESP *single, time_t now,
    time_t *next, tls_report_fn *report, void *arg)
{
	ASN1_GENERALIZEDTIME *thisupd = NULL, *nextupd = NULL;
	char                  date[64];
	int                   status, reason;

	status =
	    OCSP_single_get0_status(single, &reason, NULL, &thisupd, &nextupd);
	if (status == V_OCSP_CERTSTATUS_REVOKED)
		ocsp_report(report, arg, 0,
		    "ocsp_response %s says the certificate is revoked", path);
	else if (status != V_OCSP_CERTSTATUS_GOOD)
		ocsp_report(report, arg, 0,
		    "ocsp_response %s: the responder does not know the certificate",
		    path);
	if (nextupd == NULL)
		return (
		    0); /* no nextUpdate: stapled for as long as it is kept */
	if (ocsp_time(nextupd, next) == -1) {
		ocsp_report(report, arg, 1,
		    "ocsp_response %s: an unreadable nextUpdate", path);
		return (-1);
	}
	ocsp_date(*next, date, sizeof date);
	if (now >= *next)
		ocsp_report(report, arg, 0,
		    "ocsp_response %s is past its nextUpdate (%s): it is not stapled",
		    path, date);
	else if (*next - now < OCSP_WARN_S)
		ocsp_report(report, arg, 0,
		    "ocsp_response %s reaches its nextUpdate within a day (%s): refresh it, then reload",
		    path, date);
	return (0);
}

/*
 * The response at path (its DER bytes) for the certificate leaf: 0 and
 * its nextUpdate (0: none), warnings reported; -1 after reporting why it
 * cannot be stapled with that certificate.
 */
int
ocsp_check(const char *path, const unsigned char *der, size_t len,
    const char *certpath, X509 *leaf, STACK_OF(X509) * chain, time_t now,
    time_t *next, tls_report_fn *report, void *arg)
{
	const unsigned char *p = der;
	OCSP_RESPONSE       *resp;
	OCSP_BASICRESP      *basic = NULL;
	OCSP_SINGLERESP     *single = NULL;
	int                  i, n, rc = -1;

	*next = 0;
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
	if (resp == NULL ||
	    OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		ocsp_report(report, arg, 1,
		    "ocsp_response %s: not a successful DER OCSP response (%s)",
		    path,
		    resp == NULL
			? "not DER"
			: OCSP_response_status_str(OCSP_response_status(resp)));
		goto done;
	}
	if ((basic = OCSP_response_get1_basic(resp)) == NULL) {
		ocsp_report(report, arg, 1,
		    "ocsp_response %s: not a basic OCSP response", path);
		goto done;
	}
	n = OCSP_resp_count(basic);
	for (i = 0; i < n && single == NULL; i++) {
		if (ocsp_single_for(OCSP_resp_get0(basic, i), leaf, chain))
			single = OCSP_resp_get0(basic, i);
	}
	if (single == NULL) {
		ocsp_report(report, arg, 1,
		    "ocsp_response %s is not for certificate %s (no status for its serial number and issuer)",
		    path, certpath);
		goto done;
	}
	rc = ocsp_single_check(path, single, now, next, report, arg);
done:
	OCSP_BASICRESP_free(basic);
	OCSP_RESPONSE_free(resp);
	ERR_clear_error();
	return (rc);
}
