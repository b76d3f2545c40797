/*
 * The customer ramdisk (Ramdisk #1) in nitro-cli's layout (spec/nitro.md §2.3): rootfs/ holding
 * the image's merged layers plus /sbin/odyn and /etc/enclaver/enclaver.yaml, linuxkit's fixups,
 * then cmd and env at the root. Written by the CLI at build time.
 */
#ifndef ENCLAVER_IMAGE_RAMDISK_H
#define ENCLAVER_IMAGE_RAMDISK_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "eif/cpio.h"
#include "image/source.h"

struct ramdisk_inputs {
	const struct image *img;
	const char *odyn_path;
	const uint8_t *manifest; /* the manifest's bytes, verbatim */
	size_t manifest_len;
};

struct image_user;

/* The enclave command line: /sbin/odyn --config-dir /etc/enclaver [--user UID:GID[:GIDS]]
 * [--workdir DIR] -- ENTRYPOINT... CMD... (the user when not root, the folder when not /). */
char **ramdisk_command(const struct image *img, const struct image_user *u);

int ramdisk_write_customer(struct cpio_writer *w, const struct ramdisk_inputs *in, struct err *err);

#endif
