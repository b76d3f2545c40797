/* Fuzzes SigV4 Authorization parsing and the canonical request with headers from a client. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = strndup((const char *)data, size), *nl;
	struct sigv4_auth a;
	struct err err = { 0 };

	if (!text)
		abort();
	/* first line: an Authorization value; the rest: a header value and the body */
	nl = strchr(text, '\n');
	if (nl)
		*nl++ = 0;
	if (sigv4_parse_auth(text, &a, &err) == 0) {
		struct sigv4_header h[] = { { "host", nl ? nl : "" }, { "x-amz-date", "20150830T123600Z" } };
		struct sigv4_request r = { "POST", "/", nl, h, 2, data, size };
		char sig[65];

		sigv4_signature(&r, a.signed_headers, "20150830T123600Z", a.region, a.service, "secret", sig, &err);
	}
	free(text);
	return 0;
}
