/* Entry points of the enclaver CLI's subcommands. Each returns the process exit code. */
#ifndef ENCLAVER_CMD_CMD_H
#define ENCLAVER_CMD_CMD_H

#define EXIT_USAGE 2

int cmd_manifest(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_eif(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_build(int argc, char **argv);
int cmd_attest(int argc, char **argv);
int cmd_kms_local(int argc, char **argv);

#endif
