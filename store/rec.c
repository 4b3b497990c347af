#include "store/rec.h"

#include <stdlib.h>
#include <string.h>

kv_rec *rec_new(const char *key, size_t klen, uint32_t flags, uint64_t version,
		const struct kv_meta *meta, const void *ext, size_t ext_len,
		const void *val, size_t vlen)
{
	kv_rec *r = malloc(sizeof *r + klen + 1 + ext_len + vlen);
	char *p;

	if (!r)
		return NULL;
	atomic_init(&r->refs, 1);
	r->flags = flags;
	r->version = version;
	r->meta = *meta;
	r->vowner = NULL;
	r->klen = (uint16_t)klen;
	r->ext_len = (uint16_t)ext_len;
	r->vlen = (uint32_t)vlen;
	p = r->data;
	memcpy(p, key, klen);
	p[klen] = '\0';
	p += klen + 1;
	if (ext_len)
		memcpy(p, ext, ext_len);
	p += ext_len;
	if (vlen)
		memcpy(p, val, vlen);
	r->val = p;
	return r;
}

kv_rec *rec_with_meta(const kv_rec *old, uint64_t version, const struct kv_meta *meta,
		      const void *ext, size_t ext_len)
{
	kv_rec *r = rec_new(rec_key(old), old->klen, old->flags, version, meta, ext, ext_len,
			    NULL, 0);
	kv_rec *owner;

	if (!r)
		return NULL;
	/* Share the value: reference the record that really owns the bytes, so
	 * chains of metadata changes never grow. */
	owner = old->vowner ? old->vowner : (kv_rec *)old;
	kv_rec_ref(owner);
	r->vowner = owner;
	r->val = old->val;
	r->vlen = old->vlen;
	return r;
}

size_t rec_footprint(const kv_rec *r)
{
	return sizeof *r + r->klen + 1 + r->ext_len + (r->vowner ? 0 : r->vlen);
}

const char *kv_rec_key(const kv_rec *r, size_t *klen)
{
	*klen = r->klen;
	return rec_key(r);
}

const void *kv_rec_value(const kv_rec *r) { return r->val; }
size_t kv_rec_size(const kv_rec *r) { return r->vlen; }
const struct kv_meta *kv_rec_meta(const kv_rec *r) { return &r->meta; }
uint64_t kv_rec_version(const kv_rec *r) { return r->version; }
uint32_t kv_rec_flags(const kv_rec *r) { return r->flags; }

const void *kv_rec_ext(const kv_rec *r, size_t *len)
{
	if (len)
		*len = r->ext_len;
	return r->ext_len ? r->data + r->klen + 1 : NULL;
}

void kv_rec_ref(kv_rec *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void kv_rec_unref(kv_rec *r)
{
	if (!r)
		return;
	/* acq_rel: the last owner must see every write made before the others
	 * dropped their references. */
	if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
		kv_rec_unref(r->vowner);
		free(r);
	}
}
