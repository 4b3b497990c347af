/*
 * ctl.c — the control socket's listener and connections on the node's libuv
 * loop. Protocol work is done by the session engine (ctl_sess.c); this file
 * moves bytes, applies backpressure and enforces the connection limits.
 *
 * Connection life cycle: accepted -> reading/writing -> closing (handle
 * closed by libuv, session killed) -> freed once BOTH the handle is closed
 * and the session has no write in flight (the node still holds a callback
 * into it). The server itself is freed once its listener, its timer and its
 * last connection are gone.
 */
#include "cluster/ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cluster/ctl_sess.h"
#include "store/log.h"

#define CTL_MAX_CONNS_DEFAULT 1024u
#define CTL_IDLE_MS_DEFAULT   (300u * 1000)
#define CTL_REJECT_EXTRA      64u  /* over-limit connections answered before closing */

struct ctl_conn;

struct ctl_server {
	node              *n;
	uv_loop_t         *loop;
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t    tcp;
		uv_pipe_t   pipe;
	} lis;
	int                is_unix;
	char              *path;      /* unix socket path, unlinked at stop */
	uv_timer_t         sweep;
	uv_check_t         flusher;   /* writes out connections marked dirty */
	struct ctl_conn   *dirty;     /* connections with replies to flush */
	struct ctl_backend be;
	struct ctl_scan_table scan;   /* shared by all connections */
	struct ctl_conn   *conns;
	unsigned           nconns;    /* connections not yet freed */
	unsigned           handles;   /* listener, timer, flusher still open */
	unsigned           max_conns;
	uint64_t           idle_ms;
	int                stopping;
};

struct ctl_conn {
	struct ctl_server *srv;
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t    tcp;
		uv_pipe_t   pipe;
	} h;
	struct ctl_sess  s;
	uv_write_t       wreq;
	struct ctl_buf   wbuf;        /* bytes handed to uv_write */
	int              writing, reading, closing, handle_closed, released, is_dirty;
	uint64_t         last_active;
	struct ctl_conn *prev, *next;
	struct ctl_conn *dirty_next;
};

static void conn_close(struct ctl_conn *c);
static void conn_flush(struct ctl_conn *c);

static void server_maybe_free(struct ctl_server *srv)
{
	if (!srv->stopping || srv->handles || srv->nconns)
		return;
	if (srv->path)
		unlink(srv->path);
	free(srv->path);
	ctl_scan_table_free(&srv->scan);
	free(srv);
}

static void conn_maybe_free(struct ctl_conn *c)
{
	struct ctl_server *srv = c->srv;

	if (!c->handle_closed || !c->released)
		return;
	if (c->is_dirty) {
		struct ctl_conn **pp = &srv->dirty;

		while (*pp != c)
			pp = &(*pp)->dirty_next;
		*pp = c->dirty_next;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ctl_sess_free(&c->s);
	ctl_buf_free(&c->wbuf);
	free(c);
	srv->nconns--;
	server_maybe_free(srv);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct ctl_conn *c = h->data;

	c->handle_closed = 1;
	conn_maybe_free(c);
}

static void on_sess_release(struct ctl_sess *s)
{
	struct ctl_conn *c = s->owner;

	c->released = 1;
	conn_maybe_free(c);
}

static void conn_close(struct ctl_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->reading)
		uv_read_stop(&c->h.stream);
	c->reading = 0;
	uv_close(&c->h.handle, on_conn_closed);
	/* May release at once when nothing is pending. */
	ctl_sess_kill(&c->s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_conn *c = h->data;
	char *p;
	size_t n;

	(void)suggested;
	/* Read straight into the session's input buffer: no copy. */
	if (ctl_sess_rbuf(&c->s, &p, &n)) {
		buf->base = NULL;
		buf->len = 0; /* libuv reports UV_ENOBUFS; we close */
		return;
	}
	buf->base = p;
	buf->len = n;
}

static void conn_update_reading(struct ctl_conn *c);

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_conn *c = st->data;

	(void)buf;
	if (nread < 0) {
		if (nread != UV_EOF && nread != UV_ECONNRESET)
			LOG(LOG_DEBUG, "control connection read: %s", uv_strerror((int)nread));
		conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	c->last_active = uv_now(c->srv->loop);
	ctl_sess_commit(&c->s, (size_t)nread);
	conn_flush(c);
}

static void conn_update_reading(struct ctl_conn *c)
{
	int want;

	if (c->closing)
		return;
	want = ctl_sess_want_input(&c->s) &&
	       !(c->writing && ctl_buf_size(&c->wbuf) >= CTL_OUT_HIGH);
	if (want && !c->reading) {
		if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0)
			c->reading = 1;
	} else if (!want && c->reading) {
		uv_read_stop(&c->h.stream);
		c->reading = 0;
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct ctl_conn *c = req->data;

	c->writing = 0;
	c->last_active = uv_now(c->srv->loop);
	c->wbuf.off = c->wbuf.len = 0;
	ctl_buf_shrink(&c->wbuf);
	if (status < 0 || c->closing) {
		conn_close(c);
		return;
	}
	/* Output drained: the engine may have stopped parsing at the
	 * high-water mark. */
	ctl_sess_process(&c->s);
	conn_flush(c);
}

static void conn_flush(struct ctl_conn *c)
{
	struct ctl_sess *s = &c->s;
	struct ctl_buf t;
	uv_buf_t b;
	int n;

	if (c->closing)
		return;
	if (!c->writing && ctl_buf_size(&s->out)) {
		b = uv_buf_init(ctl_buf_head(&s->out), (unsigned)ctl_buf_size(&s->out));
		n = uv_try_write(&c->h.stream, &b, 1);
		if (n > 0)
			ctl_buf_consume(&s->out, (size_t)n);
		else if (n < 0 && n != UV_EAGAIN) {
			conn_close(c);
			return;
		}
		if (ctl_buf_size(&s->out)) {
			/* The rest goes asynchronously from a buffer of its own,
			 * so new replies can accumulate meanwhile. */
			t = c->wbuf;
			c->wbuf = s->out;
			s->out = t;
			s->out.off = s->out.len = 0;
			b = uv_buf_init(ctl_buf_head(&c->wbuf), (unsigned)ctl_buf_size(&c->wbuf));
			c->wreq.data = c;
			if (uv_write(&c->wreq, &c->h.stream, &b, 1, on_write)) {
				conn_close(c);
				return;
			}
			c->writing = 1;
		} else {
			ctl_buf_shrink(&s->out);
		}
	}
	if (!c->writing && !ctl_buf_size(&s->out) && s->close_after_flush && !s->npending) {
		conn_close(c);
		return;
	}
	conn_update_reading(c);
}

void ctl_server_flush(struct ctl_server *srv)
{
	struct ctl_conn *c;

	if (!srv)
		return;
	while ((c = srv->dirty)) {
		srv->dirty = c->dirty_next;
		c->is_dirty = 0;
		conn_flush(c);
	}
	uv_check_stop(&srv->flusher);
}

/* Write completions arrive one by one (a group commit completes hundreds
 * of writes in one loop iteration); replies are gathered and each connection
 * is flushed once, after the iteration's I/O callbacks, by a check handle
 * (or earlier by ctl_server_flush). */
static void on_flush(uv_check_t *h)
{
	ctl_server_flush(h->data);
}

static void on_sess_output(struct ctl_sess *s)
{
	struct ctl_conn *c = s->owner;
	struct ctl_server *srv = c->srv;

	if (c->is_dirty || c->closing)
		return;
	if (srv->stopping) {
		conn_flush(c);
		return;
	}
	c->is_dirty = 1;
	c->dirty_next = srv->dirty;
	srv->dirty = c;
	uv_check_start(&srv->flusher, on_flush);
}

/* The owner of keys created over a Unix socket is the peer process's user;
 * over TCP there is no such identity and keys belong to root (0). */
static void peer_ids(struct ctl_conn *c)
{
	struct ucred cr;
	socklen_t len = sizeof cr;
	uv_os_fd_t fd;

	if (!c->srv->is_unix || uv_fileno(&c->h.handle, &fd))
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0) {
		c->s.uid = cr.uid;
		c->s.gid = cr.gid;
	}
}

static void on_connection(uv_stream_t *lis, int status)
{
	struct ctl_server *srv = lis->data;
	struct ctl_conn *c;
	int rc;

	if (status < 0 || srv->stopping)
		return;
	c = calloc(1, sizeof *c);
	if (!c)
		return; /* the pending connection is retried on the next event */
	c->srv = srv;
	if (srv->is_unix)
		rc = uv_pipe_init(srv->loop, &c->h.pipe, 0);
	else
		rc = uv_tcp_init(srv->loop, &c->h.tcp);
	if (rc) {
		free(c);
		return;
	}
	c->h.handle.data = c;
	ctl_sess_init(&c->s, &srv->be);
	c->s.owner = c;
	c->s.scan = &srv->scan;
	c->s.on_output = on_sess_output;
	c->s.on_release = on_sess_release;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nconns++;
	c->last_active = uv_now(srv->loop);
	if (uv_accept(lis, &c->h.stream)) {
		conn_close(c);
		return;
	}
	if (!srv->is_unix)
		uv_tcp_nodelay(&c->h.tcp, 1);
	peer_ids(c);
	if (srv->nconns > srv->max_conns) {
		/* Over the limit: answer the first request with an error in
		 * the client's protocol, then close; far over it, just close. */
		if (srv->nconns > srv->max_conns + CTL_REJECT_EXTRA) {
			conn_close(c);
			return;
		}
		c->s.reject = 1;
		LOG(LOG_WARN, "control socket: connection limit (%u) reached", srv->max_conns);
	}
	conn_update_reading(c);
}

static void on_sweep(uv_timer_t *t)
{
	struct ctl_server *srv = t->data;
	uint64_t now = uv_now(srv->loop);
	struct ctl_conn *c, *next;

	/* Idle connections (no request and no reply taken for idle_ms, no
	 * write in flight) are closed cleanly; so is a client that stopped
	 * reading its replies. */
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (!c->closing && !c->s.npending && !c->s.barrier_wait &&
		    now - c->last_active >= srv->idle_ms)
			conn_close(c);
	}
}

static void on_server_handle_closed(uv_handle_t *h)
{
	struct ctl_server *srv = h->data;

	srv->handles--;
	server_maybe_free(srv);
}

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *v = getenv(name);
	char *end;
	unsigned long x;

	if (!v || !*v)
		return dflt;
	x = strtoul(v, &end, 10);
	return *end || x == 0 || x > 1000000000UL ? dflt : (unsigned)x;
}

/* "HOST:PORT", "[V6]:PORT" or "localhost:PORT" into a socket address. */
static int parse_inet(const char *addr, struct sockaddr_storage *ss)
{
	const char *colon = strrchr(addr, ':');
	char host[128];
	size_t hl;
	char *end;
	long port;

	if (!colon || colon == addr)
		return UV_EINVAL;
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535 || end == colon + 1)
		return UV_EINVAL;
	hl = (size_t)(colon - addr);
	if (addr[0] == '[' && colon[-1] == ']') {
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof host)
		return UV_EINVAL;
	memcpy(host, addr, hl);
	host[hl] = 0;
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return UV_EINVAL;
}

static int listen_on(struct ctl_server *srv, const char *addr)
{
	struct sockaddr_storage ss;
	struct stat st;
	int rc;

	if (!strncmp(addr, "unix:", 5)) {
		srv->is_unix = 1;
		srv->path = strdup(addr + 5);
		if (!srv->path || !*srv->path)
			return srv->path ? UV_EINVAL : UV_ENOMEM;
		/* libuv would silently truncate a path longer than sun_path. */
		if (strlen(srv->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			free(srv->path);
			srv->path = NULL;
			return UV_ENAMETOOLONG;
		}
		rc = uv_pipe_init(srv->loop, &srv->lis.pipe, 0);
		if (rc)
			return rc;
		srv->handles++;
		/* A socket file left by a previous run (crash, SIGKILL) would
		 * make bind fail with EADDRINUSE. Only sockets are removed. */
		if (lstat(srv->path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(srv->path);
		rc = uv_pipe_bind(&srv->lis.pipe, srv->path);
		if (rc) {
			free(srv->path);
			srv->path = NULL; /* not ours: do not unlink it at stop */
			return rc;
		}
		/* Local-only by default: the owner of the node may connect. */
		chmod(srv->path, 0600);
	} else {
		rc = parse_inet(addr, &ss);
		if (rc)
			return rc;
		rc = uv_tcp_init(srv->loop, &srv->lis.tcp);
		if (rc)
			return rc;
		srv->handles++;
		rc = uv_tcp_bind(&srv->lis.tcp, (const struct sockaddr *)&ss, 0);
		if (rc)
			return rc;
	}
	srv->lis.handle.data = srv;
	return uv_listen(&srv->lis.stream, 511, on_connection);
}

int ctl_server_start(node *n, uv_loop_t *loop, const char *addr, struct ctl_server **out)
{
	struct ctl_server *srv;
	int rc;

	if (!addr || !*addr)
		return UV_EINVAL;
	srv = calloc(1, sizeof *srv);
	if (!srv)
		return UV_ENOMEM;
	srv->n = n;
	srv->loop = loop;
	srv->scan.cap = CTL_SCAN_SHARED;
	srv->max_conns = env_uint("KVFS_CTL_MAX_CONNS", CTL_MAX_CONNS_DEFAULT);
	srv->idle_ms = env_uint("KVFS_CTL_IDLE_MS", CTL_IDLE_MS_DEFAULT);
	ctl_node_backend(n, &srv->be);
	srv->lis.handle.data = srv;
	rc = listen_on(srv, addr);
	if (rc)
		goto err;
	rc = uv_timer_init(loop, &srv->sweep);
	if (rc)
		goto err;
	srv->handles++;
	uv_check_init(loop, &srv->flusher); /* cannot fail */
	srv->flusher.data = srv;
	srv->handles++;
	srv->sweep.data = srv;
	uv_timer_start(&srv->sweep, on_sweep,
		       srv->idle_ms < 4000 ? srv->idle_ms / 4 + 1 : 1000,
		       srv->idle_ms < 4000 ? srv->idle_ms / 4 + 1 : 1000);
	uv_unref((uv_handle_t *)&srv->sweep);
	LOG(LOG_INFO, "control socket listening on %s", addr);
	*out = srv;
	return 0;
err:
	/* Close what was opened; the memory goes when the closes complete. */
	srv->stopping = 1;
	if (srv->handles) {
		/* Only the listener can have failed after being opened. */
		uv_close(&srv->lis.handle, on_server_handle_closed);
	} else {
		server_maybe_free(srv);
	}
	return rc;
}

void ctl_server_stop(struct ctl_server *srv)
{
	struct ctl_conn *c, *next;

	if (!srv || srv->stopping)
		return;
	srv->stopping = 1;
	uv_timer_stop(&srv->sweep);
	uv_close((uv_handle_t *)&srv->sweep, on_server_handle_closed);
	uv_close((uv_handle_t *)&srv->flusher, on_server_handle_closed);
	uv_close(&srv->lis.handle, on_server_handle_closed);
	for (c = srv->conns; c; c = next) {
		next = c->next;
		conn_close(c);
	}
}
