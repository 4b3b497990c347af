/*
 * raft_elect.c — role changes and leader election (Figure 2, §5.2, §5.4.1),
 * with pre-vote (thesis §9.6).
 */
#include "cluster/raft_int.h"

/* ---- Role changes ---------------------------------------------------------- */

void raft__become_follower(raft *r, uint64_t term, uint32_t leader)
{
	int changed = r->role != RAFT_FOLLOWER || r->leader != leader || r->term != term;

	if (term > r->term) {
		/* Figure 2, all servers: "If RPC request or response contains term
		 * T > currentTerm: set currentTerm = T, convert to follower." */
		r->term = term;
		r->vote = 0;
		r->lmatch = 0;
		if (raft__persist_vote(r))
			return;
	}
	if (r->role == RAFT_LEADER || r->leader != leader)
		raft__reads_fail_all(r, -ECANCELED);
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	r->transfer_to = 0;
	r->granted = 0;
	raft__reset_election_timer(r);
	if (changed)
		raft__notify(r);
}

static void broadcast(raft *r, struct raft_msg *m)
{
	uint32_t i;

	for (i = 1; i <= r->cfg.n; i++) {
		struct raft_msg c = *m;

		if (i != r->cfg.id)
			raft__send(r, &c, i);
	}
}

static void become_leader(raft *r);

void raft__become_candidate(raft *r, int transfer)
{
	struct raft_msg m = { .type = RAFT_MSG_VOTE, .seq = transfer ? 1 : 0 };

	/* A replica that cannot apply must not lead (raft_int.h). With this
	 * and the same check in raft__become_precandidate no path starts a
	 * campaign; one already under way ends when the apply fails
	 * (raft__apply_committed), so become_leader() is never reached. */
	if (r->apply_failed)
		return;
	/* Figure 2, candidates: "On conversion to candidate, start election:
	 * increment currentTerm, vote for self, reset election timer, send
	 * RequestVote RPCs to all other servers." */
	raft__reads_fail_all(r, -ECANCELED);
	r->term++;
	r->vote = r->cfg.id;
	r->lmatch = 0;
	if (raft__persist_vote(r))
		return;
	r->role = RAFT_CANDIDATE;
	r->leader = 0;
	r->granted = 1u << r->cfg.id;
	raft__reset_election_timer(r);
	raft__notify(r);
	if (popcount32(r->granted) >= quorum(r)) {
		become_leader(r);
		return;
	}
	m.index = last_index(r);
	m.log_term = last_term(r);
	broadcast(r, &m);
}

void raft__become_precandidate(raft *r)
{
	struct raft_msg m = { .type = RAFT_MSG_PREVOTE };

	/* Thesis §9.6: "a candidate would first ask other servers whether its log
	 * was up-to-date enough to get their vote. Only if the candidate believed
	 * it could get votes from a majority of the cluster would it increment its
	 * term and start a normal election." Nobody changes its term for it. */
	if (r->apply_failed)
		return;
	if (r->cfg.disable_prevote) {
		raft__become_candidate(r, 0);
		return;
	}
	raft__reads_fail_all(r, -ECANCELED);
	r->role = RAFT_PRECANDIDATE;
	r->leader = 0;
	r->granted = 1u << r->cfg.id;
	raft__reset_election_timer(r);
	raft__notify(r);
	if (popcount32(r->granted) >= quorum(r)) {
		raft__become_candidate(r, 0);
		return;
	}
	m.term = r->term + 1;
	m.index = last_index(r);
	m.log_term = last_term(r);
	broadcast(r, &m);
}

static void become_leader(raft *r)
{
	uint32_t i;
	uint64_t now = now_ms(r);

	r->role = RAFT_LEADER;
	r->leader = r->cfg.id;
	r->transfer_to = 0;
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
	raft__notify(r);
	/* Thesis §6.4 / §8: "each leader commit a blank no-op entry into the log
	 * at the start of its term", so that it learns which entries are
	 * committed (Figure 2 only commits current-term entries by counting). */
	if (raft__leader_append(r, RAFT_ENTRY_NOOP, NULL, 0)) {
		raft__fail(r, -ENOMEM);
		return;
	}
	r->term_start = last_index(r);
	for (i = 1; i <= r->cfg.n; i++)
		if (i != r->cfg.id)
			raft__send_append(r, i, 1);
	raft__maybe_commit(r); /* single node: the quorum is ourselves */
}
/* ---- Elections ------------------------------------------------------------ */

/* §5.4.1: "If the logs have last entries with different terms, then the log
 * with the later term is more up-to-date. If the logs end with the same term,
 * then whichever log is longer is more up-to-date." */
static int log_up_to_date(const raft *r, uint64_t lidx, uint64_t lterm)
{
	return lterm > last_term(r) || (lterm == last_term(r) && lidx >= last_index(r));
}

void raft__handle_vote(raft *r, const struct raft_msg *m)
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
			if (raft__persist_vote(r))
				return;
			raft__reset_election_timer(r);
		}
		/* Answer a pre-vote with the term it asked about, so the
		 * pre-candidate counts it (etcd does the same). */
		resp.term = m->term;
	} else {
		resp.reject = 1;
	}
	raft__send(r, &resp, m->from);
}

void raft__handle_vote_resp(raft *r, const struct raft_msg *m)
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
		raft__become_candidate(r, 0);
	else
		become_leader(r);
}

/* ---- Leadership transfer ------------------------------------------------------- */

/* Thesis §3.10: "1. The prior leader stops accepting new client requests.
 * 2. The prior leader fully updates the target server's log to match its
 * own [...] 3. The prior leader sends a TimeoutNow request to the target
 * server. This request has the same effect as the target server's election
 * timer firing." Called whenever the target's match index may have moved. */
void raft__transfer_progress(raft *r)
{
	struct raft_msg m = { .type = RAFT_MSG_TIMEOUT_NOW };
	uint32_t to = r->transfer_to;

	if (r->role != RAFT_LEADER || !to || r->prog[to].match < last_index(r))
		return;
	raft__send(r, &m, to);
}

int raft_transfer(raft *r, uint32_t to)
{
	if (r->failed)
		return -EIO;
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (!to || to > r->cfg.n || to == r->cfg.id)
		return -EINVAL;
	r->transfer_to = to;
	r->transfer_deadline = now_ms(r) + r->cfg.election_timeout_ms;
	raft__send_append(r, to, 1);
	raft__transfer_progress(r);
	return 0;
}
