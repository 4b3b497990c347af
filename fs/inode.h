/*
 * inode.h — the inode table of the low-level FUSE front-end.
 *
 * The kernel names files by inode number; the store names them by path. A
 * node is {ino, parent ino, name, nlookup}: inode numbers are 64-bit and
 * never reused, and a path is found by walking the parents up to the root
 * (FUSE_ROOT_ID) under one short mutex. There are no per-path locks: the
 * store applies every batch atomically, so an operation racing a rename acts
 * on whatever key its path named at that moment (as NFS does).
 *
 * A node is hashed by ino and, while it has a name, by (parent, name). A
 * node that is unlinked or replaced by a rename loses its name (and with it
 * its path) but lives until the kernel forgets it. A directory's children
 * hang off its ino, so renaming a directory moves them all at once. A node
 * also stays while it has children in the table, so a path walk always ends
 * at the root.
 *
 * Each node remembers the file type it was looked up with (a key that
 * changed from a file into a directory gets a new ino, as the kernel wants)
 * and what the kernel's page cache holds of it (see ino_cache_check).
 */
#ifndef KVFS_FS_INODE_H
#define KVFS_FS_INODE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define INO_ROOT 1

/* orphan_free releases what ino_unlink kept for an open file (may be NULL). */
int  ino_init(void (*orphan_free)(void *orphan));
void ino_fini(void);

/* The ino of (parent, name) with file type `type` (S_IFMT bits), created
 * when missing or when the existing node has another type (which then loses
 * its name); counts one kernel lookup. 0 on ENOMEM or an unknown parent. */
uint64_t ino_lookup(uint64_t parent, const char *name, size_t nlen, mode_t type);

/* Drops `n` kernel lookups; a node without lookups and children is freed. */
void ino_forget(uint64_t ino, uint64_t n);

/* Writes the FUSE path of `ino` ("/" or "/a/b") into buf. Returns its length,
 * -ENOENT when the node is unknown or (an ancestor) has lost its name,
 * -ENAMETOOLONG when it does not fit. */
int  ino_path(uint64_t ino, char *buf, size_t size);

/* Writes the path of the child `name` of directory `parent`, as ino_path. */
int  ino_child_path(uint64_t parent, const char *name, char *buf, size_t size);

/* The name (parent, name) went away (unlink, rmdir): its node loses it.
 * `orphan` (may be NULL), the open file the name referred to, is kept with
 * the node until the kernel forgets it, so that fstat() of a descriptor
 * still answers (the kernel asks by inode, without the descriptor); it is
 * handed to orphan_free then, or at once when the node is unknown. */
void ino_unlink(uint64_t parent, const char *name, void *orphan);

/* Calls fn(arg, orphan) under the table lock when `ino` has no name but
 * keeps an open file; returns -ENOENT otherwise. */
int  ino_orphan(uint64_t ino, void (*fn)(void *arg, void *orphan), void *arg);

/* Moves the node named (parent, name) to (newparent, newname); a node that
 * had the new name loses it and keeps `orphan` as ino_unlink does. */
void ino_rename(uint64_t parent, const char *name, uint64_t newparent,
		const char *newname, void *orphan);

/* A directory's modification time as this mount changed its entries
 * (create, mkdir, symlink, unlink, rmdir, rename in or out): kept with its
 * node while the kernel knows it, not in the store (keys are full paths; a
 * directory has no record to rewrite, and an implicit one has none at
 * all). ino_dir_touch() moves it forward to now_ns; ino_dir_set() sets it
 * (an explicit utime/touch of the directory; 0 forgets it);
 * ino_dir_mtime() is 0 when there is none. */
void    ino_dir_touch(uint64_t ino, int64_t now_ns);
void    ino_dir_set(uint64_t ino, int64_t mtime_ns);
int64_t ino_dir_mtime(uint64_t ino);

/* Whether the child `name` of `parent` is a directory (1), or something
 * else (0); 1 when the table has no such node (the cautious answer). */
int  ino_child_is_dir(uint64_t parent, const char *name);

/* Finds the nodes of a store path "a/b/c" (no leading '/'): sets *parent to
 * the directory's ino and *ino to the entry's ino (0 when the kernel does not
 * know the entry itself). -ENOENT when the directory is unknown. */
int  ino_find(const char *path, size_t len, uint64_t *parent, uint64_t *ino);

/* A change made behind the kernel's back (over the socket, by a peer) needs
 * an invalidation only if the kernel may cache the name. ino_changed() says
 * so for the store key `key` (trailing '/' names its directory): 1 when a
 * node exists for it (and then sets *parent and *ino, each when not NULL),
 * else 0, and then it counts the change, under the lock
 * ino_lookup() takes. A lookup that read the store before such a change
 * and registers its node after it would hand the kernel the old state with
 * nobody left to invalidate it: so a lookup whose reading of
 * ino_changes(path) moved between its store read and its registration must
 * not let the kernel cache its answer. The count is kept per bucket of
 * names (path: a FUSE path "/a/b"; a false share only costs a lookup).
 * Without `wait`, a table that is busy gives -EBUSY at once: a store
 * committer must not wait for it (a thread can hold the table's lock while
 * it waits for an open file whose holder waits for that committer). */
int      ino_changed(const char *key, size_t len, int wait, uint64_t *parent, uint64_t *ino);
uint64_t ino_changes(const char *path);

/* Page-cache bookkeeping for keep_cache. Returns 1 when the kernel's pages
 * of `ino` were filled from contents with this version/mtime/size (so they
 * may be kept on open), 0 otherwise; either way records these as what the
 * pages will hold from now on. */
int  ino_cache_check(uint64_t ino, uint64_t version, int64_t mtime_ns, uint64_t size);

/* Forgets what the kernel caches of `ino` (its pages were dropped). */
void ino_cache_drop(uint64_t ino);

/* Number of nodes (for tests). */
size_t ino_count(void);

#endif
