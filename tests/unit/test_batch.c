/* test_batch.c — batch encoding round trip, malformed input, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/batch.h"
#include "store/store.h"

static struct kv_op sample_ops[3];

static void make_sample(struct kv_batch *b)
{
	static const char val[] = "hello world";
	static const char ext[] = { 1, 2, 3, 4 };

	memset(sample_ops, 0, sizeof sample_ops);
	sample_ops[0] = (struct kv_op){ .kind = KV_PUT, .flags = 0, .key = "dir/file", .klen = 8,
		.val = val, .vlen = sizeof val, .ext = ext, .ext_len = sizeof ext,
		.meta = { .mode = 0100644, .uid = 1000, .gid = 100, .mtime_ns = -5,
			  .ctime_ns = 1700000000123456789ll } };
	sample_ops[1] = (struct kv_op){ .kind = KV_DEL, .key = "old", .klen = 3 };
	sample_ops[2] = (struct kv_op){ .kind = KV_META, .key = "dir/", .klen = 4,
		.meta = { .mode = 040755, .uid = 1, .gid = 2, .mtime_ns = 3, .ctime_ns = 4 } };
	b->ops = sample_ops;
	b->n = 3;
}

static void encoded_batch_decodes_to_the_same_operations(void **state)
{
	struct kv_batch b;
	struct kv_op *ops;
	uint32_t n;
	void *buf;
	size_t len;

	(void)state;
	make_sample(&b);
	assert_int_equal(batch_check(&b), 0);
	assert_int_equal(kv_batch_encode(&b, &buf, &len), 0);
	assert_int_equal(len, batch_encoded_size(&b));
	assert_int_equal(kv_batch_decode(buf, len, &ops, &n), 0);
	assert_int_equal(n, 3);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(ops[i].kind, sample_ops[i].kind);
		assert_int_equal(ops[i].klen, sample_ops[i].klen);
		assert_memory_equal(ops[i].key, sample_ops[i].key, ops[i].klen);
		assert_int_equal(ops[i].flags, sample_ops[i].flags);
		assert_int_equal(ops[i].vlen, sample_ops[i].vlen);
		if (ops[i].vlen)
			assert_memory_equal(ops[i].val, sample_ops[i].val, ops[i].vlen);
		assert_int_equal(ops[i].ext_len, sample_ops[i].ext_len);
		if (ops[i].ext_len)
			assert_memory_equal(ops[i].ext, sample_ops[i].ext, ops[i].ext_len);
		assert_memory_equal(&ops[i].meta, &sample_ops[i].meta, sizeof ops[i].meta);
	}
	free(ops);
	free(buf);
}

static void empty_batch_round_trips(void **state)
{
	struct kv_batch b = { .ops = NULL, .n = 0 };
	struct kv_op *ops;
	uint32_t n = 7;
	void *buf;
	size_t len;

	(void)state;
	assert_int_equal(kv_batch_encode(&b, &buf, &len), 0);
	assert_int_equal(len, BATCH_HDR_SIZE);
	assert_int_equal(kv_batch_decode(buf, len, &ops, &n), 0);
	assert_int_equal(n, 0);
	free(ops);
	free(buf);
}

static void every_truncation_and_extension_is_rejected(void **state)
{
	struct kv_batch b;
	struct kv_op *ops;
	uint32_t n;
	unsigned char *buf, *big;
	size_t len;

	(void)state;
	make_sample(&b);
	assert_int_equal(kv_batch_encode(&b, (void **)&buf, &len), 0);
	for (size_t l = 0; l < len; l++)
		assert_int_equal(kv_batch_decode(buf, l, &ops, &n), -EBADMSG);
	big = malloc(len + 1);
	memcpy(big, buf, len);
	big[len] = 0;
	assert_int_equal(kv_batch_decode(big, len + 1, &ops, &n), -EBADMSG);
	free(big);
	free(buf);
}

static void corrupted_fields_are_rejected(void **state)
{
	struct kv_batch b;
	struct kv_op *ops;
	uint32_t n;
	unsigned char *buf;
	size_t len;
	/* offset in the encoding, value to write */
	static const struct { size_t off; unsigned char v; } cases[] = {
		{ 0, 2 },                       /* version */
		{ 1, 1 },                       /* reserved */
		{ 4, 0xff },                    /* n too large */
		{ BATCH_HDR_SIZE + 0, 9 },      /* kind */
		{ BATCH_HDR_SIZE + 1, 1 },      /* reserved */
		{ BATCH_HDR_SIZE + 2, 0 },      /* klen low byte -> 0 */
		{ BATCH_HDR_SIZE + 11, 0x80 },  /* vlen huge */
		{ BATCH_HDR_SIZE + 15, 0x01 },  /* ext_len huge */
	};

	(void)state;
	make_sample(&b);
	assert_int_equal(kv_batch_encode(&b, (void **)&buf, &len), 0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		unsigned char *c = malloc(len);

		memcpy(c, buf, len);
		c[cases[i].off] = cases[i].v;
		assert_int_equal(kv_batch_decode(c, len, &ops, &n), -EBADMSG);
		free(c);
	}
	/* A delete carrying a value is malformed too. */
	{
		struct kv_op del = { .kind = KV_DEL, .key = "k", .klen = 1 };
		struct kv_batch db = { .ops = &del, .n = 1 };
		unsigned char *d;
		size_t dl;

		assert_int_equal(kv_batch_encode(&db, (void **)&d, &dl), 0);
		d[BATCH_HDR_SIZE + 4] = 1; /* flags */
		assert_int_equal(kv_batch_decode(d, dl, &ops, &n), -EBADMSG);
		free(d);
	}
	free(buf);
}

static void random_garbage_never_crashes_the_decoder(void **state)
{
	unsigned char buf[256];
	uint64_t seed = 42, x = seed;
	struct kv_op *ops;
	uint32_t n;

	(void)state;
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(x % sizeof buf);

		for (size_t i = 0; i < len; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (unsigned char)x;
		}
		if (len > 8) { /* make the header plausible half of the time */
			buf[0] = 1;
			buf[1] = buf[2] = buf[3] = 0;
			buf[4] = (unsigned char)(x & 3);
			buf[5] = buf[6] = buf[7] = 0;
		}
		if (kv_batch_decode(buf, len, &ops, &n) == 0)
			free(ops);
	}
}

static void limits_of_store_h_are_enforced(void **state)
{
	struct kv_op op = { .kind = KV_PUT, .key = "k", .klen = 1, .val = "v", .vlen = 1 };
	struct kv_batch b = { .ops = &op, .n = 1 };

	(void)state;
	assert_int_equal(batch_check(&b), 0);
	op.vlen = KV_VALUE_MAX + 1;
	assert_int_equal(batch_check(&b), -EFBIG);
	op.vlen = 1;
	op.ext = "x";
	op.ext_len = KV_EXT_MAX + 1;
	assert_int_equal(batch_check(&b), -EINVAL);
	op.ext_len = 0;
	op.key = "a//b";
	op.klen = 4;
	assert_int_equal(batch_check(&b), -EINVAL);
	op.key = "k";
	op.klen = 1;
	op.kind = 9;
	assert_int_equal(batch_check(&b), -EINVAL);
	op.kind = KV_PUT;
	b.n = KV_BATCH_MAX + 1;
	assert_int_equal(batch_check(&b), -E2BIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(encoded_batch_decodes_to_the_same_operations),
		cmocka_unit_test(empty_batch_round_trips),
		cmocka_unit_test(every_truncation_and_extension_is_rejected),
		cmocka_unit_test(corrupted_fields_are_rejected),
		cmocka_unit_test(random_garbage_never_crashes_the_decoder),
		cmocka_unit_test(limits_of_store_h_are_enforced),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
