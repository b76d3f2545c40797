/* The NSM emulator through the NSM client over its socket: a conformance test modelled on AWS's
 * nsm-test (spec/nitro.md §10 T14), the request and response encodings of §4.3, and documents
 * that verify against the development CA with the EIF's PCRs. */
#include "harness.h"

#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/hex.h"
#include "eif/pcr.h"
#include "host/nsm_server.h"
#include "nitro/attestation.h"
#include "nitro/devca.h"
#include "nitro/nsm.h"
#include "nitro/nsm_emu.h"

static char dir[64], sock[128];
static struct loop *loop;
static struct nsm_emu emu;
static struct devca *ca;
static struct nsm_server *srv; /* serves until the test program exits */
static uint8_t pcr0[48], pcr1[48], pcr2[48];

static void *serve(void *arg)
{
	struct err err = { 0 };

	loop_run(loop, &err);
	return NULL;
}

static void on_stop_timer(struct loop *l, void *data)
{
	loop_stop(l);
}

static struct nsm *client(void)
{
	struct nsm *n = NULL;
	struct err err = { 0 };

	CHECK_EQ_INT(nsm_open_socket(sock, &n, &err), 0);
	return n;
}

static void test_t14_conformance(void)
{
	struct nsm *n = client();
	struct nsm_description d;
	struct err err = { 0 };
	uint8_t v[NSM_PCR_MAX], expect[48], r1[256], r2[256];
	size_t len;
	bool locked;

	if (!n)
		return;
	CHECK_EQ_INT(nsm_describe(n, &d, &err), 0);
	CHECK_EQ_INT(d.max_pcrs, 32);
	CHECK_STR(d.digest, "SHA384");
	CHECK_EQ_INT(d.n_locked, 16);
	for (size_t i = 0; i < d.n_locked; i++)
		CHECK_EQ_INT(d.locked_pcrs[i], i);
	CHECK(!strncmp(d.module_id, "i-", 2) && strstr(d.module_id, "-enc") != NULL);
	/* PCR0-2 are the EIF's, PCR4 the instance's; 0-15 locked */
	for (int i = 0; i < 32; i++) {
		static const uint8_t zero[48];

		CHECK_EQ_INT(nsm_describe_pcr(n, (uint16_t)i, &locked, v, &len, &err), 0);
		CHECK_EQ_INT(len, 48);
		CHECK(locked == (i < 16));
		if (i == 0)
			CHECK(!memcmp(v, pcr0, 48));
		if (i == 1)
			CHECK(!memcmp(v, pcr1, 48));
		if (i == 2)
			CHECK(!memcmp(v, pcr2, 48));
		if (i == 4)
			CHECK(memcmp(v, zero, 48) != 0);
		if (i >= 16 || i == 3 || (i >= 5 && i != 8))
			CHECK(!memcmp(v, zero, 48));
	}
	CHECK(nsm_describe_pcr(n, 32, &locked, v, &len, &err) < 0 && strstr(err.msg, "InvalidIndex"));
	for (int i = 0; i < 16; i++) {
		err_clear(&err);
		CHECK(nsm_lock_pcr(n, (uint16_t)i, &err) < 0 && strstr(err.msg, "ReadOnlyIndex"));
		CHECK(nsm_extend_pcr(n, (uint16_t)i, "x", 1, v, &len, &err) < 0 && strstr(err.msg, "ReadOnlyIndex"));
	}
	/* ten extends of each free PCR, each answer the TPM-style chain */
	for (int i = 16; i < 32; i++) {
		memset(expect, 0, sizeof(expect));
		for (int k = 0; k < 10; k++) {
			uint8_t data[8] = { (uint8_t)i, (uint8_t)k, 1, 2, 3, 4, 5, 6 };

			pcr_extend(expect, data, sizeof(data));
			CHECK_EQ_INT(nsm_extend_pcr(n, (uint16_t)i, data, sizeof(data), v, &len, &err), 0);
			CHECK(len == 48 && !memcmp(v, expect, 48));
		}
	}
	CHECK_EQ_INT(nsm_lock_pcr(n, 16, &err), 0);
	CHECK(nsm_extend_pcr(n, 16, "x", 1, v, &len, &err) < 0 && strstr(err.msg, "ReadOnlyIndex"));
	err_clear(&err);
	CHECK(nsm_lock_pcrs(n, 33, &err) < 0 && strstr(err.msg, "InvalidIndex"));
	CHECK_EQ_INT(nsm_lock_pcrs(n, 32, &err), 0);
	CHECK_EQ_INT(nsm_lock_pcrs(n, 32, &err), 0); /* relocking is fine */
	CHECK(nsm_extend_pcr(n, 31, "x", 1, v, &len, &err) < 0 && strstr(err.msg, "ReadOnlyIndex"));
	CHECK_EQ_INT(nsm_get_random(n, r1, sizeof(r1), &err), 256);
	CHECK_EQ_INT(nsm_get_random(n, r2, sizeof(r2), &err), 256);
	CHECK(memcmp(r1, r2, 256) != 0);
	nsm_close(n);
}

static void test_attestation_documents(void)
{
	struct nsm *n = client();
	static uint8_t big[1025];
	struct nsm_bytes ud = { big, 1024 }, nonce = { big, 1024 }, pk = { big, 1024 }, over = { big, 1025 };
	struct buf doc = BUF_INIT;
	struct att_doc d;
	struct err err = { 0 };
	time_t now = time(NULL);

	if (!n)
		return;
	memset(big, 0xab, sizeof(big));
	/* nsm-test's 3 x 1024 bytes */
	CHECK_EQ_INT(nsm_attestation(n, &ud, &nonce, &pk, &doc, &err), 0);
	CHECK_EQ_INT(att_parse(doc.data, doc.len, &d, &err), 0);
	CHECK_EQ_INT(att_verify(&d, ca->root, now, &err), 0);
	if (err.msg[0])
		fprintf(stderr, "%s\n", err.msg);
	CHECK(d.user_data.len == 1024 && d.nonce.len == 1024 && d.public_key.len == 1024);
	CHECK(d.pcrs[0].data && !memcmp(d.pcrs[0].data, pcr0, 48));
	CHECK_EQ_INT(d.n_pcrs, 32); /* all locked by the conformance test */
	CHECK(d.timestamp / 1000 >= (uint64_t)now - 5 && d.timestamp / 1000 <= (uint64_t)now + 5);
	CHECK(d.n_cabundle == 2 && d.cabundle[0].len == ca->root_der.len &&
	      !memcmp(d.cabundle[0].data, ca->root_der.data, ca->root_der.len));
	/* never mistakable for AWS's */
	{
		X509 *aws = att_aws_root();

		CHECK(att_verify(&d, aws, now, &err) < 0);
		X509_free(aws);
	}
	/* nulls for absent fields, and the size limit */
	buf_reset(&doc);
	CHECK_EQ_INT(nsm_attestation(n, NULL, NULL, NULL, &doc, &err), 0);
	CHECK_EQ_INT(att_parse(doc.data, doc.len, &d, &err), 0);
	CHECK(!d.user_data.data && !d.nonce.data && !d.public_key.data);
	CHECK(nsm_attestation(n, &over, NULL, NULL, &doc, &err) < 0 && strstr(err.msg, "InputTooLarge"));
	buf_free(&doc);
	nsm_close(n);
}

/* The exact bytes of spec/nitro.md §4.3, straight into the emulator. */
static void test_wire_encodings(void)
{
	static const struct {
		const char *req, *resp_prefix;
	} cases[] = {
		{ "a1674c6f636b504352a165696e64657810", "a1654572726f726d526561644f6e6c79496e646578" }, /* locked by now */
		{ "a16b4465736372696265504352a165696e6465781820", "a1654572726f726c496e76616c6964496e646578" },
		{ "a1684c6f636b50435273a16572616e67651820", "684c6f636b50435273" },
		{ "6947657452616e646f6d", "a16947657452616e646f6da16672616e646f6d590100" },
		{ "ff", "a1654572726f726f496e76616c6964417267756d656e74" },
		{ "a163466f6fa0", "a1654572726f7270496e76616c69644f7065726174696f6e" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t req[64];
		long n = hex_decode(cases[i].req, req, sizeof(req));
		struct buf out = BUF_INIT;
		char h[2 * 64 + 1];
		size_t plen = strlen(cases[i].resp_prefix) / 2;

		nsm_emu_handle(&emu, req, (size_t)n, &out);
		CHECK(out.len >= plen);
		hex_encode(out.data, plen < out.len ? plen : out.len, h);
		CHECK_STR(h, cases[i].resp_prefix);
		buf_free(&out);
	}
}

static void setup(void)
{
	struct err err = { 0 };
	pthread_t t;

	snprintf(dir, sizeof(dir), "/tmp/test-nsm-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(sock, sizeof(sock), "%s/nsm.sock", dir);
	if (devca_open(dir, &ca, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		abort();
	}
	pcr_of_bytes("kernel", 6, pcr0);
	pcr_of_bytes("boot", 4, pcr1);
	pcr_of_bytes("app", 3, pcr2);
	{
		struct nsm_emu_config c = { pcr0, pcr1, pcr2, NULL, NULL, "i-0809070ca8037095f", false, ca };

		nsm_emu_init(&emu, &c);
	}
	if (loop_new(&loop, &err) < 0 || nsm_server_start(loop, sock, &emu, &srv, &err) < 0)
		abort();
	pthread_create(&t, NULL, serve, NULL);
	pthread_detach(t);
	(void)on_stop_timer;
}

static void test_instance_pcr4_and_state_folder(void)
{
	struct stat st;
	char path[256];
	uint8_t pcr4[48] = { 0 };

	pcr_extend(pcr4, "i-0809070ca8037095f", 19);
	CHECK(!memcmp(emu.pcr[4], pcr4, 48));
	CHECK(!strncmp(emu.module_id, "i-0809070ca8037095f-enc", 23));
	snprintf(path, sizeof(path), "%s/dev-ca/root.key", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	snprintf(path, sizeof(path), "%s/dev-ca/intermediate.key", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	/* a second open reuses the CA made by the first */
	{
		struct devca *again = NULL;
		struct err err = { 0 };

		CHECK_EQ_INT(devca_open(dir, &again, &err), 0);
		CHECK(again && again->root_der.len == ca->root_der.len &&
		      !memcmp(again->root_der.data, ca->root_der.data, ca->root_der.len));
		devca_free(again);
	}
}

static void test_debug_mode_zeroes(void)
{
	struct nsm_emu d;
	struct nsm_emu_config c = { pcr0, pcr1, pcr2, NULL, "arn:aws:iam::123456789012:role/x", NULL, true, ca };
	static const uint8_t zero[48];

	nsm_emu_init(&d, &c);
	CHECK(!memcmp(d.pcr[0], zero, 48) && !memcmp(d.pcr[1], zero, 48) && !memcmp(d.pcr[2], zero, 48));
	CHECK(memcmp(d.pcr[3], zero, 48) != 0 && memcmp(d.pcr[4], zero, 48) != 0);
}

int main(int argc, char **argv)
{
	static const struct test_case cases[] = {
		{ "test_t14_conformance", test_t14_conformance },
		{ "test_attestation_documents", test_attestation_documents },
		{ "test_wire_encodings", test_wire_encodings },
		{ "test_instance_pcr4_and_state_folder", test_instance_pcr4_and_state_folder },
		{ "test_debug_mode_zeroes", test_debug_mode_zeroes },
	};
	char cmd[128];
	int rc;

	setup();
	rc = test_main(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
