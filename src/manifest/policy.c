/*
 * Egress policy matcher. Runs in odyn on every CONNECT and proxied request, and in the CLI.
 * Host names come from the application and are hostile: anything not clearly a well-formed
 * name or IP literal is denied before any rule is consulted.
 */
#include "manifest/policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 253
#define LABEL_MAX_LEN 63
#define MAX_LABELS 128

struct ip_rule {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned prefix;
};

struct rule {
	char *text; /* as written, for reporting */
	bool is_ip;
	struct ip_rule ip;
	char *labels[MAX_LABELS]; /* domain pattern, lower-cased, left to right */
	size_t n_labels;
};

struct policy {
	struct rule *allow;
	size_t n_allow;
	struct rule *deny;
	size_t n_deny;
};

static bool label_char_ok(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_';
}

/* Parses "a.b.c.d", "a.b.c.d/n", IPv6 and IPv6/n. Host bits are cleared, as ipnetwork does. */
static bool parse_ip_rule(const char *s, struct ip_rule *out)
{
	char addr[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max, prefix;

	if (alen == 0 || alen >= sizeof(addr))
		return false;
	memcpy(addr, s, alen);
	addr[alen] = 0;
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return false;
	}
	prefix = max;
	if (slash) {
		const char *d = slash + 1;
		unsigned v = 0;

		if (!*d || strlen(d) > 3)
			return false;
		for (; *d; d++) {
			if (!isdigit((unsigned char)*d))
				return false;
			v = v * 10 + (unsigned)(*d - '0');
		}
		if (v > max)
			return false;
		prefix = v;
	}
	out->prefix = prefix;
	for (unsigned bit = prefix; bit < max; bit++)
		out->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	return true;
}

static bool ip_rule_match(const struct ip_rule *r, int family, const uint8_t *addr)
{
	unsigned full, rest;

	if (r->family != family)
		return false;
	full = r->prefix / 8;
	rest = r->prefix % 8;
	if (memcmp(r->addr, addr, full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		if ((addr[full] & mask) != r->addr[full])
			return false;
	}
	return true;
}

/* A last label of digits (or 0x-hex) makes a name that resolvers treat as an IPv4 number
 * ("127.1", "2130706433", "0x7f.1"): it could reach an address no IP rule ever saw. */
static bool numeric_label(const char *l, size_t n)
{
	size_t i = 0;

	if (n >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
		for (i = 2; i < n; i++)
			if (!isxdigit((unsigned char)l[i]))
				return false;
		return true;
	}
	for (; i < n; i++)
		if (!isdigit((unsigned char)l[i]))
			return false;
	return n > 0;
}

/* Splits a name or pattern into lower-cased labels. Wildcards are allowed only in patterns. */
static int split_labels(const char *s, bool pattern, char **labels, size_t *n_labels,
			const char **why)
{
	size_t len = strlen(s), n = 0;
	const char *p = s;

	*n_labels = 0;
	if (len == 0) {
		*why = "empty name";
		return -1;
	}
	if (len > NAME_MAX_LEN) {
		*why = "name longer than 253 characters";
		return -1;
	}
	if (s[len - 1] == '.') {
		*why = "name ends with a dot";
		return -1;
	}
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		bool wild = pattern && ((l == 1 && p[0] == '*') || (l == 2 && p[0] == '*' && p[1] == '*'));

		if (l == 0) {
			*why = "empty label";
			goto fail;
		}
		if (l > LABEL_MAX_LEN) {
			*why = "label longer than 63 characters";
			goto fail;
		}
		if (!wild)
			for (size_t i = 0; i < l; i++)
				if (!label_char_ok(p[i])) {
					*why = pattern && p[i] == '*' ? "'*' and '**' must be whole labels"
								      : "character not allowed in a host name";
					goto fail;
				}
		if (n == MAX_LABELS) {
			*why = "too many labels";
			goto fail;
		}
		labels[n] = strndup(p, l);
		if (!labels[n])
			abort();
		for (size_t i = 0; i < l; i++)
			labels[n][i] = (char)tolower((unsigned char)labels[n][i]);
		n++;
		if (!dot)
			break;
		p = dot + 1;
	}
	*n_labels = n;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		free(labels[i]);
	return -1;
}

static bool domain_match(const struct rule *r, char *const *host, size_t n_host)
{
	size_t i = r->n_labels, j = n_host;

	/* Right to left, TLD first. */
	while (i > 0) {
		const char *pl = r->labels[i - 1];

		if (strcmp(pl, "**") == 0)
			return j >= 1; /* one or more labels; anything left of it is ignored */
		if (j == 0)
			return false;
		if (strcmp(pl, "*") != 0 && strcmp(pl, host[j - 1]) != 0)
			return false;
		i--;
		j--;
	}
	return j == 0;
}

static void rule_clear(struct rule *r)
{
	free(r->text);
	for (size_t i = 0; i < r->n_labels; i++)
		free(r->labels[i]);
}

static int rule_parse(const char *text, struct rule *r, struct err *err)
{
	const char *why = NULL;

	memset(r, 0, sizeof(*r));
	if (parse_ip_rule(text, &r->ip)) {
		r->is_ip = true;
	} else {
		if (strchr(text, '/') || strchr(text, ':'))
			return err_set(err, 0, "\"%s\" is neither an IP address, a CIDR nor a domain pattern",
				       text);
		if (split_labels(text, true, r->labels, &r->n_labels, &why) < 0)
			return err_set(err, 0, "\"%s\" is not a valid domain pattern: %s", text, why);
		if (numeric_label(r->labels[r->n_labels - 1], strlen(r->labels[r->n_labels - 1]))) {
			rule_clear(r);
			memset(r, 0, sizeof(*r));
			return err_set(err, 0,
				       "\"%s\" looks like an IPv4 address but is not one: write a.b.c.d or a.b.c.d/n",
				       text);
		}
	}
	r->text = strdup(text);
	if (!r->text)
		abort();
	return 0;
}

int policy_rule_validate(const char *rule, struct err *err)
{
	struct rule r;

	if (rule_parse(rule, &r, err) < 0)
		return -1;
	rule_clear(&r);
	return 0;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_allow; i++)
		rule_clear(&p->allow[i]);
	for (size_t i = 0; i < p->n_deny; i++)
		rule_clear(&p->deny[i]);
	free(p->allow);
	free(p->deny);
	free(p);
}

static int parse_rules(const char *const *texts, size_t n, struct rule **out, size_t *n_out,
		       struct err *err)
{
	*out = calloc(n ? n : 1, sizeof(**out));
	if (!*out)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (rule_parse(texts[i], &(*out)[i], err) < 0)
			return -1;
		*n_out = i + 1;
	}
	return 0;
}

int policy_new(const char *const *allow, size_t n_allow, const char *const *deny, size_t n_deny,
	       struct policy **out, struct err *err)
{
	struct policy *p = calloc(1, sizeof(*p));

	if (!p)
		abort();
	if (parse_rules(allow, n_allow, &p->allow, &p->n_allow, err) < 0 ||
	    parse_rules(deny, n_deny, &p->deny, &p->n_deny, err) < 0) {
		policy_free(p);
		return err_wrap(err, "egress policy");
	}
	*out = p;
	return 0;
}

static const struct rule *first_ip_match(const struct rule *rules, size_t n, int family,
					 const uint8_t *addr, const uint8_t *v4)
{
	for (size_t i = 0; i < n; i++) {
		if (!rules[i].is_ip)
			continue;
		if (ip_rule_match(&rules[i].ip, family, addr) ||
		    (v4 && ip_rule_match(&rules[i].ip, AF_INET, v4)))
			return &rules[i];
	}
	return NULL;
}

static void decide(struct policy_decision *out, const struct rule *allow, const struct rule *deny)
{
	/* Deny wins. */
	if (deny) {
		out->allowed = false;
		out->rule = deny->text;
	} else if (allow) {
		out->allowed = true;
		out->rule = allow->text;
	} else {
		out->allowed = false;
		out->reason = "no allow rule matches";
	}
}

void policy_check(const struct policy *p, const char *host, struct policy_decision *out)
{
	char ipbuf[INET6_ADDRSTRLEN + 1];
	uint8_t addr[16];
	size_t len = strlen(host);
	char *labels[MAX_LABELS];
	size_t n_labels = 0;
	const char *why = NULL;
	const struct rule *allow = NULL, *deny = NULL;

	memset(out, 0, sizeof(*out));
	if (p->n_allow == 0) {
		out->reason = "egress is disabled: the manifest has no egress allow list";
		return;
	}
	/* Bracketed IPv6 literal ("[::1]"): the brackets must pair and hold an IPv6 address. */
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		if (len - 2 >= sizeof(ipbuf)) {
			out->reason = "invalid IPv6 literal";
			return;
		}
		memcpy(ipbuf, host + 1, len - 2);
		ipbuf[len - 2] = 0;
		if (inet_pton(AF_INET6, ipbuf, addr) != 1) {
			out->reason = "invalid IPv6 literal";
			return;
		}
		goto ipv6;
	}
	if (inet_pton(AF_INET, host, addr) == 1) {
		allow = first_ip_match(p->allow, p->n_allow, AF_INET, addr, NULL);
		deny = first_ip_match(p->deny, p->n_deny, AF_INET, addr, NULL);
		decide(out, allow, deny);
		return;
	}
	if (inet_pton(AF_INET6, host, addr) == 1) {
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		const uint8_t *v4;
ipv6:
		/* ::ffff:a.b.c.d reaches a.b.c.d: judge it by the IPv4 rules too, so that a deny
		 * on 127.0.0.0/8 cannot be walked around through the mapped form. */
		v4 = memcmp(addr, mapped, 12) == 0 ? addr + 12 : NULL;
		allow = first_ip_match(p->allow, p->n_allow, AF_INET6, addr, v4);
		deny = first_ip_match(p->deny, p->n_deny, AF_INET6, addr, v4);
		decide(out, allow, deny);
		return;
	}
	if (split_labels(host, false, labels, &n_labels, &why) < 0) {
		out->reason = why;
		return;
	}
	if (numeric_label(labels[n_labels - 1], strlen(labels[n_labels - 1]))) {
		out->reason = "numeric host name that is not a dotted-quad IPv4 address";
		goto out;
	}
	for (size_t i = 0; i < p->n_allow && !allow; i++)
		if (!p->allow[i].is_ip && domain_match(&p->allow[i], labels, n_labels))
			allow = &p->allow[i];
	for (size_t i = 0; i < p->n_deny && !deny; i++)
		if (!p->deny[i].is_ip && domain_match(&p->deny[i], labels, n_labels))
			deny = &p->deny[i];
	decide(out, allow, deny);
out:
	for (size_t i = 0; i < n_labels; i++)
		free(labels[i]);
}
