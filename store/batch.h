/*
 * batch.h — the encoding of a struct kv_batch (store.h): the payload of a WAL
 * batch record and of a Raft entry. kv_batch_encode()/kv_batch_decode() are
 * declared in store.h; this header documents the format and adds helpers.
 *
 * Format version 1, all integers little-endian, no padding, no checksum of its
 * own (the WAL record or Raft entry that carries it has one):
 *
 *   header, 8 bytes:
 *     0  u8   version (1)
 *     1  u8   reserved, 0
 *     2  u16  reserved, 0
 *     4  u32  n: number of operations (1 .. KV_BATCH_MAX; 0 is allowed too)
 *   then n operations, each a 44-byte fixed part followed by its bytes:
 *     0  u8   kind (1 = KV_PUT, 2 = KV_DEL, 3 = KV_META)
 *     1  u8   reserved, 0
 *     2  u16  klen (1 .. KV_KEY_MAX)
 *     4  u32  flags (KV_F_*; 0 unless KV_PUT)
 *     8  u32  vlen (0 unless KV_PUT)
 *    12  u32  ext_len (0 for KV_DEL; <= KV_EXT_MAX)
 *    16  u32  meta.mode
 *    20  u32  meta.uid
 *    24  u32  meta.gid
 *    28  i64  meta.mtime_ns
 *    36  i64  meta.ctime_ns        (the meta is all zero for KV_DEL)
 *    44  klen bytes of key, ext_len bytes of ext, vlen bytes of value
 *   and nothing after the last operation.
 *
 * kv_batch_decode() rejects (-EBADMSG) an unknown version or kind, non-zero
 * reserved bytes, a field out of range, a length running past the end, and
 * trailing bytes. Key syntax (key_check) is not its business.
 */
#ifndef KVFS_BATCH_H
#define KVFS_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define BATCH_VERSION  1
#define BATCH_HDR_SIZE 8
#define BATCH_OP_SIZE  44

/* Bytes kv_batch_encode() produces for b (no validation). */
size_t batch_encoded_size(const struct kv_batch *b);

/* Encodes b into a malloc'd buffer with `room` uninitialised bytes in front
 * (the WAL record header goes there, so the record is written with one
 * system call and no copy). *outlen includes room. */
int batch_encode_room(const struct kv_batch *b, size_t room, void **out, size_t *outlen);

/* Encodes b at p, which has room for batch_encoded_size(b) bytes; the
 * caller has checked b->n <= KV_BATCH_MAX. Returns the end of the encoding. */
unsigned char *batch_encode_into(const struct kv_batch *b, unsigned char *p);

/* kv_batch_decode() that uses room[0..room_n) for *ops when the batch fits
 * (the caller then must not free *ops: check *ops != room), sparing a
 * malloc per record during log replay. */
int batch_decode_buf(const void *buf, size_t len, struct kv_op *room, uint32_t room_n,
		     struct kv_op **ops, uint32_t *n);

/* Checks the limits of store.h on every op: key_check, value <= KV_VALUE_MAX
 * [-EFBIG], ext <= KV_EXT_MAX [-EINVAL], n <= KV_BATCH_MAX [-E2BIG], a known
 * kind and no stray fields [-EINVAL]. */
int batch_check(const struct kv_batch *b);

#endif
