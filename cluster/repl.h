/*
 * repl.h — the replication interface behind the node runtime.
 *
 * One implementation per mode: standalone (cluster/standalone.c), Raft
 * (cluster/raft_node.c) and masterless (cluster/ml_node.c). Every method runs
 * on the node's loop thread. A method that takes a request must eventually
 * call node_req_done() for it exactly once, on the loop thread.
 */
#ifndef KVFS_REPL_H
#define KVFS_REPL_H

#include <jansson.h>

#include "cluster/node.h"

/* A write request as the node hands it to the replication layer. `batch`
 * stays valid until node_req_done(). `enc` is the batch in kv_batch_encode()
 * form (with `batch.ops` pointing into it) in Raft mode and for requests from
 * the loop thread; a blocking node_write() in the other modes borrows the
 * caller's batch (the caller waits for node_req_done) and `enc` is NULL. */
struct node_req {
	int              is_read;   /* 1: a read barrier, no batch */
	void            *enc;
	size_t           enclen;
	struct kv_batch  batch;
	/* The batch as a log record, encoded on the writer's thread (a
	 * standalone node's blocking writes), or rec NULL. */
	struct store_prepared prep;
	uint64_t         submitted_ms; /* loop time at submission, for deadlines */
	/* private to the node runtime */
	int              owns_ops;     /* batch.ops was allocated by the node */
	struct kv_op     op1;          /* batch.ops of a one-op batch from enc */
	int              notify;       /* tell the change listener on success */
	int              notified;     /* it was told: the reply waits for its fence */
	node_done_fn     done;
	void            *arg;
	struct node_req *next;
};

/* Completes a request on the loop thread: status 0 or a negative errno. */
void node_req_done(node *n, struct node_req *req, int status);

/* Reports the changes of a successful control-socket write to the change
 * listener now instead of in node_req_done(), without ending the run of
 * changes. A layer that completes many requests at once calls it for each
 * of them, then node_notify_flush() once: the listener (the mount's
 * invalidation thread) is woken once for the lot instead of once per
 * request. Any thread that owns req at that moment (the store's committer,
 * say, before it hands the completion to the loop). Returns whether
 * anything was reported. */
int  node_req_notify(node *n, struct node_req *req, int status);
void node_notify_flush(node *n);

/* Sends the control socket's replies made so far now: a layer that answered
 * requests outside the loop's poll phase (a group it synced itself just
 * before the loop waits for I/O) calls it, so that the clients get their
 * answers during that wait instead of after it. Loop thread. */
void node_flush_replies(node *n);

/* A replication layer calls this after it applied a change that did NOT come
 * from this node's own node_write (a replicated write), so the mount can drop
 * kernel caches for the key. Any thread; the listener must not block. */
void node_notify_change(node *n, const char *key, size_t klen);
/* The same without ending the run of changes: a layer that reports many at
 * once ends the run with one node_notify_flush(). Any thread. */
void node_notify_key(node *n, const char *key, size_t klen);

/* A duration in ms from the environment variable `name` (tuning and test
 * knobs): `dflt` when unset, or, with a warning, when not an integer in
 * 0..max. */
uint64_t node_env_ms(const char *name, uint64_t dflt, uint64_t max);

/* The node's configuration (strings valid while the node lives). */
const struct node_config *node_config(node *n);

struct repl_ops {
	const char *name;                                        /* "standalone", "raft", "masterless" */
	/* Opaque store records (type >= STORE_REC_USER) seen while the store is
	 * recovered; called before start(). May be NULL. */
	int   (*replay)(void *self, uint8_t type, uint64_t lsn, const void *p, size_t len);
	int   (*start)(void *self);                              /* store open, loop running; 0 or -errno */
	void  (*write)(void *self, struct node_req *req);
	void  (*read_barrier)(void *self, struct node_req *req);
	void  (*status)(void *self, json_t *obj);                /* adds role, term, leader, peers... */
	void  (*stop)(void *self);                               /* fail every pending request, close handles */
	void  (*destroy)(void *self);                            /* after the loop has stopped */
	/* Optional (may be NULL): the layer's state saved atomically with every
	 * store snapshot (store_options.snap_state; store thread, under the
	 * store's apply lock). Raft keeps its applied index/term there. */
	size_t (*snap_state)(void *self, void *buf, size_t cap);
};

/* Constructors: called during node_open() BEFORE the store is opened (so that
 * replay can reach the layer); node_store(n) is valid from start() on. */
int repl_standalone_new(node *n, void **self, const struct repl_ops **ops);
int repl_raft_new(node *n, const struct node_config *cfg, void **self, const struct repl_ops **ops);
int repl_masterless_new(node *n, const struct node_config *cfg, void **self, const struct repl_ops **ops);

#endif
