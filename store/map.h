/*
 * map.h — the ordered in-memory map key -> kv_rec*, the store's state.
 *
 * A skiplist (Pugh 1990, with LevelDB's branching factor of 4). Why a
 * skiplist: ordered iteration from any key (directory listings, prefixes) is
 * a walk along level 0; get/put/delete are O(log n) expected with no
 * rebalancing code to get wrong; and it is memory-lean: a node is the record
 * pointer, key length, height, on average 4/3 next pointers (about 27 bytes)
 * and a copy of the key, so that a search reads only the nodes it passes.
 * A million 20-byte keys cost about 50 MB of index on top of the records
 * (a B+tree would save the per-key pointers but not the key copy, and needs
 * split/merge code). Point lookups (map_get) do not walk the skiplist: a
 * hash index from key to node, kept by every put/append/delete, answers them
 * with about one cache miss, for some 32 more bytes per key. Bulk-appended
 * nodes come from large chunks (map.c). Heights come from a per-map
 * xorshift generator with a fixed seed, so runs are reproducible.
 *
 * Not thread-safe: the store serialises writers and readers with a rwlock.
 * Records handed in or out carry references as stated per function.
 */
#ifndef KVFS_MAP_H
#define KVFS_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "store/rec.h"

typedef struct map map;

map   *map_new(uint64_t seed);
/* Drops the map's reference on every record. */
void   map_free(map *m);
size_t map_count(const map *m);

/* The record of key, borrowed (valid while the map is not modified), or NULL.
 * Served by a hash index kept next to the skiplist (see map.c): O(1)
 * expected, about 32 bytes per key more. */
kv_rec *map_get(const map *m, const char *key, size_t klen);

/* Whether some key ever put into the map may start with key + '/' (key is
 * a directory of the tree of keys): 0 means certainly not, 1 maybe (a Bloom
 * filter: deletions and hash collisions give false maybes, never a false
 * no). O(1). */
int map_maybe_dir(const map *m, const char *key, size_t klen);

/* Inserts or replaces rec under its own key. The map takes over the caller's
 * reference on rec. *old receives the replaced record with the map's former
 * reference (the caller must unref it), or NULL. 0 or -ENOMEM. */
int map_put(map *m, kv_rec *rec, kv_rec **old);

/* Appends rec whose key is greater than every key in the map (snapshot
 * loading reads keys in order): O(1) after the first call. -EINVAL when the
 * key is not greater than the last one. The node comes from a bulk chunk
 * (see map.c): if it is deleted later, its bytes are kept until map_free. */
int map_append(map *m, kv_rec *rec);

/* Sizes the lookup index for n more keys at once (a bulk load that knows
 * its size spares the rehashing of growing step by step). A hint: 0 or
 * -ENOMEM, and the map works either way. */
int map_reserve(map *m, size_t n);

/* Removes key; returns the removed record with the map's reference (caller
 * unrefs), or NULL when missing. */
kv_rec *map_del(map *m, const char *key, size_t klen);

/* Iteration. An iterator is valid while the map is not modified. */
typedef struct map_iter {
	const void *node;
} map_iter;

/* Positions at the first key >= key (> key when `strict`); key may be NULL
 * (klen 0) for the first key. Returns its record (borrowed) or NULL at end. */
kv_rec *map_seek(const map *m, const char *key, size_t klen, int strict, map_iter *it);
/* Advances; returns the next record (borrowed) or NULL at the end. */
kv_rec *map_iter_next(map_iter *it);

/* Key comparison used by the map: bytewise (unsigned), shorter prefix first. */
int map_keycmp(const char *a, size_t alen, const char *b, size_t blen);

#endif
