/*
 * test_raft_node.c — the durable formats of the Raft layer (cluster/raft_node.h):
 * the term/vote file, and the replay that rebuilds the log from WAL records
 * (conflict truncation, InstallSnapshot resets, records older than the
 * snapshot), the snapshot a leader sends a lagging follower, and its
 * installation (rn__snapshot_install) on a store in memory that can lose
 * power (tests/lib/memdisk.h).
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
#include "tests/lib/memdisk.h"

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

/* ---- rn__snapshot_install --------------------------------------------------- */

#define SDIR "db"

/* A Raft layer reduced to what rn__snapshot_install uses, on a store in
 * memory whose snapshots record its applied position as raft_node.c's
 * do (snap_state). */
struct fx {
	memdisk   *md;
	struct rn  rn;
};

/* node_notify_* are wrapped (tests/meson.build): there is no node. The
 * hook runs where an install tells the node about the changed keys. */
static void (*notify_hook)(struct fx *f);
static struct fx *notify_fx;

void __wrap_node_notify_key(node *n, const char *key, size_t klen);
void __wrap_node_notify_flush(node *n);
void __wrap_node_req_done(node *n, struct node_req *req, int status);

/* Requests are fakes: req_status[i] is set (status + 1) when the request
 * &req_slot[i] is answered. */
static char req_slot[4];
static int  req_status[4];

void __wrap_node_req_done(node *n, struct node_req *req, int status)
{
	ptrdiff_t i = (char *)req - req_slot;

	(void)n;
	assert_true(i >= 0 && i < (ptrdiff_t)sizeof req_slot);
	assert_int_equal(req_status[i], 0); /* exactly once */
	req_status[i] = status + 1;
}

void __wrap_node_notify_key(node *n, const char *key, size_t klen)
{
	(void)n;
	(void)key;
	(void)klen;
}

void __wrap_node_notify_flush(node *n)
{
	(void)n;
	if (notify_hook)
		notify_hook(notify_fx);
}

static int fx_replay(void *arg, uint8_t type, uint64_t lsn, const void *p, size_t len)
{
	return rn_replay_add(arg, type, lsn, p, len);
}

/* Opens the store (again, after a crash): the Raft position comes from
 * the loaded snapshot, the log records go to rn.replay. */
static void fx_open(struct fx *f)
{
	struct store_options o = { .io = memdisk_io(f->md), .snapshot_log_bytes = SIZE_MAX,
				   .replay = fx_replay, .replay_arg = &f->rn.replay,
				   .snap_state = rn__snap_state, .snap_state_arg = &f->rn };
	const void *state;
	size_t slen;
	uint64_t slsn;

	rn_replay_free(&f->rn.replay);
	assert_int_equal(store_open(SDIR, &o, &f->rn.st), 0);
	store_snapshot_state(f->rn.st, &state, &slen, &slsn);
	assert_int_equal(rn_state_decode(state, slen, &f->rn.applied_index,
					 &f->rn.applied_term), 0);
}

static void fx_done(void *arg, int status, uint64_t lsn)
{
	(void)lsn;
	__atomic_store_n((int *)arg, status + 1, __ATOMIC_RELEASE);
}

/* Entries first..first+n-1 of term `term`, durable in the WAL. */
static void fx_log(struct fx *f, uint64_t first, size_t n, uint64_t term)
{
	struct raft_entry e[8];
	void *buf;
	size_t len, i;
	int done = 0;

	for (i = 0; i < n; i++)
		e[i] = (struct raft_entry){ .term = term, .type = RAFT_ENTRY_NOOP };
	assert_int_equal(rn_entries_encode(first, e, n, &buf, &len), 0);
	assert_int_equal(store_submit_raw(f->rn.st, RN_REC_ENTRIES, buf, len, fx_done, &done), 0);
	free(buf);
	while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
		usleep(1000);
	assert_int_equal(done, 1);
}

/* A follower at applied index 2 of term 1 (a=1, b=1), its log at 3, the
 * map durable in a store snapshot. */
static void fx_new(struct fx *f)
{
	struct kv_op ops[2] = {
		{ .kind = KV_PUT, .key = "a", .klen = 1, .val = "1", .vlen = 1 },
		{ .kind = KV_PUT, .key = "b", .klen = 1, .val = "1", .vlen = 1 },
	};
	struct kv_batch b = { .ops = ops, .n = 2 };

	memset(f, 0, sizeof *f);
	f->md = memdisk_new();
	pthread_mutex_init(&f->rn.smu, NULL);
	TAILQ_INIT(&f->rn.commitq);
	fx_open(f);
	fx_log(f, 1, 3, 1);
	assert_int_equal(store_apply(f->rn.st, &b, 2), 0);
	rn__publish_applied(&f->rn, 2, 1);
	assert_int_equal(store_snapshot(f->rn.st), 0);
}

static void fx_free(struct fx *f)
{
	store_close(f->rn.st);
	rn_replay_free(&f->rn.replay);
	pthread_mutex_destroy(&f->rn.smu);
	memdisk_free(f->md);
}

/* The leader's state at index 10, term 2: b=2, c=2. */
static void leader_snapshot(void **data, size_t *len)
{
	struct kv_op ops[2] = {
		{ .kind = KV_PUT, .key = "b", .klen = 1, .val = "2", .vlen = 1 },
		{ .kind = KV_PUT, .key = "c", .klen = 1, .val = "2", .vlen = 1 },
	};

	assert_int_equal(rn_snap_encode(ops, 2, KV_BATCH_MAX, data, len), 0);
}

/* The value of key (NULL: missing). */
static char *value_of(store *st, const char *key)
{
	static char v[16];
	kv_rec *r;

	if (store_get(st, key, strlen(key), 0, &r))
		return NULL;
	assert_true(kv_rec_size(r) < sizeof v);
	memcpy(v, kv_rec_value(r), kv_rec_size(r));
	v[kv_rec_size(r)] = 0;
	kv_rec_unref(r);
	return v;
}

/* want NULL: the key is missing. */
static void assert_value(store *st, const char *key, const char *want)
{
	const char *v = value_of(st, key);

	if (!want && v)
		fail_msg("key %s is %s, want it missing", key, v);
	if (want && !v)
		fail_msg("key %s is missing, want %s", key, want);
	if (want)
		assert_string_equal(v, want);
}

static void assert_old_state(struct fx *f)
{
	assert_int_equal(f->rn.applied_index, 2);
	assert_value(f->rn.st, "a", "1");
	assert_value(f->rn.st, "b", "1");
	assert_value(f->rn.st, "c", NULL);
}

/* A snapshot that does not decode, or holds a key the store refuses, is
 * refused before anything changes (the core then keeps the node up). */
/* Data that does not decode would not decode the next time either: the
 * replica fails (not RAFT_EREFUSED, which would have the leader send it
 * again forever), and nothing in the store changed. */
static void a_malformed_snapshot_fails_the_replica_and_changes_nothing(void **state)
{
	static const char garbage[] = "not a snapshot at all, not at all";
	struct kv_op bad = { .kind = KV_PUT, .key = "/x", .klen = 2, .val = "2", .vlen = 1 };
	struct fx f;
	void *data;
	size_t len;
	int rc;

	(void)state;
	fx_new(&f);
	rc = rn__snapshot_install(&f.rn, 10, 2, garbage, sizeof garbage);
	assert_true(rc < 0 && rc != RAFT_EREFUSED);
	assert_old_state(&f);
	assert_int_equal(rn_snap_encode(&bad, 1, KV_BATCH_MAX, &data, &len), 0);
	rc = rn__snapshot_install(&f.rn, 10, 2, data, len);
	assert_true(rc < 0 && rc != RAFT_EREFUSED);
	free(data);
	assert_old_state(&f);
	assert_int_equal(f.rn.snap_refusals, 0);
	/* The leader's next, good, snapshot goes in. */
	leader_snapshot(&data, &len);
	assert_int_equal(rn__snapshot_install(&f.rn, 10, 2, data, len), 0);
	free(data);
	assert_int_equal(f.rn.applied_index, 10);
	assert_value(f.rn.st, "a", NULL);
	assert_value(f.rn.st, "c", "2");
	fx_free(&f);
}

/* Another thread's store snapshot (the store's own, or the Raft layer's
 * periodic one) taken while the leader's state is in the map, then a power
 * cut before the RESET record is durable. */
static void snapshot_then_cut(struct fx *f)
{
	store_snapshot(f->rn.st); /* refused (-EBUSY) while an install holds them */
	memdisk_cut_at_sync(f->md, 1);
}

/* Cuts the power under the node's store and opens it again. */
static void power_cut(struct fx *f)
{
	store_close(f->rn.st);
	memdisk_crash(f->md);
	fx_open(f);
}

/* How many entries of the durable log a restart replays after `index`. */
static size_t replayed_after(struct fx *f, uint64_t index)
{
	struct raft_entry *ents;
	uint64_t *lsns;
	size_t n;

	assert_int_equal(rn_replay_build(&f->rn.replay, index, &ents, &lsns, &n), 0);
	free(ents);
	free(lsns);
	return n;
}

/* raft_node.h, 3.: until the RESET record is durable the install has not
 * happened. A store snapshot taken in between must not make it half
 * happen: the leader's map under the old applied index, with the old log
 * to replay over it. */
static void a_store_snapshot_during_an_install_does_not_outrun_the_reset(void **state)
{
	struct fx f;
	void *data;
	size_t len;
	int rc;

	(void)state;
	fx_new(&f);
	leader_snapshot(&data, &len);
	notify_fx = &f;
	notify_hook = snapshot_then_cut;
	rc = rn__snapshot_install(&f.rn, 10, 2, data, len);
	notify_hook = NULL;
	free(data);
	assert_int_not_equal(rc, 0);
	assert_int_not_equal(rc, RAFT_EREFUSED); /* the map had changed: fatal */
	power_cut(&f);
	assert_old_state(&f);
	assert_int_equal(replayed_after(&f, f.rn.applied_index), 1); /* entry 3 of the old log */
	fx_free(&f);
}

/* And a completed install survives a power cut: the leader's state, at its
 * index, with the old log gone. */
static void an_installed_snapshot_survives_a_power_cut(void **state)
{
	struct fx f;
	void *data;
	size_t len;

	(void)state;
	fx_new(&f);
	leader_snapshot(&data, &len);
	assert_int_equal(rn__snapshot_install(&f.rn, 10, 2, data, len), 0);
	free(data);
	power_cut(&f);
	assert_int_equal(f.rn.applied_index, 10);
	assert_int_equal(f.rn.applied_term, 2);
	assert_value(f.rn.st, "a", NULL);
	assert_value(f.rn.st, "b", "2");
	assert_value(f.rn.st, "c", "2");
	assert_int_equal(replayed_after(&f, 10), 0);
	fx_free(&f);
}

/* A write proposed at (index, term) waits in commitq for its entry to be
 * applied. When a snapshot covers the entry instead, the snapshot's term
 * tells: the same term means the proposal is in it, a later one leaves the
 * outcome unknown. */
static void await_at(struct fx *f, int slot, uint64_t index, uint64_t term)
{
	struct rn_wait *w = calloc(1, sizeof *w);

	assert_non_null(w);
	w->req = (struct node_req *)&req_slot[slot];
	w->index = index;
	w->term = term;
	TAILQ_INSERT_TAIL(&f->rn.commitq, w, link);
}

static void proposals_inside_an_installed_snapshot_are_told_by_its_term(void **state)
{
	struct rn_wait *w;
	struct fx f;
	void *data;
	size_t len;

	(void)state;
	memset(req_status, 0, sizeof req_status);
	fx_new(&f);
	await_at(&f, 0, 5, 2);  /* the snapshot's leader wrote it: committed */
	await_at(&f, 1, 10, 2); /* the snapshot's own last entry */
	await_at(&f, 2, 7, 1);  /* a deposed leader's: may have been replaced */
	await_at(&f, 3, 11, 2); /* after the snapshot: still waits */
	leader_snapshot(&data, &len);
	assert_int_equal(rn__snapshot_install(&f.rn, 10, 2, data, len), 0);
	free(data);
	assert_int_equal(req_status[0], 0 + 1);
	assert_int_equal(req_status[1], 0 + 1);
	assert_int_equal(req_status[2], -EIO + 1);
	assert_int_equal(req_status[3], 0);
	assert_int_equal(f.rn.nlost, 1);
	w = TAILQ_FIRST(&f.rn.commitq);
	assert_non_null(w);
	assert_int_equal(w->index, 11);
	rn__wait_finish(&f.rn, &f.rn.commitq, w, -ESHUTDOWN);
	fx_free(&f);
}

/* The same rule where the follower's own log was compacted past an entry
 * before the leader's answer for it came back. */
static void the_outcome_of_a_compacted_proposal_follows_the_log_s_base_term(void **state)
{
	(void)state;
	assert_int_equal(rn__outcome(7, 3, 7, 3), 0);    /* the entry itself */
	assert_int_equal(rn__outcome(7, 3, 7, 4), -EIO); /* replaced */
	assert_int_equal(rn__outcome(7, 3, 9, 3), 0);    /* base of the same term */
	assert_int_equal(rn__outcome(7, 3, 9, 4), -EIO); /* a later term: unknown */
	assert_int_equal(rn__outcome(7, 3, 9, 2), -EIO); /* older: not ours */
	assert_int_equal(rn__outcome(7, 3, 6, 3), -EIO); /* not past it yet */
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
		cmocka_unit_test(a_malformed_snapshot_fails_the_replica_and_changes_nothing),
		cmocka_unit_test(a_store_snapshot_during_an_install_does_not_outrun_the_reset),
		cmocka_unit_test(an_installed_snapshot_survives_a_power_cut),
		cmocka_unit_test(proposals_inside_an_installed_snapshot_are_told_by_its_term),
		cmocka_unit_test(the_outcome_of_a_compacted_proposal_follows_the_log_s_base_term),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
