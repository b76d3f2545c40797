/* Key policies as kms-local evaluates them: principals, wildcards, Deny over Allow, and the
 * attestation condition keys (present, absent, negated, case). */
#include "harness.h"

#include "kms/policy.h"

static struct kms_policy_request req(const char *action, const char *principal, const char *pcr0)
{
	struct kms_policy_request r = { action, principal, "111122223333", pcr0 != NULL, { "" } };

	if (pcr0)
		snprintf(r.pcr[0], sizeof(r.pcr[0]), "%s", pcr0);
	return r;
}

static int eval(const char *policy, struct kms_policy_request r)
{
	char why[256];
	struct err err = { 0 };
	int v = kms_policy_evaluate(policy, &r, why, sizeof(why), &err);

	if (v < 0)
		fprintf(stderr, "policy error: %s\n", err.msg);
	return v;
}

#define ROOT "arn:aws:iam::111122223333:root"
#define ROLE_SESSION "arn:aws:sts::111122223333:assumed-role/enclave-role/i-1"

static void test_principals_and_actions(void)
{
	static const char p[] =
		"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::111122223333:root\"},"
		"\"Action\":\"kms:*\",\"Resource\":\"*\"},{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":["
		"\"arn:aws:iam::111122223333:role/enclave-role\"]},\"Action\":[\"kms:Decrypt\",\"kms:GenerateDataKey*\"],"
		"\"Resource\":\"*\"}]}";
	static const char other_account[] =
		"{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::999999999999:root\"},"
		"\"Action\":\"kms:*\",\"Resource\":\"*\"}}";

	CHECK_EQ_INT(eval(p, req("kms:Encrypt", ROOT, NULL)), 1);
	/* the account's root stands for its roles too */
	CHECK_EQ_INT(eval(p, req("kms:PutKeyPolicy", ROLE_SESSION, NULL)), 1);
	CHECK_EQ_INT(eval(other_account, req("kms:Decrypt", ROLE_SESSION, NULL)), 0);
	CHECK_EQ_INT(eval(other_account, req("kms:Decrypt", ROOT, NULL)), 0);
}

static void test_pcr_conditions(void)
{
	static const char p[] =
		"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kms:Decrypt\",\"Resource\":\"*\","
		"\"Condition\":{\"StringEqualsIgnoreCase\":{\"kms:RecipientAttestation:PCR0\":[\"AA11\",\"bb22\"]}}}]}";
	static const char exact[] =
		"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kms:Decrypt\",\"Resource\":\"*\","
		"\"Condition\":{\"StringEquals\":{\"kms:RecipientAttestation:ImageSha384\":\"aa11\"}}}]}";
	static const char deny_other[] =
		"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kms:*\",\"Resource\":\"*\"},"
		"{\"Sid\":\"only the image\",\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"kms:Decrypt\",\"Resource\":\"*\","
		"\"Condition\":{\"StringNotEqualsIgnoreCase\":{\"kms:RecipientAttestation:PCR0\":\"aa11\"}}}]}";

	CHECK_EQ_INT(eval(p, req("kms:Decrypt", ROOT, "aa11")), 1);
	CHECK_EQ_INT(eval(p, req("kms:Decrypt", ROOT, "BB22")), 1);
	CHECK_EQ_INT(eval(p, req("kms:Decrypt", ROOT, "cc33")), 0);
	CHECK_EQ_INT(eval(p, req("kms:Decrypt", ROOT, NULL)), 0); /* no Recipient */
	CHECK_EQ_INT(eval(p, req("kms:Encrypt", ROOT, "aa11")), 0);
	CHECK_EQ_INT(eval(exact, req("kms:Decrypt", ROOT, "aa11")), 1);
	CHECK_EQ_INT(eval(exact, req("kms:Decrypt", ROOT, "AA11")), 0); /* StringEquals is exact */
	/* Deny wins; a negated test on an absent key holds, so the deny applies without a Recipient */
	CHECK_EQ_INT(eval(deny_other, req("kms:Decrypt", ROOT, "aa11")), 1);
	CHECK_EQ_INT(eval(deny_other, req("kms:Decrypt", ROOT, "ffff")), 0);
	CHECK_EQ_INT(eval(deny_other, req("kms:Decrypt", ROOT, NULL)), 0);
	CHECK_EQ_INT(eval(deny_other, req("kms:Encrypt", ROOT, NULL)), 1);
}

static void test_malformed(void)
{
	static const char *const bad[] = {
		"not json",
		"{}",
		"{\"Statement\":[{\"Effect\":\"Maybe\",\"Principal\":\"*\",\"Action\":\"kms:*\"}]}",
		"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kms:*\",\"Condition\":{\"NumericLessThan\":{\"kms:RecipientAttestation:PCR0\":\"1\"}}}]}",
		"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kms:*\",\"Condition\":{\"StringEquals\":{\"aws:SourceIp\":\"1\"}}}]}",
	};
	struct err err = { 0 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(kms_policy_check(bad[i], &err) < 0);
}

TEST_MAIN(T(test_principals_and_actions), T(test_pcr_conditions), T(test_malformed))
