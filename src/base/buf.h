/* Growable byte buffer. Owner frees with buf_free (or buf_free_secret). */
#ifndef ENCLAVER_BASE_BUF_H
#define ENCLAVER_BASE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

/* Aborts on allocation failure: buffers here are small and bounded by callers. */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_byte(struct buf *b, uint8_t c);
void buf_append_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns a NUL-terminated string view of the data (terminator not counted in len). */
const char *buf_cstr(struct buf *b);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
void buf_free_secret(struct buf *b);

#endif
