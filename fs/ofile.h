/*
 * ofile.h — the table of open files.
 *
 * Every open file handle points at one struct ofile shared by all handles of
 * the same key on this node, so that reads through any descriptor see writes
 * made through any other one, as on a local disk. An ofile starts from the
 * committed record (zero-copy) and takes a private, growable copy of the
 * contents on the first modification; the whole copy is committed as one
 * KV_PUT by the flush/fsync/release callbacks (fs/fsops.c).
 *
 * Lock order: the table lock (internal) before an ofile's lock. A pinned
 * ofile (ofile_find/ofile_open) stays valid until ofile_put().
 */
#ifndef KVFS_FS_OFILE_H
#define KVFS_FS_OFILE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct ofile {
	pthread_mutex_t lock;   /* protects everything below except key while
	                           the table lock is held (rename rekeys under both) */
	char          *key;     /* malloc'd, NUL-terminated */
	size_t         klen;
	unsigned       refs;    /* handles + temporary pins; protected by the table lock */
	kv_rec        *base;    /* committed contents this ofile started from, or NULL */
	char          *buf;     /* private copy once modified, or NULL */
	size_t         size;    /* current size (of buf, else of base) */
	size_t         cap;
	struct kv_meta meta;    /* current metadata, committed with the contents */
	uint64_t       version; /* store version of the key as last seen/committed, 0 = none */
	int            dirty;   /* contents or meta changed since the last commit */
	int            in_store;/* the key exists in the store (committed at least once) */
	int            unlinked;/* removed or replaced while open: never commit again */
	struct ofile  *next;    /* hash chain, under the table lock */
};

int  ofile_init(void);
void ofile_fini(void);

/* Returns the pinned ofile of `key`, or NULL. */
struct ofile *ofile_find(const char *key, size_t klen);

/* Returns the pinned ofile of `key`, creating an empty one (not in the
 * store, no contents, meta zeroed) when missing; *created tells which.
 * NULL on ENOMEM. */
struct ofile *ofile_open(const char *key, size_t klen, int *created);

/* Drops a pin; the last one unhashes and frees the ofile. */
void ofile_put(struct ofile *of);

/* Removes `of` from the table (it keeps living for its handles) so that a
 * later open of the same key starts afresh; used by unlink and rename-over. */
void ofile_unhash(struct ofile *of);

/* Moves `of` to key `to` (under the table lock). -ENOMEM on failure. */
int  ofile_rekey(struct ofile *of, const char *to, size_t tlen);

/* Calls fn for every hashed ofile whose key starts with prefix, under the
 * table lock (fn must not take the table lock; it may lock the ofile). */
void ofile_each(const char *prefix, size_t plen,
		void (*fn)(void *arg, struct ofile *of), void *arg);

/* Contents helpers; the caller holds of->lock. */
const char *ofile_data(const struct ofile *of);
int  ofile_resize(struct ofile *of, size_t size);           /* -EFBIG, -ENOMEM */
int  ofile_pwrite(struct ofile *of, const void *p, size_t n, size_t off);
/* Replaces the base with a newer committed record (drops any private copy). */
void ofile_set_base(struct ofile *of, kv_rec *rec);

#endif
