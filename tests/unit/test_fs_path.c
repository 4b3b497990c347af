/*
 * test_fs_path.c — the pure helpers of fs/: path <-> key mapping, limits,
 * .search name escaping and command-line parsing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fs/opts.h"
#include "fs/path.h"
#include "store/store.h"

static void key_of_path_drops_leading_slash(void **state)
{
	size_t n;

	(void)state;
	assert_string_equal(fsp_key("/a/b.txt", &n), "a/b.txt");
	assert_int_equal(n, 7);
	assert_string_equal(fsp_key("/", &n), "");
	assert_int_equal(n, 0);
}

static void check_enforces_name_and_key_limits(void **state)
{
	char k[KV_KEY_MAX + 8];

	(void)state;
	assert_int_equal(fsp_check("a/b", 3, 0), 0);
	memset(k, 'x', 255);
	assert_int_equal(fsp_check(k, 255, 0), 0);
	memset(k, 'x', 256);
	assert_int_equal(fsp_check(k, 256, 0), -ENAMETOOLONG);
	/* 4095 bytes of 200-byte components: fine as a file, too long as a
	 * directory (its marker needs one more byte). */
	for (size_t i = 0; i < KV_KEY_MAX; i++)
		k[i] = (i % 201 == 200) ? '/' : 'y';
	k[KV_KEY_MAX - 1] = 'y';
	assert_int_equal(fsp_check(k, KV_KEY_MAX, 0), 0);
	assert_int_equal(fsp_check(k, KV_KEY_MAX, 1), -ENAMETOOLONG);
	assert_int_equal(fsp_check(k, KV_KEY_MAX + 1, 0), -ENAMETOOLONG);
}

static void check_reserves_search_and_rejects_dot_components(void **state)
{
	(void)state;
	assert_int_equal(fsp_check(".search", 7, 0), -EPERM);
	assert_int_equal(fsp_check(".search/x", 9, 0), -EPERM);
	assert_int_equal(fsp_check(".searchx", 8, 0), 0);
	assert_int_equal(fsp_check("a/.search", 9, 0), 0);
	assert_int_equal(fsp_check("a/./b", 5, 0), -EINVAL);
	assert_int_equal(fsp_check("a//b", 4, 0), -EINVAL);
	assert_int_equal(fsp_check("", 0, 0), -EPERM);
	assert_true(fsp_is_search("/.search"));
	assert_true(fsp_is_search("/.search/q/x"));
	assert_false(fsp_is_search("/.searchx"));
	assert_false(fsp_is_search("/a/.search"));
}

static void dirkey_appends_one_slash(void **state)
{
	char b[KV_KEY_MAX + 2];

	(void)state;
	assert_int_equal(fsp_dirkey("a/b", 3, b, sizeof(b)), 4);
	assert_string_equal(b, "a/b/");
}

static void escape_round_trips_percent_and_slash(void **state)
{
	char n[KV_NAME_MAX + 1], k[KV_KEY_MAX + 1];

	(void)state;
	assert_int_equal(fsp_escape("a/b%c.txt", 9, n, sizeof(n)), 13);
	assert_string_equal(n, "a%2Fb%25c.txt");
	assert_int_equal(fsp_unescape(n, k, sizeof(k)), 9);
	assert_string_equal(k, "a/b%c.txt");
	assert_int_equal(fsp_unescape("a%2fb", k, sizeof(k)), 3);
	assert_string_equal(k, "a/b");
	assert_int_equal(fsp_unescape("bad%2", k, sizeof(k)), -EINVAL);
	assert_int_equal(fsp_unescape("bad%zz", k, sizeof(k)), -EINVAL);
}

static void escape_refuses_names_longer_than_name_max(void **state)
{
	char key[200], n[KV_NAME_MAX + 1];

	(void)state;
	memset(key, '/', sizeof(key)); /* 200 slashes escape to 600 bytes */
	assert_int_equal(fsp_escape(key, sizeof(key), n, sizeof(n)), -ENAMETOOLONG);
}

static void child_names_direct_entries_and_subdirectories(void **state)
{
	size_t n;

	(void)state;
	assert_int_equal(fsp_child("a/b", 3, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(fsp_child("a/b/c", 5, 2, &n), 1);
	assert_int_equal(n, 1);
	assert_int_equal(fsp_child("a/b/", 4, 2, &n), 1); /* a marker of b */
	assert_int_equal(fsp_child("a/", 2, 2, &n), -1);  /* the prefix's own marker */
	assert_int_equal(fsp_child("top", 3, 0, &n), 0);
	assert_int_equal(n, 3);
}

static int parse(struct kvfs_opts *o, char *err, const char *a0, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = "kvfs";
	va_start(ap, a0);
	for (const char *a = a0; a; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	return opts_parse(argc, argv, o, err, 256);
}

static void opts_accept_both_flag_forms(void **state)
{
	struct kvfs_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, "/mnt", "--data", "/d", "-f", "-o", "allow_other",
			       "-odefault_permissions", NULL), 0);
	assert_string_equal(o.mountpoint, "/mnt");
	assert_string_equal(o.data_dir, "/d");
	assert_true(o.foreground);
	assert_string_equal(o.fuse_opts, "allow_other,default_permissions");
	assert_int_equal(o.mode, NODE_STANDALONE);
	opts_free(&o);
	assert_int_equal(parse(&o, err, "--data=/d", "/mnt", NULL), 0);
	assert_string_equal(o.data_dir, "/d");
	opts_free(&o);
}

static void opts_peers_imply_raft_and_need_listen(void **state)
{
	struct kvfs_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, "/m", "--listen", "h:1", "--peers", "h:2,h:3", NULL), 0);
	assert_int_equal(o.mode, NODE_RAFT);
	assert_int_equal(o.npeers, 2);
	assert_string_equal(o.peers[1], "h:3");
	opts_free(&o);
	assert_int_equal(parse(&o, err, "/m", "--peers", "h:2", NULL), -EINVAL);
	assert_non_null(strstr(err, "--listen"));
	opts_free(&o);
	assert_int_equal(parse(&o, err, "/m", "--listen", "h:1", "--peers", "h:2",
			       "--mode", "masterless", NULL), 0);
	assert_int_equal(o.mode, NODE_MASTERLESS);
	opts_free(&o);
}

static void opts_reject_bad_flags_with_one_line(void **state)
{
	struct kvfs_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, "/m", "--bogus", NULL), -EINVAL);
	assert_non_null(strstr(err, "--bogus"));
	assert_null(strchr(err, '\n'));
	opts_free(&o);
	assert_int_equal(parse(&o, err, "/m", "--data", NULL), -EINVAL);
	opts_free(&o);
	assert_int_equal(parse(&o, err, NULL), -EINVAL);
	assert_non_null(strstr(err, "MOUNTPOINT"));
	opts_free(&o);
	assert_int_equal(parse(&o, err, "/m", "/n", NULL), -EINVAL);
	opts_free(&o);
	assert_int_equal(parse(&o, err, "/m", "--mode", "paxos", NULL), -EINVAL);
	opts_free(&o);
	assert_int_equal(parse(&o, err, "/m", "--listen", "h:1", "--peers", "h:2,", NULL), -EINVAL);
	opts_free(&o);
	assert_int_equal(parse(&o, err, "/m", "--listen", "nocolon", "--mode", "raft", NULL), -EINVAL);
	opts_free(&o);
	assert_int_equal(parse(&o, err, "--help", NULL), 0);
	assert_true(o.help);
	opts_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(key_of_path_drops_leading_slash),
		cmocka_unit_test(check_enforces_name_and_key_limits),
		cmocka_unit_test(check_reserves_search_and_rejects_dot_components),
		cmocka_unit_test(dirkey_appends_one_slash),
		cmocka_unit_test(escape_round_trips_percent_and_slash),
		cmocka_unit_test(escape_refuses_names_longer_than_name_max),
		cmocka_unit_test(child_names_direct_entries_and_subdirectories),
		cmocka_unit_test(opts_accept_both_flag_forms),
		cmocka_unit_test(opts_peers_imply_raft_and_need_listen),
		cmocka_unit_test(opts_reject_bad_flags_with_one_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
