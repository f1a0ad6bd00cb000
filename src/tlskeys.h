/* Session ticket keys across a binary upgrade: a sealed memfd, checked. */
#ifndef SN_TLSKEYS_H
#define SN_TLSKEYS_H

#include <stddef.h>

#define TLSKEYS_ENV "SOCKETNAUT_TLS_KEYS_FD"

unsigned char *tlskeys_encode(size_t *lenp);
int            tlskeys_decode(
	       const unsigned char *blob, size_t len, long long now, char **cause);
int  tlskeys_export(void);
void tlskeys_import(const char *fdenv);
void tlskeys_import_end(void);

#endif
