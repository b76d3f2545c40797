/* Attestation documents: strict parsing, verification over OpenSSL, and building. */
#include "nitro/attestation.h"

#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "codec/cbor.h"
#include "crypto/cose.h"

#define MAX_FIELD 1024 /* user_data, nonce, public_key: the real NSM takes 1024 each */
#define MAX_CERT 4096

static const char AWS_ROOT_G1[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTEL\n"
	"MAkGA1UEBhMCVVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYD\n"
	"VQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4\n"
	"MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQL\n"
	"DANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2MBAGByqGSM49AgEG\n"
	"BSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb\n"
	"48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZE\n"
	"h8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkF\n"
	"R+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC\n"
	"MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPW\n"
	"rfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6N\n"
	"IwLz3/Y=\n"
	"-----END CERTIFICATE-----\n";

X509 *att_aws_root(void)
{
	BIO *b = BIO_new_mem_buf(AWS_ROOT_G1, (int)sizeof(AWS_ROOT_G1) - 1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	return x;
}

X509 *att_load_root(const char *path, struct err *err)
{
	FILE *f = fopen(path, "re");
	X509 *x;

	if (!f) {
		err_sys(err, "%s", path);
		return NULL;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x)
		err_set(err, EINVAL, "%s: not a PEM certificate", path);
	return x;
}

static int opt_bytes(const struct cbor_item *it, const char *name, size_t min, size_t max, struct att_bytes *out,
		     struct err *err)
{
	*out = (struct att_bytes){ NULL, 0 };
	if (!it || cbor_is_null(it))
		return 0;
	if (it->type != CBOR_BYTES || it->len < min || it->len > max)
		return err_set(err, EINVAL, "attestation document: %s is not a byte string of %zu to %zu bytes", name, min,
			       max);
	*out = (struct att_bytes){ it->data, it->len };
	return 0;
}

int att_parse(const uint8_t *cose, size_t len, struct att_doc *doc, struct err *err)
{
	static const char *const known[] = { "module_id", "digest",    "timestamp",  "pcrs",  "certificate",
					     "cabundle",  "public_key", "user_data", "nonce" };
	struct cbor_item *outer = NULL, *pl = NULL;
	const struct cbor_item *arr, *it, *pcrs, *bundle;
	int rc = -1;

	memset(doc, 0, sizeof(*doc));
	doc->cose = cose;
	doc->cose_len = len;
	if (cbor_decode(cose, len, 8, &outer, err) < 0)
		return err_wrap(err, "attestation document: not CBOR");
	arr = outer->type == CBOR_TAG && outer->u == 18 ? &outer->items[0] : outer;
	if (arr->type != CBOR_ARRAY || arr->count != 4 || arr->items[0].type != CBOR_BYTES ||
	    arr->items[1].type != CBOR_MAP || arr->items[2].type != CBOR_BYTES || arr->items[3].type != CBOR_BYTES) {
		err_set(err, EINVAL, "attestation document: not a COSE_Sign1");
		goto out;
	}
	doc->payload = (struct att_bytes){ arr->items[2].data, arr->items[2].len };
	if (cbor_decode(doc->payload.data, doc->payload.len, 6, &pl, err) < 0) {
		err_wrap(err, "attestation document: payload");
		goto out;
	}
	if (pl->type != CBOR_MAP) {
		err_set(err, EINVAL, "attestation document: payload is not a map");
		goto out;
	}
	for (size_t i = 0; i < pl->count; i++) {
		const struct cbor_item *k = &pl->items[2 * i];
		bool ok = false;

		for (size_t j = 0; j < sizeof(known) / sizeof(known[0]) && !ok; j++)
			ok = cbor_is_text(k, known[j]);
		if (!ok) {
			err_set(err, EINVAL, "attestation document: unexpected payload key");
			goto out;
		}
	}
	it = cbor_map_get(pl, "module_id");
	if (!it || it->type != CBOR_TEXT || !it->len || it->len >= sizeof(doc->module_id)) {
		err_set(err, EINVAL, "attestation document: module_id missing or not text");
		goto out;
	}
	memcpy(doc->module_id, it->data, it->len);
	if (memchr(doc->module_id, 0, it->len)) {
		err_set(err, EINVAL, "attestation document: module_id holds a NUL");
		goto out;
	}
	if (!cbor_is_text(cbor_map_get(pl, "digest"), "SHA384")) {
		err_set(err, EINVAL, "attestation document: digest is not SHA384");
		goto out;
	}
	it = cbor_map_get(pl, "timestamp");
	if (!it || it->type != CBOR_UINT || !it->u) {
		err_set(err, EINVAL, "attestation document: timestamp missing or zero");
		goto out;
	}
	doc->timestamp = it->u;
	pcrs = cbor_map_get(pl, "pcrs");
	if (!pcrs || pcrs->type != CBOR_MAP || !pcrs->count || pcrs->count > ATT_MAX_PCRS) {
		err_set(err, EINVAL, "attestation document: pcrs must map 1 to 32 indexes");
		goto out;
	}
	for (size_t i = 0; i < pcrs->count; i++) {
		const struct cbor_item *k = &pcrs->items[2 * i], *v = &pcrs->items[2 * i + 1];

		if (k->type != CBOR_UINT || k->u >= ATT_MAX_PCRS || v->type != CBOR_BYTES ||
		    (v->len != 32 && v->len != 48 && v->len != 64)) {
			err_set(err, EINVAL, "attestation document: pcrs entry %zu is not index < 32 -> 32, 48 or 64 bytes", i);
			goto out;
		}
		doc->pcrs[k->u] = (struct att_bytes){ v->data, v->len };
	}
	doc->n_pcrs = (unsigned)pcrs->count;
	if (opt_bytes(cbor_map_get(pl, "certificate"), "certificate", 1, MAX_CERT, &doc->certificate, err) < 0)
		goto out;
	if (!doc->certificate.data) {
		err_set(err, EINVAL, "attestation document: no certificate");
		goto out;
	}
	bundle = cbor_map_get(pl, "cabundle");
	if (!bundle || bundle->type != CBOR_ARRAY || !bundle->count || bundle->count > ATT_MAX_CABUNDLE) {
		err_set(err, EINVAL, "attestation document: cabundle must hold 1 to %d certificates", ATT_MAX_CABUNDLE);
		goto out;
	}
	for (size_t i = 0; i < bundle->count; i++) {
		if (opt_bytes(&bundle->items[i], "cabundle entry", 1, MAX_CERT, &doc->cabundle[i], err) < 0)
			goto out;
		if (!doc->cabundle[i].data) {
			err_set(err, EINVAL, "attestation document: null cabundle entry");
			goto out;
		}
	}
	doc->n_cabundle = (unsigned)bundle->count;
	if (opt_bytes(cbor_map_get(pl, "public_key"), "public_key", 1, MAX_FIELD, &doc->public_key, err) < 0 ||
	    opt_bytes(cbor_map_get(pl, "user_data"), "user_data", 0, MAX_FIELD, &doc->user_data, err) < 0 ||
	    opt_bytes(cbor_map_get(pl, "nonce"), "nonce", 0, MAX_FIELD, &doc->nonce, err) < 0)
		goto out;
	rc = 0;
out:
	cbor_free(pl);
	cbor_free(outer);
	return rc;
}

bool att_is_debug(const struct att_doc *doc)
{
	for (int i = 0; i < 3; i++) {
		if (!doc->pcrs[i].data)
			return false;
		for (size_t k = 0; k < doc->pcrs[i].len; k++)
			if (doc->pcrs[i].data[k])
				return false;
	}
	return true;
}

static X509 *der_cert(const struct att_bytes *b)
{
	const unsigned char *p = b->data;
	X509 *x = d2i_X509(NULL, &p, (long)b->len);

	if (x && p != b->data + b->len) { /* trailing bytes */
		X509_free(x);
		return NULL;
	}
	return x;
}

/* The chain's common validity: the latest notBefore and the earliest notAfter. */
static int chain_window(STACK_OF(X509) *chain, time_t *from, time_t *until, struct err *err)
{
	*from = 0;
	*until = (time_t)INT64_MAX;
	for (int i = 0; i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);
		struct tm nb, na;
		time_t b, a;

		if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &nb) != 1 || ASN1_TIME_to_tm(X509_get0_notAfter(x), &na) != 1)
			return err_set(err, EINVAL, "a certificate's validity cannot be read");
		b = timegm(&nb);
		a = timegm(&na);
		/* OpenSSL takes a certificate as valid from notBefore up to, not at, notAfter */
		if (b > *from)
			*from = b;
		if (a - 1 < *until)
			*until = a - 1;
	}
	return 0;
}

int att_verify(const struct att_doc *doc, X509 *root, time_t at, struct err *err)
{
	return att_verify_window(doc, root, at, NULL, NULL, err);
}

int att_verify_window(const struct att_doc *doc, X509 *root, time_t at, time_t *from, time_t *until,
		      struct err *err)
{
	X509 *leaf = der_cert(&doc->certificate);
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	EVP_PKEY *pub = NULL;
	const uint8_t *payload;
	size_t payload_len;
	int rc = -1;

	if (!untrusted || !store || !ctx)
		abort();
	if (!leaf) {
		err_set(err, EINVAL, "the leaf certificate is not DER X.509");
		goto out;
	}
	/* cabundle[0] is the issuer's copy of the root: the pinned root is the only anchor */
	for (unsigned i = 1; i < doc->n_cabundle; i++) {
		X509 *c = der_cert(&doc->cabundle[i]);

		if (!c) {
			err_set(err, EINVAL, "cabundle[%u] is not DER X.509", i);
			goto out;
		}
		sk_X509_push(untrusted, c);
	}
	if (X509_STORE_add_cert(store, root) != 1) {
		err_set(err, EINVAL, "the root certificate cannot be used");
		goto out;
	}
	X509_STORE_CTX_init(ctx, store, leaf, untrusted);
	X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), at);
	/* Not X509_V_FLAG_X509_STRICT: AWS's leaf certificates have no authority key identifier.
	 * The default checks hold what matters: every issuer a CA with keyCertSign where key usage
	 * is given, path lengths, validity at `at`, signatures, and no anchor but root. */
	if (X509_verify_cert(ctx) != 1) {
		int e = X509_STORE_CTX_get_error(ctx);

		err_set(err, EACCES, "certificate chain: %s (at depth %d)", X509_verify_cert_error_string(e),
			X509_STORE_CTX_get_error_depth(ctx));
		goto out;
	}
	/* the leaf signs documents; it must not be a CA */
	if (X509_check_ca(leaf) != 0) {
		err_set(err, EACCES, "the leaf certificate is a CA");
		goto out;
	}
	if ((X509_get_extension_flags(leaf) & EXFLAG_KUSAGE) && !(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE)) {
		err_set(err, EACCES, "the leaf certificate's key usage lacks digitalSignature");
		goto out;
	}
	pub = X509_get_pubkey(leaf);
	if (!pub || cose_alg_for_key(pub) != COSE_ALG_ES384) {
		err_set(err, EACCES, "the leaf key is not ECDSA P-384");
		goto out;
	}
	if (cose_verify1(pub, doc->cose, doc->cose_len, &payload, &payload_len, err) < 0) {
		err_wrap(err, "signature");
		goto out;
	}
	if (from && chain_window(X509_STORE_CTX_get0_chain(ctx), from, until, err) < 0)
		goto out;
	rc = 0;
out:
	EVP_PKEY_free(pub);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(untrusted, X509_free);
	X509_free(leaf);
	return rc;
}

int att_build(const struct att_fields *f, EVP_PKEY *leaf_key, struct buf *out, struct err *err)
{
	struct buf p = BUF_INIT;
	unsigned n = 0;
	int rc;

	cbor_put_map(&p, 9);
	cbor_put_text(&p, "module_id");
	cbor_put_text(&p, f->module_id);
	cbor_put_text(&p, "digest");
	cbor_put_text(&p, "SHA384");
	cbor_put_text(&p, "timestamp");
	cbor_put_uint(&p, f->timestamp);
	cbor_put_text(&p, "pcrs");
	for (unsigned i = 0; i < f->n_pcrs; i++)
		n += f->locked[i];
	cbor_put_map(&p, n);
	for (unsigned i = 0; i < f->n_pcrs; i++)
		if (f->locked[i]) {
			cbor_put_uint(&p, i);
			cbor_put_bytes(&p, f->pcrs[i], 48);
		}
	cbor_put_text(&p, "certificate");
	cbor_put_bytes(&p, f->certificate, f->certificate_len);
	cbor_put_text(&p, "cabundle");
	cbor_put_array(&p, f->n_cabundle);
	for (unsigned i = 0; i < f->n_cabundle; i++)
		cbor_put_bytes(&p, f->cabundle[i].data, f->cabundle[i].len);
	{
		const struct att_bytes *opt[] = { &f->public_key, &f->user_data, &f->nonce };
		static const char *const names[] = { "public_key", "user_data", "nonce" };

		for (int i = 0; i < 3; i++) {
			cbor_put_text(&p, names[i]);
			if (opt[i]->data)
				cbor_put_bytes(&p, opt[i]->data, opt[i]->len);
			else
				cbor_put_null(&p);
		}
	}
	rc = cose_sign1(leaf_key, p.data, p.len, out, err);
	buf_free(&p);
	return rc;
}
