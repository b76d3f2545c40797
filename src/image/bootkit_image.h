/*
 * A boot kit taken from an image: AWS's blobs layout, /usr/share/nitro_enclaves/blobs/<arch>/
 * (bzImage, init, cmdline, and nsm.ko when the kernel has the NSM driver as a module), as
 * upstream's nitro-cli image holds it; our extension modules/NN-name.ko for kernels whose virtio and
 * vsock drivers are modules. Runs in the CLI at build time; the image is not trusted: only those
 * names are taken, as regular files, into a folder of ours.
 */
#ifndef ENCLAVER_IMAGE_BOOTKIT_IMAGE_H
#define ENCLAVER_IMAGE_BOOTKIT_IMAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

#define BOOTKIT_IMAGE_DIR "usr/share/nitro_enclaves/blobs/x86_64/"

struct bootkit_image {
	char id[80];          /* the image's config digest */
	char repo_digest[300]; /* repo@sha256:..., when known */
	bool has_nsm, has_modules;
};

/* Writes the kit's files of image spec into dir (an existing, empty folder). */
int bootkit_from_image(const char *spec, const char *dir, struct bootkit_image *out, struct err *err);

#endif
