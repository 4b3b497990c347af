#include "tests/lib/ports.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The first port of the ephemeral range (32768 when it cannot be read). */
static int ephemeral_low(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	int lo = 32768, hi;

	if (f) {
		if (fscanf(f, "%d %d", &lo, &hi) != 2)
			lo = 32768;
		fclose(f);
	}
	return lo;
}

static int bindable(int port)
{
	struct sockaddr_in a = { 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	if (fd < 0)
		return 0;
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

int test_free_port(void)
{
	static unsigned seed;
	int lo = 10000, hi = ephemeral_low();

	if (!seed)
		seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	if (hi <= lo + 1000)
		hi = 65535, lo = 61000; /* an unusual range: use the space above it */
	for (int i = 0; i < 1000; i++) {
		int port = lo + (int)(rand_r(&seed) % (unsigned)(hi - lo));

		if (bindable(port))
			return port;
	}
	fprintf(stderr, "test_free_port: no free port in [%d, %d)\n", lo, hi);
	abort();
}

void test_free_addr(char *buf, size_t len)
{
	snprintf(buf, len, "127.0.0.1:%d", test_free_port());
}
