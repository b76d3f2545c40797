/*
 * AWS Signature Version 4 (spec/nitro.md §6.4): signing requests (odyn's KMS proxy) and
 * checking them (kms-local). Authorization headers come from clients and are parsed strictly.
 */
#ifndef ENCLAVER_CRYPTO_SIGV4_H
#define ENCLAVER_CRYPTO_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct sigv4_header {
	const char *name; /* any case */
	const char *value;
};

struct sigv4_request {
	const char *method;
	const char *path;  /* as sent, already URI-encoded; "" means "/" */
	const char *query; /* as sent without "?", or NULL */
	const struct sigv4_header *headers;
	size_t n_headers;
	const uint8_t *body;
	size_t body_len;
};

/* The scope and signature of an Authorization header:
 * "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, SignedHeaders=a;b, Signature=hex" */
struct sigv4_auth {
	char access_key[129];
	char date[9]; /* YYYYMMDD */
	char region[64];
	char service[64];
	char signed_headers[1024]; /* ";"-separated, lower case, sorted */
	char signature[65];
};

int sigv4_parse_auth(const char *value, struct sigv4_auth *out, struct err *err);

/* hex signature over the headers named in signed_headers (";"-separated, lower case, sorted),
 * taken from req->headers. amz_date: "YYYYMMDDTHHMMSSZ". */
int sigv4_signature(const struct sigv4_request *req, const char *signed_headers, const char *amz_date,
		    const char *region, const char *service, const char *secret_key, char out[65], struct err *err);

/* Signs with every header of req (which must hold host and x-amz-date, and
 * x-amz-security-token when a session token is used). *authorization: caller frees. */
int sigv4_sign(const struct sigv4_request *req, const char *amz_date, const char *region, const char *service,
	       const char *access_key, const char *secret_key, char **authorization, struct err *err);

/* "YYYYMMDDTHHMMSSZ" for t. */
void sigv4_amz_date(long long t, char out[17]);

#endif
