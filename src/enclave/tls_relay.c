/*
 * TLS relay. The TLS side is the network (the host passes bytes through unchanged): handshake
 * and records are OpenSSL's; a failed handshake ends that connection only.
 */
#include "enclave/tls_relay.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"

#define BUF 16384
#define HANDSHAKE_TIMEOUT_MS 30000

struct half {
	uint8_t buf[BUF];
	size_t off, len;
	bool eof, shut;
};

struct tls_conn {
	struct loop_tracked tracked; /* first */
	struct loop *loop;
	SSL *ssl;
	int tfd, afd;
	struct loop_io tio, aio;
	struct loop_timer timer;
	bool handshaken, closed;
	struct half up;   /* client -> app */
	struct half down; /* app -> client */
	void (*done)(void *data);
	void *data;
};

SSL_CTX *tls_server_ctx(const char *dir, struct err *err)
{
	char cert[4096], key[4096];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		err_set(err, ENOMEM, "TLS context");
		return NULL;
	}
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		err_set(err, EINVAL, "%s: cannot load the certificate chain (PEM)", cert);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		err_set(err, EINVAL, "%s: cannot load the private key, or it does not match %s", key, cert);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void conn_free(void *p)
{
	struct tls_conn *c = p;

	SSL_free(c->ssl);
	free(c);
}

static void conn_close(struct tls_conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	loop_untrack(c->loop, &c->tracked);
	loop_timer_stop(c->loop, &c->timer);
	loop_io_del(c->loop, &c->tio);
	loop_io_del(c->loop, &c->aio);
	close(c->tfd);
	close(c->afd);
	ERR_clear_error();
	if (c->done)
		c->done(c->data);
	loop_defer_free(c->loop, c, conn_free);
}

/* Progress in every direction until each would block; returns the events each fd needs. */
static int pump(struct tls_conn *c, uint32_t *tev, uint32_t *aev)
{
	*tev = *aev = 0;
	if (!c->handshaken) {
		int r = SSL_accept(c->ssl), e;

		if (r == 1) {
			c->handshaken = true;
			loop_timer_stop(c->loop, &c->timer);
		} else {
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				*tev = EPOLLIN;
			else if (e == SSL_ERROR_WANT_WRITE)
				*tev = EPOLLOUT;
			else {
				log_debug("ingress TLS handshake failed: %s", ERR_reason_error_string(ERR_peek_last_error()) ?: "closed");
				return -1;
			}
			return 0;
		}
	}
	for (int progress = 1; progress;) {
		progress = 0;
		/* client -> app */
		if (c->up.off < c->up.len) {
			ssize_t n = send(c->afd, c->up.buf + c->up.off, c->up.len - c->up.off, MSG_NOSIGNAL);

			if (n > 0) {
				c->up.off += (size_t)n;
				progress = 1;
			} else if (n < 0 && errno == EAGAIN) {
				*aev |= EPOLLOUT;
			} else {
				return -1;
			}
		} else if (!c->up.eof) {
			int n = SSL_read(c->ssl, c->up.buf, BUF), e;

			if (n > 0) {
				c->up.off = 0;
				c->up.len = (size_t)n;
				progress = 1;
			} else if ((e = SSL_get_error(c->ssl, n)) == SSL_ERROR_WANT_READ) {
				*tev |= EPOLLIN;
			} else if (e == SSL_ERROR_WANT_WRITE) {
				*tev |= EPOLLOUT;
			} else if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {
				c->up.eof = true; /* close_notify or a plain close from the client */
				progress = 1;
			} else {
				return -1;
			}
		} else if (!c->up.shut) {
			shutdown(c->afd, SHUT_WR);
			c->up.shut = true;
		}
		/* app -> client */
		if (c->down.off < c->down.len) {
			int n = SSL_write(c->ssl, c->down.buf + c->down.off, (int)(c->down.len - c->down.off)), e;

			if (n > 0) {
				c->down.off += (size_t)n;
				progress = 1;
			} else if ((e = SSL_get_error(c->ssl, n)) == SSL_ERROR_WANT_WRITE) {
				*tev |= EPOLLOUT;
			} else if (e == SSL_ERROR_WANT_READ) {
				*tev |= EPOLLIN;
			} else {
				return -1;
			}
		} else if (!c->down.eof) {
			ssize_t n = recv(c->afd, c->down.buf, BUF, 0);

			if (n > 0) {
				c->down.off = 0;
				c->down.len = (size_t)n;
				progress = 1;
			} else if (n < 0 && errno == EAGAIN) {
				*aev |= EPOLLIN;
			} else {
				c->down.eof = true;
				progress = 1;
			}
		} else if (!c->down.shut) {
			SSL_shutdown(c->ssl); /* close_notify, then the TCP half-close */
			shutdown(c->tfd, SHUT_WR);
			c->down.shut = true;
		}
	}
	return c->up.shut && c->down.shut ? 1 : 0;
}

static void step(struct tls_conn *c)
{
	uint32_t tev, aev;
	int rc = pump(c, &tev, &aev);

	if (rc != 0) {
		conn_close(c);
		return;
	}
	loop_io_mod(c->loop, &c->tio, tev);
	loop_io_mod(c->loop, &c->aio, aev);
}

static void on_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	step(io->data);
}

static void on_timeout(struct loop *l, void *data)
{
	log_debug("ingress TLS handshake timed out");
	conn_close(data);
}

static void close_tracked(struct loop_tracked *t)
{
	conn_close((struct tls_conn *)t);
}

int tls_relay_start(struct loop *l, SSL_CTX *ctx, int tls_fd, int app_fd, void (*done)(void *data), void *data,
		    struct err *err)
{
	struct tls_conn *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->loop = l;
	c->tfd = tls_fd;
	c->afd = app_fd;
	c->done = done;
	c->data = data;
	c->ssl = SSL_new(ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, tls_fd) != 1) {
		close(tls_fd);
		close(app_fd);
		SSL_free(c->ssl);
		free(c);
		return err_set(err, ENOMEM, "TLS session");
	}
	loop_timer_init(&c->timer, on_timeout, c);
	if (loop_io_add(l, &c->tio, tls_fd, 0, on_io, c, err) < 0 || loop_io_add(l, &c->aio, app_fd, 0, on_io, c, err) < 0) {
		loop_io_del(l, &c->tio);
		close(tls_fd);
		close(app_fd);
		SSL_free(c->ssl);
		free(c);
		return -1;
	}
	loop_track(l, &c->tracked, close_tracked);
	loop_timer_start(l, &c->timer, HANDSHAKE_TIMEOUT_MS);
	step(c);
	return 0;
}
