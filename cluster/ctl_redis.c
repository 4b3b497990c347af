/*
 * ctl_redis.c — the RESP2 side of the control socket: enough of the Redis
 * command set for redis-cli and redis-benchmark to work unchanged.
 *
 * Keys are kvfs keys (file paths under the mount); a key that cannot be a
 * path is refused with "-ERR invalid key ...". Writes reply after they are
 * durable. There are no expirations, databases other than 0, or non-string
 * types.
 */
#include "cluster/ctl_sess.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void ctl_redis_error(struct ctl_buf *out, int err, const char *msg)
{
	char line[320];

	if (err == -EROFS && !msg)
		snprintf(line, sizeof line, "READONLY %s", ctl_err_msg(err));
	else
		snprintf(line, sizeof line, "ERR %s", msg ? msg : ctl_err_msg(err));
	resp_error(out, line);
}

int ctl_redis_read_gate(struct ctl_sess *s)
{
	int rc = ctl_sess_read_ready(s);

	if (rc > 0)
		return CTL_READ_GO;
	if (rc == 0)
		return CTL_STEP_STOP;
	ctl_redis_error(&s->out, rc, NULL);
	return CTL_STEP_DONE;
}

/* Checks a key for a command; queues the error reply and returns -1 if bad. */
static int check_key(struct ctl_sess *s, const struct resp_arg *a)
{
	char msg[160];
	int rc = s->be->key_check(s->be->self, a->p, a->len);

	if (rc == 0)
		return 0;
	snprintf(msg, sizeof msg, "ERR invalid key (kvfs keys are file paths): %s",
		 rc == -ENAMETOOLONG ? "key or path component too long" :
			 "keys are relative paths: no leading '/', no empty, '.' or '..' components, no NUL, not under .search/");
	resp_error(&s->out, msg);
	return -1;
}

static int arg_is(const struct resp_arg *a, const char *s)
{
	size_t n = strlen(s);

	return a->len == n && !strncasecmp(a->p, s, n);
}

static int arg_ll(const struct resp_arg *a, long long *v)
{
	char tmp[32], *end;

	if (a->len == 0 || a->len >= sizeof tmp)
		return -1;
	memcpy(tmp, a->p, a->len);
	tmp[a->len] = 0;
	errno = 0;
	*v = strtoll(tmp, &end, 10);
	return errno || *end ? -1 : 0;
}

/* ---- commands -------------------------------------------------------------- */

typedef int (*cmd_fn)(struct ctl_sess *s, struct resp_arg *av, size_t ac);

static int c_ping(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	if (ac > 2)
		resp_error(&s->out, "ERR wrong number of arguments for 'ping' command");
	else if (ac == 2)
		resp_bulk(&s->out, av[1].p, av[1].len);
	else
		resp_simple(&s->out, "PONG");
	return CTL_STEP_DONE;
}

static int c_echo(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	(void)ac;
	resp_bulk(&s->out, av[1].p, av[1].len);
	return CTL_STEP_DONE;
}

static int c_quit(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	(void)av;
	(void)ac;
	resp_simple(&s->out, "OK");
	s->close_after_flush = 1;
	return CTL_STEP_DONE;
}

static int c_select(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	long long db;

	(void)ac;
	if (arg_ll(&av[1], &db))
		resp_error(&s->out, "ERR value is not an integer or out of range");
	else if (db != 0)
		resp_error(&s->out, "ERR DB index is out of range");
	else
		resp_simple(&s->out, "OK");
	return CTL_STEP_DONE;
}

static int c_get(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	const struct ctl_backend *be = s->be;
	struct ctl_rec r;
	int rc;

	(void)ac;
	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
		return gate;
	rc = be->get(be->self, av[1].p, av[1].len, &r);
	if (rc == -ENOENT || rc == -EINVAL || rc == -ENAMETOOLONG) {
		resp_nil(&s->out);
	} else if (rc) {
		ctl_redis_error(&s->out, rc, NULL);
	} else {
		if (r.len > CTL_VALUE_MAX)
			resp_error(&s->out, "ERR value larger than the control socket's limit; read it through the mount");
		else
			resp_bulk(&s->out, r.val, r.len);
		be->release(be->self, &r);
	}
	return CTL_STEP_DONE;
}

static int c_set(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	const struct ctl_backend *be = s->be;
	struct kv_op op = { .kind = KV_PUT };
	struct kv_batch b = { &op, 1 };
	struct ctl_reply r = { .resp_ok = "+OK\r\n" };
	int nx = 0, xx = 0, rc;
	size_t i;

	for (i = 3; i < ac; i++) {
		if (arg_is(&av[i], "NX")) {
			nx = 1;
		} else if (arg_is(&av[i], "XX")) {
			xx = 1;
		} else if (arg_is(&av[i], "EX") || arg_is(&av[i], "PX") || arg_is(&av[i], "EXAT") ||
			   arg_is(&av[i], "PXAT") || arg_is(&av[i], "KEEPTTL")) {
			resp_error(&s->out, "ERR kvfs keys do not expire (EX/PX/KEEPTTL not supported)");
			return CTL_STEP_DONE;
		} else {
			resp_error(&s->out, "ERR syntax error");
			return CTL_STEP_DONE;
		}
	}
	if ((nx && xx) || check_key(s, &av[1]))
		return nx && xx ? (resp_error(&s->out, "ERR syntax error"), CTL_STEP_DONE) : CTL_STEP_DONE;
	if (av[2].len > CTL_VALUE_MAX) {
		resp_error(&s->out, "ERR value too large for the control socket");
		return CTL_STEP_DONE;
	}
	if (nx || xx) {
		struct ctl_rec rec;

		/* The condition depends on earlier writes of this connection. */
		if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
			return gate;
		rc = be->get(be->self, av[1].p, av[1].len, &rec);
		if (rc == 0)
			be->release(be->self, &rec);
		if ((nx && rc == 0) || (xx && rc == -ENOENT)) {
			resp_nil(&s->out);
			return CTL_STEP_DONE;
		}
	}
	rc = ctl_sess_put_meta(s, av[1].p, av[1].len, &op.meta);
	if (rc) {
		ctl_redis_error(&s->out, rc, NULL);
		return CTL_STEP_DONE;
	}
	op.key = av[1].p;
	op.klen = (uint32_t)av[1].len;
	op.val = av[2].p;
	op.vlen = (uint32_t)av[2].len;
	ctl_sess_submit(s, &b, &r);
	return CTL_STEP_DONE;
}

static int c_mset(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	struct ctl_reply r = { .resp_ok = "+OK\r\n" };
	struct kv_batch b;
	struct kv_op *ops;
	size_t i, n = (ac - 1) / 2;
	int rc;

	if ((ac - 1) % 2) {
		resp_error(&s->out, "ERR wrong number of arguments for 'mset' command");
		return CTL_STEP_DONE;
	}
	if (n > KV_BATCH_MAX) {
		resp_error(&s->out, "ERR too many keys in one MSET");
		return CTL_STEP_DONE;
	}
	for (i = 0; i < n; i++) {
		if (check_key(s, &av[1 + 2 * i]))
			return CTL_STEP_DONE;
		if (av[2 + 2 * i].len > CTL_VALUE_MAX) {
			resp_error(&s->out, "ERR value too large for the control socket");
			return CTL_STEP_DONE;
		}
	}
	ops = calloc(n, sizeof *ops);
	if (!ops) {
		ctl_redis_error(&s->out, -ENOMEM, NULL);
		return CTL_STEP_DONE;
	}
	for (i = 0; i < n; i++) {
		rc = ctl_sess_put_meta(s, av[1 + 2 * i].p, av[1 + 2 * i].len, &ops[i].meta);
		if (rc) {
			char msg[96];

			snprintf(msg, sizeof msg, "%s (key %zu)", ctl_err_msg(rc), i + 1);
			ctl_redis_error(&s->out, rc, msg);
			free(ops);
			return CTL_STEP_DONE;
		}
		ops[i].kind = KV_PUT;
		ops[i].key = av[1 + 2 * i].p;
		ops[i].klen = (uint32_t)av[1 + 2 * i].len;
		ops[i].val = av[2 + 2 * i].p;
		ops[i].vlen = (uint32_t)av[2 + 2 * i].len;
	}
	b.ops = ops;
	b.n = (uint32_t)n;
	ctl_sess_submit(s, &b, &r);
	free(ops);
	return CTL_STEP_DONE;
}

static int c_del(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	const struct ctl_backend *be = s->be;
	struct ctl_reply r = { 0 };
	struct kv_batch b;
	struct kv_op *ops;
	struct ctl_rec rec;
	size_t i, j, n = 0;

	/* The reply counts existing keys, so earlier writes must land first. */
	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
		return gate;
	ops = calloc(ac - 1, sizeof *ops);
	if (!ops) {
		ctl_redis_error(&s->out, -ENOMEM, NULL);
		return CTL_STEP_DONE;
	}
	for (i = 1; i < ac; i++) {
		int dup = 0;

		if (be->get(be->self, av[i].p, av[i].len, &rec))
			continue;
		be->release(be->self, &rec);
		for (j = 0; j < n; j++)
			if (ops[j].klen == av[i].len && !memcmp(ops[j].key, av[i].p, av[i].len))
				dup = 1;
		if (dup)
			continue;
		ops[n].kind = KV_DEL;
		ops[n].key = av[i].p;
		ops[n].klen = (uint32_t)av[i].len;
		n++;
	}
	if (n == 0) {
		resp_int(&s->out, 0);
	} else {
		b.ops = ops;
		b.n = (uint32_t)n;
		r.resp_int = (long long)n;
		ctl_sess_submit(s, &b, &r);
	}
	free(ops);
	return CTL_STEP_DONE;
}

/* Whether key `a` exists (any lookup error counts as missing, as these
 * commands report it), and its value's length. */
static int key_size(struct ctl_sess *s, const struct resp_arg *a, size_t *len)
{
	const struct ctl_backend *be = s->be;
	struct ctl_rec rec;

	if (be->get(be->self, a->p, a->len, &rec))
		return 0;
	*len = rec.len;
	be->release(be->self, &rec);
	return 1;
}

static int c_exists(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	long long n = 0;
	size_t i, len;

	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
		return gate;
	for (i = 1; i < ac; i++)
		n += key_size(s, &av[i], &len);
	resp_int(&s->out, n);
	return CTL_STEP_DONE;
}

/* One MGET reply element; releases rec. */
static void mget_element(struct ctl_sess *s, struct ctl_rec *rec)
{
	if (rec->len > CTL_VALUE_MAX)
		resp_nil(&s->out);
	else
		resp_bulk(&s->out, rec->val, rec->len);
	s->be->release(s->be->self, rec);
}

/* MGET reads every key at one point between applied writes when the
 * backend can (an MSET is then seen whole or not at all), else one after
 * the other. */
static int c_mget(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	const struct ctl_backend *be = s->be;
	size_t i, n = ac - 1;
	const char **keys = NULL;
	size_t *klens = NULL;
	struct ctl_rec *recs = NULL;
	unsigned char *found = NULL;

	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
		return gate;
	if (be->get_many) {
		keys = malloc(n * sizeof *keys);
		klens = malloc(n * sizeof *klens);
		recs = malloc(n * sizeof *recs);
		found = malloc(n);
		if (!keys || !klens || !recs || !found) {
			resp_error(&s->out, "ERR out of memory");
			goto out;
		}
		for (i = 0; i < n; i++) {
			keys[i] = av[1 + i].p;
			klens[i] = av[1 + i].len;
		}
		if (be->get_many(be->self, n, keys, klens, recs, found)) {
			resp_error(&s->out, "ERR out of memory");
			goto out;
		}
		resp_array(&s->out, (long long)n);
		for (i = 0; i < n; i++) {
			if (found[i])
				mget_element(s, &recs[i]);
			else
				resp_nil(&s->out);
		}
		goto out;
	}
	resp_array(&s->out, (long long)n);
	for (i = 0; i < n; i++) {
		struct ctl_rec rec;

		if (be->get(be->self, av[1 + i].p, av[1 + i].len, &rec))
			resp_nil(&s->out);
		else
			mget_element(s, &rec);
	}
out:
	free(keys);
	free(klens);
	free(recs);
	free(found);
	return CTL_STEP_DONE;
}

static int c_strlen(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	size_t len;

	(void)ac;
	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
		return gate;
	resp_int(&s->out, key_size(s, &av[1], &len) ? (long long)len : 0);
	return CTL_STEP_DONE;
}

static int c_type(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	size_t len;

	(void)ac;
	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
		return gate;
	resp_simple(&s->out, key_size(s, &av[1], &len) ? "string" : "none");
	return CTL_STEP_DONE;
}

static int c_ttl(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	size_t len;

	(void)ac;
	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
		return gate;
	/* -1: exists and never expires; -2: no such key. */
	resp_int(&s->out, key_size(s, &av[1], &len) ? -1 : -2);
	return CTL_STEP_DONE;
}

static int c_dbsize(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	(void)av;
	(void)ac;
	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
		return gate;
	resp_int(&s->out, (long long)s->be->count(s->be->self));
	return CTL_STEP_DONE;
}

/* The literal part of a glob before its first special character, used as the
 * store prefix so that "user:*" does not walk every key. */
static size_t glob_prefix(const char *pat)
{
	size_t i;

	for (i = 0; pat[i]; i++)
		if (pat[i] == '*' || pat[i] == '?' || pat[i] == '[' || pat[i] == '\\')
			break;
	return i;
}

/* Walks keys after `after` matching `pat` (NULL = all), visiting at most
 * `budget` keys (0 = no limit); matches go to `keys` as bulk strings.
 * Returns the number of matches; *last holds the last visited key (malloc'd)
 * or NULL when the walk reached the end. */
static long long walk(struct ctl_sess *s, const char *pat, const char *after, size_t alen,
		      size_t budget, struct ctl_buf *keys, char **last, size_t *lastlen, int *err)
{
	const struct ctl_backend *be = s->be;
	size_t plen = pat ? glob_prefix(pat) : 0, klen, seen = 0;
	char *kb = malloc(KV_KEY_MAX + 2), *cur = NULL;
	struct ctl_rec rec;
	long long n = 0;
	int rc;

	*last = NULL;
	*err = 0;
	if (!kb) {
		*err = -ENOMEM;
		return 0;
	}
	for (;;) {
		if (budget && seen >= budget) {
			*last = cur;
			*lastlen = cur ? strlen(cur) : 0;
			cur = NULL;
			break;
		}
		rc = be->next(be->self, pat ? pat : "", plen, after, alen, kb, &klen, &rec);
		if (rc) {
			if (rc != -ENOENT)
				*err = rc;
			break;
		}
		be->release(be->self, &rec);
		seen++;
		if (!pat || fnmatch(pat, kb, 0) == 0) {
			resp_bulk(keys, kb, klen);
			n++;
		}
		free(cur);
		cur = strndup(kb, klen);
		if (!cur) {
			*err = -ENOMEM;
			break;
		}
		after = cur;
		alen = klen;
	}
	free(cur);
	free(kb);
	return n;
}

/* Copies a pattern argument into a C string (NULL for "*": everything). */
static char *pattern(const struct resp_arg *a)
{
	if (a->len == 1 && a->p[0] == '*')
		return NULL;
	return strndup(a->p, a->len);
}

static int c_keys(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	struct ctl_buf keys = { 0 };
	char *pat, *last;
	size_t lastlen;
	long long n;
	int err;

	(void)ac;
	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO)
		return gate;
	pat = pattern(&av[1]);
	n = walk(s, pat, NULL, 0, 0, &keys, &last, &lastlen, &err);
	if (err) {
		ctl_redis_error(&s->out, err, NULL);
	} else {
		resp_array(&s->out, n);
		ctl_buf_add(&s->out, keys.data, keys.len);
	}
	free(last);
	free(pat);
	ctl_buf_free(&keys);
	return CTL_STEP_DONE;
}

/* SCAN cursor [MATCH glob] [COUNT n] [TYPE t]: see struct ctl_scan_table. */
static int c_scan(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	int gate;
	struct ctl_scan_table *t = s->scan;
	struct ctl_scan_cursor *c = NULL;
	struct ctl_buf keys = { 0 };
	char *pat = NULL, *last = NULL, num[24];
	long long cur, count = 10, n;
	size_t i, lastlen = 0;
	int err, other_type = 0;

	if (arg_ll(&av[1], &cur) || cur < 0) {
		resp_error(&s->out, "ERR invalid cursor");
		return CTL_STEP_DONE;
	}
	for (i = 2; i < ac; i++) {
		if (arg_is(&av[i], "MATCH") && i + 1 < ac) {
			free(pat);
			pat = pattern(&av[++i]);
		} else if (arg_is(&av[i], "COUNT") && i + 1 < ac) {
			if (arg_ll(&av[++i], &count) || count < 1) {
				resp_error(&s->out, "ERR value is not an integer or out of range");
				goto out;
			}
		} else if (arg_is(&av[i], "TYPE") && i + 1 < ac) {
			other_type = !arg_is(&av[++i], "string");
		} else {
			resp_error(&s->out, "ERR syntax error");
			goto out;
		}
	}
	if (!t->c) {
		t->c = calloc(t->cap, sizeof *t->c);
		if (!t->c) {
			ctl_redis_error(&s->out, -ENOMEM, NULL);
			goto out;
		}
		if (!t->next)
			t->next = 1;
	}
	if (cur != 0) {
		for (i = 0; i < t->cap; i++)
			if (t->c[i].key && t->c[i].id == (uint64_t)cur)
				c = &t->c[i];
		if (!c) {
			resp_error(&s->out, "ERR invalid cursor (expired or from another connection)");
			goto out;
		}
	}
	if ((gate = ctl_redis_read_gate(s)) != CTL_READ_GO) {
		free(pat);
		return gate;
	}
	if (count > 100000)
		count = 100000;
	n = walk(s, pat, c ? c->key : NULL, c ? c->klen : 0, (size_t)count, &keys, &last, &lastlen, &err);
	if (err) {
		ctl_redis_error(&s->out, err, NULL);
		free(last);
		goto out;
	}
	if (c) {
		free(c->key);
		c->key = NULL;
	}
	if (last) {
		/* Reuse the oldest slot when the table is full. */
		struct ctl_scan_cursor *slot = &t->c[0];

		for (i = 0; i < t->cap; i++) {
			if (!t->c[i].key) {
				slot = &t->c[i];
				break;
			}
			if (t->c[i].id < slot->id)
				slot = &t->c[i];
		}
		free(slot->key);
		slot->key = last;
		slot->klen = lastlen;
		slot->id = t->next++;
		snprintf(num, sizeof num, "%llu", (unsigned long long)slot->id);
	} else {
		snprintf(num, sizeof num, "0");
	}
	resp_array(&s->out, 2);
	resp_bulk(&s->out, num, strlen(num));
	if (other_type) {
		resp_array(&s->out, 0);
	} else {
		resp_array(&s->out, n);
		ctl_buf_add(&s->out, keys.data, keys.len);
	}
out:
	free(pat);
	ctl_buf_free(&keys);
	return CTL_STEP_DONE;
}

static int c_info(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	const struct ctl_backend *be = s->be;
	struct ctl_buf t = { 0 };
	int all = ac < 2 || arg_is(&av[1], "all") || arg_is(&av[1], "default") ||
		  arg_is(&av[1], "everything");

	/* redis_version is what clients look at to pick features; 7.0 matches
	 * the RESP2 behaviour implemented here. */
	if (all || arg_is(&av[1], "server"))
		ctl_buf_printf(&t, "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n"
			       "kvfs_version:%s\r\nkvfs_role:%s\r\n\r\n",
#ifdef KVFS_VERSION
			       KVFS_VERSION,
#else
			       "dev",
#endif
			       be->role ? be->role(be->self) : "standalone");
	if (all || arg_is(&av[1], "persistence"))
		ctl_buf_printf(&t, "# Persistence\r\naof_enabled:1\r\nkvfs_durable_writes:1\r\n\r\n");
	if (all || arg_is(&av[1], "keyspace"))
		ctl_buf_printf(&t, "# Keyspace\r\ndb0:keys=%llu,expires=0,avg_ttl=0\r\n",
			       (unsigned long long)be->count(be->self));
	resp_bulk(&s->out, t.data ? t.data : "", t.len);
	ctl_buf_free(&t);
	return CTL_STEP_DONE;
}

static int c_config(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	(void)ac;
	/* redis-benchmark asks for "save" and "appendonly"; an empty answer
	 * means "not configurable here". */
	if (arg_is(&av[1], "GET"))
		resp_array(&s->out, 0);
	else if (arg_is(&av[1], "RESETSTAT"))
		resp_simple(&s->out, "OK");
	else
		resp_error(&s->out, "ERR CONFIG subcommand not supported by kvfs");
	return CTL_STEP_DONE;
}

static int c_client(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	(void)ac;
	if (arg_is(&av[1], "GETNAME"))
		resp_nil(&s->out);
	else if (arg_is(&av[1], "ID"))
		resp_int(&s->out, (long long)(uintptr_t)s % 1000000007);
	else
		resp_simple(&s->out, "OK"); /* SETNAME, SETINFO, NO-EVICT ...: accepted, ignored */
	return CTL_STEP_DONE;
}

/* HELLO [2 ...]: clients that probe for RESP3 fall back to RESP2 on NOPROTO. */
static int c_hello(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	static const char *const kv[] = { "server", "redis", "version", "7.0.0", "proto", NULL,
					  "mode", "standalone", "role", "master" };
	size_t i;

	if (ac > 1 && !arg_is(&av[1], "2")) {
		resp_error(&s->out, "NOPROTO sorry, this protocol version is not supported");
		return CTL_STEP_DONE;
	}
	resp_array(&s->out, 12);
	for (i = 0; i < sizeof kv / sizeof kv[0]; i++) {
		if (kv[i])
			resp_bulk(&s->out, kv[i], strlen(kv[i]));
		else
			resp_int(&s->out, 2);
	}
	resp_bulk(&s->out, "modules", 7);
	resp_array(&s->out, 0);
	return CTL_STEP_DONE;
}

static int c_command(struct ctl_sess *s, struct resp_arg *av, size_t ac);

struct cmd {
	const char *name;
	int         arity;   /* Redis convention: n exact, -n at least n */
	const char *flags;   /* for COMMAND: "write" / "readonly" / "fast" ... */
	int         first, last, step;
	cmd_fn      fn;
};

static const struct cmd cmds[] = {
	{ "get",     2,  "readonly fast", 1, 1, 1, c_get },
	{ "set",     -3, "write",         1, 1, 1, c_set },
	{ "ping",    -1, "fast",          0, 0, 0, c_ping },
	{ "mget",    -2, "readonly fast", 1, -1, 1, c_mget },
	{ "mset",    -3, "write",         1, -1, 2, c_mset },
	{ "del",     -2, "write",         1, -1, 1, c_del },
	{ "unlink",  -2, "write",         1, -1, 1, c_del },
	{ "exists",  -2, "readonly fast", 1, -1, 1, c_exists },
	{ "strlen",  2,  "readonly fast", 1, 1, 1, c_strlen },
	{ "type",    2,  "readonly fast", 1, 1, 1, c_type },
	{ "ttl",     2,  "readonly fast", 1, 1, 1, c_ttl },
	{ "pttl",    2,  "readonly fast", 1, 1, 1, c_ttl },
	{ "dbsize",  1,  "readonly fast", 0, 0, 0, c_dbsize },
	{ "scan",    -2, "readonly",      0, 0, 0, c_scan },
	{ "keys",    2,  "readonly",      0, 0, 0, c_keys },
	{ "echo",    2,  "fast",          0, 0, 0, c_echo },
	{ "info",    -1, "",              0, 0, 0, c_info },
	{ "select",  2,  "fast",          0, 0, 0, c_select },
	{ "config",  -2, "admin",         0, 0, 0, c_config },
	{ "client",  -2, "admin",         0, 0, 0, c_client },
	{ "command", -1, "",              0, 0, 0, c_command },
	{ "hello",   -1, "fast",          0, 0, 0, c_hello },
	{ "quit",    -1, "fast",          0, 0, 0, c_quit },
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

static const struct cmd *lookup(const struct resp_arg *a)
{
	size_t i;

	for (i = 0; i < NCMDS; i++)
		if (arg_is(a, cmds[i].name))
			return &cmds[i];
	return NULL;
}

static void command_info(struct ctl_buf *out, const struct cmd *c)
{
	const char *f = c->flags;
	size_t nf = 0;
	const char *p;

	for (p = f; *p; ) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		nf++;
		while (*p && *p != ' ')
			p++;
	}
	resp_array(out, 6);
	resp_bulk(out, c->name, strlen(c->name));
	resp_int(out, c->arity);
	resp_array(out, (long long)nf);
	for (p = f; *p; ) {
		const char *e;

		while (*p == ' ')
			p++;
		if (!*p)
			break;
		for (e = p; *e && *e != ' '; e++)
			;
		ctl_buf_printf(out, "+%.*s\r\n", (int)(e - p), p);
		p = e;
	}
	resp_int(out, c->first);
	resp_int(out, c->last);
	resp_int(out, c->step);
}

/* COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS [name...]. */
static int c_command(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	size_t i;

	if (ac == 1) {
		resp_array(&s->out, (long long)NCMDS);
		for (i = 0; i < NCMDS; i++)
			command_info(&s->out, &cmds[i]);
	} else if (arg_is(&av[1], "COUNT")) {
		resp_int(&s->out, (long long)NCMDS);
	} else if (arg_is(&av[1], "INFO")) {
		resp_array(&s->out, (long long)ac - 2);
		for (i = 2; i < ac; i++) {
			const struct cmd *c = lookup(&av[i]);

			if (c)
				command_info(&s->out, c);
			else
				resp_array(&s->out, -1);
		}
	} else if (arg_is(&av[1], "DOCS")) {
		/* redis-cli only uses the docs for hints; none is fine. */
		resp_array(&s->out, 0);
	} else {
		resp_error(&s->out, "ERR unknown COMMAND subcommand");
	}
	return CTL_STEP_DONE;
}

static int exec(struct ctl_sess *s, struct resp_arg *av, size_t ac)
{
	const struct cmd *c = lookup(&av[0]);
	char msg[160];

	if (!c) {
		snprintf(msg, sizeof msg, "ERR unknown command '%.*s'",
			 (int)(av[0].len > 64 ? 64 : av[0].len), av[0].p);
		resp_error(&s->out, msg);
		return CTL_STEP_DONE;
	}
	if ((c->arity > 0 && ac != (size_t)c->arity) || (c->arity < 0 && ac < (size_t)-c->arity)) {
		snprintf(msg, sizeof msg, "ERR wrong number of arguments for '%s' command", c->name);
		resp_error(&s->out, msg);
		return CTL_STEP_DONE;
	}
	return c->fn(s, av, ac);
}

int ctl_redis_step(struct ctl_sess *s)
{
	struct resp_arg *av;
	size_t ac, used, need;
	int rc;

	if (s->rp.discard || s->rp.skipline) {
		/* Dropping the rest of a failed request, without buffering it. */
		rc = resp_discard(&s->rp, ctl_buf_head(&s->in), ctl_buf_size(&s->in), &used);
		ctl_buf_consume(&s->in, used);
		if (rc == 0)
			return CTL_STEP_STOP;
		resp_parser_reset(&s->rp);
		return CTL_STEP_DONE;
	}
	rc = resp_parse(&s->rp, ctl_buf_head(&s->in), ctl_buf_size(&s->in),
			CTL_VALUE_MAX, CTL_REQ_MAX, &av, &ac, &used, &need);
	if (rc == 0) {
		/* Reserve the whole announced request once instead of growing
		 * the buffer chunk by chunk. */
		if (need > ctl_buf_size(&s->in))
			ctl_buf_reserve(&s->in, need - ctl_buf_size(&s->in));
		return CTL_STEP_STOP;
	}
	if (rc < 0) {
		char msg[160];

		snprintf(msg, sizeof msg, "ERR %s", rc == -ENOMEM ? "out of memory" : s->rp.err);
		resp_error(&s->out, msg);
		if (rc == -ENOMEM || rc == -EMSGSIZE) {
			/* Nothing sensible can follow: answer and close. */
			s->close_after_flush = 1;
			ctl_buf_consume(&s->in, ctl_buf_size(&s->in));
			resp_parser_reset(&s->rp);
			return CTL_STEP_STOP;
		}
		/* Malformed or over-limit: the connection goes on after the
		 * offending line or request (SPEC 5). */
		ctl_buf_consume(&s->in, used);
		if (!s->rp.discard && !s->rp.skipline)
			resp_parser_reset(&s->rp);
		return CTL_STEP_DONE;
	}
	if (ac > 0) {
		rc = exec(s, av, ac);
		if (rc == CTL_STEP_STOP)
			return CTL_STEP_STOP; /* the parsed request stays; it is re-run */
	}
	ctl_buf_consume(&s->in, used);
	resp_parser_reset(&s->rp);
	return CTL_STEP_DONE;
}
