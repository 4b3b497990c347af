/*
 * ent.c — resolving keys to file-system entries (see ent.h).
 */
#include "fs/ent.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "fs/fsops.h"
#include "fs/path.h"

#define K (fsops_ctx())

pthread_rwlock_t ent_move_lock;

int ent_rwlock_init(pthread_rwlock_t *l)
{
	pthread_rwlockattr_t a;
	int rc;

	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	rc = -pthread_rwlock_init(l, &a);
	pthread_rwlockattr_destroy(&a);
	return rc;
}

int ent_init(void)
{
	/* Writer preference: a rename must not starve behind a stream of
	 * commits holding the lock shared. */
	return ent_rwlock_init(&ent_move_lock);
}

void ent_fini(void)
{
	pthread_rwlock_destroy(&ent_move_lock);
}

/* Attributes of the root and of directories that exist only as prefixes. */
struct kv_meta ent_dir_meta(void)
{
	struct kv_meta m = {
		.mode = S_IFDIR | 0755, .uid = K->uid, .gid = K->gid,
		.mtime_ns = K->start_ns, .ctime_ns = K->start_ns,
	};
	return m;
}

int ent_write(struct kv_op *ops, uint32_t n)
{
	struct kv_batch b = { .ops = ops, .n = n };

	if (n == 0)
		return 0;
	return node_write(K->n, &b);
}

/* The calling process's ids for new files: pjdfstest and users with
 * allow_other expect files owned by whoever created them, not by the daemon.
 * Set per request by the FUSE callback running on this thread. */
static __thread struct {
	int   set;
	uid_t uid;
	gid_t gid;
} caller;

void ent_set_caller(uid_t uid, gid_t gid)
{
	caller.set = 1;
	caller.uid = uid;
	caller.gid = gid;
}

static void caller_ids(uint32_t *uid, uint32_t *gid)
{
	*uid = caller.set ? caller.uid : (uint32_t)getuid();
	*gid = caller.set ? caller.gid : (uint32_t)getgid();
}

/* ---- resolving a key ----------------------------------------------------- */


void ent_release(struct ent *e)
{
	if (e->rec)
		kv_rec_unref(e->rec);
	if (e->of)
		ofile_put(e->of);
	memset(e, 0, sizeof(*e));
}

/* 1 when any key (other than the marker itself) lies under `prefix`
 * (ending in '/'), counting files created here but not yet committed. */
struct pending_arg {
	size_t plen;
	int    found;
};

static void pending_fn(void *arg, struct ofile *of)
{
	struct pending_arg *a = arg;

	/* Reading in_store/unlinked without the ofile lock is a benign race: the
	 * answer is as old as the caller's view anyway. */
	if (of->klen > a->plen && !of->in_store && !of->unlinked)
		a->found = 1;
}

int ent_has_children(const char *prefix, size_t plen)
{
	char key[KV_KEY_MAX + 1];
	size_t klen;
	kv_rec *r;
	int rc;

	rc = store_next(K->st, prefix, plen, NULL, 0, 0, key, &klen, &r);
	if (rc == 0 && klen == plen) { /* the marker itself: look past it */
		kv_rec_unref(r);
		rc = store_next(K->st, prefix, plen, prefix, plen, 0, key, &klen, &r);
	}
	if (rc == 0) {
		kv_rec_unref(r);
		return 1;
	}
	struct pending_arg a = { .plen = plen, .found = 0 };
	ofile_each(prefix, plen, pending_fn, &a);
	return a.found;
}

/* See ent.h. Checked under the ofile's lock, which every commit of it
 * holds, so no commit slips in between. */
int ent_detach_deleted(struct ofile *of)
{
	kv_rec *r = NULL;
	int gone;

	pthread_mutex_lock(&of->lock);
	gone = !of->dirty && of->in_store && !of->unlinked &&
	       store_get(K->st, of->key, of->klen, 0, &r) == -ENOENT;
	if (r)
		kv_rec_unref(r);
	if (gone)
		of->unlinked = 1;
	pthread_mutex_unlock(&of->lock);
	if (gone)
		ofile_unhash(of);
	return gone;
}

/* Finds what `key` names: a file or symlink (in the store and/or open here),
 * an explicit or implicit directory, the root, or nothing (-ENOENT). */
int ent_resolve(const char *key, size_t klen, struct ent *e)
{
	char mk[KV_KEY_MAX + 2];
	int rc, mlen;

	memset(e, 0, sizeof(*e));
	if (klen == 0) {
		e->kind = KIND_ROOT;
		return 0;
	}
	if (klen > KV_KEY_MAX)
		return -ENAMETOOLONG;
	e->of = ofile_find(key, klen);
	rc = store_get(K->st, key, klen, 0, &e->rec);
	if (rc == -ENOENT && e->of && ent_detach_deleted(e->of)) {
		ofile_put(e->of);
		e->of = NULL;
	}
	if (rc == 0 || e->of) {
		e->kind = KIND_FILE;
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	mlen = fsp_dirkey(key, klen, mk, sizeof(mk));
	if (mlen < 0)
		return -ENOENT; /* too long to be a directory: there is none */
	rc = store_get(K->st, mk, (size_t)mlen, 0, &e->rec);
	if (rc == 0) {
		e->kind = KIND_DIR;
		e->explicit_dir = 1;
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	if (ent_has_children(mk, (size_t)mlen)) {
		e->kind = KIND_DIR;
		return 0;
	}
	return -ENOENT;
}

void ent_stat(const struct ent *e, struct stat *st)
{
	struct kv_meta m;
	int from_of = 0;

	/* An open file shows its own size and times while it holds changes
	 * of its own, or when the store has nothing newer. A clean one the
	 * store has moved past (written over the socket or by replication
	 * since; perhaps a closed descriptor whose release is still on its
	 * way) must not hide the new version. */
	if (e->of) {
		pthread_mutex_lock(&e->of->lock);
		from_of = e->of->dirty || !e->rec || e->of->version == kv_rec_version(e->rec);
		if (from_of)
			fsops_fill_stat(st, &e->of->meta, e->of->size);
		pthread_mutex_unlock(&e->of->lock);
	}
	if (from_of) {
		/* filled above */
	} else if (e->rec) {
		fsops_fill_stat(st, kv_rec_meta(e->rec), kv_rec_size(e->rec));
	} else {
		m = ent_dir_meta();
		fsops_fill_stat(st, &m, 0);
	}
}

/* The directory marker op that keeps key's parent in place when it is an
 * implicit directory: removing its last entry must not make it vanish, as
 * on a local disk. Returns 1 when *op was filled (mk holds its key). */
int ent_keep_parent(const char *key, size_t klen, char *mk, struct kv_op *op)
{
	const char *slash = memrchr(key, '/', klen);
	size_t plen;
	kv_rec *r;

	if (!slash)
		return 0; /* the root needs no marker */
	plen = (size_t)(slash - key) + 1;
	memcpy(mk, key, plen);
	mk[plen] = '\0';
	if (store_get(K->st, mk, plen, 0, &r) == 0) {
		kv_rec_unref(r);
		return 0;
	}
	memset(op, 0, sizeof(*op));
	op->kind = KV_PUT;
	op->key = mk;
	op->klen = (uint32_t)plen;
	op->val = "";
	op->meta = ent_dir_meta();
	return 1;
}

/* mode and gid of a new entry: a setgid parent directory passes its group on
 * (and its setgid bit to subdirectories), as the kernel does for local disks. */
static void inherit(const char *key, size_t klen, struct kv_meta *m)
{
	const char *slash = memrchr(key, '/', klen);
	struct ent p;

	if (!slash || ent_resolve(key, (size_t)(slash - key), &p) != 0)
		return;
	if (p.kind == KIND_DIR && p.rec && (kv_rec_meta(p.rec)->mode & S_ISGID)) {
		m->gid = kv_rec_meta(p.rec)->gid;
		if (S_ISDIR(m->mode))
			m->mode |= S_ISGID;
	}
	ent_release(&p);
}

struct kv_meta ent_new_meta(const char *key, size_t klen, mode_t mode)
{
	struct kv_meta m = { .mode = mode };

	caller_ids(&m.uid, &m.gid);
	m.mtime_ns = m.ctime_ns = fsops_now_ns();
	inherit(key, klen, &m);
	return m;
}
