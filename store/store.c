/*
 * store.c — the storage engine facade (store.h): group commit on top of the
 * WAL, the map and its apply step, snapshots and recovery.
 *
 * Write path. store_submit() encodes and checksums the batch outside any
 * lock, then under `mu` gives it the next lsn and write()s it into the log
 * (page cache), and queues a `pending` entry. One thread at a time is the
 * "leader": it takes the last appended lsn as target, drops `mu`, runs
 * fdatasync, retakes `mu`, detaches every pending entry up to the target and
 * completes them: applies them to the map in lsn order and runs the
 * callbacks. Batches appended while a sync is in flight wait for the next
 * leader and share its sync (group commit).
 *
 * Who leads: a thread blocked in store_write() becomes leader itself when no
 * sync is in flight (LevelDB's leader/follower writers): a lone writer pays
 * exactly one fdatasync and no thread hand-off. Batches submitted with
 * store_submit() wake the committer thread, which leads for them.
 *
 * Failure: the first failed write or sync stores its error in `failed`
 * (sticky). The leader that sees it fails every pending entry; later writes
 * are refused with the same error. A failed sync is never retried.
 *
 * Lock order: mu -> apply_mu -> map_lock; snap_mu is taken before all of
 * them. `mu` guards the log, the pending queue and the sync state; apply_mu
 * makes the completion of sync groups (apply + hook + callbacks) run one at a
 * time in lsn order, and lets a snapshot copy the map between two groups;
 * map_lock is the readers/writer lock of the map.
 */
#include "store/store.h"
#include "store/batch.h"
#include "store/crc32c.h"
#include "store/log.h"
#include "store/map.h"
#include "store/rec.h"
#include "store/rtab.h"
#include "store/snap.h"
#include "store/wal.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* WAL record types of the store itself. */
#define REC_BATCH          1 /* an encoded kv_batch, applied */
#define REC_BATCH_NOAPPLY  2 /* an encoded kv_batch, logged only */

struct pending {
	struct pending *next;
	uint64_t        lsn;
	uint8_t         type;
	store_done_fn   done;
	void           *arg;
	void           *rec;   /* WAL record: header + payload */
	size_t          len;
	struct waiter  *w;     /* set for store_write() */
};

/* A thread blocked in store_write(). It sleeps on its own condition
 * variable, so a finished sync wakes only the writers it completed plus the
 * one that leads the next sync — not all of them. done, queued and next are
 * guarded by mu; status is written by complete() while the waiter sleeps. */
struct waiter {
	int            done;
	int            status;
	int            queued;  /* its entry is still in the pending queue */
	pthread_cond_t cv;
	struct waiter *next;    /* in a leader's list of writers to wake */
};

struct store {
	const struct kvio *io;
	char              *dir;
	struct store_options opt;
	wal               *wal;

	pthread_mutex_t    mu;
	pthread_cond_t     commit_cv;  /* wakes the committer thread */
	pthread_cond_t     bg_cv;      /* wakes the snapshot thread */
	struct pending    *head, *tail;
	unsigned           async_pending; /* queued entries not from store_write */
	int                syncing;
	int                stop;
	int                snap_requested;
	int                failed;
	uint64_t           last_lsn, durable_lsn;
	uint64_t           syncs, records, log_since_snap;
	uint64_t           pin_lsn;
	pthread_t          committer, bg;
	int                threads;

	pthread_mutex_t    apply_mu;
	pthread_rwlock_t   map_lock;
	map               *map;
	uint64_t           ntomb;
	atomic_uint_fast64_t applied_lsn;
	uint64_t           map_gen;     /* counts applied batches (apply_mu) */
	store_apply_hook   hook;
	void              *hook_arg;

	pthread_mutex_t    snap_mu;
	uint64_t           snaps[2];    /* newest kept snapshots, [0] newest, 0 = none */
	uint64_t           snap_gen;    /* map_gen captured by the newest (snap_mu) */
	atomic_uint_fast64_t snapshots;
	void              *open_state;
	size_t             open_state_len;
	uint64_t           open_snap_lsn;
};

static void set_failed(store *st, int rc, const char *what)
{
	if (st->failed)
		return;
	st->failed = rc;
	LOG(LOG_ERROR, "store %s: %s failed: %s; store is now read-only", st->dir, what,
	    strerror(-rc));
}

/* ---- apply --------------------------------------------------------------- */

static void count_tomb(store *st, const kv_rec *r, int delta)
{
	if (r && (r->flags & KV_F_TOMBSTONE))
		st->ntomb += (uint64_t)(int64_t)delta;
}

/* Applies one op; map_lock held for writing. */
static int apply_op(store *st, const struct kv_op *op, uint64_t version, int hook)
{
	kv_rec *r, *old;
	int rc;

	switch (op->kind) {
	case KV_PUT:
		r = rec_new(op->key, op->klen, op->flags, version, &op->meta, op->ext,
			    op->ext_len, op->val, op->vlen);
		break;
	case KV_META:
		old = map_get(st->map, op->key, op->klen);
		if (!old)
			return 0;
		r = rec_with_meta(old, version, &op->meta, op->ext, op->ext_len);
		break;
	case KV_DEL:
		old = map_del(st->map, op->key, op->klen);
		if (old) {
			count_tomb(st, old, -1);
			if (hook && st->hook)
				st->hook(st->hook_arg, op->key, op->klen, old, NULL);
			kv_rec_unref(old);
		}
		return 0;
	default:
		return -EINVAL;
	}
	if (!r)
		return -ENOMEM;
	rc = map_put(st->map, r, &old);
	if (rc) {
		kv_rec_unref(r);
		return rc;
	}
	count_tomb(st, old, -1);
	count_tomb(st, r, 1);
	if (hook && st->hook)
		st->hook(st->hook_arg, op->key, op->klen, old, r);
	kv_rec_unref(old);
	return 0;
}

static int apply_ops(store *st, const struct kv_op *ops, uint32_t n, uint64_t version, int hook)
{
	for (uint32_t i = 0; i < n; i++) {
		int rc = apply_op(st, &ops[i], version, hook);

		if (rc)
			return rc;
	}
	return 0;
}

static int apply_encoded(store *st, const void *payload, size_t len, uint64_t lsn, int hook)
{
	struct kv_op *ops;
	uint32_t n;
	int rc = kv_batch_decode(payload, len, &ops, &n);

	if (rc)
		return rc;
	rc = apply_ops(st, ops, n, lsn, hook);
	free(ops);
	return rc;
}

/* Completes a detached group (apply_mu held, mu not held). status != 0 fails
 * them all. Returns an apply error, which the caller must make sticky (under
 * mu, which cannot be taken here: lock order). */
static int complete(store *st, struct pending *list, int status)
{
	struct pending *p, *next;
	int arc = 0;

	if (!status) {
		pthread_rwlock_wrlock(&st->map_lock);
		for (p = list; p; p = p->next) {
			if (p->type == REC_BATCH && !arc) {
				arc = apply_encoded(st, (char *)p->rec + WAL_REC_HDR,
						    p->len - WAL_REC_HDR, p->lsn, 1);
				st->map_gen++;
				/* On failure the batch is durable but not
				 * applied: the map no longer matches the log and
				 * the store must stop writing (caller). */
			}
			if (!arc)
				atomic_store(&st->applied_lsn, p->lsn);
		}
		pthread_rwlock_unlock(&st->map_lock);
	}
	for (p = list; p; p = next) {
		int s = status;

		next = p->next;
		if (!s && arc && p->type == REC_BATCH)
			s = arc;
		if (p->done)
			p->done(p->arg, s, p->lsn);
		free(p->rec);
		free(p);
	}
	return arc;
}

/* One round of group commit by the calling thread. mu held on entry and on
 * return; dropped while syncing and completing. */
static void leader_round(store *st)
{
	struct pending *list = NULL, **tailp = &list, *p;
	struct waiter *wake = NULL, *w;
	uint64_t target = st->last_lsn;
	int rc = st->failed;

	st->syncing = 1;
	/* No other sync can be in flight: retired segments are unused now. */
	wal_release_retired(st->wal);
	if (!rc && target > st->durable_lsn) {
		kvio_file *f = wal_sync_file(st->wal);

		pthread_mutex_unlock(&st->mu);
		rc = kvio_datasync(f);
		pthread_mutex_lock(&st->mu);
		st->syncs++;
		if (rc)
			set_failed(st, rc, "log sync");
		else
			st->durable_lsn = target;
	}
	/* On failure everything pending fails: what was not covered by a
	 * successful sync can never be acknowledged any more. */
	while ((p = st->head) && (rc || p->lsn <= target)) {
		st->head = p->next;
		if (p->w) {
			p->w->queued = 0;
			p->w->next = wake;
			wake = p->w;
		} else {
			st->async_pending--;
		}
		*tailp = p;
		tailp = &p->next;
		*tailp = NULL;
	}
	if (!st->head)
		st->tail = NULL;
	st->syncing = 0;
	pthread_mutex_lock(&st->apply_mu);
	pthread_mutex_unlock(&st->mu);
	rc = complete(st, list, rc);
	pthread_mutex_unlock(&st->apply_mu);
	pthread_mutex_lock(&st->mu);
	if (rc)
		set_failed(st, rc, "apply");
	/* Under mu: a waiter returns (and its struct vanishes) only after it
	 * has seen done under mu, so w is valid until we unlock. */
	while ((w = wake)) {
		wake = w->next;
		w->done = 1;
		pthread_cond_signal(&w->cv);
	}
	/* Hand the next sync to someone who waits for it. */
	if (st->head && !st->syncing) {
		if (st->head->w)
			pthread_cond_signal(&st->head->w->cv);
		else
			pthread_cond_signal(&st->commit_cv);
	}
	if (st->async_pending || (st->stop && st->head))
		pthread_cond_signal(&st->commit_cv);
}

static void *committer_main(void *arg)
{
	store *st = arg;

	pthread_mutex_lock(&st->mu);
	for (;;) {
		if (st->head && !st->syncing) {
			leader_round(st);
			continue;
		}
		if (st->stop && !st->head)
			break;
		pthread_cond_wait(&st->commit_cv, &st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

/* ---- submit -------------------------------------------------------------- */

/* Appends a record (rec: WAL_REC_HDR room + payload, ownership taken) and
 * queues its completion. With w, returns after completion (the status is in
 * w->status) — the calling thread leads a sync round when none is running. */
static int submit(store *st, uint8_t type, void *rec, size_t len, store_done_fn done,
		  void *arg, struct waiter *w)
{
	uint32_t pcrc = crc32c(0, (char *)rec + WAL_REC_HDR, len - WAL_REC_HDR);
	struct pending *p = malloc(sizeof *p);
	uint64_t lsn;
	int rc;

	if (!p) {
		free(rec);
		return -ENOMEM;
	}
	pthread_mutex_lock(&st->mu);
	rc = st->failed ? st->failed : st->stop ? -ESHUTDOWN : 0;
	if (rc)
		goto err;
	rc = wal_append(st->wal, type, rec, len, pcrc, &lsn);
	if (rc) {
		set_failed(st, rc, "log write");
		/* Whatever is pending must be failed by a leader now. */
		pthread_cond_signal(&st->commit_cv);
		goto err;
	}
	p->next = NULL;
	p->lsn = lsn;
	p->type = type;
	p->done = done;
	p->arg = arg;
	p->rec = rec;
	p->len = len;
	p->w = w;
	if (st->tail)
		st->tail->next = p;
	else
		st->head = p;
	st->tail = p;
	st->last_lsn = lsn;
	st->records++;
	st->log_since_snap += len;
	if (st->log_since_snap > st->opt.snapshot_log_bytes && !st->snap_requested) {
		st->snap_requested = 1;
		pthread_cond_signal(&st->bg_cv);
	}
	if (!w) {
		st->async_pending++;
		if (!st->syncing)
			pthread_cond_signal(&st->commit_cv);
		pthread_mutex_unlock(&st->mu);
		return 0;
	}
	w->queued = 1;
	while (!w->done) {
		if (w->queued && !st->syncing)
			leader_round(st);
		else
			pthread_cond_wait(&w->cv, &st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	return 0;
err:
	pthread_mutex_unlock(&st->mu);
	free(rec);
	free(p);
	return rc;
}

static int encode_batch(const struct kv_batch *b, void **rec, size_t *len)
{
	int rc = batch_check(b);

	if (rc)
		return rc;
	return batch_encode_room(b, WAL_REC_HDR, rec, len);
}

int store_submit(store *st, const struct kv_batch *b, unsigned flags, store_done_fn done,
		 void *arg)
{
	void *rec;
	size_t len;
	int rc = encode_batch(b, &rec, &len);

	if (rc)
		return rc;
	return submit(st, (flags & STORE_NO_APPLY) ? REC_BATCH_NOAPPLY : REC_BATCH, rec, len,
		      done, arg, NULL);
}

int store_submit_raw(store *st, uint8_t type, const void *payload, size_t len,
		     store_done_fn done, void *arg)
{
	char *rec;

	if (type < STORE_REC_USER)
		return -EINVAL;
	if (len > KV_VALUE_MAX + (size_t)KV_EXT_MAX + (1u << 20))
		return -EFBIG;
	rec = malloc(WAL_REC_HDR + len);
	if (!rec)
		return -ENOMEM;
	if (len)
		memcpy(rec + WAL_REC_HDR, payload, len);
	return submit(st, type, rec, WAL_REC_HDR + len, done, arg, NULL);
}

/* The waiter sleeps until the leader sets done under mu. */
static void write_done(void *arg, int status, uint64_t lsn)
{
	struct waiter *w = arg;

	(void)lsn;
	w->status = status;
}

int store_write(store *st, const struct kv_batch *b)
{
	struct waiter w = { .status = 0 };
	void *rec;
	size_t len;
	int rc = encode_batch(b, &rec, &len);

	if (rc)
		return rc;
	pthread_cond_init(&w.cv, NULL);
	rc = submit(st, REC_BATCH, rec, len, write_done, &w, &w);
	pthread_cond_destroy(&w.cv);
	return rc ? rc : w.status;
}

int store_apply(store *st, const struct kv_batch *b, uint64_t version)
{
	int rc = batch_check(b);

	if (rc)
		return rc;
	pthread_mutex_lock(&st->apply_mu);
	pthread_rwlock_wrlock(&st->map_lock);
	rc = apply_ops(st, b->ops, b->n, version, 1);
	st->map_gen++;
	pthread_rwlock_unlock(&st->map_lock);
	pthread_mutex_unlock(&st->apply_mu);
	return rc;
}

/* ---- reads --------------------------------------------------------------- */

int store_get(store *st, const char *key, size_t klen, int with_tombstones, kv_rec **out)
{
	kv_rec *r;
	int rc = -ENOENT;

	pthread_rwlock_rdlock(&st->map_lock);
	r = map_get(st->map, key, klen);
	if (r && (with_tombstones || !(r->flags & KV_F_TOMBSTONE))) {
		kv_rec_ref(r);
		*out = r;
		rc = 0;
	}
	pthread_rwlock_unlock(&st->map_lock);
	return rc;
}

static int has_prefix(const kv_rec *r, const char *prefix, size_t plen)
{
	return r->klen >= plen && !memcmp(rec_key(r), prefix, plen);
}

/* First record for a prefix walk; map_lock held. */
static kv_rec *walk_start(store *st, const char *prefix, size_t plen, const char *after,
			  size_t alen, map_iter *it)
{
	if (after && map_keycmp(after, alen, prefix, plen) >= 0)
		return map_seek(st->map, after, alen, 1, it);
	return map_seek(st->map, plen ? prefix : NULL, plen, 0, it);
}

int store_next(store *st, const char *prefix, size_t plen, const char *after, size_t alen,
	       int with_tombstones, char *keybuf, size_t *klen, kv_rec **out)
{
	map_iter it;
	kv_rec *r;
	int rc = -ENOENT;

	pthread_rwlock_rdlock(&st->map_lock);
	for (r = walk_start(st, prefix, plen, after, alen, &it); r && has_prefix(r, prefix, plen);
	     r = map_iter_next(&it)) {
		if (!with_tombstones && (r->flags & KV_F_TOMBSTONE))
			continue;
		memcpy(keybuf, rec_key(r), r->klen);
		keybuf[r->klen] = '\0';
		*klen = r->klen;
		kv_rec_ref(r);
		*out = r;
		rc = 0;
		break;
	}
	pthread_rwlock_unlock(&st->map_lock);
	return rc;
}

int store_scan(store *st, const char *prefix, size_t plen, const char *after, size_t alen,
	       int with_tombstones, store_scan_fn fn, void *arg)
{
	map_iter it;
	kv_rec *r;
	int rc = 0;

	pthread_rwlock_rdlock(&st->map_lock);
	for (r = walk_start(st, prefix, plen, after, alen, &it); r && has_prefix(r, prefix, plen);
	     r = map_iter_next(&it)) {
		if (!with_tombstones && (r->flags & KV_F_TOMBSTONE))
			continue;
		rc = fn(arg, rec_key(r), r->klen, r);
		if (rc)
			break;
	}
	pthread_rwlock_unlock(&st->map_lock);
	return rc;
}

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
		set_failed(st, rc, "snapshot");
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
		struct kv_op *ops = NULL;
		uint32_t n = 0;

		rc = kv_batch_decode(payload, len, &ops, &n);
		for (uint32_t i = 0; !rc && i < n; i++)
			rc = rtab_apply(c->tab, st->map, &ops[i], lsn);
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
	rc = -pthread_create(&st->committer, NULL, committer_main, st);
	if (rc)
		goto err;
	st->threads = 1;
	rc = -pthread_create(&st->bg, NULL, bg_main, st);
	if (rc)
		goto err;
	st->threads = 2;
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
	if (st->threads >= 1)
		pthread_join(st->committer, NULL);
	if (st->threads >= 2)
		pthread_join(st->bg, NULL);
	wal_close(st->wal);
	map_free(st->map);
	pthread_mutex_destroy(&st->mu);
	pthread_mutex_destroy(&st->apply_mu);
	pthread_mutex_destroy(&st->snap_mu);
	pthread_rwlock_destroy(&st->map_lock);
	pthread_cond_destroy(&st->commit_cv);
	pthread_cond_destroy(&st->bg_cv);
	free(st->open_state);
	free(st->dir);
	free(st);
}

/* ---- introspection ------------------------------------------------------- */

void store_set_apply_hook(store *st, store_apply_hook fn, void *arg)
{
	pthread_mutex_lock(&st->apply_mu);
	pthread_rwlock_wrlock(&st->map_lock);
	st->hook = fn;
	st->hook_arg = arg;
	pthread_rwlock_unlock(&st->map_lock);
	pthread_mutex_unlock(&st->apply_mu);
}

void store_pin_log(store *st, uint64_t pin_lsn)
{
	pthread_mutex_lock(&st->mu);
	st->pin_lsn = pin_lsn;
	pthread_mutex_unlock(&st->mu);
}

void store_get_stats(store *st, struct store_stats *out)
{
	memset(out, 0, sizeof *out);
	pthread_rwlock_rdlock(&st->map_lock);
	out->tombstones = st->ntomb;
	out->keys = map_count(st->map) - st->ntomb;
	pthread_rwlock_unlock(&st->map_lock);
	pthread_mutex_lock(&st->mu);
	out->last_lsn = st->last_lsn;
	out->durable_lsn = st->durable_lsn;
	out->syncs = st->syncs;
	out->records = st->records;
	out->log_bytes = st->log_since_snap;
	out->failed = st->failed;
	out->snapshot_lsn = st->snaps[0];
	pthread_mutex_unlock(&st->mu);
	out->applied_lsn = atomic_load(&st->applied_lsn);
	out->snapshots = atomic_load(&st->snapshots);
}

int store_failed(store *st)
{
	int rc;

	pthread_mutex_lock(&st->mu);
	rc = st->failed;
	pthread_mutex_unlock(&st->mu);
	return rc;
}

void store_snapshot_state(store *st, const void **ptr, size_t *len, uint64_t *lsn)
{
	if (ptr)
		*ptr = st->open_state;
	if (len)
		*len = st->open_state_len;
	if (lsn)
		*lsn = st->open_snap_lsn;
}

uint64_t store_applied_lsn(store *st)
{
	return atomic_load(&st->applied_lsn);
}
