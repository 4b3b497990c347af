/*
 * node.h — the process-wide kvfs engine that the front-ends (FUSE, control
 * socket) talk to.
 *
 * One libuv loop thread ("the loop") owns the write path, the replication
 * layer and every socket. Other threads (FUSE workers) call node_write() /
 * node_read_barrier(): the request goes onto a queue, the loop is woken with
 * uv_async_send(), and the caller blocks until the request completes.
 * Committed data is read directly and concurrently through node_store()
 * (store_get/store_next are thread-safe).
 *
 * The replication mode (standalone, raft, masterless) is one interface,
 * struct repl_ops in cluster/repl.h, with one implementation per mode.
 */
#ifndef KVFS_NODE_H
#define KVFS_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store/store.h"

typedef struct node node;

enum node_mode {
	NODE_STANDALONE = 0,
	NODE_RAFT       = 1,
	NODE_MASTERLESS = 2,
};

struct node_config {
	const char     *data_dir;  /* required */
	enum node_mode  mode;
	const char     *listen;    /* "HOST:PORT" peer address, NULL when standalone */
	const char    **peers;     /* other members' "HOST:PORT" */
	size_t          npeers;
	const char     *control;   /* "unix:PATH" or "HOST:PORT"; NULL = unix:<data_dir>/control.sock;
	                              "" = no control socket */
	const char     *vectors;   /* word-vector file for semantic search; NULL = default search path */
};

/* Opens the store in cfg->data_dir (recovering it), builds the search index,
 * starts the loop thread, the replication layer and the control socket.
 * Returns 0 or a negative errno; on error a clear message has been logged. */
int  node_open(const struct node_config *cfg, node **out);

/* Stops accepting requests, completes or fails every pending write (never
 * half-applied), stops the loop thread, closes the store, frees. */
void node_close(node *n);

/* Blocking, thread-safe, NOT callable from the loop thread: replicates and
 * durably commits one atomic batch, returning once it is applied locally (so a
 * following store_get on this node sees it).
 * Errors: -EROFS no leader / minority side / store failed read-only,
 * -ETIMEDOUT, -EIO, -ENAMETOOLONG/-EFBIG/-EINVAL for an invalid batch. */
int  node_write(node *n, const struct kv_batch *b);

/* Blocking, thread-safe, NOT callable from the loop thread: returns once this
 * node's applied state is at least as new as every write acknowledged anywhere
 * before the call (Raft: ReadIndex; standalone and masterless: immediate). */
int  node_read_barrier(node *n);

/* Loop-thread versions for the control socket. The batch is copied before the
 * call returns; `done` runs later on the loop thread. */
typedef void (*node_done_fn)(void *arg, int status);
void node_write_async(node *n, const struct kv_batch *b, node_done_fn done, void *arg);
void node_read_barrier_async(node *n, node_done_fn done, void *arg);

/* Accessors. */
store      *node_store(node *n);
uv_loop_t  *node_loop(node *n);
enum node_mode node_get_mode(node *n);
struct search_index *node_search(node *n); /* the node's search index (search/index.h) */

/* Runs fn(arg) on the loop thread and waits for it (for callers on other
 * threads that need loop-owned state, e.g. status). */
int  node_call(node *n, void (*fn)(void *arg), void *arg);

/* Fills a jansson object with the node's status: role, term, leader, peers,
 * keys, log/applied positions... Loop thread or via node_call. */
struct json_t;
void node_status(node *n, struct json_t *obj);

/*
 * The change listener: how the mount learns of changes it did not make
 * itself (writes over the control socket, replicated versions), so that it
 * can drop the kernel's caches of them. One listener per node.
 *
 * change(arg, key, klen): one changed key. Any thread; must not block.
 * flush(arg): the end of a run of changes reported together (the writes one
 *   group commit completed; a lone replicated change is a run of one), so a
 *   listener that hands keys to a thread of its own can queue them in
 *   change and wake the thread once per run. May be NULL.
 * fence(arg, reached, cookie): read-your-writes between the control socket
 *   and the mount: the reply to a socket write that reported changes is held
 *   back until they have reached the kernel's caches. Returns 0 when every
 *   change reported before it has been applied already (reached is then
 *   never called and the reply goes out at once); otherwise returns 1 and
 *   must call reached(cookie) exactly once, from any thread, once they have
 *   been applied (or dropped: when its queue is full or it stops). The loop
 *   thread never waits for it. May be NULL: replies go out at once.
 */
typedef void (*node_change_fn)(void *arg, const char *key, size_t klen);
typedef void (*node_change_flush_fn)(void *arg);
typedef void (*node_change_reached_fn)(void *cookie);
typedef int (*node_change_fence_fn)(void *arg, node_change_reached_fn reached, void *cookie);

struct node_change_listener {
	node_change_fn       change;
	node_change_flush_fn flush;
	node_change_fence_fn fence;
	void                *arg;
};

/* Installs a copy of *l (NULL: none; before the node is closed). */
void node_set_change_listener(node *n, const struct node_change_listener *l);

const char *node_mode_name(enum node_mode m);

#endif
