/*
 * store.c — the storage engine facade (store.h): group commit on top of the
 * WAL, the map and its apply step, snapshots and recovery.
 *
 * Write path. store_submit() encodes and checksums the batch outside any
 * lock, then under `mu` gives it the next lsn, queues the record in the log
 * (wal_add: not written yet) and queues a `pending` entry. One thread at a
 * time is the "leader": it takes the last appended lsn as target, writes
 * every queued record with one pwritev (wal_flush), drops `mu`, runs
 * fdatasync, retakes `mu`, detaches every pending entry up to the target,
 * hands the next sync on to another thread and completes its group: applies
 * it to the map in lsn order and runs the callbacks. Batches appended while
 * a sync is in flight wait for the next leader and share its sync (group
 * commit); that next sync runs while the previous group is being applied.
 * Groups complete strictly in order (a ticket per group, `completed`).
 * A store with an owner (store_set_completer: the node's event loop) leaves
 * the completion of small async groups to the owner's thread instead: the
 * committer only syncs, pokes the owner and may lead the next sync at once,
 * and the owner applies and answers in store_complete(), without a second
 * thread hand-over.
 *
 * Who leads: a thread blocked in store_write() becomes leader itself when no
 * sync is in flight (LevelDB's leader/follower writers): a lone writer pays
 * exactly one fdatasync and no thread hand-off. Batches submitted with
 * store_submit() wake a committer thread, which leads for them; there are
 * two, so one can sync while the other completes.
 *
 * Failure: the first failed write or sync stores its error in `failed`
 * (sticky). The leader that sees it fails every pending entry; later writes
 * are refused with the same error. A failed sync is never retried.
 *
 * Lock order: mu -> apply_mu -> map_lock; snap_mu is taken before all of
 * them (a leader takes apply_mu only after dropping mu). `mu` guards the
 * log, the pending queue and the sync state; apply_mu with apply_cv makes the
 * completion of sync groups (apply + hook + callbacks) run one at a time in
 * lsn order, and lets a snapshot copy the map between two groups;
 * map_lock is the readers/writer lock of the map.
 */
#include "store/store_int.h"
#include "store/batch.h"
#include "store/crc32c.h"
#include "store/log.h"
#include "store/rec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void store__set_failed(store *st, int rc, const char *what)
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
	int rc = 0;

	for (uint32_t i = 0; i < n && !rc; i++)
		rc = apply_op(st, &ops[i], version, hook);
	if (hook && st->hook)
		st->hook(st->hook_arg, NULL, 0, NULL, NULL); /* the batch is complete */
	return rc;
}

static int apply_encoded(store *st, const void *payload, size_t len, uint64_t lsn, int hook)
{
	struct kv_op room[8], *ops;
	uint32_t n;
	int rc = batch_decode_buf(payload, len, room, 8, &ops, &n);

	if (rc)
		return rc;
	rc = apply_ops(st, ops, n, lsn, hook);
	if (ops != room)
		free(ops);
	return rc;
}

/* Applies a detached group to the map (apply_mu held, mu not held) unless
 * status fails it. Returns an apply error, which the caller must make
 * sticky (under mu, which cannot be taken here: lock order). */
static int apply_group(store *st, struct pending *list, int status)
{
	struct pending *p;
	int arc = 0;

	if (status)
		return 0;
	pthread_rwlock_wrlock(&st->map_lock);
	for (p = list; p; p = p->next) {
		if (p->type == REC_BATCH && !arc) {
			arc = apply_encoded(st, (char *)p->rec + WAL_REC_HDR, p->len - WAL_REC_HDR,
					    p->lsn, 1);
			st->map_gen++;
			/* On failure the batch is durable but not applied:
			 * the map no longer matches the log and the store
			 * must stop writing (caller). */
		}
		if (!arc)
			atomic_store(&st->applied_lsn, p->lsn);
	}
	pthread_rwlock_unlock(&st->map_lock);
	return arc;
}

/* Runs the callbacks of an applied (or failed) group and frees it. arc is
 * apply_group()'s result: the batches it could not apply fail with it. */
static void finish_group(struct pending *list, int status, int arc)
{
	struct pending *p, *next;

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
}

/* Whether the oldest entry may start a sync now: not when it is a
 * STORE_LATER batch its submitter has not kicked yet (nor anything eager
 * waits behind it). mu held. */
static int head_ready(const store *st)
{
	const struct pending *p = st->head;

	return p && (!p->later || p->lsn <= st->kick_lsn || st->eager_pending || st->stop);
}

/* Wakes whoever should lead the next sync, if entries wait for one: the
 * writer of the oldest entry when it blocks in store_write(), else a
 * committer thread. mu held. */
static void hand_off(store *st)
{
	if (!head_ready(st) || st->syncing)
		return;
	if (st->head->w)
		pthread_cond_signal(&st->head->w->cv);
	else
		pthread_cond_signal(&st->commit_cv);
}

/* Pokes the owner when the oldest group left to it is next to complete
 * (apply_mu held). */
static void poke_owner_if_due(store *st)
{
	if (st->owner_notify && st->deferred && st->deferred->group == st->completed)
		st->owner_notify(st->owner_arg);
}

/* Completes group number `group` after every earlier group, so batches are
 * applied and acknowledged in lsn order although two threads (and the
 * owner's, store_set_completer) complete groups. An apply error fails this
 * group and every later one (their batches are durable but can no longer be
 * applied in order). Takes and drops apply_mu; returns the apply error to
 * make sticky. */
static int complete_in_order(store *st, uint64_t group, struct pending *list, int status)
{
	int arc;

	pthread_mutex_lock(&st->apply_mu);
	while (st->completed != group)
		pthread_cond_wait(&st->apply_cv, &st->apply_mu);
	if (!status)
		status = st->apply_failed;
	arc = apply_group(st, list, status);
	finish_group(list, status, arc);
	if (arc && !st->apply_failed)
		st->apply_failed = arc;
	st->completed++;
	pthread_cond_broadcast(&st->apply_cv);
	poke_owner_if_due(st); /* its groups may have waited for this one */
	pthread_mutex_unlock(&st->apply_mu);
	return arc;
}

/* Leaves a synced group to the owner's thread, when the store has one.
 * Returns 0 when the caller must complete it itself. The owner is told
 * under apply_mu: it cannot complete the group (and, its last request done,
 * release what owner_arg points to) before the call has returned. */
static int defer_group(store *st, uint64_t group, struct pending *list, int status,
		       int by_owner)
{
	struct dgroup *g, **pp;

	pthread_mutex_lock(&st->apply_mu);
	if (!st->owner_notify || !(g = malloc(sizeof *g))) {
		pthread_mutex_unlock(&st->apply_mu);
		return 0;
	}
	*g = (struct dgroup){ .group = group, .list = list, .status = status };
	/* Two committers may hand over their groups out of ticket order. */
	for (pp = &st->deferred; *pp && (*pp)->group < group; pp = &(*pp)->next)
		;
	g->next = *pp;
	*pp = g;
	if (!by_owner)
		poke_owner_if_due(st);
	pthread_mutex_unlock(&st->apply_mu);
	return 1;
}

/* Whether a detached group is the owner's to complete: no store_write()
 * caller waits for one of its entries (its thread completes its own group)
 * and their records hold at most STORE_OWNER_GROUP_MAX bytes. (The same
 * test for the whole queue, owner_may_sync, runs on counts kept as
 * entries come and go: the owner asks on every loop iteration.) */
static int fits_owner(const struct pending *p)
{
	size_t bytes = 0;

	for (; p; p = p->next)
		if (p->w || (bytes += p->len) > STORE_OWNER_GROUP_MAX)
			return 0;
	return 1;
}

/* One round of group commit by the calling thread. mu held on entry and on
 * return; dropped while syncing and completing. The next sync is handed on
 * as soon as this one has returned, so it runs while this group is applied
 * (the apply, search index updates included, costs about as much CPU time
 * as a sync takes). by_owner: the store's owner leads (store_kick_here)
 * and completes the group itself right after. */
static void leader_round(store *st, int by_owner)
{
	struct pending *list = NULL, **tailp = &list, *p;
	struct waiter *wake = NULL, *w;
	uint64_t target = st->last_lsn, group;
	int rc = st->failed;

	st->syncing = 1;
	/* No other sync can be in flight: retired segments are unused now. */
	wal_release_retired(st->wal);
	/* The group's records go out in one write, then one sync covers them. */
	if (!rc && target > st->durable_lsn) {
		rc = wal_flush(st->wal);
		if (rc)
			store__set_failed(st, rc, "log write");
	}
	if (!rc && target > st->durable_lsn) {
		kvio_file *f = wal_sync_file(st->wal);

		pthread_mutex_unlock(&st->mu);
		rc = kvio_datasync(f);
		pthread_mutex_lock(&st->mu);
		st->syncs++;
		if (rc)
			store__set_failed(st, rc, "log sync");
		else
			st->durable_lsn = target;
	}
	/* On failure everything pending fails: what was not covered by a
	 * successful sync can never be acknowledged any more. */
	while ((p = st->head) && (rc || p->lsn <= target)) {
		st->head = p->next;
		st->queued_bytes -= p->len;
		if (p->w) {
			st->waiting--;
			p->w->queued = 0;
			p->w->next = wake;
			wake = p->w;
		} else {
			st->async_pending--;
			if (!p->later)
				st->eager_pending--;
		}
		*tailp = p;
		tailp = &p->next;
		*tailp = NULL;
	}
	if (!st->head)
		st->tail = NULL;
	st->syncing = 0;
	group = st->groups++;
	hand_off(st);
	pthread_mutex_unlock(&st->mu);
	if (fits_owner(list) && defer_group(st, group, list, rc, by_owner))
		rc = 0;
	else
		rc = complete_in_order(st, group, list, rc);
	pthread_mutex_lock(&st->mu);
	if (rc)
		store__set_failed(st, rc, "apply");
	/* Under mu: a waiter returns (and its struct vanishes) only after it
	 * has seen done under mu, so w is valid until we unlock. */
	while ((w = wake)) {
		wake = w->next;
		w->done = 1;
		pthread_cond_signal(&w->cv);
	}
	hand_off(st);
	if (st->async_pending || (st->stop && st->head))
		pthread_cond_signal(&st->commit_cv);
}

void *store__committer_main(void *arg)
{
	store *st = arg;

	pthread_setname_np(pthread_self(), "kvfs-commit");
	pthread_mutex_lock(&st->mu);
	for (;;) {
		if (head_ready(st) && !st->syncing) {
			leader_round(st, 0);
			continue;
		}
		if (st->stop && !st->head)
			break;
		pthread_cond_wait(&st->commit_cv, &st->mu);
	}
	/* The other committer may sleep since before the last round emptied
	 * the queue: it must see `stop` too. */
	pthread_cond_broadcast(&st->commit_cv);
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

/* ---- submit -------------------------------------------------------------- */

/* Appends a record (rec: WAL_REC_HDR room + payload, len bytes in all;
 * pcrc the CRC of the payload; ownership taken, whatever happens) and
 * queues its completion. With w, returns after completion (the status is in
 * w->status) — the calling thread leads a sync round when none is running. */
static int submit(store *st, uint8_t type, void *rec, size_t len, uint32_t pcrc,
		  store_done_fn done, void *arg, struct waiter *w, int later)
{
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
	rc = wal_add(st->wal, type, rec, len, pcrc, &lsn);
	if (rc) {
		store__set_failed(st, rc, "log write");
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
	p->later = !w && later;
	if (st->tail)
		st->tail->next = p;
	else
		st->head = p;
	st->tail = p;
	st->queued_bytes += len;
	st->waiting += w != NULL;
	st->last_lsn = lsn;
	st->records++;
	st->log_since_snap += len;
	if (st->log_since_snap > st->opt.snapshot_log_bytes && !st->snap_requested) {
		st->snap_requested = 1;
		pthread_cond_signal(&st->bg_cv);
	}
	if (!w) {
		st->async_pending++;
		if (!later) {
			st->eager_pending++;
			if (!st->syncing)
				pthread_cond_signal(&st->commit_cv);
		}
		pthread_mutex_unlock(&st->mu);
		return 0;
	}
	w->queued = 1;
	while (!w->done) {
		if (w->queued && !st->syncing)
			leader_round(st, 0);
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

static uint32_t payload_crc(const void *rec, size_t len)
{
	return crc32c(0, (const char *)rec + WAL_REC_HDR, len - WAL_REC_HDR);
}

int store_prepare(const struct kv_batch *b, struct store_prepared *out)
{
	int rc = batch_check(b);

	out->rec = NULL;
	if (rc)
		return rc;
	rc = batch_encode_room(b, WAL_REC_HDR, &out->rec, &out->len);
	if (rc)
		return rc;
	out->crc = payload_crc(out->rec, out->len);
	return 0;
}

void store_prepared_free(struct store_prepared *p)
{
	free(p->rec);
	p->rec = NULL;
}

int store_submit_prepared(store *st, struct store_prepared *pr, unsigned flags,
			  store_done_fn done, void *arg)
{
	void *rec = pr->rec;

	pr->rec = NULL;
	if (!rec)
		return -EINVAL;
	return submit(st, (flags & STORE_NO_APPLY) ? REC_BATCH_NOAPPLY : REC_BATCH, rec, pr->len,
		      pr->crc, done, arg, NULL, !!(flags & STORE_LATER));
}

int store_submit(store *st, const struct kv_batch *b, unsigned flags, store_done_fn done,
		 void *arg)
{
	struct store_prepared pr;
	int rc = store_prepare(b, &pr);

	return rc ? rc : store_submit_prepared(st, &pr, flags, done, arg);
}

/* Applies the owner's groups that are next in ticket order (apply_mu
 * held) and moves them to *done, in order, for their callbacks. Returns
 * the first apply error. */
static int apply_deferred_locked(store *st, struct dgroup ***done)
{
	struct dgroup *g;
	int arc = 0;

	while ((g = st->deferred) && g->group == st->completed) {
		int a;

		st->deferred = g->next;
		if (!g->status)
			g->status = st->apply_failed;
		a = g->arc = apply_group(st, g->list, g->status);
		if (a && !st->apply_failed)
			st->apply_failed = arc = a;
		st->completed++;
		g->next = NULL;
		**done = g;
		*done = &g->next;
	}
	pthread_cond_broadcast(&st->apply_cv);
	return arc;
}

static void finish_deferred(store *st, struct dgroup *g, int arc)
{
	struct dgroup *next;

	for (; g; g = next) {
		next = g->next;
		finish_group(g->list, g->status, g->arc);
		free(g);
	}
	if (arc) {
		pthread_mutex_lock(&st->mu);
		store__set_failed(st, arc, "apply");
		pthread_mutex_unlock(&st->mu);
	}
}

void store_complete(store *st)
{
	struct dgroup *done = NULL, **tail = &done;
	int arc;

	pthread_mutex_lock(&st->apply_mu);
	arc = apply_deferred_locked(st, &tail);
	pthread_mutex_unlock(&st->apply_mu);
	finish_deferred(st, done, arc);
}

void store_set_completer(store *st, void (*notify)(void *), void *arg)
{
	struct dgroup *done = NULL, **tail = &done;
	int arc = 0;

	pthread_mutex_lock(&st->apply_mu);
	st->owner_notify = notify;
	st->owner_arg = arg;
	/* Without an owner now, what it was left is completed here, each
	 * group in its turn (a committer completes the ones between). */
	while (!notify && st->deferred) {
		if (st->deferred->group == st->completed) {
			int a = apply_deferred_locked(st, &tail);

			arc = arc ? arc : a;
		} else
			pthread_cond_wait(&st->apply_cv, &st->apply_mu);
	}
	pthread_mutex_unlock(&st->apply_mu);
	finish_deferred(st, done, arc);
}

/* Releases the held batches for syncing and wakes a committer if none is
 * syncing. mu held. */
static void kick_locked(store *st)
{
	st->kick_lsn = st->last_lsn;
	if (!st->syncing && st->head)
		pthread_cond_signal(&st->commit_cv);
}

/* Whether the owner may sync what is queued on its own thread: no sync in
 * flight, and the queue is the owner's to complete (as fits_owner).
 * owner_notify is the caller's own setting (apply_mu guards it against the
 * committers, which do not write it). mu held. */
static int owner_may_sync(const store *st)
{
	return !st->syncing && st->head && st->owner_notify && !st->waiting &&
	       st->queued_bytes <= STORE_OWNER_GROUP_MAX;
}

int store_owner_may_sync(store *st)
{
	int may;

	pthread_mutex_lock(&st->mu);
	may = owner_may_sync(st);
	pthread_mutex_unlock(&st->mu);
	return may;
}

int store_kick_here(store *st)
{
	int led = 0;

	pthread_mutex_lock(&st->mu);
	st->kick_lsn = st->last_lsn;
	if (owner_may_sync(st) && head_ready(st)) {
		leader_round(st, 1); /* no poke: it completes below */
		led = 1;
	} else {
		kick_locked(st);
	}
	pthread_mutex_unlock(&st->mu);
	if (led)
		store_complete(st);
	return led;
}

void store_kick(store *st)
{
	pthread_mutex_lock(&st->mu);
	kick_locked(st);
	pthread_mutex_unlock(&st->mu);
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
	return submit(st, type, rec, WAL_REC_HDR + len, payload_crc(rec, WAL_REC_HDR + len), done,
		      arg, NULL, 0);
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
	struct store_prepared pr;
	int rc = store_prepare(b, &pr);

	if (rc)
		return rc;
	pthread_cond_init(&w.cv, NULL);
	rc = submit(st, REC_BATCH, pr.rec, pr.len, pr.crc, write_done, &w, &w, 0);
	pthread_cond_destroy(&w.cv);
	return rc ? rc : w.status;
}

static int apply_checked(store *st, const struct kv_batch *b, uint64_t version)
{
	int rc;

	pthread_mutex_lock(&st->apply_mu);
	pthread_rwlock_wrlock(&st->map_lock);
	rc = apply_ops(st, b->ops, b->n, version, 1);
	st->map_gen++;
	pthread_rwlock_unlock(&st->map_lock);
	pthread_mutex_unlock(&st->apply_mu);
	return rc;
}

int store_apply(store *st, const struct kv_batch *b, uint64_t version)
{
	int rc = batch_check(b);

	return rc ? rc : apply_checked(st, b, version);
}

int store_apply_large(store *st, const struct kv_batch *b, uint64_t version)
{
	struct kv_batch part;
	int rc;

	/* batch_check() by parts of at most KV_BATCH_MAX operations. */
	for (uint32_t i = 0; i < b->n; i += part.n) {
		part.ops = b->ops + i;
		part.n = b->n - i < KV_BATCH_MAX ? b->n - i : KV_BATCH_MAX;
		if ((rc = batch_check(&part)))
			return rc;
	}
	return apply_checked(st, b, version);
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

void store_get_many(store *st, size_t n, const char *const *keys, const size_t *klens,
		    kv_rec **out)
{
	pthread_rwlock_rdlock(&st->map_lock);
	for (size_t i = 0; i < n; i++) {
		kv_rec *r = map_get(st->map, keys[i], klens[i]);

		out[i] = r && !(r->flags & KV_F_TOMBSTONE) ? r : NULL;
		if (out[i])
			kv_rec_ref(r);
	}
	pthread_rwlock_unlock(&st->map_lock);
}

int store_maybe_dir(store *st, const char *key, size_t klen)
{
	int rc;

	pthread_rwlock_rdlock(&st->map_lock);
	rc = map_maybe_dir(st->map, key, klen);
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
