/*
 * enclaver run: runs a release image through the Docker Engine API as upstream does (logs
 * followed, the container's exit code returned, Ctrl-C stops and removes it), or, with --eif,
 * an EIF on this machine through enclaver-run (which it becomes, so that signals and the exit
 * code are enclaver-run's own).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
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
#include "host/console.h"
#include "host/ingress.h"
#include "cmd/runs.h"
#include "image/extract.h"
#include "cmd/cmd.h"
#include "image/docker.h"
#include "image/registry.h"
#include "image/release.h"
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
	int out_fd; /* where the container's stdout goes: ours, or stderr with --json */
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

	if (docker_container_logs(cr->d, cr->id, true, cr->out_fd, &err) < 0)
		log_warn("%s", err.msg);
	return NULL;
}

#define CONTAINER_STATE_DIR "/var/lib/enclaver"
#define RELEASE_EIF "/enclave/application.eif"
#define RELEASE_DIR "enclave/" /* in the image, as image_extract names folders */

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

/* What the command line asked of a run, beyond the image or EIF. */
struct run_opts {
	char *publish[MAX_ARGS]; /* -p as given */
	struct host_port_map maps[MAX_ARGS];
	size_t n_publish;
	char *env[MAX_ARGS]; /* -e NAME=VALUE */
	size_t n_env;
	const char *name, *role_arn, *instance_id, *pull;
	bool debug, detach, json, verbose;
};

/* enclaver-run's arguments that pass through the container's Cmd or exec: debug mode,
 * verbosity, the local enclave's PCR3/PCR4 inputs. */
static void runner_args(const struct run_opts *o, json_t *cmd)
{
	if (o->debug)
		json_array_append_new(cmd, json_string("--debug-mode"));
	if (o->verbose)
		json_array_append_new(cmd, json_string("-v"));
	if (o->role_arn) {
		json_array_append_new(cmd, json_string("--role-arn"));
		json_array_append_new(cmd, json_string(o->role_arn));
	}
	if (o->instance_id) {
		json_array_append_new(cmd, json_string("--instance-id"));
		json_array_append_new(cmd, json_string(o->instance_id));
	}
}

/* The ports a release image's manifest publishes: the label enclaver build puts on it. false
 * for an image without it (built by another tool): then -p is not checked here, and
 * enclaver-run checks it against the manifest. At most cap ports are read; enclaver-run
 * refuses a manifest with more than it publishes. */
static bool image_ports(struct docker *d, const char *image, uint16_t *ports, size_t cap, size_t *n)
{
	json_t *j = NULL;
	struct err err = { 0 };
	const char *list, *p;
	bool have;

	*n = 0;
	if (docker_image_inspect(d, image, &j, &err) <= 0)
		return false;
	list = json_string_value(json_object_get(json_object_get(json_object_get(j, "Config"), "Labels"),
						 RELEASE_INGRESS_LABEL));
	have = list != NULL;
	for (p = list; p && *p && *n < cap;) {
		char *end;
		unsigned long port = strtoul(p, &end, 10);

		if (end == p)
			break;
		if (port && port < 65536)
			ports[(*n)++] = (uint16_t)port;
		p = end + strspn(end, " ");
	}
	json_decref(j);
	return have;
}

static void format_ports(const struct host_port_map *maps, size_t n, char *out, size_t size)
{
	size_t used = 0;

	out[0] = 0;
	for (size_t i = 0; i < n && used < size; i++) {
		char where[80];

		host_publish_format(&maps[i], where, sizeof(where));
		used += (size_t)snprintf(out + used, size - used, "%s%s->%u/tcp", i ? ", " : "", where, maps[i].enclave_port);
	}
}

/* "enclaver-3f9a1c": the name of a run given none. */
static void random_name(char out[RUN_NAME_MAX + 1])
{
	uint8_t r[3] = { 0 };
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (read(fd, r, sizeof(r)) < 0)
			r[0] = (uint8_t)getpid();
		close(fd);
	}
	snprintf(out, RUN_NAME_MAX + 1, "enclaver-%02x%02x%02x", r[0], r[1], r[2]);
}

/* One compact JSON line on stdout, for scripts; takes j. */
static void print_json_line(json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);

	printf("%s\n", text);
	fflush(stdout);
	free(text);
	json_decref(j);
}

/* What a script reads at the end of a run (--json): the exit code and what it means. */
static void print_final_status(const char *name, int code)
{
	const char *why = code == EXIT_SIGNALED	     ? "signaled"
			  : code == EXIT_FATAL	     ? "fatal"
			  : code == EXIT_INTERRUPTED ? "stopped"
			  : code == EXIT_BOOT_FAILED ? "not-booted"
						     : "exited";

	print_json_line(json_pack("{s:s, s:i, s:s}", "Name", name, "ExitCode", code, "Status", why));
}

static int run_container(const char *image, struct run_opts *o)
{
	struct container_run cr = { 0 };
	json_t *body, *hc, *exposed = json_object(), *bindings = json_object(), *cmd = json_array(), *env = json_array();
	struct err err = { 0 };
	pthread_t sig_t, log_t;
	bool have_logs = false, is_release = false, local = false, checked;
	char name[RUN_NAME_MAX + 1] = "";
	uint16_t ports[MAX_ARGS];
	struct host_port_map merged[MAX_ARGS];
	size_t n_ports, n_merged = 0;
	int code = 1, rc;

	if (docker_open(&cr.d, &err) < 0) {
		log_error("%s", err.msg);
		goto early;
	}
	if (o->name)
		snprintf(name, sizeof(name), "%s", o->name);
	else if (o->detach)
		random_name(name);
	if (name[0]) {
		struct run_info ri;

		/* one namespace for both kinds of run, so that stop, logs and rm name one thing */
		if (runs_find(name, &ri, &err) == 0) {
			log_error("the name %s is in use by an enclave run from an EIF: choose another --name", name);
			goto early;
		}
		err_clear(&err);
	}
	/* The release image's own ports stay published; -p moves one elsewhere, and a -p for a
	 * port the manifest does not publish reaches nothing: refused before anything starts. */
	checked = image_ports(cr.d, image, ports, MAX_ARGS, &n_ports);
	if (checked && host_publish_merge(o->maps, o->n_publish, ports, n_ports, merged, MAX_ARGS, &n_merged, &err) < 0) {
		log_error("%s, in the release image %s", err.msg, image);
		code = EXIT_USAGE;
		goto early;
	}
	runner_args(o, cmd);
	for (size_t i = 0; i < o->n_env; i++)
		json_array_append_new(env, json_string(o->env[i]));
	if (access("/dev/nitro_enclaves", F_OK) == 0) {
		/* as upstream: the device, privileged (nitro-cli binds vsock CID 3), ports published; and
		 * the host's claims on the shared vsock ports, so that enclaves in other containers are
		 * named rather than met as "address in use". enclaver-run in the container publishes
		 * the manifest's ports on themselves; Docker maps them where -p says. */
		const struct host_port_map *maps = checked ? merged : o->maps;
		size_t n_maps = checked ? n_merged : o->n_publish;

		for (size_t i = 0; i < n_maps; i++) {
			char key[16], addr[INET6_ADDRSTRLEN] = "", hport[8] = "";
			static const uint8_t any[16];

			snprintf(key, sizeof(key), "%u/tcp", maps[i].enclave_port);
			if (memcmp(maps[i].addr, any, 16))
				inet_ntop(maps[i].family, maps[i].addr, addr, sizeof(addr));
			if (maps[i].host_port)
				snprintf(hport, sizeof(hport), "%u", maps[i].host_port);
			json_object_set_new(exposed, key, json_object());
			if (!json_object_get(bindings, key))
				json_object_set_new(bindings, key, json_array());
			json_array_append_new(json_object_get(bindings, key), json_pack("{s:s, s:s}", "HostIp", addr, "HostPort", hport));
		}
		hc = json_pack("{s:o, s:[{s:s, s:s, s:s}], s:b, s:[s]}", "PortBindings", bindings, "Devices", "PathOnHost",
			       "/dev/nitro_enclaves", "PathInContainer", "/dev/nitro_enclaves", "CgroupPermissions", "rwm",
			       "Privileged", 1, "Binds", CLAIM_DIR_DEFAULT ":" CLAIM_DIR_DEFAULT);
		body = json_pack("{s:s, s:o, s:o}", "Image", image, "ExposedPorts", exposed, "HostConfig", hc);
	} else {
		/* No Nitro device: enclaver-run in the container starts a local enclave, which needs
		 * namespaces, mounts and cgroups (see the README). It runs as it would on this machine:
		 * on the host's network, where kms-local and services on the host's loopback are, and
		 * with the user's state folder, whose development CA kms-local trusts; -p goes to
		 * enclaver-run itself, which publishes the ports. */
		char state[4096];

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
		for (size_t i = 0; i < o->n_publish; i++) {
			json_array_append_new(cmd, json_string("-p"));
			json_array_append_new(cmd, json_string(o->publish[i]));
		}
		json_array_append_new(env, json_string("ENCLAVER_STATE_DIR=" CONTAINER_STATE_DIR));
		body = json_pack("{s:s, s:o}", "Image", image, "HostConfig", hc);
	}
	if (json_array_size(cmd))
		json_object_set(body, "Cmd", cmd);
	json_object_set(body, "Env", env);
	{
		char text[512] = "";

		if (checked)
			format_ports(merged, n_merged, text, sizeof(text));
		json_object_set_new(body, "Labels", json_pack("{s:s, s:s}", RUN_LABEL, image, RUN_PORTS_LABEL, text));
	}
	json_object_set_new(body, "AttachStdout", json_boolean(!o->detach));
	json_object_set_new(body, "AttachStderr", json_boolean(!o->detach));
	sigemptyset(&cr.sigs);
	sigaddset(&cr.sigs, SIGINT);
	sigaddset(&cr.sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &cr.sigs, NULL);
	pthread_create(&sig_t, NULL, signal_thread, &cr);
	pthread_detach(sig_t);
	rc = docker_container_create(cr.d, name[0] ? name : NULL, body, cr.id, &err); /* ensure_image pulled it */
	if (rc < 0) {
		if (err.code == EEXIST && name[0]) {
			log_error("the name %s is in use by a container: choose another --name, or remove it with "
				  "'enclaver rm %s'",
				  name, name);
			code = 1;
			goto out;
		}
		goto fail;
	}
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
	if (o->detach) {
		/* docker run -d: the container's name on stdout, and it runs on until enclaver stop */
		if (o->json)
			print_json_line(json_pack("{s:s, s:s, s:s}", "Name", name, "Id", cr.id, "Image", image));
		else
			printf("%s\n", name);
		code = 0;
		goto out;
	}
	atomic_store(&cr.started, 1);
	cr.out_fd = o->json ? STDERR_FILENO : STDOUT_FILENO;
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
	if (o->json)
		print_final_status(name[0] ? name : cr.id, code);
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
	json_decref(cmd);
	json_decref(env);
	docker_free(cr.d);
	return code;
early:
	json_decref(exposed);
	json_decref(bindings);
	json_decref(cmd);
	json_decref(env);
	docker_free(cr.d);
	return code;
}

static bool release_file(const char *rest, bool regular, void *ctx)
{
	return !strcmp(rest, "application.eif") || !strcmp(rest, "enclaver.yaml");
}

static volatile sig_atomic_t runner_child;

static void forward_signal(int sig)
{
	if (runner_child > 0)
		kill(runner_child, sig);
}

/* Starts enclaver-run (args) with stdin from in_fd and stdout, stderr to out_fd and err_fd
 * (-1: ours); returns its pid, or -1. */
static pid_t start_runner(char **args, int in_fd, int out_fd, int err_fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		proc_reset_signals();
		if ((in_fd >= 0 && dup2(in_fd, STDIN_FILENO) < 0) || (out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) < 0) ||
		    (err_fd >= 0 && dup2(err_fd, STDERR_FILENO) < 0))
			_exit(127);
		execvp(args[0], args);
		fprintf(stderr, "cannot run %s: %s (install enclaver-run beside enclaver)\n", args[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0)
		log_error("fork: %s", strerror(errno));
	return pid;
}

static int wait_code(pid_t pid)
{
	int status = 0;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * A detached run: a supervisor in a session of its own starts enclaver-run with its output in
 * the run's log, records it, tells us, and writes its exit code once it ends; we print the
 * name and return. cleanup: a folder the supervisor removes after (or NULL).
 */
static int run_detached(char **args, const char *dir, const char *name, const char *what, const char *ports,
			const char *cleanup, bool json)
{
	char path[PATH_MAX + 8], ok = 0;
	int pfd[2], logfd, nullfd;
	pid_t sup;

	snprintf(path, sizeof(path), "%s/log", dir);
	logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0 || pipe2(pfd, O_CLOEXEC) < 0) {
		log_error("%s: %s", path, strerror(errno));
		return 1;
	}
	fflush(stdout);
	sup = fork();
	if (sup == 0) {
		struct err err = { 0 };
		pid_t child;
		int code;

		setsid();
		signal(SIGINT, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		child = start_runner(args, nullfd, logfd, logfd);
		if (child < 0)
			_exit(1);
		if (runs_record(dir, name, child, true, what, ports, &err) < 0) {
			log_error("%s", err.msg);
			kill(child, SIGTERM);
			_exit(1);
		}
		if (write(pfd[1], "1", 1) < 0)
			_exit(1);
		/* the terminal is the user's again: nothing of ours goes there after this */
		dup2(nullfd, STDIN_FILENO);
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		code = wait_code(child);
		if (runs_finish(dir, code, &err) < 0)
			log_error("%s", err.msg);
		if (cleanup)
			fs_remove_tree(cleanup, &err);
		_exit(0);
	}
	close(pfd[1]);
	close(logfd);
	close(nullfd);
	if (sup < 0 || read(pfd[0], &ok, 1) != 1 || ok != '1') {
		close(pfd[0]);
		log_error("the enclave %s did not start: see %s/log", name, dir);
		return 1;
	}
	close(pfd[0]);
	if (json)
		print_json_line(json_pack("{s:s, s:s}", "Name", name, "Eif", what));
	else
		printf("%s\n", name);
	return 0;
}

/*
 * Runs enclaver-run with args under a name (o->name, else one made up), as enclaver ps, logs,
 * stop and rm know runs: detached, or in the foreground with its exit code as ours. what: the
 * EIF or image, shown by ps; cleanup: a folder to remove once it ended (or NULL).
 */
static int run_named(char **args, struct run_opts *o, const char *what, const char *ports, const char *cleanup)
{
	char name[RUN_NAME_MAX + 1], dir[PATH_MAX];
	struct err err = { 0 };
	pid_t pid;
	int code;

	if (o->name)
		snprintf(name, sizeof(name), "%s", o->name);
	else
		random_name(name);
	if (runs_reserve(name, dir, sizeof(dir), &err) < 0) {
		log_error("%s", err.msg);
		return err.code == EINVAL ? EXIT_USAGE : 1;
	}
	/* -e sets enclaver-run's environment, as docker run sets the container's */
	for (size_t i = 0; i < o->n_env; i++)
		putenv(o->env[i]);
	if (o->detach)
		return run_detached(args, dir, name, what, ports, cleanup, o->json);
	/* In the foreground this process stands for the run: enclaver stop signals it. */
	if (runs_record(dir, name, getpid(), false, what, ports, &err) < 0)
		log_warn("%s", err.msg);
	if (!cleanup && !o->json) {
		/* becomes enclaver-run, so that signals and the exit code are its own */
		execvp(args[0], args);
		log_error("cannot run %s: %s (install enclaver-run beside enclaver)", args[0], strerror(errno));
		return 1;
	}
	/* enclaver-run stops the enclave on SIGINT or SIGTERM; this process passes them on, then
	 * removes the folder and says how the run ended */
	signal(SIGINT, forward_signal);
	signal(SIGTERM, forward_signal);
	pid = start_runner(args, -1, o->json ? STDERR_FILENO : -1, -1);
	if (pid < 0)
		return 1;
	runner_child = pid;
	code = wait_code(pid);
	if (cleanup)
		fs_remove_tree(cleanup, &err);
	fs_remove_tree(dir, &err); /* a foreground run leaves no record once it ended */
	if (o->json)
		print_final_status(name, code);
	return code;
}

/* The manifest's ports as -p leaves them published, for enclaver ps; a -p for a port it does
 * not publish is refused here, before anything starts. */
static int publish_text(const char *manifest, const struct run_opts *o, char *out, size_t size)
{
	struct manifest *m = NULL;
	struct err err = { 0 };
	uint16_t ports[MAX_ARGS];
	struct host_port_map merged[MAX_ARGS];
	size_t n = 0;
	int rc = 0;

	if (manifest_load(manifest, &m, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	for (size_t i = 0; i < m->n_ingress && i < MAX_ARGS; i++)
		ports[i] = m->ingress[i].listen_port;
	if (host_publish_merge(o->maps, o->n_publish, ports, m->n_ingress < MAX_ARGS ? m->n_ingress : MAX_ARGS, merged,
			       MAX_ARGS, &n, &err) < 0) {
		log_error("%s (%s)", err.msg, manifest);
		rc = EXIT_USAGE;
	} else {
		format_ports(merged, n, out, size);
	}
	manifest_free(m);
	return rc;
}

/* A release image in a VM enclave: its EIF and manifest taken out of the image, then
 * enclaver-run --launcher vm on this machine (QEMU is not in the image). args: enclaver-run's
 * own arguments so far. */
static int run_vm_image(const char *image, char **args, int n, struct run_opts *o)
{
	char dir[4200], eif[4300], manifest[4300], ports[512] = "";
	struct image_ids ids;
	struct err err = { 0 };
	int partial, code = 1;

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
	if ((code = publish_text(manifest, o, ports, sizeof(ports))) != 0)
		goto out;
	log_info("%s (%s): its EIF boots in a VM enclave on this machine", image, ids.id);
	args[n++] = "--launcher";
	args[n++] = "vm";
	args[n++] = "--eif-file";
	args[n++] = eif;
	args[n++] = "--manifest-file";
	args[n++] = manifest;
	args[n] = NULL;
	fs_partial_remove(partial); /* from here the folder is the run's, removed when it ends */
	return run_named(args, o, image, ports, dir);
out:
	fs_remove_tree(dir, &err);
	fs_partial_remove(partial);
	return code;
}

/* -e NAME=VALUE, or -e NAME for this process's value (left out when it has none), as docker run. */
static int add_env(struct run_opts *o, const char *spec)
{
	const char *eq = strchr(spec, '=');

	if (!spec[0] || eq == spec) {
		log_error("-e %s: give NAME=VALUE, or NAME to pass this shell's value", spec);
		return -1;
	}
	if (!eq) {
		const char *v = getenv(spec);
		char *kv;

		if (!v)
			return 0;
		if (asprintf(&kv, "%s=%s", spec, v) < 0)
			abort();
		o->env[o->n_env++] = kv; /* lives until the process ends */
		return 0;
	}
	o->env[o->n_env++] = (char *)spec;
	return 0;
}

int cmd_run(int argc, char **argv)
{
	enum { O_EIF = 256, O_MEM, O_CPU, O_LAUNCHER, O_DEBUG, O_VM, O_PULL, O_DETACH, O_NAME, O_ROLE, O_INSTANCE, O_JSON };
	static const struct option opts[] = {
		{ "eif", required_argument, NULL, O_EIF },
		{ "file", required_argument, NULL, 'f' },
		{ "publish", required_argument, NULL, 'p' },
		{ "debug-mode", no_argument, NULL, O_DEBUG },
		{ "detach", no_argument, NULL, O_DETACH },
		{ "name", required_argument, NULL, O_NAME },
		{ "env", required_argument, NULL, 'e' },
		{ "role-arn", required_argument, NULL, O_ROLE },
		{ "instance-id", required_argument, NULL, O_INSTANCE },
		{ "verbose", no_argument, NULL, 'v' },
		{ "json", no_argument, NULL, O_JSON },
		{ "memory-mb", required_argument, NULL, O_MEM },
		{ "cpu-count", required_argument, NULL, O_CPU },
		{ "launcher", required_argument, NULL, O_LAUNCHER },
		{ "vm", no_argument, NULL, O_VM },
		{ "pull", required_argument, NULL, O_PULL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct run_opts o; /* large: its arrays live outside the stack */
	char *args[MAX_ARGS], runner[PATH_MAX];
	const char *eif = NULL, *manifest = NULL;
	bool eif_only_flags = false, vm = false, manifest_given;
	char ports[512] = "";
	int n = 0, c, code;

	memset(&o, 0, sizeof(o));
	o.verbose = log_get_level() >= LOG_DEBUG; /* enclaver -v run ... */
	find_enclaver_run(runner, sizeof(runner));
	args[n++] = runner;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:p:de:vh", opts, NULL)) != -1) {
		struct err err = { 0 };

		if (n > MAX_ARGS - 16 || o.n_publish == MAX_ARGS || o.n_env == MAX_ARGS) {
			log_error("too many arguments");
			return EXIT_USAGE;
		}
		switch (c) {
		case O_EIF: eif = optarg; break;
		case 'f': manifest = optarg; break;
		case 'p':
			if (host_publish_parse(optarg, &o.maps[o.n_publish], &err) < 0) {
				log_error("%s", err.msg);
				return EXIT_USAGE;
			}
			o.publish[o.n_publish++] = optarg;
			args[n++] = "--publish";
			args[n++] = optarg;
			break;
		case 'd':
			log_info("-d is --debug-mode, as in upstream Enclaver; --detach runs the enclave in the background");
			/* fall through */
		case O_DEBUG:
			args[n++] = "--debug-mode";
			o.debug = true;
			break;
		case O_DETACH: o.detach = true; break;
		case O_NAME:
			if (!runs_name_ok(optarg)) {
				log_error("--name %s: a name is 2 to %d letters, digits, '_', '.' or '-', starting with a letter "
					  "or digit",
					  optarg, RUN_NAME_MAX);
				return EXIT_USAGE;
			}
			o.name = optarg;
			break;
		case 'e':
			if (add_env(&o, optarg) < 0)
				return EXIT_USAGE;
			break;
		case O_ROLE:
			o.role_arn = optarg;
			args[n++] = "--role-arn";
			args[n++] = optarg;
			break;
		case O_INSTANCE:
			o.instance_id = optarg;
			args[n++] = "--instance-id";
			args[n++] = optarg;
			break;
		case 'v': o.verbose = true; break;
		case O_JSON: o.json = true; break;
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
			o.pull = optarg;
			break;
		case 'h':
			return cmd_help("run");
		default:
			return cmd_bad_option("run", argv, "f:p:de:vh", opts);
		}
	}
	if (o.verbose)
		args[n++] = "-v";
	if (!eif) {
		struct manifest *m = NULL;
		struct err err = { 0 };
		const char *image = optind < argc ? argv[optind] : NULL;
		char *target;

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
			if (ensure_image(image, o.pull, NULL))
				return 1;
			return vm ? run_vm_image(image, args, n, &o) : run_container(image, &o);
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
		if (ensure_image(target, o.pull, manifest ? manifest : "enclaver.yaml")) {
			free(target);
			return 1;
		}
		code = vm ? run_vm_image(target, args, n, &o) : run_container(target, &o);
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
	if ((code = publish_text(manifest, &o, ports, sizeof(ports))) != 0)
		return code;
	if (vm) {
		args[n++] = "--launcher";
		args[n++] = "vm";
	}
	args[n++] = "--eif-file";
	args[n++] = (char *)eif;
	args[n++] = "--manifest-file";
	args[n++] = (char *)manifest;
	args[n] = NULL;
	{
		char *abs = realpath(eif, NULL); /* ps shows where it is from anywhere */

		code = run_named(args, &o, abs ? abs : eif, ports, NULL);
		free(abs);
	}
	return code;
}
