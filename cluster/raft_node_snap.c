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

/* The map at one instant: a reference on every live record (records never
 * change, so a worker thread can encode them while the map moves on), and
 * the operations that recreate it, pointing into the records. */
struct snap_collect {
	struct kv_op *ops;
	kv_rec      **recs;
	size_t        n, cap;
};

static void snap_collect_free(struct snap_collect *c)
{
	for (size_t i = 0; i < c->n; i++)
		kv_rec_unref(c->recs[i]);
	free(c->ops);
	free(c->recs);
	memset(c, 0, sizeof *c);
}

static int collect_one(void *arg, const char *key, size_t klen, const kv_rec *cr)
{
	struct snap_collect *c = arg;
	kv_rec *r = (kv_rec *)cr; /* a reference is taken, the record is not changed */
	struct kv_op *op;
	size_t el;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		void *a = realloc(c->ops, cap * sizeof *c->ops);

		if (!a)
			return -ENOMEM;
		c->ops = a;
		a = realloc(c->recs, cap * sizeof *c->recs);
		if (!a)
			return -ENOMEM;
		c->recs = a;
		c->cap = cap;
	}
	kv_rec_ref(r);
	c->recs[c->n] = r;
	op = &c->ops[c->n++];
	memset(op, 0, sizeof *op);
	op->kind = KV_PUT;
	op->flags = kv_rec_flags(r);
	op->key = key;
	op->klen = (uint32_t)klen;
	op->val = kv_rec_value(r);
	op->vlen = (uint32_t)kv_rec_size(r);
	op->meta = *kv_rec_meta(r);
	op->ext = kv_rec_ext(r, &el);
	op->ext_len = (uint32_t)el;
	return 0;
}

/* Collects every live key of the map, in key order, under one read lock of
 * the store (one walk, not a seek per key). The map only changes on the
 * loop thread (store_apply in rn_apply, installs), which is where this
 * runs: the image is the state at the applied index. */
static int snap_collect(store *st, struct snap_collect *c)
{
	int rc = store_scan(st, "", 0, NULL, 0, 0, collect_one, c);

	if (rc)
		snap_collect_free(c);
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

/* A snapshot for lagging followers, encoded on the thread pool: encoding
 * copies every value, which for a large store would stall the loop thread
 * (heartbeats, client requests) for as long as it takes. */
struct snap_build {
	uv_work_t           work;
	struct rn          *rn;
	struct snap_collect img;
	uint64_t            index, term;
	uint32_t            chunk;
	void               *buf;
	size_t              len;
	int                 rc;
};

/* A follower the log spares, at most this many snapshot periods behind:
 * beyond that it gets a snapshot, and the leader's memory stays bounded. */
#define RN_SPARE_PERIODS 4

uint64_t rn__compact_limit(struct rn *rn, uint64_t index)
{
	uint64_t limit = index, floor = 0;

	if (rn->sbuild && rn->sbuild->index < limit)
		limit = rn->sbuild->index; /* its followers will need what follows */
	if (rn->snap_every && index > RN_SPARE_PERIODS * rn->snap_every)
		floor = index - RN_SPARE_PERIODS * rn->snap_every;
	for (uint32_t i = 0; rn->net && i < rn->mem.n; i++) {
		uint64_t need;

		if (i == rn->self || !peer_is_up(rn->net, i))
			continue; /* a follower that is away costs nothing to wait for */
		need = raft_follower_need(rn->r, i + 1);
		if (need < floor)
			need = floor;
		if (need < limit)
			limit = need;
	}
	return limit;
}

static void build_work(uv_work_t *w)
{
	struct snap_build *b = w->data;

	b->rc = rn_snap_encode(b->img.ops, b->img.n, b->chunk, &b->buf, &b->len);
}

static void build_after(uv_work_t *w, int status)
{
	struct snap_build *b = w->data;
	struct rn *rn = b->rn;

	rn->sbuild = NULL;
	if (!status && !b->rc && !rn->closed) {
		free(rn->sbuf);
		rn->sbuf = b->buf;
		rn->slen = b->len;
		rn->sindex = b->index;
		rn->sterm = b->term;
		b->buf = NULL;
		LOG(LOG_INFO, "raft: snapshot at %" PRIu64 " for a lagging follower: %zu keys, "
		    "%zu bytes", b->index, b->img.n, rn->slen);
	} else if (!status && b->rc) {
		LOG(LOG_WARN, "raft: cannot build a snapshot to send: %s", strerror(-b->rc));
	}
	free(b->buf);
	snap_collect_free(&b->img);
	free(b);
}

/* Starts encoding the state at the applied index (at, term at) unless an
 * encoding is under way. */
static void build_start(struct rn *rn, uint64_t ai, uint64_t at)
{
	struct snap_build *b;
	int rc;

	if (rn->sbuild)
		return;
	b = calloc(1, sizeof *b);
	if (!b)
		return; /* asked again at the next heartbeat */
	rc = snap_collect(rn->st, &b->img);
	if (rc) {
		LOG(LOG_WARN, "raft: cannot collect a snapshot to send: %s", strerror(-rc));
		free(b);
		return;
	}
	b->rn = rn;
	b->index = ai;
	b->term = at;
	b->chunk = rn->snap_chunk;
	b->work.data = b;
	if (uv_queue_work(node_loop(rn->n), &b->work, build_work, build_after)) {
		snap_collect_free(&b->img);
		free(b);
		return;
	}
	rn->sbuild = b;
}

/* A state for a lagging follower, encoded as batches of puts (raft_node.h,
 * 5.). Any applied (hence committed) state is a valid snapshot, as long as
 * the log still holds the entries after it: then the follower goes on from
 * there with AppendEntries. So a snapshot encoded earlier is sent while the
 * log covers it, and a new one is encoded in the background only when it
 * does not (or there is none): -EAGAIN meanwhile, and the core asks again
 * at its next heartbeat. Compaction leaves the log covering it while it is
 * encoded and while a follower receives it (rn__compact_limit). */
int rn__snapshot_get(void *arg, uint64_t *index, uint64_t *term, const void **data,
			   size_t *len)
{
	struct rn *rn = arg;
	uint64_t ai, at;

	pthread_mutex_lock(&rn->smu);
	ai = rn->applied_index;
	at = rn->applied_term;
	pthread_mutex_unlock(&rn->smu);
	if (ai == 0)
		return -ENOENT;
	if (!rn->sbuf || rn->sindex > ai || rn->sindex + 1 < raft_first_index(rn->r)) {
		build_start(rn, ai, at);
		return -EAGAIN;
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
		if (!ops_has(p->sops, p->ns, p->cur.ops[i].key, p->cur.ops[i].klen)) {
			struct kv_op *d = &p->all[p->nall++];

			memset(d, 0, sizeof *d);
			d->kind = KV_DEL;
			d->key = p->cur.ops[i].key;
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
	 * applied one by one: the snapshot's term tells (rn__outcome). */
	for (q = TAILQ_FIRST(&rn->commitq); q; q = next) {
		next = TAILQ_NEXT(q, link);
		if (q->index <= index) {
			int status = rn__outcome(q->index, q->term, index, term);

			if (status)
				rn->nlost++;
			rn__wait_finish(rn, &rn->commitq, q, status);
		}
	}
	rn->snap_installs++;
	LOG(LOG_INFO, "raft: installed snapshot at index %" PRIu64 " term %" PRIu64 " (%zu"
	    " keys)", index, term, keys);
	return 0;
}
