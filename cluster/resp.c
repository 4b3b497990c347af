/*
 * resp.c — RESP2 request parser and reply encoders.
 */
#include "cluster/resp.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void resp_parser_reset(struct resp_parser *p)
{
	p->discard = p->skipline = 0;
	p->skip = p->left = 0;
	p->pos = 0;
	p->argc = -1;
	p->nargs = 0;
	p->inline_req = 0;
	p->err = NULL;
	p->inl.off = p->inl.len = 0;
}

void resp_parser_free(struct resp_parser *p)
{
	free(p->off);
	free(p->len);
	free(p->av);
	ctl_buf_free(&p->inl);
	memset(p, 0, sizeof *p);
	p->argc = -1;
}

static int grow_args(struct resp_parser *p, size_t n)
{
	size_t cap = p->cap ? p->cap : 8, *o, *l;

	if (n <= p->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	o = realloc(p->off, cap * sizeof *o);
	if (!o)
		return -ENOMEM;
	p->off = o;
	l = realloc(p->len, cap * sizeof *l);
	if (!l)
		return -ENOMEM;
	p->len = l;
	p->cap = cap;
	return 0;
}

/* argv is built from offsets at the end, so the buffer may move between calls. */
static int make_argv(struct resp_parser *p, const char *base, struct resp_arg **argv)
{
	size_t i;

	if (p->nargs > p->avcap) {
		size_t cap = p->avcap ? p->avcap : 16;
		struct resp_arg *n;

		while (cap < p->nargs)
			cap *= 2;
		n = realloc(p->av, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		p->av = n;
		p->avcap = cap;
	}
	for (i = 0; i < p->nargs; i++) {
		p->av[i].p = base + p->off[i];
		p->av[i].len = p->len[i];
	}
	*argv = p->av;
	return 0;
}

/* Reads "<c><digits>\r\n" at buf[pos..len): 1 with *v and *end, 0 if the line
 * is incomplete, -EPROTO if malformed. Lines longer than 32 bytes are
 * malformed (no valid length needs more). */
static int read_len(const char *buf, size_t pos, size_t len, char c,
		    long long *v, size_t *end)
{
	size_t i = pos + 1;
	long long x = 0;
	int neg = 0, digits = 0;

	if (pos >= len)
		return 0;
	if (buf[pos] != c)
		return -EPROTO;
	if (i < len && buf[i] == '-') {
		neg = 1;
		i++;
	}
	for (; i < len && i - pos < 32; i++) {
		unsigned char ch = (unsigned char)buf[i];

		if (ch == '\r')
			break;
		if (!isdigit(ch))
			return -EPROTO;
		if (x > (1LL << 50))
			return -EPROTO;
		x = x * 10 + (ch - '0');
		digits++;
	}
	if (i - pos >= 32)
		return -EPROTO;
	if (i + 1 >= len)
		return 0;
	if (buf[i + 1] != '\n' || !digits)
		return -EPROTO;
	*v = neg ? -x : x;
	*end = i + 2;
	return 1;
}

/* Splits an inline command line like Redis's sdssplitargs(): whitespace
 * separated, "double quotes" with \n \r \t \b \a \\ \" \xHH escapes,
 * 'single quotes' with \' only. A closing quote must be followed by a space. */
static int split_inline(struct resp_parser *p, const char *s, size_t n)
{
	size_t i = 0;
	int rc;

	p->inl.off = p->inl.len = 0;
	/* Unescaped output is never longer than the input: reserve once so the
	 * offsets stay valid. */
	rc = ctl_buf_reserve(&p->inl, n + 1);
	if (rc)
		return rc;
	p->nargs = 0;
	for (;;) {
		size_t start;
		int inq = 0, insq = 0;

		while (i < n && isspace((unsigned char)s[i]))
			i++;
		if (i >= n)
			return 0;
		start = p->inl.len;
		for (;;) {
			char c = i < n ? s[i] : 0;

			if (i >= n) {
				if (inq || insq) {
					p->err = "Protocol error: unbalanced quotes in request";
					return -EPROTO;
				}
				break;
			}
			if (inq) {
				if (c == '\\' && i + 3 < n && s[i + 1] == 'x' &&
				    isxdigit((unsigned char)s[i + 2]) && isxdigit((unsigned char)s[i + 3])) {
					char hex[3] = { s[i + 2], s[i + 3], 0 };
					p->inl.data[p->inl.len++] = (char)strtol(hex, NULL, 16);
					i += 4;
					continue;
				}
				if (c == '\\' && i + 1 < n) {
					char e = s[i + 1];
					p->inl.data[p->inl.len++] = e == 'n' ? '\n' : e == 'r' ? '\r' :
						e == 't' ? '\t' : e == 'b' ? '\b' : e == 'a' ? '\a' : e;
					i += 2;
					continue;
				}
				if (c == '"') {
					if (i + 1 < n && !isspace((unsigned char)s[i + 1])) {
						p->err = "Protocol error: unbalanced quotes in request";
						return -EPROTO;
					}
					i++;
					break;
				}
				p->inl.data[p->inl.len++] = c;
				i++;
			} else if (insq) {
				if (c == '\\' && i + 1 < n && s[i + 1] == '\'') {
					p->inl.data[p->inl.len++] = '\'';
					i += 2;
					continue;
				}
				if (c == '\'') {
					if (i + 1 < n && !isspace((unsigned char)s[i + 1])) {
						p->err = "Protocol error: unbalanced quotes in request";
						return -EPROTO;
					}
					i++;
					break;
				}
				p->inl.data[p->inl.len++] = c;
				i++;
			} else {
				if (isspace((unsigned char)c))
					break;
				if (c == '"' && p->inl.len == start)
					inq = 1;
				else if (c == '\'' && p->inl.len == start)
					insq = 1;
				else
					p->inl.data[p->inl.len++] = c;
				i++;
			}
		}
		if (p->nargs >= RESP_ARGS_MAX) {
			p->err = "Protocol error: too many arguments";
			return -E2BIG;
		}
		rc = grow_args(p, p->nargs + 1);
		if (rc)
			return rc;
		p->off[p->nargs] = start;
		p->len[p->nargs] = p->inl.len - start;
		p->nargs++;
	}
}

static int parse_inline(struct resp_parser *p, const char *buf, size_t len,
			struct resp_arg **argv, size_t *argc, size_t *used)
{
	const char *nl = memchr(buf, '\n', len > RESP_INLINE_MAX ? RESP_INLINE_MAX : len);
	size_t n;
	int rc;

	if (!nl) {
		if (len >= RESP_INLINE_MAX) {
			p->err = "Protocol error: too big inline request";
			p->skipline = 1;
			*used = len;
			return -E2BIG;
		}
		return 0;
	}
	n = (size_t)(nl - buf);
	*used = n + 1;
	if (n && buf[n - 1] == '\r')
		n--;
	rc = split_inline(p, buf, n);
	if (rc)
		return rc;
	rc = make_argv(p, p->inl.data, argv);
	if (rc)
		return rc;
	*argc = p->nargs;
	return 1;
}

/* A framing error at buf[at]: drop through the end of that line. */
static int proto_error(struct resp_parser *p, const char *buf, size_t len, size_t at,
		       size_t *used)
{
	const char *nl = at < len ? memchr(buf + at, '\n', len - at) : NULL;

	*used = nl ? (size_t)(nl - buf) + 1 : len;
	p->skipline = !nl;
	p->pos = 0;
	p->argc = -1;
	p->nargs = 0;
	return -EPROTO;
}

/* An over-limit request: skip `skip` payload bytes, then `left` arguments. */
static int too_big(struct resp_parser *p, size_t end, unsigned long long skip,
		   unsigned long long left, size_t *used)
{
	p->err = "Protocol error: request too large";
	if (skip > RESP_SKIP_MAX || left > RESP_SKIP_MAX)
		return -EMSGSIZE;
	p->discard = 1;
	p->skip = skip;
	p->left = left;
	p->pos = 0;
	p->argc = -1;
	p->nargs = 0;
	*used = end;
	return -E2BIG;
}

int resp_discard(struct resp_parser *p, const char *buf, size_t len, size_t *used)
{
	long long v;
	size_t end;
	int rc;

	*used = 0;
	for (;;) {
		if (p->skipline) {
			const char *nl = memchr(buf + *used, '\n', len - *used);

			if (!nl) {
				*used = len;
				return 0;
			}
			*used = (size_t)(nl - buf) + 1;
			return 1;
		}
		if (p->skip) {
			size_t n = len - *used < p->skip ? len - *used : (size_t)p->skip;

			*used += n;
			p->skip -= n;
			if (p->skip)
				return 0;
		}
		if (!p->left)
			return 1;
		rc = read_len(buf, *used, len, '$', &v, &end);
		if (rc == 0 && len - *used <= 40)
			return 0; /* keep the partial header; *used < len */
		if (rc <= 0 || v < 0 || (unsigned long long)v > RESP_SKIP_MAX) {
			/* Not a bulk header after all: resynchronise at the next line. */
			p->skipline = 1;
			continue;
		}
		p->skip = (unsigned long long)v + 2;
		p->left--;
		*used = end;
	}
}

int resp_parse(struct resp_parser *p, const char *buf, size_t len,
	       size_t max_bulk, size_t max_req,
	       struct resp_arg **argv, size_t *argc, size_t *used, size_t *need)
{
	long long v;
	size_t end;
	int rc;

	*need = 0;
	*used = 0;
	if (len == 0)
		return 0;
	if (p->pos == 0 && p->argc < 0 && buf[0] != '*')
		return parse_inline(p, buf, len, argv, argc, used);

	if (p->argc < 0) {
		rc = read_len(buf, 0, len, '*', &v, &end);
		if (rc <= 0) {
			if (rc < 0) {
				p->err = "Protocol error: invalid multibulk length";
				return proto_error(p, buf, len, 0, used);
			}
			return rc;
		}
		if (v > (long long)RESP_ARGS_MAX)
			return too_big(p, end, 0, (unsigned long long)v, used);
		p->argc = v < 0 ? 0 : (long)v;
		p->pos = end;
		p->nargs = 0;
		/* Like Redis, the argument array is not sized from the header alone:
		 * a client could announce a million arguments and send none. */
		rc = grow_args(p, p->argc < 1024 ? (size_t)p->argc : 1024);
		if (rc)
			return rc;
	}
	while (p->nargs < (size_t)p->argc) {
		rc = read_len(buf, p->pos, len, '$', &v, &end);
		if (rc < 0) {
			p->err = p->pos < len && buf[p->pos] != '$' ?
				 "Protocol error: expected '$'" : "Protocol error: invalid bulk length";
			return proto_error(p, buf, len, p->pos, used);
		}
		if (rc == 0) {
			if (len - p->pos > 40) {
				p->err = "Protocol error: invalid bulk length";
				return proto_error(p, buf, len, p->pos, used);
			}
			return 0;
		}
		if (v < 0) {
			p->err = "Protocol error: invalid bulk length";
			return proto_error(p, buf, len, p->pos, used);
		}
		if ((unsigned long long)v > max_bulk || end + (size_t)v + 2 > max_req)
			return too_big(p, end, (unsigned long long)v + 2,
				       (unsigned long long)p->argc - p->nargs - 1, used);
		if (len < end + (size_t)v + 2) {
			*need = end + (size_t)v + 2;
			return 0;
		}
		if (buf[end + v] != '\r' || buf[end + v + 1] != '\n') {
			p->err = "Protocol error: bulk not terminated by CRLF";
			return proto_error(p, buf, len, end + (size_t)v, used);
		}
		rc = grow_args(p, p->nargs + 1);
		if (rc)
			return rc;
		p->off[p->nargs] = end;
		p->len[p->nargs] = (size_t)v;
		p->nargs++;
		p->pos = end + (size_t)v + 2;
	}
	rc = make_argv(p, buf, argv);
	if (rc)
		return rc;
	*argc = p->nargs;
	*used = p->pos;
	return 1;
}

/* ---- encoders ------------------------------------------------------------- */

int resp_simple(struct ctl_buf *b, const char *s)
{
	return ctl_buf_printf(b, "+%s\r\n", s);
}

int resp_error(struct ctl_buf *b, const char *msg)
{
	size_t n = strlen(msg), i, start;
	int rc = ctl_buf_reserve(b, n + 3);

	if (rc)
		return rc;
	b->data[b->len++] = '-';
	start = b->len;
	memcpy(b->data + b->len, msg, n);
	b->len += n;
	/* A CR or LF inside an error would break the framing. */
	for (i = start; i < b->len; i++)
		if (b->data[i] == '\r' || b->data[i] == '\n')
			b->data[i] = ' ';
	b->data[b->len++] = '\r';
	b->data[b->len++] = '\n';
	return 0;
}

/* Formats ":123\r\n" style headers without printf, which is measurable on the
 * GET path. */
static int put_num(struct ctl_buf *b, char c, long long v)
{
	char tmp[24];
	int i = (int)sizeof tmp;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	int rc = ctl_buf_reserve(b, sizeof tmp + 4);

	if (rc)
		return rc;
	do {
		tmp[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		tmp[--i] = '-';
	b->data[b->len++] = c;
	memcpy(b->data + b->len, tmp + i, sizeof tmp - (size_t)i);
	b->len += sizeof tmp - (size_t)i;
	b->data[b->len++] = '\r';
	b->data[b->len++] = '\n';
	return 0;
}

int resp_int(struct ctl_buf *b, long long v)
{
	return put_num(b, ':', v);
}

int resp_bulk(struct ctl_buf *b, const void *p, size_t n)
{
	int rc = ctl_buf_reserve(b, n + 32);

	if (rc)
		return rc;
	rc = put_num(b, '$', (long long)n);
	if (rc)
		return rc;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len++] = '\r';
	b->data[b->len++] = '\n';
	return 0;
}

int resp_nil(struct ctl_buf *b)
{
	return ctl_buf_add(b, "$-1\r\n", 5);
}

int resp_array(struct ctl_buf *b, long long n)
{
	return put_num(b, '*', n);
}
