/*
 * raft_msg.c — binary encoding of Raft messages (format in raft.h).
 *
 * The transport carries opaque frames; this is the only place that knows the
 * layout. Integers are unsigned LEB128 varints so that a heartbeat is a few
 * dozen bytes; every length is checked against the frame before use.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/raft.h"

struct wbuf {
	uint8_t *p;
	size_t   len, cap;
};

static void put_u8(struct wbuf *w, uint8_t v)
{
	w->p[w->len++] = v;
}

static void put_var(struct wbuf *w, uint64_t v)
{
	while (v >= 0x80) {
		w->p[w->len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	w->p[w->len++] = (uint8_t)v;
}

static void put_bytes(struct wbuf *w, const void *p, size_t n)
{
	if (n)
		memcpy(w->p + w->len, p, n);
	w->len += n;
}

#define VAR_MAX 10u

int raft_msg_encode(const struct raft_msg *m, void **out, size_t *outlen)
{
	struct wbuf w = { 0 };
	size_t cap = 4 + 9 * VAR_MAX + VAR_MAX + m->len;
	uint32_t i;

	if (m->nentries && !m->entries)
		return -EINVAL;
	for (i = 0; i < m->nentries; i++)
		cap += VAR_MAX + 1 + VAR_MAX + m->entries[i].len;
	w.p = malloc(cap);
	if (!w.p)
		return -ENOMEM;
	w.cap = cap;
	put_u8(&w, RAFT_MSG_MAGIC);
	put_u8(&w, RAFT_MSG_VERSION);
	put_u8(&w, m->type);
	put_u8(&w, m->reject);
	put_var(&w, m->from);
	put_var(&w, m->to);
	put_var(&w, m->term);
	put_var(&w, m->index);
	put_var(&w, m->log_term);
	put_var(&w, m->commit);
	put_var(&w, m->hint);
	put_var(&w, m->seq);
	put_var(&w, m->nentries);
	for (i = 0; i < m->nentries; i++) {
		const struct raft_entry *e = &m->entries[i];

		put_var(&w, e->term);
		put_u8(&w, e->type);
		put_var(&w, e->len);
		put_bytes(&w, e->data, e->len);
	}
	put_var(&w, m->len);
	put_bytes(&w, m->data, m->len);
	*out = w.p;
	*outlen = w.len;
	return 0;
}

struct rbuf {
	const uint8_t *p;
	size_t len, off;
};

static int get_u8(struct rbuf *r, uint8_t *v)
{
	if (r->off >= r->len)
		return -EBADMSG;
	*v = r->p[r->off++];
	return 0;
}

static int get_var(struct rbuf *r, uint64_t *v)
{
	uint64_t x = 0;
	unsigned shift = 0;
	uint8_t b;

	do {
		if (r->off >= r->len || shift > 63)
			return -EBADMSG;
		b = r->p[r->off++];
		if (shift == 63 && (b & 0x7e))
			return -EBADMSG; /* more than 64 bits */
		x |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	} while (b & 0x80);
	*v = x;
	return 0;
}

static int get_u32(struct rbuf *r, uint32_t *v)
{
	uint64_t x;

	if (get_var(r, &x) || x > UINT32_MAX)
		return -EBADMSG;
	*v = (uint32_t)x;
	return 0;
}

static int get_bytes(struct rbuf *r, size_t n, const void **p)
{
	if (n > r->len - r->off)
		return -EBADMSG;
	*p = r->p + r->off;
	r->off += n;
	return 0;
}

int raft_msg_decode(const void *buf, size_t len, struct raft_msg *m)
{
	struct rbuf r = { .p = buf, .len = len, .off = 0 };
	struct raft_entry *ents = NULL;
	uint8_t magic, version;
	uint64_t dlen;
	uint32_t i;

	memset(m, 0, sizeof(*m));
	if (get_u8(&r, &magic) || get_u8(&r, &version) || magic != RAFT_MSG_MAGIC ||
	    version != RAFT_MSG_VERSION)
		goto err;
	if (get_u8(&r, &m->type) || get_u8(&r, &m->reject) ||
	    m->type == 0 || m->type > RAFT_MSG_TYPE_MAX || m->reject > 1)
		goto err;
	if (get_u32(&r, &m->from) || get_u32(&r, &m->to) || get_var(&r, &m->term) ||
	    get_var(&r, &m->index) || get_var(&r, &m->log_term) || get_var(&r, &m->commit) ||
	    get_var(&r, &m->hint) || get_var(&r, &m->seq) || get_u32(&r, &m->nentries))
		goto err;
	/* An entry takes at least 3 bytes: bound the allocation by the frame. */
	if (m->nentries > (len - r.off) / 3)
		goto err;
	if (m->nentries) {
		ents = calloc(m->nentries, sizeof(*ents));
		if (!ents)
			return -ENOMEM;
	}
	for (i = 0; i < m->nentries; i++) {
		const void *p;

		if (get_var(&r, &ents[i].term) || get_u8(&r, &ents[i].type) ||
		    get_u32(&r, &ents[i].len) || get_bytes(&r, ents[i].len, &p))
			goto err;
		if (ents[i].type != RAFT_ENTRY_NOOP && ents[i].type != RAFT_ENTRY_DATA)
			goto err;
		ents[i].data = (void *)p;
	}
	if (get_var(&r, &dlen) || dlen > SIZE_MAX || get_bytes(&r, (size_t)dlen, &m->data))
		goto err;
	m->len = (size_t)dlen;
	if (r.off != r.len)
		goto err;
	m->entries = ents;
	return 0;
err:
	free(ents);
	memset(m, 0, sizeof(*m));
	return -EBADMSG;
}

void raft_msg_release(struct raft_msg *m)
{
	free((void *)m->entries);
	m->entries = NULL;
	m->nentries = 0;
}

const char *raft_msg_type_name(uint8_t type)
{
	static const char *const names[] = {
		[RAFT_MSG_APPEND] = "append", [RAFT_MSG_APPEND_RESP] = "append_resp",
		[RAFT_MSG_HEARTBEAT] = "heartbeat", [RAFT_MSG_HEARTBEAT_RESP] = "heartbeat_resp",
		[RAFT_MSG_VOTE] = "vote", [RAFT_MSG_VOTE_RESP] = "vote_resp",
		[RAFT_MSG_PREVOTE] = "prevote", [RAFT_MSG_PREVOTE_RESP] = "prevote_resp",
		[RAFT_MSG_SNAPSHOT] = "snapshot", [RAFT_MSG_READ] = "read",
		[RAFT_MSG_READ_RESP] = "read_resp", [RAFT_MSG_COMMIT] = "commit",
		[RAFT_MSG_SNAPSHOT_RESP] = "snapshot_resp", [RAFT_MSG_TIMEOUT_NOW] = "timeout_now",
	};

	if (type == 0 || type > RAFT_MSG_TYPE_MAX)
		return "?";
	return names[type];
}

const char *raft_role_name(enum raft_role role)
{
	switch (role) {
	case RAFT_FOLLOWER:     return "follower";
	case RAFT_PRECANDIDATE: return "precandidate";
	case RAFT_CANDIDATE:    return "candidate";
	case RAFT_LEADER:       return "leader";
	}
	return "?";
}
