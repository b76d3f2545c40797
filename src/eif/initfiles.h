/*
 * The /cmd and /env files at the initramfs root (spec/nitro.md §2.3, §3): one item per line,
 * each terminated by '\n'. Written by the build, read by the enclave's PID 1.
 */
#ifndef ENCLAVER_EIF_INITFILES_H
#define ENCLAVER_EIF_INITFILES_H

#include <stddef.h>

#include "base/buf.h"
#include "base/err.h"

#define INITFILES_MAX_SIZE (1u << 20)
#define INITFILES_MAX_ITEMS 65536

/* Appends the items as lines; fails if an item holds '\n' or is NULL-containing. */
int initfiles_format(const char *const *items, size_t n, struct buf *out, struct err *err);
/* Splits into a NULL-terminated, malloc'd vector as AWS's init does: one item per line, one
 * trailing '\n' stripped per line, a last line without '\n' kept. Free with initfiles_free. */
int initfiles_parse(const char *data, size_t len, char ***out, size_t *n, struct err *err);
void initfiles_free(char **items);
/* Reads, parses and removes the file at path, as init does with /env and /cmd. A missing file
 * gives *out = NULL and success. */
int initfiles_take(const char *path, char ***out, struct err *err);

/* The kernel modules a boot kit brings for init to load: *.ko files, a scandir filter. */
struct dirent;
int initfiles_module_filter(const struct dirent *d);

#endif
