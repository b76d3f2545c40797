/*
 * cpio newc writer (byte-compatible with linuxkit's gocpio) and reader. The reader runs on
 * ramdisks taken from EIFs, which may come from anyone: names and sizes are checked before use.
 */
#include "eif/cpio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/mem.h"

#define HDR_LEN 110
static const uint8_t zeros[512];

static int emit(struct cpio_writer *w, const void *data, size_t len, struct err *err)
{
	if (len && w->sink(w->ctx, data, len, err) < 0)
		return -1;
	w->offset += len;
	return 0;
}

static int pad_to(struct cpio_writer *w, unsigned m, struct err *err)
{
	return emit(w, zeros, (size_t)((m - w->offset % m) % m), err);
}

void cpio_writer_init(struct cpio_writer *w, cpio_sink_fn sink, void *ctx)
{
	memset(w, 0, sizeof(*w));
	w->sink = sink;
	w->ctx = ctx;
	w->ino = CPIO_FIRST_INO;
}

int cpio_write_header(struct cpio_writer *w, const struct cpio_entry *e, struct err *err)
{
	char hdr[HDR_LEN + 1];
	size_t namelen = strlen(e->name);
	uint32_t type = (e->mode & S_IFMT) >> 12;

	if (w->pending)
		return err_set(err, EINVAL, "cpio: previous entry is %llu bytes short",
			       (unsigned long long)w->pending);
	if (e->size > 0xffffffffu)
		return err_set(err, EFBIG, "cpio: %s: larger than 4 GiB, which newc cannot record", e->name);
	if (namelen == 0 || namelen > CPIO_NAME_MAX)
		return err_set(err, EINVAL, "cpio: invalid entry name length %zu", namelen);
	if (pad_to(w, 4, err) < 0)
		return -1;
	/* gocpio: constant devmajor 3 / devminor 1, nlink 2 for directories. */
	snprintf(hdr, sizeof(hdr), "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		 e->ino ? e->ino : w->ino, (e->mode & 0xfff) | (type << 12), e->uid, e->gid,
		 e->nlink ? e->nlink : type == 4 ? 2u : 1u, e->mtime, (uint32_t)e->size, 3u, 1u, e->rdevmajor,
		 e->rdevminor, (uint32_t)namelen + 1, 0u);
	if (emit(w, hdr, HDR_LEN, err) < 0 || emit(w, e->name, namelen + 1, err) < 0 || pad_to(w, 4, err) < 0)
		return -1;
	if (!e->ino)
		w->ino++;
	w->pending = e->size;
	return 0;
}

uint32_t cpio_next_ino(const struct cpio_writer *w)
{
	return w->ino;
}

int cpio_write_data(struct cpio_writer *w, const void *data, size_t len, struct err *err)
{
	if (len > w->pending)
		return err_set(err, EINVAL, "cpio: %zu bytes written past the entry's size", len);
	w->pending -= len;
	return emit(w, data, len, err);
}

int cpio_add(struct cpio_writer *w, const struct cpio_entry *e, const void *data, struct err *err)
{
	if (cpio_write_header(w, e, err) < 0)
		return -1;
	return cpio_write_data(w, data, (size_t)e->size, err);
}

int cpio_finish(struct cpio_writer *w, struct err *err)
{
	struct cpio_entry t = { .name = "TRAILER!!!" };

	if (cpio_write_header(w, &t, err) < 0)
		return -1;
	return pad_to(w, 512, err);
}

void cpio_reader_init(struct cpio_reader *r, cpio_source_fn source, void *ctx)
{
	memset(r, 0, sizeof(*r));
	r->source = source;
	r->ctx = ctx;
}

static int read_exact(struct cpio_reader *r, void *data, size_t len, struct err *err)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = r->source(r->ctx, (uint8_t *)data + got, len - got);

		if (n < 0)
			return err_sys(err, "cpio: read at offset %llu", (unsigned long long)r->offset);
		if (n == 0)
			return err_set(err, EINVAL, "cpio: truncated archive at offset %llu",
				       (unsigned long long)(r->offset + got));
		got += (size_t)n;
	}
	r->offset += len;
	return 0;
}

static int skip(struct cpio_reader *r, uint64_t len, struct err *err)
{
	uint8_t tmp[4096];

	if (r->skip && len) {
		if (r->skip(r->ctx, len) < 0)
			return err_set(err, EINVAL, "cpio: truncated archive at offset %llu", (unsigned long long)r->offset);
		r->offset += len;
		return 0;
	}
	while (len) {
		size_t n = len > sizeof(tmp) ? sizeof(tmp) : (size_t)len;

		if (read_exact(r, tmp, n, err) < 0)
			return -1;
		len -= n;
	}
	return 0;
}

static int parse_hex8(const char *s, uint32_t *out)
{
	uint32_t v = 0;

	for (int i = 0; i < 8; i++) {
		char c = s[i];
		int d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return 0;
}

int cpio_next(struct cpio_reader *r, struct cpio_entry *e, struct err *err)
{
	char hdr[HDR_LEN];
	uint32_t f[13];
	uint32_t pad;

	if (skip(r, r->remaining + r->pad, err) < 0)
		return -1;
	r->remaining = r->pad = 0;
	if (read_exact(r, hdr, HDR_LEN, err) < 0)
		return -1;
	if (memcmp(hdr, "070701", 6) != 0 && memcmp(hdr, "070702", 6) != 0)
		return err_set(err, EINVAL, "cpio: bad magic at offset %llu (not a newc archive)",
			       (unsigned long long)(r->offset - HDR_LEN));
	for (int i = 0; i < 13; i++)
		if (parse_hex8(hdr + 6 + 8 * i, &f[i]) < 0)
			return err_set(err, EINVAL, "cpio: bad header field at offset %llu",
				       (unsigned long long)(r->offset - HDR_LEN));
	/* f: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check */
	if (f[11] == 0 || f[11] > CPIO_NAME_MAX + 1)
		return err_set(err, EINVAL, "cpio: name size %u out of range", f[11]);
	if (read_exact(r, r->name, f[11], err) < 0)
		return -1;
	if (r->name[f[11] - 1] != 0 || strlen(r->name) != f[11] - 1)
		return err_set(err, EINVAL, "cpio: entry name is not NUL-terminated");
	pad = (uint32_t)((4 - r->offset % 4) % 4);
	if (skip(r, pad, err) < 0)
		return -1;
	memset(e, 0, sizeof(*e));
	e->name = r->name;
	e->mode = f[1];
	e->uid = f[2];
	e->gid = f[3];
	e->mtime = f[5];
	e->size = f[6];
	e->rdevmajor = f[9];
	e->rdevminor = f[10];
	e->ino = f[0];
	e->nlink = f[4];
	if (strcmp(r->name, "TRAILER!!!") == 0)
		return 0;
	r->remaining = e->size;
	r->pad = (uint32_t)((4 - (r->offset + e->size) % 4) % 4);
	return 1;
}

ssize_t cpio_read_data(struct cpio_reader *r, void *data, size_t len, struct err *err)
{
	if (len > r->remaining)
		len = (size_t)r->remaining;
	if (len == 0)
		return 0;
	if (read_exact(r, data, len, err) < 0)
		return -1;
	r->remaining -= len;
	return (ssize_t)len;
}

bool cpio_name_safe(const char *name)
{
	const char *p = name;

	/* Absolute names and ".." are the only ways out: extraction never follows symlinks. */
	if (!*name || *name == '/')
		return false;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t l = slash ? (size_t)(slash - p) : strlen(p);

		if (l == 2 && p[0] == '.' && p[1] == '.')
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

static ssize_t fd_source(void *ctx, void *data, size_t len)
{
	return fs_read_full(*(int *)ctx, data, len);
}

/* Opens the directory holding the last component of name, never following a symlink on the
 * way: an entry cannot write through a link planted by an earlier entry. */
static int open_parent(int root, const char *name, char *last, struct err *err)
{
	int dir = dup(root);
	char comp[CPIO_NAME_MAX + 1];
	const char *p = name;

	if (dir < 0)
		return err_sys(err, "dup");
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t l = slash ? (size_t)(slash - p) : strlen(p);
		int next;

		if (!slash || !slash[1]) {
			memcpy(last, p, l);
			last[l] = 0;
			return dir;
		}
		memcpy(comp, p, l);
		comp[l] = 0;
		p = slash + 1;
		if (l == 0 || strcmp(comp, ".") == 0)
			continue;
		next = openat(dir, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			err_sys(err, "cpio: %s: cannot open directory %s", name, comp);
			close(dir);
			return -1;
		}
		close(dir);
		dir = next;
	}
}

/* The first name of each hard-linked file seen (nlink >= 2), by ino; bounded, so that a hostile
 * archive cannot make it grow without end (past the bound, files stay apart). */
#define MAX_LINKED 65536

struct links {
	struct {
		uint32_t ino;
		char *name;
	} *v;
	size_t n, cap;
};

static const char *links_find(const struct links *l, uint32_t ino)
{
	for (size_t i = l->n; i-- > 0;)
		if (l->v[i].ino == ino)
			return l->v[i].name;
	return NULL;
}

static void links_add(struct links *l, uint32_t ino, const char *name)
{
	if (l->n == MAX_LINKED)
		return;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			abort();
	}
	l->v[l->n].ino = ino;
	l->v[l->n].name = strdup(name);
	if (!l->v[l->n].name)
		abort();
	l->n++;
}

static void links_free(struct links *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
}

/* A later name of a hard-linked file: a link to the first name, resolved as safely as any entry
 * (no symlink on the way; linkat does not follow a symlink at the old name either). Returns an
 * open descriptor of the file, -1 when the first name is gone (then the entry is a file of its
 * own, as the kernel would leave it). */
static int link_to_first(int root, const char *first, int dir, const char *last)
{
	char first_last[CPIO_NAME_MAX + 1];
	struct err ignored = { 0 };
	autoclose int fdir = open_parent(root, first, first_last, &ignored);

	if (fdir < 0 || linkat(fdir, first_last, dir, last, 0) < 0)
		return -1;
	return openat(dir, last, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
}

static int extract_entry(struct cpio_reader *r, int root, const struct cpio_entry *e, struct links *links,
			 struct err *err)
{
	char last[CPIO_NAME_MAX + 1];
	autoclose int dir = -1;
	uint32_t type = e->mode & S_IFMT;
	mode_t perm = e->mode & 07777;

	if (!cpio_name_safe(e->name))
		return err_set(err, EINVAL, "cpio: entry \"%s\" would escape the extraction root", e->name);
	dir = open_parent(root, e->name, last, err);
	if (dir < 0)
		return -1;
	if (!*last || strcmp(last, ".") == 0)
		return 0; /* the root itself */
	switch (type) {
	case S_IFDIR: {
		struct stat st;

		if (mkdirat(dir, last, perm) < 0) {
			if (errno != EEXIST || fstatat(dir, last, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISDIR(st.st_mode))
				return err_sys(err, "cpio: mkdir %s", e->name);
		}
		if (fchmodat(dir, last, perm, 0) < 0)
			return err_sys(err, "cpio: chmod %s", e->name);
		return 0;
	}
	case S_IFREG: {
		autoclose int fd = -1;
		uint8_t chunk[65536];
		ssize_t n;

		const char *first = e->nlink >= 2 ? links_find(links, e->ino) : NULL;

		if (unlinkat(dir, last, 0) < 0 && errno != ENOENT)
			return err_sys(err, "cpio: replace %s", e->name);
		if (first && (fd = link_to_first(root, first, dir, last)) >= 0) {
			/* its data, if any, replaces the file's */
			if (e->size && ftruncate(fd, (off_t)e->size) < 0)
				return err_sys(err, "cpio: write %s", e->name);
		} else {
			fd = openat(dir, last, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm & 0777);
			if (fd < 0)
				return err_sys(err, "cpio: create %s", e->name);
			if (e->nlink >= 2 && !first)
				links_add(links, e->ino, e->name);
		}
		while ((n = cpio_read_data(r, chunk, sizeof(chunk), err)) > 0)
			if (fs_write_full(fd, chunk, (size_t)n) < 0)
				return err_sys(err, "cpio: write %s", e->name);
		if (n < 0)
			return -1;
		if (fchmod(fd, perm) < 0)
			return err_sys(err, "cpio: chmod %s", e->name);
		return 0;
	}
	case S_IFLNK: {
		char target[CPIO_NAME_MAX + 1];

		if (e->size > CPIO_NAME_MAX)
			return err_set(err, EINVAL, "cpio: %s: symlink target too long", e->name);
		if (cpio_read_data(r, target, (size_t)e->size, err) != (ssize_t)e->size)
			return err_set(err, EINVAL, "cpio: %s: truncated symlink", e->name);
		target[e->size] = 0;
		if (unlinkat(dir, last, 0) < 0 && errno != ENOENT)
			return err_sys(err, "cpio: replace %s", e->name);
		/* The link itself may point anywhere: it is only ever followed inside the enclave's
		 * own root, never by this extractor (open_parent refuses symlinks). */
		if (symlinkat(target, dir, last) < 0)
			return err_sys(err, "cpio: symlink %s", e->name);
		return 0;
	}
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
		if (mknodat(dir, last, type | perm, makedev(e->rdevmajor, e->rdevminor)) < 0) {
			if (errno == EPERM && type != S_IFIFO) {
				log_debug("cpio: %s: device node skipped (not permitted here)", e->name);
				return 0;
			}
			return err_sys(err, "cpio: mknod %s", e->name);
		}
		return 0;
	default:
		return err_set(err, EINVAL, "cpio: %s: unsupported file type 0%o", e->name, type >> 12);
	}
}

static int apply_owner(int root, const struct cpio_entry *e, struct err *err)
{
	char last[CPIO_NAME_MAX + 1];
	int dir = open_parent(root, e->name, last, err);
	int rc = 0;

	if (dir < 0)
		return -1;
	if (*last && strcmp(last, ".") && fchownat(dir, last, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0 &&
	    errno != ENOENT) /* a skipped device node */
		rc = err_sys(err, "cpio: chown %s to %u:%u", e->name, e->uid, e->gid);
	/* chown clears set-id bits: put the recorded mode back (not on symlinks) */
	if (rc == 0 && *last && strcmp(last, ".") && (e->mode & S_IFMT) != S_IFLNK && (e->mode & 07000) &&
	    fchmodat(dir, last, e->mode & 07777, 0) < 0)
		rc = err_sys(err, "cpio: chmod %s", e->name);
	close(dir);
	return rc;
}

int cpio_extract(cpio_source_fn source, void *ctx, const char *root, unsigned flags, struct err *err)
{
	autoclose int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct cpio_reader r;
	struct cpio_entry e;
	int rc;

	if (rootfd < 0)
		return err_sys(err, "%s", root);
	struct links links = { 0 };

	cpio_reader_init(&r, source, ctx);
	while ((rc = cpio_next(&r, &e, err)) == 1)
		if (extract_entry(&r, rootfd, &e, &links, err) < 0 ||
		    ((flags & CPIO_EXTRACT_OWNER) && apply_owner(rootfd, &e, err) < 0)) {
			rc = -1;
			break;
		}
	links_free(&links);
	return rc;
}

int cpio_extract_fd(int fd, const char *root, struct err *err)
{
	return cpio_extract(fd_source, &fd, root, 0, err);
}
