/* test_memdisk.c — the in-memory crash disk itself: what survives a power
 * cut, torn write-back, and fault injection. The crash tests of the store are
 * only as good as these semantics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/memdisk.h"

static memdisk *disk(void)
{
	memdisk *md = memdisk_new();

	assert_int_equal(memdisk_io(md)->mkdir(memdisk_io(md), "d", 0755), 0);
	assert_int_equal(memdisk_io(md)->mkdir(memdisk_io(md), "d", 0755), -EEXIST);
	return md;
}

static kvio_file *create(memdisk *md, const char *path)
{
	kvio_file *f;

	assert_int_equal(memdisk_io(md)->open(memdisk_io(md), path,
					      KVIO_RDWR | KVIO_CREAT | KVIO_EXCL, &f), 0);
	return f;
}

static size_t size_of(memdisk *md, const char *path)
{
	void *b;
	size_t n;

	if (memdisk_read(md, path, &b, &n))
		return (size_t)-1;
	free(b);
	return n;
}

static void a_new_file_needs_a_directory_sync_to_survive(void **state)
{
	memdisk *md = disk();
	kvio_file *f = create(md, "d/a");

	(void)state;
	assert_int_equal(kvio_write_all(f, "hello", 5, 0), 0);
	assert_int_equal(kvio_datasync(f), 0);
	kvio_close(f);
	memdisk_crash(md);
	assert_false(memdisk_exists(md, "d/a"));

	f = create(md, "d/a");
	assert_int_equal(kvio_write_all(f, "hello", 5, 0), 0);
	assert_int_equal(kvio_datasync(f), 0);
	assert_int_equal(memdisk_io(md)->sync_dir(memdisk_io(md), "d"), 0);
	kvio_close(f);
	memdisk_crash(md);
	assert_int_equal(size_of(md, "d/a"), 5);
	memdisk_free(md);
}

static void unsynced_writes_are_dropped_synced_ones_kept(void **state)
{
	memdisk *md = disk();
	kvio_file *f = create(md, "d/a");
	char buf[16];

	(void)state;
	assert_int_equal(memdisk_io(md)->sync_dir(memdisk_io(md), "d"), 0);
	assert_int_equal(kvio_write_all(f, "durable", 7, 0), 0);
	assert_int_equal(kvio_datasync(f), 0);
	assert_int_equal(kvio_write_all(f, "-lost", 5, 7), 0);
	assert_int_equal(kvio_read_all(f, buf, 12, 0), 0);
	assert_memory_equal(buf, "durable-lost", 12);
	memdisk_crash(md);
	/* The old handle is dead after the crash. */
	assert_int_equal(kvio_read_all(f, buf, 1, 0), -EIO);
	kvio_close(f);
	assert_int_equal(size_of(md, "d/a"), 7);
	memdisk_free(md);
}

static void rename_and_unlink_are_undone_without_a_directory_sync(void **state)
{
	memdisk *md = disk();
	const struct kvio *io = memdisk_io(md);
	kvio_file *f = create(md, "d/tmp");

	(void)state;
	assert_int_equal(kvio_write_all(f, "x", 1, 0), 0);
	assert_int_equal(kvio_datasync(f), 0);
	kvio_close(f);
	assert_int_equal(io->sync_dir(io, "d"), 0);
	assert_int_equal(io->rename(io, "d/tmp", "d/final"), 0);
	assert_true(memdisk_exists(md, "d/final"));
	memdisk_crash(md);
	assert_true(memdisk_exists(md, "d/tmp"));
	assert_false(memdisk_exists(md, "d/final"));
	assert_int_equal(io->unlink(io, "d/tmp"), 0);
	memdisk_crash(md);
	assert_true(memdisk_exists(md, "d/tmp"));
	assert_int_equal(io->unlink(io, "d/tmp"), 0);
	assert_int_equal(io->sync_dir(io, "d"), 0);
	memdisk_crash(md);
	assert_false(memdisk_exists(md, "d/tmp"));
	memdisk_free(md);
}

static void torn_crash_keeps_an_in_order_prefix_of_unsynced_writes(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed < 200; seed++) {
		memdisk *md = disk();
		kvio_file *f = create(md, "d/log");
		unsigned char *b;
		size_t n;

		assert_int_equal(memdisk_io(md)->sync_dir(memdisk_io(md), "d"), 0);
		assert_int_equal(kvio_write_all(f, "AAAA", 4, 0), 0);
		assert_int_equal(kvio_datasync(f), 0);
		assert_int_equal(kvio_write_all(f, "BBBB", 4, 4), 0);
		assert_int_equal(kvio_write_all(f, "CCCC", 4, 8), 0);
		kvio_close(f);
		memdisk_crash_torn(md, seed);
		assert_int_equal(memdisk_read(md, "d/log", (void **)&b, &n), 0);
		assert_true(n >= 4 && n <= 12);
		assert_memory_equal(b, "AAAABBBBCCCC", n);
		free(b);
		memdisk_free(md);
	}
}

static void the_nth_write_and_sync_fail_as_asked(void **state)
{
	memdisk *md = disk();
	kvio_file *f = create(md, "d/a");

	(void)state;
	memdisk_fail_write(md, 2, ENOSPC);
	assert_int_equal(kvio_write_all(f, "1", 1, 0), 0);
	assert_int_equal(kvio_write_all(f, "2", 1, 1), -ENOSPC);
	assert_int_equal(kvio_write_all(f, "3", 1, 1), 0);
	memdisk_fail_sync(md, 1, EIO);
	assert_int_equal(kvio_datasync(f), -EIO);
	assert_int_equal(kvio_datasync(f), 0);
	/* A cut: the sync does not happen and everything fails until the crash. */
	assert_int_equal(kvio_write_all(f, "4", 1, 2), 0);
	memdisk_cut_at_sync(md, 1);
	assert_int_equal(kvio_datasync(f), -EIO);
	assert_int_equal(kvio_write_all(f, "5", 1, 3), -EIO);
	assert_int_equal(memdisk_io(md)->sync_dir(memdisk_io(md), "d"), -EIO);
	kvio_close(f);
	memdisk_crash(md);
	assert_false(memdisk_exists(md, "d/a")); /* never dir-synced */
	memdisk_free(md);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_new_file_needs_a_directory_sync_to_survive),
		cmocka_unit_test(unsynced_writes_are_dropped_synced_ones_kept),
		cmocka_unit_test(rename_and_unlink_are_undone_without_a_directory_sync),
		cmocka_unit_test(torn_crash_keeps_an_in_order_prefix_of_unsynced_writes),
		cmocka_unit_test(the_nth_write_and_sync_fail_as_asked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
