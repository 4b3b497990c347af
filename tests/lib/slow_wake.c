/* slow_wake.c — see slow_wake.h. */
#include "tests/lib/slow_wake.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <uv.h>

int __real_uv_async_send(uv_async_t *async);
int __wrap_uv_async_send(uv_async_t *async);

static int delay_ms;

void slow_wake_set_ms(int ms)
{
	__atomic_store_n(&delay_ms, ms, __ATOMIC_RELAXED);
}

int __wrap_uv_async_send(uv_async_t *async)
{
	char name[16] = "";
	int ms = __atomic_load_n(&delay_ms, __ATOMIC_RELAXED);

	if (ms && pthread_getname_np(pthread_self(), name, sizeof name) == 0 &&
	    strcmp(name, "kvfs-commit") == 0) {
		struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
	return __real_uv_async_send(async);
}
