/* Transparent egress's resolver and address pool: answers by the policy, hostile queries. */
#include "harness.h"

#include <arpa/inet.h>

#include "enclave/pool.h"
#include "enclave/resolver.h"
#include "manifest/manifest.h"

/* A query for name (dotted) and type, id 0x1234, RD set. */
static size_t query(uint8_t *q, const char *name, unsigned type)
{
	size_t o = 12;
	const char *p = name;

	memset(q, 0, 12);
	q[0] = 0x12;
	q[1] = 0x34;
	q[2] = 0x01; /* RD */
	q[5] = 1;    /* one question */
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);

		q[o++] = (uint8_t)len;
		memcpy(q + o, p, len);
		o += len;
		p += len + (dot ? 1 : 0);
	}
	q[o++] = 0;
	q[o++] = (uint8_t)(type >> 8);
	q[o++] = (uint8_t)type;
	q[o++] = 0;
	q[o++] = 1; /* IN */
	return o;
}

struct answer {
	size_t len;
	int rcode;
	unsigned ancount, type;
	uint8_t rdata[300];
	size_t rdlen;
};

static struct answer ask(const struct policy *pol, struct pool *pool, const uint8_t *q, size_t qlen)
{
	uint8_t out[DNS_MAX_ANSWER];
	struct dns_note note;
	struct answer a = { 0 };

	a.len = resolver_answer(pol, pool, q, qlen, out, &note);
	if (a.len < 12)
		return a;
	CHECK(out[0] == q[0] && out[1] == q[1]); /* the id */
	CHECK(out[2] & 0x80);			 /* an answer */
	a.rcode = out[3] & 0xf;
	CHECK_EQ_INT(a.rcode, note.rcode);
	a.ancount = (unsigned)out[6] << 8 | out[7];
	if (a.ancount) {
		size_t at = qlen; /* the question is echoed as asked */

		CHECK(!memcmp(out + 12, q + 12, qlen - 12));
		CHECK(out[at] == 0xc0 && out[at + 1] == 12);
		a.type = (unsigned)out[at + 2] << 8 | out[at + 3];
		a.rdlen = (size_t)out[at + 10] << 8 | out[at + 11];
		CHECK_EQ_INT((int)a.len, (int)(at + 12 + a.rdlen));
		memcpy(a.rdata, out + at + 12, a.rdlen);
	}
	return a;
}

static struct answer ask_name(const struct policy *pol, struct pool *pool, const char *name, unsigned type)
{
	uint8_t q[600];

	return ask(pol, pool, q, query(q, name, type));
}

static struct policy *test_policy(void)
{
	static const char *const allow[] = { "*.example.com", "api.test", "10.0.0.0/8" };
	static const char *const deny[] = { "secret.example.com" };
	struct policy *p = NULL;
	struct err err = { 0 };

	if (policy_new(allow, 3, deny, 1, &p, &err) < 0)
		abort();
	return p;
}

static void test_allowed_names_get_stable_pool_addresses(void)
{
	struct policy *pol = test_policy();
	struct pool *pool = NULL;
	struct err err = { 0 };
	struct answer a, b, c;

	CHECK_EQ_INT(pool_new(MANIFEST_DEFAULT_POOL, &pool, &err), 0);
	a = ask_name(pol, pool, "www.example.com", 1);
	CHECK_EQ_INT(a.rcode, 0);
	CHECK_EQ_INT((int)a.ancount, 1);
	CHECK_EQ_INT((int)a.type, 1);
	CHECK(a.rdlen == 4 && !memcmp(a.rdata, "\xc6\x12\x00\x01", 4)); /* 198.18.0.1 */
	b = ask_name(pol, pool, "API.test", 1); /* case does not make a new name */
	CHECK(b.rdlen == 4 && !memcmp(b.rdata, "\xc6\x12\x00\x02", 4));
	c = ask_name(pol, pool, "www.EXAMPLE.com", 1);
	CHECK(c.rdlen == 4 && !memcmp(c.rdata, a.rdata, 4));
	CHECK(!strcmp(pool_name_of(pool, htonl(0xc6120002)), "api.test"));
	CHECK(pool_name_of(pool, htonl(0xc6120003)) == NULL); /* in the pool, given to no one */
	CHECK(pool_name_of(pool, htonl(0xc6120000)) == NULL);
	CHECK(pool_name_of(pool, htonl(0x0a000001)) == NULL);
	CHECK(pool_contains(pool, htonl(0xc613ffff)) && !pool_contains(pool, htonl(0xc6140000)));
	/* every other type of an allowed name: an empty answer, no error, so clients use the A */
	for (unsigned t = 2; t < 300; t++) {
		struct answer e;

		if (t == 1 || t == 255)
			continue;
		e = ask_name(pol, pool, "www.example.com", t);
		CHECK_EQ_INT(e.rcode, 0);
		CHECK_EQ_INT((int)e.ancount, 0);
	}
	pool_free(pool);
	policy_free(pol);
}

static void test_refused_names_are_nxdomain(void)
{
	static const char *const names[] = { "secret.example.com", "example.com", "evil.test", "10.1.2.3",
					      "127.0.0.1", "a.b.example.com", "x" };
	struct policy *pol = test_policy();
	struct pool *pool = NULL;
	struct err err = { 0 };

	CHECK_EQ_INT(pool_new(MANIFEST_DEFAULT_POOL, &pool, &err), 0);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		for (unsigned t = 1; t <= 255; t += 27) {
			struct answer a = ask_name(pol, pool, names[i], t);

			CHECK_EQ_INT(a.rcode, 3);
			CHECK_EQ_INT((int)a.ancount, 0);
		}
	CHECK_EQ_INT((int)pool_size(pool), 0); /* nothing was given out */
	pool_free(pool);
	policy_free(pol);
}

static void test_reverse_and_localhost(void)
{
	struct policy *pol = test_policy();
	struct pool *pool = NULL;
	struct err err = { 0 };
	struct answer a;

	CHECK_EQ_INT(pool_new("100.64.0.0/10", &pool, &err), 0);
	a = ask_name(pol, pool, "api.test", 1);
	CHECK(a.rdlen == 4 && !memcmp(a.rdata, "\x64\x40\x00\x01", 4));
	a = ask_name(pol, pool, "1.0.64.100.in-addr.arpa", 12);
	CHECK_EQ_INT(a.rcode, 0);
	CHECK_EQ_INT((int)a.type, 12);
	CHECK(a.rdlen == 10 && !memcmp(a.rdata, "\x03" "api\x04" "test\x00", 10));
	CHECK_EQ_INT(ask_name(pol, pool, "2.0.64.100.in-addr.arpa", 12).rcode, 3);
	CHECK_EQ_INT(ask_name(pol, pool, "1.0.0.10.in-addr.arpa", 12).rcode, 3);
	CHECK_EQ_INT(ask_name(pol, pool, "300.0.64.100.in-addr.arpa", 12).rcode, 3);
	CHECK_EQ_INT(ask_name(pol, pool, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", 12).rcode,
		     3);
	a = ask_name(pol, pool, "localhost", 1);
	CHECK(a.rcode == 0 && a.rdlen == 4 && !memcmp(a.rdata, "\x7f\x00\x00\x01", 4));
	a = ask_name(pol, pool, "db.localhost", 28);
	CHECK(a.rcode == 0 && a.rdlen == 16 && a.rdata[15] == 1);
	pool_free(pool);
	policy_free(pol);
}

static void test_hostile_queries(void)
{
	struct policy *pol = test_policy();
	struct pool *pool = NULL;
	struct err err = { 0 };
	uint8_t q[600];
	size_t n;
	struct answer a;

	CHECK_EQ_INT(pool_new(MANIFEST_DEFAULT_POOL, &pool, &err), 0);
	/* an answer is never answered, a stub of a header neither */
	n = query(q, "www.example.com", 1);
	q[2] |= 0x80;
	CHECK_EQ_INT((int)ask(pol, pool, q, n).len, 0);
	CHECK_EQ_INT((int)ask(pol, pool, q, 11).len, 0);
	/* two questions, none, a compression pointer, a label past the end, a missing type */
	n = query(q, "www.example.com", 1);
	q[5] = 2;
	CHECK_EQ_INT(ask(pol, pool, q, n).rcode, 1);
	q[5] = 0;
	CHECK_EQ_INT(ask(pol, pool, q, n).rcode, 1);
	n = query(q, "www.example.com", 1);
	q[12] = 0xc0;
	CHECK_EQ_INT(ask(pol, pool, q, n).rcode, 1);
	n = query(q, "www.example.com", 1);
	q[12] = 60;
	CHECK_EQ_INT(ask(pol, pool, q, n).rcode, 1);
	n = query(q, "www.example.com", 1);
	CHECK_EQ_INT(ask(pol, pool, q, n - 2).rcode, 1);
	/* a dot inside a label would read as another name */
	n = query(q, "www.example.com", 1);
	q[13 + 1] = '.';
	a = ask(pol, pool, q, n);
	CHECK_EQ_INT(a.rcode, 3);
	n = query(q, "a\xff" "b.example.com", 1);
	CHECK_EQ_INT(ask(pol, pool, q, n).rcode, 3);
	/* another opcode, another class */
	n = query(q, "www.example.com", 1);
	q[2] |= 0x28; /* opcode 5, UPDATE */
	CHECK_EQ_INT(ask(pol, pool, q, n).rcode, 4);
	n = query(q, "www.example.com", 1);
	q[n - 1] = 3; /* CHAOS */
	CHECK_EQ_INT(ask(pol, pool, q, n).rcode, 5);
	/* a name over 253 characters */
	{
		char name[300];

		memset(name, 'a', sizeof(name));
		for (size_t i = 60; i < sizeof(name); i += 61)
			name[i] = '.';
		memcpy(name + 260, ".example.com", 13);
		CHECK_EQ_INT(ask_name(pol, pool, name, 1).rcode, 1);
	}
	CHECK_EQ_INT((int)pool_size(pool), 0);
	pool_free(pool);
	policy_free(pol);
}

static void test_a_full_pool_fails_the_new_name_only(void)
{
	struct policy *pol = test_policy();
	struct pool *pool = NULL;
	struct err err = { 0 };
	char name[64];

	CHECK_EQ_INT(pool_new("192.0.2.0/24", &pool, &err), 0);
	for (int i = 0; i < 254; i++) {
		snprintf(name, sizeof(name), "n%d.example.com", i);
		CHECK_EQ_INT(ask_name(pol, pool, name, 1).rcode, 0);
	}
	CHECK_EQ_INT(ask_name(pol, pool, "one-more.example.com", 1).rcode, 2);
	CHECK_EQ_INT(ask_name(pol, pool, "n7.example.com", 1).rcode, 0);
	CHECK(!strcmp(pool_name_of(pool, htonl(0xc00002fe)), "n253.example.com"));
	pool_free(pool);
	policy_free(pol);
}

static void test_pool_settings(void)
{
	static const char *const bad[] = { "198.18.0.0", "198.18.0.0/7", "198.18.0.0/25", "198.18.0.1/15",
					   "127.0.0.0/8", "0.0.0.0/8", "224.0.0.0/8", "240.0.0.0/8", "fc00::/7",
					   "198.18.0.0/-1", "198.18.0.0/15x", "" };
	struct err err = { 0 };

	CHECK_EQ_INT(manifest_pool_parse(MANIFEST_DEFAULT_POOL, NULL, NULL, &err), 0);
	CHECK_EQ_INT(manifest_pool_parse("10.0.0.0/8", NULL, NULL, &err), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (manifest_pool_parse(bad[i], NULL, NULL, &err) == 0) {
			fprintf(stderr, "pool %s was accepted\n", bad[i]);
			test_failures++;
		}
	}
}

TEST_MAIN(T(test_allowed_names_get_stable_pool_addresses), T(test_refused_names_are_nxdomain),
	  T(test_reverse_and_localhost), T(test_hostile_queries), T(test_a_full_pool_fails_the_new_name_only),
	  T(test_pool_settings))
