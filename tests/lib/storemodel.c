#include "tests/lib/storemodel.h"

#include <stdio.h>
#include <string.h>

void model_init(struct model *m)
{
	m->n = 0;
}

static struct model_entry *find(struct model *m, const char *key, size_t klen)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->e[i].klen == klen && !memcmp(m->e[i].key, key, klen))
			return &m->e[i];
	return NULL;
}

void model_apply(struct model *m, const struct kv_batch *b)
{
	for (uint32_t i = 0; i < b->n; i++) {
		const struct kv_op *op = &b->ops[i];
		struct model_entry *e = find(m, op->key, op->klen);

		switch (op->kind) {
		case KV_PUT:
			if (!e) {
				e = &m->e[m->n++];
				memcpy(e->key, op->key, op->klen);
				e->klen = op->klen;
			}
			memcpy(e->val, op->val, op->vlen);
			e->vlen = op->vlen;
			e->meta = op->meta;
			e->flags = op->flags;
			break;
		case KV_DEL:
			if (e)
				*e = m->e[--m->n];
			break;
		case KV_META:
			if (e)
				e->meta = op->meta;
			break;
		}
	}
}

/* Field by field: the struct has padding. */
static int meta_equal(const struct kv_meta *a, const struct kv_meta *b)
{
	return a->mode == b->mode && a->uid == b->uid && a->gid == b->gid &&
	       a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

struct cmp_ctx {
	const struct model *m;
	size_t              seen;
	char               *why;
	size_t              whylen;
};

static int cmp_one(void *arg, const char *key, size_t klen, const kv_rec *r)
{
	struct cmp_ctx *c = arg;
	struct model_entry *e = find((struct model *)c->m, key, klen);

	if (!e) {
		snprintf(c->why, c->whylen, "store has extra key %.*s", (int)klen, key);
		return 1;
	}
	if (kv_rec_size(r) != e->vlen || memcmp(kv_rec_value(r), e->val, e->vlen)) {
		snprintf(c->why, c->whylen, "value of %.*s differs", (int)klen, key);
		return 1;
	}
	if (!meta_equal(kv_rec_meta(r), &e->meta) || kv_rec_flags(r) != e->flags) {
		snprintf(c->why, c->whylen, "meta/flags of %.*s differ", (int)klen, key);
		return 1;
	}
	c->seen++;
	return 0;
}

int model_compare(const struct model *m, store *st, char *why, size_t whylen)
{
	struct cmp_ctx c = { .m = m, .why = why, .whylen = whylen };
	int rc = store_scan(st, "", 0, NULL, 0, 1, cmp_one, &c);

	if (rc)
		return rc;
	if (c.seen != m->n) {
		snprintf(why, whylen, "store has %zu keys, model %zu", c.seen, m->n);
		return 1;
	}
	return 0;
}
