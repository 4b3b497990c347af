/*
 * resp.h — RESP2, the Redis serialization protocol: an incremental request
 * parser (multi-bulk "*N\r\n$L\r\n...\r\n" and inline "CMD arg arg\r\n") and
 * reply encoders. Pure functions on memory, no I/O.
 *
 * Reference: https://redis.io/docs/reference/protocol-spec/ (RESP2), and
 * Redis's own processMultibulkBuffer()/processInlineBuffer() for the limits
 * and the inline quoting rules (sdssplitargs).
 */
#ifndef KVFS_RESP_H
#define KVFS_RESP_H

#include <stddef.h>

#include "cluster/ctl_buf.h"

#define RESP_INLINE_MAX (64u * 1024)  /* an inline command line, as in Redis */
#define RESP_ARGS_MAX   (2u << 20)    /* arguments of one command (MSET of KV_BATCH_MAX pairs) */
/* An over-limit request is skipped (not buffered) so the connection can go
 * on, unless it claims more than this: then the client is not speaking RESP
 * in good faith and the connection is closed. */
#define RESP_SKIP_MAX   (1ull << 30)

struct resp_arg {
	const char *p;
	size_t      len;
};

/*
 * Parser state for one request. It survives partial input: call resp_parse()
 * again with the same (possibly longer, possibly moved) buffer that starts at
 * the same request, and it continues where it stopped. After a complete
 * request, consume `*used` bytes and call resp_parser_reset().
 */
struct resp_parser {
	size_t  pos;          /* bytes of this request already parsed */
	long    argc;         /* expected arguments; -1 before the header */
	size_t  nargs;        /* arguments parsed so far */
	size_t *off, *len;    /* offsets/lengths of parsed arguments in the request */
	size_t  cap;
	struct resp_arg *av;  /* argv handed out by resp_parse() */
	size_t  avcap;
	struct ctl_buf inl;   /* unescaped inline arguments */
	int     inline_req;
	const char *err;      /* protocol error message after an error */
	/* Recovery after an error (see resp_discard): */
	int     discard;      /* skipping the rest of an over-limit request */
	int     skipline;     /* skipping through the next '\n' (bad framing) */
	unsigned long long skip, left; /* payload bytes, then arguments, to skip */
};

void resp_parser_reset(struct resp_parser *p);
void resp_parser_free(struct resp_parser *p);

/*
 * Parses one request from buf[0..len). Returns:
 *   1        a complete request: *argc arguments in *argv (valid until the
 *            buffer or parser changes), *used bytes to consume. An empty
 *            inline line yields *argc == 0.
 *   0        more input needed (*need, when non-zero, is the total request
 *            size known so far, so the caller can reserve memory)
 *   -EPROTO  malformed input (p->err says why). *used bytes (through the
 *            offending line) can be dropped; the parser then resynchronises
 *            at the next line (resp_discard) and the connection goes on.
 *   -E2BIG   a length beyond max_bulk / max_req / RESP_ARGS_MAX (p->err);
 *            *used bytes can be dropped and the rest of the request is
 *            skipped by resp_discard without buffering it.
 *   -EMSGSIZE a length beyond RESP_SKIP_MAX: answer and close.
 *   -ENOMEM
 */
int resp_parse(struct resp_parser *p, const char *buf, size_t len,
	       size_t max_bulk, size_t max_req,
	       struct resp_arg **argv, size_t *argc, size_t *used, size_t *need);

/* While p->discard or p->skipline: drops input of the failed request.
 * Returns 1 when done (*used bytes consumed; call resp_parser_reset()), 0
 * when more input is needed (*used bytes can be dropped already). */
int resp_discard(struct resp_parser *p, const char *buf, size_t len, size_t *used);

/* Encoders: append one reply; return 0 or -ENOMEM. */
int resp_simple(struct ctl_buf *b, const char *s);        /* +s */
int resp_error(struct ctl_buf *b, const char *msg);       /* -msg (CR/LF replaced by spaces) */
int resp_int(struct ctl_buf *b, long long v);             /* :v */
int resp_bulk(struct ctl_buf *b, const void *p, size_t n);/* $n p */
int resp_nil(struct ctl_buf *b);                          /* $-1 */
int resp_array(struct ctl_buf *b, long long n);           /* *n (-1: nil array) */

#endif
