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
#include <time.h>

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
	/* Groups (search_index_group_begin/end): the updates of one store
	 * batch reach queries together. q_done_seq is the number of the last
	 * update after which no group was open: only updates up to it may be
	 * taken off the queue, and an apply never stops inside a group. */
	uint64_t           q_done_seq;    /* q_mu */
	int                q_open;        /* a group is open (q_mu) */
	_Atomic uint64_t   applied_seq;   /* updates ever applied */
	size_t             q_live;        /* queued by _put/_del: the bounded part */
	size_t             q_live_bytes;  /* their text, as far as it will be indexed */
	size_t             q_load;        /* queued by _load, not yet taken */
	int                q_stop;
	int                napping;       /* the worker naps: no need to wake it (q_mu) */
	int                worker_running;
	unsigned           start_delay_ms;
	pthread_t          worker;

	/* A second thread that prepares every other document of a large batch
	 * (a start-up rebuild, a backlog), so both cores tokenise: preparing is
	 * about three quarters of indexing, and needs no lock. One job at a time
	 * (batches are applied under apply_mu). */
	pthread_mutex_t    h_mu;
	pthread_cond_t     h_cv;
	struct prep_job   *job;           /* h_mu: posted, not yet finished */
	int                h_stop;
	int                helper_running;
	pthread_t          helper;
};

struct qop {
	struct qop       *next;
	const char       *key;
	const char       *text;   /* NULL: a delete */
	size_t            klen, len;
	search_release_fn release;
	void             *ref;
	uint64_t          seq;    /* its number in queue order */
	int               live;   /* counts against the bound */
	int               last;   /* no group was open after it: an apply may stop here */
};

/* Updates applied per hold of apply_mu: queries waiting to help get in
 * between batches of a long backlog (a start-up load). */
#define APPLY_BATCH 256

/* After applying, the worker naps NAP_MS before it sleeps for good: while
 * updates keep coming (a write load), queuing threads then need not wake
 * it for each of their groups (a futex call each, on a commit path) and it
 * takes several groups per turn. Queries and a queue over NAP_WAKE updates
 * still wake it at once. */
#define NAP_MS   2
#define NAP_WAKE APPLY_BATCH
/* Batches at least this large are prepared by two threads. */
#define PAR_MIN 128

/* What a queued text counts against SEARCH_QUEUE_BYTES: a text too large to
 * be indexed is only a removal. */
static size_t text_bytes(size_t len)
{
	return len > SEARCH_TEXT_MAX ? 0 : len;
}

struct prep_job {
	struct search_index *ix;
	struct qop         **ops;
	struct ready        *rd;
	size_t               n;
};

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
	pthread_mutex_init(&ix->h_mu, NULL);
	pthread_cond_init(&ix->h_cv, NULL);
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
		pthread_cond_broadcast(&ix->applied_cv); /* waiters give up */
		pthread_mutex_unlock(&ix->q_mu);
		pthread_join(ix->worker, NULL);
	}
	if (ix->helper_running) {
		pthread_mutex_lock(&ix->h_mu);
		ix->h_stop = 1;
		pthread_cond_broadcast(&ix->h_cv);
		pthread_mutex_unlock(&ix->h_mu);
		pthread_join(ix->helper, NULL);
	}
	for (op = ix->q_head; op; op = next) {
		next = op->next;
		qop_release(op);
	}
	pthread_cond_destroy(&ix->q_cv);
	pthread_cond_destroy(&ix->applied_cv);
	pthread_cond_destroy(&ix->h_cv);
	pthread_mutex_destroy(&ix->h_mu);
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

/* A document tokenised, stemmed and vectorised outside the lock, ready for
 * idx_put (or, when its text is not indexable, for removal of its key). */
struct ready {
	struct prep     p;
	struct idx_tin *tin;
	uint32_t       *pos;
	uint8_t        *vec;
	size_t          nt;
	int             rc;
	int             unindex;
};

static void ready_make(const struct search_index *ix, const char *text, size_t len,
		       struct ready *r)
{
	size_t i;

	memset(r, 0, sizeof(*r));
	r->p.emb = ix->emb;
	/* Text is valid UTF-8 without NUL bytes (which no text file holds:
	 * a value with them is binary, whatever else it looks like). */
	if (len > SEARCH_TEXT_MAX || memchr(text, '\0', len) || !tok_utf8_valid(text, len)) {
		r->unindex = 1;
		return;
	}
	r->rc = -ENOMEM;
	r->p.acc = calloc(emb_acc_dim(ix->emb), sizeof(float));
	r->vec = malloc(emb_doc_bytes(ix->emb));
	if (!r->p.acc || !r->vec)
		return;
	r->rc = tok_run(text, len, prep_tok, &r->p);
	if (r->rc)
		return;
	emb_doc_finish(ix->emb, r->p.acc, r->vec);
	/* Group equal stems; each group's positions end up ascending. A text
	 * without words has no token array (qsort_r's base must not be NULL). */
	if (r->p.ntok)
		qsort_r(r->p.tok, r->p.ntok, sizeof(*r->p.tok), ptok_cmp, r->p.arena);
	r->rc = -ENOMEM;
	r->tin = malloc((r->p.ntok ? r->p.ntok : 1) * sizeof(*r->tin));
	r->pos = malloc((r->p.ntok ? r->p.ntok : 1) * sizeof(*r->pos));
	if (!r->tin || !r->pos)
		return;
	for (i = 0; i < r->p.ntok; i++) {
		const struct ptok *t = &r->p.tok[i];

		r->pos[i] = t->pos;
		if (i && t->len == t[-1].len &&
		    !memcmp(r->p.arena + t->off, r->p.arena + t[-1].off, t->len)) {
			r->tin[r->nt - 1].tf++;
			continue;
		}
		r->tin[r->nt].stem = r->p.arena + t->off;
		r->tin[r->nt].slen = t->len;
		r->tin[r->nt].tf = 1;
		r->tin[r->nt].pos = &r->pos[i];
		r->nt++;
	}
	r->rc = 0;
}

static void ready_free(struct ready *r)
{
	free(r->tin);
	free(r->pos);
	free(r->vec);
	free(r->p.acc);
	free(r->p.arena);
	free(r->p.tok);
}

/* Removes a document; the write lock held. */
static int del_locked(struct search_index *ix, const char *key, size_t klen)
{
	int rc = idx_del(ix->idx, key, klen);

	ix->epoch++;
	return rc == -ENOENT ? 0 : rc;
}

/* Puts a prepared document into the index; the write lock held. */
static int ready_commit_locked(struct search_index *ix, const char *key, size_t klen,
			       struct ready *r)
{
	int rc;

	if (r->unindex)
		return del_locked(ix, key, klen);
	if (r->rc)
		return r->rc;
	rc = idx_put(ix->idx, key, klen, r->tin, r->nt, (uint32_t)r->p.ntok, r->vec);
	ix->epoch++;
	return rc;
}

static int ready_commit(struct search_index *ix, const char *key, size_t klen, struct ready *r)
{
	int rc;

	pthread_rwlock_wrlock(&ix->lock);
	rc = ready_commit_locked(ix, key, klen, r);
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

int search_index_put(struct search_index *ix, const char *key, size_t klen,
		     const char *text, size_t len)
{
	struct ready r;
	int rc;

	ready_make(ix, text, len, &r);
	rc = ready_commit(ix, key, klen, &r);
	ready_free(&r);
	return rc;
}

int search_index_del(struct search_index *ix, const char *key, size_t klen)
{
	int rc;

	pthread_rwlock_wrlock(&ix->lock);
	rc = del_locked(ix, key, klen);
	pthread_rwlock_unlock(&ix->lock);
	return rc;
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

/* Puts one queued update into the index: its prepared document r (a put),
 * or the removal of its key; the write lock held. Logs a failure; frees r. */
static void apply_ready(struct search_index *ix, const struct qop *op, struct ready *r)
{
	int rc = op->text ? ready_commit_locked(ix, op->key, op->klen, r)
			  : del_locked(ix, op->key, op->klen);

	if (rc)
		fprintf(stderr, "kvfs: search: cannot index %.*s: %s\n", (int)op->klen, op->key,
			strerror(-rc));
	ready_free(r);
}

/* Prepares and applies one queued update (the paths short of memory). */
static void apply_one(struct search_index *ix, const struct qop *op)
{
	struct ready r = { 0 };

	if (op->text)
		ready_make(ix, op->text, op->len, &r);
	pthread_rwlock_wrlock(&ix->lock);
	apply_ready(ix, op, &r);
	pthread_rwlock_unlock(&ix->lock);
}

static void prep_range(const struct prep_job *j, size_t from, size_t step)
{
	for (size_t i = from; i < j->n; i += step)
		if (j->ops[i]->text)
			ready_make(j->ix, j->ops[i]->text, j->ops[i]->len, &j->rd[i]);
}

static void *helper_main(void *arg)
{
	struct search_index *ix = arg;

	pthread_setname_np(pthread_self(), "kvfs-idxprep");
	pthread_mutex_lock(&ix->h_mu);
	for (;;) {
		struct prep_job *j;

		while (!ix->job && !ix->h_stop)
			pthread_cond_wait(&ix->h_cv, &ix->h_mu);
		if (ix->h_stop)
			break;
		j = ix->job;
		pthread_mutex_unlock(&ix->h_mu);
		prep_range(j, 1, 2);
		pthread_mutex_lock(&ix->h_mu);
		ix->job = NULL;
		pthread_cond_broadcast(&ix->h_cv);
	}
	pthread_mutex_unlock(&ix->h_mu);
	return NULL;
}

/* Prepares the documents of a batch: with the helper when it is large. */
static void prep_batch(struct search_index *ix, const struct prep_job *j)
{
	if (!ix->helper_running || j->n < PAR_MIN) {
		prep_range(j, 0, 1);
		return;
	}
	pthread_mutex_lock(&ix->h_mu);
	ix->job = (struct prep_job *)j;
	pthread_cond_broadcast(&ix->h_cv);
	pthread_mutex_unlock(&ix->h_mu);
	prep_range(j, 0, 2);
	pthread_mutex_lock(&ix->h_mu);
	while (ix->job)
		pthread_cond_wait(&ix->h_cv, &ix->h_mu);
	pthread_mutex_unlock(&ix->h_mu);
}

/* Applies n updates taken off the queue (whole groups), in order, and
 * releases them. Documents are prepared APPLY_BATCH at a time, so memory
 * stays bounded whatever the size of a group. A list that fits one chunk
 * is prepared with no lock held and put in under one hold of the write
 * lock; a longer one (one large group: a directory rename, a snapshot
 * install) is prepared and put in chunk by chunk under a single hold of
 * the write lock, so that a query still sees all of it or none. */
static void apply_list(struct search_index *ix, struct qop *list, size_t n)
{
	size_t cap = n < APPLY_BATCH ? n : APPLY_BATCH, done = 0, i, m, bytes = 0;
	struct qop **ops = malloc((cap ? cap : 1) * sizeof(*ops));
	struct ready *rd = malloc((cap ? cap : 1) * sizeof(*rd));
	struct qop *op = list, *next;
	int whole;

	/* A chunk is at most APPLY_BATCH documents and, beyond its first,
	 * SEARCH_QUEUE_BYTES of text: preparing costs a few times the text. */
	for (i = 0, next = list; i < n; i++, next = next->next)
		bytes += text_bytes(next->len);
	whole = n <= cap && bytes <= SEARCH_QUEUE_BYTES;

	if (!ops || !rd) {
		/* No memory for the batch: one at a time, as plain updates. */
		for (i = 0; i < n; op = next, i++) {
			next = op->next;
			apply_one(ix, op);
			qop_release(op);
		}
		free(ops);
		free(rd);
		return;
	}
	if (!whole)
		pthread_rwlock_wrlock(&ix->lock);
	while (done < n) {
		struct prep_job j = { .ix = ix, .ops = ops, .rd = rd };
		size_t cb = 0;

		for (m = 0; done + m < n && m < cap; m++, op = op->next) { /* op: the next chunk's first */
			if (m && cb + text_bytes(op->len) > SEARCH_QUEUE_BYTES)
				break;
			cb += text_bytes(op->len);
			ops[m] = op;
		}
		memset(rd, 0, m * sizeof(*rd));
		j.n = m;
		prep_batch(ix, &j);
		if (whole)
			pthread_rwlock_wrlock(&ix->lock);
		for (i = 0; i < m; i++)
			apply_ready(ix, ops[i], &rd[i]);
		if (whole)
			pthread_rwlock_unlock(&ix->lock);
		for (i = 0; i < m; i++)
			qop_release(ops[i]);
		done += m;
	}
	if (!whole)
		pthread_rwlock_unlock(&ix->lock);
	free(ops);
	free(rd);
}

/* Applies queued updates until every one numbered <= target is applied. */
static void apply_batches(struct search_index *ix, uint64_t target)
{
	while (atomic_load(&ix->applied_seq) < target) {
		struct qop *batch, *op;
		uint64_t n = 0;

		pthread_mutex_lock(&ix->apply_mu);
		if (atomic_load(&ix->applied_seq) >= target) {
			pthread_mutex_unlock(&ix->apply_mu); /* another thread did it */
			break;
		}
		pthread_mutex_lock(&ix->q_mu);
		if (ix->q_stop) {
			/* Closing: what is still queued is dropped by free, not
			 * indexed (an unmount must not wait for a rebuild). */
			pthread_mutex_unlock(&ix->q_mu);
			pthread_mutex_unlock(&ix->apply_mu);
			break;
		}
		batch = ix->q_head;
		/* Whole groups only, about APPLY_BATCH updates: up to the last
		 * group end within the first APPLY_BATCH, or, when the first
		 * group alone is longer, to its end (apply_list takes it in
		 * chunks under one hold of the lock). */
		{
			uint64_t seen = 0, take = 0;

			for (op = batch; op && op->seq <= ix->q_done_seq; op = op->next) {
				if (seen >= APPLY_BATCH && take)
					break;
				seen++;
				if (op->last)
					take = seen;
			}
			for (op = batch; n < take; op = op->next) {
				n++;
				if (op->live) {
					ix->q_live--;
					ix->q_live_bytes -= text_bytes(op->len);
				} else {
					ix->q_load--;
				}
				ix->q_head = op->next;
			}
		}
		if (!ix->q_head)
			ix->q_tail = NULL;
		pthread_mutex_unlock(&ix->q_mu);
		apply_list(ix, batch, (size_t)n);
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
		pthread_cond_signal(&ix->q_cv); /* it may be napping */
		pthread_cond_wait(&ix->applied_cv, &ix->q_mu);
	}
	pthread_mutex_unlock(&ix->q_mu);
}

/* Returns once the live part of the queue is down to half the bound:
 * waits for the worker (woken after each batch it applies), or, without
 * one, applies batches itself. */
static void drain_to_half(struct search_index *ix)
{
	pthread_mutex_lock(&ix->q_mu);
	while (!ix->q_stop && (ix->q_live > SEARCH_QUEUE_MAX / 2 ||
			       ix->q_live_bytes > SEARCH_QUEUE_BYTES / 2)) {
		uint64_t next = atomic_load(&ix->applied_seq) + 1;

		if (!ix->worker_running) {
			pthread_mutex_unlock(&ix->q_mu);
			apply_batches(ix, next);
			pthread_mutex_lock(&ix->q_mu);
			continue;
		}
		/* Queued updates remain (they are counted): a batch will be
		 * applied, and its applier wakes us. */
		if (next < ix->wake_at)
			ix->wake_at = next;
		pthread_cond_signal(&ix->q_cv); /* it may be napping */
		pthread_cond_wait(&ix->applied_cv, &ix->q_mu);
	}
	pthread_mutex_unlock(&ix->q_mu);
}

/* Queued updates may be applied now (q_mu held). */
static void wake_worker_locked(struct search_index *ix)
{
	if (!ix->napping || ix->q_live + ix->q_load >= NAP_WAKE)
		pthread_cond_signal(&ix->q_cv);
}

/* Ends the open group, if any (q_mu held): its updates may now be applied
 * (the worker is woken for them), and queries wait for them. */
static void close_group_locked(struct search_index *ix)
{
	if (!ix->q_open)
		return;
	ix->q_open = 0;
	/* The group's updates are still queued (none is taken past
	 * q_done_seq), the newest of them last. */
	if (ix->q_seq == ix->q_done_seq)
		return;
	ix->q_tail->last = 1;
	ix->q_done_seq = ix->q_seq;
	wake_worker_locked(ix);
}

/* Whether a queuing thread must wait for the queue to drain (q_mu held).
 * Over the bound, the queuing thread (a store's commit, under its locks)
 * waits until the queue is down to half of it: a bounded wait, not one for
 * everything queued. Not while a start-up load is still queued, ahead of
 * everything: the wait would be for the whole rebuild (live updates then
 * queue up behind it, unbounded). Not inside a group either: its updates
 * cannot be applied before it ends (its end checks). */
static int over_bound(const struct search_index *ix)
{
	return !ix->q_load && !ix->q_open &&
	       (ix->q_live > SEARCH_QUEUE_MAX || ix->q_live_bytes > SEARCH_QUEUE_BYTES);
}

void search_index_group_begin(struct search_index *ix)
{
	pthread_mutex_lock(&ix->q_mu);
	ix->q_open = 1;
	pthread_mutex_unlock(&ix->q_mu);
}

void search_index_group_end(struct search_index *ix)
{
	int over;

	pthread_mutex_lock(&ix->q_mu);
	close_group_locked(ix);
	over = over_bound(ix);
	pthread_mutex_unlock(&ix->q_mu);
	if (over)
		drain_to_half(ix);
}

static void queue(struct search_index *ix, const char *key, size_t klen, const char *text,
		  size_t len, search_release_fn release, void *ref, int live)
{
	struct qop *op = malloc(sizeof *op);
	int over;

	if (!op) {
		/* No room to defer it: everything before it, then it, now. An
		 * open group ends here (queries may see part of it: better
		 * than applying this update before the group's earlier ones). */
		struct qop now = { .key = key, .text = text, .klen = klen, .len = len };

		pthread_mutex_lock(&ix->q_mu);
		close_group_locked(ix);
		pthread_mutex_unlock(&ix->q_mu);
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
	op->seq = ++ix->q_seq;
	if (!ix->q_open) {
		op->last = 1;
		ix->q_done_seq = op->seq;
	}
	if (live) {
		ix->q_live++;
		ix->q_live_bytes += text_bytes(len);
	} else {
		ix->q_load++;
	}
	over = live && over_bound(ix);
	if (!ix->q_open) /* else nothing can be applied before the group ends */
		wake_worker_locked(ix);
	pthread_mutex_unlock(&ix->q_mu);
	if (over)
		drain_to_half(ix);
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
	target = ix->q_done_seq; /* not the open group: it is not visible yet */
	pthread_mutex_unlock(&ix->q_mu);
	apply_to(ix, target);
}

size_t search_index_loading(struct search_index *ix)
{
	size_t n;

	pthread_mutex_lock(&ix->q_mu);
	n = ix->q_load;
	pthread_mutex_unlock(&ix->q_mu);
	return n;
}

uint64_t search_index_generation(struct search_index *ix)
{
	uint64_t q;

	pthread_mutex_lock(&ix->q_mu);
	q = ix->q_done_seq; /* moves when updates become visible to queries */
	pthread_mutex_unlock(&ix->q_mu);
	return q;
}

size_t search_index_pending(struct search_index *ix)
{
	uint64_t q;

	pthread_mutex_lock(&ix->q_mu);
	q = ix->q_seq;
	pthread_mutex_unlock(&ix->q_mu);
	return (size_t)(q - atomic_load(&ix->applied_seq));
}

/* Waits on q_cv for at most ms milliseconds (q_mu held). */
static void nap(struct search_index *ix, unsigned ms)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)ms * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&ix->q_cv, &ix->q_mu, &until);
}

static void *worker_main(void *arg)
{
	struct search_index *ix = arg;

	pthread_setname_np(pthread_self(), "kvfs-index");
	pthread_mutex_lock(&ix->q_mu);
	if (ix->start_delay_ms) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += ix->start_delay_ms / 1000;
		until.tv_nsec += (long)(ix->start_delay_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!ix->q_stop &&
		       pthread_cond_timedwait(&ix->q_cv, &ix->q_mu, &until) != ETIMEDOUT)
			;
	}
	for (int worked = 0;;) {
		uint64_t target;

		while (ix->q_done_seq <= atomic_load(&ix->applied_seq) && !ix->q_stop) {
			if (worked) {
				ix->napping = 1;
				nap(ix, NAP_MS);
				ix->napping = 0;
				worked = 0;
			} else {
				pthread_cond_wait(&ix->q_cv, &ix->q_mu);
			}
		}
		if (ix->q_stop)
			break;
		target = ix->q_done_seq;
		pthread_mutex_unlock(&ix->q_mu);
		apply_batches(ix, target);
		pthread_mutex_lock(&ix->q_mu);
		worked = 1;
	}
	pthread_mutex_unlock(&ix->q_mu);
	return NULL;
}

int search_index_start(struct search_index *ix)
{
	return search_index_start_after(ix, 0);
}

int search_index_start_after(struct search_index *ix, unsigned delay_ms)
{
	int rc;

	if (ix->worker_running)
		return 0;
	ix->start_delay_ms = delay_ms;
	/* The helper first: the worker reads helper_running from its start.
	 * Without the helper, batches are prepared by one thread: slower, not
	 * wrong. Call this before other threads use the index. */
	if (pthread_create(&ix->helper, NULL, helper_main, ix) == 0)
		ix->helper_running = 1;
	ix->worker_running = 1;
	rc = -pthread_create(&ix->worker, NULL, worker_main, ix);
	if (rc)
		ix->worker_running = 0;
	return rc;
}
