/* test_crc32c.c — CRC-32C against published check values, hardware against
 * software, and piecewise extension. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "store/crc32c.h"

static void check_values_match_the_standard(void **state)
{
	unsigned char zeros[32] = { 0 }, ones[32], inc[32];

	(void)state;
	memset(ones, 0xff, sizeof ones);
	for (int i = 0; i < 32; i++)
		inc[i] = (unsigned char)i;
	assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c_sw(0, "123456789", 9), 0xE3069283u);
	/* RFC 3720 (iSCSI) B.4 test vectors. */
	assert_int_equal(crc32c(0, zeros, 32), 0x8A9136AAu);
	assert_int_equal(crc32c(0, ones, 32), 0x62A8AB43u);
	assert_int_equal(crc32c(0, inc, 32), 0x46DD794Eu);
	assert_int_equal(crc32c(0, "", 0), 0);
}

static void hardware_and_software_agree_on_every_length_and_alignment(void **state)
{
	unsigned char buf[1100];
	uint64_t seed = 12345, x = seed;

	(void)state;
	for (size_t i = 0; i < sizeof buf; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		buf[i] = (unsigned char)(x >> 56);
	}
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len + off <= sizeof buf; len += 1 + len / 7) {
			uint32_t a = crc32c(7, buf + off, len), b = crc32c_sw(7, buf + off, len);

			if (a != b)
				fprintf(stderr, "seed %llu off %zu len %zu\n",
					(unsigned long long)seed, off, len);
			assert_int_equal(a, b);
		}
}

static void crc_extends_piecewise(void **state)
{
	const char *s = "The quick brown fox jumps over the lazy dog";
	size_t n = strlen(s);
	uint32_t whole = crc32c(0, s, n);

	(void)state;
	for (size_t k = 0; k <= n; k++)
		assert_int_equal(crc32c(crc32c(0, s, k), s + k, n - k), whole);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(check_values_match_the_standard),
		cmocka_unit_test(hardware_and_software_agree_on_every_length_and_alignment),
		cmocka_unit_test(crc_extends_piecewise),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
