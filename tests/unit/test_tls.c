/*
 * TLS contexts: built from certificates the test makes (a test CA, leaves
 * named by SAN with wildcards, an expired one, a mismatched key), then real
 * handshakes over a socketpair against an OpenSSL client: SNI choice, ALPN,
 * resumption across ticket key rotation, client certificates; and the
 * tls { } section's errors as file:line.
 */
#include <sys/socket.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "tls.h"
#include "unit.h"
#include "util.h"

static char dir[64];
static char lpath[256];

/* What tls_new reported, for the assertions. */
struct reports {
	int  errors;
	int  warnings;
	char text[2048];
};

static void
record(void *arg, const char *option, int error, const char *message)
{
	struct reports *r = arg;
	size_t          n = strlen(r->text);

	if (error)
		r->errors++;
	else
		r->warnings++;
	snprintf(r->text + n, sizeof r->text - n, "[%s %s] %s\n",
	    error ? "error" : "warning", option ? option : "-", message);
}

static char *
path(const char *name)
{
	static char buf[8][256];
	static int  i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
	return (buf[i]);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
sh(const char *fmt, ...)
{
	va_list ap;
	char    cmd[2048], full[2200];

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
	ck_assert_msg(system(full) == 0, "failed: %s", cmd);
}

/* A leaf signed by the test CA, with these SAN DNS names, for days. */
static void
leaf(const char *name, const char *san, int days)
{
	sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	   "-keyout %s.key -out %s.csr -subj /CN=%s && "
	   "printf 'subjectAltName=%s\\n' > %s.ext && "
	   "openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key "
	   "-CAcreateserial -out %s.pem -days %d -extfile %s.ext",
	    name, name, name, san, name, name, name, days, name);
}

/* A self-signed certificate whose validity ended yesterday (the API). */
static void
expired(const char *name)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509     *x = X509_new();
	FILE     *f;

	ck_assert_ptr_nonnull(pk);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), -10 * 86400);
	X509_gmtime_adj(X509_getm_notAfter(x), -86400);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)name, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, pk);
	ck_assert_int_gt(X509_sign(x, pk, EVP_sha256()), 0);
	f = fopen(path("old.pem"), "w");
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(path("old.key"), "w");
	PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
}

static void
setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/sn-tls-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(lpath, sizeof lpath, "%s/log", dir);
	ck_assert_int_eq(log_open(lpath, NULL), 0);
	sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
	   "-nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=SN-Test-CA");
	leaf("a", "DNS:a.test", 90);
	leaf("b", "DNS:b.test,DNS:*.b.test", 90);
	leaf("c", "DNS:c.b.test", 90);
	leaf("soon", "DNS:soon.test", 3);
	leaf("client", "DNS:client", 90);
	expired("old.test");
}

static void
teardown(void)
{
	char cmd[512];

	log_open("stderr", NULL);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* A configuration with the given certificate/key pairs (names). */
static struct tls_conf *
conf(const char *const *names, size_t n)
{
	struct tls_conf *c = xcalloc(1, sizeof *c);
	size_t           i;

	c->certificates = xcalloc(n + 1, sizeof *c->certificates);
	c->keys = xcalloc(n + 1, sizeof *c->keys);
	for (i = 0; i < n; i++) {
		c->certificates[i] = xasprintf("%s/%s.pem", dir, names[i]);
		c->keys[i] = xasprintf("%s/%s.key", dir, names[i]);
	}
	c->ncerts = n;
	c->min_protocol = TLS1_2_VERSION;
	c->session_cache = 100;
	c->ticket_rotation = 3600000;
	c->handshake_timeout = 10000;
	return (c);
}

/* A client handshake against tls over a socketpair; its SSL, or NULL. */
struct pair {
	struct tls_conn *server;
	SSL             *client;
	SSL_CTX         *cctx;
	int              fd[2];
	int              ok;
};

static void
pair_run(struct pair *p, struct tls *t, const char *sni,
    const unsigned char *alpn, size_t alpnlen, SSL_SESSION *sess,
    const char *clientcert)
{
	int i, s = TLS_HANDSHAKE_WANT, c = 0;

	memset(p, 0, sizeof *p);
	ck_assert_int_eq(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fd), 0);
	p->server = tls_conn_new(t, p->fd[0]);
	ck_assert_ptr_nonnull(p->server);
	p->cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_load_verify_locations(p->cctx, path("ca.pem"), NULL);
	if (clientcert != NULL) {
		char cert[300], key[300];

		snprintf(cert, sizeof cert, "%s/%s.pem", dir, clientcert);
		snprintf(key, sizeof key, "%s/%s.key", dir, clientcert);
		ck_assert_int_eq(SSL_CTX_use_certificate_file(
				     p->cctx, cert, SSL_FILETYPE_PEM),
		    1);
		ck_assert_int_eq(
		    SSL_CTX_use_PrivateKey_file(p->cctx, key, SSL_FILETYPE_PEM),
		    1);
	}
	p->client = SSL_new(p->cctx);
	SSL_set_fd(p->client, p->fd[1]);
	if (sni != NULL)
		SSL_set_tlsext_host_name(p->client, sni);
	if (alpn != NULL)
		SSL_set_alpn_protos(p->client, alpn, (unsigned)alpnlen);
	if (sess != NULL)
		SSL_set_session(p->client, sess);
	SSL_set_connect_state(p->client);
	for (i = 0; i < 50 && (s == TLS_HANDSHAKE_WANT || c != 1); i++) {
		if (c != 1) {
			c = SSL_do_handshake(p->client);
			if (c <= 0 &&
			    SSL_get_error(p->client, c) !=
				SSL_ERROR_WANT_READ &&
			    SSL_get_error(p->client, c) != SSL_ERROR_WANT_WRITE)
				break;
		}
		if (s == TLS_HANDSHAKE_WANT)
			s = tls_conn_handshake(p->server);
		if (s == TLS_HANDSHAKE_FAIL)
			break;
	}
	ERR_clear_error();
	p->ok = s == TLS_HANDSHAKE_DONE && c == 1;
}

/* A byte from server to client: the client then holds its ticket. */
static SSL_SESSION *
pair_session(struct pair *p)
{
	char buf[8];
	int  i, n = -1;

	ck_assert_int_eq(tls_conn_write(p->server, "x", 1), 1);
	for (i = 0; i < 20 && n <= 0; i++)
		n = SSL_read(p->client, buf, sizeof buf);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(
	    SSL_SESSION_has_ticket(SSL_get0_session(p->client)), 1);
	ck_assert_int_eq(
	    SSL_SESSION_is_resumable(SSL_get0_session(p->client)), 1);
	return (SSL_get1_session(p->client));
}

/* A clean close: OpenSSL marks an unclosed session not resumable. */
static void
pair_free(struct pair *p)
{
	if (p->ok)
		SSL_shutdown(p->client);
	SSL_free(p->client);
	SSL_CTX_free(p->cctx);
	tls_conn_free(p->server);
	close(p->fd[0]);
	close(p->fd[1]);
}

/* The CN of the certificate the client was shown. */
static void
pair_cn(struct pair *p, char *buf, size_t len)
{
	X509 *x = SSL_get0_peer_certificate(p->client);

	buf[0] = '\0';
	if (x != NULL)
		X509_NAME_get_text_by_NID(
		    X509_get_subject_name(x), NID_commonName, buf, (int)len);
}

START_TEST(key_not_matching_its_certificate_is_an_error_on_key)
{
	struct tls_conf *c = conf((const char *[]){ "a" }, 1);
	struct reports   r = { 0 };

	free(c->keys[0]);
	c->keys[0] = xstrdup(path("b.key"));
	ck_assert_ptr_null(tls_new(c, "web", record, &r));
	ck_assert_int_eq(r.errors, 1);
	ck_assert_msg(strstr(r.text, "[error key]") != NULL &&
		strstr(r.text, "does not match certificate") != NULL,
	    "%s", r.text);
	tls_conf_free(c);
}
END_TEST

START_TEST(missing_files_name_their_option_and_reason)
{
	struct tls_conf *c = conf((const char *[]){ "a", "b" }, 2);
	struct reports   r = { 0 };

	free(c->certificates[0]);
	c->certificates[0] = xstrdup(path("nope.pem"));
	free(c->keys[1]);
	c->keys[1] = xstrdup(path("nope.key"));
	ck_assert_ptr_null(tls_new(c, "web", record, &r));
	ck_assert_int_eq(r.errors, 2);
	ck_assert_msg(strstr(r.text, "[error certificate]") != NULL &&
		strstr(r.text, "[error key]") != NULL &&
		strstr(r.text, "No such file or directory") != NULL,
	    "%s", r.text);
	tls_conf_free(c);
}
END_TEST

START_TEST(expiring_and_expired_certificates_warn_but_load)
{
	struct tls_conf *c = conf((const char *[]){ "soon", "old", "a" }, 3);
	struct reports   r = { 0 };

	c->tls = tls_new(c, "web", record, &r);
	ck_assert_ptr_nonnull(c->tls);
	ck_assert_int_eq(r.errors, 0);
	ck_assert_int_eq(r.warnings, 2);
	ck_assert_msg(strstr(r.text, "soon.pem expires in 2 days") != NULL ||
		strstr(r.text, "soon.pem expires in 3 days") != NULL,
	    "%s", r.text);
	ck_assert_msg(
	    strstr(r.text, "old.pem has expired") != NULL, "%s", r.text);
	tls_conf_free(c);
}
END_TEST

START_TEST(bad_cipher_lists_are_errors)
{
	struct tls_conf *c = conf((const char *[]){ "a" }, 1);
	struct reports   r = { 0 };

	c->ciphers = xstrdup("NO-SUCH-CIPHER");
	c->ciphersuites = xstrdup("TLS_NOPE");
	ck_assert_ptr_null(tls_new(c, "web", record, &r));
	ck_assert_msg(strstr(r.text, "[error ciphers]") != NULL &&
		strstr(r.text, "[error ciphersuites]") != NULL,
	    "%s", r.text);
	tls_conf_free(c);
}
END_TEST

START_TEST(sni_picks_exact_then_wildcard_then_the_first)
{
	struct tls_conf *c = conf((const char *[]){ "a", "b", "c" }, 3);
	struct reports   r = { 0 };
	struct pair      p;
	struct tls_info  info;
	const char      *sni[] = { "b.test", "c.b.test", "x.b.test", "a.test",
		     "unknown.example", NULL };
	const char      *want[] = { "b", "c", "b", "a", "a", "a" };
	char             cn[64];
	int              i;

	c->tls = tls_new(c, "web", record, &r);
	ck_assert_ptr_nonnull(c->tls);
	for (i = 0; i < 6; i++) {
		pair_run(&p, c->tls, sni[i], NULL, 0, NULL, NULL);
		ck_assert_msg(p.ok, "handshake for %s", sni[i]);
		pair_cn(&p, cn, sizeof cn);
		ck_assert_msg(strcmp(cn, want[i]) == 0, "%s got %s",
		    sni[i] ? sni[i] : "(none)", cn);
		tls_conn_info(p.server, &info);
		ck_assert_str_eq(info.sni, sni[i] ? sni[i] : "");
		ck_assert_str_eq(info.version, "TLSv1.3");
		pair_free(&p);
	}
	tls_conf_free(c);
}
END_TEST

START_TEST(alpn_follows_our_order_and_refuses_no_overlap)
{
	struct tls_conf *c = conf((const char *[]){ "a" }, 1);
	struct reports   r = { 0 };
	struct pair      p;
	struct tls_info  info;

	c->alpn = xcalloc(3, sizeof *c->alpn);
	c->alpn[0] = xstrdup("h2");
	c->alpn[1] = xstrdup("http/1.1");
	c->tls = tls_new(c, "web", record, &r);
	ck_assert_ptr_nonnull(c->tls);
	pair_run(&p, c->tls, NULL, (const unsigned char *)"\x08http/1.1\x02h2",
	    12, NULL, NULL);
	ck_assert(p.ok);
	tls_conn_info(p.server, &info);
	ck_assert_str_eq(info.alpn, "h2");
	pair_free(&p);
	pair_run(&p, c->tls, NULL, (const unsigned char *)"\x08http/1.1", 9,
	    NULL, NULL);
	ck_assert(p.ok);
	tls_conn_info(p.server, &info);
	ck_assert_str_eq(info.alpn, "http/1.1");
	pair_free(&p);
	pair_run(&p, c->tls, NULL,
	    (const unsigned char *)"\x03"
				   "foo",
	    4, NULL, NULL);
	ck_assert(!p.ok);
	ck_assert_int_eq(tls_conn_failure(p.server), TLS_FAILURE_PROTOCOL);
	pair_free(&p);
	tls_conf_free(c);
}
END_TEST

/* A ticket resumes under its key and the next; after that, a full one. */
START_TEST(tickets_resume_until_their_key_is_two_rotations_old)
{
	struct tls_conf *c = conf((const char *[]){ "a" }, 1);
	struct reports   r = { 0 };
	struct pair      p;
	SSL_SESSION     *s;
	long long        now = now_ms();

	c->ticket_rotation = 1000;
	c->tls = tls_new(c, "rotating", record, &r);
	ck_assert_ptr_nonnull(c->tls);
	pair_run(&p, c->tls, NULL, NULL, 0, NULL, NULL);
	ck_assert(p.ok);
	s = pair_session(&p);
	pair_free(&p);

	pair_run(&p, c->tls, NULL, NULL, 0, s, NULL);
	ck_assert(p.ok);
	ck_assert_int_eq(SSL_session_reused(p.client), 1);
	pair_free(&p);

	tls_keys_rotate(c->tls, now + 1500); /* its key is now the previous */
	pair_run(&p, c->tls, NULL, NULL, 0, s, NULL);
	ck_assert(p.ok);
	ck_assert_int_eq(SSL_session_reused(p.client), 1);
	pair_free(&p);

	tls_keys_rotate(c->tls, now + 2600); /* and now gone */
	pair_run(&p, c->tls, NULL, NULL, 0, s, NULL);
	ck_assert(p.ok);
	ck_assert_int_eq(SSL_session_reused(p.client), 0);
	pair_free(&p);
	SSL_SESSION_free(s);
	tls_conf_free(c);
}
END_TEST

/* A reload builds new contexts; tickets of the old ones still resume. */
START_TEST(tickets_survive_a_rebuilt_context)
{
	struct tls_conf *c1 = conf((const char *[]){ "a" }, 1);
	struct tls_conf *c2 = conf((const char *[]){ "a" }, 1);
	struct reports   r = { 0 };
	struct pair      p;
	SSL_SESSION     *s;

	c1->tls = tls_new(c1, "kept", record, &r);
	pair_run(&p, c1->tls, NULL, NULL, 0, NULL, NULL);
	ck_assert(p.ok);
	s = pair_session(&p);
	pair_free(&p);
	tls_conf_free(c1);
	c2->tls = tls_new(c2, "kept", record, &r);
	pair_run(&p, c2->tls, NULL, NULL, 0, s, NULL);
	ck_assert(p.ok);
	ck_assert_int_eq(SSL_session_reused(p.client), 1);
	pair_free(&p);
	SSL_SESSION_free(s);
	tls_conf_free(c2);
}
END_TEST

/* An open connection keeps the contexts it began with. */
START_TEST(a_connection_outlives_its_configuration)
{
	struct tls_conf *c = conf((const char *[]){ "a" }, 1);
	struct reports   r = { 0 };
	struct pair      p;
	char             buf[8];
	int              i, n = -1;

	c->tls = tls_new(c, "web", record, &r);
	pair_run(&p, c->tls, NULL, NULL, 0, NULL, NULL);
	ck_assert(p.ok);
	tls_conf_free(c);
	ck_assert_int_eq(SSL_write(p.client, "hello", 5), 5);
	for (i = 0; i < 20 && n <= 0; i++)
		n = (int)tls_conn_read(p.server, buf, sizeof buf);
	ck_assert_int_eq(n, 5);
	ck_assert_int_eq(tls_conn_write(p.server, "bye", 3), 3);
	pair_free(&p);
}
END_TEST

START_TEST(client_certificates_required_optional_and_their_subject)
{
	struct tls_conf *c = conf((const char *[]){ "a" }, 1);
	struct reports   r = { 0 };
	struct pair      p;
	struct tls_info  info;

	c->client_ca = xstrdup(path("ca.pem"));
	c->verify_client = TLS_VERIFY_REQUIRED;
	c->tls = tls_new(c, "web", record, &r);
	ck_assert_ptr_nonnull(c->tls);
	pair_run(&p, c->tls, NULL, NULL, 0, NULL, "client");
	ck_assert(p.ok);
	tls_conn_info(p.server, &info);
	ck_assert_int_eq(info.verified, 1);
	ck_assert_str_eq(info.subject, "CN=client");
	pair_free(&p);
	/* TLS 1.3: the client finishes before the server checks. */
	pair_run(&p, c->tls, NULL, NULL, 0, NULL, NULL);
	ck_assert_int_eq(tls_conn_handshake(p.server), TLS_HANDSHAKE_FAIL);
	ck_assert_msg(strstr(tls_conn_error(p.server), "certificate") != NULL,
	    "%s", tls_conn_error(p.server));
	pair_free(&p);
	pair_run(&p, c->tls, NULL, NULL, 0, NULL, "old"); /* not the CA's */
	ck_assert_int_eq(tls_conn_handshake(p.server), TLS_HANDSHAKE_FAIL);
	pair_free(&p);
	tls_conf_free(c);

	c = conf((const char *[]){ "a" }, 1);
	c->client_ca = xstrdup(path("ca.pem"));
	c->verify_client = TLS_VERIFY_OPTIONAL;
	c->tls = tls_new(c, "web", record, &r);
	pair_run(&p, c->tls, NULL, NULL, 0, NULL, NULL);
	ck_assert(p.ok);
	tls_conn_info(p.server, &info);
	ck_assert_str_eq(info.subject, "");
	pair_free(&p);
	tls_conf_free(c);
}
END_TEST

START_TEST(plaintext_on_a_tls_socket_is_recognised)
{
	struct tls_conf *c = conf((const char *[]){ "a" }, 1);
	struct reports   r = { 0 };
	struct tls_conn *t;
	int              fd[2];

	c->tls = tls_new(c, "web", record, &r);
	ck_assert_int_eq(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0);
	t = tls_conn_new(c->tls, fd[0]);
	ck_assert_int_eq(tls_conn_handshake(t), TLS_HANDSHAKE_WANT);
	ck_assert_int_eq(
	    write(fd[1], "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), 27);
	ck_assert_int_eq(tls_conn_handshake(t), TLS_HANDSHAKE_FAIL);
	ck_assert_int_eq(tls_conn_failure(t), TLS_FAILURE_PLAINTEXT);
	tls_conn_free(t);
	close(fd[0]);
	close(fd[1]);

	ck_assert_int_eq(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0);
	t = tls_conn_new(c->tls, fd[0]);
	ck_assert_int_eq(write(fd[1], "\x16\x03\x01", 3), 3);
	close(fd[1]);
	ck_assert_int_eq(tls_conn_handshake(t), TLS_HANDSHAKE_FAIL);
	ck_assert_int_eq(tls_conn_failure(t), TLS_FAILURE_ABORTED);
	tls_conn_free(t);
	close(fd[0]);
	tls_conf_free(c);
}
END_TEST

/* PROXY v2 PP2_TYPE_SSL value: flags, verify, then sub-TLVs. */
START_TEST(proxy_ssl_tlv_has_the_specification_layout)
{
	struct tls_info     info;
	unsigned char       out[256];
	const unsigned char want[] = { 0x03, 0, 0, 0, 0, 0x21, 0, 7, 'T', 'L',
		'S', 'v', '1', '.', '3', 0x23, 0, 1, 'X', 0x22, 0, 5, 'a', 'l',
		'i', 'c', 'e' };
	size_t              n;

	memset(&info, 0, sizeof info);
	snprintf(info.version, sizeof info.version, "TLSv1.3");
	snprintf(info.cipher, sizeof info.cipher, "X");
	snprintf(info.subject, sizeof info.subject, "CN=alice");
	snprintf(info.cn, sizeof info.cn, "alice");
	info.verified = 1;
	n = tls_proxy_ssl(&info, out, sizeof out);
	ck_assert_uint_eq(n, sizeof want);
	ck_assert_mem_eq(out, want, n);
	/* No certificate: flags 0x01, verify nonzero, no CN; no room: 0. */
	info.subject[0] = info.cn[0] = '\0';
	info.verified = 0;
	n = tls_proxy_ssl(&info, out, sizeof out);
	ck_assert_uint_eq(n, 5 + 10 + 4);
	ck_assert_int_eq(out[0], 0x01);
	ck_assert_int_eq(out[4], 1);
	ck_assert_uint_eq(tls_proxy_ssl(&info, out, 4), 0);
	ck_assert_uint_eq(
	    tls_proxy_ssl(&info, out, 12), 5 + 4); /* cipher only */
}
END_TEST

/* The tls section through config_load: each error on its own line. */
static char *load_conf_svc(const char *, const char *, struct sn_config **);

static char *
load_conf(const char *body, struct sn_config **out)
{
	return (load_conf_svc("", body, out));
}

/* The same, with extra service lines (from line 4) before the section. */
static char *
load_conf_svc(const char *svc, const char *body, struct sn_config **out)
{
	char  cpath[300], *text;
	FILE *f;
	long  n;

	snprintf(cpath, sizeof cpath, "%s/t.conf", dir);
	f = fopen(cpath, "w");
	fprintf(f,
	    "runtime_dir = \"%s/run\"\n"
	    "service \"web\" {\n"
	    "  listen = { \"127.0.0.1:18443\" }\n"
	    "  command = \"/bin/sh -c 'exit 0'\"\n"
	    "%s"
	    "  tls {\n%s  }\n}\n",
	    dir, svc, body);
	fclose(f);
	truncate(lpath, 0);
	*out = config_load(cpath);
	f = fopen(lpath, "r");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = calloc(1, n + 1);
	fread(text, 1, n, f);
	fclose(f);
	return (text);
}

START_TEST(tls_section_errors_name_their_lines)
{
	struct sn_config *c;
	char             *out, body[2048], want[400];

	snprintf(body, sizeof body,
	    "    certificate = { \"%s\", \"%s\" }\n" /* line 6 */
	    "    key = { \"%s\" }\n"                 /* 7 */
	    "    verify_client = required\n"         /* 8 */
	    "    min_protocol = \"TLSv1.0\"\n"       /* 9 */
	    "    alpn = { \"h2\", \"bad name\" }\n"  /* 10 */
	    "    ticket_key_rotation = 10ms\n",      /* 11 */
	    path("a.pem"), path("b.pem"), path("a.key"));
	out = load_conf(body, &c);
	ck_assert_ptr_null(c);
	snprintf(want, sizeof want, "t.conf:7: tls: 1 key for 2 certificates");
	ck_assert_msg(strstr(out, want) != NULL, "%s", out);
	ck_assert_msg(
	    strstr(out, "t.conf:8: tls: verify_client needs client_ca") != NULL,
	    "%s", out);
	ck_assert_msg(
	    strstr(out,
		"t.conf:9: min_protocol: unknown protocol \"TLSv1.0\"") != NULL,
	    "%s", out);
	ck_assert_msg(strstr(out, "t.conf:10: tls: alpn: \"bad name\"") != NULL,
	    "%s", out);
	ck_assert_msg(
	    strstr(out, "t.conf:11: tls: ticket_key_rotation") != NULL, "%s",
	    out);
	free(out);

	snprintf(body, sizeof body,
	    "    certificate = { \"%s\" }\n" /* line 6 */
	    "    key = { \"%s\" }\n",        /* 7 */
	    path("a.pem"), path("b.key"));
	out = load_conf(body, &c);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(out, "t.conf:7: tls: key ") != NULL &&
		strstr(out, "does not match certificate") != NULL,
	    "%s", out);
	free(out);

	snprintf(body, sizeof body,
	    "    certificate = { \"%s\" }\n" /* line 6 */
	    "    key = { \"%s\" }\n",        /* 7 */
	    path("soon.pem"), path("soon.key"));
	out = load_conf(body, &c);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(c->services[0].tls->tls);
	ck_assert_msg(strstr(out, "t.conf:6: tls: certificate ") != NULL &&
		strstr(out, "soon.pem expires in") != NULL,
	    "%s", out);
	config_unref(c);
	free(out);

	snprintf(body, sizeof body,
	    "    certificate = { \"%s\" }\n"
	    "    key = { \"%s\" }\n",
	    path("a.pem"), path("a.key"));
	out = load_conf_svc("  backend = agent\n  mode = handoff\n", body, &c);
	ck_assert_ptr_null(c);
	ck_assert_msg(
	    strstr(out, "t.conf:6: mode handoff and tls exclude each other") !=
		NULL,
	    "%s", out);
	free(out);
}
END_TEST

Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("contexts");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, key_not_matching_its_certificate_is_an_error_on_key);
	tcase_add_test(tc, missing_files_name_their_option_and_reason);
	tcase_add_test(tc, expiring_and_expired_certificates_warn_but_load);
	tcase_add_test(tc, bad_cipher_lists_are_errors);
	tcase_add_test(tc, sni_picks_exact_then_wildcard_then_the_first);
	tcase_add_test(tc, alpn_follows_our_order_and_refuses_no_overlap);
	tcase_add_test(tc, tickets_resume_until_their_key_is_two_rotations_old);
	tcase_add_test(tc, tickets_survive_a_rebuilt_context);
	tcase_add_test(tc, a_connection_outlives_its_configuration);
	tcase_add_test(
	    tc, client_certificates_required_optional_and_their_subject);
	tcase_add_test(tc, plaintext_on_a_tls_socket_is_recognised);
	tcase_add_test(tc, tls_section_errors_name_their_lines);
	tcase_add_test(tc, proxy_ssl_tlv_has_the_specification_layout);
	suite_add_tcase(s, tc);
	return (s);
}
