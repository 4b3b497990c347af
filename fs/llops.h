/*
 * llops.h — the low-level FUSE callbacks of kvfs.
 *
 * Each callback resolves inode numbers to a path through the inode table
 * (fs/inode.h), calls the path-based operation of fs/fsops.h and replies.
 * There are no path locks (unlike libfuse's high-level API, whose rename of
 * a name onto itself could wait for itself forever).
 */
#ifndef KVFS_FS_LLOPS_H
#define KVFS_FS_LLOPS_H

#include <stddef.h>
#include <stdint.h>

#include <fuse_lowlevel.h>

int  llops_init(void);
void llops_fini(void);
const struct fuse_lowlevel_ops *llops_get(void);

/* Drops what the kernel caches of `key` (a store key: "a/b", or the marker
 * "a/b/" of a directory): the entry's attributes and pages and its name in
 * its directory. The directory's own attributes (mtime, size, link count),
 * which may have changed with its entries, are left to the caller: *dir is
 * set to its inode then (0 when they are unaffected), so that a run of
 * changes in one directory drops them once (llops_invalidate_attrs). May
 * block on kernel locks: call it from a thread no FUSE request waits for. */
void llops_invalidate(struct fuse_session *se, const char *key, size_t klen, uint64_t *dir);

/* Drops the kernel's cached attributes of inode `ino`. Same caveat. */
void llops_invalidate_attrs(struct fuse_session *se, uint64_t ino);

#endif
