/*
 * kms-local's keys and aliases, persisted in $ENCLAVER_STATE_DIR/kms/keys.json (written
 * atomically, mode 0600), key material encrypted at rest under a master key in
 * kms/master.key. Ciphertext blobs name their key and bind the encryption context as AES-GCM
 * additional data. Runs in the CLI; blobs come from clients and are checked before use.
 */
#ifndef ENCLAVER_KMS_STORE_H
#define ENCLAVER_KMS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base/buf.h"
#include "base/err.h"

struct kms_key {
	char id[37];
	char arn[192];
	char description[512];
	time_t created;
	bool enabled;
	time_t deletion_date; /* 0, or when a scheduled deletion takes the key away (it is disabled until then) */
	char *policy; /* JSON text */
	uint8_t material[32];
};

struct kms_alias {
	char name[257];
	char target[37];
	time_t created;
};

struct kms_store {
	char path[4200];
	uint8_t master[32];
	char account[16], region[32];
	struct kms_key *keys;
	size_t n_keys;
	struct kms_alias *aliases;
	size_t n_aliases;
};

int kms_store_open(const char *state_dir, const char *account, const char *region, struct kms_store **out,
		   struct err *err);
void kms_store_free(struct kms_store *s);
int kms_store_save(struct kms_store *s, struct err *err);

/* By key id, key ARN, alias name or alias ARN; NULL when there is none. */
struct kms_key *kms_store_find(struct kms_store *s, const char *ref);
/* A new symmetric key; policy NULL gives the default policy (the account may do everything). */
struct kms_key *kms_store_create(struct kms_store *s, const char *description, const char *policy);
/* Takes away the keys whose deletion date is at or before now, with their aliases; returns how many. */
size_t kms_store_purge(struct kms_store *s, time_t now);
int kms_store_add_alias(struct kms_store *s, const char *name, const struct kms_key *k, struct err *err);

/* Canonical encryption context (keys sorted) from a JSON object, or "" for none. */
int kms_context_canonical(const void *json_object, struct buf *out, struct err *err);
int kms_blob_encrypt(const struct kms_key *k, const uint8_t *pt, size_t len, const char *context, struct buf *out,
		     struct err *err);
/* Finds the key the blob names and decrypts; fails as InvalidCiphertextException would. */
int kms_blob_decrypt(struct kms_store *s, const uint8_t *blob, size_t len, const char *context,
		     struct kms_key **key, struct buf *pt, struct err *err);

#endif
