/*
 * kvfs-cli — a shell client for a kvfs node's control socket (JSON lines).
 *
 *   kvfs-cli [--socket ADDR | --data DIR] COMMAND ...
 *     put KEY VALUE     (VALUE "-" reads standard input, binary-safe)
 *     get KEY           (writes the value's bytes to standard output)
 *     del KEY
 *     ls [PREFIX]       (one key per line)
 *     stat KEY          (the reply as JSON)
 *     search [--mode M] [--limit N] QUERY   ("score<TAB>key" per line, best first)
 *     status            (the reply as JSON)
 *     ping
 *
 * ADDR is "unix:PATH", "HOST:PORT" or a path. Default: $KVFS_SOCKET, else
 * ./control.sock; --data DIR means DIR/control.sock (the node's default).
 * Exit status: 0 ok, 1 the node answered with an error (e.g. not_found),
 * 2 usage or connection problems.
 */
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cluster/ctl_buf.h"

static const char usage[] =
	"usage: kvfs-cli [--socket ADDR | --data DIR] COMMAND\n"
	"  put KEY VALUE|-   get KEY   del KEY   ls [PREFIX]   stat KEY\n"
	"  search [--mode hybrid|text|tfidf|semantic|phrase] [--limit N] QUERY\n"
	"  status   ping\n"
	"ADDR: unix:PATH, HOST:PORT or a socket path; default $KVFS_SOCKET or ./control.sock\n";

static int sock_fd = -1;
static FILE *sock_in;

static int connect_to(const char *addr)
{
	const char *path = NULL;
	int fd;

	if (!strncmp(addr, "unix:", 5))
		path = addr + 5;
	else if (strchr(addr, '/') || !strrchr(addr, ':'))
		path = addr;
	if (path) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		if (strlen(path) >= sizeof sa.sun_path) {
			fprintf(stderr, "kvfs-cli: socket path too long: %s\n", path);
			return -1;
		}
		strcpy(sa.sun_path, path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
			fprintf(stderr, "kvfs-cli: cannot connect to %s: %s\n", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		return fd;
	}

	char host[256];
	const char *colon = strrchr(addr, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	size_t hl = (size_t)(colon - addr);
	int rc;

	if (addr[0] == '[' && hl >= 2 && colon[-1] == ']') {
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof host)
		hl = sizeof host - 1;
	memcpy(host, addr, hl);
	host[hl] = 0;
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc) {
		fprintf(stderr, "kvfs-cli: %s: %s\n", addr, gai_strerror(rc));
		return -1;
	}
	fd = -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	if (fd < 0)
		fprintf(stderr, "kvfs-cli: cannot connect to %s: %s\n", addr, strerror(errno));
	freeaddrinfo(res);
	return fd;
}

/* Sends one request and reads its one-line reply. */
static json_t *call(json_t *req)
{
	char *line = json_dumps(req, JSON_COMPACT), *reply = NULL;
	size_t len, cap = 0;
	ssize_t n;
	json_error_t e;
	json_t *r;

	if (!line) {
		fprintf(stderr, "kvfs-cli: out of memory\n");
		exit(2);
	}
	len = strlen(line);
	line[len] = '\n'; /* json_dumps leaves room for the NUL we overwrite */
	for (size_t off = 0; off < len + 1; off += (size_t)n) {
		n = write(sock_fd, line + off, len + 1 - off);
		if (n < 0 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n <= 0) {
			fprintf(stderr, "kvfs-cli: write: %s\n", strerror(errno));
			exit(2);
		}
	}
	free(line);
	n = getline(&reply, &cap, sock_in);
	if (n <= 0) {
		fprintf(stderr, "kvfs-cli: connection closed by the node\n");
		exit(2);
	}
	r = json_loadb(reply, (size_t)n, JSON_ALLOW_NUL, &e);
	free(reply);
	if (!r) {
		fprintf(stderr, "kvfs-cli: bad reply: %s\n", e.text);
		exit(2);
	}
	return r;
}

/* Prints the error of a failed reply; returns the exit status. */
static int check(json_t *r)
{
	json_t *e;

	if (json_is_true(json_object_get(r, "ok")))
		return 0;
	e = json_object_get(r, "error");
	fprintf(stderr, "kvfs-cli: %s: %s\n",
		json_string_value(json_object_get(e, "code")) ?: "error",
		json_string_value(json_object_get(e, "message")) ?: "");
	return 1;
}

static int read_all(FILE *f, struct ctl_buf *b)
{
	char tmp[65536];
	size_t n;

	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		if (ctl_buf_add(b, tmp, n))
			return -ENOMEM;
	return ferror(f) ? -EIO : 0;
}

static int cmd_put(const char *key, const char *val)
{
	json_t *req = json_pack("{s:s, s:s}", "op", "put", "key", key), *r, *v;
	struct ctl_buf b = { 0 };
	int rc;

	if (!strcmp(val, "-")) {
		if (read_all(stdin, &b)) {
			fprintf(stderr, "kvfs-cli: reading standard input failed\n");
			return 2;
		}
		v = json_stringn(b.data ? b.data : "", b.len);
		if (v && !memchr(b.data ? b.data : "", 0, b.len)) {
			json_object_set_new(req, "value", v);
		} else {
			struct ctl_buf e = { 0 };

			json_decref(v);
			ctl_b64_encode(&e, b.data ? b.data : "", b.len);
			json_object_set_new(req, "value_b64", json_stringn(e.data ? e.data : "", e.len));
			ctl_buf_free(&e);
		}
		ctl_buf_free(&b);
	} else {
		v = json_string(val);
		if (!v) {
			fprintf(stderr, "kvfs-cli: VALUE is not UTF-8; pass it on standard input with '-'\n");
			return 2;
		}
		json_object_set_new(req, "value", v);
	}
	r = call(req);
	rc = check(r);
	json_decref(req);
	json_decref(r);
	return rc;
}

static int cmd_get(const char *key)
{
	json_t *req = json_pack("{s:s, s:s}", "op", "get", "key", key), *r;
	const char *s;
	int rc;

	r = call(req);
	rc = check(r);
	if (rc == 0) {
		if ((s = json_string_value(json_object_get(r, "value")))) {
			fwrite(s, 1, json_string_length(json_object_get(r, "value")), stdout);
		} else if ((s = json_string_value(json_object_get(r, "value_b64")))) {
			void *d;
			size_t n;

			if (ctl_b64_decode(s, strlen(s), &d, &n) == 0) {
				fwrite(d, 1, n, stdout);
				free(d);
			} else {
				rc = 2;
			}
		}
	}
	json_decref(req);
	json_decref(r);
	return rc;
}

static int cmd_simple(const char *op, const char *key, int print)
{
	json_t *req = key ? json_pack("{s:s, s:s}", "op", op, "key", key) : json_pack("{s:s}", "op", op);
	json_t *r = call(req);
	int rc = check(r);

	if (rc == 0 && print) {
		json_object_del(r, "ok");
		json_dumpf(r, stdout, JSON_INDENT(2));
		putchar('\n');
	}
	json_decref(req);
	json_decref(r);
	return rc;
}

static int cmd_ls(const char *prefix)
{
	json_t *cursor = json_null(), *req, *r, *k;
	size_t i;
	int rc = 0;

	/* Pages of keys; the cursor is the last key of the previous page. */
	for (;;) {
		req = json_pack("{s:s, s:s, s:i, s:O}", "op", "list", "prefix", prefix, "limit", 1000,
				"cursor", cursor);
		r = call(req);
		json_decref(req);
		rc = check(r);
		if (rc) {
			json_decref(r);
			break;
		}
		json_array_foreach(json_object_get(r, "keys"), i, k)
			printf("%s\n", json_string_value(k));
		json_decref(cursor);
		cursor = json_incref(json_object_get(r, "cursor"));
		json_decref(r);
		if (!json_is_string(cursor))
			break;
	}
	json_decref(cursor);
	return rc;
}

static int cmd_search(int argc, char **argv)
{
	const char *mode = "hybrid", *q = NULL;
	long limit = 20;
	json_t *req, *r, *h;
	size_t i;
	int rc, a;

	for (a = 0; a < argc; a++) {
		if (!strcmp(argv[a], "--mode") && a + 1 < argc)
			mode = argv[++a];
		else if (!strcmp(argv[a], "--limit") && a + 1 < argc)
			limit = strtol(argv[++a], NULL, 10);
		else if (!q)
			q = argv[a];
		else {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (!q) {
		fputs(usage, stderr);
		return 2;
	}
	req = json_pack("{s:s, s:s, s:s, s:i}", "op", "search", "query", q, "mode", mode,
			"limit", (int)limit);
	r = call(req);
	rc = check(r);
	if (rc == 0)
		json_array_foreach(json_object_get(r, "results"), i, h)
			printf("%.4f\t%s\n", json_real_value(json_object_get(h, "score")),
			       json_string_value(json_object_get(h, "key")));
	json_decref(req);
	json_decref(r);
	return rc;
}

int main(int argc, char **argv)
{
	const char *addr = getenv("KVFS_SOCKET");
	char dbuf[4096];
	int a = 1, rc;

	if (!addr || !*addr)
		addr = "unix:control.sock";
	while (a < argc && argv[a][0] == '-' && argv[a][1] == '-') {
		if (!strcmp(argv[a], "--socket") && a + 1 < argc) {
			addr = argv[a + 1];
			a += 2;
		} else if (!strcmp(argv[a], "--data") && a + 1 < argc) {
			snprintf(dbuf, sizeof dbuf, "unix:%s/control.sock", argv[a + 1]);
			addr = dbuf;
			a += 2;
		} else if (!strcmp(argv[a], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (a >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	sock_fd = connect_to(addr);
	if (sock_fd < 0)
		return 2;
	sock_in = fdopen(dup(sock_fd), "r");
	if (!sock_in)
		return 2;

	const char *cmd = argv[a++];
	int left = argc - a;

	if (!strcmp(cmd, "put") && left == 2)
		rc = cmd_put(argv[a], argv[a + 1]);
	else if (!strcmp(cmd, "get") && left == 1)
		rc = cmd_get(argv[a]);
	else if ((!strcmp(cmd, "del") || !strcmp(cmd, "rm")) && left == 1)
		rc = cmd_simple("delete", argv[a], 0);
	else if (!strcmp(cmd, "ls") && left <= 1)
		rc = cmd_ls(left ? argv[a] : "");
	else if (!strcmp(cmd, "stat") && left == 1)
		rc = cmd_simple("stat", argv[a], 1);
	else if (!strcmp(cmd, "search"))
		rc = cmd_search(left, argv + a);
	else if (!strcmp(cmd, "status") && left == 0)
		rc = cmd_simple("status", NULL, 1);
	else if (!strcmp(cmd, "ping") && left == 0)
		rc = cmd_simple("ping", NULL, 0);
	else {
		fputs(usage, stderr);
		rc = 2;
	}
	fclose(sock_in);
	close(sock_fd);
	return rc;
}
