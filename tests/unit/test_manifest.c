/* Manifest loader: upstream examples, defaults, aliases, and errors with file:line:column. */
#include "harness.h"

#include "manifest/manifest.h"

static struct manifest *parse_ok(const char *yaml)
{
	struct manifest *m = NULL;
	struct err err = { 0 };

	if (manifest_parse("enclaver.yaml", "/proj", (const uint8_t *)yaml, strlen(yaml), &m, &err) < 0) {
		fprintf(stderr, "unexpected error: %s\n", err.msg);
		test_failures++;
	}
	return m;
}

static void expect_error(const char *yaml, const char *msg)
{
	struct manifest *m = NULL;
	struct err err = { 0 };

	if (manifest_parse("enclaver.yaml", "/proj", (const uint8_t *)yaml, strlen(yaml), &m, &err) == 0) {
		fprintf(stderr, "accepted, expected error \"%s\":\n%s\n", msg, yaml);
		test_failures++;
		manifest_free(m);
		return;
	}
	if (strcmp(err.msg, msg) != 0) {
		fprintf(stderr, "error \"%s\"\n  expected \"%s\"\n", err.msg, msg);
		test_failures++;
	}
}

#define HEAD "version: v1\nname: \"example\"\ntarget: \"enclave:latest\"\nsources:\n  app: \"app:latest\"\n"

static void test_upstream_v050_example(void)
{
	struct manifest *m = parse_ok("version: v1\nname: \"example\"\ntarget: \"enclave:latest\"\n"
				      "sources:\n  app: \"app:latest\"\n  supervisor: \"odyn-dev:latest\"\n"
				      "  wrapper: \"enclaver-wrapper-base:latest\"\ndefaults:\n  memory_mb: 1500\n"
				      "ingress:\n  - listen_port: 8000\negress:\n  allow:\n    - news.ycombinator.com\n");

	if (!m)
		return;
	CHECK_STR(m->source_odyn, "odyn-dev:latest");
	CHECK_STR(m->source_sleeve, "enclaver-wrapper-base:latest");
	CHECK_EQ_INT(m->memory_mb, 1500);
	CHECK_EQ_INT(m->cpu_count, 2);
	CHECK_EQ_INT(m->n_ingress, 1);
	CHECK_EQ_INT(m->ingress[0].listen_port, 8000);
	CHECK(manifest_egress_enabled(m));
	CHECK_EQ_INT(m->egress_proxy_port, 10000);
	CHECK_STR(m->egress_allow[0], "news.ycombinator.com");
	manifest_free(m);
}

static void test_upstream_v061_kms_example(void)
{
	struct manifest *m = parse_ok("version: v1\nname: \"intg-tests\"\ntarget: \"intg-tests:enclave\"\n"
				      "sources:\n  app: \"intg-tests:latest\"\n  odyn: \"odyn-dev:latest\"\n"
				      "  sleeve: \"enclaver-wrapper-base:latest\"\ndefaults:\n  memory_mb: 1500\n"
				      "egress:\n  allow:\n    - kms.*.amazonaws.com\n    - 169.254.169.254\n"
				      "kms_proxy:\n  listen_port: 7123\n");

	if (!m)
		return;
	CHECK(m->has_kms_proxy);
	CHECK_EQ_INT(m->kms_proxy_port, 7123);
	CHECK_EQ_INT(m->n_egress_allow, 2);
	CHECK(!m->has_api);
	manifest_free(m);
}

static void test_defaults_and_json(void)
{
	struct manifest *m = parse_ok(HEAD);
	char *json;

	if (!m)
		return;
	CHECK_EQ_INT(m->cpu_count, 2);
	CHECK_EQ_INT(m->memory_mb, 4096);
	CHECK(!m->has_egress);
	CHECK(m->source_odyn == NULL);
	json = manifest_to_json(m);
	CHECK(strstr(json, "\"memory_mb\": 4096") != NULL);
	CHECK(strstr(json, "\"egress\": null") != NULL);
	free(json);
	manifest_free(m);
}

static void test_v061_names_win(void)
{
	struct manifest *m = parse_ok(HEAD "  odyn: new\n  supervisor: old\n  wrapper: oldw\n  sleeve: neww\n");

	if (!m)
		return;
	CHECK_STR(m->source_odyn, "new");
	CHECK_STR(m->source_sleeve, "neww");
	manifest_free(m);
}

static void test_null_means_absent(void)
{
	struct manifest *m = parse_ok(HEAD "egress:\n  allow:\n  # nothing yet\n  deny: ~\napi: null\n");

	if (!m)
		return;
	CHECK(m->has_egress);
	CHECK(!manifest_egress_enabled(m));
	CHECK(!m->has_api);
	manifest_free(m);
}

static void test_signature_paths_relative(void)
{
	struct manifest *m = parse_ok(HEAD "signature:\n  certificate: certs/c.pem\n  key: /abs/k.pem\n");

	if (!m)
		return;
	CHECK_STR(m->signature_certificate, "/proj/certs/c.pem");
	CHECK_STR(m->signature_key, "/abs/k.pem");
	manifest_free(m);
}

static void test_errors_name_line_and_column(void)
{
	expect_error(HEAD "colour: blue\n",
		     "enclaver.yaml:6:1: unknown key \"colour\" in the manifest (expected one of: version, name, "
		     "target, sources, signature, ingress, egress, defaults, kms_proxy, api)");
	expect_error(HEAD "  extra: 1\n",
		     "enclaver.yaml:6:3: unknown key \"extra\" in sources (expected one of: app, odyn, sleeve, "
		     "supervisor, wrapper)");
	expect_error("version: v1\nname: x\nsources:\n  app: a\n",
		     "enclaver.yaml:1:1: missing required key \"target\"");
	expect_error(HEAD "ingress:\n  - listen_port: 70000\n",
		     "enclaver.yaml:7:18: ingress[0].listen_port: 70000 is not a valid port (1-65535)");
	expect_error(HEAD "ingress:\n  - listen_port: 0\n",
		     "enclaver.yaml:7:18: ingress[0].listen_port: 0 is not a valid port (1-65535)");
	expect_error(HEAD "ingress:\n  - listen_port: \"8000\"\n",
		     "enclaver.yaml:7:18: ingress[0].listen_port must be a number, not the string \"8000\"");
	expect_error(HEAD "ingress:\n  - listen_port: 8000\n  - listen_port: 8000\n",
		     "enclaver.yaml:8:18: ingress[1].listen_port: port 8000 is already used by ingress[0]");
	expect_error(HEAD "ingress:\n  - listen_port: 17001\n",
		     "enclaver.yaml:7:18: ingress[0].listen_port: port 17001 is reserved for enclaver's own vsock "
		     "channels (17000-17002); choose another port");
	expect_error(HEAD "defaults:\n  memory_mb: 63\n",
		     "enclaver.yaml:7:14: defaults.memory_mb: at least 64MiB of memory are required, got: 63");
	expect_error(HEAD "defaults:\n  cpu_count: 0\n",
		     "enclaver.yaml:7:14: defaults.cpu_count: at least 1 CPU is required, got: 0");
	expect_error(HEAD "kms_proxy:\n  listen_port: 9999\n",
		     "enclaver.yaml:6:1: " MANIFEST_NO_EGRESS_MSG);
	expect_error(HEAD "egress:\n  deny: [a.com]\nkms_proxy:\n  listen_port: 9999\n",
		     "enclaver.yaml:8:1: " MANIFEST_NO_EGRESS_MSG);
	expect_error(HEAD "egress:\n  allow:\n    - \"foo*.com\"\n",
		     "enclaver.yaml:8:7: egress.allow[0]: \"foo*.com\" is not a valid domain pattern: '*' and '**' "
		     "must be whole labels");
	expect_error(HEAD "egress:\n  allow: [\"10.0.0.0/33\"]\n",
		     "enclaver.yaml:7:11: egress.allow[0]: \"10.0.0.0/33\" is neither an IP address, a CIDR nor a "
		     "domain pattern");
	expect_error(HEAD "egress:\n  allow: [a.com]\nkms_proxy:\n  listen_port: 10000\n",
		     "enclaver.yaml:9:3: kms_proxy.listen_port: port 10000 is already used by egress.proxy_port");
	expect_error(HEAD "egress:\n  allow: [a.com]\nkms_proxy:\n  listen_port: 9\n  endpoints:\n"
		     "    us-east-1: https://kms.example\n",
		     "enclaver.yaml:11:16: kms_proxy.endpoints.us-east-1: \"https://kms.example\" must be host[:port], "
		     "without a scheme or path");
	expect_error(HEAD "name: again\n", "enclaver.yaml:6:1: duplicate key \"name\" in the manifest");
	expect_error("- a\n- b\n", "enclaver.yaml:1:1: the manifest must be a mapping, not a list");
	expect_error("", "enclaver.yaml: the manifest is empty");
	expect_error(HEAD "---\nversion: v2\n",
		     "enclaver.yaml:7:1: only one YAML document is allowed in a manifest");
	expect_error("version: [v1\n", "enclaver.yaml:2:1: YAML syntax error: did not find expected ',' or ']' "
				      "while parsing a flow sequence");
	expect_error(HEAD "signature:\n  certificate: c.pem\n",
		     "enclaver.yaml:7:3: missing required key \"signature.key\" in signature");
}

static void test_endpoints(void)
{
	struct manifest *m = parse_ok(HEAD "egress:\n  allow: [\"**\"]\nkms_proxy:\n  listen_port: 9000\n"
				      "  endpoints:\n    us-east-1: kms.local:4443\n");

	if (!m)
		return;
	CHECK_EQ_INT(m->n_kms_endpoints, 1);
	CHECK_STR(m->kms_endpoints[0].region, "us-east-1");
	CHECK_STR(m->kms_endpoints[0].authority, "kms.local:4443");
	manifest_free(m);
}

static void test_transparent_egress_settings(void)
{
	struct manifest *m = parse_ok(HEAD "egress:\n  allow: [example.com]\n");

	if (!m)
		return;
	/* on with egress, not required, the default pool and port */
	CHECK(manifest_transparent_enabled(m));
	CHECK_EQ_INT(m->egress_transparent, -1);
	CHECK_STR(manifest_transparent_pool(m), "198.18.0.0/15");
	CHECK_EQ_INT(m->egress_transparent_port, 10001);
	manifest_free(m);
	m = parse_ok(HEAD "egress:\n  allow: [example.com]\n  transparent: false\n");
	CHECK(m && !manifest_transparent_enabled(m));
	manifest_free(m);
	m = parse_ok(HEAD "egress:\n  allow: [example.com]\n  transparent: True\n  transparent_pool: 100.64.0.0/10\n"
			  "  transparent_port: 15001\n");
	CHECK(m && manifest_transparent_enabled(m) && m->egress_transparent == 1);
	CHECK_STR(manifest_transparent_pool(m), "100.64.0.0/10");
	CHECK_EQ_INT(m->egress_transparent_port, 15001);
	manifest_free(m);
	/* no allow list, no egress: nothing to make transparent */
	m = parse_ok(HEAD "egress:\n  deny: [example.com]\n  transparent: true\n");
	CHECK(m && !manifest_transparent_enabled(m));
	manifest_free(m);
	expect_error(HEAD "egress:\n  allow: [a.com]\n  transparent: yes\n",
		     "enclaver.yaml:8:16: egress.transparent must be true or false, got \"yes\"");
	expect_error(HEAD "egress:\n  allow: [a.com]\n  transparent: \"true\"\n",
		     "enclaver.yaml:8:16: egress.transparent must be true or false, got \"true\"");
	expect_error(HEAD "egress:\n  allow: [a.com]\n  transparent_pool: 127.0.0.0/8\n",
		     "enclaver.yaml:8:21: egress.transparent_pool: 127.0.0.0/8: a pool cannot be in 0.0.0.0/8, "
		     "127.0.0.0/8 or 224.0.0.0/3");
	expect_error(HEAD "egress:\n  allow: [a.com]\n  transparent_pool: 198.18.0.0/30\n",
		     "enclaver.yaml:8:21: egress.transparent_pool: 198.18.0.0/30: the prefix length must be between 8 and 24");
	expect_error(HEAD "egress:\n  allow: [a.com]\n  transparent_port: 10000\n",
		     "enclaver.yaml:7:3: egress.transparent_port: port 10000 is already used by egress.proxy_port");
}

TEST_MAIN(T(test_transparent_egress_settings), T(test_upstream_v050_example), T(test_upstream_v061_kms_example), T(test_defaults_and_json),
	  T(test_v061_names_win), T(test_null_means_absent), T(test_signature_paths_relative),
	  T(test_errors_name_line_and_column), T(test_endpoints))
