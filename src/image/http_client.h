/*
 * A small blocking HTTP client over libcurl for the CLI: the Docker Engine API (Unix socket or
 * TCP) and OCI registries. Response bodies go to a bounded buffer, to a file descriptor
 * (optionally hashed on the way), or line by line to a callback for JSON message streams.
 * Everything a server sends is untrusted; buffered bodies are capped.
 */
#ifndef ENCLAVER_IMAGE_HTTP_CLIENT_H
#define ENCLAVER_IMAGE_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "crypto/sha.h"

struct hc_req {
	const char *method; /* NULL: GET */
	const char *url;
	const char *unix_socket;     /* connect here instead of the URL's host */
	const char *const *headers;  /* "Name: value", NULL-terminated, or NULL */
	const void *body;            /* request body bytes, or */
	bool body_from_fd;           /* or body_fd streamed as the body */
	int body_fd;
	uint64_t body_len;
	bool out_to_fd;              /* a 2xx body is written to out_fd instead of buffered */
	int out_fd;
	struct sha_ctx *out_hash;    /* and hashed here as it is written */
	/* called per line of a 2xx body (the body is then not buffered); < 0 stops */
	int (*on_line)(void *ctx, const char *line, size_t len, struct err *err);
	/* called per chunk of a 2xx body (the body is then not buffered); < 0 stops */
	int (*on_data)(void *ctx, const void *data, size_t len, struct err *err);
	void *ctx;
	void (*on_progress)(void *ctx, uint64_t done, uint64_t total);
	size_t max_body;             /* cap on a buffered body; 0: 16 MiB */
	long timeout_s;              /* whole request; 0: none */
	long connect_timeout_s;      /* 0: 10 s */
	const char *tls_ca, *tls_cert, *tls_key; /* PEM files, for https */
	bool follow_redirects;
};

struct hc_resp {
	long status;
	struct buf body;         /* buffered body (also error bodies when out_fd or on_line is set) */
	char *content_type;
	char *www_authenticate;
	char *docker_content_digest;
	uint64_t received;
};

/* Performs the request. Transport failures are errors; any HTTP status is a success here and
 * is in resp->status. */
int hc_do(const struct hc_req *r, struct hc_resp *resp, struct err *err);
void hc_resp_free(struct hc_resp *resp);
/* Percent-encodes s for a URL query or path segment. Caller frees. */
char *hc_escape(const char *s);

#endif
