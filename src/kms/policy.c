/* IAM-style policy matching, the subset KMS key policies for enclaves use. */
#include "kms/policy.h"

#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COND_PREFIX "kms:RecipientAttestation:"

/* A string or an array of strings: does any element satisfy match? */
static bool any_of(json_t *v, bool (*match)(const char *s, const void *ctx), const void *ctx)
{
	size_t i;
	json_t *e;

	if (json_is_string(v))
		return match(json_string_value(v), ctx);
	json_array_foreach(v, i, e)
		if (json_is_string(e) && match(json_string_value(e), ctx))
			return true;
	return false;
}

static bool action_matches(const char *pattern, const void *ctx)
{
	/* action names are case-insensitive; "*" and "kms:*" cover all */
	return fnmatch(pattern, ctx, FNM_CASEFOLD) == 0;
}

static bool principal_matches(const char *p, const void *ctx)
{
	const struct kms_policy_request *r = ctx;
	char root[64], role_prefix[128];

	if (!strcmp(p, "*") || !strcmp(p, r->principal))
		return true;
	/* the account's root, or its bare id, stands for every principal of the account */
	snprintf(root, sizeof(root), "arn:aws:iam::%s:root", r->account);
	if (!strcmp(p, root) || !strcmp(p, r->account))
		return true;
	/* a role stands for its sessions */
	snprintf(role_prefix, sizeof(role_prefix), "arn:aws:sts::%s:assumed-role/", r->account);
	if (!strncmp(p, "arn:aws:iam::", 13) && strstr(p, ":role/") && !strncmp(r->principal, role_prefix, strlen(role_prefix))) {
		const char *role = strstr(p, ":role/") + 6, *sess = r->principal + strlen(role_prefix);
		size_t n = strlen(role);

		return !strncmp(sess, role, n) && sess[n] == '/' && !strncmp(p + 13, r->account, strlen(r->account));
	}
	return false;
}

static bool principal_ok(json_t *pr, const struct kms_policy_request *r)
{
	if (json_is_string(pr))
		return !strcmp(json_string_value(pr), "*");
	return any_of(json_object_get(pr, "AWS"), principal_matches, r);
}

/* The request's value for a condition key, or NULL when it has none. */
static const char *condition_value(const struct kms_policy_request *r, const char *key)
{
	char *end;
	long n;

	if (strncasecmp(key, COND_PREFIX, strlen(COND_PREFIX)) || !r->attested)
		return NULL;
	key += strlen(COND_PREFIX);
	if (!strcasecmp(key, "ImageSha384"))
		return r->pcr[0][0] ? r->pcr[0] : NULL;
	if (strncasecmp(key, "PCR", 3))
		return NULL;
	n = strtol(key + 3, &end, 10);
	if (end == key + 3 || *end || n < 0 || n >= 32 || !r->pcr[n][0])
		return NULL;
	return r->pcr[n];
}

struct cmp {
	const char *have;
	bool ignore_case;
};

static bool value_matches(const char *want, const void *ctx)
{
	const struct cmp *c = ctx;

	return c->ignore_case ? !strcasecmp(want, c->have) : !strcmp(want, c->have);
}

/* -1 when the policy uses an operator or key this evaluator does not know */
static int conditions_hold(json_t *cond, const struct kms_policy_request *r, struct err *err)
{
	const char *op, *key;
	json_t *block, *want;

	if (!cond)
		return 1;
	if (!json_is_object(cond))
		return err_set(err, EINVAL, "Condition must be an object");
	json_object_foreach(cond, op, block) {
		bool negate = false, ic;

		if (!strcmp(op, "StringEquals") || !strcmp(op, "StringEqualsIgnoreCase"))
			;
		else if (!strcmp(op, "StringNotEquals") || !strcmp(op, "StringNotEqualsIgnoreCase"))
			negate = true;
		else
			return err_set(err, EINVAL, "unsupported condition operator %s", op);
		ic = strstr(op, "IgnoreCase") != NULL;
		if (!json_is_object(block))
			return err_set(err, EINVAL, "condition %s must be an object", op);
		json_object_foreach(block, key, want) {
			const char *have = condition_value(r, key);
			struct cmp c = { have, ic };

			if (strncasecmp(key, COND_PREFIX, strlen(COND_PREFIX)))
				return err_set(err, EINVAL, "unsupported condition key %s", key);
			if (!json_is_string(want) && !json_is_array(want))
				return err_set(err, EINVAL, "condition %s %s needs a string or a list", op, key);
			/* a key the request lacks fails a positive test and passes a negated one, as in IAM */
			if (!have) {
				if (negate)
					continue;
				return 0;
			}
			if (any_of(want, value_matches, &c) == negate)
				return 0;
		}
	}
	return 1;
}

static int walk(const char *policy_json, const struct kms_policy_request *r, char *why, size_t why_size,
		struct err *err)
{
	json_error_t je;
	json_t *p = json_loads(policy_json, 0, &je), *st, *s;
	size_t i;
	int allowed = 0, rc = -1;

	if (!p || !json_is_object(p)) {
		err_set(err, EINVAL, "the policy is not a JSON object%s%s", p ? "" : ": ", p ? "" : je.text);
		goto out;
	}
	st = json_object_get(p, "Statement");
	if (json_is_object(st)) {
		json_t *arr = json_array();

		json_array_append(arr, st);
		json_object_set_new(p, "Statement", arr);
		st = arr;
	}
	if (!json_is_array(st) || !json_array_size(st)) {
		err_set(err, EINVAL, "the policy has no Statement");
		goto out;
	}
	json_array_foreach(st, i, s) {
		const char *effect = json_string_value(json_object_get(s, "Effect"));
		const char *sid = json_string_value(json_object_get(s, "Sid"));
		json_t *action = json_object_get(s, "Action"), *principal = json_object_get(s, "Principal");
		int c;

		if (!effect || (strcmp(effect, "Allow") && strcmp(effect, "Deny")) || !action || !principal) {
			err_set(err, EINVAL, "statement %zu needs Effect (Allow or Deny), Principal and Action", i);
			goto out;
		}
		c = conditions_hold(json_object_get(s, "Condition"), r, err);
		if (c < 0)
			goto out;
		if (!r || !c || !principal_ok(principal, r) || !any_of(action, action_matches, r->action))
			continue;
		if (!strcmp(effect, "Deny")) {
			snprintf(why, why_size, "denied by statement %s", sid ? sid : "without a Sid");
			rc = 0;
			goto out;
		}
		allowed = 1;
	}
	if (!allowed)
		snprintf(why, why_size, "no statement of the key policy allows %s for %s%s", r ? r->action : "",
			 r ? r->principal : "", r && r->attested ? " with this attestation" : "");
	rc = allowed;
out:
	json_decref(p);
	return rc;
}

int kms_policy_evaluate(const char *policy_json, const struct kms_policy_request *r, char *why, size_t why_size,
			struct err *err)
{
	return walk(policy_json, r, why, why_size, err);
}

int kms_policy_check(const char *policy_json, struct err *err)
{
	static const struct kms_policy_request probe = { "kms:Decrypt", "arn:aws:iam::000000000000:root",
							 "000000000000", true, { "" } };
	char why[256];

	return walk(policy_json, &probe, why, sizeof(why), err) < 0 ? -1 : 0;
}
