/*
 * enclaver.yaml: the model, the loader and its validation (spec/enclaver-compat.md §2).
 * Loaded by the CLI at build time and by odyn and enclaver-run at run time.
 */
#ifndef ENCLAVER_MANIFEST_MANIFEST_H
#define ENCLAVER_MANIFEST_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

#define MANIFEST_DEFAULT_CPU_COUNT 2
#define MANIFEST_DEFAULT_MEMORY_MB 4096
#define MANIFEST_DEFAULT_PROXY_PORT 10000
#define MANIFEST_DEFAULT_TRANSPARENT_PORT 10001
/* RFC 2544's benchmarking range: never a real destination, so never shadowed. */
#define MANIFEST_DEFAULT_POOL "198.18.0.0/15"
#define MANIFEST_MIN_MEMORY_MB 64
#define MANIFEST_MAX_SIZE (1 << 20)
/* Mappings and sequences inside one another; a manifest needs four. */
#define MANIFEST_MAX_DEPTH 32

/* Vsock ports enclaver itself uses; ingress ports may not take them. */
#define PORT_STATUS 17000
#define PORT_LOGS 17001
#define PORT_EGRESS 17002

#define MANIFEST_NO_EGRESS_MSG                                                                      \
	"KMS proxy is configured but egress is not. Configure egress allow policy to access the IMDS " \
	"at 169.254.169.254 and the AWS KMS endpoint"

struct manifest_ingress {
	uint16_t listen_port;
	bool tls;
	char *tls_key_file;
	char *tls_cert_file;
};

struct manifest_endpoint {
	char *region;
	char *authority; /* host[:port] */
};

struct manifest {
	char *path; /* as given; "-" for stdin */
	char *dir;  /* folder relative paths resolve against */
	struct buf raw; /* the file's bytes, verbatim */

	char *version;
	char *name;
	char *target;
	char *source_app;
	char *source_odyn;   /* NULL: the odyn built with this enclaver */
	char *source_sleeve; /* NULL: the built-in sleeve */

	bool has_signature;
	char *signature_certificate; /* resolved against dir */
	char *signature_key;

	struct manifest_ingress *ingress;
	size_t n_ingress;

	bool has_egress;
	uint16_t egress_proxy_port;
	char **egress_allow;
	size_t n_egress_allow;
	char **egress_deny;
	size_t n_egress_deny;
	int egress_transparent; /* -1: not set (on; a failure to set it up is a warning), 0 off, 1 required */
	char *egress_pool;	/* NULL: POOL_DEFAULT */
	uint16_t egress_transparent_port;

	int cpu_count;
	int memory_mb;

	bool has_kms_proxy;
	uint16_t kms_proxy_port;
	struct manifest_endpoint *kms_endpoints;
	size_t n_kms_endpoints;

	bool has_api;
	uint16_t api_port;
};

/* Loads and validates path ("-" reads stdin). Errors read "path:line:column: message". */
int manifest_load(const char *path, struct manifest **out, struct err *err);
/* Parses bytes already in memory; name is used in messages, dir for relative paths. */
int manifest_parse(const char *name, const char *dir, const uint8_t *data, size_t len,
		   struct manifest **out, struct err *err);
void manifest_free(struct manifest *m);

/* Egress is on only with a non-empty allow list (upstream semantics). */
bool manifest_egress_enabled(const struct manifest *m);

/* Transparent egress and DNS: on with egress unless egress.transparent is false. */
bool manifest_transparent_enabled(const struct manifest *m);
/* A synthetic pool, "a.b.c.d/len" with 8 <= len <= 24, outside 0/8, 127/8 and 224/3; base (host
 * order) and prefix may be NULL. */
int manifest_pool_parse(const char *cidr, uint32_t *base, uint32_t *prefix, struct err *err);
const char *manifest_transparent_pool(const struct manifest *m);

/* The resolved manifest, defaults filled in, as indented JSON; caller frees. */
char *manifest_to_json(const struct manifest *m);
/* The manifest as enclaver build puts it in the EIF, where PCR0 measures it: only what the
 * enclave uses, in one form (YAML, written as JSON), so that comments, layout, key order and the
 * build-time keys (name, target, sources, signature, defaults) do not change PCR0. Re-parsed,
 * it gives the enclave the same settings. The caller frees it. */
char *manifest_canonical(const struct manifest *m);

#endif
