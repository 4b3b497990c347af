/*
 * ctl_sess.h — one control-socket connection's protocol engine, without I/O.
 *
 * The socket layer (ctl.c) feeds received bytes in and sends what appears in
 * `out`; this engine detects the protocol, parses requests, runs them against
 * a ctl_backend and queues the replies IN REQUEST ORDER:
 *
 *   - Reads run at once, except that a read waits until every earlier write
 *     of the same connection has completed (read-your-writes), and, when the
 *     backend asks for it (Raft), until a read barrier issued after the
 *     request arrived has completed (linearizable reads).
 *   - Writes are handed to the backend immediately, so the pipelined writes
 *     of one connection and the writes of many connections share one group
 *     commit. Each write's reply waits in a slot until the write is durable;
 *     slots are released to `out` strictly in order.
 *
 * Unit tests drive this engine directly with a fake backend (byte-at-a-time
 * input, delayed completions); ctl.c drives it from libuv.
 */
#ifndef KVFS_CTL_SESS_H
#define KVFS_CTL_SESS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "cluster/ctl_buf.h"
#include "cluster/resp.h"
#include "store/store.h"

/* Control-socket limits. A value above CTL_VALUE_MAX (or a request above
 * CTL_REQ_MAX) is refused with a "too_large" error and skipped without being
 * buffered (a JSON line up to its newline, a RESP request by its lengths);
 * the connection goes on. */
#define CTL_VALUE_MAX     (32u * 1024 * 1024)
#define CTL_REQ_MAX       (64u * 1024 * 1024)
#define CTL_PIPELINE_MAX  1024u            /* writes in flight per connection */
#define CTL_OUT_HIGH      (4u * 1024 * 1024) /* stop parsing while this much output waits */
#define CTL_LIST_MAX      10000u           /* keys per "list" reply */
#define CTL_SCAN_CURSORS  16u              /* live SCAN cursors of a lone session */
#define CTL_SCAN_SHARED   1024u            /* live SCAN cursors of a server */

/* A borrowed view of one stored version; release with be->release(). */
struct ctl_rec {
	const void    *val;
	size_t         len;
	struct kv_meta meta;
	uint64_t       version;
	void          *ref;   /* backend's handle */
};

struct search_hit;

typedef void (*ctl_done_fn)(void *arg, int status);

/*
 * What the engine needs from a node. Every function is called on the loop
 * thread. `write` and `barrier` must call `done` later, never from inside the
 * call. Other functions return 0 or a negative errno.
 */
struct ctl_backend {
	void *self;
	int      (*get)(void *self, const char *key, size_t klen, struct ctl_rec *out); /* -ENOENT */
	/* Optional (may be NULL): n lookups at one point between applied
	 * writes (MGET). found[i] says whether out[i] was filled (release
	 * each); -ENOMEM leaves nothing to release. */
	int      (*get_many)(void *self, size_t n, const char *const *keys, const size_t *klens,
			     struct ctl_rec *out, unsigned char *found);
	/* First key > after (or >= prefix when after is NULL) with the prefix. */
	int      (*next)(void *self, const char *prefix, size_t plen, const char *after, size_t alen,
			 char *keybuf /* > KV_KEY_MAX bytes */, size_t *klen, struct ctl_rec *out);
	void     (*release)(void *self, struct ctl_rec *r);
	/* Optional (may be NULL): 0 when certainly no key starts with key + '/',
	 * so creating key needs no ordered lookup; 1 when one may. */
	int      (*maybe_dir)(void *self, const char *key, size_t klen);
	uint64_t (*count)(void *self);
	int      (*key_check)(void *self, const char *key, size_t klen);
	void     (*write)(void *self, const struct kv_batch *b, ctl_done_fn done, void *arg);
	int      (*barrier_needed)(void *self);
	void     (*barrier)(void *self, ctl_done_fn done, void *arg);
	/* -ENOTSUP when search is unavailable, -EINVAL for an unknown mode. */
	int      (*search)(void *self, const char *q, size_t qlen, const char *mode, size_t limit,
			   struct search_hit **hits, size_t *n);
	void     (*hits_free)(void *self, struct search_hit *hits, size_t n);
	void     (*status)(void *self, json_t *obj);
	int64_t  (*now_ns)(void *self);
	const char *(*role)(void *self); /* "standalone", "leader", ...: for INFO */
};

enum ctl_proto { CTL_PROTO_NONE = 0, CTL_PROTO_JSON, CTL_PROTO_RESP };

struct ctl_slot;

struct ctl_scan_cursor {
	uint64_t id;
	char    *key;
	size_t   klen;
};

/* SCAN cursors are numbers (redis-cli parses them with strtoull), so a table
 * maps cursor numbers to the last key visited. The server shares one table
 * among its connections (a client may continue a SCAN on another pooled
 * connection); a session alone (unit tests) uses a small one of its own.
 * The oldest entry is reused when the table is full. */
struct ctl_scan_table {
	struct ctl_scan_cursor *c;  /* allocated on first use */
	unsigned cap;
	uint64_t next;
};
void ctl_scan_table_free(struct ctl_scan_table *t);

struct ctl_sess {
	const struct ctl_backend *be;
	enum ctl_proto proto;
	struct ctl_buf in, out;

	/* RESP */
	struct resp_parser rp;
	struct ctl_scan_table *scan;    /* &own_scan or the server's */
	struct ctl_scan_table  own_scan;
	/* JSON lines */
	size_t json_scan;      /* bytes of the current line already searched for '\n' */
	int    json_discard;   /* skipping the rest of an oversized line */

	/* Write slots awaiting durability, oldest first. */
	struct ctl_slot *head, *tail;
	struct ctl_slot *capturing; /* see cap_begin() in ctl_sess.c */
	unsigned npending;

	/* Read barrier (Raft). */
	uint64_t data_gen;     /* bumped whenever input arrives */
	uint64_t barrier_gen;  /* data_gen covered by the last completed barrier */
	uint64_t barrier_issued;
	int      barrier_wait;
	int      barrier_status; /* error of the last failed barrier, for the read that waited */

	int in_process;
	int close_after_flush; /* QUIT or a fatal protocol error */
	int reject;            /* answer the first request with "too many connections" */
	int dead;              /* the socket is gone; free when nothing is pending */

	uint32_t uid, gid;     /* owner of keys this connection creates */
	char    *kbuf;         /* KV_KEY_MAX + 2 bytes for key lookups, lazily */

	/* Owner hooks: output is ready (after an asynchronous completion), and
	 * the session may be freed (after ctl_sess_kill and the last completion). */
	void (*on_output)(struct ctl_sess *s);
	void (*on_release)(struct ctl_sess *s);
	void *owner;
};

void ctl_sess_init(struct ctl_sess *s, const struct ctl_backend *be);
/* Space for reading straight into the input buffer. */
int  ctl_sess_rbuf(struct ctl_sess *s, char **p, size_t *n);
/* `n` bytes were written at the pointer from ctl_sess_rbuf. Processes. */
void ctl_sess_commit(struct ctl_sess *s, size_t n);
/* Copies and processes (tests, and the socket layer when convenient). */
int  ctl_sess_feed(struct ctl_sess *s, const void *p, size_t n);
/* Runs as many buffered requests as the ordering rules allow. */
void ctl_sess_process(struct ctl_sess *s);
/* True while the engine wants more input (no backpressure in effect). */
int  ctl_sess_want_input(const struct ctl_sess *s);
/* The socket is gone: drop replies; on_release runs once nothing is pending
 * (possibly from inside this call). */
void ctl_sess_kill(struct ctl_sess *s);
/* Frees buffers (called by the owner from on_release or when never used). */
void ctl_sess_free(struct ctl_sess *s);

/* ---- for the protocol modules (ctl_json.c, ctl_redis.c) ----------------- */

/* Return values of a protocol step / command. */
#define CTL_STEP_DONE  1  /* a request was consumed; continue */
#define CTL_STEP_STOP  0  /* need more input or must wait; do not continue */

/* Whether a read may run now: 1 = yes; 0 = not yet, it arranged to be woken
 * (barrier or pending writes) and the caller returns CTL_STEP_STOP without
 * consuming; a negative errno = the read barrier failed, and the caller
 * consumes the request with that error (ctl_json_read_gate and
 * ctl_redis_read_gate do all three). */
int ctl_sess_read_ready(struct ctl_sess *s);

/* The read gate of each protocol: CTL_READ_GO when the read may run, else
 * the step's return value (CTL_STEP_STOP to wait, or CTL_STEP_DONE after an
 * error reply for a failed read barrier). */
#define CTL_READ_GO 2
int ctl_json_read_gate(struct ctl_sess *s, json_t *id);
int ctl_redis_read_gate(struct ctl_sess *s);

/* How a write's reply is produced once it completes. */
struct ctl_reply {
	json_t     *json_ok;   /* JSON: success reply (reference stolen) */
	const char *resp_ok;   /* RESP: literal success bytes, or NULL for resp_int */
	long long   resp_int;
};
/* Hands the batch to the backend and queues a reply slot. On an immediate
 * failure (ENOMEM) the error reply is queued instead. Always consumes `r`. */
void ctl_sess_submit(struct ctl_sess *s, const struct kv_batch *b, struct ctl_reply *r);

/* Appends an error reply in the session's protocol, in order. */
void ctl_sess_error(struct ctl_sess *s, int err, const char *msg, json_t *id);

/* Metadata for a put of `key`: the existing key's (with new times) or a new
 * regular file's. Refuses keys that cannot be files: -EISDIR when the key is
 * a directory (marker or has keys below it), -ENOTDIR when a parent is a file. */
int ctl_sess_put_meta(struct ctl_sess *s, const char *key, size_t klen, struct kv_meta *m);

/* JSON error code and a RESP/JSON message for a negative errno. */
const char *ctl_err_code(int err);
const char *ctl_err_msg(int err);

/* Protocol steps (ctl_json.c / ctl_redis.c). */
int  ctl_json_step(struct ctl_sess *s);
int  ctl_redis_step(struct ctl_sess *s);
void ctl_json_error(struct ctl_buf *out, int err, const char *msg, json_t *id);
void ctl_json_emit(struct ctl_buf *out, json_t *obj);
void ctl_redis_error(struct ctl_buf *out, int err, const char *msg);

/* The backend over a real node (ctl_node.c): reads from node_store(), writes
 * through node_write_async(), barriers in Raft mode, search via node_search(). */
struct node;
void ctl_node_backend(struct node *n, struct ctl_backend *be);

#endif
