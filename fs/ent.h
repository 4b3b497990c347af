/*
 * ent.h — what a key names in the file system, and the small write helpers
 * that every changing FUSE callback shares.
 *
 * A key K is a file or symlink when K is in the store (or open here and not
 * yet committed); a directory when its marker "K/" is in the store
 * (explicit) or when any key starts with "K/" (implicit); the root when
 * empty.
 */
#ifndef KVFS_FS_ENT_H
#define KVFS_FS_ENT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs/ofile.h"
#include "store/store.h"

enum kind { KIND_NONE, KIND_ROOT, KIND_FILE, KIND_DIR };

struct ent {
	enum kind     kind;
	int           explicit_dir; /* a directory with a marker key */
	kv_rec       *rec;          /* file/symlink or marker record (referenced), or NULL */
	struct ofile *of;           /* pinned open file of this key, or NULL */
};

/* Held shared by every commit of an open file and exclusively by rename, so
 * that a rename moving keys (and rekeying their open files) cannot
 * interleave with a commit to an old key. Taken before any ofile lock.
 * Writer-preferring (initialised by ent_init). */
extern pthread_rwlock_t ent_move_lock;

int  ent_init(void);
/* Initialises a writer-preferring, non-recursive rwlock (a writer waiting
 * blocks new readers, so a thread must never take it shared twice). */
int  ent_rwlock_init(pthread_rwlock_t *l);
void ent_fini(void);

/* An open file counts while it holds what the store has not seen (created
 * here, or changed, and not committed). A clean one whose key was deleted
 * behind it (over the control socket, by replication) is detached from the
 * name as a local unlink does: its descriptors keep their contents, and a
 * new file of that name starts afresh. Returns 1 when it was detached. */
int  ent_detach_deleted(struct ofile *of);

/* Finds what `key` names; -ENOENT when nothing. Release with ent_release. */
int  ent_resolve(const char *key, size_t klen, struct ent *e);
void ent_release(struct ent *e);
void ent_stat(const struct ent *e, struct stat *st);

/* 1 when a key other than the marker itself lies under `prefix` (ending in
 * '/'), counting files created here and not yet committed. */
int  ent_has_children(const char *prefix, size_t plen);

/* Fills *op with a marker PUT for key's parent when the parent is implicit,
 * so that removing its last entry leaves the directory, as on a local disk.
 * mk (KV_KEY_MAX + 2 bytes) holds the marker key. Returns 1 when filled. */
int  ent_keep_parent(const char *key, size_t klen, char *mk, struct kv_op *op);

/* The uid/gid that new entries made by this thread get (the FUSE caller's). */
void ent_set_caller(uid_t uid, gid_t gid);

/* Metadata of the root and of implicit directories. */
struct kv_meta ent_dir_meta(void);
/* Metadata of a new entry: the caller's uid/gid, now, a setgid parent's group. */
struct kv_meta ent_new_meta(const char *key, size_t klen, mode_t mode);

/* One atomic, durable batch through the node (0 ops: nothing to do). */
int  ent_write(struct kv_op *ops, uint32_t n);

#endif
