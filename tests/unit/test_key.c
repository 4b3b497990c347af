/* test_key.c — key_check, table-driven from tests/data/store/keys.tsv. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/key.h"
#include "store/store.h"

/* Expands the escapes of keys.tsv into out; returns the length. */
static size_t expand(const char *in, char *out)
{
	size_t n = 0;

	while (*in) {
		if (in[0] == '\\' && in[1] == '0') {
			out[n++] = '\0';
			in += 2;
		} else if (in[0] == '{') {
			char *star;
			long rep = strtol(in + 1, &star, 10);

			assert_true(*star == '*' && star[2] == '}');
			memset(out + n, star[1], (size_t)rep);
			n += (size_t)rep;
			in = star + 3;
		} else {
			out[n++] = *in++;
		}
	}
	return n;
}

static void keys_in_the_table_get_the_expected_verdict(void **state)
{
	char path[4096], line[8192], key[8192];
	const char *root = getenv("KVFS_SOURCE_ROOT");
	FILE *f;
	int cases = 0;

	(void)state;
	snprintf(path, sizeof path, "%s/tests/data/store/keys.tsv", root ? root : ".");
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof line, f)) {
		char *tab, *nl;
		int want, got;
		size_t len;

		if (line[0] == '#' || line[0] == '\n')
			continue;
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		tab = strchr(line, '\t');
		assert_non_null(tab);
		*tab = '\0';
		want = !strcmp(line, "0") ? 0 : !strcmp(line, "EINVAL") ? -EINVAL : -ENAMETOOLONG;
		len = expand(tab + 1, key);
		got = key_check(key, len);
		if (got != want)
			fprintf(stderr, "key \"%s\" (len %zu): got %d, want %d\n", tab + 1, len, got,
				want);
		assert_int_equal(got, want);
		cases++;
	}
	fclose(f);
	assert_true(cases > 30);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(keys_in_the_table_get_the_expected_verdict),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
