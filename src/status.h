/*
 * The daemon's state as one snapshot (STATUS-SCHEMA.md): JSON for
 * socketnautctl and the stats listener, tables for people, and the live
 * connection table.  Long answers are produced a piece at a time.
 */
#ifndef SN_STATUS_H
#define SN_STATUS_H

#include <stddef.h>

struct evbuffer;
struct service_head;

#define STATUS_SCHEMA_VERSION 1

enum status_kind {
	STATUS_JSON,  /* the snapshot */
	STATUS_TABLE, /* the snapshot for people */
	CONNS_JSON,   /* the connection table */
	CONNS_TABLE,
};

/* Where a long answer stopped; zeroed by status_cursor_init(). */
struct status_cursor {
	enum status_kind kind;
	char             filter[64]; /* conns of one service; "" for all */
	int              begun;
	int              done;
	size_t           svc;   /* services written */
	size_t           item;  /* of the current service: relays written */
	int              wrote; /* a connection was written: commas */
};

void status_init(struct service_head *services);
void status_reloaded(int ok);
void status_cursor_init(
    struct status_cursor *, enum status_kind, const char *filter);
int  status_stream(struct status_cursor *, struct evbuffer *out, size_t limit);
void status_json(struct evbuffer *out);
void status_json_string(struct evbuffer *out, const char *s);

#endif
