/*
 * shared/log.h -- one line per event, key=value, to stderr.
 *
 * A line looks like
 *   ts=2026-11-27T03:40:00.123Z level=info prog=edge sid=7f3a msg="..." k=v
 * Callers pass the key=value part as a printf format; values that may hold
 * spaces or quotes go through log_quote().  journald collects stderr.
 * Never log AUTH data or message bodies.
 */
#ifndef SHARED_LOG_H
#define SHARED_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOG_L_DEBUG = 0,
	LOG_L_INFO,
	LOG_L_WARN,
	LOG_L_ERROR,
	LOG_L_FATAL,
};

/* Set the program name printed as prog= and the lowest level printed. */
void log_init(const char *prog, enum log_level min);
void log_set_level(enum log_level min);
bool log_enabled(enum log_level level);
/* Parse "debug|info|warn|error"; -1 if unknown. */
int log_level_parse(const char *s);

/* Emit one line: fmt is the key=value tail (without a trailing newline). */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_L_DEBUG))                                                      \
			log_msg(LOG_L_DEBUG, __VA_ARGS__);                                         \
	} while (0)
#define log_info(...)  log_msg(LOG_L_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_L_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_L_ERROR, __VA_ARGS__)

/* Log at fatal level and exit(1): start-up errors and broken invariants. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Quote a value for a key=value line into out (size outsz): wrapped in
 * double quotes if it holds a space, quote, '=' or a control byte, with
 * quotes, backslashes and control bytes escaped.  Returns out.
 */
const char *log_quote(char *out, size_t outsz, const char *value);

/* Cheap assertions that stay on in release builds. */
#define ASSERT(cond)                                                                               \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fatal("msg=\"assertion failed\" expr=\"%s\" at=%s:%d", #cond, __FILE__,    \
			      __LINE__);                                                           \
	} while (0)

#endif
