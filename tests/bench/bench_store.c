/*
 * bench_store.c — durable write throughput of the store against the raw
 * fdatasync rate of the same disk, and recovery time. Run by scripts/bench-store.
 *
 *   bench_store DIR [seconds per phase] [recovery keys]
 *
 * Phases:
 *   raw      write 100 bytes + fdatasync in a loop, one file in DIR
 *   store/N  N threads, each store_write() of one small put in a loop
 *   recovery N single-put batches logged (group commit, many in flight),
 *            reopen from the log only; then snapshot and reopen from it
 *   get      random point lookups (store_get) of those keys, CPU per call
 *
 * SECONDS 0 skips the throughput phases. For profiling recovery:
 *   BENCH_STORE_KEEP=1   keep DIR/store-recovery and reuse it when it already
 *                        holds a log (no refill, no snapshot phase)
 *   BENCH_STORE_REOPEN=N reopen from the log N times, print each CPU time
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void rm_rf(const char *dir)
{
	char cmd[8400];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench: cannot remove %s\n", dir);
}

static double raw_rate(const char *dir, double secs)
{
	char path[4200], buf[100];
	double t0, t;
	long n = 0;
	off_t off = 0;
	int fd;

	snprintf(path, sizeof path, "%s/raw-sync-test", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	memset(buf, 'r', sizeof buf);
	t0 = now();
	do {
		if (pwrite(fd, buf, sizeof buf, off) != (ssize_t)sizeof buf || fdatasync(fd)) {
			perror("raw write/fdatasync");
			exit(1);
		}
		off += (off_t)sizeof buf;
		n++;
		t = now();
	} while (t - t0 < secs);
	close(fd);
	unlink(path);
	return (double)n / (t - t0);
}

struct wargs {
	store         *st;
	int            id;
	volatile int  *stop;
	long           n;
	int            rc;
};

static void *writer(void *p)
{
	struct wargs *a = p;
	char key[64], val[100];

	memset(val, 'v', sizeof val);
	while (!*a->stop) {
		struct kv_op op = { .kind = KV_PUT, .key = key, .val = val, .vlen = sizeof val,
				    .meta = { .mode = 0100644 } };
		struct kv_batch b = { .ops = &op, .n = 1 };

		op.klen = (uint32_t)snprintf(key, sizeof key, "t%03d/k%08ld", a->id, a->n);
		a->rc = store_write(a->st, &b);
		if (a->rc)
			break;
		a->n++;
	}
	return NULL;
}

static double store_rate(const char *dir, int threads, double secs, uint64_t *syncs)
{
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX };
	struct wargs *a = calloc((size_t)threads, sizeof *a);
	pthread_t *th = calloc((size_t)threads, sizeof *th);
	volatile int stop = 0;
	struct store_stats ss;
	char sdir[4200];
	store *st;
	double t0, t1;
	long total = 0;
	int rc;

	snprintf(sdir, sizeof sdir, "%s/store-%d", dir, threads);
	rm_rf(sdir);
	rc = store_open(sdir, &o, &st);
	if (rc) {
		fprintf(stderr, "store_open: %s\n", strerror(-rc));
		exit(1);
	}
	t0 = now();
	for (int i = 0; i < threads; i++) {
		a[i] = (struct wargs){ .st = st, .id = i, .stop = &stop };
		pthread_create(&th[i], NULL, writer, &a[i]);
	}
	while (now() - t0 < secs)
		usleep(10000);
	stop = 1;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		if (a[i].rc)
			fprintf(stderr, "writer %d: %s\n", i, strerror(-a[i].rc));
		total += a[i].n;
	}
	t1 = now();
	store_get_stats(st, &ss);
	*syncs = ss.syncs;
	store_close(st);
	rm_rf(sdir);
	free(a);
	free(th);
	return (double)total / (t1 - t0);
}

struct inflight {
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	long            pending;
	int             err;
};

static void fill_done(void *arg, int status, uint64_t lsn)
{
	struct inflight *f = arg;

	(void)lsn;
	pthread_mutex_lock(&f->mu);
	f->pending--;
	if (status)
		f->err = status;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double last_cpu;
static long last_rss_kb;

static long rss_kb(void)
{
	char line[256];
	long kb = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

static double open_time(const char *sdir, uint64_t *keys)
{
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX };
	struct store_stats ss;
	store *st;
	double t0 = now(), c0 = cpu_now(), t;
	int rc = store_open(sdir, &o, &st);

	t = now() - t0;
	last_cpu = cpu_now() - c0;
	if (rc) {
		fprintf(stderr, "store_open: %s\n", strerror(-rc));
		exit(1);
	}
	store_get_stats(st, &ss);
	*keys = ss.keys;
	last_rss_kb = rss_kb();
	store_close(st);
	return t;
}

/* Point lookups (the GET / FUSE lookup path): random store_get of the keys
 * recovery() wrote, one thread, CPU time per call (key formatting excluded). */
static void get_rate(const char *sdir, long nkeys)
{
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX };
	const long N = 2000000;
	uint64_t s = 88172645463325252ull;
	char key[64];
	double c0, c1, c2;
	long found = 0;
	kv_rec *r;
	store *st;

	if (store_open(sdir, &o, &st))
		exit(1);
	c0 = cpu_now();
	for (long i = 0; i < N; i++) {
		long k;
		int n;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		k = (long)(s % (uint64_t)nkeys);
		n = snprintf(key, sizeof key, "dir%04ld/file%08ld", k % 1000, k);
		if (store_get(st, key, (size_t)n, 0, &r) == 0) {
			found++;
			kv_rec_unref(r);
		}
	}
	c1 = cpu_now();
	for (long i = 0; i < N; i++) {
		long k;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		k = (long)(s % (uint64_t)nkeys);
		found += snprintf(key, sizeof key, "dir%04ld/file%08ld", k % 1000, k) < 0;
	}
	c2 = cpu_now();
	printf("get       %ld random store_get on %ld keys: %.0f ns CPU each (%ld found)\n", N,
	       nkeys, ((c1 - c0) - (c2 - c1)) / (double)N * 1e9, found);
	store_close(st);
}

static void recovery(const char *dir, long nkeys)
{
	struct store_options o = { .snapshot_log_bytes = SIZE_MAX };
	struct inflight f = { .pending = 0 };
	int keep = getenv("BENCH_STORE_KEEP") && atoi(getenv("BENCH_STORE_KEEP"));
	char sdir[4200], key[64], val[32];
	double t0, tfill, tlog, tsnap, tsnapopen;
	uint64_t keys;
	store *st;
	int rc;

	pthread_mutex_init(&f.mu, NULL);
	pthread_cond_init(&f.cv, NULL);
	snprintf(sdir, sizeof sdir, "%s/store-recovery", dir);
	if (keep) {
		char seg[4300];
		int reopen = getenv("BENCH_STORE_REOPEN") ? atoi(getenv("BENCH_STORE_REOPEN")) : 1;

		snprintf(seg, sizeof seg, "%s/wal-%020d.log", sdir, 1);
		if (access(seg, F_OK) == 0) {
			for (int i = 0; i < (reopen > 0 ? reopen : 1); i++) {
				tlog = open_time(sdir, &keys);
				printf("recovery  from log only:  %.2f s (%.2f s CPU, %" PRIu64
				       " keys, RSS %ld MB)\n", tlog, last_cpu, keys,
				       last_rss_kb / 1024);
			}
			get_rate(sdir, nkeys);
			return;
		}
	}
	rm_rf(sdir);
	rc = store_open(sdir, &o, &st);
	if (rc) {
		fprintf(stderr, "store_open: %s\n", strerror(-rc));
		exit(1);
	}
	memset(val, 'x', sizeof val);
	t0 = now();
	for (long i = 0; i < nkeys; i++) {
		/* Keys in a scattered order, as files of many directories. */
		long k = (i * 7919) % nkeys;
		struct kv_op op = { .kind = KV_PUT, .key = key, .val = val, .vlen = 16,
				    .meta = { .mode = 0100644 } };
		struct kv_batch b = { .ops = &op, .n = 1 };

		op.klen = (uint32_t)snprintf(key, sizeof key, "dir%04ld/file%08ld", k % 1000, k);
		pthread_mutex_lock(&f.mu);
		while (f.pending >= 20000)
			pthread_cond_wait(&f.cv, &f.mu);
		f.pending++;
		pthread_mutex_unlock(&f.mu);
		rc = store_submit(st, &b, 0, fill_done, &f);
		if (rc) {
			fprintf(stderr, "store_submit: %s\n", strerror(-rc));
			exit(1);
		}
	}
	pthread_mutex_lock(&f.mu);
	while (f.pending)
		pthread_cond_wait(&f.cv, &f.mu);
	pthread_mutex_unlock(&f.mu);
	tfill = now() - t0;
	store_close(st);

	tlog = open_time(sdir, &keys);
	printf("recovery  %ld keys written as %ld durable batches in %.2f s\n", nkeys, nkeys, tfill);
	printf("recovery  from log only:  %.2f s (%.2f s CPU, %" PRIu64 " keys, RSS %ld MB)\n", tlog,
	       last_cpu, keys, last_rss_kb / 1024);
	get_rate(sdir, nkeys);
	if (keep)
		return;

	rc = store_open(sdir, &o, &st);
	if (rc) {
		fprintf(stderr, "store_open: %s\n", strerror(-rc));
		exit(1);
	}
	t0 = now();
	rc = store_snapshot(st);
	tsnap = now() - t0;
	if (rc) {
		fprintf(stderr, "store_snapshot: %s\n", strerror(-rc));
		exit(1);
	}
	store_close(st);
	tsnapopen = open_time(sdir, &keys);
	printf("recovery  snapshot of %" PRIu64 " keys written in %.2f s\n", keys, tsnap);
	printf("recovery  from snapshot:  %.2f s (%.2f s CPU, %" PRIu64 " keys)\n", tsnapopen,
	       last_cpu, keys);
	rm_rf(sdir);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "bench-store-data";
	double secs = argc > 2 ? atof(argv[2]) : 3.0;
	long nkeys = argc > 3 ? atol(argv[3]) : 1000000;
	static const int threads[] = { 1, 16, 64 };
	enum { ROUNDS = 5 };
	double raw_ops = 0, ops[3] = { 0 }, slice = secs / ROUNDS, raw, rate[3];
	double r1min = 1e9, r1max = 0;
	uint64_t syncs[3] = { 0 };
	char cmd[8400];

	snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	/* The disk is shared and its speed drifts: interleave short slices of
	 * every phase so that each ratio compares the same moments. */
	for (int r = 0; secs > 0 && r < ROUNDS; r++) {
		double rr = raw_rate(dir, slice), r1;

		raw_ops += rr * slice;
		for (int i = 0; i < 3; i++) {
			uint64_t sy;
			double x = store_rate(dir, threads[i], slice, &sy);

			ops[i] += x * slice;
			syncs[i] += sy;
			if (i == 0) {
				r1 = x / rr;
				r1min = r1 < r1min ? r1 : r1min;
				r1max = r1 > r1max ? r1 : r1max;
			}
		}
	}
	if (secs <= 0) {
		if (nkeys > 0)
			recovery(dir, nkeys);
		return 0;
	}
	raw = raw_ops / secs;
	printf("raw       write(100 B) + fdatasync:  %8.0f /s\n", raw);
	for (int i = 0; i < 3; i++) {
		rate[i] = ops[i] / secs;
		printf("store/%-3d durable puts (%2d thr):    %8.0f /s  = %5.2fx raw, %6.2fx 1 writer"
		       "  (%.1f puts per sync)\n",
		       threads[i], threads[i], rate[i], rate[i] / raw, rate[i] / rate[0],
		       syncs[i] ? ops[i] / (double)syncs[i] : 0.0);
	}
	printf("          1 writer / raw per round: %.2f .. %.2f (%d rounds of %.1f s)\n", r1min,
	       r1max, ROUNDS, slice);
	printf("targets   1 writer >= 0.80x raw: %s (%.2f);  64 writers >= 20x 1 writer: %s (%.1f)\n",
	       rate[0] >= 0.8 * raw ? "met" : "MISSED", rate[0] / raw,
	       rate[2] >= 20 * rate[0] ? "met" : "MISSED", rate[2] / rate[0]);
	if (nkeys > 0)
		recovery(dir, nkeys);
	return 0;
}
