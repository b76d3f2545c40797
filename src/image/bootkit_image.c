/*
 * Boot kits from images (see bootkit_image.h). The image's layers are merged as for the app's
 * ramdisk, into a temporary archive, and only the kit's entries are taken from it.
 */
#include "image/bootkit_image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "eif/bootkit.h"
#include "eif/cpio.h"
#include "image/extract.h"

/* The kit's own names: a file of the folder, or a module in modules/ or modules/net/. Nothing
 * else is taken. */
static bool kit_name(const char *rest)
{
	const char *slash = strchr(rest, '/');
	size_t n = strlen(rest);

	if (!*rest || !cpio_name_safe(rest))
		return false;
	if (!slash)
		return true;
	if (n < 4 || strcmp(rest + n - 3, ".ko") || strncmp(rest, "modules/", 8))
		return false;
	rest += 8;
	if (!strncmp(rest, BOOTKIT_NET_SUBDIR "/", sizeof(BOOTKIT_NET_SUBDIR)))
		rest += sizeof(BOOTKIT_NET_SUBDIR);
	return !strchr(rest, '/') && strlen(rest) > 3;
}

struct kit_ctx {
	const char *dir;
	struct bootkit_image *out;
};

static bool kit_want(const char *rest, bool regular, void *ctx)
{
	struct kit_ctx *k = ctx;
	bool essential = !strcmp(rest, "bzImage") || !strcmp(rest, "init") || !strcmp(rest, "cmdline") ||
			 !strcmp(rest, "nsm.ko");

	/* a link could point anywhere in the image, or out of it: an essential one is an error */
	if (!regular)
		return essential;
	if (!kit_name(rest))
		return false;
	if (!strncmp(rest, "modules/", 8)) {
		char path[4200];

		snprintf(path, sizeof(path), "%s/modules", k->dir);
		mkdir(path, 0755);
		if (!strncmp(rest, "modules/" BOOTKIT_NET_SUBDIR "/", sizeof("modules/" BOOTKIT_NET_SUBDIR "/") - 1)) {
			snprintf(path, sizeof(path), "%s/modules/" BOOTKIT_NET_SUBDIR, k->dir);
			mkdir(path, 0755);
		}
		k->out->has_modules = true;
	}
	k->out->has_nsm |= !strcmp(rest, "nsm.ko");
	return true;
}

int bootkit_from_image(const char *spec, const char *dir, struct bootkit_image *out, struct err *err)
{
	static const char *const required[] = { "bzImage", "init", "cmdline" };
	struct kit_ctx k = { dir, out };
	struct image_ids ids;

	memset(out, 0, sizeof(*out));
	if (image_extract(spec, BOOTKIT_IMAGE_DIR, kit_want, &k, dir, &ids, err) < 0)
		return err_wrap(err, "boot kit image %s", spec);
	snprintf(out->id, sizeof(out->id), "%s", ids.id);
	snprintf(out->repo_digest, sizeof(out->repo_digest), "%s", ids.repo_digest);
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		char path[4200];

		snprintf(path, sizeof(path), "%s/%s", dir, required[i]);
		if (access(path, R_OK) < 0)
			return err_set(err, ENOENT,
				       "boot kit image %s has no /" BOOTKIT_IMAGE_DIR "%s: name an image that holds AWS's blobs (bzImage, init, cmdline)",
				       spec, required[i]);
	}
	return 0;
}
