/*
 * test_ctl.c — the control-socket engine (ctl_sess + JSON lines + RESP)
 * against an in-memory fake node whose writes complete only when the test
 * says so, so that ordering, pipelining and durability-before-reply are
 * visible. No sockets here; tests/integration/ctl_* use real ones.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <jansson.h>

#include "cluster/ctl_sess.h"
#include "search/search.h"

/* ---- the fake node -------------------------------------------------------- */

struct fkey {
	char          *key;
	size_t         klen;
	char          *val;
	size_t         vlen;
	struct kv_meta meta;
	uint64_t       version;
};

struct fwrite {
	struct kv_op  *ops;
	uint32_t       n;
	ctl_done_fn    done;
	void          *arg;
	int            is_barrier;
	struct fwrite *next;
};

struct fake {
	struct fkey   *keys;
	size_t         nkeys;
	uint64_t       lsn;
	struct fwrite *qhead, *qtail;
	int            fail_next;     /* status for the next completed write */
	int            raft;          /* ask for read barriers */
	int            barrier_fail;  /* status for the next completed barrier */
	unsigned       writes, barriers;
	int            search_ok;
};

static int kcmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

static long find(struct fake *f, const char *k, size_t kl, int *found)
{
	size_t lo = 0, hi = f->nkeys;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = kcmp(f->keys[mid].key, f->keys[mid].klen, k, kl);

		if (c == 0) {
			*found = 1;
			return (long)mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return (long)lo;
}

static void apply(struct fake *f, const struct kv_op *op)
{
	int found;
	long i = find(f, op->key, op->klen, &found);

	if (op->kind == KV_DEL) {
		if (!found)
			return;
		free(f->keys[i].key);
		free(f->keys[i].val);
		memmove(&f->keys[i], &f->keys[i + 1], (f->nkeys - (size_t)i - 1) * sizeof *f->keys);
		f->nkeys--;
		return;
	}
	if (!found) {
		f->keys = realloc(f->keys, (f->nkeys + 1) * sizeof *f->keys);
		memmove(&f->keys[i + 1], &f->keys[i], (f->nkeys - (size_t)i) * sizeof *f->keys);
		f->nkeys++;
		f->keys[i].key = malloc(op->klen + 1);
		memcpy(f->keys[i].key, op->key, op->klen);
		f->keys[i].klen = op->klen;
	} else {
		free(f->keys[i].val);
	}
	f->keys[i].val = malloc(op->vlen + 1);
	memcpy(f->keys[i].val, op->val, op->vlen);
	f->keys[i].vlen = op->vlen;
	f->keys[i].meta = op->meta;
	f->keys[i].version = f->lsn;
}

static void fill(struct fkey *k, struct ctl_rec *out)
{
	out->val = k->val;
	out->len = k->vlen;
	out->meta = k->meta;
	out->version = k->version;
	out->ref = NULL;
}

static int f_get(void *self, const char *key, size_t klen, struct ctl_rec *out)
{
	struct fake *f = self;
	int found;
	long i = find(f, key, klen, &found);

	if (!found)
		return -ENOENT;
	fill(&f->keys[i], out);
	return 0;
}

static int f_next(void *self, const char *prefix, size_t plen, const char *after, size_t alen,
		  char *keybuf, size_t *klen, struct ctl_rec *out)
{
	struct fake *f = self;
	int found;
	long i = after ? find(f, after, alen, &found) : find(f, prefix, plen, &found);

	if (after && found)
		i++;
	for (; (size_t)i < f->nkeys; i++) {
		struct fkey *k = &f->keys[i];

		if (k->klen < plen || memcmp(k->key, prefix, plen))
			return -ENOENT;
		memcpy(keybuf, k->key, k->klen);
		keybuf[k->klen] = 0;
		*klen = k->klen;
		fill(k, out);
		return 0;
	}
	return -ENOENT;
}

static void f_release(void *self, struct ctl_rec *r)
{
	(void)self;
	(void)r;
}

static uint64_t f_count(void *self)
{
	return ((struct fake *)self)->nkeys;
}

/* A simplified store/key.h key_check(). */
static int f_key_check(void *self, const char *k, size_t n)
{
	size_t i, comp = 0;

	(void)self;
	if (n == 0 || k[0] == '/')
		return -EINVAL;
	if (n > KV_KEY_MAX)
		return -ENAMETOOLONG;
	for (i = 0; i < n; i++) {
		if (k[i] == 0)
			return -EINVAL;
		if (k[i] == '/') {
			if (comp == 0)
				return -EINVAL;
			comp = 0;
		} else if (++comp > KV_NAME_MAX) {
			return -ENAMETOOLONG;
		}
	}
	for (i = 0; i < n; i++) {
		size_t e = i;

		while (e < n && k[e] != '/')
			e++;
		if ((e - i == 1 && k[i] == '.') || (e - i == 2 && k[i] == '.' && k[i + 1] == '.'))
			return -EINVAL;
		i = e;
	}
	if (n >= 7 && !memcmp(k, ".search", 7) && (n == 7 || k[7] == '/'))
		return -EINVAL;
	return 0;
}

static void enqueue(struct fake *f, struct fwrite *w)
{
	if (f->qtail)
		f->qtail->next = w;
	else
		f->qhead = w;
	f->qtail = w;
}

static void f_write(void *self, const struct kv_batch *b, ctl_done_fn done, void *arg)
{
	struct fake *f = self;
	struct fwrite *w = calloc(1, sizeof *w);
	uint32_t i;

	/* Copy the batch: the caller's buffers are gone after the call. */
	w->ops = calloc(b->n, sizeof *w->ops);
	w->n = b->n;
	for (i = 0; i < b->n; i++) {
		char *k = malloc(b->ops[i].klen + 1), *v = malloc(b->ops[i].vlen + 1);

		w->ops[i] = b->ops[i];
		memcpy(k, b->ops[i].key, b->ops[i].klen);
		if (b->ops[i].vlen)
			memcpy(v, b->ops[i].val, b->ops[i].vlen);
		w->ops[i].key = k;
		w->ops[i].val = v;
	}
	w->done = done;
	w->arg = arg;
	f->writes++;
	enqueue(f, w);
}

static int f_barrier_needed(void *self)
{
	return ((struct fake *)self)->raft;
}

static void f_barrier(void *self, ctl_done_fn done, void *arg)
{
	struct fake *f = self;
	struct fwrite *w = calloc(1, sizeof *w);

	w->is_barrier = 1;
	w->done = done;
	w->arg = arg;
	f->barriers++;
	enqueue(f, w);
}

static int f_search(void *self, const char *q, size_t qlen, const char *mode, size_t limit,
		    struct search_hit **hits, size_t *n)
{
	struct fake *f = self;
	size_t i;

	(void)limit;
	if (!f->search_ok)
		return -ENOTSUP;
	if (strcmp(mode, "hybrid") && strcmp(mode, "text"))
		return -EINVAL;
	/* Every key containing the query, scored by position. */
	*hits = calloc(f->nkeys + 1, sizeof **hits);
	*n = 0;
	for (i = 0; i < f->nkeys; i++) {
		if (!memmem(f->keys[i].val, f->keys[i].vlen, q, qlen))
			continue;
		(*hits)[*n].key = strndup(f->keys[i].key, f->keys[i].klen);
		(*hits)[*n].klen = f->keys[i].klen;
		(*hits)[*n].score = 1.0 / (double)(*n + 1);
		(*n)++;
	}
	return 0;
}

static void f_hits_free(void *self, struct search_hit *h, size_t n)
{
	size_t i;

	(void)self;
	for (i = 0; i < n; i++)
		free(h[i].key);
	free(h);
}

static void f_status(void *self, json_t *o)
{
	json_object_set_new(o, "role", json_string("standalone"));
	json_object_set_new(o, "keys", json_integer((json_int_t)((struct fake *)self)->nkeys));
}

static int64_t f_now(void *self)
{
	(void)self;
	return 1700000000LL * 1000000000LL;
}

/* Completes every queued write and barrier, in order (one group commit). */
static unsigned pump(struct fake *f)
{
	unsigned n = 0;

	while (f->qhead) {
		struct fwrite *w = f->qhead;
		int st = 0;
		uint32_t i;

		f->qhead = w->next;
		if (!f->qhead)
			f->qtail = NULL;
		if (!w->is_barrier) {
			st = f->fail_next;
			f->fail_next = 0;
			f->lsn++;
			for (i = 0; st == 0 && i < w->n; i++)
				apply(f, &w->ops[i]);
			for (i = 0; i < w->n; i++) {
				free((void *)w->ops[i].key);
				free((void *)w->ops[i].val);
			}
			free(w->ops);
		}
		if (w->is_barrier) {
			st = f->barrier_fail;
			f->barrier_fail = 0;
		}
		w->done(w->arg, st);
		free(w);
		n++;
	}
	return n;
}

static struct ctl_backend fake_be(struct fake *f)
{
	struct ctl_backend be = {
		.self = f, .get = f_get, .next = f_next, .release = f_release, .count = f_count,
		.key_check = f_key_check, .write = f_write, .barrier_needed = f_barrier_needed,
		.barrier = f_barrier, .search = f_search, .hits_free = f_hits_free,
		.status = f_status, .now_ns = f_now,
	};
	return be;
}

static void fake_free(struct fake *f)
{
	size_t i;

	pump(f);
	for (i = 0; i < f->nkeys; i++) {
		free(f->keys[i].key);
		free(f->keys[i].val);
	}
	free(f->keys);
}

/* ---- fixture ---------------------------------------------------------------- */

struct fx {
	struct fake        f;
	struct ctl_backend be;
	struct ctl_sess    s;
};

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof *x);

	x->be = fake_be(&x->f);
	ctl_sess_init(&x->s, &x->be);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	fake_free(&x->f);
	ctl_sess_free(&x->s);
	free(x);
	return 0;
}

static void feed(struct fx *x, const char *s)
{
	assert_int_equal(ctl_sess_feed(&x->s, s, strlen(s)), 0);
}

/* Takes the output so far as a NUL-terminated malloc'd string. */
static char *take(struct fx *x)
{
	size_t n = ctl_buf_size(&x->s.out);
	char *r = malloc(n + 1);

	if (n)
		memcpy(r, ctl_buf_head(&x->s.out), n);
	r[n] = 0;
	ctl_buf_consume(&x->s.out, n);
	return r;
}

static void expect(struct fx *x, const char *want)
{
	char *got = take(x);

	assert_string_equal(got, want);
	free(got);
}

/* Sends one JSON request, completes writes, returns the reply object. */
static json_t *jreq(struct fx *x, const char *line)
{
	json_error_t e;
	json_t *r;
	char *got;

	feed(x, line);
	feed(x, "\n");
	pump(&x->f);
	got = take(x);
	r = json_loads(got, 0, &e);
	if (!r)
		fail_msg("reply is not one JSON object: %s", got);
	assert_non_null(strchr(got, '\n'));
	assert_ptr_equal(strchr(got, '\n'), got + strlen(got) - 1); /* exactly one line */
	free(got);
	return r;
}

static const char *jerr(json_t *r)
{
	assert_true(json_is_false(json_object_get(r, "ok")));
	return json_string_value(json_object_get(json_object_get(r, "error"), "code"));
}

/* ---- RESP ------------------------------------------------------------------- */

static void resp_set_reply_waits_for_durability(void **state)
{
	struct fx *x = *state;

	feed(x, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
	expect(x, "");                  /* not durable yet: no reply, GET waits */
	assert_int_equal(x->f.writes, 1);
	pump(&x->f);
	expect(x, "+OK\r\n$1\r\nv\r\n"); /* in order, and GET sees the SET */
}

static void resp_pipelined_writes_share_one_commit(void **state)
{
	struct fx *x = *state;
	int i;

	for (i = 0; i < 16; i++)
		feed(x, "SET key v\r\n");
	feed(x, "PING\r\n");
	assert_int_equal(x->f.writes, 16); /* all handed over before any completes */
	expect(x, "");
	pump(&x->f);
	char *got = take(x);
	assert_int_equal(strlen(got), 16 * 5 + 7);
	assert_string_equal(got + 16 * 5, "+PONG\r\n");
	free(got);
}

static void resp_failed_write_gets_error_in_order(void **state)
{
	struct fx *x = *state;

	x->f.fail_next = -EROFS;
	feed(x, "SET a 1\r\nSET b 2\r\nEXISTS a b\r\n");
	pump(&x->f);
	expect(x, "-READONLY the node does not accept writes now (no leader, minority, or store failed)\r\n"
		  "+OK\r\n:1\r\n");
}

static void resp_every_command_round_trips(void **state)
{
	struct fx *x = *state;
	char *got;

	feed(x, "PING\r\nPING hi\r\nECHO \"a b\"\r\nSELECT 0\r\nSELECT 1\r\n");
	expect(x, "+PONG\r\n$2\r\nhi\r\n$3\r\na b\r\n+OK\r\n-ERR DB index is out of range\r\n");
	feed(x, "MSET a/1 x a/2 yy b z\r\n");
	pump(&x->f);
	expect(x, "+OK\r\n");
	assert_int_equal(x->f.writes, 1); /* MSET is one atomic batch */
	feed(x, "MGET a/1 nope a/2\r\nDBSIZE\r\nEXISTS a/1 a/1 q\r\nSTRLEN a/2\r\nTYPE b\r\nTTL b\r\n");
	expect(x, "*3\r\n$1\r\nx\r\n$-1\r\n$2\r\nyy\r\n:3\r\n:2\r\n:2\r\n+string\r\n:-1\r\n");
	feed(x, "KEYS a/*\r\n");
	expect(x, "*2\r\n$3\r\na/1\r\n$3\r\na/2\r\n");
	feed(x, "DEL a/1 nope a/1\r\n");
	pump(&x->f);
	expect(x, ":1\r\n");
	feed(x, "DEL nope\r\nGET a/1\r\nSET b q NX\r\nSET c q XX\r\nSET b q XX\r\nGET b\r\n");
	pump(&x->f);
	expect(x, ":0\r\n$-1\r\n$-1\r\n$-1\r\n+OK\r\n$1\r\nq\r\n");
	feed(x, "SET k v EX 10\r\nFLUSHALL\r\nGET\r\n");
	expect(x, "-ERR kvfs keys do not expire (EX/PX/KEEPTTL not supported)\r\n"
		  "-ERR unknown command 'FLUSHALL'\r\n"
		  "-ERR wrong number of arguments for 'get' command\r\n");
	feed(x, "CONFIG GET save\r\nCOMMAND COUNT\r\nCOMMAND DOCS\r\nCLIENT SETNAME x\r\n");
	got = take(x);
	assert_non_null(strstr(got, "*0\r\n:"));
	assert_non_null(strstr(got, "\r\n*0\r\n+OK\r\n"));
	free(got);
	feed(x, "COMMAND\r\nCOMMAND INFO get nosuch\r\nINFO\r\n");
	got = take(x);
	assert_non_null(strstr(got, "$3\r\nget\r\n:2\r\n"));
	assert_non_null(strstr(got, "*-1\r\n"));
	assert_non_null(strstr(got, "redis_version:"));
	assert_non_null(strstr(got, "db0:keys=2"));
	free(got);
	feed(x, "INFO keyspace\r\nINFO nosuch\r\n");
	expect(x, "$44\r\n# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n\r\n$0\r\n\r\n");
	feed(x, "HELLO 3\r\nHELLO 2\r\n");
	got = take(x);
	assert_memory_equal(got, "-NOPROTO", 8);
	assert_non_null(strstr(got, "*12\r\n$6\r\nserver\r\n$5\r\nredis\r\n"));
	assert_non_null(strstr(got, "$5\r\nproto\r\n:2\r\n"));
	free(got);
	feed(x, "QUIT\r\nPING\r\n");
	expect(x, "+OK\r\n");
	assert_true(x->s.close_after_flush);
}

static void resp_refuses_keys_that_cannot_be_paths(void **state)
{
	struct fx *x = *state;
	char *got;

	feed(x, "SET /abs v\r\nSET a//b v\r\nSET .search/x v\r\nMSET ok 1 bad/ 2\r\n");
	got = take(x);
	assert_int_equal(x->f.writes, 0);
	assert_non_null(strstr(got, "-ERR invalid key"));
	free(got);
	/* A key under a file, and a file over a directory. */
	feed(x, "SET f v\r\nSET d/x v\r\nSET d-x v\r\nSET d.y v\r\nSET e-1 v\r\nSET g0 v\r\n");
	pump(&x->f);
	expect(x, "+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n");
	/* "d-x" and "d.y" sort between "d" and "d/x": the check must still
	 * find "d/x". "e" and "g" have only lookalike neighbours. */
	feed(x, "SET f/x v\r\nSET d v\r\nSET e v\r\nSET g v\r\nSET f v2\r\n");
	pump(&x->f);
	expect(x, "-ERR a parent of the key is a file\r\n-ERR key is a directory\r\n+OK\r\n+OK\r\n+OK\r\n");
}

static void resp_scan_visits_every_key_once(void **state)
{
	struct fx *x = *state;
	char cmd[64];
	int i, seen = 0, rounds = 0;

	for (i = 0; i < 25; i++) {
		snprintf(cmd, sizeof cmd, "SET k%02d v\r\n", i);
		feed(x, cmd);
	}
	feed(x, "SET other v\r\n");
	pump(&x->f);
	free(take(x));
	strcpy(cmd, "0");
	do {
		char line[128], *got, *p;
		struct resp_parser rp;

		snprintf(line, sizeof line, "SCAN %s MATCH k* COUNT 4\r\n", cmd);
		feed(x, line);
		got = take(x);
		/* reply: *2 $n cursor *m ($ key)... */
		memset(&rp, 0, sizeof rp);
		p = strstr(got, "\r\n$") + 3;
		p = strstr(p, "\r\n") + 2;
		snprintf(cmd, sizeof cmd, "%.*s", (int)(strstr(p, "\r\n") - p), p);
		for (p = got; (p = strstr(p, "$3\r\nk")); p++)
			seen++;
		free(got);
		assert_true(++rounds < 20);
	} while (strcmp(cmd, "0"));
	assert_int_equal(seen, 25);
	feed(x, "SCAN 999\r\nSCAN x\r\n");
	expect(x, "-ERR invalid cursor (expired or from another connection)\r\n-ERR invalid cursor\r\n");
}

static void resp_input_split_at_every_byte_gives_same_replies(void **state)
{
	struct fx *x = *state;
	static const char script[] =
		"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$3\r\nv\0x\r\n"
		"GET k1\r\n"
		"*5\r\n$4\r\nMSET\r\n$2\r\nk2\r\n$0\r\n\r\n$2\r\nk3\r\n$1\r\n3\r\n"
		"*4\r\n$4\r\nMGET\r\n$2\r\nk1\r\n$2\r\nk2\r\n$2\r\nk3\r\n"
		"\r\nPING\r\n*2\r\n$3\r\nDEL\r\n$2\r\nk2\r\nEXISTS k1 k2 k3\r\n";
	size_t len = sizeof script - 1, i;
	char *whole;

	for (i = 0; i < len; i++)
		ctl_sess_feed(&x->s, script + i, 1), pump(&x->f);
	whole = take(x);
	assert_non_null(strstr(whole, "$3\r\nv\0x"));
	/* Same script, one shot, on a fresh session and store. */
	teardown(state);
	setup(state);
	x = *state;
	ctl_sess_feed(&x->s, script, len);
	pump(&x->f);
	pump(&x->f);
	char *one = take(x);
	assert_string_equal(one, whole);
	free(one);
	free(whole);
}

/* ---- JSON lines ---------------------------------------------------------- */

static void json_every_op_round_trips(void **state)
{
	struct fx *x = *state;
	json_t *r;

	r = jreq(x, "{\"op\":\"ping\",\"id\":1}");
	assert_true(json_is_true(json_object_get(r, "ok")));
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
	json_decref(r);

	r = jreq(x, "{\"op\":\"put\",\"key\":\"docs/a.txt\",\"value\":\"héllo\",\"id\":\"x\"}");
	assert_true(json_is_true(json_object_get(r, "ok")));
	assert_string_equal(json_string_value(json_object_get(r, "id")), "x");
	json_decref(r);

	r = jreq(x, "{\"op\":\"get\",\"key\":\"docs/a.txt\"}");
	assert_string_equal(json_string_value(json_object_get(r, "value")), "héllo");
	json_decref(r);

	r = jreq(x, "{\"op\":\"stat\",\"key\":\"docs/a.txt\"}");
	assert_int_equal(json_integer_value(json_object_get(r, "size")), 6);
	assert_int_equal(json_integer_value(json_object_get(r, "mode")), S_IFREG | 0644);
	assert_string_equal(json_string_value(json_object_get(r, "type")), "file");
	assert_true(json_integer_value(json_object_get(r, "mtime_ns")) > 0);
	json_decref(r);

	r = jreq(x, "{\"op\":\"stat\",\"key\":\"docs\"}");
	assert_string_equal(json_string_value(json_object_get(r, "type")), "dir");
	json_decref(r);

	r = jreq(x, "{\"op\":\"batch\",\"ops\":[{\"op\":\"put\",\"key\":\"docs/b\",\"value\":\"bee\"},"
		    "{\"op\":\"put\",\"key\":\"docs/c\",\"value_b64\":\"AAEC\"},{\"op\":\"delete\",\"key\":\"docs/a.txt\"}]}");
	assert_true(json_is_true(json_object_get(r, "ok")));
	assert_int_equal(json_integer_value(json_object_get(r, "n")), 3);
	json_decref(r);
	assert_int_equal(x->f.writes, 2);

	r = jreq(x, "{\"op\":\"get\",\"key\":\"docs/c\"}");
	assert_null(json_object_get(r, "value"));
	assert_string_equal(json_string_value(json_object_get(r, "value_b64")), "AAEC");
	json_decref(r);

	r = jreq(x, "{\"op\":\"list\",\"prefix\":\"docs/\",\"limit\":1}");
	assert_int_equal(json_array_size(json_object_get(r, "keys")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(r, "keys"), 0)), "docs/b");
	assert_string_equal(json_string_value(json_object_get(r, "cursor")), "docs/b");
	json_decref(r);
	r = jreq(x, "{\"op\":\"list\",\"prefix\":\"docs/\",\"cursor\":\"docs/b\"}");
	assert_int_equal(json_array_size(json_object_get(r, "keys")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(r, "keys"), 0)), "docs/c");
	assert_true(json_is_null(json_object_get(r, "cursor")));
	json_decref(r);

	r = jreq(x, "{\"op\":\"delete\",\"key\":\"docs/b\"}");
	assert_true(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	r = jreq(x, "{\"op\":\"delete\",\"key\":\"docs/b\"}");
	assert_string_equal(jerr(r), "not_found");
	json_decref(r);
	r = jreq(x, "{\"op\":\"get\",\"key\":\"docs/b\",\"id\":[1,2]}");
	assert_string_equal(jerr(r), "not_found");
	assert_true(json_is_array(json_object_get(r, "id")));
	json_decref(r);

	r = jreq(x, "{\"op\":\"search\",\"query\":\"x\"}");
	assert_string_equal(jerr(r), "unavailable");
	json_decref(r);
	x->f.search_ok = 1;
	json_decref(jreq(x, "{\"op\":\"put\",\"key\":\"t1\",\"value\":\"python coding\"}"));
	r = jreq(x, "{\"op\":\"search\",\"query\":\"coding\",\"mode\":\"text\",\"limit\":5}");
	assert_int_equal(json_array_size(json_object_get(r, "results")), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(r, "results"), 0), "key")), "t1");
	assert_true(json_is_real(json_object_get(json_array_get(json_object_get(r, "results"), 0), "score")));
	json_decref(r);
	{
		/* A key that is not UTF-8 (set over RESP or the mount) comes
		 * back base64-encoded instead of being left out. */
		struct kv_op op = { .kind = KV_PUT, .key = "bad\xffname", .klen = 8,
				    .val = "more coding", .vlen = 11 };
		json_t *res, *h1;

		apply(&x->f, &op);
		r = jreq(x, "{\"op\":\"search\",\"query\":\"coding\",\"mode\":\"text\"}");
		res = json_object_get(r, "results");
		assert_int_equal(json_array_size(res), 2);
		h1 = json_array_get(res, 0);
		if (!json_object_get(h1, "key_b64"))
			h1 = json_array_get(res, 1);
		assert_string_equal(json_string_value(json_object_get(h1, "key_b64")), "YmFk/25hbWU=");
		assert_null(json_object_get(h1, "key"));
		json_decref(r);
	}
	r = jreq(x, "{\"op\":\"search\",\"query\":\"coding\",\"mode\":\"bogus\"}");
	assert_string_equal(jerr(r), "bad_request");
	json_decref(r);

	r = jreq(x, "{\"op\":\"status\",\"id\":9}");
	assert_string_equal(json_string_value(json_object_get(r, "role")), "standalone");
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 9);
	json_decref(r);
}

static void json_binary_values_round_trip(void **state)
{
	struct fx *x = *state;
	unsigned char bin[256];
	struct ctl_buf b = { 0 };
	char line[1024];
	json_t *r;
	void *dec;
	size_t n, i;

	for (i = 0; i < sizeof bin; i++)
		bin[i] = (unsigned char)i;
	ctl_b64_encode(&b, bin, sizeof bin);
	snprintf(line, sizeof line, "{\"op\":\"put\",\"key\":\"bin\",\"value_b64\":\"%.*s\"}", (int)b.len, b.data);
	json_decref(jreq(x, line));
	r = jreq(x, "{\"op\":\"get\",\"key\":\"bin\"}");
	const char *s = json_string_value(json_object_get(r, "value_b64"));
	assert_non_null(s);
	assert_int_equal(ctl_b64_decode(s, strlen(s), &dec, &n), 0);
	assert_int_equal(n, sizeof bin);
	assert_memory_equal(dec, bin, n);
	free(dec);
	json_decref(r);
	/* The same bytes over RESP (another connection: one protocol each). */
	struct ctl_sess rs;
	ctl_sess_init(&rs, &x->be);
	ctl_sess_feed(&rs, "GET bin\r\n", 9);
	assert_int_equal(ctl_buf_size(&rs.out), 6 + 256 + 2);
	assert_memory_equal(ctl_buf_head(&rs.out), "$256\r\n", 6);
	assert_memory_equal(ctl_buf_head(&rs.out) + 6, bin, 256);
	ctl_sess_free(&rs);
	/* Text forced to base64. */
	json_decref(jreq(x, "{\"op\":\"put\",\"key\":\"t\",\"value\":\"hi\"}"));
	r = jreq(x, "{\"op\":\"get\",\"key\":\"t\",\"b64\":true}");
	assert_string_equal(json_string_value(json_object_get(r, "value_b64")), "aGk=");
	json_decref(r);
	ctl_buf_free(&b);
}

static void json_malformed_requests_get_errors_and_session_survives(void **state)
{
	struct fx *x = *state;
	static const char *bad[] = {
		"{\"op\":\"put\",\"key\":",            /* truncated */
		"{\"op\":\"put\",\"key\":\"a\",\"value\":\"\xff\xfe\"}", /* invalid UTF-8 */
		"[1,2,3]",
		"\"just a string\"",
		"{\"op\":42}",
		"{\"op\":\"nope\"}",
		"{\"op\":\"put\",\"key\":5,\"value\":\"v\"}",
		"{\"op\":\"put\",\"key\":\"a\",\"value\":5}",
		"{\"op\":\"put\",\"key\":\"a\"}",
		"{\"op\":\"put\",\"key\":\"a\",\"value_b64\":\"***\"}",
		"{\"op\":\"put\",\"key\":\"a\",\"value\":\"x\",\"value_b64\":\"eA==\"}",
		"{\"op\":\"list\",\"limit\":-1}",
		"{\"op\":\"list\",\"limit\":0}",
		"{\"op\":\"list\",\"prefix\":7}",
		"{\"op\":\"batch\",\"ops\":[]}",
		"{\"op\":\"batch\",\"ops\":[{\"op\":\"frob\",\"key\":\"a\"}]}",
		"{\"op\":\"batch\",\"ops\":[5]}",
		"{\"op\":\"search\"}",
	};
	size_t i;
	json_t *r;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		r = jreq(x, bad[i]);
		assert_string_equal(jerr(r), "bad_request");
		json_decref(r);
	}
	r = jreq(x, "{\"op\":\"put\",\"key\":\"../etc\",\"value\":\"v\"}");
	assert_string_equal(jerr(r), "invalid_key");
	json_decref(r);
	r = jreq(x, "{\"op\":\"get\",\"key\":\"a\\u0000b\"}");
	assert_string_equal(jerr(r), "invalid_key");
	json_decref(r);
	assert_int_equal(x->f.writes, 0);
	r = jreq(x, "{\"op\":\"ping\"}");
	assert_true(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
}

static void json_pipelined_replies_keep_request_order(void **state)
{
	struct fx *x = *state;
	char *got, *p;
	int i;

	for (i = 0; i < 10; i++) {
		char line[128];

		snprintf(line, sizeof line, "{\"op\":\"put\",\"key\":\"k%d\",\"value\":\"%d\",\"id\":%d}\n", i, i, i);
		feed(x, line);
	}
	feed(x, "{\"op\":\"get\",\"key\":\"k9\",\"id\":10}\n{\"op\":\"ping\",\"id\":11}\n");
	assert_int_equal(x->f.writes, 10);
	expect(x, "");
	pump(&x->f);
	got = take(x);
	for (i = 0, p = got; i < 12; i++) {
		char want[32];

		snprintf(want, sizeof want, "\"id\":%d", i);
		p = strstr(p, want);
		assert_non_null(p);
	}
	assert_non_null(strstr(got, "\"value\":\"9\""));
	free(got);
}

static void reads_wait_for_a_barrier_in_raft_mode(void **state)
{
	struct fx *x = *state;

	x->f.raft = 1;
	feed(x, "GET a\r\nGET b\r\n");
	expect(x, "");
	assert_int_equal(x->f.barriers, 1); /* one barrier covers both */
	pump(&x->f);
	expect(x, "$-1\r\n$-1\r\n");
	feed(x, "GET a\r\n");
	pump(&x->f);
	expect(x, "$-1\r\n");
	assert_int_equal(x->f.barriers, 2);
}

/* A read barrier that fails (minority side, no leader) must fail the read:
 * answering from local state could return stale data. */
static void a_failed_barrier_fails_the_read_instead_of_serving_it(void **state)
{
	struct fx *x = *state;
	char *got;

	x->f.raft = 1;
	x->f.barrier_fail = -EROFS;
	feed(x, "GET a\r\nGET b\r\n");
	expect(x, "");
	pump(&x->f);
	got = take(x);
	/* The read that waited gets the error; the next one asks again (the
	 * fake completes that second barrier in the same pump) and answers. */
	assert_true(got[0] == '-');
	assert_non_null(strstr(got, "\r\n$-1\r\n"));
	assert_int_equal(strstr(got, "$-1") - got, strlen(got) - 5);
	free(got);
	assert_int_equal(x->f.barriers, 2);
}

static void a_failed_barrier_fails_a_json_get_with_read_only(void **state)
{
	struct fx *x = *state;
	char *got;

	x->f.raft = 1;
	x->f.barrier_fail = -EROFS;
	feed(x, "{\"op\":\"get\",\"key\":\"a\",\"id\":7}\n");
	pump(&x->f);
	got = take(x);
	assert_non_null(strstr(got, "\"ok\":false"));
	assert_non_null(strstr(got, "read_only"));
	assert_non_null(strstr(got, "\"id\":7"));
	free(got);
}

static void oversized_json_line_is_skipped_with_error(void **state)
{
	struct fx *x = *state;
	size_t chunk = 1 << 20, i;
	char *big = malloc(chunk);
	json_t *r;

	memset(big, 'x', chunk);
	feed(x, "{\"op\":\"put\",\"key\":\"a\",\"value\":\"");
	for (i = 0; i <= CTL_REQ_MAX / chunk; i++)
		ctl_sess_feed(&x->s, big, chunk);
	feed(x, "\"}\n");
	free(big);
	r = jreq(x, "");  /* a blank line: no reply of its own */
	assert_string_equal(jerr(r), "too_large");
	json_decref(r);
	r = jreq(x, "{\"op\":\"ping\"}");
	assert_true(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	assert_false(x->s.close_after_flush);
	assert_int_equal(x->f.writes, 0);
}

static void resp_errors_leave_the_connection_usable(void **state)
{
	struct fx *x = *state;
	size_t chunk = 1 << 20, i;
	char *big = malloc(chunk), hdr[64];

	feed(x, "*x\r\nPING\r\n*1\r\n$-7\r\nPING\r\n*2\r\n$3\r\nGET\r\n:1\r\nPING\r\n");
	expect(x, "-ERR Protocol error: invalid multibulk length\r\n+PONG\r\n"
		  "-ERR Protocol error: invalid bulk length\r\n+PONG\r\n"
		  "-ERR Protocol error: expected '$'\r\n+PONG\r\n");
	/* A value over CTL_VALUE_MAX is skipped as it streams in, not stored. */
	memset(big, 'x', chunk);
	snprintf(hdr, sizeof hdr, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%u\r\n", CTL_VALUE_MAX + 1);
	feed(x, hdr);
	expect(x, "-ERR Protocol error: request too large\r\n");
	for (i = 0; i < CTL_VALUE_MAX / chunk; i++)
		ctl_sess_feed(&x->s, big, chunk);
	assert_true(x->s.in.cap < 4 * chunk);
	feed(x, "x\r\nPING\r\n");
	expect(x, "+PONG\r\n");
	assert_int_equal(x->f.writes, 0);
	assert_false(x->s.close_after_flush);
	/* An absurd length ends the connection after the error. */
	feed(x, "*1\r\n$99999999999999\r\nPING\r\n");
	expect(x, "-ERR Protocol error: request too large\r\n");
	assert_true(x->s.close_after_flush);
	free(big);
}

static void random_bytes_never_crash_the_engine(void **state)
{
	struct fx *x = *state;
	unsigned seed = 20240601, round;
	char buf[512];

	/* A fixed-seed fuzz loop: random bytes, and random mutations of
	 * valid requests, on fresh sessions sharing one store. */
	for (round = 0; round < 3000; round++) {
		struct ctl_sess s;
		size_t n = (size_t)(rand_r(&seed) % sizeof buf), i;
		int mode = rand_r(&seed) % 3;

		if (mode == 0) {
			for (i = 0; i < n; i++)
				buf[i] = (char)rand_r(&seed);
		} else {
			const char *base = mode == 1 ?
				"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n*2\r\n$3\r\nGET\r\n$3\r\nkey\r\nMGET a b\r\n" :
				"{\"op\":\"batch\",\"ops\":[{\"op\":\"put\",\"key\":\"a/b\",\"value_b64\":\"AAEC\"}],\"id\":1}\n{\"op\":\"list\"}\n";
			n = strlen(base);
			memcpy(buf, base, n);
			for (i = 0; i < 4; i++)
				buf[rand_r(&seed) % n] = (char)rand_r(&seed);
		}
		ctl_sess_init(&s, &x->be);
		ctl_sess_feed(&s, buf, n);
		pump(&x->f);
		ctl_sess_free(&s);
	}
	feed(x, "PING\r\n");
	expect(x, "+PONG\r\n");
}

static int released;

static void on_release(struct ctl_sess *s)
{
	(void)s;
	released++;
}

static void killed_session_is_released_after_pending_writes(void **state)
{
	struct fx *x = *state;
	struct ctl_sess *s = calloc(1, sizeof *s);

	ctl_sess_init(s, &x->be);
	ctl_sess_feed(s, "SET a 1\r\n", 9);
	s->on_release = on_release;
	released = 0;
	ctl_sess_kill(s);
	assert_int_equal(released, 0);
	assert_int_equal(s->npending, 1);
	pump(&x->f); /* the write completes; its reply is dropped */
	assert_int_equal(s->npending, 0);
	assert_int_equal(released, 1);
	ctl_sess_free(s);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(resp_set_reply_waits_for_durability),
		T(resp_pipelined_writes_share_one_commit),
		T(resp_failed_write_gets_error_in_order),
		T(resp_every_command_round_trips),
		T(resp_refuses_keys_that_cannot_be_paths),
		T(resp_scan_visits_every_key_once),
		T(resp_input_split_at_every_byte_gives_same_replies),
		T(json_every_op_round_trips),
		T(json_binary_values_round_trip),
		T(json_malformed_requests_get_errors_and_session_survives),
		T(json_pipelined_replies_keep_request_order),
		T(reads_wait_for_a_barrier_in_raft_mode),
		T(a_failed_barrier_fails_the_read_instead_of_serving_it),
		T(a_failed_barrier_fails_a_json_get_with_read_only),
		T(oversized_json_line_is_skipped_with_error),
		T(resp_errors_leave_the_connection_usable),
		T(random_bytes_never_crash_the_engine),
		T(killed_session_is_released_after_pending_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
