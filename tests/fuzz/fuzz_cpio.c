/* Fuzzes the cpio reader: headers, names and data of every entry. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eif/cpio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct src {
	const uint8_t *p;
	size_t len, off;
};

static ssize_t source(void *ctx, void *out, size_t len)
{
	struct src *s = ctx;
	size_t n = s->len - s->off < len ? s->len - s->off : len;

	memcpy(out, s->p + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct src s = { data, size, 0 };
	struct cpio_reader r;
	struct cpio_entry e;
	struct err err = { 0 };
	uint8_t chunk[512];

	cpio_reader_init(&r, source, &s);
	while (cpio_next(&r, &e, &err) == 1) {
		ssize_t n;

		if (strlen(e.name) > CPIO_NAME_MAX)
			abort();
		(void)cpio_name_safe(e.name);
		while ((n = cpio_read_data(&r, chunk, sizeof(chunk), &err)) > 0)
			;
		if (n < 0)
			break;
	}
	return 0;
}
