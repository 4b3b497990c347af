/* test_wal.c — the write-ahead log on the in-memory disk: round trip,
 * rotation, torn tails, corruption before the tail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/crc32c.h"
#include "store/wal.h"
#include "tests/lib/memdisk.h"

#define DIR "db"

struct seen {
	uint64_t lsn[4096];
	uint8_t  type[4096];
	size_t   len[4096];
	size_t   n;
	int      bad_payload;
};

/* Payload of record i: len = 1 + i*7 % 300 bytes of (i + k). */
static size_t payload_len(uint64_t i)
{
	return 1 + (size_t)(i * 7 % 300);
}

static int collect(void *arg, uint8_t type, uint64_t lsn, const void *p, size_t len)
{
	struct seen *s = arg;
	const unsigned char *b = p;

	for (size_t k = 0; k < len; k++)
		if (b[k] != (unsigned char)(lsn + k))
			s->bad_payload = 1;
	s->lsn[s->n] = lsn;
	s->type[s->n] = type;
	s->len[s->n] = len;
	s->n++;
	return 0;
}

static wal *open_wal(memdisk *md, size_t seg, struct seen *s, int expect_rc)
{
	wal *w = NULL;
	int rc;

	memset(s, 0, sizeof *s);
	assert_int_equal(wal_open(memdisk_io(md), DIR, seg, &w), 0);
	rc = wal_recover(w, 1, 0, collect, s);
	assert_int_equal(rc, expect_rc);
	if (rc) {
		wal_close(w);
		return NULL;
	}
	return w;
}

static void append_n(wal *w, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t lsn = wal_next_lsn(w), got;
		size_t len = payload_len(lsn);
		unsigned char *rec = malloc(WAL_REC_HDR + len);

		for (size_t k = 0; k < len; k++)
			rec[WAL_REC_HDR + k] = (unsigned char)(lsn + k);
		assert_int_equal(wal_append(w, (uint8_t)(1 + lsn % 70), rec, WAL_REC_HDR + len,
					    crc32c(0, rec + WAL_REC_HDR, len), &got), 0);
		assert_int_equal(got, lsn);
		free(rec);
	}
	assert_int_equal(kvio_datasync(wal_sync_file(w)), 0);
}

static memdisk *new_disk(void)
{
	memdisk *md = memdisk_new();

	assert_int_equal(memdisk_io(md)->mkdir(memdisk_io(md), DIR, 0755), 0);
	return md;
}

static void check_seen(const struct seen *s, uint64_t n)
{
	assert_int_equal(s->n, n);
	assert_false(s->bad_payload);
	for (size_t i = 0; i < s->n; i++) {
		assert_int_equal(s->lsn[i], i + 1);
		assert_int_equal(s->type[i], 1 + (i + 1) % 70);
		assert_int_equal(s->len[i], payload_len(i + 1));
	}
}

/* Runs fn with stderr captured into buf. */
static void capture_stderr(char *buf, size_t size, void (*fn)(void *), void *arg)
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	size_t n;

	fflush(stderr);
	dup2(fileno(tmp), 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, size - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);
	fputs(buf, stderr);
}

static void records_survive_close_and_reopen_in_order(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	wal *w;

	(void)state;
	w = open_wal(md, 0, &s, 0);
	assert_int_equal(s.n, 0);
	append_n(w, 200);
	wal_close(w);
	memdisk_crash(md);
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, 200);
	assert_int_equal(wal_next_lsn(w), 201);
	append_n(w, 10);
	wal_close(w);
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, 210);
	wal_close(w);
	memdisk_free(md);
}

static void segments_rotate_at_the_size_limit_and_replay_in_order(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	char *names, first[40];
	char **paths;
	size_t n;
	wal *w;

	(void)state;
	w = open_wal(md, 2000, &s, 0);
	append_n(w, 300);
	assert_true(wal_segment_count(w) > 20);
	wal_close(w);
	memdisk_crash(md); /* rotation made every segment durable */
	names = memdisk_listing(md, DIR);
	wal_segment_name(1, first, sizeof first);
	assert_memory_equal(names, first, strlen(first));
	free(names);
	w = open_wal(md, 2000, &s, 0);
	check_seen(&s, 300);
	/* Dropping segments below lsn 150 keeps every record >= 150. */
	assert_int_equal(wal_drop_before(w, 150, &paths, &n), 0);
	assert_true(n > 5);
	for (size_t i = 0; i < n; i++) {
		memdisk_io(md)->unlink(memdisk_io(md), paths[i]);
		free(paths[i]);
	}
	free(paths);
	assert_true(wal_first_lsn(w) <= 150);
	wal_close(w);
	w = open_wal(md, 2000, &s, 0);
	assert_true(s.n >= 151);
	assert_int_equal(s.lsn[s.n - 1], 300);
	wal_close(w);
	memdisk_free(md);
}

/* The path of the newest segment (the listing is in name order and also
 * holds wal.newest). */
static char *last_segment(memdisk *md)
{
	char *names = memdisk_listing(md, DIR), *last = NULL, *path;

	for (char *l = strtok(names, "\n"); l; l = strtok(NULL, "\n"))
		if (!strncmp(l, "wal-", 4))
			last = l;
	assert_non_null(last);
	path = malloc(strlen(last) + 8);
	sprintf(path, DIR "/%s", last);
	free(names);
	return path;
}

static void torn_tail_is_truncated_at_every_cut_point(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	unsigned char *buf;
	size_t len, full;
	char *path;
	wal *w;

	(void)state;
	w = open_wal(md, 0, &s, 0);
	append_n(w, 20);
	wal_close(w);
	path = last_segment(md);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	full = len;
	/* Cut inside the last record (lsn 20) at every byte. */
	for (size_t cut = full - (WAL_REC_HDR + payload_len(20)); cut < full; cut++) {
		assert_int_equal(memdisk_write(md, path, buf, cut), 0);
		w = open_wal(md, 0, &s, 0);
		check_seen(&s, 19);
		assert_int_equal(wal_next_lsn(w), 20);
		wal_close(w);
	}
	/* After truncation new appends continue the sequence. */
	w = open_wal(md, 0, &s, 0);
	append_n(w, 3);
	wal_close(w);
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, 22);
	wal_close(w);
	free(buf);
	free(path);
	memdisk_free(md);
}

static void garbage_after_the_last_record_is_truncated(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	unsigned char *buf;
	size_t len;
	char *path;
	wal *w;

	(void)state;
	w = open_wal(md, 0, &s, 0);
	append_n(w, 5);
	wal_close(w);
	path = last_segment(md);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	buf = realloc(buf, len + 4096);
	memset(buf + len, 0, 4096); /* a preallocated or zero-filled tail */
	for (size_t i = 0; i < 300; i++)
		buf[len + 100 + i] = (unsigned char)(i * 31 + 7);
	assert_int_equal(memdisk_write(md, path, buf, len + 4096), 0);
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, 5);
	wal_close(w);
	free(buf);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	free(buf);
	assert_int_equal(len, WAL_SEG_HDR + 5 * WAL_REC_HDR + payload_len(1) + payload_len(2) +
			 payload_len(3) + payload_len(4) + payload_len(5));
	free(path);
	memdisk_free(md);
}

struct open_args {
	memdisk *md;
	size_t   seg;
};

static void open_expect_corrupt(void *arg)
{
	struct open_args *a = arg;
	struct seen s;

	assert_null(open_wal(a->md, a->seg, &s, -EUCLEAN));
}

static void corruption_before_the_tail_is_refused_naming_file_and_offset(void **state)
{
	memdisk *md = new_disk();
	struct open_args a = { .md = md, .seg = 0 };
	struct seen s;
	unsigned char *buf;
	size_t len, off;
	char *path, msg[4096], want[128];
	wal *w;

	(void)state;
	w = open_wal(md, 0, &s, 0);
	append_n(w, 10);
	wal_close(w);
	path = last_segment(md);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	/* Flip one payload byte of record 4: records 5..10 stay valid. */
	off = WAL_SEG_HDR;
	for (uint64_t i = 1; i < 4; i++)
		off += WAL_REC_HDR + payload_len(i);
	buf[off + WAL_REC_HDR] ^= 0x40;
	assert_int_equal(memdisk_write(md, path, buf, len), 0);
	capture_stderr(msg, sizeof msg, open_expect_corrupt, &a);
	snprintf(want, sizeof want, "%s at offset %zu", path, off);
	assert_non_null(strstr(msg, want));
	free(buf);
	free(path);
	memdisk_free(md);
}

/* A page of the newest segment that never reached the disk (zeros up to
 * its end) with valid records after it is an interrupted group commit
 * written back out of order: the log is cut at the first record it spoils
 * (only unacknowledged records can follow). Zeros that stop short of a page
 * end are still corruption. */
static void a_lost_page_before_valid_records_is_a_torn_tail(void **state)
{
	memdisk *md = new_disk();
	struct open_args a = { .md = md, .seg = 0 };
	struct seen s;
	unsigned char *buf, *orig;
	size_t len, off = WAL_SEG_HDR, end;
	char *path, msg[4096];
	uint64_t kept = 0;
	wal *w;

	(void)state;
	w = open_wal(md, 0, &s, 0);
	append_n(w, 80);
	wal_close(w);
	path = last_segment(md);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	assert_true(len > 3 * 4096);
	orig = malloc(len);
	assert_non_null(orig);
	memcpy(orig, buf, len);
	while (off + WAL_REC_HDR + payload_len(kept + 1) <= 4096)
		off += WAL_REC_HDR + payload_len(++kept);
	end = off;

	/* Zeros from inside the record that crosses 4096 to 4096 + 100:
	 * not the rest of a page, so the valid records after them mean
	 * corruption. */
	memset(buf + 4000, 0, 196);
	assert_int_equal(memdisk_write(md, path, buf, len), 0);
	capture_stderr(msg, sizeof msg, open_expect_corrupt, &a);
	assert_non_null(strstr(msg, "corrupt record"));

	/* The whole page [4096, 8192) of the intact segment lost: torn
	 * there. */
	free(buf);
	buf = malloc(len);
	assert_non_null(buf);
	memcpy(buf, orig, len);
	memset(buf + 4096, 0, 4096);
	assert_int_equal(memdisk_write(md, path, buf, len), 0);
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, kept);
	wal_close(w);
	free(buf);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	assert_int_equal(len, end);
	free(buf);
	free(orig);
	free(path);
	memdisk_free(md);
}

/* A record whose payload is zeros (3 pages: at least one whole aligned
 * page), e.g. a sparse file's block. */
static void append_zeros(wal *w, size_t len)
{
	unsigned char *rec = calloc(1, WAL_REC_HDR + len);
	uint64_t lsn;

	assert_non_null(rec);
	assert_int_equal(wal_append(w, 1, rec, WAL_REC_HDR + len,
				    crc32c(0, rec + WAL_REC_HDR, len), &lsn), 0);
	free(rec);
}

/* Builds records 1..5 (one sync), record 6 with a zero page, and records
 * 7..11, with a sync after record 6 or not; then flips the last payload
 * byte of record 6. */
static void zero_page_record_damaged(memdisk *md, int sync_after_it)
{
	struct seen s;
	unsigned char *buf;
	size_t len, off = WAL_SEG_HDR;
	char *path;
	wal *w;

	w = open_wal(md, 0, &s, 0);
	append_n(w, 5);
	append_zeros(w, 3 * 4096);
	if (sync_after_it)
		assert_int_equal(kvio_datasync(wal_sync_file(w)), 0);
	append_n(w, 5);
	wal_close(w);
	path = last_segment(md);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	for (uint64_t i = 1; i <= 5; i++)
		off += WAL_REC_HDR + payload_len(i);
	buf[off + WAL_REC_HDR + 3 * 4096 - 1] ^= 0x01;
	assert_int_equal(memdisk_write(md, path, buf, len), 0);
	free(buf);
	free(path);
}

/* A zero page inside a damaged record looks like a page an interrupted
 * sync did not write. It can be one only in the last sync group: when a
 * later group follows (its first record says so), the damaged record was
 * durable and acknowledged, and cutting the log there would silently drop
 * it and every later group. */
static void a_zero_page_in_a_damaged_record_before_later_groups_is_corruption(void **state)
{
	memdisk *md = new_disk();
	struct open_args a = { .md = md, .seg = 0 };
	struct seen s;
	char msg[4096];
	wal *w;

	(void)state;
	zero_page_record_damaged(md, 1);
	capture_stderr(msg, sizeof msg, open_expect_corrupt, &a);
	assert_non_null(strstr(msg, "corrupt record"));
	memdisk_free(md);

	/* The same damage with records 6..11 in one sync group: nothing
	 * after record 6 can have been acknowledged without it, so this is
	 * the torn tail of an interrupted sync, cut at record 6. */
	md = new_disk();
	zero_page_record_damaged(md, 0);
	w = open_wal(md, 0, &s, 0);
	assert_int_equal(s.n, 5);
	assert_int_equal(wal_next_lsn(w), 6);
	wal_close(w);
	memdisk_free(md);
}

/* A version-1 segment (an earlier release's) is still appended to after an
 * upgrade; its records then carry no group marks, which that release's
 * readers would refuse. New segments mark their groups. */
static void a_version_1_segment_gets_no_group_marks(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	unsigned char *buf;
	size_t len, off = WAL_SEG_HDR;
	uint32_t crc;
	char *path;
	wal *w;

	(void)state;
	w = open_wal(md, 0, &s, 0);
	append_n(w, 3);
	wal_close(w);
	path = last_segment(md);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	assert_int_equal(buf[WAL_SEG_HDR + 17], WAL_F_GROUP); /* the first record */
	/* Make it an old segment: version 1, no marks. */
	buf[4] = 1;
	for (uint64_t i = 1; i <= 3; i++) {
		unsigned char *h = buf + off;
		uint32_t plen = (uint32_t)payload_len(i);

		h[17] = 0;
		crc = crc32c(crc32c(0, h + WAL_REC_HDR, plen), h + 4, 16);
		memcpy(h, &crc, 4);
		off += WAL_REC_HDR + plen;
	}
	crc = crc32c(0, buf, 20);
	memcpy(buf + 20, &crc, 4);
	assert_int_equal(memdisk_write(md, path, buf, len), 0);
	free(buf);
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, 3);
	append_n(w, 4);
	wal_close(w);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	off = WAL_SEG_HDR;
	for (uint64_t i = 1; i <= 7; i++) {
		assert_int_equal(buf[off + 17], 0);
		off += WAL_REC_HDR + payload_len(i);
	}
	free(buf);
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, 7);
	wal_close(w);
	free(path);
	memdisk_free(md);
}

static void corruption_in_an_older_segment_is_refused(void **state)
{
	memdisk *md = new_disk();
	struct open_args a = { .md = md, .seg = 1500 };
	struct seen s;
	unsigned char *buf;
	size_t len;
	char path[64], name[40], msg[4096];
	wal *w;

	(void)state;
	w = open_wal(md, 1500, &s, 0);
	append_n(w, 100);
	wal_close(w);
	wal_segment_name(1, name, sizeof name);
	snprintf(path, sizeof path, DIR "/%s", name);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	/* Tear the end of the FIRST segment: not a tail, so corruption. */
	assert_int_equal(memdisk_write(md, path, buf, len - 3), 0);
	capture_stderr(msg, sizeof msg, open_expect_corrupt, &a);
	assert_non_null(strstr(msg, path));
	/* A missing middle segment is refused too. */
	assert_int_equal(memdisk_write(md, path, buf, len), 0);
	w = open_wal(md, 1500, &s, 0);
	wal_close(w);
	char first[64];
	{
		char *names = memdisk_listing(md, DIR), *second = strchr(names, '\n') + 1, p2[64];

		*strchr(second, '\n') = '\0';
		snprintf(p2, sizeof p2, DIR "/%s", second);
		assert_int_equal(memdisk_io(md)->unlink(memdisk_io(md), p2), 0);
		*strchr(names, '\n') = '\0';
		snprintf(first, sizeof first, "%s", names);
		free(names);
	}
	capture_stderr(msg, sizeof msg, open_expect_corrupt, &a);
	assert_non_null(strstr(msg, "missing"));
	/* ...naming the segment before the gap, which may be the short one. */
	assert_non_null(strstr(msg, first));
	free(buf);
	memdisk_free(md);
}

struct open_seen {
	memdisk *md;
	size_t   seg;
	int      expect_rc;
};

static void open_seen_fn(void *arg)
{
	struct open_seen *a = arg;
	struct seen s;
	wal *w = open_wal(a->md, a->seg, &s, a->expect_rc);

	wal_close(w);
}

static void a_deleted_newest_segment_is_refused(void **state)
{
	memdisk *md = new_disk();
	struct open_seen a = { .md = md, .seg = 1500, .expect_rc = -EUCLEAN };
	struct seen s;
	char *newest, msg[4096];
	void *keep;
	size_t keep_len;
	wal *w;

	(void)state;
	w = open_wal(md, 1500, &s, 0);
	append_n(w, 100);
	assert_true(wal_segment_count(w) > 3);
	wal_close(w);
	/* The newest segment gone: the log would just end earlier. */
	newest = last_segment(md);
	assert_int_equal(memdisk_read(md, newest, &keep, &keep_len), 0);
	assert_int_equal(memdisk_io(md)->unlink(memdisk_io(md), newest), 0);
	capture_stderr(msg, sizeof msg, open_seen_fn, &a);
	assert_non_null(strstr(msg, newest + strlen(DIR "/")));
	assert_non_null(strstr(msg, "missing"));
	/* Put back, the log opens whole; then every segment gone is refused too. */
	assert_int_equal(memdisk_write(md, newest, keep, keep_len), 0);
	w = open_wal(md, 1500, &s, 0);
	check_seen(&s, 100);
	wal_close(w);
	{
		char *names = memdisk_listing(md, DIR);

		for (char *l = strtok(names, "\n"); l; l = strtok(NULL, "\n")) {
			char p[64];

			snprintf(p, sizeof p, DIR "/%s", l);
			if (!strncmp(l, "wal-", 4))
				assert_int_equal(memdisk_io(md)->unlink(memdisk_io(md), p), 0);
		}
		free(names);
	}
	capture_stderr(msg, sizeof msg, open_seen_fn, &a);
	assert_non_null(strstr(msg, "missing"));
	free(keep);
	free(newest);
	memdisk_free(md);
}

static void a_log_without_its_newest_record_file_gets_one(void **state)
{
	memdisk *md = new_disk();
	struct open_seen a = { .md = md, .seg = 1500, .expect_rc = -EUCLEAN };
	struct seen s;
	char *newest, msg[4096];
	wal *w;

	(void)state;
	w = open_wal(md, 1500, &s, 0);
	append_n(w, 60);
	wal_close(w);
	/* A directory from before wal.newest: opens, and is checked from then on. */
	assert_int_equal(memdisk_io(md)->unlink(memdisk_io(md), DIR "/wal.newest"), 0);
	w = open_wal(md, 1500, &s, 0);
	check_seen(&s, 60);
	wal_close(w);
	assert_true(memdisk_exists(md, DIR "/wal.newest"));
	newest = last_segment(md);
	assert_int_equal(memdisk_io(md)->unlink(memdisk_io(md), newest), 0);
	capture_stderr(msg, sizeof msg, open_seen_fn, &a);
	assert_non_null(strstr(msg, "missing"));
	/* A damaged record file is refused with its name, not ignored. */
	assert_int_equal(memdisk_write(md, DIR "/wal.newest", "0123456789abcdefghij", 20), 0);
	capture_stderr(msg, sizeof msg, open_seen_fn, &a);
	assert_non_null(strstr(msg, "wal.newest is corrupt"));
	/* A version from a later release is refused as such. */
	{
		unsigned char b[20] = { 1 };

		b[8] = 0x4B, b[9] = 0x56, b[10] = 0x57, b[11] = 0x4E; /* WAL_NEWEST_MAGIC */
		b[12] = 2;
		uint32_t crc = crc32c(0, b, 16);

		for (int i = 0; i < 4; i++)
			b[16 + i] = (unsigned char)(crc >> (8 * i));
		assert_int_equal(memdisk_write(md, DIR "/wal.newest", b, 20), 0);
	}
	capture_stderr(msg, sizeof msg, open_seen_fn, &a);
	assert_non_null(strstr(msg, "has version 2"));
	free(newest);
	memdisk_free(md);
}

static void a_crash_before_the_newest_record_is_replaced_is_accepted(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	void *old;
	size_t old_len;
	wal *w;

	(void)state;
	w = open_wal(md, 1500, &s, 0);
	append_n(w, 5);
	assert_int_equal(memdisk_read(md, DIR "/wal.newest", &old, &old_len), 0);
	append_n(w, 60);
	assert_true(wal_segment_count(w) > 2);
	wal_close(w);
	/* As if the crash came between a segment's creation and the record. */
	assert_int_equal(memdisk_write(md, DIR "/wal.newest", old, old_len), 0);
	w = open_wal(md, 1500, &s, 0);
	check_seen(&s, 65);
	wal_close(w);
	free(old);
	memdisk_free(md);
}

static void a_torn_new_segment_header_is_recreated(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	char path[64], name[40];
	wal *w;

	(void)state;
	w = open_wal(md, 0, &s, 0);
	append_n(w, 7);
	wal_close(w);
	wal_segment_name(8, name, sizeof name);
	snprintf(path, sizeof path, DIR "/%s", name);
	assert_int_equal(memdisk_write(md, path, "KVW", 3), 0);
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, 7);
	append_n(w, 2);
	wal_close(w);
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, 9);
	wal_close(w);
	memdisk_free(md);
}

static size_t data_bytes(uint64_t from, uint64_t to)
{
	size_t n = 0;

	for (uint64_t i = from; i <= to; i++)
		n += WAL_REC_HDR + payload_len(i);
	return n;
}

struct reopen {
	memdisk   *md;
	wal       *w;
	struct seen s;
};

static void reopen_fn(void *arg)
{
	struct reopen *r = arg;

	r->w = open_wal(r->md, 0, &r->s, 0);
}

static void a_preallocated_zero_tail_is_the_clean_end(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	unsigned char *buf;
	size_t len;
	char *path, msg[4096];
	wal *w;

	(void)state;
	w = open_wal(md, 0, &s, 0);
	wal_set_prealloc(w, 8192);
	append_n(w, 10);
	wal_close(w);
	memdisk_crash(md); /* the zeros were synced with the records */
	path = last_segment(md);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	assert_true(len >= WAL_SEG_HDR + data_bytes(1, 10) + 4096);
	for (size_t i = WAL_SEG_HDR + data_bytes(1, 10); i < len; i++)
		assert_int_equal(buf[i], 0);
	free(buf);
	/* Reopening keeps the zeros (no truncation, no warning) and appends
	 * over them. */
	{
		struct reopen r = { .md = md };

		capture_stderr(msg, sizeof msg, reopen_fn, &r);
		w = r.w;
		s = r.s;
	}
	assert_null(strstr(msg, "truncat"));
	check_seen(&s, 10);
	wal_set_prealloc(w, 8192);
	append_n(w, 5);
	wal_close(w);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	free(buf);
	assert_true(len > WAL_SEG_HDR + data_bytes(1, 15));
	w = open_wal(md, 0, &s, 0);
	check_seen(&s, 15);
	wal_close(w);
	free(path);
	/* A stray file named like a later segment after that clean end is
	 * named as the culprit, not the healthy segment before it. */
	{
		struct open_args a = { .md = md, .seg = 0 };
		char stray[96], name[40];

		wal_segment_name(9000, name, sizeof name);
		snprintf(stray, sizeof stray, DIR "/%s", name);
		assert_int_equal(memdisk_write(md, stray, "garbage", 7), 0);
		capture_stderr(msg, sizeof msg, open_expect_corrupt, &a);
		assert_non_null(strstr(msg, name));
		assert_non_null(strstr(msg, "stray"));
	}
	memdisk_free(md);
}

static void rotation_cuts_the_zeros_off_the_closed_segment(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	char *names, *line, *save = NULL, path[96];
	unsigned char *buf;
	size_t len, nseg = 0;
	wal *w;

	(void)state;
	w = open_wal(md, 4000, &s, 0);
	wal_set_prealloc(w, 1024);
	append_n(w, 200);
	assert_true(wal_segment_count(w) > 5);
	wal_close(w);
	memdisk_crash(md);
	/* Every segment but the newest ends at its last record (recovery
	 * refuses anything else there), and all records come back. */
	names = memdisk_listing(md, DIR);
	for (line = strtok_r(names, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		nseg += !strncmp(line, "wal-", 4);
	free(names);
	w = open_wal(md, 4000, &s, 0);
	check_seen(&s, 200);
	assert_int_equal(wal_segment_count(w), nseg);
	wal_close(w);
	wal_segment_name(1, path + 64, 32);
	snprintf(path, 64, DIR "/%s", path + 64);
	assert_int_equal(memdisk_read(md, path, (void **)&buf, &len), 0);
	assert_true(len <= 4000);
	assert_int_not_equal(buf[len - 1], 0); /* a record's last byte, not a zero tail */
	free(buf);
	memdisk_free(md);
}

static void a_failed_write_is_reported(void **state)
{
	memdisk *md = new_disk();
	struct seen s;
	unsigned char rec[WAL_REC_HDR + 4] = { 0 };
	uint64_t lsn;
	wal *w;

	(void)state;
	w = open_wal(md, 0, &s, 0);
	memdisk_fail_write(md, 1, ENOSPC);
	assert_int_equal(wal_append(w, 1, rec, sizeof rec, crc32c(0, rec + WAL_REC_HDR, 4), &lsn),
			 -ENOSPC);
	wal_close(w);
	memdisk_free(md);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(records_survive_close_and_reopen_in_order),
		cmocka_unit_test(segments_rotate_at_the_size_limit_and_replay_in_order),
		cmocka_unit_test(torn_tail_is_truncated_at_every_cut_point),
		cmocka_unit_test(garbage_after_the_last_record_is_truncated),
		cmocka_unit_test(corruption_before_the_tail_is_refused_naming_file_and_offset),
		cmocka_unit_test(corruption_in_an_older_segment_is_refused),
		cmocka_unit_test(a_lost_page_before_valid_records_is_a_torn_tail),
		cmocka_unit_test(a_zero_page_in_a_damaged_record_before_later_groups_is_corruption),
		cmocka_unit_test(a_version_1_segment_gets_no_group_marks),
		cmocka_unit_test(a_torn_new_segment_header_is_recreated),
		cmocka_unit_test(a_deleted_newest_segment_is_refused),
		cmocka_unit_test(a_log_without_its_newest_record_file_gets_one),
		cmocka_unit_test(a_crash_before_the_newest_record_is_replaced_is_accepted),
		cmocka_unit_test(a_failed_write_is_reported),
		cmocka_unit_test(a_preallocated_zero_tail_is_the_clean_end),
		cmocka_unit_test(rotation_cuts_the_zeros_off_the_closed_segment),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
