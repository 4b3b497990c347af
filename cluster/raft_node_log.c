/*
 * raft_node_log.c — the durable formats of the Raft layer (documented byte by
 * byte in raft_node.h): the term/vote metadata file, the WAL records that
 * carry log entries, and the replay that rebuilds the log at start-up.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/raft_node.h"
#include "store/crc32c.h"
#include "store/kvio.h"
#include "store/le.h"
#include "store/log.h"

/* ---- term and vote --------------------------------------------------------- */

int rn_meta_load(const char *dir, uint64_t *term, uint32_t *vote)
{
	unsigned char b[RN_META_SIZE + 1];
	long got;

	*term = 0;
	*vote = 0;
	got = kvio_read_small(kvio_posix(), dir, RN_META_FILE, b, sizeof b);
	if (got == -ENOENT)
		return 0;
	if (got < 0) {
		LOG(LOG_ERROR, "raft: cannot read %s/%s: %s", dir, RN_META_FILE, strerror((int)-got));
		return (int)got;
	}
	if (got != RN_META_SIZE || le_get32(b) != RN_META_MAGIC || le_get32(b + 4) != 1 ||
	    le_get32(b + 20) != crc32c(0, b, 20)) {
		LOG(LOG_ERROR, "raft: %s/%s is corrupt: refusing to start without the persisted "
		    "term and vote", dir, RN_META_FILE);
		return -EUCLEAN;
	}
	*term = le_get64(b + 8);
	*vote = le_get32(b + 16);
	return 0;
}

int rn_meta_save(const char *dir, uint64_t term, uint32_t vote)
{
	unsigned char b[RN_META_SIZE];
	int rc;

	le_put32(b, RN_META_MAGIC);
	le_put32(b + 4, 1);
	le_put64(b + 8, term);
	le_put32(b + 16, vote);
	le_put32(b + 20, crc32c(0, b, 20));
	rc = kvio_replace(kvio_posix(), dir, RN_META_FILE, b, sizeof b, KVIO_PRIVATE);
	if (rc)
		LOG(LOG_ERROR, "raft: cannot persist term %" PRIu64 " and vote %" PRIu32 " in %s/%s: %s",
		    term, vote, dir, RN_META_FILE, strerror(-rc));
	return rc;
}

/* ---- records --------------------------------------------------------------- */

#define ENT_HDR 13 /* u64 term, u8 type, u32 len */

int rn_entries_encode(uint64_t first, const struct raft_entry *e, size_t n,
		      void **out, size_t *len)
{
	size_t total = 12, i;
	unsigned char *b, *p;

	for (i = 0; i < n; i++)
		total += ENT_HDR + e[i].len;
	b = malloc(total);
	if (!b)
		return -ENOMEM;
	le_put64(b, first);
	le_put32(b + 8, (uint32_t)n);
	p = b + 12;
	for (i = 0; i < n; i++) {
		le_put64(p, e[i].term);
		p[8] = e[i].type;
		le_put32(p + 9, e[i].len);
		if (e[i].len)
			memcpy(p + ENT_HDR, e[i].data, e[i].len);
		p += ENT_HDR + e[i].len;
	}
	*out = b;
	*len = total;
	return 0;
}

void rn_reset_encode(uint64_t index, uint64_t term, unsigned char out[16])
{
	le_put64(out, index);
	le_put64(out + 8, term);
}

void rn_state_encode(uint64_t index, uint64_t term, unsigned char out[RN_STATE_SIZE])
{
	le_put32(out, RN_STATE_MAGIC);
	le_put32(out + 4, 1);
	le_put64(out + 8, index);
	le_put64(out + 16, term);
}

int rn_state_decode(const void *p, size_t len, uint64_t *index, uint64_t *term)
{
	const unsigned char *b = p;

	*index = 0;
	*term = 0;
	if (len == 0)
		return 0;
	if (len != RN_STATE_SIZE || le_get32(b) != RN_STATE_MAGIC || le_get32(b + 4) != 1)
		return -EUCLEAN;
	*index = le_get64(b + 8);
	*term = le_get64(b + 16);
	return 0;
}

/* ---- replay ---------------------------------------------------------------- */

struct rn_rec {
	struct rn_rec *next;
	uint8_t        type;
	uint64_t       lsn;
	size_t         len;
	unsigned char  data[];
};

int rn_replay_add(struct rn_replay *rp, uint8_t type, uint64_t lsn, const void *p, size_t len)
{
	struct rn_rec *r;

	if (type != RN_REC_ENTRIES && type != RN_REC_RESET)
		return 0; /* another layer's record (a data dir reused across modes) */
	r = malloc(sizeof *r + len);
	if (!r)
		return -ENOMEM;
	r->next = NULL;
	r->type = type;
	r->lsn = lsn;
	r->len = len;
	memcpy(r->data, p, len);
	if (rp->tail)
		rp->tail->next = r;
	else
		rp->head = r;
	rp->tail = r;
	rp->nrecs++;
	return 0;
}

void rn_replay_free(struct rn_replay *rp)
{
	struct rn_rec *r, *next;

	for (r = rp->head; r; r = next) {
		next = r->next;
		free(r);
	}
	rp->head = rp->tail = NULL;
	rp->nrecs = 0;
}

struct elog {
	struct raft_entry *e;
	uint64_t          *lsn;
	size_t             n, cap;
};

static int elog_push(struct elog *l, const struct raft_entry *e, uint64_t lsn)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct raft_entry *ne = realloc(l->e, cap * sizeof *ne);
		uint64_t *nl;

		if (!ne)
			return -ENOMEM;
		l->e = ne;
		nl = realloc(l->lsn, cap * sizeof *nl);
		if (!nl)
			return -ENOMEM;
		l->lsn = nl;
		l->cap = cap;
	}
	l->e[l->n] = *e;
	l->lsn[l->n] = lsn;
	l->n++;
	return 0;
}

/* Applies one ENTRIES record to the log being rebuilt (which starts at
 * snap_index + 1). */
static int replay_entries(struct elog *l, uint64_t snap_index, const struct rn_rec *r)
{
	const unsigned char *p = r->data, *end = r->data + r->len;
	uint64_t first, idx;
	uint32_t n, i;
	int rc;

	if (r->len < 12)
		return -EUCLEAN;
	first = le_get64(p);
	n = le_get32(p + 8);
	p += 12;
	/* Fig. 2: "If an existing entry conflicts with a new one (same index but
	 * different terms), delete the existing entry and all that follow it."
	 * A record replaces everything from `first` on. */
	if (first <= snap_index + 1) {
		l->n = 0;
	} else if (first <= snap_index + l->n + 1) {
		l->n = first - snap_index - 1;
	} else {
		/* Older than the log that follows the snapshot (its start was in
		 * a segment the store has deleted): a later record rewrites
		 * these indexes, so they are not needed. */
		LOG(LOG_DEBUG, "raft: replay skips record at lsn %" PRIu64 " (entry %" PRIu64
		    " after a gap)", r->lsn, first);
		return 0;
	}
	for (i = 0, idx = first; i < n; i++, idx++) {
		struct raft_entry e;

		if ((size_t)(end - p) < ENT_HDR)
			return -EUCLEAN;
		e.term = le_get64(p);
		e.type = p[8];
		e.len = le_get32(p + 9);
		if ((size_t)(end - p - ENT_HDR) < e.len)
			return -EUCLEAN;
		e.data = (void *)(p + ENT_HDR);
		p += ENT_HDR + e.len;
		if (idx <= snap_index)
			continue; /* already in the snapshot */
		rc = elog_push(l, &e, r->lsn);
		if (rc)
			return rc;
	}
	return p == end ? 0 : -EUCLEAN;
}

int rn_replay_build(struct rn_replay *rp, uint64_t snap_index, struct raft_entry **ents,
		    uint64_t **lsns, size_t *n)
{
	struct elog l = { 0 };
	struct rn_rec *r;
	int rc = 0;

	for (r = rp->head; r; r = r->next) {
		if (r->type == RN_REC_RESET) {
			uint64_t x;

			if (r->len != 16) {
				rc = -EUCLEAN;
				break;
			}
			x = le_get64(r->data);
			/* The install is complete only if the loaded store
			 * snapshot contains it (see raft_node.h). */
			if (snap_index >= x)
				l.n = 0;
			continue;
		}
		rc = replay_entries(&l, snap_index, r);
		if (rc) {
			if (rc == -EUCLEAN)
				LOG(LOG_ERROR, "raft: malformed log record at lsn %" PRIu64, r->lsn);
			break;
		}
	}
	if (rc) {
		free(l.e);
		free(l.lsn);
		return rc;
	}
	*ents = l.e;
	*lsns = l.lsn;
	*n = l.n;
	return 0;
}
