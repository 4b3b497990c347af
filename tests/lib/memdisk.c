/*
 * memdisk.c — see memdisk.h.
 */
#include "tests/lib/memdisk.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct wop {           /* a change since the last sync, for memdisk_crash_torn */
	struct wop    *next;
	uint64_t       off;
	size_t         len;
	int            trunc; /* a truncate to off */
	unsigned char  data[];
};

struct inode {
	struct inode  *next_all;
	unsigned char *cur;
	size_t         cur_len, cur_cap;
	unsigned char *dur;
	size_t         dur_len;
	struct wop    *ops, **ops_tail;
};

struct dent {
	char         *path;
	struct inode *ino;
};

struct names {
	struct dent *v;
	size_t       n, cap;
};

struct mdfile {
	kvio_file     base;
	memdisk      *md;
	struct inode *ino;
	unsigned      gen;
	int           writable;
};

struct memdisk {
	struct kvio     io; /* first: the kvio pointer is the memdisk pointer */
	pthread_mutex_t mu;
	struct inode   *inodes;
	struct names    cur, dur;
	char          **dirs;
	size_t          ndirs;
	unsigned        gen;
	int             dead;
	uint64_t        writes, syncs, datasyncs;
	uint64_t        fail_write_at, fail_sync_at, cut_at; /* absolute counts, 0 = none */
	int             fail_write_err, fail_sync_err;
	uint64_t        write_calls, sync_calls;
	unsigned        sync_delay_us;
};

static memdisk *MD(const struct kvio *io)
{
	return (memdisk *)io;
}

/* ---- helpers ------------------------------------------------------------- */

static struct dent *find(struct names *ns, const char *path)
{
	for (size_t i = 0; i < ns->n; i++)
		if (!strcmp(ns->v[i].path, path))
			return &ns->v[i];
	return NULL;
}

static int add(struct names *ns, const char *path, struct inode *ino)
{
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? 2 * ns->cap : 16;
		struct dent *v = realloc(ns->v, cap * sizeof *v);

		if (!v)
			return -ENOMEM;
		ns->v = v;
		ns->cap = cap;
	}
	ns->v[ns->n].path = strdup(path);
	if (!ns->v[ns->n].path)
		return -ENOMEM;
	ns->v[ns->n].ino = ino;
	ns->n++;
	return 0;
}

static void del(struct names *ns, struct dent *d)
{
	free(d->path);
	*d = ns->v[--ns->n];
}

static void names_clear(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i].path);
	ns->n = 0;
}

/* Length of the directory part of path ("a/b" -> 1, "b" -> 0). */
static size_t parent_len(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? (size_t)(s - path) : 0;
}

static int in_dir(const char *path, const char *dir)
{
	size_t n = parent_len(path);

	return n == strlen(dir) && !strncmp(path, dir, n);
}

static int dir_exists(memdisk *md, const char *dir)
{
	for (size_t i = 0; i < md->ndirs; i++)
		if (!strcmp(md->dirs[i], dir))
			return 1;
	return 0;
}

static int parent_exists(memdisk *md, const char *path)
{
	size_t n = parent_len(path);
	char *d;
	int ok;

	if (!n)
		return 1;
	d = strndup(path, n);
	if (!d)
		return 0;
	ok = dir_exists(md, d);
	free(d);
	return ok;
}

static void ops_clear(struct inode *ino)
{
	struct wop *o, *n;

	for (o = ino->ops; o; o = n) {
		n = o->next;
		free(o);
	}
	ino->ops = NULL;
	ino->ops_tail = &ino->ops;
}

static int ops_add(struct inode *ino, uint64_t off, const void *data, size_t len, int trunc)
{
	struct wop *o = malloc(sizeof *o + len);

	if (!o)
		return -ENOMEM;
	o->next = NULL;
	o->off = off;
	o->len = len;
	o->trunc = trunc;
	if (len)
		memcpy(o->data, data, len);
	*ino->ops_tail = o;
	ino->ops_tail = &o->next;
	return 0;
}

static int reserve(struct inode *ino, size_t len)
{
	if (len > ino->cur_cap) {
		size_t cap = ino->cur_cap ? ino->cur_cap : 4096;
		unsigned char *p;

		while (cap < len)
			cap *= 2;
		p = realloc(ino->cur, cap);
		if (!p)
			return -ENOMEM;
		ino->cur = p;
		ino->cur_cap = cap;
	}
	return 0;
}

static int cur_write(struct inode *ino, const void *buf, size_t len, uint64_t off)
{
	size_t end = (size_t)off + len;
	int rc = reserve(ino, end);

	if (rc)
		return rc;
	if (!len)
		return 0;
	if (off > ino->cur_len)
		memset(ino->cur + ino->cur_len, 0, (size_t)off - ino->cur_len);
	memcpy(ino->cur + off, buf, len);
	if (end > ino->cur_len)
		ino->cur_len = end;
	return 0;
}

static int cur_truncate(struct inode *ino, uint64_t size)
{
	int rc = reserve(ino, (size_t)size);

	if (rc)
		return rc;
	if (size > ino->cur_len)
		memset(ino->cur + ino->cur_len, 0, (size_t)size - ino->cur_len);
	ino->cur_len = (size_t)size;
	return 0;
}

static int make_durable(struct inode *ino)
{
	unsigned char *d = malloc(ino->cur_len ? ino->cur_len : 1);

	if (!d)
		return -ENOMEM;
	if (ino->cur_len)
		memcpy(d, ino->cur, ino->cur_len);
	free(ino->dur);
	ino->dur = d;
	ino->dur_len = ino->cur_len;
	ops_clear(ino);
	return 0;
}

static struct inode *inode_new(memdisk *md)
{
	struct inode *ino = calloc(1, sizeof *ino);

	if (!ino)
		return NULL;
	ino->ops_tail = &ino->ops;
	ino->next_all = md->inodes;
	md->inodes = ino;
	return ino;
}

/* Decides whether this write/sync is the faulty one. Returns 0 or -err. */
static int write_fault(memdisk *md)
{
	if (md->dead)
		return -EIO;
	md->write_calls++;
	if (md->fail_write_at && md->write_calls == md->fail_write_at) {
		md->fail_write_at = 0;
		return md->fail_write_err;
	}
	return 0;
}

static int sync_fault(memdisk *md)
{
	if (md->dead)
		return -EIO;
	md->sync_calls++;
	if (md->cut_at && md->sync_calls == md->cut_at) {
		md->cut_at = 0;
		md->dead = 1;
		return -EIO;
	}
	if (md->fail_sync_at && md->sync_calls == md->fail_sync_at) {
		md->fail_sync_at = 0;
		return md->fail_sync_err;
	}
	return 0;
}

static int file_ok(struct mdfile *f)
{
	return !f->md->dead && f->gen == f->md->gen;
}

/* ---- methods ------------------------------------------------------------- */

static int md_open(const struct kvio *io, const char *path, unsigned flags, kvio_file **out)
{
	memdisk *md = MD(io);
	struct mdfile *f;
	struct dent *d;
	struct inode *ino;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	if (md->dead) {
		rc = -EIO;
		goto out;
	}
	d = find(&md->cur, path);
	if (d && (flags & KVIO_CREAT) && (flags & KVIO_EXCL)) {
		rc = -EEXIST;
		goto out;
	}
	if (!d && !(flags & KVIO_CREAT)) {
		rc = -ENOENT;
		goto out;
	}
	if (!d && !parent_exists(md, path)) {
		rc = -ENOENT;
		goto out;
	}
	if (d) {
		ino = d->ino;
	} else {
		ino = inode_new(md);
		if (!ino || add(&md->cur, path, ino)) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if ((flags & KVIO_TRUNC) && ino->cur_len) {
		cur_truncate(ino, 0);
		ops_add(ino, 0, NULL, 0, 1);
	}
	f = calloc(1, sizeof *f);
	if (!f) {
		rc = -ENOMEM;
		goto out;
	}
	f->base.io = io;
	f->md = md;
	f->ino = ino;
	f->gen = md->gen;
	f->writable = !!(flags & KVIO_RDWR);
	*out = &f->base;
out:
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int md_close(kvio_file *kf)
{
	free(kf);
	return 0;
}

static ssize_t md_pwritev(kvio_file *kf, const struct iovec *iov, int n, uint64_t off)
{
	struct mdfile *f = (struct mdfile *)kf;
	memdisk *md = f->md;
	size_t total = 0;
	ssize_t rc;

	pthread_mutex_lock(&md->mu);
	if (!file_ok(f) || !f->writable) {
		rc = f->writable ? -EIO : -EBADF;
		goto out;
	}
	rc = write_fault(md);
	if (rc)
		goto out;
	for (int i = 0; i < n; i++) {
		rc = cur_write(f->ino, iov[i].iov_base, iov[i].iov_len, off + total);
		if (!rc)
			rc = ops_add(f->ino, off + total, iov[i].iov_base, iov[i].iov_len, 0);
		if (rc)
			goto out;
		total += iov[i].iov_len;
	}
	md->writes++;
	rc = (ssize_t)total;
out:
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static ssize_t md_pwrite(kvio_file *kf, const void *buf, size_t len, uint64_t off)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };

	return md_pwritev(kf, &v, 1, off);
}

static ssize_t md_pread(kvio_file *kf, void *buf, size_t len, uint64_t off)
{
	struct mdfile *f = (struct mdfile *)kf;
	memdisk *md = f->md;
	ssize_t rc;

	pthread_mutex_lock(&md->mu);
	if (!file_ok(f)) {
		rc = -EIO;
	} else if (off >= f->ino->cur_len) {
		rc = 0;
	} else {
		size_t n = f->ino->cur_len - (size_t)off;

		if (n > len)
			n = len;
		memcpy(buf, f->ino->cur + off, n);
		rc = (ssize_t)n;
	}
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static void sync_sleep(memdisk *md)
{
	unsigned us;

	pthread_mutex_lock(&md->mu);
	us = md->sync_delay_us;
	pthread_mutex_unlock(&md->mu);
	if (us) {
		struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000 };

		nanosleep(&ts, NULL);
	}
}

static int md_datasync(kvio_file *kf)
{
	struct mdfile *f = (struct mdfile *)kf;
	memdisk *md = f->md;
	int rc;

	/* A real disk takes time; without it no writer would ever find a sync
	 * in flight and group commit could not be observed. */
	sync_sleep(md);
	pthread_mutex_lock(&md->mu);
	rc = file_ok(f) ? sync_fault(md) : -EIO;
	if (!rc)
		rc = make_durable(f->ino);
	if (!rc) {
		md->syncs++;
		md->datasyncs++;
	}
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int md_truncate(kvio_file *kf, uint64_t size)
{
	struct mdfile *f = (struct mdfile *)kf;
	memdisk *md = f->md;
	int rc;

	pthread_mutex_lock(&md->mu);
	rc = file_ok(f) ? write_fault(md) : -EIO;
	if (!rc)
		rc = cur_truncate(f->ino, size);
	if (!rc)
		rc = ops_add(f->ino, size, NULL, 0, 1);
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int md_size(kvio_file *kf, uint64_t *size)
{
	struct mdfile *f = (struct mdfile *)kf;
	int rc = 0;

	pthread_mutex_lock(&f->md->mu);
	if (!file_ok(f))
		rc = -EIO;
	else
		*size = f->ino->cur_len;
	pthread_mutex_unlock(&f->md->mu);
	return rc;
}

static int md_sync_dir(const struct kvio *io, const char *dir)
{
	memdisk *md = MD(io);
	int rc;

	pthread_mutex_lock(&md->mu);
	rc = sync_fault(md);
	if (rc)
		goto out;
	if (!dir_exists(md, dir)) {
		rc = -ENOENT;
		goto out;
	}
	/* The durable entries of dir become the current ones. */
	for (size_t i = 0; i < md->dur.n;) {
		if (in_dir(md->dur.v[i].path, dir))
			del(&md->dur, &md->dur.v[i]);
		else
			i++;
	}
	for (size_t i = 0; i < md->cur.n && !rc; i++)
		if (in_dir(md->cur.v[i].path, dir))
			rc = add(&md->dur, md->cur.v[i].path, md->cur.v[i].ino);
	if (!rc)
		md->syncs++;
out:
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int md_rename(const struct kvio *io, const char *from, const char *to)
{
	memdisk *md = MD(io);
	struct dent *d, *t;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	if (md->dead) {
		rc = -EIO;
		goto out;
	}
	d = find(&md->cur, from);
	if (!d || !parent_exists(md, to)) {
		rc = -ENOENT;
		goto out;
	}
	t = find(&md->cur, to);
	if (t) {
		t->ino = d->ino;
		del(&md->cur, d);
	} else {
		char *p = strdup(to);

		if (!p) {
			rc = -ENOMEM;
			goto out;
		}
		free(d->path);
		d->path = p;
	}
out:
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int md_unlink(const struct kvio *io, const char *path)
{
	memdisk *md = MD(io);
	struct dent *d;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	if (md->dead)
		rc = -EIO;
	else if (!(d = find(&md->cur, path)))
		rc = -ENOENT;
	else
		del(&md->cur, d);
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int md_mkdir(const struct kvio *io, const char *path, mode_t mode)
{
	memdisk *md = MD(io);
	char **v;
	int rc = 0;

	(void)mode;
	pthread_mutex_lock(&md->mu);
	if (md->dead) {
		rc = -EIO;
	} else if (dir_exists(md, path)) {
		rc = -EEXIST;
	} else if (!(v = realloc(md->dirs, (md->ndirs + 1) * sizeof *v))) {
		rc = -ENOMEM;
	} else {
		md->dirs = v;
		v[md->ndirs] = strdup(path);
		if (v[md->ndirs])
			md->ndirs++;
		else
			rc = -ENOMEM;
	}
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of dir; caller frees each and the array. */
static char **names_in(memdisk *md, const char *dir, size_t *n)
{
	char **v = calloc(md->cur.n + 1, sizeof *v);
	size_t k = 0, plen = strlen(dir);

	if (!v)
		return NULL;
	for (size_t i = 0; i < md->cur.n; i++)
		if (in_dir(md->cur.v[i].path, dir))
			v[k++] = strdup(md->cur.v[i].path + plen + (plen ? 1 : 0));
	qsort(v, k, sizeof *v, cmpstr);
	*n = k;
	return v;
}

static int md_list(const struct kvio *io, const char *dir, kvio_list_fn fn, void *arg)
{
	memdisk *md = MD(io);
	char **v;
	size_t n = 0;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	if (md->dead) {
		pthread_mutex_unlock(&md->mu);
		return -EIO;
	}
	if (!dir_exists(md, dir)) {
		pthread_mutex_unlock(&md->mu);
		return -ENOENT;
	}
	v = names_in(md, dir, &n);
	pthread_mutex_unlock(&md->mu);
	if (!v)
		return -ENOMEM;
	/* Called without the lock: the callback may unlink. */
	for (size_t i = 0; i < n; i++) {
		if (!rc && v[i])
			rc = fn(arg, v[i]);
		free(v[i]);
	}
	free(v);
	return rc;
}

/* ---- public -------------------------------------------------------------- */

memdisk *memdisk_new(void)
{
	memdisk *md = calloc(1, sizeof *md);

	if (!md)
		return NULL;
	pthread_mutex_init(&md->mu, NULL);
	md->io.name = "memdisk";
	md->io.open = md_open;
	md->io.close = md_close;
	md->io.pwrite = md_pwrite;
	md->io.pwritev = md_pwritev;
	md->io.pread = md_pread;
	md->io.datasync = md_datasync;
	md->io.truncate = md_truncate;
	md->io.size = md_size;
	md->io.sync_dir = md_sync_dir;
	md->io.rename = md_rename;
	md->io.unlink = md_unlink;
	md->io.mkdir = md_mkdir;
	md->io.list = md_list;
	return md;
}

void memdisk_free(memdisk *md)
{
	struct inode *ino, *n;

	if (!md)
		return;
	for (ino = md->inodes; ino; ino = n) {
		n = ino->next_all;
		ops_clear(ino);
		free(ino->cur);
		free(ino->dur);
		free(ino);
	}
	names_clear(&md->cur);
	names_clear(&md->dur);
	free(md->cur.v);
	free(md->dur.v);
	for (size_t i = 0; i < md->ndirs; i++)
		free(md->dirs[i]);
	free(md->dirs);
	pthread_mutex_destroy(&md->mu);
	free(md);
}

const struct kvio *memdisk_io(memdisk *md)
{
	return &md->io;
}

static uint64_t rnd(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void crash(memdisk *md, uint64_t *seed)
{
	pthread_mutex_lock(&md->mu);
	for (struct inode *ino = md->inodes; ino; ino = ino->next_all) {
		size_t nops = 0, keep;
		struct wop *o;

		for (o = ino->ops; o; o = o->next)
			nops++;
		/* Back to the durable image... */
		ino->cur_len = 0;
		cur_write(ino, ino->dur, ino->dur_len, 0);
		ino->cur_len = ino->dur_len;
		/* ...plus, in torn mode, an in-order prefix of what came after,
		 * the last kept write cut at a random byte. */
		keep = seed && nops ? (size_t)(rnd(seed) % (nops + 1)) : 0;
		o = ino->ops;
		for (size_t i = 0; i < keep; i++, o = o->next) {
			size_t len = o->len;

			if (o->trunc) {
				cur_truncate(ino, o->off);
				continue;
			}
			if (i + 1 == keep && len)
				len = (size_t)(rnd(seed) % (len + 1));
			cur_write(ino, o->data, len, o->off);
		}
		make_durable(ino);
	}
	names_clear(&md->cur);
	for (size_t i = 0; i < md->dur.n; i++)
		add(&md->cur, md->dur.v[i].path, md->dur.v[i].ino);
	md->gen++;
	md->dead = 0;
	md->fail_write_at = md->fail_sync_at = md->cut_at = 0;
	pthread_mutex_unlock(&md->mu);
}

/* One file after a power cut with out-of-order write-back: its size is
 * the durable or the current one, and every page within it holds either
 * its durable or its current bytes (zeros where that image is shorter). */
static int crash_pages_one(struct inode *ino, uint64_t *seed, size_t page)
{
	size_t len = rnd(seed) & 1 ? ino->cur_len : ino->dur_len;
	unsigned char *img = calloc(len ? len : 1, 1);

	if (!img)
		return -ENOMEM;
	for (size_t off = 0; off < len; off += page) {
		size_t n = len - off < page ? len - off : page;
		const unsigned char *src = ino->dur;
		size_t have = ino->dur_len;

		if (rnd(seed) & 1) {
			src = ino->cur;
			have = ino->cur_len;
		}
		if (off < have)
			memcpy(img + off, src + off, have - off < n ? have - off : n);
	}
	ino->cur_len = 0;
	cur_write(ino, img, len, 0);
	ino->cur_len = len;
	free(img);
	return make_durable(ino);
}

void memdisk_crash_pages(memdisk *md, uint64_t seed, size_t page)
{
	pthread_mutex_lock(&md->mu);
	for (struct inode *ino = md->inodes; ino; ino = ino->next_all)
		if (ino->ops)
			(void)crash_pages_one(ino, &seed, page ? page : 4096);
	pthread_mutex_unlock(&md->mu);
	crash(md, NULL);
}

void memdisk_crash(memdisk *md)
{
	crash(md, NULL);
}

void memdisk_crash_torn(memdisk *md, uint64_t seed)
{
	crash(md, &seed);
}

void memdisk_fail_write(memdisk *md, uint64_t nth, int err)
{
	pthread_mutex_lock(&md->mu);
	md->fail_write_at = md->write_calls + nth;
	md->fail_write_err = err > 0 ? -err : err;
	pthread_mutex_unlock(&md->mu);
}

void memdisk_fail_sync(memdisk *md, uint64_t nth, int err)
{
	pthread_mutex_lock(&md->mu);
	md->fail_sync_at = md->sync_calls + nth;
	md->fail_sync_err = err > 0 ? -err : err;
	pthread_mutex_unlock(&md->mu);
}

void memdisk_cut_at_sync(memdisk *md, uint64_t nth)
{
	pthread_mutex_lock(&md->mu);
	md->cut_at = md->sync_calls + nth;
	pthread_mutex_unlock(&md->mu);
}

void memdisk_set_sync_delay(memdisk *md, unsigned usec)
{
	pthread_mutex_lock(&md->mu);
	md->sync_delay_us = usec;
	pthread_mutex_unlock(&md->mu);
}

void memdisk_clear_faults(memdisk *md)
{
	pthread_mutex_lock(&md->mu);
	md->fail_write_at = md->fail_sync_at = md->cut_at = 0;
	pthread_mutex_unlock(&md->mu);
}

uint64_t memdisk_writes(memdisk *md)
{
	uint64_t v;

	pthread_mutex_lock(&md->mu);
	v = md->writes;
	pthread_mutex_unlock(&md->mu);
	return v;
}

uint64_t memdisk_syncs(memdisk *md)
{
	uint64_t v;

	pthread_mutex_lock(&md->mu);
	v = md->syncs;
	pthread_mutex_unlock(&md->mu);
	return v;
}

uint64_t memdisk_datasyncs(memdisk *md)
{
	uint64_t v;

	pthread_mutex_lock(&md->mu);
	v = md->datasyncs;
	pthread_mutex_unlock(&md->mu);
	return v;
}

int memdisk_read(memdisk *md, const char *path, void **buf, size_t *len)
{
	struct dent *d;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	d = find(&md->cur, path);
	if (!d) {
		rc = -ENOENT;
	} else {
		*buf = malloc(d->ino->cur_len ? d->ino->cur_len : 1);
		if (!*buf) {
			rc = -ENOMEM;
		} else {
			if (d->ino->cur_len)
				memcpy(*buf, d->ino->cur, d->ino->cur_len);
			*len = d->ino->cur_len;
		}
	}
	pthread_mutex_unlock(&md->mu);
	return rc;
}

int memdisk_write(memdisk *md, const char *path, const void *buf, size_t len)
{
	struct dent *d;
	struct inode *ino;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	d = find(&md->cur, path);
	if (d) {
		ino = d->ino;
		if (!find(&md->dur, path) && add(&md->dur, path, ino)) {
			rc = -ENOMEM;
			goto out;
		}
	} else {
		ino = inode_new(md);
		if (!ino || add(&md->cur, path, ino) || add(&md->dur, path, ino)) {
			rc = -ENOMEM;
			goto out;
		}
	}
	ino->cur_len = 0;
	rc = cur_write(ino, buf, len, 0);
	if (!rc)
		rc = make_durable(ino);
out:
	pthread_mutex_unlock(&md->mu);
	return rc;
}

int memdisk_exists(memdisk *md, const char *path)
{
	int e;

	pthread_mutex_lock(&md->mu);
	e = find(&md->cur, path) != NULL;
	pthread_mutex_unlock(&md->mu);
	return e;
}

char *memdisk_listing(memdisk *md, const char *dir)
{
	char **v, *s;
	size_t n = 0, total = 1;

	pthread_mutex_lock(&md->mu);
	v = names_in(md, dir, &n);
	pthread_mutex_unlock(&md->mu);
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++)
		total += strlen(v[i]) + 1;
	s = malloc(total);
	if (s) {
		s[0] = '\0';
		for (size_t i = 0; i < n; i++) {
			strcat(s, v[i]);
			strcat(s, "\n");
		}
	}
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return s;
}
