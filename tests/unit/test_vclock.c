/*
 * test_vclock.c — version vectors, the hybrid logical clock, the ext blob,
 * pure resolution and the masterless frame decoders' robustness.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/hlc.h"
#include "cluster/ml.h"
#include "cluster/vclock.h"

static struct vclock vc(int n, ...)
{
	struct vclock v;
	va_list ap;
	int i;

	vclock_init(&v);
	va_start(ap, n);
	for (i = 0; i < n; i++) {
		unsigned id = va_arg(ap, unsigned);
		uint64_t c = va_arg(ap, uint64_t);
		assert_int_equal(vclock_set(&v, id, c), 0);
	}
	va_end(ap);
	return v;
}

static void compare_orders_vectors(void **state)
{
	struct vclock a = vc(2, 0u, (uint64_t)3, 2u, (uint64_t)1);
	struct vclock b = vc(2, 0u, (uint64_t)3, 2u, (uint64_t)2);
	struct vclock c = vc(2, 1u, (uint64_t)1, 2u, (uint64_t)1);
	struct vclock e;

	(void)state;
	vclock_init(&e);
	assert_int_equal(vclock_compare(&a, &a), VCLOCK_EQUAL);
	assert_int_equal(vclock_compare(&a, &b), VCLOCK_BEFORE);
	assert_int_equal(vclock_compare(&b, &a), VCLOCK_AFTER);
	assert_int_equal(vclock_compare(&a, &c), VCLOCK_CONCURRENT);
	assert_int_equal(vclock_compare(&e, &a), VCLOCK_BEFORE);
	assert_int_equal(vclock_compare(&e, &e), VCLOCK_EQUAL);
	assert_string_equal(vclock_order_name(VCLOCK_CONCURRENT), "concurrent");
}

static void merge_is_the_least_upper_bound(void **state)
{
	struct vclock a = vc(2, 0u, (uint64_t)5, 3u, (uint64_t)1);
	struct vclock b = vc(3, 1u, (uint64_t)7, 3u, (uint64_t)4, 63u, (uint64_t)9);
	struct vclock m = a;

	(void)state;
	vclock_merge(&m, &b);
	assert_int_equal(m.n, 4);
	assert_int_equal(vclock_get(&m, 0), 5);
	assert_int_equal(vclock_get(&m, 1), 7);
	assert_int_equal(vclock_get(&m, 3), 4);
	assert_int_equal(vclock_get(&m, 63), 9);
	assert_int_equal(vclock_get(&m, 2), 0);
	assert_int_equal(vclock_compare(&m, &a), VCLOCK_AFTER);
	assert_int_equal(vclock_compare(&m, &b), VCLOCK_AFTER);
	assert_int_equal(vclock_set(&m, 64, 1), -EINVAL);
	assert_int_equal(vclock_set(&m, 1, 0), 0); /* removes */
	assert_int_equal(m.n, 3);
}

static void encoding_round_trips_and_rejects_garbage(void **state)
{
	struct vclock a = vc(3, 0u, (uint64_t)1000, 5u, (uint64_t)2000, 63u, ~(uint64_t)0), d;
	uint8_t buf[VCLOCK_ENCODED_MAX];
	int n, k;

	(void)state;
	n = vclock_encode(&a, 2000, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(vclock_decode(buf, (size_t)n, 2000, &d), n);
	assert_int_equal(vclock_compare(&a, &d), VCLOCK_EQUAL);
	/* Every truncation fails cleanly. */
	for (k = 0; k < n; k++)
		assert_true(vclock_decode(buf, (size_t)k, 2000, &d) < 0 ||
			    vclock_decode(buf, (size_t)k, 2000, &d) <= k);
	assert_int_equal(vclock_encode(&a, 2000, buf, 3), -ENOSPC);
	/* Unsorted ids are not canonical. */
	buf[0] = 2; buf[1] = 5; buf[2] = 0; buf[3] = 1; buf[4] = 0;
	assert_int_equal(vclock_decode(buf, 5, 10, &d), -EBADMSG);
	/* An id out of range. */
	buf[0] = 1; buf[1] = 64; buf[2] = 0;
	assert_int_equal(vclock_decode(buf, 3, 10, &d), -EBADMSG);
	/* A zero counter (base - delta == 0). */
	buf[0] = 1; buf[1] = 1; buf[2] = 20; /* zigzag 20 = +10 */
	assert_int_equal(vclock_decode(buf, 3, 10, &d), -EBADMSG);
}

static void hlc_is_monotonic_and_follows_received_stamps(void **state)
{
	struct hlc h;
	uint64_t a, b, c, d;

	(void)state;
	hlc_init(&h, 0);
	a = hlc_now(&h, 1000);
	assert_int_equal(hlc_ms(a), 1000);
	assert_int_equal(hlc_logical(a), 0);
	b = hlc_now(&h, 1000);          /* same millisecond: logical + 1 */
	assert_int_equal(b, a + 1);
	c = hlc_now(&h, 999);           /* the wall clock stepped back */
	assert_true(c > b);
	d = hlc_update(&h, hlc_from_ms(5000) + 7, 1001); /* a peer ahead */
	assert_true(d > hlc_from_ms(5000) + 7);
	assert_true(hlc_now(&h, 1002) > d);
	assert_int_equal(hlc_ms(hlc_now(&h, 9000)), 9000);
	/* A restart floor keeps timestamps from repeating. */
	hlc_init(&h, hlc_from_ms(9000) + 3);
	assert_true(hlc_now(&h, 10) > hlc_from_ms(9000) + 3);
}

static void ext_round_trips_and_rejects_trailing_bytes(void **state)
{
	struct ml_ext x = { .flags = ML_V_TOMBSTONE, .origin = 4, .ts = hlc_from_ms(1700000000000ull) + 5 }, y;
	uint8_t buf[ML_EXT_MAX + 1];
	int n;

	(void)state;
	x.clock = vc(2, 1u, hlc_from_ms(1699999999000ull), 4u, x.ts);
	n = ml_ext_encode(&x, buf, sizeof(buf));
	assert_true(n > 0 && n < 40); /* compact: two entries in well under 40 bytes */
	assert_int_equal(ml_ext_decode(buf, (size_t)n, &y), 0);
	assert_int_equal(y.flags, ML_V_TOMBSTONE);
	assert_int_equal(y.origin, 4);
	assert_int_equal(y.ts, x.ts);
	assert_int_equal(vclock_compare(&x.clock, &y.clock), VCLOCK_EQUAL);
	buf[n] = 0;
	assert_int_equal(ml_ext_decode(buf, (size_t)n + 1, &y), -EBADMSG);
	buf[0] = 2;
	assert_int_equal(ml_ext_decode(buf, (size_t)n, &y), -EBADMSG);
	assert_int_equal(ml_ext_decode(NULL, 0, &y), -EBADMSG);
}

static struct ml_ext ext(uint32_t origin, uint64_t ts, struct vclock c)
{
	struct ml_ext x = { .flags = 0, .origin = origin, .ts = ts, .clock = c };

	return x;
}

static void dominating_version_wins_whatever_its_timestamp(void **state)
{
	/* b follows a causally; give a a LARGER timestamp to prove the clock
	 * decides, not the timestamp. */
	struct ml_ext a = ext(0, 900, vc(1, 0u, (uint64_t)900));
	struct ml_ext b = ext(1, 100, vc(2, 0u, (uint64_t)900, 1u, (uint64_t)100));
	struct ml_ext m;
	int conc;

	(void)state;
	assert_int_equal(ml_resolve(&a, &b, &m, &conc), 1);
	assert_false(conc);
	assert_int_equal(m.origin, 1);
	assert_int_equal(ml_resolve(&b, &a, &m, &conc), 0);
	assert_int_equal(vclock_compare(&m.clock, &b.clock), VCLOCK_EQUAL);
}

static void concurrent_versions_resolve_by_timestamp_then_node_id(void **state)
{
	struct ml_ext a = ext(0, 500, vc(1, 0u, (uint64_t)500));
	struct ml_ext b = ext(1, 400, vc(1, 1u, (uint64_t)400));
	struct ml_ext t0 = ext(0, 700, vc(1, 0u, (uint64_t)700));
	struct ml_ext t2 = ext(2, 700, vc(1, 2u, (uint64_t)700));
	struct ml_ext m1, m2;
	int c1, c2;

	(void)state;
	assert_int_equal(ml_resolve(&a, &b, &m1, &c1), 0);
	assert_int_equal(ml_resolve(&b, &a, &m2, &c2), 1);
	assert_true(c1 && c2);
	/* Same winner, same merged clock, whichever side resolves. */
	assert_int_equal(m1.origin, 0);
	assert_int_equal(m2.origin, 0);
	assert_int_equal(vclock_compare(&m1.clock, &m2.clock), VCLOCK_EQUAL);
	assert_int_equal(vclock_compare(&m1.clock, &a.clock), VCLOCK_AFTER);
	assert_int_equal(vclock_compare(&m1.clock, &b.clock), VCLOCK_AFTER);
	/* Equal timestamps: the larger node id wins, deterministically. */
	assert_int_equal(ml_resolve(&t0, &t2, &m1, &c1), 1);
	assert_int_equal(ml_resolve(&t2, &t0, &m2, &c2), 0);
	assert_int_equal(m1.origin, 2);
	assert_int_equal(m2.origin, 2);
}

static void same_write_with_different_merges_is_not_a_conflict(void **state)
{
	struct ml_ext a = ext(0, 500, vc(2, 0u, (uint64_t)500, 1u, (uint64_t)7));
	struct ml_ext b = ext(0, 500, vc(2, 0u, (uint64_t)500, 2u, (uint64_t)9));
	struct ml_ext m;
	int conc;

	(void)state;
	ml_resolve(&a, &b, &m, &conc);
	assert_false(conc);
	assert_int_equal(m.clock.n, 3);
}

/* ---- decoders under garbage ------------------------------------------------ */

struct fake {
	uint64_t now, rnd, seq;
	int      sent;
};

static int f_send(void *ctx, unsigned to, uint16_t type, const void *b, size_t n)
{
	struct fake *f = ctx;

	(void)to; (void)type; (void)b; (void)n;
	f->sent++;
	return 0;
}
static uint64_t f_now(void *ctx) { return ((struct fake *)ctx)->now; }
static uint64_t f_random(void *ctx)
{
	struct fake *f = ctx;

	f->rnd = f->rnd * 6364136223846793005ull + 1442695040888963407ull;
	return f->rnd >> 11;
}
static int f_get(void *ctx, const char *k, size_t n, struct ml_version *v, void **ref)
{
	(void)ctx; (void)k; (void)n; (void)v; (void)ref;
	return -ENOENT;
}
static void f_release(void *ctx, void *ref) { (void)ctx; (void)ref; }
static int f_put(void *ctx, const char *k, size_t n, const struct ml_version *v, uint64_t *seq)
{
	struct fake *f = ctx;

	(void)k; (void)n; (void)v;
	*seq = ++f->seq;
	return 0;
}
static int f_purge(void *ctx, const char *k, size_t n) { (void)ctx; (void)k; (void)n; return 0; }
static uint64_t f_durable(void *ctx) { return ((struct fake *)ctx)->seq; }
static int f_scan(void *ctx, ml_scan_fn fn, void *arg) { (void)ctx; (void)fn; (void)arg; return 0; }

static void garbage_frames_are_counted_not_trusted(void **state)
{
	struct fake f = { .now = 1700000000000ull, .rnd = 42 };
	struct ml_io io = { .ctx = &f, .send = f_send, .now_ms = f_now, .random = f_random,
			    .get = f_get, .release = f_release, .put = f_put, .purge = f_purge,
			    .durable = f_durable, .scan = f_scan };
	struct ml_config cfg = { .self = 0, .n = 3 };
	struct ml_stats st;
	uint8_t buf[600];
	uint16_t t;
	ml *m;
	int i, j;

	(void)state;
	assert_int_equal(ml_new(&cfg, &io, &m), 0);
	assert_int_equal(ml_receive(m, 0, ML_MSG_PUSH, buf, 0), -EINVAL);  /* from self */
	assert_int_equal(ml_receive(m, 3, ML_MSG_PUSH, buf, 0), -EINVAL);  /* no such node */
	assert_int_equal(ml_receive(m, 1, 7, buf, 0), -EINVAL);            /* not ours */
	/* Random payloads of every type, behind a valid ordering header. */
	for (i = 0; i < 20000; i++) {
		size_t len = (size_t)(f_random(&f) % sizeof(buf));
		for (j = 0; j < (int)len; j++)
			buf[j] = (uint8_t)f_random(&f);
		buf[0] = 1;                          /* incarnation 1 */
		if (len > 1)
			buf[1] = (uint8_t)(1 + i % 100); /* seq */
		t = (uint16_t)(ML_MSG_FIRST + (unsigned)(f_random(&f) % (ML_MSG_LAST - ML_MSG_FIRST + 1)));
		assert_int_equal(ml_receive(m, 1 + (unsigned)(i & 1), t, buf, len), 0);
	}
	ml_get_stats(m, &st);
	assert_true(st.bad_msgs > 10000);
	assert_int_equal(st.io_errors, 0);
	ml_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(compare_orders_vectors),
		cmocka_unit_test(merge_is_the_least_upper_bound),
		cmocka_unit_test(encoding_round_trips_and_rejects_garbage),
		cmocka_unit_test(hlc_is_monotonic_and_follows_received_stamps),
		cmocka_unit_test(ext_round_trips_and_rejects_trailing_bytes),
		cmocka_unit_test(dominating_version_wins_whatever_its_timestamp),
		cmocka_unit_test(concurrent_versions_resolve_by_timestamp_then_node_id),
		cmocka_unit_test(same_write_with_different_merges_is_not_a_conflict),
		cmocka_unit_test(garbage_frames_are_counted_not_trusted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
