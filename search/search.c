/*
 * search.c — the public search API (search.h): input checks, document
 * preparation outside the lock, and the reader-writer lock around idx.
 */
#include "search/search.h"

#include <errno.h>
#include <pthread.h>
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

void search_index_free(struct search_index *ix)
{
	if (!ix)
		return;
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
