/* enclaver manifest [-f FILE] [--measured]: validate the manifest and print it resolved, as JSON,
 * or as the EIF holds it. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "cmd/cmd.h"
#include "manifest/manifest.h"

int cmd_manifest(int argc, char **argv)
{
	static const struct option opts[] = { { "file", required_argument, NULL, 'f' },
					      { "measured", no_argument, NULL, 'm' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	bool measured = false;
	const char *path = "enclaver.yaml";
	struct manifest *m;
	struct err err = { 0 };
	char *json;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			path = optarg;
			break;
		case 'm':
			measured = true;
			break;
		case 'h':
			return cmd_help("manifest");
		default:
			return cmd_bad_option("manifest", argv, "f:h", opts);
		}
	}
	if (optind != argc) {
		log_error("unexpected argument \"%s\"; use -f FILE", argv[optind]);
		return EXIT_USAGE;
	}
	if (manifest_load(path, &m, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	if (measured) { /* what enclaver build puts in the EIF */
		json = manifest_canonical(m);
		fputs(json, stdout);
	} else {
		json = manifest_to_json(m);
		printf("%s\n", json);
	}
	free(json);
	manifest_free(m);
	return 0;
}
