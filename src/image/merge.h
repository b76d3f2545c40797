/*
 * Image layers merged into a cpio stream in one pass, top layer first: an entry is written the
 * first time its path is seen unless an upper layer whited it out, made a parent (or the root)
 * opaque, or put a non-directory above it. Within one layer a later entry for a path is written
 * too, after the earlier one, and replaces it when unpacked, as Docker's extraction does. Every path is normalised and none may leave the tree. Runs in the
 * CLI at build time; the layers come from image authors and registries and are not trusted.
 */
#ifndef ENCLAVER_IMAGE_MERGE_H
#define ENCLAVER_IMAGE_MERGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/buf.h"
#include "base/err.h"
#include "eif/cpio.h"
#include "image/pathset.h"

struct merge_files;

struct merge_cap {
	char *path;
	char hex[129];
};

/* One layer blob: len bytes of fd from off (tar, gzip or zstd), and its expected digests. */
struct layer_blob {
	const char *name; /* for messages */
	int fd;
	uint64_t off, len;
	const char *digest;  /* "sha256:<64 hex>" of the blob's bytes, or NULL not to check */
	const char *diff_id; /* "sha256:<64 hex>" of the uncompressed tar (the config's), or NULL */
};

struct merge {
	struct cpio_writer *w;
	char prefix[64];
	struct pathset emitted;    /* paths written with their real metadata */
	struct pathset synthetic;  /* parent folders written before their real entry was seen */
	struct pathset nondir;     /* non-folders: they hide anything below them in lower layers */
	struct pathset whiteout;   /* paths removed by upper layers */
	struct pathset opaque;     /* folders whose lower-layer contents are hidden */
	struct pathset layer_whiteout, layer_opaque; /* this layer's, applied to the layers below */
	struct pathset layer_emitted; /* written by this layer: a later entry of it replaces them */
	struct merge_files *layer_files; /* this layer's regular files, for its hard links */
	const struct layer_blob *cur_layer;
	bool in_layer;
	bool lower_hidden; /* a layer made the root opaque: nothing below it shows */
	uint64_t entries;
	/* file capabilities (security.capability), which cpio cannot carry, by path; how many other
	 * attributes were left out */
	struct merge_cap *caps;
	size_t n_caps, cap_caps;
	uint64_t dropped_xattrs;
	char dropped_example[256];
	/* the image's /etc/passwd and /etc/group as written (its USER is resolved against them) */
	struct buf passwd, group;
	bool has_passwd, has_group;
};

#define MERGE_MAX_ACCOUNTS (4u << 20) /* the most of /etc/passwd or /etc/group kept */

/* Normalises a layer path: drops leading "/" and "./", empty and "." parts; refuses "..".
 * out must hold strlen(in)+1 bytes; "" is the root. */
int merge_normalize(const char *in, char *out, struct err *err);

void merge_init(struct merge *m, struct cpio_writer *w, const char *prefix);
void merge_free(struct merge *m);
/* Adds a file above every layer (odyn, the manifest). type: S_IFREG or S_IFLNK (data = target). */
int merge_add_file(struct merge *m, const char *path, mode_t mode, const void *data, size_t len, struct err *err);
/* Hides path in every layer (as a whiteout in a layer above all of them would). */
void merge_hide(struct merge *m, const char *path);
/* Adds layers from the top down. */
int merge_add_layer(struct merge *m, const struct layer_blob *l, struct err *err);
/* The file capabilities kept, as the enclave reads them (enclave/caps.h) into out. */
void merge_caps_record(const struct merge *m, struct buf *out);
/* Whether path was written, by a layer, above them or as a parent. */
bool merge_has(const struct merge *m, const char *path);
/* Writes a folder unless the image had it (e.g. "proc"). */
int merge_touch_dir(struct merge *m, const char *path, struct err *err);
int merge_touch_symlink(struct merge *m, const char *path, const char *target, struct err *err);

#endif
