/* test_snap.c — snapshot files: round trip, corruption anywhere refused,
 * leftovers of interrupted snapshots removed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/map.h"
#include "store/rec.h"
#include "store/snap.h"
#include "tests/lib/memdisk.h"

#define DIR "db"
#define N 300

static kv_rec *recs[N];

static memdisk *disk(void)
{
	memdisk *md = memdisk_new();

	assert_int_equal(memdisk_io(md)->mkdir(memdisk_io(md), DIR, 0755), 0);
	return md;
}

static void make_recs(void)
{
	for (int i = 0; i < N; i++) {
		struct kv_meta m = { .mode = 0100644 + (uint32_t)i, .uid = (uint32_t)i, .gid = 7,
				     .mtime_ns = -i, .ctime_ns = (int64_t)i << 40 };
		char key[32], val[64];
		int kl = snprintf(key, sizeof key, "k%05d", i);
		int vl = snprintf(val, sizeof val, "value-%d", i * i);

		recs[i] = rec_new(key, (size_t)kl, i % 7 == 0 ? KV_F_TOMBSTONE : 0, 1000 + (uint64_t)i,
				  &m, i % 3 ? "ext" : NULL, i % 3 ? 3 : 0, val, (size_t)(i % 5 ? vl : 0));
	}
}

static void free_recs(void)
{
	for (int i = 0; i < N; i++)
		kv_rec_unref(recs[i]);
}

static void written_snapshot_loads_the_same_records_and_state(void **state)
{
	memdisk *md = disk();
	struct snap_image img = { .lsn = 42, .recs = recs, .n = N, .state = "raft:7:3", .state_len = 8 };
	map *m = map_new(1);
	void *st;
	size_t slen;
	uint64_t *lsns;
	size_t n;
	map_iter it;
	kv_rec *r;
	int i = 0;

	(void)state;
	make_recs();
	assert_int_equal(snap_write(memdisk_io(md), DIR, &img), 0);
	memdisk_crash(md); /* written, synced, renamed, directory synced */
	assert_int_equal(snap_list(memdisk_io(md), DIR, &lsns, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(lsns[0], 42);
	free(lsns);
	assert_int_equal(snap_load(memdisk_io(md), DIR, 42, m, &st, &slen, NULL), 0);
	assert_int_equal(slen, 8);
	assert_memory_equal(st, "raft:7:3", 8);
	free(st);
	assert_int_equal(map_count(m), N);
	for (r = map_seek(m, NULL, 0, 0, &it); r; r = map_iter_next(&it), i++) {
		const kv_rec *w = recs[i];
		size_t a, b;
		const void *ea = kv_rec_ext(r, &a), *eb = kv_rec_ext(w, &b);

		assert_int_equal(r->klen, w->klen);
		assert_memory_equal(rec_key(r), rec_key(w), r->klen);
		assert_int_equal(kv_rec_size(r), kv_rec_size(w));
		assert_memory_equal(kv_rec_value(r), kv_rec_value(w), kv_rec_size(r));
		assert_int_equal(kv_rec_version(r), kv_rec_version(w));
		assert_int_equal(kv_rec_flags(r), kv_rec_flags(w));
		assert_int_equal(a, b);
		if (a)
			assert_memory_equal(ea, eb, a);
		assert_int_equal(kv_rec_meta(r)->mode, kv_rec_meta(w)->mode);
		assert_int_equal(kv_rec_meta(r)->uid, kv_rec_meta(w)->uid);
		assert_int_equal(kv_rec_meta(r)->mtime_ns, kv_rec_meta(w)->mtime_ns);
		assert_int_equal(kv_rec_meta(r)->ctime_ns, kv_rec_meta(w)->ctime_ns);
	}
	map_free(m);
	free_recs();
	memdisk_free(md);
}

static void a_flipped_bit_anywhere_is_detected(void **state)
{
	memdisk *md = disk();
	struct snap_image img = { .lsn = 9, .recs = recs, .n = N, .state = "s", .state_len = 1 };
	unsigned char *buf;
	size_t len;
	char path[64];

	(void)state;
	make_recs();
	assert_int_equal(snap_write(memdisk_io(md), DIR, &img), 0);
	snap_file_name(9, 0, path + 3, sizeof path - 3);
	memcpy(path, DIR "/", 3);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	for (size_t off = 0; off < len; off += 1 + off / 3) {
		map *m = map_new(1);
		void *st;
		size_t slen;

		buf[off] ^= 0x10;
		assert_int_equal(memdisk_write(md, path, buf, len), 0);
		if (snap_load(memdisk_io(md), DIR, 9, m, &st, &slen, NULL) != -EUCLEAN) {
			fprintf(stderr, "flip at offset %zu of %zu not detected\n", off, len);
			fail();
		}
		buf[off] ^= 0x10;
		map_free(m);
	}
	/* truncated */
	{
		map *m = map_new(1);
		void *st;
		size_t slen;

		assert_int_equal(memdisk_write(md, path, buf, len - 1), 0);
		assert_int_equal(snap_load(memdisk_io(md), DIR, 9, m, &st, &slen, NULL), -EUCLEAN);
		map_free(m);
	}
	free(buf);
	free_recs();
	memdisk_free(md);
}

static void an_interrupted_snapshot_leaves_nothing_behind(void **state)
{
	memdisk *md = disk();
	struct snap_image img = { .lsn = 5, .recs = recs, .n = N };
	uint64_t *lsns;
	size_t n;
	char *names;

	(void)state;
	make_recs();
	/* The directory sync after the rename never happens. */
	memdisk_cut_at_sync(md, 2);
	assert_int_equal(snap_write(memdisk_io(md), DIR, &img), -EIO);
	memdisk_crash(md);
	assert_int_equal(snap_list(memdisk_io(md), DIR, &lsns, &n), 0);
	assert_int_equal(n, 0);
	free(lsns);
	/* A temp file that did reach the disk is removed when listing. */
	assert_int_equal(memdisk_write(md, DIR "/snap-00000000000000000005.tmp", "x", 1), 0);
	assert_int_equal(snap_list(memdisk_io(md), DIR, &lsns, &n), 0);
	assert_int_equal(n, 0);
	free(lsns);
	names = memdisk_listing(md, DIR);
	assert_string_equal(names, "");
	free(names);
	free_recs();
	memdisk_free(md);
}

static void snapshots_are_listed_newest_first(void **state)
{
	memdisk *md = disk();
	struct snap_image img = { .recs = recs, .n = 0 };
	uint64_t *lsns;
	size_t n;

	(void)state;
	for (uint64_t l = 1; l <= 3; l++) {
		img.lsn = l * 10;
		assert_int_equal(snap_write(memdisk_io(md), DIR, &img), 0);
	}
	assert_int_equal(snap_list(memdisk_io(md), DIR, &lsns, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(lsns[0], 30);
	assert_int_equal(lsns[2], 10);
	free(lsns);
	assert_int_equal(snap_remove(memdisk_io(md), DIR, 20), 0);
	assert_int_equal(snap_list(memdisk_io(md), DIR, &lsns, &n), 0);
	assert_int_equal(n, 2);
	free(lsns);
	memdisk_free(md);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(written_snapshot_loads_the_same_records_and_state),
		cmocka_unit_test(a_flipped_bit_anywhere_is_detected),
		cmocka_unit_test(an_interrupted_snapshot_leaves_nothing_behind),
		cmocka_unit_test(snapshots_are_listed_newest_first),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
