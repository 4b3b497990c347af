/*
 * ctl.h — the control socket: direct network access to a node's keys.
 *
 * One listening socket ("unix:PATH" or "HOST:PORT") on the node's libuv loop.
 * Each connection speaks one protocol, chosen by its first byte: '{' selects
 * JSON lines (one request object per line, one reply object per line), any
 * other byte selects RESP2, the Redis protocol (multi-bulk '*' requests or
 * inline commands), so that redis-cli and redis-benchmark work unchanged.
 * The protocols live in ctl_json.c and ctl_redis.c, the per-connection engine
 * (ordering, pipelining, limits) in ctl_sess.c, the libuv side in ctl.c.
 *
 * JSON lines. Requests {"op": ..., "id": any (echoed)}:
 *   put {key, value | value_b64}          get {key[, b64:true]} -> value | value_b64, version
 *   delete {key}                          batch {ops: [{op:"put"|"delete", key, ...}]} -> n (atomic)
 *   list {prefix, limit (1..10000, default 1000), cursor} -> keys, cursor (last key; null at the end)
 *   stat {key} -> type, size, mode, uid, gid, mtime, ctime (s), mtime_ns, ctime_ns, version
 *   search {query, mode (hybrid|text|tfidf|semantic|phrase), limit} -> results [{key, score}]
 *          (a key that is not UTF-8 comes as "key_b64")
 *   status -> node_status() (role, term, leader, peers, keys, ...)     ping -> pong
 * Errors: {"ok":false,"error":{"code","message"}} with code one of not_found,
 * bad_request, invalid_key, too_large, read_only, unavailable, io_error,
 * no_space, timeout, is_directory, not_directory, not_empty, out_of_memory.
 * A get reply carries "value" when the bytes are UTF-8 without NUL, else
 * "value_b64". A delete of a directory's name (a marker "k/" or keys below
 * it) is is_directory; its keys go one by one, the empty marker by "k/".
 *
 * RESP2: PING ECHO GET SET [NX|XX] DEL UNLINK EXISTS MGET MSET (one atomic
 * batch) STRLEN TYPE TTL PTTL DBSIZE SCAN [MATCH] [COUNT] [TYPE] KEYS INFO
 * COMMAND [COUNT|INFO|DOCS] CONFIG GET (empty) CLIENT SELECT 0 HELLO [2] QUIT.
 * No expirations, one database, only strings. Unknown commands: -ERR.
 *
 * Semantics shared by both: keys are file paths of the mount (store/key.h);
 * a key that cannot be one, or would put a file over a directory or under a
 * file, is refused. New keys get mode 0644 and the uid/gid of the Unix-socket
 * peer (0 over TCP), mtime = ctime = now; overwriting keeps mode and owner.
 * A write is answered only once durable (node_write_async); the writes of all
 * connections share group commits. Replies come in request order; a read
 * waits for the earlier writes of its connection, and in Raft mode for a
 * ReadIndex barrier issued after it arrived.
 *
 * Limits. Exceeding one gives an error reply or a clean close, never a crash:
 *   CTL_VALUE_MAX    32 MiB  largest value accepted or returned over the socket
 *                            (larger values, up to KV_VALUE_MAX, via the mount)
 *   CTL_REQ_MAX      64 MiB  largest request; an over-limit request gets an
 *                            error and is skipped as it streams in (not
 *                            buffered); the connection goes on. A RESP
 *                            length above 1 GiB (RESP_SKIP_MAX) is not worth
 *                            skipping: error, then close.
 *   bad RESP framing         error, then parsing resumes at the next line
 *   RESP_INLINE_MAX  64 KiB  inline command line
 *   connections      1024    (env KVFS_CTL_MAX_CONNS): the next ones get an
 *                            error reply in their protocol and are closed
 *   idle timeout     300 s   without requests or reading replies
 *                            (env KVFS_CTL_IDLE_MS): clean close
 *   CTL_PIPELINE_MAX 1024    writes in flight per connection, CTL_OUT_HIGH
 *                            4 MiB unsent replies: reading pauses (backpressure)
 * The Unix socket is created with mode 0600 (local, owner only).
 *
 * Threads: both functions run on the loop thread only.
 */
#ifndef KVFS_CTL_H
#define KVFS_CTL_H

#include <uv.h>

#include "cluster/node.h"

struct ctl_server;

/* Starts serving `addr` ("unix:PATH" or "HOST:PORT"; a stale socket file at
 * PATH is replaced) on `loop`, which must be node_loop(n). Returns 0 or a
 * negative errno (libuv codes are negative errnos); *out is set only on
 * success. */
int  ctl_server_start(node *n, uv_loop_t *loop, const char *addr, struct ctl_server **out);

/* Stops accepting, closes every connection and the listener. Writes already
 * handed to the node still complete (their replies are dropped). The memory
 * is released once every handle is closed and every pending write has
 * completed, so the loop must keep running for a little while after this. */
void ctl_server_stop(struct ctl_server *s);

/* Writes out the replies gathered so far now, instead of in the loop's
 * check phase (after the next poll): for answers made outside the poll
 * phase, such as a group commit the loop synced itself just before it
 * would wait for I/O. NULL is a no-op. */
void ctl_server_flush(struct ctl_server *s);

#endif
