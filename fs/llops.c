/*
 * llops.c — the low-level FUSE callbacks (see llops.h).
 *
 * The kernel counts lookups of each inode (entry replies) and gives them
 * back with FORGET; the inode table keeps a node exactly that long. Inode
 * numbers are never reused, so the generation is constant.
 *
 * Caching: entry and attribute replies carry the context's timeouts. The
 * page cache is kept across opens (keep_cache) only while the file is the
 * same as when the kernel filled it: same store version, mtime and size
 * (libfuse's auto_cache does the same with an extra getattr per open).
 * Replicated and control-socket changes drop the kernel's caches through
 * llops_invalidate.
 */
#include "fs/llops.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/ent.h"
#include "fs/fsops.h"
#include "fs/inode.h"
#include "fs/move.h"

#define K (fsops_ctx())

/* The namespace lock. An operation that turns an inode into a path (through
 * the inode table) and then acts on the store under that path holds it
 * shared from the path to its last write: create, mkdir, mknod, symlink,
 * unlink, rmdir, setattr, open (which registers the open file under its
 * key). A rename of a directory holds it exclusive, from its paths to the
 * inode table's update. The kernel does not lock a directory being renamed
 * against creates inside it, so without this a create of d/x could write
 * its key after d/ had moved to e/ and bring d back with the late files.
 * Commits of open files take no part: move.c re-keys registered open files
 * under their own locks. Writer-preferring, so that renames do not starve
 * behind a stream of creates; never taken twice by one thread. */
static pthread_rwlock_t ns_lock;

static void ns_shared(void)
{
	pthread_rwlock_rdlock(&ns_lock);
}

static void ns_exclusive(void)
{
	pthread_rwlock_wrlock(&ns_lock);
}

static void ns_done(void)
{
	pthread_rwlock_unlock(&ns_lock);
}

/* Room for any key plus one more component, so that an over-long name is
 * refused by the path-based checks with their errno. */
#define PBUF (KV_KEY_MAX + KV_NAME_MAX + 3)

/* d_ino of listed entries: their inodes are assigned by lookup. */
#define UNKNOWN_INO 0xffffffffu

static void reply_rc(fuse_req_t req, int rc)
{
	fuse_reply_err(req, -rc);
}

static void set_caller(fuse_req_t req)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);

	ent_set_caller(c->uid, c->gid);
}

/* The path of the child `name` of `parent` into path (PBUF bytes); 0 when
 * there is none (and the request was answered with the error). */
static int child_path(fuse_req_t req, fuse_ino_t parent, const char *name, char *path)
{
	int rc = ino_child_path(parent, name, path, PBUF);

	if (rc < 0)
		reply_rc(req, rc);
	return rc >= 0;
}

/* A directory shows the last change this mount made to its entries when
 * that is newer than its own times (inode.h, ino_dir_touch). */
static void dir_times(fuse_ino_t ino, struct stat *st)
{
	int64_t t, own;

	if (!S_ISDIR(st->st_mode) || !(t = ino_dir_mtime(ino)))
		return;
	own = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	if (t <= own)
		return;
	st->st_mtim.tv_sec = t / 1000000000;
	st->st_mtim.tv_nsec = t % 1000000000;
	if (t > (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec)
		st->st_ctim = st->st_mtim;
}

static void touch_dir(fuse_ino_t dir)
{
	ino_dir_touch(dir, fsops_now_ns());
}

/* The kernel may cache an entry read from the store while `seen` was the
 * count of changes to names it did not know (ino_changed) for `path`: a
 * change that came between the store read and the registration of the name
 * was not invalidated, so then the answer is for this once only. */
static void set_timeouts(struct fuse_entry_param *e, const char *path, uint64_t seen)
{
	if (ino_changes(path) != seen)
		return; /* timeouts 0 */
	e->entry_timeout = K->entry_timeout;
	e->attr_timeout = K->attr_timeout;
}

/* Answers a lookup (or a create/mkdir/...) of the child `name` of `parent`
 * whose path is `path`: its attributes and an inode counted by the kernel.
 * fi, when not NULL, is a new descriptor (create) to hand over with it. */
static void reply_entry(fuse_req_t req, fuse_ino_t parent, const char *name,
			const char *path, struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	int rc, sent;

	uint64_t seen = ino_changes(path);

	memset(&e, 0, sizeof(e));
	if ((rc = fsops_getattr(path, &e.attr, fi)))
		goto fail;
	e.ino = ino_lookup(parent, name, strlen(name), e.attr.st_mode);
	if (!e.ino) {
		rc = -ENOMEM;
		goto fail;
	}
	e.generation = 1;
	e.attr.st_ino = e.ino;
	dir_times(e.ino, &e.attr);
	set_timeouts(&e, path, seen);
	if (fi) {
		uint64_t v, size;
		int64_t mt;
		fsops_fh_state(fi, &v, &mt, &size);
		(void)ino_cache_check(e.ino, v, mt, size); /* a new file: pages start now */
		sent = fuse_reply_create(req, &e, fi);
	} else {
		sent = fuse_reply_entry(req, &e);
	}
	if (sent == 0)
		return;
	/* The request was interrupted: the kernel took neither the lookup
	 * nor the descriptor. */
	ino_forget(e.ino, 1);
	if (fi)
		(void)fsops_release(fi);
	return;
fail:
	if (fi)
		(void)fsops_release(fi);
	reply_rc(req, rc);
}

/* ---- names ---------------------------------------------------------------- */

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char path[PBUF];

	if (child_path(req, parent, name, path))
		reply_entry(req, parent, name, path, NULL);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	ino_forget(ino, nlookup);
	fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		ino_forget(f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

static void orphan_stat(void *arg, void *orphan)
{
	fsops_open_stat(orphan, arg);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	char path[PBUF];
	struct stat st;
	int rc;

	/* The kernel passes a descriptor only for regular files, and not for
	 * fstat(): a file unlinked while open answers from the open file the
	 * unlink kept with the inode. */
	path[0] = '\0';
	if ((rc = ino_path(ino, path, sizeof(path))) < 0 && !fi &&
	    (rc = ino_orphan(ino, orphan_stat, &st)) == 0) {
		st.st_ino = ino;
		st.st_nlink = 0;
		fuse_reply_attr(req, &st, K->attr_timeout);
		return;
	}
	if (rc < 0 && !fi) {
		reply_rc(req, rc);
		return;
	}
	if ((rc = fsops_getattr(path, &st, fi))) {
		reply_rc(req, rc);
		return;
	}
	st.st_ino = ino;
	dir_times(ino, &st);
	fuse_reply_attr(req, &st, K->attr_timeout);
}

static struct timespec set_time(int to_set, int set, int now, const struct timespec *ts)
{
	struct timespec t = { .tv_nsec = UTIME_OMIT };

	if (to_set & now)
		t.tv_nsec = UTIME_NOW;
	else if (to_set & set)
		t = *ts;
	return t;
}

/* Applies the changes one at a time; each is one durable write. */
static int setattr_path(const char *path, struct stat *attr, int to_set,
			struct fuse_file_info *fi)
{
	int rc = 0;

	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
		rc = fsops_chown(path,
				 (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1,
				 (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1, fi);
	if (rc == 0 && (to_set & FUSE_SET_ATTR_MODE))
		rc = fsops_chmod(path, attr->st_mode, fi);
	if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE))
		rc = fsops_truncate(path, attr->st_size, fi);
	if (rc == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW |
				  FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))) {
		struct timespec tv[2] = {
			set_time(to_set, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, &attr->st_atim),
			set_time(to_set, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, &attr->st_mtim),
		};
		rc = fsops_utimens(path, tv, fi);
	}
	if (rc == 0)
		rc = fsops_getattr(path, attr, fi);
	return rc;
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	char path[PBUF];
	int rc;

	path[0] = '\0';
	ns_shared();
	if ((rc = ino_path(ino, path, sizeof(path))) < 0 && !fi) {
		ns_done();
		reply_rc(req, rc);
		return;
	}
	rc = setattr_path(path, attr, to_set, fi);
	ns_done();
	if (rc) {
		reply_rc(req, rc);
		return;
	}
	/* Times set explicitly win over the entries' last change. */
	if (S_ISDIR(attr->st_mode) && (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)))
		ino_dir_set(ino, 0);
	attr->st_ino = ino;
	dir_times(ino, attr);
	fuse_reply_attr(req, attr, K->attr_timeout);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char path[PBUF], buf[PATH_MAX + 1];
	int rc;

	if ((rc = ino_path(ino, path, sizeof(path))) < 0 ||
	    (rc = fsops_readlink(path, buf, sizeof(buf)))) {
		reply_rc(req, rc);
		return;
	}
	fuse_reply_readlink(req, buf);
}

/* Answers the making of `name` in `parent` (mknod, mkdir, symlink, create
 * with its descriptor fi) that returned rc, with the namespace lock held
 * shared: the name is registered under it too. Releases the lock. */
static void answer_made(fuse_req_t req, fuse_ino_t parent, const char *name, const char *path,
			struct fuse_file_info *fi, int rc)
{
	if (rc == 0) {
		touch_dir(parent);
		reply_entry(req, parent, name, path, fi);
	}
	ns_done();
	if (rc)
		reply_rc(req, rc);
}

/* The kinds of new entries, made by one path-based operation each. */
enum mkkind { MK_NOD, MK_DIR, MK_LINK };

static void make(fuse_req_t req, fuse_ino_t parent, const char *name, enum mkkind k,
		 mode_t mode, const char *target)
{
	char path[PBUF];
	int rc;

	ns_shared();
	if (!child_path(req, parent, name, path)) {
		ns_done();
		return;
	}
	set_caller(req);
	if (k == MK_NOD)
		rc = fsops_mknod(path, mode, 0);
	else if (k == MK_DIR)
		rc = fsops_mkdir(path, mode);
	else
		rc = fsops_symlink(target, path);
	answer_made(req, parent, name, path, NULL, rc);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	(void)rdev;
	make(req, parent, name, MK_NOD, mode, NULL);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make(req, parent, name, MK_DIR, mode, NULL);
}

static void ll_symlink(fuse_req_t req, const char *target, fuse_ino_t parent,
		       const char *name)
{
	make(req, parent, name, MK_LINK, 0, target);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	(void)ino;
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM); /* a key has one name */
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, int dir)
{
	char path[PBUF];
	int rc;

	ns_shared();
	if (!child_path(req, parent, name, path)) {
		ns_done();
		return;
	}
	if (dir) {
		rc = fsops_rmdir(path);
		if (rc == 0)
			ino_unlink(parent, name, NULL);
	} else {
		void *of = fsops_pin_open(path);
		rc = fsops_unlink(path);
		if (rc == 0)
			ino_unlink(parent, name, of); /* takes the pin */
		else if (of)
			fsops_put_open(of);
	}
	if (rc == 0)
		touch_dir(parent);
	ns_done();
	reply_rc(req, rc);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, 0);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, 1);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	char from[PBUF], to[PBUF];
	void *of;
	int rc;

	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* A name renamed onto itself is a no-op (POSIX); the kernel can send
	 * one when a remote change invalidated one of its two dentries. */
	if (parent == newparent && strcmp(name, newname) == 0) {
		fuse_reply_err(req, (flags & RENAME_NOREPLACE) ? EEXIST : 0);
		return;
	}
	/* A file's rename moves one key and shares the lock with creates; a
	 * directory's moves every key under it and must not. The inode table
	 * says which it was; the store, under the lock, has the last word (a
	 * peer may have made a directory of the name since). */
	for (int excl = ino_child_is_dir(parent, name);; excl = 1) {
		if (excl)
			ns_exclusive();
		else
			ns_shared();
		if ((rc = ino_child_path(parent, name, from, sizeof(from))) < 0 ||
		    (rc = ino_child_path(newparent, newname, to, sizeof(to))) < 0) {
			ns_done();
			reply_rc(req, rc);
			return;
		}
		if (excl || fsops_names_file(from))
			break;
		ns_done();
	}
	of = fsops_pin_open(to); /* a replaced open file answers fstat() on */
	rc = move_path(from, to, flags);
	if (rc == 0) {
		ino_rename(parent, name, newparent, newname, of); /* takes the pin */
		touch_dir(parent);
		touch_dir(newparent);
	} else if (of) {
		fsops_put_open(of);
	}
	ns_done();
	reply_rc(req, rc);
}

/* ---- open files ----------------------------------------------------------- */

/* Whether the kernel may keep the pages it holds of `ino` for the file that
 * descriptor fi opened. */
static int keep_cache(fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint64_t v, size;
	int64_t mt;

	fsops_fh_state(fi, &v, &mt, &size);
	return ino_cache_check(ino, v, mt, size) && K->keep_cache;
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	char path[PBUF];
	int rc;

	ns_shared();
	if ((rc = ino_path(ino, path, sizeof(path))) < 0) {
		ns_done();
		reply_rc(req, rc == -ENOENT ? -ESTALE : rc);
		return;
	}
	rc = fsops_open(path, fi);
	ns_done();
	if (rc) {
		reply_rc(req, rc);
		return;
	}
	fi->keep_cache = keep_cache(ino, fi);
	if (fuse_reply_open(req, fi) != 0)
		(void)fsops_release(fi);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	char path[PBUF];
	int rc;

	ns_shared();
	if (!child_path(req, parent, name, path)) {
		ns_done();
		return;
	}
	set_caller(req);
	rc = fsops_create(path, mode, fi);
	answer_made(req, parent, name, path, fi, rc);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	const char *p;
	size_t n;

	(void)ino;
	/* Replied from the file's bytes under its lock: no copy. */
	p = fsops_read_begin(fi, size, off, &n);
	fuse_reply_buf(req, p, n);
	fsops_read_end(fi);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	int rc;

	(void)ino;
	if ((rc = fsops_write(fi, buf, size, off)) < 0) {
		reply_rc(req, rc);
		return;
	}
	fuse_reply_write(req, (size_t)rc);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	reply_rc(req, fsops_flush(fi));
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	reply_rc(req, fsops_fsync(fi));
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	reply_rc(req, fsops_release(fi));
}

/* ---- directories ---------------------------------------------------------- */

/* An open directory: the listing taken at its first readdir (and again at
 * offset 0, after rewinddir), served by offset. */
struct dhandle {
	char  *names;  /* type byte, name, NUL; one after another */
	size_t used, cap;
	size_t *at;    /* offset of each entry in names */
	size_t n, nat;
	int    err;
};

static int dh_add(void *buf, const char *name, const struct stat *st, off_t off,
		  enum fuse_fill_dir_flags flags)
{
	struct dhandle *d = buf;
	size_t len = strlen(name) + 2;

	(void)off;
	(void)flags;
	if (d->n == d->nat) {
		size_t nat = d->nat ? d->nat * 2 : 64;
		size_t *at = realloc(d->at, nat * sizeof(*at));
		if (!at)
			goto nomem;
		d->at = at;
		d->nat = nat;
	}
	if (d->used + len > d->cap) {
		size_t cap = (d->cap + len) * 2;
		char *p = realloc(d->names, cap);
		if (!p)
			goto nomem;
		d->names = p;
		d->cap = cap;
	}
	d->at[d->n++] = d->used;
	d->names[d->used] = (char)(st ? (st->st_mode & S_IFMT) >> 12 : 0);
	memcpy(d->names + d->used + 1, name, len - 1);
	d->used += len;
	return 0;
nomem:
	d->err = -ENOMEM;
	return 1;
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dhandle *d = calloc(1, sizeof(*d));

	(void)ino;
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) != 0)
		free(d);
}

static int dh_fill(struct dhandle *d, fuse_ino_t ino)
{
	char path[PBUF];
	int rc;

	d->used = d->n = 0;
	d->err = 0;
	if ((rc = ino_path(ino, path, sizeof(path))) < 0 ||
	    (rc = fsops_readdir(path, d, dh_add)))
		return rc;
	return d->err;
}

/* One entry of a READDIRPLUS reply: the entry's attributes and an inode
 * the kernel counts as looked up, as a lookup would give. Returns what
 * fuse_add_direntry_plus returns; a lookup that does not fit is undone.
 * Entries that vanished since the listing (and "." and "..") go without
 * attributes (ino 0: the kernel then looks them up itself). */
static size_t add_plus(fuse_req_t req, char *buf, size_t room, fuse_ino_t dir,
		       char *path, size_t plen, const char *name, mode_t type, off_t next)
{
	struct fuse_entry_param e;
	size_t nlen = strlen(name), len;

	memset(&e, 0, sizeof(e));
	e.attr.st_ino = UNKNOWN_INO;
	e.attr.st_mode = type;
	if (strcmp(name, ".") && strcmp(name, "..") && plen + nlen + 2 <= PBUF) {
		memcpy(path + plen, name, nlen + 1);
		uint64_t seen = ino_changes(path);

		if (fsops_getattr(path, &e.attr, NULL) == 0 &&
		    (e.ino = ino_lookup(dir, name, nlen, e.attr.st_mode))) {
			e.generation = 1;
			e.attr.st_ino = e.ino;
			dir_times(e.ino, &e.attr);
			set_timeouts(&e, path, seen);
		}
	}
	len = fuse_add_direntry_plus(req, buf, room, name, &e, next);
	if (len > room && e.ino)
		ino_forget(e.ino, 1);
	return len;
}

static void dir_reply(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi, int plus)
{
	struct dhandle *d = (struct dhandle *)(uintptr_t)fi->fh;
	char path[PBUF];
	struct stat st;
	size_t pos = 0, plen = 0;
	char *buf;
	int rc;

	if (off == 0 && (rc = dh_fill(d, ino))) {
		reply_rc(req, rc);
		return;
	}
	if (plus && (rc = ino_path(ino, path, sizeof(path))) < 0) {
		reply_rc(req, rc);
		return;
	}
	if (plus) { /* children's paths are built after the directory's "/" */
		plen = (size_t)rc;
		if (plen > 1)
			path[plen++] = '/';
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memset(&st, 0, sizeof(st));
	st.st_ino = UNKNOWN_INO;
	for (size_t i = off > 0 ? (size_t)off : 0; i < d->n; i++) {
		const char *e = d->names + d->at[i];
		size_t len;
		st.st_mode = (mode_t)(unsigned char)e[0] << 12;
		if (plus)
			len = add_plus(req, buf + pos, size - pos, ino, path, plen, e + 1,
				       st.st_mode, (off_t)i + 1);
		else
			len = fuse_add_direntry(req, buf + pos, size - pos, e + 1, &st,
						(off_t)i + 1);
		if (len > size - pos)
			break;
		pos += len;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	dir_reply(req, ino, size, off, fi, 0);
}

/* `du`, `find` and `ls -l` get every entry's attributes with the listing
 * instead of one LOOKUP round trip per entry. Always, not only for the
 * first chunk as the kernel's "auto" mode would: a plain `ls` costs a little
 * more, `du -s` of 3,000 files a third. */
static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	dir_reply(req, ino, size, off, fi, 1);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dhandle *d = (struct dhandle *)(uintptr_t)fi->fh;

	(void)ino;
	free(d->names);
	free(d->at);
	free(d);
	fuse_reply_err(req, 0);
}

/* Every change is durable when its request is answered (one node_write), so
 * there is nothing left to sync for a directory. */
static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* ---- the rest ------------------------------------------------------------- */

static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int rc;

	(void)ino;
	if ((rc = fsops_statfs(&sv))) {
		reply_rc(req, rc);
		return;
	}
	fuse_reply_statfs(req, &sv);
}

/* getxattr and listxattr: size 0 asks for the length only. */
static void reply_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char path[PBUF], *buf = NULL;
	int rc;

	if ((rc = ino_path(ino, path, sizeof(path))) < 0) {
		reply_rc(req, rc);
		return;
	}
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = name ? fsops_getxattr(path, name, buf, size) : fsops_listxattr(path, buf, size);
	if (rc < 0)
		reply_rc(req, rc);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
	free(buf);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	reply_xattr(req, ino, name, size);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	reply_xattr(req, ino, NULL, size);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	(void)ino;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	fuse_reply_err(req, ENOTSUP); /* keys carry no extended attributes */
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	(void)name;
	fuse_reply_err(req, ENOTSUP);
}

static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->time_gran = 1;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
	/* Raft mode caches nothing and passes a read barrier per getattr:
	 * attributes in the listing would only cost a barrier per entry. */
	if (node_get_mode(K->n) == NODE_RAFT)
		conn->want &= ~(unsigned)(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	else
		conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
}

static const struct fuse_lowlevel_ops ops = {
	.init         = ll_init,
	.lookup       = ll_lookup,
	.forget       = ll_forget,
	.forget_multi = ll_forget_multi,
	.getattr      = ll_getattr,
	.setattr      = ll_setattr,
	.readlink     = ll_readlink,
	.mknod        = ll_mknod,
	.mkdir        = ll_mkdir,
	.unlink       = ll_unlink,
	.rmdir        = ll_rmdir,
	.symlink      = ll_symlink,
	.rename       = ll_rename,
	.link         = ll_link,
	.open         = ll_open,
	.read         = ll_read,
	.write        = ll_write,
	.flush        = ll_flush,
	.release      = ll_release,
	.fsync        = ll_fsync,
	.opendir      = ll_opendir,
	.readdir      = ll_readdir,
	.readdirplus  = ll_readdirplus,
	.releasedir   = ll_releasedir,
	.fsyncdir     = ll_fsyncdir,
	.statfs       = ll_statfs,
	.setxattr     = ll_setxattr,
	.getxattr     = ll_getxattr,
	.listxattr    = ll_listxattr,
	.removexattr  = ll_removexattr,
	.create       = ll_create,
};

const struct fuse_lowlevel_ops *llops_get(void)
{
	return &ops;
}

int llops_init(void)
{
	int rc = ent_rwlock_init(&ns_lock);

	if (rc)
		return rc;
	rc = ino_init(fsops_put_open);
	if (rc)
		pthread_rwlock_destroy(&ns_lock);
	return rc;
}

void llops_fini(void)
{
	ino_fini();
	pthread_rwlock_destroy(&ns_lock);
}

void llops_invalidate(struct fuse_session *se, const char *key, size_t klen)
{
	size_t nlen = klen;
	uint64_t parent, ino;
	const char *name;
	kv_rec *r;
	int exists;

	while (nlen && key[nlen - 1] == '/') /* a directory marker names its directory */
		nlen--;
	/* The kernel knows nothing of that name (nor caches its absence);
	 * ino_changed counts the change for lookups racing it. */
	if (ino_changed(key, klen, 1, &parent, &ino) != 1)
		return;
	name = memrchr(key, '/', nlen);
	name = name ? name + 1 : key;
	exists = store_get(K->st, key, klen, 0, &r) == 0;
	if (exists)
		kv_rec_unref(r);
	if (!exists && nlen == klen) {
		/* A file deleted behind the mount loses its name here as in a
		 * local unlink: a new file of that name gets a new inode, and
		 * descriptors still open keep the old one with its contents. */
		char path[PBUF];

		if ((size_t)snprintf(path, sizeof(path), "/%.*s", (int)klen, key) < sizeof(path))
			ino_unlink(parent, path + 1 + (name - key), fsops_pin_deleted(path));
	}
	ino_cache_drop(ino);
	/* -ENOENT: the kernel already forgot it. */
	(void)fuse_lowlevel_notify_inval_inode(se, ino, 0, 0);
	/* A name that went loses the kernel's entry; a changed one keeps it. */
	if (!exists)
		(void)fuse_lowlevel_notify_inval_entry(se, parent, name,
						       nlen - (size_t)(name - key));
}
