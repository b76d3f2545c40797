/* Layer merging: overrides, whiteouts, opaque folders, hard links, parents, hostile paths and
 * digests, checked by extracting the resulting cpio. */
#include "harness.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/hex.h"
#include "crypto/sha.h"
#include "image/merge.h"

struct ent {
	const char *name;
	int type; /* 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'c' char device (data "major:minor") */
	const char *data;
	int mode;
};

static void fd_digest(int fd, char digest[72])
{
	struct stat st;
	uint8_t *map, d[32];
	char hex[65];

	fstat(fd, &st);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	sha256(map, (size_t)st.st_size, d);
	munmap(map, (size_t)st.st_size);
	hex_encode(d, 32, hex);
	snprintf(digest, 72, "sha256:%s", hex);
}

static int write_tar(const struct ent *es, size_t n, int filter);

/* A tar in a memfd: plain, gzip (filter 1) or zstd (filter 2); its digest and its uncompressed
 * tar's (the diff_id). */
static int make_layer(const struct ent *es, size_t n, int filter, char digest[72], char diff_id[72])
{
	int plain = write_tar(es, n, 0), fd = filter ? write_tar(es, n, filter) : plain;

	fd_digest(plain, diff_id);
	fd_digest(fd, digest);
	if (fd != plain)
		close(plain);
	return fd;
}

static int write_tar(const struct ent *es, size_t n, int filter)
{
	struct archive *a = archive_write_new();
	int fd = memfd_create("layer", 0);

	archive_write_set_format_pax_restricted(a);
	if (filter == 1)
		archive_write_add_filter_gzip(a);
	else if (filter == 2)
		archive_write_add_filter_zstd(a);
	archive_write_open_fd(a, fd);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();

		archive_entry_set_pathname(e, es[i].name);
		archive_entry_set_mtime(e, 1000, 0);
		archive_entry_set_perm(e, es[i].mode ? es[i].mode : 0644);
		switch (es[i].type) {
		case 'd':
			archive_entry_set_filetype(e, AE_IFDIR);
			break;
		case 'l':
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, es[i].data);
			break;
		case 'h':
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, es[i].data);
			break;
		case 'c':
			archive_entry_set_filetype(e, AE_IFCHR);
			archive_entry_set_rdevmajor(e, (dev_t)atoi(es[i].data));
			archive_entry_set_rdevminor(e, (dev_t)atoi(strchr(es[i].data, ':') + 1));
			break;
		default:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_size(e, es[i].data ? (la_int64_t)strlen(es[i].data) : 0);
		}
		archive_write_header(a, e);
		if (es[i].type == 'f' && es[i].data)
			archive_write_data(a, es[i].data, strlen(es[i].data));
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
	return fd;
}

static int buf_sink(void *ctx, const void *data, size_t len, struct err *err)
{
	buf_append(ctx, data, len);
	return 0;
}

static int buf_read_back(void *ctx, uint64_t off, void *data, size_t len, struct err *err)
{
	struct buf *b = ctx;

	if (off > b->len || len > b->len - off)
		return err_set(err, EINVAL, "read back past the end");
	memcpy(data, b->data + off, len);
	return 0;
}

static char root[64];

enum corrupt { NONE, BLOB_DIGEST, DIFF_ID };

/* Merges the layers (bottom first) and extracts the result under root/rootfs. */
static int merge_and_extract(const struct ent *const *layers, const size_t *counts, size_t n, enum corrupt corrupt,
			     struct err *err)
{
	struct buf out = BUF_INIT;
	struct cpio_writer w;
	struct merge m;
	char cmd[128];
	int rc = 0, fds[8];
	char digests[8][72], diff_ids[8][72];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'; mkdir -p '%s'", root, root);
	if (system(cmd) != 0)
		abort();
	for (size_t i = 0; i < n; i++)
		fds[i] = make_layer(layers[i], counts[i], (int)(i % 3), digests[i], diff_ids[i]);
	if (corrupt == BLOB_DIGEST)
		digests[0][10] = digests[0][10] == 'a' ? 'b' : 'a';
	if (corrupt == DIFF_ID)
		diff_ids[0][10] = diff_ids[0][10] == 'a' ? 'b' : 'a';
	cpio_writer_init(&w, buf_sink, &out);
	w.read_back = buf_read_back;
	{ /* the ramdisk writer puts the prefix folder first, as linuxkit does */
		struct cpio_entry r = { .name = "rootfs", .mode = S_IFDIR | 0755 };

		cpio_add(&w, &r, NULL, err);
	}
	merge_init(&m, &w, "rootfs");
	for (size_t i = n; i-- > 0 && rc == 0;) {
		struct stat st;
		struct layer_blob b;

		fstat(fds[i], &st);
		b = (struct layer_blob){ "layer", fds[i], 0, (uint64_t)st.st_size, digests[i], diff_ids[i] };
		rc = merge_add_layer(&m, &b, err);
	}
	if (rc == 0)
		rc = cpio_finish(&w, err);
	merge_free(&m);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
	if (rc == 0) {
		int fd = memfd_create("cpio", 0);

		if (write(fd, out.data, out.len) != (ssize_t)out.len)
			abort();
		lseek(fd, 0, SEEK_SET);
		rc = cpio_extract_fd(fd, root, err);
		close(fd);
	}
	buf_free(&out);
	return rc;
}

static char *slurp(const char *rel)
{
	static char data[256];
	char path[256];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/rootfs/%s", root, rel);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	n = read(fd, data, sizeof(data) - 1);
	close(fd);
	data[n > 0 ? n : 0] = 0;
	return data;
}

static bool exists(const char *rel)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/rootfs/%s", root, rel);
	return lstat(path, &st) == 0;
}

static void test_layers_merge(void)
{
	static const struct ent l1[] = {
		{ "a/", 'd', NULL, 0755 }, { "a/x", 'f', "one", 0 }, { "b", 'f', "bee", 0 },
		{ "c/", 'd', NULL, 0755 }, { "c/old", 'f', "old", 0 }, { "d/", 'd', NULL, 0755 },
		{ "d/f", 'f', "under", 0 }, { "deep/", 'd', NULL, 0700 }, { "deep/x/", 'd', NULL, 0750 },
		{ "bin/", 'd', NULL, 0755 }, { "bin/real", 'f', "exe", 0755 }, { "bin/link", 'h', "bin/real", 0755 },
		{ "bin/link2", 'h', "bin/link", 0755 },
	};
	static const struct ent l2[] = {
		{ "./a/x", 'f', "two", 0 }, { ".wh.b", 'f', NULL, 0 }, { "c/.wh..wh..opq", 'f', NULL, 0 },
		{ "c/new", 'f', "new", 0 }, { "d", 'f', "now a file", 0 }, { "deep/x/y/z", 'f', "deep", 0 },
		{ "/abs/file", 'f', "absolute names stay inside", 0 }, { "sym", 'l', "a/x", 0 },
	};
	static const struct ent l3[] = { /* zstd-compressed */
		{ "dev/", 'd', NULL, 0755 }, { "dev/null", 'c', "1:3", 0666 }, { "z", 'f', "from a zstd layer", 0 },
	};
	const struct ent *layers[] = { l1, l2, l3 };
	size_t counts[] = { sizeof(l1) / sizeof(l1[0]), sizeof(l2) / sizeof(l2[0]), sizeof(l3) / sizeof(l3[0]) };
	struct err err = { 0 };
	struct stat st;
	char path[256];

	CHECK_EQ_INT(merge_and_extract(layers, counts, 3, NONE, &err), 0);
	if (err.msg[0])
		fprintf(stderr, "%s\n", err.msg);
	CHECK_STR(slurp("a/x"), "two");        /* the upper layer wins */
	CHECK(!exists("b"));                    /* whited out */
	CHECK(!exists("c/old") && exists("c/new")); /* opaque folder */
	CHECK_STR(slurp("d"), "now a file");   /* a file above a folder hides what was below */
	CHECK(!exists("d/f"));
	CHECK_STR(slurp("deep/x/y/z"), "deep"); /* parents written before their children... */
	snprintf(path, sizeof(path), "%s/rootfs/deep", root);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700); /* ...then given their real mode */
	snprintf(path, sizeof(path), "%s/rootfs/deep/x", root);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0750);
	CHECK_STR(slurp("abs/file"), "absolute names stay inside");
	{ /* hard links stay one file with several names, as Docker keeps them */
		struct stat real, link, again;

		snprintf(path, sizeof(path), "%s/rootfs/bin/real", root);
		CHECK(lstat(path, &real) == 0 && S_ISREG(real.st_mode) && real.st_nlink == 3);
		snprintf(path, sizeof(path), "%s/rootfs/bin/link", root);
		CHECK(lstat(path, &link) == 0 && link.st_ino == real.st_ino);
		snprintf(path, sizeof(path), "%s/rootfs/bin/link2", root);
		CHECK(lstat(path, &again) == 0 && again.st_ino == real.st_ino);
		CHECK_STR(slurp("bin/link"), "exe");
	}
	CHECK_STR(slurp("sym"), "two");
	CHECK_STR(slurp("z"), "from a zstd layer");
	snprintf(path, sizeof(path), "%s/rootfs/dev/null", root);
	CHECK(lstat(path, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
}

static void expect_refused(const struct ent *l, size_t n, const char *msg)
{
	const struct ent *layers[] = { l };
	size_t counts[] = { n };
	struct err err = { 0 };
	char outside[128];

	CHECK(merge_and_extract(layers, counts, 1, NONE, &err) < 0);
	CHECK(strstr(err.msg, msg) != NULL);
	if (!strstr(err.msg, msg))
		fprintf(stderr, "got \"%s\", expected \"%s\"\n", err.msg, msg);
	snprintf(outside, sizeof(outside), "%s/evil", root);
	CHECK(access(outside, F_OK) < 0);
}

static void test_hostile_layers(void)
{
	static const struct ent dotdot[] = { { "../evil", 'f', "x", 0 } };
	static const struct ent inner[] = { { "a/../../evil", 'f', "x", 0 } };
	static const struct ent wh[] = { { "a/.wh...", 'f', NULL, 0 } };
	static const struct ent link[] = { { "x", 'h', "../../etc/passwd", 0 } };

	expect_refused(dotdot, 1, "escapes the root");
	expect_refused(inner, 1, "escapes the root");
	expect_refused(wh, 1, "whiteout of \"..\" is not allowed");
	expect_refused(link, 1, "escapes the root");
}

static void test_symlink_then_file_stays_inside(void)
{
	/* a symlink to the outside, then a file "through" it: the file lands inside, beside it */
	static const struct ent l[] = { { "esc", 'l', "/tmp", 0 }, { "esc/pwned", 'f', "x", 0 } };
	const struct ent *layers[] = { l };
	size_t counts[] = { 2 };
	struct err err = { 0 };

	/* the merge writes "esc" as a symlink and refuses nothing; extraction must not follow it */
	CHECK(merge_and_extract(layers, counts, 1, NONE, &err) < 0 || !exists("esc/pwned"));
	CHECK(access("/tmp/pwned", F_OK) < 0);
}

static void test_digest_mismatch(void)
{
	static const struct ent l[] = { { "f", 'f', "x", 0 } };
	const struct ent *layers[] = { l };
	size_t counts[] = { 1 };
	struct err err = { 0 };

	CHECK(merge_and_extract(layers, counts, 1, BLOB_DIGEST, &err) < 0);
	CHECK(strstr(err.msg, "digest mismatch") != NULL && strstr(err.msg, "the blob is") != NULL);
}

static void test_hard_links_to_a_replaced_file(void)
{
	/* an upper layer replaces one name of a hard-linked file (as a package upgrade does): the
	 * other names keep the lower layer's data, together, as Docker keeps them */
	static const struct ent l1[] = { { "bin/", 'd', NULL, 0755 }, { "bin/perl", 'f', "old perl", 0755 },
					 { "bin/perl5", 'h', "bin/perl", 0755 }, { "bin/perl6", 'h', "bin/perl", 0755 } };
	static const struct ent l2[] = { { "bin/perl", 'f', "new perl", 0755 } };
	const struct ent *layers[] = { l1, l2 };
	size_t counts[] = { 4, 1 };
	struct err err = { 0 };
	struct stat a, b, c;
	char path[256];

	CHECK_EQ_INT(merge_and_extract(layers, counts, 2, NONE, &err), 0);
	CHECK_STR(slurp("bin/perl"), "new perl");
	CHECK_STR(slurp("bin/perl5"), "old perl");
	CHECK_STR(slurp("bin/perl6"), "old perl");
	snprintf(path, sizeof(path), "%s/rootfs/bin/perl", root);
	CHECK(lstat(path, &a) == 0 && S_ISREG(a.st_mode));
	snprintf(path, sizeof(path), "%s/rootfs/bin/perl5", root);
	CHECK(lstat(path, &b) == 0 && S_ISREG(b.st_mode));
	snprintf(path, sizeof(path), "%s/rootfs/bin/perl6", root);
	CHECK(lstat(path, &c) == 0 && b.st_ino == c.st_ino && a.st_ino != b.st_ino);
}

static void test_diff_id_mismatch(void)
{
	/* the second layer is gzip: its tar, not its blob, is what the config's diff_id names */
	static const struct ent l1[] = { { "f", 'f', "x", 0 } }, l2[] = { { "g", 'f', "y", 0 } };
	const struct ent *layers[] = { l1, l2 };
	size_t counts[] = { 1, 1 };
	struct err err = { 0 };

	CHECK_EQ_INT(merge_and_extract(layers, counts, 2, NONE, &err), 0);
	CHECK(merge_and_extract(layers, counts, 2, DIFF_ID, &err) < 0);
	CHECK(strstr(err.msg, "its uncompressed tar (the config's diff_id) is sha256:") != NULL);
}

static void test_docker_layer_semantics(void)
{
	/* a layer that makes the root opaque hides every layer below it (deleted files stay
	 * deleted); a layer holding a path twice keeps the later entry, as extraction does */
	static const struct ent l1[] = { { "old", 'f', "from below", 0 }, { "keep/", 'd', NULL, 0755 },
					 { "keep/f", 'f', "below too", 0 } };
	static const struct ent l2[] = { { ".wh..wh..opq", 'f', NULL, 0 }, { "new", 'f', "first", 0 },
					 { "new", 'f', "second", 0 }, { "keep/", 'd', NULL, 0700 } };
	static const struct ent l3[] = { { "top", 'f', "top", 0 }, { "top", 'f', "top again", 0 } };
	const struct ent *layers[] = { l1, l2, l3 };
	size_t counts[] = { 3, 4, 2 };
	struct err err = { 0 };
	struct stat st;
	char path[256];

	CHECK_EQ_INT(merge_and_extract(layers, counts, 3, NONE, &err), 0);
	CHECK(!exists("old") && !exists("keep/f"));
	snprintf(path, sizeof(path), "%s/rootfs/keep", root);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
	CHECK_STR(slurp("new"), "second");
	CHECK_STR(slurp("top"), "top again");
}

static void setup(void)
{
	snprintf(root, sizeof(root), "/tmp/merge-test-%d", (int)getpid());
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	CHECK(system(cmd) == 0);
}

TEST_MAIN(T(setup), T(test_layers_merge), T(test_hostile_layers), T(test_symlink_then_file_stays_inside),
	  T(test_digest_mismatch), T(test_diff_id_mismatch), T(test_docker_layer_semantics),
	  T(test_hard_links_to_a_replaced_file), T(teardown))
