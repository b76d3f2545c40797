/* /cmd and /env, split as AWS's init splits them; and the bootstrap ramdisk's exact bytes. */
#include "harness.h"

#include <sys/stat.h>

#include <fcntl.h>
#include <unistd.h>

#include "crypto/sha.h"
#include "base/hex.h"
#include "eif/bootkit.h"
#include "eif/initfiles.h"

static void parse_is(const char *data, size_t len, const char *const *want, size_t n)
{
	char **items = NULL;
	size_t got = 0;
	struct err err = { 0 };

	CHECK_EQ_INT(initfiles_parse(data, len, &items, &got, &err), 0);
	CHECK_EQ_INT(got, n);
	for (size_t i = 0; i < n && i < got; i++)
		CHECK_STR(items[i], want[i]);
	CHECK(items && items[got] == NULL);
	initfiles_free(items);
}

static void test_parse(void)
{
	const char *env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			      "HELLO=Hello from the enclave side!" };
	const char *cmd[] = { "/sbin/odyn", "--config-dir", "/etc/enclaver", "--", "/bin/sh", "-c", "echo a b" };
	const char *blank[] = { "a", "", "b" };
	const char *last[] = { "x", "no-newline" };
	const char *cr[] = { "x\r" };
	const char *data1 = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
			    "HELLO=Hello from the enclave side!\n";
	const char *data2 = "/sbin/odyn\n--config-dir\n/etc/enclaver\n--\n/bin/sh\n-c\necho a b\n";

	parse_is(data1, strlen(data1), env, 2);
	parse_is(data2, strlen(data2), cmd, 7);
	parse_is("a\n\nb\n", 5, blank, 3);
	parse_is("x\nno-newline", 12, last, 2);
	parse_is("x\r\n", 3, cr, 1);
	parse_is("", 0, NULL, 0);
}

static void test_parse_rejects(void)
{
	char **items = NULL;
	size_t n;
	struct err err = { 0 };

	CHECK(initfiles_parse("a\0b\n", 4, &items, &n, &err) < 0);
	CHECK(strstr(err.msg, "NUL") != NULL);
}

static void test_format_roundtrip(void)
{
	const char *items[] = { "/bin/hello.sh", "", "arg with spaces" };
	struct buf b = BUF_INIT;
	struct err err = { 0 };
	const char *bad[] = { "two\nlines" };

	CHECK_EQ_INT(initfiles_format(items, 3, &b, &err), 0);
	CHECK_STR(buf_cstr(&b), "/bin/hello.sh\n\narg with spaces\n");
	parse_is((const char *)b.data, b.len, items, 3);
	CHECK(initfiles_format(bad, 1, &b, &err) < 0);
	buf_free(&b);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

/* Layout from spec/nitro.md §2.2 / Appendix A, checked field by field on a small kit. */
static void test_bootstrap_ramdisk_bytes(void)
{
	char dir[] = "/tmp/bootkit-XXXXXX", init[64], nsm[64], out[64], cmd[96];
	struct err err = { 0 };
	size_t len;
	uint8_t *d;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(init, sizeof(init), "%s/init", dir);
	snprintf(nsm, sizeof(nsm), "%s/nsm.ko", dir);
	snprintf(out, sizeof(out), "%s/boot.cpio", dir);
	write_file(init, "INIT!", 5);
	write_file(nsm, "NSMKO-", 6);
	CHECK_EQ_INT(bootkit_bootstrap_file(init, nsm, NULL, out, &err), 0);
	d = test_read_file(dir, "boot.cpio", &len);
	CHECK_EQ_INT(len, 512);
	/* dev: ino 2d1, 040755, nlink 2 */
	CHECK(memcmp(d, "070701000002d1000041ed", 22) == 0);
	/* init at 116: ino 2d2, 0100755, size 5, name "init" (namesize 5) */
	CHECK(memcmp(d + 116, "070701000002d2000081ed0000000000000000000000015" "8f63f0800000005", 62) == 0);
	CHECK(memcmp(d + 116 + 110, "init\0", 5) == 0);
	CHECK(memcmp(d + 232, "INIT!", 5) == 0);
	/* nsm.ko header follows at the next 4-byte boundary: 116+110+8+5 = 239 -> 240 */
	CHECK(memcmp(d + 240, "070701000002d3000081ed", 22) == 0);
	CHECK(memcmp(d + 240 + 110, "nsm.ko\0", 7) == 0);
	/* trailer: ino 2d4, mode 0, nlink 1 */
	CHECK(memmem(d, len, "070701000002d400000000000000000000000000000001", 46) != NULL);
	free(d);
	/* without nsm.ko the entry is simply absent */
	CHECK_EQ_INT(bootkit_bootstrap_file(init, NULL, NULL, out, &err), 0);
	d = test_read_file(dir, "boot.cpio", &len);
	CHECK(memmem(d, len, "nsm.ko", 6) == NULL);
	CHECK(memmem(d, len, "070701000002d300000000", 22) != NULL);
	free(d);
	/* a kit's modules follow in enclaver-modules/, in their names' order; nothing else of the folder */
	{
		char mods[96], path[160];
		const uint8_t *a, *b, *c;

		snprintf(mods, sizeof(mods), "%s/modules", dir);
		CHECK_EQ_INT(mkdir(mods, 0755), 0);
		snprintf(path, sizeof(path), "%s/02-vsock.ko", mods);
		write_file(path, "VSOCK", 5);
		snprintf(path, sizeof(path), "%s/01-virtio.ko", mods);
		write_file(path, "VIRTIO", 6);
		snprintf(path, sizeof(path), "%s/README", mods);
		write_file(path, "no", 2);
		CHECK_EQ_INT(bootkit_bootstrap_file(init, NULL, mods, out, &err), 0);
		d = test_read_file(dir, "boot.cpio", &len);
		a = memmem(d, len, "enclaver-modules\0", 17);
		b = memmem(d, len, "enclaver-modules/01-virtio.ko\0", 30);
		c = memmem(d, len, "enclaver-modules/02-vsock.ko\0", 29);
		CHECK(a && b && c && a < b && b < c);
		CHECK(memmem(d, len, "README", 6) == NULL);
		free(d);
		/* a folder with no modules is a mistake, said as one */
		snprintf(path, sizeof(path), "%s/empty", dir);
		CHECK_EQ_INT(mkdir(path, 0755), 0);
		CHECK(bootkit_bootstrap_file(init, NULL, path, out, &err) < 0);
		CHECK(strstr(err.msg, "no kernel modules (*.ko) in it") != NULL);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

static void test_take_reads_and_removes(void)
{
	char path[] = "/tmp/initfiles-XXXXXX";
	int fd = mkstemp(path);
	char **items = NULL;
	struct err err = { 0 };

	CHECK(fd >= 0 && write(fd, "/bin/sh\n-c\n", 11) == 11);
	close(fd);
	CHECK_EQ_INT(initfiles_take(path, &items, &err), 0);
	CHECK(items && !strcmp(items[0], "/bin/sh") && !strcmp(items[1], "-c") && !items[2]);
	CHECK(access(path, F_OK) < 0); /* as init does: gone once read */
	initfiles_free(items);
	CHECK_EQ_INT(initfiles_take(path, &items, &err), 0); /* missing: defaults apply */
	CHECK(items == NULL);
}

TEST_MAIN(T(test_parse), T(test_parse_rejects), T(test_take_reads_and_removes), T(test_format_roundtrip), T(test_bootstrap_ramdisk_bytes))
