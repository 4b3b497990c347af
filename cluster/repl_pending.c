/*
 * repl_pending.c — the replication modes that this build does not offer yet.
 * Choosing one fails node_open() with -ENOTSUP and one clear log line, rather
 * than silently running standalone. Each function moves out of this file when
 * its mode lands.
 */
#include <errno.h>

#include "cluster/repl.h"
#include "store/log.h"

int repl_masterless_new(node *n, const struct node_config *cfg, void **self,
			const struct repl_ops **ops)
{
	(void)n; (void)cfg; (void)self; (void)ops;
	LOG(LOG_ERROR, "--mode masterless is not available in this build yet");
	return -ENOTSUP;
}
