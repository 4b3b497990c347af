/*
 * hbuf.h — large, short-lived buffers of recovery (a whole log segment, the
 * recovery table, its sort buffer), mapped directly and backed by
 * transparent huge pages where the kernel offers them.
 *
 * Why: recovery of a million keys touches some 150 MB of such buffers once.
 * With 4 KiB pages that is about 40,000 page faults, and on the virtual
 * machines we run on a fault costs several microseconds; with 2 MiB pages it
 * is under a hundred. The system's THP policy is usually "madvise", so malloc
 * memory does not get huge pages: these buffers ask for them explicitly.
 *
 * Memory is zero-filled (fresh anonymous pages). Not for small allocations:
 * every buffer is at least one mapping.
 */
#ifndef KVFS_HBUF_H
#define KVFS_HBUF_H

#include <stddef.h>

/* A zeroed buffer of at least size bytes, or NULL (errno not relied on). */
void *hbuf_alloc(size_t size);
/* Frees a buffer of hbuf_alloc(size) (the same size); NULL is a no-op. */
void  hbuf_free(void *p, size_t size);

#endif
