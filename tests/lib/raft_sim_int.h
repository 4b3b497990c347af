/*
 * raft_sim_int.h — internals shared by raft_sim.c (the simulated world) and
 * raft_sim_check.c (the invariant checks, run helpers and liveness check).
 */
#ifndef KVFS_TESTS_RAFT_SIM_INT_H
#define KVFS_TESTS_RAFT_SIM_INT_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/raft_sim.h"

enum ev_kind { EV_MSG = 1, EV_DISK = 2, EV_SNAP = 3 };

struct event {
	uint64_t time, seq;
	int      kind;
	uint32_t node;     /* EV_MSG: destination */
	uint64_t epoch;    /* incarnation of `node` it belongs to (disk, snap) */
	void    *frame;
	size_t   len;
};

struct pwrite {                /* a pending (not yet durable) append */
	uint64_t first;
	struct raft_entry *ents;
	size_t   n;
	int      void_;            /* superseded by a snapshot install */
};

struct proposal {
	uint32_t node;
	uint64_t index, term;
	int      state;            /* 0 pending, 1 acked, -1 lost */
};

struct readrec {
	uint32_t node;
	uint64_t min_index;        /* acked_max when the read started */
	int      done, status;
	uint64_t index;
};

struct snode {
	rsim    *s;
	uint32_t id;
	raft    *r;
	int      up;
	uint64_t epoch;
	/* The disk: durable state. */
	uint64_t d_term;
	uint32_t d_vote;
	struct raft_entry *d_log;  /* d_log[k] has index d_base + 1 + k */
	size_t   d_n, d_cap;
	uint64_t d_base;
	uint64_t d_snap_index, d_snap_term, d_snap_hash;
	uint8_t  snapbuf[24];
	/* Pending writes, FIFO. */
	struct pwrite *pw;
	size_t   pw_n, pw_cap;
	uint64_t disk_busy_until;
	unsigned disk_min_ms, disk_max_ms; /* 0 = the cluster's setting */
	/* The state machine (volatile). */
	uint64_t sm_index, sm_hash;
	uint64_t fail_apply_at;    /* io->apply fails for this index (0 = never) */
	unsigned refuse_installs;  /* io->snapshot_install refuses this many more */
	uint64_t snap_pending;
	/* Checker state. */
	uint64_t seen_term, seen_commit;
	uint64_t lead_term, lead_last;
};

struct lm_ent { uint64_t term, hash, prev_term; };
struct lm_slot { struct lm_ent *v; size_t n; };

struct gslot {
	uint64_t term, hash;       /* state machine: entry term and state after it */
	int      set;
	uint64_t commit_term;      /* lowest leader term that committed it (0 = none) */
	uint64_t entry_term;
};

struct rsim {
	struct rsim_opts o;
	uint64_t rng;
	uint64_t now, seq, events;
	struct event *heap;
	size_t   hn, hcap;
	struct snode nodes[RAFT_MAX_NODES + 1];
	uint8_t  link[RAFT_MAX_NODES + 1][RAFT_MAX_NODES + 1];
	uint32_t favored;
	rsim_filter_fn filter;
	void    *filter_arg;
	int      trace;
	char     err[512];
	int      failed;
	/* Checker tables, indexed by log index / term. */
	struct gslot *g;
	size_t   gcap;
	struct lm_slot *lm;
	size_t   lmcap;
	uint32_t *leader_of;
	size_t   locap;
	struct proposal *props;
	size_t   np, pcap;
	struct readrec *reads;
	size_t   nr, rcap;
	uint64_t acked_max, acked_count, applied_max;
	uint64_t heal_ms;          /* time the last liveness check needed */
	uint64_t delivered[RAFT_MSG_TYPE_MAX + 1];
};


void   rsim__violation(rsim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void  *rsim__xgrow(void *p, size_t *cap, size_t need, size_t elem);
struct gslot *rsim__gslot(rsim *s, uint64_t i);
uint64_t rsim__entry_hash(const struct raft_entry *e);
void   rsim__check_log_matching(rsim *s, uint32_t id, uint64_t index,
				const struct raft_entry *e, uint64_t prev_term);
void   rsim__check_step(rsim *s);

#endif
