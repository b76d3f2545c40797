/* Fuzzes what the CLI's Docker and registry clients parse from servers: the first byte picks
 * a registry WWW-Authenticate challenge, a Docker JSON message stream (pull, load), or a
 * container's multiplexed log stream. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image/docker.h"
#include "image/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int null_fd = -1;
	struct err err = { 0 };
	char *text;

	if (!size)
		return 0;
	if (null_fd < 0)
		null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	text = strndup((const char *)data + 1, size - 1);
	if (!text)
		abort();
	switch (data[0] % 3) {
	case 0: {
		static const char *const keys[] = { "realm", "service", "scope" };

		for (size_t i = 0; i < 3; i++)
			free(registry_challenge_param(text, keys[i]));
		break;
	}
	case 1:
		for (char *line = text, *nl; line; line = nl) {
			nl = strchr(line, '\n');
			if (nl)
				*nl++ = 0;
			docker_stream_message("fuzz", line, strlen(line), &err);
		}
		break;
	default: {
		struct docker_demux m = { .out_fd = null_fd, .err_fd = null_fd, .fd = null_fd };

		/* in two pieces, as a network delivers it */
		if (docker_demux_feed(&m, data + 1, (size - 1) / 2, &err) == 0)
			docker_demux_feed(&m, data + 1 + (size - 1) / 2, size - 1 - (size - 1) / 2, &err);
		break;
	}
	}
	free(text);
	return 0;
}
