/*
 * ml.c — the masterless replication core, see ml.h. Frame formats are in
 * ml_wire.h.
 *
 * State. An in-memory index holds one entry per stored version (key, hash of
 * its ext, its write identity (origin, ts), tombstone acknowledgements). The
 * values stay in the store; the index exists because the digest buckets are
 * by key hash, which no ordered store can enumerate cheaply. Per leaf bucket
 * the index keeps the sum of the entries' version hashes, per group the sum
 * of its leaves, so a write updates the digest in O(1) (sums rather than XOR
 * so that two equal contributions cannot cancel).
 *
 * Anti-entropy (the Merkle-tree exchange of Dynamo section 4.7, with a fixed
 * two-level tree as in Riak's hashtrees):
 *   A -> B  ROOT    A's 64 group hashes
 *   B -> A  LEAVES  B's leaf hashes for the groups that differ (capped)
 *   A -> B  KEYS    A's (key, version hash) for the leaves that differ (capped)
 *   B -> A  PUSH    B's versions that A lacks or that differ
 *   B -> A  WANT    keys whose versions B lacks or that differ
 *   A -> B  PUSH    A's versions for those keys
 * Resolution is commutative and idempotent, so after both sides applied what
 * they received they hold the same winner with the same merged clock. Every
 * frame stops at max_msg_bytes / max_keys_msg; what did not fit is found
 * again by a later round. A node also answers a PUSH whose versions lost to
 * its own with its own version, so conflicts settle within one round trip.
 *
 * Tombstones (NOTES: collect only once every replica has them; Cassandra's
 * gc_grace, Riak's delete_mode). Each node announces, every tomb_ms, for each
 * tombstone it holds durably, level 0 "I have it" or, once it has heard
 * level >= 0 from every node, level 1 "everybody has it". A node collects a
 * tombstone when it has heard level 1 from every node. Why two levels: a
 * node at level 1 stops offering the tombstone to anti-entropy (it leaves
 * the digest and the KEYS lists) because everyone has it; once every node is
 * at level 1 no node offers it any more, so a collecting node is never handed
 * the tombstone back. A node asked about a tombstone at level 1 that it no
 * longer holds answers level 2 ("collected"), which counts as level 1: the
 * last acknowledgement may have been lost, and the asker must still finish.
 *
 * Ordering. The network may reorder and duplicate, and the transport uses two
 * connections per pair. A collecting node must never apply a version that a
 * peer sent BEFORE that peer's level-1 announcement (it would be the deleted
 * value, arriving after the tombstone is gone). So every frame carries the
 * sender's (incarnation, seq), and per sender the receiver drops a PUSH or
 * TOMB older than the newest TOMB it accepted, and any PUSH or TOMB of an
 * older incarnation. After its level-1 announcement a sender only ever holds
 * the tombstone or a newer version, and PUSH frames are built from the
 * current version at send time, so nothing it sends later can resurrect the
 * key. (A receiver's restart is safe because frames do not survive it: its
 * connections die with it, and a frame still queued at the sender is behind
 * the announcement in the sender's FIFO queue.)
 *
 * Durability. A node pushes only versions that are durable in its store and
 * acknowledges only durable tombstones: an announcement must survive a crash
 * of the announcer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/ml_int.h"

/* ---- index ---------------------------------------------------------------- */

static uint64_t key_hash(const char *key, size_t klen)
{
	return mlw_hash(key, klen, 0x6b766673u /* "kvfs" */);
}

uint32_t ml__leaf_of(uint64_t khash)
{
	return (uint32_t)(khash >> 52); /* top 12 bits: 4096 leaves */
}

int ml__key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static struct ent *ht_find(const ml *m, const char *key, size_t klen, uint64_t khash)
{
	struct ent *e;

	for (e = m->ht[khash & (m->ht_cap - 1)]; e; e = e->hnext)
		if (e->khash == khash && e->klen == klen && !memcmp(e->key, key, klen))
			return e;
	return NULL;
}

static int ht_grow(ml *m)
{
	size_t cap = m->ht_cap * 2, i;
	struct ent **ht = calloc(cap, sizeof(*ht));

	if (!ht)
		return -ENOMEM;
	for (i = 0; i < m->ht_cap; i++) {
		struct ent *e = m->ht[i], *next;
		for (; e; e = next) {
			next = e->hnext;
			e->hnext = ht[e->khash & (cap - 1)];
			ht[e->khash & (cap - 1)] = e;
		}
	}
	free(m->ht);
	m->ht = ht;
	m->ht_cap = cap;
	return 0;
}

void ml__digest_add(ml *m, const struct ent *e, int sign)
{
	uint32_t leaf = ml__leaf_of(e->khash);
	uint64_t d = sign > 0 ? e->vhash : (uint64_t)0 - e->vhash;

	m->leaf_hash[leaf] += d;
	m->group_hash[leaf / ML_LEAVES_PER] += d;
}

static struct ent *ent_new(ml *m, const char *key, size_t klen, uint64_t khash)
{
	struct ent *e;
	uint32_t leaf = ml__leaf_of(khash);

	if (m->ht_n >= m->ht_cap && ht_grow(m))
		return NULL;
	e = calloc(1, sizeof(*e) + klen + 1);
	if (!e)
		return NULL;
	e->khash = khash;
	e->klen = (uint32_t)klen;
	memcpy(e->key, key, klen);
	e->hnext = m->ht[khash & (m->ht_cap - 1)];
	m->ht[khash & (m->ht_cap - 1)] = e;
	e->lnext = m->leaf[leaf];
	if (e->lnext)
		e->lnext->lprev = e;
	m->leaf[leaf] = e;
	m->ht_n++;
	return e; /* vhash 0: contributes nothing until ent_update */
}

void ml__tlist_add(ml *m, struct ent *e)
{
	e->tnext = NULL;
	e->tprev = m->t_tail;
	if (m->t_tail)
		m->t_tail->tnext = e;
	else
		m->t_head = e;
	m->t_tail = e;
	m->t_n++;
}

void ml__tlist_del(ml *m, struct ent *e)
{
	if (e->tprev)
		e->tprev->tnext = e->tnext;
	else
		m->t_head = e->tnext;
	if (e->tnext)
		e->tnext->tprev = e->tprev;
	else
		m->t_tail = e->tprev;
	e->tprev = e->tnext = NULL;
	m->t_n--;
}

void ml__ent_free(ml *m, struct ent *e)
{
	struct ent **pp = &m->ht[e->khash & (m->ht_cap - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->lprev)
		e->lprev->lnext = e->lnext;
	else
		m->leaf[ml__leaf_of(e->khash)] = e->lnext;
	if (e->lnext)
		e->lnext->lprev = e->lprev;
	if (!e->excluded)
		ml__digest_add(m, e, -1);
	if (e->tomb)
		ml__tlist_del(m, e);
	m->ht_n--;
	free(e);
}

/* Points the entry at a new current version. Tombstone acknowledgements are
 * about a write, so they survive a clock merge that keeps the same write. */
static void ent_update(ml *m, struct ent *e, const struct ml_ext *x, uint64_t vhash, uint64_t seq)
{
	int tomb = !!(x->flags & ML_V_TOMBSTONE);
	int same = e->tomb && tomb && e->origin == x->origin && e->ts == x->ts;

	if (!e->excluded)
		ml__digest_add(m, e, -1);
	if (!same) {
		e->have = e->l1 = 0;
		e->excluded = 0;
	}
	if (tomb && !e->tomb)
		ml__tlist_add(m, e);
	else if (!tomb && e->tomb)
		ml__tlist_del(m, e);
	e->tomb = (uint8_t)tomb;
	e->vhash = vhash;
	e->seq = seq;
	e->origin = x->origin;
	e->ts = x->ts;
	if (!e->excluded)
		ml__digest_add(m, e, +1);
}

static uint64_t version_hash(uint64_t khash, const void *ext, size_t len)
{
	return mlw_hash(ext, len, khash);
}

/* ---- frames --------------------------------------------------------------- */

void ml__fb_reset(struct fb *f)
{
	mlw_out_reset(&f->body);
	f->count = 0;
}

/* Assembles header [+ count] + body into m->frame. */
static int frame_build(ml *m, const struct fb *f, int counted)
{
	mlw_out_reset(&m->frame);
	mlw_put_var(&m->frame, m->inc);
	mlw_put_var(&m->frame, ++m->seq);
	if (counted)
		mlw_put_var(&m->frame, f->count);
	mlw_put_bytes(&m->frame, f->body.p, f->body.len);
	if (f->body.err)
		return f->body.err;
	return m->frame.err;
}

int ml__gated(const ml *m)
{
	return m->gate_seq && m->io.durable(m->io.ctx) < m->gate_seq;
}

static void frame_send(ml *m, unsigned to, uint16_t type)
{
	int r;

	if (ml__gated(m)) {
		m->st.send_gated++;
		return;
	}
	r = m->io.send(m->io.ctx, to, type, m->frame.p, m->frame.len);
	if (r < 0) {
		m->st.send_errors++;
		return;
	}
	m->st.msgs_sent++;
	m->st.bytes_sent += m->frame.len;
}

void ml__fb_send(ml *m, unsigned to, uint16_t type, const struct fb *f, int counted)
{
	if (frame_build(m, f, counted) == 0)
		frame_send(m, to, type);
}

void ml__fb_broadcast(ml *m, uint16_t type, const struct fb *f)
{
	unsigned i;

	if (frame_build(m, f, 1))
		return;
	for (i = 0; i < m->cfg.n; i++)
		if (i != m->cfg.self)
			frame_send(m, i, type);
}

int ml__fb_full(const ml *m, const struct fb *f, size_t more)
{
	return f->count && (f->count >= m->cfg.max_keys_msg ||
			    f->body.len + more > m->cfg.max_msg_bytes);
}

int ml__durable_ent(const ml *m, const struct ent *e)
{
	return e->seq <= m->io.durable(m->io.ctx);
}

/* Appends the current version of e to a PUSH body: with max_bytes 0 if it
 * fits the soft caps (ml__fb_full), else if the body stays within
 * max_bytes (a first version always fits). Returns 1 if appended, 0 if it
 * does not fit (or is not durable yet), -errno on error; with max_bytes,
 * -ENOENT when the store lacks the version (without, that is 0: skipped). */
int ml__fb_add_version_max(ml *m, struct fb *f, const struct ent *e, size_t max_bytes)
{
	struct ml_version v;
	void *ref = NULL;
	size_t need;
	int r, full;

	if (!ml__durable_ent(m, e))
		return 0;
	r = m->io.get(m->io.ctx, e->key, e->klen, &v, &ref);
	if (r == -ENOENT) {
		/* The index and the store disagree (a failed put): skip. */
		m->st.io_errors++;
		return max_bytes ? -ENOENT : 0;
	}
	if (r < 0) {
		m->st.io_errors++;
		return r;
	}
	need = e->klen + v.ext_len + v.mlen + v.vlen + 32;
	if (max_bytes)
		full = f->count && f->body.len + need > max_bytes;
	else
		full = ml__fb_full(m, f, need);
	if (full) {
		m->io.release(m->io.ctx, ref);
		return 0;
	}
	mlw_put_lbytes(&f->body, e->key, e->klen);
	mlw_put_u8(&f->body, (uint8_t)(v.flags & ML_V_TOMBSTONE));
	mlw_put_lbytes(&f->body, v.ext, v.ext_len);
	mlw_put_lbytes(&f->body, v.meta, v.mlen);
	mlw_put_lbytes(&f->body, v.val, v.vlen);
	f->count++;
	m->io.release(m->io.ctx, ref);
	return 1;
}

/* The same within the soft caps, for anti-entropy and answers to a PUSH,
 * which leave out local writes the eager push has yet to carry
 * (ml__push_pending). */
int ml__fb_add_version(ml *m, struct fb *f, const struct ent *e)
{
	if (ml__push_pending(m, e))
		return 0;
	return ml__fb_add_version_max(m, f, e, 0);
}

/* ---- versions -------------------------------------------------------------- */

/* A receive event of the HLC. A timestamp further ahead of our wall clock
 * than max_drift_ms is refused (Kulkarni et al., section 3: a node may ignore
 * a message whose l is beyond pt + epsilon): following it would carry every
 * later write of this node into the future and let it win LWW against writes
 * made after it, and a corrupt value near 2^64 would exhaust the clock.
 * Returns 0, or -ERANGE for a refused timestamp (counted). */
static int observe_ts(ml *m, uint64_t ts)
{
	uint64_t now = m->io.now_ms(m->io.ctx);

	if (hlc_ms(ts) > now + m->cfg.max_drift_ms) {
		m->st.clock_ahead++;
		return -ERANGE;
	}
	hlc_update(&m->hlc, ts, now);
	return 0;
}

static int ext_same(const struct ml_ext *a, const struct ml_ext *b)
{
	return a->origin == b->origin && a->ts == b->ts && a->flags == b->flags &&
	       vclock_compare(&a->clock, &b->clock) == VCLOCK_EQUAL;
}

/* Stores `v` with ext `x` (re-encoded) and points the index at it. */
static int store_version(ml *m, struct ent *e, const char *key, size_t klen,
			 const struct ml_version *v, const struct ml_ext *x)
{
	uint8_t ext[ML_EXT_MAX];
	struct ml_version nv = *v;
	uint64_t seq = 0;
	int r;

	r = ml_ext_encode(x, ext, sizeof(ext));
	if (r < 0) {
		if (!e->vhash)
			ml__ent_free(m, e);
		return r;
	}
	nv.flags = x->flags;
	nv.ext = ext;
	nv.ext_len = (uint32_t)r;
	if (nv.flags & ML_V_TOMBSTONE) {
		nv.val = NULL;
		nv.vlen = 0;
	}
	r = m->io.put(m->io.ctx, key, klen, &nv, &seq);
	if (r < 0) {
		m->st.io_errors++;
		if (!e->vhash)
			ml__ent_free(m, e); /* created for this put: nothing stored */
		return r;
	}
	ent_update(m, e, x, version_hash(e->khash, nv.ext, nv.ext_len), seq);
	return 0;
}

struct ent *ml__ent_get(ml *m, const char *key, size_t klen, int create)
{
	uint64_t kh = key_hash(key, klen);
	struct ent *e = ht_find(m, key, klen, kh);

	if (!e && create)
		e = ent_new(m, key, klen, kh);
	return e;
}

/* Applies a received version. *reply is set when the sender should get our
 * version back (it lost, or it won only after a clock merge). */
static int apply_version(ml *m, const char *key, size_t klen, const struct ml_version *rv,
			 int *reply)
{
	struct ml_ext rx, lx, mx;
	struct ml_version lv;
	void *ref = NULL;
	struct ent *e;
	int r, win, conc, have_local;

	*reply = 0;
	m->st.versions_recv++;
	if (ml_ext_decode(rv->ext, rv->ext_len, &rx) || rx.flags != (rv->flags & ML_V_TOMBSTONE)) {
		m->st.bad_versions++;
		return 0;
	}
	if (observe_ts(m, rx.ts))
		return 0;
	e = ml__ent_get(m, key, klen, 1);
	if (!e)
		return -ENOMEM;
	r = m->io.get(m->io.ctx, key, klen, &lv, &ref);
	if (r < 0 && r != -ENOENT) {
		m->st.io_errors++;
		return r;
	}
	have_local = r == 0 && ml_ext_decode(lv.ext, lv.ext_len, &lx) == 0;
	if (r == 0 && !have_local)
		m->st.bad_versions++;
	if (!have_local) {
		if (ref)
			m->io.release(m->io.ctx, ref);
		r = store_version(m, e, key, klen, rv, &rx);
		if (r == 0)
			m->st.versions_applied++;
		return r;
	}
	win = ml_resolve(&lx, &rx, &mx, &conc);
	if (conc) {
		m->st.conflicts++;
		if (m->io.conflict)
			m->io.conflict(m->io.ctx, key, klen, win ? &rx : &lx, win ? &lx : &rx);
	}
	if (ext_same(&mx, &lx)) {
		/* Ours dominates or equals: nothing to store. */
		m->st.versions_stale++;
		*reply = !ext_same(&lx, &rx);
		r = 0;
	} else {
		r = store_version(m, e, key, klen, win ? rv : &lv, &mx);
		if (r == 0)
			m->st.versions_applied++;
		*reply = !ext_same(&mx, &rx);
	}
	m->io.release(m->io.ctx, ref);
	return r;
}

/* Makes sure a restart starts the clock above `ts`. A timestamp this node
 * issued or observed normally survives in some stored version (a version is
 * only replaced by one with a larger timestamp), except when a tombstone is
 * collected, and the incarnation is stored nowhere: those two save the
 * clock as a floor first. Saved before the purge, hence durable no later
 * than it. Saving the whole clock (not just `ts`) makes the next need rare. */
int ml__save_floor(ml *m, uint64_t ts)
{
	uint64_t seq = 0, v = m->hlc.last > ts ? m->hlc.last : ts;
	int r;

	if (!m->io.save_floor || ts <= m->floor)
		return 0;
	r = m->io.save_floor(m->io.ctx, v, &seq);
	if (r < 0) {
		m->st.io_errors++;
		return r;
	}
	m->floor = v;
	return 0;
}

int ml_local_write(ml *m, const char *key, size_t klen, const void *val, uint32_t vlen,
		   const void *meta, uint32_t mlen, int tombstone, uint64_t *ts_out)
{
	struct ml_version lv, nv;
	struct ml_ext x;
	void *ref = NULL;
	struct ent *e;
	struct pq *q;
	int r;

	if (!key || !klen || klen > ML_KEY_MAX)
		return -EINVAL;
	q = malloc(sizeof(*q) + klen);
	if (!q)
		return -ENOMEM;
	e = ml__ent_get(m, key, klen, 1);
	if (!e) {
		r = -ENOMEM;
		goto err;
	}
	vclock_init(&x.clock);
	r = m->io.get(m->io.ctx, key, klen, &lv, &ref);
	if (r == 0) {
		struct ml_ext lx;
		/* The new write follows whatever this node holds now (Dynamo:
		 * the coordinator's clock for the key, advanced at its own
		 * entry). An undecodable local version is simply overwritten. */
		if (ml_ext_decode(lv.ext, lv.ext_len, &lx) == 0)
			x.clock = lx.clock;
		m->io.release(m->io.ctx, ref);
	} else if (r != -ENOENT) {
		m->st.io_errors++;
		goto err;
	}
	x.ts = hlc_now(&m->hlc, m->io.now_ms(m->io.ctx));
	x.origin = m->cfg.self;
	x.flags = tombstone ? ML_V_TOMBSTONE : 0;
	vclock_set(&x.clock, m->cfg.self, x.ts);
	memset(&nv, 0, sizeof(nv));
	nv.val = val;
	nv.vlen = vlen;
	nv.meta = meta;
	nv.mlen = mlen;
	r = store_version(m, e, key, klen, &nv, &x);
	if (r < 0)
		goto err_stored; /* store_version dropped an entry it emptied */
	m->st.local_writes++;
	q->next = NULL;
	q->seq = e->seq;
	q->queued_ms = m->io.now_ms(m->io.ctx);
	q->klen = (uint32_t)klen;
	memcpy(q->key, key, klen);
	if (m->pq_tail)
		m->pq_tail->next = q;
	else
		m->pq_head = q;
	m->pq_tail = q;
	m->pq_n++;
	if (ts_out)
		*ts_out = x.ts;
	return 0;
err:
	if (e && !e->vhash)
		ml__ent_free(m, e); /* created above, never stored */
err_stored:
	free(q);
	return r;
}

/* ---- eager push ------------------------------------------------------------ */

/* Drops the head of the push queue. */
static void pq_pop(ml *m)
{
	struct pq *q = m->pq_head;

	m->pq_head = q->next;
	if (!m->pq_head)
		m->pq_tail = NULL;
	m->pq_n--;
	free(q);
}

/* Whether the oldest write in the push queue is `ms` old (or the clock went
 * back). Measured from the write, not from the start of a wait: a key
 * rewritten without pause between other writes would otherwise start a new
 * wait with every unit it is in. */
static int push_older_than(const ml *m, uint64_t ms)
{
	uint64_t now = m->io.now_ms(m->io.ctx), t = m->pq_head->queued_ms;

	return now < t || now - t >= ms;
}

/* Whether e's current version is a local write the eager push has not
 * carried yet. Anti-entropy leaves such a version alone: it would hand a
 * peer this key of a multi-key write ahead of the others, which the push
 * carries together a moment later (ml_flush). A merged version this node
 * re-stored after the queue's head is held back too, for as long as the
 * queue takes to pass it. Not once the queue's head is ML_PUSH_AE_HOLD_MS
 * old: a durable write is pushed within ML_PUSH_HOLD_MS, so a queue that
 * old has stopped moving, and anti-entropy then carries what it can. */
int ml__push_pending(const ml *m, const struct ent *e)
{
	return e->origin == m->cfg.self && m->pq_head && e->seq >= m->pq_head->seq &&
	       !push_older_than(m, ML_PUSH_AE_HOLD_MS);
}

/*
 * The unit of eager push: the queued writes at the head of the queue up to
 * store position *end, which starts at the head's. A local write is one
 * store batch, so its keys share one position; they are pushed in one frame
 * so that a replica, which applies a frame in one store batch
 * (cluster/ml_node.c), shows them together (SPEC §5: batch and MSET are
 * atomic, §3: so is a directory rename). A key of the unit whose current
 * version is a later local write pulls that write's whole position into
 * the unit, since it is the version pushed: sending it alone would show
 * part of the later write. Returns 1 with *end set, or, with `wait`, 0
 * when such a later version of this node's (a local write, or a merge it
 * stored) is not durable yet: the unit then waits for the flush after its
 * sync rather than push this key's older neighbours without it. Without
 * `wait` such a key is left out (push_unit_add skips a version that is not
 * durable; its own unit carries it next).
 */
static int push_unit_end(ml *m, uint64_t durable, uint64_t *end, int wait)
{
	struct pq *q;

	*end = m->pq_head->seq;
	for (q = m->pq_head; q && q->seq <= *end; q = q->next) {
		struct ent *e = ml__ent_get(m, q->key, q->klen, 0);

		if (!e || e->origin != m->cfg.self || e->seq <= *end)
			continue;
		if (e->seq > durable) {
			if (wait)
				return 0;
			continue;
		}
		*end = e->seq;
	}
	return 1;
}

/* Whether the head unit may still wait for a later local write to one of
 * its keys (push_unit_end). A key written again and again (a counter) has
 * a newer write on its way to the disk almost every time the push runs:
 * waiting for it without end would hold back every write queued behind
 * it, for as long as the key keeps changing. Once the unit's first write
 * is ML_PUSH_HOLD_MS old, the unit goes without that key's newer version
 * (counted: push_unheld), and replicas may then see the unit's other keys
 * beside that key's older value until its next push, a few milliseconds
 * later. */
static int push_may_wait(ml *m)
{
	if (!push_older_than(m, ML_PUSH_HOLD_MS))
		return 1;
	m->st.push_unheld++;
	return 0;
}

/* Moves the unit's versions into f (a key once, however often it was
 * written). Versions not durable are left out: they were written by
 * another node, concurrently, and its own push carries them; so is a key
 * the store fails to read (counted), which anti-entropy carries later. A
 * unit larger than max_frame_bytes cannot travel in one frame: it is
 * broadcast in pieces as they fill (counted in batches_split), after the
 * frame of the units before it (`before`), which is sent and emptied
 * first. */
static void push_unit_add(ml *m, struct fb *f, struct fb *before, uint64_t end)
{
	uint32_t stamp = ++m->stamp;
	int split = 0;

	while (m->pq_head && m->pq_head->seq <= end) {
		struct pq *q = m->pq_head;
		struct ent *e = ml__ent_get(m, q->key, q->klen, 0);

		if (e && e->mark != stamp && ml__durable_ent(m, e)) {
			int r = ml__fb_add_version_max(m, f, e, m->cfg.max_frame_bytes);

			/* r < 0: the store cannot give the version (counted);
			 * anti-entropy carries it once it can. */
			if (r == 0 && f->count) {
				if (before->count) {
					ml__fb_broadcast(m, ML_MSG_PUSH, before);
					ml__fb_reset(before);
				}
				ml__fb_broadcast(m, ML_MSG_PUSH, f);
				ml__fb_reset(f);
				split = 1;
				continue; /* this key again, in an empty frame */
			}
			e->mark = stamp;
		}
		pq_pop(m);
	}
	if (split)
		m->st.batches_split++;
}

/* Appends one frame body to another. */
static void fb_append(struct fb *to, const struct fb *from)
{
	mlw_put_bytes(&to->body, from->body.p, from->body.len);
	to->count += from->count;
}

/* Frees a buffer that one large frame grew past ML_KEEP_BODY_BYTES (it is
 * empty between frames), rather than keep it for the node's lifetime. */
static void shrink(struct mlw_out *o)
{
	if (o->cap > ML_KEEP_BODY_BYTES) {
		mlw_out_free(o);
		mlw_out_init(o);
	}
}

void ml_flush(ml *m)
{
	uint64_t durable = m->io.durable(m->io.ctx), end;
	struct fb *f = &m->fb1, *unit = &m->fb3;

	if (ml__gated(m) || !m->pq_head)
		return;
	if (m->cfg.n < 2) {
		/* A node alone just empties the queue. */
		while (m->pq_head && m->pq_head->seq <= durable)
			pq_pop(m);
		return;
	}
	ml__fb_reset(f);
	while (m->pq_head && m->pq_head->seq <= durable) {
		if (!push_unit_end(m, durable, &end, 1)) {
			if (push_may_wait(m))
				break;
			push_unit_end(m, durable, &end, 0);
		}
		ml__fb_reset(unit);
		push_unit_add(m, unit, f, end);
		/* Several units share a frame up to the soft caps; one unit
		 * alone may pass them (as one large version does). */
		if (f->count && (f->count + unit->count > m->cfg.max_keys_msg ||
				 f->body.len + unit->body.len > m->cfg.max_msg_bytes)) {
			ml__fb_broadcast(m, ML_MSG_PUSH, f);
			ml__fb_reset(f);
		}
		fb_append(f, unit);
		if (ml__fb_full(m, f, 0)) {
			ml__fb_broadcast(m, ML_MSG_PUSH, f);
			ml__fb_reset(f);
		}
	}
	if (f->count)
		ml__fb_broadcast(m, ML_MSG_PUSH, f);
	/* A push of a large write left buffers of up to 64 MiB behind. */
	shrink(&f->body);
	shrink(&unit->body);
	shrink(&m->frame);
}

static int recv_push(ml *m, unsigned from, struct mlw_in *in)
{
	uint64_t count = mlw_get_var(in), i;
	struct fb *back = &m->fb2;
	int r, reply;

	ml__fb_reset(back);
	for (i = 0; i < count && !in->err; i++) {
		struct ml_version v;
		size_t klen, n;
		const char *key = mlw_get_lbytes(in, ML_KEY_MAX, &klen);

		v.flags = mlw_get_u8(in);
		v.ext = mlw_get_lbytes(in, ML_EXT_MAX, &n);
		v.ext_len = (uint32_t)n;
		v.meta = mlw_get_lbytes(in, UINT32_MAX, &n);
		v.mlen = (uint32_t)n;
		v.val = mlw_get_lbytes(in, UINT32_MAX, &n);
		v.vlen = (uint32_t)n;
		if (in->err || !klen || (v.flags & ~ML_V_TOMBSTONE))
			return -EBADMSG;
		r = apply_version(m, key, klen, &v, &reply);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			continue; /* refused by the store (counted): the next one */
		if (reply) {
			struct ent *e = ml__ent_get(m, key, klen, 0);
			if (e && ml__fb_add_version(m, back, e) < 0)
				m->st.io_errors++;
		}
	}
	if (mlw_in_done(in))
		return -EBADMSG;
	if (back->count)
		ml__fb_send(m, from, ML_MSG_PUSH, back, 1);
	return 0;
}

/* ---- entry points ---------------------------------------------------------- */

int ml_receive(ml *m, unsigned from, uint16_t type, const void *buf, size_t len)
{
	struct mlw_in in;
	struct peer *p;
	uint64_t inc, seq;
	int r;

	if (from >= m->cfg.n || from == m->cfg.self)
		return -EINVAL;
	if (type < ML_MSG_FIRST || type > ML_MSG_LAST)
		return -EINVAL;
	m->st.msgs_recv++;
	m->st.bytes_recv += len;
	mlw_in_init(&in, buf, len);
	inc = mlw_get_var(&in);
	seq = mlw_get_var(&in);
	if (in.err) {
		m->st.bad_msgs++;
		return 0;
	}
	/* An incarnation is a timestamp: one from the far future is corrupt,
	 * and believing it would make every later frame of that peer look
	 * stale. */
	if (hlc_ms(inc) > m->io.now_ms(m->io.ctx) + m->cfg.max_drift_ms) {
		m->st.clock_ahead++; /* visible in status: a peer whose clock runs fast */
		return 0;
	}
	p = &m->peers[from];
	p->heard_ms = m->io.now_ms(m->io.ctx);
	if (!p->heard_ms)
		p->heard_ms = 1;
	/* Ordering (see the top of this file). */
	if (inc > p->inc) {
		p->inc = inc;
		p->tomb_seq = 0;
	} else if (inc < p->inc && (type == ML_MSG_PUSH || type == ML_MSG_TOMB)) {
		m->st.msgs_dropped++;
		return 0;
	}
	if ((type == ML_MSG_PUSH && seq < p->tomb_seq) ||
	    (type == ML_MSG_TOMB && seq <= p->tomb_seq)) {
		m->st.msgs_dropped++;
		return 0;
	}
	if (type == ML_MSG_TOMB)
		p->tomb_seq = seq;

	switch (type) {
	case ML_MSG_PUSH:   r = recv_push(m, from, &in); break;
	case ML_MSG_ROOT:   r = ml__recv_root(m, from, &in); break;
	case ML_MSG_LEAVES: r = ml__recv_leaves(m, from, &in); break;
	case ML_MSG_KEYS:   r = ml__recv_keys(m, from, &in); break;
	case ML_MSG_WANT:   r = ml__recv_want(m, from, &in); break;
	default:            r = ml__recv_tomb(m, from, &in); break;
	}
	if (r == -EBADMSG) {
		m->st.bad_msgs++;
		return 0;
	}
	return r;
}

uint64_t ml_push_count(uint16_t type, const void *buf, size_t len)
{
	struct mlw_in in;
	uint64_t count;

	if (type != ML_MSG_PUSH)
		return 0;
	mlw_in_init(&in, buf, len);
	(void)mlw_get_var(&in); /* incarnation */
	(void)mlw_get_var(&in); /* seq */
	count = mlw_get_var(&in);
	return in.err ? 0 : count;
}

void ml_tick(ml *m)
{
	uint64_t now = m->io.now_ms(m->io.ctx);

	ml_flush(m);
	if (m->cfg.n < 2) {
		struct ent *e, *next;
		for (e = m->t_head; e; e = next) {
			next = e->tnext;
			ml__tomb_progress(m, e);
		}
		return;
	}
	if (now >= m->next_gossip) {
		/* Jitter the period by up to a quarter so that nodes started
		 * together do not gossip in lockstep. */
		uint64_t j = m->io.random(m->io.ctx) % (m->cfg.gossip_ms / 4 + 1);
		m->next_gossip = now + m->cfg.gossip_ms - m->cfg.gossip_ms / 8 + j;
		ml__ae_start(m, now);
	}
	if (now >= m->next_tomb) {
		m->next_tomb = now + m->cfg.tomb_ms;
		ml__tomb_tick(m);
	}
}

void ml_peer_state(ml *m, unsigned id, int up)
{
	if (id < m->cfg.n && id != m->cfg.self)
		m->peers[id].hint = up ? 1 : 0;
}

void ml_get_stats(const ml *m, struct ml_stats *out)
{
	uint64_t now = m->io.now_ms(m->io.ctx);
	unsigned i;

	*out = m->st;
	out->hlc = m->hlc.last;
	out->incarnation = m->inc;
	out->keys = m->ht_n;
	out->tombstones = m->t_n;
	out->pending_push = m->pq_n;
	out->live_peers = 0;
	for (i = 0; i < m->cfg.n; i++)
		if (i != m->cfg.self && ml__peer_live(m, i, now))
			out->live_peers |= 1ull << i;
}

uint64_t ml_digest_root(const ml *m)
{
	uint64_t h = 0;
	unsigned i;

	for (i = 0; i < ML_GROUPS; i++)
		h = mlw_mix(h ^ m->group_hash[i]);
	return h;
}

/* ---- construction ---------------------------------------------------------- */

struct load_ctx {
	ml      *m;
	uint64_t max_ts;
};

static int load_one(void *arg, const char *key, size_t klen, const struct ml_version *v)
{
	struct load_ctx *lc = arg;
	ml *m = lc->m;
	struct ml_ext x;
	struct ent *e;

	if (!klen || klen > ML_KEY_MAX || ml_ext_decode(v->ext, v->ext_len, &x)) {
		/* Not ours (no replication metadata): left alone, not replicated. */
		m->st.bad_versions++;
		return 0;
	}
	e = ml__ent_get(m, key, klen, 1);
	if (!e)
		return -ENOMEM;
	if (x.ts > lc->max_ts)
		lc->max_ts = x.ts;
	ent_update(m, e, &x, version_hash(e->khash, v->ext, v->ext_len), 0);
	return 0;
}

int ml_new(const struct ml_config *cfg, const struct ml_io *io, ml **out)
{
	struct load_ctx lc;
	uint64_t now;
	unsigned i;
	ml *m;
	int r;

	if (!cfg || !io || !cfg->n || cfg->n > ML_MAX_NODES || cfg->self >= cfg->n ||
	    !io->send || !io->now_ms || !io->random || !io->get || !io->release ||
	    !io->put || !io->purge || !io->durable || !io->scan)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	m->io = *io;
	if (!m->cfg.gossip_ms)
		m->cfg.gossip_ms = ML_DEF_GOSSIP_MS;
	if (!m->cfg.tomb_ms)
		m->cfg.tomb_ms = ML_DEF_TOMB_MS;
	if (!m->cfg.live_ms)
		m->cfg.live_ms = ML_DEF_LIVE_MS;
	if (!m->cfg.max_msg_bytes)
		m->cfg.max_msg_bytes = ML_DEF_MSG_BYTES;
	if (m->cfg.max_msg_bytes < ML_ROOT_BYTES + 64)
		m->cfg.max_msg_bytes = ML_ROOT_BYTES + 64;
	if (!m->cfg.max_frame_bytes)
		m->cfg.max_frame_bytes = UINT32_MAX;
	if (!m->cfg.max_keys_msg)
		m->cfg.max_keys_msg = ML_DEF_KEYS_MSG;
	if (!m->cfg.max_drift_ms)
		m->cfg.max_drift_ms = ML_DEF_DRIFT_MS;
	m->all = cfg->n == 64 ? ~0ull : (1ull << cfg->n) - 1;
	for (i = 0; i < ML_MAX_NODES; i++)
		m->peers[i].hint = -1;
	mlw_out_init(&m->frame);
	mlw_out_init(&m->fb1.body);
	mlw_out_init(&m->fb2.body);
	mlw_out_init(&m->fb3.body);
	m->ht_cap = 1024;
	m->ht = calloc(m->ht_cap, sizeof(*m->ht));
	if (!m->ht) {
		r = -ENOMEM;
		goto err;
	}
	lc.m = m;
	lc.max_ts = 0;
	r = io->scan(io->ctx, load_one, &lc);
	if (r < 0)
		goto err;
	/* Start above every stored timestamp: this node's writes must never
	 * reuse an (origin, ts) it issued before a restart. The incarnation is
	 * a timestamp too, so it grows across restarts. */
	now = io->now_ms(io->ctx);
	hlc_init(&m->hlc, lc.max_ts > cfg->hlc_floor ? lc.max_ts : cfg->hlc_floor);
	m->inc = hlc_now(&m->hlc, now);
	if (io->save_floor) {
		/* The incarnation is stored nowhere else, and it must grow
		 * across restarts: nothing is sent until it is durable. */
		uint64_t seq = 0;
		r = io->save_floor(io->ctx, m->inc, &seq);
		if (r < 0)
			goto err;
		m->floor = m->inc;
		m->gate_seq = seq;
	}
	m->next_gossip = now + io->random(io->ctx) % m->cfg.gossip_ms;
	m->next_tomb = now + m->cfg.tomb_ms;
	*out = m;
	return 0;
err:
	ml_free(m);
	return r;
}

void ml_free(ml *m)
{
	struct pq *q, *qn;
	size_t i;

	if (!m)
		return;
	if (m->ht) {
		for (i = 0; i < m->ht_cap; i++) {
			struct ent *e = m->ht[i], *next;
			for (; e; e = next) {
				next = e->hnext;
				free(e);
			}
		}
	}
	for (q = m->pq_head; q; q = qn) {
		qn = q->next;
		free(q);
	}
	free(m->ht);
	mlw_out_free(&m->frame);
	mlw_out_free(&m->fb1.body);
	mlw_out_free(&m->fb2.body);
	mlw_out_free(&m->fb3.body);
	free(m);
}
