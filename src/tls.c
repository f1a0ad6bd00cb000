/*
 * TLS termination with OpenSSL 3.  A service's tls { } section becomes one
 * SSL_CTX per certificate (the first the default; SNI picks another by the
 * certificates' own names), all alike but for the certificate.  The
 * contexts are built when the configuration is loaded, so `-t` and a
 * reload check what a start would; a connection holds a reference on the
 * set it began with, so a reload changes new connections only.  Session
 * ticket keys live here, per service name, for the life of the process:
 * tickets issued before a reload still resume after it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "ocsp.h"
#include "tls.h"
#include "tlskeys.h"
#include "util.h"

#define TLS_FILE_MAX  (1024 * 1024) /* a CA or OCSP file we hash or keep */
#define TLS_TIMEOUT_S 300           /* sessions without tickets */

/* A service's ticket keys: the current one, and the one before it. */
struct tls_keys {
	struct tls_keys *next;
	char            *service;
	struct tls_key   cur;
	struct tls_key   prev;
};

struct tls_cert {
	SSL_CTX       *ctx;
	X509          *x509; /* the leaf, owned by ctx */
	unsigned char *ocsp;
	size_t         ocsplen;
	time_t         ocsp_next;  /* its nextUpdate; 0: none */
	int            ocsp_stale; /* said so in the log */
	char          *ocsp_path;
	const char    *service; /* the struct tls's */
};

struct tls {
	int              refs;
	struct tls_cert *certs;
	size_t           ncerts;
	unsigned char   *alpn; /* wire format: length-prefixed names */
	size_t           alpnlen;
	struct tls_keys *keys;
	long long        rotation; /* ms; 0: no tickets */
	char            *service;
	struct tls_key  *filekeys; /* ticket_key_file's; the first seals */
	size_t           nfilekeys;
};

struct tls_conn {
	SSL             *ssl;
	struct tls      *tls;
	short            want;
	int              more;    /* decrypted or read-ahead bytes may wait */
	int              drained; /* the last socket read got less than asked */
	int              failed;  /* no close_notify after a fatal error */
	enum tls_failure failure;
	char             error[160];
};

static struct tls_keys *keyring;   /* survives reloads */
static struct tls_keys *inherited; /* from a binary upgrade, not yet taken */
static int              ctx_index = -1;

/* The first error OpenSSL queued, as text; the queue is emptied. */
static void
tls_ssl_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, len, "unknown error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

static void tls_report(tls_report_fn *report, void *arg, const char *option,
    int error, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
tls_report(tls_report_fn *report, void *arg, const char *option, int error,
    const char *fmt, ...)
{
	va_list ap;
	char    msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	report(arg, option, error, msg);
}

/* A whole small file (OCSP response, CA bundle), or NULL and errno. */
static unsigned char *
tls_file_read(const char *path, size_t *lenp)
{
	unsigned char *buf;
	struct stat    st;
	FILE          *f;
	size_t         n;

	if ((f = fopen(path, "rbe")) == NULL)
		return (NULL);
	if (fstat(fileno(f), &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > TLS_FILE_MAX) {
		fclose(f);
		errno = EFBIG;
		return (NULL);
	}
	buf = xcalloc(1, (size_t)st.st_size + 1);
	n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	*lenp = n;
	return (buf);
}

static void
tls_key_new(struct tls_key *k, long long now)
{
	if (RAND_bytes(k->name, sizeof k->name) != 1 ||
	    RAND_bytes(k->aes, sizeof k->aes) != 1 ||
	    RAND_bytes(k->hmac, sizeof k->hmac) != 1) {
		k->valid = 0;
		return;
	}
	k->born = now;
	k->valid = 1;
}

/*
 * Keys turn over lazily, when a ticket is made or read: a key encrypts for
 * one rotation period and decrypts for one more, then it is gone.
 */
void
tls_keys_rotate(struct tls *t, long long now)
{
	struct tls_keys *k = t->keys;

	if (k == NULL || t->rotation <= 0)
		return;
	if (k->prev.valid && now - k->prev.born >= 2 * t->rotation)
		explicit_bzero(&k->prev, sizeof k->prev);
	if (k->cur.valid && now - k->cur.born < t->rotation)
		return;
	if (k->cur.valid && now - k->cur.born < 2 * t->rotation)
		k->prev = k->cur;
	else
		explicit_bzero(&k->prev, sizeof k->prev);
	tls_key_new(&k->cur, now);
}

/* The keys the old master passed for this service, taken off the list. */
static struct tls_keys *
tls_keys_take(const char *service)
{
	struct tls_keys *k, **kp;

	for (kp = &inherited; (k = *kp) != NULL; kp = &k->next) {
		if (strcmp(k->service, service) == 0) {
			*kp = k->next;
			return (k);
		}
	}
	return (NULL);
}

/*
 * The service's ticket keys: those a binary upgrade passed on, or made on
 * first use; kept across reloads.
 */
static struct tls_keys *
tls_keys_get(const char *service)
{
	struct tls_keys *k;

	for (k = keyring; k != NULL; k = k->next) {
		if (strcmp(k->service, service) == 0)
			return (k);
	}
	if ((k = tls_keys_take(service)) == NULL) {
		k = xcalloc(1, sizeof *k);
		k->service = xstrdup(service);
	}
	k->next = keyring;
	keyring = k;
	return (k);
}

/* Every service's keys, for a binary upgrade to pass on. */
void
tls_keys_walk(tls_keys_fn *fn, void *arg)
{
	struct tls_keys *k;

	for (k = keyring; k != NULL; k = k->next)
		fn(arg, k->service, &k->cur, &k->prev);
}

/* Keys from the old master: the service of that name takes them. */
void
tls_keys_inherit(
    const char *service, const struct tls_key *cur, const struct tls_key *prev)
{
	struct tls_keys *k;

	if ((k = tls_keys_take(service)) == NULL) {
		k = xcalloc(1, sizeof *k);
		k->service = xstrdup(service);
	}
	k->cur = *cur;
	k->prev = *prev;
	k->next = inherited;
	inherited = k;
}

/* Forget inherited keys no service took; how many there were. */
int
tls_keys_inherit_end(void)
{
	struct tls_keys *k;
	int              n = 0;

	while ((k = inherited) != NULL) {
		inherited = k->next;
		explicit_bzero(&k->cur, sizeof k->cur);
		explicit_bzero(&k->prev, sizeof k->prev);
		free(k->service);
		free(k);
		n++;
	}
	return (n);
}

static int
tls_mac_init(EVP_MAC_CTX *hctx, struct tls_key *k)
{
	OSSL_PARAM params[3];

	params[0] = OSSL_PARAM_construct_octet_string(
	    OSSL_MAC_PARAM_KEY, k->hmac, sizeof k->hmac);
	params[1] = OSSL_PARAM_construct_utf8_string(
	    OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	return (EVP_MAC_CTX_set_params(hctx, params));
}

/* Seal a new ticket with k. */
static int
tls_ticket_seal(struct tls_key *k, unsigned char name[16], unsigned char *iv,
    EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx)
{
	if (RAND_bytes(iv, 16) != 1)
		return (-1);
	memcpy(name, k->name, sizeof k->name);
	if (!EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes, iv) ||
	    !tls_mac_init(hctx, k))
		return (-1);
	return (1);
}

/*
 * Open a ticket with k, one of the keys that may have sealed it (NULL: none
 * did, a full handshake); sealing says k still seals, else a fresh ticket.
 */
static int
tls_ticket_open(struct tls_key *k, int sealing, unsigned char *iv,
    EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx)
{
	if (k == NULL)
		return (0);
	if (!tls_mac_init(hctx, k) ||
	    !EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes, iv))
		return (-1);
	return (sealing ? 1 : 2); /* 2: issue a fresh ticket */
}

/*
 * OpenSSL asks for a key to seal a new ticket (enc) or to open one: a
 * ticket_key_file's keys (the first seals, all open), or the service's
 * rotating pair (the current seals, both open).
 */
static int
tls_ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
    EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
	struct tls     *t;
	struct tls_key *k = NULL;
	size_t          i;

	t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
	if (t != NULL && t->nfilekeys > 0) {
		if (enc)
			return (tls_ticket_seal(
			    &t->filekeys[0], name, iv, ectx, hctx));
		for (i = 0; i < t->nfilekeys && k == NULL; i++) {
			if (memcmp(name, t->filekeys[i].name, 16) == 0)
				k = &t->filekeys[i];
		}
		return (
		    tls_ticket_open(k, k == &t->filekeys[0], iv, ectx, hctx));
	}
	if (t == NULL || t->keys == NULL)
		return (-1);
	tls_keys_rotate(t, now_ms());
	if (enc)
		return (t->keys->cur.valid
			? tls_ticket_seal(&t->keys->cur, name, iv, ectx, hctx)
			: -1);
	if (t->keys->cur.valid && memcmp(name, t->keys->cur.name, 16) == 0)
		k = &t->keys->cur;
	else if (t->keys->prev.valid &&
	    memcmp(name, t->keys->prev.name, 16) == 0)
		k = &t->keys->prev;
	return (tls_ticket_open(k, k == &t->keys->cur, iv, ectx, hctx));
}

/*
 * The certificate for a server name: an exact name in a certificate first,
 * then a wildcard, in the order configured; 0 (the default) otherwise.
 */
int
tls_pick(const struct tls *t, const char *name)
{
	size_t       i;
	unsigned int flags[2] = { X509_CHECK_FLAG_NO_WILDCARDS,
		X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS };
	int          pass;

	if (name == NULL || t->ncerts < 2)
		return (0);
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < t->ncerts; i++) {
			if (X509_check_host(t->certs[i].x509, name, 0,
				flags[pass], NULL) == 1)
				return ((int)i);
		}
	}
	return (0);
}

static int
tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls *t = arg;
	int         i;

	(void)alert;
	i = tls_pick(t, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
	if (i > 0 && SSL_set_SSL_CTX(ssl, t->certs[i].ctx) == NULL)
		return (SSL_TLSEXT_ERR_ALERT_FATAL);
	return (SSL_TLSEXT_ERR_OK);
}

/* ALPN: our order of preference; no common protocol is a fatal alert. */
static int
tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	struct tls *t = arg;

	(void)ssl;
	if (SSL_select_next_proto((unsigned char **)out, outlen, t->alpn,
		(unsigned int)t->alpnlen, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return (SSL_TLSEXT_ERR_ALERT_FATAL);
	return (SSL_TLSEXT_ERR_OK);
}

/* OCSP stapling: the response file's bytes, when the client asks. */
static int
tls_ocsp_cb(SSL *ssl, void *arg)
{
	struct tls_cert *tc = arg;
	unsigned char   *copy;

	if (tc->ocsp == NULL)
		return (SSL_TLSEXT_ERR_NOACK);
	/* A stale response would make a strict client refuse us. */
	if (tc->ocsp_next != 0 && time(NULL) >= tc->ocsp_next) {
		if (!tc->ocsp_stale)
			log_warnx(
			    "service %s: ocsp_response %s is past its nextUpdate: no longer stapled (refresh it, then reload)",
			    tc->service, tc->ocsp_path);
		tc->ocsp_stale = 1;
		return (SSL_TLSEXT_ERR_NOACK);
	}
	if ((copy = OPENSSL_memdup(tc->ocsp, tc->ocsplen)) == NULL)
		return (SSL_TLSEXT_ERR_NOACK);
	if (!SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)tc->ocsplen)) {
		OPENSSL_free(copy);
		return (SSL_TLSEXT_ERR_NOACK);
	}
	return (SSL_TLSEXT_ERR_OK);
}

static int
tls_alpn_wire(struct tls *t, const struct tls_conf *c)
{
	size_t i, n, len = 0;

	for (i = 0; c->alpn != NULL && c->alpn[i] != NULL; i++)
		len += 1 + strlen(c->alpn[i]);
	if (len == 0)
		return (0);
	t->alpn = xcalloc(1, len);
	for (i = 0; c->alpn[i] != NULL; i++) {
		n = strlen(c->alpn[i]);
		if (n == 0 || n > 255)
			return (-1);
		t->alpn[t->alpnlen++] = (unsigned char)n;
		memcpy(t->alpn + t->alpnlen, c->alpn[i], n);
		t->alpnlen += n;
	}
	return (0);
}

/*
 * Sessions of one service resume only there, and only under the same
 * client certificate rules: the session id context is a digest of the
 * service name, verify_client and the client CA file's bytes.
 */
static void
tls_sid_ctx(const struct tls_conf *c, const char *service,
    unsigned char out[SSL_MAX_SID_CTX_LENGTH])
{
	EVP_MD_CTX    *md;
	unsigned char *ca = NULL;
	size_t         calen = 0;
	int            v = (int)c->verify_client;

	memset(out, 0, SSL_MAX_SID_CTX_LENGTH);
	if (c->client_ca != NULL)
		ca = tls_file_read(c->client_ca, &calen);
	if ((md = EVP_MD_CTX_new()) != NULL &&
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(md, service, strlen(service) + 1) &&
	    EVP_DigestUpdate(md, &v, sizeof v) &&
	    (ca == NULL || EVP_DigestUpdate(md, ca, calen)))
		EVP_DigestFinal_ex(md, out, NULL);
	EVP_MD_CTX_free(md);
	free(ca);
}

/* Days until a certificate's end, and warnings for one that is near. */
static void
tls_cert_dates(X509 *x, const char *path, tls_report_fn *report, void *arg)
{
	int day, sec;

	if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		tls_report(report, arg, "certificate", 0,
		    "certificate %s is not valid yet", path);
	if (!ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(x)))
		return;
	if (day < 0 || (day == 0 && sec <= 0))
		tls_report(report, arg, "certificate", 0,
		    "certificate %s has expired (%d days ago): clients will refuse it",
		    path, -day);
	else if (day < TLS_EXPIRY_WARN_DAYS)
		tls_report(report, arg, "certificate", 0,
		    "certificate %s expires in %d days", path, day);
}

/* The leaf certificate and its key: readable, and a matching pair. */
static int
tls_pair_check(
    const char *cert, const char *key, tls_report_fn *report, void *arg)
{
	BIO      *b;
	X509     *x = NULL;
	EVP_PKEY *pk = NULL;
	char      err[160];
	int       rc = -1;

	if ((b = BIO_new_file(cert, "r")) == NULL) {
		tls_report(report, arg, "certificate", 1, "certificate %s: %s",
		    cert, strerror(errno));
		ERR_clear_error();
		return (-1);
	}
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	if (x == NULL) {
		tls_ssl_error(err, sizeof err);
		tls_report(report, arg, "certificate", 1,
		    "certificate %s: no PEM certificate (%s)", cert, err);
		return (-1);
	}
	if ((b = BIO_new_file(key, "r")) == NULL) {
		tls_report(
		    report, arg, "key", 1, "key %s: %s", key, strerror(errno));
		ERR_clear_error();
		goto done;
	}
	pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	if (pk == NULL) {
		tls_ssl_error(err, sizeof err);
		tls_report(report, arg, "key", 1,
		    "key %s: no PEM private key, or one with a passphrase (%s)",
		    key, err);
		goto done;
	}
	if (X509_check_private_key(x, pk) != 1) {
		ERR_clear_error();
		tls_report(report, arg, "key", 1,
		    "key %s does not match certificate %s", key, cert);
		goto done;
	}
	tls_cert_dates(x, cert, report, arg);
	rc = 0;
done:
	EVP_PKEY_free(pk);
	X509_free(x);
	return (rc);
}

/* The settings every context of the service shares. */
static int
tls_ctx_common(SSL_CTX *ctx, struct tls *t, const struct tls_conf *c,
    const unsigned char *sid, tls_report_fn *report, void *arg)
{
	STACK_OF(X509_NAME) * names;
	char err[160];
	int  mode = SSL_VERIFY_NONE, rc = 0;

	SSL_CTX_set_ex_data(ctx, ctx_index, t);
	SSL_CTX_set_min_proto_version(ctx, c->min_protocol);
	SSL_CTX_set_max_proto_version(ctx, c->max_protocol);
	SSL_CTX_set_options(ctx,
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
		SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
	/*
	 * The chain sent is the certificate file's, as configured: OpenSSL
	 * would otherwise try to build one from its store on every full
	 * handshake.
	 */
	SSL_CTX_set_mode(ctx,
	    SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
		SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);
	if (c->ciphers != NULL && !SSL_CTX_set_cipher_list(ctx, c->ciphers)) {
		tls_ssl_error(err, sizeof err);
		tls_report(report, arg, "ciphers", 1,
		    "ciphers \"%s\": no cipher OpenSSL knows (%s)", c->ciphers,
		    err);
		rc = -1;
	}
	if (c->ciphersuites != NULL &&
	    !SSL_CTX_set_ciphersuites(ctx, c->ciphersuites)) {
		tls_ssl_error(err, sizeof err);
		tls_report(report, arg, "ciphersuites", 1,
		    "ciphersuites \"%s\": not a list of TLS 1.3 suites (%s)",
		    c->ciphersuites, err);
		rc = -1;
	}
	if (rc == -1)
		return (-1);
	SSL_CTX_set_session_id_context(ctx, sid, SSL_MAX_SID_CTX_LENGTH);
	if (c->session_cache > 0) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
		SSL_CTX_sess_set_cache_size(ctx, c->session_cache);
	} else
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (c->ticket_rotation > 0) {
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_cb);
		SSL_CTX_set_num_tickets(ctx, 1);
		SSL_CTX_set_timeout(ctx, (long)(2 * c->ticket_rotation / 1000));
	} else {
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, c->session_cache > 0 ? 1 : 0);
		SSL_CTX_set_timeout(ctx, TLS_TIMEOUT_S);
	}
	SSL_CTX_set_tlsext_servername_callback(ctx, tls_sni_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, t);
	if (t->alpnlen > 0)
		SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, t);
	if (c->client_ca != NULL) {
		if (!SSL_CTX_load_verify_locations(ctx, c->client_ca, NULL) ||
		    (names = SSL_load_client_CA_file(c->client_ca)) == NULL) {
			tls_ssl_error(err, sizeof err);
			tls_report(report, arg, "client_ca", 1,
			    "client_ca %s: no PEM certificates (%s)",
			    c->client_ca, err);
			return (-1);
		}
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	if (c->verify_client != TLS_VERIFY_OFF)
		mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
	if (c->verify_client == TLS_VERIFY_REQUIRED)
		mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, mode, NULL);
	return (0);
}

/*
 * The certificate's OCSP response file: a successful DER response about
 * this certificate; its nextUpdate kept for staple time.
 */
static int
tls_ocsp_load(struct tls_cert *tc, const char *path, const char *certpath,
    tls_report_fn *report, void *arg)
{
	STACK_OF(X509) *chain = NULL;
	time_t now = time(NULL);

	if ((tc->ocsp = tls_file_read(path, &tc->ocsplen)) == NULL) {
		tls_report(report, arg, "ocsp_response", 1,
		    "ocsp_response %s: %s", path, strerror(errno));
		return (-1);
	}
	SSL_CTX_get0_chain_certs(tc->ctx, &chain);
	if (ocsp_check(path, tc->ocsp, tc->ocsplen, certpath, tc->x509, chain,
		now, &tc->ocsp_next, report, arg) == -1)
		return (-1);
	tc->ocsp_path = xstrdup(path);
	tc->ocsp_stale = tc->ocsp_next != 0 && now >= tc->ocsp_next;
	return (0);
}

static int
tls_cert_load(struct tls *t, size_t i, const struct tls_conf *c,
    const unsigned char *sid, tls_report_fn *report, void *arg)
{
	struct tls_cert *tc = &t->certs[i];
	char             err[160];

	if (tls_pair_check(c->certificates[i], c->keys[i], report, arg) == -1)
		return (-1);
	if ((tc->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_ssl_error(err, sizeof err);
		tls_report(report, arg, NULL, 1, "SSL_CTX_new: %s", err);
		return (-1);
	}
	if (tls_ctx_common(tc->ctx, t, c, sid, report, arg) == -1)
		return (-1);
	if (!SSL_CTX_use_certificate_chain_file(tc->ctx, c->certificates[i]) ||
	    !SSL_CTX_use_PrivateKey_file(
		tc->ctx, c->keys[i], SSL_FILETYPE_PEM) ||
	    !SSL_CTX_check_private_key(tc->ctx)) {
		tls_ssl_error(err, sizeof err);
		tls_report(report, arg, "certificate", 1,
		    "certificate %s with key %s: %s", c->certificates[i],
		    c->keys[i], err);
		return (-1);
	}
	tc->x509 = SSL_CTX_get0_certificate(tc->ctx);
	if (c->ocsp != NULL && i < argv_count(c->ocsp) &&
	    c->ocsp[i][0] != '\0') {
		tc->service = t->service;
		if (tls_ocsp_load(
			tc, c->ocsp[i], c->certificates[i], report, arg) == -1)
			return (-1);
		SSL_CTX_set_tlsext_status_cb(tc->ctx, tls_ocsp_cb);
		SSL_CTX_set_tlsext_status_arg(tc->ctx, tc);
	}
	return (0);
}

/* The ticket_key_file's keys, read at each load: a reload takes new ones. */
static int
tls_ticket_file_load(
    struct tls *t, const struct tls_conf *c, tls_report_fn *report, void *arg)
{
	char *cause = NULL;

	t->filekeys =
	    tlskeys_file_read(c->ticket_key_file, &t->nfilekeys, &cause);
	if (t->filekeys == NULL) {
		tls_report(report, arg, "ticket_key_file", 1,
		    "ticket_key_file %s: %s", c->ticket_key_file, cause);
		free(cause);
		return (-1);
	}
	return (0);
}

/*
 * Every context of a service, or NULL after reporting each problem (the
 * configuration is refused).  Warnings (a certificate near its end) are
 * reported and the contexts still built.
 */
struct tls *
tls_new(const struct tls_conf *c, const char *service, tls_report_fn *report,
    void *arg)
{
	struct tls   *t;
	unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
	size_t        i;
	int           bad = 0;

	if (ctx_index == -1 &&
	    (ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL)) ==
		-1) {
		tls_report(report, arg, NULL, 1, "OpenSSL: no ex_data index");
		return (NULL);
	}
	t = xcalloc(1, sizeof *t);
	t->refs = 1;
	t->service = xstrdup(service);
	t->certs = xcalloc(c->ncerts + 1, sizeof *t->certs);
	t->ncerts = c->ncerts;
	t->rotation = c->ticket_rotation;
	if (c->ticket_rotation > 0 && c->ticket_key_file != NULL)
		bad = tls_ticket_file_load(t, c, report, arg) == -1;
	else if (c->ticket_rotation > 0)
		t->keys = tls_keys_get(service);
	if (tls_alpn_wire(t, c) == -1) {
		tls_report(report, arg, "alpn", 1,
		    "alpn: each protocol name must be 1 to 255 bytes");
		bad = 1;
	}
	tls_sid_ctx(c, service, sid);
	for (i = 0; i < c->ncerts; i++) {
		if (tls_cert_load(t, i, c, sid, report, arg) == -1)
			bad = 1;
	}
	if (bad) {
		tls_unref(t);
		return (NULL);
	}
	tls_keys_rotate(t, now_ms());
	return (t);
}

void
tls_ref(struct tls *t)
{
	t->refs++;
}

/* Contexts live while a connection made with them does. */
void
tls_unref(struct tls *t)
{
	size_t i;

	if (t == NULL || --t->refs > 0)
		return;
	for (i = 0; i < t->ncerts; i++) {
		SSL_CTX_free(t->certs[i].ctx);
		free(t->certs[i].ocsp);
		free(t->certs[i].ocsp_path);
	}
	free(t->certs);
	free(t->alpn);
	free(t->service);
	if (t->filekeys != NULL)
		explicit_bzero(t->filekeys, t->nfilekeys * sizeof *t->filekeys);
	free(t->filekeys);
	free(t);
}

void
tls_conf_free(struct tls_conf *c)
{
	if (c == NULL)
		return;
	tls_unref(c->tls);
	argv_free(c->certificates);
	argv_free(c->keys);
	argv_free(c->ocsp);
	argv_free(c->alpn);
	free(c->ciphers);
	free(c->ciphersuites);
	free(c->client_ca);
	free(c->ticket_key_file);
	free(c);
}

/*
 * Watch the socket reads OpenSSL makes: one that got less than it asked
 * for (or nothing) left the socket empty, so a TLS read can stop there
 * without one more read(2) to meet EAGAIN.
 */
static long
tls_bio_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
    int ret, size_t *processed)
{
	struct tls_conn *c = (struct tls_conn *)BIO_get_callback_arg(b);

	(void)argp;
	(void)argi;
	(void)argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN) && c != NULL)
		c->drained = ret <= 0 || processed == NULL || *processed < len;
	return (ret);
}

/* A TLS session on an accepted client socket, server side. */
struct tls_conn *
tls_conn_new(struct tls *t, int fd)
{
	struct tls_conn *c;

	c = xcalloc(1, sizeof *c);
	if ((c->ssl = SSL_new(t->certs[0].ctx)) == NULL ||
	    !SSL_set_fd(c->ssl, fd)) {
		ERR_clear_error();
		SSL_free(c->ssl);
		free(c);
		return (NULL);
	}
	SSL_set_accept_state(c->ssl);
	SSL_set_read_ahead(c->ssl, 1);
	BIO_set_callback_ex(SSL_get_rbio(c->ssl), tls_bio_cb);
	BIO_set_callback_arg(SSL_get_rbio(c->ssl), (char *)c);
	tls_ref(t);
	c->tls = t;
	return (c);
}

void
tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl);
	tls_unref(c->tls);
	free(c);
}

/* Keep the first error of a connection: it is logged once, at its end. */
static void
tls_conn_fail(struct tls_conn *c, enum tls_failure f, const char *why)
{
	c->failed = 1;
	if (c->failure == TLS_FAILURE_NONE)
		c->failure = f;
	if (c->error[0] == '\0')
		snprintf(c->error, sizeof c->error, "%s", why);
	ERR_clear_error();
}

/*
 * What an SSL call's result means: 0 it waits for the socket (want set,
 * errno EAGAIN), 1 the peer closed, -1 a failure (kept for the log).
 */
static int
tls_conn_status(struct tls_conn *c, int rc)
{
	unsigned long e;
	char          buf[160];
	int           saved = errno;

	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		c->want = EV_READ;
		errno = EAGAIN;
		return (0);
	case SSL_ERROR_WANT_WRITE:
		c->want = EV_WRITE;
		errno = EAGAIN;
		return (0);
	case SSL_ERROR_ZERO_RETURN:
		return (1);
	case SSL_ERROR_SYSCALL:
		if (!SSL_is_init_finished(c->ssl))
			tls_conn_fail(c, TLS_FAILURE_ABORTED,
			    saved == 0 ? "client closed during the handshake"
				       : strerror(saved));
		else
			tls_conn_fail(c, TLS_FAILURE_PROTOCOL,
			    saved == 0 ? "connection closed" : strerror(saved));
		errno = saved != 0 ? saved : ECONNRESET;
		return (-1);
	default:
		e = ERR_peek_error();
		ERR_error_string_n(e, buf, sizeof buf);
		if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST ||
			ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST ||
			ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
			ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG) &&
		    !SSL_is_init_finished(c->ssl))
			tls_conn_fail(c, TLS_FAILURE_PLAINTEXT, buf);
		else
			tls_conn_fail(c, TLS_FAILURE_PROTOCOL, buf);
		errno = EPROTO;
		return (-1);
	}
}

int
tls_conn_handshake(struct tls_conn *c)
{
	int rc;

	ERR_clear_error();
	errno = 0;
	c->want = 0;
	if ((rc = SSL_do_handshake(c->ssl)) == 1) {
		/* The client's first request may have come with its Finished.
		 */
		c->more = SSL_has_pending(c->ssl);
		return (TLS_HANDSHAKE_DONE);
	}
	switch (tls_conn_status(c, rc)) {
	case 0:
		return (TLS_HANDSHAKE_WANT);
	case 1:
		tls_conn_fail(c, TLS_FAILURE_ABORTED,
		    "client closed during the handshake");
		break;
	}
	return (TLS_HANDSHAKE_FAIL);
}

/*
 * Decrypted bytes: >0 bytes, 0 the client closed (close_notify or EOF), -1
 * with errno (EAGAIN: tls_conn_want() says for what).  OpenSSL reads ahead
 * (one read(2) takes several records), so it can hold bytes the socket will
 * not signal again: the loop drains it until the socket is empty, and when
 * len fills first, tls_conn_more() tells the caller to read again.
 */
ssize_t
tls_conn_read(struct tls_conn *c, void *buf, size_t len)
{
	size_t got = 0;
	int    n, st;

	c->want = 0;
	c->more = 0;
	while (got < len) {
		ERR_clear_error();
		errno = 0;
		n = SSL_read(c->ssl, (char *)buf + got,
		    len - got > INT_MAX ? INT_MAX : (int)(len - got));
		if (n > 0) {
			got += (size_t)n;
			/* The socket gave all it had, and OpenSSL holds none.
			 */
			if (c->drained && !SSL_has_pending(c->ssl))
				return ((ssize_t)got);
			continue;
		}
		if (got > 0) {
			/* The next call sees the EOF or error again. */
			c->want = 0;
			c->more =
			    SSL_get_error(c->ssl, n) != SSL_ERROR_WANT_READ;
			ERR_clear_error();
			return ((ssize_t)got);
		}
		st = tls_conn_status(c, n);
		return (st == 1 ? 0 : -1);
	}
	c->more = 1;
	return ((ssize_t)got);
}

/*
 * Encrypt and send: OpenSSL returns after each record (partial writes are
 * on, so an EAGAIN keeps what went), and the loop goes on until all went
 * or the socket is full, so a short count means the socket took no more.
 */
ssize_t
tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
	size_t put = 0;
	int    n;

	c->want = 0;
	while (put < len) {
		ERR_clear_error();
		errno = 0;
		n = SSL_write(c->ssl, (const char *)buf + put,
		    len - put > INT_MAX ? INT_MAX : (int)(len - put));
		if (n > 0) {
			put += (size_t)n;
			continue;
		}
		if (put > 0) {
			/* The next call meets the EAGAIN or the error again. */
			ERR_clear_error();
			return ((ssize_t)put);
		}
		if (tls_conn_status(c, n) == 1)
			errno = EPIPE;
		return (-1);
	}
	return ((ssize_t)put);
}

/* Half-close: tell the client nothing more comes (best effort). */
void
tls_conn_close_notify(struct tls_conn *c)
{
	if (c->failed || !SSL_is_init_finished(c->ssl))
		return;
	ERR_clear_error();
	if (SSL_shutdown(c->ssl) < 0)
		ERR_clear_error();
}

/* Bytes may wait inside OpenSSL: read again without waiting for the socket. */
int
tls_conn_more(const struct tls_conn *c)
{
	return (c->more);
}

short
tls_conn_want(const struct tls_conn *c)
{
	return (c->want);
}

enum tls_failure
tls_conn_failure(const struct tls_conn *c)
{
	return (c->failure);
}

const char *
tls_conn_error(const struct tls_conn *c)
{
	return (c->error[0] != '\0' ? c->error : NULL);
}

/* Printable ASCII only: these go to workers and into log lines. */
static void
tls_copy(char *dst, size_t len, const char *src, size_t n)
{
	size_t i;

	if (src == NULL)
		n = 0;
	if (n >= len)
		n = len - 1;
	for (i = 0; i < n; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	dst[n] = '\0';
}

void
tls_conn_info(const struct tls_conn *c, struct tls_info *info)
{
	const unsigned char *alpn;
	const char          *s;
	unsigned int         alpnlen = 0;
	X509                *x;
	BIO                 *b;
	char                *p;
	long                 n;

	memset(info, 0, sizeof *info);
	s = SSL_get_version(c->ssl);
	tls_copy(info->version, sizeof info->version, s, strlen(s));
	s = SSL_get_cipher_name(c->ssl);
	tls_copy(info->cipher, sizeof info->cipher, s, s ? strlen(s) : 0);
	s = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
	tls_copy(info->sni, sizeof info->sni, s, s ? strlen(s) : 0);
	SSL_get0_alpn_selected(c->ssl, &alpn, &alpnlen);
	tls_copy(info->alpn, sizeof info->alpn, (const char *)alpn, alpnlen);
	if ((x = SSL_get0_peer_certificate(c->ssl)) == NULL)
		return;
	info->verified = SSL_get_verify_result(c->ssl) == X509_V_OK;
	if ((b = BIO_new(BIO_s_mem())) == NULL)
		return;
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
		info->cn, sizeof info->cn) < 0)
		info->cn[0] = '\0';
	tls_copy(info->cn, sizeof info->cn, info->cn, strlen(info->cn));
	if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
		XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
	    (n = BIO_get_mem_data(b, &p)) > 0)
		tls_copy(info->subject, sizeof info->subject, p, (size_t)n);
	BIO_free(b);
	ERR_clear_error();
}

/* One sub-TLV: type, 16-bit length, value; 0 when it does not fit. */
static size_t
tls_tlv(unsigned char *out, size_t room, uint8_t type, const char *value)
{
	size_t n = strlen(value);

	if (n == 0 || room < 3 + n)
		return (0);
	out[0] = type;
	out[1] = (unsigned char)(n >> 8);
	out[2] = (unsigned char)n;
	memcpy(out + 3, value, n);
	return (3 + n);
}

/*
 * The value of a PROXY v2 PP2_TYPE_SSL TLV: client flags (SSL, and a
 * certificate on this connection), verify (0: a certificate that passed),
 * then the version, cipher and client CN sub-TLVs.  Its length, or 0 when
 * out is too small for the fixed part.
 */
size_t
tls_proxy_ssl(const struct tls_info *info, unsigned char *out, size_t len)
{
	size_t   n = 5;
	uint32_t verify = info->verified ? 0 : 1;

	if (len < n)
		return (0);
	out[0] = 0x01 | (info->subject[0] != '\0' ? 0x02 : 0);
	out[1] = (unsigned char)(verify >> 24);
	out[2] = (unsigned char)(verify >> 16);
	out[3] = (unsigned char)(verify >> 8);
	out[4] = (unsigned char)verify;
	n += tls_tlv(out + n, len - n, 0x21, info->version);
	n += tls_tlv(out + n, len - n, 0x23, info->cipher);
	n += tls_tlv(out + n, len - n, 0x22, info->cn);
	return (n);
}
