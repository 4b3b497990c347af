/*
 * peer_fault.c — the transport's fault switch (peer_set_blocked) and its
 * drivers: the KVFS_FAULTS environment variable and the fault file. See
 * cluster/peer.h.
 */
#include "cluster/peer_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/log.h"

static int parse_member(peer_net *net, const char *tok, size_t len, unsigned *id)
{
	size_t i;
	char *end;
	char buf[300];

	if (!len || len >= sizeof buf)
		return -1;
	memcpy(buf, tok, len);
	buf[len] = '\0';
	if (buf[0] >= '0' && buf[0] <= '9' && !strchr(buf, ':') && !strchr(buf, '.')) {
		unsigned long v = strtoul(buf, &end, 10);
		if (*end || v >= net->m.n)
			return -1;
		*id = (unsigned)v;
		return 0;
	}
	for (i = 0; i < net->m.n; i++)
		if (!strcmp(buf, net->m.addrs[i])) {
			*id = (unsigned)i;
			return 0;
		}
	return -1;
}

void peer__poll_fault_file(peer_net *net)
{
	char buf[4096];
	size_t n = 0, i;
	FILE *f = fopen(net->fault_file, "r");
	const char *seps = " \t\r\n,";

	if (f) {
		n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	for (i = 0; i < net->m.n; i++)
		net->peers[i].file_blocked = -net->peers[i].file_blocked; /* mark old */
	for (i = 0; i < n;) {
		size_t k = strcspn(buf + i, seps);
		unsigned id;
		if (k && !parse_member(net, buf + i, k, &id) && id != net->m.self) {
			struct peer *p = &net->peers[id];
			if (p->file_blocked <= 0) {
				if (p->file_blocked == 0) {
					LOG(LOG_WARN, "peer: fault file blocks %s", net->m.addrs[id]);
					peer_set_blocked(net, id, 1);
				}
				p->file_blocked = 1;
			}
		}
		i += k ? k : 1;
		if (net->closing)
			return;
	}
	for (i = 0; i < net->m.n; i++) {
		struct peer *p = &net->peers[i];
		if (p->file_blocked < 0) {
			p->file_blocked = 0;
			LOG(LOG_WARN, "peer: fault file unblocks %s", net->m.addrs[i]);
			peer_set_blocked(net, (unsigned)i, 0);
			if (net->closing)
				return;
		}
	}
}

void peer__apply_faults_env(peer_net *net)
{
	const char *env = getenv("KVFS_FAULTS");
	const char *s, *e;

	if (!env || !*env)
		return;
	for (s = env; *s; s = *e ? e + 1 : e) {
		e = s + strcspn(s, ";");
		if (!strncmp(s, "block=", 6)) {
			const char *t = s + 6;
			while (t < e) {
				size_t k = strcspn(t, ",;");
				unsigned id;
				if ((size_t)(e - t) < k)
					k = (size_t)(e - t);
				if (k && !parse_member(net, t, k, &id) && id != net->m.self) {
					LOG(LOG_WARN, "peer: KVFS_FAULTS blocks %s", net->m.addrs[id]);
					peer_set_blocked(net, id, 1);
				} else if (k) {
					LOG(LOG_WARN, "peer: KVFS_FAULTS: unknown member '%.*s'", (int)k, t);
				}
				t += k + 1;
			}
		} else if (!strncmp(s, "file=", 5) && e > s + 5) {
			free(net->fault_file);
			net->fault_file = strndup(s + 5, (size_t)(e - s - 5));
		} else if (e > s) {
			LOG(LOG_WARN, "peer: KVFS_FAULTS: ignoring '%.*s'", (int)(e - s), s);
		}
	}
}

size_t peer_drop_queued(peer_net *net, unsigned to)
{
	struct peer *p;
	size_t n;

	if (to >= net->m.n || to == net->m.self)
		return 0;
	p = &net->peers[to];
	n = p->qframes;
	p->st.frames_dropped += n;
	peer__frames_free(p->qhead);
	p->qhead = p->qtail = NULL;
	p->qframes = p->qbytes = 0;
	return n;
}

int peer_set_blocked(peer_net *net, unsigned id, int blocked)
{
	struct peer *p;
	struct conn *c;

	if (id >= net->m.n || id == net->m.self)
		return -EINVAL;
	p = &net->peers[id];
	blocked = !!blocked;
	if (p->blocked == blocked)
		return 0;
	p->blocked = blocked;
	if (blocked) {
		LOG(LOG_WARN, "peer %s: blocked (fault injection)", net->m.addrs[id]);
		peer_drop_queued(net, id);
		uv_timer_stop(&p->dial_timer);
		peer__set_up(p, 0);
		return 0;
	}
	LOG(LOG_WARN, "peer %s: unblocked (fault injection)", net->m.addrs[id]);
	/* Silence while blocked was ours: do not count it against the
	 * connections. */
	for (c = net->conns; c; c = c->next)
		if (c->peer == p)
			c->last_recv_ms = uv_now(net->loop);
	if (p->nready)
		peer__set_up(p, 1);
	if (!net->closing && net->started && !p->out) {
		p->backoff_ms = PEER_BACKOFF_MIN_MS;
		peer__dial(p);
	}
	return 0;
}

int peer_is_blocked(const peer_net *net, unsigned id)
{
	return id < net->m.n ? net->peers[id].blocked : 0;
}
