/*
 * rec.h — construction of kv_rec, the immutable, reference-counted stored
 * version of one key (accessors are declared in store.h).
 *
 * One allocation holds the record, its key, its ext bytes and — for a record
 * made by KV_PUT — its value. A record made by KV_META shares the value bytes
 * of the version it replaces: it points into them and holds a reference on
 * the record that owns them, so a metadata-only change (chmod, utimens) of a
 * large file copies no data.
 */
#ifndef KVFS_REC_H
#define KVFS_REC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct kv_rec {
	atomic_uint    refs;
	uint32_t       flags;   /* KV_F_* */
	uint64_t       version;
	struct kv_meta meta;
	kv_rec        *vowner;  /* NULL: value is inline in data[]; else owns val */
	const char    *val;
	uint32_t       vlen;
	uint16_t       klen;    /* <= KV_KEY_MAX */
	uint16_t       ext_len; /* <= KV_EXT_MAX */
	char           data[];  /* key, '\0', ext, value (when inline) */
};

static inline const char *rec_key(const kv_rec *r) { return r->data; }

/* A new record with one reference; NULL when out of memory. */
kv_rec *rec_new(const char *key, size_t klen, uint32_t flags, uint64_t version,
		const struct kv_meta *meta, const void *ext, size_t ext_len,
		const void *val, size_t vlen);

/* A new record with old's key and value but new meta/ext/version (KV_META). */
kv_rec *rec_with_meta(const kv_rec *old, uint64_t version, const struct kv_meta *meta,
		      const void *ext, size_t ext_len);

/* Approximate heap bytes of a record (for statistics and tests). */
size_t rec_footprint(const kv_rec *r);

#endif
