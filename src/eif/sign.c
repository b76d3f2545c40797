/*
 * EIF signatures: a CBOR list holding the signer's PEM certificate and a COSE_Sign1 over
 * PcrInfo{0, PCR0}. Parsing runs on EIFs from anywhere; every length is checked first.
 */
#include "eif/sign.h"

#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "codec/cbor.h"
#include "crypto/cose.h"
#include "eif/eif.h"

#define MAX_PEM_LEN 16384

/* serde_cbor of a Vec<u8> without serde_bytes: an array of small uints. */
static void put_u8_array(struct buf *b, const uint8_t *data, size_t len)
{
	cbor_put_array(b, len);
	for (size_t i = 0; i < len; i++)
		cbor_put_uint(b, data[i]);
}

static void pcr_info(struct buf *b, const uint8_t pcr0[PCR_LEN])
{
	cbor_put_map(b, 2);
	cbor_put_text(b, "register_index");
	cbor_put_uint(b, 0);
	cbor_put_text(b, "register_value");
	put_u8_array(b, pcr0, PCR_LEN);
}

static X509 *cert_from_pem(const uint8_t *pem, size_t len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;

	BIO_free(bio);
	return x;
}

static int cert_pcr8(X509 *x, uint8_t out[PCR_LEN])
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);

	if (n <= 0)
		return -1;
	pcr_of_bytes(der, (size_t)n, out);
	OPENSSL_free(der);
	return 0;
}

int eif_pcr_of_cert(const char *pem_path, uint8_t out[PCR_LEN], struct err *err)
{
	struct buf pem = BUF_INIT;
	X509 *x;
	int rc = 0;

	if (fs_read_file(pem_path, MAX_PEM_LEN, &pem, err) < 0) {
		buf_free(&pem);
		return -1;
	}
	x = cert_from_pem(pem.data, pem.len);
	if (!x || cert_pcr8(x, out) < 0)
		rc = err_set(err, EINVAL, "%s: not a PEM X.509 certificate", pem_path);
	X509_free(x);
	buf_free(&pem);
	return rc;
}

/* A PEM key's passphrase, asked for only when the key is encrypted: from the file named by
 * ENCLAVER_KEY_PASSPHRASE_FILE (its first line), ENCLAVER_KEY_PASSPHRASE, or once on the
 * terminal. Without any of them the key is refused with a line that says how to give one. */
struct passphrase_ask {
	const char *path;
	bool asked, given;
};

static int passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	struct passphrase_ask *a = u;
	const char *file = getenv("ENCLAVER_KEY_PASSPHRASE_FILE"), *env = getenv("ENCLAVER_KEY_PASSPHRASE");
	char prompt[4200];
	size_t n;

	(void)rwflag;
	if (a->asked) /* a decoder asks again for the same key: the answer was wrong */
		return -1;
	a->asked = true;
	if (file && *file) {
		FILE *f = fopen(file, "re");

		if (!f || !fgets(buf, size, f)) {
			if (f)
				fclose(f);
			return -1;
		}
		fclose(f);
		buf[strcspn(buf, "\r\n")] = 0;
	} else if (env) {
		snprintf(buf, (size_t)size, "%s", env);
	} else if (isatty(STDIN_FILENO)) {
		snprintf(prompt, sizeof(prompt), "passphrase for %s: ", a->path);
		if (EVP_read_pw_string(buf, size, prompt, 0) != 0)
			return -1;
	} else {
		return -1;
	}
	a->given = true;
	n = strlen(buf);
	return (int)n;
}

int eif_signature_build(const char *cert_pem_path, const char *key_pem_path,
			const uint8_t pcr0[PCR_LEN], struct buf *out, uint8_t pcr8[PCR_LEN],
			struct err *err)
{
	struct buf pem = BUF_INIT, payload = BUF_INIT, cose = BUF_INIT;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	FILE *kf = NULL;
	int rc = -1;

	if (fs_read_file(cert_pem_path, MAX_PEM_LEN, &pem, err) < 0)
		goto out;
	cert = cert_from_pem(pem.data, pem.len);
	if (!cert) {
		err_set(err, EINVAL, "%s: not a PEM X.509 certificate", cert_pem_path);
		goto out;
	}
	kf = fopen(key_pem_path, "re");
	if (!kf) {
		err_sys(err, "%s", key_pem_path);
		goto out;
	}
	{
		struct passphrase_ask ask = { .path = key_pem_path };

		key = PEM_read_PrivateKey(kf, NULL, passphrase_cb, &ask);
		if (!key && ask.given) {
			err_set(err, EACCES, "%s: the passphrase does not open this encrypted key", key_pem_path);
			goto out;
		}
		if (!key && ask.asked) {
			err_set(err, EACCES,
				"%s is encrypted: give its passphrase on a terminal, in ENCLAVER_KEY_PASSPHRASE, or in a "
				"file named by ENCLAVER_KEY_PASSPHRASE_FILE",
				key_pem_path);
			goto out;
		}
		if (!key) {
			err_set(err, EINVAL, "%s: not a PEM private key", key_pem_path);
			goto out;
		}
	}
	if (!cose_alg_for_key(key)) {
		err_set(err, EINVAL, "%s: the signing key must be ECDSA on P-256, P-384 or P-521", key_pem_path);
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		err_set(err, EINVAL, "%s does not belong to the certificate %s", key_pem_path, cert_pem_path);
		goto out;
	}
	pcr_info(&payload, pcr0);
	if (cose_sign1(key, payload.data, payload.len, &cose, err) < 0)
		goto out;
	cbor_put_array(out, 1);
	cbor_put_map(out, 2);
	cbor_put_text(out, "signing_certificate");
	put_u8_array(out, pem.data, pem.len);
	cbor_put_text(out, "signature");
	put_u8_array(out, cose.data, cose.len);
	if (out->len > EIF_MAX_SIGNATURE_LEN) {
		err_set(err, EINVAL, "signature section of %zu bytes exceeds the 32768-byte limit", out->len);
		goto out;
	}
	if (cert_pcr8(cert, pcr8) < 0) {
		err_set(err, EINVAL, "%s: cannot encode the certificate", cert_pem_path);
		goto out;
	}
	rc = 0;
out:
	if (kf)
		fclose(kf);
	EVP_PKEY_free(key);
	X509_free(cert);
	buf_free(&pem);
	buf_free(&payload);
	buf_free(&cose);
	return rc;
}

static int u8_array(const struct cbor_item *it, struct buf *out)
{
	if (!it || it->type != CBOR_ARRAY)
		return -1;
	for (size_t i = 0; i < it->count; i++) {
		if (it->items[i].type != CBOR_UINT || it->items[i].u > 255)
			return -1;
		buf_append_byte(out, (uint8_t)it->items[i].u);
	}
	return 0;
}

int eif_signature_check(const uint8_t *section, size_t len, const uint8_t pcr0[PCR_LEN],
			struct eif_signature_result *res, struct err *err)
{
	struct cbor_item *root = NULL;
	const struct cbor_item *entry;
	struct buf pem = BUF_INIT, cose = BUF_INIT, expect = BUF_INIT;
	X509 *cert = NULL;
	EVP_PKEY *pub;
	const uint8_t *payload;
	size_t payload_len;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (cbor_decode(section, len, 4, &root, err) < 0) {
		err_wrap(err, "signature section");
		goto out;
	}
	entry = root->type == CBOR_ARRAY && root->count >= 1 ? &root->items[0] : NULL;
	if (!entry || u8_array(cbor_map_get(entry, "signing_certificate"), &pem) < 0 ||
	    u8_array(cbor_map_get(entry, "signature"), &cose) < 0 || pem.len == 0) {
		err_set(err, EINVAL, "signature section: expected [{signing_certificate, signature}] byte lists");
		goto out;
	}
	cert = cert_from_pem(pem.data, pem.len);
	if (!cert || cert_pcr8(cert, res->pcr8) < 0) {
		err_set(err, EINVAL, "signature section: the signing certificate is not a PEM X.509 certificate");
		goto out;
	}
	res->cert_pem = strndup((const char *)pem.data, pem.len);
	if (!res->cert_pem)
		abort();
	res->cert_time_valid = X509_cmp_current_time(X509_get0_notBefore(cert)) < 0 &&
			       X509_cmp_current_time(X509_get0_notAfter(cert)) > 0;
	rc = 0;
	pub = X509_get0_pubkey(cert);
	if (!pub || cose_verify1(pub, cose.data, cose.len, &payload, &payload_len, err) < 0)
		goto out;
	pcr_info(&expect, pcr0);
	if (payload_len != expect.len || memcmp(payload, expect.data, expect.len) != 0) {
		err_set(err, EINVAL, "the signature is over a different PCR0 than this image's");
		goto out;
	}
	res->verified = true;
out:
	X509_free(cert);
	cbor_free(root);
	buf_free(&pem);
	buf_free(&cose);
	buf_free(&expect);
	return rc;
}
