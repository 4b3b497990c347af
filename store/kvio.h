/*
 * kvio.h — the small I/O interface through which ALL file-system access of
 * store/ goes, in the manner of SQLite's sqlite3_vfs: a table of methods.
 *
 * kvio_posix() is the real file system. Tests swap in an in-memory disk
 * (tests/lib/memdisk.h) that keeps unsynced writes apart from synced ones, so
 * a simulated power cut can drop them, and that fails the Nth write or sync.
 *
 * Every method returns 0 (or a byte count) on success and a negative errno on
 * failure. Paths are plain strings; the store only ever uses a directory and
 * the names inside it (no nested directories).
 *
 * Durability contract (what an implementation must honour and what the store
 * relies on, as on Linux):
 *   - data written to a file is durable only after datasync() on it returned 0;
 *   - a created, renamed or unlinked directory entry is durable only after
 *     sync_dir() on its directory returned 0;
 *   - a failed datasync() may have lost the written data: it must not be
 *     retried as if a later success proved anything (PostgreSQL's fsyncgate).
 */
#ifndef KVFS_KVIO_H
#define KVFS_KVIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct kvio;

/* An open file. Implementations embed this as the FIRST member of their own
 * file structure, so the kvio_* wrappers below find the methods. */
typedef struct kvio_file {
	const struct kvio *io;
} kvio_file;

/* open() flags. */
#define KVIO_RDONLY 0x0u
#define KVIO_RDWR   0x1u
#define KVIO_CREAT  0x2u /* create when missing */
#define KVIO_EXCL   0x4u /* with KVIO_CREAT: fail with -EEXIST when present */
#define KVIO_TRUNC  0x8u
#define KVIO_PRIVATE 0x10u /* with KVIO_CREAT: readable by the owner only */

/* Called once per directory entry (not "." or ".."); non-zero stops the
 * listing and is returned by list(). */
typedef int (*kvio_list_fn)(void *arg, const char *name);

struct kvio {
	const char *name;
	int     (*open)(const struct kvio *io, const char *path, unsigned flags, kvio_file **out);
	int     (*close)(kvio_file *f);
	ssize_t (*pwrite)(kvio_file *f, const void *buf, size_t len, uint64_t off);
	ssize_t (*pwritev)(kvio_file *f, const struct iovec *iov, int iovcnt, uint64_t off);
	ssize_t (*pread)(kvio_file *f, void *buf, size_t len, uint64_t off);
	int     (*datasync)(kvio_file *f);
	int     (*truncate)(kvio_file *f, uint64_t size);
	int     (*size)(kvio_file *f, uint64_t *size);
	int     (*sync_dir)(const struct kvio *io, const char *dir);
	int     (*rename)(const struct kvio *io, const char *from, const char *to);
	int     (*unlink)(const struct kvio *io, const char *path);
	int     (*mkdir)(const struct kvio *io, const char *path, mode_t mode); /* -EEXIST when present */
	int     (*list)(const struct kvio *io, const char *dir, kvio_list_fn fn, void *arg);
};

/* The real file system (open(2), pwrite(2), fdatasync(2), ...). Writes and
 * reads loop over short transfers and EINTR, so a short count never escapes. */
const struct kvio *kvio_posix(void);

/* Convenience wrappers. */
static inline ssize_t kvio_pwrite(kvio_file *f, const void *buf, size_t len, uint64_t off)
{
	return f->io->pwrite(f, buf, len, off);
}
static inline ssize_t kvio_pwritev(kvio_file *f, const struct iovec *iov, int n, uint64_t off)
{
	return f->io->pwritev(f, iov, n, off);
}
static inline ssize_t kvio_pread(kvio_file *f, void *buf, size_t len, uint64_t off)
{
	return f->io->pread(f, buf, len, off);
}
static inline int kvio_datasync(kvio_file *f) { return f->io->datasync(f); }
static inline int kvio_truncate(kvio_file *f, uint64_t size) { return f->io->truncate(f, size); }
static inline int kvio_size(kvio_file *f, uint64_t *size) { return f->io->size(f, size); }
static inline int kvio_close(kvio_file *f) { return f->io->close(f); }

/* Writes all of buf at off: 0 or -errno (a short write is -EIO). */
int kvio_write_all(kvio_file *f, const void *buf, size_t len, uint64_t off);
/* Reads exactly len bytes at off: 0, -errno, or -ENODATA when the file is shorter. */
int kvio_read_all(kvio_file *f, void *buf, size_t len, uint64_t off);

/* Small files that must survive a crash whole (the WAL's newest-segment
 * record, the Raft term and vote, the data directory's mode marker):
 * DIR/NAME is replaced with buf[0..len) by writing NAME.tmp, syncing it,
 * renaming it over NAME and syncing the directory, so that after a crash
 * NAME holds the old or the new contents, never a mix. open_flags may add
 * KVIO_PRIVATE. 0 or a negative errno (-ENOSPC for a short write). */
int  kvio_replace(const struct kvio *io, const char *dir, const char *name, const void *buf,
		  size_t len, unsigned open_flags);
/* Reads up to cap bytes of DIR/NAME into buf: the count read, or a negative
 * errno (-ENOENT when there is no such file). */
long kvio_read_small(const struct kvio *io, const char *dir, const char *name, void *buf,
		     size_t cap);

#endif
