/* SigV4: AWS's own test-suite cases (post-vanilla, get-vanilla), the KMS-shaped T8 vector,
 * Authorization parsing, and sign-then-check round trips. */
#include "harness.h"

#include "crypto/sha.h"
#include "crypto/sigv4.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define DATE "20150830T123600Z"

static void test_aws_suite_vanilla(void)
{
	struct sigv4_header h[] = { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", DATE } };
	struct sigv4_request post = { "POST", "/", NULL, h, 2, NULL, 0 }, get = { "GET", "/", NULL, h, 2, NULL, 0 };
	char sig[65], *auth = NULL;
	struct err err = { 0 };

	CHECK_EQ_INT(sigv4_signature(&post, "host;x-amz-date", DATE, "us-east-1", "service", SECRET, sig, &err), 0);
	CHECK_STR(sig, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
	CHECK_EQ_INT(sigv4_signature(&get, "host;x-amz-date", DATE, "us-east-1", "service", SECRET, sig, &err), 0);
	CHECK_STR(sig, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	CHECK_EQ_INT(sigv4_sign(&get, DATE, "us-east-1", "service", AKID, SECRET, &auth, &err), 0);
	CHECK_STR(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
			"SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	free(auth);
}

static void test_kms_shaped(void)
{
	static const char body[] = "{\"KeyId\":\"alias/test\",\"NumberOfBytes\":32}";
	struct sigv4_header h[] = {
		{ "Content-Type", "application/x-amz-json-1.1" },
		{ "Host", "kms.us-east-1.amazonaws.com" },
		{ "X-Amz-Content-Sha256", "9548dccab67c6c1cb2081d130da0288e313189750a25d5a2051d406f53619476" },
		{ "X-Amz-Date", DATE },
		{ "X-Amz-Target", "TrentService.GenerateRandom" },
	};
	struct sigv4_request r = { "POST", "/", NULL, h, 5, (const uint8_t *)body, sizeof(body) - 1 };
	char *auth = NULL;
	struct sigv4_auth a;
	char sig[65];
	struct err err = { 0 };

	CHECK_EQ_INT(sigv4_sign(&r, DATE, "us-east-1", "kms", AKID, SECRET, &auth, &err), 0);
	CHECK(auth && strstr(auth, "Signature=36a2a7c7c107a76d199ad7f3c3b2f047513333b7f22188fa7c5cb76ef1db723f"));
	/* and back: what kms-local does with it */
	CHECK_EQ_INT(sigv4_parse_auth(auth, &a, &err), 0);
	CHECK_STR(a.access_key, AKID);
	CHECK_STR(a.date, "20150830");
	CHECK_STR(a.region, "us-east-1");
	CHECK_STR(a.service, "kms");
	CHECK_STR(a.signed_headers, "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-target");
	CHECK_EQ_INT(sigv4_signature(&r, a.signed_headers, DATE, a.region, a.service, SECRET, sig, &err), 0);
	CHECK_STR(sig, a.signature);
	/* a changed body or secret gives another signature */
	r.body_len--;
	CHECK_EQ_INT(sigv4_signature(&r, a.signed_headers, DATE, a.region, a.service, SECRET, sig, &err), 0);
	CHECK(strcmp(sig, a.signature) != 0);
	free(auth);
}

static void test_parse_refuses(void)
{
	static const char *const bad[] = {
		"Basic Zm9vOmJhcg==",
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms, SignedHeaders=host, Signature=00",
		"AWS4-HMAC-SHA256 SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
		"AWS4-HMAC-SHA256 Credential=AKID/2015/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=XYZ",
	};
	struct sigv4_auth a;
	struct err err = { 0 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(sigv4_parse_auth(bad[i], &a, &err) < 0);
}

static void test_missing_signed_header(void)
{
	struct sigv4_header h[] = { { "Host", "example.amazonaws.com" } };
	struct sigv4_request r = { "GET", "/", NULL, h, 1, NULL, 0 };
	char sig[65];
	struct err err = { 0 };

	CHECK(sigv4_signature(&r, "host;x-amz-date", DATE, "us-east-1", "service", SECRET, sig, &err) < 0);
	CHECK(strstr(err.msg, "x-amz-date") != NULL);
}

TEST_MAIN(T(test_aws_suite_vanilla), T(test_kms_shaped), T(test_parse_refuses), T(test_missing_signed_header))
