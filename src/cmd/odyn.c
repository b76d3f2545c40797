/*
 * odyn: the supervisor inside the enclave (spec/enclaver-compat.md §5). Brings up loopback,
 * serves status and logs, runs the egress proxy and the ingress forwarders, starts the app and
 * reaps. A startup error becomes a "fatal" status while odyn stays up for the host to read it.
 * Trusts the manifest baked into the image; trusts nothing the app or the network sends.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "enclave/bootstrap.h"
#include "enclave/console.h"
#include "enclave/api.h"
#include "enclave/egress.h"
#include "enclave/ingress.h"
#include "enclave/kms_proxy.h"
#include "enclave/caps.h"
#include "enclave/launcher.h"
#include "enclave/netrules.h"
#include "enclave/pool.h"
#include "enclave/resolver.h"
#include "enclave/tls_relay.h"
#include "manifest/manifest.h"
#include "manifest/policy.h"
#include "net/vsock.h"
#include "nitro/nsm.h"

#define DEFAULT_LOCAL_CID 16

struct odyn {
	struct loop *loop;
	struct console *console;
	struct manifest *manifest;
	struct policy *policy;
	struct egress *egress;
	struct pool *pool;
	struct resolver *resolver;
	struct ingress *ingress;
	struct api *api;
	struct kms_proxy *kms;
	pid_t app;
	int app_status;
	bool app_done;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: odyn [--no-bootstrap] [--no-console] --config-dir DIR [--user UID:GID[:GID,...]] "
		   "[--workdir DIR] [-v...] -- ENTRYPOINT [ARGS...]\n");
}

static void publish_exit(struct odyn *o)
{
	if (WIFEXITED(o->app_status)) {
		log_info("Entrypoint exited with %d", WEXITSTATUS(o->app_status));
		console_status_exited(o->console, WEXITSTATUS(o->app_status));
	} else {
		log_info("Entrypoint terminated by SIG%s", sigabbrev_np(WTERMSIG(o->app_status)) ?: "?");
		console_status_signaled(o->console, WTERMSIG(o->app_status));
	}
}

static void on_ingress_drained(void *data)
{
	struct odyn *o = data;

	o->ingress = NULL;
	api_stop(o->api);
	o->api = NULL;
	kms_proxy_stop(o->kms);
	o->kms = NULL;
	egress_stop(o->egress);
	o->egress = NULL;
	resolver_stop(o->resolver);
	o->resolver = NULL;
	publish_exit(o);
}

/* After the app: stop services in upstream's order, ingress waiting for its open connections,
 * and only then publish the exit status. */
static void shutdown_services(struct odyn *o)
{
	if (o->ingress)
		ingress_stop(o->ingress, on_ingress_drained, o);
	else
		on_ingress_drained(o);
}

static void on_signal(struct loop *l, int sig, void *data)
{
	struct odyn *o = data;

	if (sig != SIGCHLD)
		return;
	for (;;) {
		int status;
		pid_t p = waitpid(-1, &status, WNOHANG);

		if (p <= 0)
			return;
		log_debug("reaped %d", (int)p);
		if (p == o->app && !o->app_done) {
			o->app_done = true;
			o->app_status = status;
			shutdown_services(o);
		}
	}
}

static int set_proxy_env(uint16_t port)
{
	char url[64];
	static const char *const proxy[] = { "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY" };

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", port);
	for (size_t i = 0; i < 4; i++)
		if (setenv(proxy[i], url, 1) < 0)
			return -1;
	if (setenv("no_proxy", "localhost,127.0.0.1", 1) < 0 || setenv("NO_PROXY", "localhost,127.0.0.1", 1) < 0)
		return -1;
	return 0;
}

#define DNS_PORT 53
#define RESOLV_CONF "/etc/resolv.conf"

/* The app's resolver is odyn's; short timeouts, as it answers at once or not at all. No search
 * list: a name means itself. Written whole to a temporary name, then renamed over the old. */
static int write_resolv_conf(struct err *err)
{
	static const char text[] = "# written by odyn: names resolve inside the enclave, by its egress policy\n"
				   "nameserver 127.0.0.1\n"
				   "options timeout:2 attempts:2\n";

	if (fs_write_file_atomic(RESOLV_CONF, text, sizeof(text) - 1, 0644, err) < 0)
		return err_wrap(err, "writing the app's %s", RESOLV_CONF);
	return 0;
}

/* Transparent egress (spec/transparent-egress.md): the resolver and the listener first, then the
 * rules that send the app's traffic to them, then the routes, then resolv.conf. IPv6 is taken
 * only when its rules are in: without them it keeps no route, so it fails at once. */
static int start_transparent(struct odyn *o, struct err *err)
{
	const struct manifest *m = o->manifest;
	struct err e6 = { 0 };

	if (netrules_load_kit_modules(err) < 0 || pool_new(manifest_transparent_pool(m), &o->pool, err) < 0 ||
	    resolver_start(o->loop, DNS_PORT, o->policy, o->pool, &o->resolver, err) < 0 ||
	    egress_transparent_start(o->egress, o->pool, m->egress_transparent_port, err) < 0 ||
	    netrules_install(AF_INET, DNS_PORT, m->egress_transparent_port, err) < 0)
		return -1;
	if (netrules_install(AF_INET6, DNS_PORT, m->egress_transparent_port, &e6) < 0 && e6.code != EAFNOSUPPORT)
		log_warn("transparent egress is IPv4 only: %s", e6.msg);
	if (bootstrap_default_route(AF_INET, err) < 0)
		return -1;
	if (!e6.msg[0] && bootstrap_default_route(AF_INET6, &e6) < 0)
		log_warn("transparent egress is IPv4 only: %s", e6.msg);
	if (write_resolv_conf(err) < 0)
		return -1;
	log_info("Transparent egress on: DNS on 127.0.0.1:%u, TCP on 127.0.0.1:%u, names from %s", DNS_PORT,
		 m->egress_transparent_port, manifest_transparent_pool(m));
	return 0;
}

/* The KMS proxy's start-up failures come after the app has started: as upstream, a fatal
 * status (odyn stays up for the host to read it). */
static void kms_fatal(void *data, const char *msg)
{
	struct odyn *o = data;

	log_error("Fatal error: %s", msg);
	console_status_fatal(o->console, msg);
}

static int start_services(struct odyn *o, const char *config_dir, bool bootstrap, char **argv,
			  struct launch_as *as, struct err *err)
{
	char path[4096];
	struct ingress_port ports[64];
	size_t n_ports = 0;

	snprintf(path, sizeof(path), "%s/enclaver.yaml", config_dir);
	if (manifest_load(path, &o->manifest, err) < 0)
		return -1;
	if (bootstrap) {
		log_info("Bringing up loopback interface");
		if (bootstrap_loopback_up(err) < 0)
			return -1;
		if (bootstrap_seed_entropy(err) < 0)
			return -1;
		log_info("Enclave initialized");
	}
	if (manifest_egress_enabled(o->manifest)) {
		const struct manifest *m = o->manifest;

		if (policy_new((const char *const *)m->egress_allow, m->n_egress_allow,
			       (const char *const *)m->egress_deny, m->n_egress_deny, &o->policy, err) < 0)
			return -1;
		if (set_proxy_env(m->egress_proxy_port) < 0)
			return err_sys(err, "setenv");
		log_info("Starting egress on 127.0.0.1:%u", m->egress_proxy_port);
		if (egress_start(o->loop, m->egress_proxy_port, o->policy, &o->egress, err) < 0)
			return -1;
		if (manifest_transparent_enabled(m)) {
			/* The rules are the whole network namespace's: only in an enclave's own. */
			if (!bootstrap)
				err_set(err, EINVAL, "odyn runs with --no-bootstrap, outside an enclave's own network");
			if (bootstrap && start_transparent(o, err) == 0) {
				as->confine = true;
			} else if (m->egress_transparent == 1) {
				return err_wrap(err, "transparent egress (egress.transparent is true)");
			} else {
				/* nothing of it half there: the proxy alone, as without it */
				egress_transparent_stop(o->egress);
				resolver_stop(o->resolver);
				o->resolver = NULL;
				log_warn("transparent egress is off, apps reach the outside through the proxy only: %s",
					 err->msg);
				err_clear(err);
			}
		}
	}
	if (o->manifest->has_kms_proxy && !manifest_egress_enabled(o->manifest))
		return err_set(err, EINVAL, "%s", MANIFEST_NO_EGRESS_MSG);
	if (o->manifest->has_kms_proxy) {
		char url[64], root[4200];
		const char *vdir = vsock_emulated_dir();
		bool local = vdir != NULL;

		/* The development root is trusted only in a development enclave: a local one, where the
		 * launcher put it, or a VM one, whose host serves it (there is no NSM device there, so
		 * attestation is the host's emulator's anyway; on Nitro /dev/nsm exists and the
		 * cmdline is the EIF's own, so no host can turn this on). */
		if (local) {
			snprintf(root, sizeof(root), "%s/%s", vdir, DEV_ROOT_NAME);
		} else if (nsm_vm_enclave()) {
			struct err rerr = { 0 };

			snprintf(root, sizeof(root), "/tmp/%s", DEV_ROOT_NAME);
			if (nsm_fetch_dev_root(root, &rerr) == 0)
				local = true;
			else
				log_warn("%s", rerr.msg);
		}
		log_info("Starting KMS proxy on 127.0.0.1:%u", o->manifest->kms_proxy_port);
		if (kms_proxy_start(o->loop, o->manifest, local && access(root, R_OK) == 0 ? root : NULL, kms_fatal, o,
				    &o->kms, err) < 0)
			return -1;
		snprintf(url, sizeof(url), "http://127.0.0.1:%u", o->manifest->kms_proxy_port);
		if (setenv("AWS_KMS_ENDPOINT", url, 1) < 0)
			return err_sys(err, "setenv");
	}
	for (size_t i = 0; i < o->manifest->n_ingress && n_ports < 64; i++) {
		const struct manifest_ingress *in = &o->manifest->ingress[i];

		ports[n_ports] = (struct ingress_port){ .port = in->listen_port };
		/* upstream reads fixed paths, not key_file/cert_file: the image must hold them */
		if (in->tls) {
			snprintf(path, sizeof(path), "%s/tls/server/%u", config_dir, in->listen_port);
			ports[n_ports].tls = tls_server_ctx(path, err);
			if (!ports[n_ports].tls)
				return err_wrap(err, "ingress port %u", in->listen_port);
		}
		n_ports++;
	}
	if (o->manifest->has_api) {
		log_info("Starting API on 127.0.0.1:%u", o->manifest->api_port);
		if (api_start(o->loop, o->manifest->api_port, &o->api, err) < 0)
			return -1;
	}
	if (n_ports) {
		log_info("Starting ingress on vsock ports");
		if (ingress_start(o->loop, ports, n_ports, &o->ingress, err) < 0)
			return -1;
	}
	/* the image's file capabilities, which its ramdisk could not carry as attributes */
	snprintf(path, sizeof(path), "%s/capabilities", config_dir);
	if (caps_apply_file(path, err) < 0)
		return -1;
	{
		char line[1024] = "";

		for (char **a = argv; *a; a++)
			snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s\"%s\"", a == argv ? "" : ", ", *a);
		log_info("Starting [%s]", line);
	}
	o->app = launcher_start(argv, as, err);
	return o->app < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "no-bootstrap", no_argument, NULL, 'b' },
					      { "no-console", no_argument, NULL, 'c' },
					      { "config-dir", required_argument, NULL, 'd' },
					      { "user", required_argument, NULL, 'u' },
					      { "workdir", required_argument, NULL, 'w' },
					      { "verbose", no_argument, NULL, 'v' },
					      { "help", no_argument, NULL, 'h' },
					      { "version", no_argument, NULL, 'V' },
					      { NULL, 0, NULL, 0 } };
	struct odyn o = { 0 };
	struct launch_as as = { .set_user = true, .groups = { 0 }, .n_groups = 1 }; /* root, as Docker */
	struct err err = { 0 };
	const char *config_dir = NULL, *vdir;
	bool bootstrap = true, capture = true;
	int c, verbose = 0;
	int sigs[] = { SIGCHLD };

	log_init("odyn", LOG_INFO);
	/* The app may run as the same uid: not dumpable, odyn cannot be traced or read through
	 * /proc by it without CAP_SYS_PTRACE, which a confined app has not. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	while ((c = getopt_long(argc, argv, "+vh", opts, NULL)) != -1) {
		switch (c) {
		case 'b': bootstrap = false; break;
		case 'c': capture = false; break;
		case 'd': config_dir = optarg; break;
		case 'u':
			if (!launch_as_parse_user(optarg, &as)) {
				log_error("--user %s: expected UID:GID[:GID,...]", optarg);
				return 2;
			}
			break;
		case 'w':
			if (optarg[0] != '/') {
				log_error("--workdir %s: expected an absolute path", optarg);
				return 2;
			}
			as.workdir = optarg;
			break;
		case 'v': verbose++; break;
		case 'V': printf("odyn %s\n", ENCLAVER_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!config_dir || optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (verbose)
		log_set_level(LOG_DEBUG);
	signal(SIGPIPE, SIG_IGN);
	/* The local launcher names the emulated vsock folder; the variable is not passed on. */
	vdir = getenv(VSOCK_DIR_ENV);
	if (vdir && *vdir) {
		const char *cid = getenv("ENCLAVER_VSOCK_CID");

		if (vsock_use_emulated(vdir, cid ? (uint32_t)strtoul(cid, NULL, 10) : DEFAULT_LOCAL_CID, &err) < 0) {
			log_error("%s", err.msg);
			return 1;
		}
	}
	unsetenv(VSOCK_DIR_ENV);
	unsetenv("ENCLAVER_VSOCK_CID");
	if (loop_new(&o.loop, &err) < 0 || loop_signals(o.loop, sigs, 1, on_signal, &o, &err) < 0 ||
	    launcher_become_subreaper(&err) < 0 || console_new(o.loop, capture, &o.console, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	if (start_services(&o, config_dir, bootstrap, argv + optind, &as, &err) < 0) {
		log_error("Fatal error: %s", err.msg);
		console_status_fatal(o.console, err.msg);
	}
	/* odyn never exits on its own: the host reads the final status, then ends the enclave. */
	if (loop_run(o.loop, &err) < 0)
		log_error("%s", err.msg);
	return 1;
}
