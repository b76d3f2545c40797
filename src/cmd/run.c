/*
 * enclaver run: runs an EIF on this machine through enclaver-run (which it becomes, so that
 * signals and the exit code are enclaver-run's own).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "cmd/cmd.h"

#define MAX_ARGS 256

/* enclaver-run installed beside this enclaver, else the first on PATH. */
static void find_enclaver_run(char *out, size_t size)
{
	fs_beside_self("enclaver-run", out, size);
	if (!out[0] || access(out, X_OK) < 0)
		snprintf(out, size, "enclaver-run");
}

int cmd_run(int argc, char **argv)
{
	enum { O_EIF = 256, O_MEM, O_CPU, O_LAUNCHER, O_DEBUG };
	static const struct option opts[] = {
		{ "eif", required_argument, NULL, O_EIF },
		{ "file", required_argument, NULL, 'f' },
		{ "publish", required_argument, NULL, 'p' },
		{ "debug-mode", no_argument, NULL, 'd' },
		{ "memory-mb", required_argument, NULL, O_MEM },
		{ "cpu-count", required_argument, NULL, O_CPU },
		{ "launcher", required_argument, NULL, O_LAUNCHER },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *args[MAX_ARGS], runner[PATH_MAX];
	const char *eif = NULL, *manifest = NULL;
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
			break;
		case 'd': args[n++] = "--debug-mode"; break;
		case O_MEM:
			args[n++] = "--memory-mb";
			args[n++] = optarg;
			break;
		case O_CPU:
			args[n++] = "--cpu-count";
			args[n++] = optarg;
			break;
		case O_LAUNCHER:
			args[n++] = "--launcher";
			args[n++] = optarg;
			break;
		case 'h':
			printf("usage: enclaver run --eif FILE [-f MANIFEST] [-p HOST:ENCLAVE]... [--debug-mode]\n"
			       "                    [--memory-mb N] [--cpu-count N] [--launcher local|nitro|nitro-cli]\n\n"
			       "Runs the EIF on this machine: in a Nitro Enclave where /dev/nitro_enclaves exists,\n"
			       "else in a local enclave. MANIFEST defaults to ./enclaver.yaml. -p publishes an\n"
			       "enclave port on another host port (default: each ingress port on itself).\n");
			return 0;
		default:
			return EXIT_USAGE;
		}
	}
	if (!eif || optind != argc) {
		log_error("usage: enclaver run --eif FILE [-f MANIFEST] [-p HOST:ENCLAVE]... (see --help)");
		return EXIT_USAGE;
	}
	if (!manifest)
		manifest = "enclaver.yaml";
	if (access(manifest, R_OK) < 0) {
		log_error("%s: %s; name the manifest with -f", manifest, strerror(errno));
		return 1;
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
