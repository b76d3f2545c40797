/*
 * enclaver run: runs a release image through the Docker Engine API as upstream does (logs
 * followed, the container's exit code returned, Ctrl-C stops and removes it), or, with --eif,
 * an EIF on this machine through enclaver-run (which it becomes, so that signals and the exit
 * code are enclaver-run's own).
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdatomic.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/proc.h"
#include "host/claim.h"
#include "image/extract.h"
#include "cmd/cmd.h"
#include "image/docker.h"
#include "image/registry.h"
#include "image/source.h"
#include "manifest/manifest.h"
#include "host/local_creds.h"
#include "nitro/devca.h"

#define MAX_ARGS 256

/* enclaver-run installed beside this enclaver, else the first on PATH. */
static void find_enclaver_run(char *out, size_t size)
{
	fs_beside_self("enclaver-run", out, size);
	if (!out[0] || access(out, X_OK) < 0)
		snprintf(out, size, "enclaver-run");
}

/* --- a release image in a container --- */

struct container_run {
	struct docker *d;
	char id[80];
	atomic_int started, stops;
	sigset_t sigs;
};

/* Ctrl-C or SIGTERM: stop the container (enclaver-run inside stops the enclave in order); a
 * second one kills it. */
static void *signal_thread(void *arg)
{
	struct container_run *cr = arg;
	int sig;

	while (sigwait(&cr->sigs, &sig) == 0) {
		struct err err = { 0 };
		int n = atomic_fetch_add(&cr->stops, 1);

		if (!atomic_load(&cr->started))
			continue;
		log_info("received %s: %s the container", sig == SIGINT ? "SIGINT" : "SIGTERM", n ? "killing" : "stopping");
		if (docker_container_do(cr->d, cr->id, n ? "kill" : "stop", &err) < 0 && err.code != EEXIST)
			log_warn("%s", err.msg); /* EEXIST: 409, it is not running any more */
	}
	return NULL;
}

static void *logs_thread(void *arg)
{
	struct container_run *cr = arg;
	struct err err = { 0 };

	if (docker_container_logs(cr->d, cr->id, &err) < 0)
		log_warn("%s", err.msg);
	return NULL;
}

#define CONTAINER_STATE_DIR "/var/lib/enclaver"
#define RELEASE_EIF "/enclave/application.eif"
#define RELEASE_DIR "enclave/" /* in the image, as image_extract names folders */

/* -p: the first "digits:digits" anywhere in the spec, as upstream's unanchored regex. */
static int parse_publish(const char *spec, json_t *exposed, json_t *bindings, char norm[40])
{
	regex_t re;
	regmatch_t m[3];
	char host[16], port[24];
	int ok;

	if (regcomp(&re, "([0-9]+):([0-9]+)", REG_EXTENDED) != 0)
		return -1;
	ok = regexec(&re, spec, 3, m, 0) == 0 && m[1].rm_eo - m[1].rm_so < 8 && m[2].rm_eo - m[2].rm_so < 8;
	regfree(&re);
	if (!ok) {
		log_error("port forward specification '%s' does not match the format 'host_port:container_port'", spec);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), spec + m[1].rm_so);
	snprintf(port, sizeof(port), "%.*s/tcp", (int)(m[2].rm_eo - m[2].rm_so), spec + m[2].rm_so);
	snprintf(norm, 40, "%s:%.*s", host, (int)(m[2].rm_eo - m[2].rm_so), spec + m[2].rm_so);
	json_object_set_new(exposed, port, json_object());
	if (!json_object_get(bindings, port))
		json_object_set_new(bindings, port, json_array());
	json_array_append_new(json_object_get(bindings, port), json_pack("{s:s}", "HostPort", host));
	return 0;
}

/* The container gets of the user's state folder only what the launcher reads, read-only: the
 * development CA's certificates and intermediate key (not the root's key), the local role's
 * credentials, and where kms-local listens. Never the key store or its master key. The CA is
 * made or renewed here first, where its root key is. */
static int state_binds(const char *state, json_t *hc)
{
	static const char *const files[] = { "dev-ca/root.pem", "dev-ca/intermediate.pem", "dev-ca/intermediate.key",
					     KMS_LOCAL_CREDENTIALS, KMS_LOCAL_ENDPOINT_DIR };
	struct devca *ca = NULL;
	struct local_master lm;
	struct err err = { 0 };
	char path[4200], bind[8500];
	json_t *binds;

	snprintf(path, sizeof(path), "%s/" KMS_LOCAL_ENDPOINT_DIR, state);
	if (devca_open(state, &ca, &err) < 0 || local_creds_open(state, NULL, &lm, &err) < 0 ||
	    fs_mkdir_p(path, 0755, &err) < 0) {
		log_warn("%s", err.msg);
		devca_free(ca);
		return -1;
	}
	devca_free(ca);
	explicit_bzero(&lm, sizeof(lm));
	binds = json_array();
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(bind, sizeof(bind), "%s/%s:" CONTAINER_STATE_DIR "/%s:ro", state, files[i], files[i]);
		json_array_append_new(binds, json_string(bind));
	}
	json_object_set_new(hc, "Binds", binds);
	return 0;
}

/*
 * Has the daemon hold IMAGE before it runs. `pull` is docker run's --pull (missing, always,
 * never); without it, a reference that names a registry is pulled when missing and one that
 * does not is never pulled: a release image is made here by enclaver build, and a short name
 * missing from the daemon is a target not built yet (or a typo), not something to fetch from
 * Docker Hub. manifest: the file whose target IMAGE is, or NULL.
 */
static int ensure_image(const char *spec, const char *pull, const char *manifest)
{
	const char *image = image_daemon_ref(spec);
	struct docker *d = NULL;
	struct err err = { 0 };
	int have, rc = 1;

	if (!image) /* a file or a registry that --vm reads itself, not an image of the daemon's */
		return 0;
	if (docker_open(&d, &err) < 0 || (have = docker_image_inspect(d, image, NULL, &err)) < 0)
		goto fail;
	if (!pull)
		pull = registry_names_host(image) ? "missing" : "never";
	if (!have && !strcmp(pull, "never")) {
		if (manifest)
			log_error("%s, the target of %s, is not in the Docker daemon at %s: build it with "
				  "'enclaver build -f %s' (or pull it with --pull missing)",
				  image, manifest, docker_where(d), manifest);
		else
			log_error("%s is not in the Docker daemon at %s: build it with 'enclaver build' (the release "
				  "image is the manifest's target), or pull it with --pull missing",
				  image, docker_where(d));
		goto out;
	}
	if ((!have || !strcmp(pull, "always")) && docker_image_pull(d, image, &err) < 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	log_error("%s", err.msg);
out:
	docker_free(d);
	return rc;
}

static int run_container(const char *image, char **publish, size_t n_publish, bool debug)
{
	struct container_run cr = { 0 };
	json_t *body, *hc, *exposed = json_object(), *bindings = json_object();
	struct err err = { 0 };
	pthread_t sig_t, log_t;
	bool have_logs = false, is_release = false, local = false;
	int code = 1, rc;

	char norms[MAX_ARGS][40];

	for (size_t i = 0; i < n_publish; i++)
		if (parse_publish(publish[i], exposed, bindings, norms[i]) < 0) {
			json_decref(exposed);
			json_decref(bindings);
			return EXIT_USAGE;
		}
	if (access("/dev/nitro_enclaves", F_OK) == 0) {
		/* as upstream: the device, privileged (nitro-cli binds vsock CID 3), ports published; and
		 * the host's claims on the shared vsock ports, so that enclaves in other containers are
		 * named rather than met as "address in use" */
		hc = json_pack("{s:o, s:[{s:s, s:s, s:s}], s:b, s:[s]}", "PortBindings", bindings, "Devices", "PathOnHost",
			       "/dev/nitro_enclaves", "PathInContainer", "/dev/nitro_enclaves", "CgroupPermissions", "rwm",
			       "Privileged", 1, "Binds", CLAIM_DIR_DEFAULT ":" CLAIM_DIR_DEFAULT);
		body = json_pack("{s:s, s:o, s:o, s:b, s:b}", "Image", image, "ExposedPorts", exposed, "HostConfig", hc,
				 "AttachStdout", 1, "AttachStderr", 1);
		if (debug)
			json_object_set_new(body, "Cmd", json_pack("[s]", "--debug-mode"));
	} else {
		/* No Nitro device: enclaver-run in the container starts a local enclave, which needs
		 * namespaces, mounts and cgroups (see the README). It runs as it would on this machine:
		 * on the host's network, where kms-local and services on the host's loopback are, and
		 * with the user's state folder, whose development CA kms-local trusts; -p goes to
		 * enclaver-run itself, which publishes the ports. */
		char state[4096];
		json_t *cmd = json_array();

		local = true;
		json_decref(exposed);
		json_decref(bindings);
		devca_state_dir(state, sizeof(state));
		hc = json_pack("{s:s, s:[s], s:[s], s:[s]}", "NetworkMode", "host", "CapAdd", "ALL", "CapDrop", "SYS_RESOURCE",
			       "SecurityOpt", "seccomp=unconfined");
		if (getenv("DOCKER_HOST") && strncmp(getenv("DOCKER_HOST"), "unix://", 7))
			log_warn("the Docker daemon is not on this machine: the local enclave keeps its development CA in the container");
		else if (state_binds(state, hc) < 0)
			log_warn("the local enclave keeps its development CA in the container"); /* said why */
		if (debug)
			json_array_append_new(cmd, json_string("--debug-mode"));
		for (size_t i = 0; i < n_publish; i++) {
			json_array_append_new(cmd, json_string("-p"));
			json_array_append_new(cmd, json_string(norms[i]));
		}
		body = json_pack("{s:s, s:o, s:o, s:[s], s:b, s:b}", "Image", image, "Cmd", cmd, "HostConfig", hc, "Env",
				 "ENCLAVER_STATE_DIR=" CONTAINER_STATE_DIR, "AttachStdout", 1, "AttachStderr", 1);
	}
	sigemptyset(&cr.sigs);
	sigaddset(&cr.sigs, SIGINT);
	sigaddset(&cr.sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &cr.sigs, NULL);
	if (docker_open(&cr.d, &err) < 0)
		goto fail;
	pthread_create(&sig_t, NULL, signal_thread, &cr);
	pthread_detach(sig_t);
	rc = docker_container_create(cr.d, body, cr.id, &err); /* ensure_image had the image pulled */
	if (rc < 0)
		goto fail;
	/* Only a release image runs here: an app image would start bare, with every capability
	 * and the host's network, in place of an enclave. */
	if (docker_container_has_path(cr.d, cr.id, RELEASE_EIF, &is_release, &err) < 0)
		goto fail_remove;
	if (!is_release) {
		docker_container_do(cr.d, cr.id, "remove", &err);
		log_error("%s is not a release image (it has no %s): run enclaver build and run the image it names as "
			  "target, or run an EIF with --eif",
			  image, RELEASE_EIF);
		code = 1;
		goto out;
	}
	if (local)
		log_warn("no /dev/nitro_enclaves here: %s will run in a local enclave, which is not confidential", image);
	if (atomic_load(&cr.stops)) {
		docker_container_do(cr.d, cr.id, "remove", &err);
		code = 130;
		goto out;
	}
	if (docker_container_do(cr.d, cr.id, "start", &err) < 0)
		goto fail_remove;
	atomic_store(&cr.started, 1);
	have_logs = pthread_create(&log_t, NULL, logs_thread, &cr) == 0;
	if (docker_container_wait(cr.d, cr.id, &code, &err) < 0)
		goto fail_remove;
	if (have_logs)
		pthread_join(log_t, NULL);
	if (code && atomic_load(&cr.stops))
		log_info("the container stopped on request (exit code %d)", code);
	else if (code)
		log_error("error running enclave: container exited with code %d", code);
	if (docker_container_do(cr.d, cr.id, "remove", &err) < 0)
		log_warn("%s", err.msg);
	goto out;
fail_remove:
	log_error("%s", err.msg);
	err_clear(&err);
	docker_container_do(cr.d, cr.id, "remove", &err);
	code = 1;
	goto out;
fail:
	log_error("%s", err.msg);
	code = 1;
out:
	json_decref(body);
	docker_free(cr.d);
	return code;
}

static bool release_file(const char *rest, bool regular, void *ctx)
{
	return !strcmp(rest, "application.eif") || !strcmp(rest, "enclaver.yaml");
}

static volatile sig_atomic_t vm_child;

static void forward_signal(int sig)
{
	if (vm_child > 0)
		kill(vm_child, sig);
}

/* A release image in a VM enclave: its EIF and manifest taken out of the image, then
 * enclaver-run --launcher vm on this machine (QEMU is not in the image). args: enclaver-run's
 * own arguments so far (publish, debug). */
static int run_vm_image(const char *image, char **args, int n)
{
	char dir[4200], eif[4300], manifest[4300];
	struct image_ids ids;
	struct err err = { 0 };
	int partial, status = 0, code = 1;
	pid_t pid;

	snprintf(dir, sizeof(dir), "%s/enclaver-run-XXXXXX", fs_tmp_dir());
	if (!mkdtemp(dir)) {
		log_error("%s: %s", dir, strerror(errno));
		return 1;
	}
	partial = fs_partial_add(dir);
	snprintf(eif, sizeof(eif), "%s/application.eif", dir);
	snprintf(manifest, sizeof(manifest), "%s/enclaver.yaml", dir);
	if (image_extract(image, RELEASE_DIR, release_file, NULL, dir, &ids, &err) < 0) {
		log_error("%s: %s", image, err.msg);
		goto out;
	}
	if (access(eif, R_OK) < 0 || access(manifest, R_OK) < 0) {
		log_error("%s is not a release image (no " RELEASE_EIF " or /enclave/enclaver.yaml): build one with enclaver build, or run an EIF with --eif",
			  image);
		goto out;
	}
	log_info("%s (%s): its EIF boots in a VM enclave on this machine", image, ids.id);
	args[n++] = "--launcher";
	args[n++] = "vm";
	args[n++] = "--eif-file";
	args[n++] = eif;
	args[n++] = "--manifest-file";
	args[n++] = manifest;
	args[n] = NULL;
	/* enclaver-run stops the enclave on SIGINT or SIGTERM; this process passes them on and
	 * removes the folder once it is done */
	signal(SIGINT, forward_signal);
	signal(SIGTERM, forward_signal);
	pid = fork();
	if (pid == 0) {
		proc_reset_signals();
		execvp(args[0], args);
		fprintf(stderr, "cannot run %s: %s (install enclaver-run beside enclaver)\n", args[0], strerror(errno));
		_exit(127);
	}
	vm_child = pid;
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		goto out;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
out:
	fs_remove_tree(dir, &err);
	fs_partial_remove(partial);
	return code;
}

int cmd_run(int argc, char **argv)
{
	enum { O_EIF = 256, O_MEM, O_CPU, O_LAUNCHER, O_DEBUG, O_VM, O_PULL };
	static const struct option opts[] = {
		{ "eif", required_argument, NULL, O_EIF },
		{ "file", required_argument, NULL, 'f' },
		{ "publish", required_argument, NULL, 'p' },
		{ "debug-mode", no_argument, NULL, 'd' },
		{ "memory-mb", required_argument, NULL, O_MEM },
		{ "cpu-count", required_argument, NULL, O_CPU },
		{ "launcher", required_argument, NULL, O_LAUNCHER },
		{ "vm", no_argument, NULL, O_VM },
		{ "pull", required_argument, NULL, O_PULL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *args[MAX_ARGS], runner[PATH_MAX], *publish[MAX_ARGS];
	const char *eif = NULL, *manifest = NULL, *pull = NULL;
	size_t n_publish = 0;
	bool debug = false, eif_only_flags = false, vm = false, manifest_given;
	int n = 0, c;

	find_enclaver_run(runner, sizeof(runner));
	args[n++] = runner;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:p:dh", opts, NULL)) != -1) {
		if (n > MAX_ARGS - 8) {
			log_error("too many arguments");
			return EXIT_USAGE;
		}
		switch (c) {
		case O_EIF: eif = optarg; break;
		case 'f': manifest = optarg; break;
		case 'p':
			args[n++] = "--publish";
			args[n++] = optarg;
			publish[n_publish++] = optarg;
			break;
		case 'd':
			args[n++] = "--debug-mode";
			debug = true;
			break;
		case O_MEM:
			eif_only_flags = true;
			args[n++] = "--memory-mb";
			args[n++] = optarg;
			break;
		case O_CPU:
			eif_only_flags = true;
			args[n++] = "--cpu-count";
			args[n++] = optarg;
			break;
		case O_LAUNCHER:
			eif_only_flags = true;
			args[n++] = "--launcher";
			args[n++] = optarg;
			break;
		case O_VM: /* the EIF's own kernel, booted in QEMU */
			vm = true;
			break;
		case O_PULL:
			if (strcmp(optarg, "missing") && strcmp(optarg, "always") && strcmp(optarg, "never")) {
				log_error("--pull %s: use missing, always or never", optarg);
				return EXIT_USAGE;
			}
			pull = optarg;
			break;
		case 'h':
			return cmd_help("run");
		default:
			return cmd_bad_option("run", argv, "f:p:dh", opts);
		}
	}
	if (!eif) {
		struct manifest *m = NULL;
		struct err err = { 0 };
		const char *image = optind < argc ? argv[optind] : NULL;
		char *target;
		int code;

		if (eif_only_flags) {
			log_error("--memory-mb, --cpu-count, --launcher and --vm go with --eif; a release image takes them from its manifest");
			return EXIT_USAGE;
		}
		if (optind + 1 < argc) {
			log_error("unexpected argument \"%s\"", argv[optind + 1]);
			return EXIT_USAGE;
		}
		if (image && manifest) {
			log_error("both an image name and a manifest file were specified");
			return EXIT_USAGE;
		}
		if (image) {
			if (ensure_image(image, pull, NULL))
				return 1;
			return vm ? run_vm_image(image, args, n) : run_container(image, publish, n_publish, debug);
		}
		if (manifest_load(manifest ? manifest : "enclaver.yaml", &m, &err) < 0) {
			if (manifest)
				log_error("%s", err.msg);
			else
				log_error("%s; name the release image, or the manifest with -f", err.msg);
			return 1;
		}
		target = strdup(m->target);
		manifest_free(m);
		if (ensure_image(target, pull, manifest ? manifest : "enclaver.yaml")) {
			free(target);
			return 1;
		}
		code = vm ? run_vm_image(target, args, n) : run_container(target, publish, n_publish, debug);
		free(target);
		return code;
	}
	if (optind != argc) {
		log_error("usage: enclaver run --eif FILE [-f MANIFEST] [-p HOST:ENCLAVE]... (see --help)");
		return EXIT_USAGE;
	}
	manifest_given = manifest != NULL;
	if (!manifest)
		manifest = "enclaver.yaml";
	if (access(manifest, R_OK) < 0) {
		log_error("%s: %s%s", manifest, strerror(errno), manifest_given ? "" : "; name the manifest with -f");
		return 1;
	}
	if (vm) {
		args[n++] = "--launcher";
		args[n++] = "vm";
	}
	args[n++] = "--eif-file";
	args[n++] = (char *)eif;
	args[n++] = "--manifest-file";
	args[n++] = (char *)manifest;
	args[n] = NULL;
	execvp(runner, args);
	log_error("cannot run %s: %s (install enclaver-run beside enclaver)", runner, strerror(errno));
	return 1;
}
