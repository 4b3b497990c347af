/*
 * wal.h — the segmented, append-only write-ahead log.
 *
 * The log is a sequence of segment files in the store directory, named
 * "wal-<first lsn, 20 decimal digits>.log" so that name order is log order.
 * LSNs start at 1 and grow by exactly one per record, across segments.
 *
 * Segment header, 24 bytes, little-endian:
 *    0  u32  magic 0x4C57564B ("KVWL" in file order)
 *    4  u32  version (2; 1 for segments of earlier releases, read alike
 *            except that their records do not mark sync groups)
 *    8  u64  first lsn (equal to the one in the file name)
 *   16  u32  reserved, 0
 *   20  u32  CRC-32C of bytes 0..19
 * Records follow back to back, each a 20-byte header and the payload:
 *    0  u32  CRC-32C of the payload, continued over bytes 4..19 of this header
 *            (payload first, so the payload part is computed outside the lock
 *            and only 16 bytes are checksummed while holding it)
 *    4  u32  payload length
 *    8  u64  lsn
 *   16  u8   type (store.c: 1 batch, 2 unapplied batch; >= 64 opaque)
 *   17  u8   flags: WAL_F_GROUP on the first record of a sync group
 *   18  u8[2] reserved, 0
 *   20  payload
 *
 * Durability: a new segment is created, its header written and synced and the
 * directory synced BEFORE any record goes into it; the previous segment is
 * synced at the same time. So after a crash only the tail of the last segment
 * can be torn.
 *
 * The newest segment's first lsn is also recorded in "wal.newest" (20 bytes:
 * u64 first lsn, u32 magic WAL_NEWEST_MAGIC, u32 version 1, u32 CRC-32C of
 * bytes 0..15; a version this release does not know is refused by name),
 * replaced durably (temporary file, sync, rename, directory sync) after each
 * segment is created. Nothing else would show that the newest segment, or
 * every segment, was deleted: the log would just seem to end earlier and
 * its acknowledged writes would be gone without a word. Recovery refuses a
 * log whose newest segment is older than the one recorded (-EUCLEAN). A
 * crash before the file is replaced leaves it naming an older segment,
 * which the check accepts; a directory from before the file is checked
 * from its first start with this code on.
 *
 * Recovery (wal_recover): every record is checked (length, CRC, reserved
 * bytes, lsn = previous + 1). The first bad record in the LAST segment is a
 * torn tail and is truncated away — unless a valid record with a later lsn
 * can still be found after it, which means real corruption (except after a
 * whole page of zeros that an interrupted sync did not write, in the last
 * sync group only: see lost_page in wal.c). A bad record in
 * any other segment, or such mid-log corruption, fails with -EUCLEAN and an
 * error line naming the file and the byte offset.
 *
 * Not thread-safe: the store calls it under its log mutex, except that the
 * file returned by wal_sync_file() may be synced without the lock (it stays
 * open until wal_release_retired()).
 */
#ifndef KVFS_WAL_H
#define KVFS_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "store/kvio.h"

#define WAL_SEG_HDR  24
#define WAL_REC_HDR  20
#define WAL_MAGIC    0x4C57564Bu
/* Version 2 marks sync groups (WAL_F_GROUP); version 1 segments are read
 * as before. */
#define WAL_VERSION  2
/* Record header byte 17: the first record added after a sync point
 * (wal_sync_file), i.e. the first of a group that one sync made durable. */
#define WAL_F_GROUP  0x01
#define WAL_NEWEST_MAGIC 0x4E57564Bu /* "KVWN" in file order */

typedef struct wal wal;

/* Lists the segments in dir (reads nothing yet). */
int wal_open(const struct kvio *io, const char *dir, size_t segment_bytes, wal **out);
void wal_close(wal *w);

/* First lsn of the oldest segment, 0 when there is none. */
uint64_t wal_first_lsn(const wal *w);
size_t   wal_segment_count(const wal *w);

/* Called for every valid record in log order; non-zero aborts recovery. */
typedef int (*wal_record_fn)(void *arg, uint8_t type, uint64_t lsn,
			     const void *payload, size_t len);

/* Reads and checks every segment, calls fn per record, truncates a torn tail
 * and opens the last segment for appending. With no segment at all, creates
 * the first one starting at next_lsn_if_empty. Segments holding only records
 * with lsn < skip_below are not read at all (a snapshot covers them). */
int wal_recover(wal *w, uint64_t next_lsn_if_empty, uint64_t skip_below, wal_record_fn fn,
		void *arg);

/* Lsn the next append gets. */
uint64_t wal_next_lsn(const wal *w);

/* Appends one record. `rec` holds WAL_REC_HDR bytes of room followed by the
 * payload (len counts both); the header is filled in here. payload_crc is
 * crc32c(0, payload) computed by the caller. Rotates first when the segment
 * is full (which syncs). The record is in the page cache afterwards, not yet
 * durable. On error the log must not be used for appends again. */
int wal_append(wal *w, uint8_t type, void *rec, size_t len, uint32_t payload_crc,
	       uint64_t *lsn);

/* The same in two steps, so that the records of a whole sync group go out
 * in one pwritev: wal_add() numbers the record and queues it without
 * writing (rec is borrowed and must stay unchanged until wal_flush()
 * returns), wal_flush() writes every queued record (before the sync that is
 * to cover them). A full segment is rotated by wal_add(), which writes the
 * queued records first. After an error of either, the queued records are
 * forgotten (their owners may free them) and the log must not be used for
 * appends again. */
int wal_add(wal *w, uint8_t type, void *rec, size_t len, uint32_t payload_crc, uint64_t *lsn);
int wal_flush(wal *w);

/* Keeps `bytes` of zeros written ahead of the records in the newest
 * segment (0, the default: none), so that syncs need not update the file
 * size. Recovery treats an all-zero tail of the newest segment as its clean
 * end; rotation cuts the zeros off the segment it closes. */
void wal_set_prealloc(wal *w, size_t bytes);

/* The file holding the newest records: datasync it to make every appended
 * record durable. Stays valid until wal_release_retired(). Marks a sync
 * point: call it only to sync everything written, and write nothing more
 * before that sync has returned (the next record added starts a new sync
 * group, which recovery takes as proof that the ones before are durable). */
kvio_file *wal_sync_file(wal *w);
/* Closes segments retired by rotation; call only when no sync is in flight. */
void wal_release_retired(wal *w);

/* Bytes appended since open (headers included). */
uint64_t wal_bytes_appended(const wal *w);

/* Forgets the segments that hold only records with lsn < lsn (never the one
 * being appended to) and returns their paths (malloc'd array of malloc'd
 * strings) for the caller to unlink outside its lock. */
int wal_drop_before(wal *w, uint64_t lsn, char ***paths, size_t *n);

/* The file name of a segment starting at first_lsn (for tests): buf >= 32. */
void wal_segment_name(uint64_t first_lsn, char *buf, size_t size);

#endif
