/* Fuzzes the HTTP request-head parser and the authority/URL splitters used by odyn's proxies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	struct http_request req;
	struct http_url url;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = 0;
	if (http_parse_request(copy, size, &req) == HTTP_OK) {
		char *host;
		int port;

		if (req.head_len > size || req.n_headers > HTTP_MAX_HEADERS)
			abort();
		if (http_split_authority(req.target, strlen(req.target), &host, &port) == 0) {
			if (port > 65535)
				abort();
			free(host);
		}
		if (http_parse_absolute_url(req.target, &url) == 0)
			http_url_clear(&url);
	}
	free(copy);
	return 0;
}
