#include "store/map.h"
#include "store/hbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEIGHT 20 /* 4^20 >> any key count we will hold */

/* The key is copied into the node, after next[height]: a search touches
 * only the nodes it walks through, not the records (one cache miss per step
 * instead of two; recovery of a million keys got about twice as fast). */
struct node {
	kv_rec      *rec;
	uint16_t     klen;
	uint16_t     height;
	uint16_t     slab;   /* 1: carved from a slab chunk, not malloc'd */
	struct node *next[];
};

/* Nodes made by map_append (a bulk load: snapshot loading, log recovery)
 * are carved out of large chunks instead of one malloc each: a million
 * mallocs cost more than the rest of the append, the chunk sits on huge
 * pages (few page faults), and nodes adjacent in key order are adjacent in
 * memory, which helps every later walk along level 0. A deleted slab node
 * is not reused: its bytes stay until map_free, so the waste is bounded by
 * the size of the map as it was bulk-loaded. */
#define SLAB_CHUNK ((size_t)4 << 20)

struct slab {
	struct slab *next;
	size_t       used;  /* bytes of the chunk in use, this header included */
};

static const char *node_key(const struct node *n)
{
	return (const char *)&n->next[n->height];
}

/* The point-lookup index: an open-addressing hash table (linear probing,
 * at most half full) from key to node, kept next to the skiplist by every
 * put, append and delete. map_get is the hot read path (a FUSE lookup or a
 * GET is one): one probe, usually one node read, instead of the ~log4(n)
 * levels of cache misses of a skiplist search. It costs 16 bytes per slot,
 * some 32 bytes per key. Ordered operations still use the skiplist. */
struct hslot {
	struct node *n;    /* NULL: empty */
	uint64_t     hash;
};

struct map {
	struct node *head; /* sentinel with MAX_HEIGHT levels, rec NULL */
	struct hslot *idx;
	size_t       idx_cap; /* a power of two, or 0 */
	uint32_t     height;
	size_t       count;
	uint64_t     rng;
	/* map_append's cache of the last node per level; valid only while no
	 * put/del happened since it was computed. */
	struct node *tail[MAX_HEIGHT];
	int          tail_valid;
	struct slab *slabs;  /* newest chunk first */
	uint64_t    *dirs;   /* Bloom filter of directory prefixes, see map_maybe_dir */
};

/* The directory filter: a Bloom filter over every "a", "a/b" that is a
 * proper '/'-prefix of a key ever put into the map, so that "is there any
 * key below K/?" (asked before creating key K) needs a skiplist seek only
 * when the answer may be yes. Insert-only (deleted keys leave their bits:
 * a false "maybe" costs just the seek); allocated with the first key that
 * has a '/'. 2^23 bits (1 MiB), 3 bits per prefix: about 1% false
 * positives at 800,000 directories. */
#define DIRS_BITS ((size_t)1 << 23)

static void dirs_bits(uint64_t h, size_t bit[3])
{
	bit[0] = (size_t)h & (DIRS_BITS - 1);
	bit[1] = (size_t)(h >> 23) & (DIRS_BITS - 1);
	bit[2] = (size_t)(h >> 41) & (DIRS_BITS - 1);
}

int map_keycmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int node_cmp(const struct node *n, const char *key, size_t klen)
{
	return map_keycmp(node_key(n), n->klen, key, klen);
}

static uint64_t key_hash(const char *k, size_t n)
{
	/* Multiply-xorshift over 8-byte words (in the spirit of FxHash: a few
	 * cycles per word). */
	const uint64_t K = 0x9E3779B97F4A7C15ull;
	uint64_t h = n * K, w;

	for (; n >= 8; k += 8, n -= 8) {
		memcpy(&w, k, 8);
		h = (h ^ w) * K;
		h ^= h >> 29;
	}
	if (n) {
		w = 0;
		memcpy(&w, k, n);
		h = (h ^ w) * K;
		h ^= h >> 29;
	}
	/* The multiplications above carry only upward: the fmix64 finaliser
	 * of MurmurHash3 makes every key bit reach the low bits the table
	 * uses. */
	h ^= h >> 33;
	h *= 0xFF51AFD7ED558CCDull;
	h ^= h >> 33;
	h *= 0xC4CEB9FE1A85EC53ull;
	return h ^ (h >> 33);
}

/* Notes every directory prefix of key in the filter. -ENOMEM only when the
 * filter cannot be allocated (the map is then left unchanged). */
static int dirs_note(map *m, const char *key, size_t klen)
{
	const char *slash = memchr(key, '/', klen);
	size_t bit[3];

	if (!slash)
		return 0;
	if (!m->dirs) {
		m->dirs = calloc(DIRS_BITS / 64, sizeof *m->dirs);
		if (!m->dirs)
			return -ENOMEM;
	}
	for (; slash; slash = memchr(slash + 1, '/', klen - (size_t)(slash + 1 - key))) {
		dirs_bits(key_hash(key, (size_t)(slash - key)), bit);
		for (int i = 0; i < 3; i++)
			m->dirs[bit[i] / 64] |= 1ull << (bit[i] % 64);
	}
	return 0;
}

int map_maybe_dir(const map *m, const char *key, size_t klen)
{
	size_t bit[3];

	if (!m->dirs)
		return 0;
	dirs_bits(key_hash(key, klen), bit);
	for (int i = 0; i < 3; i++)
		if (!(m->dirs[bit[i] / 64] & (1ull << (bit[i] % 64))))
			return 0;
	return 1;
}

/* Makes room for `more` keys on top of those in the map (the table stays
 * at most half full). 0 or -ENOMEM. */
static int idx_room(map *m, size_t more)
{
	size_t cap = m->idx_cap ? m->idx_cap : 256;
	struct hslot *v;

	if (more > SIZE_MAX / 4 - m->count)
		return -ENOMEM;
	while (cap / 2 < m->count + more)
		cap *= 2;
	if (cap == m->idx_cap)
		return 0;
	/* Zeroed, and on huge pages: for a million keys it is 32 MiB. */
	v = hbuf_alloc(cap * sizeof *v);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < m->idx_cap; i++) {
		size_t j;

		if (!m->idx[i].n)
			continue;
		for (j = m->idx[i].hash & (cap - 1); v[j].n; j = (j + 1) & (cap - 1))
			;
		v[j] = m->idx[i];
	}
	hbuf_free(m->idx, m->idx_cap * sizeof *m->idx);
	m->idx = v;
	m->idx_cap = cap;
	return 0;
}

static int idx_reserve(map *m)
{
	return idx_room(m, 1);
}

int map_reserve(map *m, size_t n)
{
	return idx_room(m, n);
}

/* The slot of key, or NULL. */
static struct hslot *idx_find(const map *m, const char *key, size_t klen, uint64_t h)
{
	size_t mask = m->idx_cap - 1;

	if (!m->idx_cap)
		return NULL;
	for (size_t j = h & mask; m->idx[j].n; j = (j + 1) & mask) {
		const struct node *n = m->idx[j].n;

		if (m->idx[j].hash == h && n->klen == klen &&
		    !memcmp((const char *)&n->next[n->height], key, klen))
			return &m->idx[j];
	}
	return NULL;
}

/* Adds node n (whose key is not indexed yet); idx_reserve() came first. */
static void idx_add(map *m, struct node *n)
{
	uint64_t h = key_hash((const char *)&n->next[n->height], n->klen);
	size_t mask = m->idx_cap - 1, j;

	for (j = h & mask; m->idx[j].n; j = (j + 1) & mask)
		;
	m->idx[j].n = n;
	m->idx[j].hash = h;
}

/* Removes the slot of n: backward-shift deletion for linear probing
 * (Knuth, TAOCP vol. 3, 6.4, Algorithm R), so no tombstones build up. */
static void idx_remove(map *m, const struct node *n)
{
	uint64_t h = key_hash((const char *)&n->next[n->height], n->klen);
	size_t mask = m->idx_cap - 1, i, j;

	for (i = h & mask; m->idx[i].n != n; i = (i + 1) & mask)
		;
	for (j = (i + 1) & mask; m->idx[j].n; j = (j + 1) & mask) {
		size_t home = m->idx[j].hash & mask;

		/* The entry at j may move to the hole at i unless its home
		 * slot lies cyclically in (i, j]. */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			m->idx[i] = m->idx[j];
			i = j;
		}
	}
	m->idx[i].n = NULL;
}

static uint32_t random_height(map *m)
{
	uint32_t h = 1;
	uint64_t x = m->rng;

	/* xorshift64 (Marsaglia 2003). */
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	m->rng = x;
	/* Branching factor 4: each extra level with probability 1/4. */
	while (h < MAX_HEIGHT && (x & 3) == 0) {
		h++;
		x >>= 2;
	}
	return h;
}

static size_t node_size(size_t klen, uint32_t height)
{
	return sizeof(struct node) + height * sizeof(struct node *) + klen;
}

static void node_init(struct node *n, kv_rec *rec, uint32_t height, int slab)
{
	size_t klen = rec ? rec->klen : 0;

	n->rec = rec;
	n->height = (uint16_t)height;
	n->klen = (uint16_t)klen;
	n->slab = (uint16_t)slab;
	if (klen)
		memcpy((char *)&n->next[height], rec_key(rec), klen);
}

static struct node *node_new(kv_rec *rec, uint32_t height)
{
	struct node *n = malloc(node_size(rec ? rec->klen : 0, height));

	if (n)
		node_init(n, rec, height, 0);
	return n;
}

/* A node from the newest slab chunk (a new chunk when it is full). */
static struct node *node_new_slab(map *m, kv_rec *rec, uint32_t height)
{
	/* Pointer alignment for the next node. */
	size_t need = (node_size(rec->klen, height) + 7) & ~(size_t)7;
	struct slab *c = m->slabs;
	struct node *n;

	/* Under AddressSanitizer every node is its own allocation, so that an
	 * overflow of one node is caught instead of landing in its neighbour. */
#if defined(__SANITIZE_ADDRESS__)
	(void)c;
	return node_new(rec, height);
#endif
	if (need > SLAB_CHUNK / 8)
		return node_new(rec, height);
	if (!c || c->used + need > SLAB_CHUNK) {
		c = hbuf_alloc(SLAB_CHUNK);
		if (!c)
			return NULL;
		c->next = m->slabs;
		c->used = (sizeof *c + 7) & ~(size_t)7;
		m->slabs = c;
	}
	n = (struct node *)((char *)c + c->used);
	c->used += need;
	node_init(n, rec, height, 1);
	return n;
}

static void node_free(struct node *n)
{
	if (!n->slab)
		free(n);
}

map *map_new(uint64_t seed)
{
	map *m = calloc(1, sizeof *m);

	if (!m)
		return NULL;
	m->head = node_new(NULL, MAX_HEIGHT);
	if (!m->head) {
		free(m);
		return NULL;
	}
	memset(m->head->next, 0, MAX_HEIGHT * sizeof(struct node *));
	m->height = 1;
	m->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
	return m;
}

void map_free(map *m)
{
	struct node *n, *next;

	if (!m)
		return;
	for (n = m->head->next[0]; n; n = next) {
		next = n->next[0];
		kv_rec_unref(n->rec);
		node_free(n);
	}
	while (m->slabs) {
		struct slab *c = m->slabs;

		m->slabs = c->next;
		hbuf_free(c, SLAB_CHUNK);
	}
	hbuf_free(m->idx, m->idx_cap * sizeof *m->idx);
	free(m->dirs);
	free(m->head);
	free(m);
}

size_t map_count(const map *m)
{
	return m->count;
}

/* Fills prev[] with the last node < key on every level; returns the first
 * node >= key on level 0 (or NULL). */
static struct node *find_ge(const map *m, const char *key, size_t klen, struct node **prev)
{
	struct node *x = m->head, *nx = NULL;

	for (int lvl = (int)m->height - 1; lvl >= 0; lvl--) {
		for (;;) {
			nx = x->next[lvl];
			if (!nx || node_cmp(nx, key, klen) >= 0)
				break;
			x = nx;
		}
		if (prev)
			prev[lvl] = x;
	}
	return nx;
}

kv_rec *map_get(const map *m, const char *key, size_t klen)
{
	const struct hslot *e = idx_find(m, key, klen, key_hash(key, klen));

	return e ? e->n->rec : NULL;
}

int map_put(map *m, kv_rec *rec, kv_rec **old)
{
	struct node *prev[MAX_HEIGHT], *n;
	struct hslot *e;
	uint32_t h;

	*old = NULL;
	/* Overwriting an existing key (the common write) changes no links:
	 * the hash index finds its node without a skiplist walk. */
	e = idx_find(m, rec_key(rec), rec->klen, key_hash(rec_key(rec), rec->klen));
	if (e) {
		*old = e->n->rec;
		e->n->rec = rec;
		return 0;
	}
	n = find_ge(m, rec_key(rec), rec->klen, prev);
	if (n && node_cmp(n, rec_key(rec), rec->klen) == 0) {
		*old = n->rec;
		n->rec = rec;
		return 0;
	}
	if (idx_reserve(m) || dirs_note(m, rec_key(rec), rec->klen))
		return -ENOMEM;
	h = random_height(m);
	n = node_new(rec, h);
	if (!n)
		return -ENOMEM;
	idx_add(m, n);
	for (uint32_t l = m->height; l < h; l++)
		prev[l] = m->head;
	if (h > m->height)
		m->height = h;
	for (uint32_t l = 0; l < h; l++) {
		n->next[l] = prev[l]->next[l];
		prev[l]->next[l] = n;
	}
	m->count++;
	m->tail_valid = 0;
	return 0;
}

int map_append(map *m, kv_rec *rec)
{
	struct node *n;
	uint32_t h;

	if (!m->tail_valid) {
		struct node *x = m->head;

		for (int lvl = MAX_HEIGHT - 1; lvl >= 0; lvl--) {
			while (x->next[lvl])
				x = x->next[lvl];
			m->tail[lvl] = x;
		}
		m->tail_valid = 1;
	}
	if (m->tail[0] != m->head &&
	    node_cmp(m->tail[0], rec_key(rec), rec->klen) >= 0)
		return -EINVAL;
	if (idx_reserve(m) || dirs_note(m, rec_key(rec), rec->klen))
		return -ENOMEM;
	h = random_height(m);
	n = node_new_slab(m, rec, h);
	if (!n)
		return -ENOMEM;
	idx_add(m, n);
	if (h > m->height)
		m->height = h;
	for (uint32_t l = 0; l < h; l++) {
		n->next[l] = NULL;
		m->tail[l]->next[l] = n;
		m->tail[l] = n;
	}
	m->count++;
	return 0;
}

kv_rec *map_del(map *m, const char *key, size_t klen)
{
	struct node *prev[MAX_HEIGHT], *n;
	kv_rec *rec;

	n = find_ge(m, key, klen, prev);
	if (!n || node_cmp(n, key, klen) != 0)
		return NULL;
	idx_remove(m, n);
	for (uint32_t l = 0; l < n->height; l++)
		prev[l]->next[l] = n->next[l];
	while (m->height > 1 && !m->head->next[m->height - 1])
		m->height--;
	rec = n->rec;
	node_free(n);
	m->count--;
	m->tail_valid = 0;
	return rec;
}

kv_rec *map_seek(const map *m, const char *key, size_t klen, int strict, map_iter *it)
{
	struct node *n;

	if (!key) {
		n = m->head->next[0];
	} else {
		n = find_ge(m, key, klen, NULL);
		if (n && strict && node_cmp(n, key, klen) == 0)
			n = n->next[0];
	}
	it->node = n;
	return n ? n->rec : NULL;
}

kv_rec *map_iter_next(map_iter *it)
{
	const struct node *n = it->node;

	if (!n)
		return NULL;
	n = n->next[0];
	it->node = n;
	return n ? n->rec : NULL;
}
