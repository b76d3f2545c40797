/* IMDSv2 stand-in: the paths botocore, the AWS CLI and odyn's KMS proxy ask for. */
#include "host/imds.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/hex.h"
#include "base/log.h"
#include "net/http_server.h"

#define MAX_TOKENS 64
#define MAX_TTL 21600

struct token {
	char value[57];
	time_t expires;
};

struct imds {
	struct http_server *srv;
	struct local_master m;
	char instance_id[32];
	struct local_temp creds;
	long duration;
	struct token tokens[MAX_TOKENS];
	unsigned next;
};

static void text(struct http_conn *c, int status, const char *body)
{
	http_respond(c, status, "text/plain", body, strlen(body), NULL);
}

static bool token_ok(struct imds *m, const char *t)
{
	time_t now = time(NULL);

	for (unsigned i = 0; t && i < MAX_TOKENS; i++)
		if (m->tokens[i].expires > now && !strcmp(m->tokens[i].value, t))
			return true;
	return false;
}

/* Credentials last `duration`; new ones are made once less than half of it is left, as IMDS
 * rotates them well before they expire (so a client refreshing near the end gets new ones). */
static const struct local_temp *credentials(struct imds *m)
{
	time_t now = time(NULL);

	if (m->creds.expiration - now < m->duration / 2)
		local_creds_issue(&m->m, now + m->duration, &m->creds);
	return &m->creds;
}

static void iso(time_t t, char out[32])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void handle(void *ctx, struct http_conn *c, const struct http_request *req, const uint8_t *body, size_t len)
{
	struct imds *m = ctx;
	char path[256];

	snprintf(path, sizeof(path), "%.*s", (int)strcspn(req->target, "?"), req->target);
	if (!strcmp(path, "/latest/api/token")) {
		const char *ttl = http_header_get(req, "x-aws-ec2-metadata-token-ttl-seconds");
		long secs = ttl ? strtol(ttl, NULL, 10) : 0;
		struct token *t = &m->tokens[m->next++ % MAX_TOKENS];
		uint8_t r[28];

		if (strcmp(req->method, "PUT")) {
			text(c, 405, "");
			return;
		}
		if (secs < 1 || secs > MAX_TTL) {
			text(c, 400, "");
			return;
		}
		RAND_bytes(r, sizeof(r));
		hex_encode(r, sizeof(r), t->value);
		t->expires = time(NULL) + secs;
		{
			char hdr[64];
			const char *extra[] = { hdr, NULL };

			snprintf(hdr, sizeof(hdr), "x-aws-ec2-metadata-token-ttl-seconds: %ld", secs);
			http_respond(c, 200, "text/plain", t->value, strlen(t->value), extra);
		}
		return;
	}
	if (strcmp(req->method, "GET")) {
		text(c, 405, "");
		return;
	}
	/* IMDSv2 only: every read carries a session token */
	if (!token_ok(m, http_header_get(req, "x-aws-ec2-metadata-token"))) {
		text(c, 401, "");
		return;
	}
	if (!strcmp(path, "/latest/meta-data/placement/region")) {
		text(c, 200, m->m.region);
	} else if (!strcmp(path, "/latest/meta-data/instance-id")) {
		text(c, 200, m->instance_id);
	} else if (!strcmp(path, "/latest/meta-data/iam/security-credentials/") ||
		   !strcmp(path, "/latest/meta-data/iam/security-credentials")) {
		text(c, 200, KMS_LOCAL_ROLE);
	} else if (!strcmp(path, "/latest/meta-data/iam/security-credentials/" KMS_LOCAL_ROLE)) {
		const struct local_temp *t = credentials(m);
		char now[32], exp[32], *s;
		json_t *j;

		iso(time(NULL), now);
		iso(t->expiration, exp);
		j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "Code", "Success", "LastUpdated", now, "Type",
			      "AWS-HMAC", "AccessKeyId", t->access_key, "SecretAccessKey", t->secret_key, "Token", t->token,
			      "Expiration", exp);
		s = json_dumps(j, JSON_INDENT(2));
		http_respond(c, 200, "text/plain", s, strlen(s), NULL);
		explicit_bzero(s, strlen(s));
		free(s);
		json_decref(j);
	} else if (!strcmp(path, "/latest/dynamic/instance-identity/document")) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "accountId", m->m.account, "region", m->m.region, "instanceId",
				      m->instance_id, "architecture", "x86_64");
		char *s = json_dumps(j, JSON_INDENT(2));

		http_respond(c, 200, "application/json", s, strlen(s), NULL);
		free(s);
		json_decref(j);
	} else {
		text(c, 404, "");
	}
}

int imds_start(struct loop *l, const struct local_master *mm, const char *instance_id, const char *path,
	       struct imds **out, struct err *err)
{
	struct imds *m = calloc(1, sizeof(*m));
	const char *d = getenv("ENCLAVER_IMDS_CREDENTIAL_SECONDS");

	if (!m)
		abort();
	m->m = *mm;
	m->duration = d && atol(d) >= 30 ? atol(d) : 3600;
	snprintf(m->instance_id, sizeof(m->instance_id), "%s", instance_id);
	if (http_server_start_unix(l, path, 4096, handle, m, &m->srv, err) < 0) {
		free(m);
		return err_wrap(err, "IMDS stand-in");
	}
	*out = m;
	return 0;
}

const char *imds_region(const struct imds *m)
{
	return m->m.region;
}

void imds_stop(struct imds *m)
{
	if (!m)
		return;
	http_server_stop(m->srv);
	explicit_bzero(m, sizeof(*m));
	free(m);
}
