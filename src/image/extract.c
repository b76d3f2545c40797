/*
 * Files out of an image (see extract.h): the layers are merged as for an app's ramdisk, into a
 * temporary archive, and only the wanted entries are taken from it.
 */
#include "image/extract.h"

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

#define PREFIX "image/" /* the merge names every entry under a prefix */

static int fd_sink(void *ctx, const void *data, size_t len, struct err *err)
{
	return fs_write_full(*(int *)ctx, data, len) < 0 ? err_sys(err, "temporary archive") : 0;
}

static ssize_t fd_source(void *ctx, void *data, size_t len)
{
	return read(*(int *)ctx, data, len);
}

static int take(struct cpio_reader *r, const char *out_dir, const char *rest, struct err *err)
{
	char path[4200];
	uint8_t chunk[65536];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", out_dir, rest);
	/* O_EXCL and O_NOFOLLOW: one file per name, never through a link */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return err_sys(err, "%s", path);
	while ((n = cpio_read_data(r, chunk, sizeof(chunk), err)) > 0)
		if (fs_write_full(fd, chunk, (size_t)n) < 0) {
			close(fd);
			return err_sys(err, "%s", path);
		}
	close(fd);
	return n < 0 ? -1 : 0;
}

int image_extract(const char *spec, const char *folder, bool (*want)(const char *rest, bool regular, void *ctx),
		  void *ctx, const char *out_dir, struct image_ids *ids, struct err *err)
{
	struct image *img = NULL;
	struct merge m;
	struct cpio_writer w;
	struct cpio_reader r;
	struct cpio_entry e;
	char tmp[4200], full[512];
	int fd = -1, rc = -1, got;
	size_t flen;

	memset(ids, 0, sizeof(*ids));
	snprintf(full, sizeof(full), PREFIX "%s", folder);
	flen = strlen(full);
	if (image_open(spec, NULL, &img, err) < 0)
		return -1;
	snprintf(ids->id, sizeof(ids->id), "%s", img->id ? img->id : "");
	snprintf(ids->repo_digest, sizeof(ids->repo_digest), "%s", img->repo_digest ? img->repo_digest : "");
	snprintf(tmp, sizeof(tmp), "%s/enclaver-extract-XXXXXX", fs_tmp_dir());
	fd = mkstemp(tmp);
	if (fd < 0) {
		err_sys(err, "%s", tmp);
		goto out;
	}
	unlink(tmp);
	cpio_writer_init(&w, fd_sink, &fd);
	merge_init(&m, &w, "image");
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
		const char *rest = e.name + flen;
		bool regular = S_ISREG(e.mode);

		if (strncmp(e.name, full, flen) || !*rest || !cpio_name_safe(rest) || !want(rest, regular, ctx))
			continue;
		if (!regular) {
			err_set(err, EINVAL, "/%s is not a regular file", e.name + strlen(PREFIX));
			goto out;
		}
		if (take(&r, out_dir, rest, err) < 0)
			goto out;
	}
	rc = got < 0 ? -1 : 0;
out:
	if (fd >= 0)
		close(fd);
	image_free(img);
	return rc;
}
