/* Release image writer: two uncompressed layers, a config and manifest.json in a tar. */
#include "image/release.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/hex.h"
#include "crypto/sha.h"

struct hashed_out {
	int fd;
	struct sha_ctx sha;
	uint64_t len;
};

static la_ssize_t hashed_write(struct archive *a, void *ctx, const void *data, size_t len)
{
	struct hashed_out *o = ctx;

	if (fs_write_full(o->fd, data, len) < 0) {
		archive_set_error(a, errno, "write: %s", strerror(errno));
		return -1;
	}
	sha_update(&o->sha, data, len);
	o->len += len;
	return (la_ssize_t)len;
}

static int add_entry(struct archive *a, const char *name, mode_t mode, int64_t size, time_t mtime)
{
	struct archive_entry *e = archive_entry_new();
	int rc;

	archive_entry_set_pathname(e, name);
	archive_entry_set_mode(e, mode);
	archive_entry_set_size(e, size);
	archive_entry_set_mtime(e, mtime, 0);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	rc = archive_write_header(a, e);
	archive_entry_free(e);
	return rc == ARCHIVE_OK ? 0 : -1;
}

static int copy_file(struct archive *a, const char *name, const char *path, mode_t perm, time_t mtime,
		     struct err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char chunk[1 << 16];
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) < 0) {
		err_sys(err, "%s", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (add_entry(a, name, S_IFREG | perm, st.st_size, mtime) < 0) {
		close(fd);
		return err_set(err, EIO, "%s: %s", name, archive_error_string(a));
	}
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		if (archive_write_data(a, chunk, (size_t)n) != n) {
			close(fd);
			return err_set(err, EIO, "%s: %s", name, archive_error_string(a));
		}
	close(fd);
	return n < 0 ? err_sys(err, "%s", path) : 0;
}

static int add_dir(struct archive *a, const char *name, time_t mtime)
{
	return add_entry(a, name, S_IFDIR | 0755, 0, mtime);
}

/* One layer as a tar in a temporary file; digest receives its sha256 hex. */
static int write_layer(const struct release_inputs *in, int which, int fd, char digest[65], uint64_t *len,
		       struct err *err)
{
	struct archive *a = archive_write_new();
	struct hashed_out o = { .fd = fd };
	uint8_t d[32];
	int rc = -1;

	sha_init(&o.sha, "SHA256");
	archive_write_set_format_ustar(a);
	archive_write_set_bytes_in_last_block(a, 1);
	if (archive_write_open(a, &o, NULL, hashed_write, NULL) != ARCHIVE_OK) {
		err_set(err, EIO, "layer: %s", archive_error_string(a));
		goto out;
	}
	if (which == 0) {
		/* the local launcher keeps its state under /tmp */
		if (add_entry(a, "tmp/", S_IFDIR | 01777, 0, in->mtime) < 0 || add_dir(a, "usr/", in->mtime) < 0 || add_dir(a, "usr/local/", in->mtime) < 0 ||
		    add_dir(a, "usr/local/bin/", in->mtime) < 0 ||
		    copy_file(a, "usr/local/bin/enclaver-run", in->enclaver_run, 0755, in->mtime, err) < 0)
			goto out;
		if (in->ca_bundle && (add_dir(a, "etc/", in->mtime) < 0 || add_dir(a, "etc/ssl/", in->mtime) < 0 ||
				      add_dir(a, "etc/ssl/certs/", in->mtime) < 0 ||
				      copy_file(a, "etc/ssl/certs/ca-certificates.crt", in->ca_bundle, 0644, in->mtime, err) < 0))
			goto out;
	} else {
		if (add_dir(a, "enclave/", in->mtime) < 0 ||
		    copy_file(a, "enclave/application.eif", in->eif_path, 0644, in->mtime, err) < 0 ||
		    add_entry(a, "enclave/enclaver.yaml", S_IFREG | 0644, (int64_t)in->manifest_len, in->mtime) < 0 ||
		    archive_write_data(a, in->manifest, in->manifest_len) != (la_ssize_t)in->manifest_len)
			goto out;
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		err_set(err, EIO, "layer: %s", archive_error_string(a));
		goto out;
	}
	rc = 0;
out:
	archive_write_free(a);
	sha_final(&o.sha, d);
	hex_encode(d, 32, digest);
	*len = o.len;
	return rc;
}

/* The two layers in temporary files, and the image config. */
struct parts {
	int fds[2];
	char digests[2][65];
	uint64_t lens[2];
	char *config;
	char cfg_hex[65];
};

static void parts_free(struct parts *p)
{
	for (int i = 0; i < 2; i++)
		if (p->fds[i] >= 0)
			close(p->fds[i]);
	free(p->config);
}

static int parts_make(const struct release_inputs *in, struct parts *p, struct err *err)
{
	uint8_t d[32];
	json_t *cfg;

	memset(p, 0, sizeof(*p));
	p->fds[0] = p->fds[1] = -1;
	for (int i = 0; i < 2; i++) {
		char tmpl[4096];

		snprintf(tmpl, sizeof(tmpl), "%s/enclaver-layer-XXXXXX", fs_tmp_dir());
		p->fds[i] = mkostemp(tmpl, O_CLOEXEC);
		if (p->fds[i] < 0)
			return err_sys(err, "temporary layer file %s", tmpl);
		unlink(tmpl);
		if (write_layer(in, i, p->fds[i], p->digests[i], &p->lens[i], err) < 0)
			return -1;
	}
	cfg = json_pack("{s:s, s:s, s:{s:[s], s:[s]}, s:{s:s, s:[s+, s+]}}", "architecture", "amd64", "os", "linux",
			"config", "Entrypoint", "/usr/local/bin/enclaver-run", "Env",
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "rootfs", "type", "layers",
			"diff_ids", "sha256:", p->digests[0], "sha256:", p->digests[1]);
	/* as EXPOSE would: docker ps shows the enclave's ports. The label lists them even when
	 * there are none, for enclaver run to check -p against. */
	{
		json_t *exposed = json_object();
		char key[16], list[8 * 64 + 1] = "";
		size_t used = 0;

		for (size_t i = 0; i < in->n_ports; i++) {
			snprintf(key, sizeof(key), "%u/tcp", in->ports[i]);
			json_object_set_new(exposed, key, json_object());
			if (used < sizeof(list) - 8)
				used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%u", i ? " " : "", in->ports[i]);
		}
		if (in->n_ports)
			json_object_set_new(json_object_get(cfg, "config"), "ExposedPorts", exposed);
		else
			json_decref(exposed);
		json_object_set_new(json_object_get(cfg, "config"), "Labels", json_pack("{s:s}", RELEASE_INGRESS_LABEL, list));
	}
	p->config = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(cfg);
	sha256(p->config, strlen(p->config), d);
	hex_encode(d, 32, p->cfg_hex);
	return 0;
}

static int copy_fd(int from, int to, struct err *err)
{
	char chunk[1 << 16];
	ssize_t n;

	if (lseek(from, 0, SEEK_SET) < 0)
		return err_sys(err, "seek");
	while ((n = read(from, chunk, sizeof(chunk))) > 0)
		if (fs_write_full(to, chunk, (size_t)n) < 0)
			return err_sys(err, "write");
	return n < 0 ? err_sys(err, "read") : 0;
}

int release_write_docker_archive(const struct release_inputs *in, const char *out, char image_id[80],
				 struct err *err)
{
	char name[128], *manifest = NULL;
	int rc = -1;
	struct atomic_file af = { .fd = -1 };
	struct archive *a = NULL;
	struct parts p;
	json_t *man;

	if (parts_make(in, &p, err) < 0)
		goto out;
	snprintf(image_id, 80, "sha256:%s", p.cfg_hex);
	snprintf(name, sizeof(name), "%s.json", p.cfg_hex);
	{
		char l0[80], l1[80];

		snprintf(l0, sizeof(l0), "%s/layer.tar", p.digests[0]);
		snprintf(l1, sizeof(l1), "%s/layer.tar", p.digests[1]);
		man = json_pack("[{s:s, s:[s], s:[s, s]}]", "Config", name, "RepoTags", in->target, "Layers", l0, l1);
	}
	manifest = json_dumps(man, JSON_COMPACT);
	json_decref(man);
	if (atomic_file_open(&af, out, 0644, err) < 0)
		goto out;
	a = archive_write_new();
	archive_write_set_format_ustar(a);
	archive_write_open_fd(a, af.fd);
	for (int i = 0; i < 2; i++) {
		char dir[80], member[80], chunk[1 << 16];
		ssize_t n;

		snprintf(dir, sizeof(dir), "%s/", p.digests[i]);
		snprintf(member, sizeof(member), "%s/layer.tar", p.digests[i]);
		if (add_dir(a, dir, in->mtime) < 0 || add_entry(a, member, S_IFREG | 0644, (int64_t)p.lens[i], in->mtime) < 0) {
			err_set(err, EIO, "%s: %s", out, archive_error_string(a));
			goto out;
		}
		lseek(p.fds[i], 0, SEEK_SET);
		while ((n = read(p.fds[i], chunk, sizeof(chunk))) > 0)
			if (archive_write_data(a, chunk, (size_t)n) != n) {
				err_set(err, EIO, "%s: %s", out, archive_error_string(a));
				goto out;
			}
	}
	if (add_entry(a, name, S_IFREG | 0644, (int64_t)strlen(p.config), in->mtime) < 0 ||
	    archive_write_data(a, p.config, strlen(p.config)) != (la_ssize_t)strlen(p.config) ||
	    add_entry(a, "manifest.json", S_IFREG | 0644, (int64_t)strlen(manifest), in->mtime) < 0 ||
	    archive_write_data(a, manifest, strlen(manifest)) != (la_ssize_t)strlen(manifest) ||
	    archive_write_close(a) != ARCHIVE_OK) {
		err_set(err, EIO, "%s: %s", out, archive_error_string(a));
		goto out;
	}
	rc = atomic_file_commit(&af, err);
out:
	if (a)
		archive_write_free(a);
	if (rc < 0)
		atomic_file_abort(&af);
	parts_free(&p);
	free(manifest);
	return rc;
}

static int put_blob(const char *dir, const char *hex, const void *data, size_t len, int from_fd, struct err *err)
{
	char path[4200];
	struct atomic_file af = { .fd = -1 };

	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, hex);
	if (atomic_file_open(&af, path, 0644, err) < 0)
		return -1;
	if ((from_fd >= 0 ? copy_fd(from_fd, af.fd, err) : fs_write_full(af.fd, data, len) < 0 ? err_sys(err, "%s", path) : 0) < 0) {
		atomic_file_abort(&af);
		return -1;
	}
	return atomic_file_commit(&af, err);
}

int release_write_oci(const struct release_inputs *in, const char *out, char image_id[80], struct err *err)
{
	char tmp[4096], old[4096], path[4200], man_hex[65], *manifest = NULL, *index = NULL;
	const char *tag = strrchr(in->target, ':');
	uint8_t d[32];
	struct parts p;
	json_t *j;
	int rc = -1, partial = 0;
	bool have_tmp = false;

	if (tag && strchr(tag, '/'))
		tag = NULL; /* a registry port, not a tag */
	if (parts_make(in, &p, err) < 0)
		goto out;
	snprintf(image_id, 80, "sha256:%s", p.cfg_hex);
	snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", out);
	if (!mkdtemp(tmp)) {
		err_sys(err, "%s", tmp);
		goto out;
	}
	have_tmp = true;
	partial = fs_partial_add(tmp);
	snprintf(path, sizeof(path), "%s/blobs/sha256", tmp);
	if (fs_mkdir_p(path, 0755, err) < 0)
		goto out;
	if (chmod(tmp, 0755) < 0) {
		err_sys(err, "%s", tmp);
		goto out;
	}
	for (int i = 0; i < 2; i++)
		if (put_blob(tmp, p.digests[i], NULL, 0, p.fds[i], err) < 0)
			goto out;
	if (put_blob(tmp, p.cfg_hex, p.config, strlen(p.config), -1, err) < 0)
		goto out;
	j = json_pack("{s:i, s:s, s:{s:s, s:s+, s:I}, s:[{s:s, s:s+, s:I}, {s:s, s:s+, s:I}]}", "schemaVersion", 2,
		      "mediaType", "application/vnd.oci.image.manifest.v1+json", "config", "mediaType",
		      "application/vnd.oci.image.config.v1+json", "digest", "sha256:", p.cfg_hex, "size",
		      (json_int_t)strlen(p.config), "layers", "mediaType", "application/vnd.oci.image.layer.v1.tar",
		      "digest", "sha256:", p.digests[0], "size", (json_int_t)p.lens[0], "mediaType",
		      "application/vnd.oci.image.layer.v1.tar", "digest", "sha256:", p.digests[1], "size",
		      (json_int_t)p.lens[1]);
	manifest = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	sha256(manifest, strlen(manifest), d);
	hex_encode(d, 32, man_hex);
	if (put_blob(tmp, man_hex, manifest, strlen(manifest), -1, err) < 0)
		goto out;
	j = json_pack("{s:i, s:[{s:s, s:s+, s:I, s:{s:s, s:s}}]}", "schemaVersion", 2, "manifests", "mediaType",
		      "application/vnd.oci.image.manifest.v1+json", "digest", "sha256:", man_hex, "size",
		      (json_int_t)strlen(manifest), "annotations", "org.opencontainers.image.ref.name",
		      tag ? tag + 1 : "latest", "io.containerd.image.name", in->target);
	index = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	snprintf(path, sizeof(path), "%s/index.json", tmp);
	if (fs_write_file_atomic(path, index, strlen(index), 0644, err) < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/oci-layout", tmp);
	if (fs_write_file_atomic(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30, 0644, err) < 0)
		goto out;
	/* the finished layout replaces whatever was there in one rename; the old one goes after */
	snprintf(old, sizeof(old), "%s.old-%d", out, (int)getpid());
	if (rename(out, old) < 0 && errno != ENOENT) {
		err_sys(err, "%s", out);
		goto out;
	}
	if (rename(tmp, out) < 0) {
		err_sys(err, "%s", out);
		rename(old, out);
		goto out;
	}
	fs_partial_remove(partial);
	have_tmp = false;
	{
		struct err e2 = { 0 };

		fs_remove_tree(old, &e2);
	}
	rc = 0;
out:
	if (have_tmp) {
		struct err e2 = { 0 };

		fs_remove_tree(tmp, &e2);
		fs_partial_remove(partial);
	}
	parts_free(&p);
	free(manifest);
	free(index);
	return rc;
}
