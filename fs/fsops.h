/*
 * fsops.h — the path-based file-system operations of kvfs. The low-level
 * FUSE callbacks (fs/llops.c) resolve inode numbers to paths ("/" or "/a/b")
 * and call these; each returns 0 or a negative errno.
 *
 * Reads (getattr, readdir, readlink, read of clean files) are served directly
 * from the store (store_get/store_next, thread-safe) without a trip through
 * the node's loop; every change is one node_write() batch.
 */
#ifndef KVFS_FS_FSOPS_H
#define KVFS_FS_FSOPS_H

#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <fuse.h>
#include <fuse_lowlevel.h>

#include "cluster/node.h"

struct kvfs_ctx {
	node       *n;
	store      *st;
	const char *data_dir;   /* absolute */
	const char *mountpoint; /* absolute */
	uid_t       uid;        /* owner of the root and of implicit directories */
	gid_t       gid;
	int64_t     start_ns;   /* times of the root and of implicit directories */
	double      entry_timeout; /* seconds the kernel may cache a name */
	double      attr_timeout;  /* seconds the kernel may cache attributes */
	int         keep_cache;    /* pages may outlive a close (not in Raft mode) */
};

/* Sets the context used by every operation; ctx must outlive the FUSE loop. */
int  fsops_init(struct kvfs_ctx *ctx);
void fsops_fini(void);

/* Whether path names a file or symlink (in the store or open here), not a
 * directory; no read barrier (a hint for locking, see ll_rename). */
int fsops_names_file(const char *path);

/* Names. fi, where taken, may be NULL or a descriptor's (fi->fh set by
 * fsops_open/fsops_create) for the f* variants of the calls. */
int fsops_getattr(const char *path, struct stat *st, struct fuse_file_info *fi);
int fsops_readlink(const char *path, char *buf, size_t size);
int fsops_mknod(const char *path, mode_t mode, dev_t rdev);
int fsops_mkdir(const char *path, mode_t mode);
int fsops_symlink(const char *target, const char *path);
int fsops_unlink(const char *path);
int fsops_rmdir(const char *path);
int fsops_chmod(const char *path, mode_t mode, struct fuse_file_info *fi);
int fsops_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi);
int fsops_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi);
int fsops_truncate(const char *path, off_t size, struct fuse_file_info *fi);
int fsops_readdir(const char *path, void *buf, fuse_fill_dir_t filler);
int fsops_statfs(struct statvfs *sv);
int fsops_getxattr(const char *path, const char *name, char *value, size_t size);
int fsops_listxattr(const char *path, char *list, size_t size);

/* Descriptors: open/create set fi->fh (and fi->noflush for read-only). */
int fsops_open(const char *path, struct fuse_file_info *fi);
int fsops_create(const char *path, mode_t mode, struct fuse_file_info *fi);
/* Reading without a copy: returns the descriptor's bytes at off (*n of at
 * most size) with its file locked until fsops_read_end. */
const char *fsops_read_begin(struct fuse_file_info *fi, size_t size, off_t off,
			     size_t *n);
void fsops_read_end(struct fuse_file_info *fi);
int fsops_write(struct fuse_file_info *fi, const char *buf, size_t size, off_t off);
int fsops_flush(struct fuse_file_info *fi);
int fsops_fsync(struct fuse_file_info *fi);
int fsops_release(struct fuse_file_info *fi);
/* The open file of `path` pinned (NULL when the file is not open here), to
 * keep answering fstat() after an unlink; fsops_put_open drops the pin. */
void *fsops_pin_open(const char *path);
/* The same for a file deleted behind the mount: its open file, detached from
 * the name (ent_detach_deleted), or NULL when it has none or it still counts. */
void *fsops_pin_deleted(const char *path);
void  fsops_put_open(void *of);
void  fsops_open_stat(void *of, struct stat *st);
/* What the descriptor's file holds now, to decide whether the kernel may
 * keep its cached pages (store version, mtime, size). */
void fsops_fh_state(struct fuse_file_info *fi, uint64_t *version, int64_t *mtime_ns,
		    uint64_t *size);

/* Shared with the .search/ view. */
int64_t fsops_now_ns(void);
void    fsops_fill_stat(struct stat *st, const struct kv_meta *m, size_t size);
const struct kvfs_ctx *fsops_ctx(void);

#endif
