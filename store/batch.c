#include "store/batch.h"
#include "store/key.h"
#include "store/le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t batch_encoded_size(const struct kv_batch *b)
{
	size_t n = BATCH_HDR_SIZE;

	for (uint32_t i = 0; i < b->n; i++) {
		const struct kv_op *op = &b->ops[i];

		n += BATCH_OP_SIZE + op->klen;
		if (op->kind != KV_DEL)
			n += op->ext_len;
		if (op->kind == KV_PUT)
			n += op->vlen;
	}
	return n;
}

int batch_check(const struct kv_batch *b)
{
	int rc;

	if (b->n > KV_BATCH_MAX)
		return -E2BIG;
	if (b->n && !b->ops)
		return -EINVAL;
	for (uint32_t i = 0; i < b->n; i++) {
		const struct kv_op *op = &b->ops[i];

		if (op->kind != KV_PUT && op->kind != KV_DEL && op->kind != KV_META)
			return -EINVAL;
		if (!op->key)
			return -EINVAL;
		rc = key_check(op->key, op->klen);
		if (rc)
			return rc;
		if (op->kind == KV_PUT) {
			if (op->vlen > KV_VALUE_MAX)
				return -EFBIG;
			if (op->vlen && !op->val)
				return -EINVAL;
		}
		if (op->kind != KV_DEL) {
			if (op->ext_len > KV_EXT_MAX)
				return -EINVAL;
			if (op->ext_len && !op->ext)
				return -EINVAL;
		}
	}
	return 0;
}

unsigned char *batch_encode_into(const struct kv_batch *b, unsigned char *p)
{
	p[0] = BATCH_VERSION;
	p[1] = 0;
	le_put16(p + 2, 0);
	le_put32(p + 4, b->n);
	p += BATCH_HDR_SIZE;
	for (uint32_t i = 0; i < b->n; i++) {
		const struct kv_op *op = &b->ops[i];
		int del = op->kind == KV_DEL, put = op->kind == KV_PUT;
		uint32_t vlen = put ? op->vlen : 0, elen = del ? 0 : op->ext_len;

		p[0] = op->kind;
		p[1] = 0;
		le_put16(p + 2, (uint16_t)op->klen);
		le_put32(p + 4, put ? op->flags : 0);
		le_put32(p + 8, vlen);
		le_put32(p + 12, elen);
		le_put32(p + 16, del ? 0 : op->meta.mode);
		le_put32(p + 20, del ? 0 : op->meta.uid);
		le_put32(p + 24, del ? 0 : op->meta.gid);
		le_put64(p + 28, del ? 0 : (uint64_t)op->meta.mtime_ns);
		le_put64(p + 36, del ? 0 : (uint64_t)op->meta.ctime_ns);
		p += BATCH_OP_SIZE;
		memcpy(p, op->key, op->klen);
		p += op->klen;
		if (elen)
			memcpy(p, op->ext, elen);
		p += elen;
		if (vlen)
			memcpy(p, op->val, vlen);
		p += vlen;
	}
	return p;
}

int batch_encode_room(const struct kv_batch *b, size_t room, void **out, size_t *outlen)
{
	size_t len = room + batch_encoded_size(b);
	unsigned char *buf;

	if (b->n > KV_BATCH_MAX)
		return -E2BIG;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	batch_encode_into(b, buf + room);
	*out = buf;
	*outlen = len;
	return 0;
}

int kv_batch_encode(const struct kv_batch *b, void **out, size_t *outlen)
{
	return batch_encode_room(b, 0, out, outlen);
}

int kv_batch_decode(const void *buf, size_t len, struct kv_op **ops, uint32_t *n)
{
	return batch_decode_buf(buf, len, NULL, 0, ops, n);
}

int batch_decode_buf(const void *buf, size_t len, struct kv_op *room, uint32_t room_n,
		     struct kv_op **ops, uint32_t *n)
{
	const unsigned char *p = buf, *end = p + len;
	struct kv_op *v;
	uint32_t cnt;

	if (len < BATCH_HDR_SIZE || p[0] != BATCH_VERSION || p[1] || le_get16(p + 2))
		return -EBADMSG;
	cnt = le_get32(p + 4);
	/* Bound the allocation by what the input can hold before trusting n. */
	if (cnt > KV_BATCH_MAX || cnt > (len - BATCH_HDR_SIZE) / BATCH_OP_SIZE)
		return -EBADMSG;
	if (cnt && cnt <= room_n) {
		v = room;
		memset(v, 0, cnt * sizeof *v);
	} else {
		v = calloc(cnt ? cnt : 1, sizeof *v);
		if (!v)
			return -ENOMEM;
	}
	p += BATCH_HDR_SIZE;
	for (uint32_t i = 0; i < cnt; i++) {
		struct kv_op *op = &v[i];
		size_t need;

		if ((size_t)(end - p) < BATCH_OP_SIZE)
			goto bad;
		op->kind = p[0];
		op->klen = le_get16(p + 2);
		op->flags = le_get32(p + 4);
		op->vlen = le_get32(p + 8);
		op->ext_len = le_get32(p + 12);
		op->meta.mode = le_get32(p + 16);
		op->meta.uid = le_get32(p + 20);
		op->meta.gid = le_get32(p + 24);
		op->meta.mtime_ns = (int64_t)le_get64(p + 28);
		op->meta.ctime_ns = (int64_t)le_get64(p + 36);
		if (p[1] || op->klen == 0 || op->klen > KV_KEY_MAX ||
		    op->ext_len > KV_EXT_MAX || op->vlen > KV_VALUE_MAX)
			goto bad;
		switch (op->kind) {
		case KV_PUT:
			break;
		case KV_DEL:
			if (op->ext_len || op->flags || op->vlen)
				goto bad;
			break;
		case KV_META:
			if (op->flags || op->vlen)
				goto bad;
			break;
		default:
			goto bad;
		}
		p += BATCH_OP_SIZE;
		need = (size_t)op->klen + op->ext_len + op->vlen;
		if ((size_t)(end - p) < need)
			goto bad;
		op->key = (const char *)p;
		p += op->klen;
		op->ext = op->ext_len ? p : NULL;
		p += op->ext_len;
		op->val = op->vlen ? p : NULL;
		p += op->vlen;
	}
	if (p != end)
		goto bad;
	*ops = v;
	*n = cnt;
	return 0;
bad:
	if (v != room)
		free(v);
	return -EBADMSG;
}
