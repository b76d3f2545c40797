/*
 * Key policy evaluation for kms-local: Allow and Deny statements over Principal, Action (with
 * wildcards) and the attestation condition keys kms:RecipientAttestation:ImageSha384 and
 * kms:RecipientAttestation:PCR<n> under StringEquals and StringEqualsIgnoreCase (and their
 * negations). An explicit Deny wins; nothing allowed is denied. A condition on a key the
 * request lacks (no Recipient) does not match. Policies come from clients (PutKeyPolicy).
 */
#ifndef ENCLAVER_KMS_POLICY_H
#define ENCLAVER_KMS_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

struct kms_policy_request {
	const char *action;    /* "kms:Decrypt" */
	const char *principal; /* the caller's ARN */
	const char *account;
	bool attested;
	char pcr[32][129]; /* lower-case hex of the document's PCRs; "" where absent */
};

/* 1 allowed, 0 denied (why says which statement or that none allowed it), -1 bad policy. */
int kms_policy_evaluate(const char *policy_json, const struct kms_policy_request *r, char *why, size_t why_size,
			struct err *err);
/* Checks that text is a policy this evaluator understands. */
int kms_policy_check(const char *policy_json, struct err *err);

#endif
