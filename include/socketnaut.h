/*
 * libsocketnaut: the worker's end of socketnautd's control channel.  A
 * worker started by socketnautd(8) reports that it is ready (or the
 * address it chose), asks for the real client address of a relayed
 * connection, writes into the daemon's log, and hears when it should
 * drain, and takes the client connections it is handed (mode handoff:
 * sn_agent_accept).  Every call is nonblocking except sn_agent_peer_info,
 * sn_agent_flush and sn_agent_close, which wait at most their timeout.
 * See socketnaut(3).
 */
#ifndef SOCKETNAUT_H
#define SOCKETNAUT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SN_AGENT_ADDRSTRLEN 64

struct sn_agent;

/* One end of a relayed connection, as Socketnaut's ServiceAgent reports it. */
struct sn_peer_addr {
	char address[SN_AGENT_ADDRSTRLEN]; /* numeric: "127.0.0.1", "::1" */
	int  family;                       /* AF_INET or AF_INET6 */
	int  port;
};

struct sn_peer_info {
	struct sn_peer_addr remote; /* the client */
	struct sn_peer_addr local;  /* the public listener it reached */
};

/*
 * A client of a service that terminates TLS (sn_agent_peer_tls): what the
 * master negotiated with it.  Empty strings for what does not apply.
 */
struct sn_peer_tls {
	char version[16]; /* "TLSv1.3"; "": not a TLS client */
	char cipher[64];
	char sni[256];            /* the server name it asked for */
	char alpn[256];           /* the ALPN protocol chosen */
	char client_subject[512]; /* its certificate's subject, RFC 2253 */
	int  client_verified;     /* that certificate passed */
};

/* info is NULL when the master knows no open connection with that key. */
typedef void sn_agent_peer_info_cb(
    struct sn_agent *, uint32_t, const struct sn_peer_info *, void *);
typedef void sn_agent_drain_cb(struct sn_agent *, void *);

struct sn_agent *sn_agent_open(void);
int              sn_agent_fd(const struct sn_agent *);
void             sn_agent_set_callbacks(
		struct sn_agent *, sn_agent_peer_info_cb *, sn_agent_drain_cb *, void *);
int sn_agent_ready(struct sn_agent *, const char *);
int sn_agent_ready_port(struct sn_agent *, int);
int sn_agent_log(struct sn_agent *, int, const char *, ...)
    __attribute__((format(printf, 3, 4)));
int sn_agent_vlog(struct sn_agent *, int, const char *, va_list)
    __attribute__((format(printf, 3, 0)));
int sn_agent_peer_key(int, char *, size_t);
int sn_agent_peer_query(struct sn_agent *, int, uint32_t *);
int sn_agent_process(struct sn_agent *);
int sn_agent_want_write(const struct sn_agent *);
int sn_agent_drain_requested(const struct sn_agent *);
int sn_agent_peer_info(struct sn_agent *, int, struct sn_peer_info *, int);
int sn_agent_peer_tls(
    struct sn_agent *, int, struct sn_peer_info *, struct sn_peer_tls *, int);
int  sn_agent_drained(struct sn_agent *);
int  sn_agent_accept(struct sn_agent *, struct sn_peer_info *, uint32_t *id);
int  sn_agent_handoff_closed(struct sn_agent *, uint32_t id);
int  sn_agent_flush(struct sn_agent *, int);
void sn_agent_close(struct sn_agent *);

#ifdef __cplusplus
}
#endif

#endif
