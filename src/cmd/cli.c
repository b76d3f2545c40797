/* The enclaver CLI's shared parts: help pages, and what a subcommand says when its options are
 * wrong. Runs in the CLI; its input is the user's command line. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "cmd/cmd.h"
#include "cmd/help.h"

int cmd_help(const char *command)
{
	for (const struct cmd_help_page *p = cmd_help_pages; p->command; p++)
		if (!strcmp(p->command, command)) {
			fputs(p->text, stdout);
			return 0;
		}
	log_error("no help page for \"enclaver %s\"; 'enclaver help' lists the commands", command);
	return EXIT_USAGE;
}

int cmd_help_main(int argc, char **argv)
{
	char command[256] = "";
	size_t n = 0;

	for (int i = 1; i < argc; i++) {
		int w = snprintf(command + n, sizeof(command) - n, "%s%s", n ? " " : "", argv[i]);

		if (w < 0 || (size_t)w >= sizeof(command) - n) {
			log_error("no help page for that; 'enclaver help' lists the commands");
			return EXIT_USAGE;
		}
		n += (size_t)w;
	}
	return cmd_help(command);
}

int cmd_bad_option(const char *cmd, char **argv, const char *shortopts, const struct option *opts)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";

	/* getopt_long has moved past a long option it refused; a short one is in optopt */
	if (arg && !strncmp(arg, "--", 2)) {
		size_t n = strcspn(arg + 2, "=");

		for (const struct option *o = opts; o->name; o++) {
			if (strlen(o->name) != n || strncmp(o->name, arg + 2, n))
				continue;
			if (o->has_arg == required_argument && !arg[2 + n])
				log_error("enclaver %s: option --%s needs a value; see 'enclaver %s --help'", cmd, o->name,
					  cmd);
			else if (o->has_arg == no_argument && arg[2 + n])
				log_error("enclaver %s: option --%s takes no value; see 'enclaver %s --help'", cmd, o->name,
					  cmd);
			else
				break;
			return EXIT_USAGE;
		}
		log_error("enclaver %s: unknown option %.*s; see 'enclaver %s --help'", cmd, (int)(n + 2), arg, cmd);
	} else if (optopt > 0 && optopt < 256 && optopt != ':' && strchr(shortopts, optopt)) {
		log_error("enclaver %s: option -%c needs a value; see 'enclaver %s --help'", cmd, optopt, cmd);
	} else if (optopt > 0 && optopt < 256) {
		log_error("enclaver %s: unknown option -%c; see 'enclaver %s --help'", cmd, optopt, cmd);
	} else {
		log_error("enclaver %s: unknown option %s; see 'enclaver %s --help'", cmd, arg ? arg : "", cmd);
	}
	return EXIT_USAGE;
}
