/*
 * raft.h — a pure Raft core (Ongaro & Ousterhout 2014, "In Search of an
 * Understandable Consensus Algorithm", and Ongaro's thesis 2014).
 *
 * The core does no I/O. Disk, network, time and randomness are reached through
 * one vtable, struct raft_io, in the manner of canonical/raft's raft_io. The
 * real backend (cluster/raft_node.c) maps it onto the store's WAL and the peer
 * transport; the simulation fixture (tests/lib/raft_sim.c) maps it onto an
 * in-memory disk that loses unsynced writes, a lossy network and a logical
 * clock.
 *
 * Implemented: randomized election timeouts, pre-vote (thesis §9.6),
 * check-quorum and vote leases (thesis §4.2.3, §6.2), log matching with
 * conflict truncation, commitment of current-term entries by counting (a no-op
 * at the start of each term, thesis §6.4), asynchronous persistence of entries
 * with the leader counting its own entries only once durable (thesis §10.2.1),
 * snapshots, log compaction and InstallSnapshot (thesis §5), ReadIndex for
 * linearizable reads on the leader and through followers (thesis §6.4).
 * Snapshots travel in chunks of cfg.max_snapshot_chunk bytes, one in flight
 * per follower; the leader sends from its own copy, so the io may move on to
 * newer snapshots meanwhile.
 * Leadership transfer (thesis §3.10) with raft_transfer(). A leader pushes
 * each commit to followers at once (COMMIT notices); with cfg.defer_sends
 * the proposals and notices of one event-loop iteration go out together at
 * raft_flush().
 * Not implemented: membership changes (members are ids 1..n, fixed).
 *
 * Durability contract: an entry is acknowledged to a leader, or counted by a
 * leader for itself, only once io->append() reported it durable; it is
 * applied only once it is committed AND durable locally (applied <= durable
 * index always), so a snapshot of the applied state never runs ahead of the
 * stored log.
 *
 * Threads: none. Every function must be called from one thread, and the io
 * callbacks are called from inside the core's functions: a callback must NOT
 * call back into the core (queue the work instead).
 *
 * Errors: functions return 0 or a negative errno. After a failed persist the
 * core enters a sticky failed state (it never retries a failed sync): it stops
 * sending and every later call fails with -EIO.
 */
#ifndef KVFS_RAFT_H
#define KVFS_RAFT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

typedef struct raft raft;

#define RAFT_MAX_NODES 15u

/* Not the leader: raft_leader() gives a hint (0 = unknown). */
#define RAFT_ENOTLEADER (-EREMOTE)

/* io->snapshot_install did not install the snapshot and changed nothing. */
#define RAFT_EREFUSED (-EAGAIN)

enum raft_role {
	RAFT_FOLLOWER     = 1,
	RAFT_PRECANDIDATE = 2,
	RAFT_CANDIDATE    = 3,
	RAFT_LEADER       = 4,
};

enum raft_entry_type {
	RAFT_ENTRY_NOOP = 1, /* appended by every new leader (thesis §6.4) */
	RAFT_ENTRY_DATA = 2, /* a client proposal */
};

/* A log entry. Its index is implied by its position. Entries passed to the io
 * are borrowed for the duration of the callback. */
struct raft_entry {
	uint64_t term;
	uint8_t  type;
	uint32_t len;
	void    *data;
};

enum raft_msg_type {
	RAFT_MSG_APPEND         = 1,  /* AppendEntries */
	RAFT_MSG_APPEND_RESP    = 2,  /* also answers SNAPSHOT */
	RAFT_MSG_HEARTBEAT      = 3,  /* commit + round number, no log check (etcd style) */
	RAFT_MSG_HEARTBEAT_RESP = 4,
	RAFT_MSG_VOTE           = 5,  /* RequestVote */
	RAFT_MSG_VOTE_RESP      = 6,
	RAFT_MSG_PREVOTE        = 7,  /* term = candidate's term + 1, nobody changes term */
	RAFT_MSG_PREVOTE_RESP   = 8,
	RAFT_MSG_SNAPSHOT       = 9,  /* InstallSnapshot, one chunk */
	RAFT_MSG_READ           = 10, /* follower asks the leader for a read index */
	RAFT_MSG_READ_RESP      = 11,
	RAFT_MSG_COMMIT         = 12, /* leader's commit index for a follower known to hold it;
	                                 not answered */
	RAFT_MSG_SNAPSHOT_RESP  = 13, /* a chunk of a snapshot arrived; the last one is
	                                 answered with APPEND_RESP */
	RAFT_MSG_TIMEOUT_NOW    = 14, /* leader transfer: start an election now */
	RAFT_MSG_TYPE_MAX       = 14,
};

/*
 * One message. Field use by type:
 *   index     APPEND: prevLogIndex; APPEND_RESP: matched index on success, the
 *             rejected prevLogIndex on reject; (PRE)VOTE: lastLogIndex;
 *             SNAPSHOT, SNAPSHOT_RESP: lastIncludedIndex; READ, READ_RESP: the
 *             read's id
 *   log_term  APPEND: prevLogTerm; (PRE)VOTE: lastLogTerm; SNAPSHOT: lastIncludedTerm;
 *             APPEND_RESP on reject: the follower's term at `hint`
 *   commit    APPEND, HEARTBEAT, COMMIT: leaderCommit; READ_RESP: the read index
 *   hint      APPEND_RESP on reject: the follower's guess of the last index
 *             that may match; SNAPSHOT: the snapshot's total size in bytes
 *   seq       HEARTBEAT and its response: the leader's round (ReadIndex);
 *             VOTE: 1 = the election was asked for by the leader (transfer),
 *             so voters disregard their leader lease;
 *             SNAPSHOT: offset of this chunk; SNAPSHOT_RESP: bytes received
 *   reject    responses: 1 = rejected / not granted
 */
struct raft_msg {
	uint8_t  type;
	uint8_t  reject;
	uint32_t from, to;
	uint64_t term;
	uint64_t index;
	uint64_t log_term;
	uint64_t commit;
	uint64_t hint;
	uint64_t seq;
	uint32_t nentries;
	const struct raft_entry *entries; /* APPEND */
	const void *data;                 /* SNAPSHOT: this chunk */
	size_t   len;
};

/*
 * Wire format (raft_msg.c), all integers unsigned LEB128 varints:
 *   u8 magic 0xd2  u8 version (1)  u8 type  u8 reject
 *   from to term index log_term commit hint seq nentries
 *   nentries x { term  u8 type  len  len bytes }
 *   data_len  data_len bytes
 * Decoding checks every length against the frame and rejects trailing bytes.
 */
#define RAFT_MSG_MAGIC   0xd2u
#define RAFT_MSG_VERSION 1u

/* *out is malloc'd; the caller frees it. */
int  raft_msg_encode(const struct raft_msg *m, void **out, size_t *outlen);
/* Fills *m with pointers INTO buf (buf must outlive m); entries are malloc'd:
 * release with raft_msg_release(). -EBADMSG on a malformed frame. */
int  raft_msg_decode(const void *buf, size_t len, struct raft_msg *m);
void raft_msg_release(struct raft_msg *m);
const char *raft_msg_type_name(uint8_t type);
const char *raft_role_name(enum raft_role role);

struct raft_io {
	void *arg;
	/* Monotonic milliseconds. */
	uint64_t (*now)(void *arg);
	/* 64 random bits. */
	uint64_t (*random)(void *arg);
	/* Sends m to node m->to, best effort (may be lost, delayed, duplicated).
	 * m and what it points to are borrowed for the call: encode or copy. */
	void (*send)(void *arg, const struct raft_msg *m);
	/* Persists currentTerm and votedFor (0 = none). SYNCHRONOUS: returns 0 only
	 * once both are durable, because the core sends replies that depend on
	 * them right after the call. Called rarely (elections). */
	int  (*persist_vote)(void *arg, uint64_t term, uint32_t vote);
	/* Starts persisting entries first..first+n-1, replacing every stored entry
	 * with index >= first (a conflict truncation when first <= the last stored
	 * index). ASYNCHRONOUS: the io calls raft_append_done() exactly once per
	 * call, in call order, after the entries are durable (or failed). The
	 * entries are borrowed for the call: copy them. */
	void (*append)(void *arg, uint64_t first, const struct raft_entry *e, size_t n);
	/* Applies committed entry `index` (NOOPs included), in index order, once,
	 * and only once the entry is durable on this node too. Returns 0, or a
	 * negative errno when this replica cannot apply it: the core then stops
	 * applying, leading and campaigning (a leader steps down at its next
	 * tick, so the others elect a new one instead of a leader heartbeating
	 * on while it refuses every write), but keeps storing, acknowledging
	 * and voting, as its log is sound. */
	int  (*apply)(void *arg, uint64_t index, const struct raft_entry *e);
	/* Returns the newest durable snapshot of the state machine (index, term and
	 * bytes, borrowed for the call: the core copies them), or -ENOENT. Any
	 * applied state will do. Used to bring a follower up whose next entry was
	 * compacted away; called once per transfer, not per chunk. */
	int  (*snapshot_get)(void *arg, uint64_t *index, uint64_t *term,
			     const void **data, size_t *len);
	/* Replaces the state machine with a snapshot received from the leader and
	 * durably discards every stored log entry (the log restarts after
	 * `index`). SYNCHRONOUS: 0 once durable. Appends issued before the call
	 * still complete with raft_append_done(), but their entries are void.
	 * RAFT_EREFUSED: the snapshot was refused before anything changed (its
	 * data does not decode, memory ran out); the core carries on as before
	 * and the leader sends the snapshot again after its stall timeout. Any
	 * other error means the state may be half replaced: the core fails. */
	int  (*snapshot_install)(void *arg, uint64_t index, uint64_t term,
				 const void *data, size_t len);
	/* A read from raft_read_index() is ready: the state machine has applied
	 * at least `index` and may be read (status 0), or it failed (status < 0,
	 * index 0): -ECANCELED on a leadership change, RAFT_ENOTLEADER. */
	void (*read_done)(void *arg, uint64_t id, int status, uint64_t index);
	/* Optional (may be NULL): role, term or leader changed. */
	void (*state_change)(void *arg, enum raft_role role, uint64_t term, uint32_t leader);
	/* Optional (may be NULL): a line for the operator's log about something
	 * the core refused or gave up (a snapshot transfer it could not buffer). */
	void (*warn)(void *arg, const char *msg);
};

struct raft_config {
	uint32_t id;                  /* this node, 1..n */
	uint32_t n;                   /* members are 1..n, n <= RAFT_MAX_NODES */
	unsigned election_timeout_ms; /* T: elections start after a random time in [T, 2T) */
	unsigned heartbeat_ms;        /* leader heartbeat period, well below T */
	unsigned max_append_entries;  /* entries per AppendEntries; 0 = 64 */
	size_t   max_append_bytes;    /* payload bytes per AppendEntries; 0 = 1 MiB */
	unsigned max_inflight;        /* entries sent but unacknowledged per follower; 0 = 4096 */
	size_t   max_snapshot_chunk;  /* snapshot bytes per message; 0 = 4 MiB */
	unsigned snapshot_trailing;   /* entries kept in the log below a snapshot */
	/* 0: proposals and commit notices are sent at once (one AppendEntries
	 * per proposal and follower). 1: they wait for raft_flush(), which the
	 * runtime calls once per event-loop iteration, so that every proposal
	 * of the iteration shares one AppendEntries per follower and every
	 * commit one notice. */
	int      defer_sends;
	int      disable_prevote;     /* tests only */
	int      disable_check_quorum;/* tests only */
};

/* Durable state to start from (all zero for a new node). The state machine
 * must already be at the snapshot; entries are those stored after snap_index,
 * contiguous (copied by raft_new). */
struct raft_boot {
	uint64_t term;
	uint32_t vote;
	uint64_t snap_index, snap_term;
	const struct raft_entry *entries;
	size_t   nentries;
};

int  raft_new(const struct raft_config *cfg, const struct raft_io *io,
	      const struct raft_boot *boot, raft **out);
void raft_free(raft *r);

/* Time: raft_deadline() is the io time at which the core next wants
 * raft_tick() (UINT64_MAX: never, the core has failed); calling raft_tick()
 * earlier is harmless. */
uint64_t raft_deadline(const raft *r);
int  raft_tick(raft *r);

/* A message from the network (borrowed for the call). */
int  raft_recv(raft *r, const struct raft_msg *m);

/* The oldest outstanding io->append() finished: status 0 = durable. */
int  raft_append_done(raft *r, int status);

/* With cfg.defer_sends: sends the AppendEntries and commit notices that
 * proposals, acknowledgements and commits of the current iteration asked
 * for. Harmless otherwise and on followers. */
void raft_flush(raft *r);

/* Leader only: appends a DATA entry; *index and *term identify it. It is
 * committed when io->apply() is called for *index with term *term; if apply
 * shows another term at *index, the proposal was lost (leader changed).
 * RAFT_ENOTLEADER elsewhere. */
int  raft_propose(raft *r, const void *data, size_t len, uint64_t *index, uint64_t *term);

/* Leader only: hands leadership to `to` (thesis §3.10): proposals fail with
 * -EBUSY meanwhile; `to` is brought up to date, then told to start an
 * election at once (its vote requests override the other nodes' leader
 * lease). Abandoned after an election timeout. -EINVAL for a bad id or self,
 * RAFT_ENOTLEADER on a follower. Useful before a planned shutdown. */
int  raft_transfer(raft *r, uint32_t to);

/* Starts a linearizable read (ReadIndex, thesis §6.4); io->read_done(id) is
 * called exactly once, unless this returns an error. Ids are the caller's. */
int  raft_read_index(raft *r, uint64_t id);

/* The io has durably saved a snapshot of the state machine as of applied index
 * `index` (<= raft_applied()); the core compacts its log up to
 * index - snapshot_trailing. -EINVAL when index > applied. */
int  raft_snapshot_taken(raft *r, uint64_t index);

/* Introspection. */
enum raft_role raft_role(const raft *r);
uint64_t raft_term(const raft *r);
uint32_t raft_vote(const raft *r);
uint32_t raft_leader(const raft *r);        /* 0 = unknown */
uint32_t raft_id(const raft *r);
uint64_t raft_commit(const raft *r);
uint64_t raft_applied(const raft *r);
uint64_t raft_last_index(const raft *r);
uint64_t raft_durable_index(const raft *r);
uint64_t raft_first_index(const raft *r);   /* first entry held in memory */
uint64_t raft_snapshot_index(const raft *r);
/* Leader: the index after which follower `id` still needs the log, for a
 * compaction policy that spares it: the snapshot index being sent to it, or
 * its match index if it answered in the current check-quorum round.
 * UINT64_MAX when this node is not the leader, for itself, or for a follower
 * that has not answered lately. */
uint64_t raft_follower_need(const raft *r, uint32_t id);
uint64_t raft_term_at(const raft *r, uint64_t index); /* 0 when not held */
const struct raft_entry *raft_entry_at(const raft *r, uint64_t index); /* NULL when not held */
uint64_t raft_match_index(const raft *r, uint32_t id); /* leader: peer's match index */
int      raft_failed(const raft *r);

#endif
