/* Levelled logging: one line per message on stderr, prefixed with the program name. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *log_prog = "enclaver";
static enum log_level log_level_cur = LOG_INFO;

static const char *const level_names[] = { "error", "warning", "info", "debug" };
static void (*log_sink)(const char *line, size_t len, void *data);
static void *log_sink_data;

void log_set_sink(void (*sink)(const char *line, size_t len, void *data), void *data)
{
	log_sink = sink;
	log_sink_data = data;
}

void log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_level_cur = level;
}

void log_set_level(enum log_level level)
{
	log_level_cur = level;
}

enum log_level log_get_level(void)
{
	return log_level_cur;
}

int log_parse_level(const char *s, enum log_level *out)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (level > log_level_cur)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_sink) {
		char out[2200];
		int n = snprintf(out, sizeof(out), "%s: %s: %s\n", log_prog, level_names[level], line);

		log_sink(out, n < (int)sizeof(out) ? (size_t)n : sizeof(out) - 1, log_sink_data);
		return;
	}
	/* One write per line so that concurrent writers do not interleave mid-line. */
	fprintf(stderr, "%s: %s: %s\n", log_prog, level_names[level], line);
}
