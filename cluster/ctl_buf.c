/*
 * ctl_buf.c — growable byte buffer and base64 for the control socket.
 */
#include "cluster/ctl_buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ctl_buf_free(struct ctl_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

int ctl_buf_reserve(struct ctl_buf *b, size_t n)
{
	size_t used = b->len - b->off, need, cap;
	char *p;

	if (b->cap - b->len >= n)
		return 0;
	/* Moving the content to the front is cheaper than growing when most of
	 * the buffer has been consumed already. */
	if (b->off && b->cap - used >= n && b->off >= used) {
		memmove(b->data, b->data + b->off, used);
		b->off = 0;
		b->len = used;
		return 0;
	}
	if (n > SIZE_MAX / 2 - used)
		return -ENOMEM;
	need = used + n;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	if (b->off == 0) {
		p = realloc(b->data, cap);
		if (!p)
			return -ENOMEM;
	} else {
		p = malloc(cap);
		if (!p)
			return -ENOMEM;
		memcpy(p, b->data + b->off, used);
		free(b->data);
	}
	b->data = p;
	b->cap = cap;
	b->off = 0;
	b->len = used;
	return 0;
}

int ctl_buf_add(struct ctl_buf *b, const void *p, size_t n)
{
	int rc = ctl_buf_reserve(b, n);

	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int ctl_buf_adds(struct ctl_buf *b, const char *s)
{
	return ctl_buf_add(b, s, strlen(s));
}

int ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	rc = ctl_buf_reserve(b, (size_t)n + 1);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void ctl_buf_consume(struct ctl_buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

void ctl_buf_shrink(struct ctl_buf *b)
{
	if (b->off == b->len && b->cap > 16 * 1024) {
		free(b->data);
		memset(b, 0, sizeof *b);
	}
}

/* ---- base64 ---------------------------------------------------------------- */

static const char b64_alpha[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ctl_b64_enclen(size_t n)
{
	return (n + 2) / 3 * 4;
}

int ctl_b64_encode(struct ctl_buf *out, const void *p, size_t n)
{
	const unsigned char *s = p;
	char *d;
	size_t i;
	int rc = ctl_buf_reserve(out, ctl_b64_enclen(n));

	if (rc)
		return rc;
	d = out->data + out->len;
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*d++ = b64_alpha[v >> 18];
		*d++ = b64_alpha[(v >> 12) & 63];
		*d++ = b64_alpha[(v >> 6) & 63];
		*d++ = b64_alpha[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)s[i] << 16;
		*d++ = b64_alpha[v >> 18];
		*d++ = b64_alpha[(v >> 12) & 63];
		*d++ = '=';
		*d++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		*d++ = b64_alpha[v >> 18];
		*d++ = b64_alpha[(v >> 12) & 63];
		*d++ = b64_alpha[(v >> 6) & 63];
		*d++ = '=';
	}
	out->len = (size_t)(d - out->data);
	return 0;
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int ctl_b64_decode(const char *s, size_t n, void **out, size_t *outlen)
{
	unsigned char *d, *p;
	size_t i, pad = 0;

	if (n % 4)
		return -EINVAL;
	if (n && s[n - 1] == '=')
		pad++;
	if (n > 1 && s[n - 2] == '=')
		pad++;
	d = malloc(n / 4 * 3 + 1);
	if (!d)
		return -ENOMEM;
	p = d;
	for (i = 0; i < n; i += 4) {
		int a = b64_val((unsigned char)s[i]), b = b64_val((unsigned char)s[i + 1]);
		int c = b64_val((unsigned char)s[i + 2]), e = b64_val((unsigned char)s[i + 3]);
		int last = i + 4 == n;

		if (a < 0 || b < 0)
			goto bad;
		if (last && pad == 2) {
			if (s[i + 2] != '=' || s[i + 3] != '=')
				goto bad;
			*p++ = (unsigned char)(a << 2 | b >> 4);
		} else if (last && pad == 1) {
			if (c < 0)
				goto bad;
			*p++ = (unsigned char)(a << 2 | b >> 4);
			*p++ = (unsigned char)((b & 15) << 4 | c >> 2);
		} else {
			if (c < 0 || e < 0)
				goto bad;
			*p++ = (unsigned char)(a << 2 | b >> 4);
			*p++ = (unsigned char)((b & 15) << 4 | c >> 2);
			*p++ = (unsigned char)((c & 3) << 6 | e);
		}
	}
	*out = d;
	*outlen = (size_t)(p - d);
	return 0;
bad:
	free(d);
	return -EINVAL;
}
