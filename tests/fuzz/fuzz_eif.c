/* Fuzzes the EIF reader (header, section walk, CRC, PCRs, signature section) through a memfd. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "eif/eif.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	char path[64];
	struct eif_info *in = NULL;
	struct err err = { 0 };

	if (fd < 0)
		fd = memfd_create("fuzz-eif", 0);
	if (fd < 0 || ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (eif_read(path, &in, &err) == 0) {
		if (eif_info_check(in, path, &err) == 0 && (!in->crc_ok || in->structure_error[0]))
			abort();
		eif_info_free(in);
	}
	return 0;
}
