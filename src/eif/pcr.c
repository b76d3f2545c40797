/* PCR arithmetic. */
#include "eif/pcr.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/hex.h"
#include "base/mem.h"
#include "crypto/sha.h"

void pcr_extend(uint8_t pcr[PCR_LEN], const void *data, size_t len)
{
	struct sha_ctx c;

	sha_init(&c, "SHA384");
	sha_update(&c, pcr, PCR_LEN);
	sha_update(&c, data, len);
	sha_final(&c, pcr);
}

void pcr_from_digest(const uint8_t digest[PCR_LEN], uint8_t out[PCR_LEN])
{
	memset(out, 0, PCR_LEN);
	pcr_extend(out, digest, PCR_LEN);
}

void pcr_of_bytes(const void *data, size_t len, uint8_t out[PCR_LEN])
{
	uint8_t d[PCR_LEN];

	sha384(data, len, d);
	pcr_from_digest(d, out);
}

int pcr_of_file(const char *path, uint8_t out[PCR_LEN], struct err *err)
{
	autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	autofree uint8_t *chunk = NULL;
	struct sha_ctx c;
	uint8_t d[PCR_LEN];

	if (fd < 0)
		return err_sys(err, "%s", path);
	chunk = malloc(1 << 20);
	if (!chunk)
		abort();
	sha_init(&c, "SHA384");
	for (;;) {
		ssize_t n = fs_read_full(fd, chunk, 1 << 20);

		if (n < 0) {
			sha_free(&c);
			return err_sys(err, "%s: read", path);
		}
		if (n == 0)
			break;
		sha_update(&c, chunk, (size_t)n);
	}
	sha_final(&c, d);
	pcr_from_digest(d, out);
	return 0;
}

void pcr_hex(const uint8_t pcr[PCR_LEN], char out[PCR_HEX_LEN + 1])
{
	hex_encode(pcr, PCR_LEN, out);
}
