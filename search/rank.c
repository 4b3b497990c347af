/*
 * rank.c — query evaluation: BM25, TF-IDF cosine, phrase, semantic, hybrid.
 */
#include "search/rank.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "search/tok.h"

/* BM25 parameters (Robertson & Zaragoza, "The Probabilistic Relevance
 * Framework: BM25 and Beyond", 2009, eq. 3.15 with the usual defaults). */
#define BM25_K1 1.2
#define BM25_B  0.75
/* Longest query kept, in tokens. */
#define QMAX 256

struct qtok {
	char     stem[TOK_MAX + 8];
	char     word[TOK_MAX + 8];
	uint8_t  slen, wlen;
	uint32_t pos;
	uint32_t qt;     /* index of its distinct term in query.term */
};

struct qterm {
	uint32_t term;   /* IDX_NONE when not in the index */
	uint32_t qtf;
	uint32_t df;
};

struct query {
	struct qtok  tok[QMAX];
	size_t       ntok;
	struct qterm term[QMAX];
	size_t       nterm;
};

static int collect(void *arg, const struct tok *t)
{
	struct query *q = arg;
	struct qtok *k;

	if (q->ntok == QMAX)
		return 1;
	k = &q->tok[q->ntok++];
	memcpy(k->stem, t->stem, t->slen);
	k->slen = (uint8_t)t->slen;
	memcpy(k->word, t->word, t->wlen);
	k->wlen = (uint8_t)t->wlen;
	k->pos = t->pos;
	return 0;
}

static int query_parse(const struct idx *ix, const char *s, size_t n, struct query *q)
{
	size_t i, j;
	int rc;

	q->ntok = q->nterm = 0;
	rc = tok_run(s, n, collect, q);
	if (rc < 0)
		return rc;
	for (i = 0; i < q->ntok; i++) {
		struct qtok *k = &q->tok[i];
		for (j = 0; j < i; j++)
			if (q->tok[j].slen == k->slen && !memcmp(q->tok[j].stem, k->stem, k->slen))
				break;
		if (j < i) {
			k->qt = q->tok[j].qt;
			q->term[k->qt].qtf++;
			continue;
		}
		k->qt = (uint32_t)q->nterm;
		q->term[q->nterm].term = idx_term_find(ix, k->stem, k->slen);
		q->term[q->nterm].qtf = 1;
		q->term[q->nterm].df = idx_term_df(ix, q->term[q->nterm].term);
		q->nterm++;
	}
	return 0;
}

/* Robertson-Sparck Jones IDF with 1 added inside the log (as Lucene does) so
 * that a term in more than half of the documents still counts positively. */
static double bm25_idf(size_t n, uint32_t df)
{
	return log(1.0 + ((double)n - df + 0.5) / (df + 0.5));
}

static double bm25_tf(uint32_t tf, uint32_t dl, double avgdl)
{
	double norm = BM25_K1 * (1.0 - BM25_B + BM25_B * dl / (avgdl > 0 ? avgdl : 1.0));
	return tf * (BM25_K1 + 1.0) / (tf + norm);
}

static void score_bm25(const struct idx *ix, const struct query *q, float *acc)
{
	const uint32_t *dlen = idx_doc_lens(ix);
	size_t n = idx_ndocs(ix), i;
	double avgdl = idx_avgdl(ix);
	/* K = k1 * (1 - b + b * dl / avgdl) = k0 + k1b * dl */
	float k0 = (float)(BM25_K1 * (1.0 - BM25_B));
	float k1b = (float)(BM25_K1 * BM25_B / (avgdl > 0 ? avgdl : 1.0));
	float w;
	struct idx_cur c;

	for (i = 0; i < q->nterm; i++) {
		if (!q->term[i].df)
			continue;
		w = (float)(q->term[i].qtf * bm25_idf(n, q->term[i].df) * (BM25_K1 + 1.0));
		idx_cur_init(ix, q->term[i].term, &c);
		while (idx_cur_next(&c))
			acc[c.doc] += w * (float)c.tf / ((float)c.tf + k0 + k1b * (float)dlen[c.doc]);
	}
}

/*
 * Classic vector-space TF-IDF with cosine normalisation, SMART "lnc.ltc"
 * (Salton & Buckley, "Term-weighting approaches in automatic text
 * retrieval", 1988): document weights 1 + ln tf, cosine-normalised at put
 * time (no IDF, so a document's norm does not change as others arrive);
 * query weights (1 + ln qtf) * idf, idf = ln(1 + N / df), the 1 keeping a
 * term found in every document (N = df) from scoring zero.
 */
static void score_tfidf(const struct idx *ix, const struct query *q, float *acc)
{
	size_t n = idx_ndocs(ix), i;
	double qn = 0, w[QMAX];
	struct idx_cur c;

	for (i = 0; i < q->nterm; i++) {
		w[i] = 0;
		if (!q->term[i].df)
			continue;
		w[i] = (1.0 + log(q->term[i].qtf)) * log(1.0 + (double)n / q->term[i].df);
		qn += w[i] * w[i];
	}
	if (qn <= 0)
		return;
	qn = sqrt(qn);
	for (i = 0; i < q->nterm; i++) {
		if (!q->term[i].df)
			continue;
		idx_cur_init(ix, q->term[i].term, &c);
		while (idx_cur_next(&c)) {
			float dn = idx_doc_norm(ix, c.doc);
			acc[c.doc] += (float)(w[i] / qn * (1.0 + log(c.tf)) / (dn > 0 ? dn : 1.0f));
		}
	}
}

static bool has_pos(const uint32_t *v, uint32_t n, uint32_t x)
{
	uint32_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (v[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo] == x;
}

/*
 * Phrase search: documents where the query's words occur at the same
 * relative positions (stop words keep their slots, see tok.h). Postings are
 * walked in step (all lists are sorted by document id), led by the rarest
 * term. A match is scored like BM25 with the phrase as one pseudo-term: its
 * frequency is the number of occurrences, its IDF the sum of its terms'.
 */
static int score_phrase(const struct idx *ix, const struct query *q, float *acc)
{
	struct idx_cur cur[QMAX];
	uint32_t *pos[QMAX] = { 0 }, cap[QMAX] = { 0 }, lead = 0, i, j, k, doc, cnt;
	double idf = 0, avgdl = idx_avgdl(ix);
	size_t n = idx_ndocs(ix);
	int rc = 0;
	bool ok;

	if (!q->nterm)
		return 0;
	for (i = 0; i < q->nterm; i++) {
		if (!q->term[i].df)
			return 0;
		idf += bm25_idf(n, q->term[i].df);
		if (q->term[i].df < q->term[lead].df)
			lead = i;
		idx_cur_init(ix, q->term[i].term, &cur[i]);
		if (!idx_cur_next(&cur[i]))
			return 0;
	}
	for (;;) {
		/* Align every cursor on the lead's document. */
		doc = cur[lead].doc;
		ok = true;
		for (i = 0; i < q->nterm && ok; i++) {
			while (cur[i].doc < doc)
				if (!idx_cur_next(&cur[i]))
					goto done;
			if (cur[i].doc > doc)
				ok = false;
		}
		if (!ok) {
			/* Some list skipped past doc: move the lead up to it. */
			uint32_t target = 0;
			for (i = 0; i < q->nterm; i++)
				if (cur[i].doc > target)
					target = cur[i].doc;
			while (cur[lead].doc < target)
				if (!idx_cur_next(&cur[lead]))
					goto done;
			continue;
		}
		for (i = 0; i < q->nterm; i++) {
			if (cur[i].tf > cap[i]) {
				uint32_t *p = realloc(pos[i], cur[i].tf * sizeof(*p));
				if (!p) {
					rc = -ENOMEM;
					goto done;
				}
				pos[i] = p;
				cap[i] = cur[i].tf;
			}
			idx_cur_positions(&cur[i], pos[i]);
		}
		/* Count starting positions p of the first token such that each
		 * token k is at p + (its offset in the query). */
		cnt = 0;
		for (j = 0; j < cur[0].tf; j++) {
			uint32_t p0 = pos[0][j];
			if (p0 < q->tok[0].pos)
				continue;
			p0 -= q->tok[0].pos;
			for (k = 0; k < q->ntok; k++) {
				uint32_t t = q->tok[k].qt;
				if (!has_pos(pos[t], cur[t].tf, p0 + q->tok[k].pos))
					break;
			}
			if (k == q->ntok)
				cnt++;
		}
		if (cnt)
			acc[doc] = (float)(idf * bm25_tf(cnt, idx_doc_len(ix, doc), avgdl));
		if (!idx_cur_next(&cur[lead]))
			break;
	}
done:
	for (i = 0; i < q->nterm; i++)
		free(pos[i]);
	return rc;
}

struct cand {
	uint32_t doc;
	float    score;
};

/* True when a ranks before b: higher score, then smaller key (bytewise) so
 * ties come out in a stable, reproducible order. */
static bool before(const struct idx *ix, const struct cand *a, const struct cand *b)
{
	const char *ka, *kb;
	size_t la, lb;
	int c;

	if (a->score != b->score)
		return a->score > b->score;
	ka = idx_doc_key(ix, a->doc, &la);
	kb = idx_doc_key(ix, b->doc, &lb);
	c = memcmp(ka, kb, la < lb ? la : lb);
	if (c)
		return c < 0;
	return la < lb;
}

static int cand_cmp(const void *a, const void *b, void *ix)
{
	if (before(ix, a, b))
		return -1;
	return before(ix, b, a) ? 1 : 0;
}

/* Min-heap on `before`: the root is the worst of the kept candidates. */
static void heap_down(const struct idx *ix, struct cand *h, size_t n, size_t i)
{
	size_t l, w;
	struct cand t;

	for (;;) {
		l = 2 * i + 1;
		w = i;
		if (l < n && before(ix, &h[w], &h[l]))
			w = l;
		if (l + 1 < n && before(ix, &h[w], &h[l + 1]))
			w = l + 1;
		if (w == i)
			return;
		t = h[i];
		h[i] = h[w];
		h[w] = t;
		i = w;
	}
}

static void heap_up(const struct idx *ix, struct cand *h, size_t i)
{
	struct cand t;

	while (i) {
		size_t p = (i - 1) / 2;
		if (!before(ix, &h[p], &h[i]))
			return;
		t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

/* The best `limit` documents with a positive score in acc[0..n), best first,
 * in out (room for limit); returns how many. */
static size_t top_k(const struct idx *ix, const float *acc, const uint8_t *live,
		    size_t n, size_t limit, struct cand *out)
{
	size_t i, k = 0;
	struct cand c;

	if (!limit)
		return 0;
	for (i = 0; i < n; i++) {
		if (!(acc[i] > 0) || !live[i])
			continue;
		c.doc = (uint32_t)i;
		c.score = acc[i];
		if (k < limit) {
			out[k] = c;
			heap_up(ix, out, k++);
		} else if (before(ix, &c, &out[0])) {
			out[0] = c;
			heap_down(ix, out, k, 0);
		}
	}
	qsort_r(out, k, sizeof(*out), cand_cmp, (void *)ix);
	return k;
}

static int make_hits(const struct idx *ix, const struct cand *c, size_t n,
		     struct search_hit **hits, size_t *nhits)
{
	struct search_hit *h = calloc(n ? n : 1, sizeof(*h));
	const char *k;
	size_t i, kl;

	if (!h)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		k = idx_doc_key(ix, c[i].doc, &kl);
		h[i].key = malloc(kl + 1);
		if (!h[i].key) {
			search_hits_free(h, i);
			return -ENOMEM;
		}
		memcpy(h[i].key, k, kl);
		h[i].key[kl] = 0;
		h[i].klen = kl;
		h[i].score = c[i].score;
	}
	*hits = h;
	*nhits = n;
	return 0;
}

static void semantic_query_vec(const struct emb *e, const struct query *q, float *qv)
{
	size_t i;

	memset(qv, 0, emb_acc_dim(e) * sizeof(*qv));
	for (i = 0; i < q->ntok; i++)
		emb_acc_word(e, qv, q->tok[i].word, q->tok[i].wlen);
}

static void semantic_all(const struct idx *ix, const struct emb *e, const struct rank_params *p,
			 const struct query *q, float *qv, float *acc)
{
	semantic_query_vec(e, q, qv);
	emb_score(e, qv, idx_vecs(ix), idx_live(ix), idx_doc_cap(ix),
		  idx_bucket_df(ix), idx_ndocs(ix), p->ngram_norms, acc);
}

/*
 * Hybrid: linear fusion of BM25 and semantic cosine after min-max
 * normalisation of each (Bruch, Gai & Ingber, "An Analysis of Fusion
 * Functions for Hybrid Retrieval", TOIS 2023). Keyword evidence dominates
 * (alpha ~ 0.8): averaged word vectors alone are much weaker than BM25, and
 * equal-weight fusion loses to BM25 on CISI.
 *
 * The minimum and maximum come from a fixed candidate set, the BM25 top
 * text_cand united with the semantic top sem_cand, so that a document's
 * fused score does not depend on the caller's limit. bc[0..nb) and
 * sc[0..ns) are the two top lists (at least that long, longer when the limit
 * asks for more); their union is ranked.
 */
static size_t fuse(const struct idx *ix, const struct rank_params *p, const float *bm,
		   const float *sem, const struct cand *bc, size_t nb, const struct cand *sc,
		   size_t ns, uint8_t *seen, size_t limit, struct cand *all, struct cand *out)
{
	float bmin = INFINITY, bmax = -INFINITY, smin = INFINITY, smax = -INFINITY;
	size_t i, j, n = 0;

	for (i = 0; i < nb + ns; i++) {
		const struct cand *c = i < nb ? &bc[i] : &sc[i - nb];
		float b = bm[c->doc], v = sem[c->doc];
		if ((i < nb && i < p->text_cand) || (i >= nb && i - nb < p->sem_cand)) {
			bmin = fminf(bmin, b);
			bmax = fmaxf(bmax, b);
			smin = fminf(smin, v);
			smax = fmaxf(smax, v);
		}
		if (seen[c->doc])
			continue;
		seen[c->doc] = 1;
		all[n++] = *c;
	}
	for (i = 0; i < n; i++) {
		float b = bm[all[i].doc], v = sem[all[i].doc];
		float nbm = bmax > bmin ? (b - bmin) / (bmax - bmin) : (b > 0 ? 1.0f : 0.0f);
		float nsm = smax > smin ? (v - smin) / (smax - smin) : (v > 0 ? 1.0f : 0.0f);
		seen[all[i].doc] = 0;
		all[i].score = (float)(p->alpha * nbm + (1.0 - p->alpha) * nsm);
	}
	/* Documents beyond the candidate set can fall below its minimum; and a
	 * document at the bottom of both lists scores 0: neither is a match. */
	for (i = j = 0; i < n; i++)
		if (all[i].score > 0)
			all[j++] = all[i];
	n = j;
	qsort_r(all, n, sizeof(*all), cand_cmp, (void *)ix);
	if (n > limit)
		n = limit;
	memcpy(out, all, n * sizeof(*out));
	return n;
}

int rank_query(const struct idx *ix, const struct emb *e, const struct rank_params *p,
	       const char *s, size_t slen, enum search_mode mode, size_t limit,
	       struct search_hit **hits, size_t *nhits)
{
	struct query *q = NULL;
	struct cand *out = NULL, *cs = NULL;
	float *acc = NULL, *sem = NULL, *qv = NULL;
	uint8_t *seen = NULL;
	size_t cap = idx_doc_cap(ix), n = 0, nb, ns;
	int rc = -ENOMEM;

	*hits = NULL;
	*nhits = 0;
	if (!limit)
		limit = 100;
	while (slen && (*s == ' ' || *s == '\t' || *s == '\n'))
		s++, slen--;
	while (slen && (s[slen - 1] == ' ' || s[slen - 1] == '\t' || s[slen - 1] == '\n'))
		slen--;
	if (slen >= 2 && s[0] == '"' && s[slen - 1] == '"') {
		mode = SEARCH_PHRASE;
		s++;
		slen -= 2;
	}
	q = malloc(sizeof(*q));
	acc = calloc(cap ? cap : 1, sizeof(*acc));
	out = malloc(limit * sizeof(*out));
	if (!q || !acc || !out)
		goto out;
	rc = query_parse(ix, s, slen, q);
	if (rc)
		goto out;
	switch (mode) {
	case SEARCH_TEXT:
		score_bm25(ix, q, acc);
		n = top_k(ix, acc, idx_live(ix), cap, limit, out);
		break;
	case SEARCH_TFIDF:
		score_tfidf(ix, q, acc);
		n = top_k(ix, acc, idx_live(ix), cap, limit, out);
		break;
	case SEARCH_PHRASE:
		rc = score_phrase(ix, q, acc);
		if (rc)
			goto out;
		n = top_k(ix, acc, idx_live(ix), cap, limit, out);
		break;
	case SEARCH_SEMANTIC:
		qv = malloc(emb_acc_dim(e) * sizeof(*qv));
		if (!qv)
			goto out;
		semantic_all(ix, e, p, q, qv, acc);
		n = top_k(ix, acc, idx_live(ix), cap, limit, out);
		break;
	case SEARCH_HYBRID:
	default:
		nb = p->text_cand > limit ? p->text_cand : limit;
		ns = p->sem_cand > limit ? p->sem_cand : limit;
		qv = malloc(emb_acc_dim(e) * sizeof(*qv));
		sem = malloc((cap ? cap : 1) * sizeof(*sem));
		cs = malloc((nb + ns) * 2 * sizeof(*cs));
		seen = calloc(cap ? cap : 1, 1);
		if (!qv || !sem || !cs || !seen)
			goto out;
		score_bm25(ix, q, acc);
		semantic_all(ix, e, p, q, qv, sem);
		nb = top_k(ix, acc, idx_live(ix), cap, nb, cs);
		ns = top_k(ix, sem, idx_live(ix), cap, ns, cs + nb);
		n = fuse(ix, p, acc, sem, cs, nb, cs + nb, ns, seen, limit, cs + nb + ns, out);
		break;
	}
	rc = make_hits(ix, out, n, hits, nhits);
out:
	free(q);
	free(acc);
	free(sem);
	free(qv);
	free(cs);
	free(seen);
	free(out);
	return rc;
}
