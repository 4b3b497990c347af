#include "store/hbuf.h"

#include <stdint.h>
#include <sys/mman.h>

/* Below this a mapping is not worth it and cannot hold a huge page anyway. */
#define HUGE_PAGE ((size_t)2 << 20)

static size_t round_len(size_t size)
{
	return size ? (size + 4095) & ~(size_t)4095 : 4096;
}

void *hbuf_alloc(size_t size)
{
	size_t len = round_len(size);
	void *p;

	if (len < size)
		return NULL;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
#ifdef MADV_HUGEPAGE
	/* Advisory: a kernel without THP refuses it, and that is fine. */
	if (len >= HUGE_PAGE)
		(void)madvise(p, len, MADV_HUGEPAGE);
#endif
	return p;
}

void hbuf_free(void *p, size_t size)
{
	if (p)
		munmap(p, round_len(size));
}
