/* Fuzzes the egress tunnel's frame parsers: the host parses requests from the enclave. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tunnel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct err err = { 0 };
	char *host = NULL, *msg = NULL;
	uint16_t port;
	int code;

	if (tunnel_parse_request(data, size, &host, &port, &err) == 0) {
		struct buf b = BUF_INIT;

		if (!*host || strlen(host) > TUNNEL_MAX_HOST)
			abort();
		/* what the host accepts, the enclave side can also have written */
		if (tunnel_put_request(&b, host, port, &err) < 0)
			abort();
		buf_free(&b);
		free(host);
	}
	if (tunnel_parse_reply(data, size, &code, &msg, &err) == 1)
		free(msg);
	return 0;
}
