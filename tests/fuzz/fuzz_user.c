/* Fuzzes USER resolution: a spec, an image's /etc/passwd and /etc/group, from any bytes (the
 * three parts separated by NUL bytes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/user.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data, *z1 = memchr(d, 0, size), *z2;
	char spec[256];
	size_t sl;
	struct image_user u;
	struct err err = { 0 };

	if (!z1)
		return 0;
	sl = (size_t)(z1 - d);
	if (sl >= sizeof(spec))
		return 0;
	memcpy(spec, d, sl);
	spec[sl] = 0;
	z2 = memchr(z1 + 1, 0, size - sl - 1);
	if (!z2)
		return 0;
	if (image_user_resolve(spec, z1 + 1, (size_t)(z2 - z1 - 1), z2 + 1, size - (size_t)(z2 + 1 - d), &u, &err) == 0 &&
	    (u.n_groups > IMAGE_USER_MAX_GROUPS || !memchr(u.home, 0, sizeof(u.home))))
		abort();
	return 0;
}
