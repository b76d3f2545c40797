/* COSE_Sign1 signing and verification over OpenSSL. Verification input is untrusted. */
#include "crypto/cose.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <string.h>

#include "codec/cbor.h"

struct alg_info {
	int alg;
	const char *md;
	size_t coord_len;
};

static int alg_info(int alg, struct alg_info *out)
{
	switch (alg) {
	case COSE_ALG_ES256:
		*out = (struct alg_info){ alg, "SHA256", 32 };
		return 0;
	case COSE_ALG_ES384:
		*out = (struct alg_info){ alg, "SHA384", 48 };
		return 0;
	case COSE_ALG_ES512:
		*out = (struct alg_info){ alg, "SHA512", 66 };
		return 0;
	default:
		return -1;
	}
}

int cose_alg_for_key(EVP_PKEY *key)
{
	char group[64];

	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
	    !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL))
		return 0;
	if (!strcmp(group, "prime256v1") || !strcmp(group, "P-256"))
		return COSE_ALG_ES256;
	if (!strcmp(group, "secp384r1") || !strcmp(group, "P-384"))
		return COSE_ALG_ES384;
	if (!strcmp(group, "secp521r1") || !strcmp(group, "P-521"))
		return COSE_ALG_ES512;
	return 0;
}

/* ["Signature1", protected, h'', payload] */
static void sig_structure(struct buf *b, const uint8_t *prot, size_t prot_len, const uint8_t *payload,
			  size_t len)
{
	cbor_put_array(b, 4);
	cbor_put_text(b, "Signature1");
	cbor_put_bytes(b, prot, prot_len);
	cbor_put_bytes(b, "", 0);
	cbor_put_bytes(b, payload, len);
}

int cose_sign1(EVP_PKEY *key, const uint8_t *payload, size_t len, struct buf *out, struct err *err)
{
	struct alg_info ai;
	struct buf prot = BUF_INIT, tbs = BUF_INIT;
	EVP_MD_CTX *ctx = NULL;
	ECDSA_SIG *sig = NULL;
	unsigned char *der = NULL;
	const unsigned char *dp;
	size_t der_len = 0;
	uint8_t rs[132];
	int rc = -1;

	if (alg_info(cose_alg_for_key(key), &ai) < 0)
		return err_set(err, EINVAL, "signing key must be ECDSA on P-256, P-384 or P-521");
	cbor_put_map(&prot, 1);
	cbor_put_uint(&prot, 1);
	cbor_put_int(&prot, ai.alg);
	sig_structure(&tbs, prot.data, prot.len, payload, len);
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestSignInit_ex(ctx, NULL, ai.md, NULL, NULL, key, NULL) != 1 ||
	    EVP_DigestSign(ctx, NULL, &der_len, tbs.data, tbs.len) != 1)
		goto ssl_fail;
	der = OPENSSL_malloc(der_len);
	if (!der || EVP_DigestSign(ctx, der, &der_len, tbs.data, tbs.len) != 1)
		goto ssl_fail;
	dp = der;
	sig = d2i_ECDSA_SIG(NULL, &dp, (long)der_len);
	if (!sig || BN_bn2binpad(ECDSA_SIG_get0_r(sig), rs, (int)ai.coord_len) < 0 ||
	    BN_bn2binpad(ECDSA_SIG_get0_s(sig), rs + ai.coord_len, (int)ai.coord_len) < 0)
		goto ssl_fail;
	cbor_put_array(out, 4);
	cbor_put_bytes(out, prot.data, prot.len);
	cbor_put_map(out, 0);
	cbor_put_bytes(out, payload, len);
	cbor_put_bytes(out, rs, 2 * ai.coord_len);
	rc = 0;
	goto out;
ssl_fail:
	err_set(err, EINVAL, "ECDSA signing failed");
out:
	ECDSA_SIG_free(sig);
	OPENSSL_free(der);
	EVP_MD_CTX_free(ctx);
	buf_free(&prot);
	buf_free(&tbs);
	return rc;
}

int cose_verify1(EVP_PKEY *pub, const uint8_t *cose, size_t len, const uint8_t **payload,
		 size_t *payload_len, struct err *err)
{
	struct cbor_item *root = NULL, *prot_map = NULL;
	const struct cbor_item *arr, *alg;
	struct alg_info ai;
	struct buf tbs = BUF_INIT;
	EVP_MD_CTX *ctx = NULL;
	ECDSA_SIG *sig = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *der = NULL;
	int der_len, rc = -1;

	if (cbor_decode(cose, len, CBOR_DEFAULT_MAX_DEPTH, &root, err) < 0)
		return err_wrap(err, "COSE_Sign1");
	arr = root->type == CBOR_TAG && root->u == 18 ? &root->items[0] : root;
	if (arr->type != CBOR_ARRAY || arr->count != 4 || arr->items[0].type != CBOR_BYTES ||
	    arr->items[1].type != CBOR_MAP || arr->items[2].type != CBOR_BYTES ||
	    arr->items[3].type != CBOR_BYTES) {
		err_set(err, EINVAL, "COSE_Sign1: not [protected bstr, unprotected map, payload bstr, signature bstr]");
		goto out;
	}
	if (cbor_decode(arr->items[0].data, arr->items[0].len, 4, &prot_map, err) < 0) {
		err_wrap(err, "COSE_Sign1 protected header");
		goto out;
	}
	alg = cbor_map_get_uint(prot_map, 1);
	if (!alg || alg->type != CBOR_NINT || alg->u > 64 || alg_info(-1 - (int)alg->u, &ai) < 0) {
		err_set(err, EINVAL, "COSE_Sign1: unsupported or missing algorithm");
		goto out;
	}
	if (ai.alg != cose_alg_for_key(pub)) {
		err_set(err, EINVAL, "COSE_Sign1: algorithm does not match the key's curve");
		goto out;
	}
	if (arr->items[3].len != 2 * ai.coord_len) {
		err_set(err, EINVAL, "COSE_Sign1: signature is %zu bytes, expected %zu", arr->items[3].len,
			2 * ai.coord_len);
		goto out;
	}
	sig_structure(&tbs, arr->items[0].data, arr->items[0].len, arr->items[2].data, arr->items[2].len);
	r = BN_bin2bn(arr->items[3].data, (int)ai.coord_len, NULL);
	s = BN_bin2bn(arr->items[3].data + ai.coord_len, (int)ai.coord_len, NULL);
	sig = ECDSA_SIG_new();
	if (!r || !s || !sig || ECDSA_SIG_set0(sig, r, s) != 1)
		abort();
	r = s = NULL;
	der_len = i2d_ECDSA_SIG(sig, &der);
	ctx = EVP_MD_CTX_new();
	if (der_len <= 0 || !ctx || EVP_DigestVerifyInit_ex(ctx, NULL, ai.md, NULL, NULL, pub, NULL) != 1 ||
	    EVP_DigestVerify(ctx, der, (size_t)der_len, tbs.data, tbs.len) != 1) {
		err_set(err, EINVAL, "COSE_Sign1: signature does not verify");
		goto out;
	}
	*payload = arr->items[2].data;
	*payload_len = arr->items[2].len;
	rc = 0;
out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	OPENSSL_free(der);
	EVP_MD_CTX_free(ctx);
	buf_free(&tbs);
	cbor_free(prot_map);
	cbor_free(root);
	return rc;
}
