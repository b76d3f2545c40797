/*
 * Native Nitro launch. Runs in enclaver-run on Nitro hosts, as root with /dev/nitro_enclaves.
 * Checks what nitro-cli checks before touching the driver, with messages that say what to change.
 */
#include "host/nitro.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "host/launcher.h"
#include "net/vsock.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static int copy_eif(const struct ne_enclave *e, uint64_t offset, int fd, uint64_t size, struct err *err)
{
	uint64_t done = 0;

	for (size_t i = 0; i < e->n_regions && done < size; i++) {
		uint64_t rstart = 0, rsize = e->sizes[i];

		/* skip regions (or parts) before the load offset */
		if (offset >= rsize) {
			offset -= rsize;
			continue;
		}
		rstart = offset;
		offset = 0;
		while (rstart < rsize && done < size) {
			uint64_t want = rsize - rstart < size - done ? rsize - rstart : size - done;
			ssize_t n = pread(fd, (uint8_t *)e->regions[i] + rstart, want > (1u << 30) ? (1u << 30) : want,
					  (off_t)done);

			if (n <= 0)
				return err_sys(err, "reading the EIF into enclave memory");
			rstart += (uint64_t)n;
			done += (uint64_t)n;
		}
	}
	if (done < size)
		return err_set(err, ENOMEM, "the EIF does not fit the enclave's memory after the load offset");
	return 0;
}

void ne_release(const struct ne_ops *ops, void *ctx, struct ne_enclave *e)
{
	if (e->vm_fd >= 0)
		ops->close_fd(ctx, e->vm_fd);
	e->vm_fd = -1;
	for (size_t i = 0; i < e->n_regions; i++)
		ops->free_region(ctx, e->regions[i], e->sizes[i]);
	e->n_regions = 0;
}

int ne_launch(const struct ne_ops *ops, void *ctx, const struct ne_request *req, struct ne_enclave *out,
	      struct err *err)
{
	static const uint64_t page_sizes[] = { GiB, 2 * MiB };
	uint64_t mem = req->memory_mb * MiB, left, offset = 0;
	int dev = -1, hb = -1, timeout;
	struct ne_enclave e = { .vm_fd = -1 };

	if (req->memory_mb < NE_MIN_MEM_MB)
		return err_set(err, EINVAL, "at least 64MiB of memory are required, got: %llu",
			       (unsigned long long)req->memory_mb);
	if (mem < 4 * req->eif_size)
		return err_set(err, EINVAL,
			       "At least %llu MB must be allocated (which is 4 times the EIF file size); raise memory_mb",
			       (unsigned long long)div_up(4 * req->eif_size, MiB));
	if (req->cpus < 1)
		return err_set(err, EINVAL, "at least 1 CPU is required, got: %u", req->cpus);
	if (req->threads_per_core > 1 && req->cpus % req->threads_per_core)
		return err_set(err, EINVAL,
			       "the CPU count must be a multiple of %u here: an enclave takes whole cores (both hyperthreads), got: %u",
			       req->threads_per_core, req->cpus);
	dev = ops->open_device(ctx, err);
	if (dev < 0)
		return -1;
	e.vm_fd = ops->create_vm(ctx, dev, &e.slot_uid, err);
	ops->close_fd(ctx, dev);
	if (e.vm_fd < 0)
		return -1;
	if (ops->image_load_offset(ctx, e.vm_fd, &offset, err) < 0)
		goto fail;
	/* Hugepage regions, largest pages first, then smaller ones to top up (nitro-cli's order). */
	left = div_up(mem, 2 * MiB) * 2 * MiB;
	for (size_t p = 0; p < sizeof(page_sizes) / sizeof(page_sizes[0]) && left; p++) {
		while (left >= page_sizes[p]) {
			void *r;

			if (e.n_regions == NE_MAX_REGIONS) {
				err_set(err, ENOMEM, "too many memory regions");
				goto fail;
			}
			r = ops->alloc_region(ctx, page_sizes[p], page_sizes[p]);
			if (!r)
				break;
			e.regions[e.n_regions] = r;
			e.sizes[e.n_regions++] = page_sizes[p];
			left -= page_sizes[p];
		}
	}
	if (left) {
		err_set(err, ENOMEM,
			"not enough hugepages for %llu MiB: reserve them with nitro-enclaves-allocator (memory_mib in /etc/nitro_enclaves/allocator.yaml)",
			(unsigned long long)req->memory_mb);
		goto fail;
	}
	if (copy_eif(&e, offset, req->eif_fd, req->eif_size, err) < 0)
		goto fail;
	for (size_t i = 0; i < e.n_regions; i++)
		if (ops->set_memory_region(ctx, e.vm_fd, e.regions[i], e.sizes[i], err) < 0)
			goto fail;
	for (unsigned i = 0; i < req->cpus; i++) {
		uint32_t cpu = 0; /* the driver picks from the enclave CPU pool */

		if (ops->add_vcpu(ctx, e.vm_fd, &cpu, err) < 0) {
			err_wrap(err, "adding vCPU %u of %u (is the CPU pool large enough? see nitro-enclaves-allocator)",
				 i + 1, req->cpus);
			goto fail;
		}
	}
	/* The listener must exist before the enclave's init sends its heartbeat. */
	hb = ops->heartbeat_listen(ctx, err);
	if (hb < 0)
		goto fail;
	if (ops->start(ctx, e.vm_fd, req->debug, &e.cid, err) < 0)
		goto fail;
	timeout = (int)(90000 * div_up(req->eif_size, 6 * GiB) + 90000 * div_up(mem, 100 * GiB));
	if (ops->heartbeat_wait(ctx, hb, timeout, err) < 0) {
		err_wrap(err, "the enclave did not boot (no heartbeat)");
		goto fail;
	}
	ops->close_fd(ctx, hb);
	*out = e;
	return 0;
fail:
	if (hb >= 0)
		ops->close_fd(ctx, hb);
	ne_release(ops, ctx, &e);
	return -1;
}

/* --- the real driver --- */

struct ne_image_load_info {
	uint64_t flags;
	uint64_t memory_offset;
};

struct ne_user_memory_region {
	uint64_t flags;
	uint64_t memory_size;
	uint64_t userspace_addr;
};

struct ne_enclave_start_info {
	uint64_t flags;
	uint64_t enclave_cid;
};

#define NE_CREATE_VM 0x8008AE20u
#define NE_ADD_VCPU 0xC004AE21u
#define NE_GET_IMAGE_LOAD_INFO 0xC010AE22u
#define NE_SET_USER_MEMORY_REGION 0x4018AE23u
#define NE_START_ENCLAVE 0xC010AE24u
#define NE_EIF_IMAGE 1
#define NE_ENCLAVE_DEBUG_MODE 1

static int drv_open(void *ctx, struct err *err)
{
	int fd = open("/dev/nitro_enclaves", O_RDWR | O_CLOEXEC);

	return fd < 0 ? err_sys(err, "/dev/nitro_enclaves") : fd;
}

static int drv_create_vm(void *ctx, int dev, uint64_t *slot, struct err *err)
{
	int fd = ioctl(dev, NE_CREATE_VM, slot);

	return fd < 0 ? err_sys(err, "NE_CREATE_VM") : fd;
}

static int drv_load_offset(void *ctx, int vm, uint64_t *offset, struct err *err)
{
	struct ne_image_load_info info = { .flags = NE_EIF_IMAGE };

	if (ioctl(vm, NE_GET_IMAGE_LOAD_INFO, &info) < 0)
		return err_sys(err, "NE_GET_IMAGE_LOAD_INFO");
	*offset = info.memory_offset;
	return 0;
}

static void *drv_alloc(void *ctx, uint64_t size, uint64_t page_size)
{
	int shift = page_size == GiB ? 30 : 21;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (shift << MAP_HUGE_SHIFT), -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void drv_free(void *ctx, void *addr, uint64_t size)
{
	munmap(addr, size);
}

static int drv_set_region(void *ctx, int vm, void *addr, uint64_t size, struct err *err)
{
	struct ne_user_memory_region r = { 0, size, (uint64_t)(uintptr_t)addr };

	return ioctl(vm, NE_SET_USER_MEMORY_REGION, &r) < 0 ? err_sys(err, "NE_SET_USER_MEMORY_REGION") : 0;
}

static int drv_add_vcpu(void *ctx, int vm, uint32_t *cpu, struct err *err)
{
	return ioctl(vm, NE_ADD_VCPU, cpu) < 0 ? err_sys(err, "NE_ADD_VCPU") : 0;
}

/* The one AF_VSOCK use of this launcher: the parent's end of init's heartbeat. */
static int drv_hb_listen(void *ctx, struct err *err)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = NE_HEARTBEAT_PORT };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return err_sys(err, "vsock socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		err_sys(err, "vsock port 9000 (heartbeat)");
		close(fd);
		return -1;
	}
	return fd;
}

static int drv_start(void *ctx, int vm, bool debug, uint64_t *cid, struct err *err)
{
	struct ne_enclave_start_info info = { debug ? NE_ENCLAVE_DEBUG_MODE : 0, 0 };

	if (ioctl(vm, NE_START_ENCLAVE, &info) < 0)
		return err_sys(err, "NE_START_ENCLAVE");
	*cid = info.enclave_cid;
	return 0;
}

static int drv_hb_wait(void *ctx, int lfd, int timeout_ms, struct err *err)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	unsigned char b = 0;
	int fd;

	if (poll(&p, 1, timeout_ms) != 1)
		return err_set(err, ETIMEDOUT, "timed out after %d ms", timeout_ms);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return err_sys(err, "accept");
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1 || read(fd, &b, 1) != 1 || b != 0xB7 || write(fd, &b, 1) != 1) {
		close(fd);
		return err_set(err, EPROTO, "bad heartbeat");
	}
	close(fd);
	return 0;
}

static void drv_close(void *ctx, int fd)
{
	close(fd);
}

const struct ne_ops ne_driver_ops = {
	drv_open, drv_create_vm, drv_load_offset, drv_alloc, drv_free, drv_set_region,
	drv_add_vcpu, drv_hb_listen, drv_start, drv_hb_wait, drv_close,
};

/* --- as a launcher --- */

static unsigned threads_per_core(void)
{
	struct buf b = BUF_INIT;
	struct err err = { 0 };
	unsigned n = 1;

	/* "0,4" or "0-1": count the siblings of CPU 0 */
	if (fs_read_file("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list", 256, &b, &err) == 0) {
		const char *s = buf_cstr(&b), *dash = strchr(s, '-');

		n = 1;
		for (const char *p = s; *p; p++)
			n += *p == ',';
		if (dash)
			n = (unsigned)(atoi(dash + 1) - atoi(s) + 1);
	}
	buf_free(&b);
	return n ? n : 1;
}

static int nitro_prepare(struct launcher *l, struct err *err)
{
	struct ne_enclave *e = calloc(1, sizeof(*e));

	if (!e)
		abort();
	e->vm_fd = -1;
	l->priv = e;
	return vsock_use_emulated(NULL, VSOCK_CID_PARENT, err);
}

static int nitro_start(struct launcher *l, struct err *err)
{
	struct ne_enclave *e = l->priv;
	struct ne_request req = { .eif_size = l->spec.eif->file_size, .memory_mb = (uint64_t)l->spec.memory_mb,
				  .cpus = (unsigned)l->spec.cpu_count, .threads_per_core = threads_per_core(),
				  .debug = l->spec.debug_mode };
	struct buf tag = BUF_INIT;
	struct err terr = { 0 };
	int rc;

	req.eif_fd = open(l->spec.eif_path, O_RDONLY | O_CLOEXEC);
	if (req.eif_fd < 0)
		return err_sys(err, "%s", l->spec.eif_path);
	rc = ne_launch(&ne_driver_ops, NULL, &req, e, err);
	close(req.eif_fd);
	if (rc < 0)
		return -1;
	l->cid = (uint32_t)e->cid;
	l->watch_fd = e->vm_fd; /* EPOLLHUP when the enclave stops */
	if (fs_read_file("/sys/devices/virtual/dmi/id/board_asset_tag", 128, &tag, &terr) < 0 || !tag.len)
		buf_append_str(&tag, "i-0000000000000000");
	while (tag.len && (tag.data[tag.len - 1] == '\n' || tag.data[tag.len - 1] == ' '))
		tag.len--;
	snprintf(l->enclave_id, sizeof(l->enclave_id), "%.*s-enc%llx", (int)tag.len, (const char *)tag.data,
		 (unsigned long long)e->slot_uid);
	buf_free(&tag);
	return 0;
}

static void nitro_describe_end(struct launcher *l, char *buf, size_t size)
{
	snprintf(buf, size, "the Nitro hypervisor stopped enclave %s", l->enclave_id);
}

static void nitro_stop(struct launcher *l)
{
	struct ne_enclave *e = l->priv;

	if (!e)
		return;
	ne_release(&ne_driver_ops, NULL, e);
	free(e);
	l->priv = NULL;
}

const struct launcher_ops launcher_nitro = {
	.name = "nitro",
	.prepare = nitro_prepare,
	.start = nitro_start,
	.describe_end = nitro_describe_end,
	.stop = nitro_stop,
};
