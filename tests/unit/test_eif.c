/* EIF writer and reader against the synthetic vector T9 (spec/nitro.md §10), and corruption. */
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/hex.h"
#include "crypto/sha.h"
#include "eif/eif.h"

static const char T9_CMDLINE[] = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux "
				 "i8042.nopnp i8042.dumbkbd random.trust_cpu=on";
static const char T9_METADATA[] =
	"{\"ImageName\":\"test\",\"ImageVersion\":\"1.0\",\"BuildMetadata\":{\"BuildTime\":\"2024-01-01T00:00:00+00:00\","
	"\"BuildTool\":\"eif_build\",\"BuildToolVersion\":\"0.3.1\",\"OperatingSystem\":\"OS\",\"KernelVersion\":\"kernel\"},"
	"\"DockerInfo\":null,\"CustomMetadata\":null}";

static char tmpdir[64];

static void repeat(struct buf *b, const char *s, int n)
{
	for (int i = 0; i < n; i++)
		buf_append_str(b, s);
}

static void build_t9(const char *path, struct eif_measurements *m)
{
	struct eif_writer *w = NULL;
	struct err err = { 0 };
	struct buf kernel = BUF_INIT, r0 = BUF_INIT, r1 = BUF_INIT;

	for (int i = 0; i < 4096; i++)
		buf_append_byte(&kernel, (uint8_t)(i % 256));
	repeat(&r0, "bootstrap-ramdisk\n", 10);
	repeat(&r1, "customer-ramdisk\n", 10);
	CHECK_EQ_INT(eif_writer_open(&w, path, 0, &err), 0);
	CHECK_EQ_INT(eif_writer_add_bytes(w, EIF_SEC_KERNEL, kernel.data, kernel.len, &err), 0);
	CHECK_EQ_INT(eif_writer_add_bytes(w, EIF_SEC_CMDLINE, T9_CMDLINE, strlen(T9_CMDLINE), &err), 0);
	CHECK_EQ_INT(eif_writer_add_bytes(w, EIF_SEC_METADATA, T9_METADATA, strlen(T9_METADATA), &err), 0);
	/* stream ramdisk 0 in small pieces: same bytes as one write */
	CHECK_EQ_INT(eif_writer_begin(w, EIF_SEC_RAMDISK, &err), 0);
	for (size_t i = 0; i < r0.len; i += 7)
		CHECK_EQ_INT(eif_writer_write(w, r0.data + i, r0.len - i < 7 ? r0.len - i : 7, &err), 0);
	CHECK_EQ_INT(eif_writer_end(w, &err), 0);
	CHECK_EQ_INT(eif_writer_add_bytes(w, EIF_SEC_RAMDISK, r1.data, r1.len, &err), 0);
	CHECK_EQ_INT(eif_writer_finish(w, NULL, NULL, m, &err), 0);
	buf_free(&kernel);
	buf_free(&r0);
	buf_free(&r1);
}

static void pcr_is(const uint8_t *pcr, const char *hex)
{
	char h[PCR_HEX_LEN + 1];

	pcr_hex(pcr, h);
	CHECK_STR(h, hex);
}

#define T9_PCR0 "e3a4f4f08c4334664bd28652a26b6ec0a706fc115805afaa1e3173d8e4cd7f92bd6df7044cb20a12d0f604efe192ed7a"
#define T9_PCR1 "ba2ec7008d92037ea38243fcc2716458eb186470783841963817169d2bf71572973d76f4e5d299b2fa1749ac0d83695a"
#define T9_PCR2 "fa08795798395f869e1fb2844156b1ed65023bcf2348f120505516de09cb5b251b77f88e804df1860634e3f53f22aadd"

static void test_t9_byte_exact(void)
{
	char path[128], h[65];
	struct eif_measurements m;
	uint8_t d[32];
	size_t len;
	uint8_t *data;

	snprintf(path, sizeof(path), "%s/t9.eif", tmpdir);
	build_t9(path, &m);
	data = test_read_file(tmpdir, "t9.eif", &len);
	CHECK_EQ_INT(len, 5411);
	sha256(data, len, d);
	hex_encode(d, 32, h);
	CHECK_STR(h, "90c9d9fb65e6bfbf013152fc97a2d624a1c0346e304ed40033579ab6af840acb");
	pcr_is(m.pcr0, T9_PCR0);
	pcr_is(m.pcr1, T9_PCR1);
	pcr_is(m.pcr2, T9_PCR2);
	CHECK(!m.has_pcr8);
	free(data);
}

static void test_t9_read(void)
{
	char path[128];
	struct eif_info *in = NULL;
	struct err err = { 0 };
	static const uint64_t offs[] = { 0x224, 0x1230, 0x12b3, 0x13ad, 0x146d };
	static const uint64_t sizes[] = { 4096, 119, 238, 180, 170 };

	snprintf(path, sizeof(path), "%s/t9.eif", tmpdir);
	CHECK_EQ_INT(eif_read(path, &in, &err), 0);
	if (!in)
		return;
	CHECK_STR(in->structure_error, "");
	CHECK(in->crc_ok);
	CHECK_EQ_INT(in->crc_stored, 0xe1abb2c2);
	CHECK_EQ_INT(in->version, 4);
	CHECK_EQ_INT(in->n_sections, 5);
	for (int i = 0; i < 5; i++) {
		CHECK_EQ_INT(in->sections[i].offset, offs[i]);
		CHECK_EQ_INT(in->sections[i].size, sizes[i]);
	}
	CHECK_STR(in->cmdline, T9_CMDLINE);
	CHECK_STR(in->metadata, T9_METADATA);
	pcr_is(in->m.pcr0, T9_PCR0);
	pcr_is(in->m.pcr1, T9_PCR1);
	pcr_is(in->m.pcr2, T9_PCR2);
	CHECK_EQ_INT(eif_info_check(in, path, &err), 0);
	CHECK_EQ_INT(eif_info_find(in, EIF_SEC_RAMDISK, 1), 4);
	eif_info_free(in);
}

/* Every single flipped bit is caught: by the CRC, and by run-style loading. */
static void test_every_flipped_byte_is_caught(void)
{
	char path[128], bad[128];
	size_t len;
	uint8_t *data;
	int missed = 0;

	snprintf(path, sizeof(path), "%s/t9.eif", tmpdir);
	snprintf(bad, sizeof(bad), "%s/bad.eif", tmpdir);
	data = test_read_file(tmpdir, "t9.eif", &len);
	for (size_t i = 0; i < len; i++) {
		struct eif_info *in = NULL;
		struct err err = { 0 };
		int fd;

		data[i] ^= 0x01;
		fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (write(fd, data, len) != (ssize_t)len)
			abort();
		close(fd);
		data[i] ^= 0x01;
		if (eif_read(bad, &in, &err) < 0) {
			if (i >= 4) /* only the magic may make it "not an EIF" */
				missed++;
			continue;
		}
		if (in->crc_ok && i < EIF_HDR_LEN - 4)
			missed++;
		if (in->crc_ok && i >= EIF_HDR_LEN)
			missed++;
		if (eif_info_check(in, bad, &err) == 0)
			missed++;
		eif_info_free(in);
	}
	CHECK_EQ_INT(missed, 0);
	free(data);
}

static void test_truncated_and_garbage(void)
{
	char path[128];
	struct eif_info *in = NULL;
	struct err err = { 0 };
	size_t len;
	uint8_t *data = test_read_file(tmpdir, "t9.eif", &len);
	int fd;

	snprintf(path, sizeof(path), "%s/cut.eif", tmpdir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (write(fd, data, len - 100) != (ssize_t)(len - 100))
		abort();
	close(fd);
	CHECK_EQ_INT(eif_read(path, &in, &err), 0);
	CHECK(in && in->structure_error[0]);
	CHECK(in && eif_info_check(in, path, &err) < 0);
	eif_info_free(in);
	in = NULL;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (write(fd, "not an eif", 10) != 10)
		abort();
	close(fd);
	CHECK(eif_read(path, &in, &err) < 0);
	CHECK(strstr(err.msg, "not an EIF") != NULL);
	free(data);
}

static void test_section_order_enforced(void)
{
	char path[128];
	struct eif_writer *w = NULL;
	struct err err = { 0 };
	struct stat st;

	snprintf(path, sizeof(path), "%s/order.eif", tmpdir);
	CHECK_EQ_INT(eif_writer_open(&w, path, 0, &err), 0);
	CHECK(eif_writer_add_bytes(w, EIF_SEC_RAMDISK, "x", 1, &err) < 0);
	CHECK(strstr(err.msg, "out of order") != NULL);
	CHECK_EQ_INT(eif_writer_add_bytes(w, EIF_SEC_KERNEL, "k", 1, &err), 0);
	CHECK(eif_writer_finish(w, NULL, NULL, NULL, &err) < 0);
	/* nothing half-written is left at the output path */
	CHECK(stat(path, &st) < 0);
}

static void test_rfc3339(void)
{
	CHECK(eif_rfc3339_valid("2024-01-01T00:00:00+00:00"));
	CHECK(eif_rfc3339_valid("2024-01-01T12:34:56.123456789+00:00"));
	CHECK(eif_rfc3339_valid("2024-01-01T00:00:00Z"));
	CHECK(!eif_rfc3339_valid("2024-01-01"));
	CHECK(!eif_rfc3339_valid("2024-13-01T00:00:00Z"));
	CHECK(!eif_rfc3339_valid("2024-01-01T00:00:00+0000"));
	CHECK(!eif_rfc3339_valid("yesterday"));
}

static void test_metadata_json(void)
{
	struct eif_metadata md = { "test", "1.0", "2024-01-01T00:00:00+00:00", "eif_build", "0.3.1", "OS",
				   "kernel", NULL, NULL };
	struct err err = { 0 };
	char *j = NULL;

	CHECK_EQ_INT(eif_metadata_json(&md, &j, &err), 0);
	CHECK_STR(j, T9_METADATA);
	free(j);
	md.custom_json = "{\"z\": 1, \"a\": {\"y\": true, \"b\": null}}";
	CHECK_EQ_INT(eif_metadata_json(&md, &j, &err), 0);
	CHECK(j && strstr(j, "\"CustomMetadata\":{\"a\":{\"b\":null,\"y\":true},\"z\":1}}") != NULL);
	free(j);
	md.custom_json = "{broken";
	CHECK(eif_metadata_json(&md, &j, &err) < 0);
}

/* The PCR vectors of tests/data/vectors/README.md and spec/nitro.md §2.1. */
static void test_pcr_vectors(void)
{
	uint8_t pcr[PCR_LEN] = { 0 };
	static const uint8_t d[] = { 1, 2, 3 };
	static const char id[] = "i-0809070ca8037095f";

	pcr_extend(pcr, d, sizeof(d));
	pcr_is(pcr, "cb178fcd3f328244c05c6248723fd068b3a1dda878e1ab8be911098f199958add55d0c27f04826d27b44d949a650694e");
	pcr_of_bytes("", 0, pcr);
	pcr_is(pcr, "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a");
	/* PCR4 = SHA384(0^48 || instance id), as in the real production document */
	memset(pcr, 0, sizeof(pcr));
	pcr_extend(pcr, id, strlen(id));
	pcr_is(pcr, "7c0a65e1456f71483c68fcd39bd607b50da6ba790300cf117f16d47130984b40003b28895ecb25c143dff47ed95178f6");
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/eif-test-XXXXXX");
	if (!mkdtemp(tmpdir))
		abort();
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	CHECK(system(cmd) == 0);
}

TEST_MAIN(T(setup), T(test_t9_byte_exact), T(test_t9_read), T(test_every_flipped_byte_is_caught),
	  T(test_truncated_and_garbage), T(test_section_order_enforced), T(test_rfc3339),
	  T(test_metadata_json), T(test_pcr_vectors), T(teardown))
