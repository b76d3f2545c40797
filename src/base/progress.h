/*
 * A one-line progress display on stderr for long CLI steps (pulls, downloads, layers). Shown
 * only when stderr is a terminal, or when ENCLAVER_PROGRESS=1 asks for it; redrawn at most ten
 * times a second; progress_end() clears it before normal output continues.
 */
#ifndef ENCLAVER_BASE_PROGRESS_H
#define ENCLAVER_BASE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

bool progress_on(void);
void progress_show(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void progress_end(void);
/* "12.3 MB" */
void progress_size(uint64_t bytes, char out[32]);

#endif
