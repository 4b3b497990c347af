/*
 * peer.h — the peer transport: framed messages between cluster members over
 * TCP, on a caller-provided libuv loop.
 *
 * Membership. A cluster is the set `listen ∪ peers` of "HOST:PORT" strings,
 * sorted (strcmp) and deduplicated. A member's node id is its index in that
 * sorted list, so every node computes the same ids without talking. The
 * cluster id is a 64-bit FNV-1a hash of the sorted list; two nodes whose
 * cluster ids differ refuse each other during the handshake and both log a
 * line naming both addresses (SPEC §2). Addresses are compared as strings:
 * every node must spell a member the same way ("127.0.0.1:7001", not
 * "localhost:7001" on one node and the IP on another), and `listen` must be
 * the address the other members dial (not a wildcard such as 0.0.0.0).
 *
 * Threading. Every function must be called on the loop thread, and every
 * callback runs on it. Nothing here is thread-safe.
 *
 * Connections. Each node dials every other member once (one outgoing
 * connection per peer, re-dialed with jittered exponential backoff from
 * PEER_BACKOFF_MIN_MS doubling to PEER_BACKOFF_MAX_MS) and accepts incoming
 * connections from them, so a pair of nodes usually holds two connections.
 * Messages from a peer may arrive on either; peer_send() prefers the outgoing
 * connection and falls back to an incoming one. A peer is "up" while at least
 * one connection to it has completed the handshake (and it is not blocked).
 *
 * Delivery. Frames to a peer stick to one connection while it lives, so they
 * arrive in the order sent, at most once; when that connection closes the
 * next one is used (frames in flight on the old one may be lost, never
 * reordered behind later ones on the same connection).
 * peer_send() copies the payload into a per-peer queue; the queue is written
 * when a connection is ready, with all queued frames coalesced into one
 * uv_write() (up to PEER_WRITE_BATCH frames), so pipelined AppendEntries go out
 * in few system calls. While the peer is unreachable frames stay queued; the
 * queue is bounded (PEER_QUEUE_MAX_BYTES / PEER_QUEUE_MAX_FRAMES by default)
 * and a send that would exceed the bound is REFUSED with -ENOBUFS (the frame
 * is not queued; older frames are kept). Frames already handed to a
 * connection that then fails are lost: the layers above (Raft, gossip) retry
 * on their own terms.
 *
 * Trust. The handshake checks membership, not identity: there is no
 * authentication or encryption, so members must talk over a trusted network
 * (loopback, a private LAN). Resource use by a misbehaving client is bounded:
 * at most 64 connections may sit before the handshake (PEER_HELLO_TIMEOUT_MS
 * each, frames of at most PEER_MAX_HELLO bytes), and a frame's payload buffer
 * is allocated only after its header has passed the checks.
 *
 * ---------------------------------------------------------------------------
 * Wire format (version 1). All integers big-endian (network order).
 *
 * Every frame starts with a 12-byte header:
 *   off size
 *    0  4   payload length L (bytes after the header), L <= PEER_MAX_FRAME
 *           (L <= PEER_MAX_HELLO before the handshake has completed)
 *    4  2   type: 0x0000..0xFEFF carried for the caller (on_message),
 *           0xFF00..0xFFFF reserved for the transport (below)
 *    6  1   flags, must be 0 in version 1
 *    7  1   header check: 0x5A XOR bytes 0..6 (catches stream desync and
 *           garbage before a bogus length is believed)
 *    8  4   CRC-32C (Castagnoli) of the L payload bytes
 *   12  L   payload
 *
 * A header with a bad check byte, nonzero flags or an oversized length, a
 * payload whose CRC does not match, or a first frame that is not HELLO closes
 * the connection with one LOG line; the node and its other connections are
 * not affected.
 *
 * HELLO (type 0xFFFF), sent first by both ends: the dialer sends it on
 * connect; the acceptor checks it and answers with its own HELLO (or REJECT).
 *   off size
 *    0  4   magic "KVFP" (0x4B564650)
 *    4  2   protocol version (PEER_PROTO_VERSION = 1)
 *    6  2   sender's node id
 *    8  8   cluster id (FNV-1a 64 of the sorted membership)
 *   16  2   number of members
 *   18  2   A = length of the sender's listen address
 *   20  A   sender's listen address "HOST:PORT" (not NUL-terminated)
 * The receiver refuses a HELLO whose magic, version or cluster id differ from
 * its own, whose id is out of range or is the receiver's, or whose address is
 * not members[id].
 *
 * REJECT (type 0xFFFE): payload = human-readable reason (UTF-8, no NUL),
 * sent instead of HELLO before the refusing end closes the connection. The
 * refused end logs the reason.
 *
 * PING (type 0xFFFD): empty; sent on an otherwise idle ready connection every
 * PEER_PING_MS so that a silently dead peer (SIGSTOP, partition) is noticed:
 * a ready connection that receives nothing for PEER_IDLE_TIMEOUT_MS is closed.
 * ---------------------------------------------------------------------------
 */
#ifndef KVFS_PEER_H
#define KVFS_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PEER_PROTO_VERSION    1
#define PEER_MAGIC            0x4B564650u /* "KVFP" */
#define PEER_HDR_SIZE         12
#define PEER_MAX_FRAME        (64u << 20) /* payload bytes per frame */
#define PEER_MAX_HELLO        4096u       /* payload bytes before the handshake */
#define PEER_MAX_INCOMING     2u          /* incoming connections per member */
#define PEER_MAX_MEMBERS      1024
#define PEER_TYPE_USER_MAX    0xFEFFu     /* caller types are 0..PEER_TYPE_USER_MAX */
#define PEER_T_HELLO          0xFFFFu
#define PEER_T_REJECT         0xFFFEu
#define PEER_T_PING           0xFFFDu

#define PEER_BACKOFF_MIN_MS   50
#define PEER_BACKOFF_MAX_MS   1000
#define PEER_HELLO_TIMEOUT_MS 5000        /* also bounds a pending connect() */
#define PEER_PING_MS          500
#define PEER_IDLE_TIMEOUT_MS  5000
#define PEER_QUEUE_MAX_BYTES  (256u << 20)
#define PEER_QUEUE_MAX_FRAMES 65536u
#define PEER_WRITE_BATCH      1024

typedef struct peer_net peer_net;

/* ------------------------------------------------------------------------ */
/* Membership                                                                */

struct peer_members {
	char   **addrs;      /* sorted, deduplicated "HOST:PORT", owned */
	size_t   n;
	unsigned self;       /* index of `listen` in addrs */
	uint64_t cluster_id; /* FNV-1a 64 over addrs[0] '\0' addrs[1] '\0' ... */
};

/* Computes the membership `listen ∪ peers`. Returns 0, -EINVAL (listen NULL
 * or an address that is not "HOST:PORT" with a port 1..65535, or more than
 * PEER_MAX_MEMBERS members) or -ENOMEM. On success the caller frees *m with
 * peer_members_free(). */
int  peer_members_init(struct peer_members *m, const char *listen,
		       const char *const *peers, size_t npeers);
void peer_members_free(struct peer_members *m);

/* Splits "HOST:PORT" or "[V6]:PORT" into host (copied, NUL-terminated, at
 * most hostlen-1 bytes) and port. Returns 0 or -EINVAL. */
int  peer_addr_split(const char *addr, char *host, size_t hostlen, int *port);

/* ------------------------------------------------------------------------ */
/* The transport                                                             */

/* A frame arrived from member `from`. `buf` is valid only during the call.
 * The callback may call any peer_ function, including peer_net_close(). */
typedef void (*peer_message_fn)(void *arg, unsigned from, uint16_t type,
				const void *buf, size_t len);
/* Member `id` became reachable (up = 1) or unreachable (up = 0). */
typedef void (*peer_state_fn)(void *arg, unsigned id, int up);
/* peer_net_close() finished: every handle is closed and `net` is freed. */
typedef void (*peer_close_fn)(void *arg);

/* Creates a transport for the membership `listen ∪ peers`. Resolves the
 * addresses (numerically, or with getaddrinfo once, here) but opens no socket
 * yet. `on_state` may be NULL. Returns 0, -EINVAL, -ENOMEM or a resolver
 * error; nothing is allocated on error. */
int  peer_net_new(uv_loop_t *loop, const char *listen,
		  const char *const *peers, size_t npeers,
		  peer_message_fn on_message, peer_state_fn on_state, void *arg,
		  peer_net **out);

/* Binds and listens on the listen address, starts dialing every peer and
 * applies KVFS_FAULTS (see peer_set_blocked). Returns 0 or a negative errno
 * (-EADDRINUSE: the port is taken; a clear line has been logged). On error
 * the net is not running; release it with peer_net_close(). */
int  peer_net_start(peer_net *net);

/* Closes every connection and handle, drops queued frames, and frees `net`
 * once libuv has closed everything; `cb(arg)` then runs on the loop (cb may be
 * NULL). No callback of the net runs after this call. `net` must not be used
 * after the call. Safe to call from inside on_message/on_state. */
void peer_net_close(peer_net *net, peer_close_fn cb, void *arg);

/* Queues one frame of `type` (0..PEER_TYPE_USER_MAX) with a copy of `len`
 * bytes at `buf` for member `to`. Returns 0 (queued: it will be written when a
 * connection is ready), -EINVAL (bad id, own id, bad type), -EMSGSIZE
 * (len > PEER_MAX_FRAME), -ENOBUFS (the peer's queue is full; the frame is
 * dropped and counted), -ENOMEM, or -ESHUTDOWN (the net is closing). A frame
 * to a blocked peer is silently dropped (counted) and 0 returned, as a real
 * network would. */
int  peer_send(peer_net *net, unsigned to, uint16_t type, const void *buf, size_t len);

/* Same, with the payload gathered from `niov` pieces (e.g. a message header
 * and an entry body) into one frame. */
int  peer_sendv(peer_net *net, unsigned to, uint16_t type, const uv_buf_t *iov, size_t niov);

unsigned    peer_self_id(const peer_net *net);
unsigned    peer_count(const peer_net *net);      /* members, self included */
const char *peer_addr(const peer_net *net, unsigned id); /* members[id] or NULL */
uint64_t    peer_cluster_id(const peer_net *net);
int         peer_is_up(const peer_net *net, unsigned id); /* 1 or 0; self: 1 */

/* Bytes queued for `to` and not yet written to a socket (0 for a bad id);
 * a sender may pause pipelining while this is large. */
size_t peer_queued_bytes(const peer_net *net, unsigned to);

/* Changes the queue bound for every peer (0 keeps a value unchanged). */
void peer_set_queue_limit(peer_net *net, size_t max_bytes, size_t max_frames);

/* Drops every frame queued for `to` and not yet written (for example stale
 * heartbeats when the peer went down; counted as dropped). Returns the number
 * of frames dropped. */
size_t peer_drop_queued(peer_net *net, unsigned to);

/* ------------------------------------------------------------------------ */
/* Fault injection (tests)                                                   */

/* blocked != 0: drop every frame to and from member `id` as far as this node
 * is concerned — sends are discarded (and return 0), frames received from it
 * are discarded, it is reported down, no new frames are queued for it.
 * Connections stay open (like a network that drops packets), pings stop so
 * the other end's idle timeout fires as in a real partition. blocked == 0
 * resumes traffic; the peer is reported up again once a connection is ready.
 * Returns 0 or -EINVAL.
 *
 * In a real process the environment variable KVFS_FAULTS drives it, read at
 * peer_net_start():
 *   KVFS_FAULTS="block=ID_OR_ADDR[,ID_OR_ADDR...]"   blocked from the start
 *   KVFS_FAULTS="file=PATH"                           PATH is re-read every
 *       100 ms; it holds whitespace-separated ids or addresses to block
 *       (a missing or empty file blocks nothing), so a test partitions and
 *       heals a running node with `echo 2 > PATH` and `: > PATH`.
 * Both may be given, separated by ';'. */
int  peer_set_blocked(peer_net *net, unsigned id, int blocked);
int  peer_is_blocked(const peer_net *net, unsigned id);

/* ------------------------------------------------------------------------ */
/* Counters (status)                                                         */

struct peer_stats {
	int      up;             /* peer_is_up() */
	int      blocked;
	unsigned conns;          /* connections with a completed handshake */
	uint64_t frames_sent;    /* handed to the socket and written */
	uint64_t bytes_sent;     /* wire bytes, headers included */
	uint64_t writes;         /* uv_write() batches the sent frames went out in */
	uint64_t frames_recv;    /* delivered to on_message (pings excluded) */
	uint64_t bytes_recv;     /* wire bytes, headers included */
	uint64_t frames_dropped; /* refused (queue full), blocked, or lost with a connection */
	uint64_t dials;          /* outgoing connection attempts */
	uint64_t reconnects;     /* times the peer became reachable again after
	                            losing its last connection */
	uint64_t handshakes;     /* handshakes completed, both directions */
	uint64_t errors;         /* connections closed for a protocol error or refusal */
	uint64_t last_recv_ms;   /* uv_now() when bytes last arrived from it (pings
	                            included, blocked traffic excluded); 0: never */
	size_t   queued_bytes;
	size_t   queued_frames;
};

/* Fills *st for member `id`. Returns 0 or -EINVAL. */
int  peer_get_stats(const peer_net *net, unsigned id, struct peer_stats *st);

/* Appends one object per member to the jansson array `arr`:
 * {"id", "addr", "self": bool, "up", "blocked", "conns", "frames_sent",
 *  "bytes_sent", "frames_recv", "bytes_recv", "frames_dropped", "dials",
 *  "reconnects", "handshakes", "errors", "queued_frames", "queued_bytes"}
 * (the counters are absent for the self entry). For `status` replies. */
struct json_t;
void peer_status_json(const peer_net *net, struct json_t *arr);

/* CRC-32C (Castagnoli), as used in frame headers; exported for tests and for
 * other modules that want the same checksum. crc starts at 0. */
uint32_t peer_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
