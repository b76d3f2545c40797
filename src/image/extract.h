/*
 * Regular files taken out of an image: its layers merged (whiteouts applied), and only the
 * entries under one folder of it that a filter accepts, written into a folder of ours. Runs in
 * the CLI; the image is not trusted: names are checked, links and devices are never written.
 */
#ifndef ENCLAVER_IMAGE_EXTRACT_H
#define ENCLAVER_IMAGE_EXTRACT_H

#include <stdbool.h>

#include "base/err.h"

struct image_ids {
	char id[80];           /* the image's config digest */
	char repo_digest[300]; /* repo@sha256:..., when known */
};

/* Calls want(rest, regular) for each entry under folder (a path in the image ending in "/"),
 * rest being its name below it: true takes a regular file to out_dir/rest (want may create the
 * folders it needs under out_dir first), true for a non-regular one fails. */
int image_extract(const char *spec, const char *folder, bool (*want)(const char *rest, bool regular, void *ctx),
		  void *ctx, const char *out_dir, struct image_ids *ids, struct err *err);

#endif
