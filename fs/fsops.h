/*
 * fsops.h — the FUSE callbacks of kvfs (high-level, path-based API).
 *
 * Reads (getattr, readdir, readlink, read of clean files) are served directly
 * from the store (store_get/store_next, thread-safe) without a trip through
 * the node's loop; every change is one node_write() batch.
 */
#ifndef KVFS_FS_FSOPS_H
#define KVFS_FS_FSOPS_H

#include <stdint.h>
#include <sys/types.h>

#include <fuse.h>

#include "cluster/node.h"

struct kvfs_ctx {
	node       *n;
	store      *st;
	const char *data_dir;   /* absolute */
	const char *mountpoint; /* absolute */
	uid_t       uid;        /* owner of the root and of implicit directories */
	gid_t       gid;
	int64_t     start_ns;   /* times of the root and of implicit directories */
	double      timeout;    /* entry and attribute timeout, seconds; < 0: keep
	                           what -o entry_timeout=/attr_timeout= set */
};

/* Sets the context used by every callback; ctx must outlive the FUSE loop. */
int  fsops_init(struct kvfs_ctx *ctx);
void fsops_fini(void);
const struct fuse_operations *fsops_get(void);

/* Shared with the .search/ view. */
int64_t fsops_now_ns(void);
void    fsops_fill_stat(struct stat *st, const struct kv_meta *m, size_t size);
const struct kvfs_ctx *fsops_ctx(void);

#endif
