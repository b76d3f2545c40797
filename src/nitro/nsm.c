/* NSM client transports. Responses are parsed with the strict CBOR decoder. */
#include "nitro/nsm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "codec/cbor.h"
#include "net/vsock.h"

struct nsm_iovec {
	uint64_t addr;
	uint64_t len;
};

struct nsm_raw {
	struct nsm_iovec request;
	struct nsm_iovec response;
};

#define NSM_IOCTL_RAW _IOWR(0x0A, 0, struct nsm_raw)

struct nsm {
	int fd;
	bool socket; /* emulated: u32 big-endian length, then CBOR, each way */
};

int nsm_open(struct nsm **out, struct err *err)
{
	struct nsm *n = calloc(1, sizeof(*n));
	const char *dir = vsock_emulated_dir();

	if (!n)
		abort();
	n->fd = open(NSM_DEVICE, O_RDWR | O_CLOEXEC);
	if (n->fd < 0 && dir) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, NSM_SOCKET_NAME);
		n->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (n->fd >= 0 && connect(n->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(n->fd);
			n->fd = -1;
		}
		n->socket = true;
	}
	if (n->fd < 0) {
		free(n);
		return err_set(err, ENOENT, "no NSM: neither %s nor an emulated NSM is present", NSM_DEVICE);
	}
	*out = n;
	return 0;
}

void nsm_close(struct nsm *n)
{
	if (!n)
		return;
	close(n->fd);
	free(n);
}

int nsm_call(struct nsm *n, const uint8_t *req, size_t req_len, uint8_t *resp, size_t *resp_len,
	     struct err *err)
{
	if (req_len > NSM_MAX_REQUEST)
		return err_set(err, EMSGSIZE, "NSM request of %zu bytes exceeds 4096", req_len);
	if (!n->socket) {
		struct nsm_raw raw = { { (uint64_t)(uintptr_t)req, req_len },
				       { (uint64_t)(uintptr_t)resp, NSM_RESPONSE_MAX } };

		if (ioctl(n->fd, NSM_IOCTL_RAW, &raw) < 0)
			return err_sys(err, "NSM ioctl");
		*resp_len = (size_t)raw.response.len;
		return 0;
	}
	{
		uint8_t hdr[4] = { (uint8_t)(req_len >> 24), (uint8_t)(req_len >> 16), (uint8_t)(req_len >> 8),
				   (uint8_t)req_len };
		uint32_t len;

		if (fs_write_full(n->fd, hdr, 4) < 0 || fs_write_full(n->fd, req, req_len) < 0)
			return err_sys(err, "NSM socket write");
		if (fs_read_full(n->fd, hdr, 4) != 4)
			return err_set(err, EIO, "NSM socket closed");
		len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
		if (len > NSM_RESPONSE_MAX)
			return err_set(err, EIO, "NSM response of %u bytes is too large", len);
		if (fs_read_full(n->fd, resp, len) != (ssize_t)len)
			return err_set(err, EIO, "NSM socket closed");
		*resp_len = len;
		return 0;
	}
}

long nsm_get_random(struct nsm *n, uint8_t *out, size_t len, struct err *err)
{
	static const uint8_t req[] = { 0x69, 'G', 'e', 't', 'R', 'a', 'n', 'd', 'o', 'm' };
	uint8_t *resp = malloc(NSM_RESPONSE_MAX);
	size_t resp_len = 0;
	struct cbor_item *root = NULL;
	const struct cbor_item *r;
	long got = -1;

	if (!resp)
		abort();
	if (nsm_call(n, req, sizeof(req), resp, &resp_len, err) < 0)
		goto out;
	if (cbor_decode(resp, resp_len, 8, &root, err) < 0) {
		err_wrap(err, "NSM GetRandom response");
		goto out;
	}
	r = cbor_map_get(cbor_map_get(root, "GetRandom"), "random");
	if (!r || r->type != CBOR_BYTES) {
		err_set(err, EIO, "NSM GetRandom: unexpected response");
		goto out;
	}
	got = (long)(r->len < len ? r->len : len);
	memcpy(out, r->data, (size_t)got);
out:
	cbor_free(root);
	explicit_bzero(resp, NSM_RESPONSE_MAX);
	free(resp);
	return got;
}
