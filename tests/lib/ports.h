/*
 * ports.h — TCP ports on 127.0.0.1 for tests that start listeners.
 *
 * A port the kernel hands out for bind(0) comes from the ephemeral range,
 * the same range every outgoing connection takes its source port from: a
 * test that picks such a port, closes it, and binds it later can find it
 * taken meanwhile by any connection on the machine, its own nodes' included
 * (CI saw "address already in use"). So the port is picked at random below
 * the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), where only
 * explicit listeners go, and checked free with a bind.
 */
#ifndef KVFS_TESTS_PORTS_H
#define KVFS_TESTS_PORTS_H

#include <stddef.h>

/* A port that was free a moment ago; aborts the test after 1,000 tries. */
int test_free_port(void);
/* "127.0.0.1:PORT" with such a port, into buf. */
void test_free_addr(char *buf, size_t len);

#endif
