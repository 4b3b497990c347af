/*
 * failsync.c — an LD_PRELOAD module for fault tests of the real kvfs
 * binary: while the file named by KVFS_TEST_FAILSYNC exists, fsync() and
 * fdatasync() fail with EIO without syncing (as a dying disk's would);
 * otherwise they pass through to libc. kvfs syncs only through these two
 * calls (store/kvio_posix.c). Each failure is counted on stderr, the first
 * few by name, so that a test's log shows the fault took effect.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static unsigned long failed;
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

/* Resolved once, before the program's threads exist. */
__attribute__((constructor)) static void failsync_init(void)
{
	real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if (!real_fsync || !real_fdatasync) {
		fprintf(stderr, "failsync: cannot find libc's fsync/fdatasync\n");
		abort();
	}
}

static int tripped(const char *call, int fd)
{
	const char *trigger = getenv("KVFS_TEST_FAILSYNC");

	if (!trigger || !*trigger || access(trigger, F_OK) != 0)
		return 0;
	if (__atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED) <= 5)
		fprintf(stderr, "failsync: %s(%d) fails with EIO (%s exists)\n", call, fd, trigger);
	errno = EIO;
	return 1;
}

int fsync(int fd)
{
	return tripped("fsync", fd) ? -1 : real_fsync(fd);
}

int fdatasync(int fd)
{
	return tripped("fdatasync", fd) ? -1 : real_fdatasync(fd);
}
