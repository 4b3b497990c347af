#include "store/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int log_threshold = LOG_INFO;

void log_init_from_env(void)
{
	const char *v = getenv("KVFS_LOG");
	if (!v)
		return;
	if (!strcmp(v, "error"))
		log_threshold = LOG_ERROR;
	else if (!strcmp(v, "warn"))
		log_threshold = LOG_WARN;
	else if (!strcmp(v, "info"))
		log_threshold = LOG_INFO;
	else if (!strcmp(v, "debug"))
		log_threshold = LOG_DEBUG;
}

void log_write(int level, const char *file, int line, const char *fmt, ...)
{
	static const char *names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
	char buf[1024];
	struct timespec ts;
	int n;
	va_list ap;
	const char *base = strrchr(file, '/');

	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(buf, sizeof buf, "kvfs[%d] %ld.%03ld %s %s:%d: ", (int)getpid(),
		     (long)ts.tv_sec, ts.tv_nsec / 1000000, names[level & 3],
		     base ? base + 1 : file, line);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof buf)
		n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof buf - 1)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	/* One write(2) per line so lines from several threads do not interleave. */
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nothing sensible to do when stderr is gone */
	}
}
