/*
 * Blocking HTTP/1.1 requests from inside the enclave through odyn's own egress proxy (so the
 * allow list applies): plain HTTP in absolute form (IMDS), and HTTPS through CONNECT with TLS
 * verified against the CA bundle built into odyn, plus the development root in a local
 * enclave. Used by the KMS proxy's worker threads; answers come from the network and are
 * bounded. Nothing here logs (the log sink belongs to the event loop's thread).
 */
#ifndef ENCLAVER_ENCLAVE_AWS_CLIENT_H
#define ENCLAVER_ENCLAVE_AWS_CLIENT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

#define AWS_MAX_BODY (1u << 20)

struct aws_response {
	int status;
	struct buf body;
	long connect_us; /* of the whole: until the request could be sent (proxy, tunnel, TLS) */
};

/* The TLS client context: the built-in bundle, and extra_pem (a file) when given. */
SSL_CTX *aws_tls_ctx(const char *extra_pem, struct err *err);

/* method URL through the proxy at 127.0.0.1:proxy_port. url: "http://host[:port]/path" or
 * "https://host[:port]/path"; headers: "Name: value" lines; the Host header is added. */
int aws_request(uint16_t proxy_port, SSL_CTX *tls, const char *method, const char *url, const char *const *headers,
		const void *body, size_t len, int timeout_ms, struct aws_response *resp, struct err *err);
void aws_response_free(struct aws_response *r);

#endif
