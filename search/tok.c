/*
 * tok.c — UTF-8 tokenizer: split, case-fold, stop words, Snowball stemming.
 */
#include "search/tok.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libstemmer.h>

/*
 * English stop words: the Snowball list (snowball.tartarus.org,
 * algorithms/english/stop.txt) without its contractions, which the splitter
 * never produces, plus the fragments those contractions split into ("don",
 * "t", "ll", ...).
 */
static const char *const stopwords[] = {
	"a", "about", "above", "after", "again", "against", "all", "am", "an",
	"and", "any", "are", "as", "at", "be", "because", "been", "before",
	"being", "below", "between", "both", "but", "by", "can", "cannot",
	"could", "d", "did", "do", "does", "doing", "don", "down", "during",
	"each", "few", "for", "from", "further", "had", "has", "have", "having",
	"he", "her", "here", "hers", "herself", "him", "himself", "his", "how",
	"i", "if", "in", "into", "is", "it", "its", "itself", "just", "ll", "m",
	"me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of",
	"off", "on", "once", "only", "or", "other", "ought", "our", "ours",
	"ourselves", "out", "over", "own", "re", "s", "same", "she", "should",
	"so", "some", "such", "t", "than", "that", "the", "their", "theirs",
	"them", "themselves", "then", "there", "these", "they", "this", "those",
	"through", "to", "too", "under", "until", "up", "ve", "very", "was",
	"we", "were", "what", "when", "where", "which", "while", "who", "whom",
	"why", "will", "with", "would", "you", "your", "yours", "yourself",
	"yourselves",
};

/* The stop words in an open-addressing hash set built once: every token of
 * every document is checked, and a binary search with string compares showed
 * up in indexing profiles. */
#define STOP_SLOTS 512
_Static_assert(sizeof(stopwords) / sizeof(stopwords[0]) < 255, "stop_slot holds index + 1 in a byte");
static uint8_t stop_slot[STOP_SLOTS];   /* index + 1 into stopwords, 0 = empty */
static uint8_t stop_len[sizeof(stopwords) / sizeof(stopwords[0])];
static pthread_once_t stop_once = PTHREAD_ONCE_INIT;

static uint32_t stop_hash(const char *w, size_t len)
{
	uint32_t h = 2166136261u;   /* FNV-1a */
	while (len--) {
		h ^= (uint8_t)*w++;
		h *= 16777619u;
	}
	return h & (STOP_SLOTS - 1);
}

static void stop_init(void)
{
	size_t i;
	uint32_t h;

	for (i = 0; i < sizeof(stopwords) / sizeof(stopwords[0]); i++) {
		stop_len[i] = (uint8_t)strlen(stopwords[i]);
		for (h = stop_hash(stopwords[i], stop_len[i]); stop_slot[h]; h = (h + 1) & (STOP_SLOTS - 1))
			;
		stop_slot[h] = (uint8_t)(i + 1);
	}
}

bool tok_is_stopword(const char *w, size_t len)
{
	uint32_t h;
	size_t i;

	pthread_once(&stop_once, stop_init);
	if (len > 10)   /* "yourselves" and "themselves" are the longest */
		return false;
	for (h = stop_hash(w, len); stop_slot[h]; h = (h + 1) & (STOP_SLOTS - 1)) {
		i = stop_slot[h] - 1u;
		if (stop_len[i] == len && !memcmp(stopwords[i], w, len))
			return true;
	}
	return false;
}

/*
 * One Snowball stemmer per thread: sb_stemmer_stem returns a buffer owned by
 * the stemmer and overwritten by the next call, so a stemmer cannot be shared
 * by concurrent queries. The key's destructor frees it at thread exit.
 */
static pthread_key_t stem_key;
static pthread_once_t stem_once = PTHREAD_ONCE_INIT;
static int stem_key_err;

static void stem_free(void *p)
{
	sb_stemmer_delete(p);
}

static void stem_init(void)
{
	stem_key_err = pthread_key_create(&stem_key, stem_free);
}

static struct sb_stemmer *stemmer_get(void)
{
	struct sb_stemmer *st;

	pthread_once(&stem_once, stem_init);
	if (stem_key_err)
		return NULL;
	st = pthread_getspecific(stem_key);
	if (st)
		return st;
	st = sb_stemmer_new("english", NULL);
	if (!st)
		return NULL;
	if (pthread_setspecific(stem_key, st)) {
		sb_stemmer_delete(st);
		return NULL;
	}
	return st;
}

/* Decodes one code point; returns its length, or 0 when s does not start a
 * well-formed sequence (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c = s[0];
	size_t len, i;

	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		c &= 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		c &= 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		c &= 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
	    (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return len;
}

bool tok_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		n = utf8_decode(p + i, len - i, &cp);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

enum cls { SEP, WORD, MARK };

/* Letters and digits are word characters; combining marks (U+0300-036F)
 * are dropped without splitting so decomposed "e" + U+0301 folds like "é".
 * Scripts beyond Cyrillic count as letters except the punctuation, symbol,
 * private-use and emoji blocks. */
static enum cls classify(uint32_t c)
{
	if (c < 0x80)
		return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') ? WORD : SEP;
	if (c < 0xC0)
		return c == 0xAA || c == 0xB5 || c == 0xBA ? WORD : SEP;
	if (c == 0xD7 || c == 0xF7)
		return SEP;
	if (c < 0x2B0)
		return WORD;
	if (c < 0x300)
		return SEP;
	if (c < 0x370)
		return MARK;
	if (c == 0x37E || c == 0x387)
		return SEP;
	if ((c >= 0x2000 && c <= 0x2BFF) || (c >= 0x3000 && c <= 0x303F) ||
	    (c >= 0xE000 && c <= 0xF8FF) || (c >= 0xFE30 && c <= 0xFE4F) ||
	    (c >= 0xFF00 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) ||
	    (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65) ||
	    (c >= 0xFFF0 && c <= 0xFFFF) || (c >= 0x1F000 && c <= 0x1FAFF))
		return SEP;
	return WORD;
}

/* Base letters of U+00C0-U+00FF and U+0100-U+017F; upper-case placeholders
 * stand for two-letter expansions. '.' marks the non-letters x and /. */
static const char latin1_base[] = "aaaaaaAceeeeiiiidnooooo.ouuuuyTS"
				  "aaaaaaAceeeeiiiidnooooo.ouuuuyTy";
_Static_assert(sizeof(latin1_base) == 65, "one base letter per U+00C0-U+00FF");
static const char latext_base[] =
	"aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiiiIIjjkkklllllll"
	"lllnnnnnnnnnooooooOOrrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs";
_Static_assert(sizeof(latext_base) == 129, "one base letter per U+0100-U+017F");

/* Appends the case-folded form of c to out; returns the bytes written (<= 4). */
static size_t fold(uint32_t c, char *out)
{
	char b = 0;

	if (c < 0x80) {
		out[0] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		return 1;
	}
	if (c >= 0xC0 && c <= 0xFF)
		b = latin1_base[c - 0xC0];
	else if (c >= 0x100 && c <= 0x17F)
		b = latext_base[c - 0x100];
	if (b) {
		switch (b) {
		case 'A': memcpy(out, "ae", 2); return 2;
		case 'T': memcpy(out, "th", 2); return 2;
		case 'S': memcpy(out, "ss", 2); return 2;
		case 'I': memcpy(out, "ij", 2); return 2;
		case 'O': memcpy(out, "oe", 2); return 2;
		default: out[0] = b; return 1;
		}
	}
	if ((c >= 0x391 && c <= 0x3A9 && c != 0x3A2) || (c >= 0x410 && c <= 0x42F))
		c += 0x20;
	else if (c >= 0x400 && c <= 0x40F)
		c += 0x50;
	else if (c == 0x3C2)
		c = 0x3C3; /* final sigma */
	if (c < 0x800) {
		out[0] = (char)(0xC0 | (c >> 6));
		out[1] = (char)(0x80 | (c & 0x3F));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xE0 | (c >> 12));
		out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
		out[2] = (char)(0x80 | (c & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (c >> 18));
	out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
	out[3] = (char)(0x80 | (c & 0x3F));
	return 4;
}

static int emit(struct sb_stemmer *st, char *w, size_t wlen, uint32_t pos,
		tok_fn fn, void *arg)
{
	struct tok t;
	const sb_symbol *s;

	if (wlen > TOK_MAX || tok_is_stopword(w, wlen))
		return 0;
	s = sb_stemmer_stem(st, (const sb_symbol *)w, (int)wlen);
	if (!s)
		return -ENOMEM;
	t.word = w;
	t.wlen = wlen;
	t.stem = (const char *)s;
	t.slen = (size_t)sb_stemmer_length(st);
	t.pos = pos;
	return fn(arg, &t);
}

int tok_run(const char *text, size_t len, tok_fn fn, void *arg)
{
	const unsigned char *p = (const unsigned char *)text;
	struct sb_stemmer *st = stemmer_get();
	/* Room for one more folded code point past TOK_MAX, then we stop growing. */
	char w[TOK_MAX + 8];
	size_t i = 0, wlen = 0, n;
	bool in_word = false, too_long = false;
	uint32_t pos = 0, cp;
	enum cls k;
	int rc;

	if (!st)
		return -ENOMEM;
	while (i <= len) {
		if (i == len) {
			k = SEP;
			n = 1;
		} else if (p[i] < 0x80) {
			cp = p[i];
			n = 1;
			k = classify(cp);
		} else {
			n = utf8_decode(p + i, len - i, &cp);
			if (!n) {
				n = 1;
				k = SEP;
			} else {
				k = classify(cp);
			}
		}
		if (k == WORD) {
			if (!in_word) {
				in_word = true;
				too_long = false;
				wlen = 0;
			}
			if (wlen <= TOK_MAX)
				wlen += fold(cp, w + wlen);
			else
				too_long = true;
		} else if (k == SEP && in_word) {
			in_word = false;
			if (!too_long) {
				rc = emit(st, w, wlen, pos, fn, arg);
				if (rc)
					return rc;
			}
			pos++;
		}
		i += n;
	}
	return 0;
}
