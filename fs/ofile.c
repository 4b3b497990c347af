/*
 * ofile.c — the table of open files (see ofile.h).
 */
#include "fs/ofile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NBUCKETS 1024u

static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ofile *tab[NBUCKETS];

static unsigned hash(const char *k, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 16777619u;
	return h % NBUCKETS;
}

int ofile_init(void)
{
	memset(tab, 0, sizeof(tab));
	return 0;
}

/* Buffers from this size on are mapped directly and grown with mremap():
 * no copy on growth, and transparent huge pages cut the page faults of a
 * big sequential write (which dominate on virtual machines) by 512x. */
#define MAP_FROM (2u << 20)

static void buf_free(struct ofile *of)
{
	if (of->buf && of->cap >= MAP_FROM)
		munmap(of->buf, of->cap);
	else
		free(of->buf);
	of->buf = NULL;
	of->cap = 0;
}

static void ofile_free(struct ofile *of)
{
	if (of->base)
		kv_rec_unref(of->base);
	buf_free(of);
	free(of->key);
	pthread_mutex_destroy(&of->lock);
	free(of);
}

void ofile_fini(void)
{
	/* Files still open when the loop ends were never closed: their unflushed
	 * changes were never acknowledged, so dropping them is correct. */
	pthread_mutex_lock(&tab_lock);
	for (unsigned i = 0; i < NBUCKETS; i++) {
		while (tab[i]) {
			struct ofile *of = tab[i];
			tab[i] = of->next;
			ofile_free(of);
		}
	}
	pthread_mutex_unlock(&tab_lock);
}

static struct ofile **slot(const char *key, size_t klen)
{
	struct ofile **pp = &tab[hash(key, klen)];

	while (*pp && !((*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0))
		pp = &(*pp)->next;
	return pp;
}

struct ofile *ofile_find(const char *key, size_t klen)
{
	struct ofile *of;

	pthread_mutex_lock(&tab_lock);
	of = *slot(key, klen);
	if (of)
		of->refs++;
	pthread_mutex_unlock(&tab_lock);
	return of;
}

struct ofile *ofile_open(const char *key, size_t klen, int *created)
{
	struct ofile **pp, *of;

	*created = 0;
	pthread_mutex_lock(&tab_lock);
	pp = slot(key, klen);
	if (*pp) {
		of = *pp;
		of->refs++;
		goto out;
	}
	of = calloc(1, sizeof(*of));
	if (!of)
		goto out;
	of->key = malloc(klen + 1);
	if (!of->key) {
		free(of);
		of = NULL;
		goto out;
	}
	memcpy(of->key, key, klen);
	of->key[klen] = '\0';
	of->klen = klen;
	of->refs = 1;
	pthread_mutex_init(&of->lock, NULL);
	*pp = of;
	*created = 1;
out:
	pthread_mutex_unlock(&tab_lock);
	return of;
}

static void unhash_locked(struct ofile *of)
{
	struct ofile **pp = slot(of->key, of->klen);

	if (*pp == of)
		*pp = of->next;
	of->next = NULL;
}

void ofile_put(struct ofile *of)
{
	int last;

	pthread_mutex_lock(&tab_lock);
	last = --of->refs == 0;
	if (last)
		unhash_locked(of);
	pthread_mutex_unlock(&tab_lock);
	if (last)
		ofile_free(of);
}

void ofile_unhash(struct ofile *of)
{
	pthread_mutex_lock(&tab_lock);
	unhash_locked(of);
	pthread_mutex_unlock(&tab_lock);
}

int ofile_rekey(struct ofile *of, const char *to, size_t tlen)
{
	char *k = malloc(tlen + 1);
	struct ofile **pp;

	if (!k)
		return -ENOMEM;
	memcpy(k, to, tlen);
	k[tlen] = '\0';
	pthread_mutex_lock(&tab_lock);
	unhash_locked(of);
	free(of->key);
	of->key = k;
	of->klen = tlen;
	pp = slot(k, tlen);
	if (*pp) /* an ofile of the target key was replaced by the rename */
		unhash_locked(*pp);
	pp = &tab[hash(k, tlen)];
	of->next = *pp;
	*pp = of;
	pthread_mutex_unlock(&tab_lock);
	return 0;
}

void ofile_each(const char *prefix, size_t plen,
		void (*fn)(void *arg, struct ofile *of), void *arg)
{
	pthread_mutex_lock(&tab_lock);
	for (unsigned i = 0; i < NBUCKETS; i++) {
		struct ofile *of = tab[i], *next;
		for (; of; of = next) {
			next = of->next;
			if (of->klen >= plen && memcmp(of->key, prefix, plen) == 0)
				fn(arg, of);
		}
	}
	pthread_mutex_unlock(&tab_lock);
}

const char *ofile_data(const struct ofile *of)
{
	if (of->buf)
		return of->buf;
	return of->base ? kv_rec_value(of->base) : NULL;
}

/* Makes sure a private copy exists with room for `need` bytes. */
static int own(struct ofile *of, size_t need)
{
	size_t cap = of->cap;
	char *p;

	if (need > KV_VALUE_MAX)
		return -EFBIG;
	if (of->buf && need <= cap)
		return 0;
	if (cap < 4096)
		cap = 4096;
	while (cap < need)
		cap *= 2;
	if (cap >= MAP_FROM) {
		cap = (cap + MAP_FROM - 1) & ~(size_t)(MAP_FROM - 1);
		if (of->buf && of->cap >= MAP_FROM)
			p = mremap(of->buf, of->cap, cap, MREMAP_MAYMOVE);
		else
			p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
		(void)madvise(p, cap, MADV_HUGEPAGE); /* advice only */
		if (of->buf && of->cap < MAP_FROM) {
			memcpy(p, of->buf, of->size);
			free(of->buf);
		} else if (!of->buf && of->size && of->base) {
			memcpy(p, kv_rec_value(of->base), of->size);
		}
	} else {
		p = realloc(of->buf, cap);
		if (!p)
			return -ENOMEM;
		if (!of->buf && of->size && of->base)
			memcpy(p, kv_rec_value(of->base), of->size);
	}
	of->buf = p;
	of->cap = cap;
	return 0;
}

int ofile_resize(struct ofile *of, size_t size)
{
	int rc = own(of, size > of->size ? size : of->size);

	if (rc)
		return rc;
	if (size > of->size)
		memset(of->buf + of->size, 0, size - of->size);
	of->size = size;
	return 0;
}

int ofile_pwrite(struct ofile *of, const void *p, size_t n, size_t off)
{
	size_t end = off + n;
	int rc;

	if (off > KV_VALUE_MAX || n > KV_VALUE_MAX - off)
		return -EFBIG;
	if ((rc = own(of, end > of->size ? end : of->size)))
		return rc;
	if (off > of->size) /* a sparse hole reads as zeros */
		memset(of->buf + of->size, 0, off - of->size);
	memcpy(of->buf + off, p, n);
	if (end > of->size)
		of->size = end;
	return 0;
}

void ofile_set_base(struct ofile *of, kv_rec *rec)
{
	if (of->base)
		kv_rec_unref(of->base);
	buf_free(of);
	of->base = rec;
	of->size = rec ? kv_rec_size(rec) : 0;
	of->meta = rec ? *kv_rec_meta(rec) : of->meta;
	of->version = rec ? kv_rec_version(rec) : 0;
	of->in_store = rec != NULL;
}
