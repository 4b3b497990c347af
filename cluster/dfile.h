/*
 * dfile.h — small files that must survive a crash whole: written to a
 * temporary name, synced, renamed over the old one, and the directory
 * synced, so that after a crash the name holds either the old or the new
 * contents, never a mix (the raft term/vote file, the data directory's mode
 * marker).
 */
#ifndef KVFS_DFILE_H
#define KVFS_DFILE_H

#include <stddef.h>

/* Replaces DIR/NAME with buf[0..len) durably (NAME.tmp is the temporary).
 * Returns 0 or a negative errno (ENOSPC for a short write). */
int dfile_replace(const char *dir, const char *name, const void *buf, size_t len);

/* Reads up to cap bytes of DIR/NAME into buf: the count read, or a negative
 * errno (-ENOENT when it does not exist). */
long dfile_read(const char *dir, const char *name, void *buf, size_t cap);

#endif
