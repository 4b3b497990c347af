/*
 * raft_node.c — the Raft replication layer of a node: runs the pure core
 * (cluster/raft.h) on the node's libuv loop, with the store's WAL as its log,
 * cluster/peer.h as its network and a uv_timer as its clock.
 *
 * Durable state and formats: cluster/raft_node.h.
 *
 * Client paths (every function here runs on the loop thread):
 *   write, leader:   raft_propose(encoded batch) -> wait in `commitq` until
 *                    io->apply() reaches that index; same term = committed,
 *                    another term = the entry was lost with a leader change.
 *   write, follower: FORWARD frame {id, batch} to the leader, which proposes
 *                    and answers {id, status, index, term} at once; the
 *                    follower then waits in `commitq` like a leader, so the
 *                    caller returns only once the write is applied HERE
 *                    (close-to-open consistency on this mount).
 *   read barrier:    raft_read_index() (followers go through the leader, the
 *                    core does that); read_done() means applied >= read index.
 *   no leader:       the request waits in `waitq` until a leader is known; a
 *                    minority never learns one, so the wait is bounded and
 *                    then fails with -EROFS (SPEC §3). A write whose outcome
 *                    is unknown (forwarded to a leader that died, proposed by
 *                    a leader that was deposed) fails with -EIO after a
 *                    bounded time; it may still have been committed, as with
 *                    any replicated store.
 *
 * The core's callbacks must not call back into the core, so work they cause
 * (re-routing requests after a leader change) is flagged and done in
 * rn_after(), which runs after every call into the core and re-arms the
 * timer at raft_deadline().
 *
 * Tuning by environment (tests and benchmarks): KVFS_RAFT_ELECTION_MS (300),
 * KVFS_RAFT_HEARTBEAT_MS (50), KVFS_RAFT_TIMEOUT_MS (3000, the bound for a
 * write's commit), KVFS_RAFT_SNAPSHOT_ENTRIES (20000 applied entries between
 * snapshots that compact the Raft log), KVFS_RAFT_SNAPSHOT_MB (64, the same
 * by applied entry bytes), KVFS_RAFT_TRAILING (1000 entries kept
 * below a snapshot for slow followers), KVFS_RAFT_SNAPSHOT_CHUNK (KV_BATCH_MAX
 * operations per batch of a snapshot sent to a follower; small in tests, so
 * that they cover a snapshot of several batches), KVFS_RAFT_FAIL_APPLY_AT
 * (tests only: the entry of that index fails to apply here, as on ENOMEM).
 * The transport's fault switch
 * (KVFS_FAULTS, cluster/peer.h) isolates a node in tests.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include "cluster/peer.h"
#include "cluster/raft.h"
#include "cluster/raft_node.h"
#include "cluster/repl.h"
#include "store/le.h"
#include "store/log.h"

/* Peer frame types of this layer. */
#define RN_T_RAFT     0x5201u /* a raft_msg (raft_msg_encode) */
#define RN_T_FWD      0x5202u /* u64 id, u64 term, encoded batch */
#define RN_T_FWD_RESP 0x5203u /* u64 id, u32 status (int32), u64 index, u64 term */

static uint64_t rn_now(void *arg)
{
	(void)arg;
	return uv_hrtime() / 1000000u;
}

static unsigned env_uint(const char *name, unsigned def)
{
	const char *v = getenv(name);
	char *end;
	unsigned long x;

	if (!v || !*v)
		return def;
	x = strtoul(v, &end, 10);
	if (*end || x == 0 || x > 100000000ul) {
		LOG(LOG_WARN, "raft: ignoring %s=%s", name, v);
		return def;
	}
	return (unsigned)x;
}

static void rn_after(struct rn *rn);
static void rn_close(struct rn *rn);
static void rn_compact(struct rn *rn);
static void rn_route(struct rn *rn, struct rn_wait *w);

/* ---- request bookkeeping -------------------------------------------------- */

static struct rn_wait *wait_new(struct rn *rn, struct node_req *req)
{
	struct rn_wait *w = calloc(1, sizeof *w);

	if (!w) {
		node_req_done(rn->n, req, -ENOMEM);
		return NULL;
	}
	w->req = req;
	return w;
}

void rn__wait_finish(struct rn *rn, struct rn_list *q, struct rn_wait *w, int status)
{
	TAILQ_REMOVE(q, w, link);
	node_req_done(rn->n, w->req, status);
	free(w);
}

static void fail_list(struct rn *rn, struct rn_list *q, int status)
{
	struct rn_wait *w;

	while ((w = TAILQ_FIRST(q)))
		rn__wait_finish(rn, q, w, status);
}

/* Waits for a leader; the request keeps its original deadline. */
static void park(struct rn *rn, struct rn_wait *w)
{
	if (!w->deadline)
		w->deadline = rn_now(rn) + 4u * rn->election_ms;
	TAILQ_INSERT_TAIL(&rn->waitq, w, link);
}

/* An entry is identified by its index and term: a leader makes one entry per
 * index in its term and never overwrites its own. So when the committed log
 * at `at` >= index has the proposal's term, the leader of that term wrote the
 * committed log up to `at` (Log Matching), its own entry at index included:
 * committed. Anything else at `at` > index (a later term) leaves the outcome
 * unknown, as for any write whose answer was lost. This is what tells a
 * proposal applied inside a snapshot, or compacted before the leader's answer
 * came back, from a lost one. */
int rn__outcome(uint64_t index, uint64_t term, uint64_t at, uint64_t at_term)
{
	return at >= index && at_term == term ? 0 : -EIO;
}

/* The outcome of (index, term) on a replica that has applied index: from the
 * entry itself, or, when it is compacted, from the entry the log now starts
 * after (covered by the snapshot, so committed). */
static int applied_outcome(struct rn *rn, uint64_t index, uint64_t term)
{
	uint64_t base = raft_first_index(rn->r) - 1;

	if (index >= base)
		return rn__outcome(index, term, index, raft_term_at(rn->r, index));
	return rn__outcome(index, term, base, raft_term_at(rn->r, base));
}

/* An entry proposed (here or by the leader for us) is committed when it is
 * applied with the term it was proposed in. */
static void await_commit(struct rn *rn, struct rn_wait *w, uint64_t index, uint64_t term, int local)
{
	w->index = index;
	w->term = term;
	w->local = local;
	w->deadline = rn_now(rn) + rn->timeout_ms;
	if (raft_applied(rn->r) >= index) {
		/* Applied before the leader's answer arrived. */
		int rc = applied_outcome(rn, index, term);

		if (rc)
			rn->nlost++;
		node_req_done(rn->n, w->req, rc);
		free(w);
		return;
	}
	TAILQ_INSERT_TAIL(&rn->commitq, w, link);
}

/* ---- the raft_io backend ----------------------------------------------------- */

static uint64_t rn_random(void *arg)
{
	static uint64_t x;

	if (!x)
		x = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)arg;
	/* xorshift64* (Vigna 2016): randomness only spreads election timeouts. */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	return x * 0x2545F4914F6CDD1Dull;
}

static void rn_send(void *arg, const struct raft_msg *m)
{
	struct rn *rn = arg;
	void *buf;
	size_t len;
	int rc;

	if (!rn->net || m->to == 0 || m->to > rn->mem.n)
		return;
	rc = raft_msg_encode(m, &buf, &len);
	if (rc) {
		LOG(LOG_WARN, "raft: cannot encode %s: %s", raft_msg_type_name(m->type), strerror(-rc));
		return;
	}
	rc = peer_send(rn->net, m->to - 1, RN_T_RAFT, buf, len);
	if (rc && rc != -ENOBUFS)
		LOG(LOG_DEBUG, "raft: send %s to %u: %s", raft_msg_type_name(m->type), m->to,
		    strerror(-rc));
	free(buf);
}

static int rn_persist_vote(void *arg, uint64_t term, uint32_t vote)
{
	struct rn *rn = arg;

	return rn_meta_save(rn->dir, term, vote);
}

/* Committer thread (or a thread that ran the sync itself). */
static void rn_append_cb(void *arg, int status, uint64_t lsn)
{
	struct rn_append *a = arg;
	struct rn *rn = a->rn;

	pthread_mutex_lock(&rn->mu);
	a->status = status;
	a->lsn = lsn;
	a->done = 1;
	uv_async_send(&rn->async); /* under the lock: see standalone.c, sa_store_done */
	pthread_mutex_unlock(&rn->mu);
}

static void elsn_truncate(struct rn *rn, uint64_t first)
{
	if (first < rn->elsn_base) {
		rn->elsn_base = first;
		rn->elsn_len = 0;
	} else if (first - rn->elsn_base < rn->elsn_len) {
		rn->elsn_len = first - rn->elsn_base;
	}
}

static int elsn_extend(struct rn *rn, uint64_t first, size_t n, uint64_t lsn)
{
	size_t i;

	elsn_truncate(rn, first);
	if (first != rn->elsn_base + rn->elsn_len) {
		/* Not contiguous (after an install): restart the map. */
		rn->elsn_base = first;
		rn->elsn_len = 0;
	}
	if (rn->elsn_len + n > rn->elsn_cap) {
		size_t cap = rn->elsn_cap ? rn->elsn_cap : 1024;
		uint64_t *p;

		while (cap < rn->elsn_len + n)
			cap *= 2;
		p = realloc(rn->elsn, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		rn->elsn = p;
		rn->elsn_cap = cap;
	}
	for (i = 0; i < n; i++)
		rn->elsn[rn->elsn_len + i] = lsn;
	rn->elsn_len += n;
	return 0;
}

/* Drops the map below `first` (compaction). */
static void elsn_compact(struct rn *rn, uint64_t first)
{
	size_t drop;

	if (first <= rn->elsn_base)
		return;
	drop = first - rn->elsn_base;
	if (drop > rn->elsn_len)
		drop = rn->elsn_len;
	memmove(rn->elsn, rn->elsn + drop, (rn->elsn_len - drop) * sizeof *rn->elsn);
	rn->elsn_len -= drop;
	rn->elsn_base += drop;
}

/* Keeps the WAL segments that hold entries the core still has (and every
 * record after them); see store_pin_log(). */
static void rn_update_pin(struct rn *rn)
{
	uint64_t first = raft_first_index(rn->r);
	struct store_stats ss;

	if (first >= rn->elsn_base && first - rn->elsn_base < rn->elsn_len &&
	    rn->elsn[first - rn->elsn_base]) {
		store_pin_log(rn->st, rn->elsn[first - rn->elsn_base]);
		return;
	}
	if (first > raft_last_index(rn->r)) {
		/* Nothing held: whatever comes next is after the current log. */
		store_get_stats(rn->st, &ss);
		store_pin_log(rn->st, ss.last_lsn + 1);
	}
	/* Otherwise the first entry's record is not durable yet: keep the pin. */
}

static void rn_append(void *arg, uint64_t first, const struct raft_entry *e, size_t n)
{
	struct rn *rn = arg;
	struct rn_append *a = calloc(1, sizeof *a);
	void *buf = NULL;
	size_t len;
	int rc;

	if (!a) {
		/* Without a tracking record we cannot report completion in order:
		 * there is nothing sane left to do. */
		LOG(LOG_ERROR, "raft: out of memory in append");
		abort();
	}
	a->rn = rn;
	a->first = first;
	a->n = n;
	/* The core counts on raft_append_done() in call order, so the record
	 * joins the FIFO before it is submitted. */
	if (rn->atail)
		rn->atail->next = a;
	else
		rn->ahead = a;
	rn->atail = a;
	rn->ainflight++;
	rc = rn_entries_encode(first, e, n, &buf, &len);
	if (!rc)
		rc = store_submit_raw(rn->st, RN_REC_ENTRIES, buf, len, rn_append_cb, a);
	free(buf);
	if (rc)
		rn_append_cb(a, rc, 0);
}

void rn__notify_batch(struct rn *rn, const struct kv_op *ops, uint32_t n)
{
	uint32_t i;

	/* One wake-up of the mount's invalidation thread for the batch. */
	for (i = 0; i < n; i++)
		node_notify_key(rn->n, ops[i].key, ops[i].klen);
	if (n)
		node_notify_flush(rn->n);
}

void rn__publish_applied(struct rn *rn, uint64_t index, uint64_t term)
{
	pthread_mutex_lock(&rn->smu);
	rn->applied_index = index;
	rn->applied_term = term;
	pthread_mutex_unlock(&rn->smu);
}

static int rn_apply(void *arg, uint64_t index, const struct raft_entry *e)
{
	struct rn *rn = arg;
	struct rn_wait *w, *next;
	struct rn_wait *mine = NULL;
	int rc = 0;

	TAILQ_FOREACH(w, &rn->commitq, link)
		if (w->index == index) {
			mine = w;
			break;
		}
	if (e->type == RAFT_ENTRY_DATA && !rn->failed) {
		struct kv_op *ops = NULL;
		uint32_t nops = 0;

		rc = kv_batch_decode(e->data, e->len, &ops, &nops);
		if (!rc && index == rn->fail_apply_at)
			rc = -EIO; /* test knob: an entry this replica cannot apply */
		if (!rc) {
			struct kv_batch b = { .ops = ops, .n = nops };

			rc = store_apply(rn->st, &b, index);
			/* The writer's own mount knows what it wrote; every other
			 * change must reach the kernel caches. */
			if (!rc && !(mine && mine->local && mine->term == e->term))
				rn__notify_batch(rn, ops, nops);
		}
		free(ops);
		if (rc) {
			/* Committed but not applied: this replica no longer
			 * matches the log, so stop serving. */
			LOG(LOG_ERROR, "raft: cannot apply entry %" PRIu64 ": %s; the node stops "
			    "accepting requests", index, strerror(-rc));
			rn->failed = rc;
		}
	}
	/* What the store's snapshots record as applied: never an entry this
	 * replica skipped (that one and all after a failure), so that a
	 * restart replays them. */
	if (!rn->failed)
		rn__publish_applied(rn, index, e->term);
	rn->applied_bytes += e->len;
	for (w = TAILQ_FIRST(&rn->commitq); w; w = next) {
		next = TAILQ_NEXT(w, link);
		if (w->index > index)
			continue;
		if (w->index == index && w->term == e->term && !rn->failed)
			rn__wait_finish(rn, &rn->commitq, w, 0);
		else {
			rn->nlost++;
			rn__wait_finish(rn, &rn->commitq, w, -EIO);
		}
	}
	return rc;
}

static void rn_read_done(void *arg, uint64_t id, int status, uint64_t index)
{
	struct rn *rn = arg;
	struct rn_wait *w;

	(void)index;
	TAILQ_FOREACH(w, &rn->readq, link)
		if (w->id == id)
			break;
	if (!w)
		return; /* timed out already */
	if (status == 0) {
		rn__wait_finish(rn, &rn->readq, w, 0);
		return;
	}
	/* Leadership moved under the read: ask again once a leader is known. */
	TAILQ_REMOVE(&rn->readq, w, link);
	park(rn, w);
	rn->kick = 1;
}

static void rn_state_change(void *arg, enum raft_role role, uint64_t term, uint32_t leader)
{
	struct rn *rn = arg;

	LOG(LOG_INFO, "raft: %s, term %" PRIu64 ", leader %s", raft_role_name(role), term,
	    leader ? rn->mem.addrs[leader - 1] : "unknown");
	rn->kick = 1;
}

static void rn_warn(void *arg, const char *msg)
{
	(void)arg;
	LOG(LOG_WARN, "raft: %s", msg);
}

/* ---- client paths ------------------------------------------------------------ */

static void send_fwd(struct rn *rn, struct rn_wait *w, unsigned to)
{
	unsigned char hdr[16];
	uv_buf_t iov[2];
	int rc;

	w->id = ++rn->next_id;
	w->to = to;
	le_put64(hdr, w->id);
	le_put64(hdr + 8, raft_term(rn->r));
	iov[0] = uv_buf_init((char *)hdr, sizeof hdr);
	iov[1] = uv_buf_init(w->req->enc, (unsigned)w->req->enclen);
	if (!w->deadline)
		w->deadline = rn_now(rn) + rn->timeout_ms;
	rc = peer_sendv(rn->net, to, RN_T_FWD, iov, 2);
	if (rc) {
		node_req_done(rn->n, w->req, rc == -EMSGSIZE ? -EFBIG : -EIO);
		free(w);
		return;
	}
	rn->nfwd_out++;
	TAILQ_INSERT_TAIL(&rn->fwdq, w, link);
}

/* Sends a request where it can make progress now, or parks it. */
static void rn_route(struct rn *rn, struct rn_wait *w)
{
	uint32_t leader = raft_leader(rn->r);
	int rc;

	if (rn->failed) {
		node_req_done(rn->n, w->req, -EIO);
		free(w);
		return;
	}
	if (w->req->is_read) {
		if (!w->id)
			w->id = ++rn->next_id;
		if (!w->deadline)
			w->deadline = rn_now(rn) + 4u * rn->election_ms;
		/* Queued first: the core may answer at once, from inside
		 * raft_read_index() (a leader that is its own majority), and
		 * rn_read_done() finds the read here. */
		TAILQ_INSERT_TAIL(&rn->readq, w, link);
		rc = raft_read_index(rn->r, w->id);
		if (rc == 0)
			return; /* answered, or waiting in readq */
		TAILQ_REMOVE(&rn->readq, w, link);
		if (rc == RAFT_ENOTLEADER) {
			park(rn, w);
		} else {
			node_req_done(rn->n, w->req, rc);
			free(w);
		}
		return;
	}
	if (raft_role(rn->r) == RAFT_LEADER) {
		uint64_t index, term;

		rc = raft_propose(rn->r, w->req->enc, w->req->enclen, &index, &term);
		if (rc == 0) {
			await_commit(rn, w, index, term, 1);
			return;
		}
		/* -EBUSY: a leadership transfer is under way; the write goes to
		 * the next leader. */
		if (rc != RAFT_ENOTLEADER && rc != -EBUSY) {
			node_req_done(rn->n, w->req, rc);
			free(w);
			return;
		}
		leader = 0;
	}
	if (leader && leader != rn->self + 1 && peer_is_up(rn->net, leader - 1))
		send_fwd(rn, w, leader - 1);
	else
		park(rn, w);
}

/* A Raft entry travels whole inside one AppendEntries frame, so a batch that
 * cannot fit in a transport frame (with room for the message headers) could
 * never replicate: refuse it up front instead of stalling the log. */
#define RN_ENTRY_MAX (PEER_MAX_FRAME - (64u << 10))

static void rn_write(void *self, struct node_req *req)
{
	struct rn *rn = self;
	struct rn_wait *w;

	if (req->enclen > RN_ENTRY_MAX) {
		node_req_done(rn->n, req, -EFBIG);
		return;
	}
	w = wait_new(rn, req);
	if (!w)
		return;
	rn_route(rn, w);
	rn_after(rn);
}

static void rn_read_barrier(void *self, struct node_req *req)
{
	struct rn *rn = self;
	struct rn_wait *w = wait_new(rn, req);

	if (!w)
		return;
	rn_route(rn, w);
	rn_after(rn);
}

/* Leader side of a forwarded write: propose and answer at once with where the
 * entry went; the follower then watches its own log for it. */
static void on_fwd(struct rn *rn, unsigned from, const unsigned char *p, size_t len)
{
	unsigned char resp[28];
	uint64_t id, index = 0, term = 0;
	struct kv_op *ops = NULL;
	uint32_t n;
	int rc;

	if (len < 16)
		return;
	id = le_get64(p);
	rn->nfwd_in++;
	/* A batch that does not decode would fail to apply on every node. */
	rc = kv_batch_decode(p + 16, len - 16, &ops, &n);
	free(ops);
	/* Only the leader of the term the follower saw proposes it. A frame that
	 * arrives late (queued while this node was down, or sent before an
	 * election) is refused unproposed, so the follower may safely send it
	 * again instead of the write happening long after its caller gave up. */
	if (rc == 0 && (le_get64(p + 8) != raft_term(rn->r) || rn->stopping))
		rc = RAFT_ENOTLEADER;
	if (rc == 0)
		rc = rn->failed ? RAFT_ENOTLEADER /* steps down at its next tick */
				: raft_propose(rn->r, p + 16, len - 16, &index, &term);
	le_put64(resp, id);
	le_put32(resp + 8, (uint32_t)(int32_t)rc);
	le_put64(resp + 12, index);
	le_put64(resp + 20, term);
	peer_send(rn->net, from, RN_T_FWD_RESP, resp, sizeof resp);
}

static void on_fwd_resp(struct rn *rn, unsigned from, const unsigned char *p, size_t len)
{
	struct rn_wait *w;
	uint64_t id;
	int status;

	if (len != 28)
		return;
	id = le_get64(p);
	status = (int32_t)le_get32(p + 8);
	TAILQ_FOREACH(w, &rn->fwdq, link)
		if (w->id == id && w->to == from)
			break;
	if (!w)
		return; /* timed out already */
	TAILQ_REMOVE(&rn->fwdq, w, link);
	if (status == 0) {
		await_commit(rn, w, le_get64(p + 12), le_get64(p + 20), 0);
	} else if (status == RAFT_ENOTLEADER) {
		/* Not proposed anywhere: safe to send again. */
		park(rn, w);
		rn->kick = 1;
	} else {
		node_req_done(rn->n, w->req, status);
		free(w);
	}
}

/* ---- events ------------------------------------------------------------------ */

static void on_message(void *arg, unsigned from, uint16_t type, const void *buf, size_t len)
{
	struct rn *rn = arg;
	struct raft_msg m;
	int rc;

	if (rn->closed)
		return;
	switch (type) {
	case RN_T_RAFT:
		rc = raft_msg_decode(buf, len, &m);
		if (rc) {
			LOG(LOG_WARN, "raft: malformed message from %s", rn->mem.addrs[from]);
			return;
		}
		if (m.from == from + 1 && m.to == rn->self + 1)
			raft_recv(rn->r, &m);
		raft_msg_release(&m);
		break;
	case RN_T_FWD:
		on_fwd(rn, from, buf, len);
		break;
	case RN_T_FWD_RESP:
		on_fwd_resp(rn, from, buf, len);
		break;
	default:
		return;
	}
	rn_after(rn);
}

static void on_peer_state(void *arg, unsigned id, int up)
{
	struct rn *rn = arg;

	LOG(LOG_INFO, "raft: peer %s is %s", rn->mem.addrs[id], up ? "up" : "down");
	rn->kick = 1;
	rn_after(rn);
}

static void on_timer(uv_timer_t *t)
{
	struct rn *rn = t->data;

	raft_tick(rn->r);
	rn_after(rn);
}

static void on_async(uv_async_t *h)
{
	struct rn *rn = h->data;
	int any = 0;

	for (;;) {
		struct rn_append *a;
		int done, status;
		uint64_t lsn;

		pthread_mutex_lock(&rn->mu);
		a = rn->ahead;
		done = a && a->done;
		status = a ? a->status : 0;
		lsn = a ? a->lsn : 0;
		if (done) {
			rn->ahead = a->next;
			if (!rn->ahead)
				rn->atail = NULL;
		}
		pthread_mutex_unlock(&rn->mu);
		if (!done)
			break;
		rn->ainflight--;
		if (status == 0)
			elsn_extend(rn, a->first, a->n, lsn);
		else
			LOG(LOG_ERROR, "raft: cannot persist log entries %" PRIu64 "..: %s",
			    a->first, strerror(-status));
		free(a);
		if (!rn->closed) {
			raft_append_done(rn->r, status);
			any = 1;
		}
	}
	if (any) {
		rn_update_pin(rn);
		rn_after(rn);
	}
	if (rn->closed && rn->ainflight == 0 && !uv_is_closing((uv_handle_t *)&rn->async))
		uv_close((uv_handle_t *)&rn->async, NULL);
}

static void snap_work(uv_work_t *w)
{
	struct rn *rn = w->data;

	rn->snap_rc = store_snapshot(rn->st);
}

static void snap_after(uv_work_t *w, int status)
{
	struct rn *rn = w->data;
	struct store_stats ss;

	rn->snap_running = 0;
	if (status || rn->snap_rc || rn->stopping)
		return;
	store_get_stats(rn->st, &ss);
	/* A snapshot written during the call captured an applied index at least
	 * as new as the one at its start, so the log up to it is no longer
	 * needed for recovery. */
	if (ss.snapshots == rn->snap_count0)
		return;
	rn->snap_applied = rn->snap_target;
	rn_compact(rn);
	rn_after(rn);
}

/* Cuts the log as far as the store snapshots cover it (snap_applied) and the
 * followers allow (rn__compact_limit); what a follower holds up now is cut
 * at a later housekeeping round. */
static void rn_compact(struct rn *rn)
{
	uint64_t upto;

	if (rn->snap_applied <= raft_snapshot_index(rn->r))
		return;
	upto = rn__compact_limit(rn, rn->snap_applied);
	if (upto <= raft_snapshot_index(rn->r))
		return;
	raft_snapshot_taken(rn->r, upto);
	elsn_compact(rn, raft_first_index(rn->r));
	rn_update_pin(rn);
	LOG(LOG_DEBUG, "raft: log compacted up to %" PRIu64 " (snapshot at %" PRIu64 ")", upto,
	    rn->snap_applied);
}

static void expire(struct rn *rn, struct rn_list *q, uint64_t now, int status)
{
	struct rn_wait *w, *next;

	for (w = TAILQ_FIRST(q); w; w = next) {
		next = TAILQ_NEXT(w, link);
		if (w->deadline && now >= w->deadline)
			rn__wait_finish(rn, q, w, status);
	}
}

static void on_house(uv_timer_t *t)
{
	struct rn *rn = t->data;
	uint64_t now = rn_now(rn);

	if (rn->stopping)
		return;
	expire(rn, &rn->waitq, now, -EROFS);   /* never reached a leader */
	expire(rn, &rn->readq, now, -EROFS);
	expire(rn, &rn->fwdq, now, -EIO);      /* outcome unknown */
	expire(rn, &rn->commitq, now, -EIO);
	if (!TAILQ_EMPTY(&rn->waitq))
		rn->kick = 1;
	if (!rn->failed)
		rn_compact(rn);
	/* The core holds every entry since the last compaction in memory, so
	 * snapshots are taken by entry count and by bytes. Never after an
	 * entry failed to apply: the map lacks it and every later one, and
	 * compacting would drop them from the log that a restart replays to
	 * bring them back (the core stops applying there, and gives up once
	 * the unapplied log grows past RAFT_APPLY_FAILED_MAX_LAG). */
	if (!rn->snap_running && !rn->failed && raft_applied(rn->r) > rn->snap_applied &&
	    (raft_applied(rn->r) >= rn->snap_applied + rn->snap_every ||
	     rn->applied_bytes >= rn->snap_bytes)) {
		struct store_stats ss;

		store_get_stats(rn->st, &ss);
		rn->snap_count0 = ss.snapshots;
		rn->snap_target = raft_applied(rn->r);
		rn->applied_bytes = 0;
		rn->snap_running = 1;
		rn->snap_work.data = rn;
		if (uv_queue_work(node_loop(rn->n), &rn->snap_work, snap_work, snap_after))
			rn->snap_running = 0;
	}
	rn_after(rn);
}

/* Once per loop iteration, after every I/O callback of the iteration (libuv
 * runs check handles right after polling): the core was created with
 * cfg.defer_sends, so the proposals, acknowledgements and commits of the
 * whole iteration leave here as one AppendEntries / commit notice per
 * follower (batching like etcd's Ready loop). Every call into the core
 * happens before this point in an iteration (timers run before the poll,
 * work completions and messages during it), except the re-routing below,
 * which therefore runs before the flush. */
static void on_check(uv_check_t *h)
{
	struct rn *rn = h->data;

	if (rn->closed || !rn->r)
		return;
	rn_after(rn);
	raft_flush(rn->r);
	rn_after(rn);
}

/* Runs after every call into the core: re-routes requests when leadership
 * may have moved, and re-arms the core's timer. */
static void rn_after(struct rn *rn)
{
	uint64_t now, dl;

	if (rn->in_after || rn->closed)
		return;
	rn->in_after = 1;
	if (rn->stopping) {
		/* Only a leadership hand-over is left to do. */
		fail_list(rn, &rn->waitq, -ESHUTDOWN);
		rn->kick = 0;
		if (rn->draining && raft_role(rn->r) != RAFT_LEADER) {
			LOG(LOG_INFO, "raft: leadership handed over; stopping");
			rn_close(rn);
			rn->in_after = 0;
			return;
		}
	}
	while (rn->kick) {
		struct rn_list q;
		struct rn_wait *w, *next;
		uint32_t leader = raft_leader(rn->r);

		rn->kick = 0;
		if (leader != rn->last_leader) {
			/* Forwards to a leader that is gone may or may not have been
			 * proposed: report them now rather than at the deadline. */
			for (w = TAILQ_FIRST(&rn->fwdq); w; w = next) {
				next = TAILQ_NEXT(w, link);
				if (w->to + 1 != leader)
					rn__wait_finish(rn, &rn->fwdq, w, -EIO);
			}
			rn->last_leader = leader;
		}
		if (!leader)
			continue;
		TAILQ_INIT(&q);
		TAILQ_CONCAT(&q, &rn->waitq, link);
		while ((w = TAILQ_FIRST(&q))) {
			TAILQ_REMOVE(&q, w, link);
			rn_route(rn, w);
		}
	}
	now = rn_now(rn);
	dl = raft_deadline(rn->r);
	if (dl == UINT64_MAX)
		uv_timer_stop(&rn->timer);
	else
		uv_timer_start(&rn->timer, on_timer, dl > now ? dl - now : 0, 0);
	rn->in_after = 0;
}

/* ---- repl_ops ------------------------------------------------------------------ */

static int rn_replay(void *self, uint8_t type, uint64_t lsn, const void *p, size_t len)
{
	struct rn *rn = self;

	return rn_replay_add(&rn->replay, type, lsn, p, len);
}

size_t rn__snap_state(void *arg, void *buf, size_t cap)
{
	struct rn *rn = arg;
	unsigned char b[RN_STATE_SIZE];

	pthread_mutex_lock(&rn->smu);
	rn_state_encode(rn->applied_index, rn->applied_term, b);
	pthread_mutex_unlock(&rn->smu);
	if (cap >= sizeof b)
		memcpy(buf, b, sizeof b);
	return sizeof b;
}

static int rn_start(void *self)
{
	struct rn *rn = self;
	struct raft_config cfg = { 0 };
	struct raft_io io = { 0 };
	struct raft_boot boot = { 0 };
	struct raft_entry *ents = NULL;
	uint64_t *lsns = NULL;
	const void *state;
	size_t slen, nents = 0;
	uint64_t slsn;
	int rc;

	rn->st = node_store(rn->n);
	store_snapshot_state(rn->st, &state, &slen, &slsn);
	rc = rn_state_decode(state, slen, &boot.snap_index, &boot.snap_term);
	if (rc) {
		LOG(LOG_ERROR, "raft: the store snapshot in %s was not written by the Raft mode",
		    rn->dir);
		goto out;
	}
	rc = rn_meta_load(rn->dir, &boot.term, &boot.vote);
	if (rc)
		goto out;
	rc = rn_replay_build(&rn->replay, boot.snap_index, &ents, &lsns, &nents);
	if (rc)
		goto out;
	boot.entries = ents;
	boot.nentries = nents;
	/* A node takes a term (persisting it) before it holds any entry of
	 * that term: a log or snapshot newer than the persisted term means
	 * raft.meta was lost or replaced, and starting would let this node vote
	 * a second time in a term it has voted in already. */
	{
		uint64_t newest = nents ? ents[nents - 1].term : 0;

		if (boot.snap_term > newest)
			newest = boot.snap_term;
		if (newest > boot.term) {
			LOG(LOG_ERROR, "raft: %s/%s says term %" PRIu64 " but the log holds term %"
			    PRIu64 ": the file is missing or older than the log; refusing to start "
			    "(this node could vote twice in one term)", rn->dir, RN_META_FILE,
			    boot.term, newest);
			rc = -EUCLEAN;
			goto out;
		}
	}

	cfg.id = rn->self + 1;
	cfg.n = (uint32_t)rn->mem.n;
	cfg.election_timeout_ms = rn->election_ms;
	cfg.heartbeat_ms = rn->heartbeat_ms;
	cfg.snapshot_trailing = rn->trailing;
	cfg.defer_sends = 1; /* raft_flush() in on_check */
	io.arg = rn;
	io.now = rn_now;
	io.random = rn_random;
	io.send = rn_send;
	io.persist_vote = rn_persist_vote;
	io.append = rn_append;
	io.apply = rn_apply;
	io.snapshot_get = rn__snapshot_get;
	io.snapshot_install = rn__snapshot_install;
	io.read_done = rn_read_done;
	io.state_change = rn_state_change;
	io.warn = rn_warn;
	rc = raft_new(&cfg, &io, &boot, &rn->r);
	if (rc)
		goto out;
	rn->snap_applied = boot.snap_index;
	rn__publish_applied(rn, boot.snap_index, boot.snap_term);
	rn->elsn_base = boot.snap_index + 1;
	if (nents) {
		rc = elsn_extend(rn, boot.snap_index + 1, nents, 0);
		if (rc)
			goto out;
		memcpy(rn->elsn, lsns, nents * sizeof *lsns);
	}
	LOG(LOG_INFO, "raft: node %u of %zu (%s), term %" PRIu64 ", vote %" PRIu32 ", snapshot %"
	    PRIu64 ", %zu log entries after it", rn->self + 1, rn->mem.n, rn->mem.addrs[rn->self],
	    boot.term, boot.vote, boot.snap_index, nents);

	rn->async.data = rn;
	rc = uv_async_init(node_loop(rn->n), &rn->async, on_async);
	if (rc)
		goto out;
	rn->handles |= 1;
	uv_timer_init(node_loop(rn->n), &rn->timer);
	uv_timer_init(node_loop(rn->n), &rn->house);
	rn->timer.data = rn->house.data = rn;
	rn->handles |= 6;
	uv_check_init(node_loop(rn->n), &rn->check);
	rn->check.data = rn;
	rn->handles |= 8;
	uv_check_start(&rn->check, on_check);
	rn_update_pin(rn);

	rc = peer_net_new(node_loop(rn->n), node_config(rn->n)->listen,
			  node_config(rn->n)->peers, node_config(rn->n)->npeers,
			  on_message, on_peer_state, rn, &rn->net);
	if (rc)
		goto out;
	rc = peer_net_start(rn->net);
	if (rc)
		goto out;
	rn->started = 1;
	uv_timer_start(&rn->house, on_house, 50, 50);
	rn_after(rn);
out:
	free(ents);
	free(lsns);
	rn_replay_free(&rn->replay);
	return rc;
}

static void rn_status(void *self, json_t *obj)
{
	struct rn *rn = self;
	json_t *peers = json_array();
	uint32_t leader;
	size_t i;

	if (!rn->r) {
		json_object_set_new(obj, "role", json_string("unknown"));
		json_decref(peers);
		return;
	}
	/* A failed core (a log write or sync failed) is frozen in the role it
	 * had: it does not know who leads now, and is not the leader itself
	 * whatever its role says, so it names none (a client routing by this
	 * field would otherwise pick a node that cannot serve). A replica
	 * whose apply failed still follows, and says whom. */
	leader = raft_failed(rn->r) ? 0 : raft_leader(rn->r);
	json_object_set_new(obj, "role", json_string(raft_role_name(raft_role(rn->r))));
	json_object_set_new(obj, "term", json_integer((json_int_t)raft_term(rn->r)));
	json_object_set_new(obj, "leader", leader ? json_string(rn->mem.addrs[leader - 1])
						  : json_null());
	json_object_set_new(obj, "id", json_integer(rn->self + 1));
	json_object_set_new(obj, "self", json_string(rn->mem.addrs[rn->self]));
	json_object_set_new(obj, "commit_index", json_integer((json_int_t)raft_commit(rn->r)));
	json_object_set_new(obj, "applied_index", json_integer((json_int_t)raft_applied(rn->r)));
	json_object_set_new(obj, "last_index", json_integer((json_int_t)raft_last_index(rn->r)));
	json_object_set_new(obj, "durable_index",
			    json_integer((json_int_t)raft_durable_index(rn->r)));
	json_object_set_new(obj, "snapshot_index",
			    json_integer((json_int_t)raft_snapshot_index(rn->r)));
	json_object_set_new(obj, "first_index", json_integer((json_int_t)raft_first_index(rn->r)));
	json_object_set_new(obj, "forwarded_in", json_integer((json_int_t)rn->nfwd_in));
	json_object_set_new(obj, "forwarded_out", json_integer((json_int_t)rn->nfwd_out));
	json_object_set_new(obj, "lost_proposals", json_integer((json_int_t)rn->nlost));
	json_object_set_new(obj, "snapshot_refusals", json_integer((json_int_t)rn->snap_refusals));
	json_object_set_new(obj, "snapshots_installed", json_integer((json_int_t)rn->snap_installs));
	json_object_set_new(obj, "failed", json_boolean(rn->failed || raft_failed(rn->r)));
	for (i = 0; i < rn->mem.n; i++) {
		struct peer_stats ps = { 0 };
		json_t *p;

		if (i == rn->self)
			continue;
		p = json_object();
		if (rn->net)
			peer_get_stats(rn->net, (unsigned)i, &ps);
		json_object_set_new(p, "id", json_integer((json_int_t)i + 1));
		json_object_set_new(p, "addr", json_string(rn->mem.addrs[i]));
		json_object_set_new(p, "up", json_boolean(ps.up));
		json_object_set_new(p, "blocked", json_boolean(ps.blocked));
		if (raft_role(rn->r) == RAFT_LEADER)
			json_object_set_new(p, "match_index",
					    json_integer((json_int_t)raft_match_index(rn->r,
										  (uint32_t)i + 1)));
		json_array_append_new(peers, p);
	}
	json_object_set_new(obj, "peers", peers);
}

static void on_net_closed(void *arg)
{
	(void)arg;
}

/* Closes every handle of the layer (once). */
static void rn_close(struct rn *rn)
{
	if (rn->closed)
		return;
	rn->closed = 1;
	rn->draining = 0;
	if (rn->net) {
		peer_net_close(rn->net, on_net_closed, rn);
		rn->net = NULL;
	}
	if (rn->handles & 2)
		uv_close((uv_handle_t *)&rn->timer, NULL);
	if (rn->handles & 4)
		uv_close((uv_handle_t *)&rn->house, NULL);
	if (rn->handles & 8)
		uv_close((uv_handle_t *)&rn->check, NULL);
	/* The async handle stays open until the store has reported every
	 * append: its callbacks point at us. */
	if ((rn->handles & 1) && rn->ainflight == 0)
		uv_close((uv_handle_t *)&rn->async, NULL);
	else if (rn->handles & 1)
		uv_async_send(&rn->async);
}

static void on_drain_end(uv_timer_t *t)
{
	struct rn *rn = t->data;

	LOG(LOG_INFO, "raft: leadership hand-over did not finish in time; stopping anyway");
	rn_close(rn);
}

/* A leader that stops cleanly (unmount, SIGTERM) first hands leadership to
 * the most up-to-date reachable follower (thesis §3.10), so the others do
 * not wait an election timeout to notice it is gone. Bounded by one
 * election timeout; the core abandons the transfer after that too. */
static int rn_hand_over(struct rn *rn)
{
	uint32_t best = 0, i;
	uint64_t best_match = 0;

	if (!rn->r || !rn->net || raft_role(rn->r) != RAFT_LEADER)
		return 0;
	for (i = 0; i < rn->mem.n; i++) {
		uint64_t m;

		if (i == rn->self || !peer_is_up(rn->net, i))
			continue;
		m = raft_match_index(rn->r, i + 1);
		if (!best || m > best_match) {
			best = i + 1;
			best_match = m;
		}
	}
	if (!best || raft_transfer(rn->r, best))
		return 0;
	LOG(LOG_INFO, "raft: handing leadership to %s before stopping", rn->mem.addrs[best - 1]);
	rn->draining = 1;
	uv_timer_start(&rn->house, on_drain_end, rn->election_ms, 0);
	raft_flush(rn->r);
	rn_after(rn);
	return 1;
}

static void rn_stop(void *self)
{
	struct rn *rn = self;

	rn->stopping = 1;
	fail_list(rn, &rn->waitq, -ESHUTDOWN);
	fail_list(rn, &rn->fwdq, -ESHUTDOWN);
	fail_list(rn, &rn->commitq, -ESHUTDOWN);
	fail_list(rn, &rn->readq, -ESHUTDOWN);
	if (!rn_hand_over(rn))
		rn_close(rn);
}

static void rn_destroy(void *self)
{
	struct rn *rn = self;
	struct rn_append *a, *next;

	if (rn->r)
		raft_free(rn->r);
	for (a = rn->ahead; a; a = next) {
		next = a->next;
		free(a);
	}
	rn_replay_free(&rn->replay);
	peer_members_free(&rn->mem);
	pthread_mutex_destroy(&rn->mu);
	pthread_mutex_destroy(&rn->smu);
	free(rn->elsn);
	free(rn->sbuf);
	free(rn->dir);
	free(rn);
}

static const struct repl_ops raft_ops = {
	.name = "raft",
	.replay = rn_replay,
	.start = rn_start,
	.write = rn_write,
	.read_barrier = rn_read_barrier,
	.status = rn_status,
	.stop = rn_stop,
	.destroy = rn_destroy,
	.snap_state = rn__snap_state,
};

int repl_raft_new(node *n, const struct node_config *cfg, void **self, const struct repl_ops **ops)
{
	struct rn *rn;
	int rc;

	if (!cfg->listen || !cfg->listen[0]) {
		LOG(LOG_ERROR, "raft mode needs --listen HOST:PORT");
		return -EINVAL;
	}
	rn = calloc(1, sizeof *rn);
	if (!rn)
		return -ENOMEM;
	rn->n = n;
	pthread_mutex_init(&rn->mu, NULL);
	pthread_mutex_init(&rn->smu, NULL);
	TAILQ_INIT(&rn->waitq);
	TAILQ_INIT(&rn->fwdq);
	TAILQ_INIT(&rn->commitq);
	TAILQ_INIT(&rn->readq);
	/* A forwarded request's reply is matched by id and peer, and a reply
	 * can outlive this process: frames the leader queued for this node
	 * reach it after a restart. Ids therefore start at the wall clock in
	 * nanoseconds, above every id an earlier run used (it cannot have sent
	 * more than one a nanosecond), unless the clock was set back. */
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		rn->next_id = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
	rc = peer_members_init(&rn->mem, cfg->listen, cfg->peers, cfg->npeers);
	if (rc) {
		LOG(LOG_ERROR, "raft: bad membership (--listen %s): %s", cfg->listen,
		    strerror(-rc));
		goto err;
	}
	if (rn->mem.n > RAFT_MAX_NODES) {
		LOG(LOG_ERROR, "raft: %zu members, at most %u are supported", rn->mem.n,
		    RAFT_MAX_NODES);
		rc = -EINVAL;
		goto err;
	}
	rn->self = rn->mem.self;
	rn->dir = strdup(cfg->data_dir);
	if (!rn->dir) {
		rc = -ENOMEM;
		goto err;
	}
	rn->election_ms = env_uint("KVFS_RAFT_ELECTION_MS", 300);
	rn->heartbeat_ms = env_uint("KVFS_RAFT_HEARTBEAT_MS", 50);
	rn->timeout_ms = env_uint("KVFS_RAFT_TIMEOUT_MS", 3000);
	rn->snap_every = env_uint("KVFS_RAFT_SNAPSHOT_ENTRIES", 20000);
	rn->trailing = env_uint("KVFS_RAFT_TRAILING", 1000);
	rn->snap_bytes = (uint64_t)env_uint("KVFS_RAFT_SNAPSHOT_MB", 64) << 20;
	rn->snap_chunk = env_uint("KVFS_RAFT_SNAPSHOT_CHUNK", KV_BATCH_MAX);
	if (rn->snap_chunk > KV_BATCH_MAX) /* env_uint never gives 0 for it */
		rn->snap_chunk = KV_BATCH_MAX;
	rn->fail_apply_at = env_uint("KVFS_RAFT_FAIL_APPLY_AT", 0);
	if (rn->heartbeat_ms * 3 > rn->election_ms)
		rn->heartbeat_ms = rn->election_ms / 3 ? rn->election_ms / 3 : 1;
	*self = rn;
	*ops = &raft_ops;
	return 0;
err:
	peer_members_free(&rn->mem);
	pthread_mutex_destroy(&rn->mu);
	pthread_mutex_destroy(&rn->smu);
	free(rn);
	return rc;
}
