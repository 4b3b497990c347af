/*
 * raft_read.c — linearizable reads with ReadIndex (thesis §6.4): on the
 * leader, and on followers through the leader.
 */
#include "cluster/raft_int.h"

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

		raft__send(r, &m, q->from);
	} else {
		r->io.read_done(r->io.arg, q->id, status, status ? 0 : index);
	}
}

void raft__reads_fail_all(raft *r, int status)
{
	size_t i, n = r->nreads;

	r->nreads = 0;
	for (i = 0; i < n; i++)
		read_answer(r, &r->reads[i], status, 0);
}

/* Moves reads forward: assigns indexes, confirms rounds, delivers. */
void raft__reads_progress(raft *r)
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
	raft__broadcast_heartbeat(r);
	r->heartbeat_deadline = now_ms(r) + r->cfg.heartbeat_ms;
	raft__reads_progress(r);
	return 0;
}

void raft__handle_read(raft *r, const struct raft_msg *m)
{
	if (r->role != RAFT_LEADER || leader_read(r, m->index, m->from)) {
		struct raft_msg resp = { .type = RAFT_MSG_READ_RESP, .index = m->index,
					 .reject = 1 };

		raft__send(r, &resp, m->from);
	}
}

void raft__handle_read_resp(raft *r, const struct raft_msg *m)
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
		raft__reads_progress(r);
		return;
	}
}

int raft_read_index(raft *r, uint64_t id)
{
	struct read_req q = { .id = id, .state = READ_LEADER };
	struct raft_msg m = { .type = RAFT_MSG_READ, .index = id };
	int rc;

	if (r->failed || r->apply_failed) /* its state stopped at the failed entry */
		return -EIO;
	if (r->role == RAFT_LEADER)
		return leader_read(r, id, 0);
	if (r->role != RAFT_FOLLOWER || !r->leader)
		return RAFT_ENOTLEADER;
	q.sent_ms = now_ms(r);
	rc = read_push(r, &q);
	if (rc)
		return rc;
	raft__send(r, &m, r->leader);
	return 0;
}
