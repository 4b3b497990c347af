/* test_map.c — the ordered map: ordered and prefix iteration, deletes,
 * replacement, bulk append, a million keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/map.h"
#include "store/rec.h"
#include "store/rtab.h"

static const struct kv_meta meta0;

static kv_rec *mk(const char *key, uint64_t version)
{
	kv_rec *r = rec_new(key, strlen(key), 0, version, &meta0, NULL, 0, key, strlen(key));

	assert_non_null(r);
	return r;
}

static void put(map *m, const char *key, uint64_t version)
{
	kv_rec *old;

	assert_int_equal(map_put(m, mk(key, version), &old), 0);
	kv_rec_unref(old);
}

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

#define NKEYS 3000

static void random_puts_and_deletes_iterate_in_key_order(void **state)
{
	static char keys[NKEYS][24];
	static int present[NKEYS];
	static uint64_t ver[NKEYS];
	char *sorted[NKEYS];
	uint64_t seed = 7, s = seed;
	map *m = map_new(1);
	map_iter it;
	kv_rec *r;
	size_t n = 0, live = 0;

	(void)state;
	memset(present, 0, sizeof present);
	for (int i = 0; i < NKEYS; i++)
		snprintf(keys[i], sizeof keys[i], "k/%llu", (unsigned long long)(rng(&s) % 100000));
	for (int step = 0; step < 40000; step++) {
		int i = (int)(rng(&s) % NKEYS);

		if (rng(&s) % 3) {
			put(m, keys[i], (uint64_t)step + 1);
			/* duplicates in keys[] share state: mark them all */
			for (int j = 0; j < NKEYS; j++)
				if (!strcmp(keys[j], keys[i])) {
					present[j] = 1;
					ver[j] = (uint64_t)step + 1;
				}
		} else {
			kv_rec *d = map_del(m, keys[i], strlen(keys[i]));

			assert_int_equal(d != NULL, present[i]);
			kv_rec_unref(d);
			for (int j = 0; j < NKEYS; j++)
				if (!strcmp(keys[j], keys[i]))
					present[j] = 0;
		}
	}
	for (int i = 0; i < NKEYS; i++) {
		int dup = 0;

		for (int j = 0; j < i; j++)
			if (!strcmp(keys[j], keys[i]))
				dup = 1;
		if (present[i] && !dup)
			sorted[live++] = keys[i];
		r = map_get(m, keys[i], strlen(keys[i]));
		assert_int_equal(r != NULL, present[i]);
		if (r)
			assert_int_equal(kv_rec_version(r), ver[i]);
	}
	qsort(sorted, live, sizeof *sorted, cmpstr);
	assert_int_equal(map_count(m), live);
	for (r = map_seek(m, NULL, 0, 0, &it); r; r = map_iter_next(&it), n++) {
		if (strcmp(rec_key(r), sorted[n]))
			fprintf(stderr, "seed %llu: position %zu is %s, want %s\n",
				(unsigned long long)seed, n, rec_key(r), sorted[n]);
		assert_string_equal(rec_key(r), sorted[n]);
	}
	assert_int_equal(n, live);
	map_free(m);
}

static void prefix_iteration_visits_exactly_the_keys_under_a_prefix(void **state)
{
	static const char *keys[] = { "a", "a/", "a/b", "a/b/c", "a/c", "a0", "ab", "b", "a/b/" };
	static const char *under[] = { "a/", "a/b", "a/b/", "a/b/c", "a/c" };
	map *m = map_new(2);
	map_iter it;
	kv_rec *r;
	size_t n = 0;

	(void)state;
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		put(m, keys[i], i + 1);
	for (r = map_seek(m, "a/", 2, 0, &it); r && !strncmp(rec_key(r), "a/", 2);
	     r = map_iter_next(&it))
		assert_string_equal(rec_key(r), under[n++]);
	assert_int_equal(n, 5);
	/* strict seek skips the key itself; seeking a missing key lands after it */
	r = map_seek(m, "a/b", 3, 1, &it);
	assert_string_equal(rec_key(r), "a/b/");
	r = map_seek(m, "a/bb", 4, 0, &it);
	assert_string_equal(rec_key(r), "a/c");
	assert_null(map_seek(m, "c", 1, 0, &it));
	map_free(m);
}

static void replacing_a_key_returns_the_old_record(void **state)
{
	map *m = map_new(3);
	kv_rec *old;

	(void)state;
	assert_int_equal(map_put(m, mk("x", 1), &old), 0);
	assert_null(old);
	assert_int_equal(map_put(m, mk("x", 2), &old), 0);
	assert_non_null(old);
	assert_int_equal(kv_rec_version(old), 1);
	kv_rec_unref(old);
	assert_int_equal(map_count(m), 1);
	assert_int_equal(kv_rec_version(map_get(m, "x", 1)), 2);
	assert_null(map_del(m, "y", 1));
	map_free(m);
}

static void append_accepts_only_increasing_keys(void **state)
{
	map *m = map_new(4);
	kv_rec *r;

	(void)state;
	assert_int_equal(map_append(m, mk("b", 1)), 0);
	assert_int_equal(map_append(m, mk("c", 1)), 0);
	r = mk("a", 1);
	assert_int_equal(map_append(m, r), -EINVAL);
	kv_rec_unref(r);
	r = mk("c", 1);
	assert_int_equal(map_append(m, r), -EINVAL);
	kv_rec_unref(r);
	put(m, "a", 2); /* invalidates the tail cache */
	assert_int_equal(map_append(m, mk("d", 1)), 0);
	assert_int_equal(map_count(m), 4);
	map_free(m);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void a_million_keys_fit_and_stay_ordered(void **state)
{
	const uint32_t N = 1000000;
	uint64_t seed = 99, s = seed;
	map *m = map_new(5);
	char key[32], prev[32] = "";
	map_iter it;
	kv_rec *r;
	size_t n = 0;
	double t0 = now(), t1, t2;

	(void)state;
	/* Inserted directory by directory (as a file tree is written); random
	 * lookups and deletes follow. */
	for (uint32_t i = 0; i < N; i++) {
		snprintf(key, sizeof key, "dir%04u/file%07u", i / 1000, i);
		put(m, key, i + 1);
	}
	t1 = now();
	assert_int_equal(map_count(m), N);
	for (r = map_seek(m, NULL, 0, 0, &it); r; r = map_iter_next(&it), n++) {
		assert_true(strcmp(prev, rec_key(r)) < 0);
		memcpy(prev, rec_key(r), r->klen + 1u);
	}
	assert_int_equal(n, N);
	for (uint32_t k = 0; k < 100000; k++) {
		uint32_t i = (uint32_t)(rng(&s) % N);

		snprintf(key, sizeof key, "dir%04u/file%07u", i / 1000, i);
		r = map_get(m, key, strlen(key));
		if (!r || kv_rec_version(r) != i + 1)
			fprintf(stderr, "seed %llu: key %s lost\n", (unsigned long long)seed, key);
		assert_non_null(r);
	}
	for (uint32_t i = 0; i < N; i += 2) {
		snprintf(key, sizeof key, "dir%04u/file%07u", i / 1000, i);
		kv_rec_unref(map_del(m, key, strlen(key)));
	}
	assert_int_equal(map_count(m), N / 2);
	snprintf(key, sizeof key, "dir%04u/file%07u", 7u / 1000, 7u);
	assert_non_null(map_get(m, key, strlen(key)));
	snprintf(key, sizeof key, "dir%04u/file%07u", 8u / 1000, 8u);
	assert_null(map_get(m, key, strlen(key)));
	t2 = now();
	printf("1M inserts %.2f s, iterate + 100k random gets + 500k deletes %.2f s\n", t1 - t0,
	       t2 - t1);
	map_free(m);
}

/* Bulk-appended nodes come from chunks: deleting, replacing and inserting
 * between them behaves as for any other node (across several chunks). */
static void appended_nodes_support_deletes_replacements_and_inserts(void **state)
{
	const uint32_t N = 200000;
	map *m = map_new(3);
	char key[32];
	map_iter it;
	kv_rec *r, *old;
	uint32_t n = 0;

	(void)state;
	assert_int_equal(map_reserve(m, N), 0);
	for (uint32_t i = 0; i < N; i++) {
		snprintf(key, sizeof key, "k%07u", i * 2);
		assert_int_equal(map_append(m, mk(key, i)), 0);
	}
	for (uint32_t i = 0; i < N; i++) {
		snprintf(key, sizeof key, "k%07u", i * 2);
		if (i % 3 == 0) {
			r = map_del(m, key, strlen(key));
			assert_non_null(r);
			kv_rec_unref(r);
		} else if (i % 3 == 1) {
			assert_int_equal(map_put(m, mk(key, N + i), &old), 0);
			assert_non_null(old);
			kv_rec_unref(old);
		}
		snprintf(key, sizeof key, "k%07u", i * 2 + 1);
		put(m, key, 2 * N + i);
	}
	for (r = map_seek(m, NULL, 0, 0, &it); r; r = map_iter_next(&it), n++) {
		uint32_t k = (uint32_t)strtoul(rec_key(r) + 1, NULL, 10);

		if (k % 2) {
			assert_int_equal(kv_rec_version(r), 2 * N + k / 2);
		} else {
			assert_int_not_equal(k / 2 % 3, 0);
			assert_int_equal(kv_rec_version(r), k / 2 % 3 == 1 ? N + k / 2 : k / 2);
		}
		assert_ptr_equal(map_get(m, rec_key(r), r->klen), r);
	}
	assert_int_equal(n, map_count(m));
	assert_int_equal(n, N + N - (N + 2) / 3);
	map_free(m);
}

/* map_get goes through the hash index, seeks through the skiplist: after
 * any mix of puts, appends, replacements and deletes (deletes shift probe
 * chains back, also around the end of the table) both agree with a model. */
static void lookups_agree_with_the_ordered_list_after_random_changes(void **state)
{
	/* 127 keys, ~80% present, keep the table at 256 slots and ~40% full:
	 * long probe chains that wrap around its end. */
	static const uint32_t spaces[] = { 127, 1500 };
	static uint64_t model[1500]; /* version + 1 of key i, 0 = absent */

	(void)state;
	for (size_t sp = 0; sp < 2; sp++) {
		const uint32_t SPACE = spaces[sp];
		uint64_t seed = 777 + sp, s = seed;
		map *m = map_new(9);
		char key[32];
		map_iter it;
		kv_rec *r;

		memset(model, 0, sizeof model);
		/* A bulk-loaded start: every fourth key. */
		for (uint32_t i = 0; i < SPACE; i += 4) {
			snprintf(key, sizeof key, "key%05u", i);
			assert_int_equal(map_append(m, mk(key, i)), 0);
			model[i] = i + 1;
		}
		for (uint64_t step = 0; step < 60000; step++) {
			uint32_t i = (uint32_t)(rng(&s) % SPACE);

			snprintf(key, sizeof key, "key%05u", i);
			if (rng(&s) % 5 < (SPACE < 1000 ? 1 : 2)) {
				r = map_del(m, key, strlen(key));
				assert_true(model[i] ? r != NULL : r == NULL);
				kv_rec_unref(r);
				model[i] = 0;
			} else {
				put(m, key, step);
				model[i] = step + 1;
			}
			if (step % (SPACE < 1000 ? 7 : 997) == 0 || step > 59000) {
				size_t n = 0;

				for (uint32_t k = 0; k < SPACE; k++) {
					snprintf(key, sizeof key, "key%05u", k);
					r = map_get(m, key, strlen(key));
					if (!model[k]) {
						assert_null(r);
						continue;
					}
					if (!r || kv_rec_version(r) + 1 != model[k])
						fprintf(stderr, "seed %llu step %llu: key %s wrong\n",
							(unsigned long long)seed,
							(unsigned long long)step, key);
					assert_non_null(r);
					assert_int_equal(kv_rec_version(r) + 1, model[k]);
					assert_ptr_equal(map_seek(m, key, strlen(key), 0, &it), r);
					n++;
				}
				assert_int_equal(n, map_count(m));
			}
		}
		assert_null(map_get(m, "nokey", 5));
		assert_null(map_get(m, "key", 3));
		map_free(m);
	}
}

/* Keys with long shared prefixes (longer than the 16 bytes the recovery
 * table sorts by at once), some of them prefixes of others. */
static void shared_prefix_key(uint64_t *s, char *key, size_t size)
{
	static const char *const dirs[] = {
		"", "d/", "a/very/long/directory/name/shared/by/all/",
		"a/very/long/directory/name/shared/by/all/and/deeper/still/",
	};
	size_t n = (size_t)snprintf(key, size, "%s", dirs[rng(s) % 4]);
	size_t len = 1 + rng(s) % 40;

	for (size_t i = 0; i < len && n + 1 < size; i++)
		key[n++] = "ab/c"[rng(s) % 3 == 0 ? rng(s) % 4 : 0];
	key[n] = '\0';
	if (key[0] == '\0')
		snprintf(key, size, "z");
}

/* Recovery collects operations in the replay table and applies them in key
 * order at the end; the result must equal applying them one by one. */
static void replay_table_flush_equals_applying_ops_in_order(void **state)
{
	for (int round = 0; round < 6; round++) {
		uint64_t seed = 1234 + (uint64_t)round, s = seed;
		map *base = map_new(1), *ref = map_new(2);
		rtab *t = rtab_new();
		char key[128];
		map_iter i1, i2;
		kv_rec *a, *b, *old;
		int64_t tomb;
		size_t n = 0;

		(void)state;
		assert_non_null(base);
		assert_non_null(ref);
		assert_non_null(t);
		if (round % 2)
			assert_int_equal(rtab_reserve(t, 5000), 0);
		/* Rounds 0 and 1 replay into an empty map (the bulk load), the
		 * others on top of a loaded one. */
		for (int i = 0; round >= 2 && i < 2000; i++) {
			shared_prefix_key(&s, key, sizeof key);
			a = mk(key, 1);
			kv_rec_ref(a);
			assert_int_equal(map_put(base, a, &old), 0);
			kv_rec_unref(old);
			assert_int_equal(map_put(ref, a, &old), 0);
			kv_rec_unref(old);
		}
		for (uint64_t v = 2; v < 20000; v++) {
			struct kv_op op = { .kind = (uint8_t)(1 + rng(&s) % 3) };
			uint64_t x = rng(&s);

			shared_prefix_key(&s, key, sizeof key);
			op.key = key;
			op.klen = (uint32_t)strlen(key);
			op.val = &x;
			op.vlen = sizeof x;
			op.meta.uid = (uint32_t)v;
			assert_int_equal(rtab_apply(t, base, &op, v), 0);
			if (op.kind == KV_PUT) {
				a = rec_new(key, op.klen, 0, v, &op.meta, NULL, 0, &x, sizeof x);
				assert_int_equal(map_put(ref, a, &old), 0);
				kv_rec_unref(old);
			} else if (op.kind == KV_DEL) {
				kv_rec_unref(map_del(ref, key, op.klen));
			} else if ((old = map_get(ref, key, op.klen))) {
				a = rec_with_meta(old, v, &op.meta, NULL, 0);
				assert_int_equal(map_put(ref, a, &old), 0);
				kv_rec_unref(old);
			}
		}
		assert_int_equal(rtab_flush(t, base, &tomb), 0);
		assert_int_equal(map_count(base), map_count(ref));
		a = map_seek(base, NULL, 0, 0, &i1);
		b = map_seek(ref, NULL, 0, 0, &i2);
		for (; a && b; a = map_iter_next(&i1), b = map_iter_next(&i2), n++) {
			if (a->klen != b->klen || memcmp(rec_key(a), rec_key(b), a->klen) ||
			    a->version != b->version)
				fprintf(stderr, "seed %llu: %s v%llu != %s v%llu\n",
					(unsigned long long)seed, rec_key(a),
					(unsigned long long)a->version, rec_key(b),
					(unsigned long long)b->version);
			assert_int_equal(a->klen, b->klen);
			assert_memory_equal(rec_key(a), rec_key(b), a->klen);
			assert_int_equal(a->version, b->version);
			assert_int_equal(a->meta.uid, b->meta.uid);
			assert_int_equal(a->vlen, b->vlen);
			assert_memory_equal(a->val, b->val, a->vlen);
			assert_ptr_equal(map_get(base, rec_key(b), b->klen), a);
		}
		assert_null(a);
		assert_null(b);
		assert_int_equal(n, map_count(ref));
		assert_true(n > 100);
		rtab_free(t);
		map_free(base);
		map_free(ref);
	}
}

static void directory_filter_never_misses_a_directory(void **state)
{
	map *m = map_new(7);
	char key[64];
	int maybe = 0;

	(void)state;
	/* No key with a '/' yet: nothing is a directory. */
	put(m, "plain", 1);
	assert_int_equal(map_maybe_dir(m, "plain", 5), 0);
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof key, "d%d/e%d/f%d", i % 300, i % 7, i);
		put(m, key, (uint64_t)i + 1);
	}
	/* Every directory prefix answers maybe, through put and append. */
	assert_int_equal(map_append(m, mk("zz/appended/x", 1)), 0);
	assert_int_equal(map_maybe_dir(m, "zz", 2), 1);
	assert_int_equal(map_maybe_dir(m, "zz/appended", 11), 1);
	for (int i = 0; i < 300; i++) {
		int n = snprintf(key, sizeof key, "d%d", i);

		assert_int_equal(map_maybe_dir(m, key, (size_t)n), 1);
		n = snprintf(key, sizeof key, "d%d/e%d", i, i % 7);
		assert_int_equal(map_maybe_dir(m, key, (size_t)n), 1);
	}
	/* Files and unknown names are rarely "maybe" (false positives). */
	for (int i = 0; i < 2000; i++) {
		int n = snprintf(key, sizeof key, "d%d/e%d/f%d", i % 300, i % 7, i);

		maybe += map_maybe_dir(m, key, (size_t)n);
		n = snprintf(key, sizeof key, "other%d", i);
		maybe += map_maybe_dir(m, key, (size_t)n);
	}
	assert_true(maybe < 10);
	map_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(random_puts_and_deletes_iterate_in_key_order),
		cmocka_unit_test(prefix_iteration_visits_exactly_the_keys_under_a_prefix),
		cmocka_unit_test(replacing_a_key_returns_the_old_record),
		cmocka_unit_test(append_accepts_only_increasing_keys),
		cmocka_unit_test(a_million_keys_fit_and_stay_ordered),
		cmocka_unit_test(appended_nodes_support_deletes_replacements_and_inserts),
		cmocka_unit_test(replay_table_flush_equals_applying_ops_in_order),
		cmocka_unit_test(lookups_agree_with_the_ordered_list_after_random_changes),
		cmocka_unit_test(directory_filter_never_misses_a_directory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
