/* Release image writer: two uncompressed layers, a config and manifest.json in a tar. */
#include "image/release.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
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

int release_write_docker_archive(const struct release_inputs *in, const char *out, char image_id[80],
				 struct err *err)
{
	char digests[2][65], name[128], *config = NULL, *manifest = NULL, tmpl[2][64];
	uint64_t lens[2];
	int fds[2] = { -1, -1 }, rc = -1;
	struct atomic_file af = { .fd = -1 };
	struct archive *a = NULL;
	uint8_t d[32];
	char cfg_hex[65];
	json_t *cfg, *man;

	for (int i = 0; i < 2; i++) {
		snprintf(tmpl[i], sizeof(tmpl[i]), "/tmp/enclaver-layer-XXXXXX");
		fds[i] = mkstemp(tmpl[i]);
		if (fds[i] < 0) {
			err_sys(err, "temporary layer file");
			goto out;
		}
		unlink(tmpl[i]);
		if (write_layer(in, i, fds[i], digests[i], &lens[i], err) < 0)
			goto out;
	}
	cfg = json_pack("{s:s, s:s, s:{s:[s], s:[s]}, s:{s:s, s:[s+, s+]}}", "architecture", "amd64", "os", "linux",
			"config", "Entrypoint", "/usr/local/bin/enclaver-run", "Env",
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "rootfs", "type", "layers",
			"diff_ids", "sha256:", digests[0], "sha256:", digests[1]);
	config = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(cfg);
	sha256(config, strlen(config), d);
	hex_encode(d, 32, cfg_hex);
	snprintf(image_id, 80, "sha256:%s", cfg_hex);
	snprintf(name, sizeof(name), "%s.json", cfg_hex);
	{
		char l0[80], l1[80];

		snprintf(l0, sizeof(l0), "%s/layer.tar", digests[0]);
		snprintf(l1, sizeof(l1), "%s/layer.tar", digests[1]);
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

		snprintf(dir, sizeof(dir), "%s/", digests[i]);
		snprintf(member, sizeof(member), "%s/layer.tar", digests[i]);
		if (add_dir(a, dir, in->mtime) < 0 || add_entry(a, member, S_IFREG | 0644, (int64_t)lens[i], in->mtime) < 0) {
			err_set(err, EIO, "%s: %s", out, archive_error_string(a));
			goto out;
		}
		lseek(fds[i], 0, SEEK_SET);
		while ((n = read(fds[i], chunk, sizeof(chunk))) > 0)
			if (archive_write_data(a, chunk, (size_t)n) != n) {
				err_set(err, EIO, "%s: %s", out, archive_error_string(a));
				goto out;
			}
	}
	if (add_entry(a, name, S_IFREG | 0644, (int64_t)strlen(config), in->mtime) < 0 ||
	    archive_write_data(a, config, strlen(config)) != (la_ssize_t)strlen(config) ||
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
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(config);
	free(manifest);
	return rc;
}
