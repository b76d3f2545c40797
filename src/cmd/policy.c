/* enclaver policy check [-f FILE] HOST...: what the egress policy decides for each host. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "cmd/cmd.h"
#include "manifest/manifest.h"
#include "manifest/policy.h"

int cmd_policy(int argc, char **argv)
{
	static const struct option opts[] = { { "file", required_argument, NULL, 'f' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	const char *path = "enclaver.yaml";
	struct manifest *m;
	struct policy *p;
	struct err err = { 0 };
	int c, denied = 0;

	if (argc < 2 || strcmp(argv[1], "check") != 0) {
		if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			printf("usage: enclaver policy check [-f FILE] HOST...\n");
			return 0;
		}
		log_error("usage: enclaver policy check [-f FILE] HOST...");
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
		case 'h':
			printf("usage: enclaver policy check [-f FILE] HOST...\n\n"
			       "Prints \"allow\" or \"deny\" for each HOST (a name, an IPv4 address or an IPv6\n"
			       "address) and the rule that decided. Exits 0 when every host is allowed,\n"
			       "1 when any is denied.\n");
			return 0;
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
	for (int i = optind; i < argc; i++) {
		struct policy_decision d;

		policy_check(p, argv[i], &d);
		if (d.rule)
			printf("%s %s (%s rule \"%s\")\n", d.allowed ? "allow" : "deny", argv[i],
			       d.allowed ? "allow" : "deny", d.rule);
		else
			printf("%s %s (%s)\n", d.allowed ? "allow" : "deny", argv[i], d.reason);
		if (d.allowed && strcasecmp(argv[i], "host") == 0)
			log_warn("\"host\" reaches the parent's loopback (127.0.0.1 outside the enclave)");
		denied |= !d.allowed;
	}
	policy_free(p);
	manifest_free(m);
	return denied ? 1 : 0;
}
