/*
 * ctl_sess.c — the per-connection engine of the control socket: protocol
 * detection, in-order replies, write slots, read barriers, backpressure.
 */
#include "cluster/ctl_sess.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/log.h"

struct ctl_slot {
	struct ctl_sess *s;
	struct ctl_slot *next;
	int              done;
	int              status;
	struct ctl_reply r;
	struct ctl_buf   after; /* immediate replies produced behind this write */
};

/* While a write is pending, replies produced at once (PING, errors, ...)
 * must not overtake it: they are captured into the newest slot's `after`
 * buffer by swapping it with `out` for the duration of a step. */
static void cap_begin(struct ctl_sess *s)
{
	struct ctl_buf t;

	if (!s->tail || s->capturing)
		return;
	t = s->out;
	s->out = s->tail->after;
	s->tail->after = t;
	s->capturing = s->tail;
}

static void cap_end(struct ctl_sess *s)
{
	struct ctl_slot *sl = s->capturing;
	struct ctl_buf t;

	if (!sl)
		return;
	t = s->out;
	s->out = sl->after;
	sl->after = t;
	s->capturing = NULL;
}

void ctl_sess_init(struct ctl_sess *s, const struct ctl_backend *be)
{
	memset(s, 0, sizeof *s);
	s->be = be;
	resp_parser_reset(&s->rp);
	s->own_scan.cap = CTL_SCAN_CURSORS;
	s->scan = &s->own_scan;
}

void ctl_scan_table_free(struct ctl_scan_table *t)
{
	unsigned i;

	for (i = 0; t->c && i < t->cap; i++)
		free(t->c[i].key);
	free(t->c);
	t->c = NULL;
}

void ctl_sess_free(struct ctl_sess *s)
{
	ctl_buf_free(&s->in);
	ctl_buf_free(&s->out);
	resp_parser_free(&s->rp);
	ctl_scan_table_free(&s->own_scan);
	free(s->kbuf);
}

/* ---- errors ---------------------------------------------------------------- */

const char *ctl_err_code(int err)
{
	switch (err) {
	case -ENOENT:       return "not_found";
	case -EINVAL:
	case -EBADMSG:
	case -EPROTO:       return "bad_request";
	case -ENAMETOOLONG: return "invalid_key";
	case -EFBIG:
	case -E2BIG:
	case -EMSGSIZE:     return "too_large";
	case -EROFS:        return "read_only";
	case -ENOSPC:
	case -EDQUOT:       return "no_space";
	case -ETIMEDOUT:    return "timeout";
	case -EISDIR:       return "is_directory";
	case -ENOTDIR:      return "not_directory";
	case -ENOTEMPTY:    return "not_empty";
	case -ENOTSUP:
	case -ESHUTDOWN:
	case -EAGAIN:
	case -ECONNREFUSED:
	case -EUSERS:       return "unavailable";
	case -ENOMEM:       return "out_of_memory";
	case -ENOSYS:       return "unknown_op";
	default:            return "io_error";
	}
}

const char *ctl_err_msg(int err)
{
	switch (err) {
	case -ENOENT:       return "no such key";
	case -ENAMETOOLONG: return "key or path component too long";
	case -EFBIG:        return "value too large";
	case -E2BIG:        return "request too large";
	case -EROFS:        return "the node does not accept writes now (no leader, minority, or store failed)";
	case -EISDIR:       return "key is a directory";
	case -ENOTDIR:      return "a parent of the key is a file";
	case -ENOTEMPTY:    return "directory not empty";
	case -ENOTSUP:      return "not available on this node";
	case -ESHUTDOWN:    return "node is shutting down";
	case -EAGAIN:       return "temporarily unavailable (a search: the index is still being rebuilt after start-up); try again";
	case -EUSERS:       return "too many connections";
	default:            return strerror(-err);
	}
}

void ctl_sess_error(struct ctl_sess *s, int err, const char *msg, json_t *id)
{
	if (s->proto == CTL_PROTO_JSON)
		ctl_json_error(&s->out, err, msg, id);
	else
		ctl_redis_error(&s->out, err, msg);
}

/* ---- write slots ---------------------------------------------------------- */

static void slot_format(struct ctl_sess *s, struct ctl_slot *sl)
{
	if (s->proto == CTL_PROTO_JSON) {
		if (sl->status == 0) {
			ctl_json_emit(&s->out, sl->r.json_ok);
		} else {
			json_t *id = sl->r.json_ok ? json_object_get(sl->r.json_ok, "id") : NULL;
			ctl_json_error(&s->out, sl->status, NULL, id);
		}
	} else if (sl->status == 0) {
		if (sl->r.resp_ok)
			ctl_buf_adds(&s->out, sl->r.resp_ok);
		else
			resp_int(&s->out, sl->r.resp_int);
	} else {
		ctl_redis_error(&s->out, sl->status, NULL);
	}
}

static void slot_free(struct ctl_slot *sl)
{
	ctl_buf_free(&sl->after);
	json_decref(sl->r.json_ok);
	free(sl);
}

static void maybe_release(struct ctl_sess *s)
{
	if (s->dead && s->npending == 0 && !s->barrier_wait && !s->in_process && s->on_release)
		s->on_release(s);
}

/* Moves completed replies at the head of the queue to `out`. */
static void drain_slots(struct ctl_sess *s)
{
	while (s->head && s->head->done) {
		struct ctl_slot *sl = s->head;

		s->head = sl->next;
		if (!s->head)
			s->tail = NULL;
		if (!s->dead) {
			slot_format(s, sl);
			ctl_buf_add(&s->out, ctl_buf_head(&sl->after), ctl_buf_size(&sl->after));
		}
		slot_free(sl);
		s->npending--;
	}
}

static void after_completion(struct ctl_sess *s)
{
	if (s->dead) {
		maybe_release(s);
		return;
	}
	ctl_sess_process(s);
	if (s->on_output)
		s->on_output(s);
}

static void slot_done(void *arg, int status)
{
	struct ctl_slot *sl = arg;
	struct ctl_sess *s = sl->s;

	sl->done = 1;
	sl->status = status;
	drain_slots(s);
	after_completion(s);
}

void ctl_sess_submit(struct ctl_sess *s, const struct kv_batch *b, struct ctl_reply *r)
{
	struct ctl_slot *sl = calloc(1, sizeof *sl);

	if (!sl) {
		json_t *id = r->json_ok ? json_object_get(r->json_ok, "id") : NULL;

		ctl_sess_error(s, -ENOMEM, NULL, id);
		json_decref(r->json_ok);
		return;
	}
	sl->s = s;
	sl->r = *r;
	cap_end(s);
	if (s->tail)
		s->tail->next = sl;
	else
		s->head = sl;
	s->tail = sl;
	s->npending++;
	if (s->in_process)
		cap_begin(s);
	s->be->write(s->be->self, b, slot_done, sl);
}

/* ---- reads ---------------------------------------------------------------- */

static void barrier_done(void *arg, int status)
{
	struct ctl_sess *s = arg;

	s->barrier_wait = 0;
	/* A failed barrier (no leader, minority side, timeout) covers nothing:
	 * the read that waited for it fails with its error, and the next read
	 * asks again. Serving it from local state could return stale data. */
	if (status == 0)
		s->barrier_gen = s->barrier_issued;
	else
		s->barrier_status = status;
	after_completion(s);
}

int ctl_sess_read_ready(struct ctl_sess *s)
{
	if (s->npending)
		return 0; /* read-your-writes: drain_slots() resumes us */
	if (!s->be->barrier_needed || !s->be->barrier_needed(s->be->self))
		return 1;
	if (s->barrier_status) {
		int err = s->barrier_status;

		s->barrier_status = 0;
		return err;
	}
	if (s->barrier_gen == s->data_gen)
		return 1;
	/* Every request buffered now arrived before this barrier starts, so
	 * one barrier covers all of them. */
	s->barrier_wait = 1;
	s->barrier_issued = s->data_gen;
	s->be->barrier(s->be->self, barrier_done, s);
	return 0;
}

/* ---- metadata for puts ---------------------------------------------------- */

/* The metadata of a put over an existing key: its own, with new times.
 * Releases r. */
static int existing_meta(const struct ctl_backend *be, struct ctl_rec *r, struct kv_meta *m,
			 int64_t now)
{
	*m = r->meta;
	be->release(be->self, r);
	if (S_ISDIR(m->mode))
		return -EISDIR;
	m->mtime_ns = m->ctime_ns = now;
	return 0;
}

/* Whether keys "key/..." exist (key, which does not exist itself, is then
 * a directory of the tree of keys): 1, 0 or a negative errno. */
static int has_children(struct ctl_sess *s, const char *key, size_t klen)
{
	const struct ctl_backend *be = s->be;
	struct ctl_rec r;
	size_t n;
	char *pre;
	int rc;

	/* The backend's filter answers "certainly not" for most new keys
	 * without a walk of the ordered index. */
	if (be->maybe_dir && !be->maybe_dir(be->self, key, klen))
		return 0;
	if (!s->kbuf) {
		s->kbuf = malloc(KV_KEY_MAX + 2);
		if (!s->kbuf)
			return -ENOMEM;
	}
	/* The first key with the prefix `key` tells whether keys "key/..."
	 * exist: they sort before any "key<c>..." with c > '/'. */
	rc = be->next(be->self, key, klen, NULL, 0, s->kbuf, &n, &r);
	if (rc)
		return rc == -ENOENT ? 0 : rc;
	be->release(be->self, &r);
	if (n == klen || s->kbuf[klen] > '/')
		return 0; /* the key itself (created meanwhile), or "key<c>..." */
	if (s->kbuf[klen] == '/')
		return 1;
	/* "key-x" or "key.x" sort first: ask about "key/" itself. */
	pre = malloc(klen + 2);
	if (!pre)
		return -ENOMEM;
	memcpy(pre, key, klen);
	pre[klen] = '/';
	rc = be->next(be->self, pre, klen + 1, NULL, 0, s->kbuf, &n, &r);
	free(pre);
	if (rc)
		return rc == -ENOENT ? 0 : rc;
	be->release(be->self, &r);
	return 1;
}

int ctl_sess_put_meta(struct ctl_sess *s, const char *key, size_t klen, struct kv_meta *m)
{
	const struct ctl_backend *be = s->be;
	struct ctl_rec r;
	int64_t now = be->now_ns(be->self);
	size_t i;
	int rc;

	if (klen && key[klen - 1] == '/')
		return -EISDIR; /* a directory marker key (see store/key.h) */
	/* Overwriting a key (the common case) takes one hash lookup. */
	rc = be->get(be->self, key, klen, &r);
	if (rc == 0)
		return existing_meta(be, &r, m, now);
	if (rc != -ENOENT)
		return rc;
	rc = has_children(s, key, klen);
	if (rc)
		return rc < 0 ? rc : -EISDIR;

	/* A new key must not live under a file ("a" is a file and the key is
	 * "a/b"), or the mount could not show it. */
	for (i = 0; i < klen; i++) {
		if (key[i] != '/')
			continue;
		if (be->get(be->self, key, i, &r) == 0) {
			int isdir = S_ISDIR(r.meta.mode);

			be->release(be->self, &r);
			if (!isdir)
				return -ENOTDIR;
		}
	}
	memset(m, 0, sizeof *m);
	m->mode = S_IFREG | 0644;
	m->uid = s->uid;
	m->gid = s->gid;
	m->mtime_ns = m->ctime_ns = now;
	return 0;
}

/* ---- driving -------------------------------------------------------------- */

int ctl_sess_want_input(const struct ctl_sess *s)
{
	return !s->close_after_flush && s->npending < CTL_PIPELINE_MAX && !s->barrier_wait &&
	       ctl_buf_size(&s->out) < CTL_OUT_HIGH;
}

static void reject_conn(struct ctl_sess *s)
{
	if (s->proto == CTL_PROTO_JSON)
		ctl_json_error(&s->out, -EUSERS, "max number of clients reached", NULL);
	else
		resp_error(&s->out, "ERR max number of clients reached");
	s->close_after_flush = 1;
}

void ctl_sess_process(struct ctl_sess *s)
{
	if (s->in_process || s->dead)
		return;
	s->in_process = 1;
	for (;;) {
		int rc;

		if (s->close_after_flush || s->barrier_wait || s->npending >= CTL_PIPELINE_MAX ||
		    ctl_buf_size(&s->out) >= CTL_OUT_HIGH)
			break;
		if (ctl_buf_size(&s->in) == 0)
			break;
		if (s->proto == CTL_PROTO_NONE) {
			/* One protocol per connection, told apart by the first
			 * byte (leading whitespace does not count). */
			char c = ctl_buf_head(&s->in)[0];

			if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
				ctl_buf_consume(&s->in, 1);
				continue;
			}
			s->proto = c == '{' ? CTL_PROTO_JSON : CTL_PROTO_RESP;
			if (s->reject) {
				reject_conn(s);
				break;
			}
		}
		cap_begin(s);
		rc = s->proto == CTL_PROTO_JSON ? ctl_json_step(s) : ctl_redis_step(s);
		cap_end(s);
		if (rc != CTL_STEP_DONE)
			break;
	}
	if (ctl_buf_size(&s->in) == 0)
		ctl_buf_shrink(&s->in);
	s->in_process = 0;
	maybe_release(s);
}

int ctl_sess_rbuf(struct ctl_sess *s, char **p, size_t *n)
{
	size_t want = 16 * 1024;
	int rc;

	/* A RESP parser that knows the size of the request being received
	 * lets us read a large value without repeated reallocation. */
	rc = ctl_buf_reserve(&s->in, want);
	if (rc)
		return rc;
	*p = s->in.data + s->in.len;
	*n = s->in.cap - s->in.len;
	return 0;
}

void ctl_sess_commit(struct ctl_sess *s, size_t n)
{
	s->in.len += n;
	s->data_gen++;
	ctl_sess_process(s);
}

int ctl_sess_feed(struct ctl_sess *s, const void *p, size_t n)
{
	int rc = ctl_buf_add(&s->in, p, n);

	if (rc)
		return rc;
	s->data_gen++;
	ctl_sess_process(s);
	return 0;
}

void ctl_sess_kill(struct ctl_sess *s)
{
	s->dead = 1;
	maybe_release(s);
}
