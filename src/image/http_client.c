/* libcurl glue: one easy handle per request, bodies routed by hc_req. */
#include "image/http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/fs.h"

#define DEFAULT_MAX_BODY (16u << 20)
#define MAX_LINE (1u << 20)

struct call {
	const struct hc_req *r;
	struct hc_resp *resp;
	CURL *curl;
	struct buf line;
	struct err *err;
	int failed; /* a sink failed; err holds why */
};

static bool is_2xx(struct call *c)
{
	long status = 0;

	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	return status >= 200 && status < 300;
}

static int buffer_body(struct call *c, const char *data, size_t len)
{
	size_t max = c->r->max_body ? c->r->max_body : DEFAULT_MAX_BODY;

	if (c->resp->body.len + len > max) {
		c->failed = err_set(c->err, EFBIG, "response larger than %zu bytes", max);
		return -1;
	}
	buf_append(&c->resp->body, data, len);
	return 0;
}

static int feed_lines(struct call *c, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] != '\n') {
			if (c->line.len >= MAX_LINE) {
				c->failed = err_set(c->err, EFBIG, "response line longer than %u bytes", MAX_LINE);
				return -1;
			}
			buf_append_byte(&c->line, (uint8_t)data[i]);
			continue;
		}
		if (c->line.len && c->r->on_line(c->r->ctx, buf_cstr(&c->line), c->line.len, c->err) < 0) {
			c->failed = -1;
			return -1;
		}
		buf_reset(&c->line);
	}
	return 0;
}

static size_t on_write(char *data, size_t size, size_t n, void *ctx)
{
	struct call *c = ctx;
	size_t len = size * n;

	c->resp->received += len;
	if (!is_2xx(c) || (!c->r->out_to_fd && !c->r->on_line && !c->r->on_data)) {
		if (buffer_body(c, data, len) < 0)
			return 0;
	} else if (c->r->on_data) {
		if (c->r->on_data(c->r->ctx, data, len, c->err) < 0) {
			c->failed = -1;
			return 0;
		}
	} else if (c->r->on_line) {
		if (feed_lines(c, data, len) < 0)
			return 0;
	} else {
		if (fs_write_full(c->r->out_fd, data, len) < 0) {
			c->failed = err_sys(c->err, "write");
			return 0;
		}
		if (c->r->out_hash)
			sha_update(c->r->out_hash, data, len);
	}
	return len;
}

static void take_header(char **slot, const char *v, size_t len)
{
	while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
		len--;
	while (len && *v == ' ') {
		v++;
		len--;
	}
	free(*slot);
	*slot = strndup(v, len);
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
	struct call *c = ctx;
	size_t len = size * n;
	static const struct {
		const char *name;
		size_t off;
	} wanted[] = {
		{ "content-type:", offsetof(struct hc_resp, content_type) },
		{ "www-authenticate:", offsetof(struct hc_resp, www_authenticate) },
		{ "docker-content-digest:", offsetof(struct hc_resp, docker_content_digest) },
	};

	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
		size_t k = strlen(wanted[i].name);

		if (len > k && !strncasecmp(data, wanted[i].name, k))
			take_header((char **)((char *)c->resp + wanted[i].off), data + k, len - k);
	}
	return len;
}

static int on_xfer(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct call *c = ctx;

	if (ultotal > 0 && ulnow < ultotal)
		c->r->on_progress(c->r->ctx, (uint64_t)ulnow, (uint64_t)ultotal);
	else
		c->r->on_progress(c->r->ctx, (uint64_t)dlnow, dltotal > 0 ? (uint64_t)dltotal : 0);
	return 0;
}

struct body_src {
	const struct hc_req *r;
	const uint8_t *p;
	uint64_t left;
};

static size_t on_read(char *out, size_t size, size_t n, void *ctx)
{
	struct body_src *s = ctx;
	size_t want = size * n;
	ssize_t got;

	if (want > s->left)
		want = (size_t)s->left;
	if (!want)
		return 0;
	if (s->p) {
		memcpy(out, s->p, want);
		s->p += want;
		s->left -= want;
		return want;
	}
	got = fs_read_full(s->r->body_fd, out, want);
	if (got <= 0)
		return CURL_READFUNC_ABORT;
	s->left -= (uint64_t)got;
	return (size_t)got;
}

static void global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int hc_do(const struct hc_req *r, struct hc_resp *resp, struct err *err)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct call c = { .r = r, .resp = resp, .err = err };
	struct curl_slist *hdrs = NULL;
	struct body_src src = { r, r->body, r->body_len };
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode cc;
	int rc = -1;

	pthread_once(&once, global_init);
	memset(resp, 0, sizeof(*resp));
	c.curl = curl_easy_init();
	if (!c.curl)
		return err_set(err, ENOMEM, "curl");
	for (const char *const *h = r->headers; h && *h; h++)
		hdrs = curl_slist_append(hdrs, *h);
	/* no "Expect: 100-continue" round trip for uploads */
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(c.curl, CURLOPT_URL, r->url);
	curl_easy_setopt(c.curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c.curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c.curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c.curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c.curl, CURLOPT_CONNECTTIMEOUT, r->connect_timeout_s ? r->connect_timeout_s : 10L);
	if (r->timeout_s)
		curl_easy_setopt(c.curl, CURLOPT_TIMEOUT, r->timeout_s);
	if (r->unix_socket)
		curl_easy_setopt(c.curl, CURLOPT_UNIX_SOCKET_PATH, r->unix_socket);
	if (r->follow_redirects) {
		curl_easy_setopt(c.curl, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c.curl, CURLOPT_MAXREDIRS, 5L);
		curl_easy_setopt(c.curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	}
	if (r->tls_ca)
		curl_easy_setopt(c.curl, CURLOPT_CAINFO, r->tls_ca);
	if (r->tls_cert)
		curl_easy_setopt(c.curl, CURLOPT_SSLCERT, r->tls_cert);
	if (r->tls_key)
		curl_easy_setopt(c.curl, CURLOPT_SSLKEY, r->tls_key);
	curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &c);
	curl_easy_setopt(c.curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c.curl, CURLOPT_HEADERDATA, &c);
	if (r->on_progress) {
		curl_easy_setopt(c.curl, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c.curl, CURLOPT_XFERINFOFUNCTION, on_xfer);
		curl_easy_setopt(c.curl, CURLOPT_XFERINFODATA, &c);
	}
	if (r->body || r->body_from_fd) {
		curl_easy_setopt(c.curl, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c.curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
		curl_easy_setopt(c.curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c.curl, CURLOPT_READDATA, &src);
	} else if (r->method && !strcmp(r->method, "POST")) {
		curl_easy_setopt(c.curl, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(c.curl, CURLOPT_POSTFIELDSIZE, 0L);
	}
	/* after UPLOAD, which would make it a PUT */
	if (r->method && strcmp(r->method, "GET"))
		curl_easy_setopt(c.curl, CURLOPT_CUSTOMREQUEST, r->method);
	if (r->method && !strcmp(r->method, "HEAD"))
		curl_easy_setopt(c.curl, CURLOPT_NOBODY, 1L);
	cc = curl_easy_perform(c.curl);
	curl_easy_getinfo(c.curl, CURLINFO_RESPONSE_CODE, &resp->status);
	if (c.failed) {
		rc = -1;
	} else if (cc != CURLE_OK) {
		err_set(err, EIO, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
	} else {
		if (r->on_line && c.line.len && is_2xx(&c) && r->on_line(r->ctx, buf_cstr(&c.line), c.line.len, err) < 0)
			goto out;
		rc = 0;
	}
out:
	buf_free(&c.line);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c.curl);
	if (rc < 0)
		hc_resp_free(resp);
	return rc;
}

void hc_resp_free(struct hc_resp *resp)
{
	buf_free(&resp->body);
	free(resp->content_type);
	free(resp->www_authenticate);
	free(resp->docker_content_digest);
	resp->content_type = resp->www_authenticate = resp->docker_content_digest = NULL;
}

char *hc_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		abort();
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = 0;
	return out;
}
