/* The attestation API: JSON in, the NSM's COSE document out. */
#include "enclave/api.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/hex.h"
#include "base/log.h"
#include "net/http_server.h"
#include "nitro/nsm.h"

#define MAX_BODY (64 * 1024)

struct api {
	struct http_server *srv;
	struct nsm *nsm;
};

static void text(struct http_conn *c, int status, const char *msg)
{
	http_respond(c, status, "text/plain; charset=utf-8", msg, strlen(msg), NULL);
}

static int b64_field(json_t *body, const char *name, struct buf *out, char *why, size_t why_size)
{
	json_t *v = json_object_get(body, name);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || b64_decode(json_string_value(v), json_string_length(v), out) < 0) {
		snprintf(why, why_size, "%s: not base64\n", name);
		return -1;
	}
	return 1;
}

/* As upstream v0.6.1: a "PUBLIC KEY" PEM, of which the NSM gets the subjectPublicKey bits. */
static int public_key_field(json_t *body, struct buf *out, char *why, size_t why_size)
{
	json_t *v = json_object_get(body, "public_key");
	BIO *b;
	X509_PUBKEY *spki = NULL;
	const unsigned char *bits;
	int len, rc = -1;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || !strstr(json_string_value(v), "-----BEGIN PUBLIC KEY-----")) {
		snprintf(why, why_size, "public_key: not a PEM \"PUBLIC KEY\"\n");
		return -1;
	}
	b = BIO_new_mem_buf(json_string_value(v), (int)json_string_length(v));
	if (b)
		spki = PEM_read_bio_X509_PUBKEY(b, NULL, NULL, NULL);
	if (!spki || !X509_PUBKEY_get0_param(NULL, &bits, &len, NULL, spki)) {
		snprintf(why, why_size, "public_key: not a valid PEM public key\n");
	} else {
		buf_append(out, bits, (size_t)len);
		rc = 1;
	}
	X509_PUBKEY_free(spki);
	BIO_free(b);
	return rc;
}

static void handle(void *ctx, struct http_conn *c, const struct http_request *req, const uint8_t *body,
		   size_t body_len)
{
	struct api *a = ctx;
	size_t plen = strcspn(req->target, "?");
	struct buf nonce = BUF_INIT, user = BUF_INIT, pk = BUF_INIT, doc = BUF_INIT;
	struct nsm_bytes nb = { 0 }, ub = { 0 }, pb = { 0 };
	struct err err = { 0 };
	char why[256];
	json_error_t je;
	json_t *j;
	int has;

	if (plen != strlen("/v1/attestation") || strncmp(req->target, "/v1/attestation", plen)) {
		http_respond(c, 404, NULL, "", 0, NULL);
		return;
	}
	if (strcmp(req->method, "POST")) {
		http_respond(c, 405, NULL, "", 0, NULL);
		return;
	}
	j = json_loadb((const char *)body, body_len, 0, &je);
	if (!j || !json_is_object(j)) {
		snprintf(why, sizeof(why), "invalid JSON body: %s\n", j ? "not an object" : je.text);
		text(c, 400, why);
		json_decref(j);
		return;
	}
	if ((has = b64_field(j, "nonce", &nonce, why, sizeof(why))) < 0)
		goto bad;
	if (has)
		nb = (struct nsm_bytes){ nonce.data ? nonce.data : (const uint8_t *)"", nonce.len };
	if ((has = b64_field(j, "user_data", &user, why, sizeof(why))) < 0)
		goto bad;
	if (has)
		ub = (struct nsm_bytes){ user.data ? user.data : (const uint8_t *)"", user.len };
	if ((has = public_key_field(j, &pk, why, sizeof(why))) < 0)
		goto bad;
	if (has)
		pb = (struct nsm_bytes){ pk.data, pk.len };
	/* the NSM connection is opened once and kept; a broken one is opened again */
	for (int attempt = 0; attempt < 2; attempt++) {
		err_clear(&err);
		if (!a->nsm && nsm_open(&a->nsm, &err) < 0)
			break;
		if (nsm_attestation(a->nsm, &ub, &nb, &pb, &doc, &err) == 0 || err.code == EPROTO)
			break;
		nsm_close(a->nsm);
		a->nsm = NULL;
	}
	if (err.msg[0]) {
		log_warn("attestation: %s", err.msg);
		snprintf(why, sizeof(why), "%s\n", err.msg);
		/* the caller's inputs the NSM refused, or the NSM itself failing */
		text(c, err.code == EPROTO && (strstr(err.msg, "InputTooLarge") || strstr(err.msg, "InvalidArgument")) ? 400 : 500,
		     why);
	} else {
		http_respond(c, 200, "application/cbor", doc.data, doc.len, NULL);
	}
	goto out;
bad:
	text(c, 400, why);
out:
	json_decref(j);
	buf_free(&nonce);
	buf_free(&user);
	buf_free(&pk);
	buf_free(&doc);
}

int api_start(struct loop *l, uint16_t port, struct api **out, struct err *err)
{
	struct api *a = calloc(1, sizeof(*a));

	if (!a)
		abort();
	if (http_server_start(l, port, MAX_BODY, handle, a, &a->srv, err) < 0) {
		free(a);
		return err_wrap(err, "API");
	}
	*out = a;
	return 0;
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	http_server_stop(a->srv);
	nsm_close(a->nsm);
	free(a);
}
