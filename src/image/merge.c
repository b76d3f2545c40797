/* Layer merging into cpio. See merge.h for the rules. */
#include "image/merge.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/hex.h"
#include "crypto/sha.h"

#define MAX_PATH 4000

int merge_normalize(const char *in, char *out, struct err *err)
{
	const char *p = in;
	size_t n = 0;

	while (*p) {
		const char *slash = strchr(p, '/');
		size_t l = slash ? (size_t)(slash - p) : strlen(p);

		if (l == 2 && p[0] == '.' && p[1] == '.')
			return err_set(err, EINVAL, "%s: path escapes the root", in);
		if (l && !(l == 1 && p[0] == '.')) {
			if (n)
				out[n++] = '/';
			memcpy(out + n, p, l);
			n += l;
		}
		if (!slash)
			break;
		p = slash + 1;
	}
	out[n] = 0;
	if (n > MAX_PATH)
		return err_set(err, ENAMETOOLONG, "%.64s...: path too long", in);
	return 0;
}

/* A layer's regular files as written: where their data is in the archive, and the ino of their
 * hard-link group once one of the layer's hard links names them. Open addressing, FNV-1a. */
struct file_rec {
	char *path;
	struct cpio_entry e; /* e.name unused */
	uint64_t data_off;
	uint32_t group_ino;
	bool hidden;      /* an upper layer replaced it: its data was not written */
	char *stand_in;   /* then the first of its links, written with its data in its place */
};

struct merge_files {
	struct file_rec *slots;
	size_t cap, n;
};

static size_t files_slot(const struct merge_files *f, const char *path)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *c = path; *c; c++)
		h = (h ^ (uint8_t)*c) * 1099511628211ull;
	for (size_t i = (size_t)(h & (f->cap - 1));; i = (i + 1) & (f->cap - 1))
		if (!f->slots[i].path || !strcmp(f->slots[i].path, path))
			return i;
}

static struct file_rec *files_get(struct merge_files *f, const char *path)
{
	struct file_rec *r = f->cap ? &f->slots[files_slot(f, path)] : NULL;

	return r && r->path ? r : NULL;
}

static struct file_rec *files_put(struct merge_files *f, const char *path)
{
	struct file_rec *r;

	if (2 * (f->n + 1) > f->cap) {
		struct merge_files bigger = { calloc(f->cap ? 2 * f->cap : 256, sizeof(struct file_rec)),
					      f->cap ? 2 * f->cap : 256, f->n };

		if (!bigger.slots)
			abort();
		for (size_t i = 0; i < f->cap; i++)
			if (f->slots[i].path)
				bigger.slots[files_slot(&bigger, f->slots[i].path)] = f->slots[i];
		free(f->slots);
		*f = bigger;
	}
	r = &f->slots[files_slot(f, path)];
	if (!r->path) {
		r->path = strdup(path);
		if (!r->path)
			abort();
		f->n++;
	}
	return r;
}

static void files_clear(struct merge_files *f)
{
	for (size_t i = 0; i < f->cap; i++) {
		free(f->slots[i].path);
		free(f->slots[i].stand_in);
	}
	free(f->slots);
	*f = (struct merge_files){ 0 };
}

void merge_init(struct merge *m, struct cpio_writer *w, const char *prefix)
{
	memset(m, 0, sizeof(*m));
	m->w = w;
	snprintf(m->prefix, sizeof(m->prefix), "%s", prefix);
	pathset_init(&m->emitted);
	pathset_init(&m->synthetic);
	pathset_init(&m->nondir);
	pathset_init(&m->whiteout);
	pathset_init(&m->opaque);
	pathset_init(&m->layer_whiteout);
	pathset_init(&m->layer_opaque);
	pathset_init(&m->layer_emitted);
	m->passwd = (struct buf)BUF_INIT;
	m->group = (struct buf)BUF_INIT;
	m->layer_files = calloc(1, sizeof(*m->layer_files));
	if (!m->layer_files)
		abort();
}

void merge_free(struct merge *m)
{
	pathset_free(&m->emitted);
	pathset_free(&m->synthetic);
	pathset_free(&m->nondir);
	pathset_free(&m->whiteout);
	pathset_free(&m->opaque);
	pathset_free(&m->layer_whiteout);
	pathset_free(&m->layer_opaque);
	pathset_free(&m->layer_emitted);
	buf_free(&m->passwd);
	buf_free(&m->group);
	for (size_t i = 0; i < m->n_caps; i++)
		free(m->caps[i].path);
	free(m->caps);
	if (m->layer_files)
		files_clear(m->layer_files);
	free(m->layer_files);
}

void merge_hide(struct merge *m, const char *path)
{
	pathset_add(&m->whiteout, path);
}

/* Hidden by an upper layer: p or a parent whited out, a parent opaque or not a folder. */
static bool hidden(const struct merge *m, const char *p)
{
	char a[MAX_PATH + 1];
	size_t n = strlen(p);

	memcpy(a, p, n + 1);
	if (pathset_has(&m->whiteout, a) || (m->in_layer && m->lower_hidden))
		return true;
	while (n) {
		while (n && a[n - 1] != '/')
			n--;
		if (!n)
			break;
		a[--n] = 0; /* the parent */
		if (pathset_has(&m->whiteout, a) || pathset_has(&m->opaque, a) || pathset_has(&m->nondir, a))
			return true;
	}
	return false;
}

static int emit_header(struct merge *m, const char *p, const struct cpio_entry *tmpl, struct err *err)
{
	char name[MAX_PATH + 80];
	struct cpio_entry e = *tmpl;

	snprintf(name, sizeof(name), "%s%s%s", m->prefix, *p ? "/" : "", p);
	e.name = name;
	m->entries++;
	return cpio_write_header(m->w, &e, err);
}

/* Parents first: the kernel's initramfs unpacker does not create missing folders. */
static int ensure_parents(struct merge *m, const char *p, struct err *err)
{
	char a[MAX_PATH + 1];
	const char *s = p;

	while ((s = strchr(s, '/'))) {
		size_t n = (size_t)(s - p);
		struct cpio_entry d = { .mode = S_IFDIR | 0755 };

		memcpy(a, p, n);
		a[n] = 0;
		s++;
		if (pathset_has(&m->emitted, a) || pathset_has(&m->synthetic, a))
			continue;
		if (emit_header(m, a, &d, err) < 0)
			return -1;
		pathset_add(&m->synthetic, a);
	}
	return 0;
}

/* Whether p should be written now; a folder written only as a synthetic parent gets its real
 * entry (written again, which updates its metadata). */
static bool claim(struct merge *m, const char *p, bool is_dir)
{
	if (hidden(m, p))
		return false;
	if (pathset_has(&m->emitted, p)) {
		/* the same layer again: its later entry replaces the earlier, as extraction does */
		if (!m->in_layer || !pathset_has(&m->layer_emitted, p))
			return false;
		if (!is_dir)
			pathset_add(&m->nondir, p);
		return true;
	}
	if (!is_dir && pathset_has(&m->synthetic, p))
		return false; /* an upper layer has a folder here */
	pathset_add(&m->emitted, p);
	if (m->in_layer)
		pathset_add(&m->layer_emitted, p);
	if (!is_dir)
		pathset_add(&m->nondir, p);
	return true;
}

int merge_add_file(struct merge *m, const char *path, mode_t mode, const void *data, size_t len, struct err *err)
{
	struct cpio_entry e = { .mode = (uint32_t)mode, .mtime = CPIO_LINUXKIT_MTIME, .size = len };

	if (!claim(m, path, false))
		return 0;
	if (ensure_parents(m, path, err) < 0 || emit_header(m, path, &e, err) < 0)
		return -1;
	return cpio_write_data(m->w, data, len, err);
}

bool merge_has(const struct merge *m, const char *path)
{
	return pathset_has(&m->emitted, path) || pathset_has(&m->synthetic, path);
}

int merge_touch_dir(struct merge *m, const char *path, struct err *err)
{
	struct cpio_entry e = { .mode = S_IFDIR | 0755, .mtime = CPIO_LINUXKIT_MTIME };

	if (merge_has(m, path) || !claim(m, path, true))
		return 0;
	if (ensure_parents(m, path, err) < 0)
		return -1;
	return emit_header(m, path, &e, err);
}

int merge_touch_symlink(struct merge *m, const char *path, const char *target, struct err *err)
{
	if (pathset_has(&m->emitted, path))
		return 0;
	return merge_add_file(m, path, S_IFLNK | 0777, target, strlen(target), err);
}

struct blob_reader {
	const struct layer_blob *l;
	uint64_t pos;
	struct sha_ctx sha;
	uint8_t buf[1 << 16];
};

static la_ssize_t blob_read(struct archive *a, void *ctx, const void **out)
{
	struct blob_reader *r = ctx;
	uint64_t left = r->l->len - r->pos;
	ssize_t n;

	if (!left)
		return 0;
	n = pread(r->l->fd, r->buf, left < sizeof(r->buf) ? (size_t)left : sizeof(r->buf), (off_t)(r->l->off + r->pos));
	if (n < 0) {
		archive_set_error(a, errno, "read: %s", strerror(errno));
		return -1;
	}
	if (n == 0) {
		archive_set_error(a, EIO, "blob shorter than recorded");
		return -1;
	}
	r->pos += (uint64_t)n;
	sha_update(&r->sha, r->buf, (size_t)n);
	*out = r->buf;
	return n;
}

/* Relative symlink from the folder of link to target (both normalised): tar hard links become
 * symlinks, as linuxkit writes them. */
static void relative_target(const char *link, const char *target, char *out, size_t size)
{
	size_t common = 0, i = 0;
	int ups = 0;

	/* common folder prefix */
	while (link[i] && target[i] && link[i] == target[i]) {
		if (link[i] == '/')
			common = i + 1;
		i++;
	}
	for (const char *s = link + common; (s = strchr(s, '/')); s++)
		ups++;
	out[0] = 0;
	for (int k = 0; k < ups; k++)
		strncat(out, "../", size - strlen(out) - 1);
	strncat(out, target + common, size - strlen(out) - 1);
}

/* A hard link to a file of the same layer. The kernel's unpacker (and ours) join entries with
 * nlink >= 2 and one ino, the first of them making the file: the target is written again as the
 * first of its group (its data read back from the archive so far), then each name joins it. */
static int add_hard_link(struct merge *m, const char *p, struct file_rec *target, struct archive_entry *ae,
			 struct err *err)
{
	struct cpio_entry e;
	struct file_rec *r;
	uint32_t group;

	if (!target->group_ino) {
		uint8_t chunk[65536];
		uint64_t off = target->data_off, left = target->e.size;

		e = target->e;
		e.nlink = 2;
		target->group_ino = cpio_next_ino(m->w);
		if (emit_header(m, target->path, &e, err) < 0)
			return -1;
		target->data_off = m->w->offset;
		while (left) {
			size_t n = left < sizeof(chunk) ? (size_t)left : sizeof(chunk);

			if (m->w->read_back(m->w->ctx, off, chunk, n, err) < 0 || cpio_write_data(m->w, chunk, n, err) < 0)
				return -1;
			off += n;
			left -= n;
		}
	}
	group = target->group_ino;
	/* the link's own owner and mode apply to the file, as Docker's extraction applies them */
	e = (struct cpio_entry){ .mode = S_IFREG | (archive_entry_perm(ae) & 07777),
				 .uid = (uint32_t)archive_entry_uid(ae), .gid = (uint32_t)archive_entry_gid(ae),
				 .mtime = (uint32_t)archive_entry_mtime(ae), .nlink = 2, .ino = group };
	if (ensure_parents(m, p, err) < 0 || emit_header(m, p, &e, err) < 0)
		return -1;
	/* a link to the link joins the same group (target may move as the table grows: not used) */
	r = files_put(m->layer_files, p);
	*r = (struct file_rec){ .path = r->path, .e = e, .data_off = m->w->offset, .group_ino = group };
	return 0;
}

void merge_caps_record(const struct merge *m, struct buf *out)
{
	for (size_t i = 0; i < m->n_caps; i++) {
		buf_append_byte(out, '/');
		buf_append(out, m->caps[i].path, strlen(m->caps[i].path) + 1);
		buf_append(out, m->caps[i].hex, strlen(m->caps[i].hex) + 1);
		buf_append_byte(out, '\n');
	}
}

/* The extended attributes of an entry written as p: file capabilities are kept for the enclave
 * to set again (what p had before, from an earlier entry of the layer, goes); the others (which
 * cpio cannot carry either) are counted for one warning. */
static void take_xattrs(struct merge *m, const char *p, struct archive_entry *ae)
{
	const char *name;
	const void *value;
	size_t size;

	for (size_t i = 0; i < m->n_caps; i++)
		if (!strcmp(m->caps[i].path, p)) {
			free(m->caps[i].path);
			m->caps[i] = m->caps[--m->n_caps];
			break;
		}
	if (!archive_entry_xattr_reset(ae))
		return;
	while (archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK) {
		if (!strcmp(name, "security.capability") && S_ISREG(archive_entry_filetype(ae)) && size &&
		    size <= 64) {
			if (m->n_caps == m->cap_caps) {
				m->cap_caps = m->cap_caps ? 2 * m->cap_caps : 16;
				m->caps = realloc(m->caps, m->cap_caps * sizeof(*m->caps));
				if (!m->caps)
					abort();
			}
			m->caps[m->n_caps].path = strdup(p);
			if (!m->caps[m->n_caps].path)
				abort();
			hex_encode(value, size, m->caps[m->n_caps++].hex);
			continue;
		}
		if (!m->dropped_xattrs++)
			snprintf(m->dropped_example, sizeof(m->dropped_example), "%s on /%s", name, p);
	}
}

static int add_stand_in(struct merge *m, const char *p, struct file_rec *target, struct archive_entry *link,
			struct err *err);

static int add_entry(struct merge *m, struct archive *a, struct archive_entry *ae, const char *layer,
		     struct err *err)
{
	char p[MAX_PATH + 1], t[MAX_PATH + 1], rel[2 * MAX_PATH];
	struct buf *account = NULL;
	const char *raw = archive_entry_pathname(ae), *base;
	const char *hl = archive_entry_hardlink(ae);
	mode_t type = archive_entry_filetype(ae);
	struct cpio_entry e = { 0 };

	if (!raw || strlen(raw) > MAX_PATH)
		return err_set(err, EINVAL, "%s: entry without a usable name", layer);
	if (merge_normalize(raw, p, err) < 0)
		return err_wrap(err, "%s", layer);
	if (!*p)
		return 0; /* the root itself */
	base = strrchr(p, '/');
	base = base ? base + 1 : p;
	if (!strncmp(base, ".wh.", 4)) {
		char dir[MAX_PATH + 1];
		size_t dl = (size_t)(base - p);

		memcpy(dir, p, dl ? dl - 1 : 0);
		dir[dl ? dl - 1 : 0] = 0;
		if (!strcmp(base, ".wh..wh..opq")) {
			pathset_add(&m->layer_opaque, dir);
		} else if (strncmp(base, ".wh..wh.", 8) != 0) {
			char victim[MAX_PATH + 1];

			if (!strcmp(base + 4, "..") || !strcmp(base + 4, ".") || !base[4])
				return err_set(err, EINVAL, "%s: %s: whiteout of \"%s\" is not allowed", layer, raw, base + 4);
			snprintf(victim, sizeof(victim), "%s%s%s", dir, *dir ? "/" : "", base + 4);
			pathset_add(&m->layer_whiteout, victim);
		}
		return 0;
	}
	if (hl) {
		struct file_rec *target;

		if (merge_normalize(hl, t, err) < 0)
			return err_wrap(err, "%s: hard link %s", layer, raw);
		if (!*t)
			return err_set(err, EINVAL, "%s: %s: hard link to the root", layer, raw);
		relative_target(p, t, rel, sizeof(rel));
		if (!claim(m, p, false))
			return 0;
		/* a file this layer wrote: one inode with several names, as Docker keeps it */
		target = m->w->read_back ? files_get(m->layer_files, t) : NULL;
		if (target && target->hidden && target->stand_in)
			target = files_get(m->layer_files, target->stand_in);
		else if (target && target->hidden)
			return add_stand_in(m, p, target, ae, err);
		if (target)
			return add_hard_link(m, p, target, ae, err);
		e = (struct cpio_entry){ .mode = S_IFLNK | 0777, .uid = (uint32_t)archive_entry_uid(ae),
					 .gid = (uint32_t)archive_entry_gid(ae),
					 .mtime = (uint32_t)archive_entry_mtime(ae), .size = strlen(rel) };
		if (ensure_parents(m, p, err) < 0 || emit_header(m, p, &e, err) < 0)
			return -1;
		return cpio_write_data(m->w, rel, strlen(rel), err);
	}
	if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && type != AE_IFCHR && type != AE_IFBLK &&
	    type != AE_IFIFO)
		return 0; /* sockets and the like have no place in an image */
	if (!claim(m, p, type == AE_IFDIR)) {
		/* a file an upper layer replaced: its links in this layer still name its data */
		if (type == AE_IFREG && m->w->read_back) {
			struct file_rec *r = files_put(m->layer_files, p);

			free(r->stand_in);
			*r = (struct file_rec){ .path = r->path, .hidden = true,
						.e = { .mode = S_IFREG | (archive_entry_perm(ae) & 07777),
						       .size = archive_entry_size_is_set(ae) ? (uint64_t)archive_entry_size(ae) : 0 } };
		}
		/* an upper layer's folder already stands here: only a real folder may refine it */
		if (!(type == AE_IFDIR && pathset_has(&m->synthetic, p) && !hidden(m, p)))
			return 0;
	}
	pathset_add(&m->emitted, p);
	pathset_add(&m->layer_emitted, p);
	take_xattrs(m, p, ae);
	/* what the image's accounts are: this entry, whatever it is, is the last word on them */
	if (!strcmp(p, "etc/passwd") || !strcmp(p, "etc/group")) {
		bool pw = p[4] == 'p';

		account = pw ? &m->passwd : &m->group;
		buf_reset(account);
		*(pw ? &m->has_passwd : &m->has_group) = type == AE_IFREG;
		if (type != AE_IFREG)
			account = NULL;
	}
	e.mode = (uint32_t)(type | (archive_entry_perm(ae) & 07777));
	e.uid = (uint32_t)archive_entry_uid(ae);
	e.gid = (uint32_t)archive_entry_gid(ae);
	e.mtime = (uint32_t)archive_entry_mtime(ae);
	if (type == AE_IFCHR || type == AE_IFBLK) {
		e.rdevmajor = (uint32_t)archive_entry_rdevmajor(ae);
		e.rdevminor = (uint32_t)archive_entry_rdevminor(ae);
	}
	if (type == AE_IFLNK) {
		const char *target = archive_entry_symlink(ae);

		e.size = target ? strlen(target) : 0;
		if (ensure_parents(m, p, err) < 0 || emit_header(m, p, &e, err) < 0)
			return -1;
		return cpio_write_data(m->w, target, (size_t)e.size, err);
	}
	if (type == AE_IFREG)
		e.size = archive_entry_size_is_set(ae) ? (uint64_t)archive_entry_size(ae) : 0;
	if (ensure_parents(m, p, err) < 0 || emit_header(m, p, &e, err) < 0)
		return -1;
	if (type == AE_IFREG && m->w->read_back) {
		struct file_rec *r = files_put(m->layer_files, p);

		free(r->stand_in);
		*r = (struct file_rec){ .path = r->path, .e = e, .data_off = m->w->offset };
	}
	if (type == AE_IFREG) {
		uint8_t chunk[65536];
		uint64_t left = e.size;

		while (left) {
			la_ssize_t n = archive_read_data(a, chunk, left < sizeof(chunk) ? (size_t)left : sizeof(chunk));

			if (n <= 0)
				return err_set(err, EIO, "%s: %s: %s", layer, raw,
					       n < 0 ? archive_error_string(a) : "data shorter than its header says");
			if (cpio_write_data(m->w, chunk, (size_t)n, err) < 0)
				return -1;
			if (account && account->len + (size_t)n <= MERGE_MAX_ACCOUNTS)
				buf_append(account, chunk, (size_t)n);
			else if (account)
				return err_set(err, EFBIG, "%s: %s: larger than %u MiB, too large to read its accounts from",
					       layer, raw, MERGE_MAX_ACCOUNTS >> 20);
			left -= (uint64_t)n;
		}
	}
	return 0;
}

/* The uncompressed stream, which the tar reader reads through here to have it hashed. */
struct tar_reader {
	struct archive *outer; /* the blob, decompressed (libarchive's raw format) */
	struct sha_ctx sha;
};

static la_ssize_t tar_read(struct archive *a, void *ctx, const void **out)
{
	struct tar_reader *t = ctx;
	const void *p;
	size_t len;
	la_int64_t off;
	int st = archive_read_data_block(t->outer, &p, &len, &off);

	if (st == ARCHIVE_EOF)
		return 0;
	if (st != ARCHIVE_OK) {
		archive_set_error(a, EIO, "%s", archive_error_string(t->outer));
		return -1;
	}
	sha_update(&t->sha, p, len);
	*out = p;
	return (la_ssize_t)len;
}

static int check_digest(const char *want, struct sha_ctx *sha, const char *layer, const char *what, struct err *err)
{
	uint8_t digest[32];
	char hex[65];

	sha_final(sha, digest);
	hex_encode(digest, 32, hex);
	if (strncmp(want, "sha256:", 7) || strcmp(want + 7, hex))
		return err_set(err, EINVAL, "%s: digest mismatch: expected %s, %s is sha256:%s", layer, want, what, hex);
	return 0;
}

/* A layer's tar, read through the blob decompressed as one raw stream: the blob's bytes and the
 * stream's are hashed on the way (for the digest and the config's diff_id). Stays in place while
 * open: the readers hold pointers into it. */
struct layer_reader {
	struct archive *outer, *a;
	struct blob_reader *r;
	struct tar_reader t;
};

static int layer_open(struct layer_reader *lr, const struct layer_blob *l, struct err *err)
{
	struct archive_entry *ae;

	lr->outer = archive_read_new();
	lr->a = archive_read_new();
	lr->r = calloc(1, sizeof(*lr->r));
	if (!lr->outer || !lr->a || !lr->r)
		abort();
	lr->r->l = l;
	lr->t.outer = lr->outer;
	sha_init(&lr->r->sha, "SHA256");
	sha_init(&lr->t.sha, "SHA256");
	archive_read_support_filter_all(lr->outer);
	archive_read_support_format_raw(lr->outer);
	archive_read_support_format_tar(lr->a);
	if (archive_read_open(lr->outer, lr->r, NULL, blob_read, NULL) != ARCHIVE_OK ||
	    archive_read_next_header(lr->outer, &ae) != ARCHIVE_OK)
		return err_set(err, EINVAL, "%s: %s", l->name, archive_error_string(lr->outer));
	if (archive_read_open(lr->a, &lr->t, NULL, tar_read, NULL) != ARCHIVE_OK)
		return err_set(err, EINVAL, "%s: not a valid layer: %s", l->name, archive_error_string(lr->a));
	return 0;
}

static void layer_close(struct layer_reader *lr)
{
	sha_free(&lr->r->sha);
	sha_free(&lr->t.sha);
	free(lr->r);
	archive_read_free(lr->a);
	archive_read_free(lr->outer);
}

/* A hard link whose file an upper layer replaced: Docker's link still has the layer's data, which
 * was not written; it is read again from the layer (only in this case) and written under the
 * link's name, which stands in for the file from then on. */
static int add_stand_in(struct merge *m, const char *p, struct file_rec *target, struct archive_entry *link,
			struct err *err)
{
	struct layer_reader lr = { 0 };
	struct archive_entry *ae;
	char want[MAX_PATH + 1], name[MAX_PATH + 1];
	struct cpio_entry e = { .mode = S_IFREG | (archive_entry_perm(link) & 07777),
				.uid = (uint32_t)archive_entry_uid(link), .gid = (uint32_t)archive_entry_gid(link),
				.mtime = (uint32_t)archive_entry_mtime(link), .size = target->e.size };
	int rc = -1, st;

	snprintf(want, sizeof(want), "%s", target->path);
	if (layer_open(&lr, m->cur_layer, err) < 0)
		goto out;
	while ((st = archive_read_next_header(lr.a, &ae)) == ARCHIVE_OK || st == ARCHIVE_WARN) {
		const char *raw = archive_entry_pathname(ae);
		uint8_t chunk[65536];
		uint64_t left = e.size;

		if (!raw || strlen(raw) > MAX_PATH || merge_normalize(raw, name, err) < 0 || strcmp(name, want) ||
		    archive_entry_filetype(ae) != AE_IFREG || archive_entry_hardlink(ae))
			continue;
		if (ensure_parents(m, p, err) < 0 || emit_header(m, p, &e, err) < 0)
			goto out;
		while (left) {
			la_ssize_t n = archive_read_data(lr.a, chunk, left < sizeof(chunk) ? (size_t)left : sizeof(chunk));

			if (n <= 0) {
				err_set(err, EIO, "%s: %s: data shorter than its header says", m->cur_layer->name, raw);
				goto out;
			}
			if (cpio_write_data(m->w, chunk, (size_t)n, err) < 0)
				goto out;
			left -= (uint64_t)n;
		}
		{
			struct file_rec *s = files_put(m->layer_files, p);

			*s = (struct file_rec){ .path = s->path, .e = e, .data_off = m->w->offset - e.size };
		}
		take_xattrs(m, p, link); /* the file's capabilities, which the link's entry carries too */
		/* the table may have moved: find the replaced file's record again */
		target = files_get(m->layer_files, want);
		target->stand_in = strdup(p);
		if (!target->stand_in)
			abort();
		rc = 0;
		goto out;
	}
	err_set(err, EIO, "%s: %s: hard link to %s, which the layer does not hold", m->cur_layer->name, p, want);
out:
	if (lr.r)
		layer_close(&lr);
	return rc;
}

int merge_add_layer(struct merge *m, const struct layer_blob *l, struct err *err)
{
	struct layer_reader lr = { 0 };
	struct archive_entry *ae;
	int rc, st;

	m->cur_layer = l;
	m->in_layer = true;
	pathset_clear(&m->layer_emitted);
	files_clear(m->layer_files);
	if ((rc = layer_open(&lr, l, err)) < 0)
		goto out;
	while ((st = archive_read_next_header(lr.a, &ae)) == ARCHIVE_OK || st == ARCHIVE_WARN)
		if ((rc = add_entry(m, lr.a, ae, l->name, err)) < 0)
			goto out;
	if (st != ARCHIVE_EOF) {
		rc = err_set(err, EINVAL, "%s: not a valid layer: %s", l->name, archive_error_string(lr.a));
		goto out;
	}
	/* the digests cover every byte, also what the tar reader left unread */
	for (;;) {
		const void *dummy;
		la_ssize_t n = tar_read(lr.a, &lr.t, &dummy);

		if (n == 0)
			break;
		if (n < 0) {
			rc = err_set(err, EIO, "%s: cannot read the end of the layer: %s", l->name,
				     archive_error_string(lr.a));
			goto out;
		}
	}
	while (lr.r->pos < l->len) {
		const void *dummy;

		if (blob_read(lr.outer, lr.r, &dummy) <= 0) {
			rc = err_set(err, EIO, "%s: cannot read the end of the blob", l->name);
			goto out;
		}
	}
	if ((l->digest && (rc = check_digest(l->digest, &lr.r->sha, l->name, "the blob", err)) < 0) ||
	    (l->diff_id && (rc = check_digest(l->diff_id, &lr.t.sha, l->name,
					      "its uncompressed tar (the config's diff_id)", err)) < 0))
		goto out;
	/* this layer's whiteouts and opaque folders apply to the layers below it; an opaque root
	 * hides all of them */
	if (pathset_has(&m->layer_opaque, ""))
		m->lower_hidden = true;
	pathset_merge(&m->whiteout, &m->layer_whiteout);
	pathset_merge(&m->opaque, &m->layer_opaque);
	pathset_clear(&m->layer_whiteout);
	pathset_clear(&m->layer_opaque);
out:
	m->in_layer = false;
	pathset_clear(&m->layer_emitted);
	files_clear(m->layer_files);
	if (lr.r)
		layer_close(&lr);
	return rc;
}
