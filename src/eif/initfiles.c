/* /cmd and /env parsing and writing. Runs in PID 1 of the enclave: no allocation beyond the
 * vector it returns, no dependency outside base/. */
#include "eif/initfiles.h"

#include <dirent.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"

int initfiles_format(const char *const *items, size_t n, struct buf *out, struct err *err)
{
	for (size_t i = 0; i < n; i++) {
		if (strchr(items[i], '\n'))
			return err_set(err, EINVAL, "item %zu contains a newline, which /cmd and /env cannot hold", i);
		buf_append_str(out, items[i]);
		buf_append_byte(out, '\n');
	}
	return 0;
}

void initfiles_free(char **items)
{
	if (!items)
		return;
	for (char **p = items; *p; p++)
		free(*p);
	free(items);
}

int initfiles_parse(const char *data, size_t len, char ***out, size_t *n, struct err *err)
{
	size_t count = 0, i = 0;
	char **v;

	if (len > INITFILES_MAX_SIZE)
		return err_set(err, EFBIG, "larger than %u bytes", INITFILES_MAX_SIZE);
	if (memchr(data, 0, len))
		return err_set(err, EINVAL, "contains a NUL byte");
	for (size_t k = 0; k < len; k++)
		if (data[k] == '\n')
			count++;
	if (len && data[len - 1] != '\n')
		count++;
	if (count > INITFILES_MAX_ITEMS)
		return err_set(err, E2BIG, "more than %u lines", INITFILES_MAX_ITEMS);
	v = calloc(count + 1, sizeof(*v));
	if (!v)
		abort();
	for (size_t k = 0; k < count; k++) {
		const char *nl = memchr(data + i, '\n', len - i);
		size_t l = nl ? (size_t)(nl - (data + i)) : len - i;

		v[k] = strndup(data + i, l);
		if (!v[k])
			abort();
		i += l + 1;
	}
	*out = v;
	*n = count;
	return 0;
}

int initfiles_take(const char *path, char ***out, struct err *err)
{
	struct buf data = BUF_INIT;
	size_t n;
	int rc = 0;

	*out = NULL;
	/* never a link: it could name a file outside the unpacked tree */
	if (fs_read_regular(path, INITFILES_MAX_SIZE, &data, err) < 0) {
		buf_free(&data);
		return err->code == ENOENT ? 0 : -1;
	}
	if (initfiles_parse((const char *)data.data, data.len, out, &n, err) < 0)
		rc = err_wrap(err, "%s", path);
	else if (unlink(path) < 0)
		rc = err_sys(err, "unlink %s", path);
	buf_free(&data);
	return rc;
}

int initfiles_module_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 3 && !strcmp(d->d_name + n - 3, ".ko");
}
