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
 * its directory. The directory's own attributes are left alone: size and
 * link count are fixed (fsops_fill_stat), and its times move only with
 * changes made through this mount (dir_times in llops.c). May block on
 * kernel locks: call it from a thread no FUSE request waits for. */
void llops_invalidate(struct fuse_session *se, const char *key, size_t klen);

#endif
