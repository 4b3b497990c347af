/*
 * raft_node.h — internals of the Raft replication layer (cluster/raft_node.c):
 * the durable formats it keeps in the store's WAL and in its metadata file,
 * and the replay that rebuilds the Raft log at start-up.
 * Nothing outside cluster/raft_node*.c and its tests includes this.
 *
 * ---------------------------------------------------------------------------
 * Durable state of a Raft node (all integers little-endian):
 *
 * 1. <data>/raft.meta — currentTerm and votedFor (Raft Fig. 2 "persistent
 *    state"), rewritten rarely (elections) by write tmp + fdatasync + rename +
 *    fsync(dir), so it is always either the old or the new version:
 *      off size
 *       0  4   magic "KVRM" (0x4D52564B as a little-endian u32)
 *       4  4   version (1)
 *       8  8   term
 *      16  4   vote (0 = none; otherwise the Raft id, 1..n)
 *      20  4   CRC-32C of bytes 0..19
 *    A missing file means term 0, no vote. A bad magic/version/CRC stops the
 *    node (-EUCLEAN) rather than forgetting a vote.
 *    The term and vote are NOT kept in the WAL because the store deletes old
 *    log segments after a snapshot; a separate file never disappears.
 *
 * 2. WAL record RN_REC_ENTRIES (one per io->append call; many share one
 *    fdatasync through the store's group commit):
 *      u64 first   index of the first entry; every stored entry with index
 *                  >= first is replaced (conflict truncation, Fig. 2
 *                  AppendEntries step 3)
 *      u32 n
 *      n x { u64 term, u8 type, u32 len, len bytes }
 *
 * 3. WAL record RN_REC_RESET (written by InstallSnapshot after the installed
 *    state has been applied to the map, before the store snapshot that makes
 *    it durable):
 *      u64 index, u64 term   of the installed snapshot
 *    At replay it discards every entry collected so far — but only if the
 *    loaded store snapshot is at least as new as `index` (a crash between the
 *    reset record and the store snapshot leaves the old state and old log,
 *    which is still a valid Raft state: the install simply did not happen).
 *
 * 4. The Raft position of the map, saved by the store atomically with every
 *    store snapshot (store_options.snap_state), RN_STATE_SIZE bytes:
 *      u32 magic "KVRS", u32 version (1), u64 applied index, u64 its term
 *    The applied index is published only AFTER store_apply() of that entry
 *    returns, so a snapshot may show the map one entry ahead of its index;
 *    replay then applies that entry again, which is harmless because every
 *    batch is made of blind puts/deletes (applying a suffix of the committed
 *    log twice leaves the same state).
 * ---------------------------------------------------------------------------
 */
#ifndef KVFS_RAFT_NODE_H
#define KVFS_RAFT_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/raft.h"
#include "store/store.h"

#define RN_REC_ENTRIES (STORE_REC_USER + 16)
#define RN_REC_RESET   (STORE_REC_USER + 17)

#define RN_META_FILE   "raft.meta"
#define RN_META_SIZE   24
#define RN_META_MAGIC  0x4D52564Bu /* "KVRM" */
#define RN_STATE_MAGIC 0x5352564Bu /* "KVRS" */
#define RN_STATE_SIZE  24

int rn_meta_load(const char *dir, uint64_t *term, uint32_t *vote);
int rn_meta_save(const char *dir, uint64_t term, uint32_t vote);

/* *out is malloc'd. */
int rn_entries_encode(uint64_t first, const struct raft_entry *e, size_t n,
		      void **out, size_t *len);
void rn_reset_encode(uint64_t index, uint64_t term, unsigned char out[16]);

void rn_state_encode(uint64_t index, uint64_t term, unsigned char out[RN_STATE_SIZE]);
/* 0, or -EUCLEAN for a blob that is not ours; len 0 means index 0, term 0. */
int  rn_state_decode(const void *p, size_t len, uint64_t *index, uint64_t *term);

/* Replay: records are collected while the store opens (before the snapshot
 * state is known), then turned into the log that follows the snapshot. */
struct rn_rec;
struct rn_replay {
	struct rn_rec *head, *tail;
	size_t         nrecs;
};

/* Copies the record. */
int  rn_replay_add(struct rn_replay *rp, uint8_t type, uint64_t lsn, const void *p, size_t len);

/* The entries after snap_index, contiguous from snap_index + 1, and the lsn
 * of the record each came from. ents[i].data points into the collected
 * records: valid until rn_replay_free(). *ents and *lsns are malloc'd. */
int  rn_replay_build(struct rn_replay *rp, uint64_t snap_index, struct raft_entry **ents,
		     uint64_t **lsns, size_t *n);
void rn_replay_free(struct rn_replay *rp);

#endif
