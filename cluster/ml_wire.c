/*
 * ml_wire.c — frame encoding helpers, the ext blob and pure resolution.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/ml.h"
#include "cluster/ml_wire.h"

void mlw_out_init(struct mlw_out *o)
{
	o->p = NULL;
	o->len = o->cap = 0;
	o->err = 0;
}

void mlw_out_free(struct mlw_out *o)
{
	free(o->p);
	mlw_out_init(o);
}

void mlw_out_reset(struct mlw_out *o)
{
	o->len = 0;
	o->err = 0;
}

static int reserve(struct mlw_out *o, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (o->err)
		return o->err;
	if (o->len + n <= o->cap)
		return 0;
	cap = o->cap ? o->cap : 256;
	while (cap < o->len + n)
		cap *= 2;
	p = realloc(o->p, cap);
	if (!p) {
		o->err = -ENOMEM;
		return o->err;
	}
	o->p = p;
	o->cap = cap;
	return 0;
}

void mlw_put_bytes(struct mlw_out *o, const void *b, size_t n)
{
	if (!n || reserve(o, n))
		return;
	memcpy(o->p + o->len, b, n);
	o->len += n;
}

void mlw_put_u8(struct mlw_out *o, uint8_t v)
{
	mlw_put_bytes(o, &v, 1);
}

void mlw_put_u16(struct mlw_out *o, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	mlw_put_bytes(o, b, 2);
}

void mlw_put_u64(struct mlw_out *o, uint64_t v)
{
	uint8_t b[8];
	int i;

	for (i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	mlw_put_bytes(o, b, 8);
}

void mlw_put_var(struct mlw_out *o, uint64_t v)
{
	uint8_t b[10];

	mlw_put_bytes(o, b, vclock_put_uvarint(b, sizeof(b), v));
}

void mlw_put_lbytes(struct mlw_out *o, const void *b, size_t n)
{
	mlw_put_var(o, n);
	mlw_put_bytes(o, b, n);
}

void mlw_in_init(struct mlw_in *in, const void *buf, size_t len)
{
	in->p = buf;
	in->len = len;
	in->off = 0;
	in->err = 0;
}

static const uint8_t *take(struct mlw_in *in, size_t n)
{
	const uint8_t *p;

	if (in->err || n > in->len - in->off) {
		in->err = -EBADMSG;
		return NULL;
	}
	p = in->p + in->off;
	in->off += n;
	return p;
}

uint8_t mlw_get_u8(struct mlw_in *in)
{
	const uint8_t *p = take(in, 1);

	return p ? p[0] : 0;
}

uint16_t mlw_get_u16(struct mlw_in *in)
{
	const uint8_t *p = take(in, 2);

	return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

uint64_t mlw_get_u64(struct mlw_in *in)
{
	const uint8_t *p = take(in, 8);
	uint64_t v = 0;
	int i;

	if (!p)
		return 0;
	for (i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

uint64_t mlw_get_var(struct mlw_in *in)
{
	uint64_t v = 0;
	size_t k;

	if (in->err)
		return 0;
	k = vclock_get_uvarint(in->p + in->off, in->len - in->off, &v);
	if (!k) {
		in->err = -EBADMSG;
		return 0;
	}
	in->off += k;
	return v;
}

const void *mlw_get_lbytes(struct mlw_in *in, size_t max, size_t *n)
{
	uint64_t len = mlw_get_var(in);
	const uint8_t *p;

	*n = 0;
	if (in->err)
		return NULL;
	if (len > max) {
		in->err = -EBADMSG;
		return NULL;
	}
	p = take(in, (size_t)len);
	if (!p)
		return NULL;
	*n = (size_t)len;
	/* A zero-length field still yields a non-NULL pointer. */
	return p;
}

int mlw_in_done(const struct mlw_in *in)
{
	return in->err || in->off != in->len ? -EBADMSG : 0;
}

uint64_t mlw_mix(uint64_t x)
{
	/* splitmix64 finaliser (Steele, Lea, Flood, "Fast splittable
	 * pseudorandom number generators", 2014). */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

uint64_t mlw_hash(const void *buf, size_t len, uint64_t seed)
{
	const uint8_t *p = buf;
	uint64_t h = 0xcbf29ce484222325ull ^ mlw_mix(seed);
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return mlw_mix(h ^ len);
}

/* ---- ext ----------------------------------------------------------------- */

int ml_ext_encode(const struct ml_ext *x, uint8_t *buf, size_t cap)
{
	size_t off = 2, k;
	int r;

	if (cap < 2)
		return -ENOSPC;
	buf[0] = ML_EXT_FORMAT;
	buf[1] = (uint8_t)(x->flags & ML_V_TOMBSTONE);
	k = vclock_put_uvarint(buf + off, cap - off, x->origin);
	if (!k)
		return -ENOSPC;
	off += k;
	k = vclock_put_uvarint(buf + off, cap - off, x->ts);
	if (!k)
		return -ENOSPC;
	off += k;
	r = vclock_encode(&x->clock, x->ts, buf + off, cap - off);
	if (r < 0)
		return r;
	return (int)(off + (size_t)r);
}

int ml_ext_decode(const void *buf, size_t len, struct ml_ext *x)
{
	const uint8_t *p = buf;
	uint64_t origin, ts;
	size_t off = 2, k;
	int r;

	if (!buf || len < 2 || p[0] != ML_EXT_FORMAT || (p[1] & ~ML_V_TOMBSTONE))
		return -EBADMSG;
	x->flags = p[1];
	k = vclock_get_uvarint(p + off, len - off, &origin);
	if (!k || origin >= ML_MAX_NODES)
		return -EBADMSG;
	off += k;
	k = vclock_get_uvarint(p + off, len - off, &ts);
	if (!k || !ts)
		return -EBADMSG;
	off += k;
	r = vclock_decode(p + off, len - off, ts, &x->clock);
	if (r < 0 || off + (size_t)r != len)
		return -EBADMSG;
	x->origin = (uint32_t)origin;
	x->ts = ts;
	return 0;
}

/* ---- resolution ----------------------------------------------------------- */

/* Last-writer-wins order of two writes: timestamp, then origin id. Returns
 * 1 when a is the later write. (origin, ts) names a write, so equality means
 * the same write. */
static int lww_later(const struct ml_ext *a, const struct ml_ext *b)
{
	if (a->ts != b->ts)
		return a->ts > b->ts;
	return a->origin > b->origin;
}

int ml_resolve(const struct ml_ext *a, const struct ml_ext *b,
	       struct ml_ext *merged, int *concurrent)
{
	enum vclock_order o = vclock_compare(&a->clock, &b->clock);
	int same_write = a->origin == b->origin && a->ts == b->ts;
	int win_b;

	*concurrent = 0;
	switch (o) {
	case VCLOCK_AFTER:
		*merged = *a;
		return 0;
	case VCLOCK_BEFORE:
		*merged = *b;
		return 1;
	case VCLOCK_EQUAL:
	case VCLOCK_CONCURRENT:
		/* Dynamo would keep both as siblings; kvfs resolves at once:
		 * the later write by hybrid timestamp wins, ties go to the
		 * larger node id, so every node picks the same one. Equal
		 * clocks of different writes cannot arise from this protocol,
		 * but if they did the same rule still converges. The winner
		 * takes the merged clock so it dominates both: any node that
		 * later sees either input recognises it as old. */
		win_b = lww_later(b, a);
		*merged = win_b ? *b : *a;
		vclock_merge(&merged->clock, win_b ? &a->clock : &b->clock);
		*concurrent = o == VCLOCK_CONCURRENT && !same_write;
		return win_b;
	}
	return 0;
}
