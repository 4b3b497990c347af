/*
 * raft_sim_check.c — the simulation's invariant checks (log matching, election
 * safety, leader completeness; the others sit in the io callbacks of
 * raft_sim.c), its run helpers and the final liveness check.
 */
#include "tests/lib/raft_sim_int.h"

void rsim__check_log_matching(rsim *s, uint32_t id, uint64_t index,
			       const struct raft_entry *e, uint64_t prev_term)
{
	struct lm_slot *sl;
	uint64_t h = rsim__entry_hash(e);
	size_t k;

	if (e->term < prev_term)
		rsim__violation(s, "node %u: entry %" PRIu64 " term %" PRIu64 " below predecessor's %" PRIu64,
			  id, index, e->term, prev_term);
	s->lm = rsim__xgrow(s->lm, &s->lmcap, (size_t)index + 1, sizeof(*s->lm));
	sl = &s->lm[index];
	for (k = 0; k < sl->n; k++) {
		if (sl->v[k].term != e->term)
			continue;
		if (sl->v[k].hash != h || sl->v[k].prev_term != prev_term)
			rsim__violation(s, "log matching: node %u entry (%" PRIu64 ", term %" PRIu64
				  ") differs from another node's", id, index, e->term);
		return;
	}
	sl->v = realloc(sl->v, (sl->n + 1) * sizeof(*sl->v));
	if (!sl->v)
		abort();
	sl->v[sl->n++] = (struct lm_ent){ e->term, h, prev_term };
}

void rsim__check_step(rsim *s)
{
	uint32_t i;

	for (i = 1; i <= s->o.n; i++) {
		struct snode *nd = &s->nodes[i];
		uint64_t t, c, k;

		if (!nd->up)
			continue;
		if (raft_failed(nd->r)) {
			rsim__violation(s, "node %u failed: %d", i, raft_failed(nd->r));
			return;
		}
		if (raft_applied(nd->r) > raft_commit(nd->r) ||
		    raft_applied(nd->r) > raft_durable_index(nd->r) ||
		    raft_applied(nd->r) != nd->sm_index) {
			rsim__violation(s, "node %u: applied %" PRIu64 " commit %" PRIu64 " durable %" PRIu64,
				  i, raft_applied(nd->r), raft_commit(nd->r), raft_durable_index(nd->r));
			return;
		}
		if (raft_role(nd->r) != RAFT_LEADER)
			continue;
		t = raft_term(nd->r);
		c = raft_commit(nd->r);
		/* Election safety: at most one leader per term. */
		s->leader_of = rsim__xgrow(s->leader_of, &s->locap, (size_t)t + 1, sizeof(*s->leader_of));
		if (s->leader_of[t] && s->leader_of[t] != i) {
			rsim__violation(s, "election safety: nodes %u and %u both lead term %" PRIu64,
				  s->leader_of[t], i, t);
			return;
		}
		s->leader_of[t] = i;
		if (nd->seen_term != t) {
			/* Leader completeness: a new leader holds every entry
			 * committed in an earlier term. */
			for (k = raft_first_index(nd->r); k < s->gcap; k++) {
				struct gslot *g = &s->g[k];

				if (!g->commit_term || g->commit_term >= t)
					continue;
				if (raft_term_at(nd->r, k) != g->entry_term) {
					rsim__violation(s, "leader completeness: leader %u of term %" PRIu64
						  " lacks entry %" PRIu64 " (term %" PRIu64
						  ") committed in term %" PRIu64, i, t, k,
						  g->entry_term, g->commit_term);
					return;
				}
			}
			nd->seen_term = t;
			nd->seen_commit = c;
			continue;
		}
		/* Entries newly committed by this leader are committed in term t. */
		for (k = nd->seen_commit + 1; k <= c; k++) {
			struct gslot *g = rsim__gslot(s, k);
			uint64_t et = raft_term_at(nd->r, k);

			if (!et)
				continue;
			if (g->commit_term && g->entry_term != et) {
				rsim__violation(s, "two entries committed at index %" PRIu64
					  " (terms %" PRIu64 " and %" PRIu64 ")", k, g->entry_term, et);
				return;
			}
			if (!g->commit_term || g->commit_term > t) {
				g->commit_term = t;
				g->entry_term = et;
			}
		}
		if (c > nd->seen_commit)
			nd->seen_commit = c;
	}
}

int rsim_run_until(rsim *s, int (*pred)(rsim *s, void *arg), void *arg, uint64_t ms)
{
	uint64_t end = s->now + ms;

	while (!pred(s, arg)) {
		if (s->now >= end)
			return 0;
		if (rsim_step(s))
			return -1;
	}
	return 1;
}

uint32_t rsim_leader(rsim *s)
{
	uint32_t i, best = 0;
	uint64_t bt = 0;

	for (i = 1; i <= s->o.n; i++) {
		struct snode *nd = &s->nodes[i];

		if (nd->up && raft_role(nd->r) == RAFT_LEADER && raft_term(nd->r) >= bt) {
			bt = raft_term(nd->r);
			best = i;
		}
	}
	return best;
}

static int pred_leader(rsim *s, void *arg)
{
	uint32_t l = rsim_leader(s), i;
	unsigned agree = 0;

	(void)arg;
	if (!l)
		return 0;
	for (i = 1; i <= s->o.n; i++)
		if (s->nodes[i].up && raft_leader(s->nodes[i].r) == l &&
		    raft_term(s->nodes[i].r) == raft_term(s->nodes[l].r))
			agree++;
	return agree >= s->o.n / 2 + 1;
}

int rsim_run_until_leader(rsim *s, uint64_t ms)
{
	int rc = rsim_run_until(s, pred_leader, NULL, ms);

	return rc < 0 ? -1 : rc ? (int)rsim_leader(s) : 0;
}

static int pred_applied(rsim *s, void *arg)
{
	uint64_t idx = *(uint64_t *)arg;
	uint32_t i;

	for (i = 1; i <= s->o.n; i++)
		if (s->nodes[i].up && raft_applied(s->nodes[i].r) < idx)
			return 0;
	return 1;
}

int rsim_run_until_applied(rsim *s, uint64_t index, uint64_t ms)
{
	return rsim_run_until(s, pred_applied, &index, ms);
}

void rsim_dump(rsim *s, FILE *f)
{
	uint32_t i;

	fprintf(f, "t=%" PRIu64 "ms acked_max=%" PRIu64 " applied_max=%" PRIu64 "\n", s->now,
		s->acked_max, s->applied_max);
	for (i = 1; i <= s->o.n; i++) {
		struct snode *nd = &s->nodes[i];
		raft *r = nd->r;

		if (!nd->up) {
			fprintf(f, "  node %u: down\n", i);
			continue;
		}
		fprintf(f, "  node %u: %s term %" PRIu64 " vote %u leader %u first %" PRIu64
			" last %" PRIu64 " (term %" PRIu64 ") durable %" PRIu64 " commit %" PRIu64
			" applied %" PRIu64 " snap %" PRIu64 " pending writes %zu\n", i,
			raft_role_name(raft_role(r)), raft_term(r), raft_vote(r), raft_leader(r),
			raft_first_index(r), raft_last_index(r),
			raft_term_at(r, raft_last_index(r)), raft_durable_index(r), raft_commit(r),
			raft_applied(r), raft_snapshot_index(r), nd->pw_n);
		if (raft_role(r) == RAFT_LEADER) {
			uint32_t k;

			for (k = 1; k <= s->o.n; k++)
				fprintf(f, "    match[%u] = %" PRIu64 "\n", k, raft_match_index(r, k));
		}
	}
}

/* ---- Liveness ------------------------------------------------------------------------ */

/* The proposal is decided, or its leader lost the term it was made in (it
 * may still commit later; the client would time out and retry). */
static int pred_decided(rsim *s, void *arg)
{
	struct proposal *p = &s->props[*(uint64_t *)arg];
	struct snode *nd = &s->nodes[p->node];

	return p->state != 0 || !nd->up || raft_role(nd->r) != RAFT_LEADER ||
	       raft_term(nd->r) != p->term;
}

int rsim_check_liveness(rsim *s, uint64_t ms)
{
	uint64_t start = s->now, end = s->now + ms, pid, idx = 0, target;
	uint32_t i, l;
	int rc;

	if (s->failed)
		return -1;
	rsim_set_filter(s, NULL, NULL);
	rsim_favor(s, 0);
	rsim_heal(s);
	rsim_set_net(s, 0, 0);
	for (i = 1; i <= s->o.n; i++)
		if (rsim_restart(s, i))
			return -1;
	/* A leader must get a new proposal acknowledged (a proposal can still
	 * be lost to a leadership change right after healing: try again). */
	for (;;) {
		if (s->now >= end) {
			rsim__violation(s, "liveness: no proposal acknowledged %" PRIu64
				  "ms after healing", ms);
			return -1;
		}
		l = (uint32_t)rsim_run_until_leader(s, end - s->now);
		if ((int)l < 0)
			return -1;
		if (!l)
			continue;
		rc = rsim_propose(s, l, &pid);
		if (s->trace)
			fprintf(stderr, "[%" PRIu64 "] liveness: propose on %u: %d\n", s->now, l, rc);
		if (rc == -1 && s->failed)
			return -1;
		if (rc) {
			if (rsim_run_for(s, 1))
				return -1;
			continue;
		}
		rc = rsim_run_until(s, pred_decided, &pid, end > s->now ? end - s->now : 0);
		if (rc < 0)
			return -1;
		if (rsim_proposal(s, pid, &idx) == 1)
			break;
	}
	target = idx > s->acked_max ? idx : s->acked_max;
	rc = rsim_run_until_applied(s, target, end > s->now ? end - s->now : 0);
	if (rc < 0)
		return -1;
	if (!rc) {
		rsim__violation(s, "liveness: index %" PRIu64 " not applied on every node %" PRIu64
			  "ms after healing", target, s->now - start);
		return -1;
	}
	s->heal_ms = s->now - start;
	return 0;
}

uint64_t rsim_heal_ms(const rsim *s)
{
	return s->heal_ms;
}

