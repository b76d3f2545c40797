/* Bootstrap ramdisk writer. Runs in the CLI at build time. */
#include "eif/bootkit.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/mem.h"
#include "eif/initfiles.h"

static int add_file(struct cpio_writer *w, const char *name, const char *path, struct err *err)
{
	autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t chunk[65536];
	struct stat st;
	struct cpio_entry e = { .name = name, .mode = S_IFREG | 0755, .mtime = CPIO_LINUXKIT_MTIME };
	ssize_t n;
	uint64_t left;

	if (fd < 0 || fstat(fd, &st) < 0)
		return err_sys(err, "%s", path);
	if (!S_ISREG(st.st_mode))
		return err_set(err, EINVAL, "%s: not a regular file", path);
	e.size = (uint64_t)st.st_size;
	if (cpio_write_header(w, &e, err) < 0)
		return -1;
	left = e.size;
	while (left && (n = fs_read_full(fd, chunk, sizeof(chunk) < left ? sizeof(chunk) : (size_t)left)) > 0) {
		if (cpio_write_data(w, chunk, (size_t)n, err) < 0)
			return -1;
		left -= (uint64_t)n;
	}
	if (left)
		return err_set(err, EIO, "%s: changed size while being read", path);
	return 0;
}

/* The kit's modules in one folder, in their names' order (which is their load order), under
 * the ramdisk folder `into`. */
static int add_module_dir(struct cpio_writer *w, const char *dir, const char *into, struct err *err)
{
	struct cpio_entry d = { .name = into, .mode = S_IFDIR | 0755, .mtime = CPIO_LINUXKIT_MTIME };
	struct dirent **list = NULL;
	int n = scandir(dir, &list, initfiles_module_filter, alphasort), rc = 0;

	if (n < 0)
		return err_sys(err, "%s", dir);
	if (!n)
		rc = err_set(err, ENOENT, "%s: no kernel modules (*.ko) in it", dir);
	if (!rc)
		rc = cpio_add(w, &d, NULL, err);
	for (int i = 0; i < n; i++) {
		char name[512], path[4200];

		snprintf(name, sizeof(name), "%s/%s", into, list[i]->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		if (!rc)
			rc = add_file(w, name, path, err);
		free(list[i]);
	}
	free(list);
	return rc;
}

/* The boot modules, then those of net/ when the kit has them. */
static int add_modules(struct cpio_writer *w, const char *dir, struct err *err)
{
	char net[4200];
	struct stat st;

	if (add_module_dir(w, dir, BOOTKIT_MODULES_DIR, err) < 0)
		return -1;
	snprintf(net, sizeof(net), "%s/" BOOTKIT_NET_SUBDIR, dir);
	if (stat(net, &st) < 0 || !S_ISDIR(st.st_mode))
		return 0;
	return add_module_dir(w, net, BOOTKIT_MODULES_DIR "/" BOOTKIT_NET_SUBDIR, err);
}

int bootkit_write_bootstrap(struct cpio_writer *w, const char *init_path, const char *nsm_path,
			    const char *modules_dir, struct err *err)
{
	struct cpio_entry dev = { .name = "dev", .mode = S_IFDIR | 0755, .mtime = CPIO_LINUXKIT_MTIME };

	if (cpio_add(w, &dev, NULL, err) < 0 || add_file(w, "init", init_path, err) < 0)
		return -1;
	if (nsm_path && add_file(w, "nsm.ko", nsm_path, err) < 0)
		return -1;
	if (modules_dir && add_modules(w, modules_dir, err) < 0)
		return -1;
	return cpio_finish(w, err);
}

static int fd_sink(void *ctx, const void *data, size_t len, struct err *err)
{
	if (fs_write_full(*(int *)ctx, data, len) < 0)
		return err_sys(err, "write");
	return 0;
}

int bootkit_bootstrap_file(const char *init_path, const char *nsm_path, const char *modules_dir,
			   const char *out_path, struct err *err)
{
	struct atomic_file af;
	struct cpio_writer w;

	if (atomic_file_open(&af, out_path, 0644, err) < 0)
		return -1;
	cpio_writer_init(&w, fd_sink, &af.fd);
	if (bootkit_write_bootstrap(&w, init_path, nsm_path, modules_dir, err) < 0) {
		atomic_file_abort(&af);
		return err_wrap(err, "%s", out_path);
	}
	return atomic_file_commit(&af, err);
}
