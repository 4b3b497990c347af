/*
 * idx.c — positional inverted index (layout in idx.h).
 */
#include "search/idx.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A block of at most BLK_MAX postings entries; the first entry's delta is
 * from 0 (an absolute id), so each block decodes on its own. */
struct blk {
	uint32_t  first, last;  /* doc ids of the first and last entries */
	uint32_t  n;            /* entries */
	uint32_t  len, cap;
	uint8_t  *buf;
};

struct term {
	char     *s;
	uint32_t  slen, hash;
	uint32_t  df;
	uint32_t  nblk, blkcap;
	struct blk *blk;        /* ordered by doc id, non-empty */
};

struct doc {
	char     *key;
	uint32_t  klen, hash;
	uint32_t  len;          /* indexed token count, for BM25 */
	float     norm;         /* lnc norm, for TF-IDF */
	uint8_t  *fwd;          /* sorted term ids, delta varints */
	uint32_t  fwdlen, nterms;
};

/* Open-addressing hash set of ids, linear probing, backward-shift delete. */
struct hset {
	uint32_t *slot;
	uint32_t  mask, count;
};

struct idx {
	struct term *terms;
	uint32_t     nterms, terms_cap;
	struct hset  term_set;

	struct doc  *docs;
	uint8_t     *live;
	uint32_t    *dlen;          /* docs[i].len, compact for BM25 scans */
	uint8_t     *vecs;
	uint32_t     doc_cap, doc_hi;   /* ids < doc_hi have been used */
	uint32_t    *free_ids;
	uint32_t     nfree, free_cap;
	struct hset  doc_set;
	size_t       ndocs;
	uint64_t     total_len;

	size_t       vec_bytes;
	uint32_t    *bucket_df;
};

/* FNV-1a, 32 bits. */
static uint32_t hash_bytes(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	while (n--) {
		h ^= (uint8_t)*s++;
		h *= 16777619u;
	}
	return h;
}

static size_t varint_put(uint8_t *p, uint32_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static uint32_t varint_get(const uint8_t **pp)
{
	const uint8_t *p = *pp;
	uint32_t v = 0;
	int sh = 0;

	while (*p & 0x80) {
		v |= (uint32_t)(*p++ & 0x7F) << sh;
		sh += 7;
	}
	v |= (uint32_t)*p++ << sh;
	*pp = p;
	return v;
}

static const uint8_t *varint_skip(const uint8_t *p, uint32_t n)
{
	while (n) {
		if (!(*p++ & 0x80))
			n--;
	}
	return p;
}

static int hset_init(struct hset *h, uint32_t cap)
{
	h->slot = malloc(cap * sizeof(*h->slot));
	if (!h->slot)
		return -ENOMEM;
	memset(h->slot, 0xFF, cap * sizeof(*h->slot));
	h->mask = cap - 1;
	h->count = 0;
	return 0;
}

static const char *term_str(const struct idx *ix, uint32_t id, uint32_t *len, uint32_t *hash)
{
	*len = ix->terms[id].slen;
	*hash = ix->terms[id].hash;
	return ix->terms[id].s;
}

static const char *doc_str(const struct idx *ix, uint32_t id, uint32_t *len, uint32_t *hash)
{
	*len = ix->docs[id].klen;
	*hash = ix->docs[id].hash;
	return ix->docs[id].key;
}

typedef const char *(*hset_str_fn)(const struct idx *ix, uint32_t id, uint32_t *len, uint32_t *hash);

/* Returns the slot holding the id whose string is s, or the empty slot
 * where it would go. */
static uint32_t hset_find(const struct idx *ix, const struct hset *h, hset_str_fn str,
			  const char *s, size_t n, uint32_t hash)
{
	uint32_t i = hash & h->mask, len, hh;
	const char *t;

	for (;; i = (i + 1) & h->mask) {
		if (h->slot[i] == IDX_NONE)
			return i;
		t = str(ix, h->slot[i], &len, &hh);
		if (hh == hash && len == n && !memcmp(t, s, n))
			return i;
	}
}

static int hset_grow(struct idx *ix, struct hset *h, hset_str_fn str)
{
	struct hset nh;
	uint32_t i, j, len, hash;
	int rc;

	rc = hset_init(&nh, (h->mask + 1) * 2);
	if (rc)
		return rc;
	for (i = 0; i <= h->mask; i++) {
		if (h->slot[i] == IDX_NONE)
			continue;
		str(ix, h->slot[i], &len, &hash);
		for (j = hash & nh.mask; nh.slot[j] != IDX_NONE; j = (j + 1) & nh.mask)
			;
		nh.slot[j] = h->slot[i];
	}
	nh.count = h->count;
	free(h->slot);
	*h = nh;
	return 0;
}

/* Knuth's algorithm R (TAOCP 6.4) for deletion with linear probing. */
static void hset_remove(const struct idx *ix, struct hset *h, hset_str_fn str, uint32_t i)
{
	uint32_t j = i, k, len, hash;

	for (;;) {
		h->slot[i] = IDX_NONE;
		for (;;) {
			j = (j + 1) & h->mask;
			if (h->slot[j] == IDX_NONE) {
				h->count--;
				return;
			}
			str(ix, h->slot[j], &len, &hash);
			k = hash & h->mask;
			/* Move slot j back to i unless its home k lies cyclically in (i, j]. */
			if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
				continue;
			break;
		}
		h->slot[i] = h->slot[j];
		i = j;
	}
}

int idx_new(size_t vec_bytes, int bucket_df, struct idx **out)
{
	struct idx *ix = calloc(1, sizeof(*ix));

	if (!ix)
		return -ENOMEM;
	ix->vec_bytes = vec_bytes;
	if (hset_init(&ix->term_set, 1024) || hset_init(&ix->doc_set, 1024))
		goto err;
	if (bucket_df) {
		ix->bucket_df = calloc(vec_bytes, sizeof(uint32_t));
		if (!ix->bucket_df)
			goto err;
	}
	*out = ix;
	return 0;
err:
	idx_free(ix);
	return -ENOMEM;
}

void idx_free(struct idx *ix)
{
	uint32_t i;

	if (!ix)
		return;
	for (i = 0; i < ix->nterms; i++) {
		uint32_t j;
		free(ix->terms[i].s);
		for (j = 0; j < ix->terms[i].nblk; j++)
			free(ix->terms[i].blk[j].buf);
		free(ix->terms[i].blk);
	}
	for (i = 0; i < ix->doc_hi; i++) {
		free(ix->docs[i].key);
		free(ix->docs[i].fwd);
	}
	free(ix->terms);
	free(ix->term_set.slot);
	free(ix->docs);
	free(ix->live);
	free(ix->dlen);
	free(ix->vecs);
	free(ix->free_ids);
	free(ix->doc_set.slot);
	free(ix->bucket_df);
	free(ix);
}

/* Finds or creates a term; IDX_NONE on allocation failure. */
static uint32_t term_get(struct idx *ix, const char *s, size_t n)
{
	uint32_t h = hash_bytes(s, n), slot, id;
	struct term *t;

	slot = hset_find(ix, &ix->term_set, term_str, s, n, h);
	if (ix->term_set.slot[slot] != IDX_NONE)
		return ix->term_set.slot[slot];
	if ((ix->term_set.count + 1) * 4 > (ix->term_set.mask + 1) * 3) {
		if (hset_grow(ix, &ix->term_set, term_str))
			return IDX_NONE;
		slot = hset_find(ix, &ix->term_set, term_str, s, n, h);
	}
	if (ix->nterms == ix->terms_cap) {
		uint32_t cap = ix->terms_cap ? ix->terms_cap * 2 : 1024;
		t = realloc(ix->terms, cap * sizeof(*t));
		if (!t)
			return IDX_NONE;
		ix->terms = t;
		ix->terms_cap = cap;
	}
	id = ix->nterms;
	t = &ix->terms[id];
	memset(t, 0, sizeof(*t));
	t->s = malloc(n ? n : 1);
	if (!t->s)
		return IDX_NONE;
	memcpy(t->s, s, n);
	t->slen = (uint32_t)n;
	t->hash = h;
	ix->nterms++;
	ix->term_set.slot[slot] = id;
	ix->term_set.count++;
	return id;
}

uint32_t idx_term_find(const struct idx *ix, const char *stem, size_t slen)
{
	uint32_t slot = hset_find(ix, &ix->term_set, term_str, stem, slen, hash_bytes(stem, slen));
	return ix->term_set.slot[slot];
}

uint32_t idx_term_df(const struct idx *ix, uint32_t term)
{
	return term < ix->nterms ? ix->terms[term].df : 0;
}

/*
 * Postings are split into blocks of at most BLK_MAX entries so that a put
 * or delete in the middle of a long list (every overwrite of an existing
 * key) scans one block found by binary search, not the whole list: with one
 * buffer per term, an overwrite at 100,000 documents cost about 5 ms.
 */
#define BLK_MAX 128

/* Replaces b->buf[off, off + oldlen) with rep[0, replen). */
static int splice(struct blk *b, uint32_t off, uint32_t oldlen, const uint8_t *rep, uint32_t replen)
{
	uint32_t nlen = b->len - oldlen + replen;

	if (nlen > b->cap) {
		/* Grow by half: postings dominate memory, and doubling would
		 * leave up to half of it unused. */
		uint32_t cap = nlen + nlen / 2 + 8;
		uint8_t *nb = realloc(b->buf, cap);
		if (!nb)
			return -ENOMEM;
		b->buf = nb;
		b->cap = cap;
	}
	memmove(b->buf + off + replen, b->buf + off + oldlen, b->len - off - oldlen);
	memcpy(b->buf + off, rep, replen);
	b->len = nlen;
	return 0;
}

/* Encodes tf and positions (not the doc delta) into out; returns its length. */
static size_t entry_body(uint8_t *out, const struct idx_tin *in)
{
	size_t n = varint_put(out, in->tf);
	uint32_t prev = 0, i;

	for (i = 0; i < in->tf; i++) {
		n += varint_put(out + n, in->pos[i] - prev);
		prev = in->pos[i];
	}
	return n;
}

/* Index of the block that holds (or would hold) doc: the last one whose
 * first id is <= doc, or 0. */
static uint32_t blk_find(const struct term *t, uint32_t doc)
{
	uint32_t lo = 0, hi = t->nblk, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (t->blk[mid].first <= doc)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? lo - 1 : 0;
}

/* Inserts an empty block at index i. */
static int blk_insert(struct term *t, uint32_t i)
{
	if (t->nblk == t->blkcap) {
		uint32_t cap = t->blkcap ? t->blkcap * 2 : 1;
		struct blk *nb = realloc(t->blk, cap * sizeof(*nb));
		if (!nb)
			return -ENOMEM;
		t->blk = nb;
		t->blkcap = cap;
	}
	memmove(&t->blk[i + 1], &t->blk[i], (t->nblk - i) * sizeof(*t->blk));
	memset(&t->blk[i], 0, sizeof(*t->blk));
	t->nblk++;
	return 0;
}

/* Splits an over-full block in two halves. Failure leaves it whole (and
 * merely larger than BLK_MAX), which is still correct. */
static void blk_split(struct term *t, uint32_t bi)
{
	struct blk *b, *nb;
	const uint8_t *p, *q;
	uint32_t prev = 0, cur = 0, tf, k, half, off, cut;
	uint8_t head[5];
	size_t hl;

	if (blk_insert(t, bi + 1))
		return;
	b = &t->blk[bi];
	nb = &t->blk[bi + 1];
	half = b->n / 2;
	p = b->buf;
	for (k = 0; k <= half; k++) {
		q = p;
		cur = prev + varint_get(&q);
		if (k == half)
			break;
		prev = cur;
		tf = varint_get(&q);
		p = varint_skip(q, tf);
	}
	/* Entry `half` starts at p; its delta varint ends at q. The new block
	 * starts with its absolute id. */
	cut = (uint32_t)(p - b->buf);
	off = (uint32_t)(q - b->buf);
	hl = varint_put(head, cur);
	nb->cap = (uint32_t)(b->len - off + hl) + 8;
	nb->buf = malloc(nb->cap);
	if (!nb->buf) {
		memmove(&t->blk[bi + 1], &t->blk[bi + 2], (t->nblk - bi - 2) * sizeof(*t->blk));
		t->nblk--;
		return;
	}
	memcpy(nb->buf, head, hl);
	memcpy(nb->buf + hl, b->buf + off, b->len - off);
	nb->len = (uint32_t)(b->len - off + hl);
	nb->first = cur;
	nb->last = b->last;
	nb->n = b->n - half;
	b->len = cut;
	b->last = prev;
	b->n = half;
}

static int postings_add(struct term *t, uint32_t doc, const struct idx_tin *in)
{
	uint8_t stackbuf[512], *e = stackbuf;
	const uint8_t *p, *q;
	uint32_t prev = 0, cur, off, bi;
	size_t need = 5 + 5 + 5 * (size_t)in->tf, n, bl;
	struct blk *b;
	int rc;

	need += 5;   /* the next entry's re-encoded delta, when inserting */
	if (need > sizeof(stackbuf)) {
		e = malloc(need);
		if (!e)
			return -ENOMEM;
	}
	bi = t->nblk ? blk_find(t, doc) : 0;
	if (!t->nblk || (bi == t->nblk - 1 && doc > t->blk[bi].last && t->blk[bi].n >= BLK_MAX)) {
		/* Appending past a full last block: start a new one, so that a
		 * bulk load fills blocks completely. */
		bi = t->nblk;
		rc = blk_insert(t, bi);
		if (rc)
			goto out;
	}
	b = &t->blk[bi];
	if (!b->n || doc > b->last) {
		n = varint_put(e, b->n ? doc - b->last : doc);
		n += entry_body(e + n, in);
		rc = splice(b, b->len, 0, e, (uint32_t)n);
		if (rc)
			goto out_empty;
		if (!b->n)
			b->first = doc;
		b->last = doc;
		goto added;
	}
	/* Find the first entry with a larger id and insert before it. */
	p = b->buf;
	for (;;) {
		q = p;
		cur = prev + varint_get(&q);
		if (cur > doc)
			break;
		prev = cur;
		bl = varint_get(&q);
		p = varint_skip(q, (uint32_t)bl);
	}
	off = (uint32_t)(p - b->buf);
	n = varint_put(e, doc - prev);
	n += entry_body(e + n, in);
	bl = varint_put(e + n, cur - doc);   /* the next entry's new delta */
	/* [p, q) is the next entry's old delta varint: replace it with the new
	 * entry followed by the next entry's new delta. */
	rc = splice(b, off, (uint32_t)(q - p), e, (uint32_t)(n + bl));
	if (rc)
		goto out;
	if (doc < b->first)
		b->first = doc;
added:
	b->n++;
	t->df++;
	if (b->n > BLK_MAX)
		blk_split(t, bi);
	rc = 0;
	goto out;
out_empty:
	if (!t->blk[bi].n) {
		free(t->blk[bi].buf);
		memmove(&t->blk[bi], &t->blk[bi + 1], (t->nblk - bi - 1) * sizeof(*t->blk));
		t->nblk--;
	}
out:
	if (e != stackbuf)
		free(e);
	return rc;
}

/* Removes doc's entry from the term's postings; no-op if absent. */
static void postings_del(struct term *t, uint32_t doc)
{
	const uint8_t *p, *q, *end;
	uint32_t prev = 0, cur = 0, tf, dn, s, bi;
	struct blk *b;
	uint8_t rep[5];
	size_t rl;

	if (!t->nblk)
		return;
	bi = blk_find(t, doc);
	b = &t->blk[bi];
	p = b->buf;
	end = b->buf + b->len;
	while (p < end) {
		q = p;
		cur = prev + varint_get(&q);
		tf = varint_get(&q);
		q = varint_skip(q, tf);
		if (cur == doc)
			break;
		if (cur > doc)
			return;
		prev = cur;
		p = q;
	}
	if (p >= end || cur != doc)
		return;
	s = (uint32_t)(p - b->buf);
	if (q == end) {
		b->len = s;
		b->last = prev;
	} else {
		/* Fold the removed delta into the next entry's delta (for the
		 * block's first entry, prev is 0 and the result is absolute). */
		dn = varint_get(&q);
		rl = varint_put(rep, (doc - prev) + dn);
		/* Shrinking never allocates: rl <= the bytes replaced. */
		(void)splice(b, s, (uint32_t)(q - b->buf) - s, rep, (uint32_t)rl);
		if (s == 0)
			b->first = doc + dn;
	}
	b->n--;
	t->df--;
	if (b->n == 0) {
		free(b->buf);
		memmove(&t->blk[bi], &t->blk[bi + 1], (t->nblk - bi - 1) * sizeof(*t->blk));
		t->nblk--;
	}
	if (t->nblk == 0) {
		free(t->blk);
		t->blk = NULL;
		t->blkcap = 0;
	}
}

static int doc_slot_reserve(struct idx *ix, uint32_t *id)
{
	if (ix->nfree) {
		*id = ix->free_ids[--ix->nfree];
		return 0;
	}
	if (ix->doc_hi == ix->doc_cap) {
		uint32_t cap = ix->doc_cap ? ix->doc_cap * 2 : 1024;
		struct doc *d = realloc(ix->docs, cap * sizeof(*d));
		uint8_t *l, *v;
		uint32_t *dl;

		if (!d)
			return -ENOMEM;
		ix->docs = d;
		l = realloc(ix->live, cap);
		if (!l)
			return -ENOMEM;
		ix->live = l;
		memset(l + ix->doc_cap, 0, cap - ix->doc_cap);
		dl = realloc(ix->dlen, cap * sizeof(*dl));
		if (!dl)
			return -ENOMEM;
		ix->dlen = dl;
		v = realloc(ix->vecs, (size_t)cap * ix->vec_bytes + 1);
		if (!v)
			return -ENOMEM;
		ix->vecs = v;
		ix->doc_cap = cap;
	}
	*id = ix->doc_hi++;
	memset(&ix->docs[*id], 0, sizeof(struct doc));
	return 0;
}

static void doc_slot_release(struct idx *ix, uint32_t id)
{
	/* free_ids can hold every id below doc_hi: reserved when it grew. */
	ix->free_ids[ix->nfree++] = id;
}

static void doc_unindex(struct idx *ix, uint32_t id)
{
	struct doc *d = &ix->docs[id];
	const uint8_t *p = d->fwd, *end = d->fwd + d->fwdlen;
	const uint8_t *v = ix->vecs + (size_t)id * ix->vec_bytes;
	uint32_t term = 0;
	size_t j;

	while (p < end) {
		term += varint_get(&p);
		postings_del(&ix->terms[term], id);
	}
	if (ix->bucket_df)
		for (j = 0; j < ix->vec_bytes; j++)
			ix->bucket_df[j] -= v[j] != 0;
	ix->total_len -= d->len;
	ix->ndocs--;
	ix->live[id] = 0;
	free(d->key);
	free(d->fwd);
	memset(d, 0, sizeof(*d));
}

int idx_del(struct idx *ix, const char *key, size_t klen)
{
	uint32_t h = hash_bytes(key, klen);
	uint32_t slot = hset_find(ix, &ix->doc_set, doc_str, key, klen, h);
	uint32_t id = ix->doc_set.slot[slot];

	if (id == IDX_NONE)
		return -ENOENT;
	hset_remove(ix, &ix->doc_set, doc_str, slot);
	doc_unindex(ix, id);
	doc_slot_release(ix, id);
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

struct tid {
	uint32_t term;
	uint32_t in;
};

static int cmp_tid(const void *a, const void *b)
{
	return cmp_u32(a, b);
}

int idx_put(struct idx *ix, const char *key, size_t klen,
	    const struct idx_tin *terms, size_t nterms, uint32_t len, const uint8_t *vec)
{
	struct tid *ids = NULL;
	struct doc *d;
	uint32_t h = hash_bytes(key, klen), slot, id, prev, *fi;
	size_t i, added = 0, fl;
	double nrm = 0;
	int rc = -ENOMEM;

	idx_del(ix, key, klen);
	/* Reserve everything that can fail before touching postings. */
	if ((ix->doc_set.count + 1) * 4 > (ix->doc_set.mask + 1) * 3 &&
	    hset_grow(ix, &ix->doc_set, doc_str))
		return -ENOMEM;
	if (ix->doc_hi + 1 > ix->free_cap) {
		uint32_t cap = ix->free_cap ? ix->free_cap * 2 : 1024;
		fi = realloc(ix->free_ids, cap * sizeof(*fi));
		if (!fi)
			return -ENOMEM;
		ix->free_ids = fi;
		ix->free_cap = cap;
	}
	ids = malloc((nterms ? nterms : 1) * sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	for (i = 0; i < nterms; i++) {
		ids[i].term = term_get(ix, terms[i].stem, terms[i].slen);
		ids[i].in = (uint32_t)i;
		if (ids[i].term == IDX_NONE)
			goto err_ids;
	}
	qsort(ids, nterms, sizeof(*ids), cmp_tid);
	if (doc_slot_reserve(ix, &id))
		goto err_ids;
	d = &ix->docs[id];
	d->key = malloc(klen ? klen : 1);
	d->fwd = malloc(nterms * 5 + 1);
	if (!d->key || !d->fwd)
		goto err_doc;
	memcpy(d->key, key, klen);
	d->klen = (uint32_t)klen;
	d->hash = h;
	d->len = len;
	ix->dlen[id] = len;
	fl = 0;
	prev = 0;
	for (i = 0; i < nterms; i++) {
		const struct idx_tin *in = &terms[ids[i].in];
		if (i && ids[i].term == ids[i - 1].term)
			continue;   /* callers pass distinct stems; be safe */
		rc = postings_add(&ix->terms[ids[i].term], id, in);
		if (rc)
			goto err_postings;
		added = i + 1;
		fl += varint_put(d->fwd + fl, ids[i].term - prev);
		prev = ids[i].term;
		d->nterms++;
		nrm += (1.0 + log(in->tf)) * (1.0 + log(in->tf));
	}
	d->fwdlen = (uint32_t)fl;
	if (fl) {
		uint8_t *shrunk = realloc(d->fwd, fl);
		if (shrunk)
			d->fwd = shrunk;
	}
	d->norm = (float)sqrt(nrm);
	if (vec)
		memcpy(ix->vecs + (size_t)id * ix->vec_bytes, vec, ix->vec_bytes);
	else
		memset(ix->vecs + (size_t)id * ix->vec_bytes, 0, ix->vec_bytes);
	if (ix->bucket_df)
		for (i = 0; i < ix->vec_bytes; i++)
			ix->bucket_df[i] += ix->vecs[(size_t)id * ix->vec_bytes + i] != 0;
	slot = hset_find(ix, &ix->doc_set, doc_str, key, klen, h);
	ix->doc_set.slot[slot] = id;
	ix->doc_set.count++;
	ix->live[id] = 1;
	ix->ndocs++;
	ix->total_len += len;
	free(ids);
	return 0;

err_postings:
	for (i = 0; i < added; i++)
		if (!i || ids[i].term != ids[i - 1].term)
			postings_del(&ix->terms[ids[i].term], id);
err_doc:
	free(d->key);
	free(d->fwd);
	memset(d, 0, sizeof(*d));
	doc_slot_release(ix, id);
err_ids:
	free(ids);
	return rc;
}

void idx_cur_init(const struct idx *ix, uint32_t term, struct idx_cur *c)
{
	memset(c, 0, sizeof(*c));
	if (term < ix->nterms && ix->terms[term].nblk) {
		c->blk = ix->terms[term].blk;
		c->blk_end = ix->terms[term].blk + ix->terms[term].nblk;
	}
}

bool idx_cur_next(struct idx_cur *c)
{
	const struct blk *b;

	if (c->started)
		c->p = varint_skip(c->pos, c->tf);
	if (c->p >= c->end) {
		/* Next block; its first delta is from 0. */
		if (!c->blk || c->blk == c->blk_end)
			return false;
		b = c->blk;
		c->blk = b + 1;
		c->p = b->buf;
		c->end = b->buf + b->len;
		c->doc = 0;
	}
	c->doc += varint_get(&c->p);
	c->tf = varint_get(&c->p);
	c->pos = c->p;
	c->started = true;
	return true;
}

void idx_cur_positions(const struct idx_cur *c, uint32_t *out)
{
	const uint8_t *p = c->pos;
	uint32_t prev = 0, i;

	for (i = 0; i < c->tf; i++) {
		prev += varint_get(&p);
		out[i] = prev;
	}
}

size_t idx_ndocs(const struct idx *ix)
{
	return ix->ndocs;
}

uint32_t idx_doc_cap(const struct idx *ix)
{
	return ix->doc_hi;
}

double idx_avgdl(const struct idx *ix)
{
	return ix->ndocs ? (double)ix->total_len / (double)ix->ndocs : 0.0;
}

uint32_t idx_doc_len(const struct idx *ix, uint32_t doc)
{
	return ix->dlen[doc];
}

const uint32_t *idx_doc_lens(const struct idx *ix)
{
	return ix->dlen;
}

float idx_doc_norm(const struct idx *ix, uint32_t doc)
{
	return ix->docs[doc].norm;
}

const char *idx_doc_key(const struct idx *ix, uint32_t doc, size_t *klen)
{
	*klen = ix->docs[doc].klen;
	return ix->docs[doc].key;
}

const uint8_t *idx_live(const struct idx *ix)
{
	return ix->live;
}

const uint8_t *idx_vecs(const struct idx *ix)
{
	return ix->vecs;
}

const uint32_t *idx_bucket_df(const struct idx *ix)
{
	return ix->bucket_df;
}

size_t idx_mem_bytes(const struct idx *ix)
{
	size_t b = sizeof(*ix);
	uint32_t i;

	b += (size_t)ix->terms_cap * sizeof(struct term);
	b += (size_t)(ix->term_set.mask + 1) * 4 + (size_t)(ix->doc_set.mask + 1) * 4;
	for (i = 0; i < ix->nterms; i++) {
		uint32_t j;
		b += ix->terms[i].slen + ix->terms[i].blkcap * sizeof(struct blk);
		for (j = 0; j < ix->terms[i].nblk; j++)
			b += ix->terms[i].blk[j].cap;
	}
	b += (size_t)ix->doc_cap * (sizeof(struct doc) + 1 + 4 + ix->vec_bytes);
	b += (size_t)ix->free_cap * 4;
	for (i = 0; i < ix->doc_hi; i++)
		b += ix->docs[i].klen + ix->docs[i].fwdlen;
	if (ix->bucket_df)
		b += ix->vec_bytes * 4;
	return b;
}
