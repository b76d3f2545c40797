/* Fuzzes docker run's -p forms as enclaver run and enclaver-run parse them, and the merge with
 * a manifest's ports. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "host/ingress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t ports[] = { 80, 443, 8080 };
	char *s = malloc(size + 1), where[80];
	struct host_port_map m, out[8];
	struct err err = { 0 };
	size_t n = 0;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	if (host_publish_parse(s, &m, &err) == 0) {
		/* what parses names a real port and family, and formats within bounds */
		if (!m.enclave_port || (m.family != AF_INET && m.family != AF_INET6))
			abort();
		host_publish_format(&m, where, sizeof(where));
		if (host_publish_merge(&m, 1, ports, 3, out, 8, &n, &err) == 0 && n != 3)
			abort();
	} else if (!err.msg[0]) {
		abort();
	}
	free(s);
	return 0;
}
