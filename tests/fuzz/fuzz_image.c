/* Fuzzes image sources: the input is a docker-archive (tar index, manifest.json, config JSON);
 * after a first byte of 'O', an OCI index.json; after 'A', an oci-archive (a tar holding
 * index.json, image indexes, manifests and configs under blobs/sha256/). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char dir[64];
	char path[128], spec[160];
	struct image *img = NULL;
	struct err err = { 0 };
	int fd;

	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz-image-%d", (int)getpid());
		mkdir(dir, 0700);
	}
	if (size && data[0] == 'O') {
		snprintf(path, sizeof(path), "%s/index.json", dir);
		snprintf(spec, sizeof(spec), "oci:%s", dir);
		data++;
		size--;
	} else if (size && data[0] == 'A') {
		snprintf(path, sizeof(path), "%s/oci.tar", dir);
		snprintf(spec, sizeof(spec), "oci-archive:%s", path);
		data++;
		size--;
	} else {
		snprintf(path, sizeof(path), "%s/image.tar", dir);
		snprintf(spec, sizeof(spec), "docker-archive:%s", path);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (image_open(spec, NULL, &img, &err) == 0)
		image_free(img);
	return 0;
}
