/*
 * move.c — rename for kvfs (see move.h). Keys are full paths, so moving a
 * directory rewrites every key under it: O(keys under the directory) in time
 * and memory, as ONE atomic batch (bounded by KV_BATCH_MAX operations).
 * Open files of moved keys are rekeyed so that their later commits land at
 * the new names.
 */
#include "fs/move.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/ent.h"
#include "fs/fsops.h"
#include "fs/ofile.h"
#include "fs/path.h"
#include "store/log.h"

#define K (fsops_ctx())

struct collect {
	struct ofile **v;
	size_t n, cap;
};

static void collect_fn(void *arg, struct ofile *of)
{
	struct collect *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct ofile **v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return; /* that file keeps its old key; logged by the caller */
		c->v = v;
		c->cap = cap;
	}
	of->refs++; /* the table lock is held by ofile_each */
	c->v[c->n++] = of;
}

/* A rename of a file or symlink: one batch deletes the old key and writes the
 * committed contents under the new one (replacing the target). */
static int rename_file(const char *fk, size_t fl, const char *tk, size_t tl,
		       struct ent *s, struct ent *d)
{
	char mk[KV_KEY_MAX + 2];
	struct kv_op ops[3];
	uint32_t n = 0;
	int rc;

	if (d->kind == KIND_DIR || d->kind == KIND_ROOT)
		return -EISDIR;
	if ((rc = fsp_check(tk, tl, 0)))
		return rc;
	memset(ops, 0, sizeof(ops));
	if (s->rec) {
		ops[n].kind = KV_DEL;
		ops[n].key = fk;
		ops[n++].klen = (uint32_t)fl;
		ops[n].kind = KV_PUT;
		ops[n].key = tk;
		ops[n].klen = (uint32_t)tl;
		ops[n].val = kv_rec_value(s->rec);
		ops[n].vlen = (uint32_t)kv_rec_size(s->rec);
		ops[n].meta = *kv_rec_meta(s->rec);
		ops[n++].meta.ctime_ns = fsops_now_ns();
	} else if (d->rec) {
		/* The source exists only as an uncommitted open file: the target's
		 * old contents go now, the new ones come with its commit. */
		ops[n].kind = KV_DEL;
		ops[n].key = tk;
		ops[n++].klen = (uint32_t)tl;
	}
	n += (uint32_t)ent_keep_parent(fk, fl, mk, &ops[n]);
	if (s->of)
		pthread_mutex_lock(&s->of->lock);
	if (d->of && d->of != s->of)
		pthread_mutex_lock(&d->of->lock);
	rc = ent_write(ops, n);
	if (rc == 0 && d->of && d->of != s->of) {
		/* Its handles keep the replaced file; the name's next open
		 * must get a new one (as after an unlink). */
		d->of->unlinked = 1;
		ofile_unhash(d->of);
	}
	if (rc == 0 && s->of) {
		rc = ofile_rekey(s->of, tk, tl);
		s->of->meta.ctime_ns = fsops_now_ns();
	}
	if (d->of && d->of != s->of)
		pthread_mutex_unlock(&d->of->lock);
	if (s->of)
		pthread_mutex_unlock(&s->of->lock);
	return rc;
}

/* A rename of a directory moves every key under it in ONE atomic batch: with
 * keys as full paths this is O(keys under the directory) in time and memory
 * (and bounded by KV_BATCH_MAX operations). */
static int rename_dir(const char *fk, size_t fl, const char *tk, size_t tl,
		      struct ent *d)
{
	char fp[KV_KEY_MAX + 2], tp[KV_KEY_MAX + 2], mk[KV_KEY_MAX + 2];
	char key[KV_KEY_MAX + 1];
	struct collect open = { 0 };
	struct kv_op *ops = NULL;
	kv_rec **recs = NULL;
	char *keys = NULL;
	size_t n = 0, cap = 0, klen, kused = 0, kcap = 0;
	int rc, fpl, tpl;
	kv_rec *r;

	if (d->kind == KIND_FILE)
		return -ENOTDIR;
	if ((rc = fsp_check(tk, tl, 1)))
		return rc;
	fpl = fsp_dirkey(fk, fl, fp, sizeof(fp));
	tpl = fsp_dirkey(tk, tl, tp, sizeof(tp));
	if (tl > fl && memcmp(tk, fp, (size_t)fpl) == 0)
		return -EINVAL; /* into itself */
	if (d->kind == KIND_DIR && ent_has_children(tp, (size_t)tpl))
		return -ENOTEMPTY;

	/* Gather the keys (one batch: two ops each, plus the target's marker
	 * and the source parent's marker). Keys are copied into one arena and
	 * pointed at after it stops moving. */
	const char *after = NULL;
	size_t alen = 0;
	while ((rc = store_next(K->st, fp, (size_t)fpl, after, alen, 0, key, &klen, &r)) == 0) {
		size_t nk = (size_t)tpl + klen - (size_t)fpl;
		if (nk > KV_KEY_MAX) {
			kv_rec_unref(r);
			rc = -ENAMETOOLONG;
			goto out;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			kv_rec **nr = realloc(recs, cap * sizeof(*recs));
			if (!nr) {
				kv_rec_unref(r);
				rc = -ENOMEM;
				goto out;
			}
			recs = nr;
		}
		if (kused + klen + nk + 2 > kcap) {
			kcap = (kcap + klen + nk + 2) * 2;
			char *nkb = realloc(keys, kcap);
			if (!nkb) {
				kv_rec_unref(r);
				rc = -ENOMEM;
				goto out;
			}
			keys = nkb;
		}
		memcpy(keys + kused, key, klen);
		keys[kused + klen] = '\0';
		memcpy(keys + kused + klen + 1, tp, (size_t)tpl);
		memcpy(keys + kused + klen + 1 + tpl, key + fpl, klen - (size_t)fpl);
		keys[kused + klen + 1 + nk] = '\0';
		after = keys + kused;
		alen = klen;
		kused += klen + nk + 2;
		recs[n++] = r;
	}
	if (rc != -ENOENT)
		goto out;
	if ((size_t)n * 2 + 2 > KV_BATCH_MAX) {
		rc = -E2BIG;
		goto out;
	}
	ops = calloc(n * 2 + 2, sizeof(*ops));
	if (!ops) {
		rc = -ENOMEM;
		goto out;
	}
	size_t no = 0, off = 0;
	int64_t now = fsops_now_ns();
	for (size_t i = 0; i < n; i++) {
		const char *ok = keys + off;
		size_t okl = strlen(ok);
		const char *nk = ok + okl + 1;
		size_t nkl = strlen(nk);
		off += okl + nkl + 2;
		ops[no].kind = KV_DEL;
		ops[no].key = ok;
		ops[no++].klen = (uint32_t)okl;
		ops[no].kind = KV_PUT;
		ops[no].key = nk;
		ops[no].klen = (uint32_t)nkl;
		ops[no].val = kv_rec_value(recs[i]);
		ops[no].vlen = (uint32_t)kv_rec_size(recs[i]);
		ops[no].meta = *kv_rec_meta(recs[i]);
		if (okl == (size_t)fpl)
			ops[no].meta.ctime_ns = now;
		no++;
	}
	if (d->kind == KIND_DIR && d->explicit_dir) {
		/* The empty target directory is replaced; when the source has a
		 * marker its PUT above recreates "tp" in the same batch, and a DEL
		 * placed before that PUT would be overridden. Only delete it when
		 * the source has no marker. */
		int src_has_marker = n > 0 && strlen(keys) == (size_t)fpl;
		if (!src_has_marker) {
			ops[no].kind = KV_DEL;
			ops[no].key = tp;
			ops[no++].klen = (uint32_t)tpl;
		}
	}
	no += (size_t)ent_keep_parent(fk, fl, mk, &ops[no]);

	/* Open files under the directory move with it. */
	ofile_each(fp, (size_t)fpl, collect_fn, &open);
	rc = ent_write(ops, (uint32_t)no);
	for (size_t i = 0; i < open.n; i++) {
		struct ofile *of = open.v[i];
		if (rc == 0) {
			char nk[KV_KEY_MAX + 2];
			size_t nkl = (size_t)tpl + of->klen - (size_t)fpl;
			pthread_mutex_lock(&of->lock);
			if (nkl <= KV_KEY_MAX) {
				memcpy(nk, tp, (size_t)tpl);
				memcpy(nk + tpl, of->key + fpl, of->klen - (size_t)fpl);
				if (ofile_rekey(of, nk, nkl))
					LOG(LOG_ERROR, "rename: open file '%s' lost its new name", of->key);
			}
			pthread_mutex_unlock(&of->lock);
		}
		ofile_put(of);
	}
out:
	for (size_t i = 0; i < n; i++)
		kv_rec_unref(recs[i]);
	free(recs);
	free(keys);
	free(ops);
	free(open.v);
	return rc;
}

int move_path(const char *from, const char *to, unsigned int flags)
{
	struct ent s, d;
	const char *fk, *tk;
	size_t fl, tl;
	int rc;

	/* RENAME_EXCHANGE would need two keys swapped atomically with their
	 * open files; not supported. */
	if (flags & ~(unsigned)RENAME_NOREPLACE)
		return -EINVAL;
	if (fsp_is_search(from) || fsp_is_search(to))
		return -EPERM;
	fk = fsp_key(from, &fl);
	tk = fsp_key(to, &tl);
	if (fl == 0 || tl == 0)
		return -EBUSY;
	pthread_rwlock_wrlock(&ent_move_lock);
	if ((rc = ent_resolve(fk, fl, &s)))
		goto out_unlock;
	rc = ent_resolve(tk, tl, &d);
	if (rc && rc != -ENOENT)
		goto out_s;
	rc = 0;
	if (d.kind != KIND_NONE && (flags & RENAME_NOREPLACE)) {
		rc = -EEXIST;
	} else if (fl == tl && memcmp(fk, tk, fl) == 0) {
		rc = 0;
	} else if (s.kind == KIND_FILE) {
		rc = rename_file(fk, fl, tk, tl, &s, &d);
	} else {
		rc = rename_dir(fk, fl, tk, tl, &d);
	}
	ent_release(&d);
out_s:
	ent_release(&s);
out_unlock:
	pthread_rwlock_unlock(&ent_move_lock);
	return rc;
}
