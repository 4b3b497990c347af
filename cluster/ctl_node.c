/*
 * ctl_node.c — the control socket's backend over a real node: committed data
 * is read straight from the store (thread-safe, no loop round trip), writes
 * and Raft read barriers go through the node's loop-thread entry points.
 */
#include "cluster/ctl_sess.h"

#include <errno.h>
#include <time.h>

#include "cluster/node.h"
#include "search/search.h"
#include "store/key.h"

static int nb_fill(kv_rec *r, struct ctl_rec *out)
{
	out->val = kv_rec_value(r);
	out->len = kv_rec_size(r);
	out->meta = *kv_rec_meta(r);
	out->version = kv_rec_version(r);
	out->ref = r;
	return 0;
}

static int nb_get(void *self, const char *key, size_t klen, struct ctl_rec *out)
{
	kv_rec *r;
	int rc = store_get(node_store(self), key, klen, 0, &r);

	return rc ? rc : nb_fill(r, out);
}

static int nb_get_many(void *self, size_t n, const char *const *keys, const size_t *klens,
		       struct ctl_rec *out, unsigned char *found)
{
	kv_rec **r = malloc((n ? n : 1) * sizeof *r);

	if (!r)
		return -ENOMEM;
	store_get_many(node_store(self), n, keys, klens, r);
	for (size_t i = 0; i < n; i++) {
		found[i] = r[i] != NULL;
		if (r[i])
			nb_fill(r[i], &out[i]);
	}
	free(r);
	return 0;
}

static int nb_next(void *self, const char *prefix, size_t plen, const char *after, size_t alen,
		   char *keybuf, size_t *klen, struct ctl_rec *out)
{
	kv_rec *r;
	int rc = store_next(node_store(self), prefix, plen, after, alen, 0, keybuf, klen, &r);

	return rc ? rc : nb_fill(r, out);
}

static void nb_release(void *self, struct ctl_rec *r)
{
	(void)self;
	if (r->ref)
		kv_rec_unref(r->ref);
	r->ref = NULL;
}

static int nb_maybe_dir(void *self, const char *key, size_t klen)
{
	return store_maybe_dir(node_store(self), key, klen);
}

static uint64_t nb_count(void *self)
{
	struct store_stats ss;

	store_get_stats(node_store(self), &ss);
	return ss.keys;
}

static int nb_key_check(void *self, const char *key, size_t klen)
{
	(void)self;
	return key_check(key, klen);
}

static void nb_write(void *self, const struct kv_batch *b, ctl_done_fn done, void *arg)
{
	node_write_async(self, b, done, arg);
}

static int nb_barrier_needed(void *self)
{
	return node_get_mode(self) == NODE_RAFT;
}

static void nb_barrier(void *self, ctl_done_fn done, void *arg)
{
	node_read_barrier_async(self, done, arg);
}

static int nb_search(void *self, const char *q, size_t qlen, const char *mode, size_t limit,
		     struct search_hit **hits, size_t *n)
{
	struct search_index *ix = node_search(self);
	enum search_mode m;

	if (!ix)
		return -ENOTSUP;
	if (search_mode_parse(mode, &m))
		return -EINVAL;
	/* This runs on the node's loop thread, and a query waits until the
	 * index holds every write made before it: after a restart that is the
	 * whole rebuild, seconds during which the node could not serve peers
	 * or clients. Ask again instead. (The mount's .search waits: its
	 * threads block nobody.) */
	if (search_index_loading(ix))
		return -EAGAIN;
	return search_query(ix, q, qlen, m, limit, hits, n);
}

static void nb_hits_free(void *self, struct search_hit *hits, size_t n)
{
	(void)self;
	search_hits_free(hits, n);
}

static void nb_status(void *self, json_t *obj)
{
	node_status(self, obj);
}

static int64_t nb_now(void *self)
{
	struct timespec ts;

	(void)self;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *nb_role(void *self)
{
	return node_mode_name(node_get_mode(self));
}

void ctl_node_backend(struct node *n, struct ctl_backend *be)
{
	be->self = n;
	be->get = nb_get;
	be->get_many = nb_get_many;
	be->next = nb_next;
	be->release = nb_release;
	be->maybe_dir = nb_maybe_dir;
	be->count = nb_count;
	be->key_check = nb_key_check;
	be->write = nb_write;
	be->barrier_needed = nb_barrier_needed;
	be->barrier = nb_barrier;
	be->search = nb_search;
	be->hits_free = nb_hits_free;
	be->status = nb_status;
	be->now_ns = nb_now;
	be->role = nb_role;
}
