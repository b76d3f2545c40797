/* Fuzzes the host's parser of odyn's status lines, which come from the enclave. */
#include <stdint.h>
#include <stdlib.h>

#include "host/console.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct app_status st;
	struct err err = { 0 };

	if (app_status_parse((const char *)data, size, &st, &err) == 0) {
		int code = app_status_exit_code(&st);

		if (code < 0 || code > 255)
			abort();
	}
	return 0;
}
