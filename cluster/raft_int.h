/*
 * raft_int.h — internals shared by the files of the Raft core (raft.c,
 * raft_elect.c, raft_read.c). Nothing outside the core includes it.
 * Internal non-static names are prefixed raft__.
 */
#ifndef KVFS_RAFT_INT_H
#define KVFS_RAFT_INT_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/raft.h"

enum prog_state {
	PROG_PROBE     = 0, /* one AppendEntries at a time until the match is found */
	PROG_REPLICATE = 1, /* pipelined: next is advanced optimistically */
	PROG_SNAPSHOT  = 2, /* an InstallSnapshot is in flight */
};

/* Leader's view of one follower (Figure 2: nextIndex[], matchIndex[]). */
struct progress {
	uint64_t next, match;
	int      state;
	int      paused;       /* PROBE: an append is outstanding */
	int      active;       /* heard from since the last check-quorum round */
	uint64_t acked_seq;    /* highest heartbeat round acknowledged */
	uint64_t snap_index;   /* SNAPSHOT: index being sent */
	uint64_t snap_off;     /* SNAPSHOT: bytes the follower acknowledged */
	uint64_t snap_sent_ms; /* SNAPSHOT: last chunk sent */
	uint64_t commit_sent;  /* highest commit index this follower was told */
};

enum read_state {
	READ_CONFIRM = 0, /* leader: waiting for a heartbeat round to a majority */
	READ_LEADER  = 1, /* follower: waiting for the leader's answer */
	READ_APPLY   = 2, /* index known: waiting for applied >= index */
};

struct read_req {
	uint64_t id;
	uint32_t from;    /* leader side: the follower that asked; 0 = local */
	int      state;
	uint64_t seq;     /* READ_CONFIRM: the round that confirms it */
	uint64_t index;   /* 0 until assigned */
	uint64_t sent_ms; /* READ_LEADER: when asked */
};

#define RAFT_APPLY_FAILED_MAX_LAG 10000u

struct raft {
	struct raft_config cfg;
	struct raft_io     io;
	int                failed;
	/* An entry could not be applied (io->apply failed): this replica's
	 * state stops there. It still stores, acknowledges and votes (its log
	 * is sound and helps a majority), but it no longer applies, leads or
	 * campaigns: a leader steps down at its next tick. More than
	 * RAFT_APPLY_FAILED_MAX_LAG entries past what it applied (it cannot
	 * snapshot, so its log only grows) and it fails for good. */
	int                apply_failed;

	/* Figure 2, persistent state on all servers. */
	uint64_t term;
	uint32_t vote;
	/* The log: ents[k] has index base_index + 1 + k. The entry at base_index
	 * has term base_term and is covered by the snapshot. */
	struct raft_entry *ents;
	size_t   nents, cap;
	uint64_t base_index, base_term;
	uint64_t snap_index, snap_term;

	/* Figure 2, volatile state on all servers. */
	uint64_t commit, applied;

	enum raft_role role;
	uint32_t leader;
	uint64_t lmatch;     /* our log is known to match this term's leader up to here */

	/* Asynchronous appends in flight: the last index each will have made
	 * durable, clamped by later truncations (ring buffer). */
	uint64_t *pend;
	size_t    pend_head, pend_n, pend_cap;
	uint64_t  durable;

	/* Timers (io time, ms). */
	uint64_t election_deadline;
	uint64_t heartbeat_deadline;
	uint64_t quorum_deadline;
	uint64_t leader_contact;  /* last time we heard from a leader */
	int      have_contact;

	uint32_t granted;    /* (pre)vote bitmap, bit i = node i */

	/* Leader state (Figure 2, volatile state on leaders). */
	struct progress prog[RAFT_MAX_NODES + 1];
	uint64_t seq;        /* heartbeat round */
	uint64_t term_start; /* index of this term's no-op */

	/* Leader: the snapshot being sent (a copy of io->snapshot_get()). */
	struct {
		uint64_t index, term;
		void    *data;
		size_t   len;
	} out_snap;
	/* Follower: the snapshot being received. `len` is the total the
	 * leader claims; `buf` grows (to `cap`) only as chunks arrive. */
	struct {
		uint64_t index, term;
		uint8_t *buf;
		size_t   len, got, cap;
	} in_snap;

	uint32_t transfer_to;  /* leader: transferring leadership to this node */
	uint64_t transfer_deadline;

	int      flush_append; /* defer_sends: new entries wait for raft_flush() */
	int      flush_commit; /* defer_sends: commit notices wait for raft_flush() */

	struct read_req *reads;
	size_t   nreads, rcap;
};

/* ---- Small helpers ------------------------------------------------------- */

static inline uint64_t now_ms(raft *r)
{
	return r->io.now(r->io.arg);
}

static inline uint64_t last_index(const raft *r)
{
	return r->base_index + r->nents;
}

static inline uint64_t last_term(const raft *r)
{
	return r->nents ? r->ents[r->nents - 1].term : r->base_term;
}

static inline uint64_t term_at(const raft *r, uint64_t i)
{
	if (i == r->base_index)
		return r->base_term;
	if (i < r->base_index || i > last_index(r))
		return 0;
	return r->ents[i - r->base_index - 1].term;
}

static inline struct raft_entry *entry_at(const raft *r, uint64_t i)
{
	if (i <= r->base_index || i > last_index(r))
		return NULL;
	return &r->ents[i - r->base_index - 1];
}

static inline unsigned quorum(const raft *r)
{
	return r->cfg.n / 2 + 1;
}

static inline unsigned popcount32(uint32_t x)
{
	unsigned c = 0;

	for (; x; x &= x - 1)
		c++;
	return c;
}

/* raft.c */
void raft__notify(raft *r);
void raft__fail(raft *r, int status);
void raft__warn(raft *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void raft__send(raft *r, struct raft_msg *m, uint32_t to);
void raft__reset_election_timer(raft *r);
int  raft__persist_vote(raft *r);
int  raft__leader_append(raft *r, uint8_t type, const void *data, size_t len);
void raft__send_append(raft *r, uint32_t to, int allow_empty);
void raft__maybe_commit(raft *r);
void raft__broadcast_heartbeat(raft *r);
void raft__free_entries(struct raft_entry *e, size_t n);
void raft__log_truncate(raft *r, uint64_t from);
void raft__log_compact(raft *r, uint64_t upto);
void raft__apply_committed(raft *r);
void raft__reply_append(raft *r, uint32_t to, int reject, uint64_t index, uint64_t hint);
uint64_t raft__ack_index(const raft *r);
void raft__heard_from_leader(raft *r, uint32_t from);

/* raft_snap.c */
void raft__send_snapshot(raft *r, uint32_t to, int restart);
void raft__handle_snapshot(raft *r, const struct raft_msg *m);
void raft__handle_snapshot_resp(raft *r, const struct raft_msg *m);
void raft__snapshot_free(raft *r);
void raft__snapshot_idle(raft *r);

/* raft_elect.c */
void raft__become_follower(raft *r, uint64_t term, uint32_t leader);
void raft__become_precandidate(raft *r);
void raft__become_candidate(raft *r, int transfer);
void raft__transfer_progress(raft *r);
void raft__handle_vote(raft *r, const struct raft_msg *m);
void raft__handle_vote_resp(raft *r, const struct raft_msg *m);

/* raft_read.c */
void raft__reads_fail_all(raft *r, int status);
void raft__reads_progress(raft *r);
void raft__handle_read(raft *r, const struct raft_msg *m);
void raft__handle_read_resp(raft *r, const struct raft_msg *m);

#endif
