/* Progress line for the CLI. */
#include "base/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int state = -1; /* -1 unknown, 0 off, 1 on */
static bool shown;
static struct timespec last;

bool progress_on(void)
{
	if (state < 0) {
		const char *e = getenv("ENCLAVER_PROGRESS");

		state = e && *e ? strcmp(e, "0") != 0 : isatty(STDERR_FILENO);
	}
	return state == 1;
}

void progress_show(const char *fmt, ...)
{
	struct timespec now;
	char line[160];
	va_list ap;

	if (!progress_on())
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (shown && (now.tv_sec - last.tv_sec) * 1000000000L + (now.tv_nsec - last.tv_nsec) < 100000000L)
		return;
	last = now;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "\r\033[K%s", line);
	fflush(stderr);
	shown = true;
}

void progress_end(void)
{
	if (!shown)
		return;
	fprintf(stderr, "\r\033[K");
	fflush(stderr);
	shown = false;
}

void progress_size(uint64_t bytes, char out[32])
{
	if (bytes < 1000000)
		snprintf(out, 32, "%.1f kB", (double)bytes / 1e3);
	else if (bytes < 1000000000)
		snprintf(out, 32, "%.1f MB", (double)bytes / 1e6);
	else
		snprintf(out, 32, "%.2f GB", (double)bytes / 1e9);
}
