/*
 * path.h — pure helpers that map FUSE paths to store keys and back, enforce
 * the key limits of store/store.h with the errno a file system must give,
 * and escape keys into single file names for the .search/ view.
 *
 * FUSE hands the high-level callbacks normalised absolute paths: "/" or
 * "/a/b" (no trailing '/', no empty, "." or ".." components). The key of
 * "/a/b" is "a/b"; the key of an explicit directory "/a/b" is the marker
 * "a/b/"; the root directory has no key.
 */
#ifndef KVFS_FS_PATH_H
#define KVFS_FS_PATH_H

#include <stddef.h>

/* The reserved top-level name of the search view (SPEC §4). */
#define FSP_SEARCH_DIR  ".search"

/* The key of a FUSE path (the path without its leading '/'); "" for "/". */
const char *fsp_key(const char *path, size_t *klen);

/* Checks that `key` may be written as a file (is_dir = 0) or as a directory
 * marker "key/" (is_dir = 1): -ENAMETOOLONG when a component exceeds
 * KV_NAME_MAX bytes or the key (with the marker's '/') exceeds KV_KEY_MAX,
 * -EPERM when it is the root or lies under the reserved .search name,
 * -EINVAL for an empty or malformed key. 0 when fine. */
int fsp_check(const char *key, size_t klen, int is_dir);

/* 1 when the FUSE path is "/.search" or lies under it. */
int fsp_is_search(const char *path);

/* Writes "key/" (the directory marker) into buf (size > KV_KEY_MAX + 1).
 * Returns the marker's length. The caller checked the length with fsp_check
 * or handles a too-long key by the -ENAMETOOLONG returned here. */
int fsp_dirkey(const char *key, size_t klen, char *buf, size_t bufsz);

/* Escapes a key into one file name: '%' -> "%25", '/' -> "%2F". Returns the
 * name's length (NUL-terminated in out), or -ENAMETOOLONG when it would not
 * fit in KV_NAME_MAX bytes or in outsz. */
int fsp_escape(const char *key, size_t klen, char *out, size_t outsz);

/* Reverses fsp_escape (any "%XX" hex escape is accepted). Returns the key's
 * length (NUL-terminated in out), -EINVAL for a malformed escape, or
 * -ENAMETOOLONG when it does not fit in outsz. */
int fsp_unescape(const char *name, char *out, size_t outsz);

/* The direct child of directory prefix `prefix` (plen bytes, "" or ending in
 * '/') named by `key`: sets *nlen to the length of the child's name (the
 * bytes of key after the prefix up to the next '/') and returns 1 when the
 * child is a subdirectory (more follows after its name), 0 when the key is
 * the child itself, -1 when the key is the prefix itself (a marker). */
int fsp_child(const char *key, size_t klen, size_t plen, size_t *nlen);

#endif
