/*
 * vclock.c — version vectors, see vclock.h.
 */
#include <errno.h>
#include <string.h>

#include "cluster/vclock.h"

void vclock_init(struct vclock *v)
{
	v->n = 0;
}

static int find(const struct vclock *v, uint32_t id, uint32_t *pos)
{
	uint32_t lo = 0, hi = v->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (v->e[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return lo < v->n && v->e[lo].id == id;
}

uint64_t vclock_get(const struct vclock *v, uint32_t id)
{
	uint32_t pos;

	return find(v, id, &pos) ? v->e[pos].ctr : 0;
}

int vclock_set(struct vclock *v, uint32_t id, uint64_t ctr)
{
	uint32_t pos;

	if (id >= VCLOCK_MAX_NODES)
		return -EINVAL;
	if (find(v, id, &pos)) {
		if (ctr) {
			v->e[pos].ctr = ctr;
		} else {
			memmove(&v->e[pos], &v->e[pos + 1], (v->n - pos - 1) * sizeof(v->e[0]));
			v->n--;
		}
		return 0;
	}
	if (!ctr)
		return 0;
	/* n < VCLOCK_MAX_NODES holds: ids are unique and below the bound. */
	memmove(&v->e[pos + 1], &v->e[pos], (v->n - pos) * sizeof(v->e[0]));
	v->e[pos].id = id;
	v->e[pos].ctr = ctr;
	v->n++;
	return 0;
}

enum vclock_order vclock_compare(const struct vclock *a, const struct vclock *b)
{
	int a_more = 0, b_more = 0; /* some entry of a (b) exceeds the other's */
	uint32_t i = 0, j = 0;

	/* Merge walk over the two sorted arrays; a missing entry counts as 0. */
	while (i < a->n || j < b->n) {
		if (j >= b->n || (i < a->n && a->e[i].id < b->e[j].id)) {
			a_more = 1;
			i++;
		} else if (i >= a->n || b->e[j].id < a->e[i].id) {
			b_more = 1;
			j++;
		} else {
			if (a->e[i].ctr > b->e[j].ctr)
				a_more = 1;
			else if (a->e[i].ctr < b->e[j].ctr)
				b_more = 1;
			i++;
			j++;
		}
	}
	if (a_more && b_more)
		return VCLOCK_CONCURRENT;
	if (a_more)
		return VCLOCK_AFTER;
	if (b_more)
		return VCLOCK_BEFORE;
	return VCLOCK_EQUAL;
}

void vclock_merge(struct vclock *dst, const struct vclock *src)
{
	struct vclock out;
	uint32_t i = 0, j = 0;

	out.n = 0;
	while (i < dst->n || j < src->n) {
		if (j >= src->n || (i < dst->n && dst->e[i].id < src->e[j].id)) {
			out.e[out.n++] = dst->e[i++];
		} else if (i >= dst->n || src->e[j].id < dst->e[i].id) {
			out.e[out.n++] = src->e[j++];
		} else {
			out.e[out.n] = dst->e[i];
			if (src->e[j].ctr > out.e[out.n].ctr)
				out.e[out.n].ctr = src->e[j].ctr;
			out.n++;
			i++;
			j++;
		}
	}
	dst->n = out.n;
	memcpy(dst->e, out.e, out.n * sizeof(out.e[0]));
}

const char *vclock_order_name(enum vclock_order o)
{
	switch (o) {
	case VCLOCK_EQUAL:      return "equal";
	case VCLOCK_BEFORE:     return "before";
	case VCLOCK_AFTER:      return "after";
	case VCLOCK_CONCURRENT: return "concurrent";
	}
	return "?";
}

size_t vclock_put_uvarint(uint8_t *buf, size_t cap, uint64_t x)
{
	size_t n = 0;

	do {
		if (n >= cap)
			return 0;
		buf[n++] = (uint8_t)((x & 0x7f) | (x > 0x7f ? 0x80 : 0));
		x >>= 7;
	} while (x);
	return n;
}

size_t vclock_get_uvarint(const uint8_t *buf, size_t len, uint64_t *x)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len && i < 10; i++) {
		uint64_t b = buf[i] & 0x7f;
		/* The tenth byte may only carry the top bit of 64. */
		if (i == 9 && (buf[i] & 0xfe))
			return 0;
		v |= b << (7 * i);
		if (!(buf[i] & 0x80)) {
			*x = v;
			return i + 1;
		}
	}
	return 0;
}

static uint64_t zigzag(int64_t d)
{
	return ((uint64_t)d << 1) ^ (uint64_t)(d >> 63);
}

static int64_t unzigzag(uint64_t z)
{
	return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

int vclock_encode(const struct vclock *v, uint64_t base, uint8_t *buf, size_t cap)
{
	size_t off = 0, k;
	uint32_t i;

	k = vclock_put_uvarint(buf, cap, v->n);
	if (!k)
		return -ENOSPC;
	off += k;
	for (i = 0; i < v->n; i++) {
		/* base - ctr wraps modulo 2^64; as a signed value it is the true
		 * distance whenever that fits, and decoding undoes it exactly. */
		k = vclock_put_uvarint(buf + off, cap - off, v->e[i].id);
		if (!k)
			return -ENOSPC;
		off += k;
		k = vclock_put_uvarint(buf + off, cap - off, zigzag((int64_t)(base - v->e[i].ctr)));
		if (!k)
			return -ENOSPC;
		off += k;
	}
	return (int)off;
}

int vclock_decode(const uint8_t *buf, size_t len, uint64_t base, struct vclock *v)
{
	uint64_t n, id, z, ctr;
	size_t off = 0, k;
	uint32_t i;

	k = vclock_get_uvarint(buf, len, &n);
	if (!k || n > VCLOCK_MAX_NODES)
		return -EBADMSG;
	off += k;
	v->n = 0;
	for (i = 0; i < n; i++) {
		k = vclock_get_uvarint(buf + off, len - off, &id);
		if (!k || id >= VCLOCK_MAX_NODES || (i > 0 && id <= v->e[i - 1].id))
			return -EBADMSG;
		off += k;
		k = vclock_get_uvarint(buf + off, len - off, &z);
		if (!k)
			return -EBADMSG;
		off += k;
		ctr = base - (uint64_t)unzigzag(z);
		if (!ctr)
			return -EBADMSG;
		v->e[i].id = (uint32_t)id;
		v->e[i].ctr = ctr;
		v->n = i + 1;
	}
	return (int)off;
}
