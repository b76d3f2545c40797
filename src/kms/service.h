/*
 * kms-local's API: AWS KMS's JSON 1.1 protocol (X-Amz-Target: TrentService.<Operation>) with
 * SigV4 checked against the local credentials, key policies with the attestation condition
 * keys, Recipient documents verified against a configured root, and CiphertextForRecipient
 * built as KMS builds it. Errors are KMS's: {"__type": "...Exception", "message": "..."}.
 * Requests come from clients (host tools, enclaves) and are untrusted.
 */
#ifndef ENCLAVER_KMS_SERVICE_H
#define ENCLAVER_KMS_SERVICE_H

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base/buf.h"
#include "codec/http.h"
#include "host/local_creds.h"
#include "kms/store.h"

/* Documents verified lately, by the SHA-256 of their bytes, with the times their chain is valid
 * between: a document sent again (an enclave's KMS proxy uses one for up to a minute) is not
 * verified again. Its freshness is still judged on every call. */
#define KMS_VERIFIED_MAX 64
struct kms_verified {
	uint8_t hash[32];
	time_t from, until;
};

struct kms_service {
	struct local_master master;
	struct kms_store *store;
	X509 *root;           /* anchors Recipient attestation documents */
	unsigned max_doc_age; /* seconds a Recipient document stays acceptable */
	struct kms_verified verified[KMS_VERIFIED_MAX]; /* a ring, the newest at next_verified - 1 */
	unsigned next_verified;
};

/* Answers one request: *status and the JSON body in out. */
void kms_service_handle(struct kms_service *s, const struct http_request *req, const uint8_t *body, size_t len,
			int *status, struct buf *out);

#endif
