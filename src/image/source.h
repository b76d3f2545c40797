/*
 * Image sources: a container image's layers and config, read without a daemon. Supported here:
 * "docker-archive:PATH[:REF]" (docker save) and "oci:DIR[:TAG]" (an OCI image layout). Runs in
 * the CLI; archives and layouts are untrusted: names, sizes and digests are checked.
 */
#ifndef ENCLAVER_IMAGE_SOURCE_H
#define ENCLAVER_IMAGE_SOURCE_H

#include <stddef.h>

#include "base/err.h"
#include "image/merge.h"

struct image {
	char *ref;       /* as given */
	char *id;        /* sha256:<hex> of the config */
	char **entrypoint, **cmd, **env; /* NULL-terminated; may be empty, never NULL */
	struct layer_blob *layers;       /* bottom first */
	size_t n_layers;
	int *fds;
	size_t n_fds;
};

int image_open(const char *spec, struct image **out, struct err *err);
void image_free(struct image *img);

#endif
