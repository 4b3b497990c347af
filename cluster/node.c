/*
 * node.c — the node runtime: one libuv loop thread owns the write path,
 * the replication layer and every socket; other threads hand it requests
 * through a mutex-protected queue and uv_async_send(), then block on a
 * condition variable until the request completes.
 *
 * Request life cycle:
 *   caller thread: node_req_new() -> queue_push() -> uv_async_send(&wake)
 *   loop thread:   on_wake() drains the queue in FIFO order, hands each request
 *                  to the replication layer (repl_ops.write / read_barrier)
 *   repl layer:    eventually node_req_done(n, req, status) on the loop thread
 *   node_req_done: runs req->done (wakes the blocked caller), frees the request
 *
 * Because every request, from FUSE threads and from the control socket alike,
 * passes through the one FIFO queue, writes are submitted to replication in
 * the order they were made.
 *
 * Shutdown: node_close() sets `stopping` and wakes the loop. The loop stops
 * the control socket, asks the replication layer to complete or fail every
 * pending request, fails whatever is still queued with -ESHUTDOWN, and when
 * no request is pending closes its own handles so that uv_run() returns.
 */
#include "cluster/node.h"
#include "cluster/raft_node.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/ctl.h"
#include "cluster/repl.h"
#include "search/search.h"
#include "store/batch.h"
#include "store/kvio.h"
#include "store/log.h"

enum req_kind { REQ_WRITE, REQ_READ, REQ_CALL };

/* A blocked caller waits on one of these (it lives on the caller's stack). */
struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	int             done;
	int             status;
};

/* Requests queued for the loop. REQ_CALL items carry a function instead of a
 * batch; they never reach the replication layer. */
struct qitem {
	enum req_kind    kind;
	struct node_req *req;          /* REQ_WRITE / REQ_READ */
	void           (*fn)(void *);  /* REQ_CALL */
	void            *fn_arg;
	struct waiter   *w;            /* REQ_CALL */
	struct qitem    *next;
};

struct node {
	struct node_config cfg;          /* strings owned (copied) */
	char              *control_addr; /* resolved control address, or NULL */

	store               *st;
	struct search_index *search;
	int                  idx_group; /* an index group is open (store apply hook, map lock) */

	uv_loop_t   loop;
	uv_thread_t thread;
	uv_async_t  wake;

	/* Lock order: qmu is a leaf lock; nothing else is taken while holding it. */
	pthread_mutex_t qmu;
	struct qitem   *qhead, *qtail;
	atomic_int      stopping;     /* set once, under qmu; read anywhere */

	/* Loop-thread state. */
	void                  *repl;
	const struct repl_ops *rops;
	struct ctl_server     *ctl;
	uint64_t               pending;   /* requests handed to repl, not yet done */
	int                    closing;   /* handles are being closed */
	int                    repl_stopped;

	/* Start-up handshake between node_open() and the loop thread. */
	pthread_mutex_t smu;
	pthread_cond_t  scv;
	int             started;
	int             start_status;

	/* Change listener (FUSE cache invalidation), under lmu. */
	pthread_mutex_t lmu;
	struct node_change_listener listener;

	/* Socket writes whose fence was reached, for the loop (under qmu). */
	struct fence   *fenced;
};

/* A reply held back by the listener's fence; the request stays pending. */
struct fence {
	struct fence *next;
	node         *n;
	node_done_fn  done;
	void         *arg;
	int           status;
};

/* ---- small helpers -------------------------------------------------------- */

static void waiter_init(struct waiter *w)
{
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->done = 0;
	w->status = 0;
}

static void waiter_destroy(struct waiter *w)
{
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
}

static void waiter_wake(struct waiter *w, int status)
{
	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int waiter_wait(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	return w->status;
}

static void waiter_done_cb(void *arg, int status)
{
	waiter_wake(arg, status);
}

const char *node_mode_name(enum node_mode m)
{
	switch (m) {
	case NODE_STANDALONE: return "standalone";
	case NODE_RAFT:       return "raft";
	case NODE_MASTERLESS: return "masterless";
	}
	return "unknown";
}

/* The inverse of node_mode_name(): 0 and *out, or -EINVAL for no mode. */
static int node_mode_from_name(const char *name, enum node_mode *out)
{
	static const enum node_mode all[] = { NODE_STANDALONE, NODE_RAFT, NODE_MASTERLESS };

	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (!strcmp(name, node_mode_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return -EINVAL;
}

/* ---- requests ------------------------------------------------------------- */

/* Builds a write request. With `copy` (loop-thread callers, who do not
 * wait) or in Raft mode (which ships the encoded batch) the request owns an
 * encoded copy and the decoded ops point into it; otherwise it borrows the
 * caller's batch, which stays valid because the caller blocks until done.
 * Borrowing saves copying every value once more (a 64 MiB file, say). */
static int req_new_write(node *n, const struct kv_batch *b, int copy, node_done_fn done,
			 void *arg, struct node_req **out)
{
	struct node_req *req = calloc(1, sizeof *req);
	struct kv_op *ops = NULL;
	uint32_t nops = 0;
	int rc;

	if (!req)
		return -ENOMEM;
	/* Validate first, so that a bad key or value is reported with its own
	 * errno (ENAMETOOLONG, EFBIG, EINVAL) before anything is queued. A
	 * standalone node logs a blocking caller's batch as it is: the caller,
	 * who waits anyway, encodes and checksums it here (store_prepare
	 * validates too), and the loop only queues it (a 64 MiB file stalled
	 * the loop for ~70 ms). */
	if (!copy && n->cfg.mode == NODE_STANDALONE)
		rc = store_prepare(b, &req->prep);
	else
		rc = batch_check(b);
	if (rc)
		goto err;
	if (copy || n->cfg.mode == NODE_RAFT) {
		rc = kv_batch_encode(b, &req->enc, &req->enclen);
		if (rc)
			goto err;
		rc = batch_decode_buf(req->enc, req->enclen, &req->op1, 1, &ops, &nops);
		if (rc)
			goto err;
		req->batch.ops = ops;
		req->batch.n = nops;
		req->owns_ops = ops != &req->op1;
	} else {
		req->batch = *b;
	}
	req->done = done;
	req->arg = arg;
	*out = req;
	return 0;
err:
	store_prepared_free(&req->prep);
	free(req->enc);
	free(req);
	return rc;
}

static void req_free(struct node_req *req)
{
	if (req->owns_ops)
		free((void *)req->batch.ops);
	store_prepared_free(&req->prep);
	free(req->enc);
	free(req);
}

static void notify(node *n, const char *key, size_t klen, int flush);

static struct node_change_listener listener_get(node *n)
{
	struct node_change_listener l;

	pthread_mutex_lock(&n->lmu);
	l = n->listener;
	pthread_mutex_unlock(&n->lmu);
	return l;
}

/* Returns whether it reported anything (a flush is then due). */
int node_req_notify(node *n, struct node_req *req, int status)
{
	int any = status == 0 && req->notify && req->batch.n;
	uint32_t i;

	/* Writes that did not come through the mount (the control socket) must
	 * reach the kernel's caches of the mount too. */
	if (any)
		for (i = 0; i < req->batch.n; i++)
			notify(n, req->batch.ops[i].key, req->batch.ops[i].klen, 0);
	req->notify = 0;
	req->notified |= any;
	return any;
}

/* The listener's thread: hands the held-back reply to the loop. The node
 * stays up until then, since the request still counts as pending. */
static void fence_reached(void *cookie)
{
	struct fence *f = cookie;
	node *n = f->n;

	pthread_mutex_lock(&n->qmu);
	f->next = n->fenced;
	n->fenced = f;
	/* Under the lock: once the loop can take f (on another wake-up) and
	 * the node can close, this thread no longer touches it. */
	uv_async_send(&n->wake);
	pthread_mutex_unlock(&n->qmu);
}

/* Holds the reply back until the changes just reported reach the mount's
 * caches. Returns 0 when there is no fence (or no memory): reply now. */
static int fence_defer(node *n, node_done_fn done, void *arg, int status)
{
	struct node_change_listener l = listener_get(n);
	struct fence *f;

	if (!l.fence || !(f = malloc(sizeof *f)))
		return 0;
	*f = (struct fence){ .n = n, .done = done, .arg = arg, .status = status };
	if (l.fence(l.arg, fence_reached, f))
		return 1;
	free(f); /* nothing left to wait for */
	return 0;
}

static void req_finish(node *n, node_done_fn done, void *arg, int status)
{
	n->pending--;
	if (done)
		done(arg, status);
	if (n->stopping && n->pending == 0 && !n->closing)
		uv_async_send(&n->wake); /* let on_wake() finish the shutdown */
}

void node_req_done(node *n, struct node_req *req, int status)
{
	node_done_fn done = req->done;
	void *arg = req->arg;
	int notified;

	/* Replication may have reported the changes already (a group of
	 * them, then one flush); else they are reported now. */
	if (node_req_notify(n, req, status))
		node_notify_flush(n);
	notified = req->notified;
	req_free(req);
	if (notified && done && fence_defer(n, done, arg, status))
		return;
	req_finish(n, done, arg, status);
}

/* Loop thread: the replies whose fence was reached, in fence order. */
static void run_fenced(node *n)
{
	struct fence *f, *next, *fifo = NULL;

	pthread_mutex_lock(&n->qmu);
	f = n->fenced;
	n->fenced = NULL;
	pthread_mutex_unlock(&n->qmu);
	for (; f; f = next) {
		next = f->next;
		f->next = fifo;
		fifo = f;
	}
	for (f = fifo; f; f = next) {
		next = f->next;
		req_finish(n, f->done, f->arg, f->status);
		free(f);
	}
}

/* Appends to the queue and wakes the loop. Fails with -ESHUTDOWN once the
 * node is stopping (the item is then not queued). */
static int queue_push(node *n, struct qitem *it)
{
	pthread_mutex_lock(&n->qmu);
	if (n->stopping) {
		pthread_mutex_unlock(&n->qmu);
		return -ESHUTDOWN;
	}
	it->next = NULL;
	if (n->qtail)
		n->qtail->next = it;
	else
		n->qhead = it;
	n->qtail = it;
	pthread_mutex_unlock(&n->qmu);
	uv_async_send(&n->wake);
	return 0;
}

static struct qitem *queue_take_all(node *n)
{
	struct qitem *all;

	pthread_mutex_lock(&n->qmu);
	all = n->qhead;
	n->qhead = n->qtail = NULL;
	pthread_mutex_unlock(&n->qmu);
	return all;
}

/* ---- the loop thread ------------------------------------------------------ */

static void dispatch(node *n, struct qitem *it)
{
	struct node_req *req = it->req;

	switch (it->kind) {
	case REQ_CALL:
		it->fn(it->fn_arg);
		waiter_wake(it->w, 0);
		break;
	case REQ_WRITE:
	case REQ_READ:
		n->pending++;
		req->submitted_ms = uv_now(&n->loop);
		if (n->repl_stopped)
			node_req_done(n, req, -ESHUTDOWN);
		else if (it->kind == REQ_WRITE)
			n->rops->write(n->repl, req);
		else
			n->rops->read_barrier(n->repl, req);
		break;
	}
	free(it);
}

static void on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

static void begin_shutdown(node *n)
{
	if (n->ctl) {
		ctl_server_stop(n->ctl);
		n->ctl = NULL;
	}
	if (n->rops && n->repl && !n->repl_stopped) {
		n->repl_stopped = 1;
		n->rops->stop(n->repl);
	}
}

static void drain_queue(node *n)
{
	struct qitem *it, *next;

	for (it = queue_take_all(n); it; it = next) {
		next = it->next;
		dispatch(n, it);
	}
}

static void on_wake(uv_async_t *h)
{
	node *n = h->data;
	int stopping = atomic_load(&n->stopping);

	/* Requests accepted before node_close() are handed to replication as
	 * usual; it commits or fails them. */
	run_fenced(n);
	drain_queue(n);
	if (!stopping || n->closing)
		return;

	/* After node_close(): stop the front door and the replication layer
	 * (once), fail what was queued in the meantime (nothing can be queued
	 * any more: queue_push refuses once `stopping` is set), and close the
	 * loop's own handle once nothing is pending. */
	begin_shutdown(n);
	drain_queue(n);
	if (n->pending == 0) {
		n->closing = 1;
		uv_close((uv_handle_t *)&n->wake, on_handle_closed);
	}
}

static void loop_main(void *arg)
{
	node *n = arg;
	int rc;

	pthread_setname_np(pthread_self(), "kvfs-loop");
	rc = n->rops->start(n->repl);
	if (rc == 0 && n->control_addr) {
		rc = ctl_server_start(n, &n->loop, n->control_addr, &n->ctl);
		if (rc)
			LOG(LOG_ERROR, "control socket %s: %s", n->control_addr, uv_strerror(rc));
	}

	pthread_mutex_lock(&n->smu);
	n->started = 1;
	n->start_status = rc;
	pthread_cond_signal(&n->scv);
	pthread_mutex_unlock(&n->smu);

	if (rc) {
		/* node_open() will fail: tear down what start() created. */
		pthread_mutex_lock(&n->qmu);
		atomic_store(&n->stopping, 1);
		pthread_mutex_unlock(&n->qmu);
		begin_shutdown(n);
		n->closing = 1;
		uv_close((uv_handle_t *)&n->wake, on_handle_closed);
	}
	uv_run(&n->loop, UV_RUN_DEFAULT);
}

/* ---- search index maintenance --------------------------------------------- */

/* Only regular files are documents; directory markers and symlinks are not. */
static int rec_is_document(const kv_rec *r)
{
	return r && !(kv_rec_flags(r) & KV_F_TOMBSTONE) &&
	       S_ISREG(kv_rec_meta(r)->mode);
}

/* The search index's queue holds a reference to each record it will index
 * (its key and value stay valid until then). */
static void release_rec(void *ref)
{
	kv_rec_unref(ref);
}

static const char *held_key(const kv_rec *r, size_t *klen)
{
	kv_rec_ref((kv_rec *)r); /* records are immutable; only the count moves */
	return kv_rec_key(r, klen);
}

/* Queues the removal of key from the index, holding only a copy of the key
 * (not a record and its value, up to the largest value, for as long as the
 * removal waits). */
/* Ends the index group of the batch being applied, if one is open. */
static void end_idx_group(node *n)
{
	if (n->idx_group) {
		n->idx_group = 0;
		search_index_group_end(n->search);
	}
}

static void queue_del(node *n, const char *key, size_t klen)
{
	char *k = malloc(klen ? klen : 1);

	if (!k) {
		/* No memory: remove it now, in order (end the batch's group,
		 * so that the flush takes its earlier updates too). */
		end_idx_group(n);
		search_index_flush(n->search);
		search_index_del(n->search, key, klen);
		return;
	}
	memcpy(k, key, klen);
	search_index_queue_del(n->search, k, klen, free, k);
}

/* Whether two versions of a document index the same: the same contents, or
 * both too large to be indexed at all. */
static int same_for_index(const kv_rec *a, const kv_rec *b)
{
	size_t sa = kv_rec_size(a), sb = kv_rec_size(b);

	if (sa > SEARCH_TEXT_MAX && sb > SEARCH_TEXT_MAX)
		return 1;
	return sa == sb && (kv_rec_value(a) == kv_rec_value(b) || /* a metadata change */
			    memcmp(kv_rec_value(a), kv_rec_value(b), sa) == 0);
}

/* Store apply hook: runs on the committing thread under the map write lock.
 * The change is queued for the index there, in apply order, before any
 * reader can see it; every query first waits for what is queued (search.h),
 * so a write is searchable as soon as it can be read, while its commit does
 * not wait for the tokenising and vectorising (the index's worker thread
 * does that). */
static void on_apply(void *arg, const char *key, size_t klen,
		     const kv_rec *old_rec, const kv_rec *new_rec)
{
	node *n = arg;
	const char *k;
	size_t kl;

	/* One batch, one index group: a query sees a batch (a directory
	 * rename, a socket batch) whole or not at all. */
	if (!key) {
		end_idx_group(n);
		return;
	}
	if (!n->idx_group && (rec_is_document(new_rec) || rec_is_document(old_rec))) {
		n->idx_group = 1;
		search_index_group_begin(n->search);
	}
	if (rec_is_document(new_rec)) {
		/* The index is a function of key and contents: a write that
		 * leaves the contents as they were (chmod, touch, a file saved
		 * unchanged, a repeated SET) has nothing to re-index. */
		if (rec_is_document(old_rec) && same_for_index(old_rec, new_rec))
			return;
		if (kv_rec_size(new_rec) > SEARCH_TEXT_MAX) {
			queue_del(n, key, klen); /* not indexed: only its old text goes */
			return;
		}
		k = held_key(new_rec, &kl);
		search_index_queue_put(n->search, k, kl, kv_rec_value(new_rec),
				       kv_rec_size(new_rec), release_rec, (void *)new_rec);
	} else if (rec_is_document(old_rec)) {
		queue_del(n, key, klen);
	}
}

static int index_one(void *arg, const char *key, size_t klen, const kv_rec *r)
{
	node *n = arg;

	if (rec_is_document(r)) {
		/* key is the record's own: it lives as long as the reference. */
		kv_rec_ref((kv_rec *)r);
		search_index_queue_load(n->search, key, klen, kv_rec_value(r), kv_rec_size(r),
					release_rec, (void *)r);
	}
	return 0;
}

uint64_t node_env_ms(const char *name, uint64_t dflt, uint64_t max)
{
	const char *e = getenv(name);
	char *end;
	unsigned long long v;

	if (!e || !*e)
		return dflt;
	errno = 0;
	v = strtoull(e, &end, 10);
	if (errno || *end || v > max) {
		LOG(LOG_WARN, "ignoring %s=%s (want 0..%llu)", name, e, (unsigned long long)max);
		return dflt;
	}
	return v;
}

/* The index is rebuilt from the recovered store at every start, so it is
 * consistent with the store after any crash by construction. The documents
 * are queued, not indexed, here: the node (and the mount) come up as soon as
 * the store is recovered, the index's worker thread indexes them in the
 * background, and a query that comes first helps and waits (search.h). */
static int build_search_index(node *n)
{
	struct search_config scfg = { 0 };
	const char *vec = n->cfg.vectors;
	int rc;

	if (!vec)
		vec = getenv("KVFS_VECTORS");
	if (!vec)
		vec = search_default_vectors_path();
	scfg.vectors_path = vec;
	rc = search_index_new(&scfg, &n->search);
	if (rc) {
		LOG(LOG_ERROR, "search index: cannot load word vectors %s: %s", vec, strerror(-rc));
		return rc;
	}
	rc = store_scan(n->st, "", 0, NULL, 0, 0, index_one, n);
	if (rc)
		return rc < 0 ? rc : -EIO;
	/* KVFS_INDEX_DELAY_MS: tests hold the rebuild back to see the node
	 * while it is still to come. */
	rc = search_index_start_after(n->search,
				      (unsigned)node_env_ms("KVFS_INDEX_DELAY_MS", 0, 600000));
	if (rc) {
		LOG(LOG_ERROR, "search index: cannot start its thread: %s", strerror(-rc));
		return rc;
	}
	LOG(LOG_INFO, "search index: %zu documents to index, vectors %s",
	    search_index_pending(n->search), search_vectors_kind(n->search));
	store_set_apply_hook(n->st, on_apply, n);
	return 0;
}

/* ---- open / close --------------------------------------------------------- */

static int replay_fwd(void *arg, uint8_t type, uint64_t lsn, const void *p, size_t len)
{
	node *n = arg;

	if (n->rops->replay)
		return n->rops->replay(n->repl, type, lsn, p, len);
	return 0;
}

static size_t snap_state_fwd(void *arg, void *buf, size_t cap)
{
	node *n = arg;

	return n->rops->snap_state(n->repl, buf, cap);
}

static int copy_config(node *n, const struct node_config *cfg)
{
	size_t i;

	n->cfg = *cfg;
	n->cfg.data_dir = strdup(cfg->data_dir);
	n->cfg.listen = cfg->listen ? strdup(cfg->listen) : NULL;
	n->cfg.control = cfg->control ? strdup(cfg->control) : NULL;
	n->cfg.vectors = cfg->vectors ? strdup(cfg->vectors) : NULL;
	n->cfg.peers = calloc(cfg->npeers + 1, sizeof *n->cfg.peers);
	if (!n->cfg.data_dir || !n->cfg.peers || (cfg->listen && !n->cfg.listen) ||
	    (cfg->control && !n->cfg.control) || (cfg->vectors && !n->cfg.vectors))
		return -ENOMEM;
	for (i = 0; i < cfg->npeers; i++)
		if (!(n->cfg.peers[i] = strdup(cfg->peers[i])))
			return -ENOMEM;
	if (!cfg->control) {
		if (asprintf(&n->control_addr, "unix:%s/control.sock", cfg->data_dir) < 0) {
			n->control_addr = NULL;
			return -ENOMEM;
		}
	} else if (cfg->control[0]) {
		if (!(n->control_addr = strdup(cfg->control)))
			return -ENOMEM;
	}
	return 0;
}

static void free_config(node *n)
{
	size_t i;

	free((char *)n->cfg.data_dir);
	free((char *)n->cfg.listen);
	free((char *)n->cfg.control);
	free((char *)n->cfg.vectors);
	if (n->cfg.peers)
		for (i = 0; i < n->cfg.npeers; i++)
			free((char *)n->cfg.peers[i]);
	free((void *)n->cfg.peers);
	free(n->control_addr);
}

/* The data directory is created if missing (one level, like mkdir) and must
 * be a writable directory. */
static int check_data_dir(const char *dir)
{
	struct stat sb;

	if (mkdir(dir, 0700) && errno != EEXIST) {
		int e = errno;
		LOG(LOG_ERROR, "data directory %s: cannot create: %s", dir, strerror(e));
		return -e;
	}
	if (stat(dir, &sb)) {
		int e = errno;
		LOG(LOG_ERROR, "data directory %s: %s", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(sb.st_mode)) {
		LOG(LOG_ERROR, "data directory %s: not a directory", dir);
		return -ENOTDIR;
	}
	if (access(dir, R_OK | W_OK | X_OK)) {
		int e = errno;
		LOG(LOG_ERROR, "data directory %s: not writable: %s", dir, strerror(e));
		return -e;
	}
	return 0;
}

/* The replication mode a data directory was made in: "kvfs.mode", one line.
 * The modes' logs are not interchangeable (a standalone store opened by the
 * Raft mode would serve keys its peers never saw; the Raft log opened by the
 * standalone mode would be overwritten), so a node refuses a directory of
 * another mode. A directory made before the marker existed is judged by its
 * files: raft.meta (cluster/raft_node.h) exists once a Raft node has taken
 * part in an election, which it does before it holds any entry. */
#define MODE_FILE "kvfs.mode"

/* 'r': raft.meta is there; 'd': store files only; 0: empty. */
static int old_contents(const char *dir, int *kind)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	*kind = 0;
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, RN_META_FILE))
			*kind = 'r';
		else if (!*kind && (!strncmp(e->d_name, "wal-", 4) || !strncmp(e->d_name, "snap-", 5)))
			*kind = 'd';
	}
	closedir(d);
	return 0;
}

static int check_mode(const char *dir, enum node_mode mode)
{
	const char *want = node_mode_name(mode);
	char buf[32], line[40];
	long got = kvio_read_small(kvio_posix(), dir, MODE_FILE, buf, sizeof buf - 1);
	int kind, rc;

	if (got >= 0) {
		buf[got] = '\0';
		if (got && buf[got - 1] == '\n')
			buf[got - 1] = '\0';
		if (!strcmp(buf, want))
			return 0;
		if (node_mode_from_name(buf, &(enum node_mode){ 0 })) {
			LOG(LOG_ERROR, "data directory %s: %s/%s is corrupt", dir, dir, MODE_FILE);
			return -EUCLEAN;
		}
		LOG(LOG_ERROR, "data directory %s holds the data of a %s node; this node runs in "
		    "%s mode (start it with --mode %s, or give it another directory)", dir, buf,
		    want, buf);
		return -EINVAL;
	}
	if (got != -ENOENT) {
		LOG(LOG_ERROR, "data directory %s: cannot read %s: %s", dir, MODE_FILE,
		    strerror((int)-got));
		return (int)got;
	}
	rc = old_contents(dir, &kind);
	if (rc) {
		LOG(LOG_ERROR, "data directory %s: %s", dir, strerror(-rc));
		return rc;
	}
	if (kind == 'r' && mode != NODE_RAFT) {
		LOG(LOG_ERROR, "data directory %s holds the data of a raft node; this node runs "
		    "in %s mode", dir, want);
		return -EINVAL;
	}
	if (kind == 'd' && mode == NODE_RAFT) {
		LOG(LOG_ERROR, "data directory %s holds data but no %s: the data of a standalone "
		    "or masterless node, or of a raft node that lost its term and vote; "
		    "refusing to start in raft mode", dir, RN_META_FILE);
		return -EINVAL;
	}
	snprintf(line, sizeof line, "%s\n", want);
	rc = kvio_replace(kvio_posix(), dir, MODE_FILE, line, strlen(line), KVIO_PRIVATE);
	if (rc)
		LOG(LOG_ERROR, "data directory %s: cannot write %s: %s", dir, MODE_FILE,
		    strerror(-rc));
	return rc;
}

static int make_repl(node *n)
{
	switch (n->cfg.mode) {
	case NODE_STANDALONE:
		return repl_standalone_new(n, &n->repl, &n->rops);
	case NODE_RAFT:
		return repl_raft_new(n, &n->cfg, &n->repl, &n->rops);
	case NODE_MASTERLESS:
		return repl_masterless_new(n, &n->cfg, &n->repl, &n->rops);
	}
	return -EINVAL;
}

/* The store closes first: closing joins its threads, and they may still
 * call into the replication layer (the tail of a completion callback, the
 * background snapshot's snap_state). */
static void node_free(node *n)
{
	if (n->st)
		store_close(n->st);
	if (n->rops && n->repl)
		n->rops->destroy(n->repl);
	if (n->search)
		search_index_free(n->search);
	free_config(n);
	pthread_mutex_destroy(&n->qmu);
	pthread_mutex_destroy(&n->smu);
	pthread_cond_destroy(&n->scv);
	pthread_mutex_destroy(&n->lmu);
	free(n);
}

int node_open(const struct node_config *cfg, node **out)
{
	struct store_options sopt = { 0 };
	node *n;
	int rc;

	log_init_from_env();
	if (!cfg->data_dir || !cfg->data_dir[0]) {
		LOG(LOG_ERROR, "no data directory given");
		return -EINVAL;
	}
	n = calloc(1, sizeof *n);
	if (!n)
		return -ENOMEM;
	pthread_mutex_init(&n->qmu, NULL);
	pthread_mutex_init(&n->smu, NULL);
	pthread_cond_init(&n->scv, NULL);
	pthread_mutex_init(&n->lmu, NULL);

	rc = copy_config(n, cfg);
	if (rc)
		goto err;
	rc = check_data_dir(n->cfg.data_dir);
	if (rc)
		goto err;
	rc = check_mode(n->cfg.data_dir, n->cfg.mode);
	if (rc)
		goto err;
	rc = make_repl(n);
	if (rc)
		goto err;

	sopt.replay = replay_fwd;
	sopt.replay_arg = n;
	if (n->rops->snap_state) {
		sopt.snap_state = snap_state_fwd;
		sopt.snap_state_arg = n;
	}
	rc = store_open(n->cfg.data_dir, &sopt, &n->st);
	if (rc) {
		LOG(LOG_ERROR, "cannot open the store in %s: %s", n->cfg.data_dir, strerror(-rc));
		goto err;
	}
	rc = build_search_index(n);
	if (rc)
		goto err;

	rc = uv_loop_init(&n->loop);
	if (rc)
		goto err;
	n->wake.data = n;
	rc = uv_async_init(&n->loop, &n->wake, on_wake);
	if (rc) {
		uv_loop_close(&n->loop);
		goto err;
	}
	rc = uv_thread_create(&n->thread, loop_main, n);
	if (rc) {
		uv_close((uv_handle_t *)&n->wake, NULL);
		uv_run(&n->loop, UV_RUN_DEFAULT);
		uv_loop_close(&n->loop);
		goto err;
	}

	pthread_mutex_lock(&n->smu);
	while (!n->started)
		pthread_cond_wait(&n->scv, &n->smu);
	rc = n->start_status;
	pthread_mutex_unlock(&n->smu);
	if (rc) {
		uv_thread_join(&n->thread);
		uv_loop_close(&n->loop);
		goto err;
	}
	LOG(LOG_INFO, "node up: mode %s, data %s, control %s", node_mode_name(n->cfg.mode),
	    n->cfg.data_dir, n->control_addr ? n->control_addr : "none");
	*out = n;
	return 0;
err:
	node_free(n);
	return rc;
}

void node_close(node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->qmu);
	atomic_store(&n->stopping, 1);
	pthread_mutex_unlock(&n->qmu);
	uv_async_send(&n->wake);
	uv_thread_join(&n->thread);
	if (uv_loop_close(&n->loop))
		LOG(LOG_WARN, "loop closed with handles still open");
	node_free(n);
}

/* ---- the public request API ----------------------------------------------- */

static int submit(node *n, enum req_kind kind, struct node_req *req)
{
	struct qitem *it = calloc(1, sizeof *it);
	int rc;

	if (!it)
		return -ENOMEM;
	it->kind = kind;
	it->req = req;
	req->is_read = kind == REQ_READ;
	rc = queue_push(n, it);
	if (rc)
		free(it);
	return rc;
}

int node_write(node *n, const struct kv_batch *b)
{
	struct waiter w;
	struct node_req *req;
	int rc;

	waiter_init(&w);
	rc = req_new_write(n, b, 0, waiter_done_cb, &w, &req);
	if (rc)
		goto out;
	rc = submit(n, REQ_WRITE, req);
	if (rc) {
		req_free(req);
		goto out;
	}
	rc = waiter_wait(&w);
out:
	waiter_destroy(&w);
	return rc;
}

int node_read_barrier(node *n)
{
	struct waiter w;
	struct node_req *req = calloc(1, sizeof *req);
	int rc;

	if (!req)
		return -ENOMEM;
	waiter_init(&w);
	req->done = waiter_done_cb;
	req->arg = &w;
	rc = submit(n, REQ_READ, req);
	if (rc)
		free(req);
	else
		rc = waiter_wait(&w);
	waiter_destroy(&w);
	return rc;
}

/* Loop-thread entry points. They go through the same queue (uv_async_send is
 * safe from the loop thread too), so that `done` never runs re-entrantly
 * inside the caller and ordering with other threads' requests is kept. */
static void fail_later(node *n, node_done_fn done, void *arg, int status);

void node_write_async(node *n, const struct kv_batch *b, node_done_fn done, void *arg)
{
	struct node_req *req;
	int rc = req_new_write(n, b, 1, done, arg, &req);

	if (rc) {
		fail_later(n, done, arg, rc);
		return;
	}
	req->notify = 1;
	rc = submit(n, REQ_WRITE, req);
	if (rc) {
		req_free(req);
		fail_later(n, done, arg, rc);
	}
}

void node_read_barrier_async(node *n, node_done_fn done, void *arg)
{
	struct node_req *req = calloc(1, sizeof *req);
	int rc;

	if (!req) {
		fail_later(n, done, arg, -ENOMEM);
		return;
	}
	req->done = done;
	req->arg = arg;
	rc = submit(n, REQ_READ, req);
	if (rc) {
		free(req);
		fail_later(n, done, arg, rc);
	}
}

/* Reports an immediate failure from the next loop iteration. */
struct late_fail {
	uv_timer_t   timer;
	node_done_fn done;
	void        *arg;
	int          status;
};

static void late_fail_closed(uv_handle_t *h)
{
	struct late_fail *lf = h->data;
	lf->done(lf->arg, lf->status);
	free(lf);
}

static void late_fail_fire(uv_timer_t *t)
{
	uv_close((uv_handle_t *)t, late_fail_closed);
}

static void fail_later(node *n, node_done_fn done, void *arg, int status)
{
	struct late_fail *lf = calloc(1, sizeof *lf);

	if (!lf) {
		done(arg, status); /* out of memory: report synchronously */
		return;
	}
	lf->done = done;
	lf->arg = arg;
	lf->status = status;
	lf->timer.data = lf;
	uv_timer_init(&n->loop, &lf->timer);
	uv_timer_start(&lf->timer, late_fail_fire, 0, 0);
}

int node_call(node *n, void (*fn)(void *arg), void *arg)
{
	struct waiter w;
	struct qitem *it = calloc(1, sizeof *it);
	int rc;

	if (!it)
		return -ENOMEM;
	waiter_init(&w);
	it->kind = REQ_CALL;
	it->fn = fn;
	it->fn_arg = arg;
	it->w = &w;
	rc = queue_push(n, it);
	if (rc)
		free(it);
	else
		rc = waiter_wait(&w);
	waiter_destroy(&w);
	return rc;
}

/* ---- accessors and status ------------------------------------------------- */

store *node_store(node *n) { return n->st; }
uv_loop_t *node_loop(node *n) { return &n->loop; }
enum node_mode node_get_mode(node *n) { return n->cfg.mode; }
struct search_index *node_search(node *n) { return n->search; }
const struct node_config *node_config(node *n) { return &n->cfg; }

void node_set_change_listener(node *n, const struct node_change_listener *l)
{
	pthread_mutex_lock(&n->lmu);
	if (l)
		n->listener = *l;
	else
		memset(&n->listener, 0, sizeof n->listener);
	pthread_mutex_unlock(&n->lmu);
}

/* Reports one change; with `flush`, ends the run of changes too. */
static void notify(node *n, const char *key, size_t klen, int flush)
{
	struct node_change_listener l = listener_get(n);

	if (l.change && key)
		l.change(l.arg, key, klen);
	if (l.flush && flush)
		l.flush(l.arg);
}

void node_notify_change(node *n, const char *key, size_t klen)
{
	notify(n, key, klen, 1);
}

void node_notify_key(node *n, const char *key, size_t klen)
{
	notify(n, key, klen, 0);
}

void node_notify_flush(node *n)
{
	notify(n, NULL, 0, 1);
}

void node_flush_replies(node *n)
{
	ctl_server_flush(n->ctl);
}

void node_status(node *n, json_t *obj)
{
	struct store_stats ss;

	store_get_stats(n->st, &ss);
	json_object_set_new(obj, "mode", json_string(node_mode_name(n->cfg.mode)));
	json_object_set_new(obj, "version", json_string(KVFS_VERSION));
	json_object_set_new(obj, "keys", json_integer((json_int_t)ss.keys));
	json_object_set_new(obj, "last_lsn", json_integer((json_int_t)ss.last_lsn));
	json_object_set_new(obj, "durable_lsn", json_integer((json_int_t)ss.durable_lsn));
	json_object_set_new(obj, "applied_lsn", json_integer((json_int_t)ss.applied_lsn));
	json_object_set_new(obj, "syncs", json_integer((json_int_t)ss.syncs));
	json_object_set_new(obj, "snapshots", json_integer((json_int_t)ss.snapshots));
	json_object_set_new(obj, "store_error",
			    ss.failed ? json_string(strerror(-ss.failed)) : json_null());
	json_object_set_new(obj, "search_docs", json_integer((json_int_t)search_doc_count(n->search)));
	json_object_set_new(obj, "search_pending",
			    json_integer((json_int_t)search_index_pending(n->search)));
	json_object_set_new(obj, "search_vectors", json_string(search_vectors_kind(n->search)));
	/* The replication layer adds role, term, leader and peers. */
	n->rops->status(n->repl, obj);
}
