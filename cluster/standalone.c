/*
 * standalone.c — the replication layer of a node without peers: a write is
 * committed when the local store has made it durable (group commit inside the
 * store) and applied it.
 *
 * The loop thread owns the store's completions (store_set_completer). A
 * burst of small writes it syncs itself, when no sync is in flight, and
 * answers at once (sa_kick). Otherwise a committer syncs the group and
 * pokes the loop (uv_async_send), and the loop applies the group and
 * answers its requests (node_req_done() must run there) in
 * store_complete(). Groups too big for the loop are applied on the
 * committer, whose completions travel to the loop on a mutex-protected list
 * behind the same async handle.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "cluster/repl.h"

struct standalone;

struct sa_done {
	struct standalone *sa;
	struct node_req *req;
	int              status;
	struct sa_done  *next;
};

struct standalone {
	node           *n;
	uv_async_t      async;
	uv_prepare_t    kick;      /* runs before the loop waits for I/O again */
	uv_idle_t       again;     /* a kick put off: poll without waiting */
	unsigned        fresh;     /* writes submitted since the kick last ran */
	uint64_t        burst_ns;  /* uv_hrtime() when the kick was first put off */
	uint64_t        group_ns;  /* average time of the loop's own groups */
	pthread_mutex_t mu;        /* leaf lock: protects head/tail */
	struct sa_done *head, *tail;
	uint64_t        inflight;  /* loop thread: submitted to the store, not yet done */
	int             started;   /* async handle initialised */
	int             stopping;
	int             closed;
};

/* Set while the loop thread runs store_complete(): completions then need no
 * trip to the loop. */
static _Thread_local int on_loop_completing;

static void sa_maybe_close(struct standalone *sa)
{
	if (sa->started && sa->stopping && sa->inflight == 0 && !sa->closed) {
		sa->closed = 1;
		store_set_completer(node_store(sa->n), NULL, NULL);
		uv_close((uv_handle_t *)&sa->async, NULL);
		uv_close((uv_handle_t *)&sa->kick, NULL);
		uv_close((uv_handle_t *)&sa->again, NULL);
	}
}

static void sa_drain(uv_async_t *h)
{
	struct standalone *sa = h->data;
	struct sa_done *d, *next;

	on_loop_completing = 1;
	store_complete(node_store(sa->n));
	on_loop_completing = 0;
	pthread_mutex_lock(&sa->mu);
	d = sa->head;
	sa->head = sa->tail = NULL;
	pthread_mutex_unlock(&sa->mu);
	for (; d; d = next) {
		next = d->next;
		sa->inflight--;
		node_req_done(sa->n, d->req, d->status);
		free(d);
	}
	sa_maybe_close(sa);
}

/* The loop (store_complete) or a committer thread. The sa_done was
 * allocated before submission so that completion cannot fail for lack of
 * memory. */
static void sa_store_done(void *arg, int status, uint64_t lsn)
{
	struct sa_done *d = arg;
	struct standalone *sa = d->sa;

	(void)lsn;
	if (on_loop_completing) {
		sa->inflight--;
		node_req_done(sa->n, d->req, status);
		free(d);
		return;
	}
	d->status = status;
	d->next = NULL;
	/* The mount's invalidation thread learns of the change here, and works
	 * on it while the completion travels to the loop thread: by the time
	 * the loop answers, the reply's fence has usually been passed and the
	 * answer needs no second trip through that thread. */
	if (node_req_notify(sa->n, d->req, status))
		node_notify_flush(sa->n);
	pthread_mutex_lock(&sa->mu);
	if (sa->tail)
		sa->tail->next = d;
	else
		sa->head = d;
	sa->tail = d;
	/* Sent under the lock: once the loop can take d (the last completion,
	 * say) and close, this thread no longer touches sa. */
	uv_async_send(&sa->async);
	pthread_mutex_unlock(&sa->mu);
}

/* The idle handle's only job: one poll that does not wait (sa_kick). */
static void sa_again(uv_idle_t *h)
{
	uv_idle_stop(h);
}

/* A kick is put off for at most this long, whatever a group takes. */
#define LINGER_MAX_NS 1000000u

/* Writes are submitted with STORE_LATER while the loop handles its ready
 * sockets and queue, and released here, after them (a prepare handle runs
 * before the loop next waits for I/O, whichever phase submitted): the
 * requests a burst of client input brought (every client answered by the
 * last group, say) then share one sync, as in Redis's one fsync per
 * event-loop iteration, instead of the first of them starting a sync of
 * its own and splitting the clients into ever smaller groups.
 *
 * Clients answered by the last group do not send their next requests all
 * at once, though: each reaches the socket a little after the one before
 * (a benchmark client handles 50 replies one after the other, tens of
 * microseconds each). So while the burst keeps growing, and the loop is
 * the one to sync it (store_owner_may_sync: no sync in flight, a small
 * burst), the kick is put off by one more loop iteration, whose poll does
 * not wait and takes whatever arrived meanwhile, for at most about as long
 * as the loop's own groups have taken (group_ns, LINGER_MAX_NS at most).
 * A burst that has stopped growing is synced at once; a lone writer pays
 * one poll that does not wait.
 *
 * When no sync is in flight and the burst is small, the loop syncs and
 * answers it right here (store_kick_here), as Redis does, and the replies
 * go out before the loop waits again; a big one goes to a committer. */
static void sa_kick(uv_prepare_t *h)
{
	struct standalone *sa = h->data;
	uint64_t now = uv_hrtime();

	if (sa->fresh && !sa->stopping && store_owner_may_sync(node_store(sa->n))) {
		if (!sa->burst_ns)
			sa->burst_ns = now;
		if (now - sa->burst_ns < sa->group_ns) {
			sa->fresh = 0;
			uv_idle_start(&sa->again, sa_again);
			return;
		}
	}
	sa->fresh = 0;
	sa->burst_ns = 0;
	uv_prepare_stop(h);
	on_loop_completing = 1;
	if (store_kick_here(node_store(sa->n))) {
		uint64_t took = uv_hrtime() - now;

		if (took > LINGER_MAX_NS)
			took = LINGER_MAX_NS;
		sa->group_ns = (sa->group_ns * 7 + took) / 8;
		node_flush_replies(sa->n);
	}
	on_loop_completing = 0;
	sa_maybe_close(sa);
}

static void sa_write(void *self, struct node_req *req)
{
	struct standalone *sa = self;
	struct sa_done *d = calloc(1, sizeof *d);
	int rc;

	if (!d) {
		node_req_done(sa->n, req, -ENOMEM);
		return;
	}
	d->sa = sa;
	d->req = req;
	sa->inflight++;
	rc = req->prep.rec ? store_submit_prepared(node_store(sa->n), &req->prep, STORE_LATER,
						   sa_store_done, d)
			   : store_submit(node_store(sa->n), &req->batch, STORE_LATER, sa_store_done, d);
	if (rc == 0) {
		sa->fresh++;
		uv_prepare_start(&sa->kick, sa_kick);
	}
	if (rc) {
		sa->inflight--;
		free(d);
		node_req_done(sa->n, req, rc);
	}
}

/* Standalone reads are always current: every acknowledged write was applied
 * to this very store before it was acknowledged. */
static void sa_read_barrier(void *self, struct node_req *req)
{
	struct standalone *sa = self;
	node_req_done(sa->n, req, 0);
}

static void sa_status(void *self, json_t *obj)
{
	(void)self;
	json_object_set_new(obj, "role", json_string("standalone"));
	json_object_set_new(obj, "term", json_integer(0));
	json_object_set_new(obj, "leader", json_null());
	json_object_set_new(obj, "peers", json_array());
}

/* A committer thread: a synced group waits for the loop. */
static void sa_poke(void *arg)
{
	struct standalone *sa = arg;

	uv_async_send(&sa->async);
}

static int sa_start(void *self)
{
	struct standalone *sa = self;
	int rc;

	sa->async.data = sa;
	rc = uv_async_init(node_loop(sa->n), &sa->async, sa_drain);
	if (rc)
		return rc;
	store_set_completer(node_store(sa->n), sa_poke, sa);
	uv_prepare_init(node_loop(sa->n), &sa->kick); /* cannot fail */
	uv_idle_init(node_loop(sa->n), &sa->again); /* cannot fail */
	sa->again.data = sa;
	sa->kick.data = sa;
	uv_unref((uv_handle_t *)&sa->kick);
	sa->started = 1;
	return 0;
}

static void sa_stop(void *self)
{
	struct standalone *sa = self;

	sa->stopping = 1;
	/* What is still held for a kick must be synced (or failed) now. */
	if (sa->started)
		store_kick(node_store(sa->n));
	sa_maybe_close(sa);
}

static void sa_destroy(void *self)
{
	struct standalone *sa = self;

	pthread_mutex_destroy(&sa->mu);
	free(sa);
}

static const struct repl_ops standalone_ops = {
	.name = "standalone",
	.replay = NULL,
	.start = sa_start,
	.write = sa_write,
	.read_barrier = sa_read_barrier,
	.status = sa_status,
	.stop = sa_stop,
	.destroy = sa_destroy,
};

int repl_standalone_new(node *n, void **self, const struct repl_ops **ops)
{
	struct standalone *sa = calloc(1, sizeof *sa);

	if (!sa)
		return -ENOMEM;
	sa->n = n;
	pthread_mutex_init(&sa->mu, NULL);
	*self = sa;
	*ops = &standalone_ops;
	return 0;
}
