/* HTTP request heads, authorities and absolute URLs. */
#include "harness.h"

#include "codec/http.h"

static enum http_parse_result parse(const char *text, struct http_request *req, char *store)
{
	strcpy(store, text);
	return http_parse_request(store, strlen(store), req);
}

static void test_request_heads(void)
{
	static char store[8192];
	struct http_request r;

	CHECK_EQ_INT(parse("CONNECT kms.us-east-1.amazonaws.com:443 HTTP/1.1\r\nHost: kms.us-east-1.amazonaws.com:443\r\n"
			   "Proxy-Connection: keep-alive\r\n\r\nTLSDATA", &r, store), HTTP_OK);
	CHECK_STR(r.method, "CONNECT");
	CHECK_STR(r.target, "kms.us-east-1.amazonaws.com:443");
	CHECK_EQ_INT(r.minor_version, 1);
	CHECK_EQ_INT(r.n_headers, 2);
	CHECK_STR(http_header_get(&r, "proxy-connection"), "keep-alive");
	CHECK(memcmp(store + r.head_len, "TLSDATA", 7) == 0);
	CHECK_EQ_INT(parse("GET http://a/ HTTP/1.0\r\nX:  padded \t\r\n\r\n", &r, store), HTTP_OK);
	CHECK_STR(http_header_get(&r, "x"), "padded");
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nHost: a\r\n", &r, store), HTTP_INCOMPLETE);
	CHECK_EQ_INT(parse("GET / HTTP/2\r\n\r\n", &r, store), HTTP_BAD);
	CHECK_EQ_INT(parse("GET  / HTTP/1.1\r\n\r\n", &r, store), HTTP_BAD);
	CHECK_EQ_INT(parse("G(T / HTTP/1.1\r\n\r\n", &r, store), HTTP_BAD);
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &r, store), HTTP_BAD);
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", &r, store), HTTP_BAD);
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", &r, store), HTTP_BAD);
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\n: b\r\n\r\n", &r, store), HTTP_BAD);
}

static void test_too_large(void)
{
	static char big[HTTP_MAX_HEAD + 100];
	struct http_request r;

	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	CHECK_EQ_INT(http_parse_request(big, sizeof(big), &r), HTTP_TOO_LARGE);
}

static void test_authority(void)
{
	char *h;
	int p;

	CHECK_EQ_INT(http_split_authority("example.com:443", 15, &h, &p), 0);
	CHECK_STR(h, "example.com");
	CHECK_EQ_INT(p, 443);
	free(h);
	CHECK_EQ_INT(http_split_authority("[::1]:8080", 10, &h, &p), 0);
	CHECK_STR(h, "::1");
	CHECK_EQ_INT(p, 8080);
	free(h);
	CHECK_EQ_INT(http_split_authority("example.com", 11, &h, &p), 0);
	CHECK_EQ_INT(p, -1);
	free(h);
	CHECK(http_split_authority("example.com:", 12, &h, &p) < 0);
	CHECK(http_split_authority("example.com:99999", 17, &h, &p) < 0);
	CHECK(http_split_authority("example.com:8x", 14, &h, &p) < 0);
	CHECK(http_split_authority("::1:80", 6, &h, &p) < 0);
	CHECK(http_split_authority("[::1", 4, &h, &p) < 0);
	CHECK(http_split_authority(":80", 3, &h, &p) < 0);
}

static void test_absolute_urls(void)
{
	struct http_url u;

	CHECK_EQ_INT(http_parse_absolute_url("http://Example.com:8080/a/b?q=1#frag", &u), 0);
	CHECK_STR(u.host, "Example.com");
	CHECK_EQ_INT(u.port, 8080);
	CHECK_STR(u.authority, "Example.com:8080");
	CHECK_STR(u.path, "/a/b?q=1");
	http_url_clear(&u);
	CHECK_EQ_INT(http_parse_absolute_url("http://169.254.169.254", &u), 0);
	CHECK_STR(u.path, "/");
	CHECK_EQ_INT(u.port, -1);
	http_url_clear(&u);
	CHECK_EQ_INT(http_parse_absolute_url("http://h?x=1", &u), 0);
	CHECK_STR(u.path, "/?x=1");
	http_url_clear(&u);
	CHECK(http_parse_absolute_url("/relative", &u) < 0);
	CHECK(http_parse_absolute_url("https://secure/", &u) < 0);
	CHECK(http_parse_absolute_url("http:///nohost", &u) < 0);
	CHECK(http_parse_absolute_url("http://user@evil.com/", &u) < 0);
}

static void test_response(void)
{
	struct buf b = BUF_INIT;

	http_put_response(&b, 401, "text/plain", "blocked by egress security policy", 33);
	CHECK_STR(buf_cstr(&b), "HTTP/1.1 401 Unauthorized\r\ncontent-length: 33\r\ncontent-type: text/plain\r\n\r\n"
				"blocked by egress security policy");
	buf_free(&b);
}

TEST_MAIN(T(test_request_heads), T(test_too_large), T(test_authority), T(test_absolute_urls), T(test_response))
