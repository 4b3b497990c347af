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
 *    Store snapshots are held off (store_hold_snapshots) from the change of
 *    the map until this record is durable, and the applied index of 4. moves
 *    to `index` only then: no store snapshot holds the installed map without
 *    the record before it in the log.
 *
 * 4. The Raft position of the map, saved by the store atomically with every
 *    store snapshot (store_options.snap_state), RN_STATE_SIZE bytes:
 *      u32 magic "KVRS", u32 version (1), u64 applied index, u64 its term
 *    The applied index is published only AFTER store_apply() of that entry
 *    returns, so a snapshot may show the map one entry ahead of its index;
 *    replay then applies that entry again, which is harmless because every
 *    batch is made of blind puts/deletes (applying a suffix of the committed
 *    log twice leaves the same state).
 *
 * 5. A snapshot sent to a lagging follower (InstallSnapshot data, not stored
 *    as such): the leader's live keys in key order, as one or more batches
 *    (store/batch.h) of at most KV_BATCH_MAX puts each, every one preceded
 *    by its length, after the number of keys in all (a cut at a batch
 *    boundary must not pass for a smaller state):
 *      u64 keys, { u64 len, len bytes of batch } ... up to the end of the data
 *    An empty state is one empty batch. (Sent, never stored.)
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

/* A snapshot for a follower (format 5): `n` ops (puts, in key order) as
 * batches of at most `chunk` (1..KV_BATCH_MAX, else -EINVAL); *out is
 * malloc'd. Decoding makes *ops (malloc'd) point into data; -EBADMSG for
 * anything else than what rn_snap_encode() makes. */
int  rn_snap_encode(const struct kv_op *ops, size_t n, uint32_t chunk, void **out,
		    size_t *outlen);
int  rn_snap_decode(const void *data, size_t len, struct kv_op **ops, size_t *n);

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

/* ---- the runtime (raft_node.c), shared with raft_node_snap.c ---------------- */

#include <pthread.h>
#include <sys/queue.h>
#include <uv.h>

#include "cluster/peer.h"
#include "cluster/repl.h"

/* A client request in one of the queues. */
struct rn_wait {
	TAILQ_ENTRY(rn_wait) link;
	struct node_req *req;
	uint64_t id;        /* forward or read id */
	uint64_t index;     /* commitq: the entry to wait for */
	uint64_t term;
	uint64_t deadline;  /* ms (rn_now) */
	unsigned to;        /* fwdq: the peer it was sent to */
	int      local;     /* commitq: proposed on this node */
};
TAILQ_HEAD(rn_list, rn_wait);

/* One io->append() call on its way to disk. */
struct rn_append {
	struct rn        *rn;
	uint64_t          first;
	size_t            n;
	int               done;
	int               status;
	uint64_t          lsn;
	struct rn_append *next;
};

struct rn {
	node            *n;
	store           *st;
	raft            *r;
	peer_net        *net;
	struct peer_members mem;
	char            *dir;
	unsigned         self;     /* peer id; the Raft id is self + 1 */
	unsigned         election_ms, heartbeat_ms, timeout_ms;
	uint64_t         snap_every;
	unsigned         trailing;

	uv_timer_t       timer;    /* raft_deadline() */
	uv_timer_t       house;    /* deadlines, retries, snapshots: every 50 ms */
	uv_async_t       async;    /* append completions from the committer thread */
	uv_check_t       check;    /* once per loop iteration: raft_flush() */
	int              handles;  /* open uv handles */
	int              started;
	int              stopping; /* repl stop(): no client requests any more */
	int              draining; /* stopping, handing leadership over first */
	int              closed;   /* handles are being closed */
	int              in_after, kick;
	uint32_t         last_leader;

	struct rn_replay replay;

	/* Appends in call order; `mu` (a leaf lock) protects the done/status/lsn
	 * fields, which the committer thread sets. */
	pthread_mutex_t   mu;
	struct rn_append *ahead, *atail;
	size_t            ainflight;

	/* Index -> lsn of the WAL record holding each entry, from elsn_base; the
	 * log pin (store_pin_log) is the lsn of the first entry still held. */
	uint64_t *elsn;
	uint64_t  elsn_base;
	size_t    elsn_len, elsn_cap;

	/* Published for snap_state (store thread): `smu` is a leaf lock. */
	pthread_mutex_t smu;
	uint64_t        applied_index, applied_term;

	uint64_t snap_applied;   /* applied index the newest store snapshot covers:
	                          * the log may be cut up to it (rn_compact) */
	uint64_t snap_bytes;     /* KVFS_RAFT_SNAPSHOT_BYTES */
	uint64_t applied_bytes;  /* entry bytes applied since the last snapshot started */
	int      snap_running;
	uv_work_t snap_work;
	uint64_t  snap_target;
	uint64_t  snap_count0;
	int       snap_rc;

	uint32_t snap_chunk;     /* operations per batch of a snapshot sent (KV_BATCH_MAX) */
	uint64_t fail_apply_at;  /* test knob: this entry fails to apply (0: none) */
	/* snapshot_get cache, and the encoding under way (raft_node_snap.c) */
	struct snap_build *sbuild;
	void     *sbuf;
	size_t    slen;
	uint64_t  sindex, sterm;

	int       failed;        /* a fatal apply/store error */

	uint64_t next_id;
	struct rn_list waitq, fwdq, commitq, readq;
	uint64_t nfwd_in, nfwd_out, nlost;
	uint64_t snap_refusals; /* snapshots refused for lack of memory */
	uint64_t snap_installs; /* snapshots installed from a leader */
};

void rn__wait_finish(struct rn *rn, struct rn_list *q, struct rn_wait *w, int status);
/* The outcome of an entry proposed as (index, term), once this replica has
 * applied past it, from the term `at_term` of the committed log at `at`
 * (>= index): 0 when the committed log holds that entry, -EIO when it does
 * not or that cannot be told (raft_node.c). */
int rn__outcome(uint64_t index, uint64_t term, uint64_t at, uint64_t at_term);
void rn__notify_batch(struct rn *rn, const struct kv_op *ops, uint32_t n);
/* Publishes the applied position for snap_state (after store_apply). */
void rn__publish_applied(struct rn *rn, uint64_t index, uint64_t term);
/* store_options.snap_state: the applied position (4.), arg the struct rn. */
size_t rn__snap_state(void *arg, void *buf, size_t cap);
/* The index up to which the log may be compacted now, at most `index`:
 * lower while a snapshot for followers is encoded, and for a reachable
 * follower that still needs entries (one receiving a snapshot, or one a
 * little behind), within RN_SPARE_PERIODS snapshot periods
 * (raft_node_snap.c). */
uint64_t rn__compact_limit(struct rn *rn, uint64_t index);
/* raft_io callbacks (raft_node_snap.c). */
int  rn__snapshot_get(void *arg, uint64_t *index, uint64_t *term, const void **data,
		      size_t *len);
int  rn__snapshot_install(void *arg, uint64_t index, uint64_t term, const void *data,
			  size_t len);

#endif
