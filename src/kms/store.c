/* Key store: JSON on disk, AES-256-GCM for material at rest and for ciphertext blobs. */
#include "kms/store.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/hex.h"

#define BLOB_MAGIC "EKL1"
#define BLOB_HEAD (4 + 36 + 12)
#define TAG_LEN 16

static int gcm(bool enc, const uint8_t key[32], const uint8_t iv[12], const void *aad, size_t aad_len,
	       const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[TAG_LEN])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n, ok;

	if (!c)
		abort();
	ok = EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv, enc) == 1 &&
	     (!aad_len || EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) == 1) &&
	     EVP_CipherUpdate(c, out, &n, in, (int)len) == 1;
	if (ok && !enc)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
	if (ok)
		ok = EVP_CipherFinal_ex(c, out + n, &n) == 1;
	if (ok && enc)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

static void uuid4(char out[37])
{
	uint8_t r[16];
	char h[33];

	RAND_bytes(r, sizeof(r));
	r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
	r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
	hex_encode(r, 16, h);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

static char *default_policy(const char *account)
{
	char *p;

	if (asprintf(&p,
		     "{\"Version\":\"2012-10-17\",\"Id\":\"key-default-1\",\"Statement\":[{\"Sid\":\"Enable IAM User "
		     "Permissions\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::%s:root\"},\"Action\":\"kms:*\","
		     "\"Resource\":\"*\"}]}",
		     account) < 0)
		abort();
	return p;
}

static int load_master(const char *dir, uint8_t master[32], struct err *err)
{
	char path[4200];
	struct buf b = BUF_INIT;
	struct err e2 = { 0 };

	snprintf(path, sizeof(path), "%s/master.key", dir);
	if (fs_read_file(path, 64, &b, &e2) == 0) {
		if (b.len != 32) {
			buf_free_secret(&b);
			return err_set(err, EINVAL, "%s is not a 32-byte key", path);
		}
		memcpy(master, b.data, 32);
		buf_free_secret(&b);
		return 0;
	}
	RAND_bytes(master, 32);
	return fs_write_file_atomic(path, master, 32, 0600, err);
}

int kms_store_open(const char *state_dir, const char *account, const char *region, struct kms_store **out,
		   struct err *err)
{
	struct kms_store *s = calloc(1, sizeof(*s));
	char dir[4096];
	json_t *j = NULL, *v;
	json_error_t je;
	size_t i;
	int rc = -1;

	if (!s)
		abort();
	snprintf(dir, sizeof(dir), "%s/kms", state_dir);
	snprintf(s->path, sizeof(s->path), "%s/keys.json", dir);
	snprintf(s->account, sizeof(s->account), "%s", account);
	snprintf(s->region, sizeof(s->region), "%s", region);
	if (load_master(dir, s->master, err) < 0)
		goto out;
	if (access(s->path, F_OK) < 0) {
		rc = 0;
		goto out;
	}
	j = json_load_file(s->path, 0, &je);
	if (!j) {
		err_set(err, EINVAL, "%s: %s", s->path, je.text);
		goto out;
	}
	s->keys = calloc(json_array_size(json_object_get(j, "Keys")) + 1, sizeof(*s->keys));
	s->aliases = calloc(json_array_size(json_object_get(j, "Aliases")) + 1, sizeof(*s->aliases));
	if (!s->keys || !s->aliases)
		abort();
	json_array_foreach(json_object_get(j, "Keys"), i, v) {
		struct kms_key *k = &s->keys[s->n_keys];
		const char *id = json_string_value(json_object_get(v, "KeyId"));
		const char *mat = json_string_value(json_object_get(v, "Material"));
		struct buf m = BUF_INIT;

		if (!id || strlen(id) != 36 || !mat || b64_decode(mat, strlen(mat), &m) != 12 + 32 + TAG_LEN ||
		    gcm(false, s->master, m.data, id, 36, m.data + 12, 32, k->material, m.data + 12 + 32) < 0) {
			buf_free(&m);
			err_set(err, EINVAL, "%s: key %zu cannot be read with kms/master.key", s->path, i);
			goto out;
		}
		buf_free(&m);
		snprintf(k->id, sizeof(k->id), "%s", id);
		snprintf(k->arn, sizeof(k->arn), "arn:aws:kms:%s:%s:key/%s", region, account, id);
		snprintf(k->description, sizeof(k->description), "%s",
			 json_string_value(json_object_get(v, "Description")) ?: "");
		k->created = (time_t)json_integer_value(json_object_get(v, "CreationDate"));
		k->enabled = !json_is_false(json_object_get(v, "Enabled"));
		k->deletion_date = (time_t)json_integer_value(json_object_get(v, "DeletionDate"));
		k->policy = strdup(json_string_value(json_object_get(v, "Policy")) ?: "");
		s->n_keys++;
	}
	json_array_foreach(json_object_get(j, "Aliases"), i, v) {
		struct kms_alias *a = &s->aliases[s->n_aliases];

		snprintf(a->name, sizeof(a->name), "%s", json_string_value(json_object_get(v, "AliasName")) ?: "");
		snprintf(a->target, sizeof(a->target), "%s", json_string_value(json_object_get(v, "TargetKeyId")) ?: "");
		a->created = (time_t)json_integer_value(json_object_get(v, "CreationDate"));
		s->n_aliases++;
	}
	rc = 0;
out:
	json_decref(j);
	if (rc < 0) {
		kms_store_free(s);
		return err_wrap(err, "local KMS keys");
	}
	*out = s;
	return 0;
}

void kms_store_free(struct kms_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_keys; i++) {
		free(s->keys[i].policy);
		explicit_bzero(s->keys[i].material, 32);
	}
	free(s->keys);
	free(s->aliases);
	explicit_bzero(s->master, sizeof(s->master));
	free(s);
}

int kms_store_save(struct kms_store *s, struct err *err)
{
	json_t *j = json_object(), *keys = json_array(), *aliases = json_array();
	char *text;
	int rc;

	for (size_t i = 0; i < s->n_keys; i++) {
		struct kms_key *k = &s->keys[i];
		uint8_t sealed[12 + 32 + TAG_LEN];
		struct buf b64 = BUF_INIT;

		RAND_bytes(sealed, 12);
		if (gcm(true, s->master, sealed, k->id, 36, k->material, 32, sealed + 12, sealed + 12 + 32) < 0)
			abort();
		b64_encode(sealed, sizeof(sealed), &b64);
		json_array_append_new(keys, json_pack("{s:s, s:s, s:I, s:b, s:I, s:s, s:s}", "KeyId", k->id, "Description",
						      k->description, "CreationDate", (json_int_t)k->created, "Enabled",
						      k->enabled, "DeletionDate", (json_int_t)k->deletion_date, "Policy",
						      k->policy, "Material", buf_cstr(&b64)));
		buf_free(&b64);
	}
	for (size_t i = 0; i < s->n_aliases; i++)
		json_array_append_new(aliases, json_pack("{s:s, s:s, s:I}", "AliasName", s->aliases[i].name, "TargetKeyId",
							 s->aliases[i].target, "CreationDate",
							 (json_int_t)s->aliases[i].created));
	json_object_set_new(j, "Keys", keys);
	json_object_set_new(j, "Aliases", aliases);
	text = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	rc = fs_write_file_atomic(s->path, text, strlen(text), 0600, err);
	free(text);
	return rc;
}

struct kms_key *kms_store_find(struct kms_store *s, const char *ref)
{
	const char *id = ref;
	char arn_prefix[128];

	snprintf(arn_prefix, sizeof(arn_prefix), "arn:aws:kms:%s:%s:", s->region, s->account);
	if (!strncmp(ref, arn_prefix, strlen(arn_prefix)))
		ref += strlen(arn_prefix);
	if (!strncmp(ref, "key/", 4))
		id = ref + 4;
	else if (!strncmp(ref, "alias/", 6)) {
		id = NULL;
		for (size_t i = 0; i < s->n_aliases && !id; i++)
			if (!strcmp(s->aliases[i].name, ref))
				id = s->aliases[i].target;
		if (!id)
			return NULL;
	} else {
		id = ref;
	}
	for (size_t i = 0; i < s->n_keys; i++)
		if (!strcmp(s->keys[i].id, id))
			return &s->keys[i];
	return NULL;
}

struct kms_key *kms_store_create(struct kms_store *s, const char *description, const char *policy)
{
	struct kms_key *k;

	s->keys = realloc(s->keys, (s->n_keys + 1) * sizeof(*s->keys));
	if (!s->keys)
		abort();
	k = &s->keys[s->n_keys++];
	memset(k, 0, sizeof(*k));
	uuid4(k->id);
	snprintf(k->arn, sizeof(k->arn), "arn:aws:kms:%s:%s:key/%s", s->region, s->account, k->id);
	snprintf(k->description, sizeof(k->description), "%s", description ? description : "");
	k->created = time(NULL);
	k->enabled = true;
	k->policy = policy ? strdup(policy) : default_policy(s->account);
	RAND_bytes(k->material, sizeof(k->material));
	return k;
}

size_t kms_store_purge(struct kms_store *s, time_t now)
{
	size_t kept = 0, gone = 0;

	for (size_t i = 0; i < s->n_keys; i++) {
		struct kms_key *k = &s->keys[i];

		if (!k->deletion_date || k->deletion_date > now) {
			s->keys[kept++] = *k;
			continue;
		}
		/* the key's aliases go with it, as in KMS */
		size_t left = 0;

		for (size_t a = 0; a < s->n_aliases; a++)
			if (strcmp(s->aliases[a].target, k->id))
				s->aliases[left++] = s->aliases[a];
		s->n_aliases = left;
		free(k->policy);
		gone++;
	}
	/* the slots past the kept keys hold moved or deleted keys: no copy of key material stays */
	for (size_t i = kept; i < s->n_keys; i++)
		explicit_bzero(&s->keys[i], sizeof(s->keys[i]));
	s->n_keys = kept;
	return gone;
}

int kms_store_add_alias(struct kms_store *s, const char *name, const struct kms_key *k, struct err *err)
{
	for (size_t i = 0; i < s->n_aliases; i++)
		if (!strcmp(s->aliases[i].name, name))
			return err_set(err, EEXIST, "An alias with the name %s already exists", name);
	s->aliases = realloc(s->aliases, (s->n_aliases + 1) * sizeof(*s->aliases));
	if (!s->aliases)
		abort();
	snprintf(s->aliases[s->n_aliases].name, sizeof(s->aliases[0].name), "%s", name);
	snprintf(s->aliases[s->n_aliases].target, sizeof(s->aliases[0].target), "%s", k->id);
	s->aliases[s->n_aliases].created = time(NULL);
	s->n_aliases++;
	return 0;
}

int kms_context_canonical(const void *json_object, struct buf *out, struct err *err)
{
	json_t *ctx = (json_t *)json_object;
	const char *k;
	json_t *v;
	char *text;

	if (!ctx || json_is_null(ctx))
		return 0;
	if (!json_is_object(ctx))
		return err_set(err, EINVAL, "EncryptionContext must be a map of strings");
	json_object_foreach(ctx, k, v)
		if (!json_is_string(v))
			return err_set(err, EINVAL, "EncryptionContext must be a map of strings");
	text = json_dumps(ctx, JSON_COMPACT | JSON_SORT_KEYS);
	buf_append_str(out, text);
	free(text);
	return 0;
}

static void blob_aad(const char *key_id, const char *context, struct buf *aad)
{
	buf_append_str(aad, BLOB_MAGIC);
	buf_append(aad, key_id, 36);
	buf_append_str(aad, context ? context : "");
}

int kms_blob_encrypt(const struct kms_key *k, const uint8_t *pt, size_t len, const char *context, struct buf *out,
		     struct err *err)
{
	struct buf aad = BUF_INIT;
	uint8_t iv[12];
	size_t start = out->len;

	RAND_bytes(iv, sizeof(iv));
	buf_append_str(out, BLOB_MAGIC);
	buf_append(out, k->id, 36);
	buf_append(out, iv, sizeof(iv));
	buf_reserve(out, len + TAG_LEN + 16);
	blob_aad(k->id, context, &aad);
	if (gcm(true, k->material, iv, aad.data, aad.len, pt, len, out->data + out->len, out->data + out->len + len) < 0) {
		buf_free(&aad);
		out->len = start;
		return err_set(err, EIO, "encryption failed");
	}
	out->len += len + TAG_LEN;
	buf_free(&aad);
	return 0;
}

int kms_blob_decrypt(struct kms_store *s, const uint8_t *blob, size_t len, const char *context,
		     struct kms_key **key, struct buf *pt, struct err *err)
{
	char id[37];
	struct kms_key *k;
	struct buf aad = BUF_INIT;
	size_t n;

	if (len < BLOB_HEAD + TAG_LEN || memcmp(blob, BLOB_MAGIC, 4))
		return err_set(err, EINVAL, "InvalidCiphertextException");
	memcpy(id, blob + 4, 36);
	id[36] = 0;
	k = kms_store_find(s, id);
	if (!k || strlen(id) != 36)
		return err_set(err, EINVAL, "InvalidCiphertextException");
	n = len - BLOB_HEAD - TAG_LEN;
	buf_reserve(pt, n + 16);
	blob_aad(k->id, context, &aad);
	if (gcm(false, k->material, blob + 40, aad.data, aad.len, blob + BLOB_HEAD, n, pt->data + pt->len,
		(uint8_t *)blob + BLOB_HEAD + n) < 0) {
		buf_free(&aad);
		return err_set(err, EINVAL, "InvalidCiphertextException");
	}
	pt->len += n;
	buf_free(&aad);
	*key = k;
	return 0;
}
