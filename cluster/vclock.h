/*
 * vclock.h — per-key version vectors for masterless replication.
 *
 * Which clock and why. Every key version carries a version vector keyed by
 * node id (Dynamo, DeCandia et al. 2007, section 4.4). Dotted version vectors
 * (Preguiça, Baquero et al., "Dotted Version Vectors: Logical Clocks for
 * Optimistic Replication", 2010) exist to keep *siblings* exact when a server
 * coordinates writes for many clients that send stale contexts: a plain
 * server-keyed vector then either invents false concurrency or silently
 * overwrites. kvfs keeps no siblings: a node writes only on its own behalf,
 * always on top of its own current version of the key (the client sends no
 * context), and concurrent versions are resolved at once by last-writer-wins.
 * Under those rules the single new event of a write is exactly the writer's
 * own entry, so server-keyed vectors are precise and DVV's extra dot buys
 * nothing.
 *
 * One twist makes entries safe across tombstone collection and restarts: an
 * entry is not a per-key counter but the writer's hybrid logical timestamp of
 * its latest write to the key (cluster/hlc.h). Timestamps of one node only
 * grow, across all keys and restarts (the core restarts its clock above every
 * stored timestamp and the floor it saved, see ml_io.save_floor), so a write made after the key's history
 * was garbage-collected can never carry an entry equal to or below one of an
 * older write (a per-key counter would restart at 1 and the new write could
 * look dominated by, or equal to, a stale one). Entries are compared only
 * with entries of the same node, so the unit does not matter to the order.
 *
 * A vector is a small sorted array; absent entries are 0.
 */
#ifndef KVFS_VCLOCK_H
#define KVFS_VCLOCK_H

#include <stddef.h>
#include <stdint.h>

#define VCLOCK_MAX_NODES 64 /* node ids are 0..VCLOCK_MAX_NODES-1 */

enum vclock_order {
	VCLOCK_EQUAL      = 0, /* a == b */
	VCLOCK_BEFORE     = 1, /* a < b: b dominates a */
	VCLOCK_AFTER      = 2, /* a > b: a dominates b */
	VCLOCK_CONCURRENT = 3, /* neither dominates */
};

struct vclock_entry {
	uint32_t id;  /* node id */
	uint64_t ctr; /* nonzero */
};

/* Embeddable (callers keep them on the stack). Entries sorted by id, ids
 * unique, counters nonzero. */
struct vclock {
	uint32_t            n;
	struct vclock_entry e[VCLOCK_MAX_NODES];
};

void     vclock_init(struct vclock *v);
uint64_t vclock_get(const struct vclock *v, uint32_t id);

/* Sets id's entry (ctr 0 removes it). Returns 0 or -EINVAL (id out of range). */
int      vclock_set(struct vclock *v, uint32_t id, uint64_t ctr);

enum vclock_order vclock_compare(const struct vclock *a, const struct vclock *b);

/* dst := pointwise max(dst, src), the least vector that dominates both. */
void     vclock_merge(struct vclock *dst, const struct vclock *src);

const char *vclock_order_name(enum vclock_order o);

/*
 * Binary encoding, relative to a base (the version's own timestamp, which is
 * at least as large as every entry in practice, so deltas stay short):
 *   LEB128 n                       number of entries, n <= VCLOCK_MAX_NODES
 *   n x { LEB128 id                strictly increasing, < VCLOCK_MAX_NODES
 *         LEB128 zigzag(base-ctr) } signed distance from base; ctr != 0
 * LEB128: 7 bits per byte, least significant group first, high bit = more
 * (at most 10 bytes for 64 bits). zigzag(d) = (d << 1) ^ (d >> 63).
 * A local write's own entry equals base and costs 2 bytes (id, 0).
 *
 * vclock_encode returns the number of bytes written, or -ENOSPC.
 * vclock_decode returns the number of bytes consumed, or -EBADMSG for a
 * truncated, non-canonical or out-of-range encoding.
 */
#define VCLOCK_ENCODED_MAX (10 + VCLOCK_MAX_NODES * (10 + 10))
int vclock_encode(const struct vclock *v, uint64_t base, uint8_t *buf, size_t cap);
int vclock_decode(const uint8_t *buf, size_t len, uint64_t base, struct vclock *v);

/* LEB128 helpers shared with the masterless wire code. put returns bytes
 * written (<= 10) or 0 if cap is too small; get returns bytes read or 0 on
 * truncation or overflow. */
size_t vclock_put_uvarint(uint8_t *buf, size_t cap, uint64_t x);
size_t vclock_get_uvarint(const uint8_t *buf, size_t len, uint64_t *x);

#endif
