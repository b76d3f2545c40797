/*
 * enclaver kms-local: a local stand-in for AWS KMS, for development and tests. Keys, policies
 * and credentials live in the state folder ($ENCLAVER_STATE_DIR/kms); the address it serves
 * on is written to kms/endpoint.json there, where local enclaves started with the same state
 * folder find it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "cmd/cmd.h"
#include "kms/service.h"
#include "net/http_server.h"
#include "net/loop.h"
#include "nitro/attestation.h"
#include "nitro/devca.h"

#define DEFAULT_LISTEN "127.0.0.1:9700"
#define MAX_BODY (1u << 20)

static void on_request(void *ctx, struct http_conn *c, const struct http_request *req, const uint8_t *body,
		       size_t len)
{
	struct kms_service *s = ctx;
	struct buf out = BUF_INIT;
	int status = 500;
	static const char *const hdrs[] = { "x-amzn-requestid: 00000000-0000-4000-8000-000000000000", NULL };

	kms_service_handle(s, req, body, len, &status, &out);
	http_respond(c, status, "application/x-amz-json-1.1", out.data, out.len, hdrs);
	buf_free_secret(&out);
}

static void on_signal(struct loop *l, int sig, void *data)
{
	log_info("received %s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	loop_stop(l);
}

static int split_listen(const char *spec, char *addr, size_t size, uint16_t *port)
{
	const char *colon = strrchr(spec, ':');
	char *end;
	long p;
	struct in_addr ia;

	if (!colon || (size_t)(colon - spec) >= size)
		return -1;
	memcpy(addr, spec, (size_t)(colon - spec));
	addr[colon - spec] = 0;
	p = strtol(colon + 1, &end, 10);
	if (*end || p < 0 || p > 65535 || inet_pton(AF_INET, addr, &ia) != 1)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

static X509 *load_root(const char *which, const char *state, struct err *err)
{
	if (!strcmp(which, "aws"))
		return att_aws_root();
	if (!strcmp(which, "dev")) {
		struct devca *ca = NULL;
		X509 *root;

		if (devca_open(state, &ca, err) < 0)
			return NULL;
		root = X509_dup(ca->root);
		devca_free(ca);
		return root;
	}
	{
		FILE *f = fopen(which, "re");
		X509 *x;

		if (!f) {
			err_sys(err, "--attestation-root %s", which);
			return NULL;
		}
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
		if (!x)
			err_set(err, EINVAL, "--attestation-root %s: not a PEM certificate", which);
		return x;
	}
}

static int endpoint_path(const char *state, char *out, size_t size)
{
	return snprintf(out, size, "%s/kms/endpoint.json", state) >= (int)size ? -1 : 0;
}

static int cmd_env(const char *state, const char *region)
{
	struct kms_master m;
	struct err err = { 0 };
	char path[4200];
	json_t *ep;
	const char *http;

	if (kms_master_open(state, region, &m, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	endpoint_path(state, path, sizeof(path));
	ep = json_load_file(path, 0, NULL);
	http = json_string_value(json_object_get(ep, "http"));
	printf("export AWS_ACCESS_KEY_ID=%s\n", m.access_key);
	printf("export AWS_SECRET_ACCESS_KEY=%s\n", m.secret_key);
	printf("export AWS_DEFAULT_REGION=%s\n", m.region);
	printf("export AWS_ENDPOINT_URL_KMS=http://%s\n", http ? http : DEFAULT_LISTEN);
	printf("# AWS CLIs and SDKs older than AWS_ENDPOINT_URL_KMS: --endpoint-url http://%s\n",
	       http ? http : DEFAULT_LISTEN);
	json_decref(ep);
	explicit_bzero(&m, sizeof(m));
	return 0;
}

int cmd_kms_local(int argc, char **argv)
{
	enum { O_LISTEN = 256, O_REGION, O_ROOT, O_AGE };
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "region", required_argument, NULL, O_REGION },
		{ "attestation-root", required_argument, NULL, O_ROOT },
		{ "max-document-age", required_argument, NULL, O_AGE },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen = DEFAULT_LISTEN, *region = NULL, *root_spec = "dev";
	char state[4096], addr[64], path[4200];
	uint16_t port;
	unsigned max_age = 300;
	struct kms_service svc = { 0 };
	struct loop *l = NULL;
	struct http_server *srv = NULL;
	struct err err = { 0 };
	int c, rc = 1, sigs[] = { SIGINT, SIGTERM };

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN: listen = optarg; break;
		case O_REGION: region = optarg; break;
		case O_ROOT: root_spec = optarg; break;
		case O_AGE: max_age = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h':
			printf("usage: enclaver kms-local [--listen ADDR:PORT] [--region REGION]\n"
			       "                          [--attestation-root dev|aws|PEM] [--max-document-age SECONDS]\n"
			       "       enclaver kms-local env\n\n"
			       "A local stand-in for AWS KMS (JSON 1.1, SigV4) on ADDR:PORT (default %s).\n"
			       "Keys, policies and credentials live in $ENCLAVER_STATE_DIR/kms. Recipient\n"
			       "attestation documents are checked against the local development CA (dev,\n"
			       "the default), AWS's Nitro root (aws), or a PEM root, and must be younger than\n"
			       "--max-document-age (default 300 s). `env` prints the shell exports with which\n"
			       "the AWS CLI and SDKs on this machine talk to it.\n",
			       DEFAULT_LISTEN);
			return 0;
		default:
			return EXIT_USAGE;
		}
	}
	devca_state_dir(state, sizeof(state));
	if (optind < argc && !strcmp(argv[optind], "env"))
		return cmd_env(state, region);
	if (optind < argc) {
		log_error("unexpected argument \"%s\" (kms-local takes env, or options)", argv[optind]);
		return EXIT_USAGE;
	}
	if (split_listen(listen, addr, sizeof(addr), &port) < 0) {
		log_error("--listen %s: use an IPv4 ADDRESS:PORT such as %s", listen, DEFAULT_LISTEN);
		return EXIT_USAGE;
	}
	svc.max_doc_age = max_age;
	if (kms_master_open(state, region, &svc.master, &err) < 0 ||
	    kms_store_open(state, svc.master.account, svc.master.region, &svc.store, &err) < 0)
		goto fail;
	if (region && strcmp(region, svc.master.region))
		log_warn("this state folder's local KMS serves %s, not %s (remove %s/kms to start afresh)",
			 svc.master.region, region, state);
	svc.root = load_root(root_spec, state, &err);
	if (!svc.root)
		goto fail;
	if (loop_new(&l, &err) < 0 || loop_signals(l, sigs, 2, on_signal, NULL, &err) < 0 ||
	    http_server_start_at(l, addr, port, MAX_BODY, on_request, &svc, &srv, &err) < 0)
		goto fail;
	{
		char where[96], *text;
		json_t *ep;

		snprintf(where, sizeof(where), "%s:%u", addr, http_server_port(srv));
		ep = json_pack("{s:s, s:s, s:i}", "http", where, "region", svc.master.region, "pid", (int)getpid());
		text = json_dumps(ep, JSON_INDENT(2));
		json_decref(ep);
		endpoint_path(state, path, sizeof(path));
		rc = fs_write_file_atomic(path, text, strlen(text), 0644, &err);
		free(text);
		if (rc < 0)
			goto fail;
		log_info("local KMS for %s on http://%s (state %s, %zu keys; attestation root: %s)", svc.master.region,
			 where, state, svc.store->n_keys, root_spec);
	}
	rc = loop_run(l, &err) < 0 ? 1 : 0;
	unlink(path);
	goto out;
fail:
	log_error("%s", err.msg);
	rc = 1;
out:
	http_server_stop(srv);
	if (l) {
		loop_close_all(l);
		loop_free(l);
	}
	X509_free(svc.root);
	kms_store_free(svc.store);
	explicit_bzero(&svc.master, sizeof(svc.master));
	return rc;
}
