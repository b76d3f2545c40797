/* enclaver: the developer CLI. Dispatches to one file per subcommand. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "base/fs.h"
#include "base/log.h"
#include "cmd/cmd.h"

/* What each command does is on its page (src/cmd/help), which `enclaver help` prints. */
static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "build", cmd_build },	  { "manifest", cmd_manifest },	  { "policy", cmd_policy }, { "eif", cmd_eif },
	{ "attest", cmd_attest }, { "kms-local", cmd_kms_local }, { "run", cmd_run }, { "ps", cmd_runs },
	{ "logs", cmd_runs },	  { "stop", cmd_runs },		  { "rm", cmd_runs },
};

int main(int argc, char **argv)
{
	int i = 1;

	log_init("enclaver", LOG_INFO);
	opterr = 0; /* each command says what was wrong, with its name (cmd_bad_option) */
	/* Ctrl-C or SIGTERM in the middle of a build leaves no partial output behind. */
	fs_cleanup_on_signals();
	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
			log_set_level(LOG_DEBUG);
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			return cmd_help("");
		} else if (!strcmp(argv[i], "--version")) {
			printf("enclaver %s\n", ENCLAVER_VERSION);
			return 0;
		} else {
			log_error("unknown option %s; see 'enclaver --help'", argv[i]);
			return EXIT_USAGE;
		}
		i++;
	}
	if (i >= argc) {
		log_error("name a command; 'enclaver help' lists them");
		return EXIT_USAGE;
	}
	if (!strcmp(argv[i], "help"))
		return cmd_help_main(argc - i, argv + i);
	if (!strcmp(argv[i], "version") && i + 1 < argc && (!strcmp(argv[i + 1], "-h") || !strcmp(argv[i + 1], "--help")))
		return cmd_help("version");
	if (!strcmp(argv[i], "version")) {
		printf("enclaver %s\n", ENCLAVER_VERSION);
		return 0;
	}
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (!strcmp(argv[i], commands[k].name))
			return commands[k].fn(argc - i, argv + i);
	log_error("unknown command \"%s\"; 'enclaver help' lists the commands", argv[i]);
	return EXIT_USAGE;
}
