/*
 * Images from a registry over the OCI distribution API: anonymous or bearer-token access
 * (credentials from the Docker client's config.json when it has them), image indexes resolved
 * to linux/amd64, every blob checked against its digest. Runs in the CLI; registries are
 * untrusted.
 */
#ifndef ENCLAVER_IMAGE_REGISTRY_H
#define ENCLAVER_IMAGE_REGISTRY_H

#include <stdbool.h>

#include "base/err.h"
#include "image/source.h"

/* ref: "REGISTRY/REPO[:TAG|@DIGEST]" (without "docker://"). */
/* Whether REF's first part names a registry host, by Docker's rule: it holds a dot or a port,
 * or is localhost. Without one, Docker takes the name to be on Docker Hub. */
bool registry_names_host(const char *ref);
int registry_open(struct image *img, const char *ref, const struct image_opts *o, struct err *err);

/* A parameter of a WWW-Authenticate challenge (key="value"), or NULL. Caller frees. */
char *registry_challenge_param(const char *challenge, const char *key);

#endif
