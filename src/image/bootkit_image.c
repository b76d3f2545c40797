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
#include "eif/cpio.h"
#include "image/merge.h"
#include "image/source.h"

static int fd_sink(void *ctx, const void *data, size_t len, struct err *err)
{
	return fs_write_full(*(int *)ctx, data, len) < 0 ? err_sys(err, "temporary archive") : 0;
}

static ssize_t fd_source(void *ctx, void *data, size_t len)
{
	return read(*(int *)ctx, data, len);
}

/* The kit's own names: a file of the folder, or a module in modules/. Nothing else is taken. */
static bool kit_name(const char *rest)
{
	const char *slash = strchr(rest, '/');
	size_t n = strlen(rest);

	if (!*rest || !cpio_name_safe(rest))
		return false;
	if (!slash)
		return true;
	return !strncmp(rest, "modules/", 8) && !strchr(rest + 8, '/') && n > 11 && !strcmp(rest + n - 3, ".ko");
}

static int take(struct cpio_reader *r, const struct cpio_entry *e, const char *dir, const char *rest, struct err *err)
{
	char path[4200];
	uint8_t chunk[65536];
	ssize_t n;
	int fd;

	if (!strncmp(rest, "modules/", 8)) {
		snprintf(path, sizeof(path), "%s/modules", dir);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return err_sys(err, "%s", path);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, rest);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return err_sys(err, "%s", path);
	while ((n = cpio_read_data(r, chunk, sizeof(chunk), err)) > 0)
		if (fs_write_full(fd, chunk, (size_t)n) < 0) {
			close(fd);
			return err_sys(err, "%s", path);
		}
	close(fd);
	(void)e;
	return n < 0 ? -1 : 0;
}

int bootkit_from_image(const char *spec, const char *dir, struct bootkit_image *out, struct err *err)
{
	struct image *img = NULL;
	struct merge m;
	struct cpio_writer w;
	struct cpio_reader r;
	struct cpio_entry e;
	char tmp[4200];
	int fd = -1, rc = -1, got;
	static const char *const required[] = { "bzImage", "init", "cmdline" };

	memset(out, 0, sizeof(*out));
	if (image_open(spec, NULL, &img, err) < 0)
		return err_wrap(err, "boot kit image %s", spec);
	snprintf(out->id, sizeof(out->id), "%s", img->id ? img->id : "");
	snprintf(out->repo_digest, sizeof(out->repo_digest), "%s", img->repo_digest ? img->repo_digest : "");
	snprintf(tmp, sizeof(tmp), "%s/enclaver-bootkit-XXXXXX", fs_tmp_dir());
	fd = mkstemp(tmp);
	if (fd < 0) {
		err_sys(err, "%s", tmp);
		goto out;
	}
	unlink(tmp);
	cpio_writer_init(&w, fd_sink, &fd);
	merge_init(&m, &w, "kit");
	for (size_t i = img->n_layers; i-- > 0;)
		if (merge_add_layer(&m, &img->layers[i], err) < 0) {
			merge_free(&m);
			goto out;
		}
	merge_free(&m);
	if (cpio_finish(&w, err) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		goto out;
	cpio_reader_init(&r, fd_source, &fd);
	while ((got = cpio_next(&r, &e, err)) == 1) {
		const char *rest;

		/* the merge names every entry under its prefix: "kit/usr/share/..." */
		if (strncmp(e.name, "kit/" BOOTKIT_IMAGE_DIR, strlen("kit/" BOOTKIT_IMAGE_DIR)))
			continue;
		rest = e.name + strlen("kit/" BOOTKIT_IMAGE_DIR);
		if (!kit_name(rest) || !strcmp(rest, "modules"))
			continue;
		if (!S_ISREG(e.mode)) {
			/* a link could point anywhere in the image, or out of it */
			if (!strcmp(rest, "bzImage") || !strcmp(rest, "init") || !strcmp(rest, "cmdline") ||
			    !strcmp(rest, "nsm.ko")) {
				err_set(err, EINVAL, "boot kit image %s: /%s is not a regular file", spec, e.name + 4);
				goto out;
			}
			continue;
		}
		if (take(&r, &e, dir, rest, err) < 0)
			goto out;
		out->has_nsm |= !strcmp(rest, "nsm.ko");
		out->has_modules |= !strncmp(rest, "modules/", 8);
	}
	if (got < 0)
		goto out;
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		char path[4200];

		snprintf(path, sizeof(path), "%s/%s", dir, required[i]);
		if (access(path, R_OK) < 0) {
			err_set(err, ENOENT, "boot kit image %s has no /" BOOTKIT_IMAGE_DIR "%s: name an image that holds AWS's blobs (bzImage, init, cmdline)",
				spec, required[i]);
			goto out;
		}
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	image_free(img);
	return rc;
}
