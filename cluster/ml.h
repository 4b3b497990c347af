/*
 * ml.h — the masterless replication core: per-key version vectors and hybrid
 * logical timestamps, last-writer-wins conflict resolution, Merkle-style
 * digests of the key space, the anti-entropy protocol, eager push of local
 * writes and tombstone collection.
 *
 * The core is pure: it never touches sockets, files, clocks or randomness.
 * Everything comes in through struct ml_io (send a frame, read the time, draw
 * a random number, and a small view of the local store). A libuv backend
 * (cluster/ml_node.c) runs it for real over the peer transport and the kvfs
 * store; tests/lib/ml_sim.c runs several in one process on a simulated
 * network with simulated time.
 *
 * Model (Dynamo, DeCandia et al. 2007; Riak; Cassandra):
 *  - Every node accepts writes. A local write makes a new version of the key
 *    whose vector clock is the current local one with the writer's own entry
 *    advanced (cluster/vclock.h explains the choice of clock), stamped with a
 *    hybrid logical timestamp (cluster/hlc.h) and the writer's id.
 *  - Resolution (ml_resolve): a version whose clock dominates wins; for
 *    concurrent versions the larger (timestamp, origin id) wins, and the
 *    winner takes the MERGE of both clocks, so it dominates both and every
 *    node ends with the same value and the same clock. The loser is counted
 *    (stats.conflicts) because last-writer-wins drops it by design.
 *  - Deletes are versions with ML_V_TOMBSTONE. A tombstone is collected only
 *    once every node is known to hold it durably and every node is known to
 *    know that (two rounds of acknowledgements, see ml.c), so a replica that
 *    was partitioned away can never bring the deleted value back.
 *  - Anti-entropy: every gossip period a node picks a random live peer and
 *    they compare a two-level hash tree over 4096 key-hash buckets (root ->
 *    64 groups -> 64 leaves each), descend only into differing buckets and
 *    exchange only differing versions. Every message is capped in bytes and
 *    keys, so the bandwidth of a round is bounded whatever the divergence.
 *  - Local writes are also pushed eagerly to every peer once durable, the
 *    versions of one local write (one store position) in one frame, so a
 *    receiver that applies a frame at once shows the write whole.
 *
 * Threads: none. Every function must be called from one thread (the node's
 * loop), and every io callback is invoked from inside an ml_ call.
 *
 * Errors: 0 or a negative errno.
 */
#ifndef KVFS_ML_H
#define KVFS_ML_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/vclock.h"

typedef struct ml ml;

#define ML_MAX_NODES VCLOCK_MAX_NODES

/* Flags of a version. Equal to KV_F_TOMBSTONE on purpose (store/store.h). */
#define ML_V_TOMBSTONE 0x1u

/* Frame types on the peer transport (cluster/peer.h carries a uint16 type).
 * 'M' << 8 keeps them apart from the Raft types (1..11). */
enum ml_msg_type {
	ML_MSG_PUSH   = 0x4D01, /* versions (eager push, anti-entropy transfer) */
	ML_MSG_ROOT   = 0x4D02, /* start of an anti-entropy round: group hashes */
	ML_MSG_LEAVES = 0x4D03, /* leaf hashes of differing groups */
	ML_MSG_KEYS   = 0x4D04, /* (key, version hash) lists of differing leaves */
	ML_MSG_WANT   = 0x4D05, /* keys whose versions the sender wants */
	ML_MSG_TOMB   = 0x4D06, /* tombstone acknowledgements */
};
#define ML_MSG_FIRST ML_MSG_PUSH
#define ML_MSG_LAST  ML_MSG_TOMB

/* One version of one key as the store view holds it. Pointers are borrowed. */
struct ml_version {
	uint32_t    flags;    /* ML_V_TOMBSTONE */
	const void *val;      /* value bytes (empty for a tombstone) */
	uint32_t    vlen;
	const void *meta;     /* opaque per-version metadata, replicated as is
	                         (kvfs: the encoded struct kv_meta) */
	uint32_t    mlen;
	const void *ext;      /* replication metadata, ml_ext_encode() form */
	uint32_t    ext_len;
};

/*
 * The replication metadata of a version, persisted with it (kvfs: kv_op.ext,
 * at most KV_EXT_MAX bytes; this encoding needs at most ML_EXT_MAX):
 *   off size
 *    0  1    format, ML_EXT_FORMAT (1)
 *    1  1    flags: bit 0 = tombstone (a copy of the version's flag, so that
 *            the blob alone tells a tombstone); other bits 0
 *    2  var  origin: LEB128 id of the node whose write this version is
 *    .  var  ts: LEB128 hybrid logical timestamp of that write (hlc.h)
 *    .  var  clock: vclock_encode(clock, base = ts) (vclock.h)
 * Nothing may follow. (origin, ts) identifies the write: hybrid timestamps
 * of one node never repeat.
 */
#define ML_EXT_FORMAT 1
#define ML_EXT_MAX    (2 + 10 + 10 + VCLOCK_ENCODED_MAX)

struct ml_ext {
	uint32_t      flags;  /* ML_V_TOMBSTONE */
	uint32_t      origin;
	uint64_t      ts;
	struct vclock clock;
};
/* Returns bytes written or -ENOSPC. */
int ml_ext_encode(const struct ml_ext *x, uint8_t *buf, size_t cap);
/* Returns 0 or -EBADMSG. */
int ml_ext_decode(const void *buf, size_t len, struct ml_ext *x);

/*
 * Resolution of two versions of one key, given their ext. Returns which one
 * survives: 0 = a, 1 = b, and fills *merged with the survivor's ext carrying
 * the merged clock. *concurrent is set when neither clock dominated and the
 * two are different writes (a dropped write: a conflict).
 * Pure and symmetric: ml_resolve(a, b) and ml_resolve(b, a) pick the same
 * write and the same merged clock.
 */
int ml_resolve(const struct ml_ext *a, const struct ml_ext *b,
	       struct ml_ext *merged, int *concurrent);

typedef int (*ml_scan_fn)(void *arg, const char *key, size_t klen, const struct ml_version *v);

struct ml_io {
	void *ctx;
	/* Sends one frame to node `to` (never self). Best effort: the core does
	 * not care whether it arrives; an error is counted and ignored. `buf` is
	 * valid during the call only. */
	int      (*send)(void *ctx, unsigned to, uint16_t type, const void *buf, size_t len);
	/* Wall-clock milliseconds (the physical part of the HLC). */
	uint64_t (*now_ms)(void *ctx);
	/* 64 random bits. */
	uint64_t (*random)(void *ctx);

	/* ---- The local store view. ---- */
	/* Current version of key, tombstones included: 0 and *ref to pass to
	 * release(), or -ENOENT. The version stays valid until release(). */
	int      (*get)(void *ctx, const char *key, size_t klen, struct ml_version *out, void **ref);
	void     (*release)(void *ctx, void *ref);
	/* Replaces the key's version. Must be visible to get() when it returns;
	 * durability may come later: *seq is a position that durable() reaches
	 * once this put (and every earlier one) is on stable storage.
	 * kvfs: store_submit() of one KV_PUT with flags and ext. */
	int      (*put)(void *ctx, const char *key, size_t klen, const struct ml_version *v,
			uint64_t *seq);
	/* Removes a collected tombstone (kvfs: KV_DEL). Durability not needed:
	 * a tombstone that reappears after a crash is simply collected again. */
	int      (*purge)(void *ctx, const char *key, size_t klen);
	/* The largest seq known durable. */
	uint64_t (*durable)(void *ctx);
	/* Visits every version (tombstones included) once, at ml_new(). */
	int      (*scan)(void *ctx, ml_scan_fn fn, void *arg);
	/* Persists a clock floor: a timestamp this node issued or observed, so
	 * that after a restart its clock starts above it. Ordered with put()
	 * and purge(): once durable() reaches *seq it is on stable storage. The
	 * core saves one at start (its incarnation, which is stored nowhere
	 * else; it sends nothing until that is durable) and before collecting
	 * a tombstone whose timestamp no saved floor covers (every other
	 * timestamp survives in some stored version). The largest floor saved
	 * comes back as ml_config.hlc_floor. Optional: with NULL, a restart
	 * trusts the stored versions and the wall clock only. kvfs: an opaque
	 * store record (store_submit_raw) read back by the replay callback. */
	int      (*save_floor)(void *ctx, uint64_t floor, uint64_t *seq);
	/* Optional: two concurrent writes of key met here and last-writer-wins
	 * kept one (counted in stats.conflicts as well), for the operator's
	 * log. kvfs: a rate-limited log line. */
	void     (*conflict)(void *ctx, const char *key, size_t klen, const struct ml_ext *kept,
			     const struct ml_ext *lost);
};

struct ml_config {
	unsigned self;             /* this node's id, < n */
	unsigned n;                /* nodes in the cluster, 1..ML_MAX_NODES */
	uint32_t gossip_ms;        /* anti-entropy period; 0 = 200 */
	uint32_t tomb_ms;          /* tombstone acknowledgement period; 0 = 250 */
	uint32_t live_ms;          /* a peer heard from within this is live; 0 = 3000 */
	uint32_t max_msg_bytes;    /* soft cap per message; 0 = 256 KiB (one version
	                              larger than that travels alone) */
	uint32_t max_keys_msg;     /* keys per message; 0 = 8192. With 256 KiB, a
	                              KEYS frame lists 8192 keys of up to ~20
	                              bytes: catch-up is bound by how many keys a
	                              round lists (4096 leaves hold ~65 keys each
	                              at 267k keys) */
	uint32_t max_drift_ms;     /* count remote timestamps further ahead; 0 = 60000 */
	uint32_t max_frame_bytes;  /* hard cap per PUSH frame (the transport's limit);
	                              0 = none. The eager push carries the versions
	                              of one local write in one frame, past
	                              max_msg_bytes if need be, so that replicas
	                              apply them together; only a write larger than
	                              this is split over frames (batches_split) */
	uint64_t hlc_floor;        /* the largest floor ever passed to io->save_floor, or 0 */
};

struct ml_stats {
	uint64_t hlc;               /* the node's clock (last timestamp) */
	uint64_t incarnation;
	uint64_t keys;              /* indexed versions, tombstones included */
	uint64_t tombstones;        /* tombstones not yet collected */
	uint64_t pending_push;      /* local writes not yet pushed */
	uint64_t live_peers;        /* bitmask of peers considered live */
	uint64_t local_writes;
	uint64_t conflicts;         /* concurrent versions dropped by LWW here */
	uint64_t versions_recv;     /* versions received in PUSH frames */
	uint64_t versions_applied;  /* ... that changed the local version */
	uint64_t versions_stale;    /* ... that were dominated or equal */
	uint64_t tombstones_collected;
	uint64_t ae_rounds;         /* rounds started by this node */
	uint64_t ae_in_sync;        /* ROOT frames whose digest matched ours */
	uint64_t ae_diff_leaves;    /* differing leaves seen (all rounds) */
	uint64_t msgs_sent, bytes_sent, send_errors;
	uint64_t msgs_recv, bytes_recv;
	uint64_t msgs_dropped;      /* stale PUSH/TOMB frames (see ml.c, ordering) */
	uint64_t bad_msgs;          /* frames that failed to decode */
	uint64_t bad_versions;      /* stored or received versions with a bad ext */
	uint64_t clock_ahead;       /* remote timestamps (and frames of incarnations) beyond max_drift_ms */
	uint64_t io_errors;         /* failed put/purge/get/save_floor */
	uint64_t send_gated;        /* frames not sent while the incarnation was not durable */
	uint64_t batches_split;     /* local writes too large for one frame, pushed in pieces */
	uint64_t push_unheld;       /* pushes that stopped waiting for a newer local write
	                               to one of their keys (ML_PUSH_HOLD_MS) */
};

/* Builds the core: scans the store view (indexing every version and starting
 * the HLC above every stored timestamp and cfg->hlc_floor) and draws an
 * incarnation, which it saves as a floor: the node sends nothing until that
 * is durable, so incarnations only grow. `io` is copied. Returns 0, -EINVAL
 * (bad config), -ENOMEM or a scan/save error. */
int  ml_new(const struct ml_config *cfg, const struct ml_io *io, ml **out);
void ml_free(ml *m);

/* A local write (tombstone != 0: a delete; val/vlen ignored). Resolves the
 * new version against the current one, writes it through io->put and queues
 * it for an eager push once durable. *ts_out (may be NULL) receives its
 * timestamp. Returns 0, -EINVAL, -ENOMEM or the put error. */
int  ml_local_write(ml *m, const char *key, size_t klen, const void *val, uint32_t vlen,
		    const void *meta, uint32_t mlen, int tombstone, uint64_t *ts_out);

/* A frame from node `from`. Malformed frames are counted and ignored (0 is
 * returned); errors are -EINVAL (bad sender or type) and -ENOMEM. */
int  ml_receive(ml *m, unsigned from, uint16_t type, const void *buf, size_t len);

/* The number of versions a PUSH frame says it carries (0 for another type
 * or a frame that does not decode): lets a backend that applies one frame
 * in one store batch make room for all of them before ml_receive(). */
uint64_t ml_push_count(uint16_t type, const void *buf, size_t len);

/* Runs due timers (anti-entropy round, tombstone acks) and pushes durable
 * local writes. Call it often (every 10-50 ms) and after durability advances. */
void ml_tick(ml *m);

/* Pushes local writes that have become durable (cheap; no timers). */
void ml_flush(ml *m);

/* Liveness hint from the transport (connection up/down). Optional: a frame
 * received also marks its sender live. */
void ml_peer_state(ml *m, unsigned id, int up);

void ml_get_stats(const ml *m, struct ml_stats *out);

/* Root hash of the digest (equal on replicas holding equal versions, with
 * tombstones acknowledged by everyone left out). For tests and status. */
uint64_t ml_digest_root(const ml *m);

#endif
