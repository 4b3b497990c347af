/*
 * test_raft_node.c — the durable formats of the Raft layer (cluster/raft_node.h):
 * the term/vote file, and the replay that rebuilds the log from WAL records
 * (conflict truncation, InstallSnapshot resets, records older than the
 * snapshot), and the snapshot a leader sends a lagging follower.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster/raft_node.h"

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/test_raft_node.XXXXXX";
	char *d = mkdtemp(tmpl);

	assert_non_null(d);
	return strdup(d);
}

static void rmdir_all(char *d)
{
	char p[512];

	snprintf(p, sizeof p, "%s/%s", d, RN_META_FILE);
	unlink(p);
	snprintf(p, sizeof p, "%s/%s.tmp", d, RN_META_FILE);
	unlink(p);
	rmdir(d);
	free(d);
}

static void meta_missing_means_term_zero_no_vote(void **state)
{
	char *d = tmpdir();
	uint64_t term = 7;
	uint32_t vote = 7;

	(void)state;
	assert_int_equal(rn_meta_load(d, &term, &vote), 0);
	assert_int_equal(term, 0);
	assert_int_equal(vote, 0);
	rmdir_all(d);
}

static void meta_round_trips_and_overwrites(void **state)
{
	char *d = tmpdir();
	uint64_t term;
	uint32_t vote;

	(void)state;
	assert_int_equal(rn_meta_save(d, 5, 2), 0);
	assert_int_equal(rn_meta_save(d, 6, 3), 0);
	assert_int_equal(rn_meta_load(d, &term, &vote), 0);
	assert_int_equal(term, 6);
	assert_int_equal(vote, 3);
	rmdir_all(d);
}

static void meta_corruption_stops_the_node(void **state)
{
	char *d = tmpdir();
	char p[512];
	uint64_t term;
	uint32_t vote;
	int fd;

	(void)state;
	assert_int_equal(rn_meta_save(d, 9, 1), 0);
	snprintf(p, sizeof p, "%s/%s", d, RN_META_FILE);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\xff", 1, 9), 1);
	close(fd);
	assert_int_equal(rn_meta_load(d, &term, &vote), -EUCLEAN);
	rmdir_all(d);
}

/* Adds one ENTRIES record of entries first..first+n-1 with the given terms. */
static void add_entries(struct rn_replay *rp, uint64_t lsn, uint64_t first, const uint64_t *terms,
			size_t n)
{
	struct raft_entry e[16];
	char data[16][8];
	void *buf;
	size_t len, i;

	for (i = 0; i < n; i++) {
		snprintf(data[i], sizeof data[i], "%zu", (size_t)(first + i));
		e[i].term = terms[i];
		e[i].type = RAFT_ENTRY_DATA;
		e[i].len = (uint32_t)strlen(data[i]);
		e[i].data = data[i];
	}
	assert_int_equal(rn_entries_encode(first, e, n, &buf, &len), 0);
	assert_int_equal(rn_replay_add(rp, RN_REC_ENTRIES, lsn, buf, len), 0);
	free(buf);
}

static void add_reset(struct rn_replay *rp, uint64_t lsn, uint64_t index, uint64_t term)
{
	unsigned char rec[16];

	rn_reset_encode(index, term, rec);
	assert_int_equal(rn_replay_add(rp, RN_REC_RESET, lsn, rec, sizeof rec), 0);
}

static void replay_appends_in_order(void **state)
{
	struct rn_replay rp = { 0 };
	struct raft_entry *e;
	uint64_t *lsn;
	size_t n;
	const uint64_t t[] = { 1, 1, 1 };

	(void)state;
	add_entries(&rp, 10, 1, t, 2);
	add_entries(&rp, 11, 3, t, 1);
	assert_int_equal(rn_replay_build(&rp, 0, &e, &lsn, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(e[2].data, "3", 1);
	assert_int_equal(lsn[0], 10);
	assert_int_equal(lsn[2], 11);
	free(e);
	free(lsn);
	rn_replay_free(&rp);
}

static void replay_truncates_at_a_conflicting_record(void **state)
{
	struct rn_replay rp = { 0 };
	struct raft_entry *e;
	uint64_t *lsn;
	size_t n;
	const uint64_t t1[] = { 1, 1, 1, 1 }, t2[] = { 2 };

	(void)state;
	add_entries(&rp, 10, 1, t1, 4);
	add_entries(&rp, 11, 3, t2, 1); /* replaces 3 and drops 4 */
	assert_int_equal(rn_replay_build(&rp, 0, &e, &lsn, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(e[2].term, 2);
	assert_int_equal(lsn[1], 10);
	assert_int_equal(lsn[2], 11);
	free(e);
	free(lsn);
	rn_replay_free(&rp);
}

static void replay_skips_entries_inside_the_snapshot(void **state)
{
	struct rn_replay rp = { 0 };
	struct raft_entry *e;
	uint64_t *lsn;
	size_t n;
	const uint64_t t[] = { 1, 1, 1, 1, 1 };

	(void)state;
	add_entries(&rp, 10, 1, t, 5);
	assert_int_equal(rn_replay_build(&rp, 3, &e, &lsn, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(e[0].data, "4", 1);
	free(e);
	free(lsn);
	rn_replay_free(&rp);
}

static void replay_truncation_below_the_snapshot_drops_stale_tail(void **state)
{
	struct rn_replay rp = { 0 };
	struct raft_entry *e;
	uint64_t *lsn;
	size_t n;
	const uint64_t t1[] = { 1, 1, 1, 1, 1, 1 }, t2[] = { 2, 2 };

	(void)state;
	/* 1..6 from term 1, then a leader of term 2 rewrote from 3 on; the
	 * snapshot is at 4, so 5 and 6 of term 1 are stale. */
	add_entries(&rp, 10, 1, t1, 6);
	add_entries(&rp, 11, 3, t2, 2);
	assert_int_equal(rn_replay_build(&rp, 4, &e, &lsn, &n), 0);
	assert_int_equal(n, 0);
	free(e);
	free(lsn);
	rn_replay_free(&rp);
}

static void replay_reset_discards_the_old_log_when_the_snapshot_has_it(void **state)
{
	struct rn_replay rp = { 0 };
	struct raft_entry *e;
	uint64_t *lsn;
	size_t n;
	const uint64_t t1[] = { 1, 1, 1 }, t3[] = { 3, 3 };

	(void)state;
	add_entries(&rp, 10, 1, t1, 3);
	add_reset(&rp, 11, 20, 3);
	add_entries(&rp, 12, 21, t3, 2);
	assert_int_equal(rn_replay_build(&rp, 20, &e, &lsn, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(e[0].term, 3);
	assert_memory_equal(e[0].data, "21", 2);
	free(e);
	free(lsn);
	rn_replay_free(&rp);
}

static void replay_ignores_a_reset_whose_snapshot_never_landed(void **state)
{
	struct rn_replay rp = { 0 };
	struct raft_entry *e;
	uint64_t *lsn;
	size_t n;
	const uint64_t t1[] = { 1, 1, 1 };

	(void)state;
	/* Crash between the reset record and the store snapshot: the store
	 * snapshot is older (index 0), the install did not happen. */
	add_entries(&rp, 10, 1, t1, 3);
	add_reset(&rp, 11, 20, 3);
	assert_int_equal(rn_replay_build(&rp, 0, &e, &lsn, &n), 0);
	assert_int_equal(n, 3);
	free(e);
	free(lsn);
	rn_replay_free(&rp);
}

static void replay_skips_a_record_after_a_gap(void **state)
{
	struct rn_replay rp = { 0 };
	struct raft_entry *e;
	uint64_t *lsn;
	size_t n;
	const uint64_t t[] = { 1, 1, 1 };

	(void)state;
	/* The start of the old log was in deleted segments; a later record
	 * rewrites from inside the snapshot. */
	add_entries(&rp, 10, 8, t, 3);
	add_entries(&rp, 11, 5, t, 3);
	assert_int_equal(rn_replay_build(&rp, 5, &e, &lsn, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(e[0].data, "6", 1);
	free(e);
	free(lsn);
	rn_replay_free(&rp);
}

static void replay_rejects_a_malformed_record(void **state)
{
	struct rn_replay rp = { 0 };
	struct raft_entry *e;
	uint64_t *lsn;
	size_t n;
	unsigned char bad[20] = { 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0 };

	(void)state;
	assert_int_equal(rn_replay_add(&rp, RN_REC_ENTRIES, 1, bad, sizeof bad), 0);
	assert_int_equal(rn_replay_build(&rp, 0, &e, &lsn, &n), -EUCLEAN);
	rn_replay_free(&rp);
}

static void state_blob_round_trips(void **state)
{
	unsigned char b[RN_STATE_SIZE];
	uint64_t i, t;

	(void)state;
	rn_state_encode(42, 7, b);
	assert_int_equal(rn_state_decode(b, sizeof b, &i, &t), 0);
	assert_int_equal(i, 42);
	assert_int_equal(t, 7);
	assert_int_equal(rn_state_decode(NULL, 0, &i, &t), 0);
	assert_int_equal(i, 0);
	b[0] ^= 1;
	assert_int_equal(rn_state_decode(b, sizeof b, &i, &t), -EUCLEAN);
}

/* Snapshots for a follower (format 5): any number of keys in batches of
 * any size round-trips in key order, and any cut or extra byte is refused,
 * a cut between two batches included. */
static void snapshot_batches_round_trip_and_refuse_a_cut(void **state)
{
	static const size_t counts[] = { 0, 1, 6, 7, 8, 14, 15, 100 };
	static const uint32_t chunks[] = { 1, 7, KV_BATCH_MAX };
	struct kv_op ops[100];
	char keys[100][8], vals[100][8];

	(void)state;
	for (size_t i = 0; i < 100; i++) {
		snprintf(keys[i], sizeof keys[i], "k%03zu", i);
		snprintf(vals[i], sizeof vals[i], "v%zu", i);
		ops[i] = (struct kv_op){ .kind = KV_PUT, .key = keys[i], .klen = 4, .val = vals[i],
					 .vlen = (uint32_t)strlen(vals[i]) };
	}
	for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
		for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
			size_t n = counts[c], got_n = 99, len;
			struct kv_op *got = NULL;
			unsigned char *buf, *longer;
			void *enc;

			assert_int_equal(rn_snap_encode(n ? ops : NULL, n, chunks[k], &enc, &len), 0);
			buf = enc;
			assert_int_equal(rn_snap_decode(buf, len, &got, &got_n), 0);
			assert_int_equal(got_n, n);
			for (size_t i = 0; i < n; i++) {
				assert_int_equal(got[i].kind, KV_PUT);
				assert_memory_equal(got[i].key, keys[i], 4);
				assert_int_equal(got[i].vlen, strlen(vals[i]));
				assert_memory_equal(got[i].val, vals[i], got[i].vlen);
			}
			free(got);
			for (size_t cut = 0; cut < len; cut++) {
				got = NULL;
				assert_int_equal(rn_snap_decode(buf, cut, &got, &got_n), -EBADMSG);
				assert_null(got);
			}
			longer = malloc(len + 1);
			assert_non_null(longer);
			memcpy(longer, buf, len);
			longer[len] = 0;
			assert_int_equal(rn_snap_decode(longer, len + 1, &got, &got_n), -EBADMSG);
			free(longer);
			free(buf);
		}
	{
		void *enc = NULL;
		size_t len;

		/* A batch size of 0 would never end. */
		assert_int_equal(rn_snap_encode(ops, 3, 0, &enc, &len), -EINVAL);
		assert_int_equal(rn_snap_encode(ops, 3, KV_BATCH_MAX + 1, &enc, &len), -EINVAL);
		assert_null(enc);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(meta_missing_means_term_zero_no_vote),
		cmocka_unit_test(meta_round_trips_and_overwrites),
		cmocka_unit_test(meta_corruption_stops_the_node),
		cmocka_unit_test(replay_appends_in_order),
		cmocka_unit_test(replay_truncates_at_a_conflicting_record),
		cmocka_unit_test(replay_skips_entries_inside_the_snapshot),
		cmocka_unit_test(replay_truncation_below_the_snapshot_drops_stale_tail),
		cmocka_unit_test(replay_reset_discards_the_old_log_when_the_snapshot_has_it),
		cmocka_unit_test(replay_ignores_a_reset_whose_snapshot_never_landed),
		cmocka_unit_test(replay_skips_a_record_after_a_gap),
		cmocka_unit_test(replay_rejects_a_malformed_record),
		cmocka_unit_test(state_blob_round_trips),
		cmocka_unit_test(snapshot_batches_round_trip_and_refuse_a_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
