/* kms-local's operations. */
#include "kms/service.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/hex.h"
#include "base/log.h"
#include "crypto/cms.h"
#include "crypto/sha.h"
#include "crypto/sigv4.h"
#include "kms/policy.h"
#include "nitro/attestation.h"

#define SKEW_SECONDS 300

struct call {
	struct kms_service *s;
	json_t *in;
	json_t *out;
	int status;
	char type[64];
	char message[512];
	char principal[160];
	struct kms_policy_request pr;
	struct att_doc doc; /* with pr.attested */
	struct buf doc_bytes;
};

static int fail(struct call *c, int status, const char *type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct call *c, int status, const char *type, const char *fmt, ...)
{
	va_list ap;

	c->status = status;
	snprintf(c->type, sizeof(c->type), "%s", type);
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, ap);
	va_end(ap);
	return -1;
}

static const char *str(struct call *c, const char *name)
{
	return json_string_value(json_object_get(c->in, name));
}

/* A base64 blob field into out; -1 (with the error set) when absent or malformed. */
static int blob(struct call *c, const char *name, struct buf *out, bool required)
{
	json_t *v = json_object_get(c->in, name);

	if (!v || json_is_null(v))
		return required ? fail(c, 400, "ValidationException", "1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", name) : 0;
	if (!json_is_string(v) || b64_decode(json_string_value(v), json_string_length(v), out) < 0)
		return fail(c, 400, "SerializationException", "%s is not base64", name);
	return 1;
}

static void put_blob(json_t *o, const char *name, const uint8_t *data, size_t len)
{
	struct buf b = BUF_INIT;

	b64_encode(data, len, &b);
	json_object_set_new(o, name, json_stringn((const char *)b.data ? (const char *)b.data : "", b.len));
	buf_free_secret(&b);
}

static struct kms_key *key_for(struct call *c, const char *field)
{
	const char *ref = str(c, field);
	struct kms_key *k;

	if (!ref) {
		fail(c, 400, "ValidationException", "1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", field);
		return NULL;
	}
	k = kms_store_find(c->s->store, ref);
	if (!k) {
		fail(c, 400, "NotFoundException", "%s '%s' does not exist", !strncmp(ref, "alias/", 6) ? "Alias" : "Key",
		     ref);
		return NULL;
	}
	return k;
}

/* Cryptographic use needs an enabled key; asked after the key policy allowed the call, so that
 * a caller the policy refuses learns nothing of the key's state. */
static int usable(struct call *c, const struct kms_key *k)
{
	if (k->deletion_date)
		return fail(c, 400, "KMSInvalidStateException", "%s is pending deletion.", k->arn);
	if (!k->enabled)
		return fail(c, 400, "DisabledException", "%s is disabled.", k->arn);
	return 0;
}

/* The key policy decides; the caller is told as KMS tells it. */
static int authorize(struct call *c, const struct kms_key *k, const char *op)
{
	char action[64], why[512];
	struct err err = { 0 };
	int r;

	snprintf(action, sizeof(action), "kms:%s", op);
	c->pr.action = action;
	r = kms_policy_evaluate(k->policy, &c->pr, why, sizeof(why), &err);
	if (r == 1)
		return 0;
	log_info("denied %s on %s for %s: %s", action, k->id, c->principal, r < 0 ? err.msg : why);
	return fail(c, 400, "AccessDeniedException",
		    "User: %s is not authorized to perform: %s on resource: %s because no resource-based policy allows the %s action",
		    c->principal, action, k->arn, action);
}

/* A document's signature and chain, as att_verify judges them. Safe to remember: the verdict
 * depends only on the bytes (the key is their hash), the root (the service's, fixed) and the
 * time, and the time's part is kept as the window in which the chain is valid. */
static int verify(struct kms_service *s, const struct buf *bytes, const struct att_doc *doc, time_t now,
		  struct err *err)
{
	uint8_t h[32];
	struct kms_verified *v;

	sha256(bytes->data, bytes->len, h);
	for (unsigned i = 0; i < KMS_VERIFIED_MAX; i++) {
		v = &s->verified[i];
		if (!memcmp(v->hash, h, sizeof(h)) && v->until)
			return now >= v->from && now <= v->until ? 0 : att_verify(doc, s->root, now, err);
	}
	v = &s->verified[s->next_verified++ % KMS_VERIFIED_MAX];
	if (att_verify_window(doc, s->root, now, &v->from, &v->until, err) < 0) {
		memset(v, 0, sizeof(*v));
		return -1;
	}
	memcpy(v->hash, h, sizeof(h));
	return 0;
}

/* Recipient: a document verified against the configured root, fresh, not from a debug-mode
 * enclave, carrying an RSA key; its PCRs become the condition keys. */
static int recipient(struct call *c)
{
	json_t *r = json_object_get(c->in, "Recipient"), *doc;
	const char *alg;
	struct err err = { 0 };
	time_t now = time(NULL);

	if (!r || json_is_null(r))
		return 0;
	alg = json_string_value(json_object_get(r, "KeyEncryptionAlgorithm"));
	doc = json_object_get(r, "AttestationDocument");
	if (alg && strcmp(alg, "RSAES_OAEP_SHA_256"))
		return fail(c, 400, "ValidationException", "KeyEncryptionAlgorithm must be RSAES_OAEP_SHA_256");
	if (!json_is_string(doc) || b64_decode(json_string_value(doc), json_string_length(doc), &c->doc_bytes) <= 0)
		return fail(c, 400, "ValidationException", "Recipient.AttestationDocument is not base64");
	if (att_parse(c->doc_bytes.data, c->doc_bytes.len, &c->doc, &err) < 0 || verify(c->s, &c->doc_bytes, &c->doc, now, &err) < 0)
		return fail(c, 400, "ValidationException", "The attestation document is not valid: %s", err.msg);
	if (att_is_debug(&c->doc))
		return fail(c, 400, "ValidationException", "The attestation document comes from a debug-mode enclave");
	if ((long long)(c->doc.timestamp / 1000) + c->s->max_doc_age < (long long)now ||
	    (long long)(c->doc.timestamp / 1000) > (long long)now + SKEW_SECONDS)
		return fail(c, 400, "ValidationException", "The attestation document is expired");
	if (!c->doc.public_key.data)
		return fail(c, 400, "ValidationException", "The attestation document has no public key");
	{
		const unsigned char *p = c->doc.public_key.data;
		EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)c->doc.public_key.len);
		bool ok = pk && EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pk) >= 2048;

		EVP_PKEY_free(pk);
		if (!ok)
			return fail(c, 400, "ValidationException",
				    "The attestation document's public key is not an RSA key of 2048 bits or more");
	}
	c->pr.attested = true;
	for (int i = 0; i < 32; i++)
		if (c->doc.pcrs[i].data && c->doc.pcrs[i].len <= 64)
			hex_encode(c->doc.pcrs[i].data, c->doc.pcrs[i].len, c->pr.pcr[i]);
	return 1;
}

/* The secret, either in the clear under `plain_field` or for the recipient. */
static int secret_out(struct call *c, const char *plain_field, const uint8_t *secret, size_t len)
{
	if (c->pr.attested) {
		struct buf env = BUF_INIT;
		struct err err = { 0 };

		if (cms_recipient_encrypt(c->doc.public_key.data, c->doc.public_key.len, secret, len, &env, &err) < 0)
			return fail(c, 400, "ValidationException", "%s", err.msg);
		put_blob(c->out, "CiphertextForRecipient", env.data, env.len);
		buf_free(&env);
	} else {
		put_blob(c->out, plain_field, secret, len);
	}
	return 0;
}

static const char *key_state(const struct kms_key *k)
{
	return k->deletion_date ? "PendingDeletion" : k->enabled ? "Enabled" : "Disabled";
}

static json_t *metadata(struct call *c, const struct kms_key *k)
{
	json_t *m = json_pack("{s:s, s:s, s:s, s:I, s:b, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[s], s:b}", "AWSAccountId",
			      c->s->master.account, "KeyId", k->id, "Arn", k->arn, "CreationDate", (json_int_t)k->created,
			      "Enabled", k->enabled, "Description", k->description, "KeyUsage", "ENCRYPT_DECRYPT",
			      "KeyState", key_state(k), "Origin", "AWS_KMS", "KeyManager", "CUSTOMER",
			      "CustomerMasterKeySpec", "SYMMETRIC_DEFAULT", "KeySpec", "SYMMETRIC_DEFAULT",
			      "EncryptionAlgorithms", "SYMMETRIC_DEFAULT", "MultiRegion", 0);

	if (k->deletion_date)
		json_object_set_new(m, "DeletionDate", json_integer((json_int_t)k->deletion_date));
	return m;
}

static int context(struct call *c, const char *field, struct buf *out)
{
	struct err err = { 0 };

	if (kms_context_canonical(json_object_get(c->in, field), out, &err) < 0)
		return fail(c, 400, "ValidationException", "%s", err.msg);
	return 0;
}

static int save(struct call *c)
{
	struct err err = { 0 };

	if (kms_store_save(c->s->store, &err) < 0) {
		log_error("%s", err.msg);
		return fail(c, 500, "KMSInternalException", "the key store cannot be written");
	}
	return 0;
}

static int op_create_key(struct call *c)
{
	const char *spec = str(c, "KeySpec") ?: str(c, "CustomerMasterKeySpec"), *usage = str(c, "KeyUsage");
	const char *policy = str(c, "Policy");
	struct err err = { 0 };
	struct kms_key *k;

	if ((spec && strcmp(spec, "SYMMETRIC_DEFAULT")) || (usage && strcmp(usage, "ENCRYPT_DECRYPT")))
		return fail(c, 400, "UnsupportedOperationException", "kms-local makes SYMMETRIC_DEFAULT ENCRYPT_DECRYPT keys only");
	if (policy && kms_policy_check(policy, &err) < 0)
		return fail(c, 400, "MalformedPolicyDocumentException", "%s", err.msg);
	k = kms_store_create(c->s->store, str(c, "Description"), policy);
	if (save(c) < 0)
		return -1;
	json_object_set_new(c->out, "KeyMetadata", metadata(c, k));
	return 0;
}

static int op_describe_key(struct call *c)
{
	struct kms_key *k = key_for(c, "KeyId");

	if (!k || authorize(c, k, "DescribeKey") < 0)
		return -1;
	json_object_set_new(c->out, "KeyMetadata", metadata(c, k));
	return 0;
}

static int op_list_keys(struct call *c)
{
	json_t *keys = json_array();

	for (size_t i = 0; i < c->s->store->n_keys; i++)
		json_array_append_new(keys, json_pack("{s:s, s:s}", "KeyId", c->s->store->keys[i].id, "KeyArn",
						      c->s->store->keys[i].arn));
	json_object_set_new(c->out, "Keys", keys);
	json_object_set_new(c->out, "Truncated", json_false());
	return 0;
}

static int op_create_alias(struct call *c)
{
	const char *name = str(c, "AliasName");
	struct kms_key *k;
	struct err err = { 0 };

	if (!name || strncmp(name, "alias/", 6) || !name[6] || strlen(name) > 256 || !strncmp(name, "alias/aws/", 10) ||
	    strspn(name + 6, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-") != strlen(name + 6))
		return fail(c, 400, "ValidationException", "AliasName must be alias/ followed by letters, digits, /, _ or -");
	k = key_for(c, "TargetKeyId");
	if (!k || authorize(c, k, "CreateAlias") < 0)
		return -1;
	if (kms_store_add_alias(c->s->store, name, k, &err) < 0)
		return fail(c, 400, "AlreadyExistsException", "%s", err.msg);
	return save(c);
}

static int op_list_aliases(struct call *c)
{
	const char *only = str(c, "KeyId");
	struct kms_key *ok = only ? kms_store_find(c->s->store, only) : NULL;
	json_t *aliases;

	if (only && !ok)
		return fail(c, 400, "NotFoundException", "Key '%s' does not exist", only);
	aliases = json_array();
	for (size_t i = 0; i < c->s->store->n_aliases; i++) {
		struct kms_alias *a = &c->s->store->aliases[i];
		char arn[400];

		if (ok && strcmp(a->target, ok->id))
			continue;
		snprintf(arn, sizeof(arn), "arn:aws:kms:%s:%s:%s", c->s->master.region, c->s->master.account, a->name);
		json_array_append_new(aliases, json_pack("{s:s, s:s, s:s}", "AliasName", a->name, "AliasArn", arn,
							 "TargetKeyId", a->target));
	}
	json_object_set_new(c->out, "Aliases", aliases);
	json_object_set_new(c->out, "Truncated", json_false());
	return 0;
}

static int op_put_key_policy(struct call *c)
{
	struct kms_key *k = key_for(c, "KeyId");
	const char *policy = str(c, "Policy"), *name = str(c, "PolicyName");
	struct err err = { 0 };

	if (!k || authorize(c, k, "PutKeyPolicy") < 0)
		return -1;
	if (name && strcmp(name, "default"))
		return fail(c, 400, "ValidationException", "PolicyName must be default");
	if (!policy || kms_policy_check(policy, &err) < 0)
		return fail(c, 400, "MalformedPolicyDocumentException", "%s", policy ? err.msg : "Policy is missing");
	free(k->policy);
	k->policy = strdup(policy);
	return save(c);
}

static int op_get_key_policy(struct call *c)
{
	struct kms_key *k = key_for(c, "KeyId");

	if (!k || authorize(c, k, "GetKeyPolicy") < 0)
		return -1;
	json_object_set_new(c->out, "Policy", json_string(k->policy));
	json_object_set_new(c->out, "PolicyName", json_string("default"));
	return 0;
}

/* Encrypts under k with the context and puts the blob in the answer under field. */
static int seal(struct call *c, const struct kms_key *k, const uint8_t *pt, size_t len, const char *ctx,
		const char *field)
{
	struct buf ct = BUF_INIT;
	struct err err = { 0 };

	if (kms_blob_encrypt(k, pt, len, ctx, &ct, &err) < 0)
		return fail(c, 500, "KMSInternalException", "%s", err.msg);
	put_blob(c->out, field, ct.data, ct.len);
	buf_free(&ct);
	return 0;
}

static int op_encrypt(struct call *c)
{
	struct kms_key *k = key_for(c, "KeyId");
	struct buf pt = BUF_INIT, ctx = BUF_INIT;
	int rc = -1;

	if (!k || authorize(c, k, "Encrypt") < 0 || usable(c, k) < 0 || blob(c, "Plaintext", &pt, true) < 0 ||
	    context(c, "EncryptionContext", &ctx) < 0)
		goto out;
	if (!pt.len || pt.len > 4096) {
		fail(c, 400, "ValidationException", "Plaintext must hold 1 to 4096 bytes");
		goto out;
	}
	if (seal(c, k, pt.data, pt.len, buf_cstr(&ctx), "CiphertextBlob") < 0)
		goto out;
	json_object_set_new(c->out, "KeyId", json_string(k->arn));
	json_object_set_new(c->out, "EncryptionAlgorithm", json_string("SYMMETRIC_DEFAULT"));
	rc = 0;
out:
	buf_free_secret(&pt);
	buf_free(&ctx);
	return rc;
}

/* Decrypts CiphertextBlob under its key (which KeyId, when given, must name). */
static int open_blob(struct call *c, const char *blob_field, const char *ctx_field, const char *op,
		     struct kms_key **key, struct buf *pt)
{
	struct buf ct = BUF_INIT, ctx = BUF_INIT;
	struct err err = { 0 };
	int rc = -1;

	if (blob(c, blob_field, &ct, true) < 0 || context(c, ctx_field, &ctx) < 0)
		goto out;
	if (kms_blob_decrypt(c->s->store, ct.data, ct.len, buf_cstr(&ctx), key, pt, &err) < 0) {
		fail(c, 400, "InvalidCiphertextException", "The ciphertext is invalid, or was made with another encryption context");
		goto out;
	}
	if (str(c, "KeyId") && kms_store_find(c->s->store, str(c, "KeyId")) != *key) {
		fail(c, 400, "IncorrectKeyException", "The key ID in the request does not identify the key that encrypted the ciphertext");
		goto out;
	}
	if (authorize(c, *key, op) < 0 || usable(c, *key) < 0)
		goto out;
	rc = 0;
out:
	buf_free(&ct);
	buf_free(&ctx);
	return rc;
}

static int op_decrypt(struct call *c)
{
	struct kms_key *k = NULL;
	struct buf pt = BUF_INIT;
	int rc = -1;

	if (open_blob(c, "CiphertextBlob", "EncryptionContext", "Decrypt", &k, &pt) < 0 ||
	    secret_out(c, "Plaintext", pt.data, pt.len) < 0)
		goto out;
	json_object_set_new(c->out, "KeyId", json_string(k->arn));
	json_object_set_new(c->out, "EncryptionAlgorithm", json_string("SYMMETRIC_DEFAULT"));
	rc = 0;
out:
	buf_free_secret(&pt);
	return rc;
}

static int op_re_encrypt(struct call *c)
{
	struct kms_key *src = NULL, *dst;
	struct buf pt = BUF_INIT, ctx = BUF_INIT;
	int rc = -1;

	if (open_blob(c, "CiphertextBlob", "SourceEncryptionContext", "ReEncryptFrom", &src, &pt) < 0)
		goto out;
	dst = key_for(c, "DestinationKeyId");
	if (!dst || authorize(c, dst, "ReEncryptTo") < 0 || usable(c, dst) < 0 || context(c, "DestinationEncryptionContext", &ctx) < 0)
		goto out;
	if (seal(c, dst, pt.data, pt.len, buf_cstr(&ctx), "CiphertextBlob") < 0)
		goto out;
	json_object_set_new(c->out, "SourceKeyId", json_string(src->arn));
	json_object_set_new(c->out, "KeyId", json_string(dst->arn));
	json_object_set_new(c->out, "SourceEncryptionAlgorithm", json_string("SYMMETRIC_DEFAULT"));
	json_object_set_new(c->out, "DestinationEncryptionAlgorithm", json_string("SYMMETRIC_DEFAULT"));
	rc = 0;
out:
	buf_free_secret(&pt);
	buf_free(&ctx);
	return rc;
}

/* KeySpec AES_256 / AES_128, or NumberOfBytes 1..1024. */
static long data_key_size(struct call *c)
{
	const char *spec = str(c, "KeySpec");
	json_t *n = json_object_get(c->in, "NumberOfBytes");

	if (spec && n)
		return fail(c, 400, "ValidationException", "Give KeySpec or NumberOfBytes, not both");
	if (spec)
		return !strcmp(spec, "AES_256") ? 32
		       : !strcmp(spec, "AES_128") ? 16
						   : fail(c, 400, "ValidationException", "KeySpec must be AES_256 or AES_128");
	if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 1024)
		return fail(c, 400, "ValidationException", "Give KeySpec, or NumberOfBytes from 1 to 1024");
	return (long)json_integer_value(n);
}

static int data_key(struct call *c, bool with_plaintext)
{
	struct kms_key *k = key_for(c, "KeyId");
	struct buf ctx = BUF_INIT;
	uint8_t dk[1024];
	long n;
	int rc = -1;

	if (!k || authorize(c, k, with_plaintext ? "GenerateDataKey" : "GenerateDataKeyWithoutPlaintext") < 0 ||
	    usable(c, k) < 0 ||
	    context(c, "EncryptionContext", &ctx) < 0 || (n = data_key_size(c)) < 0)
		goto out;
	RAND_bytes(dk, (int)n);
	if (seal(c, k, dk, (size_t)n, buf_cstr(&ctx), "CiphertextBlob") < 0)
		goto out;
	if (with_plaintext && secret_out(c, "Plaintext", dk, (size_t)n) < 0)
		goto out;
	json_object_set_new(c->out, "KeyId", json_string(k->arn));
	rc = 0;
out:
	OPENSSL_cleanse(dk, sizeof(dk));
	buf_free(&ctx);
	return rc;
}

static int op_generate_data_key(struct call *c)
{
	return data_key(c, true);
}

static int op_generate_data_key_without_plaintext(struct call *c)
{
	if (json_object_get(c->in, "Recipient"))
		return fail(c, 400, "ValidationException", "GenerateDataKeyWithoutPlaintext takes no Recipient");
	return data_key(c, false);
}

static int op_generate_data_key_pair(struct call *c)
{
	struct kms_key *k = key_for(c, "KeyId");
	const char *spec = str(c, "KeyPairSpec");
	struct buf ctx = BUF_INIT;
	EVP_PKEY *pair = NULL;
	unsigned char *priv = NULL, *pub = NULL;
	int priv_len = 0, pub_len, rc = -1;

	if (!k || authorize(c, k, "GenerateDataKeyPair") < 0 || usable(c, k) < 0 || context(c, "EncryptionContext", &ctx) < 0)
		goto out;
	if (!spec) {
		fail(c, 400, "ValidationException", "KeyPairSpec is missing");
		goto out;
	}
	if (!strncmp(spec, "RSA_", 4) && (!strcmp(spec + 4, "2048") || !strcmp(spec + 4, "3072") || !strcmp(spec + 4, "4096")))
		pair = EVP_RSA_gen((unsigned)atoi(spec + 4));
	else if (!strcmp(spec, "ECC_NIST_P256") || !strcmp(spec, "ECC_NIST_P384") || !strcmp(spec, "ECC_NIST_P521"))
		pair = EVP_EC_gen(!strcmp(spec, "ECC_NIST_P256") ? "P-256" : !strcmp(spec, "ECC_NIST_P384") ? "P-384" : "P-521");
	else {
		fail(c, 400, "ValidationException", "KeyPairSpec %s is not RSA_2048/3072/4096 or ECC_NIST_P256/P384/P521", spec);
		goto out;
	}
	{
		PKCS8_PRIV_KEY_INFO *p8 = pair ? EVP_PKEY2PKCS8(pair) : NULL;

		priv_len = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &priv) : -1;
		PKCS8_PRIV_KEY_INFO_free(p8);
	}
	pub_len = pair ? i2d_PUBKEY(pair, &pub) : -1;
	if (priv_len <= 0 || pub_len <= 0) {
		fail(c, 500, "KMSInternalException", "key pair generation failed");
		goto out;
	}
	if (seal(c, k, priv, (size_t)priv_len, buf_cstr(&ctx), "PrivateKeyCiphertextBlob") < 0)
		goto out;
	if (secret_out(c, "PrivateKeyPlaintext", priv, (size_t)priv_len) < 0)
		goto out;
	put_blob(c->out, "PublicKey", pub, (size_t)pub_len);
	json_object_set_new(c->out, "KeyId", json_string(k->arn));
	json_object_set_new(c->out, "KeyPairSpec", json_string(spec));
	rc = 0;
out:
	if (priv)
		OPENSSL_clear_free(priv, (size_t)priv_len);
	OPENSSL_free(pub);
	EVP_PKEY_free(pair);
	buf_free(&ctx);
	return rc;
}

/* EnableKey and DisableKey: a key pending deletion keeps its state until the deletion is cancelled. */
static int set_enabled(struct call *c, const char *op, bool enabled)
{
	struct kms_key *k = key_for(c, "KeyId");

	if (!k || authorize(c, k, op) < 0)
		return -1;
	if (k->deletion_date)
		return fail(c, 400, "KMSInvalidStateException", "%s is pending deletion.", k->arn);
	k->enabled = enabled;
	return save(c);
}

static int op_enable_key(struct call *c)
{
	return set_enabled(c, "EnableKey", true);
}

static int op_disable_key(struct call *c)
{
	return set_enabled(c, "DisableKey", false);
}

/* As in KMS: a waiting period of 7 to 30 days (default 30), the key disabled meanwhile and
 * deleted with its aliases when it ends (kms_store_purge, at the next call). */
static int op_schedule_key_deletion(struct call *c)
{
	struct kms_key *k = key_for(c, "KeyId");
	json_t *w = json_object_get(c->in, "PendingWindowInDays");
	json_int_t days = 30;

	if (!k || authorize(c, k, "ScheduleKeyDeletion") < 0)
		return -1;
	if (w && (!json_is_integer(w) || json_integer_value(w) < 7 || json_integer_value(w) > 30))
		return fail(c, 400, "ValidationException",
			    "1 validation error detected: Value at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30");
	if (w)
		days = json_integer_value(w);
	if (k->deletion_date)
		return fail(c, 400, "KMSInvalidStateException", "%s is pending deletion.", k->arn);
	k->deletion_date = time(NULL) + (time_t)days * 86400;
	k->enabled = false;
	if (save(c) < 0)
		return -1;
	json_object_set_new(c->out, "KeyId", json_string(k->arn));
	json_object_set_new(c->out, "DeletionDate", json_integer((json_int_t)k->deletion_date));
	json_object_set_new(c->out, "KeyState", json_string("PendingDeletion"));
	json_object_set_new(c->out, "PendingWindowInDays", json_integer(days));
	return 0;
}

/* The key comes back disabled, as in KMS; EnableKey makes it usable again. */
static int op_cancel_key_deletion(struct call *c)
{
	struct kms_key *k = key_for(c, "KeyId");

	if (!k || authorize(c, k, "CancelKeyDeletion") < 0)
		return -1;
	if (!k->deletion_date)
		return fail(c, 400, "KMSInvalidStateException", "%s is not pending deletion.", k->arn);
	k->deletion_date = 0;
	k->enabled = false;
	if (save(c) < 0)
		return -1;
	json_object_set_new(c->out, "KeyId", json_string(k->arn));
	return 0;
}

static int op_generate_random(struct call *c)
{
	json_t *n = json_object_get(c->in, "NumberOfBytes");
	uint8_t r[1024];

	if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 1024)
		return fail(c, 400, "ValidationException", "NumberOfBytes must be from 1 to 1024");
	/* no key, so no key policy: the caller's identity is enough, and with a Recipient the
	 * bytes are for the attested enclave only */
	RAND_bytes(r, (int)json_integer_value(n));
	secret_out(c, "Plaintext", r, (size_t)json_integer_value(n));
	OPENSSL_cleanse(r, sizeof(r));
	return c->status ? -1 : 0;
}

static const struct {
	const char *name;
	int (*fn)(struct call *c);
	bool takes_recipient;
} ops[] = {
	{ "CreateKey", op_create_key, false },
	{ "DescribeKey", op_describe_key, false },
	{ "ListKeys", op_list_keys, false },
	{ "CreateAlias", op_create_alias, false },
	{ "ListAliases", op_list_aliases, false },
	{ "PutKeyPolicy", op_put_key_policy, false },
	{ "GetKeyPolicy", op_get_key_policy, false },
	{ "EnableKey", op_enable_key, false },
	{ "DisableKey", op_disable_key, false },
	{ "ScheduleKeyDeletion", op_schedule_key_deletion, false },
	{ "CancelKeyDeletion", op_cancel_key_deletion, false },
	{ "Encrypt", op_encrypt, false },
	{ "Decrypt", op_decrypt, true },
	{ "ReEncrypt", op_re_encrypt, false },
	{ "GenerateDataKey", op_generate_data_key, true },
	{ "GenerateDataKeyWithoutPlaintext", op_generate_data_key_without_plaintext, false },
	{ "GenerateDataKeyPair", op_generate_data_key_pair, true },
	{ "GenerateRandom", op_generate_random, true },
};

/* SigV4 with the local credentials; the caller's ARN goes to c->principal. */
static int authenticate(struct call *c, const struct http_request *req, const uint8_t *body, size_t len)
{
	const char *auth = http_header_get(req, "authorization"), *date = http_header_get(req, "x-amz-date");
	const char *token = http_header_get(req, "x-amz-security-token");
	struct sigv4_header h[HTTP_MAX_HEADERS];
	struct sigv4_request sr = { req->method, NULL, NULL, h, req->n_headers, body, len };
	struct sigv4_auth a;
	struct err err = { 0 };
	char secret[64], sig[65], path[1024];
	struct tm tm = { 0 };
	time_t when;

	if (!auth)
		return fail(c, 400, "MissingAuthenticationTokenException", "Missing Authentication Token");
	if (sigv4_parse_auth(auth, &a, &err) < 0)
		return fail(c, 400, "IncompleteSignatureException", "%s", err.msg);
	if (strcmp(a.service, "kms"))
		return fail(c, 400, "InvalidSignatureException", "Credential should be scoped to correct service: 'kms'.");
	if (strcmp(a.region, c->s->master.region))
		return fail(c, 400, "InvalidSignatureException",
			    "Credential should be scoped to a valid region, not '%s'; this kms-local serves '%s'.", a.region,
			    c->s->master.region);
	if (local_creds_lookup(&c->s->master, a.access_key, token, time(NULL), secret, c->principal, &err) < 0)
		return fail(c, 400, strstr(err.msg, "expired") ? "ExpiredTokenException" : "UnrecognizedClientException",
			    "%s", err.msg);
	if (!date || !strptime(date, "%Y%m%dT%H%M%SZ", &tm) || strncmp(date, a.date, 8))
		return fail(c, 400, "IncompleteSignatureException", "X-Amz-Date is missing or does not match the credential scope");
	when = timegm(&tm);
	if (when < time(NULL) - SKEW_SECONDS || when > time(NULL) + SKEW_SECONDS)
		return fail(c, 400, "InvalidSignatureException", "Signature expired: %s is now earlier or later than 5 minutes from now", date);
	for (size_t i = 0; i < req->n_headers; i++)
		h[i] = (struct sigv4_header){ req->headers[i].name, req->headers[i].value };
	snprintf(path, sizeof(path), "%.*s", (int)strcspn(req->target, "?"), req->target);
	sr.path = path;
	sr.query = strchr(req->target, '?') ? strchr(req->target, '?') + 1 : NULL;
	if (sigv4_signature(&sr, a.signed_headers, date, a.region, a.service, secret, sig, &err) < 0 ||
	    CRYPTO_memcmp(sig, a.signature, 64) != 0) {
		explicit_bzero(secret, sizeof(secret));
		return fail(c, 400, "InvalidSignatureException",
			    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.");
	}
	explicit_bzero(secret, sizeof(secret));
	c->pr.principal = c->principal;
	c->pr.account = c->s->master.account;
	return 0;
}

void kms_service_handle(struct kms_service *s, const struct http_request *req, const uint8_t *body, size_t len,
			int *status, struct buf *out)
{
	struct call c = { .s = s, .status = 0 };
	const char *target = http_header_get(req, "x-amz-target");
	const char *op = target && !strncmp(target, "TrentService.", 13) ? target + 13 : NULL;
	json_error_t je;
	size_t i;

	c.out = json_object();
	if (strcmp(req->method, "POST") || !op) {
		fail(&c, 400, "UnknownOperationException", "POST with X-Amz-Target: TrentService.<Operation>");
		goto reply;
	}
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]) && strcmp(ops[i].name, op); i++)
		;
	if (authenticate(&c, req, body, len) < 0)
		goto reply;
	if (i == sizeof(ops) / sizeof(ops[0])) {
		fail(&c, 400, "UnknownOperationException", "kms-local does not implement %s", op);
		goto reply;
	}
	c.in = json_loadb((const char *)body, len, 0, &je);
	if (!c.in || !json_is_object(c.in)) {
		fail(&c, 400, "SerializationException", "the body is not a JSON object");
		goto reply;
	}
	if (json_object_get(c.in, "Recipient") && !ops[i].takes_recipient) {
		fail(&c, 400, "ValidationException", "%s takes no Recipient", op);
		goto reply;
	}
	/* keys whose deletion date has passed are gone before the call looks for them */
	if (kms_store_purge(s->store, time(NULL)) && save(&c) < 0)
		goto reply;
	if (ops[i].takes_recipient && recipient(&c) < 0)
		goto reply;
	ops[i].fn(&c);
reply:
	if (c.status) {
		json_decref(c.out);
		c.out = json_pack("{s:s, s:s}", "__type", c.type, "message", c.message);
		*status = c.status;
	} else {
		*status = 200;
	}
	{
		char *text = json_dumps(c.out, JSON_COMPACT);

		buf_append_str(out, text);
		explicit_bzero(text, strlen(text));
		free(text);
	}
	log_debug("%s %s -> %d %s", op ? op : "?", c.principal, *status, c.type);
	json_decref(c.out);
	json_decref(c.in);
	buf_free(&c.doc_bytes);
}
