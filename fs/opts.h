/*
 * opts.h — the kvfs command line (SPEC §2), parsed into a plain struct so
 * that it can be unit-tested without mounting anything.
 */
#ifndef KVFS_FS_OPTS_H
#define KVFS_FS_OPTS_H

#include <stddef.h>

#include "cluster/node.h"

struct kvfs_opts {
	const char *mountpoint;
	const char *data_dir;    /* NULL: see opts_default_data() */
	const char *listen;
	const char *peers_arg;   /* as given: "A,B" */
	char      **peers;       /* split peers_arg, malloc'd (opts_free) */
	size_t      npeers;
	enum node_mode mode;
	int         mode_given;
	const char *control;
	const char *vectors;
	int         foreground;
	int         debug;
	char       *fuse_opts;   /* every -o joined by ',', malloc'd, or NULL */
	int         help;
	int         version;
};

/* Parses argv. Returns 0, or -EINVAL with a one-line reason in err. Accepts
 * "--flag VALUE" and "--flag=VALUE". Strings point into argv except peers
 * and fuse_opts, which opts_free() releases. */
int  opts_parse(int argc, char **argv, struct kvfs_opts *o, char *err, size_t errlen);
void opts_free(struct kvfs_opts *o);

/* The data directory used when --data is absent: $KVFS_DATA, else
 * $XDG_DATA_HOME/kvfs, else $HOME/.local/share/kvfs. Writes into buf;
 * returns 0 or -ENAMETOOLONG / -ENOENT (no HOME). */
int  opts_default_data(char *buf, size_t bufsz);

extern const char opts_usage[];

#endif
