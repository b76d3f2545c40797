/*
 * File capabilities in the enclave. cpio cannot carry extended attributes, so the build records
 * each file's security.capability in the application ramdisk (measured with it), and odyn sets
 * them again before the app starts: in every launcher, on Nitro too. A record: the absolute path,
 * NUL, the attribute's value in hex, NUL, a newline.
 */
#ifndef ENCLAVER_ENCLAVE_CAPS_H
#define ENCLAVER_ENCLAVE_CAPS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define CAPS_MAX_VALUE 64 /* the largest capability attribute (VFS_CAP_REVISION_3) is 24 bytes */

typedef int (*caps_fn)(void *ctx, const char *path, const uint8_t *value, size_t len, struct err *err);

/* Calls fn for each record of data; a malformed one is an error naming its offset. */
int caps_parse(const char *data, size_t len, caps_fn fn, void *ctx, struct err *err);
/* Sets the capabilities the file at path records (none when it does not exist). */
int caps_apply_file(const char *path, struct err *err);

#endif
