/*
 * shared/log.c -- the key=value line logger.
 *
 * Each line is built in one stack buffer and written with a single write(2),
 * so lines from several worker threads or processes never interleave.
 */
#include "shared/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "tailpost";
static enum log_level log_min = LOG_L_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "fatal"};

void log_init(const char *prog, enum log_level min)
{
	log_prog = prog;
	log_min = min;
}

void log_set_level(enum log_level min)
{
	log_min = min;
}

bool log_enabled(enum log_level level)
{
	return level >= log_min;
}

int log_level_parse(const char *s)
{
	for (size_t i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return (int)i;
	return -1;
}

__attribute__((format(printf, 2, 0))) static void log_vline(enum log_level level, const char *fmt,
                                                            va_list ap)
{
	char line[4096];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int r;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s prog=%s ",
	             (long)(tv.tv_usec / 1000), level_names[level], log_prog);
	if (r > 0)
		n += (size_t)r;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r;
	if (n >= sizeof(line) - 1) {
		n = sizeof(line) - 5;
		memcpy(line + n, "...", 3);
		n += 3;
	}
	line[n++] = '\n';
	/* One write per line; a short write to stderr is not worth a retry loop. */
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nothing sensible to do */
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	log_vline(level, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline(LOG_L_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}

const char *log_quote(char *out, size_t outsz, const char *value)
{
	bool need = value[0] == '\0';
	size_t o = 0;

	for (const char *p = value; *p && !need; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20 ||
		    *p == 0x7f)
			need = true;
	if (outsz == 0)
		return out;
	if (!need) {
		snprintf(out, outsz, "%s", value);
		return out;
	}
	if (o + 1 < outsz)
		out[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		char esc[5];
		size_t el;
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			el = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", *p);
			el = 4;
		} else {
			esc[0] = (char)*p;
			el = 1;
		}
		if (o + el + 2 > outsz)
			break;
		memcpy(out + o, esc, el);
		o += el;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}
