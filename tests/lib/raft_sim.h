/*
 * raft_sim.h — a deterministic simulation of a Raft cluster in one process.
 *
 * N cores (cluster/raft.h) run against a logical clock, a simulated network
 * (drop, delay, duplicate, reorder, partition; every message is encoded and
 * decoded with raft_msg_*), and simulated disks whose appends complete after a
 * random latency, in order, and are LOST by a crash unless already reported
 * durable. Term and vote are written synchronously, as the core requires.
 * Everything is driven from one seed.
 *
 * One event per rsim_step(): a message delivery, a disk completion, a
 * snapshot, or a node's timer. After EVERY step (and inside the io callbacks)
 * the fixture checks:
 *   - election safety: at most one leader per term;
 *   - term and vote are on disk before any message that depends on them;
 *   - leader append-only: a leader never truncates its log;
 *   - log matching: an (index, term) pair always names the same entry with
 *     the same predecessor term, on every node, across crashes;
 *   - leader completeness: a new leader holds every entry committed in an
 *     earlier term;
 *   - state-machine safety: every node applies the same entry at an index, and
 *     reaches the same state (also through snapshots);
 *   - ReadIndex: a read returns an index covering every write acknowledged
 *     before the read started, and only once it is applied.
 * A violation stops the simulation: rsim_step() returns -1 and rsim_error()
 * tells what happened.
 */
#ifndef KVFS_TESTS_RAFT_SIM_H
#define KVFS_TESTS_RAFT_SIM_H

#include <stdint.h>
#include <stdio.h>

#include "cluster/raft.h"

typedef struct rsim rsim;

struct rsim_opts {
	unsigned n;                 /* nodes, 1..RAFT_MAX_NODES */
	uint64_t seed;
	unsigned election_ms;       /* 0 = 100 */
	unsigned heartbeat_ms;      /* 0 = 20 */
	unsigned net_min_ms;        /* message delay range; 0/0 = 1..10 */
	unsigned net_max_ms;
	unsigned drop_pct;          /* chance to lose a message */
	unsigned dup_pct;           /* chance to deliver it twice */
	unsigned disk_min_ms;       /* append latency range; 0/0 = 1..5 */
	unsigned disk_max_ms;
	unsigned snapshot_every;    /* take a snapshot every N applied entries; 0 = never */
	unsigned trailing;          /* raft_config.snapshot_trailing */
	unsigned max_append_entries;
	size_t   max_snapshot_chunk;  /* raft_config.max_snapshot_chunk (snapshots are 24 bytes) */
	int      defer_sends;       /* raft_config.defer_sends; flushed around every step */
	int      disable_prevote;
	int      disable_check_quorum;
};

/* Message filter for scripted tests: return 0 to drop the message. */
typedef int (*rsim_filter_fn)(void *arg, const struct raft_msg *m);

int  rsim_new(const struct rsim_opts *opt, rsim **out);
void rsim_free(rsim *s);

/* Runs one event. 0, or -1 after an invariant violation (see rsim_error). */
int  rsim_step(rsim *s);
/* Runs events until the clock passes now + ms. 0 or -1. */
int  rsim_run_for(rsim *s, uint64_t ms);
/* Runs until pred(s, arg) holds (checked after each step) or ms elapse.
 * 1 = reached, 0 = timed out, -1 = violation. */
int  rsim_run_until(rsim *s, int (*pred)(rsim *s, void *arg), void *arg, uint64_t ms);
/* Runs until some node is a leader known to a majority; returns its id, 0 on
 * timeout, -1 on a violation. */
int  rsim_run_until_leader(rsim *s, uint64_t ms);
/* Runs until every up node has applied everything up to `index`. */
int  rsim_run_until_applied(rsim *s, uint64_t index, uint64_t ms);

const char *rsim_error(const rsim *s);
uint64_t rsim_now(const rsim *s);
uint64_t rsim_seed(const rsim *s);
unsigned rsim_n(const rsim *s);
raft    *rsim_raft(rsim *s, uint32_t id); /* NULL when crashed */

/* The up node in the leader role with the highest term, 0 if none. */
uint32_t rsim_leader(rsim *s);

/* Faults. */
void rsim_crash(rsim *s, uint32_t id);
int  rsim_restart(rsim *s, uint32_t id);
void rsim_link(rsim *s, uint32_t a, uint32_t b, int up);  /* both directions */
void rsim_isolate(rsim *s, uint32_t id);
void rsim_partition(rsim *s, uint32_t mask); /* bit i set: node i on side A */
void rsim_heal(rsim *s);
void rsim_set_net(rsim *s, unsigned drop_pct, unsigned dup_pct);
void rsim_set_filter(rsim *s, rsim_filter_fn fn, void *arg);
/* Append latency of one node's disk (0, 0 = the cluster's setting). */
void rsim_set_disk(rsim *s, uint32_t id, unsigned min_ms, unsigned max_ms);
/* Makes io->apply of entry `index` fail on `id` (0 = never): that replica
 * can no longer apply (raft.h, io->apply). */
void rsim_fail_apply_at(rsim *s, uint32_t id, uint64_t index);
/* Makes the next n io->snapshot_install calls on `id` refuse the snapshot
 * (RAFT_EREFUSED) without changing anything, as a malformed snapshot or a
 * failed allocation would; rsim_installs_to_refuse() tells how many are left. */
void rsim_refuse_installs(rsim *s, uint32_t id, unsigned n);
unsigned rsim_installs_to_refuse(const rsim *s, uint32_t id);
/* Makes `id` time out first: its election timeout becomes exactly T and
 * every other node's 2T-1 (0 = random again). */
void rsim_favor(rsim *s, uint32_t id);

/* Client operations. rsim_propose: raft_propose on `id` with a unique
 * payload; *pid identifies the proposal. */
int  rsim_propose(rsim *s, uint32_t id, uint64_t *pid);
int  rsim_proposal(const rsim *s, uint64_t pid, uint64_t *index); /* 1 acked, 0 pending, -1 lost */
uint64_t rsim_acked_max(const rsim *s);  /* highest index of an acknowledged proposal */
uint64_t rsim_acked_count(const rsim *s);
int  rsim_read(rsim *s, uint32_t id, uint64_t *rid);
/* 0 pending, 1 done (*status, *index filled). */
int  rsim_read_result(const rsim *s, uint64_t rid, int *status, uint64_t *index);

/* raft_transfer() on `id` (its result). */
int  rsim_transfer(rsim *s, uint32_t id, uint32_t to);

/* Snapshot now on `id` (at its applied index). */
int  rsim_snapshot(rsim *s, uint32_t id);

/* Statistics. */
uint64_t rsim_events(const rsim *s);
uint64_t rsim_delivered(const rsim *s, uint8_t type);
uint64_t rsim_applied_global(const rsim *s); /* highest index applied anywhere */

/* Final liveness check: heals everything, restarts crashed nodes, then
 * requires that within `ms` a leader commits a new proposal and every node
 * applies it and every acknowledged proposal. 0 ok, -1 (see rsim_error). */
int  rsim_check_liveness(rsim *s, uint64_t ms);
/* Simulated time the last successful rsim_check_liveness() took. */
uint64_t rsim_heal_ms(const rsim *s);

/* Prints every node's state. */
void rsim_dump(rsim *s, FILE *f);

/* KVFS_RAFT_TRACE=1 prints every event on stderr. */
void rsim_trace(rsim *s, int on);

#endif
