/* Session ticket keys across a binary upgrade: a sealed memfd, checked. */
#ifndef SN_TLSKEYS_H
#define SN_TLSKEYS_H

#include <stddef.h>

struct tls_key;

#define TLSKEYS_ENV       "SOCKETNAUT_TLS_KEYS_FD"
#define TLSKEYS_FILE_KEY  80 /* name, HMAC key, AES key: nginx's layout */
#define TLSKEYS_FILE_KEYS 8  /* keys in a ticket_key_file, at most */

unsigned char *tlskeys_encode(size_t *lenp);
int            tlskeys_decode(
	       const unsigned char *blob, size_t len, long long now, char **cause);
int  tlskeys_export(void);
void tlskeys_import(const char *fdenv);
void tlskeys_import_end(void);
struct tls_key *
tlskeys_file_read(const char *path, size_t *nkeys, char **cause);

#endif
