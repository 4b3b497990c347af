/*
 * rank.h — query evaluation over an idx: BM25, TF-IDF cosine, phrase,
 * semantic and hybrid ranking. Callers hold the index read lock.
 */
#ifndef KVFS_SEARCH_RANK_H
#define KVFS_SEARCH_RANK_H

#include "search/emb.h"
#include "search/idx.h"
#include "search/search.h"

struct rank_params {
	double alpha;      /* hybrid weight on normalised BM25, (1 - alpha) on semantic */
	size_t text_cand;  /* hybrid candidates: BM25 top text_cand ... */
	size_t sem_cand;   /* ... united with semantic top sem_cand */
	const float *ngram_norms;  /* emb_ngram_norms for the current index, or NULL */
};

/* Runs q (not quote-stripped: rank decides phrase mode from the quotes). */
int rank_query(const struct idx *ix, const struct emb *e, const struct rank_params *p,
	       const char *q, size_t qlen, enum search_mode mode, size_t limit,
	       struct search_hit **hits, size_t *nhits);

#endif
