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

int nsm_open_socket(const char *path, struct nsm **out, struct err *err)
{
	struct nsm *n = calloc(1, sizeof(*n));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (!n)
		abort();
	n->socket = true;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	n->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (n->fd < 0 || connect(n->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err_sys(err, "NSM socket %s", path);
		if (n->fd >= 0)
			close(n->fd);
		free(n);
		return -1;
	}
	*out = n;
	return 0;
}

/* A VM enclave on a development machine: its kernel cmdline says so (the VM launcher appends
 * it). Safe to trust: on Nitro the cmdline is the EIF's own, measured into PCR0, and /dev/nsm
 * exists and is tried first. */
bool nsm_vm_enclave(void)
{
	struct buf b = BUF_INIT;
	struct err err = { 0 };
	bool yes = false;

	if (fs_read_file("/proc/cmdline", 65536, &b, &err) == 0) {
		const char *s = buf_cstr(&b), *p = s;
		size_t n = strlen(NSM_VSOCK_CMDLINE);

		while ((p = strstr(p, NSM_VSOCK_CMDLINE)) != NULL) {
			if ((p == s || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ' || p[n] == '\n'))
				yes = true;
			p += n;
		}
	}
	buf_free(&b);
	return yes;
}

int nsm_open(struct nsm **out, struct err *err)
{
	struct nsm *n = calloc(1, sizeof(*n));
	const char *dir = vsock_emulated_dir();

	if (!n)
		abort();
	n->fd = open(NSM_DEVICE, O_RDWR | O_CLOEXEC);
	if (n->fd >= 0) {
		*out = n;
		return 0;
	}
	free(n);
	if (dir) {
		char path[4096];
		struct err e2 = { 0 };

		snprintf(path, sizeof(path), "%s/%s", dir, NSM_SOCKET_NAME);
		if (nsm_open_socket(path, out, &e2) == 0)
			return 0;
	}
	if (!vsock_is_emulated() && nsm_vm_enclave()) {
		struct err e2 = { 0 };
		int fd = vsock_connect_blocking(VSOCK_CID_PARENT, NSM_VSOCK_PORT, 5000, &e2);

		if (fd >= 0) {
			n = calloc(1, sizeof(*n));
			if (!n)
				abort();
			n->fd = fd;
			n->socket = true;
			*out = n;
			return 0;
		}
		return err_set(err, ENOENT, "no NSM: no %s, and the host's emulated NSM: %s", NSM_DEVICE, e2.msg);
	}
	return err_set(err, ENOENT, "no NSM: neither %s nor an emulated NSM is present", NSM_DEVICE);
}

int nsm_fetch_dev_root(const char *path, struct err *err)
{
	struct buf b = BUF_INIT;
	char chunk[4096];
	ssize_t n;
	int fd, rc = -1;

	if (vsock_is_emulated() || !nsm_vm_enclave())
		return err_set(err, EPERM, "the development root is served only to VM enclaves");
	fd = vsock_connect_blocking(VSOCK_CID_PARENT, DEV_ROOT_VSOCK_PORT, 5000, err);
	if (fd < 0)
		return err_wrap(err, "development root");
	while ((n = read(fd, chunk, sizeof(chunk))) > 0 && b.len < 65536)
		buf_append(&b, chunk, (size_t)n);
	close(fd);
	/* only a certificate: anything else is not taken for one */
	if (n < 0 || b.len >= 65536 || !strstr(buf_cstr(&b), "-----BEGIN CERTIFICATE-----"))
		err_set(err, EPROTO, "development root: the host sent no certificate");
	else
		rc = fs_write_file_atomic(path, b.data, b.len, 0644, err);
	buf_free(&b);
	return rc;
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

/* One request: the response's body under `name` (a map, or the bare name for unit answers).
 * An {"Error": code} answer is an error naming the code. *root owns what *body points into. */
static int exchange(struct nsm *n, const struct buf *req, const char *name, struct cbor_item **root,
		    const struct cbor_item **body, uint8_t **resp, struct err *err)
{
	size_t resp_len = 0;
	const struct cbor_item *e;

	*root = NULL;
	*resp = malloc(NSM_RESPONSE_MAX);
	if (!*resp)
		abort();
	if (nsm_call(n, req->data, req->len, *resp, &resp_len, err) < 0)
		return err_wrap(err, "NSM %s", name);
	if (cbor_decode(*resp, resp_len, 8, root, err) < 0)
		return err_wrap(err, "NSM %s response", name);
	e = cbor_map_get(*root, "Error");
	if (e && e->type == CBOR_TEXT)
		return err_set(err, EPROTO, "NSM %s: %.*s", name, (int)e->len, (const char *)e->data);
	if (cbor_is_text(*root, name)) {
		*body = *root;
		return 0;
	}
	*body = cbor_map_get(*root, name);
	if (!*body || (*body)->type != CBOR_MAP)
		return err_set(err, EIO, "NSM %s: unexpected response", name);
	return 0;
}

static void done(struct cbor_item *root, uint8_t *resp)
{
	cbor_free(root);
	if (resp)
		explicit_bzero(resp, NSM_RESPONSE_MAX);
	free(resp);
}

/* {"Name": {"index": i}} and friends. */
static void req_index(struct buf *b, const char *name, const char *key, uint16_t v)
{
	cbor_put_map(b, 1);
	cbor_put_text(b, name);
	cbor_put_map(b, 1);
	cbor_put_text(b, key);
	cbor_put_uint(b, v);
}

static int pcr_value(const struct cbor_item *body, uint8_t out[NSM_PCR_MAX], size_t *len, struct err *err)
{
	const struct cbor_item *d = cbor_map_get(body, "data");

	if (!d || d->type != CBOR_BYTES || d->len > NSM_PCR_MAX)
		return err_set(err, EIO, "NSM: PCR data missing or too long");
	memcpy(out, d->data, d->len);
	*len = d->len;
	return 0;
}

int nsm_describe_pcr(struct nsm *n, uint16_t index, bool *locked, uint8_t data[NSM_PCR_MAX], size_t *len,
		     struct err *err)
{
	struct buf req = BUF_INIT;
	struct cbor_item *root;
	const struct cbor_item *body, *lock;
	uint8_t *resp;
	int rc;

	req_index(&req, "DescribePCR", "index", index);
	rc = exchange(n, &req, "DescribePCR", &root, &body, &resp, err);
	if (rc == 0) {
		lock = cbor_map_get(body, "lock");
		if (!lock || lock->type != CBOR_SIMPLE || (lock->u != CBOR_TRUE && lock->u != CBOR_FALSE))
			rc = err_set(err, EIO, "NSM DescribePCR: no lock flag");
		else if ((rc = pcr_value(body, data, len, err)) == 0)
			*locked = lock->u == CBOR_TRUE;
	}
	done(root, resp);
	buf_free(&req);
	return rc;
}

int nsm_extend_pcr(struct nsm *n, uint16_t index, const void *data, size_t len, uint8_t out[NSM_PCR_MAX],
		   size_t *out_len, struct err *err)
{
	struct buf req = BUF_INIT;
	struct cbor_item *root;
	const struct cbor_item *body;
	uint8_t *resp;
	int rc;

	cbor_put_map(&req, 1);
	cbor_put_text(&req, "ExtendPCR");
	cbor_put_map(&req, 2);
	cbor_put_text(&req, "index");
	cbor_put_uint(&req, index);
	cbor_put_text(&req, "data");
	cbor_put_bytes(&req, data, len);
	rc = exchange(n, &req, "ExtendPCR", &root, &body, &resp, err);
	if (rc == 0)
		rc = pcr_value(body, out, out_len, err);
	done(root, resp);
	buf_free(&req);
	return rc;
}

/* A request of one number whose answer is its bare name ("LockPCR", "LockPCRs"). */
static int unit_request(struct nsm *n, const char *name, const char *key, uint16_t v, struct err *err)
{
	struct buf req = BUF_INIT;
	struct cbor_item *root;
	const struct cbor_item *body;
	uint8_t *resp;
	int rc;

	req_index(&req, name, key, v);
	rc = exchange(n, &req, name, &root, &body, &resp, err);
	done(root, resp);
	buf_free(&req);
	return rc;
}

int nsm_lock_pcr(struct nsm *n, uint16_t index, struct err *err)
{
	return unit_request(n, "LockPCR", "index", index, err);
}

int nsm_lock_pcrs(struct nsm *n, uint16_t range, struct err *err)
{
	return unit_request(n, "LockPCRs", "range", range, err);
}

static int get_u16(const struct cbor_item *m, const char *key, uint16_t *out)
{
	const struct cbor_item *it = cbor_map_get(m, key);

	if (!it || it->type != CBOR_UINT || it->u > 0xffff)
		return -1;
	*out = (uint16_t)it->u;
	return 0;
}

int nsm_describe(struct nsm *n, struct nsm_description *d, struct err *err)
{
	struct buf req = BUF_INIT;
	struct cbor_item *root;
	const struct cbor_item *body, *mid, *locked, *digest;
	uint8_t *resp;
	int rc;

	memset(d, 0, sizeof(*d));
	cbor_put_text(&req, "DescribeNSM");
	rc = exchange(n, &req, "DescribeNSM", &root, &body, &resp, err);
	if (rc == 0) {
		mid = cbor_map_get(body, "module_id");
		locked = cbor_map_get(body, "locked_pcrs");
		digest = cbor_map_get(body, "digest");
		if (get_u16(body, "version_major", &d->version_major) < 0 ||
		    get_u16(body, "version_minor", &d->version_minor) < 0 ||
		    get_u16(body, "version_patch", &d->version_patch) < 0 || get_u16(body, "max_pcrs", &d->max_pcrs) < 0 ||
		    !mid || mid->type != CBOR_TEXT || mid->len >= sizeof(d->module_id) || !locked ||
		    locked->type != CBOR_ARRAY || locked->count > 64 || !digest || digest->type != CBOR_TEXT ||
		    digest->len >= sizeof(d->digest)) {
			rc = err_set(err, EIO, "NSM DescribeNSM: unexpected response");
		} else {
			memcpy(d->module_id, mid->data, mid->len);
			memcpy(d->digest, digest->data, digest->len);
			for (size_t i = 0; i < locked->count && rc == 0; i++) {
				if (locked->items[i].type != CBOR_UINT || locked->items[i].u > 0xffff)
					rc = err_set(err, EIO, "NSM DescribeNSM: bad locked_pcrs");
				else
					d->locked_pcrs[d->n_locked++] = (uint16_t)locked->items[i].u;
			}
		}
	}
	done(root, resp);
	buf_free(&req);
	return rc;
}

int nsm_attestation(struct nsm *n, const struct nsm_bytes *user_data, const struct nsm_bytes *nonce,
		    const struct nsm_bytes *public_key, struct buf *doc, struct err *err)
{
	const struct nsm_bytes *in[] = { user_data, nonce, public_key };
	static const char *const keys[] = { "user_data", "nonce", "public_key" };
	struct buf req = BUF_INIT;
	struct cbor_item *root;
	const struct cbor_item *body, *d;
	uint8_t *resp;
	int rc;

	cbor_put_map(&req, 1);
	cbor_put_text(&req, "Attestation");
	cbor_put_map(&req, 3);
	for (int i = 0; i < 3; i++) {
		cbor_put_text(&req, keys[i]);
		if (in[i] && in[i]->data)
			cbor_put_bytes(&req, in[i]->data, in[i]->len);
		else
			cbor_put_null(&req);
	}
	rc = exchange(n, &req, "Attestation", &root, &body, &resp, err);
	if (rc == 0) {
		d = cbor_map_get(body, "document");
		if (!d || d->type != CBOR_BYTES)
			rc = err_set(err, EIO, "NSM Attestation: no document");
		else
			buf_append(doc, d->data, d->len);
	}
	done(root, resp);
	buf_free(&req);
	return rc;
}

long nsm_get_random(struct nsm *n, uint8_t *out, size_t len, struct err *err)
{
	struct buf req = BUF_INIT;
	struct cbor_item *root;
	const struct cbor_item *body, *r;
	uint8_t *resp;
	long got = -1;

	cbor_put_text(&req, "GetRandom");
	if (exchange(n, &req, "GetRandom", &root, &body, &resp, err) == 0) {
		r = cbor_map_get(body, "random");
		if (!r || r->type != CBOR_BYTES) {
			err_set(err, EIO, "NSM GetRandom: unexpected response");
		} else {
			got = (long)(r->len < len ? r->len : len);
			memcpy(out, r->data, (size_t)got);
		}
	}
	done(root, resp);
	buf_free(&req);
	return got;
}
