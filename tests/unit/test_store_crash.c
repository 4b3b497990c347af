/* test_store_crash.c — power cuts at every sync boundary of a scripted
 * workload: acknowledged batches always survive, unacknowledged ones are
 * all-or-nothing (and the recovered state is the effect of a prefix of the
 * log). Covers log rotation and crashes while a snapshot is being written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "tests/lib/memdisk.h"
#include "tests/lib/storemodel.h"

#define DIR "db"
#define NBATCH 120
#define SNAP_EVERY 25

struct step {
	struct kv_op ops[4];
	char         keys[4][16];
	char         vals[4][48];
	uint32_t     n;
};

static struct step script[NBATCH];

static void make_script(uint64_t seed)
{
	uint64_t s = seed;

	for (int i = 0; i < NBATCH; i++) {
		struct step *st = &script[i];

		s = s * 6364136223846793005ull + 1442695040888963407ull;
		st->n = 1 + (uint32_t)(s >> 62);
		for (uint32_t k = 0; k < st->n; k++) {
			struct kv_op *op = &st->ops[k];

			s = s * 6364136223846793005ull + 1442695040888963407ull;
			memset(op, 0, sizeof *op);
			op->klen = (uint32_t)snprintf(st->keys[k], sizeof st->keys[k], "d%u/k%u",
						      (unsigned)(s >> 61) % 3,
						      (unsigned)(s >> 33) % 10);
			op->key = st->keys[k];
			op->meta.mode = 0100644;
			op->meta.mtime_ns = i;
			switch ((s >> 20) % 5) {
			case 0:
				op->kind = KV_DEL;
				memset(&op->meta, 0, sizeof op->meta);
				break;
			case 1:
				op->kind = KV_META;
				op->meta.mode = 0100600;
				break;
			default:
				op->kind = KV_PUT;
				/* every op of a batch carries the batch number, so a
				 * partly applied batch would show */
				op->vlen = (uint32_t)snprintf(st->vals[k], sizeof st->vals[k],
							      "batch %d op %u %llx", i, k,
							      (unsigned long long)(s >> 8));
				op->val = st->vals[k];
			}
		}
	}
}

static void model_at(struct model *m, int p)
{
	model_init(m);
	for (int i = 0; i < p; i++) {
		struct kv_batch b = { .ops = script[i].ops, .n = script[i].n };

		model_apply(m, &b);
	}
}

/* The recovered store must equal the model after some p in [lo, hi]. */
static int matching_prefix(store *st, int lo, int hi)
{
	static struct model m;
	char why[256];

	for (int p = lo; p <= hi; p++) {
		model_at(&m, p);
		if (!model_compare(&m, st, why, sizeof why))
			return p;
	}
	return -1;
}

static size_t seg_bytes = 1500;

static store *open_on(memdisk *md, size_t snap_bytes)
{
	struct store_options o = { .io = memdisk_io(md), .segment_bytes = seg_bytes,
				   .snapshot_log_bytes = snap_bytes };
	store *st = NULL;
	int rc = store_open(DIR, &o, &st);

	if (rc)
		fprintf(stderr, "store_open: %s\n", strerror(-rc));
	assert_int_equal(rc, 0);
	return st;
}

/* Runs the script with blocking writes; returns the number acknowledged. */
static int run_sync_script(store *st)
{
	int acked = 0;

	for (int i = 0; i < NBATCH; i++) {
		struct kv_batch b = { .ops = script[i].ops, .n = script[i].n };

		if (i && i % SNAP_EVERY == 0 && store_snapshot(st))
			break;
		if (store_write(st, &b))
			break;
		acked++;
	}
	return acked;
}

static void verify_and_continue(memdisk *md, int lo, int hi, uint64_t k, const char *mode)
{
	store *st = open_on(md, SIZE_MAX);
	int p = matching_prefix(st, lo, hi);

	if (p < 0)
		fprintf(stderr, "%s: cut at sync %" PRIu64 ": state matches no prefix in [%d, %d]\n",
			mode, k, lo, hi);
	assert_true(p >= 0);
	/* The recovered store takes new writes and recovers them too. */
	{
		struct kv_op op = { .kind = KV_PUT, .key = "after", .klen = 5, .val = "x", .vlen = 1 };
		struct kv_batch b = { .ops = &op, .n = 1 };

		assert_int_equal(store_write(st, &b), 0);
	}
	store_close(st);
	st = open_on(md, SIZE_MAX);
	{
		kv_rec *r;

		assert_int_equal(store_get(st, "after", 5, 0, &r), 0);
		kv_rec_unref(r);
	}
	store_close(st);
}

static void cut_every_sync(int torn)
{
	memdisk *md = memdisk_new();
	store *st;
	uint64_t base, total, k;
	int acked;

	make_script(2024);
	/* Reference run: how many syncs does the script make? */
	st = open_on(md, SIZE_MAX);
	base = memdisk_syncs(md);
	acked = run_sync_script(st);
	assert_int_equal(acked, NBATCH);
	total = memdisk_syncs(md) - base;
	store_close(st);
	memdisk_free(md);
	assert_true(total > NBATCH);
	printf("script makes %" PRIu64 " syncs: cutting at each\n", total);

	for (k = 1; k <= total + 1; k++) {
		md = memdisk_new();
		st = open_on(md, SIZE_MAX);
		memdisk_cut_at_sync(md, k);
		acked = run_sync_script(st);
		store_close(st);
		if (torn)
			memdisk_crash_torn(md, k * 7919);
		else
			memdisk_crash(md);
		/* Dropping all unsynced data leaves exactly the acknowledged
		 * batches; a torn write-back may add the one in flight. */
		verify_and_continue(md, acked, torn ? (acked < NBATCH ? acked + 1 : acked) : acked,
				    k, torn ? "torn" : "clean");
		memdisk_free(md);
	}
}

static void power_cut_at_every_sync_keeps_exactly_the_acknowledged_batches(void **state)
{
	(void)state;
	cut_every_sync(0);
}

static void torn_write_back_at_every_sync_keeps_batches_whole(void **state)
{
	(void)state;
	cut_every_sync(1);
}

struct acks {
	atomic_int ok;
	atomic_int done;
};

static void on_done(void *arg, int status, uint64_t lsn)
{
	struct acks *a = arg;

	(void)lsn;
	if (!status)
		atomic_fetch_add(&a->ok, 1);
	atomic_fetch_add(&a->done, 1);
}

/* One run cut at sync k; returns whether the cut stopped the workload. */
static int cut_in_flight_at(uint64_t k, int pages, uint64_t seed)
{
	memdisk *md = memdisk_new();
	store *st = open_on(md, pages ? SIZE_MAX : 600);
	struct acks a = { 0 };
	int submitted = 0, stop = 0, last_ok;

	memdisk_cut_at_sync(md, k);
	for (int i = 0; i < NBATCH && !stop; i += 8) {
		for (int j = i; j < i + 8 && j < NBATCH; j++) {
			struct kv_batch b = { .ops = script[j].ops, .n = script[j].n };

			if (store_submit(st, &b, 0, on_done, &a)) {
				stop = 1;
				break;
			}
			submitted++;
		}
		while (atomic_load(&a.done) < submitted)
			; /* completions arrive from the committer thread */
		if (atomic_load(&a.ok) < submitted)
			stop = 1;
	}
	store_close(st);
	last_ok = atomic_load(&a.ok);
	if (pages)
		memdisk_crash_pages(md, seed, 4096);
	else
		memdisk_crash(md);
	verify_and_continue(md, last_ok, submitted, k, pages ? "pages" : "in flight");
	memdisk_free(md);
	return stop;
}

/* Batches submitted 8 at a time share syncs; automatic snapshots on the
 * background thread are cut at every point too. With `pages`, segments span
 * several pages, so the log's preallocated zeros are overwritten in place,
 * and the power cut writes pages back out of order (16 draws per cut): a
 * later page of the unacknowledged group may survive an earlier one.
 * Recovery must take that for an interrupted append (the store starts,
 * nothing acknowledged is lost), not for corruption. */
static void cut_in_flight(int pages)
{
	uint64_t k;
	int stop = 1;

	seg_bytes = pages ? 64 * 1024 : 1500;
	make_script(77);
	for (k = 1; k <= 400 && stop; k++)
		for (uint64_t r = 0; r < (pages ? 16 : 1); r++)
			stop = cut_in_flight_at(k, pages, k * 7919 + r);
	printf("cut at %" PRIu64 " sync points\n", k - 1);
	assert_true(k < 400);
	seg_bytes = 1500;
}

static void power_cut_with_batches_in_flight_and_background_snapshots(void **state)
{
	(void)state;
	cut_in_flight(0);
}

static void out_of_order_page_write_back_with_batches_in_flight(void **state)
{
	(void)state;
	cut_in_flight(1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(power_cut_at_every_sync_keeps_exactly_the_acknowledged_batches),
		cmocka_unit_test(torn_write_back_at_every_sync_keeps_batches_whole),
		cmocka_unit_test(power_cut_with_batches_in_flight_and_background_snapshots),
		cmocka_unit_test(out_of_order_page_write_back_with_batches_in_flight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
