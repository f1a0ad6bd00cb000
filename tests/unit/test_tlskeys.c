/*
 * The ticket key blob a binary upgrade passes: a whole one is taken, and
 * every truncation and every flipped byte of it is refused or taken whole,
 * never read out of bounds (run under ASan).
 */
#include <stdlib.h>
#include <string.h>

#include "tls.h"
#include "tlskeys.h"
#include "unit.h"
#include "util.h"

#define NOW 1000000LL

static size_t
key(unsigned char *p, int valid, long long born, unsigned char fill)
{
	int i;

	p[0] = (unsigned char)valid;
	for (i = 0; i < 8; i++)
		p[1 + i] =
		    (unsigned char)((unsigned long long)born >> (56 - 8 * i));
	memset(p + 9, fill, 80);
	return (89);
}

/* Two services, "web" and "api", each with a current and a previous key. */
static size_t
sample(unsigned char *p)
{
	size_t n = 12;

	memcpy(p, "SNTK\1\0\0\0\0\0\0\2", 12);
	p[n++] = 3;
	memcpy(p + n, "web", 3);
	n += 3;
	n += key(p + n, 1, NOW - 10, 0xaa);
	n += key(p + n, 1, NOW - 20, 0xbb);
	p[n++] = 3;
	memcpy(p + n, "api", 3);
	n += 3;
	n += key(p + n, 1, NOW - 5, 0xcc);
	n += key(p + n, 0, 0, 0);
	return (n);
}

START_TEST(a_whole_blob_is_taken)
{
	unsigned char b[512];
	size_t        n = sample(b);
	char         *cause = NULL;

	ck_assert_int_eq(tlskeys_decode(b, n, NOW, &cause), 2);
	ck_assert_ptr_null(cause);
	ck_assert_int_eq(tls_keys_inherit_end(), 2);
	ck_assert_int_eq(tls_keys_inherit_end(), 0);
}
END_TEST

START_TEST(every_truncation_is_refused_and_nothing_taken)
{
	unsigned char b[512], *copy;
	size_t        n = sample(b), len;
	char         *cause;

	for (len = 0; len < n; len++) {
		/* An exact-size copy: ASan sees a read past its end. */
		copy = xcalloc(1, len + 1);
		memcpy(copy, b, len);
		cause = NULL;
		ck_assert_int_eq(tlskeys_decode(copy, len, NOW, &cause), -1);
		ck_assert_ptr_nonnull(cause);
		free(cause);
		free(copy);
		ck_assert_int_eq(tls_keys_inherit_end(), 0);
	}
}
END_TEST

START_TEST(every_flipped_byte_is_refused_or_taken_whole)
{
	unsigned char b[512], *copy;
	size_t        n = sample(b), i;
	char         *cause;
	int           r, bit;

	for (i = 0; i < n; i++) {
		for (bit = 0; bit < 8; bit++) {
			copy = xcalloc(1, n);
			memcpy(copy, b, n);
			copy[i] ^= (unsigned char)(1 << bit);
			cause = NULL;
			r = tlskeys_decode(copy, n, NOW, &cause);
			ck_assert(r == -1 || r == 2);
			ck_assert_int_eq(
			    tls_keys_inherit_end(), r == -1 ? 0 : 2);
			free(cause);
			free(copy);
		}
	}
}
END_TEST

START_TEST(a_key_born_in_the_future_is_refused)
{
	unsigned char b[512];
	size_t        n = sample(b);
	char         *cause = NULL;

	ck_assert_int_eq(tlskeys_decode(b, n, NOW - 11, &cause), -1);
	ck_assert_str_eq(cause, "service web: an impossible key");
	free(cause);
	ck_assert_int_eq(tls_keys_inherit_end(), 0);
}
END_TEST

Suite *
tlskeys_suite(void)
{
	Suite *s = suite_create("tlskeys");
	TCase *tc = tcase_create("decode");

	tcase_add_test(tc, a_whole_blob_is_taken);
	tcase_add_test(tc, every_truncation_is_refused_and_nothing_taken);
	tcase_add_test(tc, every_flipped_byte_is_refused_or_taken_whole);
	tcase_add_test(tc, a_key_born_in_the_future_is_refused);
	suite_add_tcase(s, tc);
	return (s);
}
