/*
 * test_search.c — the search index through its public API (search.h), plus
 * the .kvv vector file loader (emb.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "search/emb.h"
#include "search/search.h"

static struct search_index *new_index(const char *vectors)
{
	struct search_config cfg = { .vectors_path = vectors };
	struct search_index *ix = NULL;

	assert_int_equal(search_index_new(&cfg, &ix), 0);
	return ix;
}

static void put(struct search_index *ix, const char *key, const char *text)
{
	assert_int_equal(search_index_put(ix, key, strlen(key), text, strlen(text)), 0);
}

static void del(struct search_index *ix, const char *key)
{
	assert_int_equal(search_index_del(ix, key, strlen(key)), 0);
}

struct res {
	struct search_hit *h;
	size_t n;
};

static struct res query(struct search_index *ix, const char *q, enum search_mode m)
{
	struct res r;
	assert_int_equal(search_query(ix, q, strlen(q), m, 0, &r.h, &r.n), 0);
	return r;
}

static double score_of(const struct res *r, const char *key)
{
	size_t i;
	for (i = 0; i < r->n; i++)
		if (!strcmp(r->h[i].key, key))
			return r->h[i].score;
	return -1;
}

/* "k1 k2 ..." of a result, for readable assertions. */
static const char *keys(const struct res *r)
{
	static char buf[4096];
	size_t i, n = 0;

	buf[0] = 0;
	for (i = 0; i < r->n; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " " : "", r->h[i].key);
	return buf;
}

static void done(struct res *r)
{
	search_hits_free(r->h, r->n);
}

/* The tiny corpus of the hand computations below. Stems: appl, banana,
 * cherri, date, elderberri, fig. N = 3, lengths 3, 2, 4, avgdl = 3. */
static struct search_index *tiny(void)
{
	struct search_index *ix = new_index(NULL);
	put(ix, "d1", "apple banana apple");
	put(ix, "d2", "banana cherry");
	put(ix, "d3", "cherry date elderberry fig");
	return ix;
}

/*
 * BM25 (k1 = 1.2, b = 0.75), idf = ln(1 + (N - df + 0.5) / (df + 0.5)):
 *  "apple":  df 1, idf = ln(1 + 2.5/1.5) = 0.980829;
 *            d1 tf 2 dl 3: 2 * 2.2 / (2 + 1.2) = 1.375 -> 1.348640
 *  "banana": df 2, idf = ln(1 + 1.5/2.5) = ln 1.6 = 0.470004;
 *            d1 tf 1 dl 3: 2.2 / 2.2 = 1 -> 0.470004
 *            d2 tf 1 dl 2: K = 1.2 * (0.25 + 0.75 * 2/3) = 0.9; 2.2 / 1.9 -> 0.544215
 */
static void bm25_scores_match_hand_computed_values(void **state)
{
	struct search_index *ix = tiny();
	struct res r;

	(void)state;
	r = query(ix, "apple", SEARCH_TEXT);
	assert_string_equal(keys(&r), "d1");
	assert_float_equal(r.h[0].score, 1.348640, 1e-5);
	done(&r);
	r = query(ix, "Bananas", SEARCH_TEXT);
	assert_string_equal(keys(&r), "d2 d1");
	assert_float_equal(score_of(&r, "d2"), 0.544215, 1e-5);
	assert_float_equal(score_of(&r, "d1"), 0.470004, 1e-5);
	done(&r);
	/* Sum over query terms: d1 = 1.348640 + 0.470004. */
	r = query(ix, "apple banana", SEARCH_TEXT);
	assert_string_equal(keys(&r), "d1 d2");
	assert_float_equal(score_of(&r, "d1"), 1.818644, 1e-5);
	done(&r);
	search_index_free(ix);
}

/*
 * TF-IDF lnc.ltc, idf = ln(1 + N/df). Query "banana cherry": both df 2, equal
 * weights, so each normalised query weight is 1/sqrt 2 = 0.707107.
 *  d1: norm sqrt((1 + ln 2)^2 + 1) = 1.966417; 0.707107 * 1 / 1.966417 = 0.359594
 *  d2: norm sqrt 2; 0.707107 * 2 / 1.414214 = 1
 *  d3: norm 2; 0.707107 / 2 = 0.353553
 */
static void tfidf_cosine_matches_hand_computed_values(void **state)
{
	struct search_index *ix = tiny();
	struct res r;

	(void)state;
	r = query(ix, "banana cherry", SEARCH_TFIDF);
	assert_string_equal(keys(&r), "d2 d1 d3");
	assert_float_equal(score_of(&r, "d2"), 1.0, 1e-5);
	assert_float_equal(score_of(&r, "d1"), 0.359594, 1e-5);
	assert_float_equal(score_of(&r, "d3"), 0.353553, 1e-5);
	done(&r);
	search_index_free(ix);
}

static void phrase_matches_word_sequence_not_substring(void **state)
{
	struct search_index *ix = new_index(NULL);
	struct res r;

	(void)state;
	put(ix, "p1", "The quick brown fox jumps");
	put(ix, "p2", "brown quick fox");                /* reversed */
	put(ix, "p3", "quickbrown foxes");               /* substring only */
	put(ix, "p4", "quick the brown");                /* a stop word between */
	put(ix, "p5", "so quick, brown and quick brown"); /* punctuation is a separator */
	r = query(ix, "\"quick brown\"", SEARCH_HYBRID);
	assert_string_equal(keys(&r), "p5 p1");
	done(&r);
	/* Unquoted text in phrase mode is a phrase too. */
	r = query(ix, "quick brown", SEARCH_PHRASE);
	assert_string_equal(keys(&r), "p5 p1");
	done(&r);
	/* Stop words keep their slot. */
	r = query(ix, "\"quick the brown\"", SEARCH_TEXT);
	assert_string_equal(keys(&r), "p4");
	done(&r);
	r = query(ix, "\"brown quick\"", SEARCH_TEXT);
	assert_string_equal(keys(&r), "p2");
	done(&r);
	/* The same words in text mode match every document holding them. */
	r = query(ix, "quick brown", SEARCH_TEXT);
	assert_int_equal(r.n, 4);
	done(&r);
	r = query(ix, "\"\"", SEARCH_HYBRID);
	assert_int_equal(r.n, 0);
	done(&r);
	search_index_free(ix);
}

static void overwrite_and_delete_leave_no_stale_postings(void **state)
{
	struct search_index *ix = new_index(NULL);
	struct res r;

	(void)state;
	put(ix, "a", "alpha beta");
	put(ix, "b", "beta gamma");
	r = query(ix, "alpha", SEARCH_TEXT);
	assert_string_equal(keys(&r), "a");
	done(&r);
	put(ix, "a", "delta epsilon");
	r = query(ix, "alpha", SEARCH_TEXT);
	assert_int_equal(r.n, 0);
	done(&r);
	r = query(ix, "beta", SEARCH_TEXT);
	assert_string_equal(keys(&r), "b");
	done(&r);
	r = query(ix, "delta", SEARCH_TFIDF);
	assert_string_equal(keys(&r), "a");
	done(&r);
	del(ix, "a");
	r = query(ix, "delta", SEARCH_TEXT);
	assert_int_equal(r.n, 0);
	done(&r);
	r = query(ix, "delta", SEARCH_SEMANTIC);
	assert_true(score_of(&r, "a") < 0);
	done(&r);
	assert_int_equal(search_doc_count(ix), 1);
	/* Deleting an absent key is not an error; binary text unindexes. */
	del(ix, "nope");
	assert_int_equal(search_index_put(ix, "b", 1, "gamma\xff", 6), 0);
	r = query(ix, "gamma", SEARCH_TEXT);
	assert_int_equal(r.n, 0);
	done(&r);
	assert_int_equal(search_doc_count(ix), 0);
	/* NUL bytes make a value binary, even when the rest is ASCII text. */
	assert_int_equal(search_index_put(ix, "c", 1, "nulword\0\0 nulword", 18), 0);
	r = query(ix, "nulword", SEARCH_TEXT);
	assert_int_equal(r.n, 0);
	done(&r);
	assert_int_equal(search_doc_count(ix), 0);
	search_index_free(ix);
}

/* ---- deferred updates ---- */

static int released[64];

static void count_release(void *ref)
{
	released[(int)(intptr_t)ref]++;
}

static void qput(struct search_index *ix, int ref, const char *key, const char *text)
{
	search_index_queue_put(ix, key, strlen(key), text, strlen(text), count_release,
			       (void *)(intptr_t)ref);
}

/* Queues n documents "doc0".. "doc<n-1>" with the text "loaded text" as a
 * start-up load; their keys live in a static pool, as the queue needs. */
static void qload(struct search_index *ix, int ref, int n)
{
	static char keys[20000][16];

	assert_true(n <= 20000);
	for (int i = 0; i < n; i++) {
		snprintf(keys[i], sizeof keys[i], "doc%d", i);
		search_index_queue_load(ix, keys[i], strlen(keys[i]), "loaded text", 11,
					count_release, (void *)(intptr_t)ref);
	}
}

static size_t hits_for(struct search_index *ix, const char *q)
{
	struct res r = query(ix, q, SEARCH_TEXT);
	size_t n = r.n;

	done(&r);
	return n;
}

/* Queued updates are applied in order by the next query (no worker here),
 * each released exactly once; free releases what is still queued. */
static void queued_updates_apply_in_order_before_a_query(void **state)
{
	struct search_index *ix = new_index(NULL);

	(void)state;
	memset(released, 0, sizeof released);
	qput(ix, 1, "k", "alpha words");
	qput(ix, 2, "k", "beta words");
	search_index_queue_del(ix, "k", 1, count_release, (void *)(intptr_t)3);
	qput(ix, 4, "k", "gamma words");
	qput(ix, 5, "other", "alpha again");
	assert_int_equal(search_index_pending(ix), 5);
	assert_int_equal(search_doc_count(ix), 0); /* nothing applied yet */
	assert_int_equal(hits_for(ix, "gamma"), 1);
	assert_int_equal(search_index_pending(ix), 0);
	assert_int_equal(hits_for(ix, "beta"), 0);
	assert_int_equal(hits_for(ix, "alpha"), 1); /* only "other" */
	assert_int_equal(search_doc_count(ix), 2);
	for (int i = 1; i <= 5; i++)
		assert_int_equal(released[i], 1);
	/* A delete queued last wins; an update still queued at free is
	 * released by it. */
	search_index_queue_del(ix, "other", 5, count_release, (void *)(intptr_t)6);
	search_index_flush(ix);
	assert_int_equal(hits_for(ix, "alpha"), 0);
	qput(ix, 7, "late", "never applied");
	search_index_free(ix);
	assert_int_equal(released[6], 1);
	assert_int_equal(released[7], 1);
}

/* The worker indexes a start-up load in the background; live updates
 * queued meanwhile land after it (the last write of a key wins). */
static void worker_indexes_a_load_in_the_background(void **state)
{
	struct search_index *ix = new_index(NULL);
	int i;

	(void)state;
	memset(released, 0, sizeof released);
	qload(ix, 8, 2000);
	assert_int_equal(search_index_start(ix), 0);
	qput(ix, 9, "doc7", "rewritten later");
	for (i = 0; i < 5000 && search_index_pending(ix); i++)
		usleep(1000);
	assert_int_equal(search_index_pending(ix), 0);
	assert_int_equal(search_doc_count(ix), 2000);
	assert_int_equal(released[8], 2000);
	assert_int_equal(released[9], 1);
	assert_int_equal(hits_for(ix, "rewritten"), 1);
	{
		struct search_hit *h = NULL;
		size_t nh = 0;

		assert_int_equal(search_query(ix, "loaded", 6, SEARCH_TEXT, 5000, &h, &nh), 0);
		assert_int_equal(nh, 1999); /* doc7 was rewritten after its load */
		search_hits_free(h, nh);
	}
	search_index_free(ix);
}

/* Closing the index while its worker is in the middle of a long load
 * releases every queued update exactly once, indexed or not. */
static void free_during_a_background_load_releases_everything(void **state)
{
	struct search_index *ix = new_index(NULL);

	(void)state;
	memset(released, 0, sizeof released);
	qload(ix, 11, 20000);
	assert_int_equal(search_index_start(ix), 0);
	qput(ix, 12, "live", "queued last");
	search_index_free(ix);
	assert_int_equal(released[11], 20000);
	assert_int_equal(released[12], 1);
}

/* The bound does not make a writer wait for a start-up load queued ahead of
 * it, and texts too large to be indexed count no bytes against it. */
static void the_bound_ignores_loads_and_unindexable_texts(void **state)
{
	struct search_index *ix = new_index(NULL);
	size_t big = SEARCH_TEXT_MAX + 1;
	char *text = malloc(big);
	int i;

	(void)state;
	assert_non_null(text);
	memset(text, 'a', big);
	memset(released, 0, sizeof released);
	qload(ix, 13, 3000);
	for (i = 0; i < SEARCH_QUEUE_MAX + 10; i++)
		qput(ix, 14, "live", "during the load");
	assert_int_equal(search_index_loading(ix), 3000);
	assert_int_equal(search_index_pending(ix), 3000 + SEARCH_QUEUE_MAX + 10);
	search_index_flush(ix);
	assert_int_equal(search_index_pending(ix), 0);
	for (i = 0; i < 3; i++)
		search_index_queue_put(ix, "huge", 4, text, big, count_release,
				       (void *)(intptr_t)15);
	assert_int_equal(search_index_pending(ix), 3);
	search_index_flush(ix);
	assert_int_equal(released[13], 3000);
	assert_int_equal(released[14], SEARCH_QUEUE_MAX + 10);
	assert_int_equal(released[15], 3);
	search_index_free(ix);
	free(text);
}

/* Live updates beyond the bound are applied by the thread that queues
 * them: without a worker, the queue never holds more than the bound. */
static void the_queue_is_bounded(void **state)
{
	struct search_index *ix = new_index(NULL);
	int i;

	(void)state;
	memset(released, 0, sizeof released);
	for (i = 0; i < SEARCH_QUEUE_MAX + 10; i++)
		qput(ix, 10, "same", (i & 1) ? "odd" : "even");
	assert_true(search_index_pending(ix) <= SEARCH_QUEUE_MAX);
	assert_true(search_index_pending(ix) < (size_t)SEARCH_QUEUE_MAX + 10);
	search_index_flush(ix);
	assert_int_equal(released[10], SEARCH_QUEUE_MAX + 10);
	assert_int_equal(hits_for(ix, "odd"), 1); /* the last one */
	assert_int_equal(hits_for(ix, "even"), 0);
	search_index_free(ix);
}

/* An empty value and a value without words (only punctuation and stop
 * words) are documents with no terms: indexing them succeeds, and a later
 * text replaces them. */
static void texts_without_words_are_indexed_as_empty_documents(void **state)
{
	struct search_index *ix = new_index(NULL);
	struct res r;

	(void)state;
	put(ix, "empty", "");
	put(ix, "punct", "  ... !? -- ");
	put(ix, "stop", "the and of");
	r = query(ix, "alpha", SEARCH_TEXT);
	assert_int_equal(r.n, 0);
	done(&r);
	put(ix, "empty", "alpha");
	r = query(ix, "alpha", SEARCH_HYBRID);
	assert_string_equal(keys(&r), "empty");
	done(&r);
	put(ix, "empty", "");
	r = query(ix, "alpha", SEARCH_TEXT);
	assert_int_equal(r.n, 0);
	done(&r);
	search_index_free(ix);
}

/* Random puts, overwrites and deletes against a model: after each round,
 * every word's BM25 hits are exactly the keys whose current text has it, and
 * a two-word phrase finds exactly the texts with that adjacent pair. This
 * exercises splicing entries into and out of the middle of posting lists;
 * with many keys and few words the lists span many blocks, which split and
 * empty. */
#define MKEYS_MAX 1500
#define MWORDS 12
static const char *const mwords[MWORDS] = {
	"red", "green", "blue", "cyan", "magenta", "yellow",
	"black", "white", "orange", "purple", "brown", "pink",
};

static void run_model(int nkeys, int nwords, int rounds, int ops, unsigned seed)
{
	static int text[MKEYS_MAX][8], len[MKEYS_MAX];
	struct search_index *ix = new_index(NULL);
	char key[16], buf[256];
	int round, op, k, i, w, w2, n;
	struct res r;

	memset(len, 0, sizeof(len));
	for (round = 0; round < rounds; round++) {
		for (op = 0; op < ops; op++) {
			k = (int)(rand_r(&seed) % (unsigned)nkeys);
			snprintf(key, sizeof(key), "k%04d", k);
			if (rand_r(&seed) % 4 == 0) {
				del(ix, key);
				len[k] = 0;
				continue;
			}
			len[k] = 1 + (int)(rand_r(&seed) % 8);
			n = 0;
			for (i = 0; i < len[k]; i++) {
				text[k][i] = (int)(rand_r(&seed) % (unsigned)nwords);
				n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s ", mwords[text[k][i]]);
			}
			put(ix, key, buf);
		}
		for (w = 0; w < nwords; w++) {
			int want = 0;
			assert_int_equal(search_query(ix, mwords[w], strlen(mwords[w]), SEARCH_TEXT,
						      MKEYS_MAX, &r.h, &r.n), 0);
			for (k = 0; k < nkeys; k++) {
				int has = 0;
				for (i = 0; i < len[k]; i++)
					has |= text[k][i] == w;
				snprintf(key, sizeof(key), "k%04d", k);
				want += has;
				if (has)
					assert_true(score_of(&r, key) > 0);
			}
			assert_int_equal((int)r.n, want);
			done(&r);
			w2 = (w + round) % nwords;
			snprintf(buf, sizeof(buf), "\"%s %s\"", mwords[w], mwords[w2]);
			assert_int_equal(search_query(ix, buf, strlen(buf), SEARCH_TEXT, MKEYS_MAX,
						      &r.h, &r.n), 0);
			want = 0;
			for (k = 0; k < nkeys; k++) {
				int has = 0;
				for (i = 0; i + 1 < len[k]; i++)
					has |= text[k][i] == w && text[k][i + 1] == w2;
				want += has;
			}
			assert_int_equal((int)r.n, want);
			done(&r);
		}
	}
	search_index_free(ix);
}

static void random_updates_agree_with_a_model(void **state)
{
	(void)state;
	run_model(60, MWORDS, 40, 50, 12345);
}

static void random_updates_on_long_posting_lists_agree_with_a_model(void **state)
{
	(void)state;
	run_model(MKEYS_MAX, 3, 12, 1500, 777);
}

/* Readers query in every mode while a writer rewrites documents: queries
 * must never see a torn update. Anchor documents, never touched by the
 * writer, must be found by every query for their word; every stemmer is
 * per thread, so concurrent tokenising must not garble results. */
struct conc {
	struct search_index *ix;
	int stop;
	int failures;
};

static void *conc_reader(void *arg)
{
	static const enum search_mode m[] = { SEARCH_HYBRID, SEARCH_TEXT, SEARCH_TFIDF,
					      SEARCH_SEMANTIC, SEARCH_PHRASE };
	struct conc *c = arg;
	struct search_hit *h;
	size_t n, i, anchors;
	int round = 0;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) || round < 50) {
		const char *q = round % 2 ? "anchorword" : "red green";
		if (search_query(c->ix, q, strlen(q), m[round % 5], 50, &h, &n)) {
			__atomic_fetch_add(&c->failures, 1, __ATOMIC_RELAXED);
			break;
		}
		anchors = 0;
		for (i = 0; i < n; i++) {
			if (!isfinite(h[i].score) || h[i].klen != strlen(h[i].key))
				__atomic_fetch_add(&c->failures, 1, __ATOMIC_RELAXED);
			anchors += !strncmp(h[i].key, "anchor", 6);
		}
		if (round % 2 && m[round % 5] != SEARCH_SEMANTIC && anchors != 5)
			__atomic_fetch_add(&c->failures, 1, __ATOMIC_RELAXED);
		search_hits_free(h, n);
		round++;
	}
	return NULL;
}

static void concurrent_queries_and_updates_are_consistent(void **state)
{
	struct conc c = { .ix = new_index(NULL) };
	pthread_t th[4];
	char key[16], text[256];
	unsigned seed = 7;
	int i, j, n;

	(void)state;
	for (i = 0; i < 5; i++) {
		snprintf(key, sizeof(key), "anchor%d", i);
		put(c.ix, key, "the anchorword lives here with red paint");
	}
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, conc_reader, &c), 0);
	for (i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "w%03u", rand_r(&seed) % 200);
		if (rand_r(&seed) % 5 == 0) {
			del(c.ix, key);
			continue;
		}
		n = 0;
		for (j = 0; j < 20; j++)
			n += snprintf(text + n, sizeof(text) - (size_t)n, "%s ", mwords[rand_r(&seed) % MWORDS]);
		put(c.ix, key, text);
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(c.failures, 0);
	search_index_free(c.ix);
}

/* The updates of one group (a store batch) reach queries together: while
 * the group is open a query neither sees them nor waits for them. */
static void a_group_is_seen_whole_or_not_at_all(void **state)
{
	struct search_index *ix = new_index(NULL);

	(void)state;
	memset(released, 0, sizeof released);
	search_index_group_begin(ix);
	qput(ix, 1, "old/name", "moveword");
	assert_int_equal(hits_for(ix, "moveword"), 0);
	search_index_group_end(ix);
	assert_int_equal(hits_for(ix, "moveword"), 1);
	/* A rename: the old name goes and the new one comes, in one group. */
	search_index_group_begin(ix);
	search_index_queue_del(ix, "old/name", 8, count_release, (void *)(intptr_t)2);
	assert_int_equal(hits_for(ix, "moveword"), 1);
	qput(ix, 3, "new/name", "moveword");
	assert_int_equal(hits_for(ix, "moveword"), 1);
	search_index_group_end(ix);
	{
		struct res r = query(ix, "moveword", SEARCH_TEXT);

		assert_string_equal(keys(&r), "new/name");
		done(&r);
	}
	search_index_free(ix);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(released[i], 1);
}

/* With the worker applying in the background, a file renamed back and forth
 * in groups is always found exactly once. */
struct flip {
	struct search_index *ix;
	int stop, bad, queries;
};

static void *flip_reader(void *arg)
{
	struct flip *f = arg;

	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		size_t n = hits_for(f->ix, "flipword");

		if (n != 1)
			__atomic_fetch_add(&f->bad, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&f->queries, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void groups_stay_whole_under_the_worker(void **state)
{
	struct flip f = { .ix = new_index(NULL) };
	static const char *names[2] = { "dir-a/f", "dir-b/f" };
	pthread_t th[2];

	(void)state;
	memset(released, 0, sizeof released);
	assert_int_equal(search_index_start(f.ix), 0);
	qput(f.ix, 0, names[0], "flipword here");
	search_index_flush(f.ix);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, flip_reader, &f), 0);
	for (int i = 0; i < 3000; i++) {
		const char *from = names[i % 2], *to = names[(i + 1) % 2];

		search_index_group_begin(f.ix);
		search_index_queue_del(f.ix, from, strlen(from), NULL, NULL);
		if (i % 7 == 0)
			sched_yield(); /* let the worker and the readers run mid-group */
		qput(f.ix, 0, to, "flipword here");
		search_index_group_end(f.ix);
	}
	__atomic_store_n(&f.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	printf("%d queries during 3000 renames, %d saw the file other than once\n", f.queries,
	       f.bad);
	assert_int_equal(f.bad, 0);
	assert_true(f.queries > 0);
	search_index_free(f.ix);
}

#define BIG_GROUP 4000

/* A group larger than one apply chunk (APPLY_BATCH, 256) is prepared chunk
 * by chunk, bounded in memory, and still seen whole. */
static size_t all_hits(struct search_index *ix, const char *q)
{
	struct search_hit *h;
	size_t n;

	if (search_query(ix, q, strlen(q), SEARCH_TEXT, 5000, &h, &n))
		return SIZE_MAX; /* no cmocka assert here: readers run on other threads */
	search_hits_free(h, n);
	return n;
}

static void *big_group_reader(void *arg)
{
	struct flip *f = arg;

	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		size_t n = all_hits(f->ix, "bigword");

		if (n != 0 && n != BIG_GROUP)
			__atomic_fetch_add(&f->bad, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&f->queries, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void a_large_group_is_seen_whole(void **state)
{
	static char keys[BIG_GROUP][16];
	struct flip f = { .ix = new_index(NULL) };
	pthread_t th[2];

	(void)state;
	assert_int_equal(search_index_start(f.ix), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, big_group_reader, &f), 0);
	for (int round = 0; round < 10; round++) {
		search_index_group_begin(f.ix);
		for (int i = 0; i < BIG_GROUP; i++) {
			snprintf(keys[i], sizeof keys[i], "big%d", i);
			if (round % 2 == 0)
				search_index_queue_put(f.ix, keys[i], strlen(keys[i]), "bigword text", 12,
						       NULL, NULL);
			else
				search_index_queue_del(f.ix, keys[i], strlen(keys[i]), NULL, NULL);
		}
		search_index_group_end(f.ix);
		assert_int_equal(all_hits(f.ix, "bigword"), round % 2 == 0 ? BIG_GROUP : 0);
	}
	__atomic_store_n(&f.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	printf("%d queries during 10 groups of %d updates\n", f.queries, BIG_GROUP);
	assert_int_equal(f.bad, 0);
	search_index_free(f.ix);
}

static void hybrid_scores_do_not_depend_on_the_limit(void **state)
{
	struct search_index *ix = new_index(NULL);
	struct search_hit *a, *b;
	size_t na, nb, i;
	unsigned seed = 99;
	char key[16], text[256];
	int k, j, n;

	(void)state;
	for (k = 0; k < 300; k++) {
		n = 0;
		for (j = 0; j < 10; j++)
			n += snprintf(text + n, sizeof(text) - (size_t)n, "%s ", mwords[rand_r(&seed) % MWORDS]);
		snprintf(key, sizeof(key), "h%03d", k);
		put(ix, key, text);
	}
	assert_int_equal(search_query(ix, "purple pink", 11, SEARCH_HYBRID, 5, &a, &na), 0);
	assert_int_equal(search_query(ix, "purple pink", 11, SEARCH_HYBRID, 300, &b, &nb), 0);
	assert_int_equal(na, 5);
	assert_true(nb > 5);
	for (i = 0; i < na; i++) {
		assert_string_equal(a[i].key, b[i].key);
		assert_float_equal(a[i].score, b[i].score, 1e-6);
	}
	for (i = 0; i < nb; i++) {
		assert_true(b[i].score > 0 && b[i].score <= 1.0);
		if (i)
			assert_true(b[i].score <= b[i - 1].score);
	}
	search_hits_free(a, na);
	search_hits_free(b, nb);
	search_index_free(ix);
}

static void limit_and_tie_order_are_respected(void **state)
{
	struct search_index *ix = new_index(NULL);
	struct search_hit *h;
	size_t n;
	char key[16];
	int i;

	(void)state;
	for (i = 0; i < 30; i++) {
		snprintf(key, sizeof(key), "k%02d", 29 - i);
		put(ix, key, "same words here");
	}
	assert_int_equal(search_query(ix, "words", 5, SEARCH_TEXT, 7, &h, &n), 0);
	assert_int_equal(n, 7);
	/* Equal scores come out by key. */
	assert_string_equal(h[0].key, "k00");
	assert_string_equal(h[6].key, "k06");
	search_hits_free(h, n);
	search_index_free(ix);
}

static void mode_names_round_trip(void **state)
{
	enum search_mode m;
	const char *names[] = { "hybrid", "text", "tfidf", "semantic", "phrase" };
	size_t i;

	(void)state;
	for (i = 0; i < 5; i++) {
		assert_int_equal(search_mode_parse(names[i], &m), 0);
		assert_string_equal(search_mode_name(m), names[i]);
	}
	assert_int_equal(search_mode_parse("bm25", &m), -EINVAL);
}

static void ngram_vectors_match_similar_spellings(void **state)
{
	struct search_index *ix = new_index("/nonexistent/vectors.kvv");
	struct res r;

	(void)state;
	assert_string_equal(search_vectors_kind(ix), "char-ngram");
	put(ix, "a", "international organisations and their members");
	put(ix, "b", "baking bread with sourdough starter");
	put(ix, "c", "the river flows to the sea");
	/* A misspelling shares most trigrams with the indexed words. */
	r = query(ix, "internasional organizations", SEARCH_SEMANTIC);
	assert_true(r.n >= 1);
	assert_string_equal(r.h[0].key, "a");
	done(&r);
	r = query(ix, "internasional organizations", SEARCH_HYBRID);
	assert_true(r.n >= 1);
	assert_string_equal(r.h[0].key, "a");
	done(&r);
	search_index_free(ix);
}

/* The default vector file, or NULL when scripts/get-vectors has not run. */
static const char *vector_file(void)
{
	const char *p = search_default_vectors_path();
	return access(p, R_OK) == 0 ? p : NULL;
}

static void coding_finds_python_programming_with_glove(void **state)
{
	const char *vf = vector_file();
	struct search_index *ix;
	struct res r;

	(void)state;
	if (!vf) {
		fprintf(stderr, "no vector file (run scripts/get-vectors): skipped\n");
		skip();
	}
	ix = new_index(vf);
	assert_string_equal(search_vectors_kind(ix), "glove-100d");
	put(ix, "notes/python.txt", "Python is a popular programming language for writing scripts, "
				    "web servers and data analysis software.");
	put(ix, "notes/cake.txt", "Mix flour, butter and sugar, then bake the cake for forty minutes.");
	put(ix, "notes/football.txt", "The football team won the championship match last night.");
	put(ix, "notes/garden.txt", "Water the roses in the morning and prune the hedges in autumn.");
	r = query(ix, "coding", SEARCH_TEXT);
	assert_int_equal(r.n, 0);
	done(&r);
	r = query(ix, "coding", SEARCH_HYBRID);
	assert_true(r.n >= 1);
	assert_string_equal(r.h[0].key, "notes/python.txt");
	done(&r);
	r = query(ix, "coding", SEARCH_SEMANTIC);
	assert_true(r.n >= 1);
	assert_string_equal(r.h[0].key, "notes/python.txt");
	done(&r);
	search_index_free(ix);
}

/* Writes a small valid .kvv file (format in emb.h) with three words. */
static void write_kvv(const char *path)
{
	static const char *words[] = { "apple", "code", "zebra" };
	uint8_t buf[4096];
	uint32_t dim = 4, n = 3, rec = 12, off = 0, u, i, j, crc;
	uint64_t str_off = 128, str_size = 14, tab_off = 144, rec_off = 160, size;
	int fd;

	memset(buf, 0, sizeof(buf));
	size = rec_off + (uint64_t)n * rec;
	memcpy(buf, "KVFSVEC", 8);
	u = 1;
	memcpy(buf + 8, &u, 4);
	memcpy(buf + 12, &dim, 4);
	memcpy(buf + 16, &n, 4);
	memcpy(buf + 20, &rec, 4);
	memcpy(buf + 24, &str_off, 8);
	memcpy(buf + 32, &str_size, 8);
	memcpy(buf + 40, &tab_off, 8);
	memcpy(buf + 48, &rec_off, 8);
	memcpy(buf + 56, &size, 8);
	for (i = 0; i < n; i++) {
		float scale = 0.5f;
		memcpy(buf + tab_off + 4 * i, &off, 4);
		memcpy(buf + str_off + off, words[i], strlen(words[i]));
		off += (uint32_t)strlen(words[i]);
		memcpy(buf + rec_off + i * rec, &scale, 4);
		u = 10 * (i + 1);
		memcpy(buf + rec_off + i * rec + 4, &u, 4);
		for (j = 0; j < dim; j++)
			buf[rec_off + i * rec + 8 + j] = (uint8_t)(int8_t)(j == i ? 100 : -2);
	}
	memcpy(buf + tab_off + 4 * n, &off, 4);
	crc = emb_crc32(0, buf + 128, size - 128);
	memcpy(buf + 64, &crc, 4);
	crc = emb_crc32(0, buf, 68);
	memcpy(buf + 68, &crc, 4);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, size), (ssize_t)size);
	close(fd);
}

static void patch(const char *path, off_t at, uint8_t x)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= x;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

static void crc32_matches_the_standard_check_value(void **state)
{
	(void)state;
	/* The CRC-32/ISO-HDLC check value of "123456789". */
	assert_int_equal(emb_crc32(0, "123456789", 9), 0xCBF43926u);
	assert_int_equal(emb_crc32(emb_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

static void valid_vector_file_loads_and_looks_words_up(void **state)
{
	char path[] = "/tmp/kvfs-test-kvv-XXXXXX";
	char err[256];
	struct emb *e;
	float v[4];
	uint32_t rank;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_kvv(path);
	assert_int_equal(emb_open(path, &e, err, sizeof(err)), 0);
	assert_string_equal(emb_kind(e), "glove-100d");
	assert_int_equal(emb_lookup(e, "code", 4, v, &rank), 0);
	assert_int_equal(rank, 20);
	assert_float_equal(v[1], 50.0, 1e-6);
	assert_float_equal(v[0], -1.0, 1e-6);
	assert_int_equal(emb_lookup(e, "zebra", 5, v, &rank), 0);
	assert_int_equal(rank, 30);
	assert_int_equal(emb_lookup(e, "apple", 5, v, &rank), 0);
	assert_int_equal(emb_lookup(e, "cod", 3, v, &rank), -ENOENT);
	assert_int_equal(emb_lookup(e, "codes", 5, v, &rank), -ENOENT);
	emb_close(e);
	unlink(path);
}

static void corrupt_vector_files_are_refused(void **state)
{
	char path[] = "/tmp/kvfs-test-kvv-XXXXXX";
	struct search_config cfg = { .vectors_path = path };
	struct search_index *ix = NULL;
	char err[256];
	struct emb *e = NULL;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	/* A flipped bit in a vector component: body checksum. */
	write_kvv(path);
	patch(path, 170, 0x01);
	assert_int_equal(emb_open(path, &e, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "checksum"));
	assert_int_equal(search_index_new(&cfg, &ix), -EBADMSG);
	assert_null(ix);
	/* A flipped bit in the header. */
	write_kvv(path);
	patch(path, 12, 0x01);
	assert_int_equal(emb_open(path, &e, err, sizeof(err)), -EBADMSG);
	/* Bad magic. */
	write_kvv(path);
	patch(path, 0, 0x20);
	assert_int_equal(emb_open(path, &e, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "magic"));
	/* Truncated. */
	write_kvv(path);
	assert_int_equal(truncate(path, 150), 0);
	assert_int_equal(emb_open(path, &e, err, sizeof(err)), -EBADMSG);
	assert_int_equal(truncate(path, 20), 0);
	assert_int_equal(emb_open(path, &e, err, sizeof(err)), -EBADMSG);
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(emb_open(path, &e, err, sizeof(err)), -EBADMSG);
	unlink(path);
	/* A missing file is not an error: n-grams. */
	assert_int_equal(search_index_new(&cfg, &ix), 0);
	assert_string_equal(search_vectors_kind(ix), "char-ngram");
	search_index_free(ix);
}

static void default_vectors_path_honours_the_environment(void **state)
{
	(void)state;
	setenv("KVFS_VECTORS", "/some/where.kvv", 1);
	assert_string_equal(search_default_vectors_path(), "/some/where.kvv");
	unsetenv("KVFS_VECTORS");
	assert_non_null(strstr(search_default_vectors_path(), "vectors/glove-100d.kvv"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bm25_scores_match_hand_computed_values),
		cmocka_unit_test(tfidf_cosine_matches_hand_computed_values),
		cmocka_unit_test(phrase_matches_word_sequence_not_substring),
		cmocka_unit_test(overwrite_and_delete_leave_no_stale_postings),
		cmocka_unit_test(texts_without_words_are_indexed_as_empty_documents),
		cmocka_unit_test(random_updates_agree_with_a_model),
		cmocka_unit_test(random_updates_on_long_posting_lists_agree_with_a_model),
		cmocka_unit_test(concurrent_queries_and_updates_are_consistent),
		cmocka_unit_test(a_group_is_seen_whole_or_not_at_all),
		cmocka_unit_test(groups_stay_whole_under_the_worker),
		cmocka_unit_test(a_large_group_is_seen_whole),
		cmocka_unit_test(hybrid_scores_do_not_depend_on_the_limit),
		cmocka_unit_test(limit_and_tie_order_are_respected),
		cmocka_unit_test(mode_names_round_trip),
		cmocka_unit_test(ngram_vectors_match_similar_spellings),
		cmocka_unit_test(coding_finds_python_programming_with_glove),
		cmocka_unit_test(crc32_matches_the_standard_check_value),
		cmocka_unit_test(valid_vector_file_loads_and_looks_words_up),
		cmocka_unit_test(corrupt_vector_files_are_refused),
		cmocka_unit_test(default_vectors_path_honours_the_environment),
		cmocka_unit_test(queued_updates_apply_in_order_before_a_query),
		cmocka_unit_test(worker_indexes_a_load_in_the_background),
		cmocka_unit_test(free_during_a_background_load_releases_everything),
		cmocka_unit_test(the_bound_ignores_loads_and_unindexable_texts),
		cmocka_unit_test(the_queue_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
