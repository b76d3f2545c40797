/*
 * enclaver-run: the supervisor outside the enclave (spec/enclaver-compat.md §4.3-4.5). Starts
 * the enclave through a launcher, carries egress out and ingress in, streams the enclave's logs,
 * and exits with the app's exit code. Static; trusts the release image it ships in, not the
 * enclave's bytes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "eif/eif.h"
#include "host/console.h"
#include "host/egress.h"
#include "host/ingress.h"
#include "host/imds.h"
#include "host/claim.h"
#include "vm/backend.h"
#include "host/launcher.h"
#include "host/local_creds.h"
#include "host/nsm_server.h"
#include "manifest/manifest.h"
#include "manifest/policy.h"
#include "net/dns.h"
#include "net/vsock.h"
#include "nitro/devca.h"
#include "nitro/nsm.h"
#include "nitro/nsm_emu.h"

#define DEFAULT_EIF "/enclave/application.eif"
#define DEFAULT_MANIFEST "/enclave/enclaver.yaml"
#define MAX_PUBLISH 64

#define MAX_ADD_HOSTS 64

/* The host side's route table: --add-host names (as docker run --add-host), and in the local
 * enclave AWS's addresses to the stand-ins on this machine. */
struct routes {
	bool local;
	char state[4096];
	char imds_sock[4200]; /* "unix:PATH" */
	char kms_host[128];
	const char *add_name[MAX_ADD_HOSTS];
	char add_ip[MAX_ADD_HOSTS][INET6_ADDRSTRLEN];
	size_t n_add;
};

/* "NAME:IP" (IPv6 with or without brackets); false when it is not that. */
static bool parse_add_host(char *s, struct routes *r)
{
	char *colon = strchr(s, ':'), ip[INET6_ADDRSTRLEN + 2];
	uint8_t a[16];
	size_t n;

	if (!colon || colon == s || r->n_add == MAX_ADD_HOSTS)
		return false;
	snprintf(ip, sizeof(ip), "%s", colon + 1);
	n = strlen(ip);
	if (n > 2 && ip[0] == '[' && ip[n - 1] == ']') {
		memmove(ip, ip + 1, n - 2);
		ip[n - 2] = 0;
	}
	if (inet_pton(AF_INET, ip, a) != 1 && inet_pton(AF_INET6, ip, a) != 1)
		return false;
	*colon = 0;
	r->add_name[r->n_add] = s;
	snprintf(r->add_ip[r->n_add], sizeof(r->add_ip[0]), "%s", ip);
	r->n_add++;
	return true;
}

static char *route(void *data, const char *host, uint16_t *port)
{
	struct routes *r = data;

	/* after the policy check, which judged the name the enclave asked for */
	for (size_t i = 0; i < r->n_add; i++)
		if (!strcasecmp(host, r->add_name[i]))
			return strdup(r->add_ip[i]);
	if (!r->local)
		return NULL;

	if (!strcmp(host, "169.254.169.254") && *port == 80 && r->imds_sock[0])
		return strdup(r->imds_sock);
	if (!strcmp(host, r->kms_host) && *port == 443) {
		/* read at each connection: kms-local may start after the enclave */
		char path[4200], *colon;
		json_t *ep;
		const char *https;
		char *out = NULL;

		snprintf(path, sizeof(path), "%s/" KMS_LOCAL_ENDPOINT, r->state);
		ep = json_load_file(path, 0, NULL);
		https = json_string_value(json_object_get(ep, "https"));
		if (https && (colon = strrchr(https, ':')) != NULL) {
			*port = (uint16_t)atoi(colon + 1);
			out = strndup(https, (size_t)(colon - https));
		} else {
			log_warn("egress: %s: no kms-local runs with the state folder %s (start enclaver kms-local)", host,
				 r->state);
		}
		json_decref(ep);
		return out;
	}
	return NULL;
}

struct run {
	struct loop *loop;
	struct launcher launcher;
	struct loop_io watch_io;
	struct log_client *logs;
	struct status_client *status;
	struct loop_timer log_wait;
	int exit_code;
	bool finished;
	bool log_done; /* the log ended after the app's final status: all of it is out */
};

/* How long the app's last output may take to arrive after its exit status. */
#define LOG_END_WAIT_MS 5000

/* A VM enclave has no vsock folder to read the development root from: it asks on this port. */
struct dev_root_server {
	struct loop *loop;
	struct loop_io io;
	struct buf pem;
};

static void on_dev_root(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct dev_root_server *s = io->data;
	int fd = accept4(io->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	/* a certificate fits a socket's buffer: sent whole or not at all, never waited on */
	if (send(fd, s->pem.data, s->pem.len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)s->pem.len)
		log_debug("development root: not sent whole");
	close(fd);
}

static int dev_root_serve(struct loop *l, const struct buf *pem, struct dev_root_server **out, struct err *err)
{
	struct dev_root_server *s = calloc(1, sizeof(*s));
	int fd;

	if (!s)
		abort();
	s->loop = l;
	buf_append(&s->pem, pem->data, pem->len);
	fd = vsock_listen(DEV_ROOT_VSOCK_PORT, 16, err);
	if (fd < 0 || loop_io_add(l, &s->io, fd, EPOLLIN, on_dev_root, s, err) < 0) {
		if (fd >= 0)
			close(fd);
		buf_free(&s->pem);
		free(s);
		return -1;
	}
	*out = s;
	return 0;
}

static void dev_root_stop(struct dev_root_server *s)
{
	if (!s)
		return;
	if (s->io.registered)
		loop_io_del(s->loop, &s->io);
	close(s->io.fd);
	buf_free(&s->pem);
	free(s);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: enclaver-run [--eif-file PATH] [--manifest-file PATH] [--cpu-count N] [--memory-mb N]\n"
		   "                    [--debug-mode] [--launcher local|vm|nitro|nitro-cli] [-p [ADDR:]HOST:PORT]... [-v]\n"
		   "                    [--role-arn ARN] [--instance-id ID] [--add-host NAME:IP]...\n"
		   "                    [print-manifest | describe-eif]\n\n"
		   "--add-host: the host side of egress dials IP for NAME, as docker run --add-host (the enclave's\n"
		   "policy still judges NAME).\n"
		   "In a local enclave the NSM is emulated: PCR0/1/2/8 are the EIF's, PCR3 and PCR4 come from\n"
		   "--role-arn and --instance-id (or ENCLAVER_ROLE_ARN and ENCLAVER_INSTANCE_ID), and\n"
		   "attestation documents are signed by the development CA in $ENCLAVER_STATE_DIR.\n");
}

static void finish(struct run *r, int code)
{
	if (r->finished)
		return;
	r->finished = true;
	r->exit_code = code;
	loop_stop(r->loop);
}

static void on_log_end(void *data)
{
	struct run *r = data;

	loop_timer_stop(r->loop, &r->log_wait);
	r->log_done = true;
	loop_stop(r->loop);
}

static void on_log_wait_timeout(struct loop *l, void *data)
{
	(void)data;
	log_warn("the enclave's log did not end within %d ms of its exit status: its last lines may be missing",
		 LOG_END_WAIT_MS);
	loop_stop(l);
}

static void on_status(void *data, const struct app_status *st)
{
	struct run *r = data;

	switch (st->state) {
	case APP_EXITED:
		log_info("enclave exited with code %d", st->code);
		break;
	case APP_SIGNALED:
		log_info("enclave stopped due to signal %d (SIG%s)", st->signal, sigabbrev_np(st->signal) ?: "?");
		break;
	case APP_FATAL:
		log_error("enclave exited due to fatal error: %s", st->error);
		break;
	default:
		break;
	}
	if (r->finished)
		return;
	/* Every line the app wrote before it ended comes first: odyn ends the log after it. */
	r->finished = true;
	r->exit_code = app_status_exit_code(st);
	if (!r->logs) {
		loop_stop(r->loop);
		return;
	}
	loop_timer_start(r->loop, &r->log_wait, LOG_END_WAIT_MS);
	log_client_await_end(r->logs, on_log_end, r);
}

static void on_enclave_end(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct run *r = io->data;
	char why[300] = "";

	loop_io_del(l, io);
	r->launcher.ops->describe_end(&r->launcher, why, sizeof(why));
	log_error("the enclave stopped before its app finished: %s", why);
	finish(r, 1);
}

static void on_signal(struct loop *l, int sig, void *data)
{
	struct run *r = data;

	log_info("received SIG%s: stopping the enclave", sigabbrev_np(sig) ?: "?");
	finish(r, EXIT_INTERRUPTED);
}

static const struct launcher_ops *pick_launcher(const char *name, struct err *err)
{
	if (!name)
		name = access("/dev/nitro_enclaves", F_OK) == 0 ? "nitro" : "local";
	if (!strcmp(name, "local"))
		return &launcher_local;
	if (!strcmp(name, "nitro-cli"))
		return &launcher_nitro_cli;
	if (!strcmp(name, "nitro"))
		return &launcher_nitro;
	if (!strcmp(name, "vm"))
		return &launcher_vm;
	err_set(err, EINVAL, "unknown launcher \"%s\" (local, vm, nitro, nitro-cli)", name);
	return NULL;
}

static int run_main(int argc, char **argv);

int main(int argc, char **argv)
{
	/* the VM enclave's vsock back-end, which the VM launcher starts as a process of its own */
	if (argc > 1 && !strcmp(argv[1], VM_BACKEND_CMD))
		return vm_backend_main(argc - 1, argv + 1);
	return run_main(argc, argv);
}

static int run_main(int argc, char **argv)
{
	enum { O_EIF = 256, O_MANIFEST, O_CPU, O_MEM, O_DEBUG, O_LAUNCHER, O_ROLE, O_INSTANCE, O_ADD_HOST };
	static const struct option opts[] = {
		{ "eif-file", required_argument, NULL, O_EIF },
		{ "manifest-file", required_argument, NULL, O_MANIFEST },
		{ "cpu-count", required_argument, NULL, O_CPU },
		{ "memory-mb", required_argument, NULL, O_MEM },
		{ "debug-mode", no_argument, NULL, O_DEBUG },
		{ "launcher", required_argument, NULL, O_LAUNCHER },
		{ "role-arn", required_argument, NULL, O_ROLE },
		{ "instance-id", required_argument, NULL, O_INSTANCE },
		{ "publish", required_argument, NULL, 'p' },
		{ "add-host", required_argument, NULL, O_ADD_HOST },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *eif_path = DEFAULT_EIF, *manifest_path = DEFAULT_MANIFEST, *launcher_name = NULL;
	const char *role_arn = getenv("ENCLAVER_ROLE_ARN"), *instance_id = getenv("ENCLAVER_INSTANCE_ID");
	struct devca *ca = NULL;
	struct nsm_emu emu;
	struct nsm_server *nsm = NULL;
	struct imds *imds = NULL;
	struct routes routes = { .imds_sock = "" };
	bool local = false;
	struct host_port_map given[MAX_PUBLISH], maps[MAX_PUBLISH];
	size_t n_given = 0, n_maps = 0;
	uint16_t ports[MAX_PUBLISH];
	int cpu = -1, mem = -1, c, sigs[] = { SIGINT, SIGTERM };
	bool debug = false;
	struct run r = { .exit_code = 1 };
	struct manifest *m = NULL;
	struct eif_info *eif = NULL;
	struct err err = { 0 };
	struct dns *dns = NULL;
	struct host_egress *egress = NULL;
	struct port_claim *egress_claim = NULL;
	struct dev_root_server *dev_root = NULL;
	uint32_t guest_ports[MAX_PUBLISH];
	struct policy *policy = NULL;
	struct host_ingress *ingress = NULL;
	const struct launcher_ops *ops;

	log_init("enclaver-run", LOG_INFO);
	while ((c = getopt_long(argc, argv, "p:vh", opts, NULL)) != -1) {
		switch (c) {
		case O_EIF: eif_path = optarg; break;
		case O_MANIFEST: manifest_path = optarg; break;
		case O_CPU: cpu = atoi(optarg); break;
		case O_MEM: mem = atoi(optarg); break;
		case O_DEBUG: debug = true; break;
		case O_LAUNCHER: launcher_name = optarg; break;
		case O_ROLE: role_arn = optarg; break;
		case O_INSTANCE: instance_id = optarg; break;
		case O_ADD_HOST:
			if (!parse_add_host(optarg, &routes)) {
				log_error("--add-host %s: expected NAME:IP (at most %d of them)", optarg, MAX_ADD_HOSTS);
				return 1;
			}
			break;
		case 'p':
			if (n_given == MAX_PUBLISH) {
				log_error("-p %s: at most %d ports can be published", optarg, MAX_PUBLISH);
				return 1;
			}
			if (host_publish_parse(optarg, &given[n_given], &err) < 0) {
				log_error("%s", err.msg);
				return 1;
			}
			n_given++;
			break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (manifest_load(manifest_path, &m, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	if (optind < argc && !strcmp(argv[optind], "print-manifest")) {
		fwrite(m->raw.data, 1, m->raw.len, stdout);
		manifest_free(m);
		return 0;
	}
	if (eif_read(eif_path, &eif, &err) < 0 || eif_info_check(eif, eif_path, &err) < 0) {
		log_error("failed to open EIF file at %s: %s", eif_path, err.msg);
		eif_info_free(eif);
		manifest_free(m);
		return 1;
	}
	if (optind < argc && !strcmp(argv[optind], "describe-eif")) {
		char *json = eif_measurements_json(&eif->m, true);

		printf("%s\n", json);
		free(json);
		eif_info_free(eif);
		manifest_free(m);
		return 0;
	}
	if (optind < argc) {
		log_error("unknown subcommand \"%s\" (print-manifest, describe-eif)", argv[optind]);
		goto out;
	}
	if (cpu < 0)
		cpu = m->cpu_count;
	if (mem < 0)
		mem = m->memory_mb;
	if (cpu < 1 || mem < MANIFEST_MIN_MEMORY_MB) {
		log_error(cpu < 1 ? "at least 1 CPU is required, got: %d" : "at least 64MiB of memory are required, got: %d",
			  cpu < 1 ? cpu : mem);
		goto out;
	}
	/* Each relayed connection holds two descriptors, and the enclave's processes inherit the
	 * limit: the soft limit goes up to the hard one (the bounds are the connection caps). */
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	/* the manifest's ports stay published; -p moves one to another host port or address */
	if (m->n_ingress > MAX_PUBLISH) {
		log_error("%s: %zu ingress ports; enclaver-run publishes at most %d", manifest_path, m->n_ingress,
			  MAX_PUBLISH);
		goto out;
	}
	for (size_t i = 0; i < m->n_ingress && i < MAX_PUBLISH; i++)
		ports[i] = m->ingress[i].listen_port;
	if (host_publish_merge(given, n_given, ports, m->n_ingress < MAX_PUBLISH ? m->n_ingress : MAX_PUBLISH, maps,
			       MAX_PUBLISH, &n_maps, &err) < 0) {
		log_error("%s (%s)", err.msg, manifest_path);
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	ops = pick_launcher(launcher_name, &err);
	if (!ops) {
		log_error("%s", err.msg);
		goto out;
	}
	if (ops == &launcher_local)
		log_warn("LOCAL ENCLAVE: this runs on this machine's kernel with no Nitro isolation. Nothing in it is "
			 "confidential; attestation is signed by a development CA that no real KMS trusts.");
	if (ops == &launcher_vm)
		log_warn("VM ENCLAVE: the EIF's own kernel boots in QEMU on this machine, with no Nitro isolation. Nothing "
			 "in it is confidential; attestation is signed by a development CA that no real KMS trusts.");
	loop_timer_init(&r.log_wait, on_log_wait_timeout, &r);
	for (size_t i = 0; i < m->n_ingress && i < MAX_PUBLISH; i++)
		guest_ports[i] = ports[i];
	r.launcher = (struct launcher){ .ops = ops, .watch_fd = -1,
					.spec = { eif_path, eif, cpu, mem, debug, guest_ports,
						  m->n_ingress < MAX_PUBLISH ? m->n_ingress : MAX_PUBLISH } };
	if (loop_new(&r.loop, &err) < 0 || loop_signals(r.loop, sigs, 2, on_signal, &r, &err) < 0 ||
	    ops->prepare(&r.launcher, &err) < 0)
		goto fail;
	/* Development hook: talk to a launcher's enclave through an emulated vsock folder. */
	if (!ops->emulated && getenv(VSOCK_DIR_ENV) &&
	    vsock_use_emulated(getenv(VSOCK_DIR_ENV), VSOCK_CID_PARENT, &err) < 0)
		goto fail;
	if (ops->emulated) {
		/* the development enclave's NSM, before the enclave can ask it anything */
		char state[4096], sock[4200];
		struct nsm_emu_config ec = { eif->m.pcr0, eif->m.pcr1, eif->m.pcr2, eif->m.has_pcr8 ? eif->m.pcr8 : NULL,
					     role_arn, instance_id, debug, NULL };

		devca_state_dir(state, sizeof(state));
		if (devca_open(state, &ca, &err) < 0)
			goto fail;
		ec.ca = ca;
		nsm_emu_init(&emu, &ec);
		snprintf(sock, sizeof(sock), "%s/%s", vsock_emulated_dir(), NSM_SOCKET_NAME);
		if (nsm_server_start(r.loop, sock, &emu, &nsm, &err) < 0)
			goto fail;
		log_debug("NSM emulator %s at %s, development CA in %s", emu.module_id, sock, state);
		/* the AWS stand-ins: IMDS here, KMS at kms-local; odyn trusts the development root */
		{
			struct local_master lm;
			char iid[32], root[4200], copy[4200];
			struct buf pem = BUF_INIT;
			const char *vdir = vsock_emulated_dir(), *slash = strrchr(vdir, '/');

			snprintf(iid, sizeof(iid), "%.*s", (int)(strstr(emu.module_id, "-enc") - emu.module_id), emu.module_id);
			/* beside the vsock folder, not in it: the enclave reaches it through egress only */
			snprintf(sock, sizeof(sock), "%.*s/imds.sock", (int)(slash ? slash - vdir : 0), vdir);
			snprintf(routes.imds_sock, sizeof(routes.imds_sock), "unix:%s", sock);
			if (local_creds_open(state, NULL, &lm, &err) < 0 ||
			    imds_start(r.loop, &lm, iid, sock, &imds, &err) < 0)
				goto fail;
			explicit_bzero(&lm, sizeof(lm));
			snprintf(routes.state, sizeof(routes.state), "%s", state);
			snprintf(routes.kms_host, sizeof(routes.kms_host), "kms.%s.amazonaws.com", imds_region(imds));
			devca_root_path(state, root, sizeof(root));
			snprintf(copy, sizeof(copy), "%s/%s", vsock_emulated_dir(), DEV_ROOT_NAME);
			if (fs_read_file(root, 1 << 20, &pem, &err) < 0 ||
			    fs_write_file_atomic(copy, pem.data, pem.len, 0644, &err) < 0 ||
			    dev_root_serve(r.loop, &pem, &dev_root, &err) < 0) {
				buf_free(&pem);
				goto fail;
			}
			buf_free(&pem);
			local = true;
		}
	}
	if (m->has_egress) {
		log_info("starting egress proxy on vsock port 17002");
		/* On a Nitro host every enclave's egress is the parent's port 17002: one at a time, and
		 * a second one names the first. A local enclave has a port of its own. */
		if (!local) {
			char who[600];

			snprintf(who, sizeof(who), "starting %s", eif_path);
			if (port_claim_take(HOST_EGRESS_PORT, "egress", who, 0, &egress_claim, &err) < 0)
				goto fail;
		}
		if (policy_new((const char *const *)m->egress_allow, m->n_egress_allow, (const char *const *)m->egress_deny,
			       m->n_egress_deny, &policy, &err) < 0 ||
		    dns_new(r.loop, &dns, &err) < 0)
			goto fail;
		routes.local = local;
		if (host_egress_start(r.loop, dns, policy, route, &routes, &egress, &err) < 0) {
			if (!local && err.code == EADDRINUSE)
				port_claim_explain_busy(HOST_EGRESS_PORT, "egress", &err);
			goto fail;
		}
	}
	if (ops->start(&r.launcher, &err) < 0)
		goto fail;
	log_info("started enclave ID=%s, CID=%u", r.launcher.enclave_id, r.launcher.cid);
	if (egress_claim) {
		char who[600];

		snprintf(who, sizeof(who), "enclave %s (%s)", r.launcher.enclave_id, eif_path);
		port_claim_describe(egress_claim, who);
	}
	if (r.launcher.watch_fd >= 0 &&
	    loop_io_add(r.loop, &r.watch_io, r.launcher.watch_fd, EPOLLIN, on_enclave_end, &r, &err) < 0)
		goto fail;
	if (log_client_start(r.loop, r.launcher.cid, stdout, &r.logs, &err) < 0 ||
	    host_ingress_start(r.loop, r.launcher.cid, maps, n_maps, &ingress, &err) < 0 ||
	    status_client_start(r.loop, r.launcher.cid, NULL, on_status, &r, &r.status, &err) < 0)
		goto fail;
	if (loop_run(r.loop, &err) < 0)
		goto fail;
	goto out;
fail:
	log_error("%s", err.msg);
	r.exit_code = r.launcher.boot_failed ? EXIT_BOOT_FAILED : 1;
out:
	if (r.loop)
		loop_timer_stop(r.loop, &r.log_wait);
	/* Stopped another way (a signal, the enclave's end): give the log a moment to deliver. */
	if (r.logs) {
		for (int i = 0; i < 20 && !r.log_done && loop_run_once(r.loop, 10, &err) == 0; i++)
			;
		log_client_stop(r.logs);
	}
	status_client_stop(r.status);
	if (r.loop)
		loop_close_all(r.loop);
	host_ingress_stop(ingress);
	host_egress_stop(egress);
	port_claim_release(egress_claim);
	dev_root_stop(dev_root);
	policy_free(policy);
	nsm_server_stop(nsm);
	imds_stop(imds);
	devca_free(ca);
	if (r.watch_io.registered)
		loop_io_del(r.loop, &r.watch_io);
	if (r.launcher.ops)
		r.launcher.ops->stop(&r.launcher);
	dns_free(dns);
	if (r.loop)
		loop_free(r.loop);
	eif_info_free(eif);
	manifest_free(m);
	return r.exit_code;
}
