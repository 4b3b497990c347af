#include "store/wal.h"
#include "store/crc32c.h"
#include "store/hbuf.h"
#include "store/le.h"
#include "store/log.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct segment {
	uint64_t first_lsn;
};

struct wal {
	const struct kvio *io;
	char              *dir;
	size_t             segment_bytes;
	struct segment    *segs;      /* sorted by first_lsn */
	size_t             nsegs, cap;
	kvio_file         *cur;       /* last segment, open for appending */
	uint64_t           cur_size;
	uint64_t           next_lsn;
	uint64_t           appended;
	kvio_file        **retired;   /* rotated-away files a sync may still use */
	size_t             nretired;
	/* Records added with wal_add() and not yet written: borrowed buffers,
	 * which end at cur_size. */
	struct iovec      *iov;
	size_t             niov, iov_cap;
	uint64_t           unwritten; /* their bytes */
	/* Preallocation (wal_set_prealloc): the current segment holds zeros
	 * up to alloc_end, so appends below it do not change the file size. */
	uint64_t           prealloc;
	uint64_t           alloc_end;
	int                no_alloc;  /* zero-filling failed in this segment */
	int                in_group;  /* a record was added since the last sync point */
	int                cur_grouped; /* cur is a version-2 segment: mark groups */
};

void wal_segment_name(uint64_t first_lsn, char *buf, size_t size)
{
	snprintf(buf, size, "wal-%020" PRIu64 ".log", first_lsn);
}

static char *seg_path(const wal *w, uint64_t first_lsn)
{
	char name[40], *p;
	size_t n;

	wal_segment_name(first_lsn, name, sizeof name);
	n = strlen(w->dir) + 1 + strlen(name) + 1;
	p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", w->dir, name);
	return p;
}

/* Room for one more element in arr (n in use, *cap allocated), doubling
 * from `first`: returns the array, moved or not, or NULL (arr untouched). */
static void *grow(void *arr, size_t n, size_t *cap, size_t elem, size_t first)
{
	size_t c = *cap ? *cap * 2 : first;
	void *v;

	if (n < *cap)
		return arr;
	v = realloc(arr, c * elem);
	if (v)
		*cap = c;
	return v;
}

static int add_segment(wal *w, uint64_t first_lsn)
{
	struct segment *v = grow(w->segs, w->nsegs, &w->cap, sizeof *v, 16);

	if (!v)
		return -ENOMEM;
	w->segs = v;
	w->segs[w->nsegs++].first_lsn = first_lsn;
	return 0;
}

static int list_one(void *arg, const char *name)
{
	wal *w = arg;
	char *end;
	unsigned long long v;

	if (strncmp(name, "wal-", 4) || strlen(name) != 4 + 20 + 4 ||
	    strcmp(name + 24, ".log"))
		return 0;
	errno = 0;
	v = strtoull(name + 4, &end, 10);
	if (errno || end != name + 24 || v == 0)
		return 0;
	return add_segment(w, v);
}

static int seg_cmp(const void *a, const void *b)
{
	const struct segment *x = a, *y = b;

	return x->first_lsn < y->first_lsn ? -1 : x->first_lsn > y->first_lsn;
}

int wal_open(const struct kvio *io, const char *dir, size_t segment_bytes, wal **out)
{
	wal *w = calloc(1, sizeof *w);
	int rc;

	if (!w)
		return -ENOMEM;
	w->io = io;
	w->segment_bytes = segment_bytes ? segment_bytes : 64u << 20;
	w->dir = strdup(dir);
	if (!w->dir) {
		rc = -ENOMEM;
		goto err;
	}
	rc = io->list(io, dir, list_one, w);
	if (rc)
		goto err;
	if (w->nsegs)
		qsort(w->segs, w->nsegs, sizeof *w->segs, seg_cmp);
	*out = w;
	return 0;
err:
	wal_close(w);
	return rc;
}

void wal_release_retired(wal *w)
{
	for (size_t i = 0; i < w->nretired; i++)
		kvio_close(w->retired[i]);
	w->nretired = 0;
}

void wal_close(wal *w)
{
	if (!w)
		return;
	wal_release_retired(w);
	free(w->retired);
	if (w->cur)
		kvio_close(w->cur);
	free(w->iov);
	free(w->segs);
	free(w->dir);
	free(w);
}

uint64_t wal_first_lsn(const wal *w)
{
	return w->nsegs ? w->segs[0].first_lsn : 0;
}

size_t wal_segment_count(const wal *w)
{
	return w->nsegs;
}

uint64_t wal_next_lsn(const wal *w)
{
	return w->next_lsn;
}

uint64_t wal_bytes_appended(const wal *w)
{
	return w->appended;
}

kvio_file *wal_sync_file(wal *w)
{
	/* Everything written so far is the group this sync makes durable;
	 * the next record added starts another (WAL_F_GROUP). */
	w->in_group = 0;
	return w->cur;
}

static void seg_header(unsigned char *h, uint64_t first_lsn)
{
	le_put32(h, WAL_MAGIC);
	le_put32(h + 4, WAL_VERSION);
	le_put64(h + 8, first_lsn);
	le_put32(h + 16, 0);
	le_put32(h + 20, crc32c(0, h, 20));
}

void wal_set_prealloc(wal *w, size_t bytes)
{
	w->prealloc = bytes;
}

/* Writes zeros over [from, to) of f. */
static int zero_fill(kvio_file *f, uint64_t from, uint64_t to)
{
	static const char zeros[64 * 1024];
	struct iovec v[16];

	while (from < to) {
		uint64_t n = to - from;
		int cnt = 0;
		size_t total = 0;
		ssize_t rc;

		while (cnt < 16 && total < n) {
			size_t l = n - total < sizeof zeros ? (size_t)(n - total) : sizeof zeros;

			v[cnt].iov_base = (void *)zeros;
			v[cnt++].iov_len = l;
			total += l;
		}
		rc = kvio_pwritev(f, v, cnt, from);
		if (rc < 0)
			return (int)rc;
		if ((size_t)rc != total)
			return -EIO;
		from += total;
	}
	return 0;
}

/* Keeps zeros preallocated ahead of the end of the records, `prealloc`
 * bytes at a time: on ext4 (and most file systems) an fdatasync after
 * writes that stay inside the file's size and allocated blocks has no
 * metadata to write, so it costs one device write and flush instead of
 * also writing the inode (it measured some 30% faster here). Recovery
 * takes an all-zero tail for the clean end of the log. A failure is not
 * an error (the records are written and synced as they would be without
 * it); the segment then simply grows as it is written. */
static void preallocate(wal *w)
{
	uint64_t end;

	if (!w->prealloc || w->no_alloc || w->cur_size + w->prealloc / 2 <= w->alloc_end)
		return;
	end = w->cur_size + w->prealloc;
	if (end > w->segment_bytes)
		end = w->cur_size > w->segment_bytes ? w->cur_size : w->segment_bytes;
	if (end <= w->alloc_end)
		return;
	if (zero_fill(w->cur, w->alloc_end > w->cur_size ? w->alloc_end : w->cur_size, end)) {
		w->no_alloc = 1;
		return;
	}
	w->alloc_end = end;
}

#define NEWEST_FILE "wal.newest"
#define NEWEST_VERSION 1
#define NEWEST_SIZE 20

/* Records first_lsn as the newest segment's (wal.h), durably. */
static int newest_save(wal *w, uint64_t first_lsn)
{
	unsigned char b[NEWEST_SIZE];
	int rc;

	le_put64(b, first_lsn);
	le_put32(b + 8, WAL_NEWEST_MAGIC);
	le_put32(b + 12, NEWEST_VERSION);
	le_put32(b + 16, crc32c(0, b, 16));
	rc = kvio_replace(w->io, w->dir, NEWEST_FILE, b, sizeof b, 0);
	if (rc)
		LOG(LOG_ERROR, "wal: cannot record the newest segment in %s/%s: %s", w->dir,
		    NEWEST_FILE, strerror(-rc));
	return rc;
}

/* The first lsn recorded in wal.newest: 0 and *first_lsn, -ENOENT when
 * there is no such file, -EUCLEAN (logged) when it is not one we wrote. */
static int newest_load(wal *w, uint64_t *first_lsn)
{
	unsigned char b[NEWEST_SIZE + 1]; /* one more: a longer file is not ours */
	long got = kvio_read_small(w->io, w->dir, NEWEST_FILE, b, sizeof b);

	if (got == -ENOENT)
		return -ENOENT;
	if (got < 0) {
		LOG(LOG_ERROR, "wal: cannot read %s/%s: %s", w->dir, NEWEST_FILE,
		    strerror((int)-got));
		return (int)got;
	}
	if (got != NEWEST_SIZE || le_get32(b + 8) != WAL_NEWEST_MAGIC ||
	    le_get32(b + 16) != crc32c(0, b, 16) || le_get64(b) == 0) {
		LOG(LOG_ERROR, "wal: %s/%s is corrupt (it records the newest log segment; "
		    "remove it only if no segment was lost)", w->dir, NEWEST_FILE);
		return -EUCLEAN;
	}
	if (le_get32(b + 12) != NEWEST_VERSION) {
		LOG(LOG_ERROR, "wal: %s/%s has version %u, this release reads version %u "
		    "(written by a newer release?)", w->dir, NEWEST_FILE, le_get32(b + 12),
		    NEWEST_VERSION);
		return -EUCLEAN;
	}
	*first_lsn = le_get64(b);
	return 0;
}

/* Creates segment first_lsn: header written and synced, directory synced,
 * so that records appended later can never sit in a file that vanishes;
 * then records it as the newest. */
static int create_segment(wal *w, uint64_t first_lsn, kvio_file **out)
{
	unsigned char h[WAL_SEG_HDR];
	char *path = seg_path(w, first_lsn);
	kvio_file *f = NULL;
	int rc;

	if (!path)
		return -ENOMEM;
	rc = w->io->open(w->io, path, KVIO_RDWR | KVIO_CREAT | KVIO_TRUNC, &f);
	if (rc)
		goto err;
	seg_header(h, first_lsn);
	rc = kvio_write_all(f, h, sizeof h, 0);
	if (!rc)
		rc = kvio_datasync(f);
	if (!rc)
		rc = w->io->sync_dir(w->io, w->dir);
	if (rc)
		goto err;
	rc = newest_save(w, first_lsn);
	if (rc) {
		kvio_close(f);
		free(path);
		return rc;
	}
	free(path);
	*out = f;
	return 0;
err:
	LOG(LOG_ERROR, "wal: cannot create segment %s: %s", path, strerror(-rc));
	if (f)
		kvio_close(f);
	free(path);
	return rc;
}

static int sync_before_rotation(wal *w)
{
	int rc = kvio_datasync(w->cur);

	if (rc)
		LOG(LOG_ERROR, "wal: sync before rotation failed: %s", strerror(-rc));
	return rc;
}

static int rotate(wal *w)
{
	kvio_file *f, **r;
	int rc;

	/* Everything in the old segment becomes durable now, so a sync that
	 * covers lsns in both segments only needs the new file. What is
	 * already written is synced before the records still to write go
	 * out: they may start a new sync group while the store still syncs
	 * the previous one, and a group's first record must never reach the
	 * disk before the groups it follows (see lost_page). */
	if (w->niov && (rc = sync_before_rotation(w)))
		return rc;
	rc = wal_flush(w);
	if (rc)
		return rc;
	/* Only the newest segment may end in preallocated zeros (recovery
	 * refuses a bad record anywhere else). */
	if (w->alloc_end > w->cur_size) {
		rc = kvio_truncate(w->cur, w->cur_size);
		if (rc)
			return rc;
	}
	if ((rc = sync_before_rotation(w)))
		return rc;
	rc = add_segment(w, w->next_lsn);
	if (rc)
		return rc;
	rc = create_segment(w, w->next_lsn, &f);
	if (rc) {
		w->nsegs--;
		return rc;
	}
	r = realloc(w->retired, (w->nretired + 1) * sizeof *r);
	if (!r) {
		kvio_close(f);
		w->nsegs--;
		return -ENOMEM;
	}
	w->retired = r;
	w->retired[w->nretired++] = w->cur;
	w->cur = f;
	w->cur_grouped = 1;
	w->cur_size = WAL_SEG_HDR;
	w->alloc_end = WAL_SEG_HDR;
	w->no_alloc = 0;
	w->appended += WAL_SEG_HDR;
	return 0;
}

/* Forgets the unwritten records (after an error: their owners free them). */
static void drop_unwritten(wal *w)
{
	w->cur_size -= w->unwritten;
	w->niov = 0;
	w->unwritten = 0;
}

int wal_flush(wal *w)
{
	uint64_t off = w->cur_size - w->unwritten;
	size_t i = 0;

	while (i < w->niov) {
		int cnt = w->niov - i > IOV_MAX ? IOV_MAX : (int)(w->niov - i);
		size_t total = 0;
		ssize_t n;

		for (int k = 0; k < cnt; k++)
			total += w->iov[i + k].iov_len;
		n = kvio_pwritev(w->cur, w->iov + i, cnt, off);
		if (n < 0 || (size_t)n != total) {
			drop_unwritten(w);
			return n < 0 ? (int)n : -EIO;
		}
		off += total;
		i += (size_t)cnt;
	}
	w->niov = 0;
	w->unwritten = 0;
	preallocate(w);
	return 0;
}

int wal_add(wal *w, uint8_t type, void *rec, size_t len, uint32_t payload_crc, uint64_t *lsn)
{
	unsigned char *h = rec;
	struct iovec *v;
	int rc;

	if (!w->cur)
		return -EBADF;
	if (w->cur_size > WAL_SEG_HDR && w->cur_size + len > w->segment_bytes) {
		rc = rotate(w);
		if (rc) {
			drop_unwritten(w);
			return rc;
		}
	}
	v = grow(w->iov, w->niov, &w->iov_cap, sizeof *v, 64);
	if (!v)
		return -ENOMEM;
	w->iov = v;
	le_put32(h + 4, (uint32_t)(len - WAL_REC_HDR));
	le_put64(h + 8, w->next_lsn);
	h[16] = type;
	/* A version-1 segment (from an earlier release, still appended to)
	 * gets no marks: its readers expect byte 17 to be zero. */
	h[17] = w->in_group || !w->cur_grouped ? 0 : WAL_F_GROUP;
	h[18] = h[19] = 0;
	w->in_group = 1;
	le_put32(h, crc32c(payload_crc, h + 4, 16));
	w->iov[w->niov].iov_base = rec;
	w->iov[w->niov++].iov_len = len;
	w->unwritten += len;
	*lsn = w->next_lsn++;
	w->cur_size += len;
	w->appended += len;
	return 0;
}

int wal_append(wal *w, uint8_t type, void *rec, size_t len, uint32_t payload_crc,
	       uint64_t *lsn)
{
	int rc = wal_add(w, type, rec, len, payload_crc, lsn);

	return rc ? rc : wal_flush(w);
}

int wal_drop_before(wal *w, uint64_t lsn, char ***paths, size_t *n)
{
	size_t k = 0;
	char **v;

	/* Segment i holds lsns first_lsn(i) .. first_lsn(i+1) - 1. */
	while (k + 1 < w->nsegs && w->segs[k + 1].first_lsn <= lsn)
		k++;
	*paths = NULL;
	*n = 0;
	if (!k)
		return 0;
	v = calloc(k, sizeof *v);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < k; i++) {
		v[i] = seg_path(w, w->segs[i].first_lsn);
		if (!v[i]) {
			for (size_t j = 0; j < i; j++)
				free(v[j]);
			free(v);
			return -ENOMEM;
		}
	}
	if (w->nsegs > k)
		memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof *w->segs);
	w->nsegs -= k;
	*paths = v;
	*n = k;
	return 0;
}

/* ---- recovery ------------------------------------------------------------ */

/* Checks the record at off; returns its total size or 0 when it is not a
 * valid record with lsn `want` (want 0: any lsn > min_lsn). */
static size_t rec_valid(const unsigned char *buf, size_t size, size_t off,
			uint64_t want, uint64_t min_lsn)
{
	const unsigned char *h = buf + off;
	uint32_t len, crc;
	uint64_t lsn;

	if (size - off < WAL_REC_HDR)
		return 0;
	len = le_get32(h + 4);
	lsn = le_get64(h + 8);
	if ((h[17] & ~WAL_F_GROUP) || h[18] || h[19] || h[16] == 0)
		return 0;
	if (want ? lsn != want : lsn <= min_lsn)
		return 0;
	if (len > size - off - WAL_REC_HDR)
		return 0;
	crc = crc32c(crc32c(0, h + WAL_REC_HDR, len), h + 4, 16);
	if (crc != le_get32(h))
		return 0;
	return WAL_REC_HDR + (size_t)len;
}

/* Reads a whole segment into *buf, which is reused (and grown) from one
 * segment to the next: fresh 64 MiB buffers would cost a page fault per page
 * every time. The buffer is an hbuf (huge pages) for the same reason. */
static int read_file(const struct kvio *io, const char *path, unsigned char **buf,
		     size_t *cap, size_t *size, kvio_file **fout)
{
	kvio_file *f;
	uint64_t sz;
	int rc;

	rc = io->open(io, path, KVIO_RDWR, &f);
	if (rc)
		return rc;
	rc = kvio_size(f, &sz);
	if (rc)
		goto err;
	if (sz > *cap || !*buf) {
		unsigned char *b = hbuf_alloc(sz);

		if (!b) {
			rc = -ENOMEM;
			goto err;
		}
		hbuf_free(*buf, *cap);
		*buf = b;
		*cap = sz;
	}
	rc = kvio_read_all(f, *buf, sz, 0);
	if (rc)
		goto err;
	*size = sz;
	*fout = f;
	return 0;
err:
	kvio_close(f);
	return rc;
}

/* The unit in which a file system writes file data back (the page size). */
#define WAL_PAGE 4096

static int all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Whether [off, end) holds the zero-filled rest of a page that an
 * interrupted write-back did not write. A file system writes the pages of
 * one fdatasync back in any order when it overwrites blocks in place (the
 * log's preallocated zeros) and may extend a file with holes, so a power
 * cut during a group commit can keep a later page of the group and lose an
 * earlier one: the lost page reads as zeros (preallocated or a hole), and
 * valid records of the same unacknowledged group follow it. Every byte of
 * an acknowledged group was on disk when its fdatasync returned, so such a
 * page lies wholly after the last acknowledged record: the log is torn
 * there, not corrupt. A record's own zeros (a sparse file's block) look the
 * same, so in segments that mark their sync groups (version 2) a later
 * group after the bad record makes it corruption (later_group). (Damage
 * inside the last group, to a record holding a page of zeros, or a disk
 * that zeroes a whole page of acknowledged records, is outside what the log
 * can tell from a torn append.) */
static int lost_page(const unsigned char *buf, size_t off, size_t end)
{
	for (size_t p = off - off % WAL_PAGE; p + WAL_PAGE <= end; p += WAL_PAGE) {
		size_t from = p > off ? p : off;

		if (all_zero(buf + from, p + WAL_PAGE - from))
			return 1;
	}
	return 0;
}

/* Whether a valid record after the bad one at `off` (from `first`, the
 * first such record, on) starts a sync group. Only the last group can have
 * lost a page (every earlier one was synced whole before the next was
 * written): a later group means the bad record was durable, so it is
 * corrupt, not torn. */
static int later_group(const unsigned char *buf, size_t size, size_t first, uint64_t bad_lsn)
{
	for (size_t o = first; o + WAL_REC_HDR <= size;) {
		size_t n = rec_valid(buf, size, o, 0, bad_lsn);

		if (!n) {
			o++;
			continue;
		}
		if (buf[o + 17] & WAL_F_GROUP)
			return 1;
		o += n;
	}
	return 0;
}

static int header_ok(const unsigned char *b, size_t size, uint64_t first_lsn)
{
	return size >= WAL_SEG_HDR && le_get32(b) == WAL_MAGIC &&
	       (le_get32(b + 4) == 1 || le_get32(b + 4) == WAL_VERSION) &&
	       le_get64(b + 8) == first_lsn &&
	       le_get32(b + 16) == 0 && le_get32(b + 20) == crc32c(0, b, 20);
}

int wal_recover(wal *w, uint64_t next_lsn_if_empty, uint64_t skip_below, wal_record_fn fn,
		void *arg)
{
	uint64_t expect = w->nsegs ? w->segs[0].first_lsn : next_lsn_if_empty;
	unsigned char *buf = NULL;
	kvio_file *f = NULL;
	char *path = NULL;
	size_t size, off, cap = 0;
	uint64_t newest = 0;
	int rc = 0, grouped;

	rc = newest_load(w, &newest);
	if (rc && rc != -ENOENT)
		return rc;
	if (!rc && (!w->nsegs || w->segs[w->nsegs - 1].first_lsn < newest)) {
		char name[40];

		wal_segment_name(newest, name, sizeof name);
		LOG(LOG_ERROR, "wal: %s/%s, the newest segment of the log, is missing: the "
		    "writes it held are lost (%s records it)", w->dir, name, NEWEST_FILE);
		return -EUCLEAN;
	}
	for (size_t i = 0; i < w->nsegs; i++) {
		int last = i + 1 == w->nsegs;

		path = seg_path(w, w->segs[i].first_lsn);
		if (!path) {
			rc = -ENOMEM;
			goto err;
		}
		if (w->segs[i].first_lsn != expect) {
			char prev[40];

			if (i == 0) {
				LOG(LOG_ERROR, "wal: %s starts at lsn %" PRIu64 ", expected %"
				    PRIu64 " (a segment is missing)", path,
				    w->segs[i].first_lsn, expect);
			} else {
				wal_segment_name(w->segs[i - 1].first_lsn, prev, sizeof(prev));
				LOG(LOG_ERROR, "wal: %s starts at lsn %" PRIu64 ", expected %"
				    PRIu64 " (the segment before it, %s, ends early, or a "
				    "segment is missing)", path, w->segs[i].first_lsn, expect,
				    prev);
			}
			rc = -EUCLEAN;
			goto err;
		}
		if (!last && w->segs[i + 1].first_lsn <= skip_below) {
			expect = w->segs[i + 1].first_lsn;
			free(path);
			path = NULL;
			continue;
		}
		rc = read_file(w->io, path, &buf, &cap, &size, &f);
		if (rc) {
			LOG(LOG_ERROR, "wal: cannot read %s: %s", path, strerror(-rc));
			goto err;
		}
		if (!header_ok(buf, size, w->segs[i].first_lsn)) {
			/* Segments are created header-first and synced before
			 * use, so a bad header holding nothing more is a crash
			 * during creation of the newest segment: start it anew. */
			if (last && size <= WAL_SEG_HDR) {
				LOG(LOG_WARN, "wal: %s has a torn header; recreating it", path);
				kvio_close(f);
				f = NULL;
				rc = w->io->unlink(w->io, path);
				if (!rc)
					rc = create_segment(w, expect, &f);
				if (rc)
					goto err;
				size = off = WAL_SEG_HDR;
				grouped = 1;
				goto done_segment;
			}
			LOG(LOG_ERROR, "wal: corrupt segment header in %s at offset 0", path);
			rc = -EUCLEAN;
			goto err;
		}
		grouped = le_get32(buf + 4) >= 2; /* records mark their sync groups */
		off = WAL_SEG_HDR;
		while (off < size) {
			size_t n = rec_valid(buf, size, off, expect, 0);
			const unsigned char *h = buf + off;

			if (!n && last && all_zero(buf + off, size - off)) {
				/* Preallocated space: the clean end, kept. */
				break;
			}
			if (!n && !last && all_zero(buf + off, size - off)) {
				/* The clean end of what was the newest segment
				 * (rotation cuts the zeros off the segments it
				 * closes): the file after it is not the log's. */
				char next[40];

				wal_segment_name(w->segs[i + 1].first_lsn, next, sizeof(next));
				LOG(LOG_ERROR, "wal: %s ends cleanly at offset %zu (lsn %" PRIu64
				    " next), but %s follows it: a stray or misplaced file?", path,
				    off, expect, next);
				rc = -EUCLEAN;
				goto err;
			}
			if (!n) {
				int later = 0;

				/* A valid record further on proves the bad one is
				 * not just an interrupted append, unless a page
				 * between them never reached the disk. */
				for (size_t o = off + 1; last && o + WAL_REC_HDR <= size; o++)
					if (rec_valid(buf, size, o, 0, expect)) {
						later = !lost_page(buf, off, o) ||
							(grouped && later_group(buf, size, o, expect));
						break;
					}
				if (!last || later) {
					LOG(LOG_ERROR, "wal: corrupt record in %s at offset %zu "
					    "(lsn %" PRIu64 " expected)", path, off, expect);
					rc = -EUCLEAN;
					goto err;
				}
				LOG(LOG_WARN, "wal: truncating torn tail of %s at offset %zu "
				    "(%zu bytes dropped)", path, off, size - off);
				rc = kvio_truncate(f, off);
				if (!rc)
					rc = kvio_datasync(f);
				if (rc) {
					LOG(LOG_ERROR, "wal: cannot truncate %s: %s", path,
					    strerror(-rc));
					goto err;
				}
				size = off;
				break;
			}
			if (fn) {
				rc = fn(arg, h[16], expect, h + WAL_REC_HDR, n - WAL_REC_HDR);
				if (rc)
					goto err;
			}
			expect++;
			off += n;
		}
done_segment:
		if (last) {
			/* off < size: a preallocated zero tail follows. */
			w->cur = f;
			w->cur_grouped = grouped;
			w->cur_size = off;
			w->alloc_end = size;
			f = NULL;
		} else {
			kvio_close(f);
			f = NULL;
		}
		free(path);
		path = NULL;
	}
	hbuf_free(buf, cap);
	buf = NULL;
	if (!w->nsegs) {
		rc = add_segment(w, expect);
		if (rc)
			return rc;
		rc = create_segment(w, expect, &w->cur);
		if (rc) {
			w->nsegs = 0;
			return rc;
		}
		w->cur_grouped = 1;
		w->cur_size = WAL_SEG_HDR;
	} else if (newest != w->segs[w->nsegs - 1].first_lsn) {
		/* A directory from before wal.newest (or a crash between a
		 * segment's creation and its record): record it now. */
		rc = newest_save(w, w->segs[w->nsegs - 1].first_lsn);
		if (rc)
			return rc;
	}
	w->next_lsn = expect;
	return 0;
err:
	hbuf_free(buf, cap);
	if (f)
		kvio_close(f);
	free(path);
	return rc;
}
