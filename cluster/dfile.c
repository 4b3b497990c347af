/*
 * dfile.c — small files replaced durably (dfile.h).
 */
#include "cluster/dfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static int path_of(char *out, size_t cap, const char *dir, const char *name, const char *suffix)
{
	int n = snprintf(out, cap, "%s/%s%s", dir, name, suffix);

	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int dfile_replace(const char *dir, const char *name, const void *buf, size_t len)
{
	char path[4096], tmp[4096];
	int fd = -1, dfd = -1, rc;
	ssize_t w;

	if ((rc = path_of(path, sizeof path, dir, name, "")) ||
	    (rc = path_of(tmp, sizeof tmp, dir, name, ".tmp")))
		return rc;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto err;
	w = write(fd, buf, len);
	if (w != (ssize_t)len) {
		if (w >= 0)
			errno = ENOSPC;
		goto err;
	}
	if (fdatasync(fd))
		goto err;
	rc = close(fd);
	fd = -1;
	if (rc || rename(tmp, path))
		goto err;
	/* The rename is durable only once the directory is synced. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd))
		goto err;
	close(dfd);
	return 0;
err:
	rc = -errno;
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	return rc;
}

long dfile_read(const char *dir, const char *name, void *buf, size_t cap)
{
	char path[4096];
	ssize_t got;
	int fd, rc, e;

	if ((rc = path_of(path, sizeof path, dir, name, "")))
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	got = read(fd, buf, cap);
	e = errno;
	close(fd);
	return got < 0 ? -e : (long)got;
}
