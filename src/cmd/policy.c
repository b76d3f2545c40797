/* enclaver policy check [-f FILE] HOST...: what the egress policy decides for each host. */
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "cmd/cmd.h"
#include "manifest/manifest.h"
#include "manifest/policy.h"

int cmd_policy(int argc, char **argv)
{
	static const struct option opts[] = { { "file", required_argument, NULL, 'f' },
					      { "json", no_argument, NULL, 'j' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	const char *path = "enclaver.yaml";
	struct manifest *m;
	struct policy *p;
	struct err err = { 0 };
	int c, denied = 0;
	bool as_json = false;
	json_t *hosts = NULL;

	if (argc < 2 || strcmp(argv[1], "check") != 0) {
		if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
			return cmd_help("policy");
		log_error("enclaver policy: the command is check: enclaver policy check [-f FILE] HOST...");
		return EXIT_USAGE;
	}
	argc--;
	argv++;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			path = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 'h':
			return cmd_help("policy check");
		default:
			return cmd_bad_option("policy check", argv, "f:h", opts);
		}
	}
	if (optind == argc) {
		log_error("name at least one HOST to check");
		return EXIT_USAGE;
	}
	if (manifest_load(path, &m, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	if (policy_new((const char *const *)m->egress_allow, m->n_egress_allow,
		       (const char *const *)m->egress_deny, m->n_egress_deny, &p, &err) < 0) {
		log_error("%s: %s", path, err.msg);
		manifest_free(m);
		return 1;
	}
	hosts = as_json ? json_array() : NULL;
	for (int i = optind; i < argc; i++) {
		struct policy_decision d;

		policy_check(p, argv[i], &d);
		if (as_json) {
			char why[512];

			if (d.rule)
				snprintf(why, sizeof(why), "%s rule \"%s\"", d.allowed ? "allow" : "deny", d.rule);
			else
				snprintf(why, sizeof(why), "%s", d.reason);
			json_array_append_new(hosts, json_pack("{s:s, s:b, s:s, s:s?}", "host", argv[i], "allowed",
							       d.allowed, "reason", why, "rule", d.rule));
		} else if (d.rule)
			printf("%s %s (%s rule \"%s\")\n", d.allowed ? "allow" : "deny", argv[i],
			       d.allowed ? "allow" : "deny", d.rule);
		else
			printf("%s %s (%s)\n", d.allowed ? "allow" : "deny", argv[i], d.reason);
		if (d.allowed && strcasecmp(argv[i], "host") == 0)
			log_warn("\"host\" reaches the parent's loopback (127.0.0.1 outside the enclave)");
		denied |= !d.allowed;
	}
	if (as_json) {
		json_t *j = json_pack("{s:b, s:o}", "allowed", !denied, "hosts", hosts);
		char *text = json_dumps(j, JSON_INDENT(2));

		printf("%s\n", text);
		free(text);
		json_decref(j);
	}
	policy_free(p);
	manifest_free(m);
	return denied ? 1 : 0;
}
