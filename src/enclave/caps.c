/* File capabilities recorded at build time, set again in the enclave (see caps.h). */
#include "enclave/caps.h"

#include <errno.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/hex.h"

#define CAPS_FILE_MAX (16u << 20)

int caps_parse(const char *data, size_t len, caps_fn fn, void *ctx, struct err *err)
{
	size_t i = 0;

	while (i < len) {
		const char *path = data + i, *hex, *z1 = memchr(path, 0, len - i), *z2;
		uint8_t value[CAPS_MAX_VALUE];
		size_t hl;

		if (!z1 || path[0] != '/' || (size_t)(z1 - path) >= 4096)
			return err_set(err, EINVAL, "capability record at byte %zu: no absolute path", i);
		hex = z1 + 1;
		z2 = memchr(hex, 0, len - (size_t)(hex - data));
		if (!z2 || (size_t)(z2 - data) + 1 >= len || z2[1] != '\n')
			return err_set(err, EINVAL, "capability record at byte %zu: unterminated", i);
		hl = (size_t)(z2 - hex);
		if (!hl || hl % 2 || hl / 2 > sizeof(value) || hex_decode(hex, value, sizeof(value)) != (long)(hl / 2))
			return err_set(err, EINVAL, "capability record at byte %zu: the value is not hex", i);
		if (fn(ctx, path, value, hl / 2, err) < 0)
			return -1;
		i = (size_t)(z2 - data) + 2;
	}
	return 0;
}

static int set_caps(void *ctx, const char *path, const uint8_t *value, size_t len, struct err *err)
{
	/* lsetxattr: the record names a file of the measured image, never what a link points to */
	if (lsetxattr(path, "security.capability", value, len, 0) < 0)
		return err_sys(err, "setting the file capabilities of %s", path);
	return 0;
}

int caps_apply_file(const char *path, struct err *err)
{
	struct buf b = BUF_INIT;
	int rc;

	if (access(path, F_OK) < 0 && errno == ENOENT)
		return 0; /* an image without file capabilities */
	if (fs_read_file(path, CAPS_FILE_MAX, &b, err) < 0) {
		buf_free(&b);
		return -1;
	}
	rc = caps_parse((const char *)b.data, b.len, set_caps, NULL, err);
	buf_free(&b);
	return rc < 0 ? err_wrap(err, "%s", path) : 0;
}
