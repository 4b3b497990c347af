/*
 * search_eval — benchmark driver for the search library (scripts/bench-search).
 *
 *   search_eval quality DOCS.jsonl QUERIES.jsonl OUTDIR [VECTORS|-]
 *       Indexes {"id","text"} documents, runs every query in every mode
 *       (limit 1000) and writes OUTDIR/run.<mode> in TREC format
 *       ("qid Q0 docid rank score tag").
 *   search_eval speed NDOCS WORDS VOCAB.jsonl [VECTORS|-]
 *       Indexes NDOCS synthetic documents of about WORDS words drawn from a
 *       Zipf(1) distribution over a vocabulary (real words from VOCAB.jsonl
 *       by frequency, then made-up words up to 50,000), then times 1,000
 *       queries per mode. Prints "key value" lines.
 *
 * VECTORS "-" means no vector file (character n-grams).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "search/search.h"

static const enum search_mode modes[] = {
	SEARCH_TEXT, SEARCH_TFIDF, SEARCH_SEMANTIC, SEARCH_HYBRID, SEARCH_PHRASE,
};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of this thread: unlike wall time it leaves out the time the
 * thread waited for a CPU, which on a shared build machine dominates the
 * tail. Both are reported. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static struct search_index *open_index(const char *vec)
{
	struct search_config cfg = { .vectors_path = strcmp(vec, "-") ? vec : NULL };
	struct search_index *ix;
	int rc = search_index_new(&cfg, &ix);

	if (rc) {
		fprintf(stderr, "search_eval: search_index_new: %s\n", strerror(-rc));
		exit(1);
	}
	return ix;
}

/* Calls fn for each JSON object line of path. */
static void each_json(const char *path, void (*fn)(json_t *o, void *arg), void *arg)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	json_error_t je;
	json_t *o;

	if (!f) {
		perror(path);
		exit(1);
	}
	while (getline(&line, &cap, f) > 0) {
		o = json_loads(line, 0, &je);
		if (!o)
			continue;
		fn(o, arg);
		json_decref(o);
	}
	free(line);
	fclose(f);
}

static void put_doc(json_t *o, void *arg)
{
	const char *id = json_string_value(json_object_get(o, "id"));
	const char *text = json_string_value(json_object_get(o, "text"));
	int rc;

	if (!id || !text)
		return;
	rc = search_index_put(arg, id, strlen(id), text, strlen(text));
	if (rc) {
		fprintf(stderr, "search_eval: put %s: %s\n", id, strerror(-rc));
		exit(1);
	}
}

struct qrun {
	struct search_index *ix;
	FILE *out[NMODES];
};

static void run_query(json_t *o, void *arg)
{
	struct qrun *r = arg;
	const char *id = json_string_value(json_object_get(o, "id"));
	const char *text = json_string_value(json_object_get(o, "text"));
	struct search_hit *h;
	size_t n, i, m;
	int rc;

	if (!id || !text)
		return;
	for (m = 0; m < NMODES; m++) {
		rc = search_query(r->ix, text, strlen(text), modes[m], 1000, &h, &n);
		if (rc) {
			fprintf(stderr, "search_eval: query %s: %s\n", id, strerror(-rc));
			exit(1);
		}
		for (i = 0; i < n; i++)
			fprintf(r->out[m], "%s Q0 %s %zu %.6f kvfs-%s\n", id, h[i].key, i + 1,
				h[i].score, search_mode_name(modes[m]));
		search_hits_free(h, n);
	}
}

static int quality(const char *docs, const char *queries, const char *outdir, const char *vec)
{
	struct qrun r = { .ix = open_index(vec) };
	char path[4096];
	double t0;
	size_t m;

	t0 = now();
	each_json(docs, put_doc, r.ix);
	printf("vectors %s\n", search_vectors_kind(r.ix));
	printf("docs %zu\n", search_doc_count(r.ix));
	printf("index_seconds %.3f\n", now() - t0);
	for (m = 0; m < NMODES; m++) {
		snprintf(path, sizeof(path), "%s/run.%s", outdir, search_mode_name(modes[m]));
		r.out[m] = fopen(path, "w");
		if (!r.out[m]) {
			perror(path);
			return 1;
		}
	}
	each_json(queries, run_query, &r);
	for (m = 0; m < NMODES; m++)
		fclose(r.out[m]);
	search_index_free(r.ix);
	return 0;
}

/* xorshift64* (Vigna 2016): a fixed seed keeps the benchmark reproducible. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static double rnd01(void)
{
	return (double)(rnd() >> 11) / 9007199254740992.0;
}

struct vocab {
	char  **w;
	size_t *cnt;
	size_t  n, cap;
};

static void vocab_add(struct vocab *v, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		if (strlen(v->w[i]) == len && !memcmp(v->w[i], s, len)) {
			v->cnt[i]++;
			return;
		}
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 4096;
		v->w = realloc(v->w, v->cap * sizeof(*v->w));
		v->cnt = realloc(v->cnt, v->cap * sizeof(*v->cnt));
		if (!v->w || !v->cnt)
			exit(1);
	}
	v->w[v->n] = strndup(s, len);
	v->cnt[v->n++] = 1;
}

static void vocab_doc(json_t *o, void *arg)
{
	const char *t = json_string_value(json_object_get(o, "text"));
	char w[64];
	size_t n = 0;

	if (!t)
		return;
	for (;; t++) {
		if ((*t | 0x20) >= 'a' && (*t | 0x20) <= 'z' && n < sizeof(w) - 1) {
			w[n++] = (char)(*t | 0x20);
		} else {
			if (n >= 2)
				vocab_add(arg, w, n);
			n = 0;
			if (!*t)
				break;
		}
	}
}

static struct vocab *sort_v;

static int by_count(const void *a, const void *b)
{
	size_t x = sort_v->cnt[*(const size_t *)a], y = sort_v->cnt[*(const size_t *)b];
	return (x < y) - (x > y);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static size_t zipf(const double *cdf, size_t n)
{
	double u = rnd01() * cdf[n - 1];
	size_t lo = 0, hi = n - 1, mid;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * 4;
}

#define VOCAB 50000

static int speed(size_t ndocs, size_t words, const char *vocab_src, const char *vec)
{
	static const char *syl[] = { "ka", "ro", "mi", "tu", "len", "dar", "vo", "shi", "pe",
				     "gan", "lo", "ri", "xu", "bel", "tor", "na", "qui", "sem" };
	struct vocab v = { 0 };
	char **w, buf[64], *text, key[32];
	size_t *order, i, j, m, nq = 1000, n, tl;
	double *cdf, t0, c0, dt, cdt, *lat, *clat;
	struct search_index *ix;
	struct search_hit *h;
	long rss0, rss1;

	each_json(vocab_src, vocab_doc, &v);
	order = malloc(v.n * sizeof(*order));
	for (i = 0; i < v.n; i++)
		order[i] = i;
	sort_v = &v;
	qsort(order, v.n, sizeof(*order), by_count);
	w = malloc(VOCAB * sizeof(*w));
	for (i = 0; i < VOCAB; i++) {
		if (i < v.n) {
			w[i] = v.w[order[i]];
			continue;
		}
		n = 0;
		for (j = 0, m = i; j < 4 && (j < 2 || m); j++, m /= 18)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s", syl[m % 18]);
		snprintf(buf + n, sizeof(buf) - n, "%zu", i % 7);
		w[i] = strdup(buf);
	}
	cdf = malloc(VOCAB * sizeof(*cdf));
	for (i = 0; i < VOCAB; i++)
		cdf[i] = (i ? cdf[i - 1] : 0) + 1.0 / (double)(i + 1);

	ix = open_index(vec);
	rss0 = rss_kb();
	text = malloc(words * 40 + 1);
	t0 = now();
	c0 = cpu_now();
	for (i = 0; i < ndocs; i++) {
		size_t nw = words / 2 + rnd() % (words + 1);
		tl = 0;
		for (j = 0; j < nw; j++) {
			const char *s = w[zipf(cdf, VOCAB)];
			size_t sl = strlen(s);
			memcpy(text + tl, s, sl);
			tl += sl;
			text[tl++] = j % 12 == 11 ? '.' : ' ';
		}
		snprintf(key, sizeof(key), "doc/%zu", i);
		if (search_index_put(ix, key, strlen(key), text, tl)) {
			fprintf(stderr, "search_eval: put failed\n");
			return 1;
		}
	}
	dt = now() - t0;
	cdt = cpu_now() - c0;
	rss1 = rss_kb();
	printf("vectors %s\n", search_vectors_kind(ix));
	printf("docs %zu\n", search_doc_count(ix));
	printf("index_docs_per_s %.0f\n", (double)ndocs / dt);
	printf("index_docs_per_cpu_s %.0f\n", (double)ndocs / cdt);
	printf("index_bytes_per_doc %.0f\n", (double)search_memory_bytes(ix) / (double)ndocs);
	printf("rss_bytes_per_doc %.0f\n", (double)(rss1 - rss0) * 1024.0 / (double)ndocs);

	/* Overwrites: a file rewritten in place re-indexes an existing key,
	 * which must first take its old postings out. */
	{
		size_t nov = 2000;
		t0 = now();
		c0 = cpu_now();
		for (i = 0; i < nov; i++) {
			size_t nw = words / 2 + rnd() % (words + 1);
			tl = 0;
			for (j = 0; j < nw; j++) {
				const char *s = w[zipf(cdf, VOCAB)];
				size_t sl = strlen(s);
				memcpy(text + tl, s, sl);
				tl += sl;
				text[tl++] = ' ';
			}
			snprintf(key, sizeof(key), "doc/%zu", (size_t)(rnd() % ndocs));
			if (search_index_put(ix, key, strlen(key), text, tl)) {
				fprintf(stderr, "search_eval: overwrite failed\n");
				return 1;
			}
		}
		printf("overwrite_docs_per_s %.0f\n", (double)nov / (now() - t0));
		printf("overwrite_docs_per_cpu_s %.0f\n", (double)nov / (cpu_now() - c0));
	}

	lat = malloc(nq * sizeof(*lat));
	clat = malloc(nq * sizeof(*clat));
	for (m = 0; m < NMODES; m++) {
		uint64_t saved = rng_state;
		size_t total = 0;
		rng_state = 12345;
		for (i = 0; i < nq; i++) {
			/* Two or three words, skipping the 20 most frequent (a
			 * query of "the" is not typical), Zipf below that. */
			size_t nw = 2 + rnd() % 2;
			tl = 0;
			if (modes[m] == SEARCH_PHRASE)
				nw = 2;
			for (j = 0; j < nw; j++) {
				size_t r = 20 + zipf(cdf, VOCAB - 20);
				tl += (size_t)snprintf(text + tl, 64, "%s ", w[r]);
			}
			t0 = now();
			c0 = cpu_now();
			if (search_query(ix, text, tl, modes[m], 10, &h, &n)) {
				fprintf(stderr, "search_eval: query failed\n");
				return 1;
			}
			lat[i] = (now() - t0) * 1e3;
			clat[i] = (cpu_now() - c0) * 1e3;
			total += n;
			search_hits_free(h, n);
		}
		rng_state = saved;
		qsort(lat, nq, sizeof(*lat), cmp_double);
		qsort(clat, nq, sizeof(*clat), cmp_double);
		printf("%s_p50_ms %.3f\n", search_mode_name(modes[m]), lat[nq / 2]);
		printf("%s_p99_ms %.3f\n", search_mode_name(modes[m]), lat[nq * 99 / 100]);
		printf("%s_cpu_p50_ms %.3f\n", search_mode_name(modes[m]), clat[nq / 2]);
		printf("%s_cpu_p99_ms %.3f\n", search_mode_name(modes[m]), clat[nq * 99 / 100]);
		printf("%s_mean_hits %.1f\n", search_mode_name(modes[m]), (double)total / nq);
	}
	search_index_free(ix);
	for (i = 0; i < VOCAB; i++)
		if (i >= v.n)
			free(w[i]);
	for (i = 0; i < v.n; i++)
		free(v.w[i]);
	free(v.w);
	free(v.cnt);
	free(w);
	free(order);
	free(cdf);
	free(text);
	free(lat);
	free(clat);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "quality"))
		return quality(argv[2], argv[3], argv[4], argc > 5 ? argv[5] : search_default_vectors_path());
	if (argc >= 5 && !strcmp(argv[1], "speed"))
		return speed(strtoul(argv[2], NULL, 10), strtoul(argv[3], NULL, 10), argv[4],
			     argc > 5 ? argv[5] : search_default_vectors_path());
	fprintf(stderr, "usage: search_eval quality DOCS QUERIES OUTDIR [VECTORS|-]\n"
			"       search_eval speed NDOCS WORDS VOCAB.jsonl [VECTORS|-]\n");
	return 2;
}
