/*
 * test_fs_ofile.c — the open-file table of fs/: shared ofiles per key,
 * buffered contents (partial writes, sparse holes, truncation, limits),
 * rekeying on rename and unhashing on unlink.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fs/ofile.h"
#include "store/store.h"

static int setup(void **state)
{
	(void)state;
	return ofile_init();
}

static int teardown(void **state)
{
	(void)state;
	ofile_fini();
	return 0;
}

static void one_ofile_per_key_shared_by_opens(void **state)
{
	int created;
	struct ofile *a, *b, *c;

	(void)state;
	a = ofile_open("k", 1, &created);
	assert_non_null(a);
	assert_true(created);
	b = ofile_open("k", 1, &created);
	assert_ptr_equal(a, b);
	assert_false(created);
	c = ofile_find("k", 1);
	assert_ptr_equal(a, c);
	assert_null(ofile_find("other", 5));
	ofile_put(c);
	ofile_put(b);
	ofile_put(a); /* the last pin frees it */
	assert_null(ofile_find("k", 1));
}

static void writes_past_the_end_leave_a_zero_hole(void **state)
{
	int created;
	struct ofile *of = ofile_open("f", 1, &created);

	(void)state;
	assert_int_equal(ofile_pwrite(of, "ab", 2, 0), 0);
	assert_int_equal(ofile_pwrite(of, "z", 1, 10), 0);
	assert_int_equal(of->size, 11);
	assert_memory_equal(ofile_data(of), "ab\0\0\0\0\0\0\0\0z", 11);
	assert_int_equal(ofile_pwrite(of, "XY", 2, 1), 0); /* overwrite inside */
	assert_memory_equal(ofile_data(of), "aXY", 3);
	ofile_put(of);
}

static void resize_shrinks_and_grows_with_zeros(void **state)
{
	int created;
	struct ofile *of = ofile_open("f", 1, &created);

	(void)state;
	assert_int_equal(ofile_pwrite(of, "0123456789", 10, 0), 0);
	assert_int_equal(ofile_resize(of, 4), 0);
	assert_int_equal(of->size, 4);
	assert_int_equal(ofile_resize(of, 8), 0);
	assert_memory_equal(ofile_data(of), "0123\0\0\0\0", 8);
	ofile_put(of);
}

static void big_buffers_grow_across_the_mapping_threshold(void **state)
{
	int created;
	struct ofile *of = ofile_open("big", 3, &created);
	char *chunk = malloc(1 << 20);

	(void)state;
	for (int i = 0; i < 6; i++) { /* 6 MiB: malloc, then mmap, then mremap */
		memset(chunk, 'a' + i, 1 << 20);
		assert_int_equal(ofile_pwrite(of, chunk, 1 << 20, (size_t)i << 20), 0);
	}
	assert_int_equal(of->size, 6u << 20);
	for (int i = 0; i < 6; i++)
		assert_int_equal(ofile_data(of)[((size_t)i << 20) + 12345], 'a' + i);
	free(chunk);
	ofile_put(of);
}

static void sizes_beyond_the_value_limit_are_efbig(void **state)
{
	int created;
	struct ofile *of = ofile_open("f", 1, &created);

	(void)state;
	assert_int_equal(ofile_pwrite(of, "x", 1, KV_VALUE_MAX), -EFBIG);
	assert_int_equal(ofile_resize(of, (size_t)KV_VALUE_MAX + 1), -EFBIG);
	assert_int_equal(of->size, 0);
	ofile_put(of);
}

static void rekey_moves_and_replaces_the_target(void **state)
{
	int created;
	struct ofile *a = ofile_open("a", 1, &created);
	struct ofile *t = ofile_open("t", 1, &created);
	struct ofile *f;

	(void)state;
	assert_int_equal(ofile_rekey(a, "t", 1), 0);
	assert_string_equal(a->key, "t");
	f = ofile_find("t", 1);
	assert_ptr_equal(f, a); /* the old "t" is no longer reachable */
	ofile_put(f);
	assert_null(ofile_find("a", 1));
	ofile_put(t); /* freed although unhashed */
	ofile_put(a);
}

static void unhashed_ofiles_live_on_for_their_handles(void **state)
{
	int created;
	struct ofile *a = ofile_open("u", 1, &created), *b;

	(void)state;
	ofile_unhash(a);
	b = ofile_open("u", 1, &created);
	assert_true(created); /* a new file of the same name */
	assert_ptr_not_equal(a, b);
	assert_int_equal(ofile_pwrite(a, "still", 5, 0), 0);
	ofile_put(a);
	ofile_put(b);
}

struct count {
	int n;
};

static void count_fn(void *arg, struct ofile *of)
{
	(void)of;
	((struct count *)arg)->n++;
}

static void each_visits_keys_under_a_prefix(void **state)
{
	int created;
	struct ofile *v[4];
	struct count c = { 0 };

	(void)state;
	v[0] = ofile_open("d/x", 3, &created);
	v[1] = ofile_open("d/y/z", 5, &created);
	v[2] = ofile_open("dz", 2, &created);
	v[3] = ofile_open("e", 1, &created);
	ofile_each("d/", 2, count_fn, &c);
	assert_int_equal(c.n, 2);
	for (int i = 0; i < 4; i++)
		ofile_put(v[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(one_ofile_per_key_shared_by_opens, setup, teardown),
		cmocka_unit_test_setup_teardown(writes_past_the_end_leave_a_zero_hole, setup, teardown),
		cmocka_unit_test_setup_teardown(resize_shrinks_and_grows_with_zeros, setup, teardown),
		cmocka_unit_test_setup_teardown(big_buffers_grow_across_the_mapping_threshold, setup,
						teardown),
		cmocka_unit_test_setup_teardown(sizes_beyond_the_value_limit_are_efbig, setup, teardown),
		cmocka_unit_test_setup_teardown(rekey_moves_and_replaces_the_target, setup, teardown),
		cmocka_unit_test_setup_teardown(unhashed_ofiles_live_on_for_their_handles, setup,
						teardown),
		cmocka_unit_test_setup_teardown(each_visits_keys_under_a_prefix, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
