/*
 * ml_int.h — internal to the masterless core (ml.c, ml_ae.c): the state and
 * the helpers both files use. Not an API.
 */
#ifndef KVFS_ML_INT_H
#define KVFS_ML_INT_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/hlc.h"
#include "cluster/ml.h"
#include "cluster/ml_wire.h"

#define ML_DEF_GOSSIP_MS   200
#define ML_DEF_TOMB_MS     250
#define ML_DEF_LIVE_MS     3000
#define ML_DEF_MSG_BYTES   (256u * 1024)
#define ML_DEF_KEYS_MSG    8192
#define ML_DEF_DRIFT_MS    60000
/* How long a local write may wait in the push queue for a newer local
 * write to one of its keys (ml.c, push_may_wait): a few syncs and push
 * windows. */
#define ML_PUSH_HOLD_MS    10
/* How long anti-entropy leaves alone local writes the push has not carried
 * yet (ml__push_pending): well past a push's usual delay (a sync and the
 * push window, milliseconds), so that only a queue that stopped moving is
 * bypassed. */
#define ML_PUSH_AE_HOLD_MS 100
/* Frame bodies that grew past this for one large push are freed after it
 * rather than kept for the node's lifetime. */
#define ML_KEEP_BODY_BYTES (4u * ML_DEF_MSG_BYTES)
#define ML_ROOT_BYTES      (ML_GROUPS * 8)
#define ML_LEAVES_ENTRY    (1 + ML_LEAVES_PER * 8)

struct ent {
	struct ent *hnext;          /* hash chain */
	struct ent *lprev, *lnext;  /* leaf bucket list */
	struct ent *tprev, *tnext;  /* pending tombstones (tomb only) */
	uint64_t    khash;          /* hash of the key: picks the leaf */
	uint64_t    vhash;          /* hash of key + ext: the digest contribution */
	uint64_t    ts;             /* write identity (origin, ts) */
	uint64_t    seq;            /* io put position of the current version */
	uint64_t    have;           /* nodes known to hold this tombstone */
	uint64_t    l1;             /* nodes known to know that everyone holds it */
	uint32_t    origin;
	uint32_t    mark;           /* KEYS processing stamp */
	uint8_t     tomb;
	uint8_t     excluded;       /* left out of the digest (level 1 reached) */
	uint32_t    klen;
	char        key[];
};

struct peer {
	uint64_t inc;      /* newest incarnation seen */
	uint64_t tomb_seq; /* seq of the newest TOMB accepted from inc */
	uint64_t heard_ms; /* last frame received; 0 = never */
	int      hint;     /* transport: -1 unknown, 0 down, 1 up */
};

struct pq {        /* a local write waiting to be pushed */
	struct pq *next;
	uint64_t   seq;
	uint64_t   queued_ms; /* io->now_ms when it was written */
	uint32_t   klen;
	char       key[];
};

/* A frame under construction: the counted body is kept apart so the count
 * can precede it. */
struct fb {
	struct mlw_out body;
	uint32_t       count;
};

struct ml {
	struct ml_config cfg;
	struct ml_io     io;
	struct hlc       hlc;
	uint64_t         inc, seq;
	uint64_t         floor;      /* largest clock floor saved (0: none yet) */
	uint64_t         gate_seq;   /* send nothing before durable() reaches it */
	uint64_t         all;        /* bitmask of every node id */
	struct ent     **ht;
	size_t           ht_cap, ht_n;
	struct ent      *leaf[ML_LEAVES];
	uint64_t         leaf_hash[ML_LEAVES];
	uint64_t         group_hash[ML_GROUPS];
	struct ent      *t_head, *t_tail;
	size_t           t_n;
	struct pq       *pq_head, *pq_tail;
	size_t           pq_n;
	uint64_t         next_gossip, next_tomb;
	uint32_t         stamp;
	struct peer      peers[ML_MAX_NODES];
	struct ml_stats  st;
	struct mlw_out   frame;     /* assembled frame */
	struct fb        fb1, fb2;  /* bodies */
	struct fb        fb3;       /* ml_flush: the writes of one push unit */
};

void ml__tlist_add(ml *m, struct ent *e);
void ml__tlist_del(ml *m, struct ent *e);
uint32_t ml__leaf_of(uint64_t khash);
int ml__key_cmp(const char *a, size_t alen, const char *b, size_t blen);
void ml__digest_add(ml *m, const struct ent *e, int sign);
void ml__ent_free(ml *m, struct ent *e);
void ml__fb_reset(struct fb *f);
void ml__fb_send(ml *m, unsigned to, uint16_t type, const struct fb *f, int counted);
void ml__fb_broadcast(ml *m, uint16_t type, const struct fb *f);
int ml__fb_full(const ml *m, const struct fb *f, size_t more);
int ml__durable_ent(const ml *m, const struct ent *e);
int ml__gated(const ml *m);
int ml__save_floor(ml *m, uint64_t ts);
int ml__fb_add_version(ml *m, struct fb *f, const struct ent *e);
int ml__fb_add_version_max(ml *m, struct fb *f, const struct ent *e, size_t max_bytes);
int ml__push_pending(const ml *m, const struct ent *e);
struct ent *ml__ent_get(ml *m, const char *key, size_t klen, int create);
void ml__tomb_progress(ml *m, struct ent *e);
void ml__tomb_tick(ml *m);
int ml__recv_tomb(ml *m, unsigned from, struct mlw_in *in);
int ml__peer_live(const ml *m, unsigned id, uint64_t now);
void ml__ae_start(ml *m, uint64_t now);
int ml__recv_root(ml *m, unsigned from, struct mlw_in *in);
int ml__recv_leaves(ml *m, unsigned from, struct mlw_in *in);
int ml__recv_keys(ml *m, unsigned from, struct mlw_in *in);
int ml__recv_want(ml *m, unsigned from, struct mlw_in *in);

#endif
