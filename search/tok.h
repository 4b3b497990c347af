/*
 * tok.h — the tokenizer shared by indexing and querying.
 *
 * Text is UTF-8. A token is a maximal run of letters and digits; everything
 * else separates tokens. Each token is case-folded (ASCII, Latin-1, Latin
 * Extended-A with diacritics removed so "Café" and "cafe" meet; Greek and
 * Cyrillic lower-cased), checked against an English stop-word list and
 * stemmed with Snowball's English stemmer (libstemmer).
 *
 * Positions count every token, stop words included, so a phrase query
 * "a b" cannot match "a x b" even when x is a stop word dropped from the
 * index.
 */
#ifndef KVFS_SEARCH_TOK_H
#define KVFS_SEARCH_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Folded tokens longer than this (bytes) are dropped; they still take a position. */
#define TOK_MAX 64

struct tok {
	const char *word;  /* folded, not stemmed; valid during the callback only */
	size_t      wlen;
	const char *stem;  /* Snowball English stem of word; same lifetime */
	size_t      slen;
	uint32_t    pos;   /* 0-based token position, stop words counted */
};

/* Called once per indexable (non-stop-word) token. A non-zero return stops
 * the run and is returned by tok_run. */
typedef int (*tok_fn)(void *arg, const struct tok *t);

/* Tokenizes text. Invalid UTF-8 sequences act as separators (callers that
 * must refuse invalid text check tok_utf8_valid first). Returns 0, the
 * callback's non-zero value, or -ENOMEM when no stemmer can be created. */
int  tok_run(const char *text, size_t len, tok_fn fn, void *arg);

/* True when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or
 * code points above U+10FFFF). */
bool tok_utf8_valid(const char *s, size_t len);

/* True when the folded word is on the stop-word list. */
bool tok_is_stopword(const char *w, size_t len);

#endif
