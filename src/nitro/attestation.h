/*
 * NSM attestation documents (spec/nitro.md §5): parsing with the validation rules of AWS's
 * nsm-api, verification (COSE ES384 signature, certificate chain to a pinned root at a given
 * time, CA flags, path lengths and key usage), and building documents shaped exactly like AWS's
 * for the local enclave's NSM emulator. Documents come from outside and are untrusted; the
 * parsed view points into the caller's bytes.
 */
#ifndef ENCLAVER_NITRO_ATTESTATION_H
#define ENCLAVER_NITRO_ATTESTATION_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base/buf.h"
#include "base/err.h"

#define ATT_MAX_PCRS 32
#define ATT_MAX_CABUNDLE 16

struct att_bytes {
	const uint8_t *data; /* NULL: absent or null */
	size_t len;
};

struct att_doc {
	char module_id[256];
	uint64_t timestamp; /* ms since the epoch */
	struct att_bytes pcrs[ATT_MAX_PCRS]; /* data NULL where the document has no such PCR */
	unsigned n_pcrs;
	struct att_bytes certificate;
	struct att_bytes cabundle[ATT_MAX_CABUNDLE]; /* root first */
	unsigned n_cabundle;
	struct att_bytes public_key, user_data, nonce;
	struct att_bytes payload;   /* the signed payload, inside the COSE bytes */
	const uint8_t *cose;
	size_t cose_len;
};

/* Parses a COSE_Sign1 attestation document (untagged or tag 18). No signature check. */
int att_parse(const uint8_t *cose, size_t len, struct att_doc *doc, struct err *err);

/* Verifies the signature with the leaf certificate and the chain up to root at time `at`
 * (seconds). Messages name the failing step in one line. */
int att_verify(const struct att_doc *doc, X509 *root, time_t at, struct err *err);
/* As att_verify, and on success the times between which every certificate of the chain is
 * valid: the same bytes verify at any time in [*from, *until] and at none outside it. */
int att_verify_window(const struct att_doc *doc, X509 *root, time_t at, time_t *from, time_t *until,
		      struct err *err);

/* true when PCR0, PCR1 and PCR2 are all zero: a debug-mode enclave. */
bool att_is_debug(const struct att_doc *doc);

/* AWS's Nitro Enclaves Root-G1 (spec/nitro.md §5.4). Caller frees. */
X509 *att_aws_root(void);
/* A root certificate from a PEM file; errors say "PATH: ...". Caller frees. */
X509 *att_load_root(const char *path, struct err *err);

/* --- the emulator's side --- */

struct att_fields {
	const char *module_id;
	uint64_t timestamp;
	const uint8_t (*pcrs)[48]; /* the values of the locked PCRs */
	const bool *locked;        /* which PCRs go in (ascending) */
	unsigned n_pcrs;           /* size of pcrs/locked */
	const uint8_t *certificate;
	size_t certificate_len;
	const struct att_bytes *cabundle; /* root first */
	unsigned n_cabundle;
	struct att_bytes public_key, user_data, nonce; /* data NULL: CBOR null */
};

/* Appends an untagged COSE_Sign1 document, signed ES384 with leaf_key, to out. */
int att_build(const struct att_fields *f, EVP_PKEY *leaf_key, struct buf *out, struct err *err);

#endif
