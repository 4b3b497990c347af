/*
 * move.h — rename(2) for kvfs: atomic, also over an existing file and for
 * whole directories (every key under it moves in one batch).
 */
#ifndef KVFS_FS_MOVE_H
#define KVFS_FS_MOVE_H

/* FUSE paths; flags: 0 or RENAME_NOREPLACE (RENAME_EXCHANGE: -EINVAL). */
int move_path(const char *from, const char *to, unsigned int flags);

#endif
