/*
 * emb.c — word vectors: the .kvv loader (format in emb.h) and the hashed
 * character n-gram fallback.
 */
#include "search/emb.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .kvv reader assumes a little-endian host"
#endif

/* Query-side scratch vectors live on the stack. 1024 n-gram buckets
 * measured best on CISI (semantic MAP 0.160 at 512, 0.186 at 1024; raw
 * counts beat sqrt and log(1 + c); adding 4-grams lowered it). */
#define EMB_DIM_MAX 1024
_Static_assert(EMB_NGRAM_DIM <= EMB_DIM_MAX, "n-gram buckets must fit the query scratch space");

/* Divisor of the frequency rank in the GloVe word weight ln(1 + rank / R). */
#define GLOVE_RANK_DIV 100.0f

enum emb_src { EMB_GLOVE, EMB_NGRAM };

/* One hash slot: 16 bytes, so a word of up to HS_INLINE bytes (most English
 * words) is matched inside the slot without touching the word table; a
 * lookup then costs one cache miss instead of three. */
#define HS_INLINE 11
struct hslot {
	uint32_t idx1;               /* word index + 1; 0 = empty */
	uint8_t  len;                /* word length, 255 = longer */
	char     pre[HS_INLINE];     /* the word's first bytes, zero-padded */
};

struct emb {
	enum emb_src   src;
	uint32_t       dim;
	/* GloVe: the mapped file. */
	const uint8_t *map;
	size_t         map_size;
	uint32_t       nwords, rec;
	const uint8_t *str;
	const uint8_t *tab;   /* u32[nwords + 1], possibly unaligned: memcpy */
	const uint8_t *recs;
	struct hslot  *hslot;   /* open-addressing table over the words */
	uint32_t       hmask;
};

/* CRC-32, reflected polynomial 0xEDB88320, table-driven (Sarwate 1988),
 * eight bytes per step ("slicing-by-8", Kounavis & Berry 2005). */
static uint32_t crc_tab[8][256];

static void crc_init(void)
{
	uint32_t c;
	int i, j, k;

	for (i = 0; i < 256; i++) {
		c = (uint32_t)i;
		for (j = 0; j < 8; j++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_tab[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (k = 1; k < 8; k++)
			crc_tab[k][i] = (crc_tab[k - 1][i] >> 8) ^ crc_tab[0][crc_tab[k - 1][i] & 0xFF];
}

uint32_t emb_crc32(uint32_t crc, const void *buf, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const uint8_t *p = buf;
	uint32_t lo, hi;

	pthread_once(&once, crc_init);
	crc = ~crc;
	while (len >= 8) {
		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		lo ^= crc;
		crc = crc_tab[7][lo & 0xFF] ^ crc_tab[6][(lo >> 8) & 0xFF] ^
		      crc_tab[5][(lo >> 16) & 0xFF] ^ crc_tab[4][lo >> 24] ^
		      crc_tab[3][hi & 0xFF] ^ crc_tab[2][(hi >> 8) & 0xFF] ^
		      crc_tab[1][(hi >> 16) & 0xFF] ^ crc_tab[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc_tab[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* FNV-1a, 32 bits (Fowler, Noll, Vo). */
static uint32_t fnv1a(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	while (n--) {
		h ^= (uint8_t)*s++;
		h *= 16777619u;
	}
	return h;
}

/* Indexes the mapped words in a hash table: a binary search costs ~19
 * string compares on cache-cold pages per word, and indexing looks up every
 * word of every document. */
static int glove_hash(struct emb *e)
{
	uint32_t cap = 1024, i, a, b, h;
	struct hslot *sl;

	/* Load factor <= 2/3: open addressing stays short, the table small. */
	while (cap < e->nwords + e->nwords / 2u)
		cap *= 2;
	e->hslot = calloc(cap, sizeof(*e->hslot));
	if (!e->hslot)
		return -ENOMEM;
	e->hmask = cap - 1;
	for (i = 0; i < e->nwords; i++) {
		a = rd32(e->tab + 4 * i);
		b = rd32(e->tab + 4 * i + 4);
		for (h = fnv1a((const char *)e->str + a, b - a) & e->hmask; e->hslot[h].idx1;
		     h = (h + 1) & e->hmask)
			;
		sl = &e->hslot[h];
		sl->idx1 = i + 1;
		sl->len = (uint8_t)(b - a < 255 ? b - a : 255);
		memcpy(sl->pre, e->str + a, b - a < HS_INLINE ? b - a : HS_INLINE);
	}
	return 0;
}

/* Validates a mapped .kvv image; returns NULL or what is wrong. */
static const char *kvv_check(struct emb *e, const uint8_t *m, size_t size)
{
	uint64_t str_off, str_size, tab_off, rec_off, fsize, i;
	uint32_t prev, cur;

	if (size < EMB_HDR_SIZE)
		return "shorter than the header";
	if (memcmp(m, EMB_MAGIC, 8))
		return "bad magic (not a .kvv file)";
	if (rd32(m + 8) != EMB_VERSION)
		return "unsupported version";
	if (emb_crc32(0, m, 68) != rd32(m + 68))
		return "header checksum mismatch";
	e->dim = rd32(m + 12);
	e->nwords = rd32(m + 16);
	e->rec = rd32(m + 20);
	str_off = rd64(m + 24);
	str_size = rd64(m + 32);
	tab_off = rd64(m + 40);
	rec_off = rd64(m + 48);
	fsize = rd64(m + 56);
	if (fsize != size)
		return "file size does not match the header (truncated?)";
	if (e->dim == 0 || e->dim > EMB_DIM_MAX || e->rec < 8 + e->dim || e->rec % 4 || e->nwords == 0)
		return "bad dimensions";
	if (str_off < EMB_HDR_SIZE || str_off > size || str_size > size - str_off ||
	    tab_off < EMB_HDR_SIZE || tab_off > size ||
	    (uint64_t)e->nwords + 1 > (size - tab_off) / 4 ||
	    rec_off < EMB_HDR_SIZE || rec_off > size || rec_off % 4 ||
	    (uint64_t)e->nwords * e->rec != size - rec_off)
		return "section offsets out of range";
	if (emb_crc32(0, m + EMB_HDR_SIZE, size - EMB_HDR_SIZE) != rd32(m + 64))
		return "body checksum mismatch";
	e->str = m + str_off;
	e->tab = m + tab_off;
	e->recs = m + rec_off;
	prev = rd32(e->tab);
	if (prev != 0)
		return "bad word table";
	for (i = 1; i <= e->nwords; i++) {
		cur = rd32(e->tab + 4 * i);
		if (cur <= prev || cur > str_size)
			return "bad word table";
		prev = cur;
	}
	return NULL;
}

int emb_open(const char *path, struct emb **out, char *err, size_t errlen)
{
	struct emb *e;
	struct stat stt;
	const char *why;
	void *m;
	int fd = -1, rc;

	if (errlen)
		err[0] = 0;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	if (path)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (path && errno != ENOENT) {
			rc = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(-rc));
			goto err;
		}
		e->src = EMB_NGRAM;
		e->dim = EMB_NGRAM_DIM;
		*out = e;
		return 0;
	}
	if (fstat(fd, &stt)) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		goto err;
	}
	if (stt.st_size < EMB_HDR_SIZE) {
		rc = -EBADMSG;
		snprintf(err, errlen, "%s: corrupt vector file: shorter than the header", path);
		goto err;
	}
	m = mmap(NULL, (size_t)stt.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "%s: mmap: %s", path, strerror(-rc));
		goto err;
	}
	e->src = EMB_GLOVE;
	e->map = m;
	e->map_size = (size_t)stt.st_size;
	why = kvv_check(e, m, e->map_size);
	if (why) {
		rc = -EBADMSG;
		snprintf(err, errlen, "%s: corrupt vector file: %s; run scripts/get-vectors", path, why);
		goto err;
	}
	rc = glove_hash(e);
	if (rc)
		goto err;
	close(fd);
	*out = e;
	return 0;
err:
	if (e->map)
		munmap((void *)e->map, e->map_size);
	free(e->hslot);
	if (fd >= 0)
		close(fd);
	free(e);
	return rc;
}

void emb_close(struct emb *e)
{
	if (!e)
		return;
	if (e->map)
		munmap((void *)e->map, e->map_size);
	free(e->hslot);
	free(e);
}

const char *emb_kind(const struct emb *e)
{
	return e->src == EMB_GLOVE ? "glove-100d" : "char-ngram";
}

int emb_is_ngram(const struct emb *e)
{
	return e->src == EMB_NGRAM;
}

size_t emb_doc_bytes(const struct emb *e)
{
	return e->dim;
}

size_t emb_acc_dim(const struct emb *e)
{
	return e->dim;
}

static const uint8_t *glove_find(const struct emb *e, const char *w, size_t wlen)
{
	const struct hslot *sl;
	uint32_t h, i, a, b;
	uint8_t l = (uint8_t)(wlen < 255 ? wlen : 255);

	for (h = fnv1a(w, wlen) & e->hmask; e->hslot[h].idx1; h = (h + 1) & e->hmask) {
		sl = &e->hslot[h];
		if (sl->len != l || memcmp(sl->pre, w, wlen < HS_INLINE ? wlen : HS_INLINE))
			continue;
		i = sl->idx1 - 1;
		if (wlen > HS_INLINE) {
			a = rd32(e->tab + 4 * i);
			b = rd32(e->tab + 4 * i + 4);
			if (b - a != wlen || memcmp(e->str + a, w, wlen))
				continue;
		}
		return e->recs + (size_t)i * e->rec;
	}
	return NULL;
}

int emb_lookup(const struct emb *e, const char *w, size_t wlen, float *vec,
	       uint32_t *rank)
{
	const uint8_t *r;
	const int8_t *q;
	float scale;
	uint32_t j;

	if (e->src != EMB_GLOVE)
		return -ENOENT;
	r = glove_find(e, w, wlen);
	if (!r)
		return -ENOENT;
	memcpy(&scale, r, 4);
	if (rank)
		*rank = rd32(r + 4);
	q = (const int8_t *)(r + 8);
	for (j = 0; j < e->dim; j++)
		vec[j] = scale * q[j];
	return 0;
}

void emb_acc_word(const struct emb *e, float *acc, const char *w, size_t wlen)
{
	char pad[80];
	size_t n, i;

	if (e->src == EMB_GLOVE) {
		const uint8_t *r = glove_find(e, w, wlen);
		const int8_t *q;
		float scale, wt;
		uint32_t j;

		if (!r)
			return;
		memcpy(&scale, r, 4);
		wt = scale * logf(1.0f + (float)rd32(r + 4) / GLOVE_RANK_DIV);
		q = (const int8_t *)(r + 8);
		for (j = 0; j < e->dim; j++)
			acc[j] += wt * q[j];
		return;
	}
	/* Padding marks word starts and ends, so "<co" differs from an inner "co". */
	if (wlen + 2 > sizeof(pad))
		return;
	pad[0] = '<';
	memcpy(pad + 1, w, wlen);
	pad[wlen + 1] = '>';
	n = wlen + 2;
	if (n < 3) {
		acc[fnv1a(pad, n) % EMB_NGRAM_DIM] += 1.0f;
		return;
	}
	for (i = 0; i + 3 <= n; i++)
		acc[fnv1a(pad + i, 3) % EMB_NGRAM_DIM] += 1.0f;
}

int emb_doc_finish(const struct emb *e, const float *acc, uint8_t *out)
{
	double ss = 0;
	uint32_t j;
	int any = 0;

	if (e->src == EMB_NGRAM) {
		for (j = 0; j < e->dim; j++) {
			out[j] = acc[j] > 255.0f ? 255 : (uint8_t)acc[j];
			any |= out[j] != 0;
		}
		return any;
	}
	for (j = 0; j < e->dim; j++)
		ss += (double)acc[j] * acc[j];
	if (ss <= 0) {
		memset(out, 0, e->dim);
		return 0;
	}
	ss = 127.0 / sqrt(ss);
	for (j = 0; j < e->dim; j++)
		((int8_t *)out)[j] = (int8_t)lrint(acc[j] * ss);
	return 1;
}

/* Query side of the cosine: for GloVe the unit query vector scaled by 1/127
 * (documents are stored as unit vectors times 127); for n-grams the IDF
 * weights. Returns 0 when the query has no usable component. */
static int query_prep(const struct emb *e, const float *qacc, const uint32_t *df,
		      size_t ndocs, float *qw, float *idf2)
{
	double ss = 0;
	uint32_t j;

	if (e->src == EMB_GLOVE) {
		for (j = 0; j < e->dim; j++)
			ss += (double)qacc[j] * qacc[j];
		if (ss <= 0)
			return 0;
		ss = 1.0 / (127.0 * sqrt(ss));
		for (j = 0; j < e->dim; j++)
			qw[j] = (float)(qacc[j] * ss);
		return 1;
	}
	/* Bucket IDF ln(1 + N / df) over the live documents. */
	for (j = 0; j < e->dim; j++) {
		float idf = df[j] ? logf(1.0f + (float)ndocs / (float)df[j]) : 0.0f;
		idf2[j] = idf * idf;
		qw[j] = qacc[j] * idf2[j];
		ss += (double)qacc[j] * qacc[j] * idf2[j];
	}
	if (ss <= 0)
		return 0;
	ss = 1.0 / sqrt(ss);
	for (j = 0; j < e->dim; j++)
		qw[j] = (float)(qw[j] * ss);
	return 1;
}

/* The loops below are float sum reductions, which the compiler may only
 * vectorise when told that reassociating them is fine (omp simd, enabled by
 * -fopenmp-simd in search/meson.build; no OpenMP runtime is involved). */
static float dot_glove(const float *qw, const int8_t *v, uint32_t dim)
{
	float dot = 0;
	uint32_t j;

#pragma omp simd reduction(+ : dot)
	for (j = 0; j < dim; j++)
		dot += qw[j] * (float)v[j];
	return dot;
}

static float cos_ngram(const float *qw, const float *idf2, const uint8_t *d, uint32_t dim)
{
	float dot = 0, nrm = 0;
	uint32_t j;

#pragma omp simd reduction(+ : dot, nrm)
	for (j = 0; j < dim; j++) {
		float c = (float)d[j];
		dot += qw[j] * c;
		nrm += idf2[j] * c * c;
	}
	return nrm > 0 ? dot / sqrtf(nrm) : 0.0f;
}

static float score_one(const struct emb *e, const float *qw, const float *idf2,
		       const uint8_t *d)
{
	if (e->src == EMB_GLOVE)
		return dot_glove(qw, (const int8_t *)d, e->dim);
	return cos_ngram(qw, idf2, d, e->dim);
}

void emb_ngram_norms(const struct emb *e, const uint8_t *docs, const uint8_t *live,
		     size_t n, const uint32_t *df, size_t ndocs, float *norms)
{
	float idf2[EMB_DIM_MAX];
	size_t i;
	uint32_t j;

	for (j = 0; j < e->dim; j++) {
		float idf = df[j] ? logf(1.0f + (float)ndocs / (float)df[j]) : 0.0f;
		idf2[j] = idf * idf;
	}
	for (i = 0; i < n; i++) {
		const uint8_t *d = docs + i * e->dim;
		float nrm = 0;

		if (!live[i]) {
			norms[i] = 0;
			continue;
		}
#pragma omp simd reduction(+ : nrm)
		for (j = 0; j < e->dim; j++)
			nrm += idf2[j] * (float)d[j] * (float)d[j];
		norms[i] = sqrtf(nrm);
	}
}

void emb_score(const struct emb *e, const float *qacc, const uint8_t *docs,
	       const uint8_t *live, size_t n, const uint32_t *df, size_t ndocs,
	       const float *norms, float *scores)
{
	float qw[EMB_DIM_MAX], idf2[EMB_DIM_MAX], qv[EMB_DIM_MAX];
	uint16_t qi[EMB_DIM_MAX];
	size_t i, k, nq = 0;
	uint32_t j;

	if (!query_prep(e, qacc, df, ndocs, qw, idf2)) {
		memset(scores, 0, n * sizeof(*scores));
		return;
	}
	if (e->src == EMB_GLOVE || !norms) {
		for (i = 0; i < n; i++)
			scores[i] = live[i] ? score_one(e, qw, idf2, docs + i * e->dim) : 0.0f;
		return;
	}
	/* With the document norms known, only the query's non-zero buckets
	 * (a few dozen of the 1024) take part in the dot product. */
	for (j = 0; j < e->dim; j++) {
		if (qw[j] != 0) {
			qi[nq] = (uint16_t)j;
			qv[nq++] = qw[j];
		}
	}
	for (i = 0; i < n; i++) {
		const uint8_t *d = docs + i * e->dim;
		float dot = 0;

		if (!live[i] || norms[i] <= 0) {
			scores[i] = 0;
			continue;
		}
		for (k = 0; k < nq; k++)
			dot += qv[k] * (float)d[qi[k]];
		scores[i] = dot / norms[i];
	}
}
