/*
 * fsops.c — the FUSE callbacks of kvfs (see fsops.h and SPEC §3).
 *
 * Mapping: the file "/a/b" is the key "a/b"; the explicit directory "/a/b" is
 * the marker key "a/b/" (S_IFDIR mode); "/a" is an implicit directory while
 * any key starts with "a/". A symlink is a key with S_IFLNK mode whose value
 * is the target.
 *
 * Open files are buffered in the shared table of fs/ofile.h; flush, fsync
 * and release commit the whole contents as one KV_PUT, so a reader sees
 * either the old or the new file, never a mix (close-to-open consistency).
 *
 * Locks, in this order: ent_move_lock (a commit holds it shared so that a
 * rename moving its key cannot interleave), the ofile table lock, an ofile's
 * lock. node_write() is called with at most ent_move_lock and one ofile lock.
 */
#include "fs/fsops.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs/ent.h"
#include "fs/move.h"
#include "fs/ofile.h"
#include "fs/path.h"
#include "fs/sview.h"
#include "store/log.h"

static struct kvfs_ctx *K;

/* ---- small helpers -------------------------------------------------------- */

int64_t fsops_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const struct kvfs_ctx *fsops_ctx(void)
{
	return K;
}

static struct timespec ns_to_ts(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };

	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000;
	}
	return ts;
}

void fsops_fill_stat(struct stat *st, const struct kv_meta *m, size_t size)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = m->mode;
	st->st_nlink = S_ISDIR(m->mode) ? 2 : 1;
	st->st_uid = m->uid;
	st->st_gid = m->gid;
	st->st_size = S_ISDIR(m->mode) ? 4096 : (off_t)size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
	/* No access time is kept: atime reads as mtime (like noatime). */
	st->st_mtim = ns_to_ts(m->mtime_ns);
	st->st_atim = st->st_mtim;
	st->st_ctim = ns_to_ts(m->ctime_ns);
}
/* Raft mode promises linearizable reads (SPEC §3): before contents or a
 * listing are served from the local replica, wait until it holds every write
 * acknowledged anywhere (ReadIndex). A minority side fails here instead of
 * answering with stale data. Other modes return at once. */
static int read_barrier(void)
{
	if (node_get_mode(K->n) != NODE_RAFT)
		return 0;
	return node_read_barrier(K->n);
}

/* One per open file descriptor: the open file it shares with every other
 * descriptor of the key, and whether THIS descriptor changed it since its
 * last commit. Only such a descriptor commits on flush/fsync/release: the
 * close of a reader, or the late release of an earlier writer, must never
 * commit what another descriptor is half-way through writing. */
struct fhandle {
	struct ofile *of;
	int           wrote; /* protected by of->lock */
};

static struct fhandle *fh_get(const struct fuse_file_info *fi)
{
	return (struct fhandle *)(uintptr_t)fi->fh;
}

static struct ofile *fh_of(const struct fuse_file_info *fi)
{
	return fh_get(fi)->of;
}

/* Gives the caller's pin of `of` to a new handle stored in fi->fh. */
static int fh_attach(struct fuse_file_info *fi, struct ofile *of, int wrote)
{
	struct fhandle *h = malloc(sizeof *h);

	if (!h)
		return -ENOMEM;
	h->of = of;
	h->wrote = wrote;
	fi->fh = (uintptr_t)h;
	return 0;
}

/* ---- committing open files ----------------------------------------------- */

/* Commits the open file's contents and metadata as one KV_PUT if changed.
 * Returns the commit's error, which flush/fsync hand to close()/fsync(). */
static int of_commit(struct ofile *of)
{
	struct kv_op op;
	kv_rec *r;
	int rc = 0;

	pthread_rwlock_rdlock(&ent_move_lock);
	pthread_mutex_lock(&of->lock);
	if (!of->dirty || of->unlinked)
		goto out;
	memset(&op, 0, sizeof(op));
	op.kind = KV_PUT;
	op.key = of->key;
	op.klen = (uint32_t)of->klen;
	op.val = ofile_data(of) ? ofile_data(of) : "";
	op.vlen = (uint32_t)of->size;
	op.meta = of->meta;
	rc = ent_write(&op, 1);
	if (rc) {
		LOG(LOG_WARN, "commit of '%s' (%zu bytes) failed: %s", of->key, of->size,
		    strerror(-rc));
		goto out;
	}
	of->dirty = 0;
	/* Continue from the committed record: it holds the same bytes, and the
	 * private copy can go (reads become zero-copy again). */
	if (store_get(K->st, of->key, of->klen, 0, &r) == 0)
		ofile_set_base(of, r);
	else
		of->in_store = 1;
out:
	pthread_mutex_unlock(&of->lock);
	pthread_rwlock_unlock(&ent_move_lock);
	return rc;
}

/* Pins the open file of an existing file key, bringing a clean ofile up to
 * date with the store (another writer, the control socket or replication may
 * have changed the key since it was opened). -ENOENT when there is no file. */
static int of_acquire(const char *key, size_t klen, struct ofile **out)
{
	struct ofile *of;
	kv_rec *r = NULL;
	int created, rc;

	of = ofile_open(key, klen, &created);
	if (!of)
		return -ENOMEM;
	rc = store_get(K->st, key, klen, 0, &r);
	pthread_mutex_lock(&of->lock);
	if (rc == 0) {
		if (S_ISDIR(kv_rec_meta(r)->mode)) {
			rc = -EISDIR;
		} else if (!of->dirty && of->version != kv_rec_version(r)) {
			ofile_set_base(of, r);
			r = NULL;
		}
	} else if (rc == -ENOENT && !created && !of->in_store && !of->unlinked) {
		rc = 0; /* created here, not committed yet */
	}
	pthread_mutex_unlock(&of->lock);
	if (r)
		kv_rec_unref(r);
	if (rc) {
		ofile_put(of);
		return rc;
	}
	*out = of;
	return 0;
}

static void of_touch(struct ofile *of)
{
	of->meta.mtime_ns = of->meta.ctime_ns = fsops_now_ns();
	of->dirty = 1;
}

/* Commits through descriptor `h` if it changed the file since its last
 * commit (see struct fhandle). */
static int fh_commit(struct fhandle *h)
{
	int wrote, rc;

	pthread_mutex_lock(&h->of->lock);
	wrote = h->wrote;
	h->wrote = 0;
	pthread_mutex_unlock(&h->of->lock);
	if (!wrote)
		return 0;
	rc = of_commit(h->of);
	if (rc) {
		/* Still this descriptor's to commit (or to report) next time. */
		pthread_mutex_lock(&h->of->lock);
		h->wrote = 1;
		pthread_mutex_unlock(&h->of->lock);
	}
	return rc;
}

/* ---- callbacks ------------------------------------------------------------ */

int fsops_names_file(const char *path)
{
	struct ent e;
	size_t klen;
	const char *key = fsp_key(path, &klen);
	int file;

	if (!klen || fsp_is_search(path) || ent_resolve(key, klen, &e))
		return 0;
	file = e.kind == KIND_FILE;
	ent_release(&e);
	return file;
}

int fsops_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct ent e;
	const char *key;
	size_t klen;
	int rc;

	if (fi && fi->fh) {
		struct ofile *of = fh_of(fi);
		pthread_mutex_lock(&of->lock);
		fsops_fill_stat(st, &of->meta, of->size);
		pthread_mutex_unlock(&of->lock);
		return 0;
	}
	if (fsp_is_search(path))
		return sview_getattr(path, st);
	key = fsp_key(path, &klen);
	if (klen && (rc = fsp_check(key, klen, 0)) == -ENAMETOOLONG)
		return rc;
	/* stat and ls -l on another node right after a write must show the new
	 * size and times too, not only cat. */
	if ((rc = read_barrier()) || (rc = ent_resolve(key, klen, &e)))
		return rc;
	ent_stat(&e, st);
	ent_release(&e);
	return 0;
}

int fsops_readlink(const char *path, char *buf, size_t size)
{
	const char *key;
	size_t klen, n;
	kv_rec *r;
	int rc;

	if (fsp_is_search(path))
		return sview_readlink(path, buf, size);
	key = fsp_key(path, &klen);
	if ((rc = read_barrier()) || (rc = store_get(K->st, key, klen, 0, &r)))
		return rc;
	if (!S_ISLNK(kv_rec_meta(r)->mode)) {
		kv_rec_unref(r);
		return -EINVAL;
	}
	n = kv_rec_size(r) < size - 1 ? kv_rec_size(r) : size - 1;
	memcpy(buf, kv_rec_value(r), n);
	buf[n] = '\0';
	kv_rec_unref(r);
	return 0;
}

/* Writes one new key (file, symlink or directory marker) that must not exist. */
static int put_new(const char *path, int is_dir, mode_t mode, const char *val, size_t vlen)
{
	char mk[KV_KEY_MAX + 2];
	struct kv_op op;
	struct ent e;
	const char *key;
	size_t klen;
	int rc;

	key = fsp_key(path, &klen);
	if (fsp_is_search(path))
		return klen == sizeof(FSP_SEARCH_DIR) - 1 ? -EEXIST : -EPERM;
	if ((rc = fsp_check(key, klen, is_dir)))
		return rc;
	if ((rc = ent_resolve(key, klen, &e)) == 0) {
		ent_release(&e);
		return -EEXIST;
	}
	if (rc != -ENOENT)
		return rc;
	memset(&op, 0, sizeof(op));
	op.kind = KV_PUT;
	op.key = key;
	op.klen = (uint32_t)klen;
	if (is_dir) {
		op.klen = (uint32_t)fsp_dirkey(key, klen, mk, sizeof(mk));
		op.key = mk;
	}
	op.val = val;
	op.vlen = (uint32_t)vlen;
	op.meta = ent_new_meta(key, klen, mode);
	return ent_write(&op, 1);
}

int fsops_mknod(const char *path, mode_t mode, dev_t rdev)
{
	(void)rdev;
	/* Only regular files have a meaning as keys; devices, FIFOs and sockets
	 * would be keys nobody can use. */
	if (!S_ISREG(mode))
		return -EPERM;
	return put_new(path, 0, mode, "", 0);
}

int fsops_mkdir(const char *path, mode_t mode)
{
	return put_new(path, 1, S_IFDIR | (mode & 07777), "", 0);
}

int fsops_symlink(const char *target, const char *path)
{
	size_t tlen = strlen(target);

	if (tlen >= PATH_MAX)
		return -ENAMETOOLONG;
	return put_new(path, 0, S_IFLNK | 0777, target, tlen);
}

int fsops_unlink(const char *path)
{
	char mk[KV_KEY_MAX + 2];
	struct kv_op ops[2];
	uint32_t n = 0;
	struct ent e;
	const char *key;
	size_t klen;
	int rc;

	if (fsp_is_search(path))
		return -EPERM;
	key = fsp_key(path, &klen);
	if ((rc = ent_resolve(key, klen, &e)))
		return rc;
	if (e.kind != KIND_FILE) {
		rc = e.kind == KIND_ROOT ? -EBUSY : -EISDIR;
		ent_release(&e);
		return rc;
	}
	if (e.rec) {
		memset(&ops[0], 0, sizeof(ops[0]));
		ops[0].kind = KV_DEL;
		ops[0].key = key;
		ops[0].klen = (uint32_t)klen;
		n = 1;
		n += (uint32_t)ent_keep_parent(key, klen, mk, &ops[1]);
	}
	pthread_rwlock_rdlock(&ent_move_lock);
	if (e.of) {
		/* Under the ofile's lock so that no commit of an open handle can
		 * slip in after the delete and resurrect the file. */
		pthread_mutex_lock(&e.of->lock);
		rc = ent_write(ops, n);
		if (rc == 0)
			e.of->unlinked = 1;
		pthread_mutex_unlock(&e.of->lock);
		if (rc == 0)
			ofile_unhash(e.of);
	} else {
		rc = ent_write(ops, n);
	}
	pthread_rwlock_unlock(&ent_move_lock);
	ent_release(&e);
	return rc;
}

int fsops_rmdir(const char *path)
{
	char mk[KV_KEY_MAX + 2], pk[KV_KEY_MAX + 2];
	struct kv_op ops[2];
	struct ent e;
	const char *key;
	size_t klen;
	int rc, mlen;

	if (fsp_is_search(path))
		return -EPERM;
	key = fsp_key(path, &klen);
	if ((rc = ent_resolve(key, klen, &e)))
		return rc;
	if (e.kind != KIND_DIR) {
		rc = e.kind == KIND_ROOT ? -EBUSY : -ENOTDIR;
		goto out;
	}
	mlen = fsp_dirkey(key, klen, mk, sizeof(mk));
	if (ent_has_children(mk, (size_t)mlen)) {
		rc = -ENOTEMPTY;
		goto out;
	}
	memset(&ops[0], 0, sizeof(ops[0]));
	ops[0].kind = KV_DEL;
	ops[0].key = mk;
	ops[0].klen = (uint32_t)mlen;
	rc = ent_write(ops, 1 + (uint32_t)ent_keep_parent(key, klen, pk, &ops[1]));
out:
	ent_release(&e);
	return rc;
}
/* ---- metadata ------------------------------------------------------------- */

struct meta_change {
	int      what; /* 0 chmod, 1 chown, 2 utimens */
	mode_t   mode;
	uid_t    uid;
	gid_t    gid;
	const struct timespec *tv;
};

static int64_t ts_ns(const struct timespec *ts, int64_t now, int64_t old)
{
	if (ts->tv_nsec == UTIME_NOW)
		return now;
	if (ts->tv_nsec == UTIME_OMIT)
		return old;
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static void apply_change(struct kv_meta *m, const struct meta_change *c)
{
	int64_t now = fsops_now_ns();

	switch (c->what) {
	case 0:
		m->mode = (m->mode & S_IFMT) | (c->mode & 07777);
		break;
	case 1:
		if (c->uid != (uid_t)-1)
			m->uid = c->uid;
		if (c->gid != (gid_t)-1)
			m->gid = c->gid;
		/* A chown drops set-user-ID and set-group-ID (executable) bits of
		 * a non-directory, as the kernel does on local file systems. */
		if (!S_ISDIR(m->mode) && !S_ISLNK(m->mode)) {
			m->mode &= ~(uint32_t)S_ISUID;
			if (m->mode & S_IXGRP)
				m->mode &= ~(uint32_t)S_ISGID;
		}
		break;
	default:
		m->mtime_ns = ts_ns(&c->tv[1], now, m->mtime_ns);
		break;
	}
	m->ctime_ns = now;
}

static int meta_op(const char *key, size_t klen, int put, const kv_rec *base,
		   const struct kv_meta *m)
{
	struct kv_op op;

	memset(&op, 0, sizeof(op));
	op.kind = put ? KV_PUT : KV_META;
	op.key = key;
	op.klen = (uint32_t)klen;
	op.val = base ? kv_rec_value(base) : "";
	op.vlen = base ? (uint32_t)kv_rec_size(base) : 0;
	op.meta = *m;
	return ent_write(&op, 1);
}

static int change_meta(const char *path, struct fuse_file_info *fi,
		       const struct meta_change *c)
{
	char mk[KV_KEY_MAX + 2];
	struct kv_meta m;
	struct ent e;
	const char *key;
	size_t klen;
	int rc, mlen;

	if (fi && fi->fh) {
		e.of = fh_of(fi);
		goto open_file;
	}
	if (fsp_is_search(path))
		return -EPERM;
	key = fsp_key(path, &klen);
	if ((rc = ent_resolve(key, klen, &e)))
		return rc;
	if (e.kind == KIND_ROOT) {
		/* The root has no key to keep attributes in. */
		rc = -EPERM;
	} else if (e.of) {
		kv_rec_unref(e.rec);
		e.rec = NULL;
		rc = 0;
open_file:
		pthread_mutex_lock(&e.of->lock);
		apply_change(&e.of->meta, c);
		/* Uncommitted changes get the meta with their commit; committed
		 * contents get it now, so that it is durable without a close. */
		rc = e.of->in_store && !e.of->unlinked
			? meta_op(e.of->key, e.of->klen, 0, NULL, &e.of->meta) : 0;
		pthread_mutex_unlock(&e.of->lock);
		if (fi && fi->fh)
			return rc;
	} else if (e.kind == KIND_FILE) {
		m = *kv_rec_meta(e.rec);
		apply_change(&m, c);
		rc = meta_op(key, klen, 0, NULL, &m);
	} else {
		mlen = fsp_dirkey(key, klen, mk, sizeof(mk));
		m = e.rec ? *kv_rec_meta(e.rec) : ent_dir_meta();
		apply_change(&m, c);
		/* An implicit directory gets a marker to hold its attributes. */
		rc = meta_op(mk, (size_t)mlen, !e.explicit_dir, NULL, &m);
	}
	ent_release(&e);
	return rc;
}

int fsops_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct meta_change c = { .what = 0, .mode = mode };

	return change_meta(path, fi, &c);
}

int fsops_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	struct meta_change c = { .what = 1, .uid = uid, .gid = gid };

	return change_meta(path, fi, &c);
}

int fsops_utimens(const char *path, const struct timespec tv[2],
		      struct fuse_file_info *fi)
{
	struct timespec now[2] = { { .tv_nsec = UTIME_NOW }, { .tv_nsec = UTIME_NOW } };
	struct meta_change c = { .what = 2, .tv = tv ? tv : now };

	return change_meta(path, fi, &c);
}

/* ---- contents ------------------------------------------------------------- */

int fsops_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct ofile *of;
	const char *key;
	size_t klen;
	int rc;

	if (size < 0)
		return -EINVAL;
	if ((uint64_t)size > KV_VALUE_MAX)
		return -EFBIG;
	if (fi && fi->fh) {
		of = fh_of(fi);
		pthread_mutex_lock(&of->lock);
		rc = ofile_resize(of, (size_t)size);
		if (rc == 0) {
			of_touch(of);
			fh_get(fi)->wrote = 1;
		}
		pthread_mutex_unlock(&of->lock);
		return rc;
	}
	if (fsp_is_search(path))
		return -EPERM;
	/* truncate(2) by name has no close to wait for: commit at once. */
	key = fsp_key(path, &klen);
	if ((rc = of_acquire(key, klen, &of)))
		return rc;
	pthread_mutex_lock(&of->lock);
	rc = ofile_resize(of, (size_t)size);
	if (rc == 0)
		of_touch(of);
	pthread_mutex_unlock(&of->lock);
	if (rc == 0)
		rc = of_commit(of);
	ofile_put(of);
	return rc;
}

int fsops_open(const char *path, struct fuse_file_info *fi)
{
	struct ofile *of;
	const char *key;
	size_t klen;
	int rc, trunc;

	if (fsp_is_search(path))
		return -EACCES;
	if ((rc = read_barrier()))
		return rc;
	key = fsp_key(path, &klen);
	/* The kernel calls open only for a name it believes exists. When the key
	 * is gone (deleted over the control socket or by replication while the
	 * kernel still caches the entry: fuse_invalidate_path drops inode caches,
	 * not dentries), answer ESTALE as NFS does: the VFS then repeats the
	 * lookup with revalidation, so `echo v > f` creates the file afresh and
	 * a plain open gets ENOENT. */
	if ((rc = of_acquire(key, klen, &of)))
		return rc == -ENOENT ? -ESTALE : rc;
	/* O_TRUNC truncates whatever the access mode, as Linux does (the
	 * kernel has checked write permission for it). */
	trunc = (fi->flags & O_TRUNC) != 0;
	if (trunc) {
		pthread_mutex_lock(&of->lock);
		rc = ofile_resize(of, 0);
		if (rc == 0)
			of_touch(of);
		pthread_mutex_unlock(&of->lock);
	}
	if (rc == 0)
		rc = fh_attach(fi, of, trunc);
	if (rc) {
		ofile_put(of);
		return rc;
	}
	/* A read-only descriptor has nothing to commit (unless it truncated):
	 * spare close() the FLUSH round trip. */
	if ((fi->flags & O_ACCMODE) == O_RDONLY && !trunc)
		fi->noflush = 1;
	return rc;
}

int fsops_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct ofile *of;
	const char *key;
	size_t klen;
	kv_rec *r = NULL;
	int created, rc;

	key = fsp_key(path, &klen);
	if (fsp_is_search(path))
		return klen == sizeof(FSP_SEARCH_DIR) - 1 ? -EEXIST : -EPERM;
	if ((rc = fsp_check(key, klen, 0)))
		return rc;
	of = ofile_open(key, klen, &created);
	if (!of)
		return -ENOMEM;
	if (store_get(K->st, key, klen, 0, &r) == 0 || !created) {
		/* It appeared meanwhile: open it as an existing file. */
		if (r)
			kv_rec_unref(r);
		ofile_put(of);
		if (fi->flags & O_EXCL)
			return -EEXIST;
		return fsops_open(path, fi);
	}
	pthread_mutex_lock(&of->lock);
	of->meta = ent_new_meta(key, klen, S_IFREG | (mode & 07777));
	of->dirty = 1; /* even an empty new file is committed at close */
	pthread_mutex_unlock(&of->lock);
	rc = fh_attach(fi, of, 1);
	if (rc)
		ofile_put(of);
	return rc;
}

const char *fsops_read_begin(struct fuse_file_info *fi, size_t size, off_t off,
			     size_t *n)
{
	struct ofile *of = fh_of(fi);

	pthread_mutex_lock(&of->lock);
	*n = 0;
	if (off >= 0 && (uint64_t)off < of->size) {
		*n = of->size - (size_t)off;
		if (*n > size)
			*n = size;
		return ofile_data(of) + off;
	}
	return "";
}

void fsops_read_end(struct fuse_file_info *fi)
{
	pthread_mutex_unlock(&fh_of(fi)->lock);
}

int fsops_write(struct fuse_file_info *fi, const char *buf, size_t size, off_t off)
{
	struct ofile *of = fh_of(fi);
	int rc;

	if (off < 0)
		return -EINVAL;
	pthread_mutex_lock(&of->lock);
	if (fi->flags & O_APPEND) /* the shared size may be newer than the kernel's */
		off = (off_t)of->size;
	rc = ofile_pwrite(of, buf, size, (size_t)off);
	if (rc == 0) {
		of_touch(of);
		fh_get(fi)->wrote = 1;
	}
	pthread_mutex_unlock(&of->lock);
	return rc ? rc : (int)size;
}

void *fsops_pin_open(const char *path)
{
	const char *key;
	size_t klen;

	key = fsp_key(path, &klen);
	return klen ? ofile_find(key, klen) : NULL;
}

void *fsops_pin_deleted(const char *path)
{
	struct ofile *of = fsops_pin_open(path);

	if (of && !ent_detach_deleted(of)) {
		ofile_put(of);
		of = NULL;
	}
	return of;
}

void fsops_put_open(void *of)
{
	ofile_put(of);
}

void fsops_open_stat(void *arg, struct stat *st)
{
	struct ofile *of = arg;

	pthread_mutex_lock(&of->lock);
	fsops_fill_stat(st, &of->meta, of->size);
	pthread_mutex_unlock(&of->lock);
}

void fsops_fh_state(struct fuse_file_info *fi, uint64_t *version, int64_t *mtime_ns,
		    uint64_t *size)
{
	struct ofile *of = fh_of(fi);

	pthread_mutex_lock(&of->lock);
	/* Uncommitted changes have no version yet: never equal to a cached one. */
	*version = of->dirty ? UINT64_MAX : of->version;
	*mtime_ns = of->meta.mtime_ns;
	*size = of->size;
	pthread_mutex_unlock(&of->lock);
}

int fsops_flush(struct fuse_file_info *fi)
{
	return fh_commit(fh_get(fi));
}

int fsops_fsync(struct fuse_file_info *fi)
{
	return fh_commit(fh_get(fi));
}

int fsops_release(struct fuse_file_info *fi)
{
	struct fhandle *h = fh_get(fi);

	/* Normally flush already committed; this covers writes that arrive
	 * after the last close (writable shared mmap). Nobody can receive an
	 * error here, so it is only logged (by of_commit). */
	(void)fh_commit(h);
	ofile_put(h->of);
	free(h);
	return 0;
}

/* ---- directories ---------------------------------------------------------- */

struct dir_fill {
	void           *buf;
	fuse_fill_dir_t filler;
	size_t          plen;
	const char     *prefix;
	int             full;
};

static void pending_fill(void *arg, struct ofile *of)
{
	struct dir_fill *f = arg;
	struct stat st;
	kv_rec *r;

	if (f->full || of->klen <= f->plen || of->in_store || of->unlinked ||
	    memchr(of->key + f->plen, '/', of->klen - f->plen))
		return;
	/* Committed by now: already listed from the store. */
	if (store_get(K->st, of->key, of->klen, 0, &r) == 0) {
		kv_rec_unref(r);
		return;
	}
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG;
	if (f->filler(f->buf, of->key + f->plen, &st, 0, 0))
		f->full = 1;
}

int fsops_readdir(const char *path, void *buf, fuse_fill_dir_t filler)
{
	char prefix[KV_KEY_MAX + 2], after[KV_KEY_MAX + 1], key[KV_KEY_MAX + 1];
	char name[KV_NAME_MAX + 1], last[KV_NAME_MAX + 1] = "";
	const char *k;
	struct stat st;
	struct ent e;
	size_t klen, plen = 0, alen = 0, nlen;
	int rc, sub;
	kv_rec *r;

	if (fsp_is_search(path))
		return sview_readdir(path, buf, filler);
	k = fsp_key(path, &klen);
	if ((rc = read_barrier()) || (rc = ent_resolve(k, klen, &e)))
		return rc;
	sub = e.kind;
	ent_release(&e);
	if (sub == KIND_FILE)
		return -ENOTDIR;
	prefix[0] = '\0';
	if (klen)
		plen = (size_t)fsp_dirkey(k, klen, prefix, sizeof(prefix));
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFDIR;
	filler(buf, ".", &st, 0, 0);
	filler(buf, "..", &st, 0, 0);
	if (klen == 0 && node_search(K->n))
		filler(buf, FSP_SEARCH_DIR, &st, 0, 0);

	/* Walk the ordered map: every key under the prefix is a direct child
	 * or lies inside a subdirectory, whose whole range is skipped at once. */
	while ((rc = store_next(K->st, prefix, plen, alen ? after : NULL,
				alen, 0, key, &klen, &r)) == 0) {
		sub = fsp_child(key, klen, plen, &nlen);
		st.st_mode = sub ? S_IFDIR : (kv_rec_meta(r)->mode & S_IFMT);
		kv_rec_unref(r);
		if (sub < 0 || nlen > KV_NAME_MAX) { /* the marker itself */
			memcpy(after, key, klen);
			alen = klen;
			continue;
		}
		memcpy(name, key + plen, nlen);
		name[nlen] = '\0';
		if (strcmp(name, last) != 0 && filler(buf, name, &st, 0, 0))
			return 0;
		memcpy(last, name, nlen + 1);
		if (sub) {
			/* The largest possible key under "prefix/name/" is that
			 * prefix padded with 0xff up to KV_KEY_MAX bytes: continuing
			 * strictly after it skips the subdirectory's keys. */
			alen = plen + nlen + 1;
			memcpy(after, key, alen);
			memset(after + alen, 0xff, KV_KEY_MAX - alen);
			alen = KV_KEY_MAX;
		} else {
			memcpy(after, key, klen);
			alen = klen;
		}
	}
	if (rc != -ENOENT)
		return rc;
	struct dir_fill f = { .buf = buf, .filler = filler, .plen = plen, .prefix = prefix };
	ofile_each(prefix, plen, pending_fill, &f);
	return 0;
}

/* ---- the rest ------------------------------------------------------------- */

int fsops_statfs(struct statvfs *sv)
{
	struct store_stats ss;

	if (statvfs(K->data_dir, sv) != 0)
		return -errno;
	store_get_stats(K->st, &ss);
	/* Blocks are those of the disk holding the data directory; inodes are
	 * keys: used = live keys, free = as many as the disk's free blocks. */
	sv->f_files = ss.keys + sv->f_bavail;
	sv->f_ffree = sv->f_bavail;
	sv->f_favail = sv->f_bavail;
	sv->f_namemax = KV_NAME_MAX;
	return 0;
}

int fsops_getxattr(const char *path, const char *name, char *value, size_t size)
{
	if (path && fsp_is_search(path))
		return sview_getxattr(path, name, value, size);
	return -ENODATA;
}

int fsops_listxattr(const char *path, char *list, size_t size)
{
	if (path && fsp_is_search(path))
		return sview_listxattr(path, list, size);
	return 0;
}

int fsops_init(struct kvfs_ctx *ctx)
{
	int rc;

	K = ctx;
	if ((rc = ent_init()) || (rc = ofile_init()))
		return rc;
	return sview_init();
}

void fsops_fini(void)
{
	sview_fini();
	ofile_fini();
	ent_fini();
}
