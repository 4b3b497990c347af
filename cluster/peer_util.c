/*
 * peer_util.c — the parts of the peer transport that do no I/O: membership
 * (sorted addresses, node ids, cluster id), address parsing, frame encoding
 * and CRC-32C.
 * See cluster/peer.h for the contracts.
 */
#include "cluster/peer_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

int peer_addr_split(const char *addr, char *host, size_t hostlen, int *port)
{
	const char *colon, *hs, *he;
	char *end;
	long v;

	if (!addr || !*addr)
		return -EINVAL;
	if (addr[0] == '[') {
		/* "[V6]:PORT" */
		hs = addr + 1;
		he = strchr(hs, ']');
		if (!he || he[1] != ':')
			return -EINVAL;
		colon = he + 1;
	} else {
		hs = addr;
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		he = colon;
		/* An unbracketed IPv6 literal is ambiguous: refuse it. */
		if (memchr(hs, ':', (size_t)(he - hs)))
			return -EINVAL;
	}
	if (he == hs || (size_t)(he - hs) >= hostlen)
		return -EINVAL;
	if (!colon[1] || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	v = strtol(colon + 1, &end, 10);
	if (errno || *end || v < 1 || v > 65535)
		return -EINVAL;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	*port = (int)v;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void peer_members_free(struct peer_members *m)
{
	size_t i;

	if (!m->addrs)
		return;
	for (i = 0; i < m->n; i++)
		free(m->addrs[i]);
	free(m->addrs);
	m->addrs = NULL;
	m->n = 0;
}

int peer_members_init(struct peer_members *m, const char *listen,
		      const char *const *peers, size_t npeers)
{
	char host[256];
	int port, rv = -EINVAL;
	size_t i, j, total;
	uint64_t h;

	memset(m, 0, sizeof *m);
	if (!listen || peer_addr_split(listen, host, sizeof host, &port))
		return -EINVAL;
	if (npeers >= PEER_MAX_MEMBERS || (npeers && !peers))
		return -EINVAL;
	total = npeers + 1;
	m->addrs = calloc(total, sizeof *m->addrs);
	if (!m->addrs)
		return -ENOMEM;
	for (i = 0; i < total; i++) {
		const char *a = i == 0 ? listen : peers[i - 1];
		if (!a || peer_addr_split(a, host, sizeof host, &port)) {
			rv = -EINVAL;
			goto err;
		}
		m->addrs[i] = strdup(a);
		if (!m->addrs[i]) {
			rv = -ENOMEM;
			goto err;
		}
		m->n = i + 1;
	}
	qsort(m->addrs, m->n, sizeof *m->addrs, cmp_str);
	/* Deduplicate in place. */
	for (i = 1, j = 1; i < m->n; i++) {
		if (!strcmp(m->addrs[i], m->addrs[j - 1]))
			free(m->addrs[i]);
		else
			m->addrs[j++] = m->addrs[i];
	}
	m->n = j;
	for (i = 0; i < m->n; i++)
		if (!strcmp(m->addrs[i], listen))
			m->self = (unsigned)i;
	/* FNV-1a 64 over every address followed by a NUL, in sorted order. */
	h = 0xcbf29ce484222325ull;
	for (i = 0; i < m->n; i++) {
		const unsigned char *p = (const unsigned char *)m->addrs[i];
		do {
			h ^= *p;
			h *= 0x100000001b3ull;
		} while (*p++);
	}
	m->cluster_id = h;
	return 0;
err:
	peer_members_free(m);
	return rv;
}

unsigned char peer__hdr_check(const unsigned char *h)
{
	unsigned char x = 0x5A;
	int i;

	for (i = 0; i < 7; i++)
		x ^= h[i];
	return x;
}

void peer__hdr_fill(unsigned char *h, uint32_t len, uint16_t type, uint32_t crc)
{
	put32(h, len);
	put16(h + 4, type);
	h[6] = 0;
	h[7] = peer__hdr_check(h);
	put32(h + 8, crc);
}

struct frame *peer__frame_new(uint16_t type, const uv_buf_t *iov, size_t niov, size_t len)
{
	struct frame *f = malloc(sizeof *f + PEER_HDR_SIZE + len);
	unsigned char *p;
	uint32_t crc = 0;
	size_t i;

	if (!f)
		return NULL;
	f->next = NULL;
	f->len = PEER_HDR_SIZE + len;
	p = f->data + PEER_HDR_SIZE;
	for (i = 0; i < niov; i++) {
		if (iov[i].len)
			memcpy(p, iov[i].base, iov[i].len);
		p += iov[i].len;
	}
	crc = peer_crc32c(0, f->data + PEER_HDR_SIZE, len);
	peer__hdr_fill(f->data, (uint32_t)len, type, crc);
	return f;
}

void peer__frames_free(struct frame *f)
{
	while (f) {
		struct frame *n = f->next;
		free(f);
		f = n;
	}
}

/* CRC-32C, reflected polynomial 0x82F63B78. Software: slicing-by-8 tables
 * built once; hardware: the SSE4.2 crc32 instruction when the CPU has it. */
static uint32_t crc_tab[8][256];
static int crc_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	uint32_t c;
	unsigned i, k;

	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_tab[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (k = 1; k < 8; k++)
			crc_tab[k][i] = (crc_tab[k - 1][i] >> 8) ^ crc_tab[0][crc_tab[k - 1][i] & 0xff];
#if defined(__x86_64__)
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint32_t lo, hi;
		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
		lo = __builtin_bswap32(lo);
		hi = __builtin_bswap32(hi);
#endif
		lo ^= c;
		c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
		    crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
		    crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
		    crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw_run(uint32_t c, const unsigned char *p, size_t len)
{
	uint64_t c64;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8(c, *p++);
		len--;
	}
	c64 = c;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c64 = _mm_crc32_u64(c64, v);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}
#endif

uint32_t peer_crc32c(uint32_t crc, const void *buf, size_t len)
{
	uint32_t c = ~crc;

	pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
	if (crc_hw)
		return ~crc_hw_run(c, buf, len);
#endif
	return ~crc_sw(c, buf, len);
}

uint32_t peer__crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return ~crc_sw(~crc, buf, len);
}
