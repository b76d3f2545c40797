/*
 * Blocking HTTP/1.1 requests from inside the enclave straight through the host's egress tunnel
 * (vsock 17002), after the egress policy allowed the host: plain HTTP (IMDS), and HTTPS with
 * TLS verified against the CA bundle built into odyn, plus the development root in a local
 * enclave. Going to the tunnel itself, not through odyn's own egress proxy, saves the KMS
 * proxy a loopback hop each way; the policy is the same one. Used by the KMS proxy's worker threads; answers come from the network and are
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
#include "manifest/policy.h"

#define AWS_MAX_BODY (1u << 20)

struct aws_response {
	int status;
	struct buf body;
	long connect_us; /* of the whole: until the request could be sent (proxy, tunnel, TLS; ~0 reused) */
};

/* The TLS client context: the built-in bundle, and extra_pem (a file) when given. */
SSL_CTX *aws_tls_ctx(const char *extra_pem, struct err *err);

/* HTTPS connections kept open between requests (keep-alive), at most AWS_POOL_MAX, each for at
 * most idle_ms of quiet; shared by threads. */
#define AWS_POOL_MAX 16
struct aws_pool;
struct aws_pool *aws_pool_new(int idle_ms);
void aws_pool_free(struct aws_pool *p);
/* Connections made for the pool's requests so far (kept ones count once). */
unsigned long aws_pool_opened(struct aws_pool *p);

/* method URL through the egress tunnel, when policy allows its host. url: "http://host[:port]/path" or
 * "https://host[:port]/path"; headers: "Name: value" lines; the Host header is added. With a
 * pool, an HTTPS request reuses a kept connection when there is one (and, when that one turns
 * out closed before any answer came, goes once more on a new one) and keeps it after. */
int aws_request(const struct policy *policy, SSL_CTX *tls, struct aws_pool *pool, const char *method, const char *url,
		const char *const *headers, const void *body, size_t len, int timeout_ms, struct aws_response *resp,
		struct err *err);
void aws_response_free(struct aws_response *r);

#endif
