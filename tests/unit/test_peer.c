/*
 * test_peer.c — the peer transport on real loopback TCP: several nets on one
 * libuv loop, plus raw sockets that speak garbage or half the protocol.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "cluster/peer.h"
#include "cluster/peer_int.h"
#include "store/log.h"
#include "tests/lib/ports.h"

#define MAXN 3

/* One received frame, summarized. */
struct rx {
	unsigned from;
	uint16_t type;
	size_t   len;
	uint32_t crc;
	uint64_t seq; /* first 8 bytes of the payload, when there are 8 */
};

struct node {
	peer_net  *net;
	struct rx *rx;
	size_t     nrx, caprx;
	int        up[MAXN];
	int        ups, downs;
	int        closed;
	int        close_on_message;
};

struct fixture {
	uv_loop_t   loop;
	char        addr[MAXN][32];
	struct node n[MAXN];
};

static uint64_t get_seq(const void *buf, size_t len)
{
	uint64_t v = 0;

	if (len >= 8)
		memcpy(&v, buf, 8);
	return v;
}

static void on_message(void *arg, unsigned from, uint16_t type, const void *buf, size_t len)
{
	struct node *n = arg;

	if (n->nrx == n->caprx) {
		n->caprx = n->caprx ? n->caprx * 2 : 64;
		n->rx = realloc(n->rx, n->caprx * sizeof *n->rx);
		assert_non_null(n->rx);
	}
	n->rx[n->nrx].from = from;
	n->rx[n->nrx].type = type;
	n->rx[n->nrx].len = len;
	n->rx[n->nrx].crc = len > (1 << 20) ? peer_crc32c(0, buf, len) : 0;
	n->rx[n->nrx].seq = get_seq(buf, len);
	n->nrx++;
	if (n->close_on_message) {
		n->close_on_message = 0;
		peer_net_close(n->net, NULL, NULL);
		n->net = NULL;
	}
}

static void on_state(void *arg, unsigned id, int up)
{
	struct node *n = arg;

	assert_true(id < MAXN);
	n->up[id] = up;
	if (up)
		n->ups++;
	else
		n->downs++;
}

static void on_closed(void *arg)
{
	struct node *n = arg;

	n->closed = 1;
}


static void noop_timer(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until pred(f) holds or timeout_ms passes; returns pred(f). */
static int run_until(struct fixture *f, int (*pred)(struct fixture *), uint64_t timeout_ms)
{
	uv_timer_t t;
	uint64_t start;
	int ok;

	uv_update_time(&f->loop);
	start = uv_now(&f->loop);
	uv_timer_init(&f->loop, &t);
	uv_timer_start(&t, noop_timer, 5, 5);
	while (!(ok = pred(f)) && uv_now(&f->loop) - start < timeout_ms)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	return ok;
}

static int never(struct fixture *f)
{
	(void)f;
	return 0;
}

static void run_for(struct fixture *f, uint64_t ms)
{
	run_until(f, never, ms);
}

static const char *peers_of(struct fixture *f, unsigned i, unsigned n, const char **out)
{
	unsigned j, k = 0;

	for (j = 0; j < n; j++)
		if (j != i)
			out[k++] = f->addr[j];
	return f->addr[i];
}

static void node_start(struct fixture *f, unsigned i, unsigned n)
{
	const char *peers[MAXN];
	const char *listen = peers_of(f, i, n, peers);
	struct node *nd = &f->n[i];

	memset(nd->up, 0, sizeof nd->up);
	nd->closed = 0;
	assert_int_equal(peer_net_new(&f->loop, listen, peers, n - 1, on_message, on_state, nd,
				      &nd->net), 0);
	assert_int_equal(peer_net_start(nd->net), 0);
}

static void node_stop(struct fixture *f, unsigned i)
{
	struct node *nd = &f->n[i];

	if (!nd->net)
		return;
	peer_net_close(nd->net, on_closed, nd);
	nd->net = NULL;
	while (!nd->closed)
		uv_run(&f->loop, UV_RUN_ONCE);
}

/* The sorted addresses give ids; the fixture uses ports in increasing order
 * with the same number of digits, so addr[i] is node id i. */
static struct fixture *fixture_new(unsigned n)
{
	struct fixture *f = calloc(1, sizeof *f);
	int ports[MAXN], i, j;

	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	for (;;) {
		for (i = 0; i < (int)n; i++)
			ports[i] = test_free_port();
		/* sort ascending */
		for (i = 0; i < (int)n; i++)
			for (j = i + 1; j < (int)n; j++)
				if (ports[j] < ports[i]) {
					int t = ports[i];
					ports[i] = ports[j];
					ports[j] = t;
				}
		if (ports[0] >= 10000 && ports[n - 1] <= 65535 && (n < 2 || ports[0] != ports[1]) &&
		    (n < 3 || ports[1] != ports[2]))
			break;
	}
	for (i = 0; i < (int)n; i++)
		snprintf(f->addr[i], sizeof f->addr[i], "127.0.0.1:%d", ports[i]);
	return f;
}

static void fixture_free(struct fixture *f)
{
	unsigned i;

	for (i = 0; i < MAXN; i++) {
		node_stop(f, i);
		free(f->n[i].rx);
	}
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
}

static int all_up_3(struct fixture *f)
{
	unsigned i, j;

	for (i = 0; i < 3; i++)
		for (j = 0; j < 3; j++)
			if (i != j && (!f->n[i].net || !peer_is_up(f->n[i].net, j)))
				return 0;
	return 1;
}

static int all_up_2(struct fixture *f)
{
	return f->n[0].net && f->n[1].net && peer_is_up(f->n[0].net, 1) && peer_is_up(f->n[1].net, 0);
}

/* ------------------------------------------------------------------------ */

static void members_are_sorted_deduplicated_and_hashed(void **state)
{
	const char *p1[] = { "127.0.0.1:7003", "127.0.0.1:7002", "127.0.0.1:7003" };
	const char *p2[] = { "127.0.0.1:7001", "127.0.0.1:7002" };
	const char *p3[] = { "127.0.0.1:7001" };
	const char *bad[] = { "127.0.0.1" };
	const char *bad2[] = { "127.0.0.1:0" };
	const char *bad3[] = { "::1:7001" };
	struct peer_members a, b, c;
	char host[64];
	int port;

	(void)state;
	assert_int_equal(peer_members_init(&a, "127.0.0.1:7001", p1, 3), 0);
	assert_int_equal(peer_members_init(&b, "127.0.0.1:7003", p2, 2), 0);
	assert_int_equal(a.n, 3);
	assert_string_equal(a.addrs[0], "127.0.0.1:7001");
	assert_string_equal(a.addrs[2], "127.0.0.1:7003");
	assert_int_equal(a.self, 0);
	assert_int_equal(b.self, 2);
	assert_true(a.cluster_id == b.cluster_id);
	assert_int_equal(peer_members_init(&c, "127.0.0.1:7002", p3, 1), 0);
	assert_true(c.cluster_id != a.cluster_id);
	peer_members_free(&a);
	peer_members_free(&b);
	peer_members_free(&c);

	assert_int_equal(peer_members_init(&a, "127.0.0.1:7001", bad, 1), -EINVAL);
	assert_int_equal(peer_members_init(&a, "127.0.0.1:7001", bad2, 1), -EINVAL);
	assert_int_equal(peer_members_init(&a, "127.0.0.1:7001", bad3, 1), -EINVAL);
	assert_int_equal(peer_members_init(&a, NULL, NULL, 0), -EINVAL);
	assert_int_equal(peer_addr_split("[::1]:7001", host, sizeof host, &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 7001);
	assert_int_equal(peer_addr_split("localhost:80", host, sizeof host, &port), 0);
	assert_string_equal(host, "localhost");
	assert_int_equal(peer_addr_split("h:99999", host, sizeof host, &port), -EINVAL);
	assert_int_equal(peer_addr_split(":80", host, sizeof host, &port), -EINVAL);
}

static void crc32c_matches_the_standard_check_value(void **state)
{
	unsigned char big[1000];
	uint32_t whole, parts;
	size_t i;

	(void)state;
	assert_int_equal(peer_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(peer_crc32c(0, "", 0), 0);
	for (i = 0; i < sizeof big; i++)
		big[i] = (unsigned char)(i * 7 + 3);
	whole = peer_crc32c(0, big, sizeof big);
	parts = peer_crc32c(peer_crc32c(0, big, 333), big + 333, sizeof big - 333);
	assert_int_equal(whole, parts);
	/* The portable code agrees with whatever the CPU path is, at every
	 * alignment and length. */
	assert_int_equal(peer__crc32c_sw(0, "123456789", 9), 0xE3069283u);
	for (i = 0; i < 64; i++) {
		size_t len = sizeof big - 64 - i * 7;
		assert_int_equal(peer__crc32c_sw(0, big + i, len), peer_crc32c(0, big + i, len));
		assert_int_equal(peer__crc32c_sw(5, big + i, i), peer_crc32c(5, big + i, i));
	}
}

static void handshake_and_round_trip_in_both_directions(void **state)
{
	struct fixture *f = fixture_new(3);
	struct peer_stats st;
	unsigned i;

	(void)state;
	for (i = 0; i < 3; i++)
		node_start(f, i, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(peer_self_id(f->n[i].net), i);
		assert_int_equal(peer_count(f->n[i].net), 3);
		assert_string_equal(peer_addr(f->n[i].net, i), f->addr[i]);
	}
	assert_true(peer_cluster_id(f->n[0].net) == peer_cluster_id(f->n[2].net));
	assert_true(run_until(f, all_up_3, 5000));
	assert_int_equal(f->n[0].up[1], 1);
	assert_int_equal(f->n[0].up[2], 1);

	assert_int_equal(peer_send(f->n[0].net, 1, 7, "hello", 5), 0);
	assert_int_equal(peer_send(f->n[1].net, 0, 8, "world!", 6), 0);
	assert_int_equal(peer_send(f->n[2].net, 0, 9, NULL, 0), 0);
	assert_int_equal(peer_send(f->n[0].net, 0, 9, "x", 1), -EINVAL);
	assert_int_equal(peer_send(f->n[0].net, 3, 9, "x", 1), -EINVAL);
	assert_int_equal(peer_send(f->n[0].net, 1, PEER_T_PING, "x", 1), -EINVAL);
	for (i = 0; i < 200 && (f->n[1].nrx < 1 || f->n[0].nrx < 2); i++)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(f->n[1].nrx, 1);
	assert_int_equal(f->n[1].rx[0].from, 0);
	assert_int_equal(f->n[1].rx[0].type, 7);
	assert_int_equal(f->n[1].rx[0].len, 5);
	assert_int_equal(f->n[0].nrx, 2);
	/* Order between different senders is not defined. */
	assert_true((f->n[0].rx[0].from == 1 && f->n[0].rx[0].type == 8 && f->n[0].rx[0].len == 6) ||
		    (f->n[0].rx[1].from == 1 && f->n[0].rx[1].type == 8 && f->n[0].rx[1].len == 6));
	assert_true((f->n[0].rx[0].from == 2 && f->n[0].rx[0].len == 0) ||
		    (f->n[0].rx[1].from == 2 && f->n[0].rx[1].len == 0));
	assert_int_equal(peer_get_stats(f->n[0].net, 1, &st), 0);
	assert_int_equal(st.frames_sent, 1);
	assert_int_equal(st.bytes_sent, PEER_HDR_SIZE + 5);
	assert_int_equal(st.writes, 1);
	assert_int_equal(st.frames_recv, 1);
	assert_int_equal(st.bytes_recv, PEER_HDR_SIZE + 6);
	assert_true(st.up);
	assert_true(st.handshakes >= 1);
	assert_int_equal(st.errors, 0);
	assert_true(st.last_recv_ms > 0 && st.last_recv_ms <= uv_now(&f->loop));
	fixture_free(f);
}

static int got_two_large(struct fixture *f)
{
	return f->n[1].nrx >= 2;
}

static void large_frames_arrive_intact(void **state)
{
	struct fixture *f = fixture_new(2);
	size_t big = PEER_MAX_FRAME, mid = (8u << 20) + 13, i;
	unsigned char *buf = malloc(big);
	uint32_t crc_big, crc_mid;
	uv_buf_t iov[2];

	(void)state;
	assert_non_null(buf);
	for (i = 0; i < big; i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 13);
	crc_mid = peer_crc32c(0, buf, mid);
	crc_big = peer_crc32c(0, buf, big);
	node_start(f, 0, 2);
	node_start(f, 1, 2);
	assert_true(run_until(f, all_up_2, 5000));
	/* Gathered from two pieces. */
	iov[0] = uv_buf_init((char *)buf, 1000);
	iov[1] = uv_buf_init((char *)buf + 1000, (unsigned)(mid - 1000));
	assert_int_equal(peer_sendv(f->n[0].net, 1, 1, iov, 2), 0);
	assert_int_equal(peer_send(f->n[0].net, 1, 2, buf, big), 0);
	assert_int_equal(peer_send(f->n[0].net, 1, 2, buf, big + 1), -EMSGSIZE);
	free(buf);
	assert_true(run_until(f, got_two_large, 20000));
	assert_int_equal(f->n[1].rx[0].len, mid);
	assert_int_equal(f->n[1].rx[0].crc, crc_mid);
	assert_int_equal(f->n[1].rx[1].len, big);
	assert_int_equal(f->n[1].rx[1].crc, crc_big);
	assert_true(all_up_2(f));
	fixture_free(f);
}

#define NPIPE 50000

static int got_pipe(struct fixture *f)
{
	return f->n[1].nrx >= NPIPE && f->n[0].nrx >= NPIPE;
}

static void pipelined_frames_arrive_in_order(void **state)
{
	struct fixture *f = fixture_new(2);
	unsigned char msg[100];
	uint64_t seq, t0;
	size_t i;
	struct peer_stats st;

	(void)state;
	memset(msg, 0xab, sizeof msg);
	node_start(f, 0, 2);
	node_start(f, 1, 2);
	assert_true(run_until(f, all_up_2, 5000));
	uv_update_time(&f->loop);
	t0 = uv_now(&f->loop);
	/* Bursts from several loop iterations, in both directions at once. */
	for (seq = 0; seq < NPIPE; seq++) {
		memcpy(msg, &seq, 8);
		assert_int_equal(peer_send(f->n[0].net, 1, 3, msg, sizeof msg), 0);
		assert_int_equal(peer_send(f->n[1].net, 0, 4, msg, 8 + seq % 50), 0);
		if (seq % 5000 == 4999)
			uv_run(&f->loop, UV_RUN_NOWAIT);
	}
	assert_true(run_until(f, got_pipe, 20000));
	uv_update_time(&f->loop);
	for (i = 0; i < NPIPE; i++) {
		assert_int_equal(f->n[1].rx[i].seq, i);
		assert_int_equal(f->n[1].rx[i].type, 3);
		assert_int_equal(f->n[0].rx[i].seq, i);
		assert_int_equal(f->n[0].rx[i].len, 8 + i % 50);
	}
	assert_int_equal(peer_get_stats(f->n[0].net, 1, &st), 0);
	assert_int_equal(st.frames_sent, NPIPE);
	assert_int_equal(st.frames_recv, NPIPE);
	assert_int_equal(st.queued_frames, 0);
	/* Batching: far fewer writes than frames. */
	assert_true(st.writes * 10 < st.frames_sent);
	print_message("  %d frames each way in %llu ms, %.0f frames per write\n", NPIPE,
		      (unsigned long long)(uv_now(&f->loop) - t0),
		      (double)st.frames_sent / (double)st.writes);
	fixture_free(f);
}

/* Captures what the logger writes to stderr while `fn` runs. */
static char *capture_stderr(struct fixture *f, int (*pred)(struct fixture *), uint64_t ms)
{
	char path[] = "/tmp/test_peer_logXXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	char *buf = calloc(1, 65536);
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0 && buf);
	unlink(path);
	assert_true(dup2(fd, 2) >= 0);
	run_until(f, pred, ms);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);
	n = pread(fd, buf, 65535, 0);
	close(fd);
	assert_true(n >= 0);
	/* Show the captured lines in the test output too. */
	if (write(2, buf, (size_t)n) < 0)
		n = 0;
	return buf;
}

static int got_errors(struct fixture *f)
{
	struct peer_stats s0, s1;

	peer_get_stats(f->n[0].net, 1, &s0);
	peer_get_stats(f->n[1].net, 0, &s1);
	return s0.errors >= 2 && s1.errors >= 2;
}

static void membership_mismatch_is_refused_and_logged(void **state)
{
	struct fixture *f = fixture_new(3);
	const char *p0[] = { f->addr[1] };
	const char *p1[] = { f->addr[0], f->addr[2] };
	char *log;

	(void)state;
	/* Node 0 thinks the cluster is {0,1}; node 1 thinks it is {0,1,2}. */
	assert_int_equal(peer_net_new(&f->loop, f->addr[0], p0, 1, on_message, on_state, &f->n[0],
				      &f->n[0].net), 0);
	assert_int_equal(peer_net_new(&f->loop, f->addr[1], p1, 2, on_message, on_state, &f->n[1],
				      &f->n[1].net), 0);
	assert_true(peer_cluster_id(f->n[0].net) != peer_cluster_id(f->n[1].net));
	assert_int_equal(peer_net_start(f->n[0].net), 0);
	assert_int_equal(peer_net_start(f->n[1].net), 0);
	log = capture_stderr(f, got_errors, 5000);
	assert_true(got_errors(f));
	assert_false(peer_is_up(f->n[0].net, 1));
	assert_false(peer_is_up(f->n[1].net, 0));
	assert_int_equal(f->n[0].ups + f->n[1].ups, 0);
	assert_non_null(strstr(log, "membership differs"));
	assert_non_null(strstr(log, f->addr[0]));
	assert_non_null(strstr(log, f->addr[1]));
	assert_non_null(strstr(log, "refused our connection"));
	free(log);
	fixture_free(f);
}

static int zero_down(struct fixture *f)
{
	return f->n[0].net && !peer_is_up(f->n[0].net, 1);
}

static int got_one(struct fixture *f)
{
	return f->n[1].nrx >= 1;
}

static void reconnects_after_a_peer_restarts_on_the_same_port(void **state)
{
	struct fixture *f = fixture_new(2);
	struct peer_stats st;
	int i;

	(void)state;
	node_start(f, 0, 2);
	node_start(f, 1, 2);
	assert_true(run_until(f, all_up_2, 5000));
	for (i = 0; i < 3; i++) {
		node_stop(f, 1);
		assert_true(run_until(f, zero_down, 5000));
		assert_int_equal(f->n[0].up[1], 0);
		/* Queued while the peer is away, delivered after it returns. */
		assert_int_equal(peer_send(f->n[0].net, 1, 5, "queued", 6), 0);
		run_for(f, 120);
		f->n[1].nrx = 0;
		node_start(f, 1, 2);
		assert_true(run_until(f, all_up_2, 5000));
		assert_true(run_until(f, got_one, 5000));
		assert_int_equal(f->n[1].rx[0].type, 5);
		assert_int_equal(f->n[1].rx[0].len, 6);
	}
	assert_int_equal(peer_get_stats(f->n[0].net, 1, &st), 0);
	assert_int_equal(st.reconnects, 3);
	assert_true(st.dials >= 4);
	assert_true(st.handshakes >= 4);
	fixture_free(f);
}

static int raw_connect(const char *addr)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	const char *colon = strrchr(addr, ':');

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static int raw_fd;
static int raw_eof;

/* Drains the raw socket; true once the transport has closed it. */
static int raw_closed(struct fixture *f)
{
	char b[4096];
	ssize_t n;

	(void)f;
	for (;;) {
		n = recv(raw_fd, b, sizeof b, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
			raw_eof = 1;
			return 1;
		}
		if (n < 0)
			return 0;
	}
}

static void raw_send(int fd, const void *b, size_t len)
{
	assert_int_equal(send(fd, b, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void garbage_closes_only_that_connection(void **state)
{
	struct fixture *f = fixture_new(2);
	const char *garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	char *log;

	(void)state;
	node_start(f, 0, 2);
	node_start(f, 1, 2);
	assert_true(run_until(f, all_up_2, 5000));
	raw_fd = raw_connect(f->addr[0]);
	raw_send(raw_fd, garbage, strlen(garbage));
	log = capture_stderr(f, raw_closed, 5000);
	assert_true(raw_eof);
	assert_non_null(strstr(log, "bad frame header"));
	free(log);
	close(raw_fd);
	assert_true(all_up_2(f));
	assert_int_equal(f->n[0].downs + f->n[1].downs, 0);
	assert_int_equal(peer_send(f->n[0].net, 1, 1, "still", 5), 0);
	assert_true(run_until(f, got_one, 5000));
	fixture_free(f);
}

static void put32be(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void make_header(unsigned char *h, uint32_t len, uint16_t type, uint32_t crc)
{
	int i;

	put32be(h, len);
	h[4] = (unsigned char)(type >> 8);
	h[5] = (unsigned char)type;
	h[6] = 0;
	h[7] = 0x5A;
	for (i = 0; i < 7; i++)
		h[7] ^= h[i];
	put32be(h + 8, crc);
}

/* A valid HELLO frame claiming to be member `id` with address `addr`. */
static size_t make_hello(unsigned char *out, uint16_t id, uint64_t cid, uint16_t n, const char *addr)
{
	unsigned char *p = out + PEER_HDR_SIZE;
	size_t alen = strlen(addr), len = 20 + alen;

	put32be(p, PEER_MAGIC);
	p[4] = 0;
	p[5] = PEER_PROTO_VERSION;
	p[6] = (unsigned char)(id >> 8);
	p[7] = (unsigned char)id;
	put32be(p + 8, (uint32_t)(cid >> 32));
	put32be(p + 12, (uint32_t)cid);
	p[16] = (unsigned char)(n >> 8);
	p[17] = (unsigned char)n;
	p[18] = (unsigned char)(alen >> 8);
	p[19] = (unsigned char)alen;
	memcpy(p + 20, addr, alen);
	make_header(out, (uint32_t)len, PEER_T_HELLO, peer_crc32c(0, p, len));
	return PEER_HDR_SIZE + len;
}

static void oversized_length_header_is_refused(void **state)
{
	struct fixture *f = fixture_new(2);
	unsigned char h[PEER_HDR_SIZE], hello[PEER_HDR_SIZE + 300];
	size_t hl;
	char *log;

	(void)state;
	node_start(f, 0, 2);
	node_start(f, 1, 2);
	assert_true(run_until(f, all_up_2, 5000));

	/* Before the handshake, anything above PEER_MAX_HELLO is refused. */
	raw_fd = raw_connect(f->addr[0]);
	make_header(h, PEER_MAX_HELLO + 1, PEER_T_HELLO, 0);
	raw_send(raw_fd, h, sizeof h);
	raw_eof = 0;
	log = capture_stderr(f, raw_closed, 5000);
	assert_true(raw_eof);
	assert_non_null(strstr(log, "exceeds the limit"));
	free(log);
	close(raw_fd);

	/* After a valid handshake (impersonating node 1), a length above
	 * PEER_MAX_FRAME is refused too. */
	raw_fd = raw_connect(f->addr[0]);
	hl = make_hello(hello, 1, peer_cluster_id(f->n[0].net), 2, f->addr[1]);
	raw_send(raw_fd, hello, hl);
	make_header(h, PEER_MAX_FRAME + 1, 1, 0);
	raw_send(raw_fd, h, sizeof h);
	raw_eof = 0;
	log = capture_stderr(f, raw_closed, 5000);
	assert_true(raw_eof);
	assert_non_null(strstr(log, "exceeds the limit"));
	free(log);
	close(raw_fd);

	/* A corrupted payload is caught by the checksum. */
	raw_fd = raw_connect(f->addr[0]);
	hl = make_hello(hello, 1, peer_cluster_id(f->n[0].net), 2, f->addr[1]);
	hello[hl - 1] ^= 1;
	raw_send(raw_fd, hello, hl);
	raw_eof = 0;
	log = capture_stderr(f, raw_closed, 5000);
	assert_true(raw_eof);
	assert_non_null(strstr(log, "checksum"));
	free(log);
	close(raw_fd);

	run_for(f, 50);
	assert_true(all_up_2(f));
	assert_int_equal(peer_send(f->n[1].net, 0, 1, "ok", 2), 0);
	assert_int_equal(peer_send(f->n[0].net, 1, 1, "ok", 2), 0);
	assert_true(run_until(f, got_one, 5000));
	fixture_free(f);
}

/* Connections claiming one member cannot pile up (each may hold a frame
 * buffer of up to PEER_MAX_FRAME): past PEER_MAX_INCOMING the newest is
 * refused, and those already in place stay. */
static void connections_claiming_one_member_are_bounded(void **state)
{
	struct fixture *f = fixture_new(2);
	unsigned char hello[PEER_HDR_SIZE + 300];
	int fds[PEER_MAX_INCOMING + 1];
	size_t hl;

	(void)state;
	node_start(f, 0, 2); /* node 1 stays down: we play it */
	hl = make_hello(hello, 1, peer_cluster_id(f->n[0].net), 2, f->addr[1]);
	for (unsigned i = 0; i <= PEER_MAX_INCOMING; i++) {
		fds[i] = raw_connect(f->addr[0]);
		raw_send(fds[i], hello, hl);
		run_for(f, 100);
	}
	raw_fd = fds[PEER_MAX_INCOMING];
	raw_eof = 0;
	assert_true(run_until(f, raw_closed, 5000));
	for (unsigned i = 0; i < PEER_MAX_INCOMING; i++) {
		raw_fd = fds[i];
		raw_eof = 0;
		assert_false(raw_closed(f));
	}
	for (unsigned i = 0; i <= PEER_MAX_INCOMING; i++)
		close(fds[i]);
	fixture_free(f);
}

/* Random bytes, with or without a valid handshake in front, from many raw
 * clients: each is closed or ignored, and the real peers never notice. */
static void random_bytes_never_disturb_the_node(void **state)
{
	struct fixture *f = fixture_new(2);
	unsigned char buf[PEER_HDR_SIZE + 300 + 6000];
	uint64_t x = 0x9E3779B97F4A7C15ull;
	size_t hl, n, i;
	int round, fds[40];

	(void)state;
	node_start(f, 0, 2);
	node_start(f, 1, 2);
	assert_true(run_until(f, all_up_2, 5000));
	for (round = 0; round < 40; round++) {
		hl = 0;
		if (round % 2)
			hl = make_hello(buf, 1, peer_cluster_id(f->n[0].net), 2, f->addr[1]);
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		n = 1 + x % 6000;
		for (i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[hl + i] = (unsigned char)x;
		}
		fds[round] = raw_connect(f->addr[round % 3 == 0 ? 1 : 0]);
		raw_send(fds[round], buf, hl + n);
		run_for(f, 5);
	}
	run_for(f, 100);
	for (round = 0; round < 40; round++)
		close(fds[round]);
	run_for(f, 100);
	assert_true(all_up_2(f));
	assert_int_equal(f->n[0].downs + f->n[1].downs, 0);
	assert_int_equal(peer_send(f->n[0].net, 1, 1, "fine", 4), 0);
	assert_true(run_until(f, got_one, 5000));
	assert_int_equal(f->n[1].nrx, 1);
	assert_int_equal(f->n[0].nrx, 0);
	fixture_free(f);
}

static int both_got_one(struct fixture *f)
{
	return f->n[0].nrx >= 1 && f->n[1].nrx >= 1;
}

static void blocked_peer_drops_traffic_then_resumes(void **state)
{
	struct fixture *f = fixture_new(3);
	struct peer_stats st;
	unsigned i;

	(void)state;
	for (i = 0; i < 3; i++)
		node_start(f, i, 3);
	assert_true(run_until(f, all_up_3, 5000));
	assert_int_equal(peer_set_blocked(f->n[0].net, 1, 1), 0);
	assert_true(peer_is_blocked(f->n[0].net, 1));
	assert_false(peer_is_up(f->n[0].net, 1));
	assert_int_equal(f->n[0].up[1], 0);
	assert_int_equal(peer_set_blocked(f->n[0].net, 0, 1), -EINVAL);

	assert_int_equal(peer_send(f->n[0].net, 1, 1, "lost", 4), 0);
	assert_int_equal(peer_send(f->n[1].net, 0, 1, "lost", 4), 0);
	assert_int_equal(peer_send(f->n[2].net, 0, 2, "kept", 4), 0);
	run_for(f, 300);
	assert_int_equal(f->n[1].nrx, 0);
	assert_int_equal(f->n[0].nrx, 1);
	assert_int_equal(f->n[0].rx[0].from, 2);
	assert_int_equal(peer_get_stats(f->n[0].net, 1, &st), 0);
	assert_int_equal(st.frames_dropped, 2);
	assert_true(st.blocked);
	assert_false(st.up);

	f->n[0].nrx = 0;
	assert_int_equal(peer_set_blocked(f->n[0].net, 1, 0), 0);
	assert_true(peer_is_up(f->n[0].net, 1));
	assert_int_equal(peer_send(f->n[0].net, 1, 1, "back", 4), 0);
	assert_int_equal(peer_send(f->n[1].net, 0, 1, "back", 4), 0);
	assert_true(run_until(f, both_got_one, 5000));
	assert_int_equal(f->n[0].rx[0].from, 1);
	assert_int_equal(f->n[1].rx[0].from, 0);
	fixture_free(f);
}

static void a_long_block_outlasts_idle_timeouts_and_heals(void **state)
{
	struct fixture *f = fixture_new(2);

	(void)state;
	node_start(f, 0, 2);
	node_start(f, 1, 2);
	assert_true(run_until(f, all_up_2, 5000));
	peer_set_blocked(f->n[0].net, 1, 1);
	/* Node 1 hears nothing from 0 and gives its connections up. */
	run_for(f, PEER_IDLE_TIMEOUT_MS + 1500);
	assert_false(peer_is_up(f->n[1].net, 0));
	assert_false(peer_is_up(f->n[0].net, 1));
	peer_set_blocked(f->n[0].net, 1, 0);
	assert_true(run_until(f, all_up_2, 5000));
	assert_int_equal(peer_send(f->n[1].net, 0, 1, "healed", 6), 0);
	assert_int_equal(peer_send(f->n[0].net, 1, 1, "healed", 6), 0);
	assert_true(run_until(f, both_got_one, 5000));
	fixture_free(f);
}

static char fault_path[64];

static int zero_blocks_one(struct fixture *f)
{
	return peer_is_blocked(f->n[0].net, 1);
}

static int zero_unblocked(struct fixture *f)
{
	return !peer_is_blocked(f->n[0].net, 1) && all_up_2(f);
}

static void write_file(const char *path, const char *s)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(s, fp);
	fclose(fp);
}

static void fault_env_blocks_and_fault_file_heals(void **state)
{
	struct fixture *f = fixture_new(2);
	char env[128];

	(void)state;
	snprintf(fault_path, sizeof fault_path, "/tmp/test_peer_faults.%d", (int)getpid());
	write_file(fault_path, "");
	snprintf(env, sizeof env, "block=%s;file=%s", f->addr[1], fault_path);
	setenv("KVFS_FAULTS", env, 1);
	node_start(f, 0, 2);
	unsetenv("KVFS_FAULTS");
	node_start(f, 1, 2);
	/* Statically blocked: nothing flows. The empty file unblocks only what
	 * it once blocked, so the static block stays. */
	assert_true(peer_is_blocked(f->n[0].net, 1));
	run_for(f, 300);
	assert_false(peer_is_up(f->n[0].net, 1));
	peer_set_blocked(f->n[0].net, 1, 0);
	assert_true(run_until(f, all_up_2, 5000));

	write_file(fault_path, "1\n");
	assert_true(run_until(f, zero_blocks_one, 2000));
	assert_false(peer_is_up(f->n[0].net, 1));
	write_file(fault_path, "");
	assert_true(run_until(f, zero_unblocked, 5000));

	write_file(fault_path, f->addr[1]);
	assert_true(run_until(f, zero_blocks_one, 2000));
	unlink(fault_path);
	assert_true(run_until(f, zero_unblocked, 5000));
	fixture_free(f);
}

static int got_all_queued(struct fixture *f)
{
	return f->n[1].nrx >= 10;
}

static void queue_is_bounded_while_the_peer_is_away(void **state)
{
	struct fixture *f = fixture_new(2);
	struct peer_stats st;
	uint64_t seq;
	unsigned char msg[100] = { 0 };
	size_t i;

	(void)state;
	node_start(f, 0, 2);
	peer_set_queue_limit(f->n[0].net, 0, 10);
	for (seq = 0; seq < 10; seq++) {
		memcpy(msg, &seq, 8);
		assert_int_equal(peer_send(f->n[0].net, 1, 1, msg, sizeof msg), 0);
	}
	assert_int_equal(peer_send(f->n[0].net, 1, 1, msg, sizeof msg), -ENOBUFS);
	assert_int_equal(peer_queued_bytes(f->n[0].net, 1), 10 * (PEER_HDR_SIZE + sizeof msg));
	peer_set_queue_limit(f->n[0].net, 5 * (PEER_HDR_SIZE + sizeof msg), 1000);
	assert_int_equal(peer_send(f->n[0].net, 1, 1, msg, sizeof msg), -ENOBUFS);
	assert_int_equal(peer_get_stats(f->n[0].net, 1, &st), 0);
	assert_int_equal(st.frames_dropped, 2);
	assert_int_equal(st.queued_frames, 10);
	run_for(f, 200);
	node_start(f, 1, 2);
	assert_true(run_until(f, got_all_queued, 5000));
	assert_int_equal(f->n[1].nrx, 10);
	for (i = 0; i < 10; i++)
		assert_int_equal(f->n[1].rx[i].seq, i);
	assert_int_equal(peer_queued_bytes(f->n[0].net, 1), 0);
	fixture_free(f);
}

static void stale_frames_can_be_dropped_and_status_lists_members(void **state)
{
	struct fixture *f = fixture_new(2);
	json_t *arr = json_array(), *o;

	(void)state;
	node_start(f, 0, 2);
	assert_int_equal(peer_send(f->n[0].net, 1, 1, "stale", 5), 0);
	assert_int_equal(peer_send(f->n[0].net, 1, 1, "stale", 5), 0);
	assert_int_equal(peer_drop_queued(f->n[0].net, 1), 2);
	assert_int_equal(peer_queued_bytes(f->n[0].net, 1), 0);
	assert_int_equal(peer_send(f->n[0].net, 1, 1, "fresh", 5), 0);
	node_start(f, 1, 2);
	assert_true(run_until(f, got_one, 5000));
	run_for(f, 50);
	assert_int_equal(f->n[1].nrx, 1);

	peer_status_json(f->n[0].net, arr);
	assert_int_equal(json_array_size(arr), 2);
	o = json_array_get(arr, 0);
	assert_true(json_is_true(json_object_get(o, "self")));
	assert_null(json_object_get(o, "up"));
	o = json_array_get(arr, 1);
	assert_string_equal(json_string_value(json_object_get(o, "addr")), f->addr[1]);
	assert_true(json_is_true(json_object_get(o, "up")));
	assert_int_equal(json_integer_value(json_object_get(o, "frames_sent")), 1);
	assert_int_equal(json_integer_value(json_object_get(o, "frames_dropped")), 2);
	json_decref(arr);
	fixture_free(f);
}

static int one_closed_itself(struct fixture *f)
{
	return f->n[1].net == NULL && f->n[1].nrx >= 1;
}

static void closing_from_inside_a_callback_is_safe(void **state)
{
	struct fixture *f = fixture_new(2);
	int i;

	(void)state;
	node_start(f, 0, 2);
	node_start(f, 1, 2);
	assert_true(run_until(f, all_up_2, 5000));
	f->n[1].close_on_message = 1;
	/* Many frames in one read buffer: the rest must not be delivered. */
	for (i = 0; i < 100; i++)
		assert_int_equal(peer_send(f->n[0].net, 1, 1, "bye bye!", 8), 0);
	assert_true(run_until(f, one_closed_itself, 5000));
	assert_int_equal(f->n[1].nrx, 1);
	assert_true(run_until(f, zero_down, 5000));
	assert_int_equal(peer_send(f->n[0].net, 1, 1, "x", 1), 0);
	fixture_free(f);
}

static void closing_a_net_that_never_started_is_clean(void **state)
{
	struct fixture *f = fixture_new(2);
	const char *peers[] = { f->addr[1] };
	const char *bad[] = { "nonsense" };
	peer_net *net;

	(void)state;
	assert_int_equal(peer_net_new(&f->loop, f->addr[0], bad, 1, on_message, NULL, NULL, &net),
			 -EINVAL);
	assert_int_equal(peer_net_new(&f->loop, f->addr[0], peers, 1, on_message, NULL, NULL, &net), 0);
	assert_int_equal(peer_send(net, 1, 1, "q", 1), 0);
	peer_net_close(net, NULL, NULL);
	fixture_free(f);
}

static void a_busy_port_fails_start_cleanly(void **state)
{
	struct fixture *f = fixture_new(2);
	peer_net *net;
	const char *peers[] = { f->addr[1] };

	(void)state;
	node_start(f, 0, 2);
	assert_int_equal(peer_net_new(&f->loop, f->addr[0], peers, 1, on_message, NULL, NULL, &net), 0);
	assert_int_equal(peer_net_start(net), UV_EADDRINUSE);
	peer_net_close(net, NULL, NULL);
	fixture_free(f);
}

/* Two nets, each on its own loop in its own thread: no shared state between
 * nets, and a throughput figure for the report. */
#define NTHREAD_FRAMES 50000
#define TFRAME 1024

struct tnode {
	uv_loop_t   loop;
	peer_net   *net;
	const char *listen, *peer;
	int         sender;
	size_t      got;
	int         done;
	uint64_t    t0, tq, t1;
	uint64_t    next_seq;
	int         order_ok;
};

static void t_on_message(void *arg, unsigned from, uint16_t type, const void *buf, size_t len)
{
	struct tnode *t = arg;

	(void)from;
	if (t->sender) {
		if (type == 2) {
			t->t1 = uv_hrtime();
			t->done = 1;
			peer_net_close(t->net, NULL, NULL);
		}
		return;
	}
	if (type != 1 || len != TFRAME || get_seq(buf, len) != t->next_seq)
		t->order_ok = 0;
	t->next_seq++;
	if (++t->got == NTHREAD_FRAMES)
		peer_send(t->net, 1 - peer_self_id(t->net), 2, NULL, 0);
}

static void t_on_state(void *arg, unsigned id, int up)
{
	struct tnode *t = arg;
	unsigned char msg[TFRAME];
	uint64_t seq;

	if (!t->sender) {
		if (!up && t->got == NTHREAD_FRAMES)
			peer_net_close(t->net, NULL, NULL);
		return;
	}
	if (!up || t->t0)
		return;
	memset(msg, 0x5c, sizeof msg);
	t->t0 = uv_hrtime();
	for (seq = 0; seq < NTHREAD_FRAMES; seq++) {
		memcpy(msg, &seq, 8);
		if (peer_send(t->net, id, 1, msg, sizeof msg))
			t->order_ok = 0;
	}
	t->tq = uv_hrtime();
}

static void *t_main(void *arg)
{
	struct tnode *t = arg;

	uv_loop_init(&t->loop);
	if (peer_net_new(&t->loop, t->listen, &t->peer, 1, t_on_message, t_on_state, t,
			 &t->net) == 0 && peer_net_start(t->net) == 0)
		uv_run(&t->loop, UV_RUN_DEFAULT);
	else
		t->order_ok = 0;
	uv_loop_close(&t->loop);
	return NULL;
}

static void nets_on_separate_threads_stream_frames(void **state)
{
	struct fixture *f = fixture_new(2);
	struct tnode a, b;
	pthread_t ta, tb;
	double secs;

	(void)state;
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	a.listen = f->addr[0];
	a.peer = f->addr[1];
	a.sender = 1;
	a.order_ok = 1;
	b.listen = f->addr[1];
	b.peer = f->addr[0];
	b.order_ok = 1;
	assert_int_equal(pthread_create(&tb, NULL, t_main, &b), 0);
	assert_int_equal(pthread_create(&ta, NULL, t_main, &a), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_true(a.done);
	assert_true(a.order_ok);
	assert_true(b.order_ok);
	assert_int_equal(b.got, NTHREAD_FRAMES);
	secs = (double)(a.t1 - a.t0) / 1e9;
	print_message("  %d x %d-byte frames across threads: %.0f ms (%.0f ms to queue), "
		      "%.0f frames/s, %.0f MB/s\n",
		      NTHREAD_FRAMES, TFRAME, secs * 1e3, (double)(a.tq - a.t0) / 1e6, NTHREAD_FRAMES / secs,
		      NTHREAD_FRAMES * (double)(TFRAME + PEER_HDR_SIZE) / secs / 1e6);
	fixture_free(f);
}

/* Ping-pong between two threads: the transport adds no loop-iteration delay
 * to a reply sent from on_message (it is flushed in the same iteration). */
#define NPINGS 2000

struct pnode {
	uv_loop_t   loop;
	peer_net   *net;
	const char *listen, *peer;
	int         pinger;
	unsigned    other;
	unsigned    n;
	uint64_t    sent_at;
	uint64_t    rtt[NPINGS];
	int         ok;
};

static void p_on_message(void *arg, unsigned from, uint16_t type, const void *buf, size_t len)
{
	struct pnode *t = arg;
	uint64_t seq = get_seq(buf, len);

	(void)type;
	if (!t->pinger) {
		if (peer_send(t->net, from, 1, buf, len))
			t->ok = 0;
		return;
	}
	if (seq != t->n)
		t->ok = 0;
	t->rtt[t->n++] = uv_hrtime() - t->sent_at;
	if (t->n == NPINGS) {
		peer_net_close(t->net, NULL, NULL);
		return;
	}
	seq = t->n;
	t->sent_at = uv_hrtime();
	if (peer_send(t->net, from, 1, &seq, 8))
		t->ok = 0;
}

static void p_on_state(void *arg, unsigned id, int up)
{
	struct pnode *t = arg;
	uint64_t seq = 0;

	if (!t->pinger) {
		if (!up && t->n == 0)
			peer_net_close(t->net, NULL, NULL);
		return;
	}
	if (!up || t->sent_at)
		return;
	t->sent_at = uv_hrtime();
	if (peer_send(t->net, id, 1, &seq, 8))
		t->ok = 0;
}

static void *p_main(void *arg)
{
	struct pnode *t = arg;

	uv_loop_init(&t->loop);
	if (peer_net_new(&t->loop, t->listen, &t->peer, 1, p_on_message, p_on_state, t,
			 &t->net) == 0 && peer_net_start(t->net) == 0)
		uv_run(&t->loop, UV_RUN_DEFAULT);
	else
		t->ok = 0;
	uv_loop_close(&t->loop);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void ping_pong_round_trips_add_no_loop_delay(void **state)
{
	struct fixture *f = fixture_new(2);
	struct pnode *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
	pthread_t ta, tb;

	(void)state;
	assert_true(a && b);
	a->listen = f->addr[0];
	a->peer = f->addr[1];
	a->pinger = 1;
	a->ok = 1;
	b->listen = f->addr[1];
	b->peer = f->addr[0];
	b->ok = 1;
	assert_int_equal(pthread_create(&tb, NULL, p_main, b), 0);
	assert_int_equal(pthread_create(&ta, NULL, p_main, a), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_true(a->ok);
	assert_true(b->ok);
	assert_int_equal(a->n, NPINGS);
	qsort(a->rtt, NPINGS, sizeof a->rtt[0], cmp_u64);
	print_message("  round trip over loopback: p50 %.1f us, p99 %.1f us, max %.1f us\n",
		      a->rtt[NPINGS / 2] / 1e3, a->rtt[NPINGS * 99 / 100] / 1e3,
		      a->rtt[NPINGS - 1] / 1e3);
	/* A loop-iteration delay would show up as the tick (100 ms). */
	assert_true(a->rtt[NPINGS / 2] < 50 * 1000 * 1000ull);
	free(a);
	free(b);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(members_are_sorted_deduplicated_and_hashed),
		cmocka_unit_test(crc32c_matches_the_standard_check_value),
		cmocka_unit_test(handshake_and_round_trip_in_both_directions),
		cmocka_unit_test(large_frames_arrive_intact),
		cmocka_unit_test(pipelined_frames_arrive_in_order),
		cmocka_unit_test(membership_mismatch_is_refused_and_logged),
		cmocka_unit_test(reconnects_after_a_peer_restarts_on_the_same_port),
		cmocka_unit_test(garbage_closes_only_that_connection),
		cmocka_unit_test(oversized_length_header_is_refused),
		cmocka_unit_test(connections_claiming_one_member_are_bounded),
		cmocka_unit_test(random_bytes_never_disturb_the_node),
		cmocka_unit_test(blocked_peer_drops_traffic_then_resumes),
		cmocka_unit_test(a_long_block_outlasts_idle_timeouts_and_heals),
		cmocka_unit_test(fault_env_blocks_and_fault_file_heals),
		cmocka_unit_test(queue_is_bounded_while_the_peer_is_away),
		cmocka_unit_test(stale_frames_can_be_dropped_and_status_lists_members),
		cmocka_unit_test(closing_from_inside_a_callback_is_safe),
		cmocka_unit_test(closing_a_net_that_never_started_is_clean),
		cmocka_unit_test(a_busy_port_fails_start_cleanly),
		cmocka_unit_test(nets_on_separate_threads_stream_frames),
		cmocka_unit_test(ping_pong_round_trips_add_no_loop_delay),
	};

	signal(SIGPIPE, SIG_IGN);
	log_init_from_env();
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
