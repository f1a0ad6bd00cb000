/* TLS termination: a service's contexts, and one client's TLS session. */
#ifndef SN_TLS_H
#define SN_TLS_H

#include <sys/types.h>

#include <stddef.h>

enum tls_verify {
	TLS_VERIFY_OFF,
	TLS_VERIFY_OPTIONAL,
	TLS_VERIFY_REQUIRED,
};

/* Why a handshake failed, for counting. */
enum tls_failure {
	TLS_FAILURE_NONE,
	TLS_FAILURE_PLAINTEXT, /* not TLS at all: an HTTP request, say */
	TLS_FAILURE_ABORTED,   /* the client hung up during the handshake */
	TLS_FAILURE_PROTOCOL,  /* refused: version, cipher, certificate... */
};

/* A service's tls { } section, as config.c read it. */
struct tls_conf {
	char    **certificates; /* chain files; the first is the default */
	char    **keys;         /* one per certificate */
	char    **ocsp;         /* DER responses, one per certificate */
	size_t    ncerts;
	int       min_protocol;    /* TLS1_2_VERSION or TLS1_3_VERSION */
	int       max_protocol;    /* the same; 0: the newest OpenSSL has */
	char     *ciphers;         /* TLS 1.2; NULL: OpenSSL's default */
	char     *ciphersuites;    /* TLS 1.3; NULL: OpenSSL's default */
	char    **alpn;            /* advertised, in preference order */
	long      session_cache;   /* sessions kept; 0: no cache */
	long long ticket_rotation; /* ms; 0: no tickets */
	char     *ticket_key_file; /* keys shared by a fleet; NULL: our own */
	char     *client_ca;
	enum tls_verify verify_client;
	long long       handshake_timeout; /* ms */
	struct tls     *tls; /* the contexts built from all this */
};

/* What the worker is told about a client's TLS session (printable). */
struct tls_info {
	char version[16]; /* "TLSv1.3" */
	char cipher[64];
	char sni[256];     /* "": none sent */
	char alpn[256];    /* "": none chosen */
	char subject[512]; /* RFC 2253; "": no client certificate */
	char cn[128];      /* its common name */
	int  verified;     /* a client certificate passed verification */
};

/* One session ticket key: AES-256-CBC and HMAC-SHA256, named. */
struct tls_key {
	unsigned char name[16];
	unsigned char aes[32];
	unsigned char hmac[32];
	long long     born; /* ms, CLOCK_MONOTONIC */
	int           valid;
};

/* A service's current and previous ticket keys, as a binary upgrade sees them.
 */
typedef void tls_keys_fn(void *arg, const char *service,
    const struct tls_key *cur, const struct tls_key *prev);

/* A problem found while building contexts, and the option it concerns. */
typedef void
tls_report_fn(void *arg, const char *option, int error, const char *message);

#define TLS_EXPIRY_WARN_DAYS  14
#define TLS_HANDSHAKE_TIMEOUT 10000 /* ms, handshake_timeout's default */

struct tls *tls_new(const struct tls_conf *, const char *service,
    tls_report_fn *report, void *arg);
void        tls_ref(struct tls *);
void        tls_unref(struct tls *);
void        tls_conf_free(struct tls_conf *);
int         tls_pick(const struct tls *, const char *servername);
void        tls_keys_rotate(struct tls *, long long now);
void        tls_keys_walk(tls_keys_fn *, void *arg);
void        tls_keys_inherit(
	   const char *service, const struct tls_key *cur, const struct tls_key *prev);
int tls_keys_inherit_end(void);

struct tls_conn;
struct tls_conn *tls_conn_new(struct tls *, int fd);
void             tls_conn_free(struct tls_conn *);
int              tls_conn_handshake(struct tls_conn *);
ssize_t          tls_conn_read(struct tls_conn *, void *buf, size_t len);
ssize_t          tls_conn_write(struct tls_conn *, const void *buf, size_t len);
void             tls_conn_close_notify(struct tls_conn *);
int              tls_conn_more(const struct tls_conn *);
short            tls_conn_want(const struct tls_conn *);
enum tls_failure tls_conn_failure(const struct tls_conn *);
const char      *tls_conn_error(const struct tls_conn *);
void             tls_conn_info(const struct tls_conn *, struct tls_info *);
size_t tls_proxy_ssl(const struct tls_info *, unsigned char *out, size_t len);

/* tls_conn_handshake() results. */
#define TLS_HANDSHAKE_DONE 0
#define TLS_HANDSHAKE_WANT 1 /* tls_conn_want() says for what */
#define TLS_HANDSHAKE_FAIL -1

#endif
