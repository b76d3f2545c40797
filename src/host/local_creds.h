/*
 * Credentials of the local AWS stand-ins, kept in the state folder ($ENCLAVER_STATE_DIR/kms):
 * a long-lived access key for host clients (`enclaver kms-local env`), and temporary role
 * credentials that the IMDS stand-in hands to enclaves, derived from it and checked by
 * kms-local without shared state (the session token carries its expiry, authenticated).
 * Runs in the CLI (kms-local) and in enclaver-run (IMDS). Tokens come from clients.
 */
#ifndef ENCLAVER_HOST_LOCAL_CREDS_H
#define ENCLAVER_HOST_LOCAL_CREDS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base/err.h"

#define KMS_LOCAL_ROLE "enclaver-local-enclave"
/* Where a running kms-local says where it listens, in the state folder: a folder of its own, so
 * that a container running a local enclave can be given it without the key store. */
#define KMS_LOCAL_ENDPOINT_DIR "endpoints"
#define KMS_LOCAL_ENDPOINT KMS_LOCAL_ENDPOINT_DIR "/kms.json"
/* The state folder's files a local enclave's launcher reads (besides the development CA). */
#define KMS_LOCAL_CREDENTIALS "kms/credentials.json"

struct local_master {
	char access_key[32];
	char secret_key[64];
	char account[16];
	char region[32];
};

struct local_temp {
	char access_key[32];
	char secret_key[64];
	char token[512];
	time_t expiration;
	char role_arn[128];
};

/* Loads <state>/kms/credentials.json, making it (mode 0600) on first use. region: the one to
 * record when making it (NULL: us-east-1). */
int local_creds_open(const char *state_dir, const char *region, struct local_master *out, struct err *err);

/* Temporary credentials valid until expiration. */
void local_creds_issue(const struct local_master *m, time_t expiration, struct local_temp *out);

/* For a request signed with access_key (and token, for temporary credentials): the secret
 * to check its signature with, and the caller's ARN. Fails for unknown keys, bad or expired
 * tokens. */
int local_creds_lookup(const struct local_master *m, const char *access_key, const char *token, time_t now,
		     char secret[64], char principal[160], struct err *err);

#endif
