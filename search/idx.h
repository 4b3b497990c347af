/*
 * idx.h — the positional inverted index: terms, postings, documents.
 *
 * Not thread-safe: search.c serialises updates against queries with a
 * reader-writer lock. Pointers returned by the accessors stay valid until the
 * next idx_put or idx_del.
 *
 * Documents get small dense ids (freed ids are reused) so per-document
 * arrays (lengths, semantic vectors, query accumulators) stay compact.
 * Each term's postings are a sorted array of blocks of at most 128 entries
 * (first and last doc id kept per block), each block one byte buffer of
 * entries sorted by document id:
 *
 *   varint(doc - previous doc, or doc for the block's first entry)
 *   varint(tf)
 *   tf x varint(position - previous position, first from 0)
 *
 * (varint: LEB128, 7 bits per byte, low groups first.) A put appends when the
 * id is the largest in the list and otherwise splices the entry into the
 * block found by binary search (splitting it when full); a delete splices it
 * out and re-encodes the following delta, so no stale posting survives an
 * overwrite or a delete. Each document keeps its sorted term ids (delta
 * varints) to find the lists to edit.
 */
#ifndef KVFS_SEARCH_IDX_H
#define KVFS_SEARCH_IDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDX_NONE UINT32_MAX

struct idx;
struct blk;

/* One distinct term of a document being put. */
struct idx_tin {
	const char     *stem;
	size_t          slen;
	uint32_t        tf;
	const uint32_t *pos;  /* tf positions, ascending */
};

/* vec_bytes: size of each document's semantic vector; bucket_df != 0 keeps
 * per-byte document frequencies of those vectors (n-gram counts). */
int  idx_new(size_t vec_bytes, int bucket_df, struct idx **out);
void idx_free(struct idx *ix);

/* Replaces (or adds) document key with the given distinct terms (sorted or
 * not), token count len and semantic vector vec (vec_bytes, may be NULL for
 * zeros). Returns 0 or -ENOMEM; on failure the key is absent from the index. */
int  idx_put(struct idx *ix, const char *key, size_t klen,
	     const struct idx_tin *terms, size_t nterms, uint32_t len, const uint8_t *vec);
/* Removes key; 0, or -ENOENT when it was not indexed. */
int  idx_del(struct idx *ix, const char *key, size_t klen);

uint32_t idx_term_find(const struct idx *ix, const char *stem, size_t slen);
uint32_t idx_term_df(const struct idx *ix, uint32_t term);

/* Postings cursor. */
struct idx_cur {
	const struct blk *blk, *blk_end;   /* next block to read, end */
	const uint8_t *p, *end;
	uint32_t       doc, tf;
	const uint8_t *pos;   /* tf position varints of the current entry */
	bool           started;
};
void idx_cur_init(const struct idx *ix, uint32_t term, struct idx_cur *c);
/* Moves to the next entry; false at the end. */
bool idx_cur_next(struct idx_cur *c);
/* Decodes the current entry's positions into out[tf]. */
void idx_cur_positions(const struct idx_cur *c, uint32_t *out);

size_t   idx_ndocs(const struct idx *ix);      /* live documents */
uint32_t idx_doc_cap(const struct idx *ix);    /* ids are < this */
double   idx_avgdl(const struct idx *ix);
uint32_t idx_doc_len(const struct idx *ix, uint32_t doc);
const uint32_t *idx_doc_lens(const struct idx *ix);   /* idx_doc_cap entries */
/* lnc document norm for TF-IDF: sqrt(sum over terms (1 + ln tf)^2). */
float    idx_doc_norm(const struct idx *ix, uint32_t doc);
const char *idx_doc_key(const struct idx *ix, uint32_t doc, size_t *klen);
const uint8_t *idx_live(const struct idx *ix);   /* idx_doc_cap bytes, 1 = live */
const uint8_t *idx_vecs(const struct idx *ix);   /* idx_doc_cap x vec_bytes */
const uint32_t *idx_bucket_df(const struct idx *ix);
/* Bytes of heap held by the index (approximate: live allocations' sizes). */
size_t   idx_mem_bytes(const struct idx *ix);

#endif
