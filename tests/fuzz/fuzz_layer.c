/* Fuzzes layer reading and merging: any tar, gzip or zstd bytes as an image layer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image/merge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink(void *ctx, const void *d, size_t len, struct err *err)
{
	*(uint64_t *)ctx += len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	struct cpio_writer w;
	struct merge m;
	struct err err = { 0 };
	struct layer_blob b;
	uint64_t written = 0;

	if (fd < 0)
		fd = memfd_create("fuzz-layer", 0);
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	b = (struct layer_blob){ "fuzz", fd, 0, size, NULL, NULL };
	cpio_writer_init(&w, sink, &written);
	merge_init(&m, &w, "rootfs");
	merge_add_layer(&m, &b, &err);
	merge_free(&m);
	return 0;
}
