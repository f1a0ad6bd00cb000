/*
 * Session ticket keys across a binary upgrade, so that clients resume
 * their sessions on the new master (nginx and HAProxy keep keys in files
 * for this; here they never touch a file system).  The old master writes
 * every service's current and previous key, with their birth times, into
 * a memfd, seals it and passes it to the new master (TLSKEYS_ENV names the
 * fd).  The new master reads it before its configuration is loaded, checks
 * every length and field (all or nothing), and each service of the new
 * configuration takes the keys of its name; the rest are forgotten once
 * the new master is ready.  Big-endian layout: "SNTK", version (1), three
 * zero bytes, the number of services (4); per service its name's length
 * (1), the name, then two keys (current, previous), each valid (1), born
 * (8, ms of CLOCK_MONOTONIC, shared by both masters), name (16), AES key
 * (32), HMAC key (32).
 *
 * A fleet of masters shares keys through a ticket_key_file instead, as
 * nginx's ssl_session_ticket_key and HAProxy's tls-ticket-keys do: 80 bytes
 * per key (name, HMAC key, AES key, as nginx reads them), the first one
 * seals tickets, all open them.  Rotation is the operator's: a job writes a
 * new key first and keeps the old ones after it, then reloads every master.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tls.h"
#include "tlskeys.h"
#include "util.h"

#define TLSKEYS_MAGIC    "SNTK"
#define TLSKEYS_VERSION  1
#define TLSKEYS_HEAD     12
#define TLSKEYS_SERVICES 4096 /* at most, in one blob */
#define TLSKEYS_NAME     255  /* bytes of a service name, at most */
#define TLSKEYS_KEY      (1 + 8 + 16 + 32 + 32)
#define TLSKEYS_MAX                                                            \
	(TLSKEYS_HEAD + TLSKEYS_SERVICES * (1 + TLSKEYS_NAME + 2 * TLSKEYS_KEY))
#define TLSKEYS_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

struct tlskeys_out {
	unsigned char *buf;
	size_t         len;
	size_t         size;
	uint32_t       count;
};

static void
tlskeys_put(struct tlskeys_out *o, const void *p, size_t n)
{
	unsigned char *nbuf;

	if (o->len + n > o->size) {
		/* Grow by copying, so that no stale copy of a key is left. */
		nbuf = xcalloc(1, 2 * (o->len + n));
		if (o->buf != NULL) {
			memcpy(nbuf, o->buf, o->len);
			explicit_bzero(o->buf, o->size);
			free(o->buf);
		}
		o->buf = nbuf;
		o->size = 2 * (o->len + n);
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void
tlskeys_put_key(struct tlskeys_out *o, const struct tls_key *k)
{
	unsigned char b[TLSKEYS_KEY];
	uint64_t      born = (uint64_t)k->born;
	int           i;

	memset(b, 0, sizeof b);
	if (k->valid) {
		b[0] = 1;
		for (i = 0; i < 8; i++)
			b[1 + i] = (unsigned char)(born >> (56 - 8 * i));
		memcpy(b + 9, k->name, 16);
		memcpy(b + 25, k->aes, 32);
		memcpy(b + 57, k->hmac, 32);
	}
	tlskeys_put(o, b, sizeof b);
	explicit_bzero(b, sizeof b);
}

static void
tlskeys_put_service(void *arg, const char *service, const struct tls_key *cur,
    const struct tls_key *prev)
{
	struct tlskeys_out *o = arg;
	unsigned char       n;

	if ((!cur->valid && !prev->valid) || strlen(service) == 0 ||
	    strlen(service) > TLSKEYS_NAME || o->count >= TLSKEYS_SERVICES)
		return;
	n = (unsigned char)strlen(service);
	tlskeys_put(o, &n, 1);
	tlskeys_put(o, service, n);
	tlskeys_put_key(o, cur);
	tlskeys_put_key(o, prev);
	o->count++;
}

/* Every service's keys as one blob (to be wiped and freed), or NULL: none. */
unsigned char *
tlskeys_encode(size_t *lenp)
{
	struct tlskeys_out o;
	unsigned char      head[TLSKEYS_HEAD];

	memset(&o, 0, sizeof o);
	memset(head, 0, sizeof head);
	tlskeys_put(&o, head, sizeof head);
	tls_keys_walk(tlskeys_put_service, &o);
	if (o.count == 0) {
		free(o.buf);
		return (NULL);
	}
	memcpy(o.buf, TLSKEYS_MAGIC, 4);
	o.buf[4] = TLSKEYS_VERSION;
	o.buf[8] = (unsigned char)(o.count >> 24);
	o.buf[9] = (unsigned char)(o.count >> 16);
	o.buf[10] = (unsigned char)(o.count >> 8);
	o.buf[11] = (unsigned char)o.count;
	*lenp = o.len;
	return (o.buf);
}

/* One key at p (TLSKEYS_KEY bytes): -1 when a field is impossible. */
static int
tlskeys_get_key(const unsigned char *p, long long now, struct tls_key *k)
{
	uint64_t born = 0;
	int      i;

	memset(k, 0, sizeof *k);
	if (p[0] > 1)
		return (-1);
	if (p[0] == 0)
		return (0);
	for (i = 0; i < 8; i++)
		born = born << 8 | p[1 + i];
	/* Born later than now would never rotate. */
	if (born > (uint64_t)now)
		return (-1);
	k->valid = 1;
	k->born = (long long)born;
	memcpy(k->name, p + 9, 16);
	memcpy(k->aes, p + 25, 32);
	memcpy(k->hmac, p + 57, 32);
	return (0);
}

/* Checks the whole blob; hands the keys over only when adopt is set. */
static int
tlskeys_parse(
    const unsigned char *p, size_t len, long long now, int adopt, char **cause)
{
	struct tls_key cur, prev;
	char           name[TLSKEYS_NAME + 1];
	uint32_t       count, i;
	size_t         off = TLSKEYS_HEAD, n, j;

	if (len < TLSKEYS_HEAD || memcmp(p, TLSKEYS_MAGIC, 4) != 0)
		return (*cause = xstrdup("not a ticket key blob"), -1);
	if (p[4] != TLSKEYS_VERSION || p[5] != 0 || p[6] != 0 || p[7] != 0)
		return (*cause = xasprintf(
			    "version %u, not %d", p[4], TLSKEYS_VERSION),
		    -1);
	count = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 |
	    (uint32_t)p[10] << 8 | p[11];
	if (count == 0 || count > TLSKEYS_SERVICES)
		return (*cause = xasprintf("%u services", count), -1);
	for (i = 0; i < count; i++) {
		if (len - off < 1 || (n = p[off]) == 0 ||
		    len - off - 1 < n + 2 * TLSKEYS_KEY)
			return (
			    *cause = xasprintf("service %u truncated", i), -1);
		for (j = 0; j < n; j++) {
			if (p[off + 1 + j] <= 0x20 || p[off + 1 + j] >= 0x7f)
				return (*cause = xasprintf(
					    "service %u: a name with byte %#x",
					    i, p[off + 1 + j]),
				    -1);
		}
		memcpy(name, p + off + 1, n);
		name[n] = '\0';
		off += 1 + n;
		if (tlskeys_get_key(p + off, now, &cur) == -1 ||
		    tlskeys_get_key(p + off + TLSKEYS_KEY, now, &prev) == -1)
			return (*cause = xasprintf(
				    "service %s: an impossible key", name),
			    -1);
		off += 2 * TLSKEYS_KEY;
		if (adopt)
			tls_keys_inherit(name, &cur, &prev);
		explicit_bzero(&cur, sizeof cur);
		explicit_bzero(&prev, sizeof prev);
	}
	if (off != len)
		return (*cause = xasprintf(
			    "%zu bytes after the last service", len - off),
		    -1);
	return ((int)count);
}

/*
 * The old master's keys, all or none: the number of services whose keys
 * wait for the configuration, or -1 and why.
 */
int
tlskeys_decode(const unsigned char *p, size_t len, long long now, char **cause)
{
	if (tlskeys_parse(p, len, now, 0, cause) == -1)
		return (-1);
	return (tlskeys_parse(p, len, now, 1, cause));
}

/* The old master: a sealed memfd holding every key, or -1 (none, or failed). */
int
tlskeys_export(void)
{
	unsigned char *blob;
	size_t         len = 0;
	ssize_t        n;
	int            fd;

	if ((blob = tlskeys_encode(&len)) == NULL)
		return (-1);
	fd = memfd_create(
	    "socketnaut-ticket-keys", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd == -1)
		log_warn(
		    "binary upgrade: ticket keys not passed on: memfd_create");
	else if ((n = write(fd, blob, len)) != (ssize_t)len) {
		log_warn("binary upgrade: ticket keys not passed on: write");
		close(fd);
		fd = -1;
	} else if (fcntl(fd, F_ADD_SEALS, TLSKEYS_SEALS | F_SEAL_SEAL) == -1) {
		log_warn("binary upgrade: ticket keys not passed on: seal");
		close(fd);
		fd = -1;
	}
	explicit_bzero(blob, len);
	free(blob);
	return (fd);
}

/* The fd named by the environment, read whole if it is a sealed memfd. */
static unsigned char *
tlskeys_read(const char *v, size_t *lenp, char **cause)
{
	unsigned char *blob;
	struct stat    st;
	char          *end;
	long           fd;
	int            seals;
	ssize_t        n;

	errno = 0;
	fd = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || fd < 3 || fd > INT_MAX)
		return (*cause = xasprintf("%s=%s: not an fd", TLSKEYS_ENV, v),
		    NULL);
	if (fstat((int)fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		*cause = xasprintf("fd %ld is not a memfd", fd);
		return (NULL);
	}
	if ((seals = fcntl((int)fd, F_GET_SEALS)) == -1 ||
	    (seals & TLSKEYS_SEALS) != TLSKEYS_SEALS) {
		*cause = xasprintf("fd %ld is not a sealed memfd", fd);
		close((int)fd);
		return (NULL);
	}
	if (st.st_size <= 0 || st.st_size > TLSKEYS_MAX) {
		*cause = xasprintf("%lld bytes", (long long)st.st_size);
		close((int)fd);
		return (NULL);
	}
	blob = xcalloc(1, (size_t)st.st_size);
	n = pread((int)fd, blob, (size_t)st.st_size, 0);
	close((int)fd);
	if (n != st.st_size) {
		*cause = xasprintf(
		    "read %zd of %lld bytes", n, (long long)st.st_size);
		explicit_bzero(blob, (size_t)st.st_size);
		free(blob);
		return (NULL);
	}
	*lenp = (size_t)n;
	return (blob);
}

/*
 * The new master, before its configuration is loaded: take the old one's
 * keys, or say why not (its clients then make full handshakes once).
 */
void
tlskeys_import(const char *v)
{
	unsigned char *blob;
	size_t         len = 0;
	char          *cause = NULL;
	int            n;

	if (v == NULL)
		return;
	if ((blob = tlskeys_read(v, &len, &cause)) == NULL)
		n = -1;
	else {
		n = tlskeys_decode(blob, len, now_ms(), &cause);
		explicit_bzero(blob, len);
		free(blob);
	}
	if (n == -1) {
		log_warnx(
		    "binary upgrade: ticket keys from the old master refused (%s): new keys are made",
		    cause);
		tls_keys_inherit_end();
	} else
		log_info(
		    "binary upgrade: ticket keys of %d service%s inherited", n,
		    n == 1 ? "" : "s");
	free(cause);
}

/* The new master is ready: keys of services it does not have are dropped. */
void
tlskeys_import_end(void)
{
	int n;

	if ((n = tls_keys_inherit_end()) > 0)
		log_info(
		    "binary upgrade: ticket keys of %d service%s no longer configured dropped",
		    n, n == 1 ? "" : "s");
}

/*
 * A ticket_key_file's keys: a regular file of the daemon's user or root,
 * no access for group or others, 1 to TLSKEYS_FILE_KEYS keys of
 * TLSKEYS_FILE_KEY bytes.  NULL and why otherwise.
 */
struct tls_key *
tlskeys_file_read(const char *path, size_t *nkeys, char **cause)
{
	struct tls_key *keys = NULL;
	unsigned char   buf[TLSKEYS_FILE_KEY * TLSKEYS_FILE_KEYS + 1];
	struct stat     st;
	ssize_t         n = -1;
	size_t          i;
	int             fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) ==
	    -1) {
		*cause = xasprintf("%s", strerror(errno));
		return (NULL);
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))
		*cause = xstrdup("not a regular file");
	else if (st.st_uid != 0 && st.st_uid != geteuid())
		*cause = xasprintf(
		    "owned by uid %u, neither root nor this daemon's user",
		    (unsigned)st.st_uid);
	else if ((st.st_mode & 077) != 0)
		*cause = xasprintf(
		    "mode %04o lets group or others at the keys: chmod 600 it",
		    (unsigned)(st.st_mode & 07777));
	else if (st.st_size == 0 || st.st_size % TLSKEYS_FILE_KEY != 0 ||
	    st.st_size > TLSKEYS_FILE_KEY * TLSKEYS_FILE_KEYS)
		*cause = xasprintf(
		    "%lld bytes: %d bytes a key, 1 to %d keys (openssl rand %d > file)",
		    (long long)st.st_size, TLSKEYS_FILE_KEY, TLSKEYS_FILE_KEYS,
		    TLSKEYS_FILE_KEY);
	else if ((n = read(fd, buf, sizeof buf)) != st.st_size)
		*cause = n == -1 ? xasprintf("%s", strerror(errno))
				 : xasprintf("read %zd of %lld bytes", n,
				       (long long)st.st_size);
	else {
		*nkeys = (size_t)n / TLSKEYS_FILE_KEY;
		keys = xcalloc(*nkeys, sizeof *keys);
		for (i = 0; i < *nkeys; i++) {
			memcpy(keys[i].name, buf + i * TLSKEYS_FILE_KEY, 16);
			memcpy(
			    keys[i].hmac, buf + i * TLSKEYS_FILE_KEY + 16, 32);
			memcpy(
			    keys[i].aes, buf + i * TLSKEYS_FILE_KEY + 48, 32);
			keys[i].valid = 1;
		}
	}
	close(fd);
	explicit_bzero(buf, sizeof buf);
	return (keys);
}
