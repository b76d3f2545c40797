/*
 * enclaver kms-local: a local stand-in for AWS KMS, for development and tests. Keys, policies
 * and credentials live in the state folder ($ENCLAVER_STATE_DIR/kms); the address it serves
 * on is written to endpoints/kms.json there, where local enclaves started with the same state
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
#include <sys/file.h>
#include <unistd.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include "base/fs.h"
#include "base/log.h"
#include "cmd/cmd.h"
#include "enclave/tls_relay.h"
#include "kms/service.h"
#include "net/accept.h"
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

/* HTTPS for enclaves: TLS ends here and the bytes go on to the HTTP listener. Each takes one of
 * the HTTP server's connections: half of them at most, so that HTTP clients always get through. */
#define HTTPS_MAX_CONNS (HTTP_SERVER_MAX_CONNS / 2)
struct tls_front {
	struct loop *loop;
	SSL_CTX *ctx;
	struct acceptor acc;
	int lfd;
	uint16_t http_port;
};

static void on_tls_done(void *data)
{
	struct tls_front *f = data;

	acceptor_release(&f->acc);
}

static void on_tls_accept(struct acceptor *a, int fd)
{
	struct tls_front *f = a->data;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(f->http_port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct err err = { 0 };
	int app;

	/* Non-blocking: with the HTTP listener's backlog full a blocking connect would hold the
	 * loop, which must go on serving (and hearing SIGTERM); the relay waits for it instead. */
	app = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (app < 0 || (connect(app, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)) {
		log_warn("HTTPS: %s", strerror(errno));
		close(fd);
		if (app >= 0)
			close(app);
		acceptor_release(a);
		return;
	}
	if (tls_relay_start(f->loop, f->ctx, fd, app, on_tls_done, f, &err) < 0) {
		log_warn("HTTPS: %s", err.msg);
		acceptor_release(a);
	}
}

static int tls_front_start(struct loop *l, const char *state, const char *region, const char *addr, uint16_t port,
			   uint16_t http_port, struct tls_front *f, struct err *err)
{
	struct devca *ca = NULL;
	char host[128];
	const char *dns[] = { host, "localhost" };
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, rc = -1;

	snprintf(host, sizeof(host), "kms.%s.amazonaws.com", region);
	f->loop = l;
	f->http_port = http_port;
	f->lfd = -1;
	if (devca_open(state, &ca, err) < 0 || devca_tls_server(ca, dns, 2, 30, &cert, &key, err) < 0)
		goto out;
	f->ctx = SSL_CTX_new(TLS_server_method());
	if (!f->ctx || SSL_CTX_use_certificate(f->ctx, cert) != 1 || SSL_CTX_use_PrivateKey(f->ctx, key) != 1 ||
	    SSL_CTX_add1_chain_cert(f->ctx, ca->inter) != 1) {
		err_set(err, EINVAL, "TLS context for %s", host);
		goto out;
	}
	SSL_CTX_set_min_proto_version(f->ctx, TLS1_2_VERSION);
	inet_pton(AF_INET, addr, &sa.sin_addr);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->lfd < 0 || setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(f->lfd, 256) < 0) {
		err_sys(err, "HTTPS %s:%u", addr, port);
		goto out;
	}
	if (acceptor_start(l, &f->acc, f->lfd, "HTTPS", HTTPS_MAX_CONNS, on_tls_accept, f, err) < 0) {
		f->lfd = -1; /* closed by the acceptor */
		goto out;
	}
	rc = 0;
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	devca_free(ca);
	return rc;
}

static uint16_t bound_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	return getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ? 0 : ntohs(sa.sin_port);
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
		X509 *x = att_load_root(which, err);

		if (!x)
			err_wrap(err, "--attestation-root");
		return x;
	}
}

static int endpoint_path(const char *state, char *out, size_t size)
{
	return snprintf(out, size, "%s/" KMS_LOCAL_ENDPOINT, state) >= (int)size ? -1 : 0;
}

/* One kms-local per state folder: two would each write the key store from their own copy, and
 * the second would lose keys the first had acknowledged. The lock dies with its holder. */
static int lock_state(const char *state, int *out, struct err *err)
{
	char path[4200], pid[32];
	int fd;

	snprintf(path, sizeof(path), "%s/kms/lock", state);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return err_sys(err, "%s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);

		pid[n > 0 ? n : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		close(fd);
		if (errno != EWOULDBLOCK)
			return err_sys(err, "%s", path);
		return err_set(err, EBUSY,
			       "another kms-local (pid %s) serves the state folder %s: stop it, or set ENCLAVER_STATE_DIR to another folder",
			       pid[0] ? pid : "?", state);
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) < 0) {
		close(fd);
		return err_sys(err, "%s", path);
	}
	*out = fd;
	return 0;
}

/* A state folder's KMS serves one region, the one it was made for: its keys' ARNs name it. */
static int check_region(const char *state, const struct local_master *m, const char *asked, struct err *err)
{
	if (!asked || !strcmp(asked, m->region))
		return 0;
	return err_set(err, EINVAL,
		       "--region %s: the local KMS in %s serves %s; give --region %s, or set ENCLAVER_STATE_DIR to "
		       "another folder for %s (removing %s/kms starts afresh and loses its keys)",
		       asked, state, m->region, m->region, asked, state);
}

/* Prints VALUE quoted for a POSIX shell. */
static void shell_quoted(const char *value)
{
	putchar('\'');
	for (const char *p = value; *p; p++) {
		if (*p == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*p);
	}
	putchar('\'');
}

/*
 * What `eval "$(enclaver kms-local env)"` sets in a shell (sh, bash or zsh): the local
 * credentials with nothing that would override them, the endpoint for clients that read
 * AWS_ENDPOINT_URL_KMS, and for the AWS CLIs that do not (Debian 12's 2.9, and 1.x before
 * 1.29) a function that gives `aws kms ...` --endpoint-url. AWS_CA_BUNDLE names the development
 * root: a client that ignores the endpoint fails its TLS handshake with real AWS instead of
 * sending these requests there, and kms-local's HTTPS front still verifies.
 */
static int cmd_env(const char *state, const char *region, bool as_json)
{
	struct local_master m;
	struct devca *ca = NULL;
	struct err err = { 0 };
	char path[4200], root[4200], url[128];
	json_t *ep;
	const char *http;

	if (local_creds_open(state, region, &m, &err) < 0 || check_region(state, &m, region, &err) < 0 ||
	    devca_open(state, &ca, &err) < 0) {
		log_error("%s", err.msg);
		explicit_bzero(&m, sizeof(m));
		return 1;
	}
	devca_free(ca);
	devca_root_path(state, root, sizeof(root));
	endpoint_path(state, path, sizeof(path));
	ep = json_load_file(path, 0, NULL);
	http = json_string_value(json_object_get(ep, "http"));
	snprintf(url, sizeof(url), "http://%s", http ? http : DEFAULT_LISTEN);
	json_decref(ep);
	if (as_json) { /* the same settings for a program to apply */
		json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "AWS_ACCESS_KEY_ID", m.access_key,
				      "AWS_SECRET_ACCESS_KEY", m.secret_key, "AWS_DEFAULT_REGION", m.region, "AWS_REGION",
				      m.region, "AWS_ENDPOINT_URL_KMS", url, "AWS_CA_BUNDLE", root);
		char *text = json_dumps(j, JSON_INDENT(2));

		printf("%s\n", text);
		explicit_bzero(text, strlen(text));
		free(text);
		json_decref(j);
		explicit_bzero(&m, sizeof(m));
		return 0;
	}
	printf("unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN\n");
	printf("export AWS_ACCESS_KEY_ID=%s\n", m.access_key);
	printf("export AWS_SECRET_ACCESS_KEY=%s\n", m.secret_key);
	printf("export AWS_DEFAULT_REGION=%s\n", m.region);
	printf("export AWS_REGION=%s\n", m.region);
	printf("export AWS_ENDPOINT_URL_KMS=%s\n", url);
	printf("export AWS_CA_BUNDLE=");
	shell_quoted(root);
	printf("\n# AWS CLIs that ignore AWS_ENDPOINT_URL_KMS get it as --endpoint-url for their kms commands\n");
	printf("aws() {\n"
	       "  _enclaver_skip= _enclaver_service=\n"
	       "  for _enclaver_arg in \"$@\"; do\n"
	       "    if [ -n \"$_enclaver_skip\" ]; then _enclaver_skip=; continue; fi\n"
	       "    case $_enclaver_arg in\n"
	       "      --endpoint-url|--endpoint-url=*) break ;;\n"
	       "      --region|--profile|--output|--query|--ca-bundle|--color|--cli-read-timeout|--cli-connect-timeout|--cli-binary-format) _enclaver_skip=1 ;;\n"
	       "      -*) ;;\n"
	       "      *) _enclaver_service=$_enclaver_arg; break ;;\n"
	       "    esac\n"
	       "  done\n"
	       "  if [ \"$_enclaver_service\" = kms ] && [ -n \"$AWS_ENDPOINT_URL_KMS\" ]; then\n"
	       "    command aws --endpoint-url \"$AWS_ENDPOINT_URL_KMS\" \"$@\"\n"
	       "  else\n"
	       "    command aws \"$@\"\n"
	       "  fi\n"
	       "}\n");
	explicit_bzero(&m, sizeof(m));
	return 0;
}

int cmd_kms_local(int argc, char **argv)
{
	enum { O_LISTEN = 256, O_REGION, O_ROOT, O_AGE, O_TLS, O_JSON };
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "tls-listen", required_argument, NULL, O_TLS },
		{ "region", required_argument, NULL, O_REGION },
		{ "attestation-root", required_argument, NULL, O_ROOT },
		{ "max-document-age", required_argument, NULL, O_AGE },
		{ "json", no_argument, NULL, O_JSON },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool as_json = false;
	const char *listen = DEFAULT_LISTEN, *region = NULL, *root_spec = "dev", *tls_listen = NULL;
	char state[4096], addr[64], tls_addr[64], path[4200];
	uint16_t port, tls_port = 0;
	struct tls_front front = { .lfd = -1 };
	unsigned max_age = 300;
	struct kms_service svc = { 0 };
	struct loop *l = NULL;
	struct http_server *srv = NULL;
	struct err err = { 0 };
	int c, rc = 1, sigs[] = { SIGINT, SIGTERM }, lock_fd = -1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN: listen = optarg; break;
		case O_TLS: tls_listen = optarg; break;
		case O_REGION: region = optarg; break;
		case O_ROOT: root_spec = optarg; break;
		case O_AGE: max_age = (unsigned)strtoul(optarg, NULL, 10); break;
		case O_JSON: as_json = true; break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h':
			for (int i = 1; i < argc; i++) /* getopt_long meets --help before env */
				if (!strcmp(argv[i], "env"))
					return cmd_help("kms-local env");
			return cmd_help("kms-local");
		default:
			return cmd_bad_option("kms-local", argv, "vh", opts);
		}
	}
	devca_state_dir(state, sizeof(state));
	if (optind < argc && !strcmp(argv[optind], "env")) {
		if (optind + 1 < argc) {
			if (!strcmp(argv[optind + 1], "-h") || !strcmp(argv[optind + 1], "--help"))
				return cmd_help("kms-local env");
			log_error("enclaver kms-local env: unexpected argument \"%s\"; see 'enclaver kms-local env --help'",
				  argv[optind + 1]);
			return EXIT_USAGE;
		}
		return cmd_env(state, region, as_json);
	}
	if (optind < argc) {
		log_error("unexpected argument \"%s\" (kms-local takes env, or options)", argv[optind]);
		return EXIT_USAGE;
	}
	if (split_listen(listen, addr, sizeof(addr), &port) < 0) {
		log_error("--listen %s: use an IPv4 ADDRESS:PORT such as %s", listen, DEFAULT_LISTEN);
		return EXIT_USAGE;
	}
	if (tls_listen && split_listen(tls_listen, tls_addr, sizeof(tls_addr), &tls_port) < 0) {
		log_error("--tls-listen %s: use an IPv4 ADDRESS:PORT such as 127.0.0.1:9701", tls_listen);
		return EXIT_USAGE;
	}
	if (!tls_listen) {
		snprintf(tls_addr, sizeof(tls_addr), "%s", addr);
		tls_port = port ? (uint16_t)(port + 1) : 0;
	}
	svc.max_doc_age = max_age;
	if (local_creds_open(state, region, &svc.master, &err) < 0 ||
	    check_region(state, &svc.master, region, &err) < 0 || lock_state(state, &lock_fd, &err) < 0 ||
	    kms_store_open(state, svc.master.account, svc.master.region, &svc.store, &err) < 0)
		goto fail;
	svc.root = load_root(root_spec, state, &err);
	if (!svc.root)
		goto fail;
	if (loop_new(&l, &err) < 0 || loop_signals(l, sigs, 2, on_signal, NULL, &err) < 0 ||
	    http_server_start_at(l, addr, port, MAX_BODY, on_request, &svc, &srv, &err) < 0)
		goto fail;
	if (tls_front_start(l, state, svc.master.region, tls_addr, tls_port, http_server_port(srv), &front, &err) < 0)
		goto fail;
	{
		char where[96], tls_where[96], *text;
		json_t *ep;

		snprintf(where, sizeof(where), "%s:%u", addr, http_server_port(srv));
		snprintf(tls_where, sizeof(tls_where), "%s:%u", tls_addr, bound_port(front.lfd));
		ep = json_pack("{s:s, s:s, s:s, s:i}", "http", where, "https", tls_where, "region", svc.master.region,
			       "pid", (int)getpid());
		text = json_dumps(ep, JSON_INDENT(2));
		json_decref(ep);
		snprintf(path, sizeof(path), "%s/" KMS_LOCAL_ENDPOINT_DIR, state);
		rc = fs_mkdir_p(path, 0755, &err);
		endpoint_path(state, path, sizeof(path));
		if (rc == 0)
			rc = fs_write_file_atomic(path, text, strlen(text), 0644, &err);
		free(text);
		if (rc < 0)
			goto fail;
		log_info("local KMS for %s on http://%s and https://%s (state %s, %zu keys; attestation root: %s)",
			 svc.master.region, where, tls_where, state, svc.store->n_keys, root_spec);
		if (as_json) { /* one line, once it serves: where a script finds it (--listen :0 too) */
			char url[128], tls_url[128];
			json_t *j;

			snprintf(url, sizeof(url), "http://%s", where);
			snprintf(tls_url, sizeof(tls_url), "https://%s", tls_where);
			j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:i}", "Http", url, "Https", tls_url, "Region",
				      svc.master.region, "State", state, "Keys", (json_int_t)svc.store->n_keys,
				      "AttestationRoot", root_spec, "Pid", (int)getpid());
			text = json_dumps(j, JSON_COMPACT);
			printf("%s\n", text);
			fflush(stdout);
			free(text);
			json_decref(j);
		}
	}
	rc = loop_run(l, &err) < 0 ? 1 : 0;
	unlink(path);
	goto out;
fail:
	log_error("%s", err.msg);
	rc = 1;
out:
	if (l)
		loop_close_all(l);
	http_server_stop(srv);
	if (front.acc.loop)
		acceptor_stop(&front.acc);
	else if (front.lfd >= 0)
		close(front.lfd);
	if (l)
		loop_free(l);
	SSL_CTX_free(front.ctx);
	X509_free(svc.root);
	kms_store_free(svc.store);
	if (lock_fd >= 0)
		close(lock_fd);
	explicit_bzero(&svc.master, sizeof(svc.master));
	return rc;
}
