/*
 * test_ml_node.c — masterless mode end to end inside one process: three
 * nodes (node runtime, store, peer transport on loopback, cluster/ml_node.c)
 * replicate writes, resolve concurrent writes, collect tombstones and catch
 * a restarted node up.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster/node.h"
#include "store/store.h"
#include "tests/lib/ports.h"
#include "tests/lib/slow_wake.h"

#define NN 3

struct cl {
	char  dir[NN][256];
	char  addr[NN][32];
	const char *peers[NN][NN - 1];
	node *n[NN];
};


static void open_one(struct cl *c, int i)
{
	struct node_config cfg = { 0 };

	cfg.data_dir = c->dir[i];
	cfg.mode = NODE_MASTERLESS;
	cfg.listen = c->addr[i];
	cfg.peers = c->peers[i];
	cfg.npeers = NN - 1;
	cfg.control = "";
	cfg.vectors = "/nonexistent/kvfs-vectors";
	assert_int_equal(node_open(&cfg, &c->n[i]), 0);
}

static struct cl *cl_new(void)
{
	struct cl *c = calloc(1, sizeof(*c));
	int i, j, k;

	assert_non_null(c);
	for (i = 0; i < NN; i++) {
		snprintf(c->dir[i], sizeof(c->dir[i]), "/tmp/kvfs-test-ml-node-%d-%d", (int)getpid(), i);
		test_free_addr(c->addr[i], sizeof(c->addr[i]));
	}
	for (i = 0; i < NN; i++)
		for (j = 0, k = 0; j < NN; j++)
			if (j != i)
				c->peers[i][k++] = c->addr[j];
	for (i = 0; i < NN; i++)
		open_one(c, i);
	return c;
}

static void cl_free(struct cl *c)
{
	char cmd[300];
	int i;

	for (i = 0; i < NN; i++) {
		if (c->n[i])
			node_close(c->n[i]);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir[i]);
		assert_int_equal(system(cmd), 0);
	}
	free(c);
}

static int put(node *n, const char *key, const char *val, int del)
{
	struct kv_op op = { 0 };
	struct kv_batch b = { &op, 1 };

	op.kind = del ? KV_DEL : KV_PUT;
	op.key = key;
	op.klen = (uint32_t)strlen(key);
	op.val = val;
	op.vlen = val ? (uint32_t)strlen(val) : 0;
	op.meta.mode = S_IFREG | 0644;
	return node_write(n, &b);
}

/* The value of key on node n as a string ("" = absent), in buf. */
static const char *value(node *n, const char *key, char *buf, size_t len)
{
	kv_rec *r = NULL;
	size_t sz;

	if (store_get(node_store(n), key, strlen(key), 0, &r))
		return "";
	sz = kv_rec_size(r) < len - 1 ? kv_rec_size(r) : len - 1;
	memcpy(buf, kv_rec_value(r), sz);
	buf[sz] = 0;
	kv_rec_unref(r);
	return buf;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Waits until every node shows `want` ("" = absent) for key; returns the
 * seconds it took or -1 after 15 s. */
static double wait_all(struct cl *c, const char *key, const char *want)
{
	double t0 = now_s();
	char buf[256];
	int i, ok;

	do {
		for (i = 0, ok = 1; i < NN && ok; i++)
			ok = c->n[i] && !strcmp(value(c->n[i], key, buf, sizeof(buf)), want);
		if (ok)
			return now_s() - t0;
		usleep(2000);
	} while (now_s() - t0 < 15);
	return -1;
}

/* Waits until every node holds the same value for key; returns it. */
static int wait_same(struct cl *c, const char *key, char *out, size_t len)
{
	double t0 = now_s();
	char a[256], b[256];
	int i, ok;

	do {
		snprintf(out, len, "%s", value(c->n[0], key, a, sizeof(a)));
		for (i = 1, ok = out[0] != 0; i < NN && ok; i++)
			ok = !strcmp(value(c->n[i], key, b, sizeof(b)), out);
		if (ok)
			return 0;
		usleep(2000);
	} while (now_s() - t0 < 15);
	return -1;
}

static void writes_on_every_node_reach_every_node(void **state)
{
	struct cl *c = cl_new();
	char key[32], val[32];
	double worst = 0, t;
	int i, k;

	(void)state;
	for (k = 0; k < 20; k++) {
		for (i = 0; i < NN; i++) {
			snprintf(key, sizeof(key), "dir/n%d-k%d", i, k);
			snprintf(val, sizeof(val), "v%d.%d", i, k);
			assert_int_equal(put(c->n[i], key, val, 0), 0);
		}
	}
	for (k = 0; k < 20; k++) {
		for (i = 0; i < NN; i++) {
			snprintf(key, sizeof(key), "dir/n%d-k%d", i, k);
			snprintf(val, sizeof(val), "v%d.%d", i, k);
			t = wait_all(c, key, val);
			assert_true(t >= 0);
			if (t > worst)
				worst = t;
		}
	}
	print_message("60 writes on 3 nodes visible everywhere; the last wait took %.3f s\n", worst);

	/* Convergence latency: from a write's acknowledgement until every node
	 * serves it (printed, not asserted: targets live in benchmarks). */
	{
		double lat[300], tmp;
		int a, b;
		for (k = 0; k < 300; k++) {
			double t0;
			snprintf(key, sizeof(key), "lat/%03d", k);
			assert_int_equal(put(c->n[k % NN], key, "x", 0), 0);
			t0 = now_s();
			assert_true(wait_all(c, key, "x") >= 0);
			lat[k] = now_s() - t0;
		}
		for (a = 1; a < 300; a++)
			for (b = a; b > 0 && lat[b - 1] > lat[b]; b--) {
				tmp = lat[b];
				lat[b] = lat[b - 1];
				lat[b - 1] = tmp;
			}
		print_message("convergence after ack, 300 writes: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			      lat[150] * 1e3, lat[296] * 1e3, lat[299] * 1e3);
	}
	cl_free(c);
}

/* A value that cannot travel in one transport frame would never replicate:
 * it is refused with EFBIG, the key keeps its old value, the node goes on. */
static void a_value_too_large_to_replicate_is_refused(void **state)
{
	struct cl *c = cl_new();
	size_t big = (64u << 20) + 1;
	char *val = malloc(big);
	struct kv_op op = { 0 };
	struct kv_batch b = { &op, 1 };
	kv_rec *r = NULL;

	(void)state;
	assert_non_null(val);
	memset(val, 'v', big);
	assert_int_equal(put(c->n[0], "big", "small", 0), 0);
	op.kind = KV_PUT;
	op.key = "big";
	op.klen = 3;
	op.val = val;
	op.vlen = (uint32_t)big;
	op.meta.mode = S_IFREG | 0644;
	assert_int_equal(node_write(c->n[0], &b), -EFBIG);
	free(val);
	assert_int_equal(store_get(node_store(c->n[0]), "big", 3, 0, &r), 0);
	assert_int_equal(kv_rec_size(r), 5);
	kv_rec_unref(r);
	assert_int_equal(put(c->n[0], "after", "ok", 0), 0);
	cl_free(c);
}

static void concurrent_writes_to_one_key_converge(void **state)
{
	struct cl *c = cl_new();
	char v[256], want[32];
	int i;

	(void)state;
	for (i = 0; i < NN; i++) {
		snprintf(want, sizeof(want), "from-%d", i);
		assert_int_equal(put(c->n[i], "same", want, 0), 0);
	}
	assert_int_equal(wait_same(c, "same", v, sizeof(v)), 0);
	print_message("converged on '%s'\n", v);
	cl_free(c);
}

static void deleted_key_stays_deleted_and_tombstone_is_collected(void **state)
{
	struct cl *c = cl_new();
	struct store_stats st;
	double t0;
	int i, left;

	(void)state;
	assert_int_equal(put(c->n[0], "doomed", "x", 0), 0);
	assert_true(wait_all(c, "doomed", "x") >= 0);
	assert_int_equal(put(c->n[1], "doomed", NULL, 1), 0);
	assert_true(wait_all(c, "doomed", "") >= 0);
	t0 = now_s();
	do {
		for (i = 0, left = 0; i < NN; i++) {
			store_get_stats(node_store(c->n[i]), &st);
			left += (int)st.tombstones;
		}
		usleep(10000);
	} while (left && now_s() - t0 < 15);
	assert_int_equal(left, 0);
	assert_true(wait_all(c, "doomed", "") >= 0);
	cl_free(c);
}

static void restarted_node_catches_up(void **state)
{
	struct cl *c = cl_new();
	char key[32];
	int k;

	(void)state;
	assert_int_equal(put(c->n[2], "before", "1", 0), 0);
	assert_true(wait_all(c, "before", "1") >= 0);
	node_close(c->n[2]);
	c->n[2] = NULL;
	for (k = 0; k < 200; k++) {
		snprintf(key, sizeof(key), "while-down/%03d", k);
		assert_int_equal(put(c->n[k % 2], key, "x", 0), 0);
	}
	assert_int_equal(put(c->n[0], "before", NULL, 1), 0);
	open_one(c, 2);
	for (k = 0; k < 200; k++) {
		snprintf(key, sizeof(key), "while-down/%03d", k);
		assert_true(wait_all(c, key, "x") >= 0);
	}
	assert_true(wait_all(c, "before", "") >= 0);
	cl_free(c);
}

/* A node closes as soon as its writers are answered, while the committer
 * that completed the last group may still be on its way out (slowed down
 * here before its wake-up of the loop): node_close() must not free what
 * that committer still touches (test_node.c has the standalone twin). */
#define CLOSE_WRITERS 6
#define CLOSE_PER_WRITER 3

struct close_writer {
	node *n;
	int   id, ok;
};

static void *close_writer_main(void *p)
{
	struct close_writer *w = p;
	char key[32];

	for (int i = 0; i < CLOSE_PER_WRITER; i++) {
		snprintf(key, sizeof(key), "c%d/k%d", w->id, i);
		if (put(w->n, key, "v", 0))
			break;
		w->ok++;
	}
	return NULL;
}

static void close_right_after_the_last_acknowledgement(void **state)
{
	struct cl *c = cl_new();
	struct close_writer w[CLOSE_WRITERS];
	pthread_t th[CLOSE_WRITERS];
	char key[32];

	(void)state;
	slow_wake_set_ms(20);
	for (int i = 0; i < CLOSE_WRITERS; i++) {
		w[i] = (struct close_writer){ .n = c->n[0], .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, close_writer_main, &w[i]), 0);
	}
	for (int i = 0; i < CLOSE_WRITERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].ok, CLOSE_PER_WRITER);
	}
	node_close(c->n[0]);
	c->n[0] = NULL;
	slow_wake_set_ms(0);
	open_one(c, 0);
	for (int i = 0; i < CLOSE_WRITERS; i++)
		for (int j = 0; j < CLOSE_PER_WRITER; j++) {
			snprintf(key, sizeof(key), "c%d/k%d", i, j);
			assert_true(wait_all(c, key, "v") >= 0);
		}
	cl_free(c);
}

static char faults_path[128];

static void set_partition(const char *ids)
{
	FILE *f = fopen(faults_path, "w");

	assert_non_null(f);
	fputs(ids, f);
	fclose(f);
	usleep(400 * 1000); /* the transport re-reads the file every 100 ms */
}

static int tombstones(node *n)
{
	struct store_stats st;

	store_get_stats(node_store(n), &st);
	return (int)st.tombstones;
}

/* A partitioned node keeps accepting writes; both sides converge after the
 * partition heals, and a key deleted on the majority side while the
 * partitioned replica still held (and even updated) it stays deleted. */
static void partitioned_node_keeps_writing_and_a_delete_survives_its_return(void **state)
{
	struct cl *c = cl_new();
	char buf[64];
	double t0;
	int i, left;

	(void)state;
	assert_int_equal(put(c->n[0], "doc", "v1", 0), 0);
	assert_true(wait_all(c, "doc", "v1") >= 0);
	set_partition(c->addr[2]); /* ids follow sorted addresses: name it */
	assert_int_equal(put(c->n[2], "doc", "stale", 0), 0);
	assert_int_equal(put(c->n[2], "only-on-2", "x", 0), 0);
	usleep(20 * 1000);
	assert_int_equal(put(c->n[0], "doc", NULL, 1), 0);
	assert_int_equal(put(c->n[1], "only-on-1", "y", 0), 0);
	usleep(1500 * 1000);
	assert_string_equal(value(c->n[2], "doc", buf, sizeof(buf)), "stale");
	assert_string_equal(value(c->n[0], "doc", buf, sizeof(buf)), "");
	assert_string_equal(value(c->n[2], "only-on-1", buf, sizeof(buf)), "");
	/* Not collected while node 2 has not acknowledged it. */
	assert_true(tombstones(c->n[0]) >= 1);
	assert_true(tombstones(c->n[1]) >= 1);

	set_partition("");
	assert_true(wait_all(c, "only-on-2", "x") >= 0);
	assert_true(wait_all(c, "only-on-1", "y") >= 0);
	assert_true(wait_all(c, "doc", "") >= 0);
	t0 = now_s();
	do {
		for (i = 0, left = 0; i < NN; i++)
			left += tombstones(c->n[i]);
		usleep(10000);
	} while (left && now_s() - t0 < 15);
	assert_int_equal(left, 0);
	usleep(500 * 1000);
	assert_true(wait_all(c, "doc", "") >= 0);
	cl_free(c);
}

/* A control-socket write's keys, and the versions a node applies from a
 * peer, reach the change listener (the mount's invalidation thread) from
 * the store's committer as soon as they are durable and applied, not later
 * from the loop thread: the mount drops its caches while the completion
 * travels to the loop, so by the time the loop answers, the reply's fence
 * has usually been passed (as in standalone mode). */
struct seen {
	pthread_mutex_t mu;
	pthread_t       loop;
	int             on_loop;   /* keys reported on the loop thread */
	char            keys[512]; /* keys reported elsewhere, ';'-separated */
};

static void seen_change(void *arg, const char *key, size_t klen)
{
	struct seen *s = arg;

	pthread_mutex_lock(&s->mu);
	if (pthread_equal(pthread_self(), s->loop))
		s->on_loop++;
	else if (strlen(s->keys) + klen + 2 < sizeof(s->keys)) {
		strncat(s->keys, key, klen);
		strcat(s->keys, ";");
	}
	pthread_mutex_unlock(&s->mu);
}

static void seen_loop(void *arg)
{
	struct seen *s = arg;

	s->loop = pthread_self();
}

static int seen_has(struct seen *s, const char *key)
{
	int r;

	pthread_mutex_lock(&s->mu);
	r = strstr(s->keys, key) != NULL;
	pthread_mutex_unlock(&s->mu);
	return r;
}

struct sock_write {
	node           *n;
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	int             done, status;
};

static void sock_write_done(void *arg, int status)
{
	struct sock_write *w = arg;

	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* On the loop thread, as the control socket writes. */
static void start_sock_write(void *arg)
{
	struct sock_write *w = arg;
	struct kv_op op = { 0 };
	struct kv_batch b = { &op, 1 };

	op.kind = KV_PUT;
	op.key = "sock/key";
	op.klen = 8;
	op.val = "sock value";
	op.vlen = 10;
	op.meta.mode = S_IFREG | 0644;
	node_write_async(w->n, &b, sock_write_done, w); /* batch is copied */
}

static void changes_reach_the_listener_from_the_committer(void **state)
{
	struct cl *c = cl_new();
	static struct seen s[2];
	struct sock_write w = { 0 };
	double t0;
	int i;

	(void)state;
	for (i = 0; i < 2; i++) {
		memset(&s[i], 0, sizeof(s[i]));
		pthread_mutex_init(&s[i].mu, NULL);
		assert_int_equal(node_call(c->n[i], seen_loop, &s[i]), 0);
		node_set_change_listener(c->n[i], &(struct node_change_listener){
							  .change = seen_change, .arg = &s[i] });
	}
	w.n = c->n[0];
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	assert_int_equal(node_call(c->n[0], start_sock_write, &w), 0);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	assert_int_equal(w.status, 0);
	/* Reported before the acknowledgement, off the loop thread. */
	assert_true(seen_has(&s[0], "sock/key;"));
	/* Node 1 applies the pushed version (lazy batch) and reports it. */
	assert_true(wait_all(c, "sock/key", "sock value") >= 0);
	t0 = now_s();
	while (!seen_has(&s[1], "sock/key;") && now_s() - t0 < 15)
		usleep(2000);
	assert_true(seen_has(&s[1], "sock/key;"));
	for (i = 0; i < 2; i++) {
		node_set_change_listener(c->n[i], NULL);
		assert_int_equal(s[i].on_loop, 0);
	}
	cl_free(c);
}

/* The node's status field `name`: an integer, or a boolean as 0/1. */
static long long status_int(node *n, const char *name)
{
	json_t *o = json_object(), *f;
	long long v;

	node_status(n, o);
	f = json_object_get(o, name);
	assert_non_null(f);
	v = json_is_boolean(f) ? json_is_true(f) : json_integer_value(f);
	json_decref(o);
	return v;
}

/* A client batch of the largest size the store takes, arriving while
 * received versions wait in the lazy batch: it used to adopt them, go over
 * KV_BATCH_MAX and be refused as a whole, and the received versions, which
 * the replication core already counted as stored, were never stored (this
 * node then acknowledged tombstones it did not have, and anti-entropy saw
 * nothing missing). The pending versions must be stored on their own. */
static void a_full_client_batch_does_not_swallow_received_versions(void **state)
{
	struct cl *c;
	struct kv_op *ops;
	struct kv_batch b;
	char *keys, buf[64];
	double t0;

	(void)state;
	setenv("KVFS_ML_LAZY_MS", "600000", 1); /* received versions wait */
	c = cl_new();
	unsetenv("KVFS_ML_LAZY_MS");
	assert_int_equal(put(c->n[1], "received", "from node 1", 0), 0);
	t0 = now_s();
	while (status_int(c->n[0], "versions_recv") < 1 && now_s() - t0 < 15)
		usleep(2000);
	assert_true(status_int(c->n[0], "versions_recv") >= 1);
	assert_string_equal(value(c->n[0], "received", buf, sizeof(buf)), "");
	/* Node 0 alone from here: a million versions need not replicate. */
	set_partition(c->addr[0]);

	ops = calloc(KV_BATCH_MAX, sizeof(*ops));
	keys = malloc((size_t)KV_BATCH_MAX * 16);
	assert_non_null(ops);
	assert_non_null(keys);
	/* Directories: nothing for the search index to do, a faster test. */
	for (uint32_t i = 0; i < KV_BATCH_MAX; i++) {
		snprintf(keys + (size_t)i * 16, 16, "b%06x/", i);
		ops[i].kind = KV_PUT;
		ops[i].key = keys + (size_t)i * 16;
		ops[i].klen = 8;
		ops[i].meta.mode = S_IFDIR | 0755;
	}
	b.ops = ops;
	b.n = KV_BATCH_MAX;
	assert_int_equal(node_write(c->n[0], &b), 0);
	free(ops);
	free(keys);
	/* Logged before the batch, so applied once it is acknowledged. */
	assert_string_equal(value(c->n[0], "received", buf, sizeof(buf)), "from node 1");
	assert_int_equal(status_int(c->n[0], "failed"), 0);
	set_partition("");
	cl_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(writes_on_every_node_reach_every_node),
		cmocka_unit_test(a_value_too_large_to_replicate_is_refused),
		cmocka_unit_test(changes_reach_the_listener_from_the_committer),
		cmocka_unit_test(concurrent_writes_to_one_key_converge),
		cmocka_unit_test(deleted_key_stays_deleted_and_tombstone_is_collected),
		cmocka_unit_test(restarted_node_catches_up),
		cmocka_unit_test(close_right_after_the_last_acknowledgement),
		cmocka_unit_test(partitioned_node_keeps_writing_and_a_delete_survives_its_return),
		cmocka_unit_test(a_full_client_batch_does_not_swallow_received_versions),
	};
	char env[160];
	FILE *f;

	/* As kvfs itself (fs/main.c): a peer that closes its end must give
	 * the writer EPIPE, not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));

	/* Every node of this process reads the same fault file; an address in
	 * it cuts that member off from the others (cluster/peer.h, KVFS_FAULTS). */
	snprintf(faults_path, sizeof(faults_path), "/tmp/kvfs-test-ml-node-%d.faults", (int)getpid());
	f = fopen(faults_path, "w");
	if (f)
		fclose(f);
	snprintf(env, sizeof(env), "file=%s", faults_path);
	setenv("KVFS_FAULTS", env, 1);

	{
		int rc = cmocka_run_group_tests(tests, NULL, NULL);
		unlink(faults_path);
		return rc;
	}
}
