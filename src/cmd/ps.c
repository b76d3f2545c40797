/*
 * enclaver ps, logs, stop and rm: the enclaves enclaver run started on this machine, as docker's
 * commands of those names treat containers. Two kinds: runs of an EIF (cmd/runs.h) and
 * containers of release images, which carry the label RUN_LABEL. Runs in enclaver.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "cmd/cmd.h"
#include "cmd/runs.h"
#include "image/docker.h"

#define POLL_MS 100

/* "3 minutes", as docker ps says how long ago something happened; stamp is RFC 3339 UTC. */
static void how_long(const char *stamp, char *out, size_t size)
{
	struct tm tm = { 0 };
	long d;
	const char *unit;

	if (!strptime(stamp, "%Y-%m-%dT%H:%M:%SZ", &tm)) {
		snprintf(out, size, "?");
		return;
	}
	d = (long)(time(NULL) - timegm(&tm));
	if (d < 0)
		d = 0;
	if (d < 120)
		unit = "second";
	else if (d < 7200)
		d /= 60, unit = "minute";
	else if (d < 2 * 86400)
		d /= 3600, unit = "hour";
	else
		d /= 86400, unit = "day";
	snprintf(out, size, "%ld %s%s", d, unit, d == 1 ? "" : "s");
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* The Docker daemon, or NULL (said at debug level) when there is none: then only EIF runs are
 * listed and found. */
static struct docker *docker_maybe(void)
{
	struct docker *d = NULL;
	struct err err = { 0 };

	if (docker_open(&d, &err) < 0 || !docker_reachable(d)) {
		log_debug("containers are not listed: %s", err.msg[0] ? err.msg : "no Docker daemon answers");
		docker_free(d);
		return NULL;
	}
	return d;
}

/* The container NAME if enclaver run made it (it carries our label): *info is its inspect. */
static bool find_container(struct docker *d, const char *name, json_t **info)
{
	char path[200];
	struct err err = { 0 };
	json_t *j = NULL, *labels;

	*info = NULL;
	if (!d || !runs_name_ok(name)) /* a name that needs no escaping in the path */
		return false;
	snprintf(path, sizeof(path), "/containers/%s/json", name);
	if (docker_json(d, "GET", path, NULL, &j, &err) < 0)
		return false;
	labels = json_object_get(json_object_get(j, "Config"), "Labels");
	if (!json_object_get(labels, RUN_LABEL)) {
		json_decref(j);
		return false;
	}
	*info = j;
	return true;
}

/* What a name given to logs, stop or rm is. */
enum found { FOUND_NONE, FOUND_RUN, FOUND_CONTAINER };

/* Finds NAME among the runs of EIFs (*ri) and then the containers of enclaver run (through *d,
 * opened at the first need). FOUND_NONE has been said. */
static enum found find_enclave(const char *name, struct run_info *ri, struct docker **d, bool *docker_tried)
{
	struct err err = { 0 };
	json_t *info;

	if (runs_find(name, ri, &err) == 0)
		return FOUND_RUN;
	if (err.code == EPERM) { /* a runs folder not to be believed: said, and nothing else tried */
		log_error("%s", err.msg);
		return FOUND_NONE;
	}
	if (!*docker_tried) {
		*d = docker_maybe();
		*docker_tried = true;
	}
	if (!find_container(*d, name, &info)) {
		log_error("no enclave named %s: 'enclaver ps -a' lists them", name);
		return FOUND_NONE;
	}
	json_decref(info);
	return FOUND_CONTAINER;
}

/* --- ps --- */

struct row {
	char name[RUN_NAME_MAX + 1];
	const char *kind;
	bool running;
	int exit_code;
	char status[64], ports[512], from[PATH_MAX], created[32];
};

static void add_container_rows(struct docker *d, bool all, struct row **rows, size_t *n)
{
	struct err err = { 0 };
	json_t *list = NULL, *c;
	size_t i;

	if (docker_container_list(d, RUN_LABEL, all, &list, &err) < 0) {
		log_warn("%s", err.msg);
		return;
	}
	json_array_foreach(list, i, c) {
		json_t *labels = json_object_get(c, "Labels");
		const char *nm = json_string_value(json_array_get(json_object_get(c, "Names"), 0));
		const char *state = json_string_value(json_object_get(c, "State"));
		const char *status = json_string_value(json_object_get(c, "Status"));
		const char *ports = json_string_value(json_object_get(labels, RUN_PORTS_LABEL));
		struct row *r;
		time_t t = (time_t)json_integer_value(json_object_get(c, "Created"));
		struct tm tm;

		*rows = realloc(*rows, (*n + 1) * sizeof(**rows));
		if (!*rows)
			abort();
		r = &(*rows)[(*n)++];
		memset(r, 0, sizeof(*r));
		snprintf(r->name, sizeof(r->name), "%s", nm ? nm + (nm[0] == '/') : "?");
		r->kind = "container";
		r->running = state && !strcmp(state, "running");
		snprintf(r->status, sizeof(r->status), "%s", status ? status : state ? state : "?");
		if (status && !strncmp(status, "Exited (", 8))
			r->exit_code = atoi(status + 8);
		snprintf(r->ports, sizeof(r->ports), "%s", ports ? ports : "");
		snprintf(r->from, sizeof(r->from), "%s", json_string_value(json_object_get(labels, RUN_LABEL)) ?: "?");
		gmtime_r(&t, &tm);
		strftime(r->created, sizeof(r->created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	json_decref(list);
}

static int cmd_ps(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool all = false, quiet = false, as_json = false;
	struct run_info *runs = NULL;
	struct row *rows = NULL;
	size_t n_runs = 0, n = 0;
	struct err err = { 0 };
	struct docker *d;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "aqh", opts, NULL)) != -1) {
		switch (c) {
		case 'a': all = true; break;
		case 'q': quiet = true; break;
		case 'j': as_json = true; break;
		case 'h': return cmd_help("ps");
		default: return cmd_bad_option("ps", argv, "aqh", opts);
		}
	}
	if (optind < argc) {
		log_error("enclaver ps: unexpected argument \"%s\"; see 'enclaver ps --help'", argv[optind]);
		return EXIT_USAGE;
	}
	if (runs_list(&runs, &n_runs, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	for (size_t i = 0; i < n_runs; i++) {
		struct run_info *ri = &runs[i];
		struct row *r;

		if (!all && !ri->running)
			continue;
		rows = realloc(rows, (n + 1) * sizeof(*rows));
		if (!rows)
			abort();
		r = &rows[n++];
		memset(r, 0, sizeof(*r));
		snprintf(r->name, sizeof(r->name), "%s", ri->name);
		r->kind = "eif";
		r->running = ri->running;
		r->exit_code = ri->exit_code;
		if (ri->running) {
			char up[32];

			how_long(ri->created, up, sizeof(up));
			snprintf(r->status, sizeof(r->status), "Up %s%s", up, ri->detached ? "" : " (foreground)");
		} else {
			char ago[32];

			how_long(ri->finished, ago, sizeof(ago));
			snprintf(r->status, sizeof(r->status), "Exited (%d) %s ago", ri->exit_code, ago);
		}
		snprintf(r->ports, sizeof(r->ports), "%s", ri->ports);
		snprintf(r->from, sizeof(r->from), "%s", ri->eif);
		snprintf(r->created, sizeof(r->created), "%s", ri->created);
	}
	free(runs);
	d = docker_maybe();
	if (d)
		add_container_rows(d, all, &rows, &n);
	docker_free(d);
	if (as_json) {
		json_t *arr = json_array();
		char *text;

		for (size_t i = 0; i < n; i++) {
			json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "Name", rows[i].name, "Kind", rows[i].kind,
					      "State", rows[i].running ? "running" : "exited", "Status", rows[i].status,
					      "Ports", rows[i].ports, "From", rows[i].from, "Created", rows[i].created);

			if (!rows[i].running)
				json_object_set_new(o, "ExitCode", json_integer(rows[i].exit_code));
			json_array_append_new(arr, o);
		}
		text = json_dumps(arr, JSON_INDENT(2));
		printf("%s\n", text);
		free(text);
		json_decref(arr);
	} else if (quiet) {
		for (size_t i = 0; i < n; i++)
			printf("%s\n", rows[i].name);
	} else {
		printf("%-24s %-10s %-40s %-32s %s\n", "NAME", "KIND", "STATUS", "PORTS", "FROM");
		for (size_t i = 0; i < n; i++)
			printf("%-24s %-10s %-40s %-32s %s\n", rows[i].name, rows[i].kind, rows[i].status,
			       rows[i].ports[0] ? rows[i].ports : "-", rows[i].from);
	}
	free(rows);
	return 0;
}

/* --- logs --- */

/* Copies a detached run's log from *off to stdout; false on a read error. */
static bool copy_log(int fd, off_t *off)
{
	char chunk[1 << 16];
	ssize_t got;

	while ((got = pread(fd, chunk, sizeof(chunk), *off)) > 0) {
		if (fwrite(chunk, 1, (size_t)got, stdout) != (size_t)got)
			return false;
		*off += got;
	}
	fflush(stdout);
	return got == 0;
}

static int eif_logs(const struct run_info *ri, bool follow)
{
	char path[PATH_MAX + 8];
	off_t off = 0;
	int fd;

	if (!ri->detached) {
		log_error("%s runs in the foreground: its output goes to the terminal that started it", ri->name);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/log", ri->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_error("%s: %s", path, strerror(errno));
		return 1;
	}
	for (;;) {
		struct run_info now;
		struct err err = { 0 };

		if (!copy_log(fd, &off)) {
			log_error("%s: %s", path, strerror(errno));
			close(fd);
			return 1;
		}
		/* until the run ended and every byte it wrote is out */
		if (!follow || runs_find(ri->name, &now, &err) < 0 || !now.running)
			break;
		sleep_ms(POLL_MS);
	}
	copy_log(fd, &off);
	close(fd);
	return 0;
}

static int cmd_logs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool follow = false, docker_tried = false;
	struct run_info ri;
	struct err err = { 0 };
	struct docker *d = NULL;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f': follow = true; break;
		case 'h': return cmd_help("logs");
		default: return cmd_bad_option("logs", argv, "fh", opts);
		}
	}
	if (optind + 1 != argc) {
		log_error("enclaver logs: name one enclave; see 'enclaver logs --help'");
		return EXIT_USAGE;
	}
	switch (find_enclave(argv[optind], &ri, &d, &docker_tried)) {
	case FOUND_RUN: rc = eif_logs(&ri, follow); break;
	case FOUND_CONTAINER:
		rc = docker_container_logs(d, argv[optind], follow, STDOUT_FILENO, &err) < 0 ? 1 : 0;
		if (rc)
			log_error("%s", err.msg);
		break;
	case FOUND_NONE: break;
	}
	docker_free(d);
	return rc;
}

/* --- stop and rm --- */

/* SIGTERM, up to seconds for it to end, then SIGKILL: as docker stop. The pid is the run's
 * only while its start time matches (runs_alive), so nothing else is ever signalled. */
static void stop_run(const struct run_info *ri, int seconds)
{
	if (!runs_alive(ri->pid, ri->start) || !runs_is_runner(ri->pid))
		return;
	kill(ri->pid, SIGTERM);
	for (int waited = 0; waited < seconds * 1000; waited += POLL_MS) {
		if (!runs_alive(ri->pid, ri->start))
			break;
		sleep_ms(POLL_MS);
	}
	if (runs_alive(ri->pid, ri->start)) {
		log_warn("%s did not stop within %d s: killing it", ri->name, seconds);
		kill(ri->pid, SIGKILL);
	}
	/* a detached run's supervisor writes the exit code right after */
	for (int waited = 0; ri->detached && waited < 2000; waited += POLL_MS) {
		struct run_info now;
		struct err err = { 0 };

		if (runs_find(ri->name, &now, &err) < 0 || now.ended)
			break;
		sleep_ms(POLL_MS);
	}
}

static int parse_seconds(const char *s, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < 0 || v > 86400)
		return -1;
	*out = (int)v;
	return 0;
}

static int cmd_stop(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "time", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int seconds = 10, c, rc = 0;
	struct docker *d = NULL;
	bool docker_tried = false;

	optind = 1;
	while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_seconds(optarg, &seconds) < 0) {
				log_error("enclaver stop: --time %s: give whole seconds, 0 to 86400", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h': return cmd_help("stop");
		default: return cmd_bad_option("stop", argv, "t:h", opts);
		}
	}
	if (optind == argc) {
		log_error("enclaver stop: name the enclaves to stop; see 'enclaver stop --help'");
		return EXIT_USAGE;
	}
	for (int i = optind; i < argc; i++) {
		struct run_info ri;
		struct err err = { 0 };

		switch (find_enclave(argv[i], &ri, &d, &docker_tried)) {
		case FOUND_RUN: stop_run(&ri, seconds); break;
		case FOUND_CONTAINER:
			if (docker_container_stop(d, argv[i], seconds, &err) < 0) {
				log_error("%s", err.msg);
				rc = 1;
				continue;
			}
			break;
		case FOUND_NONE: rc = 1; continue;
		}
		printf("%s\n", argv[i]);
	}
	docker_free(d);
	return rc;
}

static int cmd_rm(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool force = false, docker_tried = false;
	struct docker *d = NULL;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f': force = true; break;
		case 'h': return cmd_help("rm");
		default: return cmd_bad_option("rm", argv, "fh", opts);
		}
	}
	if (optind == argc) {
		log_error("enclaver rm: name the enclaves to remove; see 'enclaver rm --help'");
		return EXIT_USAGE;
	}
	for (int i = optind; i < argc; i++) {
		struct run_info ri;
		struct err err = { 0 };
		char path[200];
		int rm_rc = 0;

		switch (find_enclave(argv[i], &ri, &d, &docker_tried)) {
		case FOUND_RUN:
			if (ri.running && !force) {
				err.code = EEXIST;
				rm_rc = -1;
				break;
			}
			if (ri.running)
				stop_run(&ri, 10);
			rm_rc = runs_remove(&ri, &err);
			break;
		case FOUND_CONTAINER:
			snprintf(path, sizeof(path), "/containers/%s%s", argv[i], force ? "?force=1" : "");
			rm_rc = docker_json(d, "DELETE", path, NULL, NULL, &err); /* 409: it runs */
			break;
		case FOUND_NONE: rc = 1; continue;
		}
		if (rm_rc < 0 && err.code == EEXIST)
			log_error("%s is running: stop it with 'enclaver stop %s', or remove it anyway with "
				  "'enclaver rm -f %s'",
				  argv[i], argv[i], argv[i]);
		else if (rm_rc < 0)
			log_error("%s", err.msg);
		if (rm_rc < 0) {
			rc = 1;
			continue;
		}
		printf("%s\n", argv[i]);
	}
	docker_free(d);
	return rc;
}

int cmd_runs(int argc, char **argv)
{
	if (!strcmp(argv[0], "ps"))
		return cmd_ps(argc, argv);
	if (!strcmp(argv[0], "logs"))
		return cmd_logs(argc, argv);
	if (!strcmp(argv[0], "stop"))
		return cmd_stop(argc, argv);
	return cmd_rm(argc, argv);
}
