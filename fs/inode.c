/*
 * inode.c — the inode table (see inode.h): two chained hash tables, by ino
 * and by (parent, name), over one set of nodes, under one mutex.
 */
#include "fs/inode.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct inode {
	uint64_t      ino;
	uint64_t      parent;    /* meaningful while named */
	char         *name;      /* malloc'd, or NULL once unlinked/replaced */
	size_t        nlen;
	uint64_t      nlookup;   /* lookups the kernel has not forgotten */
	uint64_t      nchildren; /* named nodes whose parent this is */
	mode_t        type;
	int           cached;    /* the c_* fields describe the kernel's pages */
	uint64_t      c_version;
	int64_t       c_mtime;
	uint64_t      c_size;
	void         *orphan;    /* open file kept after unlink (ino_unlink) */
	int64_t       dir_mtime; /* last change of the directory's entries here, or 0 */
	struct inode *next_ino;
	struct inode *next_name;
};

struct htab {
	struct inode **b;
	size_t         nb; /* power of two */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct htab by_ino, by_name;
static size_t nnodes, nnamed;
static uint64_t next_ino = INO_ROOT + 1;
static struct inode *root;
static void (*orphan_free)(void *orphan);

/* ---- hashing -------------------------------------------------------------- */

static size_t hash_ino(uint64_t ino, size_t nb)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 17) & (nb - 1);
}

static size_t hash_name(uint64_t parent, const char *name, size_t nlen, size_t nb)
{
	uint64_t h = 0xcbf29ce484222325ull ^ (parent * 0x9e3779b97f4a7c15ull);

	for (size_t i = 0; i < nlen; i++) {
		h ^= (unsigned char)name[i];
		h *= 0x100000001b3ull;
	}
	return (size_t)(h ^ (h >> 29)) & (nb - 1);
}

static struct inode **ino_slot(struct inode *n)
{
	return &by_ino.b[hash_ino(n->ino, by_ino.nb)];
}

static struct inode **name_slot(struct inode *n)
{
	return &by_name.b[hash_name(n->parent, n->name, n->nlen, by_name.nb)];
}

/* Doubles a table when it holds more nodes than buckets. Failing to grow
 * only makes chains longer. */
static void grow(struct htab *t, size_t count, int names)
{
	struct inode **nb, *n, *next;
	size_t size;

	if (count <= t->nb)
		return;
	size = t->nb * 2;
	nb = calloc(size, sizeof(*nb));
	if (!nb)
		return;
	for (size_t i = 0; i < t->nb; i++) {
		for (n = t->b[i]; n; n = next) {
			size_t h;
			if (names) {
				next = n->next_name;
				h = hash_name(n->parent, n->name, n->nlen, size);
				n->next_name = nb[h];
			} else {
				next = n->next_ino;
				h = hash_ino(n->ino, size);
				n->next_ino = nb[h];
			}
			nb[h] = n;
		}
	}
	free(t->b);
	t->b = nb;
	t->nb = size;
}

static struct inode *get(uint64_t ino)
{
	struct inode *n = by_ino.b[hash_ino(ino, by_ino.nb)];

	while (n && n->ino != ino)
		n = n->next_ino;
	return n;
}

static struct inode *get_child(uint64_t parent, const char *name, size_t nlen)
{
	struct inode *n = by_name.b[hash_name(parent, name, nlen, by_name.nb)];

	while (n && !(n->parent == parent && n->nlen == nlen && !memcmp(n->name, name, nlen)))
		n = n->next_name;
	return n;
}

/* ---- naming and freeing --------------------------------------------------- */

static void maybe_free(struct inode *n);

/* Takes the node's name away: it leaves the name hash and stops holding its
 * parent in the table. Returns the parent for the caller to maybe_free. */
static struct inode *drop_name(struct inode *n)
{
	struct inode **pp = name_slot(n), *p;

	while (*pp != n)
		pp = &(*pp)->next_name;
	*pp = n->next_name;
	free(n->name);
	n->name = NULL;
	n->nlen = 0;
	nnamed--;
	p = get(n->parent);
	if (p)
		p->nchildren--;
	return p;
}

static void unname(struct inode *n)
{
	maybe_free(drop_name(n));
}

/* Gives the node the name (parent, name); name is malloc'd and owned now. */
static void name_it(struct inode *n, uint64_t parent, char *name, size_t nlen)
{
	struct inode **slot;

	n->parent = parent;
	n->name = name;
	n->nlen = nlen;
	get(parent)->nchildren++;
	nnamed++;
	grow(&by_name, nnamed, 1);
	slot = name_slot(n);
	n->next_name = *slot;
	*slot = n;
}

static void maybe_free(struct inode *n)
{
	struct inode **pp;

	while (n && n != root && n->nlookup == 0 && n->nchildren == 0) {
		/* The parent is checked by this loop, not recursively. */
		struct inode *p = n->name ? drop_name(n) : NULL;

		pp = ino_slot(n);
		while (*pp != n)
			pp = &(*pp)->next_ino;
		*pp = n->next_ino;
		nnodes--;
		if (n->orphan && orphan_free)
			orphan_free(n->orphan);
		free(n);
		n = p;
	}
}

/* ---- public --------------------------------------------------------------- */

int ino_init(void (*free_fn)(void *orphan))
{
	orphan_free = free_fn;
	by_ino.nb = by_name.nb = 1024;
	by_ino.b = calloc(by_ino.nb, sizeof(*by_ino.b));
	by_name.b = calloc(by_name.nb, sizeof(*by_name.b));
	root = calloc(1, sizeof(*root));
	if (!by_ino.b || !by_name.b || !root) {
		ino_fini();
		return -ENOMEM;
	}
	root->ino = INO_ROOT;
	root->nlookup = 1; /* the kernel never forgets the root */
	root->type = S_IFDIR;
	by_ino.b[hash_ino(INO_ROOT, by_ino.nb)] = root;
	nnodes = 1;
	nnamed = 0;
	next_ino = INO_ROOT + 1;
	return 0;
}

void ino_fini(void)
{
	struct htab bi, bn;
	struct inode *r;

	/* Detached under the lock (a change listener may still be looking,
	 * ino_changed), freed outside it. */
	pthread_mutex_lock(&lock);
	bi = by_ino;
	bn = by_name;
	r = root;
	memset(&by_ino, 0, sizeof(by_ino));
	memset(&by_name, 0, sizeof(by_name));
	root = NULL;
	nnodes = nnamed = 0;
	pthread_mutex_unlock(&lock);
	for (size_t i = 0; bi.b && i < bi.nb; i++) {
		struct inode *n = bi.b[i], *next;
		for (; n; n = next) {
			next = n->next_ino;
			if (n->orphan && orphan_free)
				orphan_free(n->orphan);
			free(n->name);
			free(n);
		}
	}
	free(bi.b);
	free(bn.b);
	if (!bi.b)
		free(r);
}

uint64_t ino_lookup(uint64_t parent, const char *name, size_t nlen, mode_t type)
{
	struct inode *n;
	uint64_t ino = 0;
	char *copy;

	type &= S_IFMT;
	pthread_mutex_lock(&lock);
	if (!get(parent))
		goto out;
	n = get_child(parent, name, nlen);
	if (n && n->type != type) {
		unname(n); /* the kernel must see a new inode for a new type */
		maybe_free(n);
		n = NULL;
		if (!get(parent))
			goto out;
	}
	if (!n) {
		n = calloc(1, sizeof(*n));
		copy = malloc(nlen + 1);
		if (!n || !copy) {
			free(n);
			free(copy);
			goto out;
		}
		memcpy(copy, name, nlen);
		copy[nlen] = '\0';
		n->ino = next_ino++;
		n->type = type;
		nnodes++;
		grow(&by_ino, nnodes, 0);
		struct inode **slot = ino_slot(n);
		n->next_ino = *slot;
		*slot = n;
		name_it(n, parent, copy, nlen);
	}
	n->nlookup++;
	ino = n->ino;
out:
	pthread_mutex_unlock(&lock);
	return ino;
}

void ino_forget(uint64_t ino, uint64_t count)
{
	struct inode *n;

	pthread_mutex_lock(&lock);
	n = get(ino);
	if (n && n != root) {
		n->nlookup = count < n->nlookup ? n->nlookup - count : 0;
		maybe_free(n);
	}
	pthread_mutex_unlock(&lock);
}

/* Builds the path of n from its end backwards. Called under the lock. */
static int build_path(const struct inode *n, const char *extra, char *buf, size_t size)
{
	size_t len = 0, elen = extra ? strlen(extra) : 0;
	const struct inode *p;

	if (extra)
		len = elen + 1;
	for (p = n; p != root; p = get(p->parent)) {
		if (!p || !p->name)
			return -ENOENT;
		len += p->nlen + 1;
	}
	if (len == 0)
		len = 1; /* the root itself: "/" */
	if (len + 1 > size)
		return -ENAMETOOLONG;
	buf[len] = '\0';
	buf[0] = '/';
	size_t at = len;
	if (extra) {
		at -= elen;
		memcpy(buf + at, extra, elen);
		buf[--at] = '/';
	}
	for (p = n; p != root; p = get(p->parent)) {
		at -= p->nlen;
		memcpy(buf + at, p->name, p->nlen);
		buf[--at] = '/';
	}
	return (int)len;
}

int ino_child_path(uint64_t parent, const char *name, char *buf, size_t size)
{
	struct inode *n;
	int rc = -ENOENT;

	pthread_mutex_lock(&lock);
	if ((n = get(parent)))
		rc = build_path(n, name, buf, size);
	pthread_mutex_unlock(&lock);
	return rc;
}

int ino_path(uint64_t ino, char *buf, size_t size)
{
	return ino_child_path(ino, NULL, buf, size);
}

/* Node n (may be NULL) loses its name; it keeps `orphan` if it has none.
 * Returns the orphan when not kept, for orphan_free. Under the lock. */
static void *drop_entry(struct inode *n, void *orphan)
{
	if (!n)
		return orphan;
	if (orphan && !n->orphan) {
		n->orphan = orphan;
		orphan = NULL;
	}
	unname(n);
	maybe_free(n);
	return orphan;
}

void ino_unlink(uint64_t parent, const char *name, void *orphan)
{
	pthread_mutex_lock(&lock);
	orphan = drop_entry(get_child(parent, name, strlen(name)), orphan);
	if (orphan && orphan_free)
		orphan_free(orphan);
	pthread_mutex_unlock(&lock);
}

int ino_orphan(uint64_t ino, void (*fn)(void *arg, void *orphan), void *arg)
{
	struct inode *n;
	int rc = -ENOENT;

	pthread_mutex_lock(&lock);
	n = get(ino);
	if (n && !n->name && n->orphan) {
		fn(arg, n->orphan);
		rc = 0;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

void ino_rename(uint64_t parent, const char *name, uint64_t newparent,
		const char *newname, void *orphan)
{
	struct inode *n, *old;
	size_t nlen = strlen(newname);
	char *copy = malloc(nlen + 1);

	pthread_mutex_lock(&lock);
	n = get_child(parent, name, strlen(name));
	old = get_child(newparent, newname, nlen);
	/* The replaced node lives on for its open handles. */
	orphan = drop_entry(old != n ? old : NULL, orphan);
	if (orphan && orphan_free)
		orphan_free(orphan);
	if (n && n != old) {
		/* Keep the node while it is renamed: unname() may otherwise free it
		 * (and its old parent) when the kernel holds no lookup. */
		n->nlookup++;
		unname(n);
		if (copy && get(newparent)) {
			memcpy(copy, newname, nlen + 1);
			name_it(n, newparent, copy, nlen);
			copy = NULL;
		}
		n->nlookup--;
		maybe_free(n);
	}
	pthread_mutex_unlock(&lock);
	free(copy);
}

void ino_dir_touch(uint64_t ino, int64_t now_ns)
{
	struct inode *n;

	pthread_mutex_lock(&lock);
	n = get(ino);
	if (n && now_ns > n->dir_mtime)
		n->dir_mtime = now_ns;
	pthread_mutex_unlock(&lock);
}

void ino_dir_set(uint64_t ino, int64_t mtime_ns)
{
	struct inode *n;

	pthread_mutex_lock(&lock);
	n = get(ino);
	if (n)
		n->dir_mtime = mtime_ns;
	pthread_mutex_unlock(&lock);
}

int64_t ino_dir_mtime(uint64_t ino)
{
	struct inode *n;
	int64_t t = 0;

	pthread_mutex_lock(&lock);
	n = get(ino);
	if (n)
		t = n->dir_mtime;
	pthread_mutex_unlock(&lock);
	return t;
}

int ino_child_is_dir(uint64_t parent, const char *name)
{
	struct inode *n;
	int dir;

	pthread_mutex_lock(&lock);
	n = get_child(parent, name, strlen(name));
	dir = !n || S_ISDIR(n->type);
	pthread_mutex_unlock(&lock);
	return dir;
}

/* ino_find() with the lock held. */
static int find_locked(const char *path, size_t len, uint64_t *parent, uint64_t *ino)
{
	const char *p = path, *end = path + len;
	struct inode *dir = root, *n;

	if (!dir)
		return -ENOENT; /* torn down (ino_fini) */
	for (;;) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *e = slash ? slash : end;
		n = get_child(dir->ino, p, (size_t)(e - p));
		if (!slash)
			break;
		if (!n)
			return -ENOENT;
		dir = n;
		p = slash + 1;
	}
	*parent = dir->ino;
	*ino = n ? n->ino : 0;
	return 0;
}

int ino_find(const char *path, size_t len, uint64_t *parent, uint64_t *ino)
{
	int rc;

	pthread_mutex_lock(&lock);
	rc = find_locked(path, len, parent, ino);
	pthread_mutex_unlock(&lock);
	return rc;
}

/* ino_changed() calls without a node, counted per bucket of names, so that
 * a stream of changes to other names leaves a lookup cacheable. Written
 * under lock. */
#define CHANGE_BUCKETS 1024
static uint64_t changes[CHANGE_BUCKETS];

/* The bucket of a store key without its trailing '/'. */
static uint64_t *change_bucket(const char *key, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)key[i]) * 16777619u;
	return &changes[h % CHANGE_BUCKETS];
}

int ino_changed(const char *key, size_t len, int wait, uint64_t *parent, uint64_t *ino)
{
	uint64_t p, i = 0;
	int known;

	while (len && key[len - 1] == '/') /* a directory's marker names it */
		len--;
	/* Searched and counted in one hold of the lock: a lookup that
	 * registers the name after the search reads the new count. */
	if (wait)
		pthread_mutex_lock(&lock);
	else if (pthread_mutex_trylock(&lock) != 0)
		return -EBUSY;
	known = len && find_locked(key, len, &p, &i) == 0 && i;
	if (!known)
		__atomic_add_fetch(change_bucket(key, len), 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&lock);
	if (known && parent)
		*parent = p;
	if (known && ino)
		*ino = i;
	return known;
}

uint64_t ino_changes(const char *path)
{
	while (*path == '/')
		path++;
	return __atomic_load_n(change_bucket(path, strlen(path)), __ATOMIC_SEQ_CST);
}

int ino_cache_check(uint64_t ino, uint64_t version, int64_t mtime_ns, uint64_t size)
{
	struct inode *n;
	int keep = 0;

	pthread_mutex_lock(&lock);
	n = get(ino);
	if (n) {
		keep = n->cached && n->c_version == version && n->c_mtime == mtime_ns &&
		       n->c_size == size;
		n->cached = 1;
		n->c_version = version;
		n->c_mtime = mtime_ns;
		n->c_size = size;
	}
	pthread_mutex_unlock(&lock);
	return keep;
}

void ino_cache_drop(uint64_t ino)
{
	struct inode *n;

	pthread_mutex_lock(&lock);
	if ((n = get(ino)))
		n->cached = 0;
	pthread_mutex_unlock(&lock);
}

size_t ino_count(void)
{
	size_t n;

	pthread_mutex_lock(&lock);
	n = nnodes;
	pthread_mutex_unlock(&lock);
	return n;
}
