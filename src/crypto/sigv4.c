/* SigV4 over OpenSSL's HMAC and SHA-256. */
#include "crypto/sigv4.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/buf.h"
#include "base/hex.h"
#include "crypto/sha.h"

void sigv4_amz_date(long long t, char out[17])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static void hmac(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 32;

	HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n);
}

/* A header's value as SigV4 wants it: outer spaces trimmed, inner runs of spaces as one. */
static void put_trimmed(struct buf *b, const char *v)
{
	bool space = false;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v; v++) {
		if (*v == ' ' || *v == '\t') {
			space = true;
			continue;
		}
		if (space)
			buf_append_byte(b, ' ');
		space = false;
		buf_append_byte(b, (uint8_t)*v);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Query parameters sorted by name, then value. */
static void put_query(struct buf *b, const char *query)
{
	char *copy, *parts[256], *save = NULL;
	size_t n = 0;

	if (!query || !*query)
		return;
	copy = strdup(query);
	for (char *p = strtok_r(copy, "&", &save); p && n < 256; p = strtok_r(NULL, "&", &save))
		parts[n++] = p;
	qsort(parts, n, sizeof(parts[0]), cmp_str);
	for (size_t i = 0; i < n; i++) {
		buf_append_str(b, i ? "&" : "");
		buf_append_str(b, parts[i]);
		if (!strchr(parts[i], '='))
			buf_append_byte(b, '=');
	}
	free(copy);
}

int sigv4_signature(const struct sigv4_request *req, const char *signed_headers, const char *amz_date,
		    const char *region, const char *service, const char *secret_key, char out[65], struct err *err)
{
	struct buf creq = BUF_INIT, sts = BUF_INIT, key = BUF_INIT;
	uint8_t h[32], k[32];
	char hex[65], date[9];
	const char *p = signed_headers;
	int rc = -1;

	if (strlen(amz_date) != 16)
		return err_set(err, EINVAL, "x-amz-date \"%s\" is not YYYYMMDDTHHMMSSZ", amz_date);
	memcpy(date, amz_date, 8);
	date[8] = 0;
	buf_printf(&creq, "%s\n%s\n", req->method, req->path && *req->path ? req->path : "/");
	put_query(&creq, req->query);
	buf_append_byte(&creq, '\n');
	while (*p) {
		size_t len = strcspn(p, ";");
		const char *value = NULL;
		size_t found = 0;

		/* several headers of one name are joined with commas */
		for (size_t i = 0; i < req->n_headers; i++)
			if (strlen(req->headers[i].name) == len && !strncasecmp(req->headers[i].name, p, len)) {
				if (!found++) {
					buf_append(&creq, p, len);
					buf_append_byte(&creq, ':');
				} else {
					buf_append_byte(&creq, ',');
				}
				value = req->headers[i].value;
				put_trimmed(&creq, value);
			}
		if (!found) {
			err_set(err, EINVAL, "signed header %.*s is not in the request", (int)len, p);
			goto out;
		}
		buf_append_byte(&creq, '\n');
		p += len + (p[len] == ';');
	}
	buf_printf(&creq, "\n%s\n", signed_headers);
	sha256(req->body ? req->body : (const uint8_t *)"", req->body_len, h);
	hex_encode(h, 32, hex);
	buf_append_str(&creq, hex);
	sha256(creq.data, creq.len, h);
	hex_encode(h, 32, hex);
	buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, date, region, service, hex);
	buf_printf(&key, "AWS4%s", secret_key);
	hmac(key.data, key.len, date, strlen(date), k);
	hmac(k, 32, region, strlen(region), k);
	hmac(k, 32, service, strlen(service), k);
	hmac(k, 32, "aws4_request", 12, k);
	hmac(k, 32, sts.data, sts.len, h);
	hex_encode(h, 32, out);
	rc = 0;
out:
	explicit_bzero(k, sizeof(k));
	buf_free(&creq);
	buf_free(&sts);
	buf_free_secret(&key);
	return rc;
}

static int cmp_lower(const void *a, const void *b)
{
	return strcasecmp(*(char *const *)a, *(char *const *)b);
}

int sigv4_sign(const struct sigv4_request *req, const char *amz_date, const char *region, const char *service,
	       const char *access_key, const char *secret_key, char **authorization, struct err *err)
{
	const char **names = calloc(req->n_headers + 1, sizeof(*names));
	struct buf sh = BUF_INIT;
	char sig[65];
	int rc;

	if (!names)
		abort();
	for (size_t i = 0; i < req->n_headers; i++)
		names[i] = req->headers[i].name;
	qsort(names, req->n_headers, sizeof(*names), cmp_lower);
	for (size_t i = 0; i < req->n_headers; i++) {
		if (i && !strcasecmp(names[i], names[i - 1]))
			continue;
		if (sh.len)
			buf_append_byte(&sh, ';');
		for (const char *c = names[i]; *c; c++)
			buf_append_byte(&sh, (uint8_t)tolower((unsigned char)*c));
	}
	free(names);
	rc = sigv4_signature(req, buf_cstr(&sh), amz_date, region, service, secret_key, sig, err);
	if (rc == 0 && asprintf(authorization, "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
				access_key, amz_date, region, service, buf_cstr(&sh), sig) < 0)
		abort();
	buf_free(&sh);
	return rc;
}

/* Copies "Key=value" up to the next comma or the end. */
static int take(const char *v, const char *key, char *out, size_t size)
{
	const char *p = strstr(v, key);
	size_t n;

	if (!p)
		return -1;
	p += strlen(key);
	n = strcspn(p, ", ");
	if (!n || n >= size)
		return -1;
	memcpy(out, p, n);
	out[n] = 0;
	return 0;
}

int sigv4_parse_auth(const char *value, struct sigv4_auth *out, struct err *err)
{
	char cred[512], *parts[5], *save = NULL;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	if (strncmp(value, "AWS4-HMAC-SHA256 ", 17))
		return err_set(err, EINVAL, "Authorization is not AWS4-HMAC-SHA256");
	if (take(value, "Credential=", cred, sizeof(cred)) < 0 ||
	    take(value, "SignedHeaders=", out->signed_headers, sizeof(out->signed_headers)) < 0 ||
	    take(value, "Signature=", out->signature, sizeof(out->signature)) < 0)
		return err_set(err, EINVAL, "Authorization lacks Credential, SignedHeaders or Signature");
	for (char *p = strtok_r(cred, "/", &save); p && n < 5; p = strtok_r(NULL, "/", &save))
		parts[n++] = p;
	if (n != 5 || strtok_r(NULL, "/", &save) || strcmp(parts[4], "aws4_request") || strlen(parts[1]) != 8 ||
	    strlen(parts[0]) >= sizeof(out->access_key) || strlen(parts[2]) >= sizeof(out->region) ||
	    strlen(parts[3]) >= sizeof(out->service))
		return err_set(err, EINVAL, "Authorization's Credential is not AKID/date/region/service/aws4_request");
	snprintf(out->access_key, sizeof(out->access_key), "%s", parts[0]);
	snprintf(out->date, sizeof(out->date), "%s", parts[1]);
	snprintf(out->region, sizeof(out->region), "%s", parts[2]);
	snprintf(out->service, sizeof(out->service), "%s", parts[3]);
	if (strlen(out->signature) != 64 || strspn(out->signature, "0123456789abcdef") != 64)
		return err_set(err, EINVAL, "Authorization's Signature is not 64 hex digits");
	return 0;
}
