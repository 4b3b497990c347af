/*
 * main.c — the kvfs binary: checks the command line, daemonizes, opens the
 * node, mounts the FUSE file system and runs its loop until unmounted.
 *
 * Start-up order matters: node_open() starts threads, so the process forks
 * (daemon mode) BEFORE it; the parent waits on a pipe for the child's
 * verdict, so that every start-up error is still one line on the caller's
 * stderr with a non-zero exit status.
 *
 * Shutdown: SIGINT, SIGTERM and SIGHUP first stop the invalidation thread
 * while the FUSE workers still answer the kernel, then end the FUSE loop
 * (see stopper_main); fusermount3 -u ends the loop by itself. The loop joins
 * its workers (so every FUSE request in node_write() has finished), then the
 * mount is removed and only then node_close() completes or fails what is
 * still pending.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <dirent.h>
#include <unistd.h>

#include <fuse.h>
#include <fuse_lowlevel.h>

#include "cluster/node.h"
#include "fs/fsops.h"
#include "fs/inode.h"
#include "fs/llops.h"
#include "fs/opts.h"
#include "store/log.h"

/* ---- kernel cache invalidation for replicated changes ---------------------- */

/* The change listener runs on replication threads and must not block, but
 * the kernel's invalidation calls can wait on an inode lock held by a FUSE
 * request that in turn waits for the node: hand keys to a thread of their
 * own. The queue grows with the burst (one batch can change a million keys);
 * only when memory runs out is a change dropped, and then the short
 * attribute timeout bounds how long the kernel can show the old contents.
 *
 * A fence (the listener's fence, cluster/node.h) rides the same FIFO queue: the thread
 * calls it back once every key queued before it has been invalidated, and
 * only then does the control socket answer the write that changed them, so
 * a client that wrote over the socket finds the change in the mount. A fence
 * that cannot be queued (stopping, or out of memory) is reached at once:
 * its changes are then moot or dropped; it is never lost. */

#define INVAL_KEEP 4096 /* items an idle array may keep room for */

struct inval_item {
	char                  *key;     /* a changed key, or NULL for a fence */
	node_change_reached_fn reached;
	void                  *cookie;
};

static struct {
	pthread_mutex_t   lock;
	pthread_cond_t    cond;
	struct inval_item *q;    /* FIFO, n items of cap; the thread swaps it */
	size_t            n, cap; /* for its own (emptied) array */
	size_t            busy;  /* taken off the queue, not yet done */
	unsigned long     dropped; /* changes lost for want of memory */
	unsigned long     moot;  /* the thread's own: dropped at shutdown */
	int               stop;  /* written under lock, read between items */
	struct fuse_session *se;
	pthread_t         thr;
	int               running;
} inval = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* A change that cannot be queued for want of memory (lock held). */
static void inval_note_dropped(void)
{
	if (inval.dropped++ == 0)
		LOG(LOG_WARN, "mount: out of memory queueing cache invalidations; the kernel "
		    "may show old attributes for up to the attribute timeout");
}

/* Queues an item; returns 0 when stopping or out of memory. lock held. */
static int inval_push_locked(struct inval_item it)
{
	if (inval.stop)
		return 0;
	if (inval.n == inval.cap) {
		size_t cap = inval.cap ? 2 * inval.cap : 256;
		struct inval_item *q = realloc(inval.q, cap * sizeof *q);

		if (!q) {
			if (it.key)
				inval_note_dropped();
			return 0;
		}
		inval.q = q;
		inval.cap = cap;
	}
	inval.q[inval.n++] = it;
	return 1;
}

static int inval_push(struct inval_item it, int wake)
{
	int ok;

	pthread_mutex_lock(&inval.lock);
	ok = inval_push_locked(it);
	if (ok && wake)
		pthread_cond_signal(&inval.cond);
	pthread_mutex_unlock(&inval.lock);
	return ok;
}

static void on_change(void *arg, const char *key, size_t klen)
{
	char *p;

	(void)arg;
	/* A name the kernel does not know has nothing cached to drop (and
	 * then its socket reply needs no fence either). When the inode table
	 * is busy the invalidation thread finds out instead. */
	if (ino_changed(key, klen, 0, NULL, NULL) == 0)
		return;
	p = malloc(klen + 1);
	if (!p) {
		pthread_mutex_lock(&inval.lock);
		inval_note_dropped();
		pthread_mutex_unlock(&inval.lock);
		return;
	}
	memcpy(p, key, klen);
	p[klen] = '\0';
	if (!inval_push((struct inval_item){ .key = p }, 0))
		free(p);
}

/* The end of a run of changes (the listener's flush): one wake-up for
 * all of them, not a futex call and lock hand-over per change. */
static void on_change_flush(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&inval.lock);
	if (inval.n)
		pthread_cond_signal(&inval.cond);
	pthread_mutex_unlock(&inval.lock);
}

static int on_change_fence(void *arg, node_change_reached_fn reached, void *cookie)
{
	int idle;

	(void)arg;
	pthread_mutex_lock(&inval.lock);
	idle = !inval.n && !inval.busy;
	pthread_mutex_unlock(&inval.lock);
	/* Nothing queued or in progress: nothing to wait for. */
	if (idle)
		return 0;
	if (!inval_push((struct inval_item){ .reached = reached, .cookie = cookie }, 1))
		reached(cookie);
	return 1;
}

/* Runs an item, or when stopping only releases it: a fence is reached
 * (its changes are moot now), a key is dropped. */
static void inval_run(const struct inval_item *it, int stopping)
{
	if (it->key) {
		if (!stopping)
			llops_invalidate(inval.se, it->key, strlen(it->key));
		else
			inval.moot++;
		free(it->key);
	} else {
		it->reached(it->cookie); /* everything before it is done */
	}
}

static void *inval_main(void *arg)
{
	struct inval_item *batch = NULL;
	size_t batch_cap = 0;

	(void)arg;
	pthread_setname_np(pthread_self(), "kvfs-inval");
	pthread_mutex_lock(&inval.lock);
	for (;;) {
		size_t n;

		while (!inval.n && !inval.stop)
			pthread_cond_wait(&inval.cond, &inval.lock);
		if (inval.stop)
			break;
		/* Take everything queued in one go (the writers then rarely
		 * find the lock taken): the queue's array becomes ours and
		 * the writers get our emptied one. */
		struct inval_item *q = inval.q;
		size_t cap = inval.cap;

		n = inval.n;
		inval.q = batch;
		inval.cap = batch_cap;
		inval.n = 0;
		batch = q;
		batch_cap = cap;
		inval.busy = n;
		pthread_mutex_unlock(&inval.lock);
		/* Stopping is checked between items, so that shutdown waits
		 * for one kernel call, not for a whole burst. */
		for (size_t i = 0; i < n; i++)
			inval_run(&batch[i], __atomic_load_n(&inval.stop, __ATOMIC_RELAXED));
		/* An array a rare large burst grew is not kept for ever. */
		if (batch_cap > INVAL_KEEP) {
			free(batch);
			batch = NULL;
			batch_cap = 0;
		}
		pthread_mutex_lock(&inval.lock);
		inval.busy = 0;
	}
	/* Stopping (the mount is going away): fences are reached, keys are
	 * moot. */
	for (size_t i = 0; i < inval.n; i++)
		inval_run(&inval.q[i], 1);
	inval.n = 0;
	pthread_mutex_unlock(&inval.lock);
	free(batch);
	if (inval.moot)
		LOG(LOG_INFO, "mount: %lu cache invalidations dropped at shutdown", inval.moot);
	return NULL;
}

static int inval_start(struct fuse_session *se)
{
	inval.se = se;
	if (pthread_create(&inval.thr, NULL, inval_main, NULL) != 0)
		return -EAGAIN;
	inval.running = 1;
	return 0;
}

/* Must run while the FUSE workers still answer the kernel: the thread may
 * be inside a kernel invalidation that waits for an inode or directory lock
 * held by a process whose request waits for the workers. It finishes the
 * item in hand and drops the rest. */
static void inval_stop(void)
{
	if (!inval.running)
		return;
	pthread_mutex_lock(&inval.lock);
	__atomic_store_n(&inval.stop, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&inval.cond);
	pthread_mutex_unlock(&inval.lock);
	pthread_join(inval.thr, NULL);
	inval.running = 0;
	pthread_mutex_lock(&inval.lock);
	free(inval.q);
	inval.q = NULL;
	inval.cap = 0;
	pthread_mutex_unlock(&inval.lock);
}

/* ---- shutdown on a signal ---------------------------------------------------- */

/* libfuse's own handlers end the FUSE loop at once, and the loop's workers
 * leave (dropping a request one of them may just have read). The
 * invalidation thread must be stopped before that (inval_stop), which a
 * signal handler cannot do: the handler only wakes the stopper thread,
 * which stops the invalidation thread while the workers still answer, then
 * ends the loop. The loop's main thread notices the end only when a signal
 * interrupts its wait, so the stopper signals it until it has left (one
 * signal could land just before it starts waiting). */
static struct {
	sem_t                wake;      /* posted by the handler, or at the end */
	pthread_t            thr, loop_thr;
	struct fuse_session *se;
	int                  loop_done; /* atomic: the loop has returned */
	int                  running;
} stopper;

static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };
#define NSTOP (sizeof(stop_signals) / sizeof(stop_signals[0]))
static int stop_taken[NSTOP]; /* our handler was installed */

static void on_stop_signal(int sig)
{
	int saved = errno;

	(void)sig;
	sem_post(&stopper.wake);
	errno = saved;
}

static void *stopper_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "kvfs-stop");
	while (sem_wait(&stopper.wake) != 0)
		; /* EINTR */
	if (__atomic_load_n(&stopper.loop_done, __ATOMIC_ACQUIRE))
		return NULL; /* the loop ended by itself (unmounted) */
	LOG(LOG_INFO, "stop signal: unmounting");
	inval_stop();
	fuse_session_exit(stopper.se);
	while (!__atomic_load_n(&stopper.loop_done, __ATOMIC_ACQUIRE)) {
		struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };

		pthread_kill(stopper.loop_thr, SIGTERM);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* Installs the handlers; called with the stop signals blocked, so that the
 * stopper thread inherits them blocked. */
static int stopper_start(struct fuse_session *se)
{
	struct sigaction sa;

	if (sem_init(&stopper.wake, 0, 0) != 0)
		return -errno;
	stopper.se = se;
	stopper.loop_thr = pthread_self();
	if (pthread_create(&stopper.thr, NULL, stopper_main, NULL) != 0) {
		sem_destroy(&stopper.wake);
		return -EAGAIN;
	}
	stopper.running = 1;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop_signal; /* no SA_RESTART: the loop's waits must end */
	for (size_t i = 0; i < NSTOP; i++) {
		struct sigaction cur;

		/* SIGINT and SIGTERM stop us whoever started us (a shell starts
		 * background jobs with SIGINT ignored); an ignored SIGHUP
		 * (nohup) stays ignored. */
		if (stop_signals[i] == SIGHUP && sigaction(SIGHUP, NULL, &cur) == 0 &&
		    cur.sa_handler == SIG_IGN)
			continue;
		stop_taken[i] = sigaction(stop_signals[i], &sa, NULL) == 0;
	}
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	return 0;
}

/* After the loop has returned: ends the stopper. Further stop signals are
 * ignored from now on: the shutdown under way (unmount, pending writes
 * committed or failed, a Raft leader's hand-over) must not be cut short
 * half-way; SIGKILL still ends the process. */
static void stopper_stop(void)
{
	if (!stopper.running)
		return;
	__atomic_store_n(&stopper.loop_done, 1, __ATOMIC_RELEASE);
	sem_post(&stopper.wake);
	pthread_join(stopper.thr, NULL);
	for (size_t i = 0; i < NSTOP; i++)
		if (stop_taken[i])
			signal(stop_signals[i], SIG_IGN);
	sem_destroy(&stopper.wake);
	stopper.running = 0;
}

/* -o entry_timeout=/attr_timeout= (seconds) are ours, not the kernel's. */
struct user_timeouts {
	double entry, attr;
};

static const struct fuse_opt timeout_opts[] = {
	{ "entry_timeout=%lf", offsetof(struct user_timeouts, entry), 0 },
	{ "attr_timeout=%lf", offsetof(struct user_timeouts, attr), 0 },
	FUSE_OPT_END
};

/* Where start-up errors go: stderr, or in daemon mode the caller's stderr
 * saved before the daemon's own stderr was pointed at DATA/kvfs.log (so that
 * the node's log lines land in the log and the caller sees one line). */
static FILE *errf;

/* ---- start-up checks ---------------------------------------------------- */

static int check_mountpoint(const char *arg, char *abs)
{
	struct stat st;
	struct dirent *de;
	DIR *d;

	if (!realpath(arg, abs) || stat(abs, &st) != 0) {
		int e = errno;
		fprintf(stderr, "kvfs: mountpoint %s: %s%s\n", arg, strerror(e),
			e == ENOTCONN ? " (a dead mount: fusermount3 -u -z it first)" : "");
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "kvfs: mountpoint %s is not a directory\n", arg);
		return -1;
	}
	if (!(d = opendir(abs))) {
		fprintf(stderr, "kvfs: mountpoint %s: %s\n", arg, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			closedir(d);
			fprintf(stderr, "kvfs: mountpoint %s is not empty\n", arg);
			return -1;
		}
	}
	closedir(d);
	return 0;
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int check_data_dir(const char *arg, char *abs)
{
	struct stat st;
	int rc;

	if ((rc = mkdir_p(arg)) || (!realpath(arg, abs) && (rc = -errno))) {
		fprintf(stderr, "kvfs: data directory %s: %s\n", arg, strerror(-rc));
		return -1;
	}
	if (stat(abs, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "kvfs: data directory %s is not a directory\n", arg);
		return -1;
	}
	if (access(abs, R_OK | W_OK | X_OK) != 0) {
		fprintf(stderr, "kvfs: data directory %s: %s\n", arg, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- daemon --------------------------------------------------------------- */

/* Forks; the parent waits for the child's start-up verdict and exits with
 * it. Returns the write end of the verdict pipe in the child. */
static int daemonize(void)
{
	int p[2];
	pid_t pid;
	char c;

	if (pipe(p) != 0) {
		fprintf(stderr, "kvfs: pipe: %s\n", strerror(errno));
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "kvfs: fork: %s\n", strerror(errno));
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			exit(1); /* the child died before deciding; it printed why */
		exit(c);
	}
	close(p[0]);
	setsid();
	return p[1];
}

static void report(int fd, char status)
{
	if (fd >= 0) {
		if (write(fd, &status, 1) != 1)
			(void)0; /* the parent is gone; nobody to tell */
		close(fd);
	}
}

/* The daemon logs to DATA/kvfs.log from the start; returns a stream on the
 * caller's stderr for the one-line start-up verdict (stderr itself when the
 * log cannot be opened). */
static FILE *log_to_file(const char *data_dir)
{
	char path[PATH_MAX + 16];
	FILE *f;
	int fd, saved;

	snprintf(path, sizeof(path), "%s/kvfs.log", data_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return stderr;
	saved = fcntl(2, F_DUPFD_CLOEXEC, 3);
	if (saved < 0 || !(f = fdopen(saved, "w"))) {
		if (saved >= 0)
			close(saved);
		close(fd);
		return stderr;
	}
	setvbuf(f, NULL, _IONBF, 0);
	dup2(fd, 2);
	close(fd);
	return f;
}

/* After a successful start the daemon's stdin/stdout go away and the
 * caller's stderr is released. */
static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		close(fd);
	}
	if (errf && errf != stderr)
		fclose(errf);
	errf = stderr;
}

static const char *mode_flag(enum node_mode m)
{
	return m == NODE_RAFT ? "raft" : m == NODE_MASTERLESS ? "masterless" : "standalone";
}

int main(int argc, char **argv)
{
	char mnt[PATH_MAX], data[PATH_MAX], defdata[PATH_MAX], err[256], *fopts = NULL;
	struct node_config cfg = { 0 };
	struct kvfs_ctx ctx = { 0 };
	struct kvfs_opts o;
	struct fuse_session *se = NULL;
	struct user_timeouts ut = { -1, -1 };
	node *n = NULL;
	sigset_t sigs, old;
	int fd = -1, rc, status = 1;

	log_init_from_env();
	if (opts_parse(argc, argv, &o, err, sizeof(err)) != 0) {
		fprintf(stderr, "kvfs: %s\n", err);
		opts_free(&o);
		return 2;
	}
	if (o.help) {
		fputs(opts_usage, stdout);
		opts_free(&o);
		return 0;
	}
	if (o.version) {
		printf("kvfs %s (FUSE %d)\n", KVFS_VERSION, fuse_version());
		opts_free(&o);
		return 0;
	}
	if (!o.data_dir) {
		if (opts_default_data(defdata, sizeof(defdata)) != 0) {
			fprintf(stderr, "kvfs: no --data DIR given and no $HOME for the default\n");
			goto out_opts;
		}
		o.data_dir = defdata;
	}
	if (check_mountpoint(o.mountpoint, mnt) || check_data_dir(o.data_dir, data))
		goto out_opts;

	errf = stderr;
	if (!o.foreground) {
		fd = daemonize();
		errf = log_to_file(data);
	}

	/* Threads started by node_open() must not receive the termination
	 * signals: the FUSE loop only notices them in its own threads. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, &old);

	/* Checked before the node opens, so a bad -o fails at once.
	 * fuse_session_new() starts no threads. default_permissions is the user's choice (-o);
	 * fsname/subtype make the mount recognisable in /proc/mounts and df. */
	rc = asprintf(&fopts, "fsname=kvfs:%s,subtype=kvfs%s%s", data,
		      o.fuse_opts ? "," : "", o.fuse_opts ? o.fuse_opts : "");
	if (rc < 0) {
		fopts = NULL;
		goto out_report;
	}
	char *fargv[] = { argv[0], "-o", fopts, o.debug ? "-d" : NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(o.debug ? 4 : 3, fargv);
	if (fuse_opt_parse(&args, &ut, timeout_opts, NULL) == 0)
		se = fuse_session_new(&args, llops_get(), sizeof(struct fuse_lowlevel_ops), NULL);
	fuse_opt_free_args(&args);
	if (!se) {
		fprintf(errf, "kvfs: bad FUSE options '%s'\n", o.fuse_opts ? o.fuse_opts : "");
		goto out_report;
	}
	cfg.data_dir = data;
	cfg.mode = o.mode;
	cfg.listen = o.listen;
	cfg.peers = (const char **)o.peers;
	cfg.npeers = o.npeers;
	cfg.control = o.control;
	cfg.vectors = o.vectors;
	rc = node_open(&cfg, &n);
	if (rc == -ENOTSUP) {
		fprintf(errf, "kvfs: --mode %s is not supported by this build yet\n",
			mode_flag(o.mode));
		goto out_fuse;
	}
	if (rc) {
		/* The store's own lines (which file, which offset) went to the
		 * log; in the foreground that is this stderr too. */
		if (o.foreground)
			fprintf(errf, "kvfs: cannot open the node in %s: %s\n", data,
				strerror(-rc));
		else
			fprintf(errf, "kvfs: cannot open the node in %s: %s (details in "
				"%s/kvfs.log)\n", data, strerror(-rc), data);
		goto out_fuse;
	}

	ctx.n = n;
	ctx.st = node_store(n);
	ctx.data_dir = data;
	ctx.mountpoint = mnt;
	ctx.uid = getuid();
	ctx.gid = getgid();
	ctx.start_ns = fsops_now_ns();
	/* Raft reads are linearizable only if the kernel asks every time (and
	 * never from pages an asynchronous invalidation has not dropped yet);
	 * the other modes accept a second of staleness for cached stat/lookup.
	 * -o entry_timeout=/attr_timeout= win. */
	ctx.entry_timeout = ctx.attr_timeout = o.mode == NODE_RAFT ? 0.0 : 1.0;
	ctx.keep_cache = o.mode != NODE_RAFT;
	if (ut.entry >= 0)
		ctx.entry_timeout = ut.entry;
	if (ut.attr >= 0)
		ctx.attr_timeout = ut.attr;
	if ((rc = fsops_init(&ctx)) || (rc = llops_init())) {
		fprintf(errf, "kvfs: init: %s\n", strerror(-rc));
		goto out_node;
	}

	if (fuse_session_mount(se, mnt) != 0) {
		fprintf(errf, "kvfs: cannot mount on %s\n", mnt);
		goto out_fs;
	}
	/* SPEC §2 wants SIGINT and SIGTERM to unmount cleanly whoever started
	 * us, also a shell that starts background jobs with SIGINT ignored. */
	if ((rc = stopper_start(se)) != 0) {
		fprintf(errf, "kvfs: cannot install signal handlers: %s\n", strerror(-rc));
		goto out_unmount;
	}
	if ((rc = inval_start(se)) == 0) {
		struct node_change_listener l = {
			.change = on_change, .flush = on_change_flush, .fence = on_change_fence,
		};

		node_set_change_listener(n, &l);
	} else {
		LOG(LOG_WARN, "mount: no invalidation thread (%s): changes made by peers or "
		    "over the control socket show after the cache timeouts", strerror(-rc));
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* This thread runs the FUSE loop and must receive the stop signals
	 * (and the stopper's wake-up) even if we were started with them
	 * blocked. */
	pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);

	LOG(LOG_INFO, "mounted %s (data %s, mode %s)", mnt, data, mode_flag(o.mode));
	if (fd >= 0) {
		detach_stdio();
		report(fd, 0);
		fd = -1;
	}
	if (chdir("/") != 0)
		(void)0; /* a daemon must not pin its start directory; not fatal */

	struct fuse_loop_config lc = { .clone_fd = 0, .max_idle_threads = 10 };
	rc = fuse_session_loop_mt(se, &lc);
	status = rc < 0 ? 1 : 0;
	LOG(LOG_INFO, "unmounting %s", mnt);

	stopper_stop();
	node_set_change_listener(n, NULL);
	inval_stop();
out_unmount:
	fuse_session_unmount(se);
out_fs:
	llops_fini();
	fsops_fini();
out_node:
	node_close(n);
out_fuse:
	fuse_session_destroy(se);
out_report:
	report(fd, (char)status);
	free(fopts);
out_opts:
	opts_free(&o);
	return status;
}
