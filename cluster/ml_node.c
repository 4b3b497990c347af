/*
 * ml_node.c — the masterless replication layer of a node: runs the pure core
 * (cluster/ml.h) on the node's libuv loop, with the kvfs store as its store
 * view and the peer transport (cluster/peer.h) as its network.
 *
 * Mapping of the core's interface:
 *   version         = one store record: value, kv_meta (28 bytes on the wire,
 *                     below), flags (KV_F_TOMBSTONE == ML_V_TOMBSTONE) and
 *                     ext (the ml_ext blob: origin, HLC timestamp, clock).
 *   io->put/purge   = a KV_PUT (with flags and ext) / KV_DEL op. The ops made
 *                     during one call into the core (one client request, one
 *                     received frame, one tick) go into ONE store batch, so
 *                     a client request (and a received frame) stays atomic
 *                     locally; received frames and ticks share the lazy
 *                     batch below.
 *   io->get         = the overlay (versions submitted but not yet applied by
 *                     the store: the core must read its own puts at once),
 *                     else store_get(with_tombstones = 1).
 *   io->durable     = the largest submission number N such that every
 *                     submission up to N has completed in the store.
 *   io->save_floor  = an opaque store record MN_REC_FLOOR (8 bytes LE),
 *                     read back by replay(); re-saved after every snapshot,
 *                     which may drop the log segment holding it.
 *   io->send        = peer_send(), frame types ML_MSG_* (0x4D01..0x4D06).
 *   io->now_ms      = CLOCK_REALTIME (the HLC's physical part must be wall
 *                     time, comparable across nodes).
 * A client write is acknowledged once its batch is durable (SPEC §6);
 * replication is off the write path.
 *
 * Lazy batch. A replicated version is acknowledged to no client: it is
 * durable at its coordinator, which pushed it only once durable. So a
 * receiver need not sync each one (that cost one fdatasync per received
 * frame on every node, on a disk the nodes share). Versions received (and
 * purges made by ticks) collect in one open batch, submitted after
 * MN_LAZY_MS, when MN_LAZY_BYTES/MN_LAZY_OPS are pending, or by the next
 * local write, which adopts the batch and so shares its sync. A receiver
 * crash loses at most that batch; the core sees it as a put not yet
 * durable, exactly what io->durable() reports, so nothing a peer relies on
 * is sent before the covering sync: the core pushes and forwards only
 * durable versions and acknowledges only durable tombstones (ml.c,
 * Durability), and after a restart the digest is rebuilt from the store,
 * so anti-entropy fetches what was lost. While the lazy batch is open it
 * is the newest submission that holds keys (a later one would reach the
 * log first and be overwritten by older versions at apply): the local
 * write adopts it instead of starting its own; only keyless floor records
 * may follow it. Versions applied by replication are
 * reported to the change listener (from the committer thread, with the
 * client write's own keys: mn_store_done) so that the mount drops its
 * caches; the search index follows every apply through the store's apply
 * hook.
 *
 * kv_meta encoding inside a version (28 bytes, little-endian):
 *   u32 mode, u32 uid, u32 gid, i64 mtime_ns, i64 ctime_ns
 *
 * Limits: at most ML_MAX_NODES (64) members. A version must fit one peer
 * frame (PEER_MAX_FRAME, 64 MiB) to replicate; larger values stay local and
 * are counted as send errors.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/ml.h"
#include "cluster/peer.h"
#include "cluster/repl.h"

/* Largest value that replicates: a PUSH frame holds it with its key and
 * metadata (ml_wire.c) well inside PEER_MAX_FRAME. */
#define MN_VALUE_MAX (PEER_MAX_FRAME - (64u << 10))
/* Largest PUSH body: the versions of one local write up to this travel in
 * one frame, so a receiver applies them together (atomic batches, SPEC §3
 * and §5); a larger write is pushed in pieces (status: batches_split). */
#define MN_FRAME_MAX MN_VALUE_MAX
#include "store/key.h"
#include "store/log.h"

#define MN_REC_FLOOR (STORE_REC_USER + 32)
#define MN_TICK_MS   20
#define MN_META_LEN  28

/* Replicated versions wait at most this long (or until this much is
 * pending, or until the next local write) before they go to the store: one
 * sync per group instead of one per received frame (see "Lazy batch").
 * 25 ms: at most 40 syncs/s per receiver (about 1% of what this disk
 * does), for up to 25 ms more before a receiver serves a version
 * (convergence target: p99 under 500 ms). */
#define MN_LAZY_MS    25
#define MN_LAZY_BYTES (4u << 20)
#define MN_LAZY_OPS   16384u

/* Local writes made durable are pushed to the peers at most this long after
 * the first of them (or at the next tick): the writes of a few store groups
 * share one PUSH frame per peer, so a receiver is woken, and its loop thread
 * runs, once per frame instead of once per group (at concurrency 1, once
 * per write). 2 ms adds at most that to convergence (target p99 500 ms);
 * acknowledgements never wait for pushes. $KVFS_ML_PUSH_MS overrides it
 * (0: push as each group completes). */
#define MN_PUSH_MS    2

/* A version the store has been handed but may not have applied yet, or a
 * store record wrapped for get(). Reference counted. */
struct ov {
	struct ov     *hnext;
	int            refs;
	int            in_map;
	int            gone;      /* a purge: no version */
	uint64_t       seq;
	uint64_t       h;
	kv_rec        *rec;       /* wrapped store record (not in the map) */
	uint32_t       flags;
	struct kv_meta meta;
	uint8_t        metab[MN_META_LEN];
	uint8_t       *val, *ext;
	uint32_t       vlen, elen, klen;
	char          *key;
};

/* One store submission (a batch or a floor record). */
struct mn_sub {
	struct mn       *mn;
	uint64_t         seq;
	int              done;
	int              status;
	struct node_req *req;   /* the client write it carries, or NULL */
	uint32_t         nremote; /* with req: ops[0..nremote) are replicated
	                             versions it picked up (lazy batch) */
	struct kv_op    *ops;
	struct ov      **ovs;   /* ops point into these (one ref each) */
	uint32_t         nops, cap;
	struct mn_sub   *next;  /* submission order */
	struct mn_sub   *dnext; /* completion queue */
};

struct mn {
	node               *n;
	store              *st;
	ml                 *m;
	peer_net           *net;
	struct peer_members mem;
	uv_timer_t          timer;
	uv_async_t          async;
	pthread_mutex_t     mu;          /* leaf lock: protects dhead/dtail */
	struct mn_sub      *dhead, *dtail;
	struct mn_sub      *shead, *stail; /* submitted, in seq order */
	struct mn_sub      *cur;         /* batch being collected */
	struct mn_sub      *lazy;        /* replicated versions not yet submitted */
	size_t              lazy_bytes;
	uint64_t            lazy_ms;     /* MN_LAZY_MS or $KVFS_ML_LAZY_MS */
	uv_timer_t          lazy_timer;
	uint64_t            push_ms;     /* MN_PUSH_MS or $KVFS_ML_PUSH_MS */
	uv_timer_t          push_timer;
	uint64_t            lazy_batches, lazy_ops, piggybacked;
	uint64_t            next_seq, durable;
	uint64_t            inflight;    /* submitted to the store, not completed */
	uint64_t            floor, replayed_floor, snapshots;
	uint64_t            rnd;
	struct ov         **ht;
	size_t              ht_cap, ht_n;
	uint64_t            clog_start;  /* conflict log: start of its one-second window (ms) */
	uint32_t            clog_n;      /* conflicts in that window */
	int                 handles;     /* 1 async, 2 timer, 4 lazy_timer, 8 push_timer */
	int                 stopping;
	int                 failed;      /* sticky store error seen */
};

/* ---- helpers ---------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void meta_encode(const struct kv_meta *m, uint8_t *b)
{
	put32(b, m->mode);
	put32(b + 4, m->uid);
	put32(b + 8, m->gid);
	put64(b + 12, (uint64_t)m->mtime_ns);
	put64(b + 20, (uint64_t)m->ctime_ns);
}

static void meta_decode(const uint8_t *b, size_t len, struct kv_meta *m)
{
	memset(m, 0, sizeof(*m));
	if (len != MN_META_LEN)
		return;
	m->mode = get32(b);
	m->uid = get32(b + 4);
	m->gid = get32(b + 8);
	m->mtime_ns = (int64_t)get64(b + 12);
	m->ctime_ns = (int64_t)get64(b + 20);
}

static uint64_t khash(const char *k, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
	return h;
}

/* ---- overlay ------------------------------------------------------------------ */

static void ov_unref(struct ov *o)
{
	if (!o || --o->refs)
		return;
	if (o->rec)
		kv_rec_unref(o->rec);
	free(o->val);
	free(o->ext);
	free(o->key);
	free(o);
}

static struct ov *ov_find(struct mn *mn, const char *key, size_t klen)
{
	uint64_t h;
	struct ov *o;

	if (!mn->ht)
		return NULL;
	h = khash(key, klen);
	for (o = mn->ht[h & (mn->ht_cap - 1)]; o; o = o->hnext)
		if (o->h == h && o->klen == klen && !memcmp(o->key, key, klen))
			return o;
	return NULL;
}

static void ov_unlink(struct mn *mn, struct ov *o)
{
	struct ov **pp = &mn->ht[o->h & (mn->ht_cap - 1)];

	while (*pp != o)
		pp = &(*pp)->hnext;
	*pp = o->hnext;
	o->in_map = 0;
	mn->ht_n--;
	ov_unref(o);
}

static int ov_insert(struct mn *mn, struct ov *o)
{
	struct ov *old = ov_find(mn, o->key, o->klen);

	if (old)
		ov_unlink(mn, old);
	if (!mn->ht) {
		mn->ht_cap = 256;
		mn->ht = calloc(mn->ht_cap, sizeof(*mn->ht));
		if (!mn->ht)
			return -ENOMEM;
	}
	if (mn->ht_n >= mn->ht_cap) {
		size_t cap = mn->ht_cap * 2;
		struct ov **ht = calloc(cap, sizeof(*ht));
		if (!ht)
			return -ENOMEM;
		for (size_t i = 0; i < mn->ht_cap; i++) {
			struct ov *x = mn->ht[i], *next;
			for (; x; x = next) {
				next = x->hnext;
				x->hnext = ht[x->h & (cap - 1)];
				ht[x->h & (cap - 1)] = x;
			}
		}
		free(mn->ht);
		mn->ht = ht;
		mn->ht_cap = cap;
	}
	o->h = khash(o->key, o->klen);
	o->hnext = mn->ht[o->h & (mn->ht_cap - 1)];
	mn->ht[o->h & (mn->ht_cap - 1)] = o;
	o->in_map = 1;
	o->refs++;
	mn->ht_n++;
	return 0;
}

static struct ov *ov_new(const char *key, size_t klen, const struct ml_version *v)
{
	struct ov *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->refs = 1;
	o->key = malloc(klen + 1);
	o->val = malloc(v && v->vlen ? v->vlen : 1);
	o->ext = malloc(v && v->ext_len ? v->ext_len : 1);
	if (!o->key || !o->val || !o->ext) {
		ov_unref(o);
		return NULL;
	}
	memcpy(o->key, key, klen);
	o->key[klen] = 0;
	o->klen = (uint32_t)klen;
	if (!v) {
		o->gone = 1;
		return o;
	}
	o->flags = v->flags & ML_V_TOMBSTONE;
	o->vlen = v->vlen;
	o->elen = v->ext_len;
	if (v->vlen)
		memcpy(o->val, v->val, v->vlen);
	if (v->ext_len)
		memcpy(o->ext, v->ext, v->ext_len);
	meta_decode(v->meta, v->mlen, &o->meta);
	meta_encode(&o->meta, o->metab);
	return o;
}

static void ov_view(const struct ov *o, struct ml_version *v)
{
	v->flags = o->flags;
	v->val = o->val;
	v->vlen = o->vlen;
	v->meta = o->metab;
	v->mlen = MN_META_LEN;
	v->ext = o->ext;
	v->ext_len = o->elen;
}

/* ---- submissions ---------------------------------------------------------------- */

static struct mn_sub *sub_new(struct mn *mn, struct node_req *req)
{
	struct mn_sub *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->mn = mn;
	s->req = req;
	s->seq = ++mn->next_seq;
	/* Listed at once: durable() must wait for it even before it is
	 * handed to the store. */
	if (mn->stail)
		mn->stail->next = s;
	else
		mn->shead = s;
	mn->stail = s;
	return s;
}

static void sub_free(struct mn_sub *s)
{
	for (uint32_t i = 0; i < s->nops; i++)
		ov_unref(s->ovs[i]);
	free(s->ops);
	free(s->ovs);
	free(s);
}

/* Committer thread. The batch is durable and applied: the mount's
 * invalidation thread learns of its changes here (the replicated versions
 * it carries and the client write's keys, one wake-up for the lot), as in
 * standalone.c, and works on them while the completion travels to the loop
 * thread: by the time the loop acknowledges the write, the reply's fence has
 * usually been passed and the reply needs no round trip through that
 * thread. Nothing here touches what the loop thread may change meanwhile:
 * s and its ops stay put until sub_finish(), the keys never change. */
static void mn_store_done(void *arg, int status, uint64_t lsn)
{
	struct mn_sub *s = arg;
	struct mn *mn = s->mn;
	int any = 0;

	(void)lsn;
	if (!status) {
		for (uint32_t i = 0; i < s->nops; i++)
			if (!s->req || i < s->nremote) {
				node_notify_key(mn->n, s->ops[i].key, s->ops[i].klen);
				any = 1;
			}
		if (s->req && node_req_notify(mn->n, s->req, status))
			any = 1;
		if (any)
			node_notify_flush(mn->n);
	}
	s->status = status;
	s->dnext = NULL;
	pthread_mutex_lock(&mn->mu);
	if (mn->dtail)
		mn->dtail->dnext = s;
	else
		mn->dhead = s;
	mn->dtail = s;
	uv_async_send(&mn->async); /* under the lock: see standalone.c, sa_store_done */
	pthread_mutex_unlock(&mn->mu);
}

/* Loop thread: a submission is over (completed by the store, or never
 * submitted). */
static void sub_finish(struct mn *mn, struct mn_sub *s, int status)
{
	s->done = 1;
	s->status = status;
	if (status && !s->nops && !store_failed(mn->st)) {
		/* A keyless record (the clock floor) refused before it was
		 * logged: nothing was written, the store is fine and the core
		 * was told (io_save_floor's error), so it does not hold
		 * durable() back. */
		LOG(LOG_WARN, "masterless: store refused a record: %s", strerror(-status));
		s->status = 0;
	} else if (status && !mn->failed) {
		/* Versions the core already holds as stored (in its index and
		 * digest) are not: were durable() to pass them, this node
		 * would acknowledge tombstones it does not have and report
		 * keys in sync that it does not serve. Nothing after this can
		 * be durable: the node stops taking writes, as after a failed
		 * sync, and a restart rebuilds the core from the store. */
		mn->failed = status;
		LOG(LOG_ERROR, "masterless: store write failed: %s", strerror(-status));
	}
	for (uint32_t i = 0; i < s->nops; i++) {
		struct ov *o = s->ovs[i];
		/* Applied (or failed): the store answers reads from now on.
		 * The mount heard of it in mn_store_done(). */
		if (o->in_map && o->seq == s->seq)
			ov_unlink(mn, o);
	}
	if (s->req) {
		node_req_done(mn->n, s->req, status);
		s->req = NULL;
	}
	/* A failed submission is not durable: durable() stops below it for
	 * good (the store's failure is sticky too). */
	while (mn->shead && mn->shead->done && !mn->shead->status) {
		struct mn_sub *h = mn->shead;
		mn->shead = h->next;
		if (!mn->shead)
			mn->stail = NULL;
		mn->durable = h->seq;
		sub_free(h);
	}
}

static int sub_add(struct mn_sub *s, struct ov *o, const struct kv_op *op)
{
	if (s->nops == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 8;
		struct kv_op *ops = realloc(s->ops, cap * sizeof(*ops));
		struct ov **ovs;
		if (!ops)
			return -ENOMEM;
		s->ops = ops;
		ovs = realloc(s->ovs, cap * sizeof(*ovs));
		if (!ovs)
			return -ENOMEM;
		s->ovs = ovs;
		s->cap = cap;
	}
	o->refs++;
	s->ops[s->nops] = *op;
	s->ovs[s->nops] = o;
	s->nops++;
	return 0;
}

static void mn_begin(struct mn *mn, struct node_req *req)
{
	mn->cur = sub_new(mn, req);
}

/* Hands a collected batch to the store. */
static void mn_submit(struct mn *mn, struct mn_sub *s)
{
	struct kv_batch b;
	int rc;

	if (!s)
		return;
	if (!s->nops) {
		sub_finish(mn, s, 0);
		return;
	}
	b.ops = s->ops;
	b.n = s->nops;
	mn->inflight++;
	rc = store_submit(mn->st, &b, 0, mn_store_done, s);
	if (rc) {
		mn->inflight--;
		sub_finish(mn, s, rc);
	}
}

/* Submits what the last call into the core produced. */
static void mn_commit(struct mn *mn)
{
	struct mn_sub *s = mn->cur;

	mn->cur = NULL;
	mn_submit(mn, s);
}

/* ---- lazy batch (see the top of this file) ---------------------------------------- */

/* Detaches the lazy batch (to submit it, or for a local write to adopt). */
static struct mn_sub *lazy_take(struct mn *mn)
{
	struct mn_sub *s = mn->lazy;

	mn->lazy = NULL;
	mn->lazy_bytes = 0;
	if (mn->handles & 4)
		uv_timer_stop(&mn->lazy_timer);
	return s;
}

static void lazy_flush(struct mn *mn)
{
	struct mn_sub *s = lazy_take(mn);

	if (s && s->nops) {
		mn->lazy_batches++;
		mn->lazy_ops += s->nops;
	}
	mn_submit(mn, s);
}

static void on_lazy_timer(uv_timer_t *t)
{
	lazy_flush(t->data);
}

/* Before a call into the core whose puts need no sync of their own. */
static void lazy_begin(struct mn *mn)
{
	if (!mn->lazy)
		mn->lazy = sub_new(mn, NULL);
	mn->cur = mn->lazy; /* NULL on ENOMEM: collect() starts a batch */
}

/* After it: a batch collect() had to start is submitted now; the lazy
 * batch waits for its timer unless it is large or was left empty. */
static void lazy_end(struct mn *mn)
{
	struct mn_sub *s = mn->lazy;

	if (mn->cur != s)
		mn_commit(mn);
	mn->cur = NULL;
	if (!s)
		return;
	if (!s->nops || !mn->lazy_ms || s->nops >= MN_LAZY_OPS || mn->lazy_bytes >= MN_LAZY_BYTES)
		lazy_flush(mn);
	else if (!uv_is_active((uv_handle_t *)&mn->lazy_timer))
		uv_timer_start(&mn->lazy_timer, on_lazy_timer, mn->lazy_ms, 0);
}

/* ---- the core's io ------------------------------------------------------------- */

static int io_send(void *ctx, unsigned to, uint16_t type, const void *buf, size_t len)
{
	struct mn *mn = ctx;

	if (!mn->net)
		return -ESHUTDOWN;
	/* Gossip is best effort: rather than let the transport queue frames
	 * for an unreachable peer (and flood it with stale ones when it comes
	 * back), drop them; anti-entropy brings the peer up to date. */
	if (!peer_is_up(mn->net, to))
		return -ENOTCONN;
	return peer_send(mn->net, to, type, buf, len);
}

static uint64_t io_now(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t io_random(void *ctx)
{
	struct mn *mn = ctx;
	uint64_t z = (mn->rnd += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rec_view(kv_rec *r, uint8_t *metab, struct ml_version *v)
{
	size_t elen = 0;

	meta_encode(kv_rec_meta(r), metab);
	v->flags = kv_rec_flags(r) & KV_F_TOMBSTONE ? ML_V_TOMBSTONE : 0;
	v->val = kv_rec_value(r);
	v->vlen = (uint32_t)kv_rec_size(r);
	v->meta = metab;
	v->mlen = MN_META_LEN;
	v->ext = kv_rec_ext(r, &elen);
	v->ext_len = (uint32_t)elen;
}

static int io_get(void *ctx, const char *key, size_t klen, struct ml_version *out, void **ref)
{
	struct mn *mn = ctx;
	struct ov *o = ov_find(mn, key, klen);
	kv_rec *r;
	int rc;

	if (o) {
		if (o->gone)
			return -ENOENT;
		o->refs++;
		ov_view(o, out);
		*ref = o;
		return 0;
	}
	rc = store_get(mn->st, key, klen, 1, &r);
	if (rc)
		return rc;
	o = calloc(1, sizeof(*o));
	if (!o) {
		kv_rec_unref(r);
		return -ENOMEM;
	}
	o->refs = 1;
	o->rec = r;
	rec_view(r, o->metab, out);
	*ref = o;
	return 0;
}

static void io_release(void *ctx, void *ref)
{
	(void)ctx;
	ov_unref(ref);
}

static int collect(struct mn *mn, const char *key, size_t klen, const struct ml_version *v,
		   uint64_t *seq)
{
	struct kv_op op;
	struct ov *o;
	int rc;

	/* A version from a peer that this store would refuse (its limits or
	 * key rules differ, or the frame lies) must not reach store_submit():
	 * the whole batch would fail with it. */
	if (key_check(key, klen) || (v && (v->vlen > KV_VALUE_MAX || v->ext_len > KV_EXT_MAX)))
		return -EINVAL;
	if (mn->cur && mn->cur->nops == KV_BATCH_MAX) {
		/* Full: the store takes no more in one batch. Only a batch of
		 * received versions and purges can get here (a client request
		 * has at most KV_BATCH_MAX ops and adopts no more pending
		 * ones than fit beside them, mn_write); it goes to the store
		 * now and the rest of this call fills a new one. */
		if (mn->cur->req)
			return -E2BIG;
		if (mn->cur == mn->lazy) {
			lazy_flush(mn);
			lazy_begin(mn);
		} else {
			mn_commit(mn);
		}
	}
	if (!mn->cur)
		mn_begin(mn, NULL); /* committed by the caller's mn_commit() */
	if (!mn->cur)
		return -ENOMEM;
	o = ov_new(key, klen, v);
	if (!o)
		return -ENOMEM;
	o->seq = mn->cur->seq;
	memset(&op, 0, sizeof(op));
	op.kind = v ? KV_PUT : KV_DEL;
	op.key = o->key;
	op.klen = o->klen;
	if (v) {
		op.flags = o->flags ? KV_F_TOMBSTONE : 0;
		op.val = o->val;
		op.vlen = o->vlen;
		op.meta = o->meta;
		op.ext = o->ext;
		op.ext_len = o->elen;
	}
	rc = ov_insert(mn, o);
	if (rc == 0)
		rc = sub_add(mn->cur, o, &op);
	if (rc == 0 && mn->cur == mn->lazy)
		mn->lazy_bytes += klen + o->vlen + o->elen + sizeof(op);
	ov_unref(o);
	if (rc == 0 && seq)
		*seq = mn->cur->seq;
	return rc;
}

static int io_put(void *ctx, const char *key, size_t klen, const struct ml_version *v, uint64_t *seq)
{
	return collect(ctx, key, klen, v, seq);
}

static int io_purge(void *ctx, const char *key, size_t klen)
{
	return collect(ctx, key, klen, NULL, NULL);
}

static uint64_t io_durable(void *ctx)
{
	struct mn *mn = ctx;

	return mn->durable;
}

struct scan_arg {
	ml_scan_fn fn;
	void      *arg;
};

static int scan_one(void *arg, const char *key, size_t klen, const kv_rec *r)
{
	struct scan_arg *sa = arg;
	uint8_t metab[MN_META_LEN];
	struct ml_version v;

	rec_view((kv_rec *)r, metab, &v);
	return sa->fn(sa->arg, key, klen, &v);
}

static int io_scan(void *ctx, ml_scan_fn fn, void *arg)
{
	struct mn *mn = ctx;
	struct scan_arg sa = { fn, arg };

	return store_scan(mn->st, "", 0, NULL, 0, 1, scan_one, &sa);
}

static int io_save_floor(void *ctx, uint64_t floor, uint64_t *seq)
{
	struct mn *mn = ctx;
	struct mn_sub *s = sub_new(mn, NULL);
	uint8_t b[8];
	int rc;

	if (!s)
		return -ENOMEM;
	put64(b, floor);
	mn->inflight++;
	rc = store_submit_raw(mn->st, MN_REC_FLOOR, b, sizeof(b), mn_store_done, s);
	if (rc) {
		mn->inflight--;
		sub_finish(mn, s, rc);
		return rc;
	}
	mn->floor = floor;
	*seq = s->seq;
	return 0;
}

/* ---- loop callbacks ------------------------------------------------------------- */

static void maybe_close_async(struct mn *mn)
{
	if (mn->stopping && (mn->handles & 1) && mn->inflight == 0) {
		mn->handles &= ~1;
		uv_close((uv_handle_t *)&mn->async, NULL);
	}
}

static void on_push_timer(uv_timer_t *t)
{
	struct mn *mn = t->data;

	if (mn->m && !mn->stopping)
		ml_flush(mn->m);
}

static void on_async(uv_async_t *h)
{
	struct mn *mn = h->data;
	struct mn_sub *s, *next;

	pthread_mutex_lock(&mn->mu);
	s = mn->dhead;
	mn->dhead = mn->dtail = NULL;
	pthread_mutex_unlock(&mn->mu);
	for (; s; s = next) {
		next = s->dnext;
		mn->inflight--;
		sub_finish(mn, s, s->status);
	}
	/* Durability advanced: push local writes, now or a moment later with
	 * whatever the next groups add. */
	if (mn->m && !mn->stopping) {
		if (!mn->push_ms)
			ml_flush(mn->m);
		else if (!uv_is_active((uv_handle_t *)&mn->push_timer))
			uv_timer_start(&mn->push_timer, on_push_timer, mn->push_ms, 0);
	}
	maybe_close_async(mn);
}

/* Conflicts logged per second at most; the rest of that second are counted
 * in one line once it is over (status counts every one). */
#define CONFLICT_LOG_MAX 10

/* key as printable ASCII for a log line: other bytes as \xNN, cut at about
 * 96 bytes. */
static void key_for_log(const char *key, size_t klen, char *buf, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < klen && o + 8 < cap; i++) {
		unsigned char c = (unsigned char)key[i];

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			buf[o++] = (char)c;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
		if (i + 1 < klen && o + 8 >= cap) {
			memcpy(buf + o, "...", 3);
			o += 3;
		}
	}
	buf[o] = 0;
}

/* Ends the conflict log's window once its second is over, with one line for
 * what it did not log. */
static void clog_roll(struct mn *mn, uint64_t now)
{
	if (now - mn->clog_start < 1000)
		return;
	if (mn->clog_n > CONFLICT_LOG_MAX)
		LOG(LOG_WARN, "masterless: %u more conflicts in the second before not logged",
		    mn->clog_n - CONFLICT_LOG_MAX);
	mn->clog_start = now;
	mn->clog_n = 0;
}

/* A write dropped by last-writer-wins, named with its key and both writes,
 * so that an operator can tell which write was lost. Every node that
 * resolves the pair logs it. */
static void io_conflict(void *ctx, const char *key, size_t klen, const struct ml_ext *kept,
			const struct ml_ext *lost)
{
	struct mn *mn = ctx;
	char kb[112];

	clog_roll(mn, uv_now(node_loop(mn->n)));
	if (mn->clog_n++ >= CONFLICT_LOG_MAX)
		return;
	key_for_log(key, klen, kb, sizeof kb);
	LOG(LOG_WARN, "masterless: concurrent writes of key '%s': kept the %s of node %u at "
	    "ts %llu, dropped the %s of node %u at ts %llu (last writer wins)", kb,
	    kept->flags & ML_V_TOMBSTONE ? "delete" : "write", kept->origin,
	    (unsigned long long)kept->ts, lost->flags & ML_V_TOMBSTONE ? "delete" : "write",
	    lost->origin, (unsigned long long)lost->ts);
}

static void on_tick(uv_timer_t *t)
{
	struct mn *mn = t->data;
	struct store_stats st;

	if (mn->stopping || !mn->m)
		return;
	/* A snapshot may have dropped the log segment holding the floor. */
	store_get_stats(mn->st, &st);
	if (st.snapshots != mn->snapshots && mn->floor) {
		uint64_t seq;
		mn->snapshots = st.snapshots;
		io_save_floor(mn, mn->floor, &seq);
	}
	lazy_begin(mn);
	ml_tick(mn->m);
	lazy_end(mn);
	if (mn->clog_n)
		clog_roll(mn, uv_now(node_loop(mn->n)));
}

static void on_message(void *arg, unsigned from, uint16_t type, const void *buf, size_t len)
{
	struct mn *mn = arg;

	if (mn->stopping || !mn->m || type < ML_MSG_FIRST || type > ML_MSG_LAST)
		return;
	/* A PUSH frame carries whole local writes of its sender (ml.c, eager
	 * push): its versions go into one store batch, which readers see
	 * applied at once. The lazy batch is submitted first when it could
	 * not also hold them all (collect() would cut the frame in two). A
	 * frame of more than KV_BATCH_MAX versions is cut all the same (a
	 * push unit of writes chained by rewritten keys, under 64 MiB: in
	 * practice never). */
	if (mn->lazy && mn->lazy->nops &&
	    ml_push_count(type, buf, len) > KV_BATCH_MAX - mn->lazy->nops)
		lazy_flush(mn);
	lazy_begin(mn);
	if (ml_receive(mn->m, from, type, buf, len) < 0)
		LOG(LOG_WARN, "masterless: frame %#x from %s failed", type, mn->mem.addrs[from]);
	lazy_end(mn);
}

static void on_peer_state(void *arg, unsigned id, int up)
{
	struct mn *mn = arg;

	if (mn->m)
		ml_peer_state(mn->m, id, up);
}

/* ---- repl_ops -------------------------------------------------------------------- */

static int key_exists(struct mn *mn, const char *key, size_t klen, struct ml_version *v, void **ref)
{
	if (io_get(mn, key, klen, v, ref))
		return 0;
	if (v->flags & ML_V_TOMBSTONE) {
		io_release(mn, *ref);
		return 0;
	}
	return 1;
}

static void mn_write(void *self, struct node_req *req)
{
	struct mn *mn = self;
	struct ml_version v;
	uint8_t metab[MN_META_LEN];
	void *ref;
	int rc = 0;

	if (mn->failed) {
		node_req_done(mn->n, req, -EROFS);
		return;
	}
	/* A version travels whole in one PUSH frame: a value that cannot fit
	 * would stay on this node forever, so refuse it (the key is unchanged). */
	for (uint32_t i = 0; i < req->batch.n; i++)
		if (req->batch.ops[i].vlen > MN_VALUE_MAX) {
			node_req_done(mn->n, req, -EFBIG);
			return;
		}
	/* Each op of the request adds at most one op to its batch: one that
	 * could not hold the pending versions as well goes after them. */
	if (mn->lazy && mn->lazy->nops > KV_BATCH_MAX - req->batch.n)
		lazy_flush(mn);
	if (mn->lazy) {
		/* Adopt the pending replicated versions: they share this
		 * write's sync and stay before it in the log. */
		mn->cur = lazy_take(mn);
		mn->cur->req = req;
		mn->cur->nremote = mn->cur->nops;
		mn->piggybacked += mn->cur->nops;
	} else {
		mn_begin(mn, req);
	}
	if (!mn->cur) {
		node_req_done(mn->n, req, -ENOMEM);
		return;
	}
	for (uint32_t i = 0; i < req->batch.n && !rc; i++) {
		const struct kv_op *op = &req->batch.ops[i];

		switch (op->kind) {
		case KV_PUT:
			meta_encode(&op->meta, metab);
			rc = ml_local_write(mn->m, op->key, op->klen, op->val, op->vlen,
					    metab, MN_META_LEN, !!(op->flags & KV_F_TOMBSTONE), NULL);
			break;
		case KV_DEL:
			/* A no-op when missing, as in the store. */
			if (!key_exists(mn, op->key, op->klen, &v, &ref))
				break;
			io_release(mn, ref);
			rc = ml_local_write(mn->m, op->key, op->klen, NULL, 0, NULL, 0, 1, NULL);
			break;
		case KV_META:
			if (!key_exists(mn, op->key, op->klen, &v, &ref))
				break;
			meta_encode(&op->meta, metab);
			rc = ml_local_write(mn->m, op->key, op->klen, v.val, v.vlen,
					    metab, MN_META_LEN, 0, NULL);
			io_release(mn, ref);
			break;
		default:
			rc = -EINVAL;
		}
	}
	if (rc) {
		/* Versions made before the error are already in the core's
		 * index: submit them anyway and fail the request (it may be
		 * partly applied, as a failed write may be anywhere). */
		struct mn_sub *s = mn->cur;
		s->req = NULL;
		mn_commit(mn);
		node_req_done(mn->n, req, rc);
		return;
	}
	mn_commit(mn);
}

/* Every acknowledged write was applied here before it was acknowledged;
 * masterless mode promises convergence, not linearizable reads (SPEC §3). */
static void mn_read_barrier(void *self, struct node_req *req)
{
	struct mn *mn = self;

	node_req_done(mn->n, req, 0);
}

static void mn_status(void *self, json_t *obj)
{
	struct mn *mn = self;
	struct ml_stats st;
	json_t *peers;

	json_object_set_new(obj, "role", json_string("masterless"));
	json_object_set_new(obj, "term", json_integer(0));
	json_object_set_new(obj, "leader", json_null());
	if (!mn->m)
		return;
	ml_get_stats(mn->m, &st);
	json_object_set_new(obj, "id", json_integer((json_int_t)mn->mem.self));
	json_object_set_new(obj, "self", json_string(mn->mem.addrs[mn->mem.self]));
	json_object_set_new(obj, "hlc", json_integer((json_int_t)st.hlc));
	json_object_set_new(obj, "hlc_ms", json_integer((json_int_t)(st.hlc >> 16)));
	json_object_set_new(obj, "conflicts", json_integer((json_int_t)st.conflicts));
	json_object_set_new(obj, "pending_push", json_integer((json_int_t)st.pending_push));
	json_object_set_new(obj, "tombstones", json_integer((json_int_t)st.tombstones));
	json_object_set_new(obj, "tombstones_collected",
			    json_integer((json_int_t)st.tombstones_collected));
	json_object_set_new(obj, "versions_applied", json_integer((json_int_t)st.versions_applied));
	json_object_set_new(obj, "ae_rounds", json_integer((json_int_t)st.ae_rounds));
	json_object_set_new(obj, "ae_in_sync", json_integer((json_int_t)st.ae_in_sync));
	json_object_set_new(obj, "ae_diff_leaves", json_integer((json_int_t)st.ae_diff_leaves));
	json_object_set_new(obj, "clock_ahead", json_integer((json_int_t)st.clock_ahead));
	json_object_set_new(obj, "bad_msgs", json_integer((json_int_t)st.bad_msgs));
	json_object_set_new(obj, "bad_versions", json_integer((json_int_t)st.bad_versions));
	json_object_set_new(obj, "msgs_dropped", json_integer((json_int_t)st.msgs_dropped));
	json_object_set_new(obj, "send_errors", json_integer((json_int_t)st.send_errors));
	json_object_set_new(obj, "batches_split", json_integer((json_int_t)st.batches_split));
	json_object_set_new(obj, "push_unheld", json_integer((json_int_t)st.push_unheld));
	json_object_set_new(obj, "io_errors", json_integer((json_int_t)st.io_errors));
	json_object_set_new(obj, "failed", json_boolean(mn->failed != 0));
	json_object_set_new(obj, "msgs_sent", json_integer((json_int_t)st.msgs_sent));
	json_object_set_new(obj, "versions_recv", json_integer((json_int_t)st.versions_recv));
	json_object_set_new(obj, "lazy_batches", json_integer((json_int_t)mn->lazy_batches));
	json_object_set_new(obj, "lazy_ops", json_integer((json_int_t)mn->lazy_ops));
	json_object_set_new(obj, "piggybacked_ops", json_integer((json_int_t)mn->piggybacked));
	peers = json_array();
	for (unsigned i = 0; i < mn->mem.n; i++) {
		json_t *p;
		if (i == mn->mem.self)
			continue;
		p = json_object();
		json_object_set_new(p, "id", json_integer((json_int_t)i));
		json_object_set_new(p, "addr", json_string(mn->mem.addrs[i]));
		json_object_set_new(p, "up", json_boolean(mn->net && peer_is_up(mn->net, i)));
		json_object_set_new(p, "live", json_boolean((st.live_peers >> i) & 1));
		json_array_append_new(peers, p);
	}
	json_object_set_new(obj, "peers", peers);
}

static int mn_replay(void *self, uint8_t type, uint64_t lsn, const void *p, size_t len)
{
	struct mn *mn = self;

	(void)lsn;
	if (type == MN_REC_FLOOR && len == 8 && get64(p) > mn->replayed_floor)
		mn->replayed_floor = get64(p);
	return 0;
}

/* $KVFS_ML_LAZY_MS overrides MN_LAZY_MS: 0 submits every received frame
 * at once (one sync each, the behaviour before the lazy batch, for
 * comparison); tests make it long to hold versions unsynced on purpose. */
static uint64_t lazy_ms_from_env(void)
{
	uint64_t v = node_env_ms("KVFS_ML_LAZY_MS", MN_LAZY_MS, 3600000);

	if (v != MN_LAZY_MS)
		LOG(LOG_INFO, "masterless: replicated versions are synced within %lu ms",
		    (unsigned long)v);
	return v;
}

static int mn_start(void *self)
{
	struct mn *mn = self;
	const struct node_config *cfg = node_config(mn->n);
	struct ml_config mc;
	struct ml_io io;
	struct timespec ts;
	int rc;

	mn->st = node_store(mn->n);
	rc = peer_members_init(&mn->mem, cfg->listen, (const char *const *)cfg->peers, cfg->npeers);
	if (rc) {
		LOG(LOG_ERROR, "masterless: bad --listen/--peers: %s", strerror(-rc));
		return rc;
	}
	if (mn->mem.n > ML_MAX_NODES) {
		LOG(LOG_ERROR, "masterless: %zu members, at most %d supported", mn->mem.n, ML_MAX_NODES);
		return -EINVAL;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	mn->rnd = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
	mn->async.data = mn;
	rc = uv_async_init(node_loop(mn->n), &mn->async, on_async);
	if (rc)
		return rc;
	mn->handles |= 1;
	uv_timer_init(node_loop(mn->n), &mn->timer);
	mn->timer.data = mn;
	mn->handles |= 2;
	uv_timer_init(node_loop(mn->n), &mn->lazy_timer);
	mn->lazy_timer.data = mn;
	mn->handles |= 4;
	mn->lazy_ms = lazy_ms_from_env();
	uv_timer_init(node_loop(mn->n), &mn->push_timer);
	mn->push_timer.data = mn;
	mn->handles |= 8;
	mn->push_ms = node_env_ms("KVFS_ML_PUSH_MS", MN_PUSH_MS, 3600000);

	memset(&mc, 0, sizeof(mc));
	mc.self = mn->mem.self;
	mc.n = (unsigned)mn->mem.n;
	mc.hlc_floor = mn->replayed_floor;
	/* A local write's versions travel in one PUSH frame up to what the
	 * transport carries, header included. */
	mc.max_frame_bytes = MN_FRAME_MAX;
	memset(&io, 0, sizeof(io));
	io.ctx = mn;
	io.send = io_send;
	io.now_ms = io_now;
	io.random = io_random;
	io.get = io_get;
	io.release = io_release;
	io.put = io_put;
	io.purge = io_purge;
	io.durable = io_durable;
	io.scan = io_scan;
	io.conflict = io_conflict;
	io.save_floor = io_save_floor;
	rc = ml_new(&mc, &io, &mn->m);
	if (rc) {
		LOG(LOG_ERROR, "masterless: cannot start the replication core: %s", strerror(-rc));
		return rc;
	}
	rc = peer_net_new(node_loop(mn->n), cfg->listen, (const char *const *)cfg->peers,
			  cfg->npeers, on_message, on_peer_state, mn, &mn->net);
	if (rc)
		return rc;
	rc = peer_net_start(mn->net);
	if (rc)
		return rc;
	uv_timer_start(&mn->timer, on_tick, MN_TICK_MS, MN_TICK_MS);
	LOG(LOG_INFO, "masterless: node %u of %zu (%s)", mn->mem.self, mn->mem.n,
	    mn->mem.addrs[mn->mem.self]);
	return 0;
}

static void on_net_closed(void *arg)
{
	(void)arg;
}

static void mn_stop(void *self)
{
	struct mn *mn = self;

	/* Received versions go to the store like any batch: cheaper than
	 * fetching them again after the restart. */
	lazy_flush(mn);
	mn->stopping = 1;
	if (mn->net) {
		peer_net_close(mn->net, on_net_closed, mn);
		mn->net = NULL;
	}
	if (mn->handles & 2) {
		mn->handles &= ~2;
		uv_close((uv_handle_t *)&mn->timer, NULL);
	}
	if (mn->handles & 4) {
		mn->handles &= ~4;
		uv_close((uv_handle_t *)&mn->lazy_timer, NULL);
	}
	if (mn->handles & 8) {
		mn->handles &= ~8;
		uv_close((uv_handle_t *)&mn->push_timer, NULL);
	}
	/* The async handle stays open until the store has reported every
	 * submission: their callbacks point at us. */
	maybe_close_async(mn);
}

static void mn_destroy(void *self)
{
	struct mn *mn = self;

	ml_free(mn->m);
	while (mn->shead) {
		struct mn_sub *s = mn->shead;
		mn->shead = s->next;
		sub_free(s);
	}
	if (mn->ht) {
		for (size_t i = 0; i < mn->ht_cap; i++) {
			struct ov *o = mn->ht[i], *next;
			for (; o; o = next) {
				next = o->hnext;
				ov_unref(o);
			}
		}
		free(mn->ht);
	}
	peer_members_free(&mn->mem);
	pthread_mutex_destroy(&mn->mu);
	free(mn);
}

static const struct repl_ops masterless_ops = {
	.name = "masterless",
	.replay = mn_replay,
	.start = mn_start,
	.write = mn_write,
	.read_barrier = mn_read_barrier,
	.status = mn_status,
	.stop = mn_stop,
	.destroy = mn_destroy,
};

int repl_masterless_new(node *n, const struct node_config *cfg, void **self,
			const struct repl_ops **ops)
{
	struct mn *mn;

	if (!cfg->listen) {
		LOG(LOG_ERROR, "--mode masterless needs --listen and --peers");
		return -EINVAL;
	}
	mn = calloc(1, sizeof(*mn));
	if (!mn)
		return -ENOMEM;
	mn->n = n;
	pthread_mutex_init(&mn->mu, NULL);
	*self = mn;
	*ops = &masterless_ops;
	return 0;
}
