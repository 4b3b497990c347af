/*
 * storemodel.h — a trivially correct model of the store's map for tests:
 * apply the same batches to it and compare with a store's full content.
 */
#ifndef KVFS_TEST_STOREMODEL_H
#define KVFS_TEST_STOREMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define MODEL_MAX_KEYS 1024
#define MODEL_KEY_MAX  64
#define MODEL_VAL_MAX  512

struct model_entry {
	char           key[MODEL_KEY_MAX];
	size_t         klen;
	unsigned char  val[MODEL_VAL_MAX];
	size_t         vlen;
	struct kv_meta meta;
	uint32_t       flags;
};

struct model {
	struct model_entry e[MODEL_MAX_KEYS];
	size_t             n;
};

void model_init(struct model *m);
void model_apply(struct model *m, const struct kv_batch *b);
/* 0 when the store holds exactly the model's keys, values, meta and flags
 * (tombstones included); else non-zero with a description in why. */
int  model_compare(const struct model *m, store *st, char *why, size_t whylen);

#endif
