/* Fuzzes the resolver with one DNS message per input, against one policy and one pool for the
 * whole run. Properties: every answer fits DNS_MAX_ANSWER and carries the query's id; a name that
 * got a pool address is one the policy allows, and keeps that address (localhost and its
 * subdomains get loopback); the pool never grows for a refused name. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enclave/pool.h"
#include "enclave/resolver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct policy *pol;
	static struct pool *pool;
	static const char *const allow[] = { "*.example.com", "**.test", "10.0.0.0/8", "a" };
	static const char *const deny[] = { "no.example.com", "**.no.test" };
	uint8_t out[DNS_MAX_ANSWER + 64];
	struct dns_note note;
	size_t len, before;
	struct err err = { 0 };

	if (!pol && (policy_new(allow, 4, deny, 2, &pol, &err) < 0 || pool_new("192.0.2.0/24", &pool, &err) < 0))
		abort();
	before = pool_size(pool);
	memset(out, 0xee, sizeof(out));
	len = resolver_answer(pol, pool, data, size, out, &note);
	if (len > DNS_MAX_ANSWER || out[DNS_MAX_ANSWER] != 0xee)
		abort();
	if (len && (len < 12 || memcmp(out, data, 2)))
		abort();
	if (len && note.rcode == 0 && note.qtype == 1 && (out[6] | out[7]) && !ends_with(note.name, ".in-addr.arpa") &&
	    strcmp(note.name, "localhost") && !ends_with(note.name, ".localhost")) {
		struct policy_decision d;
		uint32_t addr;

		policy_check(pol, note.name, &d);
		if (!d.allowed)
			abort();
		memcpy(&addr, out + len - 4, 4);
		if (strcmp(pool_name_of(pool, addr), note.name))
			abort();
	}
	if (note.rcode != 0 && pool_size(pool) != before)
		abort();
	return 0;
}
