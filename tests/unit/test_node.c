/*
 * test_node.c — the node runtime in standalone mode: requests from many
 * threads funnel through the loop, share group commits, survive a restart,
 * and shutdown neither loses nor half-applies anything.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster/node.h"
#include "search/search.h"
#include "cluster/repl.h"
#include "tests/lib/slow_wake.h"
#include "tests/lib/ports.h"

static char *make_tmpdir(void)
{
	char tmpl[] = "/tmp/kvfs-node-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return strdup(d);
}

/* Removes the directory and frees its name (from make_tmpdir). */
static void rm_rf(char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

/* A standalone node, or with `listen` a one-member Raft cluster there. */
static node *open_node_at(const char *dir, const char *listen)
{
	struct node_config cfg = { 0 };
	node *n = NULL;

	cfg.data_dir = dir;
	cfg.mode = listen ? NODE_RAFT : NODE_STANDALONE;
	cfg.listen = listen;
	cfg.control = "";               /* no control socket in these tests */
	cfg.vectors = "/nonexistent/kvfs-vectors"; /* n-gram vectors: fast start */
	assert_int_equal(node_open(&cfg, &n), 0);
	assert_non_null(n);
	return n;
}

static node *open_node(const char *dir)
{
	return open_node_at(dir, NULL);
}

static struct kv_op put_op(const char *key, const char *val)
{
	struct kv_op op = { 0 };

	op.kind = KV_PUT;
	op.key = key;
	op.klen = (uint32_t)strlen(key);
	op.val = val;
	op.vlen = (uint32_t)strlen(val);
	op.meta.mode = S_IFREG | 0644;
	return op;
}

static int put(node *n, const char *key, const char *val)
{
	struct kv_op op = put_op(key, val);
	struct kv_batch b = { &op, 1 };
	return node_write(n, &b);
}

static void assert_value(node *n, const char *key, const char *want)
{
	kv_rec *r = NULL;

	assert_int_equal(store_get(node_store(n), key, strlen(key), 0, &r), 0);
	assert_int_equal(kv_rec_size(r), strlen(want));
	assert_memory_equal(kv_rec_value(r), want, strlen(want));
	kv_rec_unref(r);
}

static void write_is_visible_after_it_returns(void **state)
{
	char *dir = make_tmpdir();
	node *n = open_node(dir);

	(void)state;
	assert_int_equal(put(n, "greeting", "hello"), 0);
	assert_value(n, "greeting", "hello");
	assert_int_equal(node_read_barrier(n), 0);
	node_close(n);
	rm_rf(dir);
}

/* How many documents a text query for `word` finds. */
static size_t text_hits(node *n, const char *word)
{
	struct search_hit *hits = NULL;
	size_t nh = 0;

	assert_int_equal(search_query(node_search(n), word, strlen(word), SEARCH_TEXT, 0, &hits,
				      &nh), 0);
	search_hits_free(hits, nh);
	return nh;
}

/* The search index follows every write: a rewrite with the same contents
 * (which skips re-indexing), a metadata-only change, a rewrite with other
 * contents, a delete. */
static void search_index_follows_rewrites(void **state)
{
	char *dir = make_tmpdir();
	node *n = open_node(dir);
	struct kv_op op;
	struct kv_batch b = { &op, 1 };

	(void)state;
	assert_int_equal(put(n, "doc", "zucchini harvest"), 0);
	assert_int_equal(text_hits(n, "zucchini"), 1);
	assert_int_equal(put(n, "doc", "zucchini harvest"), 0);
	assert_int_equal(text_hits(n, "zucchini"), 1);
	search_index_flush(node_search(n));
	assert_int_equal(search_doc_count(node_search(n)), 1);
	op = put_op("doc", "");
	op.kind = KV_META;
	op.meta.mode = S_IFREG | 0600;
	assert_int_equal(node_write(n, &b), 0);
	assert_int_equal(text_hits(n, "harvest"), 1);
	/* Same length, other words: must be re-indexed. */
	assert_int_equal(put(n, "doc", "tomatoes ripened"), 0);
	assert_int_equal(text_hits(n, "zucchini"), 0);
	assert_int_equal(text_hits(n, "tomatoes"), 1);
	op = put_op("doc", "");
	op.kind = KV_DEL;
	assert_int_equal(node_write(n, &b), 0);
	assert_int_equal(text_hits(n, "tomatoes"), 0);
	search_index_flush(node_search(n));
	assert_int_equal(search_doc_count(node_search(n)), 0);
	node_close(n);
	rm_rf(dir);
}

static void invalid_key_is_refused_and_node_stays_up(void **state)
{
	char *dir = make_tmpdir();
	node *n = open_node(dir);
	char big[5000];

	(void)state;
	assert_int_equal(put(n, "/abs", "x"), -EINVAL);
	assert_int_equal(put(n, "a//b", "x"), -EINVAL);
	assert_int_equal(put(n, ".search/x", "x"), -EINVAL);
	memset(big, 'k', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(put(n, big, "x"), -ENAMETOOLONG);
	assert_int_equal(put(n, "ok", "fine"), 0);
	assert_value(n, "ok", "fine");
	node_close(n);
	rm_rf(dir);
}

#define WRITERS 32
#define PER_WRITER 40

struct writer_arg {
	node *n;
	int   id;
	int   ok;        /* writes acknowledged, in order; stops at the first error */
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	char key[64], val[64];
	int i;

	for (i = 0; i < PER_WRITER; i++) {
		snprintf(key, sizeof key, "w%02d/k%04d", a->id, i);
		snprintf(val, sizeof val, "value-%d-%d", a->id, i);
		if (put(a->n, key, val))
			break;
		a->ok++;
	}
	return NULL;
}

static void concurrent_writers_share_syncs_and_survive_restart(void **state)
{
	char *dir = make_tmpdir();
	node *n = open_node(dir);
	pthread_t th[WRITERS];
	struct writer_arg args[WRITERS];
	struct store_stats before, after;
	char key[64], val[64];
	int i, j;

	(void)state;
	store_get_stats(node_store(n), &before);
	for (i = 0; i < WRITERS; i++) {
		args[i] = (struct writer_arg){ .n = n, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, writer, &args[i]), 0);
	}
	for (i = 0; i < WRITERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].ok, PER_WRITER);
	}
	store_get_stats(node_store(n), &after);
	/* Group commit: 32 concurrent writers must share syncs. */
	print_message("writes %d, syncs %llu\n", WRITERS * PER_WRITER,
		      (unsigned long long)(after.syncs - before.syncs));
	assert_true(after.syncs - before.syncs < (uint64_t)WRITERS * PER_WRITER / 4);
	node_close(n);

	n = open_node(dir);
	for (i = 0; i < WRITERS; i++)
		for (j = 0; j < PER_WRITER; j++) {
			snprintf(key, sizeof key, "w%02d/k%04d", i, j);
			snprintf(val, sizeof val, "value-%d-%d", i, j);
			assert_value(n, key, val);
		}
	node_close(n);
	rm_rf(dir);
}

/* ---- loop-thread API --------------------------------------------------------- */

struct async_ctx {
	node           *n;
	int             status;
	int             done;
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	pthread_t       loop_thread;
	pthread_t       cb_thread;
};

static void async_done(void *arg, int status)
{
	struct async_ctx *c = arg;

	pthread_mutex_lock(&c->mu);
	c->status = status;
	c->done = 1;
	c->cb_thread = pthread_self();
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void start_async_write(void *arg)
{
	struct async_ctx *c = arg;
	struct kv_op op = put_op("async/key", "async value");
	struct kv_batch b = { &op, 1 };

	c->loop_thread = pthread_self();
	node_write_async(c->n, &b, async_done, c); /* batch is copied */
}

static void async_write_completes_on_the_loop_thread(void **state)
{
	char *dir = make_tmpdir();
	struct async_ctx c = { 0 };

	(void)state;
	c.n = open_node(dir);
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	assert_int_equal(node_call(c.n, start_async_write, &c), 0);
	pthread_mutex_lock(&c.mu);
	while (!c.done)
		pthread_cond_wait(&c.cv, &c.mu);
	pthread_mutex_unlock(&c.mu);
	assert_int_equal(c.status, 0);
	assert_true(pthread_equal(c.loop_thread, c.cb_thread));
	assert_value(c.n, "async/key", "async value");
	node_close(c.n);
	rm_rf(dir);
}


/* The node closes as soon as its writers are answered, while the committer
 * that completed the last group may still be on its way out (here: slowed
 * down before its wake-up of the loop). node_close() must not free what
 * that committer still touches (before the fix: libuv aborted on the
 * loop's closed wake-up descriptor, or worse, wrote to a reused one). */
#define CLOSE_WRITERS 6
#define CLOSE_PER_WRITER 3

static void *few_writes(void *p)
{
	struct writer_arg *a = p;
	char key[64];

	for (int i = 0; i < CLOSE_PER_WRITER; i++) {
		snprintf(key, sizeof key, "c%02d/k%d", a->id, i);
		if (put(a->n, key, "v"))
			break;
		a->ok++;
	}
	return NULL;
}

static void close_right_after_the_last_acknowledgement(void **state)
{
	(void)state;
	/* Rounds 0-2 standalone, 3-4 a one-member Raft cluster (its appends
	 * complete on the committer the same way, rn_append_cb). */
	for (int round = 0; round < 5; round++) {
		char *dir = make_tmpdir(), addr[32];
		const char *listen = NULL;
		node *n;

		if (round >= 3) {
			test_free_addr(addr, sizeof addr);
			listen = addr;
		}
		n = open_node_at(dir, listen);
		pthread_t th[CLOSE_WRITERS];
		struct writer_arg args[CLOSE_WRITERS];

		slow_wake_set_ms(20);
		for (int i = 0; i < CLOSE_WRITERS; i++) {
			args[i] = (struct writer_arg){ .n = n, .id = i };
			assert_int_equal(pthread_create(&th[i], NULL, few_writes, &args[i]), 0);
		}
		for (int i = 0; i < CLOSE_WRITERS; i++) {
			pthread_join(th[i], NULL);
			assert_int_equal(args[i].ok, CLOSE_PER_WRITER);
		}
		node_close(n);
		slow_wake_set_ms(0);
		n = open_node_at(dir, listen);
		assert_int_equal(node_read_barrier(n), 0); /* Raft: applied again */
		for (int i = 0; i < CLOSE_WRITERS; i++)
			for (int j = 0; j < CLOSE_PER_WRITER; j++) {
				char key[64];

				snprintf(key, sizeof key, "c%02d/k%d", i, j);
				assert_value(n, key, "v");
			}
		node_close(n);
		rm_rf(dir);
	}
}

/* Writes in flight when node_close() is called (from the control socket,
 * which lives on the loop) are each answered exactly once, with success or
 * -ESHUTDOWN, and every acknowledged one is there after a restart. */
#define INFLIGHT 500

struct inflight {
	node *n;
	int   status[INFLIGHT];
	int   calls[INFLIGHT];
	char  keys[INFLIGHT][32];
	char  vals[INFLIGHT][32];
};

struct inflight_slot {
	struct inflight *f;
	int              i;
};

static struct inflight_slot slots[INFLIGHT];

static void inflight_done(void *arg, int status)
{
	struct inflight_slot *s = arg;

	s->f->status[s->i] = status;
	s->f->calls[s->i]++;
}

static void start_many_async_writes(void *arg)
{
	struct inflight *f = arg;
	int i;

	for (i = 0; i < INFLIGHT; i++) {
		struct kv_op op;
		struct kv_batch b = { &op, 1 };

		snprintf(f->keys[i], sizeof f->keys[i], "inflight/%04d", i);
		snprintf(f->vals[i], sizeof f->vals[i], "v%d", i);
		op = put_op(f->keys[i], f->vals[i]);
		slots[i] = (struct inflight_slot){ f, i };
		node_write_async(f->n, &b, inflight_done, &slots[i]);
	}
}

static void close_with_writes_in_flight_answers_each_once(void **state)
{
	char *dir = make_tmpdir();
	static struct inflight f;
	int i, ok = 0;

	(void)state;
	memset(&f, 0, sizeof f);
	f.n = open_node(dir);
	assert_int_equal(node_call(f.n, start_many_async_writes, &f), 0);
	node_close(f.n);
	for (i = 0; i < INFLIGHT; i++) {
		assert_int_equal(f.calls[i], 1);
		assert_true(f.status[i] == 0 || f.status[i] == -ESHUTDOWN);
		ok += f.status[i] == 0;
	}
	print_message("%d of %d in-flight writes acknowledged before close\n", ok, INFLIGHT);
	f.n = open_node(dir);
	for (i = 0; i < INFLIGHT; i++)
		if (f.status[i] == 0)
			assert_value(f.n, f.keys[i], f.vals[i]);
	node_close(f.n);
	rm_rf(dir);
}

/* A stream of writes that never pauses: the standalone loop puts a sync
 * off while the burst keeps growing (standalone.c, sa_kick), so the writes
 * share syncs, but for no longer than about one group takes, so they are
 * still acknowledged while the stream goes on. The stream is an idle handle
 * on the node's loop: one write per loop iteration, so every kick finds
 * fresh writes. Without the time bound, the first group after the warm-up
 * waited until it outgrew what the loop syncs itself (STORE_OWNER_GROUP_MAX,
 * some 2,900 of these writes) and the stream ran into STREAM_MAX; without
 * the putting off, every write had a sync of its own. With it, a group
 * waits 1 ms at most: even at 1 us per loop iteration the first 200 writes
 * are acknowledged before 2,500 were sent. */
#define STREAM_ACKS 200
#define STREAM_MAX  2500

struct stream {
	node           *n;
	uv_idle_t       idle;
	unsigned        sent, acked, failed; /* loop thread */
	uint64_t        syncs0;              /* the log's syncs before the stream */
	unsigned        stop_sent, stop_acked, stop_syncs; /* when it stopped */
	char            key[32];
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	int             closed;
};

static uint64_t log_syncs(node *n)
{
	struct store_stats ss;

	store_get_stats(node_store(n), &ss);
	return ss.syncs;
}

static void stream_done(void *arg, int status)
{
	struct stream *s = arg;

	s->failed += status != 0;
	s->acked++;
}

static void stream_closed(uv_handle_t *h)
{
	struct stream *s = h->data;

	pthread_mutex_lock(&s->mu);
	s->closed = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void stream_step(uv_idle_t *h)
{
	struct stream *s = h->data;
	struct kv_op op;
	struct kv_batch b = { &op, 1 };

	if (s->acked >= STREAM_ACKS || s->sent >= STREAM_MAX) {
		s->stop_sent = s->sent;
		s->stop_acked = s->acked;
		s->stop_syncs = (unsigned)(log_syncs(s->n) - s->syncs0);
		uv_idle_stop(h);
		uv_close((uv_handle_t *)h, stream_closed);
		return;
	}
	snprintf(s->key, sizeof s->key, "stream/%03u", s->sent % 1000);
	op = put_op(s->key, "streamed");
	node_write_async(s->n, &b, stream_done, s); /* batch is copied */
	s->sent++;
}

static void stream_start(void *arg)
{
	struct stream *s = arg;

	s->syncs0 = log_syncs(s->n);
	uv_idle_init(node_loop(s->n), &s->idle);
	s->idle.data = s;
	uv_idle_start(&s->idle, stream_step);
}

static void a_stream_that_never_pauses_is_still_synced(void **state)
{
	char *dir = make_tmpdir();
	static struct stream s;
	struct timespec until;
	int rc = 0;

	(void)state;
	memset(&s, 0, sizeof s);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	s.n = open_node(dir);
	/* A few groups first, so that the loop knows how long one takes (it
	 * puts nothing off before). */
	for (int i = 0; i < 5; i++)
		assert_int_equal(put(s.n, "stream/warm", "up"), 0);
	assert_int_equal(node_call(s.n, stream_start, &s), 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 60;
	pthread_mutex_lock(&s.mu);
	while (!s.closed && rc == 0)
		rc = pthread_cond_timedwait(&s.cv, &s.mu, &until);
	pthread_mutex_unlock(&s.mu);
	assert_int_equal(rc, 0); /* else the loop is stuck: the test cannot clean up */
	print_message("%u writes streamed until %u were acknowledged, in %u syncs\n",
		      s.stop_sent, s.stop_acked, s.stop_syncs);
	assert_true(s.stop_acked >= STREAM_ACKS);
	assert_true(s.stop_sent < STREAM_MAX);
	assert_true(s.stop_syncs <= s.stop_acked / 2);
	node_close(s.n); /* answers the writes still in flight */
	assert_int_equal(s.acked, s.sent);
	assert_int_equal(s.failed, 0);
	rm_rf(dir);
}

/* Writes from the loop thread (the control socket) reach the change listener
 * so the mount drops its caches; the mount's own blocking writes do not. */
static pthread_mutex_t changes_mu = PTHREAD_MUTEX_INITIALIZER;
static char changes[256];

static void on_change(void *arg, const char *key, size_t klen)
{
	(void)arg;
	pthread_mutex_lock(&changes_mu);
	strncat(changes, key, klen);
	strcat(changes, ";");
	pthread_mutex_unlock(&changes_mu);
}

static void socket_writes_notify_the_change_listener(void **state)
{
	char *dir = make_tmpdir();
	struct async_ctx c = { 0 };

	(void)state;
	c.n = open_node(dir);
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	changes[0] = '\0';
	node_set_change_listener(c.n, &(struct node_change_listener){ .change = on_change });
	assert_int_equal(put(c.n, "from/mount", "x"), 0);
	assert_int_equal(node_call(c.n, start_async_write, &c), 0);
	pthread_mutex_lock(&c.mu);
	while (!c.done)
		pthread_cond_wait(&c.cv, &c.mu);
	pthread_mutex_unlock(&c.mu);
	assert_int_equal(c.status, 0);
	pthread_mutex_lock(&changes_mu);
	assert_string_equal(changes, "async/key;");
	pthread_mutex_unlock(&changes_mu);
	node_set_change_listener(c.n, NULL);
	node_close(c.n);
	rm_rf(dir);
}

/* A socket write's reply waits for the listener's fence: the fake listener
 * keeps it, the reply must not come, then another thread reaches it. */
static node_change_reached_fn held_reached;
static void *held_cookie;

static int hold_fence(void *arg, node_change_reached_fn reached, void *cookie)
{
	(void)arg;
	pthread_mutex_lock(&changes_mu);
	held_reached = reached;
	held_cookie = cookie;
	pthread_mutex_unlock(&changes_mu);
	return 1;
}

static void *reach_held(void *arg)
{
	(void)arg;
	held_reached(held_cookie);
	return NULL;
}

static void socket_write_reply_waits_for_the_change_fence(void **state)
{
	char *dir = make_tmpdir();
	struct async_ctx c = { 0 };
	pthread_t t;
	int held;

	(void)state;
	c.n = open_node(dir);
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	changes[0] = '\0';
	held_reached = NULL;
	node_set_change_listener(c.n, &(struct node_change_listener){ .change = on_change,
								       .fence = hold_fence });
	assert_int_equal(node_call(c.n, start_async_write, &c), 0);
	/* The write commits and reports its key, then the reply is held. */
	for (held = 0; !held; usleep(1000)) {
		pthread_mutex_lock(&changes_mu);
		held = held_reached != NULL;
		pthread_mutex_unlock(&changes_mu);
	}
	usleep(50 * 1000);
	pthread_mutex_lock(&c.mu);
	assert_int_equal(c.done, 0);
	pthread_mutex_unlock(&c.mu);
	pthread_mutex_lock(&changes_mu);
	assert_string_equal(changes, "async/key;");
	pthread_mutex_unlock(&changes_mu);
	assert_value(c.n, "async/key", "async value");
	/* Reached from another thread: the reply comes, on the loop thread. */
	assert_int_equal(pthread_create(&t, NULL, reach_held, NULL), 0);
	pthread_mutex_lock(&c.mu);
	while (!c.done)
		pthread_cond_wait(&c.cv, &c.mu);
	pthread_mutex_unlock(&c.mu);
	pthread_join(t, NULL);
	assert_int_equal(c.status, 0);
	assert_true(pthread_equal(c.loop_thread, c.cb_thread));
	node_set_change_listener(c.n, NULL);
	node_close(c.n);
	rm_rf(dir);
}

static void data_dir_that_is_a_file_is_refused(void **state)
{
	char *dir = make_tmpdir();
	char file[600];
	struct node_config cfg = { 0 };
	node *n = NULL;
	FILE *f;

	(void)state;
	snprintf(file, sizeof file, "%s/plainfile", dir);
	f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	cfg.data_dir = file;
	cfg.control = "";
	assert_int_equal(node_open(&cfg, &n), -ENOTDIR);
	assert_null(n);
	rm_rf(dir);
}

static int try_open(const char *dir, enum node_mode mode, const char *listen, node **n)
{
	struct node_config cfg = { 0 };

	cfg.data_dir = dir;
	cfg.mode = mode;
	cfg.listen = listen;
	cfg.control = "";
	cfg.vectors = "/nonexistent/kvfs-vectors";
	*n = NULL;
	return node_open(&cfg, n);
}

static void remove_file(const char *dir, const char *name)
{
	char path[600];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	assert_int_equal(unlink(path), 0);
}

/* The modes' logs are not interchangeable: a standalone store opened as a
 * Raft node used to serve keys its peers never had (replicas diverged), and
 * a Raft data directory opened standalone would have its log overwritten. */
static void a_data_dir_of_another_mode_is_refused(void **state)
{
	char *sdir = make_tmpdir(), *rdir = make_tmpdir(), addr[32];
	node *n;

	(void)state;
	test_free_addr(addr, sizeof addr);
	n = open_node(sdir);
	assert_int_equal(put(n, "standalone-only", "local"), 0);
	node_close(n);
	assert_int_equal(try_open(sdir, NODE_RAFT, addr, &n), -EINVAL);
	assert_null(n);
	assert_int_equal(try_open(sdir, NODE_MASTERLESS, addr, &n), -EINVAL);
	/* A directory from before the marker: judged by its files. */
	remove_file(sdir, "kvfs.mode");
	assert_int_equal(try_open(sdir, NODE_RAFT, addr, &n), -EINVAL);
	n = open_node(sdir);
	assert_value(n, "standalone-only", "local");
	node_close(n);

	n = open_node_at(rdir, addr);
	assert_int_equal(put(n, "raft-key", "r"), 0);
	node_close(n);
	assert_int_equal(try_open(rdir, NODE_STANDALONE, NULL, &n), -EINVAL);
	remove_file(rdir, "kvfs.mode");
	assert_int_equal(try_open(rdir, NODE_STANDALONE, NULL, &n), -EINVAL);
	n = open_node_at(rdir, addr);
	assert_int_equal(node_read_barrier(n), 0);
	assert_value(n, "raft-key", "r");
	node_close(n);
	rm_rf(sdir);
	rm_rf(rdir);
}

/* Without its term and vote a Raft node could vote twice in one term: a
 * log newer than raft.meta stops the start. */
static void raft_log_without_its_term_is_refused(void **state)
{
	char *dir = make_tmpdir(), addr[32];
	node *n;

	(void)state;
	test_free_addr(addr, sizeof addr);
	n = open_node_at(dir, addr);
	assert_int_equal(put(n, "k", "v"), 0);
	node_close(n);
	remove_file(dir, "raft.meta");
	assert_int_equal(try_open(dir, NODE_RAFT, addr, &n), -EUCLEAN);
	assert_null(n);
	rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(write_is_visible_after_it_returns),
		cmocka_unit_test(invalid_key_is_refused_and_node_stays_up),
		cmocka_unit_test(concurrent_writers_share_syncs_and_survive_restart),
		cmocka_unit_test(close_with_writes_in_flight_answers_each_once),
		cmocka_unit_test(close_right_after_the_last_acknowledgement),
		cmocka_unit_test(async_write_completes_on_the_loop_thread),
		cmocka_unit_test(a_stream_that_never_pauses_is_still_synced),
		cmocka_unit_test(socket_writes_notify_the_change_listener),
		cmocka_unit_test(socket_write_reply_waits_for_the_change_fence),
		cmocka_unit_test(search_index_follows_rewrites),
		cmocka_unit_test(data_dir_that_is_a_file_is_refused),
		cmocka_unit_test(a_data_dir_of_another_mode_is_refused),
		cmocka_unit_test(raft_log_without_its_term_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
