/* Fuzzes the file-capability records odyn reads from the application ramdisk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enclave/caps.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check(void *ctx, const char *path, const uint8_t *value, size_t len, struct err *err)
{
	/* what the parser hands on is an absolute, terminated path and a bounded value */
	if (path[0] != '/' || strlen(path) >= 4096 || !len || len > CAPS_MAX_VALUE)
		abort();
	(*(size_t *)ctx)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct err err = { 0 };
	size_t n = 0;

	caps_parse((const char *)data, size, check, &n, &err);
	return 0;
}
