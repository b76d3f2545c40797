/*
 * bench/kms's baseline: KMS JSON requests straight to kms-local over HTTP, signed with the
 * state folder's credentials, one after another, each on a new connection (as the enclave's
 * app does to the proxy), from CONCURRENCY clients at once (default 1); with "tls", over HTTPS
 * to kms-local's TLS port instead, each client on one kept connection (as an app outside an
 * enclave talks to KMS), the development root trusted. Prints latency percentiles and the rate.
 *   kms_direct STATE_DIR HOST:PORT COUNT TARGET BODY [CONCURRENCY [tls [pace PORT]]]
 * With "pace PORT", one client over TLS that takes turns with the enclave's app (probe
 * kms-paced), which connects to 127.0.0.1:PORT: a call here, then one there, COUNT times; the
 * rate figure is meaningless then.
 *   kms_direct cms COUNT
 * times COUNT openings of a CiphertextForRecipient as the KMS proxy opens it (one RSA-2048 OAEP
 * decryption and the AES content): the floor of what the proxy adds to a call.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "crypto/cms.h"
#include "crypto/sigv4.h"
#include "nitro/devca.h"
#include "host/local_creds.h"

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

struct run {
	SSL_CTX *tls; /* NULL: plain HTTP, a new connection per request */
	struct local_master *m;
	struct sockaddr_in sa;
	const char *authority, *target, *body;
	long *lat; /* this thread's slice */
	int count, ok;
};

/* One response over TLS: the head, then Content-Length bytes; 0 when it came whole. */
static int tls_response(SSL *ssl, char *reply, size_t cap)
{
	size_t got = 0;
	char *end = NULL, *cl;

	while (got < cap - 1) {
		int n = SSL_read(ssl, reply + got, (int)(cap - 1 - got));

		if (n <= 0)
			return -1;
		got += (size_t)n;
		reply[got] = 0;
		if (!end && (end = strstr(reply, "\r\n\r\n")) == NULL)
			continue;
		cl = strcasestr(reply, "content-length:");
		if (!cl || cl > end)
			return -1;
		if (got >= (size_t)(end + 4 - reply) + strtoul(cl + 15, NULL, 10))
			return 0;
	}
	return -1;
}

/* A kept TLS connection to r's server, the development root trusted. */
static SSL *tls_open(struct run *r, int *tfd)
{
	char sni[128];
	SSL *ssl;

	snprintf(sni, sizeof(sni), "kms.%s.amazonaws.com", r->m->region);
	*tfd = socket(AF_INET, SOCK_STREAM, 0);
	ssl = SSL_new(r->tls);
	if (connect(*tfd, (struct sockaddr *)&r->sa, sizeof(r->sa)) < 0 || !ssl || SSL_set_fd(ssl, *tfd) != 1 ||
	    SSL_set_tlsext_host_name(ssl, sni) != 1 || SSL_set1_host(ssl, sni) != 1 || SSL_connect(ssl) != 1) {
		fprintf(stderr, "kms_direct: TLS to %s failed\n", sni);
		exit(1);
	}
	setsockopt(*tfd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	return ssl;
}

/* Request i: on ssl, or on a new plain connection when ssl is NULL. */
static void one_call(struct run *r, SSL *ssl, int i)
{
	struct err err = { 0 };
	struct timespec a, b;
	char date[17], target[128], *auth = NULL;
	struct sigv4_header h[4];
	struct sigv4_request sr;
	char *reply = malloc(1 << 16);
	size_t got = 0;
	ssize_t n;
	int fd;

	clock_gettime(CLOCK_MONOTONIC, &a);
	sigv4_amz_date((long long)time(NULL), date);
	snprintf(target, sizeof(target), "TrentService.%s", r->target);
	h[0] = (struct sigv4_header){ "content-type", "application/x-amz-json-1.1" };
	h[1] = (struct sigv4_header){ "host", r->authority };
	h[2] = (struct sigv4_header){ "x-amz-date", date };
	h[3] = (struct sigv4_header){ "x-amz-target", target };
	sr = (struct sigv4_request){ "POST", "/", NULL, h, 4, (const uint8_t *)r->body, strlen(r->body) };
	if (!reply || sigv4_sign(&sr, date, r->m->region, "kms", r->m->access_key, r->m->secret_key, &auth, &err) < 0)
		exit(1);
	if (ssl) {
		char *req = NULL;
		int len = asprintf(&req, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\n"
					 "X-Amz-Date: %s\r\nX-Amz-Target: %s\r\nAuthorization: %s\r\n"
					 "Content-Length: %zu\r\n\r\n%s",
				   r->authority, date, target, auth, strlen(r->body), r->body);

		if (len < 0 || SSL_write(ssl, req, len) != len || tls_response(ssl, reply, 1 << 16) < 0) {
			fprintf(stderr, "kms_direct: the kept TLS connection failed\n");
			exit(1);
		}
		free(req);
	} else {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&r->sa, sizeof(r->sa)) < 0) {
			perror("connect");
			exit(1);
		}
		dprintf(fd, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Date: %s\r\n"
			    "X-Amz-Target: %s\r\nAuthorization: %s\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
			r->authority, date, target, auth, strlen(r->body), r->body);
		while (got < (1 << 16) - 1 && (n = read(fd, reply + got, (1 << 16) - 1 - got)) > 0)
			got += (size_t)n;
		close(fd);
		reply[got] = 0;
	}
	free(auth);
	clock_gettime(CLOCK_MONOTONIC, &b);
	r->ok += strstr(reply, " 200 ") != NULL;
	if (!strstr(reply, " 200 ") && r->ok == 0 && i == 0)
		fprintf(stderr, "kms_direct: %.300s\n", reply);
	free(reply);
	r->lat[i] = (b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000;
}

/* count requests one after another: each on a new connection, or all on one kept TLS connection */
static void *client(void *arg)
{
	struct run *r = arg;
	SSL *ssl = NULL;
	int tfd = -1;

	if (r->tls)
		ssl = tls_open(r, &tfd);
	for (int i = 0; i < r->count; i++)
		one_call(r, ssl, i);
	if (ssl) {
		SSL_shutdown(ssl);
		SSL_free(ssl);
		close(tfd);
	}
	return NULL;
}

static void print_stats(const char *what, long *lat, int count, int ok, double seconds)
{
	double sum = 0;

	for (int i = 0; i < count; i++)
		sum += (double)lat[i];
	qsort(lat, (size_t)count, sizeof(long), cmp_long);
	printf("%s: n=%d ok=%d p50_us=%ld p99_us=%ld mean_us=%.0f", what, count, ok, lat[count / 2],
	       lat[(count * 99) / 100 < count ? (count * 99) / 100 : count - 1], sum / count);
	if (seconds > 0) /* a rate only where the calls ran back to back */
		printf(" rps=%.1f", count / seconds);
	printf("\n");
}

/* Paced: the enclave's app connects to 127.0.0.1:port; then one call here and one there, in
 * turn, count times. Prints this side's figures and the app's. */
static int paced(struct run *r, uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int lfd = socket(AF_INET, SOCK_STREAM, 0), c, tfd = -1, app_ok = 0;
	long *app = calloc((size_t)r->count, sizeof(long));
	struct timeval tv = { 120, 0 };
	FILE *in;
	SSL *ssl;

	if (!app || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		perror("kms_direct: listen");
		return 1;
	}
	printf("kms-direct: listening\n");
	fflush(stdout);
	c = accept(lfd, NULL, NULL);
	if (c < 0 || setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		perror("kms_direct: accept");
		return 1;
	}
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	in = fdopen(dup(c), "r");
	ssl = tls_open(r, &tfd);
	for (int i = 0; i < r->count; i++) {
		char line[64], word[8];

		one_call(r, ssl, i);
		if (write(c, "g", 1) != 1 || !fgets(line, sizeof(line), in) ||
		    sscanf(line, "%7s %ld", word, &app[i]) != 2) {
			fprintf(stderr, "kms_direct: the enclave's app stopped answering\n");
			return 1;
		}
		app_ok += !strcmp(word, "OK");
	}
	if (write(c, "q", 1) != 1)
		return 1;
	print_stats("kms-direct", r->lat, r->count, r->ok, 0);
	print_stats("kms-paced", app, r->count, app_ok, 0);
	fclose(in);
	close(c);
	close(lfd);
	SSL_free(ssl);
	close(tfd);
	free(app);
	return r->ok == r->count && app_ok == r->count ? 0 : 1;
}

/* The floor: COUNT CMS openings with an RSA-2048 key, one after another. */
static int cms_floor(int count)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	unsigned char *spki = NULL;
	int spki_len = k ? i2d_PUBKEY(k, &spki) : -1;
	struct buf blob = BUF_INIT;
	struct err err = { 0 };
	long *lat = calloc((size_t)(count > 0 ? count : 1), sizeof(long));
	int ok = 0;

	if (count < 1 || !lat || spki_len <= 0 ||
	    cms_recipient_encrypt(spki, (size_t)spki_len, (const uint8_t *)"a secret of thirty-two bytes....", 32, &blob,
				  &err) < 0) {
		fprintf(stderr, "kms_direct: cms: %s\n", err.msg[0] ? err.msg : "bad arguments");
		return 1;
	}
	for (int i = 0; i < count; i++) {
		struct buf pt = BUF_INIT;
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		ok += cms_recipient_decrypt(k, blob.data, blob.len, &pt, &err) == 0;
		clock_gettime(CLOCK_MONOTONIC, &b);
		buf_free_secret(&pt);
		lat[i] = (b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000;
	}
	print_stats("kms-cms", lat, count, ok, 0);
	free(lat);
	buf_free(&blob);
	OPENSSL_free(spki);
	EVP_PKEY_free(k);
	return ok == count ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct local_master m;
	struct err err = { 0 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int count, conc = argc >= 7 ? atoi(argv[6]) : 1, ok = 0;
	SSL_CTX *tls = NULL;
	long *lat;
	char host[64];
	struct timespec t0, t1;
	struct run *runs;
	pthread_t *th;

	if (argc == 3 && !strcmp(argv[1], "cms"))
		return cms_floor(atoi(argv[2]));
	if ((argc < 6 || argc > 8) && argc != 10)
		argc = 0;
	if (argc < 6 || conc < 1 || sscanf(argv[2], "%63[^:]:%hu", host, &sa.sin_port) != 2 ||
	    (argc >= 8 && strcmp(argv[7], "tls")) || (argc == 10 && (strcmp(argv[8], "pace") || conc != 1))) {
		fprintf(stderr, "usage: kms_direct STATE_DIR HOST:PORT COUNT TARGET BODY [CONCURRENCY [tls [pace PORT]]]\n");
		return 2;
	}
	sa.sin_port = htons(sa.sin_port);
	inet_pton(AF_INET, host, &sa.sin_addr);
	count = atoi(argv[3]) / conc * conc;
	lat = calloc((size_t)count, sizeof(long));
	runs = calloc((size_t)conc, sizeof(*runs));
	th = calloc((size_t)conc, sizeof(*th));
	if (!lat || !runs || !th || count < 1 || local_creds_open(argv[1], NULL, &m, &err) < 0) {
		fprintf(stderr, "kms_direct: %s\n", err.msg[0] ? err.msg : "bad arguments");
		return 1;
	}
	if (argc >= 8) {
		char root[4200];

		devca_root_path(argv[1], root, sizeof(root));
		tls = SSL_CTX_new(TLS_client_method());
		if (!tls || SSL_CTX_load_verify_locations(tls, root, NULL) != 1) {
			fprintf(stderr, "kms_direct: %s: not a CA certificate\n", root);
			return 1;
		}
		SSL_CTX_set_verify(tls, SSL_VERIFY_PEER, NULL);
	}
	if (argc == 10) {
		runs[0] = (struct run){ tls, &m, sa, argv[2], argv[4], argv[5], lat, count, 0 };
		return paced(&runs[0], (uint16_t)atoi(argv[9]));
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < conc; i++) {
		runs[i] = (struct run){ tls, &m, sa, argv[2], argv[4], argv[5], lat + i * (count / conc), count / conc, 0 };
		pthread_create(&th[i], NULL, client, &runs[i]);
	}
	for (int i = 0; i < conc; i++) {
		pthread_join(th[i], NULL);
		ok += runs[i].ok;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_stats("kms-direct", lat, count, ok, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return ok == count ? 0 : 1;
}
