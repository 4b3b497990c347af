/*
 * ml_wire.h — internal to the masterless core: frame encoding helpers and the
 * frame formats, byte by byte. Integers are LEB128 ("var", see vclock.h)
 * unless marked u8/u16/u64; fixed-width integers are little-endian.
 *
 * Every frame's payload starts with the sender's ordering header:
 *   var  incarnation   grows each time the sender's core is created
 *   var  seq           grows with every frame the sender sends (any peer)
 * (ml.c, "Ordering", explains why the receiver needs them.)
 *
 * ML_MSG_PUSH — versions:
 *   var  count
 *   count x { var klen, klen bytes key,
 *             u8 flags (ML_V_TOMBSTONE),
 *             var elen, elen bytes ext (ml_ext_encode form),
 *             var mlen, mlen bytes meta,
 *             var vlen, vlen bytes value }
 * ML_MSG_ROOT — opens an anti-entropy round:
 *   64 x u64   group hashes, group g = leaves 64g..64g+63
 * ML_MSG_LEAVES — answer to ROOT for groups whose hash differs:
 *   var  count
 *   count x { u8 group, 64 x u64 leaf hashes }
 * ML_MSG_KEYS — the keys of differing leaves:
 *   var  count
 *   count x { u16 leaf, u8 complete (0: the list stops early, at the last
 *             key listed in memcmp order), var nkeys,
 *             nkeys x { var klen, key, u64 version hash } }   keys ascending
 * ML_MSG_WANT — keys whose versions the sender asks for:
 *   var  count, count x { var klen, key }
 * ML_MSG_TOMB — tombstone acknowledgements:
 *   var  count
 *   count x { var klen, key, var origin, var ts,
 *             u8 level: 0 = "I hold this tombstone durably",
 *                       1 = "... and I know every node holds it",
 *                       2 = "I have collected it" }
 *   (origin, ts) name the tombstone's write.
 *
 * Limits: klen <= ML_KEY_MAX, a leaf < 4096, a group < 64; a frame must be
 * consumed exactly (no trailing bytes). Violations make the frame invalid.
 */
#ifndef KVFS_ML_WIRE_H
#define KVFS_ML_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define ML_KEY_MAX      4095u
#define ML_GROUPS       64u
#define ML_LEAVES_PER   64u
#define ML_LEAVES       (ML_GROUPS * ML_LEAVES_PER)

/* Growable output buffer; errors are sticky (checked once at the end). */
struct mlw_out {
	uint8_t *p;
	size_t   len, cap;
	int      err;  /* -ENOMEM once an append failed */
};
void mlw_out_init(struct mlw_out *o);
void mlw_out_free(struct mlw_out *o);
void mlw_out_reset(struct mlw_out *o);
void mlw_put_u8(struct mlw_out *o, uint8_t v);
void mlw_put_u16(struct mlw_out *o, uint16_t v);
void mlw_put_u64(struct mlw_out *o, uint64_t v);
void mlw_put_var(struct mlw_out *o, uint64_t v);
void mlw_put_bytes(struct mlw_out *o, const void *b, size_t n);
void mlw_put_lbytes(struct mlw_out *o, const void *b, size_t n); /* var n, bytes */

/* Bounds-checked input; errors are sticky, getters return 0 / NULL after one. */
struct mlw_in {
	const uint8_t *p;
	size_t         len, off;
	int            err;  /* -EBADMSG once a read ran past the end */
};
void     mlw_in_init(struct mlw_in *in, const void *buf, size_t len);
uint8_t  mlw_get_u8(struct mlw_in *in);
uint16_t mlw_get_u16(struct mlw_in *in);
uint64_t mlw_get_u64(struct mlw_in *in);
uint64_t mlw_get_var(struct mlw_in *in);
/* var length (<= max) then that many bytes; returns a pointer into the frame. */
const void *mlw_get_lbytes(struct mlw_in *in, size_t max, size_t *n);
/* 0 when the whole frame was read without error, else -EBADMSG. */
int      mlw_in_done(const struct mlw_in *in);

/* 64-bit hash (FNV-1a over the bytes, then the splitmix64 finaliser to spread
 * the bits). Not cryptographic: digests trust their peers. */
uint64_t mlw_hash(const void *buf, size_t len, uint64_t seed);
uint64_t mlw_mix(uint64_t x);

#endif
