#include "store/snap.h"
#include "store/crc32c.h"
#include "store/le.h"
#include "store/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WBUF_SIZE (1u << 20)

void snap_file_name(uint64_t lsn, int temp, char *buf, size_t size)
{
	snprintf(buf, size, "snap-%020" PRIu64 ".%s", lsn, temp ? "tmp" : "snap");
}

static char *path_of(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static char *snap_path(const char *dir, uint64_t lsn, int temp)
{
	char name[48];

	snap_file_name(lsn, temp, name, sizeof name);
	return path_of(dir, name);
}

/* Buffered, checksummed sequential writer. */
struct wbuf {
	kvio_file     *f;
	unsigned char *buf;
	size_t         used;
	uint64_t       off;
	uint32_t       crc;
	int            rc;
};

static void wb_flush(struct wbuf *w)
{
	if (w->rc || !w->used)
		return;
	w->crc = crc32c(w->crc, w->buf, w->used);
	w->rc = kvio_write_all(w->f, w->buf, w->used, w->off);
	w->off += w->used;
	w->used = 0;
}

static void wb_put(struct wbuf *w, const void *p, size_t n)
{
	const unsigned char *s = p;

	while (n && !w->rc) {
		size_t k = WBUF_SIZE - w->used;

		if (k > n)
			k = n;
		memcpy(w->buf + w->used, s, k);
		w->used += k;
		s += k;
		n -= k;
		if (w->used == WBUF_SIZE)
			wb_flush(w);
	}
}

int snap_write(const struct kvio *io, const char *dir, const struct snap_image *img)
{
	char *tmp = snap_path(dir, img->lsn, 1), *fin = snap_path(dir, img->lsn, 0);
	struct wbuf w = { 0 };
	unsigned char h[SNAP_HDR_SIZE], t[8];
	int rc;

	if (!tmp || !fin) {
		rc = -ENOMEM;
		goto out;
	}
	w.buf = malloc(WBUF_SIZE);
	if (!w.buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = io->open(io, tmp, KVIO_RDWR | KVIO_CREAT | KVIO_TRUNC, &w.f);
	if (rc)
		goto out;
	memset(h, 0, sizeof h);
	le_put32(h, SNAP_MAGIC);
	le_put32(h + 4, SNAP_VERSION);
	le_put64(h + 8, img->lsn);
	le_put64(h + 16, img->n);
	le_put32(h + 24, (uint32_t)img->state_len);
	le_put32(h + 32, crc32c(0, h, 32));
	wb_put(&w, h, sizeof h);
	wb_put(&w, img->state, img->state_len);
	for (size_t i = 0; i < img->n && !w.rc; i++) {
		const kv_rec *r = img->recs[i];
		unsigned char rh[SNAP_REC_SIZE];
		size_t elen;
		const void *ext = kv_rec_ext(r, &elen);

		le_put16(rh, r->klen);
		le_put16(rh + 2, (uint16_t)elen);
		le_put32(rh + 4, r->flags);
		le_put32(rh + 8, r->vlen);
		le_put64(rh + 12, r->version);
		le_put32(rh + 20, r->meta.mode);
		le_put32(rh + 24, r->meta.uid);
		le_put32(rh + 28, r->meta.gid);
		le_put64(rh + 32, (uint64_t)r->meta.mtime_ns);
		le_put64(rh + 40, (uint64_t)r->meta.ctime_ns);
		wb_put(&w, rh, sizeof rh);
		wb_put(&w, rec_key(r), r->klen);
		wb_put(&w, ext, elen);
		wb_put(&w, r->val, r->vlen);
	}
	wb_flush(&w);
	le_put32(t, w.crc);
	le_put32(t + 4, SNAP_END_MAGIC);
	if (!w.rc)
		w.rc = kvio_write_all(w.f, t, sizeof t, w.off);
	rc = w.rc;
	if (!rc)
		rc = kvio_datasync(w.f);
	{
		int crc = kvio_close(w.f);

		if (!rc)
			rc = crc;
	}
	w.f = NULL;
	if (!rc)
		rc = io->rename(io, tmp, fin);
	if (!rc)
		rc = io->sync_dir(io, dir);
	if (rc) {
		LOG(LOG_ERROR, "snap: writing %s failed: %s", fin, strerror(-rc));
		io->unlink(io, tmp);
	}
out:
	free(w.buf);
	free(tmp);
	free(fin);
	return rc;
}

struct list_ctx {
	const struct kvio *io;
	const char *dir;
	uint64_t   *v;
	size_t      n, cap;
	int         rc;
};

static int list_one(void *arg, const char *name)
{
	struct list_ctx *c = arg;
	char *end;
	unsigned long long lsn;
	size_t len = strlen(name);

	if (strncmp(name, "snap-", 5) || len < 5 + 20 + 4)
		return 0;
	errno = 0;
	lsn = strtoull(name + 5, &end, 10);
	if (errno || end != name + 25)
		return 0;
	if (!strcmp(end, ".tmp")) {
		/* An interrupted snapshot: never renamed, so never trusted. */
		char *p = path_of(c->dir, name);

		if (p) {
			c->io->unlink(c->io, p);
			free(p);
		}
		return 0;
	}
	if (strcmp(end, ".snap"))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 8;
		uint64_t *v = realloc(c->v, cap * sizeof *v);

		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = lsn;
	return 0;
}

static int desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x > y ? -1 : x < y;
}

int snap_list(const struct kvio *io, const char *dir, uint64_t **lsns, size_t *n)
{
	struct list_ctx c = { .io = io, .dir = dir };
	int rc = io->list(io, dir, list_one, &c);

	if (rc) {
		free(c.v);
		return rc;
	}
	if (c.n)
		qsort(c.v, c.n, sizeof *c.v, desc);
	*lsns = c.v;
	*n = c.n;
	return 0;
}

int snap_remove(const struct kvio *io, const char *dir, uint64_t lsn)
{
	char *p = snap_path(dir, lsn, 0);
	int rc;

	if (!p)
		return -ENOMEM;
	rc = io->unlink(io, p);
	free(p);
	return rc;
}

int snap_load(const struct kvio *io, const char *dir, uint64_t lsn, map *m,
	      void **state, size_t *state_len, uint64_t *ntomb)
{
	uint64_t tombs = 0;
	char *path = snap_path(dir, lsn, 0);
	kvio_file *f = NULL;
	unsigned char *buf = NULL, *p, *end;
	uint64_t size, count;
	uint32_t slen;
	const char *why = NULL;
	int rc;

	*state = NULL;
	*state_len = 0;
	if (!path)
		return -ENOMEM;
	rc = io->open(io, path, KVIO_RDONLY, &f);
	if (rc)
		goto io_err;
	rc = kvio_size(f, &size);
	if (rc)
		goto io_err;
	if (size < SNAP_HDR_SIZE + 8) {
		why = "file too short";
		goto corrupt;
	}
	buf = malloc(size);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = kvio_read_all(f, buf, size, 0);
	if (rc)
		goto io_err;
	if (le_get32(buf) != SNAP_MAGIC || le_get32(buf + 4) != SNAP_VERSION ||
	    le_get32(buf + 32) != crc32c(0, buf, 32) || le_get64(buf + 8) != lsn) {
		why = "bad header";
		goto corrupt;
	}
	end = buf + size - 8;
	if (le_get32(end + 4) != SNAP_END_MAGIC || le_get32(end) != crc32c(0, buf, size - 8)) {
		why = "checksum mismatch";
		goto corrupt;
	}
	count = le_get64(buf + 16);
	slen = le_get32(buf + 24);
	p = buf + SNAP_HDR_SIZE;
	if ((uint64_t)(end - p) < slen) {
		why = "state past the end";
		goto corrupt;
	}
	if (slen) {
		*state = malloc(slen);
		if (!*state) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(*state, p, slen);
		*state_len = slen;
	}
	p += slen;
	/* Size the lookup index once; the count is checksummed, and bounded
	 * by the bytes left (an entry takes far more than 16) in any case. */
	(void)map_reserve(m, (size_t)(count < (uint64_t)(end - p) / 16 ? count
								   : (uint64_t)(end - p) / 16));
	for (uint64_t i = 0; i < count; i++) {
		struct kv_meta meta;
		uint16_t klen, elen;
		uint32_t vlen;
		kv_rec *r;

		if (end - p < SNAP_REC_SIZE) {
			why = "record past the end";
			goto corrupt;
		}
		klen = le_get16(p);
		elen = le_get16(p + 2);
		vlen = le_get32(p + 8);
		if ((uint64_t)(end - p - SNAP_REC_SIZE) < (uint64_t)klen + elen + vlen || !klen) {
			why = "record past the end";
			goto corrupt;
		}
		meta.mode = le_get32(p + 20);
		meta.uid = le_get32(p + 24);
		meta.gid = le_get32(p + 28);
		meta.mtime_ns = (int64_t)le_get64(p + 32);
		meta.ctime_ns = (int64_t)le_get64(p + 40);
		r = rec_new((const char *)p + SNAP_REC_SIZE, klen, le_get32(p + 4),
			    le_get64(p + 12), &meta, p + SNAP_REC_SIZE + klen, elen,
			    p + SNAP_REC_SIZE + klen + elen, vlen);
		if (!r) {
			rc = -ENOMEM;
			goto out;
		}
		rc = map_append(m, r);
		if (rc) {
			kv_rec_unref(r);
			if (rc != -EINVAL)
				goto out;
			why = "keys out of order";
			goto corrupt;
		}
		if (r->flags & KV_F_TOMBSTONE)
			tombs++;
		p += SNAP_REC_SIZE + klen + elen + vlen;
	}
	if (p != end) {
		why = "trailing bytes";
		goto corrupt;
	}
	if (ntomb)
		*ntomb = tombs;
	rc = 0;
	goto out;
corrupt:
	LOG(LOG_ERROR, "snap: %s is corrupt: %s", path, why);
	rc = -EUCLEAN;
	goto out;
io_err:
	LOG(LOG_ERROR, "snap: cannot read %s: %s", path, strerror(-rc));
out:
	if (rc) {
		free(*state);
		*state = NULL;
		*state_len = 0;
	}
	if (f)
		kvio_close(f);
	free(buf);
	free(path);
	return rc;
}
