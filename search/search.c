/*
 * search.c — the public search API (search.h): input checks, document
 * preparation outside the lock, and the reader-writer lock around idx.
 */
#include "search/search.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/emb.h"
#include "search/idx.h"
#include "search/rank.h"
#include "search/tok.h"

#ifndef KVFS_VECTORS_DEFAULT
#define KVFS_VECTORS_DEFAULT "vectors/glove-100d.kvv"
#endif

/* Hybrid defaults, measured on CISI with scripts/bench-search (MAP):
 * alpha 0.7 0.2390, 0.75 0.2383, 0.8 0.2367, 0.85 0.2358, 0.9 0.2326, BM25
 * alone 0.2273; 0.75 keeps nDCG@10 above BM25 too. Normalising over 20-1000
 * candidates per side moved MAP by less than 0.003. */
#define HYBRID_ALPHA     0.75
#define HYBRID_TEXT_CAND 100
#define HYBRID_SEM_CAND  100

struct search_index {
	/* Lock order: only this lock; updates take it for writing, queries
	 * for reading. Tokenising and vectorising happen before it is taken. */
	pthread_rwlock_t   lock;
	struct idx        *idx;
	struct emb        *emb;
	struct rank_params params;
	/* n-gram source: per-document norms under the current bucket IDFs,
	 * recomputed by the first query after an update (epoch != norm_epoch).
	 * norm_lock (taken inside the read lock) serialises that; updates hold
	 * the write lock, so no query reads the norms while they are stale. */
	pthread_mutex_t    norm_lock;
	uint64_t           epoch, norm_epoch;
	float             *norms;
	size_t             norms_cap;

	/* Deferred updates (search.h): a FIFO under q_mu. apply_mu lets one
	 * thread at a time (the worker, a query, a queuing thread over the
	 * bound) take a batch off the head and apply it, so updates are
	 * applied in queue order. Lock order: apply_mu -> q_mu, and apply_mu
	 * -> lock; q_mu is never held while indexing. */
	pthread_mutex_t    apply_mu;
	pthread_mutex_t    q_mu;
	pthread_cond_t     q_cv;          /* the worker: queued, or stop */
	pthread_cond_t     applied_cv;    /* waiters: wake_at was reached (q_mu) */
	uint64_t           wake_at;       /* smallest target waited for (q_mu) */
	struct qop        *q_head, *q_tail;
	uint64_t           q_seq;         /* updates ever queued (q_mu) */
	_Atomic uint64_t   applied_seq;   /* updates ever applied */
	size_t             q_live;        /* queued by _put/_del: the bounded part */
	size_t             q_live_bytes;
	int                q_stop;
	int                worker_running;
	pthread_t          worker;
};

struct qop {
	struct qop       *next;
	const char       *key;
	const char       *text;   /* NULL: a delete */
	size_t            klen, len;
	search_release_fn release;
	void             *ref;
	int               live;   /* counts against the bound */
};

/* Updates applied per hold of apply_mu: queries waiting to help get in
 * between batches of a long backlog (a start-up load). */
#define APPLY_BATCH 256

const char *search_default_vectors_path(void)
{
	const char *p = getenv("KVFS_VECTORS");
	return p && *p ? p : KVFS_VECTORS_DEFAULT;
}

int search_index_new(const struct search_config *cfg, struct search_index **out)
{
	struct search_index *ix;
	pthread_rwlockattr_t attr;
	char err[512];
	const char *tune;
	int rc;

	ix = calloc(1, sizeof(*ix));
	if (!ix)
		return -ENOMEM;
	rc = emb_open(cfg ? cfg->vectors_path : NULL, &ix->emb, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "kvfs: search: %s\n", err[0] ? err : strerror(-rc));
		goto err;
	}
	rc = idx_new(emb_doc_bytes(ix->emb), emb_is_ngram(ix->emb), &ix->idx);
	if (rc)
		goto err;
	/* glibc's default rwlock prefers readers: a steady stream of queries
	 * would starve index updates forever (seen in the concurrency test).
	 * Prefer writers; queries are short. */
	rc = -pthread_rwlockattr_init(&attr);
	if (rc)
		goto err;
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	rc = -pthread_rwlock_init(&ix->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (rc)
		goto err;
	rc = -pthread_mutex_init(&ix->norm_lock, NULL);
	if (rc) {
		pthread_rwlock_destroy(&ix->lock);
		goto err;
	}
	/* Default attributes: these cannot fail on Linux. */
	pthread_mutex_init(&ix->apply_mu, NULL);
	pthread_mutex_init(&ix->q_mu, NULL);
	pthread_cond_init(&ix->q_cv, NULL);
	pthread_cond_init(&ix->applied_cv, NULL);
	ix->wake_at = UINT64_MAX;
	ix->epoch = 1;
	ix->params.alpha = HYBRID_ALPHA;
	ix->params.text_cand = HYBRID_TEXT_CAND;
	ix->params.sem_cand = HYBRID_SEM_CAND;
	/* For benchmarks only: KVFS_SEARCH_HYBRID="alpha,text_cand,sem_cand". */
	tune = getenv("KVFS_SEARCH_HYBRID");
	if (tune) {
		double a;
		size_t t, s;
		if (sscanf(tune, "%lf,%zu,%zu", &a, &t, &s) == 3 && a >= 0 && a <= 1) {
			ix->params.alpha = a;
			ix->params.text_cand = t;
			ix->params.sem_cand = s;
		}
	}
	*out = ix;
	return 0;
err:
	idx_free(ix->idx);
	emb_close(ix->emb);
	free(ix);
	return rc;
}

static void qop_release(struct qop *op)
{
	if (op->release)
		op->release(op->ref);
	free(op);
}

void search_index_free(struct search_index *ix)
{
	struct qop *op, *next;

	if (!ix)
		return;
	if (ix->worker_running) {
		pthread_mutex_lock(&ix->q_mu);
		ix->q_stop = 1;
		pthread_cond_signal(&ix->q_cv);
		pthread_mutex_unlock(&ix->q_mu);
		pthread_join(ix->worker, NULL);
	}
	for (op = ix->q_head; op; op = next) {
		next = op->next;
		qop_release(op);
	}
	pthread_cond_destroy(&ix->q_cv);
	pthread_cond_destroy(&ix->applied_cv);
	pthread_mutex_destroy(&ix->q_mu);
	pthread_mutex_destroy(&ix->apply_mu);
	pthread_rwlock_destroy(&ix->lock);
	pthread_mutex_destroy(&ix->norm_lock);
	idx_free(ix->idx);
	emb_close(ix->emb);
	free(ix->norms);
	free(ix);
}

/* A document tokenised and vectorised, ready for idx_put. */
struct prep {
	const struct emb *emb;
	float    *acc;
	char     *arena;           /* stems, back to back */
	size_t    alen, acap;
	struct ptok {
		uint32_t off;
		uint32_t pos;
		uint8_t  len;
	} *tok;
	size_t    ntok, tcap;
};

static int prep_tok(void *arg, const struct tok *t)
{
	struct prep *p = arg;

	if (p->ntok == p->tcap) {
		size_t cap = p->tcap ? p->tcap * 2 : 256;
		struct ptok *n = realloc(p->tok, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		p->tok = n;
		p->tcap = cap;
	}
	if (p->alen + t->slen > p->acap) {
		size_t cap = p->acap ? p->acap * 2 : 4096;
		char *a;
		while (cap < p->alen + t->slen)
			cap *= 2;
		a = realloc(p->arena, cap);
		if (!a)
			return -ENOMEM;
		p->arena = a;
		p->acap = cap;
	}
	memcpy(p->arena + p->alen, t->stem, t->slen);
	p->tok[p->ntok].off = (uint32_t)p->alen;
	p->tok[p->ntok].len = (uint8_t)t->slen;
	p->tok[p->ntok].pos = t->pos;
	p->ntok++;
	p->alen += t->slen;
	emb_acc_word(p->emb, p->acc, t->word, t->wlen);
	return 0;
}

static int ptok_cmp(const void *a, const void *b, void *arena)
{
	const struct ptok *x = a, *y = b;
	int c = memcmp((char *)arena + x->off, (char *)arena + y->off, x->len < y->len ? x->len : y->len);

	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return (x->pos > y->pos) - (x->pos < y->pos);
}

int search_index_put(struct search_index *ix, const char *key, size_t klen,
		     const char *text, size_t len)
{
	struct prep p = { .emb = ix->emb };
	struct idx_tin *tin = NULL;
	uint32_t *pos = NULL;
	uint8_t *vec = NULL;
	size_t i, nt = 0;
	int rc;

	if (len > SEARCH_TEXT_MAX || !tok_utf8_valid(text, len)) {
		rc = search_index_del(ix, key, klen);
		return rc == -ENOENT ? 0 : rc;
	}
	rc = -ENOMEM;
	p.acc = calloc(emb_acc_dim(ix->emb), sizeof(float));
	vec = malloc(emb_doc_bytes(ix->emb));
	if (!p.acc || !vec)
		goto out;
	rc = tok_run(text, len, prep_tok, &p);
	if (rc)
		goto out;
	emb_doc_finish(ix->emb, p.acc, vec);
	/* Group equal stems; each group's positions end up ascending. A text
	 * without words has no token array (qsort_r's base must not be NULL). */
	if (p.ntok)
		qsort_r(p.tok, p.ntok, sizeof(*p.tok), ptok_cmp, p.arena);
	rc = -ENOMEM;
	tin = malloc((p.ntok ? p.ntok : 1) * sizeof(*tin));
	pos = malloc((p.ntok ? p.ntok : 1) * sizeof(*pos));
	if (!tin || !pos)
		goto out;
	for (i = 0; i < p.ntok; i++) {
		pos[i] = p.tok[i].pos;
		if (i && p.tok[i].len == p.tok[i - 1].len &&
		    !memcmp(p.arena + p.tok[i].off, p.arena + p.tok[i - 1].off, p.tok[i].len)) {
			tin[nt - 1].tf++;
			continue;
		}
		tin[nt].stem = p.arena + p.tok[i].off;
		tin[nt].slen = p.tok[i].len;
		tin[nt].tf = 1;
		tin[nt].pos = &pos[i];
		nt++;
	}
	pthread_rwlock_wrlock(&ix->lock);
	rc = idx_put(ix->idx, key, klen, tin, nt, (uint32_t)p.ntok, vec);
	ix->epoch++;
	pthread_rwlock_unlock(&ix->lock);
out:
	free(tin);
	free(pos);
	free(vec);
	free(p.acc);
	free(p.arena);
	free(p.tok);
	return rc;
}

int search_index_del(struct search_index *ix, const char *key, size_t klen)
{
	int rc;

	pthread_rwlock_wrlock(&ix->lock);
	rc = idx_del(ix->idx, key, klen);
	ix->epoch++;
	pthread_rwlock_unlock(&ix->lock);
	return rc == -ENOENT ? 0 : rc;
}

/* The n-gram document norms for the current index, recomputed when an
 * update happened since; NULL when memory is short (scoring then computes
 * each norm itself). Called with the read lock held. */
static const float *ngram_norms(struct search_index *ix)
{
	uint32_t cap = idx_doc_cap(ix->idx);
	const float *r = NULL;

	pthread_mutex_lock(&ix->norm_lock);
	if (ix->norm_epoch != ix->epoch || ix->norms_cap < cap) {
		if (ix->norms_cap < cap) {
			float *n = realloc(ix->norms, (cap ? cap : 1) * sizeof(*n));
			if (!n)
				goto out;
			ix->norms = n;
			ix->norms_cap = cap;
		}
		emb_ngram_norms(ix->emb, idx_vecs(ix->idx), idx_live(ix->idx), cap,
				idx_bucket_df(ix->idx), idx_ndocs(ix->idx), ix->norms);
		ix->norm_epoch = ix->epoch;
	}
	r = ix->norms;
out:
	pthread_mutex_unlock(&ix->norm_lock);
	return r;
}

int search_query(struct search_index *ix, const char *q, size_t qlen,
		 enum search_mode mode, size_t limit,
		 struct search_hit **hits, size_t *nhits)
{
	struct rank_params p;
	int rc;

	/* Every update queued before the query is in its answer. */
	search_index_flush(ix);
	pthread_rwlock_rdlock(&ix->lock);
	p = ix->params;
	p.ngram_norms = NULL;
	if (emb_is_ngram(ix->emb) && (mode == SEARCH_SEMANTIC || mode == SEARCH_HYBRID))
		p.ngram_norms = ngram_norms(ix);
	rc = rank_query(ix->idx, ix->emb, &p, q, qlen, mode, limit, hits, nhits);
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

void search_hits_free(struct search_hit *hits, size_t n)
{
	size_t i;

	if (!hits)
		return;
	for (i = 0; i < n; i++)
		free(hits[i].key);
	free(hits);
}

static const char *const mode_names[] = {
	[SEARCH_HYBRID] = "hybrid",
	[SEARCH_TEXT] = "text",
	[SEARCH_TFIDF] = "tfidf",
	[SEARCH_SEMANTIC] = "semantic",
	[SEARCH_PHRASE] = "phrase",
};

int search_mode_parse(const char *name, enum search_mode *out)
{
	size_t i;

	for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
		if (!strcmp(name, mode_names[i])) {
			*out = (enum search_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *search_mode_name(enum search_mode m)
{
	return (unsigned)m < sizeof(mode_names) / sizeof(mode_names[0]) ? mode_names[m] : "unknown";
}

const char *search_vectors_kind(const struct search_index *ix)
{
	return emb_kind(ix->emb);
}

size_t search_doc_count(struct search_index *ix)
{
	size_t n;

	pthread_rwlock_rdlock(&ix->lock);
	n = idx_ndocs(ix->idx);
	pthread_rwlock_unlock(&ix->lock);
	return n;
}

size_t search_memory_bytes(struct search_index *ix)
{
	size_t n;

	pthread_rwlock_rdlock(&ix->lock);
	n = idx_mem_bytes(ix->idx);
	pthread_rwlock_unlock(&ix->lock);
	return n;
}

/* ---- deferred updates ------------------------------------------------------ */

static void apply_one(struct search_index *ix, const struct qop *op)
{
	int rc = op->text ? search_index_put(ix, op->key, op->klen, op->text, op->len)
			  : search_index_del(ix, op->key, op->klen);

	if (rc)
		fprintf(stderr, "kvfs: search: cannot index %.*s: %s\n", (int)op->klen, op->key,
			strerror(-rc));
}

/* Applies queued updates until every one numbered <= target is applied. */
static void apply_batches(struct search_index *ix, uint64_t target)
{
	while (atomic_load(&ix->applied_seq) < target) {
		struct qop *batch, *op, *next;
		uint64_t n = 0, i;

		pthread_mutex_lock(&ix->apply_mu);
		if (atomic_load(&ix->applied_seq) >= target) {
			pthread_mutex_unlock(&ix->apply_mu); /* another thread did it */
			break;
		}
		pthread_mutex_lock(&ix->q_mu);
		batch = ix->q_head;
		for (op = batch; op && n < APPLY_BATCH; op = op->next) {
			n++;
			if (op->live) {
				ix->q_live--;
				ix->q_live_bytes -= op->len;
			}
			ix->q_head = op->next;
		}
		if (!ix->q_head)
			ix->q_tail = NULL;
		pthread_mutex_unlock(&ix->q_mu);
		for (op = batch, i = 0; i < n; op = next, i++) {
			next = op->next;
			apply_one(ix, op);
			qop_release(op);
		}
		/* Counted only now: a thread that finds the count short takes
		 * apply_mu, and so waits until this batch is in the index. */
		atomic_fetch_add(&ix->applied_seq, n);
		pthread_mutex_unlock(&ix->apply_mu);
		pthread_mutex_lock(&ix->q_mu);
		/* Wake waiters only once the first of them can go on, not after
		 * every batch of a long backlog. */
		if (atomic_load(&ix->applied_seq) >= ix->wake_at) {
			ix->wake_at = UINT64_MAX;
			pthread_cond_broadcast(&ix->applied_cv);
		}
		pthread_mutex_unlock(&ix->q_mu);
		if (!n)
			break; /* nothing queued: cannot happen while target > applied */
	}
}

/* Returns once every update numbered <= target is in the index. With the
 * worker running, waits for it (taking turns with it would only add hand-
 * offs: one thread applies at a time anyway); else applies them itself. */
static void apply_to(struct search_index *ix, uint64_t target)
{
	if (atomic_load(&ix->applied_seq) >= target)
		return;
	if (!ix->worker_running) {
		apply_batches(ix, target);
		return;
	}
	pthread_mutex_lock(&ix->q_mu);
	while (atomic_load(&ix->applied_seq) < target && !ix->q_stop) {
		if (target < ix->wake_at)
			ix->wake_at = target;
		pthread_cond_wait(&ix->applied_cv, &ix->q_mu);
	}
	pthread_mutex_unlock(&ix->q_mu);
}

static void queue(struct search_index *ix, const char *key, size_t klen, const char *text,
		  size_t len, search_release_fn release, void *ref, int live)
{
	struct qop *op = malloc(sizeof *op);
	uint64_t seq;
	int over;

	if (!op) {
		/* No room to defer it: everything before it, then it, now. */
		struct qop now = { .key = key, .text = text, .klen = klen, .len = len };

		search_index_flush(ix);
		pthread_mutex_lock(&ix->apply_mu);
		apply_one(ix, &now);
		pthread_mutex_unlock(&ix->apply_mu);
		if (release)
			release(ref);
		return;
	}
	*op = (struct qop){ .key = key, .text = text, .klen = klen, .len = len,
			    .release = release, .ref = ref, .live = live };
	pthread_mutex_lock(&ix->q_mu);
	if (ix->q_tail)
		ix->q_tail->next = op;
	else
		ix->q_head = op;
	ix->q_tail = op;
	seq = ++ix->q_seq;
	if (live) {
		ix->q_live++;
		ix->q_live_bytes += len;
	}
	over = live && (ix->q_live > SEARCH_QUEUE_MAX || ix->q_live_bytes > SEARCH_QUEUE_BYTES);
	pthread_cond_signal(&ix->q_cv);
	pthread_mutex_unlock(&ix->q_mu);
	if (over)
		apply_to(ix, seq);
}

void search_index_queue_put(struct search_index *ix, const char *key, size_t klen,
			    const char *text, size_t len, search_release_fn release, void *ref)
{
	/* A text search_index_put would not index must still remove the key:
	 * it is queued as what it is, a put, and put decides. */
	queue(ix, key, klen, text ? text : "", len, release, ref, 1);
}

void search_index_queue_del(struct search_index *ix, const char *key, size_t klen,
			    search_release_fn release, void *ref)
{
	queue(ix, key, klen, NULL, 0, release, ref, 1);
}

void search_index_queue_load(struct search_index *ix, const char *key, size_t klen,
			     const char *text, size_t len, search_release_fn release, void *ref)
{
	queue(ix, key, klen, text ? text : "", len, release, ref, 0);
}

void search_index_flush(struct search_index *ix)
{
	uint64_t target;

	pthread_mutex_lock(&ix->q_mu);
	target = ix->q_seq;
	pthread_mutex_unlock(&ix->q_mu);
	apply_to(ix, target);
}

size_t search_index_pending(struct search_index *ix)
{
	uint64_t q;

	pthread_mutex_lock(&ix->q_mu);
	q = ix->q_seq;
	pthread_mutex_unlock(&ix->q_mu);
	return (size_t)(q - atomic_load(&ix->applied_seq));
}

static void *worker_main(void *arg)
{
	struct search_index *ix = arg;

	pthread_mutex_lock(&ix->q_mu);
	for (;;) {
		uint64_t target;

		while (!ix->q_head && !ix->q_stop)
			pthread_cond_wait(&ix->q_cv, &ix->q_mu);
		if (ix->q_stop)
			break;
		target = ix->q_seq;
		pthread_mutex_unlock(&ix->q_mu);
		apply_batches(ix, target);
		pthread_mutex_lock(&ix->q_mu);
	}
	pthread_mutex_unlock(&ix->q_mu);
	return NULL;
}

int search_index_start(struct search_index *ix)
{
	int rc;

	if (ix->worker_running)
		return 0;
	rc = -pthread_create(&ix->worker, NULL, worker_main, ix);
	if (rc == 0)
		ix->worker_running = 1;
	return rc;
}
