/*
 * ml_sim_map.c — stored versions and a string map for the simulation.
 */
#include <stdlib.h>
#include <string.h>

#include "tests/lib/ml_sim_map.h"

/* ---- stored versions (reference counted, like kv_rec) --------------------- */


struct sver *sver_new(const struct ml_version *v)
{
	struct sver *r = calloc(1, sizeof(*r));

	if (!r)
		abort();
	r->refs = 1;
	r->flags = v->flags;
	r->vlen = v->vlen;
	r->mlen = v->mlen;
	r->elen = v->ext_len;
	r->val = malloc(v->vlen + 1);
	r->meta = malloc(v->mlen + 1);
	r->ext = malloc(v->ext_len + 1);
	if (!r->val || !r->meta || !r->ext)
		abort();
	if (v->vlen)
		memcpy(r->val, v->val, v->vlen);
	if (v->mlen)
		memcpy(r->meta, v->meta, v->mlen);
	if (v->ext_len)
		memcpy(r->ext, v->ext, v->ext_len);
	return r;
}

void sver_unref(struct sver *r)
{
	if (r && --r->refs == 0) {
		free(r->val);
		free(r->meta);
		free(r->ext);
		free(r);
	}
}

void sver_view(const struct sver *r, struct ml_version *v)
{
	v->flags = r->flags;
	v->val = r->val;
	v->vlen = r->vlen;
	v->meta = r->meta;
	v->mlen = r->mlen;
	v->ext = r->ext;
	v->ext_len = r->elen;
}

int sver_equal(const struct sver *a, const struct sver *b)
{
	return a->flags == b->flags && a->vlen == b->vlen && a->mlen == b->mlen &&
	       a->elen == b->elen && !memcmp(a->val, b->val, a->vlen) &&
	       !memcmp(a->meta, b->meta, a->mlen) && !memcmp(a->ext, b->ext, a->elen);
}

/* ---- a small string map ----------------------------------------------------- */



uint64_t shash(const char *k, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
	return h;
}

void smap_init(struct smap *m)
{
	m->cap = 64;
	m->n = 0;
	m->b = calloc(m->cap, sizeof(*m->b));
	if (!m->b)
		abort();
}

void smap_clear(struct smap *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++) {
		struct sent *e = m->b[i], *next;
		for (; e; e = next) {
			next = e->next;
			sver_unref(e->v);
			free(e);
		}
		m->b[i] = NULL;
	}
	m->n = 0;
}

void smap_free(struct smap *m)
{
	smap_clear(m);
	free(m->b);
	m->b = NULL;
}

struct sent *smap_find(const struct smap *m, const char *k, size_t n)
{
	uint64_t h = shash(k, n);
	struct sent *e;

	for (e = m->b[h & (m->cap - 1)]; e; e = e->next)
		if (e->h == h && e->klen == n && !memcmp(e->key, k, n))
			return e;
	return NULL;
}

struct sent *smap_put(struct smap *m, const char *k, size_t n, struct sver *v)
{
	struct sent *e = smap_find(m, k, n);
	uint64_t h;

	if (v)
		v->refs++;
	if (e) {
		sver_unref(e->v);
		e->v = v;
		return e;
	}
	if (m->n >= m->cap) {
		size_t cap = m->cap * 2, i;
		struct sent **b = calloc(cap, sizeof(*b));
		if (!b)
			abort();
		for (i = 0; i < m->cap; i++) {
			struct sent *x = m->b[i], *next;
			for (; x; x = next) {
				next = x->next;
				x->next = b[x->h & (cap - 1)];
				b[x->h & (cap - 1)] = x;
			}
		}
		free(m->b);
		m->b = b;
		m->cap = cap;
	}
	h = shash(k, n);
	e = calloc(1, sizeof(*e) + n + 1);
	if (!e)
		abort();
	e->h = h;
	e->klen = n;
	e->v = v;
	memcpy(e->key, k, n);
	e->next = m->b[h & (m->cap - 1)];
	m->b[h & (m->cap - 1)] = e;
	m->n++;
	return e;
}

void smap_del(struct smap *m, const char *k, size_t n)
{
	uint64_t h = shash(k, n);
	struct sent **pp = &m->b[h & (m->cap - 1)], *e;

	for (; (e = *pp); pp = &e->next) {
		if (e->h == h && e->klen == n && !memcmp(e->key, k, n)) {
			*pp = e->next;
			sver_unref(e->v);
			free(e);
			m->n--;
			return;
		}
	}
}

void smap_copy(struct smap *dst, const struct smap *src)
{
	struct sent *e;
	size_t i;

	smap_clear(dst);
	SMAP_EACH(src, e, i)
		smap_put(dst, e->key, e->klen, e->v);
}

