/*
 * raft_sim.c — deterministic Raft cluster simulation (see raft_sim.h).
 *
 * Structure: a binary heap of timed events (message deliveries, disk
 * completions, snapshots) plus the nodes' own timers (raft_deadline). Each
 * step takes the earliest of them, ties broken by insertion order and node id,
 * so a seed fully determines a run.
 */
#include "tests/lib/raft_sim_int.h"

/* ---- Utilities ------------------------------------------------------------ */

static uint64_t rnd(rsim *s)
{
	/* splitmix64 */
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rnd_range(rsim *s, unsigned lo, unsigned hi)
{
	if (hi <= lo)
		return lo;
	return lo + (unsigned)(rnd(s) % (hi - lo + 1));
}

void rsim__violation(rsim *s, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (s->failed)
		return;
	s->failed = 1;
	k = snprintf(s->err, sizeof(s->err), "seed %" PRIu64 " t=%" PRIu64 "ms: ",
		     s->o.seed, s->now);
	va_start(ap, fmt);
	vsnprintf(s->err + k, sizeof(s->err) - (size_t)k, fmt, ap);
	va_end(ap);
}

void *rsim__xgrow(void *p, size_t *cap, size_t need, size_t elem)
{
	size_t c = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return p;
	while (c < need)
		c *= 2;
	q = realloc(p, c * elem);
	if (!q) {
		fprintf(stderr, "raft_sim: out of memory\n");
		abort();
	}
	memset((char *)q + *cap * elem, 0, (c - *cap) * elem);
	*cap = c;
	return q;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

uint64_t rsim__entry_hash(const struct raft_entry *e)
{
	uint64_t h = 0xcbf29ce484222325ull;

	h = hash_bytes(h, &e->type, 1);
	return hash_bytes(h, e->data, e->len);
}

struct gslot *rsim__gslot(rsim *s, uint64_t i)
{
	s->g = rsim__xgrow(s->g, &s->gcap, (size_t)i + 1, sizeof(*s->g));
	return &s->g[i];
}

static void copy_entries(struct raft_entry *dst, const struct raft_entry *src, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		dst[i] = src[i];
		dst[i].data = NULL;
		if (src[i].len) {
			dst[i].data = malloc(src[i].len);
			if (!dst[i].data)
				abort();
			memcpy(dst[i].data, src[i].data, src[i].len);
		}
	}
}

static void free_entries(struct raft_entry *e, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(e[i].data);
}

/* ---- Event heap -------------------------------------------------------------- */

static int ev_less(const struct event *a, const struct event *b)
{
	return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static void heap_push(rsim *s, struct event e)
{
	size_t i;

	e.seq = s->seq++;
	s->heap = rsim__xgrow(s->heap, &s->hcap, s->hn + 1, sizeof(*s->heap));
	i = s->hn++;
	while (i && ev_less(&e, &s->heap[(i - 1) / 2])) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = e;
}

static struct event heap_pop(rsim *s)
{
	struct event top = s->heap[0], last = s->heap[--s->hn];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= s->hn)
			break;
		if (c + 1 < s->hn && ev_less(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_less(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->hn)
		s->heap[i] = last;
	return top;
}

/* ---- io callbacks ------------------------------------------------------------ */

static uint64_t io_now(void *arg)
{
	return ((struct snode *)arg)->s->now;
}

static uint64_t io_random(void *arg)
{
	struct snode *nd = arg;
	rsim *s = nd->s;
	unsigned t = s->o.election_ms;

	if (s->favored)
		return nd->id == s->favored ? 0 : t - 1;
	return rnd(s);
}

static void io_send(void *arg, const struct raft_msg *m)
{
	struct snode *nd = arg;
	rsim *s = nd->s;
	struct event e = { .kind = EV_MSG };
	int copies = 1, k;

	if (m->to == 0 || m->to > s->o.n || m->to == nd->id) {
		rsim__violation(s, "node %u sends to bad id %u", nd->id, m->to);
		return;
	}
	/* Term and vote are durable before any message that depends on them. */
	if (m->type != RAFT_MSG_PREVOTE && m->type != RAFT_MSG_PREVOTE_RESP &&
	    m->term > nd->d_term)
		rsim__violation(s, "node %u sends %s in term %" PRIu64 " with term %" PRIu64 " on disk",
			  nd->id, raft_msg_type_name(m->type), m->term, nd->d_term);
	if (m->type == RAFT_MSG_VOTE_RESP && !m->reject &&
	    (nd->d_term != m->term || nd->d_vote != m->to))
		rsim__violation(s, "node %u grants a vote to %u in term %" PRIu64 " not on disk",
			  nd->id, m->to, m->term);
	if (!s->link[nd->id][m->to] || rnd(s) % 100 < s->o.drop_pct)
		return;
	if (s->filter && !s->filter(s->filter_arg, m))
		return;
	if (rnd(s) % 100 < s->o.dup_pct)
		copies = 2;
	for (k = 0; k < copies; k++) {
		if (raft_msg_encode(m, &e.frame, &e.len)) {
			rsim__violation(s, "encode failed");
			return;
		}
		e.node = m->to;
		e.time = s->now + rnd_range(s, s->o.net_min_ms, s->o.net_max_ms);
		heap_push(s, e);
	}
}

static int io_persist_vote(void *arg, uint64_t term, uint32_t vote)
{
	struct snode *nd = arg;

	if (term < nd->d_term)
		rsim__violation(nd->s, "node %u: term goes back %" PRIu64 " -> %" PRIu64,
			  nd->id, nd->d_term, term);
	if (term == nd->d_term && nd->d_vote && vote != nd->d_vote)
		rsim__violation(nd->s, "node %u: votes twice in term %" PRIu64, nd->id, term);
	nd->d_term = term;
	nd->d_vote = vote;
	return 0;
}

/* Log matching: (index, term) must always name the same entry with the same
 * predecessor term. */
static void io_append(void *arg, uint64_t first, const struct raft_entry *e, size_t n)
{
	struct snode *nd = arg;
	rsim *s = nd->s;
	struct pwrite *w;
	struct event ev = { .kind = EV_DISK };
	uint64_t prev_term = raft_term_at(nd->r, first - 1);
	uint64_t t;
	size_t i;

	if (!n)
		rsim__violation(s, "node %u: empty append", nd->id);
	if (raft_role(nd->r) == RAFT_LEADER) {
		/* Leader append-only (Figure 3). */
		if (nd->lead_term == raft_term(nd->r) && first != nd->lead_last + 1)
			rsim__violation(s, "leader %u of term %" PRIu64 " rewrites its log at %" PRIu64,
				  nd->id, nd->lead_term, first);
		nd->lead_term = raft_term(nd->r);
		nd->lead_last = first + n - 1;
	}
	for (i = 0; i < n; i++) {
		rsim__check_log_matching(s, nd->id, first + i, &e[i], prev_term);
		prev_term = e[i].term;
	}
	nd->pw = rsim__xgrow(nd->pw, &nd->pw_cap, nd->pw_n + 1, sizeof(*nd->pw));
	w = &nd->pw[nd->pw_n++];
	w->first = first;
	w->n = n;
	w->void_ = 0;
	w->ents = calloc(n, sizeof(*w->ents));
	if (!w->ents)
		abort();
	copy_entries(w->ents, e, n);
	/* The disk completes writes in order. */
	if (nd->disk_max_ms)
		t = s->now + rnd_range(s, nd->disk_min_ms, nd->disk_max_ms);
	else
		t = s->now + rnd_range(s, s->o.disk_min_ms, s->o.disk_max_ms);
	if (t < nd->disk_busy_until)
		t = nd->disk_busy_until;
	nd->disk_busy_until = t;
	ev.time = t;
	ev.node = nd->id;
	ev.epoch = nd->epoch;
	heap_push(s, ev);
}

static uint64_t sm_step(uint64_t h, uint64_t index, const struct raft_entry *e)
{
	h ^= index * 0x9e3779b97f4a7c15ull;
	h = hash_bytes(h, &e->term, sizeof(e->term));
	return hash_bytes(h, &(uint64_t){ rsim__entry_hash(e) }, 8);
}

static int io_apply(void *arg, uint64_t index, const struct raft_entry *e)
{
	struct snode *nd = arg;
	rsim *s = nd->s;
	struct gslot *g;
	size_t k;

	if (index == nd->fail_apply_at)
		return -EIO;
	/* State-machine safety: same entry, same resulting state, everywhere. */
	if (index != nd->sm_index + 1)
		rsim__violation(s, "node %u applies %" PRIu64 " after %" PRIu64, nd->id, index, nd->sm_index);
	nd->sm_hash = sm_step(nd->sm_hash, index, e);
	nd->sm_index = index;
	g = rsim__gslot(s, index);
	if (!g->set) {
		g->set = 1;
		g->term = e->term;
		g->hash = nd->sm_hash;
	} else if (g->term != e->term || g->hash != nd->sm_hash) {
		rsim__violation(s, "state machine safety: node %u applies (%" PRIu64 ", term %" PRIu64
			  ") but another node applied term %" PRIu64, nd->id, index, e->term, g->term);
	}
	if (index > s->applied_max)
		s->applied_max = index;
	/* Proposals of this node: acknowledged when applied with their term. */
	for (k = 0; k < s->np; k++) {
		struct proposal *p = &s->props[k];

		if (p->node != nd->id || p->state || p->index != index)
			continue;
		if (p->term == e->term) {
			p->state = 1;
			s->acked_count++;
			if (index > s->acked_max)
				s->acked_max = index;
		} else {
			p->state = -1;
		}
	}
	if (s->o.snapshot_every && index >= nd->d_snap_index + s->o.snapshot_every &&
	    !nd->snap_pending) {
		struct event ev = { .kind = EV_SNAP, .node = nd->id, .epoch = nd->epoch,
				    .time = s->now };

		nd->snap_pending = 1;
		heap_push(s, ev);
	}
	return 0;
}

static int io_snapshot_get(void *arg, uint64_t *index, uint64_t *term,
			   const void **data, size_t *len)
{
	struct snode *nd = arg;

	if (!nd->d_snap_index)
		return -ENOENT;
	*index = nd->d_snap_index;
	*term = nd->d_snap_term;
	memcpy(nd->snapbuf, &nd->d_snap_index, 8);
	memcpy(nd->snapbuf + 8, &nd->d_snap_term, 8);
	memcpy(nd->snapbuf + 16, &nd->d_snap_hash, 8);
	*data = nd->snapbuf;
	*len = sizeof(nd->snapbuf);
	return 0;
}

static int io_snapshot_install(void *arg, uint64_t index, uint64_t term,
			       const void *data, size_t len)
{
	struct snode *nd = arg;
	rsim *s = nd->s;
	uint64_t di, dt, dh;
	struct gslot *g;
	size_t k;

	if (nd->refuse_installs) {
		nd->refuse_installs--;
		return RAFT_EREFUSED;
	}
	if (len != 24) {
		rsim__violation(s, "node %u: snapshot of %zu bytes", nd->id, len);
		return -EINVAL;
	}
	memcpy(&di, data, 8);
	memcpy(&dt, (const char *)data + 8, 8);
	memcpy(&dh, (const char *)data + 16, 8);
	if (di != index || dt != term)
		rsim__violation(s, "node %u: snapshot header mismatch", nd->id);
	g = rsim__gslot(s, index);
	if (!g->set || g->hash != dh || g->term != term)
		rsim__violation(s, "node %u installs a snapshot at %" PRIu64 " that no node reached",
			  nd->id, index);
	if (index <= nd->sm_index)
		rsim__violation(s, "node %u: snapshot %" PRIu64 " does not advance applied %" PRIu64,
			  nd->id, index, nd->sm_index);
	nd->d_snap_index = index;
	nd->d_snap_term = term;
	nd->d_snap_hash = dh;
	free_entries(nd->d_log, nd->d_n);
	nd->d_n = 0;
	nd->d_base = index;
	for (k = 0; k < nd->pw_n; k++)
		nd->pw[k].void_ = 1;
	nd->sm_index = index;
	nd->sm_hash = dh;
	return 0;
}

static void io_read_done(void *arg, uint64_t id, int status, uint64_t index)
{
	struct snode *nd = arg;
	rsim *s = nd->s;
	struct readrec *q;

	if (id >= s->nr || s->reads[id].node != nd->id) {
		rsim__violation(s, "node %u: read_done for unknown read %" PRIu64, nd->id, id);
		return;
	}
	q = &s->reads[id];
	if (q->done)
		rsim__violation(s, "node %u: read %" PRIu64 " completed twice", nd->id, id);
	q->done = 1;
	q->status = status;
	q->index = index;
	if (status)
		return;
	/* Linearizable read: covers every write acknowledged before it began,
	 * and the state machine is there. */
	if (index < q->min_index)
		rsim__violation(s, "stale read on node %u: read index %" PRIu64 " < acknowledged %" PRIu64,
			  nd->id, index, q->min_index);
	if (nd->sm_index < index)
		rsim__violation(s, "node %u: read %" PRIu64 " ready before applying %" PRIu64,
			  nd->id, id, index);
}

static const struct raft_io sim_io = {
	.now = io_now,
	.random = io_random,
	.send = io_send,
	.persist_vote = io_persist_vote,
	.append = io_append,
	.apply = io_apply,
	.snapshot_get = io_snapshot_get,
	.snapshot_install = io_snapshot_install,
	.read_done = io_read_done,
};

/* ---- Nodes --------------------------------------------------------------------- */

static int node_boot(rsim *s, struct snode *nd)
{
	struct raft_config cfg = {
		.id = nd->id,
		.n = s->o.n,
		.election_timeout_ms = s->o.election_ms,
		.heartbeat_ms = s->o.heartbeat_ms,
		.max_append_entries = s->o.max_append_entries,
		.max_snapshot_chunk = s->o.max_snapshot_chunk,
		.snapshot_trailing = s->o.trailing,
		.defer_sends = s->o.defer_sends,
		.disable_prevote = s->o.disable_prevote,
		.disable_check_quorum = s->o.disable_check_quorum,
	};
	struct raft_io io = sim_io;
	struct raft_boot boot = {
		.term = nd->d_term,
		.vote = nd->d_vote,
		.snap_index = nd->d_snap_index,
		.snap_term = nd->d_snap_term,
	};
	uint64_t skip = 0;

	/* Entries stored after the snapshot. */
	if (nd->d_base < nd->d_snap_index)
		skip = nd->d_snap_index - nd->d_base;
	if (nd->d_base > nd->d_snap_index) {
		rsim__violation(s, "node %u: gap between snapshot and log", nd->id);
		return -1;
	}
	if (skip < nd->d_n) {
		boot.entries = nd->d_log + skip;
		boot.nentries = nd->d_n - skip;
	}
	io.arg = nd;
	nd->sm_index = nd->d_snap_index;
	nd->sm_hash = nd->d_snap_hash;
	nd->snap_pending = 0;
	nd->seen_term = nd->seen_commit = 0;
	nd->lead_term = nd->lead_last = 0;
	nd->disk_busy_until = s->now;
	if (raft_new(&cfg, &io, &boot, &nd->r)) {
		rsim__violation(s, "node %u: raft_new failed", nd->id);
		return -1;
	}
	nd->up = 1;
	return 0;
}

int rsim_new(const struct rsim_opts *opt, rsim **out)
{
	rsim *s = calloc(1, sizeof(*s));
	uint32_t i, j;

	if (!s)
		return -ENOMEM;
	s->o = *opt;
	if (!s->o.n || s->o.n > RAFT_MAX_NODES) {
		free(s);
		return -EINVAL;
	}
	if (!s->o.election_ms)
		s->o.election_ms = 100;
	if (!s->o.heartbeat_ms)
		s->o.heartbeat_ms = 20;
	if (!s->o.net_min_ms && !s->o.net_max_ms) {
		s->o.net_min_ms = 1;
		s->o.net_max_ms = 10;
	}
	if (!s->o.disk_min_ms && !s->o.disk_max_ms) {
		s->o.disk_min_ms = 1;
		s->o.disk_max_ms = 5;
	}
	s->rng = opt->seed ^ 0x5851f42d4c957f2dull;
	s->now = 1000;
	s->trace = getenv("KVFS_RAFT_TRACE") && atoi(getenv("KVFS_RAFT_TRACE"));
	for (i = 1; i <= s->o.n; i++)
		for (j = 1; j <= s->o.n; j++)
			s->link[i][j] = 1;
	for (i = 1; i <= s->o.n; i++) {
		s->nodes[i].s = s;
		s->nodes[i].id = i;
		if (node_boot(s, &s->nodes[i])) {
			rsim_free(s);
			return -EIO;
		}
	}
	*out = s;
	return 0;
}

static void node_drop_pending(struct snode *nd)
{
	size_t k;

	for (k = 0; k < nd->pw_n; k++) {
		free_entries(nd->pw[k].ents, nd->pw[k].n);
		free(nd->pw[k].ents);
	}
	nd->pw_n = 0;
}

void rsim_free(rsim *s)
{
	uint32_t i;
	size_t k;

	if (!s)
		return;
	for (i = 1; i <= s->o.n; i++) {
		struct snode *nd = &s->nodes[i];

		raft_free(nd->r);
		node_drop_pending(nd);
		free(nd->pw);
		free_entries(nd->d_log, nd->d_n);
		free(nd->d_log);
	}
	for (k = 0; k < s->hn; k++)
		free(s->heap[k].frame);
	free(s->heap);
	for (k = 0; k < s->lmcap; k++)
		free(s->lm[k].v);
	free(s->lm);
	free(s->g);
	free(s->leader_of);
	free(s->props);
	free(s->reads);
	free(s);
}

void rsim_crash(rsim *s, uint32_t id)
{
	struct snode *nd = &s->nodes[id];
	size_t k;

	if (!nd->up)
		return;
	if (s->trace)
		fprintf(stderr, "[%" PRIu64 "] crash %u\n", s->now, id);
	raft_free(nd->r);
	nd->r = NULL;
	nd->up = 0;
	nd->epoch++;
	/* Unsynced appends are lost. */
	node_drop_pending(nd);
	/* So are its clients' pending proposals and reads. */
	for (k = 0; k < s->np; k++)
		if (s->props[k].node == id && !s->props[k].state)
			s->props[k].state = -1;
	for (k = 0; k < s->nr; k++)
		if (s->reads[k].node == id && !s->reads[k].done) {
			s->reads[k].done = 1;
			s->reads[k].status = -ECONNRESET;
		}
}

int rsim_restart(rsim *s, uint32_t id)
{
	struct snode *nd = &s->nodes[id];

	if (nd->up)
		return 0;
	if (s->trace)
		fprintf(stderr, "[%" PRIu64 "] restart %u\n", s->now, id);
	return node_boot(s, nd);
}

/* ---- Stepping ------------------------------------------------------------------- */

static void disk_complete(rsim *s, struct snode *nd)
{
	struct pwrite w;

	if (!nd->pw_n) {
		rsim__violation(s, "node %u: disk completion without a write", nd->id);
		return;
	}
	w = nd->pw[0];
	memmove(nd->pw, nd->pw + 1, (nd->pw_n - 1) * sizeof(*nd->pw));
	nd->pw_n--;
	if (!w.void_ && w.first > nd->d_base) {
		/* The write replaces everything from w.first on. */
		size_t keep = (size_t)(w.first - nd->d_base - 1);

		if (keep > nd->d_n) {
			rsim__violation(s, "node %u: write at %" PRIu64 " leaves a hole after %" PRIu64,
				  nd->id, w.first, nd->d_base + nd->d_n);
		} else {
			free_entries(nd->d_log + keep, nd->d_n - keep);
			nd->d_n = keep;
			nd->d_log = rsim__xgrow(nd->d_log, &nd->d_cap, nd->d_n + w.n, sizeof(*nd->d_log));
			memcpy(nd->d_log + nd->d_n, w.ents, w.n * sizeof(*w.ents));
			nd->d_n += w.n;
			w.n = 0; /* ownership moved */
		}
	}
	free_entries(w.ents, w.n);
	free(w.ents);
	raft_append_done(nd->r, 0);
}

static void take_snapshot(rsim *s, struct snode *nd)
{
	uint64_t idx = raft_applied(nd->r);

	nd->snap_pending = 0;
	if (idx <= nd->d_snap_index)
		return;
	if (idx != nd->sm_index || idx > raft_durable_index(nd->r)) {
		rsim__violation(s, "node %u: applied %" PRIu64 " sm %" PRIu64 " durable %" PRIu64,
			  nd->id, idx, nd->sm_index, raft_durable_index(nd->r));
		return;
	}
	nd->d_snap_index = idx;
	nd->d_snap_term = raft_term_at(nd->r, idx);
	nd->d_snap_hash = nd->sm_hash;
	/* Entries covered by the snapshot leave the disk (they matched). */
	if (idx > nd->d_base) {
		size_t drop = (size_t)(idx - nd->d_base);

		if (drop > nd->d_n)
			drop = nd->d_n;
		free_entries(nd->d_log, drop);
		memmove(nd->d_log, nd->d_log + drop, (nd->d_n - drop) * sizeof(*nd->d_log));
		nd->d_n -= drop;
		nd->d_base += drop;
	}
	if (raft_snapshot_taken(nd->r, idx))
		rsim__violation(s, "node %u: raft_snapshot_taken(%" PRIu64 ") failed", nd->id, idx);
}

int rsim_snapshot(rsim *s, uint32_t id)
{
	struct snode *nd = &s->nodes[id];

	if (!nd->up)
		return -ENOENT;
	take_snapshot(s, nd);
	return s->failed ? -1 : 0;
}

static void trace_msg(rsim *s, const struct raft_msg *m)
{
	fprintf(stderr, "[%" PRIu64 "] %u->%u %s t=%" PRIu64 " i=%" PRIu64 " lt=%" PRIu64
		" c=%" PRIu64 " h=%" PRIu64 " n=%u%s\n", s->now, m->from, m->to,
		raft_msg_type_name(m->type), m->term, m->index, m->log_term, m->commit,
		m->hint, m->nentries, m->reject ? " reject" : "");
}

/* The end of an event-loop iteration on every node: deferred sends go out. */
static void flush_all(rsim *s)
{
	uint32_t i;

	for (i = 1; i <= s->o.n; i++)
		if (s->nodes[i].up)
			raft_flush(s->nodes[i].r);
}

int rsim_step(rsim *s)
{
	uint64_t best = UINT64_MAX;
	uint32_t tick = 0, i;
	struct event e;

	if (s->failed)
		return -1;
	/* Whatever the driver did since the last step (proposals, reads)
	 * belongs to the iteration that ends now. */
	flush_all(s);
	for (i = 1; i <= s->o.n; i++) {
		uint64_t d;

		if (!s->nodes[i].up)
			continue;
		d = raft_deadline(s->nodes[i].r);
		if (d < best) {
			best = d;
			tick = i;
		}
	}
	s->events++;
	if (tick && (!s->hn || best < s->heap[0].time)) {
		struct snode *nd = &s->nodes[tick];
		enum raft_role before = raft_role(nd->r);

		if (best > s->now)
			s->now = best;
		raft_tick(nd->r);
		if (s->trace && raft_role(nd->r) != before)
			fprintf(stderr, "[%" PRIu64 "] node %u: %s -> %s term %" PRIu64 "\n", s->now,
				tick, raft_role_name(before), raft_role_name(raft_role(nd->r)),
				raft_term(nd->r));
		if (raft_deadline(nd->r) <= s->now && !raft_failed(nd->r))
			rsim__violation(s, "node %u: timer does not advance", tick);
		flush_all(s);
		rsim__check_step(s);
		return s->failed ? -1 : 0;
	}
	if (!s->hn) {
		rsim__violation(s, "nothing to do");
		return -1;
	}
	e = heap_pop(s);
	if (e.time > s->now)
		s->now = e.time;
	switch (e.kind) {
	case EV_MSG: {
		struct snode *nd = &s->nodes[e.node];
		struct raft_msg m;
		int rc;

		if (raft_msg_decode(e.frame, e.len, &m)) {
			rsim__violation(s, "decode failed");
			break;
		}
		/* Partitions also cut messages already in flight. */
		if (nd->up && s->link[m.from][m.to]) {
			if (s->trace)
				trace_msg(s, &m);
			s->delivered[m.type]++;
			rc = raft_recv(nd->r, &m);
			if (rc)
				rsim__violation(s, "node %u: raft_recv(%s) = %d", e.node,
					  raft_msg_type_name(m.type), rc);
		}
		raft_msg_release(&m);
		break;
	}
	case EV_DISK:
		if (s->nodes[e.node].up && s->nodes[e.node].epoch == e.epoch)
			disk_complete(s, &s->nodes[e.node]);
		break;
	case EV_SNAP:
		if (s->nodes[e.node].up && s->nodes[e.node].epoch == e.epoch)
			take_snapshot(s, &s->nodes[e.node]);
		break;
	}
	free(e.frame);
	flush_all(s);
	rsim__check_step(s);
	return s->failed ? -1 : 0;
}

int rsim_run_for(rsim *s, uint64_t ms)
{
	uint64_t end = s->now + ms;

	while (s->now < end) {
		uint64_t next = UINT64_MAX;
		uint32_t i;

		for (i = 1; i <= s->o.n; i++)
			if (s->nodes[i].up && raft_deadline(s->nodes[i].r) < next)
				next = raft_deadline(s->nodes[i].r);
		if (s->hn && s->heap[0].time < next)
			next = s->heap[0].time;
		if (next > end) {
			s->now = end;
			break;
		}
		if (rsim_step(s))
			return -1;
	}
	return s->failed ? -1 : 0;
}

/* ---- Faults ------------------------------------------------------------------------ */

void rsim_link(rsim *s, uint32_t a, uint32_t b, int up)
{
	s->link[a][b] = s->link[b][a] = (uint8_t)!!up;
}

void rsim_isolate(rsim *s, uint32_t id)
{
	uint32_t i;

	for (i = 1; i <= s->o.n; i++)
		if (i != id)
			rsim_link(s, id, i, 0);
}

void rsim_partition(rsim *s, uint32_t mask)
{
	uint32_t i, j;

	for (i = 1; i <= s->o.n; i++)
		for (j = 1; j <= s->o.n; j++)
			s->link[i][j] = ((mask >> i) & 1) == ((mask >> j) & 1);
}

void rsim_heal(rsim *s)
{
	rsim_partition(s, 0);
}

void rsim_set_net(rsim *s, unsigned drop_pct, unsigned dup_pct)
{
	s->o.drop_pct = drop_pct;
	s->o.dup_pct = dup_pct;
}

void rsim_set_filter(rsim *s, rsim_filter_fn fn, void *arg)
{
	s->filter = fn;
	s->filter_arg = arg;
}

void rsim_favor(rsim *s, uint32_t id)
{
	s->favored = id;
}

void rsim_fail_apply_at(rsim *s, uint32_t id, uint64_t index)
{
	s->nodes[id].fail_apply_at = index;
}

void rsim_refuse_installs(rsim *s, uint32_t id, unsigned n)
{
	s->nodes[id].refuse_installs = n;
}

unsigned rsim_installs_to_refuse(const rsim *s, uint32_t id)
{
	return s->nodes[id].refuse_installs;
}

void rsim_set_disk(rsim *s, uint32_t id, unsigned min_ms, unsigned max_ms)
{
	s->nodes[id].disk_min_ms = min_ms;
	s->nodes[id].disk_max_ms = max_ms;
}

void rsim_trace(rsim *s, int on)
{
	s->trace = on;
}

/* ---- Clients ------------------------------------------------------------------------ */

int rsim_propose(rsim *s, uint32_t id, uint64_t *pid)
{
	struct snode *nd = &s->nodes[id];
	struct proposal *p;
	char buf[48];
	int len, rc;

	if (!nd->up)
		return -ENOENT;
	len = snprintf(buf, sizeof(buf), "put n%u #%zu", id, s->np);
	s->props = rsim__xgrow(s->props, &s->pcap, s->np + 1, sizeof(*s->props));
	p = &s->props[s->np];
	rc = raft_propose(nd->r, buf, (size_t)len, &p->index, &p->term);
	if (rc)
		return rc;
	p->node = id;
	p->state = 0;
	if (pid)
		*pid = s->np;
	s->np++;
	rsim__check_step(s);
	return s->failed ? -1 : 0;
}

int rsim_transfer(rsim *s, uint32_t id, uint32_t to)
{
	int rc;

	if (!s->nodes[id].up)
		return -ENOENT;
	rc = raft_transfer(s->nodes[id].r, to);
	rsim__check_step(s);
	return s->failed ? -1 : rc;
}

int rsim_proposal(const rsim *s, uint64_t pid, uint64_t *index)
{
	if (pid >= s->np)
		return -1;
	if (index)
		*index = s->props[pid].index;
	return s->props[pid].state;
}

uint64_t rsim_acked_max(const rsim *s) { return s->acked_max; }
uint64_t rsim_acked_count(const rsim *s) { return s->acked_count; }

int rsim_read(rsim *s, uint32_t id, uint64_t *rid)
{
	struct snode *nd = &s->nodes[id];
	struct readrec *q;
	uint64_t n = s->nr;
	int rc;

	if (!nd->up)
		return -ENOENT;
	s->reads = rsim__xgrow(s->reads, &s->rcap, s->nr + 1, sizeof(*s->reads));
	q = &s->reads[s->nr++];
	memset(q, 0, sizeof(*q));
	q->node = id;
	q->min_index = s->acked_max;
	rc = raft_read_index(nd->r, n);
	if (rc) {
		s->nr--;
		return rc;
	}
	if (rid)
		*rid = n;
	return s->failed ? -1 : 0;
}

int rsim_read_result(const rsim *s, uint64_t rid, int *status, uint64_t *index)
{
	if (rid >= s->nr || !s->reads[rid].done)
		return 0;
	if (status)
		*status = s->reads[rid].status;
	if (index)
		*index = s->reads[rid].index;
	return 1;
}

/* ---- Accessors ------------------------------------------------------------------------ */

const char *rsim_error(const rsim *s) { return s->failed ? s->err : "no error"; }
uint64_t rsim_now(const rsim *s) { return s->now; }
uint64_t rsim_seed(const rsim *s) { return s->o.seed; }
unsigned rsim_n(const rsim *s) { return s->o.n; }
uint64_t rsim_events(const rsim *s) { return s->events; }
uint64_t rsim_applied_global(const rsim *s) { return s->applied_max; }

uint64_t rsim_delivered(const rsim *s, uint8_t type)
{
	return type <= RAFT_MSG_TYPE_MAX ? s->delivered[type] : 0;
}

raft *rsim_raft(rsim *s, uint32_t id)
{
	if (!id || id > s->o.n || !s->nodes[id].up)
		return NULL;
	return s->nodes[id].r;
}

