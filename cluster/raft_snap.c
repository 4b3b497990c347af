/*
 * raft_snap.c — snapshots (thesis §5): log compaction once the state machine
 * saved one, InstallSnapshot sent in chunks from the leader's own copy, and
 * installation on the follower.
 *
 * Transfer protocol: the leader copies io->snapshot_get() once per transfer
 * and sends chunk after chunk (SNAPSHOT: offset in `seq`, total size in
 * `hint`), one in flight per follower. The follower answers each chunk with
 * SNAPSHOT_RESP carrying the bytes it holds, and the last one, after
 * installing, with APPEND_RESP like an AppendEntries. A chunk that does not
 * fit what the follower holds (lost, duplicated, reordered, or the follower
 * restarted) is answered with what it does hold, and the leader goes on from
 * there; a transfer that stalls is resumed after an election timeout.
 *
 * The total size in the first chunk is a claim of the sender, not a size to
 * reserve: the follower's buffer grows only as chunks arrive, so a member
 * claiming an absurd size costs it no more memory than the bytes it sent.
 */
#include <inttypes.h>

#include "cluster/raft_int.h"

#define CHUNK_DEFAULT (4u << 20)

static void in_snap_drop(raft *r)
{
	free(r->in_snap.buf);
	memset(&r->in_snap, 0, sizeof(r->in_snap));
}

void raft__snapshot_free(raft *r)
{
	free(r->out_snap.data);
	memset(&r->out_snap, 0, sizeof(r->out_snap));
	in_snap_drop(r);
}

/* Frees the leader's copy once no follower is being sent it. */
void raft__snapshot_idle(raft *r)
{
	uint32_t i;

	for (i = 1; i <= r->cfg.n; i++)
		if (i != r->cfg.id && r->prog[i].state == PROG_SNAPSHOT)
			return;
	free(r->out_snap.data);
	memset(&r->out_snap, 0, sizeof(r->out_snap));
}

/* Makes r->out_snap the io's newest snapshot. */
static int load_out_snap(raft *r)
{
	uint64_t si, st;
	const void *data;
	size_t len;
	void *copy;
	int rc = r->io.snapshot_get(r->io.arg, &si, &st, &data, &len);

	if (rc)
		return rc;
	if (r->out_snap.data && r->out_snap.index == si && r->out_snap.term == st)
		return 0;
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, data, len);
	free(r->out_snap.data);
	r->out_snap.index = si;
	r->out_snap.term = st;
	r->out_snap.data = copy;
	r->out_snap.len = len;
	return 0;
}

/* Sends `to` the chunk at the offset it acknowledged; restart: begins a new
 * transfer of the io's newest snapshot. */
void raft__send_snapshot(raft *r, uint32_t to, int restart)
{
	struct progress *p = &r->prog[to];
	struct raft_msg m = { .type = RAFT_MSG_SNAPSHOT };
	size_t chunk = r->cfg.max_snapshot_chunk ? r->cfg.max_snapshot_chunk : CHUNK_DEFAULT;
	size_t n;

	if (restart || p->state != PROG_SNAPSHOT || !r->out_snap.data ||
	    p->snap_index != r->out_snap.index) {
		if (load_out_snap(r))
			return; /* nothing to send yet: tried again at the next heartbeat */
		p->state = PROG_SNAPSHOT;
		p->snap_index = r->out_snap.index;
		p->snap_off = 0;
	}
	n = r->out_snap.len - p->snap_off;
	if (n > chunk)
		n = chunk;
	m.index = r->out_snap.index;
	m.log_term = r->out_snap.term;
	m.seq = p->snap_off;
	m.hint = r->out_snap.len;
	m.data = (const uint8_t *)r->out_snap.data + p->snap_off;
	m.len = n;
	p->snap_sent_ms = now_ms(r);
	raft__send(r, &m, to);
}

void raft__handle_snapshot_resp(raft *r, const struct raft_msg *m)
{
	struct progress *p = &r->prog[m->from];

	p->active = 1;
	if (p->state != PROG_SNAPSHOT || m->index != p->snap_index)
		return;
	if (!r->out_snap.data || r->out_snap.index != p->snap_index) {
		raft__send_snapshot(r, m->from, 1); /* our copy moved on */
		return;
	}
	/* Equal: a duplicate, or the answer to a chunk already superseded;
	 * a lost chunk is resent by the heartbeat timer. Lower: the follower
	 * lost what it had (it restarted): go back. */
	if (m->seq == p->snap_off || m->seq > r->out_snap.len)
		return;
	p->snap_off = m->seq;
	raft__send_snapshot(r, m->from, 0);
}

/* Makes room for `need` bytes (at most the claimed total): doubling, so a
 * transfer of many chunks costs few copies. */
static int in_snap_room(raft *r, size_t need)
{
	size_t cap = r->in_snap.cap;
	uint8_t *buf;

	if (need <= cap)
		return 0;
	cap = cap > r->in_snap.len / 2 ? r->in_snap.len : cap * 2;
	if (cap < need)
		cap = need;
	buf = realloc(r->in_snap.buf, cap);
	if (!buf)
		return -ENOMEM;
	r->in_snap.buf = buf;
	r->in_snap.cap = cap;
	return 0;
}

/* Unanswered: the leader resends after an election timeout, is told we
 * hold nothing, and starts over. */
static void drop_for_memory(raft *r, const struct raft_msg *m)
{
	raft__warn(r, "dropped the snapshot at %" PRIu64 " from node %" PRIu32 " after %zu of "
		   "%zu bytes: out of memory", m->index, m->from, r->in_snap.got, r->in_snap.len);
	in_snap_drop(r);
}

static void reply_chunk(raft *r, const struct raft_msg *m, uint64_t got)
{
	struct raft_msg resp = { .type = RAFT_MSG_SNAPSHOT_RESP, .index = m->index, .seq = got };

	raft__send(r, &resp, m->from);
}

/* The whole snapshot is here: replace state machine and log. */
static void install(raft *r, uint32_t from, uint64_t index, uint64_t term,
		    const void *data, size_t len)
{
	size_t i;
	int rc;

	/* Thesis §5.3, InstallSnapshot receiver: "7. Discard the entire log.
	 * 8. Reset state machine using snapshot contents (and load snapshot's
	 * cluster configuration)." Whatever we acknowledged is at most our
	 * durable index, below `index`: covered by the snapshot. */
	rc = r->io.snapshot_install(r->io.arg, index, term, data, len);
	if (rc == RAFT_EREFUSED) {
		/* Nothing changed: we stay the replica we were (the io logged
		 * why). Unanswered, so the leader sends the snapshot again after
		 * its stall timeout: a snapshot we keep refusing costs one
		 * transfer per election timeout, not a loop. */
		return;
	}
	if (rc) {
		raft__fail(r, rc); /* the state machine may be half replaced */
		return;
	}
	raft__log_truncate(r, r->base_index + 1);
	r->base_index = r->snap_index = index;
	r->base_term = r->snap_term = term;
	r->commit = r->applied = index;
	/* Writes still in flight were issued before: they make nothing beyond
	 * the snapshot durable. */
	for (i = 0; i < r->pend_n; i++) {
		uint64_t *l = &r->pend[(r->pend_head + i) % r->pend_cap];

		if (*l > index)
			*l = index;
	}
	r->durable = index;
	r->lmatch = index;
	raft__reply_append(r, from, 0, index, 0);
	raft__reads_progress(r);
}

void raft__handle_snapshot(raft *r, const struct raft_msg *m)
{
	raft__heard_from_leader(r, m->from);
	if (r->failed)
		return;
	/* Thesis §5.3 (InstallSnapshot receiver): a snapshot that does not go
	 * beyond what we have committed brings nothing. */
	if (m->index <= r->commit) {
		uint64_t c = r->commit < last_index(r) ? r->commit : last_index(r);

		if (c > r->lmatch)
			r->lmatch = c; /* committed entries equal the leader's */
		raft__reply_append(r, m->from, 0, raft__ack_index(r), 0);
		return;
	}
	/* "6. If existing log entry has same index and term as snapshot's last
	 * included entry, retain log entries following it and reply." Our log
	 * then holds every entry the snapshot covers: commit them like an
	 * AppendEntries would, and apply them from the log. (Discarding them
	 * could drop entries we already acknowledged as durable.) */
	if (m->index <= last_index(r) && term_at(r, m->index) == m->log_term) {
		if (m->index > r->lmatch)
			r->lmatch = m->index;
		r->commit = m->index;
		raft__apply_committed(r);
		raft__reply_append(r, m->from, 0, raft__ack_index(r), 0);
		return;
	}
	/* "2. Create new snapshot file if first chunk (offset is 0). 3. Write
	 * data into snapshot file at given offset. 4. Reply and wait for more
	 * data chunks if done is false." */
	if (m->seq == 0) {
		if (m->hint > SIZE_MAX - 1 || m->len > m->hint)
			return;
		in_snap_drop(r);
		if (m->hint == m->len) { /* one chunk: nothing to buffer */
			install(r, m->from, m->index, m->log_term, m->data, m->len);
			return;
		}
		r->in_snap.index = m->index;
		r->in_snap.term = m->log_term;
		r->in_snap.len = (size_t)m->hint;
		/* A non-NULL buffer marks the transfer as started. */
		if (in_snap_room(r, m->len ? m->len : 1)) {
			drop_for_memory(r, m);
			return;
		}
	}
	if (!r->in_snap.buf || r->in_snap.index != m->index || r->in_snap.term != m->log_term ||
	    r->in_snap.len != m->hint || m->seq != r->in_snap.got ||
	    m->len > r->in_snap.len - r->in_snap.got) {
		int same = r->in_snap.buf && r->in_snap.index == m->index &&
			   r->in_snap.term == m->log_term;

		reply_chunk(r, m, same ? r->in_snap.got : 0);
		return;
	}
	if (in_snap_room(r, r->in_snap.got + m->len)) {
		drop_for_memory(r, m);
		return;
	}
	if (m->len)
		memcpy(r->in_snap.buf + r->in_snap.got, m->data, m->len);
	r->in_snap.got += m->len;
	if (r->in_snap.got < r->in_snap.len) {
		reply_chunk(r, m, r->in_snap.got);
		return;
	}
	install(r, m->from, m->index, m->log_term, r->in_snap.buf, r->in_snap.len);
	in_snap_drop(r);
}

uint64_t raft_follower_need(const raft *r, uint32_t id)
{
	const struct progress *p;

	if (r->role != RAFT_LEADER || id == 0 || id > r->cfg.n || id == r->cfg.id)
		return UINT64_MAX;
	p = &r->prog[id];
	if (p->state == PROG_SNAPSHOT)
		return p->snap_index;
	return p->active ? p->match : UINT64_MAX;
}

int raft_snapshot_taken(raft *r, uint64_t index)
{
	uint64_t trail = r->cfg.snapshot_trailing;

	if (index > r->applied)
		return -EINVAL;
	if (index <= r->snap_index)
		return 0;
	r->snap_term = term_at(r, index);
	r->snap_index = index;
	/* Thesis §5.1: "the log entries up through the last included index are
	 * discarded" — we keep a few so that slightly lagging followers can still
	 * be served from the log. */
	if (index > trail)
		raft__log_compact(r, index - trail);
	return 0;
}
