/*
 * enclaver.yaml loader. Runs in the CLI, odyn and enclaver-run; the file comes from the user
 * and is parsed with libyaml's document loader so that every error can name line and column.
 */
#include "manifest/manifest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/fs.h"
#include "base/mem.h"
#include "manifest/policy.h"

struct ctx {
	const char *name;
	yaml_document_t *doc;
	struct err *err;
};

__attribute__((format(printf, 3, 4))) static int fail(struct ctx *c, const yaml_node_t *n,
						       const char *fmt, ...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n)
		return err_set(c->err, EINVAL, "%s:%zu:%zu: %s", c->name, n->start_mark.line + 1,
			       n->start_mark.column + 1, msg);
	return err_set(c->err, EINVAL, "%s: %s", c->name, msg);
}

static yaml_node_t *node_at(struct ctx *c, int idx)
{
	return yaml_document_get_node(c->doc, idx);
}

static bool is_null(const yaml_node_t *n)
{
	const char *v;

	if (!n)
		return true;
	if (n->type != YAML_SCALAR_NODE)
		return false;
	if (n->tag && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0)
		return true;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	v = (const char *)n->data.scalar.value;
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static const char *kind_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* Rejects keys not in allowed[] and duplicate keys (serde's deny_unknown_fields, plus). */
static int check_keys(struct ctx *c, yaml_node_t *map, const char *where, const char *const *allowed)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(c, p->key);
		bool known = false;
		char list[512] = "";

		if (!k || k->type != YAML_SCALAR_NODE)
			return fail(c, k, "%s: keys must be plain names", where);
		for (const char *const *a = allowed; *a; a++) {
			if (!strcmp(*a, scalar(k)))
				known = true;
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 a == allowed ? "" : ", ", *a);
		}
		if (!known)
			return fail(c, k, "unknown key \"%s\" in %s (expected one of: %s)", scalar(k),
				    where, list);
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *k2 = node_at(c, q->key);

			if (k2 && k2->type == YAML_SCALAR_NODE && !strcmp(scalar(k2), scalar(k)))
				return fail(c, k, "duplicate key \"%s\" in %s", scalar(k), where);
		}
	}
	return 0;
}

/* The value for key, or NULL when absent or null. keynode receives the key's node. */
static yaml_node_t *map_get(struct ctx *c, yaml_node_t *map, const char *key, yaml_node_t **keynode)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(c, p->key);

		if (k && k->type == YAML_SCALAR_NODE && !strcmp(scalar(k), key)) {
			yaml_node_t *v = node_at(c, p->value);

			if (keynode)
				*keynode = k;
			return is_null(v) ? NULL : v;
		}
	}
	return NULL;
}

static int want_type(struct ctx *c, yaml_node_t *n, yaml_node_type_t t, const char *what)
{
	static const char *const names[] = { "nothing", "a scalar", "a list", "a mapping" };

	if (n->type != t)
		return fail(c, n, "%s must be %s, not %s", what, names[t], kind_name(n));
	return 0;
}

static int get_string(struct ctx *c, yaml_node_t *n, const char *what, char **out)
{
	if (want_type(c, n, YAML_SCALAR_NODE, what) < 0)
		return -1;
	*out = strdup(scalar(n));
	if (!*out)
		abort();
	return 0;
}

static int required_string(struct ctx *c, yaml_node_t *map, const char *key, const char *where,
			   char **out)
{
	yaml_node_t *v = map_get(c, map, key, NULL);
	char what[128];

	snprintf(what, sizeof(what), "%s%s%s", where, *where ? "." : "", key);
	if (!v)
		return fail(c, map, "missing required key \"%s\"%s%s", what, *where ? " in " : "", where);
	if (get_string(c, v, what, out) < 0)
		return -1;
	if (!**out)
		return fail(c, v, "%s must not be empty", what);
	return 0;
}

static int get_long(struct ctx *c, yaml_node_t *n, const char *what, long *out)
{
	const char *s;
	char *end;
	long v;

	if (want_type(c, n, YAML_SCALAR_NODE, what) < 0)
		return -1;
	s = scalar(n);
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return fail(c, n, "%s must be a number, not the string \"%s\"", what, s);
	errno = 0;
	v = strtol(s, &end, 10);
	if (!*s || *end || errno == ERANGE || v < INT32_MIN || v > INT32_MAX)
		return fail(c, n, "%s must be a whole number, got \"%s\"", what, s);
	*out = v;
	return 0;
}

/* YAML's true and false, as serde_yaml reads them: plain scalars, any letter case. */
static int get_bool(struct ctx *c, yaml_node_t *n, const char *what, bool *out)
{
	const char *s;

	if (want_type(c, n, YAML_SCALAR_NODE, what) < 0)
		return -1;
	s = scalar(n);
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && (!strcasecmp(s, "true") || !strcasecmp(s, "false"))) {
		*out = !strcasecmp(s, "true");
		return 0;
	}
	return fail(c, n, "%s must be true or false, got \"%s\"", what, s);
}

static int get_port(struct ctx *c, yaml_node_t *n, const char *what, uint16_t *out)
{
	long v;

	if (get_long(c, n, what, &v) < 0)
		return -1;
	if (v < 1 || v > 65535)
		return fail(c, n, "%s: %ld is not a valid port (1-65535)", what, v);
	*out = (uint16_t)v;
	return 0;
}

static int get_string_list(struct ctx *c, yaml_node_t *n, const char *what, char ***out, size_t *count,
			   bool policy_rules)
{
	size_t len;

	if (want_type(c, n, YAML_SEQUENCE_NODE, what) < 0)
		return -1;
	len = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	*out = calloc(len + 1, sizeof(char *));
	if (!*out)
		abort();
	for (size_t i = 0; i < len; i++) {
		yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
		char w[128];

		snprintf(w, sizeof(w), "%s[%zu]", what, i);
		if (!item || is_null(item))
			return fail(c, item ? item : n, "%s must not be empty", w);
		if (get_string(c, item, w, &(*out)[i]) < 0)
			return -1;
		*count = i + 1;
		if (policy_rules && policy_rule_validate((*out)[i], c->err) < 0) {
			char msg[ERR_MSG_MAX];

			snprintf(msg, sizeof(msg), "%s", c->err->msg);
			return fail(c, item, "%s: %s", w, msg);
		}
	}
	return 0;
}

/* A relative path in sources.app (docker-archive:, oci-archive:, oci:) is taken from the
 * manifest's folder, as the signature's paths are: one rule for every path in the file, so
 * that enclaver build -f dir/enclaver.yaml means the same from any folder. */
static void resolve_app_path(struct manifest *m, const char *dir)
{
	static const char *const kinds[] = { "docker-archive:", "oci-archive:", "oci:" };

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t k = strlen(kinds[i]);
		char *joined, *out;

		if (strncmp(m->source_app, kinds[i], k) || !m->source_app[k] || m->source_app[k] == '/')
			continue;
		joined = fs_join(dir, m->source_app + k);
		if (asprintf(&out, "%s%s", kinds[i], joined) < 0)
			abort();
		free(joined);
		free(m->source_app);
		m->source_app = out;
		return;
	}
}

static int parse_sources(struct ctx *c, struct manifest *m, yaml_node_t *n)
{
	static const char *const keys[] = { "app", "odyn", "sleeve", "supervisor", "wrapper", NULL };
	yaml_node_t *v;

	if (want_type(c, n, YAML_MAPPING_NODE, "sources") < 0 || check_keys(c, n, "sources", keys) < 0)
		return -1;
	if (required_string(c, n, "app", "sources", &m->source_app) < 0)
		return -1;
	/* v0.6.1 names win over the v0.5.0 aliases. */
	if ((v = map_get(c, n, "odyn", NULL)) || (v = map_get(c, n, "supervisor", NULL)))
		if (get_string(c, v, "sources.odyn", &m->source_odyn) < 0)
			return -1;
	if ((v = map_get(c, n, "sleeve", NULL)) || (v = map_get(c, n, "wrapper", NULL)))
		if (get_string(c, v, "sources.sleeve", &m->source_sleeve) < 0)
			return -1;
	return 0;
}

static int parse_signature(struct ctx *c, struct manifest *m, yaml_node_t *n, const char *dir)
{
	static const char *const keys[] = { "certificate", "key", NULL };
	autofree char *cert = NULL, *key = NULL;

	if (want_type(c, n, YAML_MAPPING_NODE, "signature") < 0 || check_keys(c, n, "signature", keys) < 0)
		return -1;
	if (required_string(c, n, "certificate", "signature", &cert) < 0 ||
	    required_string(c, n, "key", "signature", &key) < 0)
		return -1;
	m->has_signature = true;
	m->signature_certificate = fs_join(dir, cert);
	m->signature_key = fs_join(dir, key);
	return 0;
}

static int parse_ingress(struct ctx *c, struct manifest *m, yaml_node_t *n)
{
	static const char *const keys[] = { "listen_port", "tls", NULL };
	static const char *const tls_keys[] = { "key_file", "cert_file", NULL };
	size_t len;

	if (want_type(c, n, YAML_SEQUENCE_NODE, "ingress") < 0)
		return -1;
	len = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	m->ingress = calloc(len ? len : 1, sizeof(*m->ingress));
	if (!m->ingress)
		abort();
	for (size_t i = 0; i < len; i++) {
		yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]), *port, *tls;
		struct manifest_ingress *in = &m->ingress[i];
		char w[64], wp[96];

		snprintf(w, sizeof(w), "ingress[%zu]", i);
		snprintf(wp, sizeof(wp), "%s.listen_port", w);
		m->n_ingress = i + 1;
		if (!item || is_null(item))
			return fail(c, item ? item : n, "%s must be a mapping with listen_port", w);
		if (want_type(c, item, YAML_MAPPING_NODE, w) < 0 || check_keys(c, item, w, keys) < 0)
			return -1;
		port = map_get(c, item, "listen_port", NULL);
		if (!port)
			return fail(c, item, "missing required key \"listen_port\" in %s", w);
		if (get_port(c, port, wp, &in->listen_port) < 0)
			return -1;
		if (in->listen_port >= PORT_STATUS && in->listen_port <= PORT_EGRESS)
			return fail(c, port,
				    "%s: port %u is reserved for enclaver's own vsock channels (17000-17002); choose another port",
				    wp, in->listen_port);
		for (size_t j = 0; j < i; j++)
			if (m->ingress[j].listen_port == in->listen_port)
				return fail(c, port, "%s: port %u is already used by ingress[%zu]", wp,
					    in->listen_port, j);
		tls = map_get(c, item, "tls", NULL);
		if (tls) {
			snprintf(wp, sizeof(wp), "%s.tls", w);
			if (want_type(c, tls, YAML_MAPPING_NODE, wp) < 0 || check_keys(c, tls, wp, tls_keys) < 0)
				return -1;
			if (required_string(c, tls, "key_file", wp, &in->tls_key_file) < 0 ||
			    required_string(c, tls, "cert_file", wp, &in->tls_cert_file) < 0)
				return -1;
			in->tls = true;
		}
	}
	return 0;
}

static int parse_egress(struct ctx *c, struct manifest *m, yaml_node_t *n)
{
	static const char *const keys[] = { "proxy_port", "allow", "deny", "transparent", "transparent_pool",
					    "transparent_port", NULL };
	yaml_node_t *v;

	m->has_egress = true;
	m->egress_proxy_port = MANIFEST_DEFAULT_PROXY_PORT;
	m->egress_transparent = -1;
	m->egress_transparent_port = MANIFEST_DEFAULT_TRANSPARENT_PORT;
	if (!n) /* "egress:" with nothing under it */
		return 0;
	if (want_type(c, n, YAML_MAPPING_NODE, "egress") < 0 || check_keys(c, n, "egress", keys) < 0)
		return -1;
	if ((v = map_get(c, n, "proxy_port", NULL)) && get_port(c, v, "egress.proxy_port", &m->egress_proxy_port) < 0)
		return -1;
	if ((v = map_get(c, n, "allow", NULL)) &&
	    get_string_list(c, v, "egress.allow", &m->egress_allow, &m->n_egress_allow, true) < 0)
		return -1;
	if ((v = map_get(c, n, "deny", NULL)) &&
	    get_string_list(c, v, "egress.deny", &m->egress_deny, &m->n_egress_deny, true) < 0)
		return -1;
	if ((v = map_get(c, n, "transparent", NULL))) {
		bool on = false;

		if (get_bool(c, v, "egress.transparent", &on) < 0)
			return -1;
		m->egress_transparent = on;
	}
	if ((v = map_get(c, n, "transparent_pool", NULL))) {
		struct err perr = { 0 };

		if (get_string(c, v, "egress.transparent_pool", &m->egress_pool) < 0)
			return -1;
		if (manifest_pool_parse(m->egress_pool, NULL, NULL, &perr) < 0)
			return fail(c, v, "egress.transparent_pool: %s", perr.msg);
	}
	if ((v = map_get(c, n, "transparent_port", NULL)) &&
	    get_port(c, v, "egress.transparent_port", &m->egress_transparent_port) < 0)
		return -1;
	return 0;
}

static int parse_defaults(struct ctx *c, struct manifest *m, yaml_node_t *n)
{
	static const char *const keys[] = { "cpu_count", "memory_mb", NULL };
	yaml_node_t *v;
	long x;

	if (want_type(c, n, YAML_MAPPING_NODE, "defaults") < 0 || check_keys(c, n, "defaults", keys) < 0)
		return -1;
	if ((v = map_get(c, n, "cpu_count", NULL))) {
		if (get_long(c, v, "defaults.cpu_count", &x) < 0)
			return -1;
		if (x < 1)
			return fail(c, v, "defaults.cpu_count: at least 1 CPU is required, got: %ld", x);
		m->cpu_count = (int)x;
	}
	if ((v = map_get(c, n, "memory_mb", NULL))) {
		if (get_long(c, v, "defaults.memory_mb", &x) < 0)
			return -1;
		if (x < MANIFEST_MIN_MEMORY_MB)
			return fail(c, v, "defaults.memory_mb: at least 64MiB of memory are required, got: %ld", x);
		m->memory_mb = (int)x;
	}
	return 0;
}

static int parse_kms_proxy(struct ctx *c, struct manifest *m, yaml_node_t *n)
{
	static const char *const keys[] = { "listen_port", "endpoints", NULL };
	yaml_node_t *v;

	if (want_type(c, n, YAML_MAPPING_NODE, "kms_proxy") < 0 || check_keys(c, n, "kms_proxy", keys) < 0)
		return -1;
	v = map_get(c, n, "listen_port", NULL);
	if (!v)
		return fail(c, n, "missing required key \"listen_port\" in kms_proxy");
	if (get_port(c, v, "kms_proxy.listen_port", &m->kms_proxy_port) < 0)
		return -1;
	m->has_kms_proxy = true;
	v = map_get(c, n, "endpoints", NULL);
	if (!v)
		return 0;
	if (want_type(c, v, YAML_MAPPING_NODE, "kms_proxy.endpoints") < 0)
		return -1;
	m->kms_endpoints = calloc((size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start) + 1,
				  sizeof(*m->kms_endpoints));
	if (!m->kms_endpoints)
		abort();
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(c, p->key), *val = node_at(c, p->value);
		struct manifest_endpoint *e = &m->kms_endpoints[m->n_kms_endpoints];
		char w[160];

		if (!k || k->type != YAML_SCALAR_NODE || !*scalar(k))
			return fail(c, k ? k : v, "kms_proxy.endpoints: keys must be region names");
		snprintf(w, sizeof(w), "kms_proxy.endpoints.%s", scalar(k));
		for (size_t j = 0; j < m->n_kms_endpoints; j++)
			if (!strcmp(m->kms_endpoints[j].region, scalar(k)))
				return fail(c, k, "duplicate key \"%s\" in kms_proxy.endpoints", scalar(k));
		if (!val || is_null(val))
			return fail(c, k, "%s must be host[:port]", w);
		e->region = strdup(scalar(k));
		if (!e->region)
			abort();
		m->n_kms_endpoints++;
		if (get_string(c, val, w, &e->authority) < 0)
			return -1;
		if (!*e->authority || strstr(e->authority, "://") || strchr(e->authority, '/'))
			return fail(c, val, "%s: \"%s\" must be host[:port], without a scheme or path", w,
				    e->authority);
	}
	return 0;
}

static int parse_api(struct ctx *c, struct manifest *m, yaml_node_t *n)
{
	static const char *const keys[] = { "listen_port", NULL };
	yaml_node_t *v;

	if (want_type(c, n, YAML_MAPPING_NODE, "api") < 0 || check_keys(c, n, "api", keys) < 0)
		return -1;
	v = map_get(c, n, "listen_port", NULL);
	if (!v)
		return fail(c, n, "missing required key \"listen_port\" in api");
	if (get_port(c, v, "api.listen_port", &m->api_port) < 0)
		return -1;
	m->has_api = true;
	return 0;
}

bool manifest_egress_enabled(const struct manifest *m)
{
	return m->has_egress && m->n_egress_allow > 0;
}

int manifest_pool_parse(const char *cidr, uint32_t *base, uint32_t *prefix, struct err *err)
{
	char addr[INET_ADDRSTRLEN];
	const char *slash = strchr(cidr, '/');
	struct in_addr a;
	char *end;
	unsigned long len;
	uint32_t h;

	if (!slash || (size_t)(slash - cidr) >= sizeof(addr))
		return err_set(err, EINVAL, "%s: expected an IPv4 range such as %s", cidr, MANIFEST_DEFAULT_POOL);
	memcpy(addr, cidr, (size_t)(slash - cidr));
	addr[slash - cidr] = 0;
	errno = 0;
	len = strtoul(slash + 1, &end, 10);
	if (inet_pton(AF_INET, addr, &a) != 1 || errno || end == slash + 1 || *end || slash[1] == '-' || slash[1] == '+')
		return err_set(err, EINVAL, "%s: expected an IPv4 range such as %s", cidr, MANIFEST_DEFAULT_POOL);
	if (len < 8 || len > 24)
		return err_set(err, EINVAL, "%s: the prefix length must be between 8 and 24", cidr);
	h = ntohl(a.s_addr);
	if (h & ~(0xffffffffu << (32 - len)))
		return err_set(err, EINVAL, "%s: has bits set past its prefix length", cidr);
	/* These would give the app loopback (the redirect's own target), "this network" or multicast. */
	if ((h >> 24) == 0 || (h >> 24) == 127 || (h >> 29) == 7)
		return err_set(err, EINVAL, "%s: a pool cannot be in 0.0.0.0/8, 127.0.0.0/8 or 224.0.0.0/3", cidr);
	if (base)
		*base = h;
	if (prefix)
		*prefix = (uint32_t)len;
	return 0;
}

bool manifest_transparent_enabled(const struct manifest *m)
{
	return manifest_egress_enabled(m) && m->egress_transparent != 0;
}

const char *manifest_transparent_pool(const struct manifest *m)
{
	return m->egress_pool ? m->egress_pool : MANIFEST_DEFAULT_POOL;
}

/* Inside the enclave the app and odyn share 127.0.0.1: the app listens on every ingress
 * port, odyn on the egress, KMS and API ports. Two of them on one port cannot both work. */
static int check_loopback_ports(struct ctx *c, struct manifest *m, yaml_node_t *root)
{
	struct {
		const char *what;
		uint16_t port;
		const char *key;
	} used[5];
	size_t n = 0;

	if (manifest_egress_enabled(m))
		used[n++] = (typeof(used[0])){ "egress.proxy_port", m->egress_proxy_port, "egress" };
	if (manifest_transparent_enabled(m))
		used[n++] = (typeof(used[0])){ "egress.transparent_port", m->egress_transparent_port, "egress" };
	if (m->has_kms_proxy)
		used[n++] = (typeof(used[0])){ "kms_proxy.listen_port", m->kms_proxy_port, "kms_proxy" };
	if (m->has_api)
		used[n++] = (typeof(used[0])){ "api.listen_port", m->api_port, "api" };
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *at = map_get(c, root, used[i].key, NULL);

		for (size_t j = 0; j < i; j++)
			if (used[j].port == used[i].port)
				return fail(c, at, "%s: port %u is already used by %s", used[i].what,
					    used[i].port, used[j].what);
		for (size_t j = 0; j < m->n_ingress; j++)
			if (m->ingress[j].listen_port == used[i].port)
				return fail(c, at, "%s: port %u is also ingress[%zu].listen_port, where the app listens",
					    used[i].what, used[i].port, j);
	}
	return 0;
}

static int parse_root(struct ctx *c, struct manifest *m, yaml_node_t *root, const char *dir)
{
	static const char *const keys[] = { "version", "name", "target", "sources", "signature",
					    "ingress", "egress", "defaults", "kms_proxy", "api", NULL };
	yaml_node_t *v, *k = NULL;

	if (root->type != YAML_MAPPING_NODE)
		return fail(c, root, "the manifest must be a mapping, not %s", kind_name(root));
	if (check_keys(c, root, "the manifest", keys) < 0)
		return -1;
	if (required_string(c, root, "version", "", &m->version) < 0 ||
	    required_string(c, root, "name", "", &m->name) < 0 ||
	    required_string(c, root, "target", "", &m->target) < 0)
		return -1;
	v = map_get(c, root, "sources", NULL);
	if (!v)
		return fail(c, root, "missing required key \"sources\"");
	if (parse_sources(c, m, v) < 0)
		return -1;
	resolve_app_path(m, dir);
	if ((v = map_get(c, root, "signature", NULL)) && parse_signature(c, m, v, dir) < 0)
		return -1;
	if ((v = map_get(c, root, "ingress", NULL)) && parse_ingress(c, m, v) < 0)
		return -1;
	k = NULL;
	v = map_get(c, root, "egress", &k);
	if (k && parse_egress(c, m, v) < 0)
		return -1;
	m->cpu_count = MANIFEST_DEFAULT_CPU_COUNT;
	m->memory_mb = MANIFEST_DEFAULT_MEMORY_MB;
	if ((v = map_get(c, root, "defaults", NULL)) && parse_defaults(c, m, v) < 0)
		return -1;
	k = NULL;
	if ((v = map_get(c, root, "kms_proxy", &k)) && parse_kms_proxy(c, m, v) < 0)
		return -1;
	if (m->has_kms_proxy && !manifest_egress_enabled(m))
		return fail(c, k, "%s", MANIFEST_NO_EGRESS_MSG);
	if ((v = map_get(c, root, "api", NULL)) && parse_api(c, m, v) < 0)
		return -1;
	return check_loopback_ports(c, m, root);
}

static int yaml_failure(struct ctx *c, yaml_parser_t *p)
{
	const char *problem = p->problem ? p->problem : "cannot parse";

	if (p->error == YAML_MEMORY_ERROR)
		return err_set(c->err, ENOMEM, "%s: out of memory", c->name);
	if (p->context)
		return err_set(c->err, EINVAL, "%s:%zu:%zu: YAML syntax error: %s %s", c->name,
			       p->problem_mark.line + 1, p->problem_mark.column + 1, problem, p->context);
	return err_set(c->err, EINVAL, "%s:%zu:%zu: YAML syntax error: %s", c->name,
		       p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
}

/* libyaml's time grows with the square of the nesting depth (50,000 levels: seconds; a 1 MiB
 * manifest: minutes): the depth is checked on the event stream first, which stops at the first
 * level too deep, before a document is loaded. */
static int check_depth(struct ctx *c, const uint8_t *data, size_t len)
{
	yaml_parser_t p;
	yaml_event_t ev;
	int depth = 0, rc = 0;

	if (!yaml_parser_initialize(&p))
		abort();
	yaml_parser_set_input_string(&p, data, len);
	for (;;) {
		yaml_event_type_t type;

		if (!yaml_parser_parse(&p, &ev)) {
			rc = yaml_failure(c, &p);
			break;
		}
		type = ev.type;
		if ((type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT) && ++depth > MANIFEST_MAX_DEPTH)
			rc = err_set(c->err, EINVAL, "%s:%zu:%zu: nested more than %d levels deep (a manifest needs 4)",
				     c->name, ev.start_mark.line + 1, ev.start_mark.column + 1, MANIFEST_MAX_DEPTH);
		else if (type == YAML_MAPPING_END_EVENT || type == YAML_SEQUENCE_END_EVENT)
			depth--;
		yaml_event_delete(&ev);
		if (rc < 0 || type == YAML_STREAM_END_EVENT)
			break;
	}
	yaml_parser_delete(&p);
	return rc;
}

int manifest_parse(const char *name, const char *dir, const uint8_t *data, size_t len,
		   struct manifest **out, struct err *err)
{
	struct manifest *m = calloc(1, sizeof(*m));
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	struct ctx c = { name, &doc, err };
	yaml_node_t *root;
	int rc = -1;

	if (!m)
		abort();
	m->path = strdup(name);
	m->dir = strdup(dir);
	if (!m->path || !m->dir)
		abort();
	buf_append(&m->raw, data, len);
	if (check_depth(&c, data, len) < 0) {
		manifest_free(m);
		return -1;
	}
	if (!yaml_parser_initialize(&parser))
		abort();
	yaml_parser_set_input_string(&parser, data, len);
	if (!yaml_parser_load(&parser, &doc)) {
		yaml_failure(&c, &parser);
		yaml_parser_delete(&parser);
		manifest_free(m);
		return -1;
	}
	root = yaml_document_get_root_node(&doc);
	if (!root) {
		rc = err_set(err, EINVAL, "%s: the manifest is empty", name);
	} else if (parse_root(&c, m, root, dir) == 0) {
		/* A second document would be silently ignored by other tools: refuse it. */
		if (!yaml_parser_load(&parser, &extra)) {
			rc = yaml_failure(&c, &parser);
		} else {
			yaml_node_t *r2 = yaml_document_get_root_node(&extra);

			rc = r2 ? fail(&c, r2, "only one YAML document is allowed in a manifest") : 0;
			yaml_document_delete(&extra);
		}
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (rc < 0) {
		manifest_free(m);
		return -1;
	}
	*out = m;
	return 0;
}

int manifest_load(const char *path, struct manifest **out, struct err *err)
{
	struct buf data = BUF_INIT;
	autofree char *dir = NULL;
	int rc;

	if (fs_read_file(path, MANIFEST_MAX_SIZE, &data, err) < 0) {
		buf_free(&data);
		return err_wrap(err, "cannot read the manifest");
	}
	dir = strcmp(path, "-") == 0 ? strdup(".") : fs_dirname(path);
	rc = manifest_parse(strcmp(path, "-") == 0 ? "<stdin>" : path, dir, data.data, data.len, out, err);
	buf_free(&data);
	return rc;
}

static void free_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	free(m->path);
	free(m->dir);
	buf_free(&m->raw);
	free(m->version);
	free(m->name);
	free(m->target);
	free(m->source_app);
	free(m->source_odyn);
	free(m->source_sleeve);
	free(m->signature_certificate);
	free(m->signature_key);
	for (size_t i = 0; i < m->n_ingress; i++) {
		free(m->ingress[i].tls_key_file);
		free(m->ingress[i].tls_cert_file);
	}
	free(m->ingress);
	free_list(m->egress_allow, m->n_egress_allow);
	free_list(m->egress_deny, m->n_egress_deny);
	free(m->egress_pool);
	for (size_t i = 0; i < m->n_kms_endpoints; i++) {
		free(m->kms_endpoints[i].region);
		free(m->kms_endpoints[i].authority);
	}
	free(m->kms_endpoints);
	free(m);
}

static json_t *json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *json_list(char **list, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(list[i]));
	return a;
}

char *manifest_to_json(const struct manifest *m)
{
	json_t *root = json_object(), *sources = json_object(), *ingress = json_array();
	json_t *defaults = json_object();
	char *s;

	json_object_set_new(root, "version", json_string(m->version));
	json_object_set_new(root, "name", json_string(m->name));
	json_object_set_new(root, "target", json_string(m->target));
	json_object_set_new(sources, "app", json_string(m->source_app));
	json_object_set_new(sources, "odyn", json_str_or_null(m->source_odyn));
	json_object_set_new(sources, "sleeve", json_str_or_null(m->source_sleeve));
	json_object_set_new(root, "sources", sources);
	if (m->has_signature)
		json_object_set_new(root, "signature",
				    json_pack("{s:s, s:s}", "certificate", m->signature_certificate, "key",
					      m->signature_key));
	else
		json_object_set_new(root, "signature", json_null());
	for (size_t i = 0; i < m->n_ingress; i++) {
		const struct manifest_ingress *in = &m->ingress[i];
		json_t *tls = in->tls ? json_pack("{s:s, s:s}", "key_file", in->tls_key_file, "cert_file",
						  in->tls_cert_file)
				      : json_null();

		json_array_append_new(ingress, json_pack("{s:i, s:o}", "listen_port", in->listen_port, "tls", tls));
	}
	json_object_set_new(root, "ingress", ingress);
	if (m->has_egress)
		json_object_set_new(
			root, "egress",
			json_pack("{s:i, s:o, s:o, s:b, s:{s:b, s:b, s:s, s:i}}", "proxy_port", m->egress_proxy_port,
				  "allow", json_list(m->egress_allow, m->n_egress_allow), "deny",
				  json_list(m->egress_deny, m->n_egress_deny), "enabled", manifest_egress_enabled(m),
				  "transparent", "enabled", manifest_transparent_enabled(m), "required",
				  m->egress_transparent == 1 && manifest_egress_enabled(m), "pool",
				  manifest_transparent_pool(m), "port", m->egress_transparent_port));
	else
		json_object_set_new(root, "egress", json_null());
	json_object_set_new(defaults, "cpu_count", json_integer(m->cpu_count));
	json_object_set_new(defaults, "memory_mb", json_integer(m->memory_mb));
	json_object_set_new(root, "defaults", defaults);
	if (m->has_kms_proxy) {
		json_t *eps = json_object();

		for (size_t i = 0; i < m->n_kms_endpoints; i++)
			json_object_set_new(eps, m->kms_endpoints[i].region,
					    json_string(m->kms_endpoints[i].authority));
		json_object_set_new(root, "kms_proxy",
				    json_pack("{s:i, s:o}", "listen_port", m->kms_proxy_port, "endpoints", eps));
	} else {
		json_object_set_new(root, "kms_proxy", json_null());
	}
	json_object_set_new(root, "api",
			    m->has_api ? json_pack("{s:i}", "listen_port", m->api_port) : json_null());
	s = json_dumps(root, JSON_INDENT(2));
	json_decref(root);
	if (!s)
		abort();
	return s;
}

static int by_port(const void *a, const void *b)
{
	const struct manifest_ingress *x = a, *y = b;

	return (int)x->listen_port - (int)y->listen_port;
}

static int by_region(const void *a, const void *b)
{
	return strcmp(((const struct manifest_endpoint *)a)->region, ((const struct manifest_endpoint *)b)->region);
}

char *manifest_canonical(const struct manifest *m)
{
	json_t *root = json_object(), *ingress = json_array();
	struct manifest_ingress *in = calloc(m->n_ingress + 1, sizeof(*in));
	struct manifest_endpoint *eps = calloc(m->n_kms_endpoints + 1, sizeof(*eps));
	char *text, *out;

	if (!in || !eps)
		abort();
	/* Keys odyn never reads, required by the schema (upstream's odyn parses this file too),
	 * hold a placeholder: renaming the image or its target leaves PCR0 alone. */
	json_object_set_new(root, "version", json_string(m->version));
	json_object_set_new(root, "name", json_string("-"));
	json_object_set_new(root, "target", json_string("-"));
	json_object_set_new(root, "sources", json_pack("{s:s}", "app", "-"));
	/* The order of ports is not used; the TLS key and certificate are read from fixed paths,
	 * so the file names written in the manifest are not used either. */
	if (m->n_ingress) { /* m->ingress may be NULL, which memcpy and qsort must not see */
		memcpy(in, m->ingress, m->n_ingress * sizeof(*in));
		qsort(in, m->n_ingress, sizeof(*in), by_port);
	}
	for (size_t i = 0; i < m->n_ingress; i++) {
		json_t *e = json_pack("{s:i}", "listen_port", in[i].listen_port);

		if (in[i].tls) {
			char key[80], cert[80];

			snprintf(key, sizeof(key), "/etc/enclaver/tls/server/%u/key.pem", in[i].listen_port);
			snprintf(cert, sizeof(cert), "/etc/enclaver/tls/server/%u/cert.pem", in[i].listen_port);
			json_object_set_new(e, "tls", json_pack("{s:s, s:s}", "key_file", key, "cert_file", cert));
		}
		json_array_append_new(ingress, e);
	}
	if (m->n_ingress)
		json_object_set_new(root, "ingress", ingress);
	else
		json_decref(ingress);
	if (m->has_egress) {
		/* values as parsed, defaults filled in; what was left unset stays unset where unset
		 * means something of its own (transparent: on, but not required) */
		json_t *e = json_pack("{s:i, s:o, s:o}", "proxy_port", m->egress_proxy_port, "allow",
				      json_list(m->egress_allow, m->n_egress_allow), "deny",
				      json_list(m->egress_deny, m->n_egress_deny));

		if (m->egress_transparent >= 0)
			json_object_set_new(e, "transparent", json_boolean(m->egress_transparent));
		if (m->egress_pool)
			json_object_set_new(e, "transparent_pool", json_string(m->egress_pool));
		if (m->egress_transparent_port)
			json_object_set_new(e, "transparent_port", json_integer(m->egress_transparent_port));
		json_object_set_new(root, "egress", e);
	}
	if (m->has_kms_proxy) {
		json_t *map = json_object();

		if (m->n_kms_endpoints) {
			memcpy(eps, m->kms_endpoints, m->n_kms_endpoints * sizeof(*eps));
			qsort(eps, m->n_kms_endpoints, sizeof(*eps), by_region);
		}
		for (size_t i = 0; i < m->n_kms_endpoints; i++)
			json_object_set_new(map, eps[i].region, json_string(eps[i].authority));
		json_object_set_new(root, "kms_proxy", json_pack("{s:i, s:o}", "listen_port", m->kms_proxy_port,
								 "endpoints", map));
	}
	if (m->has_api)
		json_object_set_new(root, "api", json_pack("{s:i}", "listen_port", m->api_port));
	free(in);
	free(eps);
	/* JSON is YAML: odyn's parser and upstream's read it. ASCII only, keys in this order. */
	text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(root);
	if (!text || asprintf(&out,
			      "# What the enclave uses of enclaver.yaml, as enclaver build puts it in the EIF: comments,\n"
			      "# layout, name, target, sources, signature and defaults do not reach PCR0.\n%s\n",
			      text) < 0)
		abort();
	free(text);
	return out;
}
