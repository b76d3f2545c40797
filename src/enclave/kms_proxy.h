/*
 * odyn's KMS proxy (spec/enclaver-compat.md §5.7): the app speaks to it as to KMS at
 * AWS_KMS_ENDPOINT; it adds a Recipient (an NSM attestation document over an RSA-2048 key made
 * at start) to Decrypt, DeriveSharedSecret, GenerateDataKey, GenerateDataKeyPair and
 * GenerateRandom, re-signs every request with the instance role's credentials from IMDSv2
 * (refreshed before they expire), sends it over TLS through the egress proxy, and answers with
 * the secret opened from CiphertextForRecipient. Its own failures are KMS-style JSON errors.
 * Requests come from the app; answers from the network. Upstream calls run on worker threads so
 * that the event loop never waits on them.
 */
#ifndef ENCLAVER_ENCLAVE_KMS_PROXY_H
#define ENCLAVER_ENCLAVE_KMS_PROXY_H

#include <stdbool.h>
#include <openssl/evp.h>
#include <stdint.h>

#include "base/buf.h"

#include "base/err.h"
#include "manifest/manifest.h"
#include "net/loop.h"

struct kms_proxy;

/* Starts on 127.0.0.1:m->kms_proxy_port and looks the region up in IMDS (through the egress
 * proxy, so not before it runs); when that fails on_fatal gets "failed to fetch the region from
 * IMDS: ...". dev_root: a PEM file also trusted for TLS (the local enclave's development
 * root), or NULL. */
int kms_proxy_start(struct loop *l, const struct manifest *m, const char *dev_root,
		    void (*on_fatal)(void *data, const char *msg), void *fatal_data, struct kms_proxy **out,
		    struct err *err);
void kms_proxy_stop(struct kms_proxy *p);

/* The answer to an attesting request as the app gets it: CiphertextForRecipient opened with key
 * and put under upstream v0.6.1's field (PrivateKeyPlaintext for GenerateDataKeyPair,
 * SharedSecret for DeriveSharedSecret, else Plaintext). The body comes from the network. */
int kms_proxy_open_response(EVP_PKEY *key, const char *target, const uint8_t *body, size_t len, struct buf *out,
			    struct err *err);

#endif
