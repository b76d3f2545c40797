/* KMS proxy: requests parsed in the loop's thread; the upstream call, the CMS and the answer to
 * the app on a pool of worker threads that wait for jobs; finished jobs back through a pipe. */
#include "enclave/kms_proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/hex.h"
#include "base/log.h"
#include "crypto/cms.h"
#include "crypto/sigv4.h"
#include "enclave/aws_client.h"
#include "net/http_server.h"
#include "manifest/policy.h"
#include "nitro/nsm.h"

#define IMDS "http://169.254.169.254"
#define TIMEOUT_MS 30000
#define MAX_WORKERS 64
/* A worker with nothing to do for this long ends; the next busy moment starts new ones. */
#define WORKER_IDLE_S 60
/* How long a worker that answered on a kept connection waits for the app's next request. */
#define LINGER_MS 10
#define MAX_BODY (1u << 20)
/* A kept TLS connection to KMS is used again within this much quiet, well inside the idle
 * timeouts of AWS's load balancers (60 s and more); after it a new one is made. */
#define POOL_IDLE_MS 20000
/* An attestation document is used again for this long. Safe because: it carries the proxy's own
 * public key, whose key pair lives as long as the proxy (so never for another key); PCRs 0-15 are
 * locked at boot and cannot change; and 60 s is a fifth of the 300 s that kms-local (like KMS)
 * accepts a document for. A PCR the app extends at run time (16 and up) shows in the next
 * document, at most this late. */
#define DOC_REUSE_MS 60000
#define REFRESH_SECONDS 300 /* credentials are renewed this long before they expire, or at the
			     * last quarter of their life when that is shorter */

/* Where a call's time goes, for the log line at the end (and bench/kms). */
enum phase { PH_START, PH_CREDS, PH_ATTEST, PH_SIGN, PH_CONNECT, PH_KMS, PH_CMS, PH_ANSWER, PH_N };
static const char *const phase_names[PH_N] = { "worker start", "credentials", "attestation", "signing",
					       "tunnel and TLS", "KMS", "CMS", "answer" };

struct creds {
	char access_key[128], secret_key[128], token[2048];
	time_t expiration;
	time_t fetched;
};

struct kms_proxy {
	struct loop *loop;
	struct http_server *srv;
	struct policy *policy; /* the manifest's egress policy, the proxy's own copy */
	const struct manifest *m;
	char region[64];
	SSL_CTX *tls;
	struct aws_pool *pool; /* TLS connections to KMS kept between calls */
	EVP_PKEY *key;      /* RSA-2048, made at start */
	struct buf spki;    /* its SubjectPublicKeyInfo */
	pthread_mutex_t doc_lock; /* the NSM connection, the document over spki and when it was made */
	struct nsm *nsm;          /* kept open between documents */
	unsigned long docs, nsm_opened;
	struct buf doc_b64;
	struct timespec doc_at;
	pthread_mutex_t lock; /* the jobs and the workers: the loop's thread takes it, never for long */
	pthread_cond_t wake;  /* a job was queued, or the proxy stops */
	pthread_cond_t gone;  /* a worker ended */
	struct job *queue, **queue_tail;
	unsigned queued;  /* jobs no worker has taken yet */
	unsigned jobs;    /* jobs queued or running, until the loop answered them */
	unsigned threads; /* workers alive */
	unsigned waiting; /* workers waiting for a job */
	pthread_mutex_t creds_lock; /* creds: held by a worker while it asks IMDS, so the
				     * loop's thread never takes it */
	struct creds creds;
	int pipe_rd, pipe_wr;
	struct loop_io pipe_io;
	bool stopping;
	/* under lock: calls that attested, and their phases' sums */
	unsigned long timed;
	uint64_t phase_us[PH_N];
	void (*on_fatal)(void *data, const char *msg);
	void *fatal_data;
};

struct job {
	struct kms_proxy *p;
	struct job *next; /* in the queue */
	struct http_conn *conn; /* NULL: the start-up region lookup */
	int fd;                 /* a duplicate of conn's socket, for the worker to answer on */
	bool keep_alive;
	bool buffered;          /* the loop holds bytes of the app's next request */
	struct buf unread;      /* read by the worker off the socket, not taken: back to the loop */
	char target[128];  /* X-Amz-Target */
	char region[64];
	char path[512];
	char method[16];
	struct buf body;
	struct timespec queued;
	uint64_t phase_us[PH_N];
	bool timed; /* an attesting call that reached KMS and opened its answer */
	/* the answer: its body, then the bytes as sent, of which sent went out from the worker */
	int status;
	struct buf out;
	struct buf wire;
	size_t sent;
	char log[512];
};

static const char *const attesting[] = { "TrentService.Decrypt", "TrentService.DeriveSharedSecret",
					 "TrentService.GenerateDataKey", "TrentService.GenerateDataKeyPair",
					 "TrentService.GenerateRandom" };

static void kms_error(struct buf *out, const char *type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void kms_error(struct buf *out, const char *type, const char *fmt, ...)
{
	char msg[512];
	json_t *j;
	char *s;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	j = json_pack("{s:s, s:s}", "__type", type, "message", msg);
	s = json_dumps(j, JSON_COMPACT);
	buf_reset(out);
	buf_append_str(out, s);
	free(s);
	json_decref(j);
}

/* --- IMDSv2, through the egress proxy --- */

static int imds_get(struct kms_proxy *p, const char *path, struct buf *out, struct err *err)
{
	struct aws_response r;
	char url[256], hdr[256];
	const char *ttl[] = { "X-aws-ec2-metadata-token-ttl-seconds: 60", NULL }, *tok[] = { hdr, NULL };

	if (aws_request(p->policy, NULL, NULL, "PUT", IMDS "/latest/api/token", ttl, "", 0, TIMEOUT_MS, &r, err) < 0)
		return err_wrap(err, "IMDS token");
	if (r.status != 200 || !r.body.len || r.body.len > 200) {
		aws_response_free(&r);
		return err_set(err, EIO, "IMDS token: HTTP %d", r.status);
	}
	snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %.*s", (int)r.body.len, (const char *)r.body.data);
	aws_response_free(&r);
	snprintf(url, sizeof(url), IMDS "%s", path);
	if (aws_request(p->policy, NULL, NULL, "GET", url, tok, "", 0, TIMEOUT_MS, &r, err) < 0)
		return err_wrap(err, "IMDS %s", path);
	if (r.status != 200) {
		aws_response_free(&r);
		return err_set(err, EIO, "IMDS %s: HTTP %d", path, r.status);
	}
	buf_append(out, r.body.data, r.body.len);
	aws_response_free(&r);
	return 0;
}

static int fetch_creds(struct kms_proxy *p, struct creds *c, struct err *err)
{
	struct buf role = BUF_INIT, doc = BUF_INIT;
	char path[256];
	json_t *j = NULL;
	const char *ak, *sk, *tk, *exp;
	struct tm tm = { 0 };
	int rc = -1;

	if (imds_get(p, "/latest/meta-data/iam/security-credentials/", &role, err) < 0)
		goto out;
	snprintf(path, sizeof(path), "/latest/meta-data/iam/security-credentials/%.*s",
		 (int)strcspn(buf_cstr(&role), "\r\n"), buf_cstr(&role));
	if (imds_get(p, path, &doc, err) < 0)
		goto out;
	j = json_loadb((const char *)doc.data, doc.len, 0, NULL);
	ak = json_string_value(json_object_get(j, "AccessKeyId"));
	sk = json_string_value(json_object_get(j, "SecretAccessKey"));
	tk = json_string_value(json_object_get(j, "Token"));
	exp = json_string_value(json_object_get(j, "Expiration"));
	if (!ak || !sk || !tk || !exp || strlen(ak) >= sizeof(c->access_key) || strlen(sk) >= sizeof(c->secret_key) ||
	    strlen(tk) >= sizeof(c->token) || !strptime(exp, "%Y-%m-%dT%H:%M:%S", &tm)) {
		err_set(err, EIO, "IMDS role credentials: unexpected answer");
		goto out;
	}
	snprintf(c->access_key, sizeof(c->access_key), "%s", ak);
	snprintf(c->secret_key, sizeof(c->secret_key), "%s", sk);
	snprintf(c->token, sizeof(c->token), "%s", tk);
	c->expiration = timegm(&tm);
	c->fetched = time(NULL);
	rc = 0;
out:
	json_decref(j);
	buf_free(&role);
	buf_free_secret(&doc);
	return rc;
}

/* The cached credentials, renewed before they expire. */
static int credentials(struct kms_proxy *p, struct creds *out, bool *refreshed, struct err *err)
{
	long life, margin;
	int rc = 0;

	pthread_mutex_lock(&p->creds_lock);
	life = (long)(p->creds.expiration - p->creds.fetched);
	margin = life / 4 < REFRESH_SECONDS ? life / 4 : REFRESH_SECONDS;
	*refreshed = false;
	if (p->creds.expiration - time(NULL) < margin || !p->creds.expiration) {
		struct creds fresh;

		rc = fetch_creds(p, &fresh, err);
		if (rc == 0) {
			p->creds = fresh;
			*refreshed = true;
		}
		explicit_bzero(&fresh, sizeof(fresh));
	}
	if (rc == 0)
		*out = p->creds;
	pthread_mutex_unlock(&p->creds_lock);
	return rc;
}

/* --- the worker --- */

static bool is_attesting(const char *target)
{
	for (size_t i = 0; i < sizeof(attesting) / sizeof(attesting[0]); i++)
		if (!strcasecmp(target, attesting[i]))
			return true;
	return false;
}

/* The attestation document over the proxy's key, base64, into b64: the one made within
 * DOC_REUSE_MS, else a new one from the NSM, over the connection kept open for it. */
static int recipient_doc(struct kms_proxy *p, struct buf *b64, struct err *err)
{
	struct nsm_bytes pk = { p->spki.data, p->spki.len };
	struct buf doc = BUF_INIT;
	struct timespec now;
	int rc = 0;

	pthread_mutex_lock(&p->doc_lock);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!p->doc_b64.len || (now.tv_sec - p->doc_at.tv_sec) * 1000L + (now.tv_nsec - p->doc_at.tv_nsec) / 1000000L >=
				       DOC_REUSE_MS) {
		rc = -1;
		/* an emulated NSM's connection may have ended since the last document: once more on
		 * a new one */
		for (int attempt = 0; attempt < 2 && rc < 0; attempt++) {
			err_clear(err);
			if (!p->nsm) {
				if (nsm_open(&p->nsm, err) < 0)
					break;
				p->nsm_opened++;
			}
			if (nsm_attestation(p->nsm, NULL, NULL, &pk, &doc, err) == 0) {
				p->docs++;
				rc = 0;
			} else {
				nsm_close(p->nsm);
				p->nsm = NULL;
			}
		}
		if (rc < 0) {
			err_wrap(err, "attestation");
		} else {
			buf_reset(&p->doc_b64);
			b64_encode(doc.data, doc.len, &p->doc_b64);
			p->doc_at = now;
		}
		buf_free(&doc);
	}
	if (rc == 0)
		buf_append(b64, p->doc_b64.data, p->doc_b64.len);
	pthread_mutex_unlock(&p->doc_lock);
	return rc;
}

/* Adds the Recipient: the attestation document over the proxy's key. The app's body is parsed
 * and written again without any Recipient of its own; the document (base64, which JSON takes
 * as it is) is put in as text rather than through the JSON writer, which would copy and scan
 * its 6 KB on every call. */
static int add_recipient(struct job *j, struct buf *body, struct err *err)
{
	json_t *o = json_loadb((const char *)j->body.data, j->body.len, 0, NULL);
	struct buf b64 = BUF_INIT;
	char *s = NULL;
	size_t n;
	int rc = -1;

	if (!json_is_object(o)) {
		err_set(err, EINVAL, "the request body is not a JSON object");
		goto out;
	}
	if (recipient_doc(j->p, &b64, err) < 0)
		goto out;
	json_object_del(o, "Recipient");
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!s)
		abort();
	n = strlen(s); /* "{...}": the Recipient goes in before the closing brace */
	buf_append(body, s, n - 1);
	buf_printf(body, "%s\"Recipient\":{\"AttestationDocument\":\"", n > 2 ? "," : "");
	buf_append(body, b64.data, b64.len);
	buf_append_str(body, "\",\"KeyEncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}}");
	rc = 0;
out:
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
	json_decref(o);
	buf_free(&b64);
	return rc;
}

int kms_proxy_open_response(EVP_PKEY *key, const char *target, const uint8_t *body, size_t len, struct buf *out,
			    struct err *err)
{
	json_t *o = json_loadb((const char *)body, len, 0, NULL), *cfr;
	const char *field = !strcasecmp(target, "TrentService.GenerateDataKeyPair")   ? "PrivateKeyPlaintext"
			    : !strcasecmp(target, "TrentService.DeriveSharedSecret") ? "SharedSecret"
										       : "Plaintext";
	struct buf ct = BUF_INIT, pt = BUF_INIT, b64 = BUF_INIT;
	char *s;
	int rc = -1;

	cfr = json_object_get(o, "CiphertextForRecipient");
	if (!json_is_object(o) || !json_is_string(cfr)) {
		err_set(err, EPROTO, "Response body is missing 'CiphertextForRecipient'");
		goto out;
	}
	if (b64_decode(json_string_value(cfr), json_string_length(cfr), &ct) < 0) {
		err_set(err, EPROTO, "CiphertextForRecipient is not base64");
		goto out;
	}
	if (cms_recipient_decrypt(key, ct.data, ct.len, &pt, err) < 0)
		goto out;
	json_object_del(o, "CiphertextForRecipient");
	b64_encode(pt.data, pt.len, &b64);
	json_object_set_new(o, field, json_stringn((const char *)b64.data ? (const char *)b64.data : "", b64.len));
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (s) {
		buf_append_str(out, s);
		explicit_bzero(s, strlen(s));
		free(s);
	}
	rc = 0;
out:
	json_decref(o);
	buf_free(&ct);
	buf_free_secret(&pt);
	buf_free_secret(&b64);
	return rc;
}

static const char *upstream_authority(struct kms_proxy *p, const char *region, char *buf, size_t size)
{
	for (size_t i = 0; i < p->m->n_kms_endpoints; i++)
		if (!strcmp(p->m->kms_endpoints[i].region, region))
			return p->m->kms_endpoints[i].authority;
	snprintf(buf, size, "kms.%s.amazonaws.com", region);
	return buf;
}

static uint64_t since_us(struct timespec *t)
{
	struct timespec now;
	uint64_t us;

	clock_gettime(CLOCK_MONOTONIC, &now);
	us = (uint64_t)((now.tv_sec - t->tv_sec) * 1000000L + (now.tv_nsec - t->tv_nsec) / 1000);
	*t = now;
	return us;
}

static void run_job(struct job *j)
{
	struct kms_proxy *p = j->p;
	struct err err = { 0 };
	struct creds c;
	struct buf body = BUF_INIT;
	struct aws_response r = { 0 };
	char date[17], *auth = NULL, authority_buf[160], url[700];
	const char *authority = upstream_authority(p, j->region, authority_buf, sizeof(authority_buf));
	bool attest = !strcmp(j->method, "POST") && !strcmp(j->path, "/") && is_attesting(j->target), refreshed;
	char h_type[] = "Content-Type: application/x-amz-json-1.1", h_target[160], h_date[64], h_token[2100],
	     h_auth[1200];
	const char *headers[6];
	struct sigv4_header sh[5];
	size_t n = 0;
	struct timespec t = j->queued;

	j->phase_us[PH_START] = since_us(&t);
	if (credentials(p, &c, &refreshed, &err) < 0) {
		j->status = 500;
		kms_error(&j->out, "KMSProxyCredentialsException", "the KMS proxy has no instance role credentials: %s",
			  err.msg);
		snprintf(j->log, sizeof(j->log), "kms proxy: credentials: %s", err.msg);
		return;
	}
	if (refreshed)
		snprintf(j->log, sizeof(j->log), "kms proxy: fetched role credentials from IMDSv2 (expire %lld s from now)",
			 (long long)(c.expiration - time(NULL)));
	j->phase_us[PH_CREDS] = since_us(&t);
	if (attest) {
		if (add_recipient(j, &body, &err) < 0) {
			j->status = err.code == EINVAL ? 400 : 500;
			kms_error(&j->out, err.code == EINVAL ? "SerializationException" : "KMSProxyAttestationException",
				  "%s", err.msg);
			snprintf(j->log, sizeof(j->log), "kms proxy: %s: %s", j->target, err.msg);
			goto out;
		}
	} else {
		buf_append(&body, j->body.data, j->body.len);
	}
	j->phase_us[PH_ATTEST] = since_us(&t);
	/* upstream's signed headers: host, content-type, x-amz-date, x-amz-target, the token */
	sigv4_amz_date((long long)time(NULL), date);
	snprintf(h_target, sizeof(h_target), "X-Amz-Target: %s", j->target);
	snprintf(h_date, sizeof(h_date), "X-Amz-Date: %s", date);
	snprintf(h_token, sizeof(h_token), "X-Amz-Security-Token: %s", c.token);
	sh[0] = (struct sigv4_header){ "host", authority };
	sh[1] = (struct sigv4_header){ "content-type", "application/x-amz-json-1.1" };
	sh[2] = (struct sigv4_header){ "x-amz-date", date };
	sh[3] = (struct sigv4_header){ "x-amz-target", j->target };
	sh[4] = (struct sigv4_header){ "x-amz-security-token", c.token };
	{
		struct sigv4_request sr = { j->method, j->path, NULL, sh, c.token[0] ? 5 : 4, body.data, body.len };

		if (sigv4_sign(&sr, date, j->region, "kms", c.access_key, c.secret_key, &auth, &err) < 0) {
			j->status = 500;
			kms_error(&j->out, "KMSProxyException", "signing: %s", err.msg);
			goto out;
		}
	}
	snprintf(h_auth, sizeof(h_auth), "Authorization: %s", auth);
	j->phase_us[PH_SIGN] = since_us(&t);
	headers[n++] = h_type;
	headers[n++] = h_target;
	headers[n++] = h_date;
	if (c.token[0])
		headers[n++] = h_token;
	headers[n++] = h_auth;
	headers[n] = NULL;
	snprintf(url, sizeof(url), "https://%s%s", authority, j->path);
	if (aws_request(p->policy, p->tls, p->pool, j->method, url, headers, body.data, body.len, TIMEOUT_MS, &r, &err) < 0) {
		j->status = 502;
		kms_error(&j->out, "KMSProxyNetworkException", "%s: %s", authority, err.msg);
		snprintf(j->log, sizeof(j->log), "kms proxy: %s: %s", authority, err.msg);
		goto out;
	}
	j->status = r.status;
	{
		uint64_t all = since_us(&t);

		j->phase_us[PH_CONNECT] = (uint64_t)r.connect_us < all ? (uint64_t)r.connect_us : all;
		j->phase_us[PH_KMS] = all - j->phase_us[PH_CONNECT];
	}
	if (attest && r.status == 200) {
		if (kms_proxy_open_response(p->key, j->target, r.body.data, r.body.len, &j->out, &err) < 0) {
			j->status = 502;
			kms_error(&j->out, "KMSProxyException", "%s", err.msg);
			snprintf(j->log, sizeof(j->log), "kms proxy: %s: %s", j->target, err.msg);
		} else {
			j->phase_us[PH_CMS] = since_us(&t);
			j->timed = true;
		}
	} else {
		/* KMS's own answers, errors included, go back as they came */
		buf_append(&j->out, r.body.data, r.body.len);
	}
out:
	aws_response_free(&r);
	explicit_bzero(&c, sizeof(c));
	free(auth);
	buf_free_secret(&body);
}

/* The region, from IMDS through the egress tunnel: on a worker, as every blocking call. */
static void region_job(struct job *j)
{
	struct buf region = BUF_INIT;
	struct err err = { 0 };

	if (imds_get(j->p, "/latest/meta-data/placement/region", &region, &err) < 0 || !region.len || region.len >= 64) {
		j->status = -1;
		snprintf(j->log, sizeof(j->log), "failed to fetch the region from IMDS: %s", err.msg[0] ? err.msg : "empty");
	} else {
		j->status = 0;
		snprintf(j->region, sizeof(j->region), "%.*s", (int)region.len, (const char *)region.data);
	}
	buf_free(&region);
}

/* The answer goes to the app from the worker, as far as its socket takes it at once: the
 * loop's thread, woken for the rest, is not on the way. */
static void answer(struct job *j)
{
	struct kms_proxy *p = j->p;
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	http_answer_format(j->keep_alive, j->status, "application/x-amz-json-1.1", j->out.data, j->out.len, NULL,
			   &j->wire);
	/* Counted before the app has its answer: once it has, it may end, and odyn stop the proxy
	 * and log the counts, before this thread runs again. p stays until the loop took the job. */
	if (j->timed) {
		pthread_mutex_lock(&p->lock);
		p->timed++;
		for (int i = 0; i < PH_N; i++)
			p->phase_us[i] += j->phase_us[i];
		pthread_mutex_unlock(&p->lock);
	}
	if (j->fd >= 0) {
		ssize_t n = send(j->fd, j->wire.data, j->wire.len, MSG_NOSIGNAL | MSG_DONTWAIT);

		j->sent = n > 0 ? (size_t)n : 0;
	}
	if (j->timed) {
		pthread_mutex_lock(&p->lock);
		p->phase_us[PH_ANSWER] += since_us(&t);
		pthread_mutex_unlock(&p->lock);
	}
}

static int fill_job(struct job *j, const struct http_request *req, const uint8_t *body, size_t len, struct buf *out);

/* After an answer on a kept connection, the worker waits a little for the app's next request
 * and serves it itself: the app's next call skips the loop's wake-up and the hand-over to a
 * worker. It stops, and the connection goes back to the loop with any bytes it read and did
 * not take, when nothing comes within LINGER_MS, the request is one the loop answers (a
 * malformed or refused one: the loop's answer is the same as ever), a call left a log line for
 * the loop, the answer did not go out whole, the proxy stops, or half the job slots are taken
 * (so that waiting never turns a caller away). Only this thread reads the socket meanwhile:
 * the loop watches it for nothing while the job is out. */
static void keep_serving(struct job *j)
{
	struct kms_proxy *p = j->p;

	while (j->keep_alive && j->fd >= 0 && !j->buffered && j->sent == j->wire.len && !j->log[0]) {
		struct http_request req;
		struct pollfd pf = { j->fd, POLLIN, 0 };
		struct buf out = BUF_INIT;
		const char *msg = NULL;
		size_t body_len;
		char *copy = NULL;
		bool keep = false, go, refused;
		uint8_t chunk[16384];
		ssize_t n;
		int r;

		pthread_mutex_lock(&p->lock);
		go = !p->stopping && p->jobs <= MAX_WORKERS / 2;
		pthread_mutex_unlock(&p->lock);
		if (!go || poll(&pf, 1, LINGER_MS) != 1)
			return;
		n = recv(j->fd, chunk, sizeof(chunk), MSG_DONTWAIT);
		if (n <= 0) /* the end, or an error: the loop sees it too */
			return;
		buf_append(&j->unread, chunk, (size_t)n);
		explicit_bzero(chunk, (size_t)n);
		r = http_take_request(j->unread.data, j->unread.len, MAX_BODY, &req, &copy, &body_len, &keep, &msg);
		if (r == 1) {
			if (j->unread.len > HTTP_MAX_HEAD + MAX_BODY)
				return;
			continue; /* the rest of it is on the way */
		}
		if (r != 0)
			return;
		refused = fill_job(j, &req, (const uint8_t *)copy + req.head_len, body_len, &out) < 0;
		buf_free(&out);
		if (!refused) {
			size_t used = req.head_len + body_len;

			/* taken: off the bytes that would go back */
			memmove(j->unread.data, j->unread.data + used, j->unread.len - used);
			j->unread.len -= used;
			j->keep_alive = keep;
			j->buffered = j->unread.len > 0;
			memset(j->phase_us, 0, sizeof(j->phase_us));
			j->timed = false;
			j->status = 0;
			j->sent = 0;
			buf_reset(&j->out);
			buf_reset(&j->wire);
			run_job(j);
			answer(j);
		}
		explicit_bzero(copy, req.head_len + body_len);
		free(copy);
		if (refused)
			return; /* the loop answers it from the bytes, as it answers any such request */
	}
}

/* A worker: takes jobs from the queue until the proxy stops or none came for WORKER_IDLE_S. */
static void *worker(void *arg)
{
	struct kms_proxy *p = arg;
	struct timespec until;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct job *j;
		int rc = 0;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += WORKER_IDLE_S;
		while (!p->queue && !p->stopping && rc != ETIMEDOUT) {
			p->waiting++;
			rc = pthread_cond_timedwait(&p->wake, &p->lock, &until);
			p->waiting--;
		}
		if (!p->queue)
			break;
		j = p->queue;
		p->queue = j->next;
		if (!p->queue)
			p->queue_tail = &p->queue;
		p->queued--;
		pthread_mutex_unlock(&p->lock);
		if (j->conn) {
			run_job(j);
			answer(j);
			keep_serving(j);
		} else {
			region_job(j);
		}
		/* hand the finished job to the loop; a pipe write of a pointer is atomic */
		if (write(p->pipe_wr, &j, sizeof(j)) != sizeof(j))
			abort();
		pthread_mutex_lock(&p->lock);
	}
	p->threads--;
	pthread_cond_broadcast(&p->gone);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void job_free(struct job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	buf_free_secret(&j->body);
	buf_free_secret(&j->out);
	buf_free_secret(&j->wire);
	buf_free_secret(&j->unread);
	free(j);
}

static void on_done(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct kms_proxy *p = io->data;
	struct job *j;

	while (read(p->pipe_rd, &j, sizeof(j)) == sizeof(j)) {
		if (!j->conn) {
			if (j->status < 0) {
				log_error("KMS proxy: %s", j->log);
				if (p->on_fatal)
					p->on_fatal(p->fatal_data, j->log);
			} else {
				snprintf(p->region, sizeof(p->region), "%s", j->region);
				log_info("KMS proxy: region %s (from IMDS)", p->region);
			}
		} else {
			if (j->log[0])
				log_info("%s", j->log);
			http_respond_raw(j->conn, &j->wire, j->sent, j->keep_alive, j->unread.data, j->unread.len);
		}
		job_free(j);
		pthread_mutex_lock(&p->lock);
		p->jobs--;
		pthread_mutex_unlock(&p->lock);
	}
}

/* Queues j for a worker, starting one when none is waiting for it. Fails (EAGAIN) when
 * MAX_WORKERS jobs are already in hand. */
static int submit(struct job *j)
{
	struct kms_proxy *p = j->p;
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	if (p->jobs >= MAX_WORKERS) {
		pthread_mutex_unlock(&p->lock);
		return EAGAIN;
	}
	/* Each queued job has a waiting worker or starts one, so no job waits for another one's
	 * upstream call: threads = running + waiting < jobs <= MAX_WORKERS whenever a new one
	 * is needed. */
	if (p->waiting > p->queued) {
		pthread_cond_signal(&p->wake);
	} else {
		pthread_t t;
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		rc = pthread_create(&t, &attr, worker, p);
		pthread_attr_destroy(&attr);
		if (rc == 0)
			p->threads++;
		else if (p->threads == 0) {
			pthread_mutex_unlock(&p->lock);
			return rc;
		}
		/* with no new thread, a running one takes it when it is done */
	}
	j->next = NULL;
	*p->queue_tail = j;
	p->queue_tail = &j->next;
	p->queued++;
	p->jobs++;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* Region and service from the app's SigV4 (header, or X-Amz-Credential in the query). */
static int scope(const struct http_request *req, char *region, size_t rsize, char *service, size_t ssize)
{
	const char *auth = http_header_get(req, "authorization"), *cred = NULL;
	char tmp[512];

	if (auth && (cred = strstr(auth, "Credential=")) != NULL) {
		cred += 11;
	} else {
		const char *q = strchr(req->target, '?');

		for (const char *p = q; p && *p; p = strchr(p + 1, '&'))
			if (!strncasecmp(p + 1, "X-Amz-Credential=", 17)) {
				cred = p + 18;
				break;
			}
	}
	if (!cred)
		return -1;
	snprintf(tmp, sizeof(tmp), "%.*s", (int)strcspn(cred, ", &"), cred);
	/* in a query the slashes come URL-encoded */
	for (char *r = tmp, *w = tmp;; r++, w++) {
		if (r[0] == '%' && r[1] == '2' && (r[2] == 'F' || r[2] == 'f')) {
			*w = '/';
			r += 2;
		} else if (!(*w = *r)) {
			break;
		}
	}
	{
		char *parts[5], *save = NULL;
		size_t n = 0;

		for (char *t = strtok_r(tmp, "/", &save); t && n < 5; t = strtok_r(NULL, "/", &save))
			parts[n++] = t;
		if (n != 5 || strcmp(parts[4], "aws4_request"))
			return -1;
		snprintf(region, rsize, "%s", parts[2]);
		snprintf(service, ssize, "%s", parts[3]);
	}
	return 0;
}

/* Fills j with the request, or returns -1 with the error answer in out when the request is
 * refused as it stands. */
static int fill_job(struct job *j, const struct http_request *req, const uint8_t *body, size_t len, struct buf *out)
{
	const char *target = http_header_get(req, "x-amz-target");
	char region[64], service[64];

	if (scope(req, region, sizeof(region), service, sizeof(service)) < 0) {
		kms_error(out, "MissingAuthenticationTokenException", "No AWS SigV4 found in the request");
		return -1;
	}
	if (strcmp(service, "kms")) {
		kms_error(out, "InvalidSignatureException", "Received request signed for a non-KMS (%s) service", service);
		return -1;
	}
	if (!target || strlen(target) >= sizeof(j->target)) {
		kms_error(out, "UnknownOperationException", "KMS Action is missing");
		return -1;
	}
	snprintf(j->target, sizeof(j->target), "%s", target);
	snprintf(j->region, sizeof(j->region), "%s", region);
	/* forwarded with the query dropped, as upstream */
	snprintf(j->path, sizeof(j->path), "%.*s", (int)strcspn(req->target, "?"), req->target);
	snprintf(j->method, sizeof(j->method), "%s", req->method);
	clock_gettime(CLOCK_MONOTONIC, &j->queued);
	buf_reset(&j->body);
	buf_append(&j->body, body, len);
	return 0;
}

static void handle(void *ctx, struct http_conn *c, const struct http_request *req, const uint8_t *body, size_t len)
{
	struct kms_proxy *p = ctx;
	struct buf out = BUF_INIT;
	struct job *j = calloc(1, sizeof(*j));
	int rc;

	if (!j)
		abort();
	j->p = p;
	j->conn = c;
	j->fd = -1;
	if (fill_job(j, req, body, len, &out) < 0) {
		job_free(j);
		http_respond(c, 400, "application/x-amz-json-1.1", out.data, out.len, NULL);
		buf_free(&out);
		return;
	}
	j->keep_alive = http_conn_keeps_alive(c);
	j->buffered = http_conn_buffered(c) > 0;
	j->fd = http_conn_dup(c);
	rc = submit(j);
	if (rc != 0) {
		job_free(j);
		if (rc == EAGAIN) {
			kms_error(&out, "ThrottlingException", "the KMS proxy is serving %d requests; retry", MAX_WORKERS);
			http_respond(c, 429, "application/x-amz-json-1.1", out.data, out.len, NULL);
		} else {
			kms_error(&out, "KMSProxyException", "cannot start a worker");
			http_respond(c, 500, "application/x-amz-json-1.1", out.data, out.len, NULL);
		}
		buf_free(&out);
	}
}

int kms_proxy_start(struct loop *l, const struct manifest *m, const char *dev_root,
		    void (*on_fatal)(void *data, const char *msg), void *fatal_data, struct kms_proxy **out,
		    struct err *err)
{
	struct kms_proxy *p = calloc(1, sizeof(*p));
	struct job *rj;
	int fds[2];
	unsigned char *der = NULL;
	int len;

	if (!p)
		abort();
	p->loop = l;
	p->m = m;
	p->pipe_rd = p->pipe_wr = -1;
	p->on_fatal = on_fatal;
	p->fatal_data = fatal_data;
	p->queue_tail = &p->queue;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->creds_lock, NULL);
	pthread_mutex_init(&p->doc_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_cond_init(&p->gone, NULL);
	/* its own copy: a worker may still use it after odyn let its own go */
	if (policy_new((const char *const *)m->egress_allow, m->n_egress_allow, (const char *const *)m->egress_deny,
		       m->n_egress_deny, &p->policy, err) < 0)
		goto fail;
	p->tls = aws_tls_ctx(dev_root, err);
	if (!p->tls)
		goto fail;
	p->pool = aws_pool_new(POOL_IDLE_MS);
	p->key = EVP_RSA_gen(2048);
	len = p->key ? i2d_PUBKEY(p->key, &der) : -1;
	if (len <= 0) {
		err_set(err, ENOMEM, "the KMS proxy's RSA key");
		goto fail;
	}
	buf_append(&p->spki, der, (size_t)len);
	OPENSSL_free(der);
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		err_sys(err, "pipe");
		goto fail;
	}
	p->pipe_rd = fds[0];
	p->pipe_wr = fds[1];
	/* workers block on a full pipe rather than lose an answer */
	fcntl(p->pipe_wr, F_SETFL, fcntl(p->pipe_wr, F_GETFL) & ~O_NONBLOCK);
	if (loop_io_add(l, &p->pipe_io, p->pipe_rd, EPOLLIN, on_done, p, err) < 0 ||
	    http_server_start(l, m->kms_proxy_port, MAX_BODY, handle, p, &p->srv, err) < 0)
		goto fail;
	rj = calloc(1, sizeof(*rj));
	if (!rj)
		abort();
	rj->p = p;
	rj->fd = -1;
	if (submit(rj) != 0) {
		free(rj);
		err_set(err, EAGAIN, "cannot start a worker");
		goto fail;
	}
	*out = p;
	return 0;
fail:
	kms_proxy_stop(p);
	return err_wrap(err, "KMS proxy");
}

static void free_proxy(struct kms_proxy *p)
{
	if (p->pipe_io.registered)
		loop_io_del(p->loop, &p->pipe_io);
	if (p->pipe_rd >= 0)
		close(p->pipe_rd);
	if (p->pipe_wr >= 0)
		close(p->pipe_wr);
	aws_pool_free(p->pool);
	SSL_CTX_free(p->tls);
	EVP_PKEY_free(p->key);
	policy_free(p->policy);
	nsm_close(p->nsm);
	buf_free(&p->spki);
	buf_free(&p->doc_b64);
	pthread_mutex_destroy(&p->doc_lock);
	explicit_bzero(&p->creds, sizeof(p->creds));
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->creds_lock);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->gone);
	free(p);
}

void kms_proxy_stop(struct kms_proxy *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->timed) {
		char line[512];
		size_t o = 0;

		for (int i = 0; i < PH_N; i++)
			o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s %.2f", i ? ", " : "", phase_names[i],
					      (double)p->phase_us[i] / (double)p->timed / 1000.0);
		pthread_mutex_lock(&p->doc_lock);
		log_info("kms proxy: %lu attested calls over %lu TLS connections to KMS, %lu attestation documents over "
			 "%lu NSM connections; mean ms per call: %s",
			 p->timed, aws_pool_opened(p->pool), p->docs, p->nsm_opened, line);
		pthread_mutex_unlock(&p->doc_lock);
	}
	pthread_mutex_unlock(&p->lock);
	http_server_stop(p->srv);
	p->srv = NULL;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->wake);
	/* A job still in hand holds p (its worker may be waiting for KMS for up to TIMEOUT_MS):
	 * then p stays, small, until the process ends. Waiting workers end at once. */
	if (p->jobs) {
		pthread_mutex_unlock(&p->lock);
		return;
	}
	while (p->threads)
		pthread_cond_wait(&p->gone, &p->lock);
	pthread_mutex_unlock(&p->lock);
	free_proxy(p);
}
