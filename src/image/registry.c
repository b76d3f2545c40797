/* OCI distribution client: the image is fetched into a temporary OCI layout, then read from it. */
#include "image/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/hex.h"
#include "base/log.h"
#include "base/progress.h"
#include "crypto/sha.h"
#include "image/http_client.h"

#define MAX_MANIFEST (4u << 20)
#define MAX_CONFIG (16u << 20)

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

struct reg {
	char *host;  /* host[:port] */
	char *repo;
	char *ref;   /* tag or sha256:… */
	char *base;  /* scheme://host */
	char *auth;  /* "Authorization: …" once known */
	char *basic; /* base64 user:password from the Docker client's config, or NULL */
	const char *what; /* current blob, for progress */
};

static bool loopback(const char *host)
{
	return !strncmp(host, "localhost", 9) || !strncmp(host, "127.", 4) || !strncmp(host, "[::1]", 5);
}

/* Registries named in ENCLAVER_INSECURE_REGISTRIES (comma-separated host[:port]), and
 * loopback ones, are spoken to over plain HTTP, as the Docker daemon does. */
static bool insecure(const char *host)
{
	const char *list = getenv("ENCLAVER_INSECURE_REGISTRIES");
	size_t n = strlen(host);

	if (loopback(host))
		return true;
	for (const char *p = list; p && *p;) {
		size_t k = strcspn(p, ",");

		if (k == n && !strncmp(p, host, n))
			return true;
		p += k + (p[k] == ',');
	}
	return false;
}

bool registry_names_host(const char *ref)
{
	const char *slash = strchr(ref, '/');
	size_t n = slash ? (size_t)(slash - ref) : 0;

	return n && (memchr(ref, '.', n) || memchr(ref, ':', n) || (n == 9 && !strncmp(ref, "localhost", 9)));
}

static int parse_ref(struct reg *r, const char *ref, struct err *err)
{
	const char *slash = strchr(ref, '/'), *at, *tag;
	size_t hl;

	if (!slash || slash == ref)
		return err_set(err, EINVAL, "name the registry: docker://REGISTRY/REPO[:TAG|@DIGEST]");
	hl = (size_t)(slash - ref);
	r->host = strndup(ref, hl);
	if (!registry_names_host(ref))
		return err_set(err, EINVAL, "\"%s\" is not a registry host: docker://REGISTRY/REPO[:TAG|@DIGEST]", r->host);
	at = strchr(slash, '@');
	if (at) {
		r->repo = strndup(slash + 1, (size_t)(at - slash - 1));
		r->ref = strdup(at + 1);
		if (strncmp(r->ref, "sha256:", 7) || strlen(r->ref) != 71 || strspn(r->ref + 7, "0123456789abcdef") != 64)
			return err_set(err, EINVAL, "digest \"%s\" is not sha256:<64 hex>", r->ref);
	} else {
		tag = strrchr(slash, ':');
		r->repo = tag ? strndup(slash + 1, (size_t)(tag - slash - 1)) : strdup(slash + 1);
		r->ref = strdup(tag ? tag + 1 : "latest");
	}
	if (!*r->repo || strspn(r->repo, "abcdefghijklmnopqrstuvwxyz0123456789._-/") != strlen(r->repo) ||
	    strstr(r->repo, "..") || !*r->ref ||
	    strspn(r->ref, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:") != strlen(r->ref))
		return err_set(err, EINVAL, "not a valid repository and tag");
	if (asprintf(&r->base, "%s://%s", insecure(r->host) ? "http" : "https", r->host) < 0)
		abort();
	return 0;
}

/* The Docker client's stored credentials for this registry, if any. */
static void load_basic(struct reg *r)
{
	const char *dir = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
	char path[4096];
	json_t *cfg, *a;

	if (dir && *dir)
		snprintf(path, sizeof(path), "%s/config.json", dir);
	else
		snprintf(path, sizeof(path), "%s/.docker/config.json", home ? home : "/root");
	cfg = json_load_file(path, 0, NULL);
	a = json_object_get(json_object_get(json_object_get(cfg, "auths"), r->host), "auth");
	if (json_is_string(a) && strspn(json_string_value(a),
					"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") ==
					 strlen(json_string_value(a)))
		r->basic = strdup(json_string_value(a));
	json_decref(cfg);
}

/* A parameter of a WWW-Authenticate challenge: key="value". */
char *registry_challenge_param(const char *h, const char *key)
{
	size_t k = strlen(key);

	for (const char *p = h; (p = strstr(p, key)) != NULL; p += k) {
		const char *e;

		if ((p != h && p[-1] != ' ' && p[-1] != ',') || strncmp(p + k, "=\"", 2))
			continue;
		e = strchr(p + k + 2, '"');
		if (e)
			return strndup(p + k + 2, (size_t)(e - p - k - 2));
	}
	return NULL;
}

/* Answers a 401: a bearer token from the realm the registry names, or Basic credentials. */
static int authenticate(struct reg *r, const char *challenge, struct err *err)
{
	char *realm = NULL, *service = NULL, *scope = NULL, *url = NULL, *hdr = NULL;
	struct hc_req q = { .timeout_s = 60, .max_body = 1u << 20 };
	struct hc_resp resp = { 0 };
	const char *headers[2] = { NULL, NULL };
	json_t *j = NULL;
	const char *tok;
	int rc = -1;

	if (!challenge)
		return err_set(err, EACCES, "the registry refused access and asked for no credentials");
	if (!strncasecmp(challenge, "Basic", 5)) {
		if (!r->basic)
			return err_set(err, EACCES, "the registry wants a login: run docker login %s", r->host);
		free(r->auth);
		if (asprintf(&r->auth, "Authorization: Basic %s", r->basic) < 0)
			abort();
		return 0;
	}
	if (strncasecmp(challenge, "Bearer", 6))
		return err_set(err, EACCES, "unsupported authentication challenge: %.60s", challenge);
	realm = registry_challenge_param(challenge, "realm");
	service = registry_challenge_param(challenge, "service");
	scope = registry_challenge_param(challenge, "scope");
	if (!realm || (strncmp(realm, "https://", 8) && strncmp(realm, "http://", 7))) {
		err_set(err, EACCES, "the registry's token realm is not an http(s) URL");
		goto out;
	}
	{
		char *es = service ? hc_escape(service) : NULL, *sc, *esc;

		if (scope)
			sc = strdup(scope);
		else if (asprintf(&sc, "repository:%s:pull", r->repo) < 0)
			abort();
		esc = hc_escape(sc);
		if (asprintf(&url, "%s%s%s%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?", es ? "service=" : "",
			     es ? es : "", esc) < 0)
			abort();
		free(es);
		free(sc);
		free(esc);
	}
	if (r->basic) {
		if (asprintf(&hdr, "Authorization: Basic %s", r->basic) < 0)
			abort();
		headers[0] = hdr;
	}
	q.url = url;
	q.headers = headers;
	if (hc_do(&q, &resp, err) < 0) {
		err_wrap(err, "token from %s", realm);
		goto out;
	}
	if (resp.status != 200) {
		err_set(err, EACCES, "token from %s: HTTP %ld%s", realm, resp.status,
			r->basic ? "" : " (for a private repository, run docker login first)");
		goto out;
	}
	j = json_loadb((const char *)resp.body.data, resp.body.len, 0, NULL);
	tok = json_string_value(json_object_get(j, "token"));
	if (!tok)
		tok = json_string_value(json_object_get(j, "access_token"));
	if (!tok || !*tok || strpbrk(tok, "\r\n")) {
		err_set(err, EACCES, "token from %s: no token in the answer", realm);
		goto out;
	}
	free(r->auth);
	if (asprintf(&r->auth, "Authorization: Bearer %s", tok) < 0)
		abort();
	rc = 0;
out:
	if (hdr)
		explicit_bzero(hdr, strlen(hdr));
	free(hdr);
	free(realm);
	free(service);
	free(scope);
	free(url);
	json_decref(j);
	hc_resp_free(&resp);
	return rc;
}

static void blob_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct reg *r = ctx;
	char a[32], b[32];

	progress_size(done, a);
	progress_size(total, b);
	progress_show("%s: %s / %s", r->what, a, total ? b : "?");
}

/* GET base/v2/<repo>/<kind>/<ref>, authenticating once on a 401. q routes the body. */
static int reg_get(struct reg *r, const char *kind, const char *ref, const char *const *extra, struct hc_req *q,
		   struct hc_resp *resp, struct err *err)
{
	char *url;
	int rc = -1;

	if (asprintf(&url, "%s/v2/%s/%s/%s", r->base, r->repo, kind, ref) < 0)
		abort();
	for (int attempt = 0; attempt < 2; attempt++) {
		const char *headers[8];
		size_t n = 0;

		for (const char *const *e = extra; e && *e && n < 6; e++)
			headers[n++] = *e;
		if (r->auth)
			headers[n++] = r->auth;
		headers[n] = NULL;
		q->url = url;
		q->headers = headers;
		q->follow_redirects = true;
		if (hc_do(q, resp, err) < 0) {
			err_wrap(err, "registry %s", r->host);
			break;
		}
		if (resp->status == 401 && attempt == 0) {
			int a = authenticate(r, resp->www_authenticate, err);

			hc_resp_free(resp);
			if (a < 0)
				break;
			if (q->out_to_fd && (ftruncate(q->out_fd, 0) < 0 || lseek(q->out_fd, 0, SEEK_SET) < 0)) {
				err_sys(err, "temporary file");
				break;
			}
			continue;
		}
		if (resp->status != 200) {
			err_set(err, resp->status == 404 ? ENOENT : EIO, "registry %s: %s/%s %s: HTTP %ld", r->host, r->repo,
				kind, ref, resp->status);
			hc_resp_free(resp);
			break;
		}
		rc = 0;
		break;
	}
	free(url);
	return rc;
}

static int digest_of(const void *data, size_t len, char out[72])
{
	uint8_t d[32];

	sha256(data, len, d);
	memcpy(out, "sha256:", 7);
	hex_encode(d, 32, out + 7);
	return 0;
}

static int write_blob(const char *dir, const char *digest, const void *data, size_t len, struct err *err)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, digest + 7);
	return fs_write_file_atomic(path, data, len, 0644, err);
}

/* Fetches a manifest by tag or digest; *body and *digest are the verified bytes and digest. */
static int get_manifest(struct reg *r, const char *ref, struct buf *body, char digest[72], char **media_type,
			struct err *err)
{
	static const char *const accept[] = {
		"Accept: " MT_OCI_INDEX ", " MT_DOCKER_LIST ", " MT_OCI_MANIFEST ", " MT_DOCKER_MANIFEST, NULL
	};
	struct hc_req q = { .timeout_s = 120, .max_body = MAX_MANIFEST };
	struct hc_resp resp;
	json_t *j;
	const char *mt;

	if (reg_get(r, "manifests", ref, accept, &q, &resp, err) < 0)
		return -1;
	digest_of(resp.body.data, resp.body.len, digest);
	if (!strncmp(ref, "sha256:", 7) && strcmp(ref, digest)) {
		err_set(err, EINVAL, "manifest %s: digest mismatch: the registry sent %s", ref, digest);
		goto fail;
	}
	if (resp.docker_content_digest && !strncmp(resp.docker_content_digest, "sha256:", 7) &&
	    strcmp(resp.docker_content_digest, digest)) {
		err_set(err, EINVAL, "manifest %s: digest mismatch: the registry says %s, the bytes are %s", ref,
			resp.docker_content_digest, digest);
		goto fail;
	}
	j = json_loadb((const char *)resp.body.data, resp.body.len, 0, NULL);
	mt = json_string_value(json_object_get(j, "mediaType"));
	if (!mt)
		mt = json_object_get(j, "manifests") ? MT_OCI_INDEX : resp.content_type ? resp.content_type : "";
	*media_type = strdup(mt);
	json_decref(j);
	if (!j) {
		err_set(err, EINVAL, "manifest %s: not JSON", ref);
		goto fail;
	}
	*body = resp.body;
	resp.body = (struct buf)BUF_INIT;
	hc_resp_free(&resp);
	return 0;
fail:
	hc_resp_free(&resp);
	return -1;
}

static int get_blob(struct reg *r, const char *dir, const char *digest, uint64_t size, const char *what,
		    struct err *err)
{
	char path[4096], tmp[4200], got[72];
	struct sha_ctx sha;
	uint8_t d[32];
	struct hc_req q = { .out_to_fd = true, .out_hash = &sha, .ctx = r };
	struct hc_resp resp;
	int fd, rc = -1;

	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, digest + 7);
	snprintf(tmp, sizeof(tmp), "%s.part", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_sys(err, "%s", tmp);
	q.out_fd = fd;
	r->what = what;
	if (progress_on())
		q.on_progress = blob_progress;
	sha_init(&sha, "SHA256");
	if (reg_get(r, "blobs", digest, NULL, &q, &resp, err) < 0) {
		sha_free(&sha);
		goto out;
	}
	progress_end();
	sha_final(&sha, d);
	memcpy(got, "sha256:", 7);
	hex_encode(d, 32, got + 7);
	if (resp.received != size && size) {
		err_set(err, EINVAL, "blob %s: the registry sent %llu bytes, the manifest says %llu", digest,
			(unsigned long long)resp.received, (unsigned long long)size);
	} else if (strcmp(got, digest)) {
		err_set(err, EINVAL, "blob %s: digest mismatch: the registry sent %s", digest, got);
	} else if (rename(tmp, path) < 0) {
		err_sys(err, "%s", path);
	} else {
		rc = 0;
	}
	hc_resp_free(&resp);
out:
	progress_end();
	close(fd);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

static const char *desc_digest(json_t *d, struct err *err)
{
	const char *s = json_string_value(json_object_get(d, "digest"));

	if (!s || strncmp(s, "sha256:", 7) || strlen(s) != 71 || strspn(s + 7, "0123456789abcdef") != 64) {
		err_set(err, EINVAL, "invalid digest \"%s\"", s ? s : "");
		return NULL;
	}
	return s;
}

int registry_open(struct image *img, const char *ref, const struct image_opts *o, struct err *err)
{
	struct reg r = { 0 };
	struct buf body = BUF_INIT;
	char digest[72], dir[4096], path[4200], *mt = NULL;
	json_t *man = NULL, *index = NULL;
	int rc = -1, partial = 0;

	(void)o; /* a registry is always read afresh */
	snprintf(dir, sizeof(dir), "%s/enclaver-pull-XXXXXX", fs_tmp_dir());
	if (parse_ref(&r, ref, err) < 0)
		goto free_reg;
	if (!mkdtemp(dir)) {
		err_sys(err, "temporary folder %s", dir);
		goto free_reg;
	}
	partial = fs_partial_add(dir);
	snprintf(path, sizeof(path), "%s/blobs/sha256", dir);
	if (fs_mkdir_p(path, 0755, err) < 0)
		goto out;
	load_basic(&r);
	log_info("pulling %s/%s:%s from %s", r.host, r.repo, r.ref, r.base);
	if (get_manifest(&r, r.ref, &body, digest, &mt, err) < 0)
		goto out;
	if (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST)) {
		json_t *pick;
		const char *d;

		index = json_loadb((const char *)body.data, body.len, 0, NULL);
		pick = image_index_pick(index, err);
		if (!pick || !(d = desc_digest(pick, err)))
			goto out;
		buf_free(&body);
		free(mt);
		mt = NULL;
		if (get_manifest(&r, d, &body, digest, &mt, err) < 0)
			goto out;
	}
	if (strcmp(mt, MT_OCI_MANIFEST) && strcmp(mt, MT_DOCKER_MANIFEST)) {
		err_set(err, ENOTSUP, "manifest media type %s is not supported (only OCI and Docker v2 schema 2 images)", mt);
		goto out;
	}
	if (write_blob(dir, digest, body.data, body.len, err) < 0)
		goto out;
	man = json_loadb((const char *)body.data, body.len, 0, NULL);
	{
		json_t *cfg = json_object_get(man, "config"), *layers = json_object_get(man, "layers");
		const char *d = desc_digest(cfg, err);
		size_t n = json_array_size(layers);

		if (!d || get_blob(&r, dir, d, (uint64_t)json_integer_value(json_object_get(cfg, "size")), "config", err) < 0)
			goto out;
		for (size_t i = 0; i < n; i++) {
			json_t *l = json_array_get(layers, i);
			char what[128];

			d = desc_digest(l, err);
			if (!d)
				goto out;
			snprintf(what, sizeof(what), "layer %zu/%zu %.19s", i + 1, n, d);
			if (get_blob(&r, dir, d, (uint64_t)json_integer_value(json_object_get(l, "size")), what, err) < 0)
				goto out;
		}
	}
	{
		json_t *ix = json_pack("{s:i, s:[{s:s, s:s, s:I}]}", "schemaVersion", 2, "manifests", "mediaType", mt,
				       "digest", digest, "size", (json_int_t)body.len);
		char *text = json_dumps(ix, JSON_COMPACT);

		snprintf(path, sizeof(path), "%s/index.json", dir);
		json_decref(ix);
		rc = fs_write_file_atomic(path, text, strlen(text), 0644, err);
		free(text);
		if (rc < 0)
			goto out;
	}
	rc = image_open_oci_dir(img, dir, NULL, err);
	if (rc == 0 && asprintf(&img->repo_digest, "%s/%s@%s", r.host, r.repo, digest) < 0)
		abort();
out:
	{
		struct err e2 = { 0 };

		fs_remove_tree(dir, &e2); /* the layers stay open in img */
		fs_partial_remove(partial);
	}
free_reg:
	json_decref(man);
	json_decref(index);
	buf_free(&body);
	free(mt);
	free(r.host);
	free(r.repo);
	free(r.ref);
	free(r.base);
	if (r.auth)
		explicit_bzero(r.auth, strlen(r.auth));
	free(r.auth);
	if (r.basic)
		explicit_bzero(r.basic, strlen(r.basic));
	free(r.basic);
	return rc;
}
