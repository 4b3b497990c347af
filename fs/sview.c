/*
 * sview.c — the read-only .search/ directory (see sview.h, SPEC §4).
 *
 * The ranking itself lives in search/ (search_query); this file only maps
 * paths to queries and hits to symlinks. Results of recent queries are kept
 * so that the lookup/lstat/getxattr calls following a listing (ls -l,
 * getfattr) do not run the query once per entry: for a few seconds, and only
 * while no update has become visible to queries since the query (a kept
 * result is never staler than a new query would be).
 */
#include "fs/sview.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fsops.h"
#include "fs/path.h"
#include "search/search.h"

#define CACHE_N      8
#define CACHE_TTL_NS (5LL * 1000000000)

struct qent {
	enum search_mode   mode;
	char              *q;
	struct search_hit *hits;
	size_t             nhits;
	int64_t            at_ns;
	uint64_t           gen;  /* search_index_generation() before the query */
	unsigned           refs; /* users outside the cache lock, +1 while cached */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct qent *cache[CACHE_N];

static const struct {
	const char      *dir;
	enum search_mode mode;
} modes[] = {
	{ ".text", SEARCH_TEXT },
	{ ".tfidf", SEARCH_TFIDF },
	{ ".semantic", SEARCH_SEMANTIC },
	{ ".phrase", SEARCH_PHRASE },
};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

/* A parsed .search path. */
struct spath {
	int              kind; /* 0 root, 1 mode dir, 2 query dir, 3 entry */
	enum search_mode mode;
	int              in_mode_dir;
	char             q[KV_NAME_MAX + 1];
	const char      *name; /* entry name (into the path) */
};

static int sparse(const char *path, struct spath *sp)
{
	const char *c[4];
	size_t cl[4];
	int n = 0;
	const char *p;

	while (*path == '/')
		path++;
	p = path + sizeof(FSP_SEARCH_DIR) - 1; /* "" or "/..." */
	memset(sp, 0, sizeof(*sp));
	sp->mode = SEARCH_HYBRID;
	while (*p == '/') {
		p++;
		const char *e = strchrnul(p, '/');
		if (n == 4)
			return -ENOENT;
		c[n] = p;
		cl[n++] = (size_t)(e - p);
		p = e;
	}
	if (n == 0)
		return 0;
	int first = 0;
	for (size_t i = 0; i < NMODES; i++) {
		if (strlen(modes[i].dir) == cl[0] && !memcmp(modes[i].dir, c[0], cl[0])) {
			sp->mode = modes[i].mode;
			sp->in_mode_dir = 1;
			first = 1;
			break;
		}
	}
	if (first && n == 1) {
		sp->kind = 1;
		return 0;
	}
	if (n - first > 2 || cl[first] > KV_NAME_MAX)
		return -ENOENT;
	memcpy(sp->q, c[first], cl[first]);
	sp->q[cl[first]] = '\0';
	sp->kind = 2;
	if (n - first == 2) {
		sp->kind = 3;
		sp->name = c[first + 1];
	}
	return 0;
}

static struct search_index *index_of(void)
{
	return node_search(fsops_ctx()->n);
}

static void qent_unref(struct qent *e)
{
	if (--e->refs) /* under cache_lock */
		return;
	search_hits_free(e->hits, e->nhits);
	free(e->q);
	free(e);
}

static void qent_put(struct qent *e)
{
	pthread_mutex_lock(&cache_lock);
	qent_unref(e);
	pthread_mutex_unlock(&cache_lock);
}

/* Whether kept result c is of query q in mode m. */
static int same_query(const struct qent *c, enum search_mode m, const char *q)
{
	return c && c->mode == m && !strcmp(c->q, q);
}

/* How current a result must be. */
enum { Q_FRESH,   /* run the query */
       Q_CURRENT  /* a kept result no update became visible since will do */ };

/* Runs a query, or reuses a kept result as `want` allows. */
static int query(const struct spath *sp, int want, struct qent **out)
{
	struct search_index *ix = index_of();
	int64_t now = fsops_now_ns();
	struct qent *e;
	uint64_t gen;
	int rc, slot = 0;

	if (!ix)
		return -ENOENT;
	gen = search_index_generation(ix);
	pthread_mutex_lock(&cache_lock);
	for (int i = 0; i < CACHE_N; i++) {
		e = cache[i];
		if (same_query(e, sp->mode, sp->q) && want != Q_FRESH && e->gen == gen &&
		    now - e->at_ns < CACHE_TTL_NS) {
			e->refs++;
			pthread_mutex_unlock(&cache_lock);
			*out = e;
			return 0;
		}
		if (!cache[i] || (cache[slot] && cache[i]->at_ns < cache[slot]->at_ns))
			slot = i;
	}
	pthread_mutex_unlock(&cache_lock);

	e = calloc(1, sizeof(*e));
	if (!e || !(e->q = strdup(sp->q))) {
		free(e);
		return -ENOMEM;
	}
	e->mode = sp->mode;
	rc = search_query(ix, sp->q, strlen(sp->q), sp->mode, 0, &e->hits, &e->nhits);
	if (rc) {
		free(e->q);
		free(e);
		return rc;
	}
	e->at_ns = now;
	e->gen = gen;
	e->refs = 2; /* the caller and the cache */
	pthread_mutex_lock(&cache_lock);
	/* One entry per query: another thread may have kept this query
	 * meanwhile; a result newer than ours stays, ours goes to the caller
	 * only. */
	for (int i = 0; i < CACHE_N; i++)
		if (same_query(cache[i], e->mode, e->q))
			slot = i;
	if (same_query(cache[slot], e->mode, e->q) && cache[slot]->gen > e->gen) {
		e->refs = 1;
	} else {
		if (cache[slot])
			qent_unref(cache[slot]);
		cache[slot] = e;
	}
	pthread_mutex_unlock(&cache_lock);
	*out = e;
	return 0;
}

int sview_init(void)
{
	return 0;
}

void sview_fini(void)
{
	pthread_mutex_lock(&cache_lock);
	for (int i = 0; i < CACHE_N; i++) {
		if (cache[i])
			qent_unref(cache[i]);
		cache[i] = NULL;
	}
	pthread_mutex_unlock(&cache_lock);
}

static void dir_stat(struct stat *st)
{
	const struct kvfs_ctx *k = fsops_ctx();
	struct kv_meta m = {
		.mode = S_IFDIR | 0555, .uid = k->uid, .gid = k->gid,
		.mtime_ns = k->start_ns, .ctime_ns = k->start_ns,
	};

	fsops_fill_stat(st, &m, 0);
}

/* The symlink target of an entry: relative, so that it also works through
 * bind mounts and from inside containers. */
static int target(const struct spath *sp, const char *key, size_t klen, char *buf,
		  size_t size)
{
	const char *up = sp->in_mode_dir ? "../../../" : "../../";
	size_t ul = strlen(up);

	if (ul + klen + 1 > size)
		return -ENAMETOOLONG;
	memcpy(buf, up, ul);
	memcpy(buf + ul, key, klen);
	buf[ul + klen] = '\0';
	return (int)(ul + klen);
}

/* Where key is among e's hits, or -1. */
static long hit_of(const struct qent *e, const char *key, size_t klen)
{
	for (size_t i = 0; i < e->nhits; i++)
		if (e->hits[i].klen == klen && !memcmp(e->hits[i].key, key, klen))
			return (long)i;
	return -1;
}

int sview_getattr(const char *path, struct stat *st)
{
	char key[KV_KEY_MAX + 1], t[KV_KEY_MAX + 16];
	struct spath sp;
	struct qent *e;
	kv_rec *r;
	long hit;
	int rc, klen, tl;

	if (!index_of())
		return -ENOENT;
	if ((rc = sparse(path, &sp)))
		return rc;
	if (sp.kind < 3) {
		dir_stat(st);
		return 0;
	}
	klen = fsp_unescape(sp.name, key, sizeof(key));
	if (klen <= 0)
		return -ENOENT;
	/* Only the query's results are entries of its directory (the lstat
	 * of each entry after a listing reuses the listing's result while no
	 * update became visible since). */
	if ((rc = query(&sp, Q_CURRENT, &e)))
		return rc;
	hit = hit_of(e, key, (size_t)klen);
	qent_put(e);
	if (hit < 0)
		return -ENOENT;
	if ((rc = store_get(fsops_ctx()->st, key, (size_t)klen, 0, &r)))
		return rc;
	struct kv_meta m = *kv_rec_meta(r);
	kv_rec_unref(r);
	if ((tl = target(&sp, key, (size_t)klen, t, sizeof(t))) < 0)
		return tl;
	m.mode = S_IFLNK | 0777;
	fsops_fill_stat(st, &m, (size_t)tl);
	return 0;
}

int sview_readdir(const char *path, void *buf, fuse_fill_dir_t filler)
{
	char name[KV_NAME_MAX + 1];
	struct spath sp;
	struct stat st;
	struct qent *e;
	int rc;

	if (!index_of())
		return -ENOENT;
	if ((rc = sparse(path, &sp)))
		return rc;
	if (sp.kind == 3)
		return -ENOTDIR;
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFDIR;
	filler(buf, ".", &st, 0, 0);
	filler(buf, "..", &st, 0, 0);
	if (sp.kind == 0) {
		for (size_t i = 0; i < NMODES; i++)
			filler(buf, modes[i].dir, &st, 0, 0);
		return 0;
	}
	if (sp.kind == 1)
		return 0; /* a mode directory lists nothing: any name is a query */
	if ((rc = query(&sp, Q_FRESH, &e)))
		return rc;
	st.st_mode = S_IFLNK;
	for (size_t i = 0; i < e->nhits; i++) {
		if (fsp_escape(e->hits[i].key, e->hits[i].klen, name, sizeof(name)) < 0)
			continue; /* longer than one file name can be */
		if (filler(buf, name, &st, 0, 0))
			break;
	}
	qent_put(e);
	return 0;
}

int sview_readlink(const char *path, char *buf, size_t size)
{
	char key[KV_KEY_MAX + 1];
	struct spath sp;
	int rc, klen;

	if ((rc = sparse(path, &sp)))
		return rc;
	if (sp.kind != 3)
		return -EINVAL;
	klen = fsp_unescape(sp.name, key, sizeof(key));
	if (klen <= 0)
		return -ENOENT;
	rc = target(&sp, key, (size_t)klen, buf, size);
	return rc < 0 ? rc : 0;
}

static int put_value(const char *s, size_t n, char *value, size_t size)
{
	if (size == 0)
		return (int)n;
	if (size < n)
		return -ERANGE;
	memcpy(value, s, n);
	return (int)n;
}

/* The hits of a query directory as "NAME<TAB>SCORE" lines, best first,
 * trimmed at a line boundary to the 64 KiB an extended attribute can hold. */
static int scores_text(const struct qent *e, char **out, size_t *len)
{
	char name[KV_NAME_MAX + 1];
	size_t cap = 4096, n = 0;
	char *s = malloc(cap);

	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < e->nhits; i++) {
		if (fsp_escape(e->hits[i].key, e->hits[i].klen, name, sizeof(name)) < 0)
			continue;
		size_t need = strlen(name) + 40;
		if (n + need > 65536)
			break;
		if (n + need > cap) {
			char *p = realloc(s, cap * 2 + need);
			if (!p) {
				free(s);
				return -ENOMEM;
			}
			s = p;
			cap = cap * 2 + need;
		}
		n += (size_t)snprintf(s + n, cap - n, "%s\t%.6f\n", name, e->hits[i].score);
	}
	*out = s;
	*len = n;
	return 0;
}

int sview_getxattr(const char *path, const char *name, char *value, size_t size)
{
	char key[KV_KEY_MAX + 1], s[64];
	struct spath sp;
	struct qent *e;
	long hit;
	int rc, klen, n = -1;

	if ((rc = sparse(path, &sp)))
		return rc;
	if (sp.kind == 2 && strcmp(name, SVIEW_XATTR_DIR) == 0) {
		char *text;
		size_t len;
		if ((rc = query(&sp, Q_CURRENT, &e)))
			return rc;
		rc = scores_text(e, &text, &len);
		qent_put(e);
		if (rc)
			return rc;
		rc = put_value(text, len, value, size);
		free(text);
		return rc;
	}
	if (sp.kind != 3 || strcmp(name, SVIEW_XATTR) != 0)
		return -ENODATA;
	klen = fsp_unescape(sp.name, key, sizeof(key));
	if (klen <= 0)
		return -ENODATA;
	if ((rc = query(&sp, Q_CURRENT, &e)))
		return rc;
	if ((hit = hit_of(e, key, (size_t)klen)) >= 0)
		n = snprintf(s, sizeof(s), "%.6f", e->hits[hit].score);
	qent_put(e);
	if (n < 0)
		return -ENODATA;
	return put_value(s, (size_t)n, value, size);
}

int sview_listxattr(const char *path, char *list, size_t size)
{
	struct spath sp;

	if (sparse(path, &sp))
		return 0;
	if (sp.kind == 2)
		return put_value(SVIEW_XATTR_DIR, sizeof(SVIEW_XATTR_DIR), list, size);
	if (sp.kind == 3)
		return put_value(SVIEW_XATTR, sizeof(SVIEW_XATTR), list, size);
	return 0;
}
