/*
 * store_snap.c — the store facade's snapshots (taken on a background thread
 * from a copy of the record pointers, see store.h) and its life cycle:
 * store_open() recovery (newest usable snapshot, then log replay through the
 * recovery table) and store_close(). Lock order as in store.c.
 */
#include "store/store_int.h"
#include "store/batch.h"
#include "store/log.h"
#include "store/rec.h"
#include "store/rtab.h"
#include "store/snap.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- snapshots ----------------------------------------------------------- */

static int capture_state(store *st, void **buf, size_t *len)
{
	size_t cap = 4096, n;
	void *b;

	*buf = NULL;
	*len = 0;
	if (!st->opt.snap_state)
		return 0;
	for (;;) {
		b = malloc(cap);
		if (!b)
			return -ENOMEM;
		n = st->opt.snap_state(st->opt.snap_state_arg, b, cap);
		if (n <= cap)
			break;
		free(b);
		cap = n;
	}
	*buf = b;
	*len = n;
	return 0;
}

/* Drops snapshots older than the two newest and the log segments that neither
 * of them (nor the log pin) needs. Keeping the previous snapshot and the log
 * after it is what lets recovery fall back when the newest one is corrupt. */
static void collect_garbage(store *st, uint64_t dropped_snap)
{
	uint64_t limit = st->snaps[1] ? st->snaps[1] + 1 : 0;
	char **paths = NULL;
	size_t n = 0;
	int rc;

	if (dropped_snap) {
		rc = snap_remove(st->io, st->dir, dropped_snap);
		if (rc && rc != -ENOENT)
			LOG(LOG_WARN, "store %s: cannot remove old snapshot: %s", st->dir,
			    strerror(-rc));
	}
	pthread_mutex_lock(&st->mu);
	if (st->pin_lsn && st->pin_lsn < limit)
		limit = st->pin_lsn;
	if (limit)
		rc = wal_drop_before(st->wal, limit, &paths, &n);
	pthread_mutex_unlock(&st->mu);
	for (size_t i = 0; i < n; i++) {
		rc = st->io->unlink(st->io, paths[i]);
		if (rc)
			LOG(LOG_WARN, "store: cannot remove %s: %s", paths[i], strerror(-rc));
		free(paths[i]);
	}
	free(paths);
	if (n || dropped_snap)
		st->io->sync_dir(st->io, st->dir);
}

static int do_snapshot(store *st)
{
	struct snap_image img = { 0 };
	uint64_t gen;
	void *state = NULL;
	size_t cap = 0;
	map_iter it;
	kv_rec *r;
	int rc;

	pthread_mutex_lock(&st->snap_mu);
	if (st->snap_holds) {
		/* Left as due: the automatic trigger fires again with the next
		 * record, as the log since the last snapshot is still long. */
		pthread_mutex_unlock(&st->snap_mu);
		return -EBUSY;
	}
	pthread_mutex_lock(&st->mu);
	rc = st->failed;
	st->log_since_snap = 0;
	pthread_mutex_unlock(&st->mu);
	if (rc)
		goto out;

	/* The short copy step: between two apply groups, take a reference on
	 * every record (they are immutable) and the application state. */
	pthread_mutex_lock(&st->apply_mu);
	pthread_rwlock_rdlock(&st->map_lock);
	cap = map_count(st->map);
	img.recs = malloc((cap ? cap : 1) * sizeof *img.recs);
	if (img.recs) {
		for (r = map_seek(st->map, NULL, 0, 0, &it); r; r = map_iter_next(&it)) {
			kv_rec_ref(r);
			img.recs[img.n++] = r;
		}
	}
	pthread_rwlock_unlock(&st->map_lock);
	img.lsn = atomic_load(&st->applied_lsn);
	gen = st->map_gen;
	rc = img.recs ? capture_state(st, &state, &img.state_len) : -ENOMEM;
	pthread_mutex_unlock(&st->apply_mu);
	if (rc)
		goto out;
	img.state = state;
	/* Nothing new: neither a record completed nor the map changed (Raft
	 * applies with store_apply() without new records). */
	if (img.lsn == st->snaps[0] && gen == st->snap_gen)
		goto out;

	rc = snap_write(st->io, st->dir, &img);
	if (rc) {
		pthread_mutex_lock(&st->mu);
		store__set_failed(st, rc, "snapshot");
		pthread_mutex_unlock(&st->mu);
		goto out;
	}
	{
		uint64_t dropped;

		pthread_mutex_lock(&st->mu);
		dropped = 0;
		/* Same lsn: the rename replaced the newest file in place. */
		if (img.lsn != st->snaps[0]) {
			dropped = st->snaps[1];
			st->snaps[1] = st->snaps[0];
			st->snaps[0] = img.lsn;
		}
		pthread_mutex_unlock(&st->mu);
		st->snap_gen = gen;
		atomic_fetch_add(&st->snapshots, 1);
		collect_garbage(st, dropped);
	}
out:
	for (size_t i = 0; i < img.n; i++)
		kv_rec_unref(img.recs[i]);
	free(img.recs);
	free(state);
	pthread_mutex_unlock(&st->snap_mu);
	return rc;
}

static void *bg_main(void *arg)
{
	store *st = arg;

	pthread_setname_np(pthread_self(), "kvfs-snapshot");
	pthread_mutex_lock(&st->mu);
	for (;;) {
		while (!st->stop && !st->snap_requested)
			pthread_cond_wait(&st->bg_cv, &st->mu);
		if (st->stop)
			break;
		pthread_mutex_unlock(&st->mu);
		do_snapshot(st);
		pthread_mutex_lock(&st->mu);
		st->snap_requested = 0;
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

int store_snapshot(store *st)
{
	return do_snapshot(st);
}

void store_hold_snapshots(store *st)
{
	/* snap_mu is held for a whole snapshot: taking it waits for the one
	 * being written, if any. */
	pthread_mutex_lock(&st->snap_mu);
	st->snap_holds++;
	pthread_mutex_unlock(&st->snap_mu);
}

void store_release_snapshots(store *st)
{
	pthread_mutex_lock(&st->snap_mu);
	st->snap_holds--;
	pthread_mutex_unlock(&st->snap_mu);
}

/* ---- open / close -------------------------------------------------------- */

struct replay_ctx {
	store   *st;
	uint64_t base; /* lsn of the loaded snapshot */
	rtab    *tab;  /* the replayed state, applied to the map at the end */
};

static int replay_one(void *arg, uint8_t type, uint64_t lsn, const void *payload, size_t len)
{
	struct replay_ctx *c = arg;
	store *st = c->st;
	int rc;

	/* Opaque records go to the upper layer even when older than the
	 * snapshot: Raft rebuilds its log from them. */
	if (type >= STORE_REC_USER)
		return st->opt.replay ? st->opt.replay(st->opt.replay_arg, type, lsn, payload, len)
				      : 0;
	if (lsn <= c->base)
		return 0;
	st->log_since_snap += WAL_REC_HDR + len;
	if (type != REC_BATCH)
		return 0;
	{
		struct kv_op room[8], *ops = NULL;
		uint32_t n = 0;

		rc = batch_decode_buf(payload, len, room, 8, &ops, &n);
		for (uint32_t i = 0; !rc && i < n; i++)
			rc = rtab_apply(c->tab, st->map, &ops[i], lsn);
		if (ops != room)
			free(ops);
	}
	if (rc) {
		LOG(LOG_ERROR, "store %s: cannot apply batch lsn %" PRIu64 ": %s", st->dir, lsn,
		    strerror(-rc));
		return rc == -EBADMSG ? -EUCLEAN : rc;
	}
	atomic_store(&st->applied_lsn, lsn);
	st->map_gen++;
	return 0;
}

/* Loads the newest usable snapshot into st->map; *base is its lsn (0: none). */
static int load_snapshot(store *st, uint64_t *base)
{
	uint64_t first = wal_first_lsn(st->wal), *lsns = NULL;
	size_t n = 0, i;
	int rc = snap_list(st->io, st->dir, &lsns, &n);

	*base = 0;
	if (rc)
		return rc;
	for (i = 0; i < n; i++) {
		void *state;
		size_t slen;

		/* The log must continue where the snapshot ends. */
		if (first && first > lsns[i] + 1) {
			LOG(LOG_ERROR, "store %s: snapshot %" PRIu64 " cannot be used: the log "
			    "starts at lsn %" PRIu64, st->dir, lsns[i], first);
			continue;
		}
		rc = snap_load(st->io, st->dir, lsns[i], st->map, &state, &slen, &st->ntomb);
		if (!rc) {
			*base = lsns[i];
			st->open_state = state;
			st->open_state_len = slen;
			st->snaps[0] = lsns[i];
			st->snaps[1] = i + 1 < n ? lsns[i + 1] : 0;
			break;
		}
		if (rc != -EUCLEAN)
			goto out;
		LOG(LOG_WARN, "store %s: falling back to an older snapshot", st->dir);
		map_free(st->map);
		st->map = map_new(0);
		if (!st->map) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = 0;
	if (i == n && first > 1) {
		LOG(LOG_ERROR, "store %s: no usable snapshot and the log starts at lsn %" PRIu64
		    ", not 1: cannot recover", st->dir, first);
		rc = -EUCLEAN;
	}
out:
	free(lsns);
	return rc;
}

/* Recovery runs on the opening thread alone: its CPU time shows the cost
 * even on a loaded machine where wall time does not. */
static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int store_open(const char *dir, const struct store_options *opt, store **out)
{
	double t0 = cpu_now(), t1, t2, t3;
	struct replay_ctx rctx;
	uint64_t base;
	store *st;
	int rc;

	log_init_from_env();
	st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	if (opt)
		st->opt = *opt;
	st->io = st->opt.io ? st->opt.io : kvio_posix();
	if (!st->opt.segment_bytes)
		st->opt.segment_bytes = 64u << 20;
	if (!st->opt.snapshot_log_bytes)
		st->opt.snapshot_log_bytes = 256u << 20;
	st->hook = st->opt.apply_hook;
	st->hook_arg = st->opt.apply_hook_arg;
	atomic_init(&st->applied_lsn, 0);
	atomic_init(&st->snapshots, 0);
	pthread_mutex_init(&st->mu, NULL);
	pthread_mutex_init(&st->apply_mu, NULL);
	pthread_mutex_init(&st->snap_mu, NULL);
	pthread_rwlock_init(&st->map_lock, NULL);
	pthread_cond_init(&st->commit_cv, NULL);
	pthread_cond_init(&st->apply_cv, NULL);
	pthread_cond_init(&st->bg_cv, NULL);
	st->dir = strdup(dir);
	st->map = map_new(0);
	if (!st->dir || !st->map) {
		rc = -ENOMEM;
		goto err;
	}
	rc = st->io->mkdir(st->io, dir, 0755);
	if (rc && rc != -EEXIST) {
		LOG(LOG_ERROR, "store: cannot create %s: %s", dir, strerror(-rc));
		goto err;
	}
	rc = wal_open(st->io, dir, st->opt.segment_bytes, &st->wal);
	if (rc) {
		LOG(LOG_ERROR, "store: cannot list %s: %s", dir, strerror(-rc));
		goto err;
	}
	if (st->opt.wal_prealloc != SIZE_MAX)
		wal_set_prealloc(st->wal, st->opt.wal_prealloc ? st->opt.wal_prealloc : 1u << 20);
	rc = load_snapshot(st, &base);
	if (rc)
		goto err;
	t1 = cpu_now();
	st->open_snap_lsn = base;
	atomic_store(&st->applied_lsn, base);
	rctx.st = st;
	rctx.base = base;
	rctx.tab = rtab_new();
	if (!rctx.tab) {
		rc = -ENOMEM;
		goto err;
	}
	/* Without a replay callback nobody needs the records a snapshot covers. */
	rc = wal_recover(st->wal, base + 1, st->opt.replay ? 0 : base + 1, replay_one, &rctx);
	t2 = cpu_now();
	if (!rc) {
		int64_t dt;

		rc = rtab_flush(rctx.tab, st->map, &dt);
		st->ntomb += (uint64_t)dt;
	}
	rtab_free(rctx.tab);
	if (rc)
		goto err;
	if (wal_next_lsn(st->wal) <= base) {
		LOG(LOG_ERROR, "store %s: the log ends at lsn %" PRIu64 ", before snapshot %"
		    PRIu64, dir, wal_next_lsn(st->wal) - 1, base);
		rc = -EUCLEAN;
		goto err;
	}
	st->last_lsn = st->durable_lsn = wal_next_lsn(st->wal) - 1;
	/* Every record in the log has been processed now. */
	atomic_store(&st->applied_lsn, st->last_lsn);
	/* Recovery buffers (segments, the replay table) were large: give the
	 * memory back instead of keeping it in the heap for the process life. */
	malloc_trim(0);
	t3 = cpu_now();
	LOG(LOG_INFO, "store %s: %zu keys; CPU s: snapshot %" PRIu64 " loaded %.3f, log to lsn %"
	    PRIu64 " read %.3f, applied %.3f", dir, map_count(st->map), base, t1 - t0,
	    st->last_lsn, t2 - t1, t3 - t2);
	for (int i = 0; i < STORE_COMMITTERS; i++) {
		rc = -pthread_create(&st->committer[i], NULL, store__committer_main, st);
		if (rc)
			goto err;
		st->ncommitters++;
	}
	rc = -pthread_create(&st->bg, NULL, bg_main, st);
	if (rc)
		goto err;
	st->bg_started = 1;
	*out = st;
	return 0;
err:
	store_close(st);
	return rc;
}

void store_close(store *st)
{
	if (!st)
		return;
	pthread_mutex_lock(&st->mu);
	st->stop = 1;
	pthread_cond_broadcast(&st->commit_cv);
	pthread_cond_broadcast(&st->bg_cv);
	pthread_mutex_unlock(&st->mu);
	/* An owner that did not say goodbye: its groups are completed here
	 * (the committers may wait for them to take their turn). */
	store_set_completer(st, NULL, NULL);
	for (int i = 0; i < st->ncommitters; i++)
		pthread_join(st->committer[i], NULL);
	if (st->bg_started)
		pthread_join(st->bg, NULL);
	wal_close(st->wal);
	map_free(st->map);
	pthread_mutex_destroy(&st->mu);
	pthread_mutex_destroy(&st->apply_mu);
	pthread_mutex_destroy(&st->snap_mu);
	pthread_rwlock_destroy(&st->map_lock);
	pthread_cond_destroy(&st->commit_cv);
	pthread_cond_destroy(&st->apply_cv);
	pthread_cond_destroy(&st->bg_cv);
	free(st->open_state);
	free(st->dir);
	free(st);
}

