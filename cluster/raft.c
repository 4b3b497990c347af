/*
 * raft.c — the Raft core: roles, elections, log replication, commitment,
 * snapshots and ReadIndex. No I/O: everything goes through struct raft_io.
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
#include <stdlib.h>
#include <string.h>

#include "cluster/raft.h"

enum prog_state {
	PROG_PROBE     = 0, /* one AppendEntries at a time until the match is found */
	PROG_REPLICATE = 1, /* pipelined: next is advanced optimistically */
	PROG_SNAPSHOT  = 2, /* an InstallSnapshot is in flight */
};

/* Leader's view of one follower (Figure 2: nextIndex[], matchIndex[]). */
struct progress {
	uint64_t next, match;
	int      state;
	int      paused;       /* PROBE: an append is outstanding */
	int      active;       /* heard from since the last check-quorum round */
	uint64_t acked_seq;    /* highest heartbeat round acknowledged */
	uint64_t snap_index;   /* SNAPSHOT: index being sent */
	uint64_t snap_sent_ms;
};

enum read_state {
	READ_CONFIRM = 0, /* leader: waiting for a heartbeat round to a majority */
	READ_LEADER  = 1, /* follower: waiting for the leader's answer */
	READ_APPLY   = 2, /* index known: waiting for applied >= index */
};

struct read_req {
	uint64_t id;
	uint32_t from;    /* leader side: the follower that asked; 0 = local */
	int      state;
	uint64_t seq;     /* READ_CONFIRM: the round that confirms it */
	uint64_t index;   /* 0 until assigned */
	uint64_t sent_ms; /* READ_LEADER: when asked */
};

struct raft {
	struct raft_config cfg;
	struct raft_io     io;
	int                failed;

	/* Figure 2, persistent state on all servers. */
	uint64_t term;
	uint32_t vote;
	/* The log: ents[k] has index base_index + 1 + k. The entry at base_index
	 * has term base_term and is covered by the snapshot. */
	struct raft_entry *ents;
	size_t   nents, cap;
	uint64_t base_index, base_term;
	uint64_t snap_index, snap_term;

	/* Figure 2, volatile state on all servers. */
	uint64_t commit, applied;

	enum raft_role role;
	uint32_t leader;
	uint64_t lmatch;     /* our log is known to match this term's leader up to here */

	/* Asynchronous appends in flight: the last index each will have made
	 * durable, clamped by later truncations (ring buffer). */
	uint64_t *pend;
	size_t    pend_head, pend_n, pend_cap;
	uint64_t  durable;

	/* Timers (io time, ms). */
	uint64_t election_deadline;
	uint64_t heartbeat_deadline;
	uint64_t quorum_deadline;
	uint64_t leader_contact;  /* last time we heard from a leader */
	int      have_contact;

	uint32_t granted;    /* (pre)vote bitmap, bit i = node i */

	/* Leader state (Figure 2, volatile state on leaders). */
	struct progress prog[RAFT_MAX_NODES + 1];
	uint64_t seq;        /* heartbeat round */
	uint64_t term_start; /* index of this term's no-op */

	struct read_req *reads;
	size_t   nreads, rcap;
};

/* ---- Small helpers ------------------------------------------------------- */

static uint64_t now_ms(raft *r)
{
	return r->io.now(r->io.arg);
}

static uint64_t last_index(const raft *r)
{
	return r->base_index + r->nents;
}

static uint64_t last_term(const raft *r)
{
	return r->nents ? r->ents[r->nents - 1].term : r->base_term;
}

static uint64_t term_at(const raft *r, uint64_t i)
{
	if (i == r->base_index)
		return r->base_term;
	if (i < r->base_index || i > last_index(r))
		return 0;
	return r->ents[i - r->base_index - 1].term;
}

static struct raft_entry *entry_at(const raft *r, uint64_t i)
{
	if (i <= r->base_index || i > last_index(r))
		return NULL;
	return &r->ents[i - r->base_index - 1];
}

static unsigned quorum(const raft *r)
{
	return r->cfg.n / 2 + 1;
}

static unsigned popcount32(uint32_t x)
{
	unsigned c = 0;

	for (; x; x &= x - 1)
		c++;
	return c;
}

static void notify_state(raft *r)
{
	if (r->io.state_change)
		r->io.state_change(r->io.arg, r->role, r->term, r->leader);
}

static void fail(raft *r, int status)
{
	if (!r->failed)
		r->failed = status < 0 ? status : -EIO;
}

static void send_msg(raft *r, struct raft_msg *m, uint32_t to)
{
	if (r->failed)
		return;
	m->from = r->cfg.id;
	m->to = to;
	if (!m->term)
		m->term = r->term;
	r->io.send(r->io.arg, m);
}

static void reset_election_timer(raft *r)
{
	unsigned t = r->cfg.election_timeout_ms;

	r->election_deadline = now_ms(r) + t + r->io.random(r->io.arg) % t;
}

static int persist_vote(raft *r)
{
	int rc = r->io.persist_vote(r->io.arg, r->term, r->vote);

	if (rc)
		fail(r, rc);
	return rc;
}

/* ---- Log storage ---------------------------------------------------------- */

static void free_entries(struct raft_entry *e, size_t n)
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
				free_entries(&r->ents[r->nents], i);
				return -ENOMEM;
			}
			memcpy(d->data, e[i].data, e[i].len);
		}
	}
	r->nents += n;
	return 0;
}

/* Drops entries with index >= from from memory. */
static void log_truncate(raft *r, uint64_t from)
{
	size_t keep = (size_t)(from - r->base_index - 1);

	free_entries(&r->ents[keep], r->nents - keep);
	r->nents = keep;
}

/* Drops entries with index <= upto (covered by a snapshot). */
static void log_compact(raft *r, uint64_t upto)
{
	size_t drop;

	if (upto <= r->base_index)
		return;
	if (upto > last_index(r))
		upto = last_index(r);
	drop = (size_t)(upto - r->base_index);
	r->base_term = term_at(r, upto);
	free_entries(r->ents, drop);
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
	for (i = 0; i < r->pend_n; i++) {
		uint64_t *l = &r->pend[(r->pend_head + i) % r->pend_cap];

		if (*l > first - 1)
			*l = first - 1;
	}
	if (r->durable > first - 1)
		r->durable = first - 1;
	r->pend[(r->pend_head + r->pend_n) % r->pend_cap] = last_index(r);
	r->pend_n++;
	r->io.append(r->io.arg, first, entry_at(r, first), (size_t)(last_index(r) - first + 1));
	return 0;
}

/* ---- Role changes ---------------------------------------------------------- */

static void reads_fail_all(raft *r, int status);
static void reads_progress(raft *r);
static void leader_maybe_commit(raft *r);
static void send_append(raft *r, uint32_t to, int allow_empty);

static void become_follower(raft *r, uint64_t term, uint32_t leader)
{
	int changed = r->role != RAFT_FOLLOWER || r->leader != leader || r->term != term;

	if (term > r->term) {
		/* Figure 2, all servers: "If RPC request or response contains term
		 * T > currentTerm: set currentTerm = T, convert to follower." */
		r->term = term;
		r->vote = 0;
		r->lmatch = 0;
		if (persist_vote(r))
			return;
	}
	if (r->role == RAFT_LEADER || r->leader != leader)
		reads_fail_all(r, -ECANCELED);
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	r->granted = 0;
	reset_election_timer(r);
	if (changed)
		notify_state(r);
}

static void broadcast(raft *r, struct raft_msg *m)
{
	uint32_t i;

	for (i = 1; i <= r->cfg.n; i++) {
		struct raft_msg c = *m;

		if (i != r->cfg.id)
			send_msg(r, &c, i);
	}
}

static void become_leader(raft *r);

static void become_candidate(raft *r)
{
	struct raft_msg m = { .type = RAFT_MSG_VOTE };

	/* Figure 2, candidates: "On conversion to candidate, start election:
	 * increment currentTerm, vote for self, reset election timer, send
	 * RequestVote RPCs to all other servers." */
	reads_fail_all(r, -ECANCELED);
	r->term++;
	r->vote = r->cfg.id;
	r->lmatch = 0;
	if (persist_vote(r))
		return;
	r->role = RAFT_CANDIDATE;
	r->leader = 0;
	r->granted = 1u << r->cfg.id;
	reset_election_timer(r);
	notify_state(r);
	if (popcount32(r->granted) >= quorum(r)) {
		become_leader(r);
		return;
	}
	m.index = last_index(r);
	m.log_term = last_term(r);
	broadcast(r, &m);
}

static void become_precandidate(raft *r)
{
	struct raft_msg m = { .type = RAFT_MSG_PREVOTE };

	/* Thesis §9.6: "a candidate would first ask other servers whether its log
	 * was up-to-date enough to get their vote. Only if the candidate believed
	 * it could get votes from a majority of the cluster would it increment its
	 * term and start a normal election." Nobody changes its term for it. */
	if (r->cfg.disable_prevote) {
		become_candidate(r);
		return;
	}
	reads_fail_all(r, -ECANCELED);
	r->role = RAFT_PRECANDIDATE;
	r->leader = 0;
	r->granted = 1u << r->cfg.id;
	reset_election_timer(r);
	notify_state(r);
	if (popcount32(r->granted) >= quorum(r)) {
		become_candidate(r);
		return;
	}
	m.term = r->term + 1;
	m.index = last_index(r);
	m.log_term = last_term(r);
	broadcast(r, &m);
}

static int leader_append(raft *r, uint8_t type, const void *data, size_t len)
{
	struct raft_entry e = { .term = r->term, .type = type, .len = (uint32_t)len,
				.data = (void *)data };
	uint64_t first = last_index(r) + 1;
	int rc = log_push(r, &e, 1);

	if (rc)
		return rc;
	return persist_from(r, first);
}

static void become_leader(raft *r)
{
	uint32_t i;
	uint64_t now = now_ms(r);

	r->role = RAFT_LEADER;
	r->leader = r->cfg.id;
	/* Figure 2, leaders: "Reinitialized after election: nextIndex[] to leader
	 * last log index + 1, matchIndex[] to 0." */
	for (i = 1; i <= r->cfg.n; i++) {
		struct progress *p = &r->prog[i];

		memset(p, 0, sizeof(*p));
		p->next = last_index(r) + 1;
		p->state = PROG_PROBE;
		p->active = 1;
	}
	r->seq = 0;
	r->heartbeat_deadline = now + r->cfg.heartbeat_ms;
	r->quorum_deadline = now + r->cfg.election_timeout_ms;
	notify_state(r);
	/* Thesis §6.4 / §8: "each leader commit a blank no-op entry into the log
	 * at the start of its term", so that it learns which entries are
	 * committed (Figure 2 only commits current-term entries by counting). */
	if (leader_append(r, RAFT_ENTRY_NOOP, NULL, 0)) {
		fail(r, -ENOMEM);
		return;
	}
	r->term_start = last_index(r);
	for (i = 1; i <= r->cfg.n; i++)
		if (i != r->cfg.id)
			send_append(r, i, 1);
	leader_maybe_commit(r); /* single node: the quorum is ourselves */
}

/* ---- Applying ------------------------------------------------------------ */

static void apply_committed(raft *r)
{
	uint64_t upto = r->commit < r->durable ? r->commit : r->durable;

	/* Figure 2, all servers: "If commitIndex > lastApplied: increment
	 * lastApplied, apply log[lastApplied] to state machine." We apply only
	 * what is also durable here, so that applied <= durable always holds and
	 * any snapshot of the state machine is consistent with the stored log
	 * (a snapshot beyond a pending truncation could otherwise be followed,
	 * after a crash, by stale entries of an older term). */
	while (r->applied < upto && !r->failed) {
		const struct raft_entry *e = entry_at(r, r->applied + 1);

		if (!e)
			break; /* cannot happen: applied >= base_index */
		r->applied++;
		r->io.apply(r->io.arg, r->applied, e);
	}
	reads_progress(r);
}

/* ---- Leader: replication -------------------------------------------------- */

static void send_snapshot(raft *r, uint32_t to)
{
	struct progress *p = &r->prog[to];
	struct raft_msg m = { .type = RAFT_MSG_SNAPSHOT };
	uint64_t si, st;
	const void *data;
	size_t len;

	if (r->io.snapshot_get(r->io.arg, &si, &st, &data, &len))
		return; /* nothing to send yet: retried at the next heartbeat */
	m.index = si;
	m.log_term = st;
	m.data = data;
	m.len = len;
	p->state = PROG_SNAPSHOT;
	p->snap_index = si;
	p->snap_sent_ms = now_ms(r);
	send_msg(r, &m, to);
}

/* Sends the entries from `next` on, or a snapshot when they were compacted
 * away. allow_empty: send even with nothing new (a probe for a gap). */
static void send_append(raft *r, uint32_t to, int allow_empty)
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
		send_snapshot(r, to);
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
	m.entries = n ? entry_at(r, prev + 1) : NULL;
	send_msg(r, &m, to);
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
			send_append(r, i, 0);
}

static void broadcast_heartbeat(raft *r)
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
		send_msg(r, &m, i);
		/* A lost snapshot is sent again after an election timeout. */
		if (p->state == PROG_SNAPSHOT &&
		    now_ms(r) - p->snap_sent_ms >= r->cfg.election_timeout_ms) {
			p->state = PROG_PROBE;
			p->paused = 0;
			send_append(r, i, 1);
		}
	}
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

static void leader_maybe_commit(raft *r)
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
		apply_committed(r);
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
		next = m->hint + 1 < m->index ? m->hint + 1 : m->index;
		if (next < p->match + 1)
			next = p->match + 1;
		if (next < 1)
			next = 1;
		p->next = next;
		p->state = PROG_PROBE;
		p->paused = 0;
		send_append(r, m->from, 1);
		return;
	}
	/* Figure 2, leaders: "If successful: update nextIndex and matchIndex for
	 * follower." */
	if (m->index > p->match)
		p->match = m->index;
	if (p->state == PROG_PROBE || p->state == PROG_SNAPSHOT) {
		p->state = PROG_REPLICATE;
		p->paused = 0;
		p->next = p->match + 1;
	} else if (p->next < p->match + 1) {
		p->next = p->match + 1;
	}
	leader_maybe_commit(r);
	if (r->role == RAFT_LEADER)
		send_append(r, m->from, 0);
}

/* ---- Follower: AppendEntries, heartbeats, snapshots ----------------------- */

static void reply_append(raft *r, uint32_t to, int reject, uint64_t index, uint64_t hint)
{
	struct raft_msg m = { .type = RAFT_MSG_APPEND_RESP, .reject = (uint8_t)reject,
			      .index = index, .hint = hint };

	send_msg(r, &m, to);
}

/* What we can acknowledge to the leader: matching AND durable. */
static uint64_t ack_index(const raft *r)
{
	return r->durable < r->lmatch ? r->durable : r->lmatch;
}

static void heard_from_leader(raft *r, uint32_t from)
{
	if (r->role != RAFT_FOLLOWER || r->leader != from)
		become_follower(r, r->term, from);
	r->leader_contact = now_ms(r);
	r->have_contact = 1;
	reset_election_timer(r);
}

static void handle_append(raft *r, const struct raft_msg *m)
{
	uint64_t prev = m->index, prev_term = m->log_term, last;
	const struct raft_entry *ents = m->entries;
	uint64_t n = m->nentries, k, conflict = 0;
	int rc;

	heard_from_leader(r, m->from);
	if (r->failed)
		return;
	/* Entries at or below base_index are covered by our snapshot, hence
	 * committed, hence equal to the leader's: skip them. */
	if (prev < r->base_index) {
		uint64_t skip = r->base_index - prev;

		if (skip >= n) {
			reply_append(r, m->from, 0, ack_index(r), 0);
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
		reply_append(r, m->from, 1, m->index, hint);
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
				fail(r, -EUCLEAN); /* a committed entry differs: a bug */
				return;
			}
			log_truncate(r, i);
			conflict = i;
			break;
		}
	}
	if (conflict) {
		rc = log_push(r, ents + (conflict - prev - 1), (size_t)(n - (conflict - prev - 1)));
		if (!rc)
			rc = persist_from(r, conflict);
		if (rc) {
			fail(r, rc);
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
			apply_committed(r);
		}
	}
	/* Acknowledge only what is durable; the rest is acknowledged from
	 * raft_append_done(). */
	reply_append(r, m->from, 0, ack_index(r), 0);
}

static void handle_heartbeat(raft *r, const struct raft_msg *m)
{
	struct raft_msg resp = { .type = RAFT_MSG_HEARTBEAT_RESP, .seq = m->seq };
	uint64_t c;

	heard_from_leader(r, m->from);
	if (r->failed)
		return;
	/* m->commit <= the leader's matchIndex for us: we hold those entries,
	 * equal to the leader's. */
	c = m->commit < last_index(r) ? m->commit : last_index(r);
	if (c > r->lmatch)
		r->lmatch = c;
	if (c > r->commit) {
		r->commit = c;
		apply_committed(r);
	}
	send_msg(r, &resp, m->from);
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
			send_msg(r, &rm, r->leader);
		}
	}
}

static void handle_snapshot(raft *r, const struct raft_msg *m)
{
	size_t i;
	int rc;

	heard_from_leader(r, m->from);
	if (r->failed)
		return;
	/* Thesis §5.3 (InstallSnapshot receiver): a snapshot that does not go
	 * beyond what we have committed brings nothing. */
	if (m->index <= r->commit) {
		uint64_t c = r->commit < last_index(r) ? r->commit : last_index(r);

		if (c > r->lmatch)
			r->lmatch = c; /* committed entries equal the leader's */
		reply_append(r, m->from, 0, ack_index(r), 0);
		return;
	}
	/* Thesis §5.3, InstallSnapshot receiver: "6. If existing log entry has
	 * same index and term as snapshot's last included entry, retain log
	 * entries following it and reply." Our log then holds every entry the
	 * snapshot covers: commit them like an AppendEntries would, and apply
	 * them from the log. (Discarding them could drop entries we already
	 * acknowledged as durable.) */
	if (term_at(r, m->index) == m->log_term && m->index <= last_index(r)) {
		if (m->index > r->lmatch)
			r->lmatch = m->index;
		r->commit = m->index;
		apply_committed(r);
		reply_append(r, m->from, 0, ack_index(r), 0);
		return;
	}
	/* "7. Discard the entire log. 8. Reset state machine using snapshot
	 * contents (and load snapshot's cluster configuration)." Whatever we
	 * acknowledged is at most our durable index, below m->index: covered. */
	rc = r->io.snapshot_install(r->io.arg, m->index, m->log_term, m->data, m->len);
	if (rc) {
		fail(r, rc);
		return;
	}
	log_truncate(r, r->base_index + 1);
	r->base_index = r->snap_index = m->index;
	r->base_term = r->snap_term = m->log_term;
	r->commit = r->applied = m->index;
	for (i = 0; i < r->pend_n; i++) {
		uint64_t *l = &r->pend[(r->pend_head + i) % r->pend_cap];

		if (*l > m->index)
			*l = m->index;
	}
	r->durable = m->index;
	r->lmatch = m->index;
	reply_append(r, m->from, 0, m->index, 0);
	reads_progress(r);
}

/* ---- Elections ------------------------------------------------------------ */

/* §5.4.1: "If the logs have last entries with different terms, then the log
 * with the later term is more up-to-date. If the logs end with the same term,
 * then whichever log is longer is more up-to-date." */
static int log_up_to_date(const raft *r, uint64_t lidx, uint64_t lterm)
{
	return lterm > last_term(r) || (lterm == last_term(r) && lidx >= last_index(r));
}

static void handle_vote(raft *r, const struct raft_msg *m)
{
	int pre = m->type == RAFT_MSG_PREVOTE;
	struct raft_msg resp = { .type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP };
	int can;

	/* Figure 2, RequestVote receiver: "2. If votedFor is null or candidateId,
	 * and candidate's log is at least as up-to-date as receiver's log, grant
	 * vote." A pre-vote for a future term is granted on the log alone. */
	can = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
	      (pre && m->term > r->term);
	if (can && log_up_to_date(r, m->index, m->log_term)) {
		if (!pre) {
			r->vote = m->from;
			if (persist_vote(r))
				return;
			reset_election_timer(r);
		}
		/* Answer a pre-vote with the term it asked about, so the
		 * pre-candidate counts it (etcd does the same). */
		resp.term = m->term;
	} else {
		resp.reject = 1;
	}
	send_msg(r, &resp, m->from);
}

static void handle_vote_resp(raft *r, const struct raft_msg *m)
{
	int pre = m->type == RAFT_MSG_PREVOTE_RESP;

	if (pre ? r->role != RAFT_PRECANDIDATE || m->term != r->term + 1
		: r->role != RAFT_CANDIDATE || m->term != r->term)
		return;
	if (m->reject)
		return;
	r->granted |= 1u << m->from;
	/* Figure 2, candidates: "If votes received from majority of servers:
	 * become leader." */
	if (popcount32(r->granted) < quorum(r))
		return;
	if (pre)
		become_candidate(r);
	else
		become_leader(r);
}

/* ---- ReadIndex ------------------------------------------------------------- */

static int read_push(raft *r, const struct read_req *q)
{
	if (r->nreads == r->rcap) {
		size_t cap = r->rcap ? r->rcap * 2 : 16;
		struct read_req *p = realloc(r->reads, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->reads = p;
		r->rcap = cap;
	}
	r->reads[r->nreads++] = *q;
	return 0;
}

static void read_answer(raft *r, const struct read_req *q, int status, uint64_t index)
{
	if (q->from) {
		struct raft_msg m = { .type = RAFT_MSG_READ_RESP, .index = q->id,
				      .commit = index, .reject = status != 0 };

		send_msg(r, &m, q->from);
	} else {
		r->io.read_done(r->io.arg, q->id, status, status ? 0 : index);
	}
}

static void reads_fail_all(raft *r, int status)
{
	size_t i, n = r->nreads;

	r->nreads = 0;
	for (i = 0; i < n; i++)
		read_answer(r, &r->reads[i], status, 0);
}

/* Moves reads forward: assigns indexes, confirms rounds, delivers. */
static void reads_progress(raft *r)
{
	size_t i, j;
	int term_committed = r->role == RAFT_LEADER && r->commit >= r->term_start;

	for (i = 0, j = 0; i < r->nreads; i++) {
		struct read_req *q = &r->reads[i];
		int done = 0;

		if (q->state == READ_CONFIRM && term_committed) {
			uint32_t k;
			unsigned acks = 1;

			/* Thesis §6.4: "1. If the leader has not yet marked an
			 * entry from its current term committed, it waits until it
			 * has done so. 2. The leader saves its current commit
			 * index in a local variable readIndex." */
			if (!q->index)
				q->index = r->commit;
			/* "3. The leader needs to make sure it hasn't been
			 * superseded ... it sends a new round of heartbeats and
			 * waits for their acknowledgments from a majority." */
			for (k = 1; k <= r->cfg.n; k++)
				if (k != r->cfg.id && r->prog[k].acked_seq >= q->seq)
					acks++;
			if (acks >= quorum(r)) {
				if (q->from) {
					read_answer(r, q, 0, q->index);
					done = 1;
				} else {
					q->state = READ_APPLY;
				}
			}
		}
		/* "4. The leader waits for its state machine to advance at least
		 * as far as the readIndex." Followers do the same with the index
		 * the leader gave them. */
		if (!done && q->state == READ_APPLY && r->applied >= q->index) {
			read_answer(r, q, 0, q->index);
			done = 1;
		}
		if (!done)
			r->reads[j++] = *q;
	}
	r->nreads = j;
}

static int leader_read(raft *r, uint64_t id, uint32_t from)
{
	struct read_req q = { .id = id, .from = from, .state = READ_CONFIRM };
	int rc;

	/* A round sent after the request arrived confirms it. */
	q.seq = r->seq + 1;
	rc = read_push(r, &q);
	if (rc)
		return rc;
	broadcast_heartbeat(r);
	r->heartbeat_deadline = now_ms(r) + r->cfg.heartbeat_ms;
	reads_progress(r);
	return 0;
}

static void handle_read(raft *r, const struct raft_msg *m)
{
	if (r->role != RAFT_LEADER || leader_read(r, m->index, m->from)) {
		struct raft_msg resp = { .type = RAFT_MSG_READ_RESP, .index = m->index,
					 .reject = 1 };

		send_msg(r, &resp, m->from);
	}
}

static void handle_read_resp(raft *r, const struct raft_msg *m)
{
	size_t i;

	for (i = 0; i < r->nreads; i++) {
		struct read_req *q = &r->reads[i];

		if (q->state != READ_LEADER || q->id != m->index)
			continue;
		if (m->reject || m->from != r->leader) {
			struct read_req c = *q;

			memmove(q, q + 1, (r->nreads - i - 1) * sizeof(*q));
			r->nreads--;
			r->io.read_done(r->io.arg, c.id, m->reject ? -ECANCELED : RAFT_ENOTLEADER, 0);
			return;
		}
		q->state = READ_APPLY;
		q->index = m->commit;
		reads_progress(r);
		return;
	}
}

int raft_read_index(raft *r, uint64_t id)
{
	struct read_req q = { .id = id, .state = READ_LEADER };
	struct raft_msg m = { .type = RAFT_MSG_READ, .index = id };
	int rc;

	if (r->failed)
		return -EIO;
	if (r->role == RAFT_LEADER)
		return leader_read(r, id, 0);
	if (r->role != RAFT_FOLLOWER || !r->leader)
		return RAFT_ENOTLEADER;
	q.sent_ms = now_ms(r);
	rc = read_push(r, &q);
	if (rc)
		return rc;
	send_msg(r, &m, r->leader);
	return 0;
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
					  m->type == RAFT_MSG_SNAPSHOT;

			become_follower(r, m->term, from_leader ? m->from : 0);
			if (r->failed)
				return r->failed;
		}
	} else if (m->term < r->term) {
		/* Figure 2: "Reply false if term < currentTerm." The reply carries
		 * our term, so a deposed leader or a stale pre-candidate learns
		 * it and steps down. */
		if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
		    m->type == RAFT_MSG_SNAPSHOT) {
			reply_append(r, m->from, 1, m->index, 0);
		} else if (m->type == RAFT_MSG_PREVOTE) {
			struct raft_msg resp = { .type = RAFT_MSG_PREVOTE_RESP, .reject = 1 };

			send_msg(r, &resp, m->from);
		}
		return 0;
	}

	switch (m->type) {
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_SNAPSHOT:
		if (r->role == RAFT_LEADER)
			return -EPROTO; /* two leaders in one term: impossible */
		/* Figure 2, candidates: "If AppendEntries RPC received from new
		 * leader: convert to follower." (done in heard_from_leader) */
		if (m->type == RAFT_MSG_APPEND)
			handle_append(r, m);
		else if (m->type == RAFT_MSG_HEARTBEAT)
			handle_heartbeat(r, m);
		else
			handle_snapshot(r, m);
		break;
	case RAFT_MSG_APPEND_RESP:
		if (r->role == RAFT_LEADER)
			handle_append_resp(r, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (r->role == RAFT_LEADER) {
			struct progress *p = &r->prog[m->from];

			p->active = 1;
			if (m->seq > p->acked_seq)
				p->acked_seq = m->seq;
			p->paused = 0;
			if (p->match < last_index(r))
				send_append(r, m->from, 1);
			reads_progress(r);
		}
		break;
	case RAFT_MSG_VOTE:
	case RAFT_MSG_PREVOTE:
		handle_vote(r, m);
		break;
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PREVOTE_RESP:
		handle_vote_resp(r, m);
		break;
	case RAFT_MSG_READ:
		handle_read(r, m);
		break;
	case RAFT_MSG_READ_RESP:
		handle_read_resp(r, m);
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
	if (r->role != RAFT_LEADER) {
		/* Figure 2, followers: "If election timeout elapses without
		 * receiving AppendEntries RPC from current leader or granting vote
		 * to candidate: convert to candidate." Candidates: "If election
		 * timeout elapses: start new election." */
		if (now >= r->election_deadline)
			become_precandidate(r);
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
			become_follower(r, r->term, 0);
			return r->failed;
		}
	}
	if (now >= r->heartbeat_deadline) {
		/* Figure 2, leaders: "repeat during idle periods to prevent
		 * election timeouts (§5.2)." */
		broadcast_heartbeat(r);
		r->heartbeat_deadline = now + r->cfg.heartbeat_ms;
	}
	return r->failed;
}

uint64_t raft_deadline(const raft *r)
{
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
		fail(r, status); /* never retry a failed sync */
		return r->failed;
	}
	/* The disk now holds what memory held when the write was issued, which
	 * still matches memory up to the clamped `last`. */
	r->durable = last > r->snap_index ? last : r->snap_index;
	if (r->durable < r->base_index)
		r->durable = r->base_index;
	apply_committed(r);
	if (r->role == RAFT_LEADER) {
		leader_maybe_commit(r);
	} else if (r->role == RAFT_FOLLOWER && r->leader && ack_index(r)) {
		reply_append(r, r->leader, 0, ack_index(r), 0);
	}
	return r->failed;
}

int raft_propose(raft *r, const void *data, size_t len, uint64_t *index, uint64_t *term)
{
	int rc;

	if (r->failed)
		return -EIO;
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (len > UINT32_MAX)
		return -EFBIG;
	/* Figure 2, leaders: "If command received from client: append entry to
	 * local log, respond after entry applied to state machine." */
	rc = leader_append(r, RAFT_ENTRY_DATA, data, len);
	if (rc) {
		fail(r, rc);
		return rc;
	}
	*index = last_index(r);
	*term = r->term;
	broadcast_append(r);
	return 0;
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
		log_compact(r, index - trail);
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
	reset_election_timer(r);
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
	free_entries(r->ents, r->nents);
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
