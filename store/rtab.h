/*
 * rtab.h — the recovery table: log replay collects the final state of every
 * key it touches here (a hash table: one cache miss per operation), and only
 * then applies it to the ordered map in key order.
 *
 * Why: replaying a million single-key batches straight into the skiplist
 * costs a random O(log n) search — some 30 cache misses — per record; in key
 * order consecutive searches walk the same, cached, path. Sorting uses a
 * 16-byte key prefix kept in the entry, so most comparisons touch no record;
 * entries sharing it (paths in one directory) are sorted by the next 16
 * bytes, and so on. The table and the sort buffer sit on huge pages.
 *
 * Not thread-safe; used by store_open() only.
 */
#ifndef KVFS_RTAB_H
#define KVFS_RTAB_H

#include <stddef.h>
#include <stdint.h>

#include "store/map.h"
#include "store/rec.h"

typedef struct rtab rtab;

rtab *rtab_new(void);
void  rtab_free(rtab *t);

/* Sizes the table for about `keys` distinct keys at once, sparing the
 * rehashing of growing step by step (it still grows when needed). A hint
 * only: 0 or -ENOMEM. */
int   rtab_reserve(rtab *t, size_t keys);

/* Replays one operation of a batch with the given version. `base` is the map
 * loaded from the snapshot (read only here: KV_META of a key the log did not
 * touch yet starts from its record there). 0 or -ENOMEM/-EINVAL. */
int rtab_apply(rtab *t, const map *base, const struct kv_op *op, uint64_t version);

/* Applies the collected state to m in key order and empties the table.
 * *tomb_delta gets the change in the number of tombstones. */
int rtab_flush(rtab *t, map *m, int64_t *tomb_delta);

#endif
