/*
 * hlc.c — hybrid logical clock, see hlc.h.
 *
 * The paper's rules (Kulkarni et al., Figure 5), for node j with state (l, c):
 *   send/local:  l' = max(l, pt);  c = (l' == l) ? c + 1 : 0;  l = l'
 *   receive m:   l' = max(l, l.m, pt);
 *                c = (l' == l == l.m) ? max(c, c.m) + 1
 *                  : (l' == l)        ? c + 1
 *                  : (l' == l.m)      ? c.m + 1 : 0;  l = l'
 * With (l, c) packed as l << 16 | c both rules reduce to "the largest of the
 * candidates, plus one unless the physical clock alone is the largest":
 *   send:    max(last + 1, pt << 16)
 *   receive: max(last + 1, m + 1, pt << 16)
 */
#include "cluster/hlc.h"

void hlc_init(struct hlc *h, uint64_t floor)
{
	h->last = floor;
}

uint64_t hlc_now(struct hlc *h, uint64_t pt_ms)
{
	uint64_t phys = hlc_from_ms(pt_ms);
	uint64_t next = h->last + 1;

	h->last = phys > next ? phys : next;
	return h->last;
}

uint64_t hlc_update(struct hlc *h, uint64_t remote, uint64_t pt_ms)
{
	uint64_t phys = hlc_from_ms(pt_ms);
	uint64_t next = (remote > h->last ? remote : h->last) + 1;

	h->last = phys > next ? phys : next;
	return h->last;
}
