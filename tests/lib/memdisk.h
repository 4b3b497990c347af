/*
 * memdisk.h — an in-memory kvio (store/kvio.h) for tests, modelled on the
 * crash-simulating VFS of SQLite's test suite.
 *
 * Every file keeps two images: the durable one (as of its last successful
 * datasync) and the current one (what reads see). Directory entries are kept
 * the same way: a create, rename or unlink becomes durable only with a
 * sync_dir() of its directory. Directories themselves (mkdir) are durable at
 * once — the store never removes or renames one.
 *
 * memdisk_crash() is a power cut: every file goes back to its durable image,
 * every directory to its durable entries; files opened before are dead
 * (every call on them fails with -EIO). memdisk_crash_torn() is a harsher
 * cut: for each file it keeps, beyond the durable image, a random prefix of
 * the writes made since its last sync, the last of them torn at a random
 * byte — the page cache written back in order, interrupted mid-write.
 * memdisk_crash_pages() models write-back out of order, as a file system
 * does when it overwrites blocks in place: each file of unsynced changes
 * comes back with its durable or its current size, and each `page`-sized
 * block within it independently with its durable or its current bytes.
 *
 * Faults: memdisk_fail_write(md, n, err) makes the n-th write from now
 * (1 = the next) fail with err and write nothing; memdisk_fail_sync likewise
 * for syncs (datasync and sync_dir both count). A failed datasync leaves the
 * data unsynced. memdisk_cut_at_sync(md, n): the n-th sync from now does not
 * happen and the machine is dead from then on (every call fails with -EIO
 * and changes nothing) until memdisk_crash().
 *
 * Thread-safe (one mutex).
 */
#ifndef KVFS_TEST_MEMDISK_H
#define KVFS_TEST_MEMDISK_H

#include <stddef.h>
#include <stdint.h>

#include "store/kvio.h"

typedef struct memdisk memdisk;

memdisk *memdisk_new(void);
void     memdisk_free(memdisk *md);
const struct kvio *memdisk_io(memdisk *md);

void memdisk_crash(memdisk *md);
void memdisk_crash_torn(memdisk *md, uint64_t seed);
void memdisk_crash_pages(memdisk *md, uint64_t seed, size_t page);

void memdisk_fail_write(memdisk *md, uint64_t nth, int err);
void memdisk_fail_sync(memdisk *md, uint64_t nth, int err);
void memdisk_cut_at_sync(memdisk *md, uint64_t nth);
/* Makes every datasync sleep usec first (outside the lock), like a disk. */
void memdisk_set_sync_delay(memdisk *md, unsigned usec);
/* Clears pending faults (not a cut: that needs a crash). */
void memdisk_clear_faults(memdisk *md);

/* Counters since memdisk_new(). */
uint64_t memdisk_writes(memdisk *md);
uint64_t memdisk_syncs(memdisk *md);      /* datasync + sync_dir calls that succeeded */
uint64_t memdisk_datasyncs(memdisk *md);  /* successful datasync calls only */

/* Raw access for tests, bypassing faults; changes are durable at once.
 * memdisk_read: *buf malloc'd; -ENOENT when missing. */
int  memdisk_read(memdisk *md, const char *path, void **buf, size_t *len);
int  memdisk_write(memdisk *md, const char *path, const void *buf, size_t len);
int  memdisk_exists(memdisk *md, const char *path);
/* Names (not paths) in dir, sorted, as one malloc'd string separated by '\n'. */
char *memdisk_listing(memdisk *md, const char *dir);

#endif
