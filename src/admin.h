/*
 * The admin socket: socketnautctl's channel to the master.  Its wire
 * format, shared with socketnautctl.c: every frame is an 8-byte header --
 * version (1), type, flags (16 bits), payload length (32 bits), big-endian
 * -- then the payload.  The client sends one REQUEST at a time (the
 * command's words, '\n'-separated, at most ADMIN_REQUEST_MAX bytes); the
 * master answers with OUT and ERR frames (text for stdout and stderr, at
 * most ADMIN_FRAME_MAX bytes each, as many as the answer needs) and one
 * DONE frame whose one-byte payload is the exit status.  Anything else
 * closes the connection.
 */
#ifndef SN_ADMIN_H
#define SN_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#define ADMIN_VERSION     1
#define ADMIN_HDR         8
#define ADMIN_REQUEST_MAX 4096
#define ADMIN_FRAME_MAX   65536
#define ADMIN_WORDS_MAX   8

enum admin_type {
	ADMIN_REQUEST = 1, /* client: a command */
	ADMIN_OUT = 2,     /* master: text for stdout */
	ADMIN_ERR = 3,     /* master: text for stderr */
	ADMIN_DONE = 4,    /* master: the exit status, one byte */
};

#define ADMIN_F_JSON 0x0001 /* answer in JSON (-j) */

/* Exit statuses of socketnautctl (socketnautctl(8), EXIT STATUS). */
enum admin_exit {
	ADMIN_EXIT_OK = 0,
	ADMIN_EXIT_FAILED = 1,  /* the command was refused or failed */
	ADMIN_EXIT_CONFIG = 2,  /* reload: the file has errors */
	ADMIN_EXIT_TIMEOUT = 3, /* no outcome within -t */
	ADMIN_EXIT_WORKERS = 4, /* applied, but new workers fail to start */
	ADMIN_EXIT_CONNECT = 5, /* the daemon cannot be reached or spoke */
	ADMIN_EXIT_USAGE = 64,
};

static inline void
admin_header_put(unsigned char *b, uint8_t type, uint16_t flags, uint32_t len)
{
	b[0] = ADMIN_VERSION;
	b[1] = type;
	b[2] = (unsigned char)(flags >> 8);
	b[3] = (unsigned char)flags;
	b[4] = (unsigned char)(len >> 24);
	b[5] = (unsigned char)(len >> 16);
	b[6] = (unsigned char)(len >> 8);
	b[7] = (unsigned char)len;
}

/* Decode a header; -1 when no frame of ours can start so. */
static inline int
admin_header_get(const unsigned char *b, uint8_t *type, uint16_t *flags,
    uint32_t *len, uint32_t max)
{
	if (b[0] != ADMIN_VERSION || b[1] < ADMIN_REQUEST || b[1] > ADMIN_DONE)
		return (-1);
	*type = b[1];
	*flags = (uint16_t)(b[2] << 8 | b[3]);
	*len = (uint32_t)b[4] << 24 | (uint32_t)b[5] << 16 |
	    (uint32_t)b[6] << 8 | b[7];
	return (*len > max ? -1 : 0);
}

struct sn_config;

int  admin_open(struct sn_config *, int take_over, char **cause);
void admin_changed(void);
void admin_reconfigured(const struct sn_config *);
void admin_close(void);

#endif
