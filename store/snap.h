/*
 * snap.h — snapshot files: the whole map as of one log position, plus an
 * opaque application-state blob captured with it (Raft keeps its last
 * included index and term there).
 *
 * File "snap-<lsn, 20 decimal digits>.snap" in the store directory, where lsn
 * is the last log record whose effect it contains. Written as
 * "snap-<lsn>.tmp", synced, renamed, directory synced (snap_write).
 *
 * Format version 1, little-endian:
 *   header, 40 bytes:
 *      0  u32  magic 0x4E53564B ("KVSN" in file order)
 *      4  u32  version (1)
 *      8  u64  lsn
 *     16  u64  count: number of records
 *     24  u32  state_len (application state bytes)
 *     28  u32  reserved, 0
 *     32  u32  CRC-32C of bytes 0..31 (checked before trusting the sizes)
 *     36  u32  reserved, 0
 *   state_len bytes of application state
 *   count records in strictly increasing key order, each a 48-byte fixed part
 *   and its bytes:
 *      0  u16  klen
 *      2  u16  ext_len
 *      4  u32  flags (KV_F_*)
 *      8  u32  vlen
 *     12  u64  version
 *     20  u32  mode, 24 u32 uid, 28 u32 gid
 *     32  i64  mtime_ns, 40 i64 ctime_ns
 *     48  key, ext, value
 *   trailer, 8 bytes:
 *      0  u32  CRC-32C of every byte before the trailer
 *      4  u32  magic 0x45535654 ("TVSE" in file order)
 */
#ifndef KVFS_SNAP_H
#define KVFS_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "store/kvio.h"
#include "store/map.h"

#define SNAP_MAGIC     0x4E53564Bu
#define SNAP_END_MAGIC 0x45535654u
#define SNAP_VERSION   1
#define SNAP_HDR_SIZE  40
#define SNAP_REC_SIZE  48

struct snap_image {
	uint64_t      lsn;
	kv_rec      **recs;   /* in key order */
	size_t        n;
	const void   *state;
	size_t        state_len;
};

/* Writes img as snapshot img->lsn in dir: temp file, datasync, rename,
 * directory sync. 0 or -errno (the temp file is removed on failure). */
int snap_write(const struct kvio *io, const char *dir, const struct snap_image *img);

/* Lsns of the snapshots present in dir, newest first (*lsns malloc'd). Also
 * removes leftover temp files of interrupted snapshots. */
int snap_list(const struct kvio *io, const char *dir, uint64_t **lsns, size_t *n);

/* Loads snapshot lsn into the empty map m; *state gets a malloc'd copy of the
 * application state (NULL when empty), *ntomb (may be NULL) the number of
 * tombstone records. -EUCLEAN when the file is corrupt
 * (logged with the file name), other -errno on I/O errors. On failure m may
 * hold part of the records: the caller throws it away. */
int snap_load(const struct kvio *io, const char *dir, uint64_t lsn, map *m,
	      void **state, size_t *state_len, uint64_t *ntomb);

/* Removes snapshot lsn. */
int snap_remove(const struct kvio *io, const char *dir, uint64_t lsn);

void snap_file_name(uint64_t lsn, int temp, char *buf, size_t size);

#endif
