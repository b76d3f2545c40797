/* Attestation documents: the real ones of tests/data/vectors, verified at their own time and
 * refused now, in debug mode, with a bad signature, and after any single flipped bit; and
 * documents built here, verified against a chain made here. */
#include "harness.h"

#include <openssl/ec.h>
#include <openssl/x509v3.h>
#include <time.h>

#include "base/hex.h"
#include "crypto/sha.h"
#include "nitro/attestation.h"

#define PROD_TIME 1722457107 /* 2024-07-31T20:18:27Z, the prod document's timestamp */
#define DEBUG_TIME 1725597192

static const char PROD_PCR0[] =
	"a6cdfede5b1e7950de33218995add7d8f1f6e059c9cccd204316e69feaa2ce54f6f9ff6f5992db0f1ca6135f9b095b85";

static char *hex(const struct att_bytes *b)
{
	static char out[2 * 64 + 1];

	hex_encode(b->data, b->len, out);
	return out;
}

static void test_aws_root_pinned(void)
{
	X509 *root = att_aws_root();
	unsigned char *der = NULL, d[32];
	int len = i2d_X509(root, &der);
	char h[65];

	CHECK(root && len > 0);
	sha256(der, (size_t)len, d);
	hex_encode(d, 32, h);
	CHECK_STR(h, "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b");
	OPENSSL_free(der);
	X509_free(root);
}

static void test_prod_document(void)
{
	size_t len;
	uint8_t *cose = test_read_file(test_vectors_dir(), "attestation-prod-valid.cose", &len);
	X509 *root = att_aws_root();
	struct att_doc doc;
	struct err err = { 0 };
	uint8_t pcr4[48], zero[48] = { 0 }, in[48 + 19];

	CHECK_EQ_INT(att_parse(cose, len, &doc, &err), 0);
	CHECK_EQ_INT(doc.timestamp, 1722457107047ULL);
	CHECK_EQ_INT(doc.n_pcrs, 16);
	CHECK_STR(hex(&doc.pcrs[0]), PROD_PCR0);
	memcpy(in, zero, 48);
	memcpy(in + 48, "i-0809070ca8037095f", 19);
	sha384(in, sizeof(in), pcr4);
	CHECK(doc.pcrs[4].len == 48 && !memcmp(doc.pcrs[4].data, pcr4, 48));
	CHECK_EQ_INT(doc.n_cabundle, 4);
	CHECK(!att_is_debug(&doc));
	CHECK_EQ_INT(att_verify(&doc, root, PROD_TIME, &err), 0);
	if (err.msg[0])
		fprintf(stderr, "%s\n", err.msg);
	/* the window kms-local remembers a verified document for is exactly the chain's validity:
	 * it verifies at both ends and at neither a second outside */
	{
		time_t from = 0, until = 0;

		CHECK_EQ_INT(att_verify_window(&doc, root, PROD_TIME, &from, &until, &err), 0);
		CHECK(from <= PROD_TIME && PROD_TIME <= until && until - from < 86400);
		CHECK_EQ_INT(att_verify(&doc, root, from, &err), 0);
		CHECK_EQ_INT(att_verify(&doc, root, until, &err), 0);
		CHECK(att_verify(&doc, root, from - 1, &err) < 0);
		err_clear(&err);
		CHECK(att_verify(&doc, root, until + 1, &err) < 0);
		err_clear(&err);
	}
	/* its certificates expired hours later */
	err_clear(&err);
	CHECK(att_verify(&doc, root, time(NULL), &err) < 0);
	CHECK(strstr(err.msg, "certificate has expired") != NULL);
	/* before it was made, too */
	err_clear(&err);
	CHECK(att_verify(&doc, root, PROD_TIME - 86400, &err) < 0);
	CHECK(strstr(err.msg, "not yet valid") != NULL);
	X509_free(root);
	free(cose);
}

static void test_debug_and_bad_signature(void)
{
	size_t len, blen;
	uint8_t *cose = test_read_file(test_vectors_dir(), "attestation-debug-valid.cose", &len);
	uint8_t *bad = test_read_file(test_vectors_dir(), "attestation-bad-signature.cose", &blen);
	X509 *root = att_aws_root();
	struct att_doc doc;
	struct err err = { 0 };

	CHECK_EQ_INT(att_parse(cose, len, &doc, &err), 0);
	CHECK(att_is_debug(&doc));
	CHECK_STR(doc.module_id, "i-0bbf1bfe232b8c2ce-enc0191ba35c9d1b77a");
	CHECK(doc.public_key.len == 5 && !memcmp(doc.public_key.data, "dummy", 5));
	CHECK(doc.nonce.len == 20 && doc.nonce.data[19] == 1);
	CHECK_EQ_INT(att_verify(&doc, root, DEBUG_TIME, &err), 0);
	CHECK_EQ_INT(att_parse(bad, blen, &doc, &err), 0);
	CHECK(att_verify(&doc, root, (time_t)(doc.timestamp / 1000), &err) < 0);
	CHECK(strstr(err.msg, "signature") != NULL);
	X509_free(root);
	free(cose);
	free(bad);
}

/* Every byte of the document, one bit each (rotating through the 8 positions): no variant
 * both parses and verifies. */
static void test_any_flipped_bit_fails(void)
{
	size_t len;
	uint8_t *cose = test_read_file(test_vectors_dir(), "attestation-prod-valid.cose", &len);
	X509 *root = att_aws_root();
	int accepted = 0;

	for (size_t i = 0; i < len; i++) {
		struct att_doc doc;
		struct err err = { 0 };

		cose[i] ^= (uint8_t)(1u << (i % 8));
		if (att_parse(cose, len, &doc, &err) == 0 && att_verify(&doc, root, PROD_TIME, &err) == 0) {
			accepted++;
			fprintf(stderr, "flip at byte %zu accepted\n", i);
		}
		cose[i] ^= (uint8_t)(1u << (i % 8));
	}
	CHECK_EQ_INT(accepted, 0);
	X509_free(root);
	free(cose);
}

/* --- a chain made here, as the NSM emulator makes one --- */

static EVP_PKEY *p384(void)
{
	return EVP_EC_gen("P-384");
}

static X509 *cert(EVP_PKEY *key, EVP_PKEY *issuer_key, X509 *issuer, const char *cn, int pathlen, long from,
		  long secs)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	char bc[64];

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(random() & 0xffffff) + 1);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), from + secs);
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	if (pathlen >= 0)
		snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", pathlen);
	else
		snprintf(bc, sizeof(bc), "critical,CA:FALSE");
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, bc);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, pathlen >= 0 ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	X509_sign(x, issuer_key, EVP_sha384());
	X509_NAME_free(name);
	return x;
}

static void test_build_and_verify(void)
{
	EVP_PKEY *rk = p384(), *ik = p384(), *lk = p384(), *other = p384();
	X509 *root = cert(rk, rk, NULL, "test root", 2, -3600, 86400), *inter = cert(ik, rk, root, "test inter", 1, -3600, 86400);
	X509 *leaf = cert(lk, ik, inter, "test leaf", -1, -60, 3 * 3600);
	X509 *other_root = cert(other, other, NULL, "test root", 2, -3600, 86400);
	unsigned char *rder = NULL, *ider = NULL, *lder = NULL;
	int rlen = i2d_X509(root, &rder), ilen = i2d_X509(inter, &ider), llen = i2d_X509(leaf, &lder);
	uint8_t pcrs[32][48] = { { 0 } };
	bool locked[32] = { 0 };
	struct att_bytes bundle[2] = { { rder, (size_t)rlen }, { ider, (size_t)ilen } };
	struct att_fields f = { "i-0123456789abcdef0-enc0123456789abcdef", (uint64_t)time(NULL) * 1000, pcrs, locked, 32,
				lder, (size_t)llen, bundle, 2, { (const uint8_t *)"pk", 2 }, { NULL, 0 },
				{ (const uint8_t *)"nonce-123", 9 } };
	struct buf out = BUF_INIT;
	struct att_doc doc;
	struct err err = { 0 };

	for (int i = 0; i < 16; i++) {
		locked[i] = true;
		memset(pcrs[i], i, 48);
	}
	CHECK_EQ_INT(att_build(&f, lk, &out, &err), 0);
	CHECK_EQ_INT(att_parse(out.data, out.len, &doc, &err), 0);
	CHECK_EQ_INT(doc.n_pcrs, 16);
	CHECK(doc.pcrs[5].data && doc.pcrs[5].data[0] == 5 && !doc.pcrs[16].data);
	CHECK(doc.nonce.len == 9 && !doc.user_data.data);
	CHECK_EQ_INT(att_verify(&doc, root, time(NULL), &err), 0);
	if (err.msg[0])
		fprintf(stderr, "%s\n", err.msg);
	/* another root of the same name does not anchor it */
	CHECK(att_verify(&doc, other_root, time(NULL), &err) < 0);
	/* the leaf lives three hours */
	err_clear(&err);
	CHECK(att_verify(&doc, root, time(NULL) + 4 * 3600, &err) < 0 && strstr(err.msg, "expired"));
	/* the payload's key order is AWS's */
	{
		static const char *const order[] = { "module_id", "digest", "timestamp", "pcrs", "certificate",
						     "cabundle", "public_key", "user_data", "nonce" };
		const uint8_t *p = doc.payload.data;
		size_t at = 0;

		for (int i = 0; i < 9; i++) {
			const void *hit = memmem(p + at, doc.payload.len - at, order[i], strlen(order[i]));

			CHECK(hit != NULL);
			if (hit)
				at = (size_t)((const uint8_t *)hit - p) + strlen(order[i]);
		}
		CHECK(p[0] == 0xa9); /* map(9) */
	}
	/* a signature by a key other than the leaf's */
	buf_reset(&out);
	CHECK_EQ_INT(att_build(&f, ik, &out, &err), 0);
	CHECK_EQ_INT(att_parse(out.data, out.len, &doc, &err), 0);
	CHECK(att_verify(&doc, root, time(NULL), &err) < 0 && strstr(err.msg, "signature"));
	buf_free(&out);
	OPENSSL_free(rder);
	OPENSSL_free(ider);
	OPENSSL_free(lder);
	X509_free(root);
	X509_free(inter);
	X509_free(leaf);
	X509_free(other_root);
	EVP_PKEY_free(rk);
	EVP_PKEY_free(ik);
	EVP_PKEY_free(lk);
	EVP_PKEY_free(other);
}

static void test_parse_refuses_malformed(void)
{
	static const uint8_t not_cose[] = { 0x83, 0x40, 0xa0, 0x40 };
	struct att_doc doc;
	struct err err = { 0 };

	CHECK(att_parse(not_cose, sizeof(not_cose), &doc, &err) < 0);
	CHECK(att_parse((const uint8_t *)"", 0, &doc, &err) < 0);
}

TEST_MAIN(T(test_aws_root_pinned), T(test_prod_document), T(test_debug_and_bad_signature),
	  T(test_any_flipped_bit_fails), T(test_build_and_verify), T(test_parse_refuses_malformed))
