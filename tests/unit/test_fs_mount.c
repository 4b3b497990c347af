/*
 * test_fs_mount.c — the mount's FUSE callbacks (fs/llops.c) and its change
 * listener (fs/main.c) over a real standalone node in a temporary
 * directory, without a kernel.
 *
 * fs/main.c is included below (its main() renamed) so that a test installs
 * the very listener the binary installs (on_change and friends are static
 * there). libfuse's reply calls are wrapped (-Wl,--wrap, tests/meson.build)
 * and write into a fake request instead of /dev/fuse. Two doors let a test
 * stop a thread at a chosen point and so build the interleaving of a race
 * deterministically: node_write() of a batch whose first key is
 * door.hold_key, and fsops_open_stat() (the stat of an open file that lost
 * its name, called under the inode table's lock) while door.hold_stat is
 * set. Both wait until the test opens the door.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

int kvfs_main(int argc, char **argv);
#define main kvfs_main
#include "fs/main.c"
#undef main

/* ---- doors and fake requests ----------------------------------------------- */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t  cv;        /* broadcast on every change below and every reply */
	const char     *hold_key;  /* node_write() of a batch starting with it waits */
	int             hold_stat; /* fsops_open_stat() waits */
	int             held;      /* a thread waits at a door */
	int             open;      /* the doors are open */
} door = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void door_reset(void)
{
	pthread_mutex_lock(&door.mu);
	door.hold_key = NULL;
	door.hold_stat = 0;
	door.held = 0;
	door.open = 0;
	pthread_mutex_unlock(&door.mu);
}

static void door_open(void)
{
	pthread_mutex_lock(&door.mu);
	door.open = 1;
	pthread_cond_broadcast(&door.cv);
	pthread_mutex_unlock(&door.mu);
}

/* Waits at the door, if it is closed. door.mu held. */
static void door_wait_locked(void)
{
	door.held = 1;
	pthread_cond_broadcast(&door.cv);
	while (!door.open)
		pthread_cond_wait(&door.cv, &door.mu);
}

/* Waits up to ms for *flag (read under door.mu) to be set; returns it. */
static int await(const int *flag, int ms)
{
	struct timespec end;
	int v;

	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += ms / 1000;
	end.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&door.mu);
	while (!*flag && pthread_cond_timedwait(&door.cv, &door.mu, &end) == 0)
		;
	v = *flag;
	pthread_mutex_unlock(&door.mu);
	return v;
}

/* Sets *flag under door.mu and wakes the waiters. */
static void raise_flag(int *flag)
{
	pthread_mutex_lock(&door.mu);
	*flag = 1;
	pthread_cond_broadcast(&door.cv);
	pthread_mutex_unlock(&door.mu);
}

/* What a callback answered. */
struct fake_req {
	int        replied;
	int        err;  /* fuse_reply_err's errno; 0 for any other reply */
	fuse_ino_t ino;  /* fuse_reply_entry's */
};

static fuse_req_t new_req(struct fake_req *r)
{
	memset(r, 0, sizeof *r);
	return (fuse_req_t)(void *)r;
}

static void answer(fuse_req_t req, int err, fuse_ino_t ino)
{
	struct fake_req *r = (struct fake_req *)(void *)req;

	pthread_mutex_lock(&door.mu);
	r->err = err;
	r->ino = ino;
	r->replied = 1;
	pthread_cond_broadcast(&door.cv);
	pthread_mutex_unlock(&door.mu);
}

int __wrap_fuse_reply_err(fuse_req_t req, int err);
int __wrap_fuse_reply_entry(fuse_req_t req, const struct fuse_entry_param *e);
int __wrap_fuse_reply_attr(fuse_req_t req, const struct stat *attr, double attr_timeout);
int __wrap_fuse_reply_open(fuse_req_t req, const struct fuse_file_info *fi);
void __wrap_fuse_reply_none(fuse_req_t req);
const struct fuse_ctx *__wrap_fuse_req_ctx(fuse_req_t req);
int __wrap_fuse_lowlevel_notify_inval_inode(struct fuse_session *se, fuse_ino_t ino,
					    off_t off, off_t len);
int __wrap_fuse_lowlevel_notify_inval_entry(struct fuse_session *se, fuse_ino_t parent,
					    const char *name, size_t namelen);
int __real_node_write(node *n, const struct kv_batch *b);
int __wrap_node_write(node *n, const struct kv_batch *b);
void __real_fsops_open_stat(void *of, struct stat *st);
void __wrap_fsops_open_stat(void *of, struct stat *st);

int __wrap_fuse_reply_err(fuse_req_t req, int err)
{
	answer(req, err, 0);
	return 0;
}

int __wrap_fuse_reply_entry(fuse_req_t req, const struct fuse_entry_param *e)
{
	answer(req, 0, e->ino);
	return 0;
}

int __wrap_fuse_reply_attr(fuse_req_t req, const struct stat *attr, double attr_timeout)
{
	(void)attr_timeout;
	answer(req, 0, attr->st_ino);
	return 0;
}

int __wrap_fuse_reply_open(fuse_req_t req, const struct fuse_file_info *fi)
{
	(void)fi;
	answer(req, 0, 0);
	return 0;
}

void __wrap_fuse_reply_none(fuse_req_t req)
{
	answer(req, 0, 0);
}

const struct fuse_ctx *__wrap_fuse_req_ctx(fuse_req_t req)
{
	static struct fuse_ctx c;

	(void)req;
	c.uid = getuid();
	c.gid = getgid();
	c.pid = getpid();
	c.umask = 022;
	return &c;
}

/* No kernel: nothing cached to drop. */
int __wrap_fuse_lowlevel_notify_inval_inode(struct fuse_session *se, fuse_ino_t ino,
					    off_t off, off_t len)
{
	(void)se;
	(void)ino;
	(void)off;
	(void)len;
	return -ENOENT;
}

int __wrap_fuse_lowlevel_notify_inval_entry(struct fuse_session *se, fuse_ino_t parent,
					    const char *name, size_t namelen)
{
	(void)se;
	(void)parent;
	(void)name;
	(void)namelen;
	return -ENOENT;
}

int __wrap_node_write(node *n, const struct kv_batch *b)
{
	pthread_mutex_lock(&door.mu);
	if (door.hold_key && b->n && b->ops[0].klen == strlen(door.hold_key) &&
	    memcmp(b->ops[0].key, door.hold_key, b->ops[0].klen) == 0)
		door_wait_locked();
	pthread_mutex_unlock(&door.mu);
	return __real_node_write(n, b);
}

void __wrap_fsops_open_stat(void *of, struct stat *st)
{
	pthread_mutex_lock(&door.mu);
	if (door.hold_stat)
		door_wait_locked();
	pthread_mutex_unlock(&door.mu);
	__real_fsops_open_stat(of, st);
}

/* ---- the mount without a kernel -------------------------------------------- */

#define MAX_THREADS 4

static struct {
	char            dir[64];
	node           *n;
	struct kvfs_ctx ctx;
	const struct fuse_lowlevel_ops *ops;
	int             listening;
	/* Threads a test started and has not joined yet (thread_start). */
	pthread_t       threads[MAX_THREADS];
	int             nthreads;
} M;

static void rm_data_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", M.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", M.dir);
}

/* Up as in main(): node, fsops, llops (the inode table). */
static int mount_up(void **state)
{
	struct node_config cfg = { 0 };

	(void)state;
	memset(&M, 0, sizeof M);
	door_reset();
	snprintf(M.dir, sizeof M.dir, "/tmp/kvfs-mount-XXXXXX");
	if (!mkdtemp(M.dir))
		return -1;
	cfg.data_dir = M.dir;
	cfg.mode = NODE_STANDALONE;
	cfg.control = "";                          /* no control socket */
	cfg.vectors = "/nonexistent/kvfs-vectors"; /* n-gram vectors: fast start */
	if (node_open(&cfg, &M.n) != 0) {
		rm_data_dir();
		return -1;
	}
	M.ctx.n = M.n;
	M.ctx.st = node_store(M.n);
	M.ctx.data_dir = M.dir;
	M.ctx.mountpoint = "/nonexistent/kvfs-mountpoint";
	M.ctx.uid = getuid();
	M.ctx.gid = getgid();
	M.ctx.start_ns = fsops_now_ns();
	M.ctx.entry_timeout = M.ctx.attr_timeout = 1.0;
	M.ctx.keep_cache = 1;
	if (fsops_init(&M.ctx) != 0) {
		node_close(M.n);
		rm_data_dir();
		return -1;
	}
	if (llops_init() != 0) {
		fsops_fini();
		node_close(M.n);
		rm_data_dir();
		return -1;
	}
	M.ops = llops_get();
	return 0;
}

/* Starts fn(arg) on a thread of its own, joined by thread_join() or, after
 * a failed assertion, by mount_down(). */
static void thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	assert_true(M.nthreads < MAX_THREADS);
	assert_int_equal(pthread_create(t, NULL, fn, arg), 0);
	M.threads[M.nthreads++] = *t;
}

static void thread_join(pthread_t t)
{
	for (int i = 0; i < M.nthreads; i++)
		if (pthread_equal(M.threads[i], t)) {
			M.threads[i] = M.threads[--M.nthreads];
			assert_int_equal(pthread_join(t, NULL), 0);
			return;
		}
	fail_msg("thread_join of a thread thread_start did not start");
}

/* Joins what a failed test left running, for up to 10 s each (its doors
 * are open). A thread still running after that uses the node and M, which
 * the next test would reset under it: the program stops here instead. */
static void join_leftovers(void)
{
	while (M.nthreads) {
		struct timespec end;

		clock_gettime(CLOCK_REALTIME, &end);
		end.tv_sec += 10;
		if (pthread_timedjoin_np(M.threads[M.nthreads - 1], NULL, &end) != 0) {
			fprintf(stderr, "a call thread still runs 10 s after its test ended: "
				"stopping the tests\n");
			fflush(NULL);
			_exit(1);
		}
		M.nthreads--;
	}
}

/* Down in main()'s order: listener and invalidation thread, llops, fsops,
 * node. */
static int mount_down(void **state)
{
	(void)state;
	door_open(); /* nothing may stay at a door after a failed assertion */
	join_leftovers();
	if (M.listening) {
		node_set_change_listener(M.n, NULL);
		inval_stop();
	}
	llops_fini();
	fsops_fini();
	node_close(M.n);
	rm_data_dir();
	return 0;
}

/* main()'s change listener and invalidation thread (no session: the
 * kernel notifications are wrapped). */
static void listen_as_main_does(void)
{
	struct node_change_listener l = {
		.change = on_change, .flush = on_change_flush, .fence = on_change_fence,
	};

	assert_int_equal(inval_start(NULL), 0);
	node_set_change_listener(M.n, &l);
	M.listening = 1;
}

static struct kv_op op_of(enum kv_op_kind kind, const char *key, mode_t mode)
{
	struct kv_op op = { 0 };

	op.kind = (uint8_t)kind;
	op.key = key;
	op.klen = (uint32_t)strlen(key);
	if (kind != KV_PUT)
		return op; /* a delete carries no value and an all-zero meta */
	op.val = "v";
	op.vlen = 1;
	op.meta.mode = mode;
	op.meta.uid = getuid();
	op.meta.gid = getgid();
	return op;
}

static int write_ops(struct kv_op *ops, uint32_t n)
{
	struct kv_batch b = { ops, n };

	return node_write(M.n, &b);
}

static int has_key(const char *key)
{
	kv_rec *r;

	if (store_get(M.ctx.st, key, strlen(key), 0, &r) != 0)
		return 0;
	kv_rec_unref(r);
	return 1;
}

/* One FUSE callback on a thread of its own, as libfuse's workers run them. */
struct call {
	pthread_t       t;
	struct fake_req r;
	void          (*fn)(struct call *c);
	fuse_ino_t      parent, ino;
	const char     *name, *newname;
};

static void *call_main(void *arg)
{
	struct call *c = arg;

	c->fn(c);
	return NULL;
}

static void call_start(struct call *c, void (*fn)(struct call *c))
{
	memset(&c->r, 0, sizeof c->r);
	c->fn = fn;
	thread_start(&c->t, call_main, c);
}

static void do_getattr(struct call *c)
{
	M.ops->getattr(new_req(&c->r), c->ino, NULL);
}

static void do_mkdir(struct call *c)
{
	M.ops->mkdir(new_req(&c->r), c->parent, c->name, 0755);
}

static void do_rename(struct call *c)
{
	M.ops->rename(new_req(&c->r), c->parent, c->name, c->parent, c->newname, 0);
}

static fuse_ino_t lookup(fuse_ino_t parent, const char *name)
{
	struct fake_req r;

	M.ops->lookup(new_req(&r), parent, name);
	assert_int_equal(r.err, 0);
	assert_true(r.ino > INO_ROOT);
	return r.ino;
}

/* ---- a store committer never waits for the inode table (3867241) ----------- */

/* A write over the control socket, made on the loop thread: its change is
 * reported to the mount's listener by the store committer that completes
 * it. */
struct socket_write {
	int done, status;
};

static void socket_write_done(void *arg, int status)
{
	struct socket_write *w = arg;

	w->status = status;
	raise_flag(&w->done);
}

static void start_socket_write(void *arg)
{
	struct kv_op op = op_of(KV_PUT, "sock/k", S_IFREG | 0644);
	struct kv_batch b = { &op, 1 };

	node_write_async(M.n, &b, socket_write_done, arg);
}

struct mount_write {
	pthread_t t;
	int       done, rc;
};

static void *mount_write_main(void *arg)
{
	struct mount_write *w = arg;
	struct kv_op op = op_of(KV_PUT, "mine", S_IFREG | 0644);

	w->rc = write_ops(&op, 1);
	raise_flag(&w->done);
	return NULL;
}

/* A FUSE thread can hold the inode table's lock while it waits for an open
 * file (getattr of a file unlinked while open: ino_orphan calls
 * fsops_open_stat under the lock, which waits for the file's lock), and the
 * holder of that file's lock may wait in node_write() for a commit. So the
 * committer that reports a socket write's change to the listener must not
 * wait for the table: here the getattr is stopped at the door with the
 * table locked, a socket write completes, and a write of the mount must
 * still be committed. Before the fix (on_change locked the table) the
 * committer waited for the table, every later commit waited for that
 * committer, and the write stayed stuck until the door opened; in the
 * mount, whose door opens only once that write is done, for ever. The
 * change the committer could not look at is counted by the invalidation
 * thread instead, once the table is free. */
static void a_committer_does_not_wait_for_a_busy_inode_table(void **state)
{
	struct kv_op op = op_of(KV_PUT, "gone", S_IFREG | 0644);
	struct fuse_file_info fi = { .flags = O_RDONLY };
	/* Static, as the threads' other arguments: a failed assertion leaves
	 * this function by longjmp, and mount_down() joins the threads after. */
	static struct socket_write sw;
	static struct mount_write mw;
	static struct call stat_call;
	struct fake_req r;
	fuse_ino_t ino;
	uint64_t counted;
	int committed;

	(void)state;
	memset(&sw, 0, sizeof sw);
	memset(&mw, 0, sizeof mw);
	memset(&stat_call, 0, sizeof stat_call);
	listen_as_main_does();
	/* A file unlinked while open: its inode keeps the open file. */
	assert_int_equal(write_ops(&op, 1), 0);
	ino = lookup(FUSE_ROOT_ID, "gone");
	M.ops->open(new_req(&r), ino, &fi);
	assert_int_equal(r.err, 0);
	M.ops->unlink(new_req(&r), FUSE_ROOT_ID, "gone");
	assert_int_equal(r.err, 0);

	/* fstat() of it, stopped with the table locked. */
	pthread_mutex_lock(&door.mu);
	door.hold_stat = 1;
	pthread_mutex_unlock(&door.mu);
	stat_call.ino = ino;
	call_start(&stat_call, do_getattr);
	assert_true(await(&door.held, 10000));

	counted = ino_changes("/sock/k");
	assert_int_equal(node_call(M.n, start_socket_write, &sw), 0);
	thread_start(&mw.t, mount_write_main, &mw);
	committed = await(&mw.done, 10000);

	door_open();
	thread_join(stat_call.t);
	thread_join(mw.t);
	assert_true(await(&sw.done, 10000));
	assert_true(committed); /* false: the committer waited for the table */
	assert_int_equal(mw.rc, 0);
	assert_int_equal(sw.status, 0);
	assert_true(stat_call.r.replied);
	assert_int_equal(stat_call.r.err, 0);
	/* The socket write's reply waited for the invalidation thread, which
	 * counted the change once the table was free. */
	assert_int_equal(ino_changes("/sock/k"), counted + 1);

	M.ops->release(new_req(&r), ino, &fi);
	M.ops->forget(new_req(&r), ino, 1);
}

/* ---- a rename's namespace lock follows the store (5ab1088) ------------------ */

/* The kernel looked "d" up as a file; a peer has since made a directory of
 * it (the invalidation has not come yet). A mkdir of d/y is stopped at the
 * door between its path and its write, holding the namespace lock shared,
 * and `mv d e` starts. The inode table says file, so the rename first asks
 * for the lock shared; the store, under the lock, says directory, so it must
 * wait for the exclusive lock: then the mkdir writes d/y/ first and the
 * rename moves it to e/y/. Before the fix the rename moved d/ under the
 * shared lock while the mkdir waited, and the mkdir's late write brought d
 * back. */
static void a_rename_of_what_the_store_says_is_a_directory_waits_for_creates_in_it(
	void **state)
{
	struct kv_op file = op_of(KV_PUT, "d", S_IFREG | 0644);
	struct kv_op peer[3] = {
		op_of(KV_DEL, "d", 0),
		op_of(KV_PUT, "d/", S_IFDIR | 0755),
		op_of(KV_PUT, "d/x", S_IFREG | 0644),
	};
	static struct call mk, mv; /* static: see the test above */
	fuse_ino_t d;
	int early;

	(void)state;
	memset(&mk, 0, sizeof mk);
	memset(&mv, 0, sizeof mv);
	assert_int_equal(write_ops(&file, 1), 0);
	d = lookup(FUSE_ROOT_ID, "d");
	assert_int_equal(write_ops(peer, 3), 0);
	assert_int_equal(ino_child_is_dir(FUSE_ROOT_ID, "d"), 0); /* the table's old word */

	pthread_mutex_lock(&door.mu);
	door.hold_key = "d/y/";
	pthread_mutex_unlock(&door.mu);
	mk.parent = d;
	mk.name = "y";
	call_start(&mk, do_mkdir);
	assert_true(await(&door.held, 10000));

	mv.parent = FUSE_ROOT_ID;
	mv.name = "d";
	mv.newname = "e";
	call_start(&mv, do_rename);
	early = await(&mv.r.replied, 1000);

	door_open();
	thread_join(mk.t);
	thread_join(mv.t);
	assert_true(mk.r.replied);
	assert_int_equal(mk.r.err, 0);
	assert_true(mv.r.replied);
	assert_int_equal(mv.r.err, 0);
	assert_false(has_key("d/y/")); /* the directory did not come back */
	assert_false(has_key("d/"));
	assert_false(has_key("d/x"));
	assert_true(has_key("e/"));
	assert_true(has_key("e/x"));
	assert_true(has_key("e/y/"));
	assert_false(early); /* the rename did not wait for the mkdir */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_committer_does_not_wait_for_a_busy_inode_table,
						mount_up, mount_down),
		cmocka_unit_test_setup_teardown(
			a_rename_of_what_the_store_says_is_a_directory_waits_for_creates_in_it,
			mount_up, mount_down),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
