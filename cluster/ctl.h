/*
 * ctl.h — the control socket: direct network access to a node's keys.
 *
 * One listening socket ("unix:PATH" or "HOST:PORT") on the node's libuv loop.
 * Each connection speaks one protocol, chosen by its first byte: '{' selects
 * JSON lines (one request object per line, one reply object per line), any
 * other byte selects RESP2, the Redis protocol (multi-bulk '*' requests or
 * inline commands), so that redis-cli and redis-benchmark work unchanged.
 * The protocols themselves live in ctl_json.c and ctl_redis.c, the
 * per-connection engine (ordering, pipelining, limits) in ctl_sess.c.
 *
 * Limits (documented in the README; see also ctl_sess.h):
 *   CTL_VALUE_MAX    32 MiB  largest value accepted or returned over the socket
 *   CTL_REQ_MAX      64 MiB  largest single request (JSON line / RESP command)
 *   CTL_MAX_CONNS    1024    simultaneous connections (env KVFS_CTL_MAX_CONNS)
 *   idle timeout     300 s   without a request (env KVFS_CTL_IDLE_MS)
 * Exceeding one of them gives an error reply or a clean close, never a crash.
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

#endif
