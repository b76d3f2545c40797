/* Blocking HTTP client over the host's egress tunnel, with OpenSSL for HTTPS. */
#include "enclave/aws_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec/http.h"
#include "enclave/egress.h"
#include "net/tunnel.h"
#include "net/vsock.h"

extern const char enclaver_ca_bundle[];
extern const size_t enclaver_ca_bundle_len;

static int add_pems(X509_STORE *st, BIO *b)
{
	X509 *x;
	int n = 0;

	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(st, x) == 1)
			n++;
		X509_free(x);
	}
	ERR_clear_error();
	return n;
}

SSL_CTX *aws_tls_ctx(const char *extra_pem, struct err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	X509_STORE *st;
	BIO *b;

	if (!ctx) {
		err_set(err, ENOMEM, "TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	st = SSL_CTX_get_cert_store(ctx);
	b = BIO_new_mem_buf(enclaver_ca_bundle, (int)enclaver_ca_bundle_len);
	add_pems(st, b);
	BIO_free(b);
	if (extra_pem) {
		b = BIO_new_file(extra_pem, "r");
		if (!b || add_pems(st, b) == 0) {
			BIO_free(b);
			SSL_CTX_free(ctx);
			err_set(err, EINVAL, "%s: no certificate", extra_pem);
			return NULL;
		}
		BIO_free(b);
	}
	return ctx;
}

struct conn {
	int fd;
	SSL *ssl;
	int timeout_ms;
};

static int wait_fd(struct conn *c, short ev)
{
	struct pollfd p = { c->fd, ev, 0 };
	int r = poll(&p, 1, c->timeout_ms);

	return r > 0 ? 0 : -1;
}

static int send_all(struct conn *c, const void *data, size_t len, struct err *err)
{
	const uint8_t *p = data;

	while (len) {
		int n;

		if (c->ssl) {
			n = SSL_write(c->ssl, p, (int)(len > 1 << 20 ? 1 << 20 : len));
			if (n <= 0)
				return err_set(err, EIO, "TLS write failed");
		} else {
			n = (int)send(c->fd, p, len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return err_sys(err, "send");
			}
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static ssize_t recv_some(struct conn *c, void *buf, size_t len)
{
	if (c->ssl) {
		int n = SSL_read(c->ssl, buf, (int)len);

		return n > 0 ? n : (SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
	}
	if (wait_fd(c, POLLIN) < 0)
		return -1;
	return recv(c->fd, buf, len, 0);
}

/* Reads a response head into head (up to CRLFCRLF); extra bytes after it go to rest. */
static int read_head(struct conn *c, struct buf *head, struct buf *rest, struct err *err)
{
	char chunk[4096];

	for (;;) {
		const char *end = head->len ? memmem(head->data, head->len, "\r\n\r\n", 4) : NULL;
		ssize_t n;

		if (end) {
			size_t hl = (size_t)(end - (const char *)head->data) + 4;

			buf_append(rest, head->data + hl, head->len - hl);
			head->len = hl;
			return 0;
		}
		if (head->len > 65536)
			return err_set(err, EPROTO, "response head too large");
		n = recv_some(c, chunk, sizeof(chunk));
		if (n <= 0)
			return err_set(err, EIO, "connection closed before the response");
		buf_append(head, chunk, (size_t)n);
	}
}

static const char *head_header(const struct buf *head, const char *name)
{
	size_t n = strlen(name);
	const char *p = (const char *)head->data, *end = p + head->len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!nl)
			break;
		p = nl + 1;
		if ((size_t)(end - p) > n && !strncasecmp(p, name, n) && p[n] == ':')
			return p + n + 1;
	}
	return NULL;
}

static int read_body(struct conn *c, const struct buf *head, struct buf *rest, struct buf *body, struct err *err)
{
	const char *cl = head_header(head, "content-length"), *te = head_header(head, "transfer-encoding");
	char chunk[16384];

	if (te && !strncasecmp(te + strspn(te, " "), "chunked", 7)) {
		/* chunk by chunk: size line, data, CRLF; ends at a zero size */
		struct buf in = *rest;
		size_t pos = 0;

		*rest = (struct buf)BUF_INIT;
		for (;;) {
			const char *nl = in.len > pos ? memchr(in.data + pos, '\n', in.len - pos) : NULL;
			unsigned long size;
			ssize_t n;

			if (nl) {
				size = strtoul((const char *)in.data + pos, NULL, 16);
				if (size > AWS_MAX_BODY || body->len + size > AWS_MAX_BODY) {
					buf_free(&in);
					return err_set(err, EFBIG, "response larger than %u bytes", AWS_MAX_BODY);
				}
				if (in.len - (size_t)(nl + 1 - (const char *)in.data) >= size + 2) {
					pos = (size_t)(nl + 1 - (const char *)in.data);
					if (!size) {
						buf_free(&in);
						return 0;
					}
					buf_append(body, in.data + pos, size);
					pos += size + 2;
					continue;
				}
			}
			n = recv_some(c, chunk, sizeof(chunk));
			if (n <= 0) {
				buf_free(&in);
				return err_set(err, EIO, "connection closed in a chunked body");
			}
			buf_append(&in, chunk, (size_t)n);
		}
	}
	if (cl) {
		unsigned long want = strtoul(cl, NULL, 10);

		if (want > AWS_MAX_BODY)
			return err_set(err, EFBIG, "response larger than %u bytes", AWS_MAX_BODY);
		buf_append(body, rest->data, rest->len < want ? rest->len : want);
		while (body->len < want) {
			ssize_t n = recv_some(c, chunk, sizeof(chunk));

			if (n <= 0)
				return err_set(err, EIO, "connection closed in the body");
			buf_append(body, chunk, (size_t)n > want - body->len ? want - body->len : (size_t)n);
		}
		return 0;
	}
	/* no length: until the connection closes */
	buf_append(body, rest->data, rest->len);
	for (;;) {
		ssize_t n = recv_some(c, chunk, sizeof(chunk));

		if (n <= 0)
			return 0;
		if (body->len + (size_t)n > AWS_MAX_BODY)
			return err_set(err, EFBIG, "response larger than %u bytes", AWS_MAX_BODY);
		buf_append(body, chunk, (size_t)n);
	}
}

static int status_of(const struct buf *head)
{
	int st = 0;

	if (head->len < 12 || sscanf((const char *)head->data, "HTTP/1.%*c %d", &st) != 1)
		return -1;
	return st;
}

struct pooled {
	int fd;
	SSL *ssl;
	char authority[300];
	struct timespec since;
};

struct aws_pool {
	pthread_mutex_t lock;
	struct pooled idle[AWS_POOL_MAX];
	size_t n;
	int idle_ms;
	unsigned long opened;
};

struct aws_pool *aws_pool_new(int idle_ms)
{
	struct aws_pool *p = calloc(1, sizeof(*p));

	if (!p)
		abort();
	pthread_mutex_init(&p->lock, NULL);
	p->idle_ms = idle_ms;
	return p;
}

unsigned long aws_pool_opened(struct aws_pool *p)
{
	unsigned long n;

	pthread_mutex_lock(&p->lock);
	n = p->opened;
	pthread_mutex_unlock(&p->lock);
	return n;
}

static void conn_drop(struct conn *c)
{
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

void aws_pool_free(struct aws_pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		struct conn c = { .fd = p->idle[i].fd, .ssl = p->idle[i].ssl };

		conn_drop(&c);
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static long ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000L + (now.tv_nsec - t->tv_nsec) / 1000000L;
}

/* An idle connection to authority, newest first. One that has been idle too long, or that the
 * peer has closed (or sent something unasked: readable while idle), is dropped instead. */
static bool pool_take(struct aws_pool *p, const char *authority, struct conn *c)
{
	bool found = false;

	pthread_mutex_lock(&p->lock);
	for (size_t i = p->n; i-- > 0 && !found;) {
		struct pooled *e = &p->idle[i];
		struct pollfd pf = { e->fd, POLLIN, 0 };
		bool usable;

		if (strcmp(e->authority, authority))
			continue;
		usable = ms_since(&e->since) < p->idle_ms && poll(&pf, 1, 0) == 0 && !SSL_pending(e->ssl);
		c->fd = e->fd;
		c->ssl = e->ssl;
		p->idle[i] = p->idle[--p->n];
		if (usable)
			found = true;
		else
			conn_drop(c);
	}
	pthread_mutex_unlock(&p->lock);
	return found;
}

/* Keeps c for the next request to authority; a full pool closes it. */
static void pool_give(struct aws_pool *p, const char *authority, struct conn *c)
{
	pthread_mutex_lock(&p->lock);
	if (p->n < AWS_POOL_MAX) {
		struct pooled *e = &p->idle[p->n++];

		e->fd = c->fd;
		e->ssl = c->ssl;
		snprintf(e->authority, sizeof(e->authority), "%s", authority);
		clock_gettime(CLOCK_MONOTONIC, &e->since);
		c->fd = -1;
		c->ssl = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	conn_drop(c);
}

/* A new connection to authority through the host's egress tunnel, after this enclave's own
 * policy allowed its host: the host is not trusted to apply the allow list (on Nitro it is
 * outside the enclave), so the check here is the one that counts. For HTTPS, TLS to host. */
static int conn_open(const struct policy *policy, SSL_CTX *tls, bool https, const char *host, uint16_t port,
		     struct conn *c, struct err *err)
{
	struct timeval tv = { c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000 };
	struct policy_decision d;
	struct buf frame = BUF_INIT;
	uint8_t *reply = NULL;
	size_t reply_len = 0;
	int code = 0, rc = -1;
	char *msg = NULL;

	policy_check(policy, host, &d);
	if (!d.allowed)
		return err_set(err, EACCES, "the egress policy refuses %s (%s%s)", host, d.rule ? "deny rule " : "",
			       d.rule ? d.rule : d.reason);
	if (tunnel_put_request(&frame, host, port, err) < 0)
		goto out;
	c->fd = vsock_connect_blocking(VSOCK_CID_HOST, EGRESS_TUNNEL_PORT, c->timeout_ms, err);
	if (c->fd < 0) {
		err_wrap(err, "the egress tunnel");
		goto out;
	}
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		err_sys(err, "the egress tunnel");
		goto out;
	}
	if (send_all(c, frame.data, frame.len, err) < 0 ||
	    tunnel_read_frame(c->fd, &reply, &reply_len, c->timeout_ms, err) < 0) {
		err_wrap(err, "the egress tunnel");
		goto out;
	}
	switch (tunnel_parse_reply(reply, reply_len, &code, &msg, err)) {
	case 0:
		break;
	case 1:
		err_set(err, ECONNREFUSED, "the host cannot connect to %s:%u: %s", host, port, msg);
		goto out;
	default:
		err_wrap(err, "the egress tunnel");
		goto out;
	}
	if (!https) {
		rc = 0;
		goto out;
	}
	c->ssl = SSL_new(tls);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_set_tlsext_host_name(c->ssl, host) != 1 ||
	    SSL_set1_host(c->ssl, host) != 1) {
		err_set(err, ENOMEM, "TLS");
		goto out;
	}
	if (SSL_connect(c->ssl) != 1) {
		long v = SSL_get_verify_result(c->ssl);

		err_set(err, EACCES, "TLS to %s failed: %s", host,
			v != X509_V_OK ? X509_verify_cert_error_string(v) : "handshake failed");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		conn_drop(c);
	buf_free(&frame);
	free(reply);
	free(msg);
	return rc;
}

/* The request on c, its answer into resp; *answered once any byte of the answer came. Returns
 * 1 when c may carry another request (a complete answer with a length, and no "close"). */
static int exchange(struct conn *c, const struct buf *req, struct aws_response *resp, bool *answered, struct err *err)
{
	struct buf head = BUF_INIT, rest = BUF_INIT;
	const char *conn_hdr, *cl, *te;
	int rc = -1;

	*answered = false;
	if (send_all(c, req->data, req->len, err) < 0 || read_head(c, &head, &rest, err) < 0) {
		*answered = head.len > 0;
		goto out;
	}
	*answered = true;
	resp->status = status_of(&head);
	if (resp->status < 0) {
		err_set(err, EPROTO, "not an HTTP response");
		goto out;
	}
	if (read_body(c, &head, &rest, &resp->body, err) < 0)
		goto out;
	conn_hdr = head_header(&head, "connection");
	cl = head_header(&head, "content-length");
	te = head_header(&head, "transfer-encoding");
	/* kept only after an answer of a stated length with nothing after it: a chunked one may
	 * leave its last CRLF unread */
	rc = cl && !te && !(conn_hdr && strcasestr(conn_hdr, "close")) && rest.len <= strtoul(cl, NULL, 10);
out:
	buf_free(&head);
	buf_free(&rest);
	return rc;
}

int aws_request(const struct policy *policy, SSL_CTX *tls, struct aws_pool *pool, const char *method, const char *url,
		const char *const *headers, const void *body, size_t len, int timeout_ms, struct aws_response *resp,
		struct err *err)
{
	struct conn c = { .fd = -1, .timeout_ms = timeout_ms };
	struct buf req = BUF_INIT;
	bool https = !strncmp(url, "https://", 8), reused = false, answered = false;
	const char *auth = url + (https ? 8 : 7), *path;
	char authority[300], *host = NULL;
	struct timespec t0;
	int port, rc = -1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(resp, 0, sizeof(*resp));
	if (strncmp(url, "http://", 7) && !https)
		return err_set(err, EINVAL, "%s: not an http(s) URL", url);
	if (!https)
		pool = NULL; /* plain HTTP (IMDS): a connection per request */
	path = strchr(auth, '/');
	if (!path)
		path = "/";
	snprintf(authority, sizeof(authority), "%.*s", (int)(path == auth ? 0 : strcspn(auth, "/")), auth);
	if (http_split_authority(authority, strlen(authority), &host, &port) < 0)
		return err_set(err, EINVAL, "%s: not a host[:port]", url);
	if (port < 0)
		port = https ? 443 : 80;
	buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, authority);
	for (const char *const *h = headers; h && *h; h++)
		buf_printf(&req, "%s\r\n", *h);
	buf_printf(&req, "Content-Length: %zu\r\nConnection: %s\r\n\r\n", len, pool ? "keep-alive" : "close");
	buf_append(&req, body, len);
	for (int attempt = 0; attempt < 2; attempt++) {
		int r;

		reused = pool && pool_take(pool, authority, &c);
		if (!reused && conn_open(policy, tls, https, host, (uint16_t)port, &c, err) < 0)
			break;
		if (!reused && pool) {
			pthread_mutex_lock(&pool->lock);
			pool->opened++;
			pthread_mutex_unlock(&pool->lock);
		}
		resp->connect_us = ms_since(&t0) * 1000L;
		r = exchange(&c, &req, resp, &answered, err);
		if (r >= 0) {
			if (r == 1 && pool)
				pool_give(pool, authority, &c);
			rc = 0;
			break;
		}
		conn_drop(&c);
		aws_response_free(resp);
		/* A kept connection the peer closed while it sat idle fails before any answer: the
		 * request never reached KMS's application, so it goes once more on a new one. */
		if (!reused || answered)
			break;
		err_clear(err);
	}
	conn_drop(&c);
	buf_free_secret(&req);
	free(host);
	return rc;
}

void aws_response_free(struct aws_response *r)
{
	buf_free_secret(&r->body);
	r->status = 0;
}
