/* CBOR codec: NSM encodings from spec/nitro.md §4.3, strictness, and the real attestation documents. */
#include "harness.h"

#include "base/hex.h"
#include "codec/cbor.h"

static char *hexof(const struct buf *b)
{
	static char out[8192];

	hex_encode(b->data, b->len, out);
	return out;
}

static void test_nsm_request_encodings(void)
{
	struct buf b = BUF_INIT;
	static const uint8_t d[] = { 1, 2, 3 };

	cbor_put_text(&b, "DescribeNSM");
	CHECK_STR(hexof(&b), "6b44657363726962654e534d");
	buf_reset(&b);
	cbor_put_text(&b, "GetRandom");
	CHECK_STR(hexof(&b), "6947657452616e646f6d");
	buf_reset(&b);
	cbor_put_map(&b, 1);
	cbor_put_text(&b, "DescribePCR");
	cbor_put_map(&b, 1);
	cbor_put_text(&b, "index");
	cbor_put_uint(&b, 0);
	CHECK_STR(hexof(&b), "a16b4465736372696265504352a165696e64657800");
	buf_reset(&b);
	cbor_put_map(&b, 1);
	cbor_put_text(&b, "ExtendPCR");
	cbor_put_map(&b, 2);
	cbor_put_text(&b, "index");
	cbor_put_uint(&b, 16);
	cbor_put_text(&b, "data");
	cbor_put_bytes(&b, d, 3);
	CHECK_STR(hexof(&b), "a169457874656e64504352a265696e64657810646461746143010203");
	buf_reset(&b);
	cbor_put_map(&b, 1);
	cbor_put_text(&b, "LockPCRs");
	cbor_put_map(&b, 1);
	cbor_put_text(&b, "range");
	cbor_put_uint(&b, 32);
	CHECK_STR(hexof(&b), "a1684c6f636b50435273a16572616e67651820");
	buf_reset(&b);
	cbor_put_map(&b, 1);
	cbor_put_text(&b, "Attestation");
	cbor_put_map(&b, 3);
	cbor_put_text(&b, "user_data");
	cbor_put_null(&b);
	cbor_put_text(&b, "nonce");
	cbor_put_null(&b);
	cbor_put_text(&b, "public_key");
	cbor_put_null(&b);
	CHECK_STR(hexof(&b),
		  "a16b4174746573746174696f6ea369757365725f64617461f6656e6f6e6365f66a7075626c69635f6b6579f6");
	buf_free(&b);
}

static void test_integer_heads(void)
{
	struct buf b = BUF_INIT;

	cbor_put_uint(&b, 23);
	cbor_put_uint(&b, 24);
	cbor_put_uint(&b, 255);
	cbor_put_uint(&b, 256);
	cbor_put_uint(&b, 65536);
	cbor_put_uint(&b, 1722457107047ull);
	cbor_put_int(&b, -35);
	CHECK_STR(hexof(&b), "171818" "18ff" "190100" "1a00010000" "1b000001910a71aa67" "3822");
	buf_free(&b);
}

static int decode_hex(const char *hex, struct cbor_item **out, struct err *err)
{
	static uint8_t data[4096];
	long n = hex_decode(hex, data, sizeof(data));

	if (n < 0)
		abort();
	return cbor_decode(data, (size_t)n, CBOR_DEFAULT_MAX_DEPTH, out, err);
}

static void test_roundtrip_and_lookup(void)
{
	struct cbor_item *it = NULL;
	struct err err = { 0 };
	struct buf b = BUF_INIT;
	const char *hex = "a169457874656e64504352a265696e64657810646461746143010203";
	const struct cbor_item *inner;

	CHECK_EQ_INT(decode_hex(hex, &it, &err), 0);
	inner = cbor_map_get(it, "ExtendPCR");
	CHECK(inner && inner->type == CBOR_MAP);
	CHECK(cbor_map_get(inner, "index") && cbor_map_get(inner, "index")->u == 16);
	CHECK(cbor_map_get(inner, "data") && cbor_map_get(inner, "data")->len == 3);
	CHECK(cbor_map_get(inner, "nope") == NULL);
	CHECK_EQ_INT(cbor_encode_item(&b, it, false, &err), 0);
	CHECK_STR(hexof(&b), hex);
	cbor_free(it);
	buf_free(&b);
}

static void test_canonical_sorting(void)
{
	struct cbor_item *it = NULL;
	struct err err = { 0 };
	struct buf b = BUF_INIT;

	/* {"bb": 1, "a": 2, 10: 3} -> canonical: 10 (1 byte), "a" (2 bytes), "bb" (3 bytes) */
	CHECK_EQ_INT(decode_hex("a3626262016161020a03", &it, &err), 0);
	CHECK_EQ_INT(cbor_encode_item(&b, it, true, &err), 0);
	CHECK_STR(hexof(&b), "a30a036161026262620" "1");
	cbor_free(it);
	buf_free(&b);
}

static void expect_reject(const char *hex, const char *why)
{
	struct cbor_item *it = NULL;
	struct err err = { 0 };

	if (decode_hex(hex, &it, &err) == 0) {
		fprintf(stderr, "accepted %s (%s)\n", hex, why);
		test_failures++;
		cbor_free(it);
		return;
	}
	if (!strstr(err.msg, why)) {
		fprintf(stderr, "rejected %s with \"%s\", expected \"%s\"\n", hex, err.msg, why);
		test_failures++;
	}
}

static void test_strictness(void)
{
	char deep[128] = "";

	expect_reject("0000", "trailing");
	expect_reject("1805", "non-minimal");
	expect_reject("190005", "non-minimal");
	expect_reject("5f4101ff", "indefinite");
	expect_reject("9fff", "indefinite");
	expect_reject("4401", "past the end");
	expect_reject("7bffffffffffffffff", "past the end");
	expect_reject("9bffffffffffffffff", "cannot fit");
	expect_reject("bbffffffffffffffff", "cannot fit");
	expect_reject("f93c00", "floating-point");
	expect_reject("fb3ff0000000000000", "floating-point");
	expect_reject("62c328", "UTF-8");
	expect_reject("63eda080", "UTF-8"); /* a surrogate */
	expect_reject("62c0af", "UTF-8");   /* over-long */
	expect_reject("a2616101616102", "duplicate");
	expect_reject("f810", "simple");
	expect_reject("1c", "reserved");
	expect_reject("", "truncated");
	for (int i = 0; i < 20; i++)
		strcat(deep, "81");
	strcat(deep, "00");
	expect_reject(deep, "nesting");
}

static void test_real_attestation_documents(void)
{
	static const char *const files[] = { "attestation-prod-valid.cose", "attestation-debug-valid.cose",
					     "attestation-bad-signature.cose" };
	static const size_t sizes[] = { 4555, 4555, 4554 };

	for (size_t i = 0; i < 3; i++) {
		size_t len;
		uint8_t *doc = test_read_file(test_vectors_dir(), files[i], &len);
		struct cbor_item *cose = NULL, *payload = NULL;
		struct err err = { 0 };
		struct buf again = BUF_INIT;
		const struct cbor_item *pcrs, *cab;

		CHECK_EQ_INT(len, sizes[i]);
		CHECK_EQ_INT(cbor_decode(doc, len, CBOR_DEFAULT_MAX_DEPTH, &cose, &err), 0);
		if (!cose) {
			fprintf(stderr, "%s: %s\n", files[i], err.msg);
			free(doc);
			continue;
		}
		CHECK(cose->type == CBOR_ARRAY && cose->count == 4);
		CHECK(cose->items[0].len == 4 && memcmp(cose->items[0].data, "\xa1\x01\x38\x22", 4) == 0);
		CHECK_EQ_INT(cose->items[3].len, 96);
		CHECK_EQ_INT(cbor_decode(cose->items[2].data, cose->items[2].len, CBOR_DEFAULT_MAX_DEPTH,
					 &payload, &err), 0);
		CHECK(cbor_is_text(cbor_map_get(payload, "digest"), "SHA384"));
		pcrs = cbor_map_get(payload, "pcrs");
		CHECK(pcrs && pcrs->type == CBOR_MAP && pcrs->count == 16);
		CHECK(cbor_map_get_uint(pcrs, 4) && cbor_map_get_uint(pcrs, 4)->len == 48);
		if (i == 0) { /* production document: the README's PCR0 and PCR4 */
			char hex[97];

			hex_encode(cbor_map_get_uint(pcrs, 0)->data, 48, hex);
			CHECK_STR(hex, "a6cdfede5b1e7950de33218995add7d8f1f6e059c9cccd204316e69feaa2ce54f6f9ff6f5992db0f1ca6135f9b095b85");
			hex_encode(cbor_map_get_uint(pcrs, 4)->data, 48, hex);
			CHECK_STR(hex, "7c0a65e1456f71483c68fcd39bd607b50da6ba790300cf117f16d47130984b40003b28895ecb25c143dff47ed95178f6");
			CHECK(cbor_map_get(payload, "timestamp")->u == 1722457107047ull);
		}
		cab = cbor_map_get(payload, "cabundle");
		CHECK(cab && cab->type == CBOR_ARRAY && cab->count == 4);
		/* Key order is AWS's, not canonical: the non-canonical re-encoding is byte-exact. */
		CHECK_EQ_INT(cbor_encode_item(&again, cose, false, &err), 0);
		CHECK(again.len == len && memcmp(again.data, doc, len) == 0);
		cbor_free(payload);
		cbor_free(cose);
		buf_free(&again);
		free(doc);
	}
}

TEST_MAIN(T(test_nsm_request_encodings), T(test_integer_heads), T(test_roundtrip_and_lookup),
	  T(test_canonical_sorting), T(test_strictness), T(test_real_attestation_documents))
