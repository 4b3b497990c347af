/*
 * search.h — the public face of kvfs's search engine: an incrementally
 * updated positional inverted index with BM25, TF-IDF cosine, phrase and
 * semantic (word-vector) ranking, and a hybrid of BM25 and semantic scores.
 *
 * Thread-safety: every function is thread-safe. Updates (put/del) are
 * serialised against queries by an internal reader-writer lock; queries run
 * concurrently with each other.
 *
 * Text handling (search/tok.h): UTF-8, split on anything but letters and
 * digits, case-folded (Latin diacritics removed), English stop words
 * dropped, Snowball English stems. A phrase matches the same stems at the
 * same relative positions; stop words keep their slot but match any stop
 * word ("state of the art" also matches "state of an art"). Scores: BM25 as
 * is; TF-IDF and semantic are cosines in [0, 1] (semantic may be below 0
 * but only positive scores are returned); hybrid is in [0, 1]; phrase is
 * BM25 of the phrase as one term. The index lives in memory only: the owner
 * rebuilds it from the store at start-up (queued, see below: the worker
 * indexes in the background and the first queries wait for it).
 */
#ifndef KVFS_SEARCH_H
#define KVFS_SEARCH_H

#include <stddef.h>
#include <stdint.h>

/* Values larger than this, not valid UTF-8 or holding a NUL byte are stored
 * but not indexed. */
#define SEARCH_TEXT_MAX (4u * 1024 * 1024)

struct search_index;

struct search_config {
	const char *vectors_path; /* word-vector file (scripts/get-vectors); NULL or missing
	                             file: hashed character n-gram vectors */
};

enum search_mode {
	SEARCH_HYBRID = 0,   /* BM25 fused with semantic similarity (default) */
	SEARCH_TEXT,         /* BM25, k1 = 1.2, b = 0.75 */
	SEARCH_TFIDF,        /* classic TF-IDF cosine */
	SEARCH_SEMANTIC,     /* cosine of mean word vectors */
	SEARCH_PHRASE,       /* exact word sequence, from positions */
};

struct search_hit {
	char  *key;          /* malloc'd, NUL-terminated */
	size_t klen;
	double score;        /* higher is better */
};

/* Creates an empty index. A vectors_path that exists but is corrupt is an
 * error (-EBADMSG, with a log line); one that does not exist selects n-grams. */
int  search_index_new(const struct search_config *cfg, struct search_index **out);
void search_index_free(struct search_index *ix);

/* Indexes `text` as the document `key`, replacing any earlier version.
 * Text that is not valid UTF-8, holds a NUL byte or is larger than
 * SEARCH_TEXT_MAX removes the key from the index instead (binary values are
 * not indexed). Returns 0 or -ENOMEM. */
int  search_index_put(struct search_index *ix, const char *key, size_t klen,
		      const char *text, size_t len);
int  search_index_del(struct search_index *ix, const char *key, size_t klen);

/*
 * Deferred updates. The same two updates can be queued instead: they are
 * applied in queue order by the index's worker thread (search_index_start),
 * and every query (search_query, search_index_flush) first waits until
 * whatever was queued before it began has been applied (without a worker,
 * it applies them itself). A query therefore sees every update queued
 * before it, while the thread that queues (a store committing a write) does
 * not wait for tokenising and vectorising. key and text must
 * stay valid until the update has been applied; release(ref) is called then,
 * exactly once, from whichever thread applied it (also when the update
 * failed, or was dropped by search_index_free). When updates pile up beyond
 * a bound (SEARCH_QUEUE_MAX updates or SEARCH_QUEUE_BYTES of indexable
 * text), the queuing thread waits until the queue is down to half of it
 * (not while a start-up load is still queued); when there is no memory for
 * a queue entry, it applies the backlog and its own update at once. Do not mix queued and
 * direct updates (search_index_put/del) of one index: their order is not
 * kept. Index errors (no memory while indexing) are logged, not returned.
 */
#define SEARCH_QUEUE_MAX   1024
#define SEARCH_QUEUE_BYTES (8u << 20)
typedef void (*search_release_fn)(void *ref);
void search_index_queue_put(struct search_index *ix, const char *key, size_t klen,
			    const char *text, size_t len, search_release_fn release, void *ref);
void search_index_queue_del(struct search_index *ix, const char *key, size_t klen,
			    search_release_fn release, void *ref);
/* Groups: the updates queued by one thread between search_index_group_begin()
 * and search_index_group_end() (the changes of one store batch) reach
 * queries together: a query sees all of them or none (an atomic rename of a
 * directory is never half visible in search results). While a group is
 * open, queries do not wait for it; one group is open at a time, and
 * _load updates queued meanwhile join it. */
void search_index_group_begin(struct search_index *ix);
void search_index_group_end(struct search_index *ix);
/* Queues without the bound: for loading a whole store at start-up (the
 * worker then works through it in the background). */
void search_index_queue_load(struct search_index *ix, const char *key, size_t klen,
			     const char *text, size_t len, search_release_fn release, void *ref);
/* Starts the worker thread (search_index_free stops it), before other threads
 * use the index. Returns 0 or -errno. */
int  search_index_start(struct search_index *ix);
/* The same, with the worker idle for its first delay_ms (tests use it to see
 * the index while a start-up load is still queued). */
int  search_index_start_after(struct search_index *ix, unsigned delay_ms);
/* Applies every update queued before the call (outside an open group). */
void search_index_flush(struct search_index *ix);
/* Updates queued and not yet applied; of them, queued by _load. */
size_t search_index_pending(struct search_index *ix);
size_t search_index_loading(struct search_index *ix);
/* Updates that queries must see (queued, outside an open group): a result
 * computed while this still has the value it had before the query is still
 * the current one (fs/sview.c caches by it). */
uint64_t search_index_generation(struct search_index *ix);

/* Runs a query; *hits is a malloc'd array of *nhits results, best first
 * (release with search_hits_free). A query wrapped in double quotes is a
 * phrase query whatever `mode` says. limit 0 = a default of 100. */
int  search_query(struct search_index *ix, const char *q, size_t qlen,
		  enum search_mode mode, size_t limit,
		  struct search_hit **hits, size_t *nhits);
void search_hits_free(struct search_hit *hits, size_t n);

/* "hybrid", "text", "tfidf", "semantic", "phrase" <-> enum. Parse returns 0 or -EINVAL. */
int         search_mode_parse(const char *name, enum search_mode *out);
const char *search_mode_name(enum search_mode m);

/* Which word vectors the index uses, e.g. "glove-100d" or "char-ngram". */
const char *search_vectors_kind(const struct search_index *ix);
size_t      search_doc_count(struct search_index *ix); /* indexed so far (not queued) */

/* Added by the search library (new functions, no signature changed): */

/* The vector file kvfs loads: $KVFS_VECTORS when set and non-empty, else
 * <source root>/vectors/glove-100d.kvv (written by scripts/get-vectors). */
const char *search_default_vectors_path(void);
/* Heap bytes held by the index structures (postings, documents, vectors). */
size_t      search_memory_bytes(struct search_index *ix);

#endif
