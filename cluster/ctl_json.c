/*
 * ctl_json.c — the JSON-lines protocol of the control socket: one request
 * object per line, one reply object per line, in request order.
 *
 *   {"op":"put","key":"a/b","value":"text"}          -> {"ok":true}
 *   {"op":"get","key":"a/b","id":7}                  -> {"ok":true,"id":7,"value":"text","version":12}
 *   {"op":"get","key":"nope"}                        -> {"ok":false,"error":{"code":"not_found","message":"..."}}
 *
 * Binary values travel as base64 in "value_b64" (requests and replies); a
 * get reply carries "value" when the value is valid UTF-8, else "value_b64"
 * ("b64":true in the request forces base64).
 */
#include "cluster/ctl_sess.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "search/search.h"

/* ---- output --------------------------------------------------------------- */

static int dump_cb(const char *buf, size_t size, void *data)
{
	return ctl_buf_add(data, buf, size) ? -1 : 0;
}

void ctl_json_emit(struct ctl_buf *out, json_t *obj)
{
	size_t mark = out->len;

	if (json_dump_callback(obj, dump_cb, out, JSON_COMPACT) ||
	    ctl_buf_add(out, "\n", 1)) {
		/* Out of memory half-way: take back the partial line so that
		 * the reply stream stays one object per line. */
		out->len = mark;
		ctl_buf_adds(out, "{\"ok\":false,\"error\":{\"code\":\"out_of_memory\",\"message\":\"reply too large\"}}\n");
	}
}

static void json_err(struct ctl_buf *out, const char *code, const char *msg, json_t *id)
{
	json_t *o = json_object(), *e = json_object();

	json_object_set_new(o, "ok", json_false());
	if (id)
		json_object_set(o, "id", id);
	json_object_set_new(e, "code", json_string(code));
	json_object_set_new(e, "message", json_string(msg));
	json_object_set_new(o, "error", e);
	ctl_json_emit(out, o);
	json_decref(o);
}

void ctl_json_error(struct ctl_buf *out, int err, const char *msg, json_t *id)
{
	json_err(out, ctl_err_code(err), msg ? msg : ctl_err_msg(err), id);
}

int ctl_json_read_gate(struct ctl_sess *s, json_t *id)
{
	int rc = ctl_sess_read_ready(s);

	if (rc > 0)
		return CTL_READ_GO;
	if (rc == 0)
		return CTL_STEP_STOP;
	ctl_json_error(&s->out, rc, NULL, id);
	return CTL_STEP_DONE;
}

static json_t *reply_new(json_t *id)
{
	json_t *o = json_object();

	json_object_set_new(o, "ok", json_true());
	if (id)
		json_object_set(o, "id", id);
	return o;
}

static void reply_send(struct ctl_sess *s, json_t *o)
{
	ctl_json_emit(&s->out, o);
	json_decref(o);
}

static void bad(struct ctl_sess *s, json_t *id, const char *fmt, const char *arg)
{
	char msg[256];

	snprintf(msg, sizeof msg, fmt, arg);
	json_err(&s->out, "bad_request", msg, id);
}

/* ---- request fields -------------------------------------------------------- */

/* Fetches a key field and checks it; on failure the error reply is queued
 * and -1 returned. */
static int get_key(struct ctl_sess *s, json_t *req, json_t *id, const char **k, size_t *klen)
{
	json_t *v = json_object_get(req, "key");
	char msg[256];
	int rc;

	if (!json_is_string(v)) {
		bad(s, id, "%s", v ? "\"key\" must be a string" : "missing \"key\"");
		return -1;
	}
	*k = json_string_value(v);
	*klen = json_string_length(v);
	rc = s->be->key_check(s->be->self, *k, *klen);
	if (rc) {
		snprintf(msg, sizeof msg, "invalid key (cannot be a file path): %s",
			 rc == -ENAMETOOLONG ? "key or path component too long" :
			 "keys are relative paths: no leading '/', no empty, '.' or '..' components, no NUL, not under .search/");
		json_err(&s->out, "invalid_key", msg, id);
		return -1;
	}
	return 0;
}

/* "value" (UTF-8 text) or "value_b64". *owned is set when *val was malloc'd. */
static int get_value(struct ctl_sess *s, json_t *req, json_t *id,
		     const void **val, size_t *vlen, void **owned)
{
	json_t *t = json_object_get(req, "value"), *b = json_object_get(req, "value_b64");
	void *p;
	int rc;

	*owned = NULL;
	if (t && b) {
		bad(s, id, "%s", "give \"value\" or \"value_b64\", not both");
		return -1;
	}
	if (t) {
		if (!json_is_string(t)) {
			bad(s, id, "%s", "\"value\" must be a string (use value_b64 for bytes)");
			return -1;
		}
		*val = json_string_value(t);
		*vlen = json_string_length(t);
	} else if (b) {
		if (!json_is_string(b)) {
			bad(s, id, "%s", "\"value_b64\" must be a base64 string");
			return -1;
		}
		rc = ctl_b64_decode(json_string_value(b), json_string_length(b), &p, vlen);
		if (rc) {
			if (rc == -ENOMEM)
				ctl_json_error(&s->out, rc, NULL, id);
			else
				bad(s, id, "%s", "\"value_b64\" is not valid base64");
			return -1;
		}
		*val = p;
		*owned = p;
	} else {
		bad(s, id, "%s", "missing \"value\" or \"value_b64\"");
		return -1;
	}
	if (*vlen > CTL_VALUE_MAX) {
		char msg[96];

		snprintf(msg, sizeof msg, "value larger than %u bytes", CTL_VALUE_MAX);
		json_err(&s->out, "too_large", msg, id);
		free(*owned);
		*owned = NULL;
		return -1;
	}
	return 0;
}

/* Optional non-negative integer field; -1 (error queued) on a wrong type. */
static int get_uint(struct ctl_sess *s, json_t *req, json_t *id, const char *name,
		    size_t dflt, size_t max, size_t *out)
{
	json_t *v = json_object_get(req, name);
	char msg[96];

	if (!v || json_is_null(v)) {
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		snprintf(msg, sizeof msg, "\"%s\" must be a non-negative integer", name);
		json_err(&s->out, "bad_request", msg, id);
		return -1;
	}
	*out = (size_t)json_integer_value(v) > max ? max : (size_t)json_integer_value(v);
	return 0;
}

/* Optional string field; -1 (error queued) on a wrong type. */
static int get_str(struct ctl_sess *s, json_t *req, json_t *id, const char *name,
		   const char **p, size_t *n)
{
	json_t *v = json_object_get(req, name);
	char msg[96];

	*p = NULL;
	*n = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(msg, sizeof msg, "\"%s\" must be a string", name);
		json_err(&s->out, "bad_request", msg, id);
		return -1;
	}
	*p = json_string_value(v);
	*n = json_string_length(v);
	return 0;
}

/* ---- ops ------------------------------------------------------------------- */

static int op_ping(struct ctl_sess *s, json_t *req, json_t *id)
{
	json_t *o = reply_new(id);

	(void)req;
	json_object_set_new(o, "pong", json_true());
	reply_send(s, o);
	return CTL_STEP_DONE;
}

static int op_put(struct ctl_sess *s, json_t *req, json_t *id)
{
	struct kv_op op = { .kind = KV_PUT };
	struct kv_batch b = { &op, 1 };
	struct ctl_reply r = { 0 };
	const char *k;
	const void *v;
	size_t klen, vlen;
	void *owned;
	int rc;

	if (get_key(s, req, id, &k, &klen) || get_value(s, req, id, &v, &vlen, &owned))
		return CTL_STEP_DONE;
	rc = ctl_sess_put_meta(s, k, klen, &op.meta);
	if (rc) {
		ctl_json_error(&s->out, rc, NULL, id);
		free(owned);
		return CTL_STEP_DONE;
	}
	op.key = k;
	op.klen = (uint32_t)klen;
	op.val = v;
	op.vlen = (uint32_t)vlen;
	r.json_ok = reply_new(id);
	ctl_sess_submit(s, &b, &r);
	free(owned);
	return CTL_STEP_DONE;
}

/* Deleting a directory marker ("a/b/") is rmdir: only when nothing is below. */
static int dir_empty(struct ctl_sess *s, const char *k, size_t klen)
{
	const struct ctl_backend *be = s->be;
	struct ctl_rec r;
	char *kb = malloc(KV_KEY_MAX + 2);
	size_t n;
	int rc;

	if (!kb)
		return -ENOMEM;
	rc = be->next(be->self, k, klen, k, klen, kb, &n, &r);
	free(kb);
	if (rc == 0) {
		be->release(be->self, &r);
		return -ENOTEMPTY;
	}
	return rc == -ENOENT ? 0 : rc;
}

/* A key that is not there but names a directory (its marker "k/" or keys
 * below it): -EISDIR, which says more than "not found". Else -ENOENT. */
static int names_dir(struct ctl_sess *s, const char *k, size_t klen)
{
	const struct ctl_backend *be = s->be;
	struct ctl_rec r;
	char *mk = malloc(klen + 2);
	int rc = -ENOENT;

	if (!mk)
		return -ENOMEM;
	memcpy(mk, k, klen);
	mk[klen] = '/';
	if (be->get(be->self, mk, klen + 1, &r) == 0) {
		be->release(be->self, &r);
		rc = -EISDIR;
	} else if (dir_empty(s, mk, klen + 1) == -ENOTEMPTY) {
		rc = -EISDIR;
	}
	free(mk);
	return rc;
}

static int op_delete(struct ctl_sess *s, json_t *req, json_t *id)
{
	int gate;
	const struct ctl_backend *be = s->be;
	struct kv_op op = { .kind = KV_DEL };
	struct kv_batch b = { &op, 1 };
	struct ctl_reply r = { 0 };
	struct ctl_rec rec;
	const char *k;
	size_t klen;
	int rc;

	if (get_key(s, req, id, &k, &klen))
		return CTL_STEP_DONE;
	/* The reply depends on existence, so earlier writes must land first. */
	if ((gate = ctl_json_read_gate(s, id)) != CTL_READ_GO)
		return gate;
	rc = be->get(be->self, k, klen, &rec);
	if (rc == 0)
		be->release(be->self, &rec);
	if (rc == 0 && k[klen - 1] == '/')
		rc = dir_empty(s, k, klen);
	if (rc == -ENOENT && k[klen - 1] != '/')
		rc = names_dir(s, k, klen);
	if (rc) {
		ctl_json_error(&s->out, rc, NULL, id);
		return CTL_STEP_DONE;
	}
	op.key = k;
	op.klen = (uint32_t)klen;
	r.json_ok = reply_new(id);
	ctl_sess_submit(s, &b, &r);
	return CTL_STEP_DONE;
}

static int op_batch(struct ctl_sess *s, json_t *req, json_t *id)
{
	json_t *ops = json_object_get(req, "ops"), *o;
	struct ctl_reply r = { 0 };
	struct kv_batch b;
	struct kv_op *kops = NULL;
	void **owned = NULL;
	size_t n, i, nowned = 0;
	int rc;

	if (!json_is_array(ops) || json_array_size(ops) == 0) {
		bad(s, id, "%s", "\"ops\" must be a non-empty array");
		return CTL_STEP_DONE;
	}
	n = json_array_size(ops);
	if (n > KV_BATCH_MAX) {
		json_err(&s->out, "too_large", "too many operations in one batch", id);
		return CTL_STEP_DONE;
	}
	kops = calloc(n, sizeof *kops);
	owned = calloc(n, sizeof *owned);
	if (!kops || !owned) {
		ctl_json_error(&s->out, -ENOMEM, NULL, id);
		goto out;
	}
	json_array_foreach(ops, i, o) {
		const char *opname, *k;
		const void *v;
		size_t klen, vlen;

		opname = json_string_value(json_object_get(o, "op"));
		if (!json_is_object(o) || !opname) {
			bad(s, id, "%s", "each of \"ops\" must be an object with an \"op\"");
			goto out;
		}
		if (get_key(s, o, id, &k, &klen))
			goto out;
		kops[i].key = k;
		kops[i].klen = (uint32_t)klen;
		if (!strcmp(opname, "put")) {
			if (get_value(s, o, id, &v, &vlen, &owned[nowned]))
				goto out;
			nowned++;
			rc = ctl_sess_put_meta(s, k, klen, &kops[i].meta);
			if (rc) {
				ctl_json_error(&s->out, rc, NULL, id);
				goto out;
			}
			kops[i].kind = KV_PUT;
			kops[i].val = v;
			kops[i].vlen = (uint32_t)vlen;
		} else if (!strcmp(opname, "delete") || !strcmp(opname, "del")) {
			kops[i].kind = KV_DEL;
		} else {
			bad(s, id, "batch op must be \"put\" or \"delete\", not \"%.64s\"", opname);
			goto out;
		}
	}
	b.ops = kops;
	b.n = (uint32_t)n;
	r.json_ok = reply_new(id);
	json_object_set_new(r.json_ok, "n", json_integer((json_int_t)n));
	ctl_sess_submit(s, &b, &r);
out:
	for (i = 0; owned && i < nowned; i++)
		free(owned[i]);
	free(owned);
	free(kops);
	return CTL_STEP_DONE;
}

static json_t *b64_string(const void *p, size_t n)
{
	struct ctl_buf t = { 0 };
	json_t *v = NULL;

	if (ctl_b64_encode(&t, p, n) == 0)
		v = json_stringn_nocheck(t.data ? t.data : "", t.len);
	ctl_buf_free(&t);
	return v;
}

static int op_get(struct ctl_sess *s, json_t *req, json_t *id)
{
	int gate;
	const struct ctl_backend *be = s->be;
	struct ctl_rec rec;
	const char *k;
	size_t klen;
	json_t *o, *v = NULL;
	int rc;

	if (get_key(s, req, id, &k, &klen))
		return CTL_STEP_DONE;
	if ((gate = ctl_json_read_gate(s, id)) != CTL_READ_GO)
		return gate;
	rc = be->get(be->self, k, klen, &rec);
	if (rc) {
		ctl_json_error(&s->out, rc, NULL, id);
		return CTL_STEP_DONE;
	}
	if (rec.len > CTL_VALUE_MAX) {
		be->release(be->self, &rec);
		json_err(&s->out, "too_large", "value larger than the control socket's limit; read it through the mount", id);
		return CTL_STEP_DONE;
	}
	o = reply_new(id);
	/* NUL bytes are valid UTF-8 but break many JSON parsers (jansson
	 * rejects \u0000 by default): such values go as base64 too. */
	if (!json_is_true(json_object_get(req, "b64")) && (!rec.len || !memchr(rec.val, 0, rec.len)))
		v = json_stringn(rec.len ? rec.val : "", rec.len);
	if (v)
		json_object_set_new(o, "value", v);
	else
		json_object_set_new(o, "value_b64", b64_string(rec.val, rec.len));
	json_object_set_new(o, "version", json_integer((json_int_t)rec.version));
	be->release(be->self, &rec);
	reply_send(s, o);
	return CTL_STEP_DONE;
}

static int op_list(struct ctl_sess *s, json_t *req, json_t *id)
{
	int gate;
	const struct ctl_backend *be = s->be;
	const char *pre, *cur;
	size_t plen, clen, limit, n = 0, klen;
	struct ctl_rec rec;
	json_t *o, *keys;
	char *kb;
	int rc = 0;

	if (get_str(s, req, id, "prefix", &pre, &plen) ||
	    get_str(s, req, id, "cursor", &cur, &clen) ||
	    get_uint(s, req, id, "limit", 1000, CTL_LIST_MAX, &limit))
		return CTL_STEP_DONE;
	if (limit == 0) {
		/* A page of nothing has no cursor to hand back. */
		bad(s, id, "%s", "\"limit\" must be at least 1");
		return CTL_STEP_DONE;
	}
	if ((gate = ctl_json_read_gate(s, id)) != CTL_READ_GO)
		return gate;
	if (clen == 0)
		cur = NULL;
	kb = malloc(KV_KEY_MAX + 2);
	if (!kb) {
		ctl_json_error(&s->out, -ENOMEM, NULL, id);
		return CTL_STEP_DONE;
	}
	o = reply_new(id);
	keys = json_array();
	json_object_set_new(o, "keys", keys);
	/* The cursor is the last key returned: the next page starts after it. */
	while (n < limit) {
		rc = be->next(be->self, pre ? pre : "", plen, cur, cur ? clen : 0, kb, &klen, &rec);
		if (rc)
			break;
		be->release(be->self, &rec);
		/* Keys that are not UTF-8 cannot be JSON strings; they stay
		 * reachable through the mount and RESP. */
		json_t *ks = json_stringn(kb, klen);
		if (ks) {
			json_array_append_new(keys, ks);
			n++;
		}
		json_object_set_new(o, "cursor", json_stringn_nocheck(kb, klen));
		cur = json_string_value(json_object_get(o, "cursor"));
		clen = klen;
	}
	if (rc == -ENOENT || (rc == 0 && cur &&
	    be->next(be->self, pre ? pre : "", plen, cur, clen, kb, &klen, &rec) == -ENOENT)) {
		json_object_set_new(o, "cursor", json_null());
		rc = 0;
	} else if (rc == 0) {
		/* A key exists after the cursor: next() took a reference. */
		be->release(be->self, &rec);
	}
	free(kb);
	if (rc) {
		json_decref(o);
		ctl_json_error(&s->out, rc, NULL, id);
		return CTL_STEP_DONE;
	}
	if (!json_object_get(o, "cursor"))
		json_object_set_new(o, "cursor", json_null());
	reply_send(s, o);
	return CTL_STEP_DONE;
}

static const char *type_name(uint32_t mode)
{
	return S_ISDIR(mode) ? "dir" : S_ISLNK(mode) ? "symlink" : "file";
}

static int op_stat(struct ctl_sess *s, json_t *req, json_t *id)
{
	int gate;
	const struct ctl_backend *be = s->be;
	struct ctl_rec rec;
	const char *k;
	size_t klen, n;
	json_t *o;
	int rc, implicit = 0;

	if (get_key(s, req, id, &k, &klen))
		return CTL_STEP_DONE;
	if ((gate = ctl_json_read_gate(s, id)) != CTL_READ_GO)
		return gate;
	rc = be->get(be->self, k, klen, &rec);
	if (rc == -ENOENT && k[klen - 1] != '/') {
		/* An implicit directory: some key lives below it. */
		char *pre = malloc(klen + 2), *kb = malloc(KV_KEY_MAX + 2);

		if (pre && kb) {
			memcpy(pre, k, klen);
			pre[klen] = '/';
			if (be->next(be->self, pre, klen + 1, NULL, 0, kb, &n, &rec) == 0) {
				be->release(be->self, &rec);
				implicit = 1;
				rc = 0;
			}
		}
		free(pre);
		free(kb);
	}
	if (rc) {
		ctl_json_error(&s->out, rc, NULL, id);
		return CTL_STEP_DONE;
	}
	o = reply_new(id);
	json_object_set_new(o, "key", json_stringn(k, klen));
	if (implicit) {
		json_object_set_new(o, "type", json_string("dir"));
		json_object_set_new(o, "implicit", json_true());
		json_object_set_new(o, "mode", json_integer(S_IFDIR | 0755));
		reply_send(s, o);
		return CTL_STEP_DONE;
	}
	json_object_set_new(o, "type", json_string(type_name(rec.meta.mode)));
	json_object_set_new(o, "size", json_integer((json_int_t)rec.len));
	json_object_set_new(o, "mode", json_integer(rec.meta.mode));
	json_object_set_new(o, "uid", json_integer(rec.meta.uid));
	json_object_set_new(o, "gid", json_integer(rec.meta.gid));
	json_object_set_new(o, "mtime", json_real((double)rec.meta.mtime_ns / 1e9));
	json_object_set_new(o, "ctime", json_real((double)rec.meta.ctime_ns / 1e9));
	json_object_set_new(o, "mtime_ns", json_integer(rec.meta.mtime_ns));
	json_object_set_new(o, "ctime_ns", json_integer(rec.meta.ctime_ns));
	json_object_set_new(o, "version", json_integer((json_int_t)rec.version));
	be->release(be->self, &rec);
	reply_send(s, o);
	return CTL_STEP_DONE;
}

static int op_search(struct ctl_sess *s, json_t *req, json_t *id)
{
	int gate;
	const struct ctl_backend *be = s->be;
	struct search_hit *hits = NULL;
	const char *q, *mode;
	size_t qlen, mlen, limit, n = 0, i;
	json_t *o, *res;
	int rc;

	if (get_str(s, req, id, "query", &q, &qlen) || get_str(s, req, id, "mode", &mode, &mlen) ||
	    get_uint(s, req, id, "limit", 0, 100000, &limit))
		return CTL_STEP_DONE;
	if (!q) {
		bad(s, id, "%s", "missing \"query\"");
		return CTL_STEP_DONE;
	}
	if ((gate = ctl_json_read_gate(s, id)) != CTL_READ_GO)
		return gate;
	rc = be->search(be->self, q, qlen, mode ? mode : "hybrid", limit, &hits, &n);
	if (rc == -EINVAL) {
		bad(s, id, "unknown search mode \"%.32s\" (hybrid, text, tfidf, semantic, phrase)",
		    mode ? mode : "");
		return CTL_STEP_DONE;
	}
	if (rc) {
		ctl_json_error(&s->out, rc, rc == -ENOTSUP ? "search is not available on this node" : NULL, id);
		return CTL_STEP_DONE;
	}
	o = reply_new(id);
	res = json_array();
	for (i = 0; i < n; i++) {
		json_t *h = json_object(), *ks = json_stringn(hits[i].key, hits[i].klen);

		/* A key that is not UTF-8 cannot be a JSON string: it travels
		 * as "key_b64", like a binary value. */
		if (ks)
			json_object_set_new(h, "key", ks);
		else if ((ks = b64_string(hits[i].key, hits[i].klen)))
			json_object_set_new(h, "key_b64", ks);
		else {
			json_decref(h);
			continue;
		}
		json_object_set_new(h, "score", json_real(hits[i].score));
		json_array_append_new(res, h);
	}
	be->hits_free(be->self, hits, n);
	json_object_set_new(o, "results", res);
	reply_send(s, o);
	return CTL_STEP_DONE;
}

static int op_status(struct ctl_sess *s, json_t *req, json_t *id)
{
	json_t *o = reply_new(id);

	(void)req;
	s->be->status(s->be->self, o);
	/* The backend may have written "ok" or "id"; keep ours. */
	json_object_set_new(o, "ok", json_true());
	if (id)
		json_object_set(o, "id", id);
	reply_send(s, o);
	return CTL_STEP_DONE;
}

static const struct {
	const char *name;
	int (*fn)(struct ctl_sess *s, json_t *req, json_t *id);
} json_ops[] = {
	{ "get", op_get },       { "put", op_put },       { "delete", op_delete },
	{ "del", op_delete },    { "batch", op_batch },   { "list", op_list },
	{ "stat", op_stat },     { "search", op_search }, { "status", op_status },
	{ "ping", op_ping },
};

static int exec(struct ctl_sess *s, json_t *req)
{
	json_t *id = json_object_get(req, "id");
	const char *op = json_string_value(json_object_get(req, "op"));
	size_t i;

	if (!op) {
		bad(s, id, "%s", "missing \"op\" (a string)");
		return CTL_STEP_DONE;
	}
	for (i = 0; i < sizeof json_ops / sizeof json_ops[0]; i++)
		if (!strcmp(op, json_ops[i].name))
			return json_ops[i].fn(s, req, id);
	bad(s, id, "unknown op \"%.64s\"", op);
	return CTL_STEP_DONE;
}

int ctl_json_step(struct ctl_sess *s)
{
	char *base = ctl_buf_head(&s->in), *nl;
	size_t avail = ctl_buf_size(&s->in), len, i;
	json_error_t jerr;
	json_t *req;
	int rc;

	nl = memchr(base + s->json_scan, '\n', avail - s->json_scan);
	if (!nl) {
		s->json_scan = avail;
		if (s->json_discard) {
			ctl_buf_consume(&s->in, avail);
			s->json_scan = 0;
		} else if (avail > CTL_REQ_MAX) {
			json_err(&s->out, "too_large", "request line longer than the limit (64 MiB)", NULL);
			s->json_discard = 1;
			ctl_buf_consume(&s->in, avail);
			s->json_scan = 0;
			return CTL_STEP_DONE;
		}
		return CTL_STEP_STOP;
	}
	len = (size_t)(nl - base);
	if (s->json_discard) {
		s->json_discard = 0;
		goto consume;
	}
	if (len > CTL_REQ_MAX) {
		json_err(&s->out, "too_large", "request line longer than the limit (64 MiB)", NULL);
		goto consume;
	}
	for (i = 0; i < len && (base[i] == ' ' || base[i] == '\t' || base[i] == '\r'); i++)
		;
	if (i == len)
		goto consume; /* blank line */
	req = json_loadb(base, len, JSON_ALLOW_NUL, &jerr);
	if (!req) {
		char msg[256];

		snprintf(msg, sizeof msg, "invalid JSON: %s", jerr.text);
		json_err(&s->out, "bad_request", msg, NULL);
		goto consume;
	}
	if (!json_is_object(req)) {
		json_err(&s->out, "bad_request", "a request must be a JSON object", NULL);
		json_decref(req);
		goto consume;
	}
	rc = exec(s, req);
	json_decref(req);
	if (rc == CTL_STEP_STOP) {
		s->json_scan = len; /* the line stays; find its end at once next time */
		return CTL_STEP_STOP;
	}
consume:
	ctl_buf_consume(&s->in, len + 1);
	s->json_scan = 0;
	return CTL_STEP_DONE;
}
