/*
 * Transparent egress's resolver (spec/transparent-egress.md §2.3): DNS over UDP and TCP on
 * 127.0.0.1 and ::1, answered inside the enclave from the egress policy and the synthetic pool.
 * No query ever leaves the enclave. Runs in odyn; every query comes from the app, untrusted.
 */
#ifndef ENCLAVER_ENCLAVE_RESOLVER_H
#define ENCLAVER_ENCLAVE_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "enclave/pool.h"
#include "manifest/policy.h"
#include "net/loop.h"

#define DNS_TTL 300
/* The largest answer we write: one question and one record, far below UDP's 512. */
#define DNS_MAX_ANSWER 512

struct resolver;

/* What one query asked and how it was answered, for the log. */
struct dns_note {
	char name[256]; /* lower case, no final dot; "" when the query was not understood */
	uint16_t qtype;
	int rcode;
	const char *why; /* why a name was refused; NULL otherwise */
};

/*
 * Answers one query (the bytes of one DNS message) into out (at least DNS_MAX_ANSWER bytes).
 * Allowed names get their pool address for A and an empty answer for every other type; names
 * the policy refuses NXDOMAIN; PTR of a pool address its name; localhost its loopback address.
 * Returns the answer's length, or 0 when the message is not worth an answer (too short to
 * carry an id, or itself an answer).
 */
size_t resolver_answer(const struct policy *policy, struct pool *pool, const uint8_t *q, size_t qlen, uint8_t *out,
		       struct dns_note *note);

/* Serves on 127.0.0.1:port and [::1]:port (the latter when the kernel has IPv6), UDP and TCP. */
int resolver_start(struct loop *l, uint16_t port, const struct policy *policy, struct pool *pool,
		   struct resolver **out, struct err *err);
void resolver_stop(struct resolver *r);

#endif
