/* Local credentials: HMAC-derived temporary keys, so that IMDS and kms-local share only the
 * state folder. */
#include "host/local_creds.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/hex.h"

#define ACCOUNT "111122223333"

static void random_chars(char *out, size_t n, const char *alphabet)
{
	uint8_t r[64];
	size_t k = strlen(alphabet);

	RAND_bytes(r, sizeof(r));
	for (size_t i = 0; i < n; i++)
		out[i] = alphabet[r[i % sizeof(r)] % k];
	out[n] = 0;
}

int local_creds_open(const char *state_dir, const char *region, struct local_master *out, struct err *err)
{
	char dir[4096], path[4200];
	json_t *j;
	json_error_t je;

	memset(out, 0, sizeof(*out));
	snprintf(dir, sizeof(dir), "%s/kms", state_dir);
	snprintf(path, sizeof(path), "%s/credentials.json", dir);
	if (fs_mkdir_p(dir, 0700, err) < 0)
		return -1;
	j = json_load_file(path, 0, &je);
	if (!j) {
		char *text;
		int rc;

		memcpy(out->access_key, "AKIA", 4);
		random_chars(out->access_key + 4, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
		random_chars(out->secret_key, 40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
		snprintf(out->account, sizeof(out->account), ACCOUNT);
		snprintf(out->region, sizeof(out->region), "%s", region && *region ? region : "us-east-1");
		j = json_pack("{s:s, s:s, s:s, s:s}", "AccessKeyId", out->access_key, "SecretAccessKey", out->secret_key,
			      "AccountId", out->account, "Region", out->region);
		text = json_dumps(j, JSON_INDENT(2));
		rc = fs_write_file_atomic(path, text, strlen(text), 0600, err);
		explicit_bzero(text, strlen(text));
		free(text);
		json_decref(j);
		return rc < 0 ? err_wrap(err, "local KMS credentials") : 0;
	}
	{
		const char *ak = json_string_value(json_object_get(j, "AccessKeyId"));
		const char *sk = json_string_value(json_object_get(j, "SecretAccessKey"));
		const char *ac = json_string_value(json_object_get(j, "AccountId"));
		const char *rg = json_string_value(json_object_get(j, "Region"));

		if (!ak || !sk || !ac || !rg || strlen(ak) >= sizeof(out->access_key) ||
		    strlen(sk) >= sizeof(out->secret_key) || strlen(ac) >= sizeof(out->account) ||
		    strlen(rg) >= sizeof(out->region)) {
			json_decref(j);
			return err_set(err, EINVAL, "%s: not the local KMS credentials; remove it to make new ones", path);
		}
		snprintf(out->access_key, sizeof(out->access_key), "%s", ak);
		snprintf(out->secret_key, sizeof(out->secret_key), "%s", sk);
		snprintf(out->account, sizeof(out->account), "%s", ac);
		snprintf(out->region, sizeof(out->region), "%s", rg);
	}
	json_decref(j);
	return 0;
}

static void mac_hex(const struct local_master *m, const char *what, char out[65])
{
	uint8_t d[32];
	unsigned n = 32;

	HMAC(EVP_sha256(), m->secret_key, (int)strlen(m->secret_key), (const uint8_t *)what, strlen(what), d, &n);
	hex_encode(d, 32, out);
}

static void derive_secret(const struct local_master *m, const char *akid, long long exp, char out[64])
{
	char what[128], mac[65];

	snprintf(what, sizeof(what), "secret|%s|%lld", akid, exp);
	mac_hex(m, what, mac);
	snprintf(out, 64, "%.40s", mac);
}

void local_creds_issue(const struct local_master *m, time_t expiration, struct local_temp *out)
{
	char body[128], mac[65];
	struct buf b64 = BUF_INIT;

	memset(out, 0, sizeof(*out));
	memcpy(out->access_key, "ASIA", 4);
	random_chars(out->access_key + 4, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
	out->expiration = expiration;
	derive_secret(m, out->access_key, (long long)expiration, out->secret_key);
	snprintf(body, sizeof(body), "v1|%s|%lld", out->access_key, (long long)expiration);
	mac_hex(m, body, mac);
	b64_encode((const uint8_t *)body, strlen(body), &b64);
	snprintf(out->token, sizeof(out->token), "%s.%s", buf_cstr(&b64), mac);
	snprintf(out->role_arn, sizeof(out->role_arn), "arn:aws:iam::%s:role/%s", m->account, KMS_LOCAL_ROLE);
	buf_free(&b64);
}

int local_creds_lookup(const struct local_master *m, const char *access_key, const char *token, time_t now,
		     char secret[64], char principal[160], struct err *err)
{
	if (!strcmp(access_key, m->access_key)) {
		snprintf(secret, 64, "%s", m->secret_key);
		snprintf(principal, 160, "arn:aws:iam::%s:root", m->account);
		return 0;
	}
	if (!strncmp(access_key, "ASIA", 4)) {
		const char *dot = token ? strchr(token, '.') : NULL;
		struct buf body = BUF_INIT;
		char expect[65], akid[32];
		long long exp;
		int rc = -1;

		if (!dot || strlen(dot + 1) != 64 || b64_decode(token, (size_t)(dot - token), &body) <= 0) {
			err_set(err, EACCES, "the security token included in the request is invalid");
			goto out;
		}
		mac_hex(m, buf_cstr(&body), expect);
		if (CRYPTO_memcmp(expect, dot + 1, 64) != 0 ||
		    sscanf(buf_cstr(&body), "v1|%31[^|]|%lld", akid, &exp) != 2 || strcmp(akid, access_key)) {
			err_set(err, EACCES, "the security token included in the request is invalid");
			goto out;
		}
		if ((long long)now >= exp) {
			err_set(err, EACCES, "the security token included in the request is expired");
			goto out;
		}
		derive_secret(m, akid, exp, secret);
		snprintf(principal, 160, "arn:aws:sts::%s:assumed-role/%s/enclave", m->account, KMS_LOCAL_ROLE);
		rc = 0;
out:
		buf_free(&body);
		return rc;
	}
	return err_set(err, EACCES, "the access key id %s does not exist in our records", access_key);
}
