/*
 * test_node_close.c — node_close() against the store's background snapshot
 * (7945c91, "the store closes first"): the snapshot thread captures the
 * replication layer's state (store_options.snap_state, rn__snap_state in
 * Raft mode), so the store must be closed, and that thread joined, before
 * the replication layer is destroyed.
 *
 * Wrapped (-Wl,--wrap, tests/meson.build): store_open, so that the node's
 * store snapshots after every write instead of after 256 MiB of log;
 * pthread_mutex_lock, so that the snapshot thread waits at its first lock
 * until the test lets it go (its snapshot then starts after the write that
 * requested it has been answered, and no pending write keeps the node's
 * loop from closing); rn_state_encode, called by rn__snap_state with the
 * replication layer's lock held, which reports that the capture is under
 * way and waits there (bounded) to see whether raft_free, the replication
 * layer's destruction, comes while it is inside.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster/node.h"
#include "cluster/raft.h"
#include "cluster/raft_node.h"
#include "store/store.h"
#include "tests/lib/ports.h"

static struct {
	int armed;      /* atomic: the waits below are on */
	int let_go;     /* atomic: the snapshot thread may go on */
	int capturing;  /* atomic: the snapshot thread is in rn_state_encode */
	int freed;      /* atomic: raft_free has been called */
	int freed_in_capture; /* atomic: ...while the capture was under way */
} S;

int __real_store_open(const char *dir, const struct store_options *opt, store **out);
int __wrap_store_open(const char *dir, const struct store_options *opt, store **out);
int __real_pthread_mutex_lock(pthread_mutex_t *m);
int __wrap_pthread_mutex_lock(pthread_mutex_t *m);
void __real_rn_state_encode(uint64_t index, uint64_t term, unsigned char out[RN_STATE_SIZE]);
void __wrap_rn_state_encode(uint64_t index, uint64_t term, unsigned char out[RN_STATE_SIZE]);
void __real_raft_free(raft *r);
void __wrap_raft_free(raft *r);

static int get(int *v)
{
	return __atomic_load_n(v, __ATOMIC_SEQ_CST);
}

static void set(int *v)
{
	__atomic_store_n(v, 1, __ATOMIC_SEQ_CST);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Waits up to ms for *v; returns it. */
static int wait_for(int *v, int ms)
{
	for (int i = 0; i < ms && !get(v); i++)
		sleep_ms(1);
	return get(v);
}

static int on_snapshot_thread(void)
{
	char name[16] = "";

	return pthread_getname_np(pthread_self(), name, sizeof name) == 0 &&
	       strcmp(name, "kvfs-snapshot") == 0;
}

int __wrap_store_open(const char *dir, const struct store_options *opt, store **out)
{
	struct store_options o = *opt;

	o.snapshot_log_bytes = 1;
	return __real_store_open(dir, &o, out);
}

int __wrap_pthread_mutex_lock(pthread_mutex_t *m)
{
	if (get(&S.armed) && !get(&S.let_go) && on_snapshot_thread())
		wait_for(&S.let_go, 10000);
	return __real_pthread_mutex_lock(m);
}

void __wrap_rn_state_encode(uint64_t index, uint64_t term, unsigned char out[RN_STATE_SIZE])
{
	if (get(&S.armed) && get(&S.let_go) && on_snapshot_thread()) {
		set(&S.capturing);
		/* Under the fix node_close() joins this thread first, so
		 * raft_free cannot come: the wait runs out. */
		if (wait_for(&S.freed, 2000))
			set(&S.freed_in_capture);
		__atomic_store_n(&S.armed, 0, __ATOMIC_SEQ_CST);
	}
	__real_rn_state_encode(index, term, out);
}

void __wrap_raft_free(raft *r)
{
	set(&S.freed);
	__real_raft_free(r);
}

/* ---- helpers (as in test_node.c) ------------------------------------------- */

static struct kv_op put_op(const char *key)
{
	struct kv_op op = { 0 };

	op.kind = KV_PUT;
	op.key = key;
	op.klen = (uint32_t)strlen(key);
	op.val = "v";
	op.vlen = 1;
	op.meta.mode = S_IFREG | 0644;
	return op;
}

struct async_write {
	node *n;
	const char *key;
	int done, status;
};

static void async_done(void *arg, int status)
{
	struct async_write *w = arg;

	w->status = status;
	set(&w->done);
}

static void start_async_write(void *arg)
{
	struct async_write *w = arg;
	struct kv_op op = put_op(w->key);
	struct kv_batch b = { &op, 1 };

	node_write_async(w->n, &b, async_done, w); /* the batch is copied */
}

/* A one-member Raft cluster whose store snapshots after every write; a
 * write requests a background snapshot, whose thread is held until the
 * write is answered, then reaches the capture of the Raft state; the node
 * is closed right then. The capture must not see the Raft layer destroyed
 * (before the fix it was: node_free destroyed it first, and the capture
 * went on with a freed rn; AddressSanitizer also reports the use). */
/* The data directory: made by setup, removed by teardown (which cmocka
 * also runs after a failed assertion). */
static char data_dir[] = "/tmp/kvfs-close-XXXXXX";

static int make_data_dir(void **state)
{
	(void)state;
	return mkdtemp(data_dir) ? 0 : -1;
}

static int remove_data_dir(void **state)
{
	char cmd[64];

	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void close_during_a_background_snapshot_keeps_the_raft_state(void **state)
{
	char addr[32];
	struct node_config cfg = { 0 };
	struct kv_op op = put_op("first");
	struct kv_batch b = { &op, 1 };
	const char *dir = data_dir;
	node *n = NULL;
	int captured = 0;

	(void)state;
	test_free_addr(addr, sizeof addr);
	cfg.data_dir = dir;
	cfg.mode = NODE_RAFT;
	cfg.listen = addr;
	cfg.control = "";
	cfg.vectors = "/nonexistent/kvfs-vectors";
	assert_int_equal(node_open(&cfg, &n), 0);
	assert_int_equal(node_write(n, &b), 0); /* a leader, and a working store */

	set(&S.armed);
	/* A write's snapshot request is lost when a snapshot is running
	 * already (the store then asks again with the next write): retry. */
	for (int i = 0; i < 10 && !captured; i++) {
		char key[16];
		struct async_write w = { .n = n, .key = key };

		snprintf(key, sizeof key, "k%d", i);
		assert_int_equal(node_call(n, start_async_write, &w), 0);
		assert_true(wait_for(&w.done, 10000));
		assert_int_equal(w.status, 0);
		set(&S.let_go);
		captured = wait_for(&S.capturing, 1000);
	}
	assert_true(captured);
	node_close(n);
	assert_true(get(&S.freed));
	assert_false(get(&S.freed_in_capture)); /* true: Raft freed under the capture */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(close_during_a_background_snapshot_keeps_the_raft_state,
						make_data_dir, remove_data_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
