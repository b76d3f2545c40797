/*
 * Release images (ARCHITECTURE.md §5): enclaver-run with a CA bundle, then the EIF and the
 * manifest under /enclave/, entrypoint enclaver-run. Written by the CLI as a docker-archive that
 * `docker load` accepts, or as an OCI image layout, deterministically (fixed times and owners).
 */
#ifndef ENCLAVER_IMAGE_RELEASE_H
#define ENCLAVER_IMAGE_RELEASE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base/err.h"

/* On release images: the manifest's ingress ports, space-separated (perhaps none). */
#define RELEASE_INGRESS_LABEL "dev.enclaver.ingress"

struct release_inputs {
	const char *target;       /* repository:tag */
	const char *enclaver_run; /* the static binary */
	const char *ca_bundle;    /* PEM bundle, or NULL */
	const char *eif_path;
	const uint8_t *manifest;
	size_t manifest_len;
	time_t mtime;
	const uint16_t *ports; /* the manifest's ingress ports: the image's ExposedPorts */
	size_t n_ports;
};

/* Writes the image to out (atomically); image_id receives "sha256:<config digest>". */
int release_write_docker_archive(const struct release_inputs *in, const char *out, char image_id[80],
				 struct err *err);

/* Writes the image as an OCI image layout folder (replacing out in one rename), tagged with the
 * target's tag. */
int release_write_oci(const struct release_inputs *in, const char *out, char image_id[80], struct err *err);

#endif
