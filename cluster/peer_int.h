/*
 * peer_int.h — internals of the peer transport shared by its files
 * (peer.c: connections, framing, handshake; peer_fault.c: the fault switch;
 * peer_status.c: accessors and counters; peer_util.c: membership, frame
 * encoding, CRC-32C). Not for use outside cluster/peer*.c and its tests.
 * Internal non-static names are prefixed peer__.
 */
#ifndef KVFS_PEER_INT_H
#define KVFS_PEER_INT_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "cluster/peer.h"

#define RBUF_SIZE        (64 * 1024)
#define DIRECT_READ_MIN  (16 * 1024)
#define TICK_MS          100
#define MAX_PENDING_CONN 64

enum conn_state { C_CONNECTING, C_HELLO, C_READY, C_REJECTING, C_CLOSING };

struct frame {
	struct frame *next;
	size_t        len;     /* wire bytes, header included */
	unsigned char data[];  /* header + payload */
};

struct conn;

struct wreq {
	uv_write_t    req;
	struct conn  *c;
	struct frame *frames;
	size_t        nframes;
	size_t        nbytes;
	int           is_data;     /* frames from a peer queue (counted) */
	int           close_after; /* REJECT: close once written */
	uv_buf_t      bufs[];
};

struct peer;

struct conn {
	uv_tcp_t      tcp;
	uv_connect_t  creq;
	peer_net     *net;
	struct peer  *peer;       /* outgoing: dialed peer; incoming: after HELLO */
	struct conn  *prev, *next;
	int           outgoing;
	int           state;
	int           writing;    /* a data write is in flight */
	uint64_t      opened_ms, last_recv_ms, last_send_ms;
	char          remote[64]; /* "ip:port" of the socket, for logs */
	/* reader */
	unsigned char hdr[PEER_HDR_SIZE];
	size_t        hdr_got;
	int           in_payload;
	unsigned char *payload;
	size_t        plen, pgot;
	uint16_t      ptype;
	uint32_t      pcrc;
	char          rbuf[RBUF_SIZE];
};

struct peer {
	peer_net        *net;
	unsigned         id;
	struct sockaddr_storage sa;
	struct conn     *out;
	struct conn     *send;          /* the connection frames go out on */
	uv_timer_t       dial_timer;
	unsigned         backoff_ms;
	struct frame    *qhead, *qtail;
	size_t           qbytes, qframes;
	unsigned         nready;
	int              up;
	int              blocked;
	int              file_blocked;  /* as last read from the fault file */
	int              ever_ready;    /* a handshake has completed */
	int              reject_logged;
	struct peer_stats st;
};

struct peer_net {
	uv_loop_t          *loop;
	struct peer_members m;
	struct peer        *peers;
	struct sockaddr_storage listen_sa;
	uv_tcp_t            listener;
	int                 listening;  /* listener initialized */
	uv_timer_t          tick;
	uv_prepare_t        prep;
	uv_check_t          chk;
	struct conn        *conns;
	unsigned            npending;   /* incoming connections before HELLO */
	unsigned            nhandles;   /* open handles; freed at zero when closing */
	int                 started;
	int                 closing;
	int                 dirty;      /* some peer queue has unflushed frames */
	size_t              qmax_bytes, qmax_frames;
	peer_message_fn     on_message;
	peer_state_fn       on_state;
	void               *arg;
	peer_close_fn       close_cb;
	void               *close_arg;
	char               *fault_file;
	uint64_t            rng;
	uint64_t            last_refuse_ms;
	char                last_refuse[260];
};


static inline void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static inline void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static inline void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static inline uint16_t get16(const unsigned char *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* Frames (peer_util.c). */
unsigned char  peer__hdr_check(const unsigned char *h);
void           peer__hdr_fill(unsigned char *h, uint32_t len, uint16_t type, uint32_t crc);
/* A frame of `type` with the `len` bytes gathered from iov[0..niov). */
struct frame  *peer__frame_new(uint16_t type, const uv_buf_t *iov, size_t niov, size_t len);
void           peer__frames_free(struct frame *f);
/* The portable CRC-32C, whatever the CPU offers (for tests). */
uint32_t       peer__crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* Connections (peer.c). */
void peer__set_up(struct peer *p, int up);
void peer__dial(struct peer *p);

/* Faults (peer_fault.c). */
void peer__apply_faults_env(peer_net *net);
void peer__poll_fault_file(peer_net *net);

#endif
