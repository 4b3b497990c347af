/*
 * store.h — the kvfs storage engine: a write-ahead log, an ordered in-memory
 * map, snapshots and crash recovery, behind one opaque handle.
 *
 * Model: every change is a batch of operations. A batch is encoded as ONE
 * write-ahead-log record, so it is applied all-or-nothing, also across a crash.
 * A batch is acknowledged (its completion callback runs with status 0) only
 * after an fdatasync that covers its record has returned success. Batches
 * submitted while a sync is in flight share the next sync (group commit).
 *
 * Threads: every function here is thread-safe unless it says otherwise.
 * Reads (store_get, store_next, store_scan) run concurrently with each other
 * and are serialised against the (short) apply step only. Completion callbacks
 * run on one of the store's two internal committer threads — or on a thread
 * blocked in store_write() that performed the covering sync itself
 * (leader/follower group commit, as in LevelDB, saves a thread hand-off per
 * sync), one sync group after the other in lsn order: they must not block
 * and must not call store_write().
 *
 * Errors: functions return 0 or a negative errno. After a failed write, sync or
 * snapshot the store enters a sticky failed state: every later write fails with
 * the same error (a failed fsync is never retried as if it could succeed);
 * reads of already-applied data keep working.
 *
 * Directory layout (formats in store/wal.h and store/snap.h):
 *   wal-<first lsn>.log   log segments, rotated at segment_bytes
 *   snap-<lsn>.snap       snapshots: the map after record <lsn>, plus the
 *                         application state; the two newest are kept
 *   snap-<lsn>.tmp        a snapshot being written; removed at open
 * Log segments are deleted once the OLDER of the two kept snapshots covers
 * them (and store_pin_log allows), so a corrupt newest snapshot can fall
 * back to the previous one plus the log.
 */
#ifndef KVFS_STORE_H
#define KVFS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/kvio.h"

/* Limits, enforced by store_submit() with the errno in brackets. */
#define KV_KEY_MAX   4095u              /* bytes in a key [ENAMETOOLONG] */
#define KV_NAME_MAX  255u               /* bytes in one '/'-separated component [ENAMETOOLONG] */
#define KV_VALUE_MAX (128u * 1024 * 1024) /* bytes in one value [EFBIG] */
#define KV_EXT_MAX   4096u              /* bytes of replication metadata per key [EINVAL] */
#define KV_BATCH_MAX (1u << 20)         /* operations in one batch [E2BIG] */

typedef struct store store;

/* Per-key metadata kept with every version, persisted in the log and snapshots. */
struct kv_meta {
	uint32_t mode;     /* st_mode including the type bits (S_IFREG, S_IFDIR, S_IFLNK) */
	uint32_t uid;
	uint32_t gid;
	int64_t  mtime_ns; /* nanoseconds since the epoch */
	int64_t  ctime_ns;
};

/* Flags of a stored record. */
#define KV_F_TOMBSTONE 0x1u /* a deletion marker (masterless mode); hidden from
                               store_get/store_next/store_scan unless asked for */

/*
 * An immutable, reference-counted stored version of one key. Obtained from
 * store_get()/store_next() with one reference owned by the caller; release it
 * with kv_rec_unref(). Its contents never change; a later write to the same
 * key makes a new record.
 */
typedef struct kv_rec kv_rec;

const char    *kv_rec_key(const kv_rec *r, size_t *klen); /* key bytes (not NUL-terminated) */
const void    *kv_rec_value(const kv_rec *r);  /* value bytes (not NUL-terminated) */
size_t         kv_rec_size(const kv_rec *r);   /* value length */
const struct kv_meta *kv_rec_meta(const kv_rec *r);
uint64_t       kv_rec_version(const kv_rec *r); /* LSN/index of the write that made it; grows per key */
uint32_t       kv_rec_flags(const kv_rec *r);
const void    *kv_rec_ext(const kv_rec *r, size_t *len); /* replication metadata (vector clock...) */
void           kv_rec_ref(kv_rec *r);
void           kv_rec_unref(kv_rec *r);

/* One operation of a batch. Pointers are borrowed for the duration of the call. */
enum kv_op_kind {
	KV_PUT  = 1, /* set value + meta (+ ext, flags) of key, creating it if missing */
	KV_DEL  = 2, /* remove key (no-op when missing) */
	KV_META = 3, /* replace meta (and ext) of an existing key, keep its value (no-op when missing) */
};

struct kv_op {
	uint8_t        kind;     /* enum kv_op_kind */
	uint32_t       flags;    /* KV_F_* for KV_PUT */
	const char    *key;
	uint32_t       klen;
	const void    *val;      /* KV_PUT */
	uint32_t       vlen;
	struct kv_meta meta;     /* KV_PUT, KV_META */
	const void    *ext;      /* optional replication metadata, KV_PUT and KV_META */
	uint32_t       ext_len;
};

struct kv_batch {
	const struct kv_op *ops;
	uint32_t            n;
};

/*
 * Batch encoding, shared with the replication layers (a Raft entry carries an
 * encoded batch). The format is documented in store/batch.h.
 * kv_batch_encode: *out is malloc'd, caller frees.
 * kv_batch_decode: fills ops pointing INTO buf (buf must outlive ops); *ops is
 * malloc'd, caller frees. Returns -EBADMSG on malformed input.
 */
int kv_batch_encode(const struct kv_batch *b, void **out, size_t *outlen);
int kv_batch_decode(const void *buf, size_t len, struct kv_op **ops, uint32_t *n);

/* Applied-change hook: called for every applied operation, in log order, while
 * the map's write lock is held (so it is atomic with visibility). `old` and
 * `new` are borrowed (either may be NULL: create / delete). Must be quick and
 * must not call back into the store. Used by the search index and the FS cache
 * invalidation. After the operations of each batch it is called once more
 * with key NULL (and klen 0, old and new NULL): the batch is complete, which
 * lets a listener make a batch's changes visible together. Not called for
 * the state store_open() recovers (snapshot and log replay): scan the store
 * after opening for that. */
typedef void (*store_apply_hook)(void *arg, const char *key, size_t klen,
				 const kv_rec *old_rec, const kv_rec *new_rec);

/* Record types >= STORE_REC_USER are opaque records of the replication layer
 * (Raft entries, term/vote) that the store logs and replays but never applies. */
#define STORE_REC_USER 64

/* Replay of opaque records during store_open(), in log order. Returning non-zero
 * aborts the open with that error. */
typedef int (*store_replay_fn)(void *arg, uint8_t type, uint64_t lsn,
			       const void *payload, size_t len);

struct store_options {
	const struct kvio *io;         /* NULL: the real POSIX file system (kvio_posix()) */
	size_t   segment_bytes;        /* WAL segment size; 0 = 64 MiB */
	size_t   wal_prealloc;         /* zeros kept written ahead of the log's end, so a
	                                  sync need not change the file size (wal.h);
	                                  0 = 1 MiB, SIZE_MAX = none */
	size_t   snapshot_log_bytes;   /* snapshot when the log since the last one exceeds this; 0 = 256 MiB;
	                                  SIZE_MAX = never automatically */
	store_apply_hook apply_hook;   /* may be NULL; can also be set later with store_set_apply_hook */
	void    *apply_hook_arg;
	store_replay_fn replay;        /* may be NULL: opaque records are then skipped */
	void    *replay_arg;
	/* Application state saved in every snapshot, captured atomically with
	 * the map (under the apply lock: no batch is applied meanwhile). Writes
	 * at most cap bytes into buf and returns the full length; when that is
	 * more than cap it is called again with a buffer that large. May be NULL
	 * (no state). Must be quick and must not call back into the store. */
	size_t (*snap_state)(void *arg, void *buf, size_t cap);
	void    *snap_state_arg;
};

/* Opens (creating if needed) the store in directory `dir`: loads the newest
 * valid snapshot, replays the log after it, truncates a torn tail. A corrupt
 * record before the tail fails with -EUCLEAN and a log line naming file and
 * offset. *out is set only on success. */
int  store_open(const char *dir, const struct store_options *opt, store **out);

/* Flushes nothing (everything acknowledged is already durable), stops the
 * committer thread after completing or failing every pending batch, frees. */
void store_close(store *st);

/* ---- Writes -------------------------------------------------------------- */

/* Completion of a submitted batch: status 0 = durable (and applied, unless
 * STORE_NO_APPLY), or a negative errno. `lsn` is the batch's log position. */
typedef void (*store_done_fn)(void *arg, int status, uint64_t lsn);

#define STORE_NO_APPLY 0x1u /* log durably but do not apply to the map */
#define STORE_LATER    0x2u /* start no sync for it yet: the submitter calls
                               store_kick() once it has submitted a burst
                               (all requests one event-loop iteration read),
                               so the whole burst shares one sync instead of
                               the first batch starting a sync of its own */

/* Validates and appends the batch to the log now (in submission order, not yet
 * synced) and arranges for `done` to be called from the committer thread after
 * the covering fdatasync (and apply). On an immediate error (invalid batch,
 * sticky failure) returns it and `done` is NOT called. */
int  store_submit(store *st, const struct kv_batch *b, unsigned flags,
		  store_done_fn done, void *arg);

/* A batch encoded and checksummed as a log record: the costly part of
 * store_submit() (a copy of every value, a CRC over them), which needs no
 * store and may run on any thread (the writer's own, say, instead of an
 * event loop that serves everyone). store_prepare() validates like
 * store_submit() and returns its errors; on success out->rec is owned by
 * the caller until store_submit_prepared() takes it, which it does
 * whatever it returns, or store_prepared_free() frees it. */
struct store_prepared {
	void    *rec;
	size_t   len;
	uint32_t crc;
};
int  store_prepare(const struct kv_batch *b, struct store_prepared *out);
int  store_submit_prepared(store *st, struct store_prepared *p, unsigned flags,
			   store_done_fn done, void *arg);
void store_prepared_free(struct store_prepared *p);

/* Completion on the caller's own thread (an event loop, say). From now on,
 * a synced group of batches submitted with store_submit*() (none waiting in
 * store_write(), at most STORE_OWNER_GROUP_MAX bytes of records) is not
 * applied by the committer: it is left to the owner, and notify(arg) is
 * called (from a committer thread, possibly more often than needed) when
 * store_complete() has something to do. store_complete() applies those
 * groups in lsn order, then runs their `done` callbacks on the calling
 * thread, outside the store's locks. Bigger groups are still applied and
 * acknowledged on the committer, in order with the owner's: a callback may
 * thus run on either thread. notify NULL ends it; what was left is completed
 * before this returns. The point: on a machine where waking a thread is
 * dear, a group costs one hand-over (committer -> owner) instead of two. */
#define STORE_OWNER_GROUP_MAX (256u << 10) /* bigger: applied on the committer
                                               (values are copied into the map) */
void store_set_completer(store *st, void (*notify)(void *), void *arg);
void store_complete(store *st);

/* Releases every STORE_LATER batch submitted so far for syncing (the next
 * sync starts now, or when the one in flight ends). */
void store_kick(store *st);

/* store_kick() by the owner (store_set_completer), which syncs on its own
 * thread when it can: when no sync is in flight and the held batches are
 * small (STORE_OWNER_GROUP_MAX), it writes and syncs them itself, then
 * completes them (store_complete: callbacks on this thread before it
 * returns) and returns 1; else a committer syncs them as after store_kick()
 * and it returns 0. Redis's way with appendfsync always: the event loop
 * waits for the sync, and in exchange a write costs no thread hand-over at
 * all. On a 2-CPU VM where waking a thread costs tens of microseconds,
 * that is worth more than what the loop could do during the sync. */
int  store_kick_here(store *st);

/* Whether store_kick_here() would sync what is queued on the owner's
 * thread if called now: no sync in flight, and the queue fits the owner.
 * The owner asks before it holds its writes back for more to join them
 * (cluster/standalone.c): that only pays while it is the one to sync
 * them. Advisory: a sync may start or end right after. */
int  store_owner_may_sync(store *st);

/* Same for an opaque record of type >= STORE_REC_USER (never applied). */
int  store_submit_raw(store *st, uint8_t type, const void *payload, size_t len,
		      store_done_fn done, void *arg);

/* Blocking convenience: submit and wait for durability + apply. Do not call
 * from a completion callback. */
int  store_write(store *st, const struct kv_batch *b);

/* Applies a batch to the map WITHOUT logging it (the Raft commit path: the
 * batch is already durable inside a logged Raft entry). `version` becomes the
 * version of every record the batch writes. */
int  store_apply(store *st, const struct kv_batch *b, uint64_t version);

/* store_apply() without the KV_BATCH_MAX bound on the number of operations
 * (every other limit is checked), still atomic for readers: for the whole
 * state of a Raft leader installed as a snapshot. */
int  store_apply_large(store *st, const struct kv_batch *b, uint64_t version);

/* ---- Reads --------------------------------------------------------------- */

/* Looks up `key`. On success *out holds a new reference. -ENOENT when missing
 * (or a tombstone, unless `with_tombstones`). */
int  store_get(store *st, const char *key, size_t klen, int with_tombstones, kv_rec **out);

/* Looks up n keys at one point between applied batches (one hold of the
 * map's lock), so that a batch is seen whole or not at all (MGET):
 * out[i] is a new reference, or NULL when keys[i] (klens[i] bytes) is
 * missing or a tombstone. */
void store_get_many(store *st, size_t n, const char *const *keys, const size_t *klens,
		    kv_rec **out);

/* Finds the first key strictly greater than `after` (or the first key >= prefix
 * when after == NULL) that starts with `prefix` (plen may be 0). Copies the key
 * into keybuf (NUL-terminated, size must be > KV_KEY_MAX) and returns a
 * referenced record. -ENOENT when there is none. O(log n). */
int  store_next(store *st, const char *prefix, size_t plen,
		const char *after, size_t alen, int with_tombstones,
		char *keybuf, size_t *klen, kv_rec **out);

/* 0 when certainly no key (tombstones included) starts with key + '/', 1
 * when one may: a constant-time filter to call before store_next() when
 * asking whether key is a directory of the tree of keys. */
int  store_maybe_dir(store *st, const char *key, size_t klen);

/* Visits keys starting with prefix, in order, starting after `after` (may be
 * NULL), under the read lock: the callback must be quick and must not call back
 * into the store. It returns 0 to continue, non-zero to stop (returned). */
typedef int (*store_scan_fn)(void *arg, const char *key, size_t klen, const kv_rec *r);
int  store_scan(store *st, const char *prefix, size_t plen, const char *after, size_t alen,
		int with_tombstones, store_scan_fn fn, void *arg);

/* ---- Maintenance and introspection --------------------------------------- */

void store_set_apply_hook(store *st, store_apply_hook fn, void *arg);

/* Takes a snapshot now (normally automatic). Writes continue meanwhile except
 * for a short copy step. -EBUSY while snapshots are held. */
int  store_snapshot(store *st);

/* Holds off every snapshot, automatic or asked for, until the matching
 * store_release_snapshots(): for an upper layer whose snap_state and map
 * are about to disagree for a while (Raft installing a leader's state
 * before its RESET record is durable). Waits for a snapshot being written;
 * store_snapshot() fails with -EBUSY meanwhile. Holds nest. */
void store_hold_snapshots(store *st);
void store_release_snapshots(store *st);

/* Upper layers that keep opaque records (Raft's log) pin the log: no segment
 * holding a record with lsn >= pin is deleted by a snapshot. 0 = no pin. */
void store_pin_log(store *st, uint64_t pin_lsn);

struct store_stats {
	uint64_t keys;           /* live keys (tombstones excluded) */
	uint64_t tombstones;
	uint64_t last_lsn;       /* last appended */
	uint64_t durable_lsn;    /* last covered by a successful sync */
	uint64_t applied_lsn;
	uint64_t syncs;          /* fdatasync calls made on the log since open */
	uint64_t records;        /* records appended since open */
	uint64_t log_bytes;      /* bytes of log since the last snapshot */
	uint64_t snapshots;      /* snapshots taken since open */
	int      failed;         /* sticky error (negative errno) or 0 */
	uint64_t snapshot_lsn;   /* lsn of the newest snapshot (loaded at open or taken since), 0 = none */
};
void store_get_stats(store *st, struct store_stats *out);

/* The sticky error, or 0. */
int  store_failed(store *st);

/* The application state (see store_options.snap_state) of the snapshot that
 * store_open() loaded, and that snapshot's lsn (the last log record it
 * contains; 0 and *len 0 when the store was opened without a snapshot).
 * Records with lsn > *lsn were replayed from the log after it. *ptr stays
 * valid until store_close(). */
void store_snapshot_state(store *st, const void **ptr, size_t *len, uint64_t *lsn);

/* The lsn up to which every log record has been processed: batches applied
 * to the map, opaque and STORE_NO_APPLY records completed. After open: the
 * last record recovered. A snapshot taken now would carry this lsn. */
uint64_t store_applied_lsn(store *st);

#endif
