/* The enclaver CLI's help pages, generated from the pages in src/cmd/help (the same text makes the man
 * pages and the shell completions). */
#ifndef ENCLAVER_CMD_HELP_H
#define ENCLAVER_CMD_HELP_H

struct cmd_help_page {
	const char *command; /* "" for enclaver itself, "eif build" */
	const char *summary;
	const char *text;
};

/* Ends with an entry whose command is NULL. */
extern const struct cmd_help_page cmd_help_pages[];

/* Prints COMMAND's page to standard output; returns 0, or EXIT_USAGE (with one line) when there
 * is no such page. */
int cmd_help(const char *command);
/* `enclaver help [COMMAND...]`: argv[0] is "help". */
int cmd_help_main(int argc, char **argv);

#endif
