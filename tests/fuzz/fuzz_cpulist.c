/* Fuzzes the parser of the kernel's CPU lists (the enclave CPU pool, CPU siblings) that the
 * Nitro launcher reads from sysfs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/nitro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	int first, n;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	n = ne_cpulist_count(s, &first);
	/* a list that parses names at least one CPU, the first of them in range */
	if (n >= 0 && strlen(s) && (n < 1 || n > NE_MAX_CPUS || first < 0 || first > NE_MAX_CPUS))
		abort();
	if (n > 0 && !strlen(s))
		abort();
	free(s);
	return 0;
}
