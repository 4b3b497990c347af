#include "store/map.h"

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
	struct node *next[];
};

static const char *node_key(const struct node *n)
{
	return (const char *)&n->next[n->height];
}

struct map {
	struct node *head; /* sentinel with MAX_HEIGHT levels, rec NULL */
	uint32_t     height;
	size_t       count;
	uint64_t     rng;
	/* map_append's cache of the last node per level; valid only while no
	 * put/del happened since it was computed. */
	struct node *tail[MAX_HEIGHT];
	int          tail_valid;
};

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

static struct node *node_new(kv_rec *rec, uint32_t height)
{
	size_t klen = rec ? rec->klen : 0;
	struct node *n = malloc(sizeof *n + height * sizeof(struct node *) + klen);

	if (!n)
		return NULL;
	n->rec = rec;
	n->height = (uint16_t)height;
	n->klen = (uint16_t)klen;
	if (klen)
		memcpy((char *)&n->next[height], rec_key(rec), klen);
	return n;
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
		free(n);
	}
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
	struct node *n = find_ge(m, key, klen, NULL);

	return n && node_cmp(n, key, klen) == 0 ? n->rec : NULL;
}

int map_put(map *m, kv_rec *rec, kv_rec **old)
{
	struct node *prev[MAX_HEIGHT], *n;
	uint32_t h;

	*old = NULL;
	n = find_ge(m, rec_key(rec), rec->klen, prev);
	if (n && node_cmp(n, rec_key(rec), rec->klen) == 0) {
		*old = n->rec;
		n->rec = rec;
		return 0;
	}
	h = random_height(m);
	n = node_new(rec, h);
	if (!n)
		return -ENOMEM;
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
	h = random_height(m);
	n = node_new(rec, h);
	if (!n)
		return -ENOMEM;
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
	for (uint32_t l = 0; l < n->height; l++)
		prev[l]->next[l] = n->next[l];
	while (m->height > 1 && !m->head->next[m->height - 1])
		m->height--;
	rec = n->rec;
	free(n);
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
