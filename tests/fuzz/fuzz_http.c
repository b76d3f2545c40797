/* Fuzzes the HTTP request-head parser, the authority/URL splitters used by odyn's proxies, and
 * the servers' request taking (head, Content-Length, body) that the KMS proxy's workers use too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http.h"
#include "net/http_server.h"

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
	{
		char *taken = NULL;
		const char *msg = NULL;
		size_t body_len = 0;
		bool keep = false;
		int r = http_take_request(data, size, 4096, &req, &taken, &body_len, &keep, &msg);

		/* whole: the head and the stated body lie inside the input; refused: a status and a text */
		if (r == 0 && (!taken || req.head_len + body_len > size || body_len > 4096))
			abort();
		if (r > 1 && (taken || !msg || r < 400 || r > 499))
			abort();
		if (r == 1 && taken)
			abort();
		free(taken);
	}
	return 0;
}
