/*
 * sview.h — the read-only .search/ directory (SPEC §4).
 *
 *   /.search                      mode directories .text .tfidf .semantic .phrase
 *   /.search/QUERY/               hybrid ranking (a "quoted" QUERY is a phrase)
 *   /.search/.MODE/QUERY/         one method alone
 *   /.search/[.MODE/]QUERY/NAME   symlink to the key NAME decodes to
 *
 * NAME is the key with '%' written "%25" and '/' written "%2F"; readdir lists
 * the hits best first. Keys whose escaped name would exceed 255 bytes are
 * left out of the listing (they cannot be named by one component).
 *
 * Scores: Linux refuses user.* extended attributes on symlinks before asking
 * the file system (fs/xattr.c: xattr_permission), so the scores are the
 * attribute user.kvfs.scores of the QUERY directory: one "NAME<TAB>SCORE"
 * line per hit, best first (getfattr --only-values -n user.kvfs.scores
 * .search/QUERY). Entries also answer user.kvfs.score for callers that reach
 * the file system directly.
 */
#ifndef KVFS_FS_SVIEW_H
#define KVFS_FS_SVIEW_H

#include <stddef.h>
#include <sys/stat.h>

#include <fuse.h>

#define SVIEW_XATTR     "user.kvfs.score"
#define SVIEW_XATTR_DIR "user.kvfs.scores"

int  sview_init(void);
void sview_fini(void);

/* Each takes a path for which fsp_is_search() is true. */
int sview_getattr(const char *path, struct stat *st);
int sview_readdir(const char *path, void *buf, fuse_fill_dir_t filler);
int sview_readlink(const char *path, char *buf, size_t size);
int sview_getxattr(const char *path, const char *name, char *value, size_t size);
int sview_listxattr(const char *path, char *list, size_t size);

#endif
