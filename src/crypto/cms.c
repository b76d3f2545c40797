/* CMS EnvelopedData: a hand-written BER writer (KMS's exact shape) and OpenSSL's CMS reader. */
#include "crypto/cms.h"

#include <errno.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <string.h>

#include "crypto/sha.h"

static void tlv(struct buf *b, uint8_t tag, const void *body, size_t n)
{
	buf_append_byte(b, tag);
	if (n < 128) {
		buf_append_byte(b, (uint8_t)n);
	} else {
		uint8_t len[8];
		int k = 0;

		for (size_t v = n; v; v >>= 8)
			len[k++] = (uint8_t)v;
		buf_append_byte(b, (uint8_t)(0x80 | k));
		while (k--)
			buf_append_byte(b, len[k]);
	}
	buf_append(b, body, n);
}

static void tlv_buf(struct buf *b, uint8_t tag, struct buf *body)
{
	tlv(b, tag, body->data, body->len);
	buf_free(body);
}

static void indef(struct buf *b, uint8_t tag, struct buf *body)
{
	buf_append_byte(b, tag);
	buf_append_byte(b, 0x80);
	buf_append(b, body->data, body->len);
	buf_append(b, "\0\0", 2);
	buf_free(body);
}

static void hexbytes(struct buf *b, const char *hex)
{
	for (; hex[0] && hex[1]; hex += 2) {
		unsigned v;

		sscanf(hex, "%2x", &v);
		buf_append_byte(b, (uint8_t)v);
	}
}

int cms_recipient_encrypt(const uint8_t *spki, size_t spki_len, const uint8_t *plain, size_t len, struct buf *out,
			  struct err *err)
{
	const unsigned char *p = spki;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)spki_len);
	EVP_PKEY_CTX *pctx = NULL;
	EVP_CIPHER_CTX *cctx = NULL;
	uint8_t cek[32], iv[16], ski[32], ek[1024];
	size_t ek_len = sizeof(ek);
	struct buf ct = BUF_INIT, sha = BUF_INIT, oaep = BUF_INIT, t1 = BUF_INIT, t2 = BUF_INIT, ktri = BUF_INIT,
		   eci = BUF_INIT, env = BUF_INIT, outer = BUF_INIT, x = BUF_INIT;
	int n, rc = -1;

	if (!pub || p != spki + spki_len || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA) {
		err_set(err, EINVAL, "the recipient's public key is not an RSA SubjectPublicKeyInfo");
		goto out;
	}
	RAND_bytes(cek, sizeof(cek));
	RAND_bytes(iv, sizeof(iv));
	/* KMS's key identifier derivation is unknown and decoders ignore it: the key's own hash */
	sha256(spki, spki_len, ski);
	pctx = EVP_PKEY_CTX_new(pub, NULL);
	if (!pctx || EVP_PKEY_encrypt_init(pctx) <= 0 || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_encrypt(pctx, ek, &ek_len, cek, sizeof(cek)) <= 0) {
		err_set(err, EINVAL, "RSA-OAEP encryption failed (is the key at least 2048 bits?)");
		goto out;
	}
	cctx = EVP_CIPHER_CTX_new();
	buf_reserve(&ct, len + 32);
	if (!cctx || EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, cek, iv) != 1 ||
	    EVP_EncryptUpdate(cctx, ct.data, &n, plain, (int)len) != 1) {
		err_set(err, EIO, "AES-256-CBC failed");
		goto out;
	}
	ct.len = (size_t)n;
	if (EVP_EncryptFinal_ex(cctx, ct.data + ct.len, &n) != 1) {
		err_set(err, EIO, "AES-256-CBC failed");
		goto out;
	}
	ct.len += (size_t)n;
	/* SEQUENCE { sha256, NULL } */
	hexbytes(&x, "0609608648016503040201");
	buf_append(&x, "\x05\x00", 2);
	tlv_buf(&sha, 0x30, &x);
	/* RSAES-OAEP-params { [0] hashFunc, [1] maskGenFunc mgf1(sha256) } */
	tlv(&t1, 0xa0, sha.data, sha.len);
	hexbytes(&x, "06092a864886f70d010108");
	buf_append(&x, sha.data, sha.len);
	tlv_buf(&t2, 0x30, &x);
	tlv_buf(&t1, 0xa1, &t2);
	tlv_buf(&oaep, 0x30, &t1);
	/* KeyTransRecipientInfo v2 { [0] ski, { id-RSAES-OAEP, params }, encryptedKey } */
	buf_append(&x, "\x02\x01\x02", 3);
	tlv(&x, 0x80, ski, sizeof(ski));
	hexbytes(&t1, "06092a864886f70d010107");
	buf_append(&t1, oaep.data, oaep.len);
	tlv_buf(&x, 0x30, &t1);
	tlv(&x, 0x04, ek, ek_len);
	tlv_buf(&ktri, 0x30, &x);
	/* EncryptedContentInfo { id-data, { aes256-CBC, iv }, [0] { OCTET STRING ct } } */
	hexbytes(&eci, "06092a864886f70d010701");
	hexbytes(&t1, "060960864801650304012a");
	tlv(&t1, 0x04, iv, sizeof(iv));
	tlv_buf(&eci, 0x30, &t1);
	tlv(&t2, 0x04, ct.data, ct.len);
	indef(&eci, 0xa0, &t2);
	/* EnvelopedData { v2, SET { ktri }, eci } */
	buf_append(&env, "\x02\x01\x02", 3);
	tlv_buf(&env, 0x31, &ktri);
	indef(&env, 0x30, &eci);
	/* ContentInfo { id-envelopedData, [0] EnvelopedData } */
	indef(&t1, 0x30, &env);
	hexbytes(&outer, "06092a864886f70d010703");
	indef(&outer, 0xa0, &t1);
	indef(out, 0x30, &outer);
	rc = 0;
out:
	OPENSSL_cleanse(cek, sizeof(cek));
	EVP_PKEY_CTX_free(pctx);
	EVP_CIPHER_CTX_free(cctx);
	EVP_PKEY_free(pub);
	buf_free(&ct);
	buf_free(&sha);
	buf_free(&oaep);
	buf_free(&t1);
	buf_free(&t2);
	buf_free(&ktri);
	buf_free(&eci);
	buf_free(&env);
	buf_free(&outer);
	buf_free(&x);
	return rc;
}

int cms_recipient_decrypt(EVP_PKEY *key, const uint8_t *ber, size_t len, struct buf *out, struct err *err)
{
	const unsigned char *p = ber;
	CMS_ContentInfo *cms = NULL;
	STACK_OF(CMS_RecipientInfo) *ris;
	BIO *cont = NULL;
	bool opened = false;
	char chunk[4096];
	size_t start = out->len;
	int n, rc = -1;

	if (!ber || !len || len > (1u << 20))
		return err_set(err, EINVAL, "CiphertextForRecipient is empty or too large");
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	if (!cms || OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_enveloped) {
		err_set(err, EINVAL, "CiphertextForRecipient is not CMS EnvelopedData");
		goto out;
	}
	/* No certificate names the recipient: every key-transport recipient is tried with the key.
	 * The recipient is opened directly rather than through CMS_decrypt, which does the same
	 * work with more set-up per call. */
	ris = CMS_get0_RecipientInfos(cms);
	for (int i = 0; i < sk_CMS_RecipientInfo_num(ris) && !opened; i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);

		if (CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_TRANS)
			continue;
		EVP_PKEY_up_ref(key); /* set0 takes a reference, and drops it when set to NULL */
		CMS_RecipientInfo_set0_pkey(ri, key);
		opened = CMS_RecipientInfo_decrypt(cms, ri) == 1;
		CMS_RecipientInfo_set0_pkey(ri, NULL);
	}
	if (!opened || !(cont = CMS_dataInit(cms, NULL))) {
		err_set(err, EACCES, "CiphertextForRecipient does not decrypt with the enclave's key");
		goto out;
	}
	while ((n = BIO_read(cont, chunk, sizeof(chunk))) > 0) {
		if (out->len - start + (size_t)n > len) {
			n = -1;
			break;
		}
		buf_append(out, chunk, (size_t)n);
	}
	/* a wrong key or altered bytes show as bad padding at the end */
	if (n < 0 || !BIO_get_cipher_status(cont)) {
		explicit_bzero(out->data + start, out->len - start);
		out->len = start;
		err_set(err, EACCES, "CiphertextForRecipient does not decrypt with the enclave's key");
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(chunk, sizeof(chunk));
	BIO_free_all(cont);
	CMS_ContentInfo_free(cms);
	ERR_clear_error();
	return rc;
}
