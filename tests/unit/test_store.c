/* test_store.c — the store facade on the in-memory disk: reads and writes,
 * recovery, snapshots, the application state, injected I/O errors and group
 * commit. Crash-at-every-sync tests are in test_store_crash.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/batch.h"
#include "store/store.h"
#include "tests/lib/memdisk.h"
#include "tests/lib/storemodel.h"

#define DIR "db"

static struct kv_meta meta_of(uint32_t mode, int64_t t)
{
	struct kv_meta m = { .mode = mode, .uid = 1000, .gid = 1000, .mtime_ns = t, .ctime_ns = t };

	return m;
}

static store *open_store(memdisk *md, struct store_options *o)
{
	struct store_options def = { 0 };
	store *st = NULL;

	if (!o)
		o = &def;
	o->io = memdisk_io(md);
	assert_int_equal(store_open(DIR, o, &st), 0);
	return st;
}

static int put(store *st, struct model *m, const char *key, const char *val)
{
	struct kv_op op = { .kind = KV_PUT, .key = key, .klen = (uint32_t)strlen(key), .val = val,
			    .vlen = (uint32_t)strlen(val), .meta = meta_of(0100644, 1) };
	struct kv_batch b = { .ops = &op, .n = 1 };
	int rc = store_write(st, &b);

	if (!rc && m)
		model_apply(m, &b);
	return rc;
}

static int del(store *st, struct model *m, const char *key)
{
	struct kv_op op = { .kind = KV_DEL, .key = key, .klen = (uint32_t)strlen(key) };
	struct kv_batch b = { .ops = &op, .n = 1 };
	int rc = store_write(st, &b);

	if (!rc && m)
		model_apply(m, &b);
	return rc;
}

static void assert_model(const struct model *m, store *st)
{
	char why[256];

	if (model_compare(m, st, why, sizeof why)) {
		fprintf(stderr, "store differs from model: %s\n", why);
		fail();
	}
}

static void written_keys_can_be_read_listed_and_deleted(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	char keybuf[KV_KEY_MAX + 1];
	size_t klen;
	kv_rec *r;
	struct store_stats ss;

	(void)state;
	assert_int_equal(put(st, NULL, "a/", ""), 0);
	assert_int_equal(put(st, NULL, "a/x", "1"), 0);
	assert_int_equal(put(st, NULL, "a/y", "22"), 0);
	assert_int_equal(put(st, NULL, "ab", "3"), 0);
	assert_int_equal(store_get(st, "a/y", 3, 0, &r), 0);
	assert_int_equal(kv_rec_size(r), 2);
	assert_memory_equal(kv_rec_value(r), "22", 2);
	assert_int_equal(kv_rec_meta(r)->mode, 0100644);
	kv_rec_unref(r);
	/* store_next walks a prefix in order */
	assert_int_equal(store_next(st, "a/", 2, NULL, 0, 0, keybuf, &klen, &r), 0);
	assert_string_equal(keybuf, "a/");
	kv_rec_unref(r);
	assert_int_equal(store_next(st, "a/", 2, "a/", 2, 0, keybuf, &klen, &r), 0);
	assert_string_equal(keybuf, "a/x");
	kv_rec_unref(r);
	assert_int_equal(store_next(st, "a/", 2, "a/x", 3, 0, keybuf, &klen, &r), 0);
	assert_string_equal(keybuf, "a/y");
	kv_rec_unref(r);
	assert_int_equal(store_next(st, "a/", 2, "a/y", 3, 0, keybuf, &klen, &r), -ENOENT);
	assert_int_equal(del(st, NULL, "a/x"), 0);
	assert_int_equal(del(st, NULL, "missing"), 0);
	assert_int_equal(store_get(st, "a/x", 3, 0, &r), -ENOENT);
	store_get_stats(st, &ss);
	assert_int_equal(ss.keys, 3);
	assert_int_equal(ss.last_lsn, 6);
	assert_int_equal(ss.durable_lsn, 6);
	assert_int_equal(ss.applied_lsn, 6);
	assert_int_equal(store_applied_lsn(st), 6);
	store_close(st);
	memdisk_free(md);
}

static void invalid_batches_are_refused_before_logging(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	struct kv_op op = { .kind = KV_PUT, .key = ".search/x", .klen = 9, .val = "v", .vlen = 1 };
	struct kv_batch b = { .ops = &op, .n = 1 };
	struct store_stats ss;

	(void)state;
	assert_int_equal(store_write(st, &b), -EINVAL);
	op.key = "/abs";
	op.klen = 4;
	assert_int_equal(store_submit(st, &b, 0, NULL, NULL), -EINVAL);
	op.key = "ok";
	op.klen = 2;
	op.vlen = KV_VALUE_MAX + 1;
	assert_int_equal(store_write(st, &b), -EFBIG);
	assert_int_equal(store_submit_raw(st, 3, "x", 1, NULL, NULL), -EINVAL);
	store_get_stats(st, &ss);
	assert_int_equal(ss.records, 0);
	assert_int_equal(store_failed(st), 0);
	store_close(st);
	memdisk_free(md);
}

static void meta_change_shares_the_value_and_tombstones_are_hidden(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	struct kv_op ops[2] = {
		{ .kind = KV_META, .key = "f", .klen = 1, .meta = meta_of(0100600, 9),
		  .ext = "vc", .ext_len = 2 },
		{ .kind = KV_PUT, .key = "t", .klen = 1, .flags = KV_F_TOMBSTONE },
	};
	struct kv_batch b = { .ops = ops, .n = 2 };
	kv_rec *before, *after;
	struct store_stats ss;
	size_t elen;
	char big[10000];

	(void)state;
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(put(st, NULL, "f", big), 0);
	assert_int_equal(store_get(st, "f", 1, 0, &before), 0);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_get(st, "f", 1, 0, &after), 0);
	assert_ptr_equal(kv_rec_value(before), kv_rec_value(after));
	assert_int_equal(kv_rec_meta(after)->mode, 0100600);
	assert_true(kv_rec_version(after) > kv_rec_version(before));
	assert_memory_equal(kv_rec_ext(after, &elen), "vc", 2);
	assert_int_equal(elen, 2);
	kv_rec_unref(before);
	kv_rec_unref(after);
	assert_int_equal(store_get(st, "t", 1, 0, &after), -ENOENT);
	assert_int_equal(store_get(st, "t", 1, 1, &after), 0);
	assert_true(kv_rec_flags(after) & KV_F_TOMBSTONE);
	kv_rec_unref(after);
	store_get_stats(st, &ss);
	assert_int_equal(ss.keys, 1);
	assert_int_equal(ss.tombstones, 1);
	/* KV_META of a missing key is a no-op */
	ops[0].key = "nokey";
	ops[0].klen = 5;
	b.n = 1;
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_get(st, "nokey", 5, 1, &after), -ENOENT);
	store_close(st);
	memdisk_free(md);
}

/* store_get_many reads its keys between two applied batches: a writer puts
 * a and b together, each time with a new value, and the reader never sees
 * them differ (it does, now and then, with one store_get per key). Missing
 * keys and tombstones come back NULL. */
struct pair_writer {
	store *st;
	int    stop, rc;
	unsigned rounds;
};

static void *pair_writer_main(void *arg)
{
	struct pair_writer *w = arg;
	char v[16];
	int rc = 0;

	while (!rc && !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		struct kv_op ops[2] = {
			{ .kind = KV_PUT, .key = "a", .klen = 1, .val = v, .meta = meta_of(0100644, 1) },
			{ .kind = KV_PUT, .key = "b", .klen = 1, .val = v, .meta = meta_of(0100644, 1) },
		};
		struct kv_batch b = { .ops = ops, .n = 2 };
		unsigned round = __atomic_fetch_add(&w->rounds, 1, __ATOMIC_RELAXED);

		ops[0].vlen = ops[1].vlen = (uint32_t)snprintf(v, sizeof v, "%u", round);
		rc = store_write(w->st, &b);
	}
	__atomic_store_n(&w->rc, rc, __ATOMIC_RELEASE);
	return NULL;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads a and b together until both the reads and the writer's rounds reach
 * their count (or the writer fails, or 60 s pass); returns the first pair
 * that differed, as text, or "" when none did. The writer is stopped and
 * joined before the caller asserts anything. */
static void read_pairs(store *st, struct pair_writer *w, char *torn, size_t size)
{
	const char *keys[3] = { "a", "b", "none" };
	size_t klens[3] = { 1, 1, 4 };
	kv_rec *r[3];
	uint64_t deadline = mono_ms() + 60000;

	torn[0] = 0;
	for (int i = 0; !torn[0] && mono_ms() < deadline &&
			(i < 20000 || __atomic_load_n(&w->rounds, __ATOMIC_RELAXED) < 200) &&
			!__atomic_load_n(&w->rc, __ATOMIC_ACQUIRE); i++) {
		store_get_many(st, 3, keys, klens, r);
		if (r[2]) {
			snprintf(torn, size, "the deleted key came back");
			kv_rec_unref(r[2]);
		}
		if (!r[0] != !r[1])
			snprintf(torn, size, "a is %s but b is %s", r[0] ? "there" : "missing",
				 r[1] ? "there" : "missing");
		else if (r[0] && (kv_rec_size(r[0]) != kv_rec_size(r[1]) ||
				  memcmp(kv_rec_value(r[0]), kv_rec_value(r[1]), kv_rec_size(r[0]))))
			snprintf(torn, size, "a = %.*s but b = %.*s", (int)kv_rec_size(r[0]),
				 (const char *)kv_rec_value(r[0]), (int)kv_rec_size(r[1]),
				 (const char *)kv_rec_value(r[1]));
		if (r[0])
			kv_rec_unref(r[0]);
		if (r[1])
			kv_rec_unref(r[1]);
	}
}

static void get_many_reads_a_batch_whole(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	struct pair_writer w = { .st = st };
	pthread_t t;
	char torn[128];

	(void)state;
	assert_int_equal(put(st, NULL, "none", "x"), 0);
	assert_int_equal(del(st, NULL, "none"), 0);
	assert_int_equal(pthread_create(&t, NULL, pair_writer_main, &w), 0);
	read_pairs(st, &w, torn, sizeof torn);
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	if (torn[0])
		fail_msg("%s", torn);
	assert_int_equal(w.rc, 0);
	assert_true(w.rounds >= 200);
	store_close(st);
	memdisk_free(md);
}

struct hook_log {
	char   text[4096];
	size_t len;
};

static void hook(void *arg, const char *key, size_t klen, const kv_rec *o, const kv_rec *n)
{
	struct hook_log *h = arg;

	if (!key) { /* the end of a batch */
		h->len += (size_t)snprintf(h->text + h->len, sizeof h->text - h->len, "|");
		return;
	}
	h->len += (size_t)snprintf(h->text + h->len, sizeof h->text - h->len, "%.*s:%s%s;",
				   (int)klen, key, o ? "o" : "-", n ? "n" : "-");
}

static void apply_hook_sees_every_change_in_order(void **state)
{
	memdisk *md = memdisk_new();
	struct hook_log h = { .len = 0 };
	struct store_options o = { .apply_hook = hook, .apply_hook_arg = &h };
	store *st = open_store(md, &o);
	struct kv_op op[2] = { { .kind = KV_PUT, .key = "r", .klen = 1, .val = "v", .vlen = 1 },
			       { .kind = KV_PUT, .key = "s", .klen = 1, .val = "w", .vlen = 1 } };
	struct kv_batch b = { .ops = op, .n = 2 };

	(void)state;
	assert_int_equal(put(st, NULL, "k", "1"), 0);
	assert_int_equal(put(st, NULL, "k", "2"), 0);
	assert_int_equal(del(st, NULL, "k"), 0);
	assert_int_equal(store_apply(st, &b, 77), 0);
	/* "|": the end of each batch. */
	assert_string_equal(h.text, "k:-n;|k:on;|k:o-;|r:-n;s:-n;|");
	{
		kv_rec *r;

		assert_int_equal(store_get(st, "r", 1, 0, &r), 0);
		assert_int_equal(kv_rec_version(r), 77);
		kv_rec_unref(r);
	}
	store_close(st);
	memdisk_free(md);
}

struct async_done {
	atomic_int slots;   /* callbacks started: each takes an lsns slot */
	atomic_int calls;   /* callbacks finished: their lsns are written */
	atomic_int status;
	uint64_t   lsns[64];
};

static void on_done(void *arg, int status, uint64_t lsn)
{
	struct async_done *d = arg;
	int i = atomic_fetch_add(&d->slots, 1);

	if (status)
		atomic_store(&d->status, status);
	d->lsns[i] = lsn;
	atomic_fetch_add(&d->calls, 1); /* a reader that sees it sees lsns[i] */
}

/* store_prepare() + store_submit_prepared() (the node encodes a blocking
 * writer's batch on the writer's thread) log and apply a batch exactly as
 * store_submit() does: it is there after a crash, read back through the
 * record's CRC. Validation errors come from store_prepare(); a prepared
 * record is the caller's until submitted, and store_prepared_free()
 * releases one never submitted. */
static void prepared_batches_are_logged_like_submitted_ones(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	struct kv_op op = { .kind = KV_PUT, .key = "/abs", .klen = 4, .val = "prepared",
			    .vlen = 8, .meta = meta_of(0100644, 1) };
	struct kv_batch b = { .ops = &op, .n = 1 };
	struct store_prepared pr, unused;
	struct async_done d = { .calls = 0 };
	kv_rec *r;

	(void)state;
	assert_int_equal(store_prepare(&b, &pr), -EINVAL);
	assert_null(pr.rec);
	op.key = "p";
	op.klen = 1;
	assert_int_equal(store_prepare(&b, &unused), 0);
	store_prepared_free(&unused);
	assert_null(unused.rec);
	assert_int_equal(store_prepare(&b, &pr), 0);
	assert_int_equal(store_submit_prepared(st, &pr, 0, on_done, &d), 0);
	assert_null(pr.rec); /* the store owns it now */
	assert_int_equal(store_submit_prepared(st, &pr, 0, on_done, &d), -EINVAL);
	store_close(st);
	assert_int_equal(atomic_load(&d.calls), 1);
	assert_int_equal(atomic_load(&d.status), 0);
	memdisk_crash(md);
	st = open_store(md, NULL);
	assert_int_equal(store_get(st, "p", 1, 0, &r), 0);
	assert_int_equal(kv_rec_size(r), 8);
	assert_memory_equal(kv_rec_value(r), "prepared", 8);
	kv_rec_unref(r);
	store_close(st);
	memdisk_free(md);
}

static void submitted_batches_complete_in_order_after_close_at_the_latest(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	struct async_done d = { .calls = 0 };
	char key[16];

	(void)state;
	for (int i = 0; i < 40; i++) {
		struct kv_op op = { .kind = KV_PUT, .key = key, .val = "v", .vlen = 1 };
		struct kv_batch b = { .ops = &op, .n = 1 };

		op.klen = (uint32_t)snprintf(key, sizeof key, "k%d", i);
		assert_int_equal(store_submit(st, &b, i % 2 ? STORE_NO_APPLY : 0, on_done, &d), 0);
	}
	store_close(st);
	assert_int_equal(atomic_load(&d.calls), 40);
	assert_int_equal(atomic_load(&d.status), 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(d.lsns[i], (uint64_t)i + 1);
	/* Reopened: the applied half is there, the STORE_NO_APPLY half is not. */
	st = open_store(md, NULL);
	{
		kv_rec *r;

		assert_int_equal(store_get(st, "k0", 2, 0, &r), 0);
		kv_rec_unref(r);
		assert_int_equal(store_get(st, "k1", 2, 0, &r), -ENOENT);
	}
	store_close(st);
	memdisk_free(md);
}

struct replayed {
	int      n;
	uint64_t lsns[16];
	char     text[256];
};

static int on_replay(void *arg, uint8_t type, uint64_t lsn, const void *p, size_t len)
{
	struct replayed *r = arg;

	r->lsns[r->n++] = lsn;
	strncat(r->text, p, len);
	assert_int_equal(type, STORE_REC_USER + 1);
	return 0;
}

static size_t app_state(void *arg, void *buf, size_t cap)
{
	const char *s = arg;
	size_t n = strlen(s) + 1;

	if (n <= cap)
		memcpy(buf, s, n);
	return n;
}

static void raw_records_are_replayed_and_state_comes_back_with_the_snapshot(void **state)
{
	memdisk *md = memdisk_new();
	char bigstate[6000];
	struct store_options o = { .snap_state = app_state, .snap_state_arg = bigstate,
				   .snapshot_log_bytes = SIZE_MAX };
	struct replayed rp;
	store *st = open_store(md, &o);
	struct model m;
	const void *sp;
	size_t slen;
	uint64_t slsn;

	(void)state;
	memset(bigstate, 's', sizeof bigstate - 1); /* larger than the first buffer */
	bigstate[sizeof bigstate - 1] = '\0';
	model_init(&m);
	store_snapshot_state(st, &sp, &slen, &slsn);
	assert_null(sp);
	assert_int_equal(slen, 0);
	assert_int_equal(slsn, 0);
	assert_int_equal(store_submit_raw(st, STORE_REC_USER + 1, "ab", 2, NULL, NULL), 0);
	assert_int_equal(put(st, &m, "x", "1"), 0);
	assert_int_equal(store_snapshot(st), 0);
	assert_int_equal(store_submit_raw(st, STORE_REC_USER + 1, "cd", 2, NULL, NULL), 0);
	assert_int_equal(put(st, &m, "y", "2"), 0);
	store_close(st);
	memdisk_crash(md);

	memset(&rp, 0, sizeof rp);
	o.replay = on_replay;
	o.replay_arg = &rp;
	st = open_store(md, &o);
	/* Opaque records come back even when older than the snapshot. */
	assert_int_equal(rp.n, 2);
	assert_string_equal(rp.text, "abcd");
	assert_int_equal(rp.lsns[0], 1);
	assert_int_equal(rp.lsns[1], 3);
	store_snapshot_state(st, &sp, &slen, &slsn);
	assert_int_equal(slen, sizeof bigstate);
	assert_string_equal(sp, bigstate);
	assert_int_equal(slsn, 2);
	assert_int_equal(store_applied_lsn(st), 4);
	assert_model(&m, st);
	store_close(st);
	memdisk_free(md);
}

/* Writes n batches of 1-3 ops with keys from a small set (seeded). */
static void workload(store *st, struct model *m, uint64_t *seed, int n)
{
	for (int i = 0; i < n; i++) {
		struct kv_op ops[3];
		char keys[3][16], vals[3][64];
		struct kv_batch b = { .ops = ops, .n = (uint32_t)(1 + *seed % 3) };

		for (uint32_t k = 0; k < b.n; k++) {
			*seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
			memset(&ops[k], 0, sizeof ops[k]);
			ops[k].klen = (uint32_t)snprintf(keys[k], sizeof keys[k], "d%u/k%u",
							 (unsigned)(*seed >> 60) % 3,
							 (unsigned)(*seed >> 40) % 40);
			ops[k].key = keys[k];
			switch ((*seed >> 20) % 6) {
			case 0:
				ops[k].kind = KV_DEL;
				break;
			case 1:
				ops[k].kind = KV_META;
				ops[k].meta = meta_of(0100600, (int64_t)i);
				break;
			default:
				ops[k].kind = KV_PUT;
				ops[k].vlen = (uint32_t)snprintf(vals[k], sizeof vals[k], "v%d-%u-%llx",
								 i, k, (unsigned long long)*seed);
				ops[k].val = vals[k];
				ops[k].meta = meta_of(0100644, (int64_t)i);
			}
		}
		assert_int_equal(store_write(st, &b), 0);
		model_apply(m, &b);
	}
}

static void snapshots_and_log_recover_the_state_before_a_crash(void **state)
{
	memdisk *md = memdisk_new();
	struct store_options o = { .segment_bytes = 2048, .snapshot_log_bytes = 4096 };
	store *st = open_store(md, &o);
	struct model m;
	struct store_stats ss;
	uint64_t seed = 11;
	char *names;

	(void)state;
	model_init(&m);
	workload(st, &m, &seed, 600);
	/* The automatic snapshot runs on a background thread: wait for it. */
	for (int i = 0; i < 1000; i++) {
		store_get_stats(st, &ss);
		if (ss.snapshots)
			break;
		usleep(10000);
	}
	assert_true(ss.snapshots >= 1);
	workload(st, &m, &seed, 30);
	assert_int_equal(store_snapshot(st), 0); /* new records: a new snapshot */
	workload(st, &m, &seed, 50);
	store_get_stats(st, &ss);
	assert_true(ss.snapshots >= 2);
	assert_model(&m, st);
	store_close(st);
	memdisk_crash(md);
	names = memdisk_listing(md, DIR);
	/* Old segments and snapshots were collected: the first segment is
	 * gone and at most two snapshots are kept. */
	{
		int snaps = 0;

		for (char *p = strstr(names, ".snap"); p; p = strstr(p + 1, ".snap"))
			snaps++;
		assert_true(snaps >= 1 && snaps <= 2);
		assert_null(strstr(names, "wal-00000000000000000001.log"));
	}
	free(names);
	st = open_store(md, &o);
	assert_model(&m, st);
	store_get_stats(st, &ss);
	assert_true(ss.snapshot_lsn > 0);
	workload(st, &m, &seed, 20);
	store_close(st);
	st = open_store(md, &o);
	assert_model(&m, st);
	store_close(st);
	memdisk_free(md);
}

static char *newest(memdisk *md, const char *suffix)
{
	char *names = memdisk_listing(md, DIR), *best = NULL, *line, *save = NULL, *path;

	for (line = strtok_r(names, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, suffix))
			best = line;
	assert_non_null(best);
	path = malloc(strlen(best) + 8);
	sprintf(path, DIR "/%s", best);
	free(names);
	return path;
}

static void a_corrupt_newest_snapshot_falls_back_to_the_previous_one(void **state)
{
	memdisk *md = memdisk_new();
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX };
	store *st = open_store(md, &o);
	struct model m;
	uint64_t seed = 5;
	unsigned char *buf;
	size_t len;
	char *snap;

	(void)state;
	model_init(&m);
	workload(st, &m, &seed, 30);
	assert_int_equal(store_snapshot(st), 0);
	workload(st, &m, &seed, 30);
	assert_int_equal(store_snapshot(st), 0);
	workload(st, &m, &seed, 30);
	store_close(st);
	snap = newest(md, ".snap");
	assert_int_equal(memdisk_read(md, snap, (void **)&buf, &len), 0);
	buf[len / 2] ^= 1;
	assert_int_equal(memdisk_write(md, snap, buf, len), 0);
	st = open_store(md, &o);
	assert_model(&m, st);
	store_close(st);
	free(buf);
	free(snap);
	memdisk_free(md);
}

static void a_corrupt_snapshot_without_log_to_fall_back_on_is_a_clear_error(void **state)
{
	memdisk *md = memdisk_new();
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX, .segment_bytes = 1024,
				   .io = memdisk_io(md) };
	store *st = open_store(md, &o);
	struct model m;
	uint64_t seed = 6;
	unsigned char *buf;
	size_t len;
	char *snap;

	(void)state;
	model_init(&m);
	/* Three snapshots: the log before the second one is collected. */
	for (int i = 0; i < 3; i++) {
		workload(st, &m, &seed, 40);
		assert_int_equal(store_snapshot(st), 0);
	}
	store_close(st);
	/* Corrupt both kept snapshots: nothing valid remains. */
	for (int i = 0; i < 2; i++) {
		char *names = memdisk_listing(md, DIR), *p = names, *line;
		int k = 0;

		while ((line = strsep(&p, "\n")) && *line)
			if (strstr(line, ".snap") && k++ == i) {
				char path[128];

				snprintf(path, sizeof path, DIR "/%s", line);
				assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
				buf[len - 10] ^= 1;
				assert_int_equal(memdisk_write(md, path, buf, len), 0);
				free(buf);
			}
		free(names);
	}
	assert_int_equal(store_open(DIR, &o, &st), -EUCLEAN);
	(void)snap;
	memdisk_free(md);
}

struct order_check {
	char   prev[KV_KEY_MAX + 1];
	size_t plen;
	int    n, bad;
};

static int check_order(void *arg, const char *key, size_t klen, const kv_rec *r)
{
	struct order_check *c = arg;

	(void)r;
	if (c->n) {
		int cmp = memcmp(c->prev, key, klen < c->plen ? klen : c->plen);

		/* strictly increasing: bytewise, a proper prefix first */
		if (cmp > 0 || (cmp == 0 && c->plen >= klen))
			c->bad = 1;
	}
	memcpy(c->prev, key, klen);
	c->plen = klen;
	c->n++;
	return 0;
}

/* Replay sorts keys by a 16-byte prefix first: keys that share much longer
 * prefixes, or are prefixes of each other, must still come back in order. */
static void log_replay_restores_order_of_keys_with_long_shared_prefixes(void **state)
{
	memdisk *md = memdisk_new();
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX };
	store *st = open_store(md, &o);
	struct order_check c = { .n = 0 };
	struct model m;
	uint64_t seed = 31, x = seed;
	char key[128];

	(void)state;
	model_init(&m);
	for (int i = 0; i < 900; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		switch ((x >> 33) % 4) {
		case 0:
			snprintf(key, sizeof key, "a/very/long/shared/prefix/%u", (unsigned)(x >> 40) % 300);
			break;
		case 1:
			snprintf(key, sizeof key, "a/very/long/shared/prefix/%u/", (unsigned)(x >> 40) % 300);
			break;
		case 2:
			snprintf(key, sizeof key, "a/very/long/shared/pre%u", (unsigned)(x >> 40) % 50);
			break;
		default:
			snprintf(key, sizeof key, "%c%u", 'a' + (int)((x >> 40) % 3), (unsigned)(x >> 50) % 20);
		}
		if ((x >> 20) % 7 == 0)
			assert_int_equal(del(st, &m, key), 0);
		else
			assert_int_equal(put(st, &m, key, key), 0);
	}
	store_close(st);
	memdisk_crash(md);
	st = open_store(md, &o);
	assert_model(&m, st);
	assert_int_equal(store_scan(st, "", 0, NULL, 0, 1, check_order, &c), 0);
	if (c.bad)
		fprintf(stderr, "seed %llu: keys out of order after replay\n", (unsigned long long)seed);
	assert_false(c.bad);
	assert_int_equal((size_t)c.n, m.n);
	store_close(st);
	memdisk_free(md);
}

/* Raft's pattern: entries are opaque records, the map changes only through
 * store_apply(), and the snapshot must still capture it. */
static void snapshot_captures_changes_made_with_store_apply(void **state)
{
	memdisk *md = memdisk_new();
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX };
	struct replayed rp;
	store *st = open_store(md, &o);
	struct kv_op op = { .kind = KV_PUT, .key = "raft/a", .klen = 6, .val = "1", .vlen = 1 };
	struct kv_batch b = { .ops = &op, .n = 1 };
	struct store_stats ss;
	kv_rec *r;

	struct async_done d = { .calls = 0 };

	(void)state;
	assert_int_equal(store_submit_raw(st, STORE_REC_USER + 1, "e1", 2, on_done, &d), 0);
	while (atomic_load(&d.calls) == 0)
		usleep(1000); /* Raft waits for its entry to be durable */
	assert_int_equal(store_apply(st, &b, 1), 0);
	assert_int_equal(store_snapshot(st), 0);
	assert_int_equal(store_snapshot(st), 0); /* nothing new: no second file */
	store_get_stats(st, &ss);
	assert_int_equal(ss.snapshots, 1);
	/* A change without a new record: same lsn, the snapshot is replaced. */
	op.key = "raft/b";
	assert_int_equal(store_apply(st, &b, 2), 0);
	assert_int_equal(store_snapshot(st), 0);
	store_get_stats(st, &ss);
	assert_int_equal(ss.snapshots, 2);
	store_close(st);
	memdisk_crash(md);
	memset(&rp, 0, sizeof rp);
	o.replay = on_replay;
	o.replay_arg = &rp;
	st = open_store(md, &o);
	assert_int_equal(rp.n, 1);
	assert_int_equal(store_get(st, "raft/a", 6, 0, &r), 0);
	assert_int_equal(kv_rec_version(r), 1);
	kv_rec_unref(r);
	assert_int_equal(store_get(st, "raft/b", 6, 0, &r), 0);
	assert_int_equal(kv_rec_version(r), 2);
	kv_rec_unref(r);
	store_close(st);
	memdisk_free(md);
}

/* Raft holds snapshots off while its map runs ahead of what its log makes
 * durable: none is taken until the last hold is released. */
static void held_snapshots_wait_for_the_last_release(void **state)
{
	memdisk *md = memdisk_new();
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX };
	store *st = open_store(md, &o);
	struct kv_op op = { .kind = KV_PUT, .key = "raft/a", .klen = 6, .val = "1", .vlen = 1 };
	struct kv_batch b = { .ops = &op, .n = 1 };
	struct store_stats ss;

	(void)state;
	store_hold_snapshots(st);
	store_hold_snapshots(st);
	assert_int_equal(store_apply(st, &b, 1), 0);
	assert_int_equal(store_snapshot(st), -EBUSY);
	store_release_snapshots(st);
	assert_int_equal(store_snapshot(st), -EBUSY);
	store_get_stats(st, &ss);
	assert_int_equal(ss.snapshots, 0);
	store_release_snapshots(st);
	assert_int_equal(store_snapshot(st), 0);
	store_get_stats(st, &ss);
	assert_int_equal(ss.snapshots, 1);
	store_close(st);
	memdisk_free(md);
}

/* A Raft snapshot install applies a leader's whole state, which may hold
 * more keys than one batch may: store_apply_large() takes it at once,
 * store_apply() refuses it, and a bad op anywhere is still refused. */
static void a_large_apply_takes_more_than_one_batch_of_operations(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	uint32_t n = KV_BATCH_MAX + 3;
	struct kv_op *ops = calloc(n, sizeof *ops);
	char *keys = malloc((size_t)n * 8);
	struct kv_batch b = { .ops = ops, .n = n };
	struct store_stats ss;
	kv_rec *r;

	(void)state;
	assert_non_null(ops);
	assert_non_null(keys);
	for (uint32_t i = 0; i < n; i++) {
		snprintf(keys + (size_t)i * 8, 8, "%07x", i);
		ops[i] = (struct kv_op){ .kind = KV_PUT, .key = keys + (size_t)i * 8, .klen = 7,
					 .val = "v", .vlen = 1, .meta = meta_of(0100644, 1) };
	}
	assert_int_equal(store_apply(st, &b, 5), -E2BIG);
	ops[n - 1].klen = 0; /* past the first KV_BATCH_MAX ops: still checked */
	assert_int_equal(store_apply_large(st, &b, 5), -EINVAL);
	ops[n - 1].klen = 7;
	assert_int_equal(store_apply_large(st, &b, 5), 0);
	store_get_stats(st, &ss);
	assert_int_equal(ss.keys, n);
	assert_int_equal(store_get(st, keys + (size_t)(n - 1) * 8, 7, 0, &r), 0);
	assert_int_equal(kv_rec_version(r), 5);
	kv_rec_unref(r);
	store_close(st);
	memdisk_free(md);
	free(ops);
	free(keys);
}

static void pinned_log_is_kept_across_snapshots(void **state)
{
	memdisk *md = memdisk_new();
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX, .segment_bytes = 1024 };
	struct replayed rp;
	store *st = open_store(md, &o);
	struct model m;
	uint64_t seed = 8;

	(void)state;
	model_init(&m);
	assert_int_equal(store_submit_raw(st, STORE_REC_USER + 1, "p", 1, NULL, NULL), 0);
	store_pin_log(st, 1);
	for (int i = 0; i < 4; i++) {
		workload(st, &m, &seed, 40);
		assert_int_equal(store_snapshot(st), 0);
	}
	store_close(st);
	memset(&rp, 0, sizeof rp);
	o.replay = on_replay;
	o.replay_arg = &rp;
	st = open_store(md, &o);
	assert_int_equal(rp.n, 1);
	assert_string_equal(rp.text, "p");
	assert_model(&m, st);
	store_close(st);
	memdisk_free(md);
}

static void fault_leaves_store_read_only_and_loses_nothing_acknowledged(int on_sync, int err)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	struct model m;
	struct async_done d = { .calls = 0 };
	kv_rec *r;

	model_init(&m);
	assert_int_equal(put(st, &m, "a", "1"), 0);
	assert_int_equal(put(st, &m, "b", "2"), 0);
	if (on_sync)
		memdisk_fail_sync(md, 1, err);
	else
		memdisk_fail_write(md, 1, err);
	assert_int_equal(put(st, NULL, "c", "3"), -err);
	assert_int_equal(store_failed(st), -err);
	/* Sticky: the disk works again, the store does not pretend it does. */
	assert_int_equal(put(st, NULL, "d", "4"), -err);
	{
		struct kv_op op = { .kind = KV_PUT, .key = "e", .klen = 1, .val = "5", .vlen = 1 };
		struct kv_batch b = { .ops = &op, .n = 1 };

		assert_int_equal(store_submit(st, &b, 0, on_done, &d), -err);
	}
	assert_int_equal(atomic_load(&d.calls), 0);
	/* Reads of applied data still work. */
	assert_int_equal(store_get(st, "a", 1, 0, &r), 0);
	kv_rec_unref(r);
	assert_int_equal(store_get(st, "c", 1, 0, &r), -ENOENT);
	assert_int_equal(store_snapshot(st), -err);
	store_close(st);
	memdisk_crash(md);
	st = open_store(md, NULL);
	assert_model(&m, st);
	assert_int_equal(put(st, &m, "f", "6"), 0);
	store_close(st);
	memdisk_free(md);
}

static void failed_sync_with_eio_fails_the_write_and_sticks(void **state)
{
	(void)state;
	fault_leaves_store_read_only_and_loses_nothing_acknowledged(1, EIO);
}

static void failed_sync_with_enospc_fails_the_write_and_sticks(void **state)
{
	(void)state;
	fault_leaves_store_read_only_and_loses_nothing_acknowledged(1, ENOSPC);
}

static void failed_write_with_enospc_fails_the_write_and_sticks(void **state)
{
	(void)state;
	fault_leaves_store_read_only_and_loses_nothing_acknowledged(0, ENOSPC);
}

static void failed_write_with_eio_fails_the_write_and_sticks(void **state)
{
	(void)state;
	fault_leaves_store_read_only_and_loses_nothing_acknowledged(0, EIO);
}

static void a_failed_sync_fails_every_pending_batch(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	struct async_done d = { .calls = 0 };

	(void)state;
	memdisk_set_sync_delay(md, 20000);
	memdisk_fail_sync(md, 1, EIO);
	for (int i = 0; i < 20; i++) {
		struct kv_op op = { .kind = KV_PUT, .key = "k", .klen = 1, .val = "v", .vlen = 1 };
		struct kv_batch b = { .ops = &op, .n = 1 };
		int rc = store_submit(st, &b, 0, on_done, &d);

		assert_true(rc == 0 || rc == -EIO);
	}
	store_close(st);
	assert_true(atomic_load(&d.calls) >= 1);
	assert_int_equal(atomic_load(&d.status), -EIO);
	for (int i = 0; i < atomic_load(&d.calls); i++)
		assert_true(d.lsns[i] > 0);
	memdisk_free(md);
}

/* Two committer threads complete sync groups; callbacks must still come
 * in lsn order, each after its batch was applied, also while writers that
 * lead their own syncs (store_write) interleave with submitted batches. */
struct order_state {
	store     *st;
	uint64_t   last;      /* written by callbacks only, one at a time */
	atomic_int calls;
	atomic_int bad;
};

static void on_ordered_done(void *arg, int status, uint64_t lsn)
{
	struct order_state *o = arg;

	if (status || lsn <= o->last || store_applied_lsn(o->st) < lsn)
		atomic_fetch_add(&o->bad, 1);
	o->last = lsn;
	atomic_fetch_add(&o->calls, 1);
	/* A slow completion now and then: the next group's sync finishes
	 * meanwhile and its completion must wait for this one. */
	if (lsn % 50 == 0)
		usleep(400);
}

static void *sync_writer(void *arg)
{
	store *st = arg;
	char key[32];

	for (int i = 0; i < 100; i++) {
		struct kv_op op = { .kind = KV_PUT, .key = key, .val = "w", .vlen = 1 };
		struct kv_batch b = { .ops = &op, .n = 1 };

		op.klen = (uint32_t)snprintf(key, sizeof key, "w%p/%d", (void *)key, i);
		if (store_write(st, &b))
			return (void *)1;
	}
	return NULL;
}

static void many_sync_groups_complete_in_lsn_order(void **state)
{
	memdisk *md = memdisk_new();
	struct order_state o = { .last = 0 };
	struct store_stats ss;
	pthread_t th[4];
	char key[32];
	void *ret;

	(void)state;
	o.st = open_store(md, NULL);
	memdisk_set_sync_delay(md, 100);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, sync_writer, o.st), 0);
	for (int i = 0; i < 3000; i++) {
		struct kv_op op = { .kind = KV_PUT, .key = key, .val = "v", .vlen = 1 };
		struct kv_batch b = { .ops = &op, .n = 1 };

		op.klen = (uint32_t)snprintf(key, sizeof key, "a/%d", i);
		assert_int_equal(store_submit(o.st, &b, 0, on_ordered_done, &o), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_null(ret);
	}
	store_get_stats(o.st, &ss);
	store_close(o.st);
	assert_int_equal(atomic_load(&o.calls), 3000);
	assert_int_equal(atomic_load(&o.bad), 0);
	assert_true(ss.syncs > 10); /* many groups, not one */
	memdisk_free(md);
}

static void later_batches_wait_for_the_kick(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	struct async_done d = { .calls = 0 };
	uint64_t syncs0 = memdisk_datasyncs(md);
	char key[16];

	(void)state;
	for (int i = 0; i < 10; i++) {
		struct kv_op op = { .kind = KV_PUT, .key = key, .val = "v", .vlen = 1 };
		struct kv_batch b = { .ops = &op, .n = 1 };

		op.klen = (uint32_t)snprintf(key, sizeof key, "l%d", i);
		assert_int_equal(store_submit(st, &b, STORE_LATER, on_done, &d), 0);
	}
	usleep(50000);
	assert_int_equal(atomic_load(&d.calls), 0);
	assert_int_equal(memdisk_datasyncs(md), syncs0);
	/* The kick releases the whole burst: one sync covers it. */
	store_kick(st);
	for (int i = 0; i < 5000 && atomic_load(&d.calls) < 10; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&d.calls), 10);
	assert_int_equal(memdisk_datasyncs(md), syncs0 + 1);
	for (int i = 0; i < 10; i++)
		assert_int_equal(d.lsns[i], (uint64_t)i + 1);
	/* Held batches are still completed by close. */
	{
		struct kv_op op = { .kind = KV_PUT, .key = "late", .klen = 4, .val = "v", .vlen = 1 };
		struct kv_batch b = { .ops = &op, .n = 1 };

		assert_int_equal(store_submit(st, &b, STORE_LATER, on_done, &d), 0);
	}
	store_close(st);
	assert_int_equal(atomic_load(&d.calls), 11);
	assert_int_equal(atomic_load(&d.status), 0);
	memdisk_free(md);
}

/* ---- completion by the owner's thread (store_set_completer) ---------------- */

struct owner {
	store      *st;
	pthread_t   self;      /* the owner's thread */
	atomic_int  pokes;     /* notify calls */
	atomic_int  calls;     /* callbacks */
	atomic_int  on_owner;  /* ... of them on the owner's thread */
	atomic_int  bad;       /* a callback before its batch was applied */
	atomic_int  failed;    /* callbacks with an error */
	uint64_t    last_on_owner;
};

static void owner_poke(void *arg)
{
	struct owner *o = arg;

	atomic_fetch_add(&o->pokes, 1);
}

static void owner_done(void *arg, int status, uint64_t lsn)
{
	struct owner *o = arg;

	if (status)
		atomic_fetch_add(&o->failed, 1);
	else if (store_applied_lsn(o->st) < lsn)
		atomic_fetch_add(&o->bad, 1);
	if (pthread_equal(pthread_self(), o->self)) {
		if (lsn <= o->last_on_owner)
			atomic_fetch_add(&o->bad, 1);
		o->last_on_owner = lsn;
		atomic_fetch_add(&o->on_owner, 1);
	}
	atomic_fetch_add(&o->calls, 1);
}

/* Opens a store with o as its owner; the calling thread is the owner's. */
static void owner_open(struct owner *o, memdisk *md)
{
	o->self = pthread_self();
	o->st = open_store(md, NULL);
	store_set_completer(o->st, owner_poke, o);
}

static void owner_submit_flags(struct owner *o, const char *key, const char *val, size_t vlen,
			       unsigned flags)
{
	struct kv_op op = { .kind = KV_PUT, .key = key, .klen = (uint32_t)strlen(key),
			    .val = val, .vlen = (uint32_t)vlen };
	struct kv_batch b = { .ops = &op, .n = 1 };

	assert_int_equal(store_submit(o->st, &b, flags, owner_done, o), 0);
}

static void owner_submit(struct owner *o, const char *key, const char *val, size_t vlen)
{
	owner_submit_flags(o, key, val, vlen, 0);
}

/* A value too big for the owner's groups (STORE_OWNER_GROUP_MAX). */
static char *owner_big_value(size_t *len)
{
	char *v;

	*len = STORE_OWNER_GROUP_MAX + 1024;
	v = malloc(*len);
	assert_non_null(v);
	memset(v, 'B', *len);
	return v;
}

/* Runs store_complete() on every poke until `want` callbacks have run. */
static void owner_run(struct owner *o, int want)
{
	int seen = 0;

	for (int i = 0; i < 20000 && atomic_load(&o->calls) < want; i++) {
		int p = atomic_load(&o->pokes);

		if (p != seen) {
			seen = p;
			store_complete(o->st);
		} else {
			usleep(500);
		}
	}
	assert_int_equal(atomic_load(&o->calls), want);
}

static void *owner_blocking_writer(void *arg)
{
	struct owner *o = arg;
	struct kv_op op = { .kind = KV_PUT, .key = "blocking", .klen = 8, .val = "b", .vlen = 1 };
	struct kv_batch b = { .ops = &op, .n = 1 };

	return (void *)(intptr_t)store_write(o->st, &b);
}

/* With an owner, a small synced group waits for store_complete(): it is not
 * readable before, and its callbacks run on the owner's thread after the
 * apply. A group too big for the owner (a value over
 * STORE_OWNER_GROUP_MAX) and a store_write() caller's group are completed
 * on the committer, in order with the owner's: a key written small, big,
 * small ends with the last value. Clearing the owner completes what it was
 * left; so does store_close() for an owner that never cleared itself. */
static void an_owner_completes_small_groups_on_its_own_thread(void **state)
{
	memdisk *md = memdisk_new();
	struct owner o = { .calls = 0 };
	size_t big;
	char *bigval = owner_big_value(&big);
	pthread_t th;
	void *ret;
	kv_rec *r;

	(void)state;
	owner_open(&o, md);

	owner_submit(&o, "small", "s1", 2);
	for (int i = 0; i < 5000 && !atomic_load(&o.pokes); i++)
		usleep(1000);
	assert_true(atomic_load(&o.pokes) > 0);
	usleep(20000);
	assert_int_equal(atomic_load(&o.calls), 0);
	assert_int_equal(store_get(o.st, "small", 5, 0, &r), -ENOENT); /* synced, not applied */
	store_complete(o.st);
	assert_int_equal(atomic_load(&o.on_owner), 1);
	assert_int_equal(store_get(o.st, "small", 5, 0, &r), 0);
	kv_rec_unref(r);

	/* Small groups are the owner's; a big one and a blocking writer's
	 * are the committer's. */
	for (int i = 0; i < 10; i++)
		owner_submit(&o, "s", "v", 1);
	owner_run(&o, 11);
	assert_int_equal(atomic_load(&o.on_owner), 11);
	owner_submit(&o, "big", bigval, big);
	owner_run(&o, 12);
	assert_int_equal(atomic_load(&o.on_owner), 11);
	assert_int_equal(pthread_create(&th, NULL, owner_blocking_writer, &o), 0);
	assert_int_equal(pthread_join(th, &ret), 0);
	assert_null(ret);

	/* Mixed in whatever groups the syncs make: applied in lsn order. */
	for (int i = 0; i < 30; i++) {
		char key[16];

		snprintf(key, sizeof key, "m%d", i % 3);
		if (i % 10 == 4)
			owner_submit(&o, key, bigval, big);
		else
			owner_submit(&o, key, i % 2 ? "odd" : "even", i % 2 ? 3 : 4);
	}
	owner_run(&o, 42);
	assert_int_equal(atomic_load(&o.bad), 0);
	assert_int_equal(atomic_load(&o.failed), 0);
	for (int k = 0; k < 3; k++) {
		char key[16];

		snprintf(key, sizeof key, "m%d", k); /* last written at i = 27 + k */
		assert_int_equal(store_get(o.st, key, strlen(key), 0, &r), 0);
		assert_int_equal(kv_rec_size(r), (27 + k) % 2 ? 3 : 4);
		kv_rec_unref(r);
	}

	/* Cleared: what the owner was left is completed before it returns. */
	owner_submit(&o, "left", "l", 1);
	for (int i = 0; i < 5000 && atomic_load(&o.pokes) == 0; i++)
		usleep(1000);
	atomic_store(&o.pokes, 0);
	for (int i = 0; i < 5000 && !atomic_load(&o.pokes); i++)
		usleep(1000);
	store_set_completer(o.st, NULL, NULL);
	assert_int_equal(atomic_load(&o.calls), 43);
	assert_int_equal(store_get(o.st, "left", 4, 0, &r), 0);
	kv_rec_unref(r);

	/* An owner that never clears itself: close completes its groups. */
	store_set_completer(o.st, owner_poke, &o);
	owner_submit(&o, "at-close", "c", 1);
	store_close(o.st);
	assert_int_equal(atomic_load(&o.calls), 44);
	assert_int_equal(atomic_load(&o.bad), 0);
	assert_int_equal(atomic_load(&o.failed), 0);
	memdisk_crash(md);
	o.st = open_store(md, NULL);
	assert_int_equal(store_get(o.st, "at-close", 8, 0, &r), 0);
	kv_rec_unref(r);
	store_close(o.st);
	free(bigval);
	memdisk_free(md);
}

static void owner_submit_later(struct owner *o, const char *key, const char *val, size_t vlen)
{
	owner_submit_flags(o, key, val, vlen, STORE_LATER);
}

/* store_kick_here(): with no sync in flight, the owner syncs a small burst
 * on its own thread (one sync) and has answered it when the call returns; a
 * burst over STORE_OWNER_GROUP_MAX goes to a committer as with
 * store_kick(); so does every burst of a store without an owner. */
static void the_owner_syncs_a_small_burst_itself(void **state)
{
	memdisk *md = memdisk_new();
	struct owner o = { .calls = 0 };
	size_t big;
	char *bigval = owner_big_value(&big);
	uint64_t syncs0;

	(void)state;
	owner_open(&o, md);
	syncs0 = memdisk_datasyncs(md);
	assert_int_equal(store_owner_may_sync(o.st), 0); /* nothing queued */
	for (int i = 0; i < 5; i++)
		owner_submit_later(&o, "burst", "v", 1);
	assert_int_equal(store_owner_may_sync(o.st), 1);
	assert_int_equal(store_kick_here(o.st), 1);
	assert_int_equal(atomic_load(&o.calls), 5);
	assert_int_equal(atomic_load(&o.on_owner), 5);
	assert_int_equal(memdisk_datasyncs(md), syncs0 + 1);
	assert_int_equal(atomic_load(&o.pokes), 0); /* nothing to poke about */

	owner_submit_later(&o, "big", bigval, big);
	assert_int_equal(store_owner_may_sync(o.st), 0);
	assert_int_equal(store_kick_here(o.st), 0);
	owner_run(&o, 6);
	assert_int_equal(atomic_load(&o.on_owner), 5); /* the committer's */
	/* The queue's counts went back down with the big group. */
	owner_submit_later(&o, "after", "v", 1);
	assert_int_equal(store_owner_may_sync(o.st), 1);
	assert_int_equal(store_kick_here(o.st), 1);
	assert_int_equal(atomic_load(&o.calls), 7);
	assert_int_equal(atomic_load(&o.on_owner), 6);

	store_set_completer(o.st, NULL, NULL);
	owner_submit_later(&o, "ownerless", "v", 1);
	assert_int_equal(store_owner_may_sync(o.st), 0);
	assert_int_equal(store_kick_here(o.st), 0);
	for (int i = 0; i < 5000 && atomic_load(&o.calls) < 8; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&o.calls), 8);
	assert_int_equal(atomic_load(&o.on_owner), 6);
	assert_int_equal(atomic_load(&o.bad), 0);
	assert_int_equal(atomic_load(&o.failed), 0);
	store_close(o.st);
	free(bigval);
	memdisk_free(md);
}

/* A sync that fails on the owner's thread fails its burst there (no
 * acknowledgement), the store stays read-only, and what was acknowledged
 * before is there after a crash. */
static void a_failed_sync_by_the_owner_fails_its_burst(void **state)
{
	memdisk *md = memdisk_new();
	struct owner o = { .calls = 0 };
	kv_rec *r;

	(void)state;
	owner_open(&o, md);
	owner_submit_later(&o, "ok", "1", 1);
	assert_int_equal(store_kick_here(o.st), 1);
	memdisk_fail_sync(md, 1, EIO);
	for (int i = 0; i < 3; i++)
		owner_submit_later(&o, "lost", "2", 1);
	assert_int_equal(store_kick_here(o.st), 1);
	assert_int_equal(atomic_load(&o.calls), 4);
	assert_int_equal(atomic_load(&o.on_owner), 4);
	assert_int_equal(atomic_load(&o.failed), 3);
	assert_int_equal(store_failed(o.st), -EIO);
	assert_int_equal(store_get(o.st, "lost", 4, 0, &r), -ENOENT);
	{
		struct kv_op op = { .kind = KV_PUT, .key = "after", .klen = 5, .val = "3", .vlen = 1 };
		struct kv_batch b = { .ops = &op, .n = 1 };

		assert_int_equal(store_submit(o.st, &b, STORE_LATER, owner_done, &o), -EIO);
	}
	store_close(o.st);
	assert_int_equal(atomic_load(&o.calls), 4);
	memdisk_crash(md);
	o.st = open_store(md, NULL);
	assert_int_equal(store_get(o.st, "ok", 2, 0, &r), 0);
	kv_rec_unref(r);
	store_close(o.st);
	memdisk_free(md);
}

#define THREADS 64
#define PER_THREAD 40

struct writer_arg {
	store *st;
	int    id;
	int    rc;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	char key[32], val[32];

	for (int i = 0; i < PER_THREAD && !a->rc; i++) {
		struct kv_op op = { .kind = KV_PUT, .key = key, .val = val };
		struct kv_batch b = { .ops = &op, .n = 1 };

		op.klen = (uint32_t)snprintf(key, sizeof key, "t%d/k%d", a->id, i);
		op.vlen = (uint32_t)snprintf(val, sizeof val, "%d", i);
		a->rc = store_write(a->st, &b);
	}
	return NULL;
}

static void concurrent_writers_share_syncs(void **state)
{
	memdisk *md = memdisk_new();
	store *st = open_store(md, NULL);
	pthread_t th[THREADS];
	struct writer_arg args[THREADS];
	struct store_stats ss;
	uint64_t syncs0 = memdisk_datasyncs(md);

	(void)state;
	memdisk_set_sync_delay(md, 500);
	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct writer_arg){ .st = st, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, writer, &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].rc, 0);
	}
	store_get_stats(st, &ss);
	printf("%" PRIu64 " writes, %" PRIu64 " syncs\n", ss.records, ss.syncs);
	assert_int_equal(ss.records, THREADS * PER_THREAD);
	assert_int_equal(ss.keys, THREADS * PER_THREAD);
	assert_true(ss.syncs < ss.records / 4);
	assert_true(memdisk_datasyncs(md) - syncs0 < ss.records / 4);
	store_close(st);
	memdisk_crash(md);
	st = open_store(md, NULL);
	store_get_stats(st, &ss);
	assert_int_equal(ss.keys, THREADS * PER_THREAD);
	store_close(st);
	memdisk_free(md);
}

/* Log replay decodes batches into room on its stack when they fit, and
 * allocates when they do not; both give what kv_batch_decode gives. A bad
 * batch leaves nothing to free. */
static void replay_decoding_into_room_matches_the_allocating_decoder(void **state)
{
	static const char val[] = "value";
	struct kv_op in[3] = {
		{ .kind = KV_PUT, .key = "d/f", .klen = 3, .val = val, .vlen = 5, .ext = "x",
		  .ext_len = 1, .meta = { .mode = 0100644, .uid = 7, .mtime_ns = -1 } },
		{ .kind = KV_DEL, .key = "old", .klen = 3 },
		{ .kind = KV_META, .key = "d/", .klen = 2, .meta = { .mode = 040755 } },
	};
	struct kv_batch b = { .ops = in, .n = 3 };
	struct kv_op room[3], *ops, *ref;
	uint32_t n, nref;
	void *buf;
	size_t len;

	(void)state;
	assert_int_equal(kv_batch_encode(&b, &buf, &len), 0);
	assert_int_equal(kv_batch_decode(buf, len, &ref, &nref), 0);
	assert_int_equal(batch_decode_buf(buf, len, room, 3, &ops, &n), 0);
	assert_ptr_equal(ops, room);
	assert_int_equal(n, nref);
	assert_memory_equal(ops, ref, n * sizeof *ops);
	assert_int_equal(batch_decode_buf(buf, len, room, 2, &ops, &n), 0);
	assert_ptr_not_equal(ops, room);
	assert_int_equal(n, nref);
	assert_memory_equal(ops, ref, n * sizeof *ops);
	free(ops);
	ops = NULL;
	assert_int_equal(batch_decode_buf(buf, len - 1, room, 3, &ops, &n), -EBADMSG);
	assert_null(ops);
	free(ref);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(written_keys_can_be_read_listed_and_deleted),
		cmocka_unit_test(replay_decoding_into_room_matches_the_allocating_decoder),
		cmocka_unit_test(invalid_batches_are_refused_before_logging),
		cmocka_unit_test(prepared_batches_are_logged_like_submitted_ones),
		cmocka_unit_test(meta_change_shares_the_value_and_tombstones_are_hidden),
		cmocka_unit_test(get_many_reads_a_batch_whole),
		cmocka_unit_test(apply_hook_sees_every_change_in_order),
		cmocka_unit_test(submitted_batches_complete_in_order_after_close_at_the_latest),
		cmocka_unit_test(raw_records_are_replayed_and_state_comes_back_with_the_snapshot),
		cmocka_unit_test(snapshots_and_log_recover_the_state_before_a_crash),
		cmocka_unit_test(a_corrupt_newest_snapshot_falls_back_to_the_previous_one),
		cmocka_unit_test(a_corrupt_snapshot_without_log_to_fall_back_on_is_a_clear_error),
		cmocka_unit_test(log_replay_restores_order_of_keys_with_long_shared_prefixes),
		cmocka_unit_test(snapshot_captures_changes_made_with_store_apply),
		cmocka_unit_test(a_large_apply_takes_more_than_one_batch_of_operations),
		cmocka_unit_test(pinned_log_is_kept_across_snapshots),
		cmocka_unit_test(failed_sync_with_eio_fails_the_write_and_sticks),
		cmocka_unit_test(failed_sync_with_enospc_fails_the_write_and_sticks),
		cmocka_unit_test(failed_write_with_enospc_fails_the_write_and_sticks),
		cmocka_unit_test(failed_write_with_eio_fails_the_write_and_sticks),
		cmocka_unit_test(a_failed_sync_fails_every_pending_batch),
		cmocka_unit_test(concurrent_writers_share_syncs),
		cmocka_unit_test(many_sync_groups_complete_in_lsn_order),
		cmocka_unit_test(later_batches_wait_for_the_kick),
		cmocka_unit_test(an_owner_completes_small_groups_on_its_own_thread),
		cmocka_unit_test(the_owner_syncs_a_small_burst_itself),
		cmocka_unit_test(a_failed_sync_by_the_owner_fails_its_burst),
		cmocka_unit_test(held_snapshots_wait_for_the_last_release),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
