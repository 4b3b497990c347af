/*
 * peer_status.c — accessors and counters of the peer transport, and the
 * counters as JSON for `status` replies.
 */
#include "cluster/peer_int.h"

#include <errno.h>
#include <jansson.h>

unsigned peer_self_id(const peer_net *net)
{
	return net->m.self;
}

unsigned peer_count(const peer_net *net)
{
	return (unsigned)net->m.n;
}

const char *peer_addr(const peer_net *net, unsigned id)
{
	return id < net->m.n ? net->m.addrs[id] : NULL;
}

uint64_t peer_cluster_id(const peer_net *net)
{
	return net->m.cluster_id;
}

int peer_is_up(const peer_net *net, unsigned id)
{
	if (id >= net->m.n)
		return 0;
	if (id == net->m.self)
		return 1;
	return net->peers[id].up;
}

size_t peer_queued_bytes(const peer_net *net, unsigned to)
{
	if (to >= net->m.n)
		return 0;
	return net->peers[to].qbytes;
}

void peer_set_queue_limit(peer_net *net, size_t max_bytes, size_t max_frames)
{
	if (max_bytes)
		net->qmax_bytes = max_bytes;
	if (max_frames)
		net->qmax_frames = max_frames;
}

int peer_get_stats(const peer_net *net, unsigned id, struct peer_stats *st)
{
	const struct peer *p;
	const struct conn *c;

	if (id >= net->m.n)
		return -EINVAL;
	p = &net->peers[id];
	*st = p->st;
	st->up = peer_is_up(net, id);
	st->blocked = p->blocked;
	st->conns = 0;
	for (c = net->conns; c; c = c->next)
		if (c->peer == p && c->state == C_READY)
			st->conns++;
	st->queued_bytes = p->qbytes;
	st->queued_frames = p->qframes;
	return 0;
}

void peer_status_json(const peer_net *net, json_t *arr)
{
	struct peer_stats st;
	unsigned i, n = peer_count(net);

	for (i = 0; i < n; i++) {
		json_t *o = json_object();

		if (!o)
			return;
		json_object_set_new(o, "id", json_integer(i));
		json_object_set_new(o, "addr", json_string(peer_addr(net, i)));
		json_object_set_new(o, "self", json_boolean(i == peer_self_id(net)));
		if (i != peer_self_id(net) && peer_get_stats(net, i, &st) == 0) {
			json_object_set_new(o, "up", json_boolean(st.up));
			json_object_set_new(o, "blocked", json_boolean(st.blocked));
			json_object_set_new(o, "conns", json_integer(st.conns));
			json_object_set_new(o, "frames_sent", json_integer((json_int_t)st.frames_sent));
			json_object_set_new(o, "bytes_sent", json_integer((json_int_t)st.bytes_sent));
			json_object_set_new(o, "writes", json_integer((json_int_t)st.writes));
			json_object_set_new(o, "frames_recv", json_integer((json_int_t)st.frames_recv));
			json_object_set_new(o, "bytes_recv", json_integer((json_int_t)st.bytes_recv));
			json_object_set_new(o, "frames_dropped", json_integer((json_int_t)st.frames_dropped));
			json_object_set_new(o, "dials", json_integer((json_int_t)st.dials));
			json_object_set_new(o, "reconnects", json_integer((json_int_t)st.reconnects));
			json_object_set_new(o, "handshakes", json_integer((json_int_t)st.handshakes));
			json_object_set_new(o, "errors", json_integer((json_int_t)st.errors));
			json_object_set_new(o, "queued_frames", json_integer((json_int_t)st.queued_frames));
			json_object_set_new(o, "queued_bytes", json_integer((json_int_t)st.queued_bytes));
			json_object_set_new(o, "last_recv_ms", json_integer((json_int_t)st.last_recv_ms));
		}
		json_array_append_new(arr, o);
	}
}
