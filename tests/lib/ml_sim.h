/*
 * ml_sim.h — deterministic simulation of a masterless cluster for tests.
 *
 * N cores (cluster/ml.h) run in one process on simulated time. The network
 * drops, delays (hence reorders), duplicates and partitions frames; nodes
 * crash and restart from their durable store view (puts become durable only
 * at a simulated sync, a crash loses the rest); every node's wall clock has
 * its own skew. Everything derives from one seed.
 *
 * The fixture also keeps the full history of local writes so that a test can
 * compute independently which version must win each key, and it checks the
 * tombstone-collection invariant at every purge: when a node collects a
 * tombstone, every other node holds that tombstone (or a newer version) or
 * has collected it already.
 */
#ifndef KVFS_TESTS_ML_SIM_H
#define KVFS_TESTS_ML_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/ml.h"

typedef struct ml_sim ml_sim;

struct ml_sim_opts {
	unsigned         n;            /* nodes, 1..16 */
	uint64_t         seed;
	struct ml_config cfg;          /* template; self and n are set per node */
	uint32_t         tick_ms;      /* ml_tick period; 0 = 10 */
	uint32_t         delay_min_ms; /* network delay range */
	uint32_t         delay_max_ms;
	uint32_t         drop_pm;      /* per mille of frames dropped */
	uint32_t         dup_pm;       /* per mille of frames delivered twice */
	uint32_t         sync_max_ms;  /* a put becomes durable within this; 0 = at once */
	uint32_t         skew_max_ms;  /* each node's clock is off by up to +-this */
	uint32_t         corrupt_pm;   /* per mille of frames garbled (bytes flipped or
	                                  cut); the real transport's CRC prevents this,
	                                  so it only tests that decoders hold up */
	int              push_at_tick; /* a sync does not push at once (as kvfs's push
	                                  window, KVFS_ML_PUSH_MS): durable writes wait
	                                  for the node's next tick, and anti-entropy
	                                  may meet them first */
	int              keep_newest;  /* a sync leaves the newest store position in
	                                  flight (many clients writing at once: a
	                                  write is always on its way to the disk) */
};

int  ml_sim_new(const struct ml_sim_opts *o, ml_sim **out);
void ml_sim_free(ml_sim *s);

uint64_t ml_sim_now(const ml_sim *s);
uint64_t ml_sim_random(ml_sim *s);

/* Runs the simulation for `ms` milliseconds of simulated time. */
void ml_sim_run(ml_sim *s, uint64_t ms);

/* Runs until every node is up, all stores are identical and no tombstone is
 * pending anywhere, checking every `step_ms`, for at most `max_ms`. Returns
 * the simulated time it took, or -1 on timeout. */
int64_t ml_sim_settle(ml_sim *s, uint64_t step_ms, uint64_t max_ms);

/* A local write on node i (must be up); recorded in the history. */
int  ml_sim_write(ml_sim *s, unsigned i, const char *key, const char *val, int tombstone);

/* A client's multi-key write on node i (must be up): the puts share one
 * store position, so they become durable together, as the versions of one
 * store batch do in kvfs (cluster/ml_node.c). Recorded in the history. */
int  ml_sim_write_batch(ml_sim *s, unsigned i, size_t n, const char *const *keys,
			const char *const *vals);

/* Called after every frame a node has received and applied (node: the
 * receiver), or NULL: lets a test look at a replica between frames, where
 * kvfs makes a frame's versions visible together (one store batch). */
typedef void (*ml_sim_observer)(void *arg, ml_sim *s, unsigned node);
void ml_sim_set_observer(ml_sim *s, ml_sim_observer fn, void *arg);

/* Faults. */
void ml_sim_set_faults(ml_sim *s, uint32_t drop_pm, uint32_t dup_pm,
		       uint32_t delay_min_ms, uint32_t delay_max_ms);
void ml_sim_set_corrupt(ml_sim *s, uint32_t corrupt_pm);
void ml_sim_block(ml_sim *s, unsigned a, unsigned b, int blocked); /* both directions */
void ml_sim_isolate(ml_sim *s, uint64_t side_mask); /* partition side_mask | rest */
void ml_sim_heal(ml_sim *s);
void ml_sim_crash(ml_sim *s, unsigned i);
int  ml_sim_restart(ml_sim *s, unsigned i);
int  ml_sim_is_up(const ml_sim *s, unsigned i);

ml  *ml_sim_node(ml_sim *s, unsigned i); /* NULL while down */

/* Sets node i's wall-clock offset (ms; may be negative). */
void ml_sim_set_skew(ml_sim *s, unsigned i, int64_t skew_ms);

/* Node i's current version of key (tombstones included): 0 and copies of the
 * value (NUL-terminated, malloc'd, caller frees) and ext, or -ENOENT. */
int  ml_sim_get(ml_sim *s, unsigned i, const char *key, char **val, uint32_t *flags,
		struct ml_ext *ext);

/* 1 when every up node's store holds exactly the same keys, flags, ext and
 * values. */
int  ml_sim_identical(ml_sim *s);

/* Checks every key of the history on every node against the independently
 * computed winner (the write with the largest (ts, origin); it must not be
 * dominated by any other write's clock; when the key's tombstones were never
 * collected its clock must be the merge of every write's clock). Returns 0 or
 * -1 with a description in err. */
int  ml_sim_check(ml_sim *s, char *err, size_t errlen);

struct ml_sim_stats {
	uint64_t frames, bytes, dropped, duplicated;
	uint64_t max_frame;            /* largest frame sent */
	uint64_t max_keys_frame;       /* largest KEYS frame sent (bytes) */
	uint64_t max_keys_listed;      /* most keys one KEYS frame listed */
	uint64_t max_window_bytes;     /* most bytes one node sent in one gossip period */
	uint64_t purges;
	uint64_t purge_violations;     /* collection while some node lacked the tombstone */
	uint64_t writes;
	uint64_t crashes;
};
void ml_sim_get_stats(const ml_sim *s, struct ml_sim_stats *out);
/* Restarts the per-period bandwidth measurement (max_window_bytes = 0). */
void ml_sim_reset_window(ml_sim *s);

#endif
