/*
 * Egress allow/deny policy (spec/enclaver-compat.md §5.5). Enforced inside the enclave by
 * odyn; the matcher itself is pure and trusts neither the rules nor the host names.
 */
#ifndef ENCLAVER_MANIFEST_POLICY_H
#define ENCLAVER_MANIFEST_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

struct policy;

/* Checks one allow/deny entry: an IPv4/IPv6 address or CIDR, or a domain pattern. */
int policy_rule_validate(const char *rule, struct err *err);

/* Builds a policy; rules are copied. With no allow rules every host is denied. */
int policy_new(const char *const *allow, size_t n_allow, const char *const *deny, size_t n_deny,
	       struct policy **out, struct err *err);
void policy_free(struct policy *p);

struct policy_decision {
	bool allowed;
	const char *rule;   /* the allow or deny rule that decided; NULL when none did */
	const char *reason; /* a static explanation when no rule decided */
};

/* host: a name, an IPv4 literal, or an IPv6 literal with or without brackets. */
void policy_check(const struct policy *p, const char *host, struct policy_decision *out);

#endif
