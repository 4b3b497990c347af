/*
 * opts.c — command-line parsing for kvfs (see opts.h).
 */
#include "fs/opts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char opts_usage[] =
	"usage: kvfs MOUNTPOINT [--data DIR] [--listen HOST:PORT] [--peers HOST:PORT,...]\n"
	"            [--mode raft|masterless] [--control ADDR] [--vectors PATH] [-f] [-d]\n"
	"            [-o FUSE_OPTS]\n"
	"       kvfs --help | --version\n"
	"\n"
	"  MOUNTPOINT       an existing, empty directory\n"
	"  --data DIR       the node's data directory (created if missing); default\n"
	"                   $KVFS_DATA, else $XDG_DATA_HOME/kvfs, else ~/.local/share/kvfs\n"
	"  --listen H:P     this node's peer address (replicated modes)\n"
	"  --peers A,B      the other members' peer addresses; none: standalone node\n"
	"  --mode M         replication mode with --peers: raft (default) or masterless\n"
	"  --control ADDR   control socket, unix:PATH or HOST:PORT; default\n"
	"                   unix:DATA/control.sock; \"\" disables it\n"
	"  --vectors PATH   word-vector file for semantic search\n"
	"  -f               stay in the foreground (logs on stderr)\n"
	"  -d               foreground with FUSE request debugging\n"
	"  -o OPTS          FUSE mount options, e.g. allow_other,default_permissions\n"
	"\n"
	"Without -f, kvfs returns once the file system is mounted and logs to\n"
	"DATA/kvfs.log. Unmount with fusermount3 -u MOUNTPOINT (or SIGTERM).\n";

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Matches "--name VALUE" and "--name=VALUE"; advances *i over a separate value. */
static int take(int argc, char **argv, int *i, const char *name, const char **val,
		int *bad)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		*bad = 1;
		return 1;
	}
	*val = argv[++*i];
	return 1;
}

static int add_fuse_opt(struct kvfs_opts *o, const char *s)
{
	size_t old = o->fuse_opts ? strlen(o->fuse_opts) : 0;
	char *p = realloc(o->fuse_opts, old + strlen(s) + 2);

	if (!p)
		return -ENOMEM;
	if (old)
		p[old++] = ',';
	strcpy(p + old, s);
	o->fuse_opts = p;
	return 0;
}

static int split_peers(struct kvfs_opts *o, char *err, size_t errlen)
{
	const char *s = o->peers_arg;
	size_t cap = 1;

	for (const char *p = s; *p; p++)
		cap += *p == ',';
	o->peers = calloc(cap, sizeof(*o->peers));
	if (!o->peers)
		return -ENOMEM;
	while (*s) {
		const char *e = strchr(s, ',');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 0 || !memchr(s, ':', n))
			return fail(err, errlen, "--peers: expected HOST:PORT,... but got '%s'",
				    o->peers_arg);
		o->peers[o->npeers] = strndup(s, n);
		if (!o->peers[o->npeers])
			return -ENOMEM;
		o->npeers++;
		s += n + (e ? 1 : 0);
		if (e && !*s)
			return fail(err, errlen, "--peers: empty address in '%s'", o->peers_arg);
	}
	return 0;
}

int opts_parse(int argc, char **argv, struct kvfs_opts *o, char *err, size_t errlen)
{
	const char *mode = NULL;
	int rc;

	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		int bad = 0;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			o->help = 1;
		} else if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
			o->version = 1;
		} else if (!strcmp(a, "-f") || !strcmp(a, "--foreground")) {
			o->foreground = 1;
		} else if (!strcmp(a, "-d") || !strcmp(a, "--debug")) {
			o->foreground = 1;
			o->debug = 1;
		} else if (!strncmp(a, "-o", 2)) {
			v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
			if (!v || !*v)
				return fail(err, errlen, "option -o needs a value");
			if ((rc = add_fuse_opt(o, v)))
				return rc;
		} else if (take(argc, argv, &i, "--data", &o->data_dir, &bad) ||
			   take(argc, argv, &i, "--listen", &o->listen, &bad) ||
			   take(argc, argv, &i, "--peers", &o->peers_arg, &bad) ||
			   take(argc, argv, &i, "--mode", &mode, &bad) ||
			   take(argc, argv, &i, "--control", &o->control, &bad) ||
			   take(argc, argv, &i, "--vectors", &o->vectors, &bad)) {
			if (bad)
				return fail(err, errlen, "option %s needs a value", a);
		} else if (a[0] == '-' && a[1] != '\0') {
			return fail(err, errlen, "unknown option '%s' (see kvfs --help)", a);
		} else if (!o->mountpoint) {
			o->mountpoint = a;
		} else {
			return fail(err, errlen, "unexpected argument '%s' (one MOUNTPOINT only)", a);
		}
	}
	if (o->help || o->version)
		return 0;
	if (!o->mountpoint)
		return fail(err, errlen, "missing MOUNTPOINT (see kvfs --help)");
	if (o->data_dir && !*o->data_dir)
		return fail(err, errlen, "--data: empty directory name");
	if (mode) {
		if (!strcmp(mode, "raft"))
			o->mode = NODE_RAFT;
		else if (!strcmp(mode, "masterless"))
			o->mode = NODE_MASTERLESS;
		else if (!strcmp(mode, "standalone"))
			o->mode = NODE_STANDALONE;
		else
			return fail(err, errlen, "--mode: expected raft or masterless, got '%s'", mode);
		o->mode_given = 1;
	}
	if (o->peers_arg && *o->peers_arg) {
		if ((rc = split_peers(o, err, errlen)))
			return rc;
		if (!mode)
			o->mode = NODE_RAFT;
		if (o->mode == NODE_STANDALONE)
			return fail(err, errlen, "--mode standalone cannot be used with --peers");
	}
	/* A replicated node needs its own peer address (membership is listen
	 * plus peers); a one-member Raft cluster is allowed. */
	if (o->mode != NODE_STANDALONE && !o->listen)
		return fail(err, errlen, "--mode %s needs --listen HOST:PORT (this node's peer address)",
			    o->mode == NODE_RAFT ? "raft" : "masterless");
	if (o->mode == NODE_STANDALONE && o->listen)
		return fail(err, errlen, "--listen needs --peers or --mode (a standalone node has no peer address)");
	if (o->listen && !strchr(o->listen, ':'))
		return fail(err, errlen, "--listen: expected HOST:PORT, got '%s'", o->listen);
	return 0;
}

void opts_free(struct kvfs_opts *o)
{
	for (size_t i = 0; i < o->npeers; i++)
		free(o->peers[i]);
	free(o->peers);
	free(o->fuse_opts);
	o->peers = NULL;
	o->fuse_opts = NULL;
	o->npeers = 0;
}

int opts_default_data(char *buf, size_t bufsz)
{
	const char *e = getenv("KVFS_DATA");
	int n;

	if (e && *e)
		n = snprintf(buf, bufsz, "%s", e);
	else if ((e = getenv("XDG_DATA_HOME")) && *e)
		n = snprintf(buf, bufsz, "%s/kvfs", e);
	else if ((e = getenv("HOME")) && *e)
		n = snprintf(buf, bufsz, "%s/.local/share/kvfs", e);
	else
		return -ENOENT;
	return n < 0 || (size_t)n >= bufsz ? -ENAMETOOLONG : 0;
}
