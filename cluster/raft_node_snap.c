/*
 * raft_node_snap.c — snapshots of the Raft layer's state machine (the store's
 * map): building one for a lagging follower (io->snapshot_get) and installing
 * one from the leader (io->snapshot_install, thesis §5). Durable formats:
 * cluster/raft_node.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/raft_node.h"
#include "store/batch.h"
#include "store/le.h"
#include "store/log.h"

struct snap_collect {
	struct kv_op *ops;
	kv_rec      **recs;
	char        **keys;
	size_t        n, cap;
};

static void snap_collect_free(struct snap_collect *c)
{
	size_t i;

	for (i = 0; i < c->n; i++) {
		kv_rec_unref(c->recs[i]);
		free(c->keys[i]);
	}
	free(c->ops);
	free(c->recs);
	free(c->keys);
}

/* Collects every live key of the map. The map only changes on this thread
 * (store_apply in rn_apply), so the walk sees one consistent state. */
static int snap_collect(store *st, struct snap_collect *c)
{
	char *kb = malloc(KV_KEY_MAX + 2);
	size_t klen = 0;
	int first = 1, rc;

	if (!kb)
		return -ENOMEM;
	for (;;) {
		kv_rec *r;

		rc = store_next(st, "", 0, first ? NULL : kb, first ? 0 : klen, 0, kb, &klen, &r);
		if (rc == -ENOENT) {
			rc = 0;
			break;
		}
		if (rc)
			break;
		first = 0;
		if (c->n == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 1024;
			void *a = realloc(c->ops, cap * sizeof *c->ops);

			if (a)
				c->ops = a;
			a = a ? realloc(c->recs, cap * sizeof *c->recs) : NULL;
			if (a)
				c->recs = a;
			a = a ? realloc(c->keys, cap * sizeof *c->keys) : NULL;
			if (!a) {
				kv_rec_unref(r);
				rc = -ENOMEM;
				break;
			}
			c->keys = a;
			c->cap = cap;
		}
		c->keys[c->n] = malloc(klen + 1);
		if (!c->keys[c->n]) {
			kv_rec_unref(r);
			rc = -ENOMEM;
			break;
		}
		memcpy(c->keys[c->n], kb, klen + 1);
		c->recs[c->n] = r;
		memset(&c->ops[c->n], 0, sizeof c->ops[c->n]);
		c->ops[c->n].kind = KV_PUT;
		c->ops[c->n].flags = kv_rec_flags(r);
		c->ops[c->n].key = c->keys[c->n];
		c->ops[c->n].klen = (uint32_t)klen;
		c->ops[c->n].val = kv_rec_value(r);
		c->ops[c->n].vlen = (uint32_t)kv_rec_size(r);
		c->ops[c->n].meta = *kv_rec_meta(r);
		{
			size_t el;
			const void *ext = kv_rec_ext(r, &el);

			c->ops[c->n].ext = ext;
			c->ops[c->n].ext_len = (uint32_t)el;
		}
		c->n++;
	}
	free(kb);
	return rc;
}

/* The batches of a snapshot: chunk keys each, and at least one (an empty
 * store is one empty batch). */
static struct kv_batch snap_part(const struct kv_op *ops, size_t n, uint32_t chunk, size_t i)
{
	return (struct kv_batch){ .ops = n ? ops + i : ops,
				  .n = (uint32_t)(n - i < chunk ? n - i : chunk) };
}

int rn_snap_encode(const struct kv_op *ops, size_t n, uint32_t chunk, void **out,
		   size_t *outlen)
{
	unsigned char *buf, *p;
	size_t len = 8, i = 0;

	if (chunk == 0 || chunk > KV_BATCH_MAX)
		return -EINVAL;
	/* Sized first, then encoded in place: one allocation, no copies. */
	do {
		struct kv_batch b = snap_part(ops, n, chunk, i);

		len += 8 + batch_encoded_size(&b);
		i += b.n;
	} while (i < n);
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	le_put64(buf, n);
	p = buf + 8;
	i = 0;
	do {
		struct kv_batch b = snap_part(ops, n, chunk, i);
		unsigned char *end = batch_encode_into(&b, p + 8);

		le_put64(p, (uint64_t)(end - (p + 8)));
		p = end;
		i += b.n;
	} while (i < n);
	*out = buf;
	*outlen = len;
	return 0;
}

/* A decoded batch holds only what snap_collect makes: puts the store
 * accepts. Checked here, before anything changes, so that installing the
 * snapshot cannot fail half way on a bad key. */
static int snap_part_check(const struct kv_op *ops, uint32_t n)
{
	struct kv_batch b = { .ops = ops, .n = n };
	uint32_t i;

	for (i = 0; i < n; i++)
		if (ops[i].kind != KV_PUT)
			return -EBADMSG;
	return batch_check(&b) ? -EBADMSG : 0;
}

int rn_snap_decode(const void *data, size_t len, struct kv_op **ops, size_t *n)
{
	const unsigned char *p = data;
	struct kv_op *all;
	size_t off = 8, nall = 0;
	uint64_t total;
	int rc = 0;

	if (len < 8 + 8)
		return -EBADMSG;
	/* The key count sizes one array every batch decodes into; bounded by
	 * what the data can hold before it is trusted. */
	total = le_get64(p);
	if (total > (len - 8) / BATCH_OP_SIZE)
		return -EBADMSG;
	all = calloc(total ? total : 1, sizeof *all);
	if (!all)
		return -ENOMEM;
	while (!rc && off < len) {
		struct kv_op *part;
		uint32_t np;
		uint64_t plen;

		if (len - off < 8 || (plen = le_get64(p + off)) > len - off - 8) {
			rc = -EBADMSG;
			break;
		}
		rc = batch_decode_buf(p + off + 8, (size_t)plen, all + nall,
				      (uint32_t)(total - nall < UINT32_MAX ? total - nall : UINT32_MAX),
				      &part, &np);
		if (rc)
			break;
		if (part != all + nall) {
			free(part); /* an empty batch, or more keys than the count */
			if (np)
				rc = -EBADMSG;
		} else {
			rc = snap_part_check(part, np);
		}
		nall += np;
		off += 8 + (size_t)plen;
	}
	/* A cut at a batch boundary would otherwise decode as a smaller state
	 * (and delete the rest on the follower). */
	if (!rc && nall != total)
		rc = -EBADMSG;
	if (rc) {
		free(all);
		return rc;
	}
	*ops = all;
	*n = nall;
	return 0;
}

/* The state at the applied index, encoded as batches of puts (raft_node.h,
 * 5.). Any applied (hence committed) state is a valid snapshot for a
 * follower. */
int rn__snapshot_get(void *arg, uint64_t *index, uint64_t *term, const void **data,
			   size_t *len)
{
	struct rn *rn = arg;
	struct snap_collect c = { 0 };
	uint64_t ai, at;
	int rc;

	pthread_mutex_lock(&rn->smu);
	ai = rn->applied_index;
	at = rn->applied_term;
	pthread_mutex_unlock(&rn->smu);
	if (ai == 0)
		return -ENOENT;
	if (!rn->sbuf || rn->sindex != ai) {
		void *buf;
		size_t blen;

		rc = snap_collect(rn->st, &c);
		if (!rc)
			rc = rn_snap_encode(c.ops, c.n, rn->snap_chunk, &buf, &blen);
		snap_collect_free(&c);
		if (rc) {
			LOG(LOG_WARN, "raft: cannot build a snapshot to send: %s", strerror(-rc));
			return rc;
		}
		free(rn->sbuf);
		rn->sbuf = buf;
		rn->slen = blen;
		rn->sindex = ai;
		rn->sterm = at;
		LOG(LOG_INFO, "raft: snapshot at %" PRIu64 " for a lagging follower: %zu keys, "
		    "%zu bytes", ai, c.n, blen);
	}
	*index = rn->sindex;
	*term = rn->sterm;
	*data = rn->sbuf;
	*len = rn->slen;
	return 0;
}

struct sync_wait {
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	int             done, status;
	uint64_t        lsn;
};

static void sync_wait_cb(void *arg, int status, uint64_t lsn)
{
	struct sync_wait *w = arg;

	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->lsn = lsn;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int cmp_key(const void *k, size_t kl, const struct kv_op *op)
{
	size_t m = kl < op->klen ? kl : op->klen;
	int c = memcmp(k, op->key, m);

	return c ? c : (kl > op->klen) - (kl < op->klen);
}

/* True when key is among ops (sorted by key, as snap_collect makes them). */
static int ops_has(const struct kv_op *ops, size_t n, const char *key, size_t kl)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_key(key, kl, &ops[mid]);

		if (c == 0)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

/* What an install changes, worked out before anything is changed. */
struct snap_plan {
	struct snap_collect cur;  /* the map now */
	struct kv_op       *sops; /* the leader's keys (point into the data) */
	struct kv_op       *all;  /* deletes of keys it lacks, then its puts */
	size_t              ns, nall;
};

static void plan_free(struct snap_plan *p)
{
	snap_collect_free(&p->cur);
	free(p->sops);
	free(p->all);
}

static int plan_build(struct rn *rn, const void *data, size_t len, struct snap_plan *p)
{
	size_t i;
	int rc;

	rc = rn_snap_decode(data, len, &p->sops, &p->ns);
	if (rc)
		return rc;
	rc = snap_collect(rn->st, &p->cur);
	if (rc)
		return rc;
	if (p->ns + p->cur.n >= UINT32_MAX)
		return -E2BIG;
	p->all = malloc((p->ns + p->cur.n + 1) * sizeof *p->all);
	if (!p->all)
		return -ENOMEM;
	for (i = 0; i < p->cur.n; i++)
		if (!ops_has(p->sops, p->ns, p->cur.keys[i], p->cur.ops[i].klen)) {
			struct kv_op *d = &p->all[p->nall++];

			memset(d, 0, sizeof *d);
			d->kind = KV_DEL;
			d->key = p->cur.keys[i];
			d->klen = p->cur.ops[i].klen;
		}
	if (p->ns)
		memcpy(p->all + p->nall, p->sops, p->ns * sizeof *p->all);
	p->nall += p->ns;
	return 0;
}

/* Appends the RESET record (raft_node.h, 3.) and waits until it is
 * durable; *lsn is its log position. */
static int write_reset(struct rn *rn, uint64_t index, uint64_t term, uint64_t *lsn)
{
	struct sync_wait w = { .done = 0 };
	unsigned char rec[16];
	int rc;

	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	rn_reset_encode(index, term, rec);
	rc = store_submit_raw(rn->st, RN_REC_RESET, rec, sizeof rec, sync_wait_cb, &w);
	if (!rc) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		rc = w.status;
		*lsn = w.lsn;
		pthread_mutex_unlock(&w.mu);
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return rc;
}

/* The map becomes the leader's state in one atomic batch, and the RESET
 * record is made durable; *reset_lsn is its position.
 *
 * Store snapshots are held off meanwhile. Any other thread may take one
 * (the store's own when its log grows, raft_node.c's periodic one on the
 * thread pool), and one taken here, before the RESET record is durable,
 * would hold the leader's map; after a crash, recovery would load it under
 * the old applied index (or the new one, over the old log), replay the old
 * log's entries over the leader's state, and report an applied index the
 * durable log does not back. Published only after the RESET record is
 * durable, too, for the same reason. */
static int replace_state(struct rn *rn, uint64_t index, uint64_t term,
			 const struct snap_plan *p, uint64_t *reset_lsn)
{
	struct kv_batch b = { .ops = p->all, .n = (uint32_t)p->nall };
	int rc;

	store_hold_snapshots(rn->st);
	rc = store_apply_large(rn->st, &b, index);
	if (!rc) {
		rn__notify_batch(rn, p->all, (uint32_t)p->nall);
		rc = write_reset(rn, index, term, reset_lsn);
	}
	if (rc)
		return rc; /* the hold stays: the map matches no index, the replica
			    * fails, and no snapshot may save what it holds now */
	rn__publish_applied(rn, index, term);
	store_release_snapshots(rn->st);
	return 0;
}

/* A store snapshot that holds the RESET record: from then on the install
 * survives a crash. Taken by us, or by another thread since the release. */
static int snapshot_past(struct rn *rn, uint64_t reset_lsn)
{
	struct store_stats ss;
	int rc = store_snapshot(rn->st);

	if (rc && rc != -EBUSY)
		return rc;
	store_get_stats(rn->st, &ss);
	return ss.snapshot_lsn >= reset_lsn ? 0 : -EIO;
}

/* InstallSnapshot (thesis §5): the map becomes the leader's state, then a
 * RESET record and a store snapshot make it durable (raft_node.h, 3.).
 * Running out of memory before the map changes refuses the snapshot and
 * leaves the node as it was (the leader sends it again later; counted in
 * status as snapshot_refusals). Data that does not decode would not decode
 * the next time either: that fails the replica, visibly, with its state
 * unchanged, rather than taking the whole transfer again every election
 * timeout while looking healthy. A failure after the map changed is fatal,
 * as the map then matches no index. */
int rn__snapshot_install(void *arg, uint64_t index, uint64_t term, const void *data,
			       size_t len)
{
	struct rn *rn = arg;
	struct snap_plan p = { 0 };
	struct rn_wait *q, *next;
	uint64_t reset_lsn = 0;
	size_t keys;
	int rc;

	rc = plan_build(rn, data, len, &p);
	if (rc == -ENOMEM) {
		rn->snap_refusals++;
		LOG(LOG_WARN, "raft: refusing the snapshot at %" PRIu64 ": %s; the leader will "
		    "send it again", index, strerror(-rc));
		plan_free(&p);
		return RAFT_EREFUSED;
	}
	if (rc) {
		LOG(LOG_ERROR, "raft: the leader's snapshot at %" PRIu64 " is unusable (%s); this "
		    "replica stops with its state unchanged", index, strerror(-rc));
		plan_free(&p);
		return rc;
	}
	rc = replace_state(rn, index, term, &p, &reset_lsn);
	if (!rc)
		rc = snapshot_past(rn, reset_lsn);
	keys = p.ns;
	plan_free(&p);
	if (rc) {
		LOG(LOG_ERROR, "raft: cannot install the snapshot at %" PRIu64 ": %s", index,
		    strerror(-rc));
		return rc == RAFT_EREFUSED ? -EIO : rc;
	}
	rn->elsn_base = index + 1;
	rn->elsn_len = 0;
	rn->snap_applied = index;
	/* Requests waiting for entries inside the snapshot will never see them
	 * applied one by one: their outcome is unknown here. */
	for (q = TAILQ_FIRST(&rn->commitq); q; q = next) {
		next = TAILQ_NEXT(q, link);
		if (q->index <= index)
			rn__wait_finish(rn, &rn->commitq, q, -EIO);
	}
	LOG(LOG_INFO, "raft: installed snapshot at index %" PRIu64 " term %" PRIu64 " (%zu"
	    " keys)", index, term, keys);
	return 0;
}
