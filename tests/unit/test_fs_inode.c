/*
 * test_fs_inode.c — the inode table of fs/: paths built from parent links,
 * lookup counting and forgetting, unlink and rename (directories carry their
 * children), new inodes for a changed file type, and page-cache bookkeeping.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fs/inode.h"

static int setup(void **state)
{
	(void)state;
	return ino_init(NULL);
}

static int teardown(void **state)
{
	(void)state;
	ino_fini();
	return 0;
}

static uint64_t look(uint64_t parent, const char *name, mode_t type)
{
	uint64_t ino = ino_lookup(parent, name, strlen(name), type);

	assert_true(ino > INO_ROOT);
	return ino;
}

static void assert_path(uint64_t ino, const char *want)
{
	char buf[64];

	assert_int_equal(ino_path(ino, buf, sizeof(buf)), (int)strlen(want));
	assert_string_equal(buf, want);
}

static void paths_walk_up_to_the_root(void **state)
{
	char buf[64];
	uint64_t a, b;

	(void)state;
	assert_path(INO_ROOT, "/");
	a = look(INO_ROOT, "a", S_IFDIR);
	b = look(a, "b.txt", S_IFREG);
	assert_path(a, "/a");
	assert_path(b, "/a/b.txt");
	assert_int_equal(ino_child_path(a, "c", buf, sizeof(buf)), 4);
	assert_string_equal(buf, "/a/c");
	assert_int_equal(ino_child_path(INO_ROOT, "x", buf, sizeof(buf)), 2);
	assert_string_equal(buf, "/x");
	assert_int_equal(ino_path(b, buf, 8), -ENAMETOOLONG);
	assert_int_equal(ino_path(12345, buf, sizeof(buf)), -ENOENT);
	assert_int_equal(ino_lookup(12345, "x", 1, S_IFREG), 0); /* unknown parent */
}

static void lookups_are_counted_until_forgotten(void **state)
{
	uint64_t a, again;

	(void)state;
	a = look(INO_ROOT, "f", S_IFREG);
	again = look(INO_ROOT, "f", S_IFREG);
	assert_int_equal(a, again); /* same name, same inode */
	assert_int_equal(ino_count(), 2);
	ino_forget(a, 1);
	assert_path(a, "/f"); /* one lookup left */
	ino_forget(a, 1);
	assert_int_equal(ino_count(), 1);
	assert_int_equal(ino_path(a, (char[8]){ 0 }, 8), -ENOENT);
	/* Numbers are never reused. */
	assert_true(look(INO_ROOT, "f", S_IFREG) > a);
	ino_forget(INO_ROOT, 5); /* the root stays */
	assert_path(INO_ROOT, "/");
}

static void a_directory_stays_while_it_has_children(void **state)
{
	uint64_t d, f;

	(void)state;
	d = look(INO_ROOT, "d", S_IFDIR);
	f = look(d, "f", S_IFREG);
	ino_forget(d, 1); /* the kernel forgot the directory first */
	assert_path(f, "/d/f");
	ino_forget(f, 1);
	assert_int_equal(ino_count(), 1); /* both gone now */
}

static void unlinked_nodes_lose_their_path_but_live_until_forgotten(void **state)
{
	char buf[64];
	uint64_t f, g;

	(void)state;
	f = look(INO_ROOT, "f", S_IFREG);
	ino_unlink(INO_ROOT, "f", NULL);
	assert_int_equal(ino_path(f, buf, sizeof(buf)), -ENOENT);
	assert_int_equal(ino_count(), 2);
	g = look(INO_ROOT, "f", S_IFREG); /* a new file of the same name */
	assert_true(g != f);
	assert_path(g, "/f");
	ino_forget(f, 1);
	assert_path(g, "/f");
	assert_int_equal(ino_count(), 2);
}

static int freed;

static void count_free(void *orphan)
{
	(void)orphan;
	freed++;
}

static void copy_orphan(void *arg, void *orphan)
{
	*(void **)arg = orphan;
}

static void an_unlinked_open_file_is_kept_until_forgotten(void **state)
{
	int token = 42, other = 7;
	void *got = NULL;
	uint64_t f, g;

	(void)state;
	ino_fini();
	assert_int_equal(ino_init(count_free), 0);
	freed = 0;
	f = look(INO_ROOT, "f", S_IFREG);
	g = look(INO_ROOT, "g", S_IFREG);
	assert_int_equal(ino_orphan(f, copy_orphan, &got), -ENOENT); /* named */
	ino_unlink(INO_ROOT, "f", &token);
	assert_int_equal(ino_orphan(f, copy_orphan, &got), 0);
	assert_ptr_equal(got, &token);
	assert_int_equal(freed, 0);
	ino_forget(f, 1);
	assert_int_equal(freed, 1); /* handed back with the node */
	ino_unlink(INO_ROOT, "nobody", &other);
	assert_int_equal(freed, 2); /* no node to keep it */
	ino_unlink(INO_ROOT, "g", NULL);
	assert_int_equal(ino_orphan(g, copy_orphan, &got), -ENOENT);
	/* A node replaced by a rename keeps the open file it named. */
	uint64_t src = look(INO_ROOT, "src", S_IFREG), dst = look(INO_ROOT, "dst", S_IFREG);
	ino_rename(INO_ROOT, "src", INO_ROOT, "dst", &other);
	assert_path(src, "/dst");
	assert_int_equal(ino_orphan(dst, copy_orphan, &got), 0);
	assert_ptr_equal(got, &other);
	ino_forget(dst, 1);
	assert_int_equal(freed, 3);
}

static void rename_moves_a_directory_with_its_children(void **state)
{
	uint64_t a, b, f, old;
	char buf[64];

	(void)state;
	a = look(INO_ROOT, "a", S_IFDIR);
	b = look(INO_ROOT, "b", S_IFDIR);
	f = look(a, "f", S_IFREG);
	old = look(b, "g", S_IFDIR);
	ino_rename(INO_ROOT, "a", b, "g", NULL); /* replaces the empty b/g */
	assert_path(a, "/b/g");
	assert_path(f, "/b/g/f");
	assert_int_equal(ino_path(old, buf, sizeof(buf)), -ENOENT);
	ino_rename(b, "g", INO_ROOT, "top", NULL);
	assert_path(f, "/top/f");
	uint64_t parent = 0, ino = 0;
	assert_int_equal(ino_find("top/f", 5, &parent, &ino), 0);
	assert_int_equal(parent, a);
	assert_int_equal(ino, f);
	assert_int_equal(ino_find("top/new", 7, &parent, &ino), 0);
	assert_int_equal(ino, 0); /* the directory is known, the entry not */
	assert_int_equal(ino_find("b/g/f", 5, &parent, &ino), -ENOENT);
	/* Renaming a name onto itself changes nothing. */
	ino_rename(INO_ROOT, "top", INO_ROOT, "top", NULL);
	assert_path(f, "/top/f");
}

/* Only a change to a name the kernel may cache needs an invalidation; the
 * others are counted, so that a lookup racing with them can tell. */
static void changes_to_unknown_names_are_counted(void **state)
{
	uint64_t d, g, o;

	(void)state;
	d = look(INO_ROOT, "d", S_IFDIR);
	(void)look(d, "f", S_IFREG);
	g = ino_changes("/d/g");
	o = ino_changes("/other");
	{
		uint64_t parent = 0, ino = 0, f = look(d, "f", S_IFREG);

		ino_forget(f, 1);
		assert_int_equal(ino_changed("d/f", 3, 1, &parent, &ino), 1);
		assert_int_equal(parent, d);
		assert_int_equal(ino, f);
	}
	assert_int_equal(ino_changed("d", 1, 1, NULL, NULL), 1);
	assert_int_equal(ino_changed("d/", 2, 1, NULL, NULL), 1); /* the directory's marker */
	assert_int_equal(ino_changed("d/g", 3, 1, NULL, NULL), 0); /* the directory is known, not g */
	assert_int_equal(ino_changes("/d/g"), g + 1);
	assert_int_equal(ino_changed("x/y/z", 5, 1, NULL, NULL), 0);
	assert_int_equal(ino_changed("d/g/", 4, 1, NULL, NULL), 0); /* g's marker: g's count */
	assert_int_equal(ino_changes("/d/g"), g + 2);
	(void)look(d, "g", S_IFREG);
	assert_int_equal(ino_changed("d/g", 3, 1, NULL, NULL), 1);
	assert_int_equal(ino_changes("/d/g"), g + 2);
	/* Another name keeps its count ("other" and "d/g" are in different
	 * buckets). */
	assert_int_equal(ino_changes("/other"), o);
}

static void a_new_type_gets_a_new_inode(void **state)
{
	char buf[64];
	uint64_t f, d;

	(void)state;
	f = look(INO_ROOT, "x", S_IFREG | 0644);
	d = look(INO_ROOT, "x", S_IFDIR | 0755);
	assert_true(d != f);
	assert_int_equal(ino_path(f, buf, sizeof(buf)), -ENOENT);
	assert_path(d, "/x");
}

static void page_cache_is_kept_only_for_the_same_contents(void **state)
{
	uint64_t f;

	(void)state;
	f = look(INO_ROOT, "f", S_IFREG);
	assert_false(ino_cache_check(f, 7, 100, 4096)); /* nothing cached yet */
	assert_true(ino_cache_check(f, 7, 100, 4096));
	assert_false(ino_cache_check(f, 8, 100, 4096)); /* a new version */
	assert_false(ino_cache_check(f, 8, 100, 10));   /* a new size */
	assert_true(ino_cache_check(f, 8, 100, 10));
	ino_cache_drop(f);                              /* the kernel dropped it */
	assert_false(ino_cache_check(f, 8, 100, 10));
}

static void many_nodes_survive_table_growth(void **state)
{
	char name[16], buf[64];
	uint64_t d, ino[5000];

	(void)state;
	d = look(INO_ROOT, "d", S_IFDIR);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		ino[i] = look(d, name, S_IFREG);
	}
	for (int i = 0; i < 5000; i += 499) {
		char want[32];
		snprintf(want, sizeof(want), "/d/f%d", i);
		assert_int_equal(ino_path(ino[i], buf, sizeof(buf)), (int)strlen(want));
		assert_string_equal(buf, want);
	}
	for (int i = 0; i < 5000; i++)
		ino_forget(ino[i], 1);
	assert_int_equal(ino_count(), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(changes_to_unknown_names_are_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(paths_walk_up_to_the_root, setup, teardown),
		cmocka_unit_test_setup_teardown(lookups_are_counted_until_forgotten, setup, teardown),
		cmocka_unit_test_setup_teardown(a_directory_stays_while_it_has_children, setup, teardown),
		cmocka_unit_test_setup_teardown(unlinked_nodes_lose_their_path_but_live_until_forgotten,
						setup, teardown),
		cmocka_unit_test_setup_teardown(an_unlinked_open_file_is_kept_until_forgotten, setup,
						teardown),
		cmocka_unit_test_setup_teardown(rename_moves_a_directory_with_its_children, setup, teardown),
		cmocka_unit_test_setup_teardown(a_new_type_gets_a_new_inode, setup, teardown),
		cmocka_unit_test_setup_teardown(page_cache_is_kept_only_for_the_same_contents, setup,
						teardown),
		cmocka_unit_test_setup_teardown(many_nodes_survive_table_growth, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
