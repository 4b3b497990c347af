/*
 * kvio_posix.c — the kvio interface on the real file system, plus the
 * generic helpers kvio_write_all(), kvio_read_all(), kvio_replace() and
 * kvio_read_small(), which work on any kvio.
 */
#include "store/kvio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct posix_file {
	kvio_file base; /* first: kvio_file * and posix_file * are interchangeable */
	int fd;
};

static int pfd(kvio_file *f)
{
	return ((struct posix_file *)f)->fd;
}

static int px_open(const struct kvio *io, const char *path, unsigned flags, kvio_file **out)
{
	int oflags = O_CLOEXEC;
	struct posix_file *f;

	oflags |= (flags & KVIO_RDWR) ? O_RDWR : O_RDONLY;
	if (flags & KVIO_CREAT)
		oflags |= O_CREAT;
	if (flags & KVIO_EXCL)
		oflags |= O_EXCL;
	if (flags & KVIO_TRUNC)
		oflags |= O_TRUNC;
	f = malloc(sizeof *f);
	if (!f)
		return -ENOMEM;
	f->fd = open(path, oflags, (flags & KVIO_PRIVATE) ? 0600 : 0644);
	if (f->fd < 0) {
		int e = errno;
		free(f);
		return -e;
	}
	f->base.io = io;
	*out = &f->base;
	return 0;
}

static int px_close(kvio_file *f)
{
	int rc = close(pfd(f)) ? -errno : 0;

	free(f);
	return rc;
}

/* pwrite/pread loop over short transfers and EINTR: a short count from the
 * kernel is not an error by itself, but callers only ever want all or nothing. */
static ssize_t px_pwrite(kvio_file *f, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(pfd(f), p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static ssize_t px_pwritev(kvio_file *f, const struct iovec *iov, int iovcnt, uint64_t off)
{
	size_t total = 0, done;
	ssize_t n;
	int i;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	do
		n = pwritev(pfd(f), iov, iovcnt, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	done = (size_t)n;
	if (done == total)
		return n;
	/* Rare short write: finish the rest one buffer at a time. */
	for (i = 0; i < iovcnt && done < total; i++) {
		size_t start = 0, l = iov[i].iov_len;
		size_t before = 0;
		int k;
		ssize_t r;

		for (k = 0; k < i; k++)
			before += iov[k].iov_len;
		if (before + l <= done)
			continue;
		if (done > before)
			start = done - before;
		r = px_pwrite(f, (const char *)iov[i].iov_base + start, l - start, off + before + start);
		if (r < 0)
			return r;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

static ssize_t px_pread(kvio_file *f, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(pfd(f), p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int px_datasync(kvio_file *f)
{
	return fdatasync(pfd(f)) ? -errno : 0;
}

static int px_truncate(kvio_file *f, uint64_t size)
{
	return ftruncate(pfd(f), (off_t)size) ? -errno : 0;
}

static int px_size(kvio_file *f, uint64_t *size)
{
	struct stat sb;

	if (fstat(pfd(f), &sb))
		return -errno;
	*size = (uint64_t)sb.st_size;
	return 0;
}

static int px_sync_dir(const struct kvio *io, const char *dir)
{
	int fd, rc = 0;

	(void)io;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

static int px_rename(const struct kvio *io, const char *from, const char *to)
{
	(void)io;
	return rename(from, to) ? -errno : 0;
}

static int px_unlink(const struct kvio *io, const char *path)
{
	(void)io;
	return unlink(path) ? -errno : 0;
}

static int px_mkdir(const struct kvio *io, const char *path, mode_t mode)
{
	(void)io;
	return mkdir(path, mode) ? -errno : 0;
}

static int px_list(const struct kvio *io, const char *dir, kvio_list_fn fn, void *arg)
{
	DIR *d;
	struct dirent *de;
	int rc = 0;

	(void)io;
	d = opendir(dir);
	if (!d)
		return -errno;
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno)
				rc = -errno;
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rc = fn(arg, de->d_name);
		if (rc)
			break;
	}
	closedir(d);
	return rc;
}

static const struct kvio posix_io = {
	.name = "posix",
	.open = px_open,
	.close = px_close,
	.pwrite = px_pwrite,
	.pwritev = px_pwritev,
	.pread = px_pread,
	.datasync = px_datasync,
	.truncate = px_truncate,
	.size = px_size,
	.sync_dir = px_sync_dir,
	.rename = px_rename,
	.unlink = px_unlink,
	.mkdir = px_mkdir,
	.list = px_list,
};

const struct kvio *kvio_posix(void)
{
	return &posix_io;
}

int kvio_write_all(kvio_file *f, const void *buf, size_t len, uint64_t off)
{
	ssize_t n = kvio_pwrite(f, buf, len, off);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

int kvio_read_all(kvio_file *f, void *buf, size_t len, uint64_t off)
{
	ssize_t n = kvio_pread(f, buf, len, off);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -ENODATA;
}

static int path_of(char *out, size_t cap, const char *dir, const char *name, const char *suffix)
{
	int n = snprintf(out, cap, "%s/%s%s", dir, name, suffix);

	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int kvio_replace(const struct kvio *io, const char *dir, const char *name, const void *buf,
		 size_t len, unsigned open_flags)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	kvio_file *f;
	ssize_t n;
	int rc, crc;

	if ((rc = path_of(path, sizeof path, dir, name, "")) ||
	    (rc = path_of(tmp, sizeof tmp, dir, name, ".tmp")))
		return rc;
	rc = io->open(io, tmp, KVIO_RDWR | KVIO_CREAT | KVIO_TRUNC | open_flags, &f);
	if (rc)
		return rc;
	n = kvio_pwrite(f, buf, len, 0);
	rc = n < 0 ? (int)n : (size_t)n != len ? -ENOSPC : 0;
	if (!rc)
		rc = kvio_datasync(f);
	crc = kvio_close(f);
	if (!rc)
		rc = crc;
	if (!rc)
		rc = io->rename(io, tmp, path);
	/* The rename is durable only once the directory is synced. */
	if (!rc)
		rc = io->sync_dir(io, dir);
	if (rc)
		io->unlink(io, tmp);
	return rc;
}

long kvio_read_small(const struct kvio *io, const char *dir, const char *name, void *buf,
		     size_t cap)
{
	char path[PATH_MAX];
	kvio_file *f;
	ssize_t n;
	int rc;

	if ((rc = path_of(path, sizeof path, dir, name, "")))
		return rc;
	rc = io->open(io, path, KVIO_RDONLY, &f);
	if (rc)
		return rc;
	n = kvio_pread(f, buf, cap, 0);
	kvio_close(f);
	return (long)n;
}
