/* Customer ramdisk writer. */
#include "image/ramdisk.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "eif/initfiles.h"
#include "image/merge.h"
#include "image/user.h"

#define ODYN_MAX (64u << 20)
#define CAPS_FILE "etc/enclaver/capabilities" /* (enclave/caps.h reads it) */

/* linuxkit's /etc/hosts for init images */
static const char HOSTS[] = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\n";

char **ramdisk_command(const struct image *img, const struct image_user *u)
{
	static const char *const head[] = { "/sbin/odyn", "--config-dir", "/etc/enclaver" };
	const char *wd = img->workdir ? img->workdir : "";
	size_t n = 3 + 4 + 1, k = 0;
	char **v;

	for (char **p = img->entrypoint; *p; p++)
		n++;
	for (char **p = img->cmd; *p; p++)
		n++;
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		abort();
	for (size_t i = 0; i < 3; i++)
		v[k++] = strdup(head[i]);
	/* root in group 0 with no other groups is odyn's default */
	if (u->uid || u->gid || u->n_groups != 1) {
		struct buf b = BUF_INIT;

		buf_printf(&b, "%u:%u", u->uid, u->gid);
		for (size_t i = 0; i < u->n_groups; i++)
			buf_printf(&b, "%c%u", i ? ',' : ':', u->groups[i]);
		v[k++] = strdup("--user");
		v[k++] = strdup(buf_cstr(&b));
		buf_free(&b);
	}
	if (*wd && strcmp(wd, "/")) {
		v[k++] = strdup("--workdir");
		v[k++] = strdup(wd);
	}
	v[k++] = strdup("--");
	for (char **p = img->entrypoint; *p; p++)
		v[k++] = strdup(*p);
	for (char **p = img->cmd; *p; p++)
		v[k++] = strdup(*p);
	return v;
}

static void free_list(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

/* The image's environment, with HOME added as Docker's runtime adds it when the image sets none:
 * the user's home from /etc/passwd, else "/". */
static char **env_with_home(char *const *env, const char *home)
{
	size_t n = 0;
	bool has = false;
	char **v;

	for (; env[n]; n++)
		has |= !strncmp(env[n], "HOME=", 5);
	v = calloc(n + 2, sizeof(*v));
	if (!v)
		abort();
	for (size_t i = 0; i < n; i++)
		v[i] = strdup(env[i]);
	if (!has && asprintf(&v[n], "HOME=%s", home) < 0)
		abort();
	return v;
}

static int add_dir(struct cpio_writer *w, const char *name, struct err *err)
{
	struct cpio_entry e = { .name = name, .mode = S_IFDIR | 0755, .mtime = CPIO_LINUXKIT_MTIME };

	return cpio_add(w, &e, NULL, err);
}

static int add_lines(struct cpio_writer *w, const char *name, char *const *items, struct err *err)
{
	struct buf b = BUF_INIT;
	size_t n = 0;
	int rc;
	struct cpio_entry e = { .name = name, .mode = S_IFREG | 0644, .mtime = CPIO_LINUXKIT_MTIME };

	while (items[n])
		n++;
	rc = initfiles_format((const char *const *)items, n, &b, err);
	if (rc == 0) {
		e.size = b.len;
		rc = cpio_add(w, &e, b.data, err);
	}
	buf_free(&b);
	return rc < 0 ? err_wrap(err, "/%s", name) : 0;
}

int ramdisk_write_customer(struct cpio_writer *w, const struct ramdisk_inputs *in, struct err *err)
{
	static const char *const dropped[] = { ".dockerenv", "Dockerfile", "dev/console", "dev/pts", "dev/shm",
					       "etc/hostname" };
	static const char *const touched[] = { "dev", "dev/pts", "dev/shm", "etc", "proc", "sys" };
	static const char *const dirs[] = { "dev", "run", "sys", "var", "proc", "tmp" };
	struct buf odyn = BUF_INIT;
	struct merge m;
	struct image_user user;
	char **cmd = NULL, **env = NULL;
	int rc = -1;

	if (in->img->workdir && *in->img->workdir && in->img->workdir[0] != '/')
		return err_set(err, EINVAL, "WORKDIR %s: not an absolute path, which Docker would refuse too",
			       in->img->workdir);
	if (fs_read_file(in->odyn_path, ODYN_MAX, &odyn, err) < 0) {
		buf_free(&odyn);
		return err_wrap(err, "odyn");
	}
	merge_init(&m, w, "rootfs");
	if (add_dir(w, "rootfs", err) < 0)
		goto out;
	/* Above every layer: odyn, the manifest byte for byte, and linuxkit's replacements. */
	if (merge_add_file(&m, "sbin/odyn", S_IFREG | 0755, odyn.data, odyn.len, err) < 0 ||
	    merge_add_file(&m, "etc/enclaver/enclaver.yaml", S_IFREG | 0644, in->manifest, in->manifest_len, err) < 0 ||
	    merge_add_file(&m, "etc/hosts", S_IFREG | 0644, HOSTS, sizeof(HOSTS) - 1, err) < 0 ||
	    merge_add_file(&m, "etc/resolv.conf", S_IFLNK | 0777, "/run/resolvconf/resolv.conf", 27, err) < 0)
		goto out;
	for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
		merge_hide(&m, dropped[i]);
	merge_hide(&m, CAPS_FILE); /* ours, written below */
	for (size_t i = in->img->n_layers; i-- > 0;)
		if (merge_add_layer(&m, &in->img->layers[i], err) < 0)
			goto out;
	if (image_user_resolve(in->img->user ? in->img->user : "", m.has_passwd ? (const char *)m.passwd.data : NULL,
			       m.passwd.len, m.has_group ? (const char *)m.group.data : NULL, m.group.len, &user, err) < 0)
		goto out;
	for (size_t i = 0; i < sizeof(touched) / sizeof(touched[0]); i++)
		if (merge_touch_dir(&m, touched[i], err) < 0)
			goto out;
	if (merge_touch_symlink(&m, "etc/mtab", "/proc/mounts", err) < 0)
		goto out;
	/* file capabilities, which cpio cannot carry, measured with the rest: odyn sets them again
	 * before the app starts */
	if (m.n_caps) {
		struct buf record = BUF_INIT;
		struct cpio_entry e = { .name = "rootfs/" CAPS_FILE, .mode = S_IFREG | 0644,
					.mtime = CPIO_LINUXKIT_MTIME };

		merge_caps_record(&m, &record);
		e.size = record.len;
		rc = cpio_add(w, &e, record.data, err);
		buf_free(&record);
		if (rc < 0)
			goto out;
		rc = -1;
	}
	if (m.dropped_xattrs)
		log_warn("%llu extended attribute%s of the image cannot be carried into the enclave and %s left out "
			 "(%s%s); only file capabilities (security.capability) are kept",
			 (unsigned long long)m.dropped_xattrs, m.dropped_xattrs > 1 ? "s" : "",
			 m.dropped_xattrs > 1 ? "are" : "is", m.dropped_example, m.dropped_xattrs > 1 ? ", ..." : "");
	/* linuxkit's "files": the prefix folder again, the mount points the image lacks (linuxkit
	 * writes them all, at 0755, over the image's own: /tmp lost its 1777), then cmd and env */
	if (add_dir(w, "rootfs", err) < 0)
		goto out;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char name[32];

		snprintf(name, sizeof(name), "rootfs/%s", dirs[i]);
		if (!merge_has(&m, dirs[i]) && add_dir(w, name, err) < 0)
			goto out;
	}
	cmd = ramdisk_command(in->img, &user);
	env = env_with_home(in->img->env, user.home);
	if (add_lines(w, "cmd", cmd, err) < 0 || add_lines(w, "env", env, err) < 0)
		goto out;
	rc = cpio_finish(w, err);
out:
	free_list(cmd);
	free_list(env);
	merge_free(&m);
	buf_free(&odyn);
	return rc;
}
