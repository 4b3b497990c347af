/*
 * ml_sim_map.h — internal to the masterless simulation (tests/lib/ml_sim.c):
 * reference-counted stored versions (like kv_rec) and a small string map.
 */
#ifndef KVFS_TESTS_ML_SIM_MAP_H
#define KVFS_TESTS_ML_SIM_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/ml.h"

struct sver {
	int      refs;
	uint32_t flags;
	uint32_t vlen, mlen, elen;
	uint8_t *val, *meta, *ext;
};

struct sent {
	struct sent *next;
	uint64_t     h;
	size_t       klen;
	struct sver *v;   /* may be NULL (sets) */
	uint64_t     aux; /* free for the user */
	char         key[];
};

struct smap {
	struct sent **b;
	size_t        cap, n;
};

#define SMAP_EACH(m, e, i) \
	for ((i) = 0; (i) < (m)->cap; (i)++) \
		for ((e) = (m)->b[i]; (e); (e) = (e)->next)

struct sver *sver_new(const struct ml_version *v);
void sver_unref(struct sver *r);
void sver_view(const struct sver *r, struct ml_version *v);
int sver_equal(const struct sver *a, const struct sver *b);
uint64_t shash(const char *k, size_t n);
void smap_init(struct smap *m);
void smap_clear(struct smap *m);
void smap_free(struct smap *m);
struct sent *smap_find(const struct smap *m, const char *k, size_t n);
struct sent *smap_put(struct smap *m, const char *k, size_t n, struct sver *v);
void smap_del(struct smap *m, const char *k, size_t n);
void smap_copy(struct smap *dst, const struct smap *src);

#endif
