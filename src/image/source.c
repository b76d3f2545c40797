/* docker-archive and OCI layout readers. */
#include "image/source.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/hex.h"
#include "crypto/sha.h"

#define MAX_JSON (16u << 20)
#define MAX_MEMBERS 100000

/* --- an index of an uncompressed tar's members, for reading them in place --- */

struct member {
	char *name;
	uint64_t off, size;
};

struct tar_index {
	struct member *m;
	size_t n, cap;
};

static uint64_t octal(const char *p, size_t n)
{
	uint64_t v = 0;

	if ((unsigned char)p[0] & 0x80) { /* base-256 for large sizes */
		for (size_t i = 1; i < n; i++)
			v = v << 8 | (unsigned char)p[i];
		return v;
	}
	for (size_t i = 0; i < n && p[i]; i++)
		if (p[i] >= '0' && p[i] <= '7')
			v = v * 8 + (uint64_t)(p[i] - '0');
	return v;
}

static int tar_index_build(int fd, struct tar_index *ix, struct err *err)
{
	uint8_t h[512];
	uint64_t pos = 0, file_size;
	char *longname = NULL;
	struct stat st;

	memset(ix, 0, sizeof(*ix));
	if (fstat(fd, &st) < 0)
		return err_sys(err, "stat");
	file_size = (uint64_t)st.st_size;
	for (;;) {
		uint64_t size;
		char type, name[257];

		if (pread(fd, h, 512, (off_t)pos) != 512) {
			err_set(err, EINVAL, "truncated archive at offset %llu", (unsigned long long)pos);
			goto fail;
		}
		if (!h[0]) /* end-of-archive blocks */
			break;
		size = octal((char *)h + 124, 12);
		type = (char)h[156];
		if (pos + 512 + size < pos || pos + 512 + size > file_size) {
			err_set(err, EINVAL, "member at offset %llu runs past the end of the archive",
				(unsigned long long)pos);
			goto fail;
		}
		if (type == 'L' || type == 'x') {
			/* GNU long name, or a pax header whose path= we honour */
			char *buf = size <= 65536 ? malloc(size + 1) : NULL;

			if (!buf || pread(fd, buf, size, (off_t)(pos + 512)) != (ssize_t)size) {
				free(buf);
				err_set(err, EINVAL, "bad extended header at offset %llu", (unsigned long long)pos);
				goto fail;
			}
			buf[size] = 0;
			free(longname);
			longname = NULL;
			if (type == 'L') {
				longname = buf;
			} else {
				char *p = strstr(buf, " path=");

				if (p) {
					char *e = strchr(p, '\n');

					longname = strndup(p + 6, e ? (size_t)(e - p - 6) : strlen(p + 6));
				}
				free(buf);
			}
		} else {
			if (longname) {
				snprintf(name, sizeof(name), "%s", longname);
			} else if (!memcmp(h + 257, "ustar", 5) && h[345]) {
				snprintf(name, sizeof(name), "%.155s/%.100s", (char *)h + 345, (char *)h);
			} else {
				snprintf(name, sizeof(name), "%.100s", (char *)h);
			}
			free(longname);
			longname = NULL;
			if (ix->n == MAX_MEMBERS) {
				err_set(err, EINVAL, "too many members");
				goto fail;
			}
			if (ix->n == ix->cap) {
				ix->cap = ix->cap ? ix->cap * 2 : 64;
				ix->m = realloc(ix->m, ix->cap * sizeof(*ix->m));
				if (!ix->m)
					abort();
			}
			ix->m[ix->n++] = (struct member){ strdup(strncmp(name, "./", 2) ? name : name + 2), pos + 512, size };
		}
		pos += 512 + (size + 511) / 512 * 512;
	}
	free(longname);
	return 0;
fail:
	free(longname);
	return -1;
}

static void tar_index_free(struct tar_index *ix)
{
	for (size_t i = 0; i < ix->n; i++)
		free(ix->m[i].name);
	free(ix->m);
}

static const struct member *tar_find(const struct tar_index *ix, const char *name)
{
	if (!strncmp(name, "./", 2))
		name += 2;
	for (size_t i = ix->n; i-- > 0;) /* the last member of a name wins, as in tar */
		if (!strcmp(ix->m[i].name, name))
			return &ix->m[i];
	return NULL;
}

/* Reads a small JSON member (or file range) and checks its digest when one is expected. */
static json_t *read_json(int fd, uint64_t off, uint64_t size, const char *what, const char *digest,
			 struct err *err)
{
	char *buf;
	json_t *j;
	json_error_t je;

	if (size > MAX_JSON) {
		err_set(err, EFBIG, "%s: larger than %u bytes", what, MAX_JSON);
		return NULL;
	}
	buf = malloc(size + 1);
	if (!buf || pread(fd, buf, size, (off_t)off) != (ssize_t)size) {
		free(buf);
		err_set(err, EIO, "%s: cannot read", what);
		return NULL;
	}
	if (digest) {
		uint8_t d[32];
		char hex[65];

		sha256(buf, size, d);
		hex_encode(d, 32, hex);
		if (strncmp(digest, "sha256:", 7) || strcmp(digest + 7, hex)) {
			free(buf);
			err_set(err, EINVAL, "%s: digest mismatch: expected %s, it is sha256:%s", what, digest, hex);
			return NULL;
		}
	}
	j = json_loadb(buf, size, 0, &je);
	free(buf);
	if (!j)
		err_set(err, EINVAL, "%s: invalid JSON: %s", what, je.text);
	return j;
}

static char **string_list(json_t *a)
{
	size_t n = json_is_array(a) ? json_array_size(a) : 0, k = 0;
	char **v = calloc(n + 1, sizeof(*v));

	if (!v)
		abort();
	for (size_t i = 0; i < n; i++)
		if (json_is_string(json_array_get(a, i)))
			v[k++] = strdup(json_string_value(json_array_get(a, i)));
	return v;
}

static void take_config(struct image *img, json_t *config)
{
	json_t *c = json_object_get(config, "config");

	img->entrypoint = string_list(json_object_get(c, "Entrypoint"));
	img->cmd = string_list(json_object_get(c, "Cmd"));
	img->env = string_list(json_object_get(c, "Env"));
}

static void add_fd(struct image *img, int fd)
{
	img->fds = realloc(img->fds, (img->n_fds + 1) * sizeof(int));
	if (!img->fds)
		abort();
	img->fds[img->n_fds++] = fd;
}

static char *config_id(int fd, uint64_t off, uint64_t size)
{
	uint8_t *buf = size <= MAX_JSON ? malloc(size ? size : 1) : NULL, d[32];
	char hex[65], *id = NULL;

	if (buf && pread(fd, buf, size, (off_t)off) == (ssize_t)size) {
		sha256(buf, size, d);
		hex_encode(d, 32, hex);
		if (asprintf(&id, "sha256:%s", hex) < 0)
			id = NULL;
	}
	free(buf);
	return id;
}

static int open_docker_archive(struct image *img, const char *path, const char *ref, struct err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct tar_index ix;
	const struct member *mm, *cm;
	json_t *manifest = NULL, *entry = NULL, *config = NULL, *layers, *diff_ids;
	int rc = -1;

	if (fd < 0)
		return err_sys(err, "%s", path);
	add_fd(img, fd);
	if (tar_index_build(fd, &ix, err) < 0) {
		tar_index_free(&ix);
		return err_wrap(err, "%s: not a docker-archive (docker save) file", path);
	}
	mm = tar_find(&ix, "manifest.json");
	if (!mm) {
		err_set(err, EINVAL, "%s: no manifest.json: not a docker-archive (docker save) file", path);
		goto out;
	}
	manifest = read_json(fd, mm->off, mm->size, "manifest.json", NULL, err);
	if (!manifest)
		goto out;
	for (size_t i = 0; i < json_array_size(manifest) && !entry; i++) {
		json_t *e = json_array_get(manifest, i), *tags = json_object_get(e, "RepoTags");

		if (!ref)
			entry = e;
		for (size_t k = 0; k < json_array_size(tags) && !entry; k++)
			if (!strcmp(json_string_value(json_array_get(tags, k)) ?: "", ref))
				entry = e;
	}
	if (!entry) {
		err_set(err, ENOENT, "%s: no image %s in the archive", path, ref ? ref : "at all");
		goto out;
	}
	cm = tar_find(&ix, json_string_value(json_object_get(entry, "Config")) ?: "");
	if (!cm) {
		err_set(err, EINVAL, "%s: the image's config is missing", path);
		goto out;
	}
	config = read_json(fd, cm->off, cm->size, "image config", NULL, err);
	if (!config)
		goto out;
	img->id = config_id(fd, cm->off, cm->size);
	take_config(img, config);
	layers = json_object_get(entry, "Layers");
	diff_ids = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
	img->layers = calloc(json_array_size(layers) + 1, sizeof(*img->layers));
	if (!img->layers)
		abort();
	for (size_t i = 0; i < json_array_size(layers); i++) {
		const char *name = json_string_value(json_array_get(layers, i));
		const struct member *lm = name ? tar_find(&ix, name) : NULL;
		struct layer_blob *b = &img->layers[img->n_layers];
		char *digest = NULL;

		if (!lm) {
			err_set(err, EINVAL, "%s: layer %s is missing from the archive", path, name ? name : "?");
			goto out;
		}
		/* blobs/sha256/<hex> names the blob's own digest; legacy <id>/layer.tar is an
		 * uncompressed tar whose digest is the config's diff_id */
		if (!strncmp(name, "blobs/sha256/", 13)) {
			if (asprintf(&digest, "sha256:%s", name + 13) < 0)
				abort();
		} else if (json_is_string(json_array_get(diff_ids, i))) {
			digest = strdup(json_string_value(json_array_get(diff_ids, i)));
		}
		if (asprintf((char **)&b->name, "layer %zu (%s)", i, name) < 0)
			abort();
		b->fd = fd;
		b->off = lm->off;
		b->len = lm->size;
		b->digest = digest;
		img->n_layers++;
	}
	rc = 0;
out:
	json_decref(manifest);
	json_decref(config);
	tar_index_free(&ix);
	return rc;
}

static int blob_path(const char *dir, const char *digest, char *out, size_t size, struct err *err)
{
	if (!digest || strncmp(digest, "sha256:", 7) || strlen(digest) != 71 || strspn(digest + 7, "0123456789abcdef") != 64)
		return err_set(err, EINVAL, "OCI layout: invalid digest \"%s\"", digest ? digest : "");
	snprintf(out, size, "%s/blobs/sha256/%s", dir, digest + 7);
	return 0;
}

static json_t *read_blob_json(const char *dir, const char *digest, const char *what, struct err *err)
{
	char path[4096];
	struct stat st;
	int fd;
	json_t *j;

	if (blob_path(dir, digest, path, sizeof(path), err) < 0)
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		err_sys(err, "%s: %s", what, path);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	j = read_json(fd, 0, (uint64_t)st.st_size, what, digest, err);
	close(fd);
	return j;
}

static int open_oci(struct image *img, const char *dir, const char *tag, struct err *err)
{
	char path[4096];
	json_t *index = NULL, *manifest = NULL, *config = NULL, *desc = NULL, *layers;
	struct stat st;
	int fd, rc = -1;

	snprintf(path, sizeof(path), "%s/index.json", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, "%s: not an OCI image layout", path);
	fstat(fd, &st);
	index = read_json(fd, 0, (uint64_t)st.st_size, "index.json", NULL, err);
	close(fd);
	if (!index)
		return -1;
	for (size_t i = 0; i < json_array_size(json_object_get(index, "manifests")) && !desc; i++) {
		json_t *d = json_array_get(json_object_get(index, "manifests"), i);
		const char *name = json_string_value(json_object_get(json_object_get(d, "annotations"),
								      "org.opencontainers.image.ref.name"));

		if (!tag || (name && !strcmp(name, tag)))
			desc = d;
	}
	if (!desc) {
		err_set(err, ENOENT, "%s: no image %s in the layout", dir, tag ? tag : "at all");
		goto out;
	}
	manifest = read_blob_json(dir, json_string_value(json_object_get(desc, "digest")), "image manifest", err);
	if (!manifest)
		goto out;
	if (json_object_get(manifest, "manifests")) {
		err_set(err, ENOTSUP, "%s: image indexes (multi-platform) are not supported here; name a single image", dir);
		goto out;
	}
	config = read_blob_json(dir, json_string_value(json_object_get(json_object_get(manifest, "config"), "digest")),
				"image config", err);
	if (!config)
		goto out;
	img->id = strdup(json_string_value(json_object_get(json_object_get(manifest, "config"), "digest")));
	take_config(img, config);
	layers = json_object_get(manifest, "layers");
	img->layers = calloc(json_array_size(layers) + 1, sizeof(*img->layers));
	if (!img->layers)
		abort();
	for (size_t i = 0; i < json_array_size(layers); i++) {
		const char *digest = json_string_value(json_object_get(json_array_get(layers, i), "digest"));
		struct layer_blob *b = &img->layers[img->n_layers];

		if (blob_path(dir, digest, path, sizeof(path), err) < 0)
			goto out;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0) {
			err_sys(err, "layer %s", digest);
			if (fd >= 0)
				close(fd);
			goto out;
		}
		add_fd(img, fd);
		*b = (struct layer_blob){ NULL, fd, 0, (uint64_t)st.st_size, strdup(digest) };
		if (asprintf((char **)&b->name, "layer %.19s", digest) < 0)
			abort();
		img->n_layers++;
	}
	rc = 0;
out:
	json_decref(index);
	json_decref(manifest);
	json_decref(config);
	return rc;
}

int image_open(const char *spec, struct image **out, struct err *err)
{
	struct image *img = calloc(1, sizeof(*img));
	char *copy = strdup(spec), *colon;
	int rc;

	if (!img || !copy)
		abort();
	img->ref = strdup(spec);
	if (!strncmp(copy, "docker-archive:", 15) || !strncmp(copy, "oci:", 4)) {
		char *rest = strchr(copy, ':') + 1;

		colon = strchr(rest, ':');
		if (colon)
			*colon++ = 0;
		rc = copy[0] == 'd' ? open_docker_archive(img, rest, colon, err) : open_oci(img, rest, colon, err);
	} else {
		rc = err_set(err, ENOTSUP,
			     "image \"%s\": use docker-archive:PATH[:REF] or oci:DIR[:TAG] (images from a Docker daemon or a registry are not available in this build)",
			     spec);
	}
	free(copy);
	if (rc < 0) {
		image_free(img);
		return err_wrap(err, "image %s", spec);
	}
	*out = img;
	return 0;
}

static void free_list(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

void image_free(struct image *img)
{
	if (!img)
		return;
	free(img->ref);
	free(img->id);
	free_list(img->entrypoint);
	free_list(img->cmd);
	free_list(img->env);
	for (size_t i = 0; i < img->n_layers; i++) {
		free((char *)img->layers[i].name);
		free((char *)img->layers[i].digest);
	}
	free(img->layers);
	for (size_t i = 0; i < img->n_fds; i++)
		close(img->fds[i]);
	free(img->fds);
	free(img);
}
