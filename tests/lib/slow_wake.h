/*
 * slow_wake.h — for tests of shutdown races: a binary linked with
 * slow_wake.c and -Wl,--wrap=uv_async_send (tests/meson.build) delays every
 * uv_async_send() made on a store committer thread ("kvfs-commit") by the
 * given number of milliseconds. That widens the window between a
 * completion becoming visible to the node's loop and the committer's last
 * touch of the replication layer, which node_close() must not free under it.
 */
#ifndef KVFS_TESTS_SLOW_WAKE_H
#define KVFS_TESTS_SLOW_WAKE_H

void slow_wake_set_ms(int ms); /* 0: no delay (the default) */

#endif
