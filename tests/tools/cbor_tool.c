/* Test helper: reads CBOR on stdin, decodes it strictly, and writes it back on stdout,
 * canonically ("canon") or as decoded ("same"). Errors: one line on stderr, exit 1. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "codec/cbor.h"

int main(int argc, char **argv)
{
	struct buf in = BUF_INIT, out = BUF_INIT;
	struct cbor_item *it = NULL;
	struct err err = { 0 };
	int canonical = argc > 1 && !strcmp(argv[1], "canon");

	if (fs_read_file("-", 1 << 24, &in, &err) < 0 ||
	    cbor_decode(in.data, in.len, CBOR_DEFAULT_MAX_DEPTH, &it, &err) < 0 ||
	    cbor_encode_item(&out, it, canonical, &err) < 0) {
		fprintf(stderr, "cbor_tool: %s\n", err.msg);
		buf_free(&in);
		buf_free(&out);
		return 1;
	}
	if (fs_write_full(1, out.data, out.len) < 0)
		return 1;
	cbor_free(it);
	buf_free(&in);
	buf_free(&out);
	return 0;
}
