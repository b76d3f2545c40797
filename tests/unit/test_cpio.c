/* cpio newc: gocpio's exact header bytes, round trips, and extraction that cannot escape. */
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "eif/cpio.h"

static int buf_sink(void *ctx, const void *data, size_t len, struct err *err)
{
	buf_append(ctx, data, len);
	return 0;
}

struct mem_src {
	const uint8_t *p;
	size_t len, off;
};

static ssize_t mem_source(void *ctx, void *data, size_t len)
{
	struct mem_src *s = ctx;
	size_t n = s->len - s->off < len ? s->len - s->off : len;

	memcpy(data, s->p + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

static void test_gocpio_header_bytes(void)
{
	struct buf b = BUF_INIT;
	struct cpio_writer w;
	struct err err = { 0 };
	struct cpio_entry dir = { .name = "dev", .mode = S_IFDIR | 0755, .mtime = CPIO_LINUXKIT_MTIME };
	struct cpio_entry f = { .name = "init", .mode = S_IFREG | 0755, .mtime = CPIO_LINUXKIT_MTIME, .size = 5 };

	cpio_writer_init(&w, buf_sink, &b);
	CHECK_EQ_INT(cpio_add(&w, &dir, NULL, &err), 0);
	CHECK_EQ_INT(cpio_add(&w, &f, "hello", &err), 0);
	CHECK_EQ_INT(cpio_finish(&w, &err), 0);
	/* ino 721 = 0x2d1, mode 040755, nlink 2, mtime 0x58f63f08, devmajor 3, devminor 1 */
	CHECK(memcmp(b.data, "070701000002d1000041ed00000000000000000000000258f63f08000000000000000300000001"
			     "00000000000000000000000400000000",
		     110) == 0);
	CHECK(memcmp(b.data + 110, "dev\0", 4) == 0);
	/* the second header starts on a 4-byte boundary: 110 + 4 ("dev\0") = 114 -> 116 */
	CHECK(memcmp(b.data + 116, "070701000002d2000081ed", 22) == 0);
	CHECK_EQ_INT(b.len % 512, 0);
	CHECK(memmem(b.data, b.len, "TRAILER!!!", 10) != NULL);
	buf_free(&b);
}

static void test_roundtrip(void)
{
	struct buf b = BUF_INIT;
	struct cpio_writer w;
	struct cpio_reader r;
	struct cpio_entry e, in[] = {
		{ .name = "rootfs", .mode = S_IFDIR | 0755 },
		{ .name = "rootfs/etc/resolv.conf", .mode = S_IFLNK | 0777, .size = 27 },
		{ .name = "cmd", .mode = S_IFREG | 0644, .size = 14, .uid = 1000, .gid = 5 },
	};
	const char *data[] = { NULL, "/run/resolvconf/resolv.conf", "/bin/hello.sh\n" };
	struct err err = { 0 };
	struct mem_src src;
	char got[64];
	int n = 0, rc;

	cpio_writer_init(&w, buf_sink, &b);
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(cpio_add(&w, &in[i], data[i], &err), 0);
	CHECK_EQ_INT(cpio_finish(&w, &err), 0);
	src = (struct mem_src){ b.data, b.len, 0 };
	cpio_reader_init(&r, mem_source, &src);
	while ((rc = cpio_next(&r, &e, &err)) == 1) {
		ssize_t k;

		CHECK_STR(e.name, in[n].name);
		CHECK_EQ_INT(e.mode, in[n].mode);
		CHECK_EQ_INT(e.uid, in[n].uid);
		CHECK_EQ_INT(e.size, in[n].size);
		if (n == 2) {
			k = cpio_read_data(&r, got, sizeof(got), &err);
			CHECK_EQ_INT(k, 14);
			CHECK(memcmp(got, data[2], 14) == 0);
		}
		n++;
	}
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(n, 3);
	/* a cut archive is an error, not a short success */
	src = (struct mem_src){ b.data, 200, 0 };
	cpio_reader_init(&r, mem_source, &src);
	while ((rc = cpio_next(&r, &e, &err)) == 1)
		;
	CHECK_EQ_INT(rc, -1);
	CHECK(strstr(err.msg, "truncated") != NULL);
	buf_free(&b);
}

static void test_name_safety(void)
{
	CHECK(cpio_name_safe("rootfs/etc/passwd"));
	CHECK(cpio_name_safe("./rootfs"));
	CHECK(cpio_name_safe("a..b/c"));
	CHECK(!cpio_name_safe("/etc/passwd"));
	CHECK(!cpio_name_safe("../x"));
	CHECK(!cpio_name_safe("rootfs/../../x"));
	CHECK(!cpio_name_safe("rootfs/.."));
	CHECK(!cpio_name_safe(""));
}

static int write_archive(const char *path, const struct cpio_entry *es, const char *const *data, size_t n)
{
	struct buf b = BUF_INIT;
	struct cpio_writer w;
	struct err err = { 0 };
	int fd;

	cpio_writer_init(&w, buf_sink, &b);
	for (size_t i = 0; i < n; i++)
		if (cpio_add(&w, &es[i], data[i], &err) < 0)
			abort();
	cpio_finish(&w, &err);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (write(fd, b.data, b.len) != (ssize_t)b.len)
		abort();
	lseek(fd, 0, SEEK_SET);
	buf_free(&b);
	return fd;
}

static void test_extraction_cannot_escape(void)
{
	char tmp[] = "/tmp/cpio-test-XXXXXX", root[4200], arc[4200], outside[4200];
	struct err err = { 0 };
	struct stat st;
	int fd;

	CHECK(mkdtemp(tmp) != NULL);
	snprintf(root, sizeof(root), "%s/root", tmp);
	snprintf(arc, sizeof(arc), "%s/a.cpio", tmp);
	snprintf(outside, sizeof(outside), "%s/outside", tmp);
	mkdir(root, 0755);
	mkdir(outside, 0755);

	{ /* a normal tree extracts */
		struct cpio_entry es[] = { { .name = "rootfs", .mode = S_IFDIR | 0755 },
					   { .name = "rootfs/hello", .mode = S_IFREG | 0640, .size = 2 },
					   { .name = "rootfs/link", .mode = S_IFLNK | 0777, .size = 4 } };
		const char *data[] = { NULL, "hi", "/etc" };
		char path[4300];

		fd = write_archive(arc, es, data, 3);
		CHECK_EQ_INT(cpio_extract_fd(fd, root, &err), 0);
		close(fd);
		snprintf(path, sizeof(path), "%s/rootfs/hello", root);
		CHECK(stat(path, &st) == 0 && st.st_size == 2 && (st.st_mode & 0777) == 0640);
		snprintf(path, sizeof(path), "%s/rootfs/link", root);
		CHECK(lstat(path, &st) == 0 && S_ISLNK(st.st_mode));
	}
	{ /* ".." is refused */
		struct cpio_entry es[] = { { .name = "../outside/x", .mode = S_IFREG | 0644, .size = 1 } };
		const char *data[] = { "x" };

		fd = write_archive(arc, es, data, 1);
		CHECK(cpio_extract_fd(fd, root, &err) < 0);
		CHECK(strstr(err.msg, "escape") != NULL);
		close(fd);
	}
	{ /* absolute names are refused */
		struct cpio_entry es[] = { { .name = "/tmp/x", .mode = S_IFREG | 0644, .size = 1 } };
		const char *data[] = { "x" };

		fd = write_archive(arc, es, data, 1);
		CHECK(cpio_extract_fd(fd, root, &err) < 0);
		close(fd);
	}
	{ /* writing through a planted symlink is refused */
		struct cpio_entry es[] = { { .name = "esc", .mode = S_IFLNK | 0777, .size = strlen(outside) },
					   { .name = "esc/pwned", .mode = S_IFREG | 0644, .size = 1 } };
		const char *data[] = { outside, "x" };
		char path[4300];

		fd = write_archive(arc, es, data, 2);
		CHECK(cpio_extract_fd(fd, root, &err) < 0);
		close(fd);
		snprintf(path, sizeof(path), "%s/pwned", outside);
		CHECK(stat(path, &st) < 0);
	}
	{ /* a symlink replacing the final component is unlinked, not followed */
		struct cpio_entry es[] = { { .name = "victim", .mode = S_IFLNK | 0777, .size = strlen(outside) + 2 },
					   { .name = "victim", .mode = S_IFREG | 0644, .size = 1 } };
		char target[4300];
		const char *data[2];
		char path[4300];

		snprintf(target, sizeof(target), "%s/v", outside);
		es[0].size = strlen(target);
		data[0] = target;
		data[1] = "x";
		fd = write_archive(arc, es, data, 2);
		CHECK_EQ_INT(cpio_extract_fd(fd, root, &err), 0);
		close(fd);
		snprintf(path, sizeof(path), "%s/v", outside);
		CHECK(stat(path, &st) < 0);
	}
	{
		char cmd[4300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		CHECK(system(cmd) == 0);
	}
}

TEST_MAIN(T(test_gocpio_header_bytes), T(test_roundtrip), T(test_name_safety), T(test_extraction_cannot_escape))
