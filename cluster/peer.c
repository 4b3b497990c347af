/*
 * peer.c — the peer transport on libuv TCP: connections, framing, the
 * handshake, batching and reconnection. See cluster/peer.h for the contract
 * and the wire format, cluster/peer_int.h for the other files.
 *
 * Structure. A net holds one `struct peer` per member (the self entry is
 * unused) and a list of connections. A connection is outgoing (dialed by us,
 * at most one per peer: peer->out) or incoming (accepted; bound to a peer once
 * its HELLO is checked). Frames to a peer wait in the peer's queue; whenever a
 * ready connection has no data write in flight, everything queued (up to
 * PEER_WRITE_BATCH frames) goes out in one uv_write(). Sends made during one
 * loop iteration are flushed by a prepare and a check handle, so a burst of
 * peer_send() calls from one callback becomes one write.
 *
 * Lifetimes. A connection is freed in its close callback; until then it stays
 * valid, so code that ran a user callback checks `c->state == C_CLOSING`
 * before touching the stream again. The net is freed when its last handle
 * has closed after peer_net_close().
 */
#include "cluster/peer_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "store/log.h"

static void conn_close(struct conn *c);
static void flush_peer(struct peer *p);
static void dial_timer_cb(uv_timer_t *t);

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

/* xorshift64*: jitter only, no quality needed. */
static uint64_t rng_next(peer_net *net)
{
	uint64_t x = net->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	net->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static const char *conn_who(const struct conn *c)
{
	if (c->peer)
		return c->net->m.addrs[c->peer->id];
	return c->remote;
}

void peer__set_up(struct peer *p, int up)
{
	peer_net *net = p->net;

	if (p->up == up)
		return;
	p->up = up;
	LOG(LOG_INFO, "peer %s (id %u) is %s", net->m.addrs[p->id], p->id, up ? "up" : "down");
	if (net->on_state && !net->closing)
		net->on_state(net->arg, p->id, up);
}

static void handle_closed(peer_net *net)
{
	if (--net->nhandles > 0 || !net->closing)
		return;
	peer_close_fn cb = net->close_cb;
	void *arg = net->close_arg;
	size_t i;

	for (i = 0; i < net->m.n; i++)
		peer__frames_free(net->peers[i].qhead);
	free(net->peers);
	peer_members_free(&net->m);
	free(net->fault_file);
	free(net);
	if (cb)
		cb(arg);
}

static void generic_close_cb(uv_handle_t *h)
{
	handle_closed(h->data);
}

static void dial_timer_close_cb(uv_handle_t *h)
{
	struct peer *p = h->data;

	handle_closed(p->net);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

/* The bookkeeping of a data write that went out whole. */
static void count_sent(struct conn *c, const struct wreq *w)
{
	struct peer *p = c->peer;

	c->last_send_ms = uv_now(c->net->loop);
	if (w->is_data && p) {
		p->st.frames_sent += w->nframes;
		p->st.bytes_sent += w->nbytes;
		p->st.writes++;
	}
}

static void write_cb(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct conn *c = w->c;
	struct peer *p = c->peer;

	if (w->is_data)
		c->writing = 0;
	if (status == 0) {
		count_sent(c, w);
	} else {
		if (w->is_data && p)
			p->st.frames_dropped += w->nframes;
		if (status != UV_ECANCELED && c->state != C_CLOSING) {
			LOG(LOG_WARN, "peer %s: write failed: %s", conn_who(c), uv_strerror(status));
			conn_close(c);
		}
	}
	peer__frames_free(w->frames);
	if (w->close_after)
		conn_close(c);
	free(w);
	if (p && c->state == C_READY && !c->net->closing && p->qframes)
		flush_peer(p);
}

/* Writes the list `f` (nframes frames) on `c` in one write. Takes the
 * frames in every case. Returns 1 when a data write went out at once (it is
 * counted and done: the caller may write more), 0 when it is in flight
 * (write_cb finishes it), or a negative error. */
static int conn_write(struct conn *c, struct frame *f, size_t nframes, int is_data, int close_after)
{
	struct wreq *w = malloc(sizeof *w + nframes * sizeof(uv_buf_t));
	struct frame *it;
	size_t i, skip = 0;
	int rv;

	if (!w) {
		peer__frames_free(f);
		return -ENOMEM;
	}
	w->c = c;
	w->frames = f;
	w->nframes = nframes;
	w->nbytes = 0;
	w->is_data = is_data;
	w->close_after = close_after;
	for (i = 0, it = f; i < nframes; i++, it = it->next) {
		w->bufs[i].base = (char *)it->data;
		w->bufs[i].len = it->len;
		w->nbytes += it->len;
	}
	if (is_data) {
		/* Most writes fit the socket buffer: try them at once, with no
		 * write request, callback or poll registration (uv_write costs an
		 * epoll_ctl per write, twice per replicated write at concurrency
		 * 1). libuv refuses (EAGAIN) while an earlier write is queued, so
		 * the order of bytes on the connection is kept. */
		ssize_t n = uv_try_write((uv_stream_t *)&c->tcp, w->bufs, (unsigned)nframes);

		if (n == (ssize_t)w->nbytes) {
			count_sent(c, w);
			peer__frames_free(f);
			free(w);
			return 1;
		}
		if (n < 0 && n != UV_EAGAIN) {
			peer__frames_free(f);
			free(w);
			return (int)n;
		}
		/* Partly written: the rest goes through uv_write. */
		while (n > 0) {
			if ((size_t)n >= w->bufs[skip].len) {
				n -= (ssize_t)w->bufs[skip].len;
				skip++;
			} else {
				w->bufs[skip].base += n;
				w->bufs[skip].len -= (size_t)n;
				n = 0;
			}
		}
	}
	rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, w->bufs + skip, (unsigned)(nframes - skip),
		      write_cb);
	if (rv) {
		peer__frames_free(f);
		free(w);
		return rv;
	}
	if (is_data)
		c->writing = 1;
	return 0;
}

static int conn_send_one(struct conn *c, uint16_t type, const void *buf, size_t len, int close_after)
{
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	struct frame *f = peer__frame_new(type, &b, 1, len);
	int rv;

	if (!f)
		return -ENOMEM;
	rv = conn_write(c, f, 1, 0, close_after);
	return rv < 0 ? rv : 0;
}

/* Frames to a peer stick to one connection while it lives, so that they
 * arrive in the order they were sent; a new one is picked (the outgoing
 * connection first) only when it closes. */
static struct conn *pick_conn(struct peer *p)
{
	struct conn *c;

	if (p->send && p->send->state == C_READY)
		return p->send;
	p->send = NULL;
	if (p->out && p->out->state == C_READY)
		return p->send = p->out;
	for (c = p->net->conns; c; c = c->next)
		if (c->peer == p && c->state == C_READY)
			return p->send = c;
	return NULL;
}

static void flush_peer(struct peer *p)
{
	struct conn *c;
	struct frame *head, *last;
	size_t n, bytes;
	int rv;

	/* Batches that go out at once are followed by the next at once. */
	do {
		if (!p->qhead || p->blocked)
			return;
		c = pick_conn(p);
		if (!c || c->writing)
			return;
		n = bytes = 0;
		head = last = p->qhead;
		for (;;) {
			n++;
			bytes += last->len;
			if (n == PEER_WRITE_BATCH || !last->next)
				break;
			last = last->next;
		}
		p->qhead = last->next;
		if (!p->qhead)
			p->qtail = NULL;
		last->next = NULL;
		p->qframes -= n;
		p->qbytes -= bytes;
		rv = conn_write(c, head, n, 1, 0);
		if (rv < 0) {
			p->st.frames_dropped += n;
			LOG(LOG_WARN, "peer %s: write failed: %s", conn_who(c), uv_strerror(rv));
			conn_close(c);
			return;
		}
	} while (rv == 1);
}

static void flush_all(peer_net *net)
{
	size_t i;

	if (!net->dirty || net->closing)
		return;
	net->dirty = 0;
	for (i = 0; i < net->m.n; i++)
		if (i != net->m.self && net->peers[i].qhead)
			flush_peer(&net->peers[i]);
}

static void prep_cb(uv_prepare_t *h)
{
	flush_all(h->data);
}

static void chk_cb(uv_check_t *h)
{
	flush_all(h->data);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */

static struct conn *conn_new(peer_net *net, int outgoing)
{
	struct conn *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	c->net = net;
	c->outgoing = outgoing;
	c->opened_ms = c->last_recv_ms = c->last_send_ms = uv_now(net->loop);
	c->tcp.data = c;
	c->next = net->conns;
	if (net->conns)
		net->conns->prev = c;
	net->conns = c;
	net->nhandles++;
	return c;
}

static void conn_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;
	peer_net *net = c->net;

	free(c->payload);
	free(c);
	handle_closed(net);
}

static void schedule_dial(struct peer *p)
{
	peer_net *net = p->net;
	uint64_t d;

	if (net->closing || p->blocked || p->out)
		return;
	/* Jitter uniformly in [backoff/2, backoff] so that nodes restarted at the
	 * same moment do not dial in lockstep. */
	d = p->backoff_ms / 2 + rng_next(net) % (p->backoff_ms / 2 + 1);
	p->backoff_ms = p->backoff_ms * 2 > PEER_BACKOFF_MAX_MS ? PEER_BACKOFF_MAX_MS : p->backoff_ms * 2;
	uv_timer_start(&p->dial_timer, dial_timer_cb, d, 0);
}

/* Closes `c` (idempotent). Frames in flight on it are lost; the peer's queue
 * is kept for the next connection. */
static void conn_close(struct conn *c)
{
	peer_net *net = c->net;
	struct peer *p = c->peer;
	int was_ready = c->state == C_READY;

	if (c->state == C_CLOSING)
		return;
	if (!c->outgoing && c->state == C_HELLO)
		net->npending--;
	c->state = C_CLOSING;
	if (c->prev)
		c->prev->next = c->next;
	else
		net->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
	if (!p)
		return;
	if (p->send == c)
		p->send = NULL;
	if (c->outgoing && p->out == c) {
		p->out = NULL;
		schedule_dial(p);
	}
	if (was_ready && --p->nready == 0 && !net->closing)
		peer__set_up(p, 0);
}

static void conn_fail(struct conn *c, const char *why)
{
	if (c->peer)
		LOG(LOG_WARN, "peer: closing connection %s %s (socket %s): %s",
		    c->outgoing ? "to" : "from", conn_who(c), c->remote, why);
	else
		LOG(LOG_WARN, "peer: closing connection %s %s: %s",
		    c->outgoing ? "to" : "from", c->remote, why);
	if (c->peer)
		c->peer->st.errors++;
	conn_close(c);
}

/* Incoming connections of member p past their handshake. */
static unsigned incoming_ready(const peer_net *net, const struct peer *p)
{
	const struct conn *o;
	unsigned n = 0;

	for (o = net->conns; o; o = o->next)
		n += !o->outgoing && o->peer == p && o->state == C_READY;
	return n;
}

static void conn_ready(struct conn *c)
{
	struct peer *p = c->peer;
	peer_net *net = c->net;

	if (!c->outgoing)
		net->npending--;
	c->state = C_READY;
	c->last_recv_ms = c->last_send_ms = uv_now(net->loop);
	if (p->nready++ == 0) {
		if (p->ever_ready)
			p->st.reconnects++;
		p->ever_ready = 1;
	}
	p->st.handshakes++;
	p->reject_logged = 0;
	if (c->outgoing)
		p->backoff_ms = PEER_BACKOFF_MIN_MS;
	LOG(LOG_DEBUG, "peer %s: %s connection ready", net->m.addrs[p->id],
	    c->outgoing ? "outgoing" : "incoming");
	if (!p->blocked)
		peer__set_up(p, 1);
	if (net->closing || c->state != C_READY)
		return;
	flush_peer(p);
}

static int send_hello(struct conn *c)
{
	peer_net *net = c->net;
	const char *self = net->m.addrs[net->m.self];
	size_t alen = strlen(self);
	unsigned char buf[20 + 256];

	if (alen > 256)
		return -EINVAL;
	put32(buf, PEER_MAGIC);
	put16(buf + 4, PEER_PROTO_VERSION);
	put16(buf + 6, (uint16_t)net->m.self);
	put64(buf + 8, net->m.cluster_id);
	put16(buf + 16, (uint16_t)net->m.n);
	put16(buf + 18, (uint16_t)alen);
	memcpy(buf + 20, self, alen);
	return conn_send_one(c, PEER_T_HELLO, buf, 20 + alen, 0);
}

static void conn_reject(struct conn *c, const char *reason)
{
	if (c->peer)
		c->peer->st.errors++;
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (conn_send_one(c, PEER_T_REJECT, reason, strlen(reason), 1))
		conn_close(c);
	else {
		if (!c->outgoing && c->state == C_HELLO)
			c->net->npending--;
		c->state = C_REJECTING;
	}
}

/* Checks a HELLO; on success binds an incoming connection to its peer and
 * answers with our HELLO. */
static void on_hello(struct conn *c, const unsigned char *b, size_t len)
{
	peer_net *net = c->net;
	char addr[257], reason[512];
	uint32_t magic;
	uint16_t ver, id, nmem, alen;
	uint64_t cid;
	struct peer *p;
	int log_it;

	if (len < 20)
		goto garbage;
	magic = get32(b);
	ver = get16(b + 4);
	id = get16(b + 6);
	cid = get64(b + 8);
	nmem = get16(b + 16);
	alen = get16(b + 18);
	if (magic != PEER_MAGIC || alen > 256 || (size_t)20 + alen != len)
		goto garbage;
	memcpy(addr, b + 20, alen);
	addr[alen] = '\0';
	if (ver != PEER_PROTO_VERSION) {
		snprintf(reason, sizeof reason,
			 "%s speaks peer protocol version %u, %s speaks %u",
			 addr, ver, net->m.addrs[net->m.self], PEER_PROTO_VERSION);
		goto refuse;
	}
	if (cid != net->m.cluster_id || nmem != net->m.n || id >= net->m.n ||
	    strcmp(addr, net->m.addrs[id])) {
		snprintf(reason, sizeof reason,
			 "cluster membership differs: %s has %u members (cluster id %016llx), "
			 "%s has %zu members (cluster id %016llx); start every node with the same "
			 "--listen/--peers set",
			 addr, nmem, (unsigned long long)cid, net->m.addrs[net->m.self],
			 net->m.n, (unsigned long long)net->m.cluster_id);
		goto refuse;
	}
	if (id == net->m.self) {
		snprintf(reason, sizeof reason, "%s connected to itself (%s): duplicate address?",
			 addr, net->m.addrs[net->m.self]);
		goto refuse;
	}
	p = &net->peers[id];
	if (c->outgoing) {
		if (p != c->peer) {
			snprintf(reason, sizeof reason, "dialed %s but %s answered",
				 net->m.addrs[c->peer->id], addr);
			goto refuse;
		}
	} else {
		/* A member holds one incoming connection (a restarted one may
		 * briefly hold two, until the idle timeout closes the dead
		 * one): more are refused, so connections claiming one member
		 * cannot pile up frame buffers of up to PEER_MAX_FRAME each.
		 * The newest is refused, so a real member's connection is
		 * never closed in favour of another claiming to be it. */
		if (incoming_ready(net, p) >= PEER_MAX_INCOMING) {
			conn_fail(c, "too many connections claim to be this member");
			return;
		}
		c->peer = p;
		/* A partitioned peer's handshake is dropped like everything else;
		 * the hello timeout closes the connection. */
		if (p->blocked)
			return;
		if (send_hello(c)) {
			conn_fail(c, "cannot answer HELLO");
			return;
		}
	}
	conn_ready(c);
	return;
garbage:
	conn_fail(c, "malformed HELLO (not a kvfs peer?)");
	return;
refuse:
	/* The dialer retries every second: log a refusal of the same address
	 * at most every 30 s. */
	log_it = 1;
	if (!strcmp(net->last_refuse, addr) && uv_now(net->loop) - net->last_refuse_ms < 30000)
		log_it = 0;
	if (log_it) {
		LOG(LOG_ERROR, "peer: refusing %s (connection %s %s): %s", addr,
		    c->outgoing ? "to" : "from", c->remote, reason);
		snprintf(net->last_refuse, sizeof net->last_refuse, "%s", addr);
		net->last_refuse_ms = uv_now(net->loop);
	}
	conn_reject(c, reason);
}

static void on_reject(struct conn *c, const unsigned char *b, size_t len)
{
	struct peer *p = c->peer;
	int n = len > 1000 ? 1000 : (int)len;

	if (p && !p->reject_logged) {
		LOG(LOG_ERROR, "peer %s refused our connection: %.*s", conn_who(c), n, (const char *)b);
		p->reject_logged = 1;
	}
	if (p)
		p->st.errors++;
	conn_close(c);
}

/* One complete frame has arrived. */
static void on_frame(struct conn *c, uint16_t type, const unsigned char *b, size_t len, uint32_t crc)
{
	peer_net *net = c->net;
	struct peer *p;

	if (peer_crc32c(0, b, len) != crc) {
		conn_fail(c, "frame checksum mismatch");
		return;
	}
	if (c->state == C_HELLO) {
		if (type == PEER_T_HELLO && !(c->peer && !c->outgoing))
			on_hello(c, b, len);
		else if (type == PEER_T_REJECT && c->outgoing)
			on_reject(c, b, len);
		else if (!c->outgoing && c->peer)
			; /* blocked peer waiting out its hello timeout */
		else
			conn_fail(c, "first frame is not HELLO");
		return;
	}
	if (c->state != C_READY)
		return;
	p = c->peer;
	if (p->blocked) {
		if (type <= PEER_TYPE_USER_MAX)
			p->st.frames_dropped++;
		return;
	}
	switch (type) {
	case PEER_T_PING:
		return;
	case PEER_T_REJECT:
		on_reject(c, b, len);
		return;
	case PEER_T_HELLO:
		conn_fail(c, "HELLO after handshake");
		return;
	default:
		if (type > PEER_TYPE_USER_MAX) {
			conn_fail(c, "unknown reserved frame type");
			return;
		}
		p->st.frames_recv++;
		p->st.bytes_recv += PEER_HDR_SIZE + len;
		net->on_message(net->arg, p->id, type, b, len);
	}
}

/* A header is complete: check it and prepare for the payload. Returns 0 or
 * -1 when the connection was closed. */
static int on_header(struct conn *c)
{
	uint32_t len = get32(c->hdr);
	uint32_t max = c->state == C_READY ? PEER_MAX_FRAME : PEER_MAX_HELLO;
	char why[128];

	if (peer__hdr_check(c->hdr) != c->hdr[7] || c->hdr[6] != 0) {
		conn_fail(c, "bad frame header (garbage, or not the kvfs peer protocol)");
		return -1;
	}
	if (len > max) {
		snprintf(why, sizeof why, "frame of %u bytes exceeds the limit of %u", len, max);
		conn_fail(c, why);
		return -1;
	}
	c->plen = len;
	c->pgot = 0;
	c->ptype = get16(c->hdr + 4);
	c->pcrc = get32(c->hdr + 8);
	c->in_payload = 1;
	c->hdr_got = 0;
	return 0;
}

static void payload_done(struct conn *c)
{
	unsigned char *b = c->payload;

	c->payload = NULL;
	c->in_payload = 0;
	on_frame(c, c->ptype, b, c->plen, c->pcrc);
	free(b);
}

/* Parses `n` bytes from the connection's read buffer. */
static void parse(struct conn *c, const unsigned char *d, size_t n)
{
	size_t k;

	while (n && c->state != C_CLOSING && c->state != C_REJECTING) {
		if (!c->in_payload) {
			k = PEER_HDR_SIZE - c->hdr_got;
			if (k > n)
				k = n;
			memcpy(c->hdr + c->hdr_got, d, k);
			c->hdr_got += k;
			d += k;
			n -= k;
			if (c->hdr_got < PEER_HDR_SIZE)
				return;
			if (on_header(c))
				return;
			if (c->plen <= n) {
				/* The whole payload is here: deliver it in place. */
				c->in_payload = 0;
				k = c->plen;
				on_frame(c, c->ptype, d, k, c->pcrc);
				d += k;
				n -= k;
				continue;
			}
			c->payload = malloc(c->plen);
			if (!c->payload) {
				conn_fail(c, "out of memory for a frame");
				return;
			}
			continue;
		}
		k = c->plen - c->pgot;
		if (k > n)
			k = n;
		memcpy(c->payload + c->pgot, d, k);
		c->pgot += k;
		d += k;
		n -= k;
		if (c->pgot == c->plen)
			payload_done(c);
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)suggested;
	/* Large payloads are read straight into their buffer. */
	if (c->in_payload && c->payload && c->plen - c->pgot >= DIRECT_READ_MIN) {
		size_t k = c->plen - c->pgot;
		*buf = uv_buf_init((char *)c->payload + c->pgot, k > (1u << 30) ? 1u << 30 : (unsigned)k);
		return;
	}
	*buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	if (c->state == C_CLOSING || c->state == C_REJECTING)
		return;
	if (nread < 0) {
		if (nread == UV_EOF)
			LOG(LOG_DEBUG, "peer %s: connection closed by the other end", conn_who(c));
		else
			LOG(LOG_INFO, "peer %s: connection lost: %s", conn_who(c), uv_strerror((int)nread));
		conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	if (!c->peer || !c->peer->blocked) {
		c->last_recv_ms = uv_now(c->net->loop);
		if (c->peer && c->state == C_READY)
			c->peer->st.last_recv_ms = c->last_recv_ms;
	}
	if (buf->base != c->rbuf) {
		c->pgot += (size_t)nread;
		if (c->pgot == c->plen)
			payload_done(c);
		return;
	}
	parse(c, (const unsigned char *)buf->base, (size_t)nread);
}

static void fill_remote(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	snprintf(c->remote, sizeof c->remote, "%s:%d", ip, port);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	struct peer *p = c->peer;
	int rv;

	if (c->state == C_CLOSING)
		return;
	if (status < 0) {
		LOG(LOG_DEBUG, "peer %s: connect failed: %s", conn_who(c), uv_strerror(status));
		conn_close(c);
		return;
	}
	fill_remote(c);
	uv_tcp_nodelay(&c->tcp, 1);
	c->state = C_HELLO;
	c->opened_ms = uv_now(c->net->loop);
	rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	if (!rv)
		rv = send_hello(c);
	if (rv) {
		LOG(LOG_WARN, "peer %s: cannot start connection: %s", conn_who(c), uv_strerror(rv));
		conn_close(c);
	}
	(void)p;
}

void peer__dial(struct peer *p)
{
	peer_net *net = p->net;
	struct conn *c;
	int rv;

	if (net->closing || p->blocked || p->out)
		return;
	c = conn_new(net, 1);
	if (!c) {
		schedule_dial(p);
		return;
	}
	c->peer = p;
	snprintf(c->remote, sizeof c->remote, "%s", net->m.addrs[p->id]);
	p->out = c;
	p->st.dials++;
	uv_tcp_init(net->loop, &c->tcp);
	c->creq.data = c;
	rv = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&p->sa, on_connect);
	if (rv) {
		LOG(LOG_DEBUG, "peer %s: connect failed: %s", net->m.addrs[p->id], uv_strerror(rv));
		conn_close(c);
	}
}

static void dial_timer_cb(uv_timer_t *t)
{
	peer__dial(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
	peer_net *net = server->data;
	struct conn *c;

	if (status < 0) {
		LOG(LOG_WARN, "peer: accept failed: %s", uv_strerror(status));
		return;
	}
	c = conn_new(net, 0);
	if (!c) {
		/* Accept into nothing is not possible with libuv: leave the
		 * connection in the backlog; it is retried on the next event. */
		return;
	}
	uv_tcp_init(net->loop, &c->tcp);
	c->state = C_HELLO;
	net->npending++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
		conn_close(c);
		return;
	}
	fill_remote(c);
	if (net->npending > MAX_PENDING_CONN) {
		LOG(LOG_WARN, "peer: too many connections without handshake; closing %s", c->remote);
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb))
		conn_close(c);
}

static void tick_cb(uv_timer_t *t)
{
	peer_net *net = t->data;
	uint64_t now = uv_now(net->loop);
	struct conn *c, *next;

	for (c = net->conns; c && !net->closing; c = next) {
		next = c->next;
		if (c->state == C_CONNECTING && now - c->opened_ms > PEER_HELLO_TIMEOUT_MS) {
			/* A blackholed address can keep a SYN pending for minutes. */
			LOG(LOG_DEBUG, "peer %s: connect timed out", conn_who(c));
			conn_close(c);
		} else if (c->state == C_HELLO && now - c->opened_ms > PEER_HELLO_TIMEOUT_MS) {
			conn_fail(c, "no handshake in time");
		} else if (c->state == C_READY) {
			if (now - c->last_recv_ms > PEER_IDLE_TIMEOUT_MS) {
				conn_fail(c, "nothing received for too long");
			} else if (!c->peer->blocked && !c->writing &&
				   now - c->last_send_ms >= PEER_PING_MS &&
				   !c->peer->qhead) {
				c->last_send_ms = now;
				if (conn_send_one(c, PEER_T_PING, NULL, 0, 0))
					conn_fail(c, "cannot send ping");
			}
		}
	}
	if (net->fault_file && !net->closing)
		peer__poll_fault_file(net);
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

static int resolve(const char *addr, struct sockaddr_storage *ss)
{
	char host[256], port[8];
	struct addrinfo hints, *res = NULL;
	int pnum, rv;

	if (peer_addr_split(addr, host, sizeof host, &pnum))
		return -EINVAL;
	snprintf(port, sizeof port, "%d", pnum);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rv = getaddrinfo(host, port, &hints, &res);
	if (rv || !res) {
		LOG(LOG_ERROR, "peer: cannot resolve %s: %s", addr, gai_strerror(rv));
		return -EINVAL;
	}
	memset(ss, 0, sizeof *ss);
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

int peer_net_new(uv_loop_t *loop, const char *listen, const char *const *peers, size_t npeers,
		 peer_message_fn on_message, peer_state_fn on_state, void *arg, peer_net **out)
{
	peer_net *net;
	size_t i;
	int rv;

	if (!loop || !on_message || !out)
		return -EINVAL;
	net = calloc(1, sizeof *net);
	if (!net)
		return -ENOMEM;
	rv = peer_members_init(&net->m, listen, peers, npeers);
	if (rv)
		goto err;
	net->peers = calloc(net->m.n, sizeof *net->peers);
	if (!net->peers) {
		rv = -ENOMEM;
		goto err;
	}
	rv = resolve(listen, &net->listen_sa);
	if (rv)
		goto err;
	for (i = 0; i < net->m.n; i++) {
		net->peers[i].net = net;
		net->peers[i].id = (unsigned)i;
		net->peers[i].backoff_ms = PEER_BACKOFF_MIN_MS;
		if (i == net->m.self)
			continue;
		rv = resolve(net->m.addrs[i], &net->peers[i].sa);
		if (rv)
			goto err;
	}
	net->loop = loop;
	net->on_message = on_message;
	net->on_state = on_state;
	net->arg = arg;
	net->qmax_bytes = PEER_QUEUE_MAX_BYTES;
	net->qmax_frames = PEER_QUEUE_MAX_FRAMES;
	{
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		net->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
			   net->m.cluster_id ^ ((uint64_t)net->m.self << 48) ^ 0x9E3779B97F4A7C15ull;
		if (!net->rng)
			net->rng = 1;
	}
	/* Handle inits cannot fail for timers, prepare and check. */
	for (i = 0; i < net->m.n; i++) {
		uv_timer_init(loop, &net->peers[i].dial_timer);
		net->peers[i].dial_timer.data = &net->peers[i];
		net->nhandles++;
	}
	uv_timer_init(loop, &net->tick);
	net->tick.data = net;
	uv_prepare_init(loop, &net->prep);
	net->prep.data = net;
	uv_check_init(loop, &net->chk);
	net->chk.data = net;
	net->nhandles += 3;
	*out = net;
	return 0;
err:
	if (net->m.addrs)
		peer_members_free(&net->m);
	free(net->peers);
	free(net);
	return rv;
}

int peer_net_start(peer_net *net)
{
	size_t i;
	int rv;

	if (net->started || net->closing)
		return -EINVAL;
	uv_tcp_init(net->loop, &net->listener);
	net->listener.data = net;
	net->listening = 1;
	net->nhandles++;
	rv = uv_tcp_bind(&net->listener, (const struct sockaddr *)&net->listen_sa, 0);
	if (!rv)
		rv = uv_listen((uv_stream_t *)&net->listener, 128, on_connection);
	if (rv) {
		LOG(LOG_ERROR, "peer: cannot listen on %s: %s", net->m.addrs[net->m.self],
		    uv_strerror(rv));
		return rv;
	}
	net->started = 1;
	uv_prepare_start(&net->prep, prep_cb);
	uv_check_start(&net->chk, chk_cb);
	uv_unref((uv_handle_t *)&net->prep);
	uv_unref((uv_handle_t *)&net->chk);
	uv_timer_start(&net->tick, tick_cb, TICK_MS, TICK_MS);
	peer__apply_faults_env(net);
	if (net->fault_file)
		peer__poll_fault_file(net);
	for (i = 0; i < net->m.n; i++)
		if (i != net->m.self)
			peer__dial(&net->peers[i]);
	return 0;
}

void peer_net_close(peer_net *net, peer_close_fn cb, void *arg)
{
	size_t i;

	if (!net || net->closing)
		return;
	net->closing = 1;
	net->close_cb = cb;
	net->close_arg = arg;
	while (net->conns)
		conn_close(net->conns);
	for (i = 0; i < net->m.n; i++)
		uv_close((uv_handle_t *)&net->peers[i].dial_timer, dial_timer_close_cb);
	uv_close((uv_handle_t *)&net->tick, generic_close_cb);
	uv_close((uv_handle_t *)&net->prep, generic_close_cb);
	uv_close((uv_handle_t *)&net->chk, generic_close_cb);
	if (net->listening)
		uv_close((uv_handle_t *)&net->listener, generic_close_cb);
}

int peer_sendv(peer_net *net, unsigned to, uint16_t type, const uv_buf_t *iov, size_t niov)
{
	struct peer *p;
	struct frame *f;
	size_t len = 0, i;

	if (net->closing)
		return -ESHUTDOWN;
	if (to >= net->m.n || to == net->m.self || type > PEER_TYPE_USER_MAX)
		return -EINVAL;
	for (i = 0; i < niov; i++) {
		len += iov[i].len;
		if (len > PEER_MAX_FRAME)
			return -EMSGSIZE;
	}
	p = &net->peers[to];
	if (p->blocked) {
		p->st.frames_dropped++;
		return 0;
	}
	if (p->qframes + 1 > net->qmax_frames ||
	    p->qbytes + PEER_HDR_SIZE + len > net->qmax_bytes) {
		p->st.frames_dropped++;
		return -ENOBUFS;
	}
	f = peer__frame_new(type, iov, niov, len);
	if (!f)
		return -ENOMEM;
	if (p->qtail)
		p->qtail->next = f;
	else
		p->qhead = f;
	p->qtail = f;
	p->qframes++;
	p->qbytes += f->len;
	net->dirty = 1;
	return 0;
}

int peer_send(peer_net *net, unsigned to, uint16_t type, const void *buf, size_t len)
{
	uv_buf_t b;

	if (len > PEER_MAX_FRAME)
		return -EMSGSIZE;
	b = uv_buf_init((char *)buf, (unsigned)len);
	return peer_sendv(net, to, type, &b, len ? 1 : 0);
}
