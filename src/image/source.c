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
#include "image/docker.h"
#include "image/registry.h"

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
	img->workdir = strdup(json_string_value(json_object_get(c, "WorkingDir")) ?: "");
	img->user = strdup(json_string_value(json_object_get(c, "User")) ?: "");
	if (!img->workdir || !img->user)
		abort();
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

/* The image id is the config's digest, and the config's rootfs.diff_ids are what ties the layers
 * to it: one per layer, each the digest of the layer's uncompressed tar (checked as it is read).
 * Without them the layers could change under the same id, so an image without them is refused,
 * as Docker refuses to load it. */
static int check_diff_ids(json_t *diff_ids, size_t n_layers, const char *label, struct err *err)
{
	if (!json_is_array(diff_ids))
		return err_set(err, EINVAL,
			       "%s: the image config has no rootfs.diff_ids, so nothing ties its layers to it: "
			       "rebuild or re-save the image with a current Docker or OCI tool",
			       label);
	if (json_array_size(diff_ids) != n_layers)
		return err_set(err, EINVAL,
			       "%s: the image config lists %zu layers (rootfs.diff_ids) and the image has %zu: "
			       "the config and the layers disagree; rebuild or re-save the image",
			       label, json_array_size(diff_ids), n_layers);
	for (size_t i = 0; i < n_layers; i++) {
		const char *d = json_string_value(json_array_get(diff_ids, i));

		if (!d || strncmp(d, "sha256:", 7) || strlen(d) != 71 || strspn(d + 7, "0123456789abcdef") != 64)
			return err_set(err, EINVAL, "%s: the image config's diff_id %zu is not a sha256 digest", label, i);
	}
	return 0;
}

/* A docker-archive read in place from fd (owned by img); path names it in messages. */
static int open_docker_archive_fd(struct image *img, int fd, const char *path, const char *ref, struct err *err)
{
	struct tar_index ix;
	const struct member *mm, *cm;
	json_t *manifest = NULL, *entry = NULL, *config = NULL, *layers, *diff_ids;
	int rc = -1;

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
	if (check_diff_ids(diff_ids, json_array_size(layers), path, err) < 0)
		goto out;
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
		/* blobs/sha256/<hex> names the blob's own digest; legacy <id>/layer.tar has only the
		 * config's diff_id, which every layer is checked against */
		if (!strncmp(name, "blobs/sha256/", 13) && asprintf(&digest, "sha256:%s", name + 13) < 0)
			abort();
		if (asprintf((char **)&b->name, "layer %zu (%s)", i, name) < 0)
			abort();
		b->fd = fd;
		b->off = lm->off;
		b->len = lm->size;
		b->digest = digest;
		b->diff_id = strdup(json_string_value(json_array_get(diff_ids, i)));
		img->n_layers++;
	}
	rc = 0;
out:
	json_decref(manifest);
	json_decref(config);
	tar_index_free(&ix);
	return rc;
}

static int open_docker_archive(struct image *img, const char *path, const char *ref, struct err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return err_sys(err, "%s", path);
	add_fd(img, fd);
	return open_docker_archive_fd(img, fd, path, ref, err);
}

/* --- OCI image layouts, as a folder or as a tar (oci-archive) --- */

struct layout {
	const char *label; /* for messages */
	const char *dir;   /* a folder, or */
	int tar_fd;        /* an archive, indexed */
	struct tar_index ix;
};

static int check_digest(const char *digest, struct err *err)
{
	if (!digest || strncmp(digest, "sha256:", 7) || strlen(digest) != 71 ||
	    strspn(digest + 7, "0123456789abcdef") != 64)
		return err_set(err, EINVAL, "invalid digest \"%s\"", digest ? digest : "");
	return 0;
}

/* Finds a member of the layout: *fd (owned by img), *off, *size. */
static int layout_get(struct image *img, struct layout *L, const char *name, int *fd, uint64_t *off, uint64_t *size,
		      struct err *err)
{
	if (L->dir) {
		char path[4096];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", L->dir, name);
		*fd = open(path, O_RDONLY | O_CLOEXEC);
		if (*fd < 0 || fstat(*fd, &st) < 0) {
			err_sys(err, "%s", path);
			if (*fd >= 0)
				close(*fd);
			return -1;
		}
		add_fd(img, *fd);
		*off = 0;
		*size = (uint64_t)st.st_size;
	} else {
		const struct member *m = tar_find(&L->ix, name);

		if (!m)
			return err_set(err, ENOENT, "%s: %s is missing from the archive", L->label, name);
		*fd = L->tar_fd;
		*off = m->off;
		*size = m->size;
	}
	return 0;
}

static json_t *layout_json(struct image *img, struct layout *L, const char *digest, const char *what,
			   struct err *err)
{
	char name[128];
	uint64_t off, size;
	int fd;

	if (digest && check_digest(digest, err) < 0) {
		err_wrap(err, "%s: %s", L->label, what);
		return NULL;
	}
	if (digest)
		snprintf(name, sizeof(name), "blobs/sha256/%s", digest + 7);
	else
		snprintf(name, sizeof(name), "index.json");
	if (layout_get(img, L, name, &fd, &off, &size, err) < 0)
		return NULL;
	return read_json(fd, off, size, what, digest, err);
}

/* An image index's entry for linux/amd64 (or the only entry, when it names no platform). */
json_t *image_index_pick(json_t *index, struct err *err)
{
	json_t *ms = json_object_get(index, "manifests"), *only = NULL;
	size_t n = json_array_size(ms);

	for (size_t i = 0; i < n; i++) {
		json_t *d = json_array_get(ms, i), *p = json_object_get(d, "platform");
		const char *os = json_string_value(json_object_get(p, "os"));
		const char *arch = json_string_value(json_object_get(p, "architecture"));

		if (!p && n == 1)
			only = d;
		if (os && arch && !strcmp(os, "linux") && !strcmp(arch, "amd64"))
			return d;
	}
	if (only)
		return only;
	err_set(err, ENOENT, "the image index has no linux/amd64 image (%zu entries)", n);
	return NULL;
}

static int open_layout(struct image *img, struct layout *L, const char *tag, struct err *err)
{
	json_t *index = NULL, *manifest = NULL, *config = NULL, *desc = NULL, *layers, *level;
	int rc = -1;

	index = layout_json(img, L, NULL, "index.json", err);
	if (!index)
		return err_wrap(err, "%s: not an OCI image layout", L->label);
	for (size_t i = 0; i < json_array_size(json_object_get(index, "manifests")) && !desc; i++) {
		json_t *d = json_array_get(json_object_get(index, "manifests"), i);
		const char *name = json_string_value(json_object_get(json_object_get(d, "annotations"),
								      "org.opencontainers.image.ref.name"));

		if (!tag || (name && !strcmp(name, tag)))
			desc = d;
	}
	if (!desc) {
		err_set(err, ENOENT, "%s: no image %s in the layout", L->label, tag ? tag : "at all");
		goto out;
	}
	/* an index below index.json (multi-platform): take linux/amd64, one level at most twice */
	for (int depth = 0;; depth++) {
		json_decref(manifest);
		manifest = layout_json(img, L, json_string_value(json_object_get(desc, "digest")), "image manifest", err);
		if (!manifest)
			goto out;
		if (!json_object_get(manifest, "manifests"))
			break;
		level = manifest;
		if (depth == 2 || !(desc = image_index_pick(level, err))) {
			if (depth == 2)
				err_set(err, EINVAL, "image indexes nested too deep");
			err_wrap(err, "%s", L->label);
			goto out;
		}
		json_incref(desc);
		json_decref(level);
		manifest = NULL;
		json_decref(index);
		index = desc; /* keeps desc alive */
	}
	config = layout_json(img, L, json_string_value(json_object_get(json_object_get(manifest, "config"), "digest")),
			     "image config", err);
	if (!config)
		goto out;
	img->id = strdup(json_string_value(json_object_get(json_object_get(manifest, "config"), "digest")));
	take_config(img, config);
	layers = json_object_get(manifest, "layers");
	if (check_diff_ids(json_object_get(json_object_get(config, "rootfs"), "diff_ids"), json_array_size(layers),
			   L->label, err) < 0)
		goto out;
	img->layers = calloc(json_array_size(layers) + 1, sizeof(*img->layers));
	if (!img->layers)
		abort();
	for (size_t i = 0; i < json_array_size(layers); i++) {
		const char *digest = json_string_value(json_object_get(json_array_get(layers, i), "digest"));
		struct layer_blob *b = &img->layers[img->n_layers];
		char name[128];
		uint64_t off, size;
		int fd;

		if (check_digest(digest, err) < 0) {
			err_wrap(err, "%s: layer %zu", L->label, i);
			goto out;
		}
		snprintf(name, sizeof(name), "blobs/sha256/%s", digest + 7);
		if (layout_get(img, L, name, &fd, &off, &size, err) < 0) {
			err_wrap(err, "layer %s", digest);
			goto out;
		}
		*b = (struct layer_blob){ NULL, fd, off, size, strdup(digest),
					  strdup(json_string_value(json_array_get(
						  json_object_get(json_object_get(config, "rootfs"), "diff_ids"), i))) };
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

int image_open_oci_dir(struct image *img, const char *dir, const char *tag, struct err *err)
{
	struct layout L = { .label = dir, .dir = dir, .tar_fd = -1 };

	return open_layout(img, &L, tag, err);
}

static int open_oci_archive(struct image *img, const char *path, const char *tag, struct err *err)
{
	struct layout L = { .label = path, .tar_fd = open(path, O_RDONLY | O_CLOEXEC) };
	int rc;

	if (L.tar_fd < 0)
		return err_sys(err, "%s", path);
	add_fd(img, L.tar_fd);
	if (tar_index_build(L.tar_fd, &L.ix, err) < 0) {
		tar_index_free(&L.ix);
		return err_wrap(err, "%s: not an oci-archive (a tar of an OCI image layout)", path);
	}
	rc = open_layout(img, &L, tag, err);
	tar_index_free(&L.ix);
	return rc;
}

/* A temporary file, already unlinked, for an image fetched from a daemon (large: on disk). */
static int temp_fd(struct err *err)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/enclaver-image-XXXXXX", fs_tmp_dir());
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, "temporary file %s", path);
	unlink(path);
	return fd;
}

/* A plain reference: the image as the Docker daemon has it (pulled first when asked, or when
 * the daemon does not have it), read through `docker save`'s archive. */
static int open_daemon(struct image *img, const char *ref, const struct image_opts *o, struct err *err)
{
	struct docker *d = NULL;
	json_t *info = NULL;
	const char *id;
	int found = 0, fd, rc = -1;

	if (docker_open(&d, err) < 0)
		return -1;
	if (!o->pull)
		found = docker_image_inspect(d, ref, &info, err);
	if (found < 0)
		goto out;
	if (!found) {
		if (docker_image_pull(d, ref, err) < 0)
			goto out;
		found = docker_image_inspect(d, ref, &info, err);
		if (found <= 0) {
			if (!found)
				err_set(err, ENOENT, "the Docker daemon has no image %s after pulling it", ref);
			goto out;
		}
	}
	id = json_string_value(json_object_get(info, "Id"));
	if (!id || check_digest(id, err) < 0) {
		err_set(err, EINVAL, "the Docker daemon gave no image ID for %s", ref);
		goto out;
	}
	if (json_is_string(json_array_get(json_object_get(info, "RepoDigests"), 0)))
		img->repo_digest = strdup(json_string_value(json_array_get(json_object_get(info, "RepoDigests"), 0)));
	fd = temp_fd(err);
	if (fd < 0)
		goto out;
	add_fd(img, fd);
	if (docker_image_save(d, id, fd, err) < 0 || open_docker_archive_fd(img, fd, "docker save", NULL, err) < 0)
		goto out;
	if (!img->id || strcmp(img->id, id)) {
		err_set(err, EINVAL, "the Docker daemon sent image %s, not %s", img->id ? img->id : "?", id);
		goto out;
	}
	rc = 0;
out:
	json_decref(info);
	docker_free(d);
	return rc;
}

const char *image_daemon_ref(const char *spec)
{
	static const char *const others[] = { "docker-archive:", "oci-archive:", "oci:", "docker://" };

	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		if (!strncmp(spec, others[i], strlen(others[i])))
			return NULL;
	return !strncmp(spec, "docker-daemon:", 14) ? spec + 14 : spec;
}

int image_open(const char *spec, const struct image_opts *o, struct image **out, struct err *err)
{
	static const struct image_opts none = { 0 };
	static const struct {
		const char *prefix;
		int (*open)(struct image *, const char *, const char *, struct err *);
	} kinds[] = {
		{ "docker-archive:", open_docker_archive },
		{ "oci-archive:", open_oci_archive },
		{ "oci:", image_open_oci_dir },
	};
	struct image *img = calloc(1, sizeof(*img));
	char *copy = strdup(spec), *colon;
	int rc = 1;

	if (!img || !copy)
		abort();
	if (!o)
		o = &none;
	img->ref = strdup(spec);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]) && rc == 1; i++) {
		size_t k = strlen(kinds[i].prefix);
		char *rest = copy + k;

		if (strncmp(copy, kinds[i].prefix, k))
			continue;
		colon = strchr(rest, ':');
		if (colon)
			*colon++ = 0;
		if (!*rest)
			rc = err_set(err, EINVAL, "%s needs a path: %sPATH[:REF]", kinds[i].prefix, kinds[i].prefix);
		else
			rc = kinds[i].open(img, rest, colon, err);
	}
	if (rc == 1) {
		const char *daemon_ref = image_daemon_ref(spec);

		if (!strncmp(spec, "docker://", 9))
			rc = registry_open(img, spec + 9, o, err);
		else if (!daemon_ref || !*daemon_ref || strchr(daemon_ref, ' '))
			rc = err_set(err, EINVAL, "not an image reference");
		else
			rc = open_daemon(img, daemon_ref, o, err);
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
	free(img->repo_digest);
	free_list(img->entrypoint);
	free_list(img->cmd);
	free_list(img->env);
	free(img->workdir);
	free(img->user);
	for (size_t i = 0; i < img->n_layers; i++) {
		free((char *)img->layers[i].name);
		free((char *)img->layers[i].digest);
		free((char *)img->layers[i].diff_id);
	}
	free(img->layers);
	for (size_t i = 0; i < img->n_fds; i++)
		close(img->fds[i]);
	free(img->fds);
	free(img);
}
