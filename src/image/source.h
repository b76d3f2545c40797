/*
 * Image sources: a container image's layers and config. "docker-archive:PATH[:REF]" (docker
 * save), "oci:DIR[:TAG]" (an OCI image layout), "oci-archive:PATH[:TAG]" (a tar of one),
 * "docker://REGISTRY/REPO[:TAG|@DIGEST]" (a registry, through the OCI distribution API), and a
 * plain reference, which the Docker daemon resolves ("docker-daemon:REF" says so explicitly).
 * Runs in the CLI; archives, layouts, registries and daemons are untrusted: names, sizes and
 * digests are checked.
 */
#ifndef ENCLAVER_IMAGE_SOURCE_H
#define ENCLAVER_IMAGE_SOURCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "image/merge.h"

struct image {
	char *ref;       /* as given */
	char *id;        /* sha256:<hex> of the config */
	char *repo_digest; /* repo@sha256:<manifest digest>, when known */
	char **entrypoint, **cmd, **env; /* NULL-terminated; may be empty, never NULL */
	char *workdir, *user;            /* the config's WorkingDir and User; "" when unset */
	struct layer_blob *layers;       /* bottom first */
	size_t n_layers;
	int *fds;
	size_t n_fds;
};

struct image_opts {
	bool pull; /* daemon: pull even when the daemon has the image */
};

/* The reference the Docker daemon resolves for SPEC (SPEC itself, or what follows
 * "docker-daemon:"), or NULL when SPEC names an archive, a layout or a registry. */
const char *image_daemon_ref(const char *spec);
/* o may be NULL. */
int image_open(const char *spec, const struct image_opts *o, struct image **out, struct err *err);
/* Internals shared with the registry source. */
int image_open_oci_dir(struct image *img, const char *dir, const char *tag, struct err *err);
json_t *image_index_pick(json_t *index, struct err *err);
void image_free(struct image *img);

#endif
