/*
 * ml_ae.c — anti-entropy rounds and tombstone acknowledgement of the
 * masterless core; the protocol is described at the top of ml.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/ml_int.h"

/* ---- tombstones ------------------------------------------------------------ */

/* Advances one tombstone's acknowledgement state; may collect (free) it. */
void ml__tomb_progress(ml *m, struct ent *e)
{
	uint64_t self = 1ull << m->cfg.self;

	if (!(e->have & self) && ml__durable_ent(m, e))
		e->have |= self;
	if ((e->have & m->all) == m->all && !(e->l1 & self)) {
		/* Everyone holds it: stop offering it to anti-entropy. */
		e->l1 |= self;
		if (!e->excluded) {
			ml__digest_add(m, e, -1);
			e->excluded = 1;
		}
	}
	if ((e->l1 & m->all) == m->all) {
		if (ml__save_floor(m, e->ts) < 0)
			return;
		if (m->io.purge(m->io.ctx, e->key, e->klen) < 0) {
			m->st.io_errors++;
			return;
		}
		m->st.tombstones_collected++;
		ml__ent_free(m, e);
	}
}

void ml__tomb_tick(ml *m)
{
	uint64_t self = 1ull << m->cfg.self;
	struct fb *f = &m->fb1;
	struct ent *e, *next;
	size_t i, n;

	for (e = m->t_head; e; e = next) {
		next = e->tnext;
		ml__tomb_progress(m, e);
	}
	if (!m->t_n || m->cfg.n < 2)
		return;
	/* Announce up to one frame's worth, rotating through the list so that
	 * every tombstone gets its turn however many are pending. */
	ml__fb_reset(f);
	n = m->t_n;
	for (i = 0; i < n && (e = m->t_head); i++) {
		if (e->have & self) {
			if (ml__fb_full(m, f, e->klen + 32))
				break;
			mlw_put_lbytes(&f->body, e->key, e->klen);
			mlw_put_var(&f->body, e->origin);
			mlw_put_var(&f->body, e->ts);
			mlw_put_u8(&f->body, (e->l1 & self) ? 1 : 0);
			f->count++;
		}
		ml__tlist_del(m, e);
		ml__tlist_add(m, e);
	}
	if (f->count)
		ml__fb_broadcast(m, ML_MSG_TOMB, f);
}

int ml__recv_tomb(ml *m, unsigned from, struct mlw_in *in)
{
	uint64_t bit = 1ull << from, count, origin, ts, i;
	struct fb *f = &m->fb2;
	struct ent *e;
	uint8_t level;

	count = mlw_get_var(in);
	ml__fb_reset(f);
	for (i = 0; i < count && !in->err; i++) {
		size_t klen;
		const char *key = mlw_get_lbytes(in, ML_KEY_MAX, &klen);
		origin = mlw_get_var(in);
		ts = mlw_get_var(in);
		level = mlw_get_u8(in);
		if (in->err || !klen || level > 2)
			return -EBADMSG;
		e = ml__ent_get(m, key, klen, 0);
		if (e && e->tomb && e->origin == origin && e->ts == ts) {
			e->have |= bit;
			if (level >= 1)
				e->l1 |= bit;
			ml__tomb_progress(m, e);
		} else if (!e && level == 1 && !ml__fb_full(m, f, klen + 32)) {
			/* We hold nothing for the key while the sender says
			 * everybody holds the tombstone, which includes us: we
			 * collected it. Say so, or the sender waits forever for
			 * the acknowledgement that we stopped sending. */
			mlw_put_lbytes(&f->body, key, klen);
			mlw_put_var(&f->body, origin);
			mlw_put_var(&f->body, ts);
			mlw_put_u8(&f->body, 2);
			f->count++;
		}
	}
	if (mlw_in_done(in))
		return -EBADMSG;
	if (f->count)
		ml__fb_send(m, from, ML_MSG_TOMB, f, 1);
	return 0;
}

/* ---- anti-entropy --------------------------------------------------------- */

int ml__peer_live(const ml *m, unsigned id, uint64_t now)
{
	const struct peer *p = &m->peers[id];

	if (p->hint == 0)
		return 0;
	if (p->hint == 1)
		return 1;
	return p->heard_ms && now - p->heard_ms < m->cfg.live_ms;
}

void ml__ae_start(ml *m, uint64_t now)
{
	unsigned cand[ML_MAX_NODES], nc = 0, i, to;
	uint64_t rnd = m->io.random(m->io.ctx);
	struct fb *f = &m->fb1;

	for (i = 0; i < m->cfg.n; i++)
		if (i != m->cfg.self && ml__peer_live(m, i, now))
			cand[nc++] = i;
	/* Mostly a live peer; now and then any peer, so that a peer wrongly
	 * believed dead (or never heard from) is found again. */
	if (!nc || (rnd & 3) == 0) {
		to = (unsigned)((rnd >> 8) % (m->cfg.n - 1));
		if (to >= m->cfg.self)
			to++;
	} else {
		to = cand[(rnd >> 8) % nc];
	}
	ml__fb_reset(f);
	for (i = 0; i < ML_GROUPS; i++)
		mlw_put_u64(&f->body, m->group_hash[i]);
	m->st.ae_rounds++;
	ml__fb_send(m, to, ML_MSG_ROOT, f, 0);
}

int ml__recv_root(ml *m, unsigned from, struct mlw_in *in)
{
	uint64_t theirs[ML_GROUPS];
	struct fb *f = &m->fb1;
	unsigned i, start, g, j;

	for (i = 0; i < ML_GROUPS; i++)
		theirs[i] = mlw_get_u64(in);
	if (mlw_in_done(in))
		return -EBADMSG;
	ml__fb_reset(f);
	start = (unsigned)(m->io.random(m->io.ctx) % ML_GROUPS);
	for (i = 0; i < ML_GROUPS; i++) {
		g = (start + i) % ML_GROUPS;
		if (theirs[g] == m->group_hash[g])
			continue;
		if (ml__fb_full(m, f, ML_LEAVES_ENTRY))
			break;
		mlw_put_u8(&f->body, (uint8_t)g);
		for (j = 0; j < ML_LEAVES_PER; j++)
			mlw_put_u64(&f->body, m->leaf_hash[g * ML_LEAVES_PER + j]);
		f->count++;
	}
	if (!f->count) {
		m->st.ae_in_sync++;
		return 0;
	}
	ml__fb_send(m, from, ML_MSG_LEAVES, f, 1);
	return 0;
}

static int cmp_ent(const void *a, const void *b)
{
	const struct ent *x = *(const struct ent *const *)a, *y = *(const struct ent *const *)b;

	return ml__key_cmp(x->key, x->klen, y->key, y->klen);
}

/* Appends one leaf's (key, version hash) list; returns 1 if the frame is
 * full afterwards. *nkeys counts the keys in the frame (f->count counts
 * leaf sections, which is what the wire carries). */
static int keys_add_leaf(ml *m, struct fb *f, uint32_t leaf, struct ent ***arr, size_t *arrcap,
			 size_t *nkeys)
{
	size_t n = 0, i, fit, bytes;
	struct ent *e;
	int complete = 1;

	for (e = m->leaf[leaf]; e; e = e->lnext) {
		if (e->excluded)
			continue;
		if (n == *arrcap) {
			size_t cap = *arrcap ? *arrcap * 2 : 64;
			struct ent **a = realloc(*arr, cap * sizeof(*a));
			if (!a)
				return -ENOMEM;
			*arr = a;
			*arrcap = cap;
		}
		(*arr)[n++] = e;
	}
	if (n > 1)
		qsort(*arr, n, sizeof(**arr), cmp_ent);
	/* Keys that fit this frame; at least the leaf header must. */
	bytes = f->body.len + 8;
	for (fit = 0; fit < n; fit++) {
		bytes += (*arr)[fit]->klen + 12;
		if ((*nkeys + fit >= m->cfg.max_keys_msg || bytes > m->cfg.max_msg_bytes) &&
		    (f->count || fit))
			break;
	}
	if (fit < n)
		complete = 0;
	mlw_put_u16(&f->body, (uint16_t)leaf);
	mlw_put_u8(&f->body, (uint8_t)complete);
	mlw_put_var(&f->body, fit);
	for (i = 0; i < fit; i++) {
		e = (*arr)[i];
		mlw_put_lbytes(&f->body, e->key, e->klen);
		mlw_put_u64(&f->body, e->vhash);
	}
	f->count++; /* counts leaf sections */
	*nkeys += fit;
	return !complete;
}

int ml__recv_leaves(ml *m, unsigned from, struct mlw_in *in)
{
	uint64_t count = mlw_get_var(in), i;
	uint32_t diff[ML_LEAVES];
	size_t nd = 0, arrcap = 0, d, nkeys = 0;
	struct ent **arr = NULL;
	struct fb *f = &m->fb1;
	int r = 0, seen[ML_GROUPS] = { 0 };

	for (i = 0; i < count && !in->err; i++) {
		uint8_t g = mlw_get_u8(in);
		unsigned j;
		if (g >= ML_GROUPS || seen[g]) {
			in->err = -EBADMSG;
			break;
		}
		seen[g] = 1;
		for (j = 0; j < ML_LEAVES_PER; j++) {
			uint32_t leaf = g * ML_LEAVES_PER + j;
			if (mlw_get_u64(in) != m->leaf_hash[leaf] && !in->err)
				diff[nd++] = leaf;
		}
	}
	if (mlw_in_done(in))
		return -EBADMSG;
	m->st.ae_diff_leaves += nd;
	if (!nd)
		return 0;
	/* Start at a random differing leaf so that a divergence larger than
	 * one frame is worked off evenly over rounds. */
	ml__fb_reset(f);
	{
		size_t start = (size_t)(m->io.random(m->io.ctx) % nd);
		for (d = 0; d < nd; d++) {
			uint32_t leaf = diff[(start + d) % nd];
			if (f->count && (nkeys >= m->cfg.max_keys_msg ||
					 f->body.len + 16 > m->cfg.max_msg_bytes))
				break;
			r = keys_add_leaf(m, f, leaf, &arr, &arrcap, &nkeys);
			if (r < 0)
				goto out;
			if (r > 0)
				break;
		}
	}
	r = 0;
	ml__fb_send(m, from, ML_MSG_KEYS, f, 1);
out:
	free(arr);
	return r;
}

int ml__recv_keys(ml *m, unsigned from, struct mlw_in *in)
{
	uint64_t count = mlw_get_var(in), i, k, nkeys;
	struct fb *push = &m->fb1, *want = &m->fb2;
	uint32_t stamp = ++m->stamp;
	struct ent *e;
	int r;

	ml__fb_reset(push);
	ml__fb_reset(want);
	for (i = 0; i < count && !in->err; i++) {
		uint16_t leaf = mlw_get_u16(in);
		uint8_t complete = mlw_get_u8(in);
		const char *last = NULL;
		size_t lastlen = 0;

		nkeys = mlw_get_var(in);
		if (leaf >= ML_LEAVES || complete > 1) {
			in->err = -EBADMSG;
			break;
		}
		for (k = 0; k < nkeys && !in->err; k++) {
			size_t klen;
			const char *key = mlw_get_lbytes(in, ML_KEY_MAX, &klen);
			uint64_t vh = mlw_get_u64(in);
			if (in->err || !klen)
				break;
			last = key;
			lastlen = klen;
			e = ml__ent_get(m, key, klen, 0);
			if (e)
				e->mark = stamp;
			if (e && e->vhash == vh)
				continue;
			if (!ml__fb_full(m, want, klen + 8)) {
				mlw_put_lbytes(&want->body, key, klen);
				want->count++;
			}
			if (e) {
				r = ml__fb_add_version(m, push, e);
				if (r < 0)
					return r;
			}
		}
		if (in->err)
			break;
		/* Our keys in this leaf that the sender did not list (only up to
		 * its last key when its list stopped early). */
		for (e = m->leaf[leaf]; e; e = e->lnext) {
			if (e->mark == stamp || e->excluded)
				continue;
			if (!complete && (!last || ml__key_cmp(e->key, e->klen, last, lastlen) > 0))
				continue;
			r = ml__fb_add_version(m, push, e);
			if (r < 0)
				return r;
		}
	}
	if (mlw_in_done(in))
		return -EBADMSG;
	if (push->count)
		ml__fb_send(m, from, ML_MSG_PUSH, push, 1);
	if (want->count)
		ml__fb_send(m, from, ML_MSG_WANT, want, 1);
	return 0;
}

int ml__recv_want(ml *m, unsigned from, struct mlw_in *in)
{
	uint64_t count = mlw_get_var(in), i;
	struct fb *push = &m->fb1;
	struct ent *e;
	int r;

	ml__fb_reset(push);
	for (i = 0; i < count && !in->err; i++) {
		size_t klen;
		const char *key = mlw_get_lbytes(in, ML_KEY_MAX, &klen);
		if (in->err || !klen)
			return -EBADMSG;
		e = ml__ent_get(m, key, klen, 0);
		if (e) {
			r = ml__fb_add_version(m, push, e);
			if (r < 0)
				return r;
		}
	}
	if (mlw_in_done(in))
		return -EBADMSG;
	if (push->count)
		ml__fb_send(m, from, ML_MSG_PUSH, push, 1);
	return 0;
}
