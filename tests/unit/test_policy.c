/* Egress policy: upstream's vectors, then hostile host names. */
#include "harness.h"

#include "manifest/policy.h"

static void expect(const char *const *allow, size_t na, const char *const *deny, size_t nd,
		   const char *host, int allowed, const char *rule)
{
	struct policy *p = NULL;
	struct policy_decision d;
	struct err err = { 0 };

	if (policy_new(allow, na, deny, nd, &p, &err) < 0) {
		fprintf(stderr, "policy_new: %s\n", err.msg);
		test_failures++;
		return;
	}
	policy_check(p, host, &d);
	if (d.allowed != allowed || (rule && (!d.rule || strcmp(d.rule, rule))) || (!rule && d.rule)) {
		fprintf(stderr, "host \"%s\": %s by %s (%s), expected %s by %s\n", host, d.allowed ? "allowed" : "denied",
			d.rule ? d.rule : "-", d.reason ? d.reason : "", allowed ? "allow" : "deny", rule ? rule : "-");
		test_failures++;
	}
	policy_free(p);
}

#define ALLOW1(rule, host, ok) expect((const char *const[]){ rule }, 1, NULL, 0, host, ok, (ok) ? rule : NULL)

static void test_upstream_vectors(void)
{
	ALLOW1("example.com", "Example.COM", 1);
	ALLOW1("example.com", "abc.example.com", 0);
	ALLOW1("example.com", ".example.com", 0);
	ALLOW1("example.com", "example.", 0);
	ALLOW1("*.com", "example.com", 1);
	ALLOW1("*.com", "news.ycombinator.com", 0);
	ALLOW1("foo.*.com", "foo.example.com", 1);
	ALLOW1("foo.*.com", "foo.bar.example.com", 0);
	ALLOW1("**.amazonaws.com", "kms.us-east-1.amazonaws.com", 1);
	ALLOW1("**.amazonaws.com", "s3.amazonaws.com", 1);
	ALLOW1("**.amazonaws.com", "amazonaws.com", 0);
	ALLOW1("kms.*.amazonaws.com", "kms.us-east-1.amazonaws.com", 1);
	ALLOW1("kms.*.amazonaws.com", "kms.a.b.amazonaws.com", 0);
	ALLOW1("foo.**.com", "bar.baz.com", 1); /* left of ** is ignored, as upstream */
	ALLOW1("**", "host", 1);
	ALLOW1("**", "anything.at.all", 1);
	ALLOW1("example.com", "example.com.", 0);
}

static void test_ip_rules(void)
{
	ALLOW1("169.254.169.254", "169.254.169.254", 1);
	ALLOW1("10.0.0.0/8", "10.1.2.3", 1);
	ALLOW1("10.0.0.0/8", "11.1.2.3", 0);
	ALLOW1("66.254.33.22/24", "66.254.33.1", 1); /* host bits are allowed in rules */
	ALLOW1("::/0", "[2001:db8::1]", 1);
	ALLOW1("::/0", "2001:db8::1", 1);
	ALLOW1("2001:db8::/32", "[2001:db9::1]", 0);
	/* Names never match CIDRs; IPs never match name patterns. */
	ALLOW1("127.0.0.0/8", "localhost", 0);
	ALLOW1("**", "127.0.0.1", 0);
	ALLOW1("*.*.*.*", "10.0.0.1", 0);
}

static void test_deny_wins(void)
{
	const char *allow[] = { "**", "0.0.0.0/0", "::/0" };
	const char *deny[] = { "evil.com", "*.internal", "127.0.0.0/8", "169.254.169.254" };

	expect(allow, 3, deny, 4, "evil.com", 0, "evil.com");
	expect(allow, 3, deny, 4, "EVIL.com", 0, "evil.com");
	expect(allow, 3, deny, 4, "db.internal", 0, "*.internal");
	expect(allow, 3, deny, 4, "good.com", 1, "**");
	expect(allow, 3, deny, 4, "127.0.0.1", 0, "127.0.0.0/8");
	expect(allow, 3, deny, 4, "8.8.8.8", 1, "0.0.0.0/0");
	/* The IPv4-mapped form reaches 127.0.0.1: the IPv4 deny rule must catch it. */
	expect(allow, 3, deny, 4, "[::ffff:127.0.0.1]", 0, "127.0.0.0/8");
	expect(allow, 3, deny, 4, "::ffff:169.254.169.254", 0, "169.254.169.254");
	expect(allow, 3, deny, 4, "::ffff:8.8.8.8", 1, "0.0.0.0/0");
}

static void test_hostile_names(void)
{
	const char *allow[] = { "**", "0.0.0.0/0" };
	const char *deny[] = { "127.0.0.0/8", "evil.com" };
	char longname[400];

	/* Numeric forms that resolvers turn into 127.0.0.1 without any IP rule seeing them. */
	expect(allow, 2, deny, 2, "2130706433", 0, NULL);
	expect(allow, 2, deny, 2, "127.1", 0, NULL);
	expect(allow, 2, deny, 2, "0x7f.0.0.1", 0, NULL);
	expect(allow, 2, deny, 2, "0177.0.0.1", 0, NULL);
	expect(allow, 2, deny, 2, "0x7f000001", 0, NULL);
	/* Trailing dots and empty labels would slip past "evil.com". */
	expect(allow, 2, deny, 2, "evil.com.", 0, NULL);
	expect(allow, 2, deny, 2, "evil..com", 0, NULL);
	expect(allow, 2, deny, 2, ".evil.com", 0, NULL);
	expect(allow, 2, deny, 2, "", 0, NULL);
	expect(allow, 2, deny, 2, "evil.com:443", 0, NULL);
	expect(allow, 2, deny, 2, "evil.com/x", 0, NULL);
	expect(allow, 2, deny, 2, "user@evil.com", 0, NULL);
	expect(allow, 2, deny, 2, "evil.com\r\nx", 0, NULL);
	expect(allow, 2, deny, 2, "fe80::1%eth0", 0, NULL);
	expect(allow, 2, deny, 2, "[127.0.0.1]", 0, NULL);
	expect(allow, 2, deny, 2, "[::1", 0, NULL);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	expect(allow, 2, deny, 2, longname, 0, NULL);
	memset(longname, 'a', 64);
	strcpy(longname + 64, ".com");
	expect(allow, 2, deny, 2, longname, 0, NULL);
	expect(allow, 2, deny, 2, "xn--bcher-kva.example", 1, "**");
}

static void test_no_allow_list_denies_everything(void)
{
	const char *deny[] = { "evil.com" };

	expect(NULL, 0, deny, 1, "good.com", 0, NULL);
	expect(NULL, 0, NULL, 0, "127.0.0.1", 0, NULL);
}

static void test_rule_validation(void)
{
	struct err err = { 0 };

	CHECK_EQ_INT(policy_rule_validate("kms.*.amazonaws.com", &err), 0);
	CHECK_EQ_INT(policy_rule_validate("10.0.0.0/8", &err), 0);
	CHECK_EQ_INT(policy_rule_validate("2001:db8::/32", &err), 0);
	CHECK(policy_rule_validate("10.0.0.0/8x", &err) < 0);
	CHECK(policy_rule_validate("127.1", &err) < 0);
	CHECK(strstr(err.msg, "looks like an IPv4 address") != NULL);
	CHECK(policy_rule_validate("example.com.", &err) < 0);
	CHECK(policy_rule_validate("a..b", &err) < 0);
	CHECK(policy_rule_validate("", &err) < 0);
	CHECK(policy_rule_validate("ex ample.com", &err) < 0);
}

TEST_MAIN(T(test_upstream_vectors), T(test_ip_rules), T(test_deny_wins), T(test_hostile_names),
	  T(test_no_allow_list_denies_everything), T(test_rule_validation))
