/*
 * store_int.h — internals of the store facade shared by store.c (write path,
 * reads) and store_snap.c (snapshots, recovery, open and close). Not for use
 * outside store/.
 */
#ifndef KVFS_STORE_INT_H
#define KVFS_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "store/map.h"
#include "store/store.h"
#include "store/wal.h"

/* WAL record types of the store itself. */
#define REC_BATCH          1 /* an encoded kv_batch, applied */
#define REC_BATCH_NOAPPLY  2 /* an encoded kv_batch, logged only */

/* Committer threads: two, so that one can lead the next sync while the
 * other completes (applies) the group it has just synced. */
#define STORE_COMMITTERS 2

struct pending {
	struct pending *next;
	uint64_t        lsn;
	uint8_t         type;
	store_done_fn   done;
	void           *arg;
	void           *rec;   /* WAL record: header + payload */
	size_t          len;
	struct waiter  *w;     /* set for store_write() */
	int             later; /* STORE_LATER: no sync for it before store_kick() */
};

/* A synced group left for the owner's thread to complete (store.h,
 * store_set_completer): its entries in lsn order and the sync's status. */
struct dgroup {
	struct dgroup  *next;
	uint64_t        group;   /* its ticket (completion order) */
	struct pending *list;
	int             status;
	int             arc;     /* apply_group()'s result, once applied */
};

/* A thread blocked in store_write(). It sleeps on its own condition
 * variable, so a finished sync wakes only the writers it completed plus the
 * one that leads the next sync — not all of them. done, queued and next are
 * guarded by mu; status is written by complete() while the waiter sleeps. */
struct waiter {
	int            done;
	int            status;
	int            queued;  /* its entry is still in the pending queue */
	pthread_cond_t cv;
	struct waiter *next;    /* in a leader's list of writers to wake */
};

struct store {
	const struct kvio *io;
	char              *dir;
	struct store_options opt;
	wal               *wal;

	pthread_mutex_t    mu;
	pthread_cond_t     commit_cv;  /* wakes the committer thread */
	pthread_cond_t     bg_cv;      /* wakes the snapshot thread */
	struct pending    *head, *tail;
	unsigned           async_pending; /* queued entries not from store_write */
	unsigned           eager_pending; /* ... of those, submitted without STORE_LATER */
	unsigned           waiting;       /* queued entries from store_write */
	size_t             queued_bytes;  /* records of all queued entries */
	uint64_t           kick_lsn;      /* STORE_LATER entries up to here may be synced */
	int                syncing;
	int                stop;
	int                snap_requested;
	int                failed;
	uint64_t           last_lsn, durable_lsn;
	uint64_t           syncs, records, log_since_snap;
	uint64_t           pin_lsn;
	pthread_t          committer[STORE_COMMITTERS], bg;
	int                ncommitters, bg_started;

	pthread_mutex_t    apply_mu;
	pthread_cond_t     apply_cv;    /* a group finished completing */
	uint64_t           groups;      /* sync groups detached so far (mu) */
	uint64_t           completed;   /* sync groups completed so far (apply_mu) */
	int                apply_failed; /* an apply error: later groups fail too (apply_mu) */
	void             (*owner_notify)(void *); /* the completer (apply_mu) */
	void              *owner_arg;
	struct dgroup     *deferred;    /* groups left to it, in ticket order (apply_mu) */
	pthread_rwlock_t   map_lock;
	map               *map;
	uint64_t           ntomb;
	atomic_uint_fast64_t applied_lsn;
	uint64_t           map_gen;     /* counts applied batches (apply_mu) */
	store_apply_hook   hook;
	void              *hook_arg;

	pthread_mutex_t    snap_mu;
	uint64_t           snaps[2];    /* newest kept snapshots, [0] newest, 0 = none */
	uint64_t           snap_gen;    /* map_gen captured by the newest (snap_mu) */
	unsigned           snap_holds;  /* store_hold_snapshots() in force (snap_mu) */
	atomic_uint_fast64_t snapshots;
	void              *open_state;
	size_t             open_state_len;
	uint64_t           open_snap_lsn;
};

/* Enters the sticky failed state (first error wins) and logs it once. mu held. */
void store__set_failed(store *st, int rc, const char *what);
/* The committer thread. */
void *store__committer_main(void *arg);

#endif
