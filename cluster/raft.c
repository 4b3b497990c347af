/*
 * raft.c — the Raft core: log, replication, commitment, snapshots and the
 * entry points. Elections are in raft_elect.c, ReadIndex in raft_read.c.
 * No I/O: everything goes through struct raft_io.
 *
 * Rules of the paper are quoted from Figure 2 of "In Search of an
 * Understandable Consensus Algorithm" (extended version) or from Ongaro's
 * thesis ("thesis §x.y") above the code that implements them.
 *
 * Persistence model. Term and vote are persisted synchronously (io->persist_vote
 * returns once durable) before any message that depends on them is sent.
 * Entries are persisted asynchronously: io->append() starts a write and
 * raft_append_done() reports, in issue order, that it is durable. The core
 * keeps `durable`, the highest index up to which the disk is known to hold
 * exactly the entries held in memory, and never acknowledges (to a leader, or
 * to itself when counting a majority) anything beyond it.
 */
#include <stdarg.h>
#include <stdio.h>

#include "cluster/raft_int.h"

void raft__notify(raft *r)
{
	if (r->io.state_change)
		r->io.state_change(r->io.arg, r->role, r->term, r->leader);
}

void raft__fail(raft *r, int status)
{
	if (!r->failed)
		r->failed = status < 0 ? status : -EIO;
}

void raft__warn(raft *r, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (!r->io.warn)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	r->io.warn(r->io.arg, line);
}

void raft__send(raft *r, struct raft_msg *m, uint32_t to)
{
	if (r->failed)
		return;
	m->from = r->cfg.id;
	m->to = to;
	if (!m->term)
		m->term = r->term;
	r->io.send(r->io.arg, m);
}

void raft__reset_election_timer(raft *r)
{
	unsigned t = r->cfg.election_timeout_ms;

	r->election_deadline = now_ms(r) + t + r->io.random(r->io.arg) % t;
}

int raft__persist_vote(raft *r)
{
	int rc = r->io.persist_vote(r->io.arg, r->term, r->vote);

	if (rc)
		raft__fail(r, rc);
	return rc;
}
/* ---- Log storage ---------------------------------------------------------- */

void raft__free_entries(struct raft_entry *e, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(e[i].data);
}

static int log_reserve(raft *r, size_t extra)
{
	struct raft_entry *p;
	size_t cap = r->cap ? r->cap : 64;

	if (r->nents + extra <= r->cap)
		return 0;
	while (cap < r->nents + extra)
		cap *= 2;
	p = realloc(r->ents, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	r->ents = p;
	r->cap = cap;
	return 0;
}

/* Copies entries to the end of the in-memory log. */
static int log_push(raft *r, const struct raft_entry *e, size_t n)
{
	size_t i;
	int rc = log_reserve(r, n);

	if (rc)
		return rc;
	for (i = 0; i < n; i++) {
		struct raft_entry *d = &r->ents[r->nents + i];

		*d = e[i];
		d->data = NULL;
		if (e[i].len) {
			d->data = malloc(e[i].len);
			if (!d->data) {
				raft__free_entries(&r->ents[r->nents], i);
				return -ENOMEM;
			}
			memcpy(d->data, e[i].data, e[i].len);
		}
	}
	r->nents += n;
	return 0;
}

/* Drops entries with index >= from from memory. */
void raft__log_truncate(raft *r, uint64_t from)
{
	size_t keep = (size_t)(from - r->base_index - 1);

	raft__free_entries(&r->ents[keep], r->nents - keep);
	r->nents = keep;
}

/* Drops entries with index <= upto (covered by a snapshot). */
void raft__log_compact(raft *r, uint64_t upto)
{
	size_t drop;

	if (upto <= r->base_index)
		return;
	if (upto > last_index(r))
		upto = last_index(r);
	drop = (size_t)(upto - r->base_index);
	r->base_term = term_at(r, upto);
	raft__free_entries(r->ents, drop);
	memmove(r->ents, r->ents + drop, (r->nents - drop) * sizeof(*r->ents));
	r->nents -= drop;
	r->base_index = upto;
}

/* Issues io->append for entries [first, last_index] already in memory, after
 * updating the durability bookkeeping: until the write completes the disk may
 * hold the old entries from `first` on, so nothing at or beyond it is durable,
 * and earlier writes in flight will only make their prefix below it durable. */
static int persist_from(raft *r, uint64_t first)
{
	size_t i;

	if (r->pend_n == r->pend_cap) {
		size_t cap = r->pend_cap ? r->pend_cap * 2 : 64;
		uint64_t *p = malloc(cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		for (i = 0; i < r->pend_n; i++)
			p[i] = r->pend[(r->pend_head + i) % r->pend_cap];
		free(r->pend);
		r->pend = p;
		r->pend_head = 0;
		r->pend_cap = cap;
	}
	/* The clamped lasts never decrease along the queue, so a plain append
	 * after the newest write clamps nothing. */
	if (r->pend_n && r->pend[(r->pend_head + r->pend_n - 1) % r->pend_cap] > first - 1) {
		for (i = 0; i < r->pend_n; i++) {
			uint64_t *l = &r->pend[(r->pend_head + i) % r->pend_cap];

			if (*l > first - 1)
				*l = first - 1;
		}
	}
	if (r->durable > first - 1)
		r->durable = first - 1;
	r->pend[(r->pend_head + r->pend_n) % r->pend_cap] = last_index(r);
	r->pend_n++;
	r->io.append(r->io.arg, first, entry_at(r, first), (size_t)(last_index(r) - first + 1));
	return 0;
}
int raft__leader_append(raft *r, uint8_t type, const void *data, size_t len)
{
	struct raft_entry e = { .term = r->term, .type = type, .len = (uint32_t)len,
				.data = (void *)data };
	uint64_t first = last_index(r) + 1;
	int rc = log_push(r, &e, 1);

	if (rc)
		return rc;
	return persist_from(r, first);
}

/* ---- Applying ------------------------------------------------------------ */

void raft__apply_committed(raft *r)
{
	uint64_t upto = r->commit < r->durable ? r->commit : r->durable;
	int rc;

	/* Figure 2, all servers: "If commitIndex > lastApplied: increment
	 * lastApplied, apply log[lastApplied] to state machine." We apply only
	 * what is also durable here, so that applied <= durable always holds and
	 * any snapshot of the state machine is consistent with the stored log
	 * (a snapshot beyond a pending truncation could otherwise be followed,
	 * after a crash, by stale entries of an older term). */
	while (r->applied < upto && !r->failed && !r->apply_failed) {
		const struct raft_entry *e = entry_at(r, r->applied + 1);

		if (!e)
			break; /* cannot happen: applied >= base_index */
		r->applied++;
		rc = r->io.apply(r->io.arg, r->applied, e);
		if (rc) {
			r->applied--; /* not applied: reads must not wait past it */
			r->apply_failed = rc;
			/* A campaign stops here; a leader steps down at its
			 * next tick (not inside whatever called us). */
			if (r->role == RAFT_PRECANDIDATE || r->role == RAFT_CANDIDATE)
				raft__become_follower(r, r->term, 0);
		}
	}
	raft__reads_progress(r);
}

/* ---- Leader: replication -------------------------------------------------- */

/* Sends the entries from `next` on, or a snapshot when they were compacted
 * away. allow_empty: send even with nothing new (a probe for a gap). */
void raft__send_append(raft *r, uint32_t to, int allow_empty)
{
	struct progress *p = &r->prog[to];
	struct raft_msg m = { .type = RAFT_MSG_APPEND };
	uint64_t prev, last = last_index(r), n = 0;
	size_t bytes = 0, maxb = r->cfg.max_append_bytes ? r->cfg.max_append_bytes : (1u << 20);
	unsigned maxn = r->cfg.max_append_entries ? r->cfg.max_append_entries : 64;
	unsigned maxin = r->cfg.max_inflight ? r->cfg.max_inflight : 4096;

	if (p->state == PROG_SNAPSHOT || (p->state == PROG_PROBE && p->paused))
		return;
	if (p->state == PROG_REPLICATE && p->next - p->match > maxin && !allow_empty)
		return; /* flow control: wait for acknowledgements */
	prev = p->next - 1;
	if (prev < r->base_index) {
		raft__send_snapshot(r, to, 1);
		return;
	}
	while (prev + n < last && n < maxn) {
		const struct raft_entry *e = entry_at(r, prev + n + 1);

		if (n && bytes + e->len > maxb)
			break;
		bytes += e->len;
		n++;
	}
	if (!n && !allow_empty && p->state == PROG_REPLICATE)
		return;
	m.index = prev;
	m.log_term = term_at(r, prev);
	m.commit = r->commit;
	m.nentries = (uint32_t)n;
	/* The follower takes min(leaderCommit, last new entry). */
	if (prev + n > p->commit_sent)
		p->commit_sent = prev + n < r->commit ? prev + n : r->commit;
	m.entries = n ? entry_at(r, prev + 1) : NULL;
	raft__send(r, &m, to);
	if (p->state == PROG_REPLICATE)
		p->next = prev + n + 1;
	else
		p->paused = 1;
}

static void broadcast_append(raft *r)
{
	uint32_t i;

	for (i = 1; i <= r->cfg.n; i++)
		if (i != r->cfg.id)
			raft__send_append(r, i, 0);
}

void raft__broadcast_heartbeat(raft *r)
{
	uint32_t i;

	r->seq++;
	for (i = 1; i <= r->cfg.n; i++) {
		struct progress *p = &r->prog[i];
		struct raft_msg m = { .type = RAFT_MSG_HEARTBEAT, .seq = r->seq };

		if (i == r->cfg.id)
			continue;
		/* Only what the follower is known to hold can be declared committed
		 * to it without a log check (etcd's heartbeat rule). */
		m.commit = p->match < r->commit ? p->match : r->commit;
		if (m.commit > p->commit_sent)
			p->commit_sent = m.commit;
		raft__send(r, &m, i);
		/* A lost snapshot chunk (or its answer) is sent again after an
		 * election timeout, from what the follower acknowledged. */
		if (p->state == PROG_SNAPSHOT &&
		    now_ms(r) - p->snap_sent_ms >= r->cfg.election_timeout_ms)
			raft__send_snapshot(r, i, 0);
	}
}

/* Tells a follower the commit index it can use (what it is known to hold),
 * unless it already knows. Without this, followers would learn of a commit
 * only with the next AppendEntries or heartbeat, and a write acknowledged on a
 * follower (forwarded, or a ReadIndex wait there) would wait that long. */
static void notify_commit(raft *r, uint32_t to)
{
	struct progress *p = &r->prog[to];
	struct raft_msg m = { .type = RAFT_MSG_COMMIT };

	m.commit = p->match < r->commit ? p->match : r->commit;
	if (m.commit <= p->commit_sent || p->state == PROG_SNAPSHOT)
		return;
	p->commit_sent = m.commit;
	raft__send(r, &m, to);
}

void raft_flush(raft *r)
{
	uint32_t i;

	if (r->failed || r->role != RAFT_LEADER) {
		r->flush_append = r->flush_commit = 0;
		return;
	}
	for (i = 1; i <= r->cfg.n; i++) {
		if (i == r->cfg.id)
			continue;
		if (r->flush_append)
			raft__send_append(r, i, 0);
		if (r->flush_commit)
			notify_commit(r, i);
	}
	r->flush_append = r->flush_commit = 0;
}

/* Commit notices to every follower, now or at the next raft_flush(). */
static void commit_changed(raft *r)
{
	uint32_t i;

	if (r->cfg.defer_sends) {
		r->flush_commit = 1;
		return;
	}
	for (i = 1; i <= r->cfg.n; i++)
		if (i != r->cfg.id)
			notify_commit(r, i);
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

void raft__maybe_commit(raft *r)
{
	uint64_t m[RAFT_MAX_NODES];
	uint64_t n;
	uint32_t i;

	if (r->role != RAFT_LEADER)
		return;
	/* The leader's own log counts only up to what is durable on its disk
	 * (thesis §10.2.1: the leader may write in parallel with followers but
	 * counts itself once its write completes). */
	r->prog[r->cfg.id].match = r->durable;
	for (i = 1; i <= r->cfg.n; i++)
		m[i - 1] = r->prog[i].match;
	qsort(m, r->cfg.n, sizeof(m[0]), cmp_desc);
	n = m[quorum(r) - 1];
	/* Figure 2, leaders: "If there exists an N such that N > commitIndex, a
	 * majority of matchIndex[i] >= N, and log[N].term == currentTerm: set
	 * commitIndex = N." Older-term entries commit only indirectly (§5.4.2,
	 * Figure 8). */
	if (n > r->commit && term_at(r, n) == r->term) {
		r->commit = n;
		raft__apply_committed(r);
		commit_changed(r);
	}
}

static void handle_append_resp(raft *r, const struct raft_msg *m)
{
	struct progress *p = &r->prog[m->from];

	p->active = 1;
	if (m->reject) {
		uint64_t next;

		/* Figure 2, leaders: "If AppendEntries fails because of log
		 * inconsistency: decrement nextIndex and retry." The follower's
		 * hint lets us skip back faster; a rejection of something we have
		 * since moved past is stale and ignored. */
		if (p->state == PROG_SNAPSHOT)
			return;
		if (p->state == PROG_REPLICATE && m->index <= p->match)
			return;
		if (p->state == PROG_PROBE && m->index != p->next - 1)
			return;
		/* The follower's log may match up to its hint, where it holds
		 * term m->log_term; our entries of later terms cannot match
		 * there, so skip them too (etcd's findConflictByTerm): a long
		 * divergent tail costs one round trip, not one per entry. */
		next = m->hint < m->index ? m->hint : m->index - 1;
		if (next > last_index(r))
			next = last_index(r);
		while (next > r->base_index && term_at(r, next) > m->log_term)
			next--;
		next++;
		if (next < p->match + 1)
			next = p->match + 1;
		if (next < 1)
			next = 1;
		p->next = next;
		p->state = PROG_PROBE;
		p->paused = 0;
		raft__send_append(r, m->from, 1);
		return;
	}
	/* Figure 2, leaders: "If successful: update nextIndex and matchIndex for
	 * follower." */
	if (m->index > p->match)
		p->match = m->index;
	if (p->state == PROG_PROBE || p->state == PROG_SNAPSHOT) {
		int was_snap = p->state == PROG_SNAPSHOT;

		p->state = PROG_REPLICATE;
		p->paused = 0;
		p->next = p->match + 1;
		if (was_snap)
			raft__snapshot_idle(r);
	} else if (p->next < p->match + 1) {
		p->next = p->match + 1;
	}
	raft__maybe_commit(r);
	if (r->role != RAFT_LEADER)
		return;
	if (m->from == r->transfer_to)
		raft__transfer_progress(r);
	/* This follower may now be known to hold more of what is committed. */
	if (r->cfg.defer_sends) {
		r->flush_commit = 1;
		r->flush_append = 1;
		return;
	}
	raft__send_append(r, m->from, 0);
	notify_commit(r, m->from);
}

/* ---- Follower: AppendEntries, heartbeats, snapshots ----------------------- */

void raft__reply_append(raft *r, uint32_t to, int reject, uint64_t index, uint64_t hint)
{
	struct raft_msg m = { .type = RAFT_MSG_APPEND_RESP, .reject = (uint8_t)reject,
			      .index = index, .hint = hint,
			      .log_term = reject ? term_at(r, hint) : 0 };

	raft__send(r, &m, to);
}

/* What we can acknowledge to the leader: matching AND durable. */
uint64_t raft__ack_index(const raft *r)
{
	return r->durable < r->lmatch ? r->durable : r->lmatch;
}

void raft__heard_from_leader(raft *r, uint32_t from)
{
	if (r->role != RAFT_FOLLOWER || r->leader != from)
		raft__become_follower(r, r->term, from);
	r->leader_contact = now_ms(r);
	r->have_contact = 1;
	raft__reset_election_timer(r);
}

static void handle_append(raft *r, const struct raft_msg *m)
{
	uint64_t prev = m->index, prev_term = m->log_term, last;
	const struct raft_entry *ents = m->entries;
	uint64_t n = m->nentries, k, conflict = 0;
	int rc;

	raft__heard_from_leader(r, m->from);
	if (r->failed)
		return;
	/* Entries at or below base_index are covered by our snapshot, hence
	 * committed, hence equal to the leader's: skip them. */
	if (prev < r->base_index) {
		uint64_t skip = r->base_index - prev;

		if (skip >= n) {
			raft__reply_append(r, m->from, 0, raft__ack_index(r), 0);
			return;
		}
		ents += skip;
		n -= skip;
		prev = r->base_index;
		prev_term = r->base_term;
	}
	/* Figure 2, AppendEntries receiver: "2. Reply false if log doesn't
	 * contain an entry at prevLogIndex whose term matches prevLogTerm." */
	if (prev > last_index(r) || term_at(r, prev) != prev_term) {
		uint64_t hint = prev - 1 < last_index(r) ? prev - 1 : last_index(r);

		/* Hint: the last index whose term is not above prevLogTerm. */
		while (hint > r->base_index && term_at(r, hint) > prev_term)
			hint--;
		raft__reply_append(r, m->from, 1, m->index, hint);
		return;
	}
	/* "3. If an existing entry conflicts with a new one (same index but
	 * different terms), delete the existing entry and all that follow it.
	 * 4. Append any new entries not already in the log." */
	for (k = 0; k < n; k++) {
		uint64_t i = prev + 1 + k;

		if (i > last_index(r)) {
			conflict = i;
			break;
		}
		if (term_at(r, i) != ents[k].term) {
			if (i <= r->commit) {
				raft__fail(r, -EUCLEAN); /* a committed entry differs: a bug */
				return;
			}
			raft__log_truncate(r, i);
			conflict = i;
			break;
		}
	}
	if (conflict) {
		rc = log_push(r, ents + (conflict - prev - 1), (size_t)(n - (conflict - prev - 1)));
		if (!rc)
			rc = persist_from(r, conflict);
		if (rc) {
			raft__fail(r, rc);
			return;
		}
	}
	last = prev + n;
	if (last > r->lmatch)
		r->lmatch = last;
	/* "5. If leaderCommit > commitIndex, set commitIndex = min(leaderCommit,
	 * index of last new entry)." */
	if (m->commit > r->commit) {
		uint64_t c = m->commit < last ? m->commit : last;

		if (c > r->commit) {
			r->commit = c;
			raft__apply_committed(r);
		}
	}
	/* Acknowledge only what is durable; the rest is acknowledged from
	 * raft_append_done(). */
	raft__reply_append(r, m->from, 0, raft__ack_index(r), 0);
}

/* HEARTBEAT and COMMIT: m->commit <= the leader's matchIndex for us, so we
 * hold those entries, equal to the leader's. */
static void learn_commit(raft *r, const struct raft_msg *m)
{
	uint64_t c;

	raft__heard_from_leader(r, m->from);
	if (r->failed)
		return;
	c = m->commit < last_index(r) ? m->commit : last_index(r);
	if (c > r->lmatch)
		r->lmatch = c;
	if (c > r->commit) {
		r->commit = c;
		raft__apply_committed(r);
	}
}

static void handle_heartbeat(raft *r, const struct raft_msg *m)
{
	struct raft_msg resp = { .type = RAFT_MSG_HEARTBEAT_RESP, .seq = m->seq };

	learn_commit(r, m);
	if (r->failed)
		return;
	raft__send(r, &resp, m->from);
	/* Re-ask for reads whose request or answer may have been lost. */
	if (r->nreads) {
		size_t i;
		uint64_t now = now_ms(r);

		for (i = 0; i < r->nreads; i++) {
			struct read_req *q = &r->reads[i];
			struct raft_msg rm = { .type = RAFT_MSG_READ, .index = q->id };

			if (q->state != READ_LEADER || now - q->sent_ms < 2u * r->cfg.heartbeat_ms)
				continue;
			q->sent_ms = now;
			raft__send(r, &rm, r->leader);
		}
	}
}

/* ---- Entry points ----------------------------------------------------------- */

int raft_recv(raft *r, const struct raft_msg *m)
{
	if (r->failed)
		return r->failed;
	if (m->from == 0 || m->from > r->cfg.n || m->from == r->cfg.id || m->to != r->cfg.id)
		return -EINVAL;
	if (m->term > r->term) {
		int vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;

		/* Thesis §4.2.3: "if a server receives a RequestVote request
		 * within the minimum election timeout of hearing from a current
		 * leader, it does not update its term or grant its vote." */
		if (vote_req && !r->cfg.disable_check_quorum &&
		    !(m->type == RAFT_MSG_VOTE && m->seq == 1) &&
		    (r->role == RAFT_LEADER ||
		     (r->leader && r->have_contact &&
		      now_ms(r) - r->leader_contact < r->cfg.election_timeout_ms)))
			return 0;
		if (m->type == RAFT_MSG_PREVOTE ||
		    (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)) {
			/* Pre-votes do not change anyone's term. */
		} else {
			int from_leader = m->type == RAFT_MSG_APPEND ||
					  m->type == RAFT_MSG_HEARTBEAT ||
					  m->type == RAFT_MSG_COMMIT ||
					  m->type == RAFT_MSG_TIMEOUT_NOW ||
					  m->type == RAFT_MSG_SNAPSHOT;

			raft__become_follower(r, m->term, from_leader ? m->from : 0);
			if (r->failed)
				return r->failed;
		}
	} else if (m->term < r->term) {
		/* Figure 2: "Reply false if term < currentTerm." The reply carries
		 * our term, so a deposed leader or a stale pre-candidate learns
		 * it and steps down. */
		if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
		    m->type == RAFT_MSG_COMMIT || m->type == RAFT_MSG_SNAPSHOT) {
			raft__reply_append(r, m->from, 1, m->index, 0);
		} else if (m->type == RAFT_MSG_PREVOTE) {
			struct raft_msg resp = { .type = RAFT_MSG_PREVOTE_RESP, .reject = 1 };

			raft__send(r, &resp, m->from);
		}
		return 0;
	}

	switch (m->type) {
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_COMMIT:
	case RAFT_MSG_SNAPSHOT:
		if (r->role == RAFT_LEADER)
			return -EPROTO; /* two leaders in one term: impossible */
		/* Figure 2, candidates: "If AppendEntries RPC received from new
		 * leader: convert to follower." (done in heard_from_leader) */
		if (m->type == RAFT_MSG_APPEND)
			handle_append(r, m);
		else if (m->type == RAFT_MSG_HEARTBEAT)
			handle_heartbeat(r, m);
		else if (m->type == RAFT_MSG_COMMIT)
			learn_commit(r, m);
		else
			raft__handle_snapshot(r, m);
		break;
	case RAFT_MSG_APPEND_RESP:
		if (r->role == RAFT_LEADER)
			handle_append_resp(r, m);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		/* Only the leader of our term asks, and only a follower obeys;
		 * pre-vote is skipped: the leader vouches for this node. */
		if (r->role == RAFT_FOLLOWER && r->leader == m->from)
			raft__become_candidate(r, 1);
		break;
	case RAFT_MSG_SNAPSHOT_RESP:
		if (r->role == RAFT_LEADER)
			raft__handle_snapshot_resp(r, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (r->role == RAFT_LEADER) {
			struct progress *p = &r->prog[m->from];

			p->active = 1;
			if (m->seq > p->acked_seq)
				p->acked_seq = m->seq;
			p->paused = 0;
			if (p->match < last_index(r))
				raft__send_append(r, m->from, 1);
			raft__reads_progress(r);
		}
		break;
	case RAFT_MSG_VOTE:
	case RAFT_MSG_PREVOTE:
		raft__handle_vote(r, m);
		break;
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PREVOTE_RESP:
		raft__handle_vote_resp(r, m);
		break;
	case RAFT_MSG_READ:
		raft__handle_read(r, m);
		break;
	case RAFT_MSG_READ_RESP:
		raft__handle_read_resp(r, m);
		break;
	default:
		return -EBADMSG;
	}
	return r->failed;
}

int raft_tick(raft *r)
{
	uint64_t now;

	if (r->failed)
		return r->failed;
	now = now_ms(r);
	if (r->apply_failed) {
		/* Leading (or winning an election) would mean serving a
		 * state this replica no longer has: others must lead. */
		if (r->role != RAFT_FOLLOWER)
			raft__become_follower(r, r->term, 0);
		if (now >= r->election_deadline)
			raft__reset_election_timer(r);
		/* It cannot snapshot past what it applied: its log would grow
		 * without bound. Past a limit it stops taking part at all. */
		if (last_index(r) - r->applied > RAFT_APPLY_FAILED_MAX_LAG)
			raft__fail(r, r->apply_failed);
		return r->failed;
	}
	if (r->role != RAFT_LEADER) {
		/* Figure 2, followers: "If election timeout elapses without
		 * receiving AppendEntries RPC from current leader or granting vote
		 * to candidate: convert to candidate." Candidates: "If election
		 * timeout elapses: start new election." */
		if (now >= r->election_deadline)
			raft__become_precandidate(r);
		return r->failed;
	}
	if (now >= r->quorum_deadline) {
		uint32_t i;
		unsigned active = 1;

		/* Thesis §6.2: "a leader steps down if an election timeout
		 * elapses without a successful round of heartbeats to a majority
		 * of its cluster." */
		for (i = 1; i <= r->cfg.n; i++) {
			if (i == r->cfg.id)
				continue;
			active += r->prog[i].active;
			r->prog[i].active = 0;
		}
		r->quorum_deadline = now + r->cfg.election_timeout_ms;
		if (!r->cfg.disable_check_quorum && active < quorum(r)) {
			raft__become_follower(r, r->term, 0);
			return r->failed;
		}
	}
	/* Thesis §3.10: "If the transfer does not complete within about one
	 * election timeout, the prior leader aborts the transfer and resumes
	 * accepting client requests." */
	if (r->transfer_to && now >= r->transfer_deadline)
		r->transfer_to = 0;
	if (now >= r->heartbeat_deadline) {
		/* Figure 2, leaders: "repeat during idle periods to prevent
		 * election timeouts (§5.2)." */
		raft__broadcast_heartbeat(r);
		r->heartbeat_deadline = now + r->cfg.heartbeat_ms;
	}
	return r->failed;
}

uint64_t raft_deadline(const raft *r)
{
	if (r->failed)
		return UINT64_MAX; /* nothing to do, ever: no timer to spin on */
	if (r->apply_failed && r->role != RAFT_FOLLOWER)
		return 0; /* step down at once (raft_tick) */
	if (r->role != RAFT_LEADER)
		return r->election_deadline;
	return r->heartbeat_deadline < r->quorum_deadline ? r->heartbeat_deadline
							  : r->quorum_deadline;
}

int raft_append_done(raft *r, int status)
{
	uint64_t last;

	if (!r->pend_n)
		return -EINVAL;
	last = r->pend[r->pend_head];
	r->pend_head = (r->pend_head + 1) % r->pend_cap;
	r->pend_n--;
	if (r->failed)
		return r->failed;
	if (status) {
		raft__fail(r, status); /* never retry a failed sync */
		return r->failed;
	}
	/* The disk now holds what memory held when the write was issued, which
	 * still matches memory up to the clamped `last`. */
	r->durable = last > r->snap_index ? last : r->snap_index;
	if (r->durable < r->base_index)
		r->durable = r->base_index;
	raft__apply_committed(r);
	if (r->role == RAFT_LEADER) {
		raft__maybe_commit(r);
	} else if (r->role == RAFT_FOLLOWER && r->leader && raft__ack_index(r)) {
		raft__reply_append(r, r->leader, 0, raft__ack_index(r), 0);
	}
	return r->failed;
}

int raft_propose(raft *r, const void *data, size_t len, uint64_t *index, uint64_t *term)
{
	int rc;

	if (r->failed)
		return -EIO;
	if (r->role != RAFT_LEADER || r->apply_failed) /* it steps down at its next tick */
		return RAFT_ENOTLEADER;
	if (r->transfer_to)
		return -EBUSY;
	if (len > UINT32_MAX)
		return -EFBIG;
	/* Figure 2, leaders: "If command received from client: append entry to
	 * local log, respond after entry applied to state machine." */
	rc = raft__leader_append(r, RAFT_ENTRY_DATA, data, len);
	if (rc) {
		raft__fail(r, rc);
		return rc;
	}
	*index = last_index(r);
	*term = r->term;
	if (r->cfg.defer_sends)
		r->flush_append = 1;
	else
		broadcast_append(r);
	return 0;
}

int raft_new(const struct raft_config *cfg, const struct raft_io *io,
	     const struct raft_boot *boot, raft **out)
{
	static const struct raft_boot empty;
	raft *r;
	int rc = -EINVAL;

	if (!boot)
		boot = &empty;
	if (!cfg->n || cfg->n > RAFT_MAX_NODES || !cfg->id || cfg->id > cfg->n ||
	    !cfg->election_timeout_ms || !cfg->heartbeat_ms || boot->vote > cfg->n)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cfg = *cfg;
	r->io = *io;
	r->term = boot->term;
	r->vote = boot->vote;
	r->base_index = r->snap_index = boot->snap_index;
	r->base_term = r->snap_term = boot->snap_term;
	r->commit = r->applied = boot->snap_index;
	if (boot->nentries) {
		rc = log_push(r, boot->entries, boot->nentries);
		if (rc)
			goto err;
	}
	r->durable = last_index(r);
	r->role = RAFT_FOLLOWER;
	raft__reset_election_timer(r);
	*out = r;
	return 0;
err:
	raft_free(r);
	return rc;
}

void raft_free(raft *r)
{
	if (!r)
		return;
	raft__free_entries(r->ents, r->nents);
	raft__snapshot_free(r);
	free(r->ents);
	free(r->pend);
	free(r->reads);
	free(r);
}

/* ---- Introspection ---------------------------------------------------------- */

enum raft_role raft_role(const raft *r) { return r->role; }
uint64_t raft_term(const raft *r) { return r->term; }
uint32_t raft_vote(const raft *r) { return r->vote; }
uint32_t raft_leader(const raft *r) { return r->leader; }
uint32_t raft_id(const raft *r) { return r->cfg.id; }
uint64_t raft_commit(const raft *r) { return r->commit; }
uint64_t raft_applied(const raft *r) { return r->applied; }
uint64_t raft_last_index(const raft *r) { return last_index(r); }
uint64_t raft_durable_index(const raft *r) { return r->durable; }
uint64_t raft_first_index(const raft *r) { return r->base_index + 1; }
uint64_t raft_snapshot_index(const raft *r) { return r->snap_index; }
uint64_t raft_term_at(const raft *r, uint64_t index) { return term_at(r, index); }
int raft_failed(const raft *r) { return r->failed; }

const struct raft_entry *raft_entry_at(const raft *r, uint64_t index)
{
	return entry_at(r, index);
}

uint64_t raft_match_index(const raft *r, uint32_t id)
{
	if (r->role != RAFT_LEADER || !id || id > r->cfg.n)
		return 0;
	return id == r->cfg.id ? r->durable : r->prog[id].match;
}
