/*
 * log.h — one logging macro with a level, checked before formatting.
 * Lines go to stderr as "kvfs[pid] LEVEL file:line: message".
 * An error is logged once, where it is handled.
 */
#ifndef KVFS_LOG_H
#define KVFS_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Current threshold; set from KVFS_LOG=error|warn|info|debug at first use,
 * default info. */
extern int log_threshold;
void log_init_from_env(void);
void log_write(int level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define LOG(level, ...)                                                      \
	do {                                                                 \
		if ((level) <= log_threshold)                                \
			log_write((level), __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

#endif
