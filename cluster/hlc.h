/*
 * hlc.h — hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical
 * Clocks and Consistent Snapshots in Globally Distributed Databases", 2014).
 *
 * A timestamp is one uint64_t: the physical part l (milliseconds since the
 * epoch) in bits 63..16 and the logical counter c in bits 15..0, so that
 * comparing two timestamps as integers compares (l, c) lexicographically, as
 * the paper orders them. When c would overflow (65536 events inside one
 * millisecond without the physical clock advancing) it carries into l; the
 * order stays strict, l merely runs a little ahead of the wall clock.
 *
 * The clock is pure: the caller passes the physical time in. It guarantees
 *   - e happened-before f  =>  ts(e) < ts(f)      (send/receive updates), and
 *   - ts(e) >= pt(e) and stays close to it       (bounded drift),
 * which is what last-writer-wins needs: a write that causally follows another
 * always wins over it, and concurrent writes are ordered roughly by wall time.
 */
#ifndef KVFS_HLC_H
#define KVFS_HLC_H

#include <stdint.h>

#define HLC_LOGICAL_BITS 16

/* Embeddable: one word of state. */
struct hlc {
	uint64_t last; /* the largest timestamp issued or observed */
};

/* Starts the clock at `floor` (0, or the largest timestamp this node may have
 * issued before a restart, so that its timestamps never repeat). */
void     hlc_init(struct hlc *h, uint64_t floor);

/* A local or send event at physical time pt_ms: returns a timestamp greater
 * than every one issued or observed so far and not below pt_ms. */
uint64_t hlc_now(struct hlc *h, uint64_t pt_ms);

/* A receive event of a message stamped `remote` at physical time pt_ms:
 * returns a timestamp greater than both `remote` and every earlier one. */
uint64_t hlc_update(struct hlc *h, uint64_t remote, uint64_t pt_ms);

/* The physical part (ms) and logical part of a timestamp. */
static inline uint64_t hlc_ms(uint64_t ts) { return ts >> HLC_LOGICAL_BITS; }
static inline uint64_t hlc_logical(uint64_t ts) { return ts & ((1u << HLC_LOGICAL_BITS) - 1); }
static inline uint64_t hlc_from_ms(uint64_t ms) { return ms << HLC_LOGICAL_BITS; }

#endif
