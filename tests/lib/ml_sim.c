/*
 * ml_sim.c — deterministic simulation of a masterless cluster, see ml_sim.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/ml_wire.h"
#include "tests/lib/ml_sim.h"
#include "tests/lib/ml_sim_map.h"

#define SIM_EPOCH_MS 1700000000000ull /* wall clocks start in 2023 */
#define SIM_MAX_NODES 16

/* ---- random ------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- nodes, network ------------------------------------------------------------ */

struct jent {            /* a put, purge or floor not yet durable */
	struct sver *v;  /* NULL: purge, or floor if key is NULL */
	uint64_t     floor;
	uint64_t     seq;    /* its store position */
	size_t       klen;
	char        *key;
};

struct snode {
	ml_sim      *s;
	unsigned     id;
	ml          *m;
	int          up;
	uint32_t     epoch;
	int64_t      skew;
	struct smap  live, dur;
	struct smap  purged;      /* key -> ts of the last tombstone collected (aux) */
	struct jent *jr;
	size_t       jn, jcap;
	uint64_t     last_seq, durable_seq, sync_at;
	uint64_t     floor, dur_floor; /* clock floor saved by the core */
	uint64_t     win_start, win_bytes;
	int          in_batch;    /* ml_sim_write_batch: puts share one position */
	int          batch_pos;   /* ... and that position has been taken */
};

struct msg {
	uint64_t at, id;
	unsigned from, to;
	uint32_t to_epoch;
	uint16_t type;
	size_t   len;
	uint8_t  data[];
};

struct hist {
	unsigned      node;
	uint64_t      seq;          /* the put's position in node's store */
	char         *key;
	char         *val;
	int           tomb;
	struct ml_ext x;
};

struct ml_sim {
	struct ml_sim_opts o;
	uint64_t           rng;
	uint64_t           now, next_tick, msg_id;
	struct snode       nodes[SIM_MAX_NODES];
	uint8_t            blocked[SIM_MAX_NODES][SIM_MAX_NODES];
	struct msg       **heap;
	size_t             hn, hcap;
	struct hist       *hist;
	size_t             nh, hcap2;
	struct smap        collected; /* keys whose tombstones were collected somewhere */
	struct ml_sim_stats st;
	ml_sim_observer    observer;
	void              *observer_arg;
};

/* ML_SIM_TRACE=<key> prints what happens to that key (NULL key: events
 * that concern every key, such as crashes). */
static void trace(const ml_sim *s, const char *key, const char *fmt, ...)
{
	static const char *want;
	static int init;
	va_list ap;

	if (!init) {
		want = getenv("ML_SIM_TRACE");
		init = 1;
	}
	if (!want || (key && strcmp(key, want)))
		return;
	fprintf(stderr, "[%6" PRIu64 "] ", s->now);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void trace_version(const ml_sim *s, unsigned node, const char *what, const char *key,
			  size_t klen, const struct ml_version *v)
{
	char k[256], buf[1024];
	struct ml_ext x;
	size_t off = 0;
	uint32_t i;

	if (!getenv("ML_SIM_TRACE"))
		return;
	snprintf(k, sizeof(k), "%.*s", (int)klen, key);
	if (!v || ml_ext_decode(v->ext, v->ext_len, &x)) {
		trace(s, k, "node %u %s", node, what);
		return;
	}
	for (i = 0; i < x.clock.n && off < sizeof(buf) - 64; i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, " %u:%" PRIu64,
					x.clock.e[i].id, x.clock.e[i].ctr % (uint64_t)10000000000);
	buf[off] = 0;
	trace(s, k, "node %u %s %s origin %u ts %" PRIu64 " '%.*s' clock {%s }", node, what,
	      (x.flags & ML_V_TOMBSTONE) ? "TOMB" : "val", x.origin, x.ts % (uint64_t)10000000000,
	      (int)v->vlen, (const char *)v->val, buf);
}

uint64_t ml_sim_now(const ml_sim *s)
{
	return s->now;
}

uint64_t ml_sim_random(ml_sim *s)
{
	return splitmix(&s->rng);
}

static uint64_t rnd_range(ml_sim *s, uint64_t lo, uint64_t hi)
{
	return hi <= lo ? lo : lo + ml_sim_random(s) % (hi - lo + 1);
}

static int msg_before(const struct msg *a, const struct msg *b)
{
	return a->at != b->at ? a->at < b->at : a->id < b->id;
}

static void heap_push(ml_sim *s, struct msg *g)
{
	size_t i;

	if (s->hn == s->hcap) {
		s->hcap = s->hcap ? s->hcap * 2 : 256;
		s->heap = realloc(s->heap, s->hcap * sizeof(*s->heap));
		if (!s->heap)
			abort();
	}
	i = s->hn++;
	while (i && msg_before(g, s->heap[(i - 1) / 2])) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = g;
}

static struct msg *heap_pop(ml_sim *s)
{
	struct msg *top = s->heap[0], *last = s->heap[--s->hn];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->hn)
			break;
		if (c + 1 < s->hn && msg_before(s->heap[c + 1], s->heap[c]))
			c++;
		if (!msg_before(s->heap[c], last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->hn)
		s->heap[i] = last;
	return top;
}

/* ---- io callbacks ------------------------------------------------------------- */

/* The keys a KEYS frame lists (cluster/ml_ae.c: leaf sections of keys and
 * hashes after the frame header), 0 if it does not decode. */
static uint64_t keys_listed(const void *buf, size_t len)
{
	struct mlw_in in;
	uint64_t sections, keys = 0;

	mlw_in_init(&in, buf, len);
	(void)mlw_get_var(&in); /* incarnation */
	(void)mlw_get_var(&in); /* seq */
	sections = mlw_get_var(&in);
	for (uint64_t i = 0; i < sections && !in.err; i++) {
		uint64_t fit;
		size_t klen;

		(void)mlw_get_u16(&in); /* leaf */
		(void)mlw_get_u8(&in);  /* complete */
		fit = mlw_get_var(&in);
		for (uint64_t k = 0; k < fit && !in.err; k++) {
			(void)mlw_get_lbytes(&in, SIZE_MAX, &klen);
			(void)mlw_get_u64(&in);
		}
		keys += fit;
	}
	return in.err ? 0 : keys;
}

static int io_send(void *ctx, unsigned to, uint16_t type, const void *buf, size_t len)
{
	struct snode *nd = ctx;
	ml_sim *s = nd->s;
	uint32_t window = s->o.cfg.gossip_ms ? s->o.cfg.gossip_ms : 200;
	int copies = 1, c;

	if (to >= s->o.n || to == nd->id)
		abort();
	s->st.frames++;
	s->st.bytes += len;
	if (len > s->st.max_frame)
		s->st.max_frame = len;
	if (type == ML_MSG_KEYS) {
		uint64_t keys = keys_listed(buf, len);

		if (len > s->st.max_keys_frame)
			s->st.max_keys_frame = len;
		if (keys > s->st.max_keys_listed)
			s->st.max_keys_listed = keys;
	}
	if (s->now >= nd->win_start + window) {
		nd->win_start = s->now;
		nd->win_bytes = 0;
	}
	nd->win_bytes += len;
	if (nd->win_bytes > s->st.max_window_bytes)
		s->st.max_window_bytes = nd->win_bytes;
	if (s->blocked[nd->id][to] || ml_sim_random(s) % 1000 < s->o.drop_pm) {
		s->st.dropped++;
		return 0;
	}
	if (ml_sim_random(s) % 1000 < s->o.dup_pm) {
		copies = 2;
		s->st.duplicated++;
	}
	for (c = 0; c < copies; c++) {
		struct msg *g = malloc(sizeof(*g) + len);
		if (!g)
			abort();
		g->at = s->now + rnd_range(s, s->o.delay_min_ms, s->o.delay_max_ms);
		g->id = s->msg_id++;
		g->from = nd->id;
		g->to = to;
		g->to_epoch = s->nodes[to].epoch;
		g->type = type;
		g->len = len;
		memcpy(g->data, buf, len);
		if (len && ml_sim_random(s) % 1000 < s->o.corrupt_pm) {
			uint64_t x = ml_sim_random(s);
			if (x & 1) {
				g->len = (size_t)(x >> 8) % len;          /* cut */
			} else {
				int flips = 1 + (int)((x >> 1) % 4), k;   /* flip */
				for (k = 0; k < flips; k++)
					g->data[ml_sim_random(s) % len] ^=
						(uint8_t)(1u << (ml_sim_random(s) % 8));
			}
		}
		heap_push(s, g);
	}
	return 0;
}

static uint64_t io_now(void *ctx)
{
	struct snode *nd = ctx;

	return (uint64_t)((int64_t)(SIM_EPOCH_MS + nd->s->now) + nd->skew);
}

static uint64_t io_random(void *ctx)
{
	struct snode *nd = ctx;

	return ml_sim_random(nd->s);
}

static int io_get(void *ctx, const char *key, size_t klen, struct ml_version *out, void **ref)
{
	struct snode *nd = ctx;
	struct sent *e = smap_find(&nd->live, key, klen);

	if (!e || !e->v)
		return -ENOENT;
	e->v->refs++;
	sver_view(e->v, out);
	*ref = e->v;
	return 0;
}

static void io_release(void *ctx, void *ref)
{
	(void)ctx;
	sver_unref(ref);
}

static void journal(struct snode *nd, const char *key, size_t klen, struct sver *v)
{
	ml_sim *s = nd->s;

	if (!nd->in_batch || !nd->batch_pos)
		nd->last_seq++;
	nd->batch_pos = nd->in_batch;
	if (!s->o.sync_max_ms) {
		if (!key)
			nd->dur_floor = nd->floor;
		else if (v)
			smap_put(&nd->dur, key, klen, v);
		else
			smap_del(&nd->dur, key, klen);
		nd->durable_seq = nd->last_seq;
		return;
	}
	if (nd->jn == nd->jcap) {
		nd->jcap = nd->jcap ? nd->jcap * 2 : 64;
		nd->jr = realloc(nd->jr, nd->jcap * sizeof(*nd->jr));
		if (!nd->jr)
			abort();
	}
	nd->jr[nd->jn].key = NULL;
	nd->jr[nd->jn].seq = nd->last_seq;
	nd->jr[nd->jn].floor = nd->floor;
	if (key) {
		nd->jr[nd->jn].key = malloc(klen + 1);
		if (!nd->jr[nd->jn].key)
			abort();
		memcpy(nd->jr[nd->jn].key, key, klen);
	}
	nd->jr[nd->jn].klen = klen;
	nd->jr[nd->jn].v = v;
	if (v)
		v->refs++;
	nd->jn++;
	if (!nd->sync_at)
		nd->sync_at = s->now + rnd_range(s, 1, s->o.sync_max_ms);
}

static void journal_drop(struct snode *nd)
{
	size_t i;

	for (i = 0; i < nd->jn; i++) {
		sver_unref(nd->jr[i].v);
		free(nd->jr[i].key);
	}
	nd->jn = 0;
}

static void node_sync(struct snode *nd)
{
	size_t i, n = nd->jn;

	/* keep_newest: the newest position stays in flight, for the next sync
	 * (unless it is all there is). */
	if (nd->s->o.keep_newest)
		while (n && nd->jr[n - 1].seq == nd->last_seq && nd->jr[0].seq != nd->last_seq)
			n--;
	for (i = 0; i < n; i++) {
		if (!nd->jr[i].key)
			nd->dur_floor = nd->jr[i].floor;
		else if (nd->jr[i].v)
			smap_put(&nd->dur, nd->jr[i].key, nd->jr[i].klen, nd->jr[i].v);
		else
			smap_del(&nd->dur, nd->jr[i].key, nd->jr[i].klen);
		sver_unref(nd->jr[i].v);
		free(nd->jr[i].key);
	}
	if (n < nd->jn) {
		memmove(nd->jr, nd->jr + n, (nd->jn - n) * sizeof(*nd->jr));
		nd->jn -= n;
		nd->durable_seq = nd->jr[0].seq - 1;
		nd->sync_at = nd->s->now + rnd_range(nd->s, 1, nd->s->o.sync_max_ms);
	} else {
		nd->jn = 0;
		nd->durable_seq = nd->last_seq;
		nd->sync_at = 0;
	}
	if (nd->up && !nd->s->o.push_at_tick)
		ml_flush(nd->m); /* what the real backend does on a store completion */
}

static int io_put(void *ctx, const char *key, size_t klen, const struct ml_version *v, uint64_t *seq)
{
	struct snode *nd = ctx;
	struct sver *r = sver_new(v);

	trace_version(nd->s, nd->id, "put", key, klen, v);
	smap_put(&nd->live, key, klen, r);
	journal(nd, key, klen, r);
	sver_unref(r);
	*seq = nd->last_seq;
	return 0;
}

static int later(const struct ml_ext *a, const struct ml_ext *b)
{
	return a->ts != b->ts ? a->ts > b->ts : a->origin > b->origin;
}

/* The invariant of tombstone collection, checked when node nd collects the
 * tombstone t of key. */
static void check_purge(struct snode *nd, const char *key, size_t klen, const struct ml_ext *t)
{
	ml_sim *s = nd->s;
	unsigned j;

	for (j = 0; j < s->o.n; j++) {
		struct snode *o = &s->nodes[j];
		struct sent *e;
		struct ml_ext x;
		int ok = 0;

		if (j == nd->id)
			continue;
		e = smap_find(o->up ? &o->live : &o->dur, key, klen);
		if (e && e->v && ml_ext_decode(e->v->ext, e->v->elen, &x) == 0) {
			enum vclock_order ord = vclock_compare(&x.clock, &t->clock);
			/* Safe unless the tombstone would beat what j holds:
			 * a concurrent version with a later (ts, origin) wins
			 * over it anyway (e.g. a write made on j after j
			 * collected the tombstone itself). */
			ok = (x.origin == t->origin && x.ts == t->ts) ||
			     ord == VCLOCK_AFTER || ord == VCLOCK_EQUAL ||
			     (ord == VCLOCK_CONCURRENT && later(&x, t));
		} else if (!e) {
			struct sent *p = smap_find(&o->purged, key, klen);
			ok = p && p->aux >= t->ts;
		}
		if (!ok) {
			s->st.purge_violations++;
			fprintf(stderr, "ml_sim: t=%" PRIu64 " node %u collected tombstone of '%.*s' "
				"(origin %u ts %" PRIu64 ") while node %u %s\n", s->now, nd->id,
				(int)klen, key, t->origin, t->ts, j,
				e ? "holds an older or concurrent version" : "never had it");
		}
	}
}

static int io_purge(void *ctx, const char *key, size_t klen)
{
	struct snode *nd = ctx;
	struct sent *e = smap_find(&nd->live, key, klen), *p;
	struct ml_ext x;

	if (!e || !e->v || !(e->v->flags & ML_V_TOMBSTONE) ||
	    ml_ext_decode(e->v->ext, e->v->elen, &x)) {
		fprintf(stderr, "ml_sim: node %u purges '%.*s' which is not a tombstone\n",
			nd->id, (int)klen, key);
		nd->s->st.purge_violations++;
		return -EINVAL;
	}
	{
		struct ml_version tv;
		sver_view(e->v, &tv);
		trace_version(nd->s, nd->id, "PURGE", key, klen, &tv);
	}
	check_purge(nd, key, klen, &x);
	nd->s->st.purges++;
	p = smap_put(&nd->purged, key, klen, NULL);
	if (x.ts > p->aux)
		p->aux = x.ts;
	smap_put(&nd->s->collected, key, klen, NULL);
	smap_del(&nd->live, key, klen);
	journal(nd, key, klen, NULL);
	return 0;
}

static int io_save_floor(void *ctx, uint64_t floor, uint64_t *seq)
{
	struct snode *nd = ctx;

	if (floor > nd->floor)
		nd->floor = floor;
	journal(nd, NULL, 0, NULL);
	*seq = nd->last_seq;
	return 0;
}

static uint64_t io_durable(void *ctx)
{
	struct snode *nd = ctx;

	return nd->durable_seq;
}

static int io_scan(void *ctx, ml_scan_fn fn, void *arg)
{
	struct snode *nd = ctx;
	struct ml_version v;
	struct sent *e;
	size_t i;
	int r;

	SMAP_EACH(&nd->live, e, i) {
		sver_view(e->v, &v);
		r = fn(arg, e->key, e->klen, &v);
		if (r)
			return r;
	}
	return 0;
}

static int node_start(ml_sim *s, unsigned i)
{
	struct snode *nd = &s->nodes[i];
	struct ml_config cfg = s->o.cfg;
	struct ml_io io = {
		.ctx = nd, .send = io_send, .now_ms = io_now, .random = io_random,
		.get = io_get, .release = io_release, .put = io_put, .purge = io_purge,
		.durable = io_durable, .scan = io_scan, .save_floor = io_save_floor,
	};
	int r;

	cfg.self = i;
	cfg.n = s->o.n;
	cfg.hlc_floor = nd->dur_floor;
	nd->floor = nd->dur_floor;
	trace(s, NULL, "node %u starts", i);
	r = ml_new(&cfg, &io, &nd->m);
	if (r == 0)
		nd->up = 1;
	return r;
}

int ml_sim_new(const struct ml_sim_opts *o, ml_sim **out)
{
	ml_sim *s;
	unsigned i;
	int r;

	if (!o->n || o->n > SIM_MAX_NODES)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	if (!s->o.tick_ms)
		s->o.tick_ms = 10;
	s->rng = o->seed;
	smap_init(&s->collected);
	for (i = 0; i < o->n; i++) {
		struct snode *nd = &s->nodes[i];
		nd->s = s;
		nd->id = i;
		nd->skew = o->skew_max_ms ? (int64_t)rnd_range(s, 0, 2ull * o->skew_max_ms) -
					    (int64_t)o->skew_max_ms : 0;
		smap_init(&nd->live);
		smap_init(&nd->dur);
		smap_init(&nd->purged);
	}
	for (i = 0; i < o->n; i++) {
		r = node_start(s, i);
		if (r) {
			ml_sim_free(s);
			return r;
		}
	}
	*out = s;
	return 0;
}

void ml_sim_free(ml_sim *s)
{
	unsigned i;
	size_t k;

	if (!s)
		return;
	for (i = 0; i < s->o.n; i++) {
		struct snode *nd = &s->nodes[i];
		ml_free(nd->m);
		journal_drop(nd);
		free(nd->jr);
		smap_free(&nd->live);
		smap_free(&nd->dur);
		smap_free(&nd->purged);
	}
	for (k = 0; k < s->hn; k++)
		free(s->heap[k]);
	free(s->heap);
	for (k = 0; k < s->nh; k++) {
		free(s->hist[k].key);
		free(s->hist[k].val);
	}
	free(s->hist);
	smap_free(&s->collected);
	free(s);
}

/* ---- running ------------------------------------------------------------------ */

static void deliver(ml_sim *s, struct msg *g)
{
	struct snode *to = &s->nodes[g->to];
	int r;

	if (!to->up || to->epoch != g->to_epoch || s->blocked[g->from][g->to]) {
		s->st.dropped++;
		return;
	}
	r = ml_receive(to->m, g->from, g->type, g->data, g->len);
	if (r < 0) {
		fprintf(stderr, "ml_sim: ml_receive on node %u failed: %d\n", g->to, r);
		abort();
	}
	if (s->observer)
		s->observer(s->observer_arg, s, g->to);
}

void ml_sim_set_observer(ml_sim *s, ml_sim_observer fn, void *arg)
{
	s->observer = fn;
	s->observer_arg = arg;
}

void ml_sim_run(ml_sim *s, uint64_t ms)
{
	uint64_t end = s->now + ms;
	unsigned i;

	for (;;) {
		uint64_t t = s->next_tick;

		if (s->hn && s->heap[0]->at < t)
			t = s->heap[0]->at;
		for (i = 0; i < s->o.n; i++)
			if (s->nodes[i].sync_at && s->nodes[i].sync_at < t)
				t = s->nodes[i].sync_at;
		if (t > end)
			break;
		s->now = t;
		while (s->hn && s->heap[0]->at <= s->now) {
			struct msg *g = heap_pop(s);
			deliver(s, g);
			free(g);
		}
		for (i = 0; i < s->o.n; i++)
			if (s->nodes[i].sync_at && s->nodes[i].sync_at <= s->now)
				node_sync(&s->nodes[i]);
		if (s->next_tick <= s->now) {
			s->next_tick = s->now + s->o.tick_ms;
			for (i = 0; i < s->o.n; i++)
				if (s->nodes[i].up)
					ml_tick(s->nodes[i].m);
		}
	}
	s->now = end;
}

int64_t ml_sim_settle(ml_sim *s, uint64_t step_ms, uint64_t max_ms)
{
	uint64_t start = s->now;
	unsigned i;

	while (s->now - start <= max_ms) {
		int done = ml_sim_identical(s);
		for (i = 0; i < s->o.n && done; i++) {
			struct ml_stats st;
			if (!s->nodes[i].up) {
				done = 0;
				break;
			}
			ml_get_stats(s->nodes[i].m, &st);
			done = !st.tombstones && !st.pending_push;
		}
		if (done)
			return (int64_t)(s->now - start);
		if (getenv("ML_SIM_DEBUG") && (s->now - start) % 2000 < step_ms) {
			fprintf(stderr, "settle +%" PRIu64 " ms: identical %d;", s->now - start,
				ml_sim_identical(s));
			for (i = 0; i < s->o.n; i++) {
				struct ml_stats st;
				if (!s->nodes[i].up)
					continue;
				ml_get_stats(s->nodes[i].m, &st);
				fprintf(stderr, " n%u: keys %" PRIu64 " tomb %" PRIu64 " push %" PRIu64
					" root %016" PRIx64 " gated %" PRIu64 ";", i, st.keys, st.tombstones,
					st.pending_push, ml_digest_root(s->nodes[i].m), st.send_gated);
			}
			fprintf(stderr, "\n");
		}
		ml_sim_run(s, step_ms);
	}
	return -1;
}

/* One local write and its history entry. */
static int sim_write(ml_sim *s, unsigned i, const char *key, const char *val, int tombstone)
{
	struct snode *nd = &s->nodes[i];
	struct hist *h;
	struct sent *e;
	int r;

	r = ml_local_write(nd->m, key, strlen(key), val, tombstone ? 0 : (uint32_t)strlen(val),
			   "meta", 4, tombstone, NULL);
	if (r)
		return r;
	if (s->nh == s->hcap2) {
		s->hcap2 = s->hcap2 ? s->hcap2 * 2 : 256;
		s->hist = realloc(s->hist, s->hcap2 * sizeof(*s->hist));
		if (!s->hist)
			abort();
	}
	h = &s->hist[s->nh];
	e = smap_find(&nd->live, key, strlen(key));
	if (!e || !e->v || ml_ext_decode(e->v->ext, e->v->elen, &h->x))
		return -EIO;
	h->node = i;
	h->seq = nd->last_seq;
	h->key = strdup(key);
	h->val = strdup(tombstone ? "" : val);
	h->tomb = tombstone;
	if (!h->key || !h->val)
		abort();
	s->nh++;
	s->st.writes++;
	return 0;
}

int ml_sim_write(ml_sim *s, unsigned i, const char *key, const char *val, int tombstone)
{
	if (!s->nodes[i].up)
		return -EHOSTDOWN;
	return sim_write(s, i, key, val, tombstone);
}

int ml_sim_write_batch(ml_sim *s, unsigned i, size_t n, const char *const *keys,
		       const char *const *vals)
{
	struct snode *nd = &s->nodes[i];
	int r = 0;

	if (!nd->up)
		return -EHOSTDOWN;
	nd->in_batch = 1;
	nd->batch_pos = 0;
	for (size_t k = 0; k < n && !r; k++)
		r = sim_write(s, i, keys[k], vals[k], 0);
	nd->in_batch = 0;
	return r;
}

/* ---- faults -------------------------------------------------------------------- */

void ml_sim_set_faults(ml_sim *s, uint32_t drop_pm, uint32_t dup_pm,
		       uint32_t delay_min_ms, uint32_t delay_max_ms)
{
	s->o.drop_pm = drop_pm;
	s->o.dup_pm = dup_pm;
	s->o.delay_min_ms = delay_min_ms;
	s->o.delay_max_ms = delay_max_ms;
}

void ml_sim_set_corrupt(ml_sim *s, uint32_t corrupt_pm)
{
	s->o.corrupt_pm = corrupt_pm;
}

void ml_sim_block(ml_sim *s, unsigned a, unsigned b, int blocked)
{
	s->blocked[a][b] = s->blocked[b][a] = (uint8_t)!!blocked;
}

void ml_sim_isolate(ml_sim *s, uint64_t side)
{
	unsigned a, b;

	for (a = 0; a < s->o.n; a++)
		for (b = 0; b < s->o.n; b++)
			s->blocked[a][b] = (uint8_t)(((side >> a) & 1) != ((side >> b) & 1));
}

void ml_sim_heal(ml_sim *s)
{
	memset(s->blocked, 0, sizeof(s->blocked));
}

void ml_sim_crash(ml_sim *s, unsigned i)
{
	struct snode *nd = &s->nodes[i];

	if (!nd->up)
		return;
	ml_free(nd->m);
	nd->m = NULL;
	nd->up = 0;
	nd->epoch++; /* frames in flight to it die with its connections */
	/* Whatever was not synced is lost: local writes that were never
	 * durable were never acknowledged (and never left the node, which
	 * pushes only durable versions), so they leave the history too. */
	{
		size_t k, w = 0;
		for (k = 0; k < s->nh; k++) {
			if (s->hist[k].node == i && s->hist[k].seq > nd->durable_seq) {
				trace(s, s->hist[k].key, "node %u loses unsynced write ts %" PRIu64,
				      i, s->hist[k].x.ts);
				free(s->hist[k].key);
				free(s->hist[k].val);
				continue;
			}
			s->hist[w++] = s->hist[k];
		}
		s->nh = w;
	}
	trace(s, NULL, "node %u crashes", i);
	journal_drop(nd);
	nd->sync_at = 0;
	nd->durable_seq = nd->last_seq;
	smap_copy(&nd->live, &nd->dur);
	s->st.crashes++;
}

int ml_sim_restart(ml_sim *s, unsigned i)
{
	if (s->nodes[i].up)
		return 0;
	return node_start(s, i);
}

int ml_sim_is_up(const ml_sim *s, unsigned i)
{
	return s->nodes[i].up;
}

void ml_sim_set_skew(ml_sim *s, unsigned i, int64_t skew_ms)
{
	s->nodes[i].skew = skew_ms;
}

ml *ml_sim_node(ml_sim *s, unsigned i)
{
	return s->nodes[i].up ? s->nodes[i].m : NULL;
}

/* ---- inspection ---------------------------------------------------------------- */

int ml_sim_get(ml_sim *s, unsigned i, const char *key, char **val, uint32_t *flags,
	       struct ml_ext *ext)
{
	struct sent *e = smap_find(&s->nodes[i].live, key, strlen(key));

	if (!e || !e->v)
		return -ENOENT;
	if (val) {
		*val = malloc(e->v->vlen + 1);
		if (!*val)
			abort();
		memcpy(*val, e->v->val, e->v->vlen);
		(*val)[e->v->vlen] = 0;
	}
	if (flags)
		*flags = e->v->flags;
	if (ext && ml_ext_decode(e->v->ext, e->v->elen, ext))
		return -EBADMSG;
	return 0;
}

int ml_sim_identical(ml_sim *s)
{
	unsigned i;

	for (i = 1; i < s->o.n; i++) {
		const struct smap *a = &s->nodes[0].live, *b = &s->nodes[i].live;
		struct sent *e, *f;
		size_t k;

		if (a->n != b->n)
			return 0;
		SMAP_EACH(a, e, k) {
			f = smap_find(b, e->key, e->klen);
			if (!f || !sver_equal(e->v, f->v))
				return 0;
		}
	}
	return 1;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int ml_sim_check(ml_sim *s, char *err, size_t errlen)
{
	struct smap win;
	struct sent *e;
	size_t k, h;
	unsigned i;
	int rc = 0;

	if (!ml_sim_identical(s))
		return fail(err, errlen, "replicas differ");
	/* The expected winner of each key: the write with the largest
	 * (ts, origin) over the whole history (aux = history index + 1). */
	smap_init(&win);
	for (h = 0; h < s->nh; h++) {
		e = smap_put(&win, s->hist[h].key, strlen(s->hist[h].key), NULL);
		if (!e->aux || later(&s->hist[h].x, &s->hist[e->aux - 1].x))
			e->aux = h + 1;
	}
	SMAP_EACH(&win, e, k) {
		const struct hist *w = &s->hist[e->aux - 1];
		int collected = smap_find(&s->collected, e->key, e->klen) != NULL;
		struct vclock all;

		vclock_init(&all);
		for (h = 0; h < s->nh; h++) {
			const struct hist *o = &s->hist[h];
			if (strcmp(o->key, w->key))
				continue;
			vclock_merge(&all, &o->x.clock);
			if (o != w && vclock_compare(&w->x.clock, &o->x.clock) == VCLOCK_BEFORE) {
				rc = fail(err, errlen, "key %s: the LWW winner (origin %u ts %" PRIu64
					  ") is dominated by another write", w->key, w->x.origin, w->x.ts);
				goto out;
			}
		}
		for (i = 0; i < s->o.n; i++) {
			struct ml_ext x;
			uint32_t flags;
			char *val = NULL;
			int r = ml_sim_get(s, i, w->key, &val, &flags, &x);

			if (r == -ENOENT && w->tomb) {
				if (!collected)
					rc = fail(err, errlen, "key %s: node %u lost an uncollected tombstone",
						  w->key, i);
				else
					continue;
			} else if (r) {
				rc = fail(err, errlen, "key %s: missing on node %u (expected %s%s)",
					  w->key, i, w->tomb ? "tombstone" : "value ", w->val);
			} else if (x.origin != w->x.origin || x.ts != w->x.ts ||
				   !!(flags & ML_V_TOMBSTONE) != !!w->tomb || strcmp(val, w->val)) {
				rc = fail(err, errlen, "key %s on node %u: has '%s'%s origin %u ts %" PRIu64
					  ", expected '%s'%s origin %u ts %" PRIu64, w->key, i, val,
					  (flags & ML_V_TOMBSTONE) ? " (tombstone)" : "", x.origin, x.ts,
					  w->val, w->tomb ? " (tombstone)" : "", w->x.origin, w->x.ts);
			} else if (!collected && vclock_compare(&x.clock, &all) != VCLOCK_EQUAL) {
				rc = fail(err, errlen, "key %s on node %u: clock is not the merge of "
					  "every write's clock", w->key, i);
			}
			free(val);
			if (rc)
				goto out;
		}
	}
out:
	smap_free(&win);
	return rc;
}

void ml_sim_get_stats(const ml_sim *s, struct ml_sim_stats *out)
{
	*out = s->st;
}

void ml_sim_reset_window(ml_sim *s)
{
	unsigned i;

	s->st.max_window_bytes = 0;
	for (i = 0; i < s->o.n; i++) {
		s->nodes[i].win_start = s->now;
		s->nodes[i].win_bytes = 0;
	}
}
