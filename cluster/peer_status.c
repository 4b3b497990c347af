/*
 * peer_status.c — the transport's counters as JSON for `status` replies.
 * Kept apart from peer.c so that the transport itself needs no jansson.
 */
#include "cluster/peer.h"

#include <jansson.h>

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
