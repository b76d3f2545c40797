/* Entry points of the enclaver CLI's subcommands. Each returns the process exit code. */
#ifndef ENCLAVER_CMD_CMD_H
#define ENCLAVER_CMD_CMD_H

#include "cmd/help.h"

#define EXIT_USAGE 2

struct option;

/* Says what was wrong with the option getopt_long just refused (with opterr 0), naming the
 * command ("eif build") and its --help; returns EXIT_USAGE. */
int cmd_bad_option(const char *cmd, char **argv, const char *shortopts, const struct option *opts);

int cmd_manifest(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_eif(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_build(int argc, char **argv);
int cmd_attest(int argc, char **argv);
int cmd_kms_local(int argc, char **argv);
/* ps, logs, stop and rm, by argv[0] */
int cmd_runs(int argc, char **argv);

#endif
