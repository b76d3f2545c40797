/* A set of strings (paths) with O(1) lookups, for merging image layers. Used by the CLI. */
#ifndef ENCLAVER_IMAGE_PATHSET_H
#define ENCLAVER_IMAGE_PATHSET_H

#include <stdbool.h>
#include <stddef.h>

struct pathset {
	char **slots;
	size_t cap, n;
};

void pathset_init(struct pathset *s);
void pathset_free(struct pathset *s);
/* Returns true when added, false when already present. */
bool pathset_add(struct pathset *s, const char *path);
bool pathset_has(const struct pathset *s, const char *path);
/* Adds every member of src to dst. */
void pathset_merge(struct pathset *dst, const struct pathset *src);
void pathset_clear(struct pathset *s);

#endif
