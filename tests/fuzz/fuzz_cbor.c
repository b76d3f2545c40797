/* Fuzzes the strict CBOR decoder. Property: whatever it accepts re-encodes to the same bytes
 * (heads are minimal, lengths definite), and the canonical encoder never crashes on it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/cbor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cbor_item *it = NULL;
	struct err err = { 0 };
	struct buf again = BUF_INIT, canon = BUF_INIT;

	if (cbor_decode(data, size, CBOR_DEFAULT_MAX_DEPTH, &it, &err) < 0)
		return 0;
	if (cbor_encode_item(&again, it, false, &err) < 0 || again.len != size || memcmp(again.data, data, size))
		abort();
	cbor_encode_item(&canon, it, true, &err);
	buf_free(&again);
	buf_free(&canon);
	cbor_free(it);
	return 0;
}
