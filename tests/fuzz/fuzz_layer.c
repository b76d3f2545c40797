/* Fuzzes layer reading and merging: any tar, gzip or zstd bytes as an image layer, hard links
 * (which read back what was written) included. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image/merge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink(void *ctx, const void *d, size_t len, struct err *err)
{
	buf_append(ctx, d, len);
	return 0;
}

/* hard links read back what was written: the archive is kept for them */
static int read_back(void *ctx, uint64_t off, void *d, size_t len, struct err *err)
{
	struct buf *b = ctx;

	if (off > b->len || len > b->len - off)
		abort(); /* the merge asked for bytes it never wrote */
	memcpy(d, b->data + off, len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	struct cpio_writer w;
	struct merge m;
	struct err err = { 0 };
	struct layer_blob b;
	struct buf out = BUF_INIT;

	if (fd < 0)
		fd = memfd_create("fuzz-layer", 0);
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	b = (struct layer_blob){ "fuzz", fd, 0, size, NULL, NULL };
	cpio_writer_init(&w, sink, &out);
	w.read_back = read_back;
	merge_init(&m, &w, "rootfs");
	/* twice: the second time as a lower layer, whose files the first hides (stand-ins for
	 * hard links to them) */
	if (merge_add_layer(&m, &b, &err) == 0)
		merge_add_layer(&m, &b, &err);
	merge_free(&m);
	buf_free(&out);
	return 0;
}
