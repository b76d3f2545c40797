/* Fuzzes the egress policy. Input: allow rules, a line "-", deny rules, a line "-", then
 * host names, one per line. Properties: deny always wins; name matching ignores case. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = strndup((const char *)data, size), *save = NULL, *line;
	const char *lists[2][16];
	size_t n[2] = { 0, 0 };
	int part = 0;
	struct policy *p = NULL, *deny_only = NULL;
	struct err err = { 0 };

	if (!text)
		return 0;
	for (line = strtok_r(text, "\n", &save); line && part < 2; line = strtok_r(NULL, "\n", &save)) {
		if (!strcmp(line, "-")) {
			part++;
			continue;
		}
		if (n[part] < 16)
			lists[part][n[part]++] = line;
	}
	if (policy_new(lists[0], n[0], lists[1], n[1], &p, &err) == 0 &&
	    policy_new(lists[1], n[1], NULL, 0, &deny_only, &err) == 0) {
		for (; line; line = strtok_r(NULL, "\n", &save)) {
			struct policy_decision d, d2, upper;
			char *up = strdup(line);

			policy_check(p, line, &d);
			policy_check(deny_only, line, &d2);
			if (d.allowed && d2.allowed)
				abort(); /* a host a deny rule matches was allowed */
			for (char *c = up; *c; c++)
				*c = (char)toupper((unsigned char)*c);
			policy_check(p, up, &upper);
			if (upper.allowed != d.allowed)
				abort();
			free(up);
		}
	}
	policy_free(p);
	policy_free(deny_only);
	free(text);
	return 0;
}
