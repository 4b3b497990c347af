/*
 * ctl_buf.h — a growable byte buffer with a read offset, used for the control
 * socket's input and output. Plain memory, no I/O.
 */
#ifndef KVFS_CTL_BUF_H
#define KVFS_CTL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct ctl_buf {
	char  *data;
	size_t off;  /* first unconsumed byte */
	size_t len;  /* end of valid bytes (data[off..len) is the content) */
	size_t cap;
};

void   ctl_buf_free(struct ctl_buf *b);
/* Makes room for `n` more bytes at data + len; may move the content to the
 * front (so pointers into the buffer are invalidated). 0 or -ENOMEM. */
int    ctl_buf_reserve(struct ctl_buf *b, size_t n);
int    ctl_buf_add(struct ctl_buf *b, const void *p, size_t n);
int    ctl_buf_adds(struct ctl_buf *b, const char *s);
int    ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline size_t ctl_buf_size(const struct ctl_buf *b) { return b->len - b->off; }
static inline char  *ctl_buf_head(const struct ctl_buf *b) { return b->data + b->off; }
/* Drops `n` consumed bytes from the front. */
void   ctl_buf_consume(struct ctl_buf *b, size_t n);
/* Frees the memory of a large, now empty buffer so an idle connection that
 * once carried a big value does not keep it. */
void   ctl_buf_shrink(struct ctl_buf *b);

/* Base64 (RFC 4648, standard alphabet, with padding). */
size_t ctl_b64_enclen(size_t n);
int    ctl_b64_encode(struct ctl_buf *out, const void *p, size_t n);
/* Decodes into a malloc'd buffer; returns 0, -EINVAL (bad input) or -ENOMEM.
 * Whitespace is not accepted. */
int    ctl_b64_decode(const char *s, size_t n, void **out, size_t *outlen);

#endif
