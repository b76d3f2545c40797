/*
 * Native Nitro launch. Runs in enclaver-run on Nitro hosts, as root with /dev/nitro_enclaves.
 * Does what nitro-cli run-enclave does, in its order, and checks before touching the driver what
 * the driver would refuse, so that the user reads what to change instead of an error number.
 */
#include "host/nitro.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mempolicy.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "host/claim.h"
#include "host/launcher.h"
#include "net/vsock.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define ALLOCATOR_HINT "/etc/nitro_enclaves/allocator.yaml, then restart nitro-enclaves-allocator"

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

uint64_t ne_min_memory_mb(uint64_t eif_size)
{
	return div_up(div_up(eif_size, 1024), 1024) * 4;
}

/* --- the driver's errors --- */

static const char *const ne_errors[] = {
	[NE_ERR_VCPU_ALREADY_USED - 256] = "the vCPU is already used by this enclave (a bug in enclaver: report it)",
	[NE_ERR_VCPU_NOT_IN_CPU_POOL - 256] =
		"the vCPU is not in the enclave CPU pool: add it to cpu_pool in " ALLOCATOR_HINT,
	[NE_ERR_VCPU_INVALID_CPU_CORE - 256] =
		"the vCPU's core is out of range for the enclave CPU pool: check cpu_pool in " ALLOCATOR_HINT,
	[NE_ERR_INVALID_MEM_REGION_SIZE - 256] =
		"a memory region's size is not a multiple of 2 MiB (a bug in enclaver: report it)",
	[NE_ERR_INVALID_MEM_REGION_ADDR - 256] = "a memory region's address is invalid (a bug in enclaver: report it)",
	[NE_ERR_UNALIGNED_MEM_REGION_ADDR - 256] =
		"a memory region's address is not 2 MiB aligned: its pages are not hugepages of 2 MiB or more",
	[NE_ERR_MEM_REGION_ALREADY_USED - 256] =
		"a memory region is already used by this enclave (a bug in enclaver: report it)",
	[NE_ERR_MEM_NOT_HUGE_PAGE - 256] =
		"the enclave's memory is not backed by hugepages: reserve them with memory_mib in " ALLOCATOR_HINT,
	[NE_ERR_MEM_DIFFERENT_NUMA_NODE - 256] =
		"the hugepages are on another NUMA node than the enclave CPU pool: reserve them on the pool's node (docs/deploying.md, \"Two NUMA nodes\")",
	[NE_ERR_MEM_MAX_REGIONS - 256] =
		"the enclave has more memory regions than the Nitro device allows (one per hugepage): reserve larger hugepages (1 GiB) or give the enclave less memory_mb",
	[NE_ERR_NO_MEM_REGIONS_ADDED - 256] = "the enclave has no memory (a bug in enclaver: report it)",
	[NE_ERR_NO_VCPUS_ADDED - 256] = "the enclave has no vCPUs (a bug in enclaver: report it)",
	[NE_ERR_ENCLAVE_MEM_MIN_SIZE - 256] = "the enclave has less memory than the 64 MiB minimum: raise memory_mb",
	[NE_ERR_FULL_CORES_NOT_USED - 256] =
		"the enclave does not use whole CPU cores: give it a CPU count that is a multiple of the threads per core",
	[NE_ERR_NOT_IN_INIT_STATE - 256] = "the enclave has already started (a bug in enclaver: report it)",
	[NE_ERR_INVALID_VCPU - 256] = "the vCPU is out of range of the host's CPUs: check cpu_pool in " ALLOCATOR_HINT,
	[NE_ERR_NO_CPUS_AVAIL_IN_POOL - 256] =
		"no CPUs are left in the enclave CPU pool (other enclaves hold them, or it is empty): stop an enclave, or raise cpu_count in " ALLOCATOR_HINT,
	[NE_ERR_INVALID_PAGE_SIZE - 256] =
		"the enclave's memory is backed by pages that are not a multiple of 2 MiB: reserve 2 MiB or larger hugepages",
	[NE_ERR_INVALID_FLAG_VALUE - 256] = "the driver refused the request's flags (a bug in enclaver: report it)",
	[NE_ERR_INVALID_ENCLAVE_CID - 256] =
		"the enclave CID is reserved (0 to 3 and 4294967295 are not for enclaves)",
};

const char *ne_strerror(int code)
{
	return code >= 256 && code <= NE_ERR_LAST ? ne_errors[code - 256] : NULL;
}

/* A failed driver call: the driver's own errors say what they mean, others keep their text. */
static int driver_failed(struct err *err, const char *call)
{
	const char *text = ne_strerror(err->code);

	if (text)
		return err_set(err, err->code, "%s: %s", call, text);
	return err_wrap(err, "%s", call);
}

/* --- what the host offers --- */

static int read_small(const char *path, char *out, size_t size)
{
	struct buf b = BUF_INIT;
	struct err err = { 0 };
	int rc = fs_read_file(path, size - 1, &b, &err);
	size_t n = b.len;

	if (rc == 0) {
		while (n && (b.data[n - 1] == '\n' || b.data[n - 1] == ' '))
			n--;
		memcpy(out, b.data, n);
		out[n] = 0;
	}
	buf_free(&b);
	return rc;
}

static int read_u64(const char *path, uint64_t *v)
{
	char s[32], *end;

	if (read_small(path, s, sizeof(s)) < 0)
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

int ne_cpulist_count(const char *s, int *first)
{
	int n = 0;

	*first = -1;
	while (*s) {
		char *end;
		long a, b;

		/* digits only: strtol would take signs and spaces */
		if (*s < '0' || *s > '9')
			return -1;
		a = strtol(s, &end, 10);
		b = a;
		if (*end == '-') {
			s = end + 1;
			if (*s < '0' || *s > '9')
				return -1;
			b = strtol(s, &end, 10);
		}
		if (a > NE_MAX_CPUS || b > NE_MAX_CPUS || b < a)
			return -1;
		if (*first < 0)
			*first = (int)a;
		n += (int)(b - a + 1);
		if (n > NE_MAX_CPUS)
			return -1;
		if (*end == ',' && end[1])
			end++;
		else if (*end)
			return -1;
		s = end;
	}
	return n;
}

static int cpu_node(const char *sys, int cpu)
{
	char path[512];
	struct dirent *d;
	DIR *dir;
	int node = -1;

	/* cpuN/nodeM stays while the CPU is off-line, as the pool's CPUs are */
	snprintf(path, sizeof(path), "%s/devices/system/cpu/cpu%d", sys, cpu);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((d = readdir(dir)) != NULL)
		if (!strncmp(d->d_name, "node", 4) && d->d_name[4] >= '0' && d->d_name[4] <= '9') {
			node = atoi(d->d_name + 4);
			break;
		}
	closedir(dir);
	return node;
}

static int by_size_desc(const void *a, const void *b)
{
	const struct ne_page_pool *x = a, *y = b;

	return x->size < y->size ? 1 : x->size > y->size ? -1 : 0;
}

int ne_host_read(const char *sys, struct ne_host *h, struct err *err)
{
	char path[512], s[256];
	struct dirent *d;
	DIR *dir;
	int first;

	*h = (struct ne_host){ .pool_node = -1, .threads_per_core = 1 };
	snprintf(path, sizeof(path), "%s/kernel/mm/hugepages", sys);
	dir = opendir(path);
	while (dir && (d = readdir(dir)) != NULL && h->n_pages < NE_MAX_PAGE_SIZES) {
		unsigned long long kb;
		char unit[4];
		struct ne_page_pool *p = &h->pages[h->n_pages];

		/* the driver takes pages that are a multiple of 2 MiB */
		if (sscanf(d->d_name, "hugepages-%llu%3s", &kb, unit) != 2 || strcmp(unit, "kB") || !kb ||
		    (kb * 1024) % NE_MIN_PAGE)
			continue;
		p->size = kb * 1024;
		snprintf(path, sizeof(path), "%s/kernel/mm/hugepages/%s/free_hugepages", sys, d->d_name);
		if (read_u64(path, &p->free) < 0)
			continue;
		h->n_pages++;
	}
	if (dir)
		closedir(dir);
	qsort(h->pages, h->n_pages, sizeof(h->pages[0]), by_size_desc);

	snprintf(path, sizeof(path), "%s/module/nitro_enclaves/parameters/ne_cpus", sys);
	if (read_small(path, h->pool, sizeof(h->pool)) == 0 && h->pool[0]) {
		int n = ne_cpulist_count(h->pool, &first);

		if (n < 0)
			return err_set(err, EINVAL, "%s: \"%s\" is not a CPU list", path, h->pool);
		h->pool_cpus = (unsigned)n;
		h->pool_node = cpu_node(sys, first);
	}
	if (h->pool_node >= 0) {
		h->per_node = true;
		for (size_t i = 0; i < h->n_pages; i++) {
			snprintf(path, sizeof(path), "%s/devices/system/node/node%d/hugepages/hugepages-%llukB/free_hugepages",
				 sys, h->pool_node, (unsigned long long)(h->pages[i].size / 1024));
			if (read_u64(path, &h->pages[i].free_on_node) < 0)
				h->per_node = false;
		}
	}
	/* The pool's CPUs are off-line and show no topology: CPU 0's siblings tell the core size. */
	snprintf(path, sizeof(path), "%s/devices/system/cpu/cpu0/topology/thread_siblings_list", sys);
	if (read_small(path, s, sizeof(s)) == 0) {
		int n = ne_cpulist_count(s, &first);

		if (n > 0)
			h->threads_per_core = (unsigned)n;
	}
	return 0;
}

/* --- the sequence --- */

static int copy_eif(const struct ne_enclave *e, uint64_t offset, int fd, uint64_t size, struct err *err)
{
	uint64_t done = 0;

	for (size_t i = 0; i < e->n_pages && done < size; i++) {
		uint64_t rstart, rsize = e->pages[i].size;

		/* skip pages (or parts) before the load offset */
		if (offset >= rsize) {
			offset -= rsize;
			continue;
		}
		rstart = offset;
		offset = 0;
		while (rstart < rsize && done < size) {
			uint64_t want = rsize - rstart < size - done ? rsize - rstart : size - done;
			ssize_t n = pread(fd, (uint8_t *)e->pages[i].addr + rstart, want > GiB ? GiB : want, (off_t)done);

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

struct ne_console {
	int fd, out;
	pthread_t thread;
};

static void *console_copy(void *arg)
{
	struct ne_console *c = arg;
	char b[4096];
	ssize_t n;

	while ((n = read(c->fd, b, sizeof(b))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0 && fs_write_full(c->out, b, (size_t)n) < 0)
			break;
	return NULL;
}

static void console_start(const struct ne_ops *ops, void *ctx, struct ne_enclave *e, int out)
{
	struct ne_console *c = calloc(1, sizeof(*c));
	struct err err = { 0 };

	if (!c)
		abort();
	c->out = out;
	c->fd = ops->console_connect(ctx, e->cid, &err);
	if (c->fd < 0) {
		log_warn("no debug console for enclave CID %llu: %s", (unsigned long long)e->cid, err.msg);
		free(c);
		return;
	}
	if (pthread_create(&c->thread, NULL, console_copy, c) != 0) {
		ops->close_fd(ctx, c->fd);
		free(c);
		return;
	}
	e->console = c;
}

static void console_stop(const struct ne_ops *ops, void *ctx, struct ne_console *c)
{
	struct timespec until;

	/* The hypervisor ends the console when the enclave is gone: let its last lines out first. */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	if (pthread_timedjoin_np(c->thread, NULL, &until) != 0) {
		shutdown(c->fd, SHUT_RDWR);
		pthread_join(c->thread, NULL);
	}
	ops->close_fd(ctx, c->fd);
	free(c);
}

void ne_release(const struct ne_ops *ops, void *ctx, struct ne_enclave *e)
{
	if (e->vm_fd >= 0)
		ops->close_fd(ctx, e->vm_fd);
	e->vm_fd = -1;
	if (e->console)
		console_stop(ops, ctx, e->console);
	e->console = NULL;
	for (size_t i = 0; i < e->n_pages; i++)
		ops->free_page(ctx, e->pages[i].addr, e->pages[i].size);
	free(e->pages);
	e->pages = NULL;
	e->n_pages = 0;
}

static int by_page_size_desc(const void *a, const void *b)
{
	const struct ne_page *x = a, *y = b;

	return x->size < y->size ? 1 : x->size > y->size ? -1 : 0;
}

static bool add_page(const struct ne_ops *ops, void *ctx, struct ne_enclave *e, uint64_t size, int node)
{
	void *p = ops->alloc_page(ctx, size, node);

	if (!p)
		return false;
	if (!(e->n_pages & (e->n_pages - 1))) {
		struct ne_page *grown = realloc(e->pages, (e->n_pages ? 2 * e->n_pages : 16) * sizeof(*grown));

		if (!grown)
			abort();
		e->pages = grown;
	}
	e->pages[e->n_pages++] = (struct ne_page){ p, size };
	return true;
}

/*
 * nitro-cli's allocation: the largest pages that fit what is left, then the smallest pages that
 * are there to top it up (a 256 MiB enclave on a host with one 1 GiB page gets that page), then
 * the surplus given back, smallest first.
 */
static int allocate(const struct ne_ops *ops, void *ctx, const struct ne_host *h, uint64_t want, struct ne_enclave *e,
		    struct err *err)
{
	int64_t left = (int64_t)want;
	size_t keep = 0;

	for (size_t i = 0; i < h->n_pages; i++)
		while (left >= (int64_t)h->pages[i].size && add_page(ops, ctx, e, h->pages[i].size, h->pool_node))
			left -= (int64_t)h->pages[i].size;
	for (size_t i = h->n_pages; i-- > 0 && left > 0;)
		while (left > 0 && add_page(ops, ctx, e, h->pages[i].size, h->pool_node))
			left -= (int64_t)h->pages[i].size;
	if (left > 0)
		return err_set(err, ENOMEM,
			       "not enough hugepages for %llu MiB (%llu MiB were missing): reserve them with memory_mib in " ALLOCATOR_HINT,
			       (unsigned long long)(want / MiB), (unsigned long long)div_up((uint64_t)left, MiB));
	qsort(e->pages, e->n_pages, sizeof(e->pages[0]), by_page_size_desc);
	for (left = (int64_t)want; keep < e->n_pages && left > 0; keep++)
		left -= (int64_t)e->pages[keep].size;
	for (size_t i = keep; i < e->n_pages; i++)
		ops->free_page(ctx, e->pages[i].addr, e->pages[i].size);
	e->n_pages = keep;
	e->memory_mb = 0;
	for (size_t i = 0; i < e->n_pages; i++)
		e->memory_mb += e->pages[i].size / MiB;
	return 0;
}

static void mib_list(const struct ne_host *h, bool on_node, char *out, size_t size)
{
	size_t n = 0;

	out[0] = 0;
	for (size_t i = 0; i < h->n_pages && n < size; i++) {
		uint64_t count = on_node ? h->pages[i].free_on_node : h->pages[i].free;

		n += (size_t)snprintf(out + n, size - n, "%s%llu x %llu MiB", i ? ", " : "", (unsigned long long)count,
				      (unsigned long long)(h->pages[i].size / MiB));
	}
}

/* What nitro-cli and the driver would refuse, said before anything is taken. */
static int check_request(const struct ne_host *h, const struct ne_request *req, struct err *err)
{
	uint64_t want = req->memory_mb * MiB, total = 0, on_node = 0;
	uint64_t min_mb = ne_min_memory_mb(req->eif_size);
	char free_list[256];

	if (req->memory_mb < NE_MIN_MEM_MB)
		return err_set(err, EINVAL, "at least 64MiB of memory are required, got: %llu",
			       (unsigned long long)req->memory_mb);
	if (req->memory_mb < min_mb)
		return err_set(err, EINVAL,
			       "At least %llu MB must be allocated (which is 4 times the EIF file size); raise memory_mb",
			       (unsigned long long)min_mb);
	if (req->cpus < 1)
		return err_set(err, EINVAL, "at least 1 CPU is required, got: %u", req->cpus);
	if (!h->pool_cpus)
		return err_set(err, ENODEV,
			       "the enclave CPU pool is empty (/sys/module/nitro_enclaves/parameters/ne_cpus): set cpu_count in " ALLOCATOR_HINT);
	if (req->cpus > h->pool_cpus)
		return err_set(err, EINVAL,
			       "Insufficient CPUs available (requested %u, but the enclave CPU pool \"%s\" has %u): lower cpu_count, or raise it in " ALLOCATOR_HINT,
			       req->cpus, h->pool, h->pool_cpus);
	if (h->threads_per_core > 1 && req->cpus % h->threads_per_core)
		return err_set(err, EINVAL,
			       "the CPU count must be a multiple of %u here: an enclave takes whole cores (both hyperthreads), got: %u",
			       h->threads_per_core, req->cpus);
	for (size_t i = 0; i < h->n_pages; i++) {
		total += h->pages[i].free * h->pages[i].size;
		on_node += h->pages[i].free_on_node * h->pages[i].size;
	}
	if (!h->n_pages)
		return err_set(err, ENOMEM,
			       "this host has no hugepages of 2 MiB or more: reserve %llu MiB with memory_mib in " ALLOCATOR_HINT,
			       (unsigned long long)req->memory_mb);
	mib_list(h, false, free_list, sizeof(free_list));
	if (total < want)
		return err_set(err, ENOMEM,
			       "not enough free hugepages for %llu MiB (free: %s): raise memory_mib in " ALLOCATOR_HINT
			       ", or stop another enclave",
			       (unsigned long long)req->memory_mb, free_list);
	if (h->per_node && on_node < want) {
		char node_list[256];

		mib_list(h, true, node_list, sizeof(node_list));
		return err_set(err, ENOMEM,
			       "the enclave CPU pool is on NUMA node %d, where only %llu MiB of hugepages are free (%s; on all nodes: %s): reserve them on node %d (docs/deploying.md, \"Two NUMA nodes\")",
			       h->pool_node, (unsigned long long)(on_node / MiB), node_list, free_list, h->pool_node);
	}
	return 0;
}

static int await_heartbeat(const struct ne_ops *ops, void *ctx, const struct ne_request *req, struct ne_enclave *e,
			   int hb, struct err *err)
{
	/* nitro-cli's bound: 90 s per started 6 GiB of EIF and per started 100 GiB of memory */
	int timeout = (int)(90000 * div_up(req->eif_size, 6 * GiB) + 90000 * div_up(e->memory_mb * MiB, 100 * GiB));
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		uint64_t peer = 0;
		int left, fd;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left = timeout - (int)((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
		fd = left > 0 ? ops->heartbeat_accept(ctx, hb, e->vm_fd, left, &peer, err)
			      : err_set(err, ETIMEDOUT, "timed out");
		if (fd < 0 && err->code == ESRCH)
			return err_set(err, ESRCH, "the enclave stopped while it booted%s",
				       req->debug ? " (its console is above)" : ": run it with --debug-mode to see its console");
		if (fd < 0 && err->code == ETIMEDOUT)
			return err_set(err, ETIMEDOUT,
				       "the enclave did not boot within %d s (no heartbeat from its init on vsock port %d)%s",
				       timeout / 1000, NE_HEARTBEAT_PORT, req->debug ? "" : ": run it with --debug-mode to see its console");
		if (fd < 0)
			return err_wrap(err, "waiting for the enclave's heartbeat");
		/* Only this enclave's init may say it booted: another enclave's heartbeat is not ours. */
		if (peer != e->cid) {
			log_warn("a heartbeat from vsock CID %llu, not from this enclave (CID %llu): ignored",
				 (unsigned long long)peer, (unsigned long long)e->cid);
			ops->close_fd(ctx, fd);
			continue;
		}
		if (ops->heartbeat_reply(ctx, fd, err) < 0) {
			ops->close_fd(ctx, fd);
			return err_wrap(err, "the enclave's heartbeat");
		}
		ops->close_fd(ctx, fd);
		return 0;
	}
}

int ne_launch(const struct ne_ops *ops, void *ctx, const struct ne_host *h, const struct ne_request *req,
	      struct ne_enclave *out, struct err *err)
{
	uint64_t offset = 0;
	int dev = -1, hb = -1;
	struct ne_enclave e = { .vm_fd = -1 };

	if (check_request(h, req, err) < 0)
		return -1;
	dev = ops->open_device(ctx, err);
	if (dev < 0)
		return err_wrap(err, "/dev/nitro_enclaves");
	e.vm_fd = ops->create_vm(ctx, dev, &e.slot_uid, err);
	ops->close_fd(ctx, dev);
	if (e.vm_fd < 0)
		return driver_failed(err, "NE_CREATE_VM");
	if (allocate(ops, ctx, h, req->memory_mb * MiB, &e, err) < 0)
		goto fail;
	if (ops->image_load_offset(ctx, e.vm_fd, &offset, err) < 0) {
		driver_failed(err, "NE_GET_IMAGE_LOAD_INFO");
		goto fail;
	}
	if (copy_eif(&e, offset, req->eif_fd, req->eif_size, err) < 0)
		goto fail;
	for (size_t i = 0; i < e.n_pages; i++)
		if (ops->set_memory_region(ctx, e.vm_fd, e.pages[i].addr, e.pages[i].size, err) < 0) {
			driver_failed(err, "NE_SET_USER_MEMORY_REGION");
			err_wrap(err, "memory region %zu of %zu (%llu MiB)", i + 1, e.n_pages,
				 (unsigned long long)(e.pages[i].size / MiB));
			goto fail;
		}
	for (unsigned i = 0; i < req->cpus; i++) {
		uint32_t cpu = 0; /* the driver picks from the enclave CPU pool */

		if (ops->add_vcpu(ctx, e.vm_fd, &cpu, err) < 0) {
			driver_failed(err, "NE_ADD_VCPU");
			err_wrap(err, "vCPU %u of %u", i + 1, req->cpus);
			goto fail;
		}
	}
	/* The listener must exist before the enclave's init sends its heartbeat. */
	hb = ops->heartbeat_listen(ctx, err);
	if (hb < 0)
		goto fail;
	if (ops->start(ctx, e.vm_fd, req->debug, &e.cid, err) < 0) {
		driver_failed(err, "NE_START_ENCLAVE");
		goto fail;
	}
	log_info("started enclave with CID %llu, %llu MiB in %zu hugepages, %u vCPUs", (unsigned long long)e.cid,
		 (unsigned long long)e.memory_mb, e.n_pages, req->cpus);
	/* From the start, so that a boot that fails shows why. */
	if (req->debug && req->console_out >= 0)
		console_start(ops, ctx, &e, req->console_out);
	if (await_heartbeat(ops, ctx, req, &e, hb, err) < 0)
		goto fail;
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

	return fd < 0 ? err_sys(err, "open") : fd;
}

static int drv_create_vm(void *ctx, int dev, uint64_t *slot, struct err *err)
{
	int fd = ioctl(dev, NE_CREATE_VM, slot);

	return fd < 0 ? err_sys(err, "ioctl") : fd;
}

static int drv_load_offset(void *ctx, int vm, uint64_t *offset, struct err *err)
{
	struct ne_image_load_info info = { .flags = NE_EIF_IMAGE };

	if (ioctl(vm, NE_GET_IMAGE_LOAD_INFO, &info) < 0)
		return err_sys(err, "ioctl");
	*offset = info.memory_offset;
	return 0;
}

static void *drv_alloc_page(void *ctx, uint64_t size, int node)
{
	int shift = __builtin_ctzll(size);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (shift << MAP_HUGE_SHIFT), -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* The page is taken when first touched: from the pool's node if it has one there (a
	 * preference, not a binding, which would end in SIGBUS when the node has none). */
	if (node >= 0 && node < 64) {
		unsigned long mask = 1ul << node;

		syscall(SYS_mbind, p, size, MPOL_PREFERRED, &mask, 65ul, 0u);
	}
	return p;
}

static void drv_free_page(void *ctx, void *addr, uint64_t size)
{
	munmap(addr, size);
}

static int drv_set_region(void *ctx, int vm, void *addr, uint64_t size, struct err *err)
{
	struct ne_user_memory_region r = { 0, size, (uint64_t)(uintptr_t)addr };

	return ioctl(vm, NE_SET_USER_MEMORY_REGION, &r) < 0 ? err_sys(err, "ioctl") : 0;
}

static int drv_add_vcpu(void *ctx, int vm, uint32_t *cpu, struct err *err)
{
	return ioctl(vm, NE_ADD_VCPU, cpu) < 0 ? err_sys(err, "ioctl") : 0;
}

static int drv_hb_listen(void *ctx, struct err *err)
{
	struct timespec pause = { 0, 200 * 1000000 };
	int fd;

	/* Held by an enclave booting outside our claims (nitro-cli, a container that does not share
	 * /run/enclaver): boots are short, wait for it as the claim would. */
	for (int waited = 0; (fd = vsock_listen(NE_HEARTBEAT_PORT, 4, err)) < 0 && err->code == EADDRINUSE;
	     waited += 200) {
		if (waited >= 120000)
			return port_claim_explain_busy(NE_HEARTBEAT_PORT, "the boot heartbeat", err);
		if (!waited)
			log_info("vsock port 9000 is in use (another enclave booting?): waiting for it");
		nanosleep(&pause, NULL);
	}
	return fd;
}

static int drv_start(void *ctx, int vm, bool debug, uint64_t *cid, struct err *err)
{
	struct ne_enclave_start_info info = { debug ? NE_ENCLAVE_DEBUG_MODE : 0, 0 };

	if (ioctl(vm, NE_START_ENCLAVE, &info) < 0)
		return err_sys(err, "ioctl");
	*cid = info.enclave_cid;
	return 0;
}

static int drv_console(void *ctx, uint64_t cid, struct err *err)
{
	/* nitro-cli console's address and its 20 s connect bound */
	return vsock_connect_blocking(VSOCK_CID_HYPERVISOR, (uint32_t)cid + NE_CONSOLE_PORT_OFFSET, 20000, err);
}

static int drv_hb_accept(void *ctx, int lfd, int vm, int timeout_ms, uint64_t *peer, struct err *err)
{
	struct pollfd p[2] = { { .fd = lfd, .events = POLLIN }, { .fd = vm, .events = POLLIN } };
	uint32_t cid = 0;
	int n, fd;

	do
		n = poll(p, 2, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return err_sys(err, "poll");
	/* the enclave fd reports EPOLLHUP once the enclave has stopped */
	if (p[1].revents)
		return err_set(err, ESRCH, "the enclave stopped");
	if (!n)
		return err_set(err, ETIMEDOUT, "timed out");
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return err_sys(err, "accept");
	if (vsock_peer_cid(fd, &cid) < 0) {
		close(fd);
		return err_sys(err, "getpeername");
	}
	*peer = cid;
	return fd;
}

static int drv_hb_reply(void *ctx, int fd, struct err *err)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	unsigned char b = 0;

	if (poll(&p, 1, 5000) != 1 || read(fd, &b, 1) != 1 || b != 0xB7 || write(fd, &b, 1) != 1)
		return err_set(err, EPROTO, "not the 0xB7 that init sends");
	return 0;
}

static void drv_close(void *ctx, int fd)
{
	close(fd);
}

const struct ne_ops ne_driver_ops = {
	.open_device = drv_open,
	.create_vm = drv_create_vm,
	.image_load_offset = drv_load_offset,
	.alloc_page = drv_alloc_page,
	.free_page = drv_free_page,
	.set_memory_region = drv_set_region,
	.add_vcpu = drv_add_vcpu,
	.heartbeat_listen = drv_hb_listen,
	.start = drv_start,
	.console_connect = drv_console,
	.heartbeat_accept = drv_hb_accept,
	.heartbeat_reply = drv_hb_reply,
	.close_fd = drv_close,
};

/* --- as a launcher --- */

static int nitro_prepare(struct launcher *l, struct err *err)
{
	struct ne_enclave *e = calloc(1, sizeof(*e));

	if (!e)
		abort();
	e->vm_fd = -1;
	l->priv = e;
	return vsock_use_emulated(NULL, VSOCK_CID_PARENT, err);
}

static void instance_id(char *out, size_t size)
{
	char tag[128];

	if (read_small("/sys/devices/virtual/dmi/id/board_asset_tag", tag, sizeof(tag)) < 0 || !tag[0])
		snprintf(tag, sizeof(tag), "i-0000000000000000");
	snprintf(out, size, "%s", tag);
}

static int nitro_start(struct launcher *l, struct err *err)
{
	struct ne_enclave *e = l->priv;
	struct ne_request req = { .eif_size = l->spec.eif->file_size, .memory_mb = (uint64_t)l->spec.memory_mb,
				  .cpus = (unsigned)l->spec.cpu_count, .debug = l->spec.debug_mode,
				  .console_out = STDERR_FILENO };
	struct port_claim *hb = NULL;
	struct ne_host h;
	char who[600], iid[128];
	int rc;

	if (ne_host_read("/sys", &h, err) < 0)
		return -1;
	req.eif_fd = open(l->spec.eif_path, O_RDONLY | O_CLOEXEC);
	if (req.eif_fd < 0)
		return err_sys(err, "%s", l->spec.eif_path);
	/* Enclaves boot one at a time: each init says it is up on the one parent port 9000. */
	snprintf(who, sizeof(who), "booting %s", l->spec.eif_path);
	rc = port_claim_take(NE_HEARTBEAT_PORT, "the boot heartbeat", who, 10 * 60 * 1000, &hb, err);
	if (rc == 0)
		rc = ne_launch(&ne_driver_ops, NULL, &h, &req, e, err);
	port_claim_release(hb);
	close(req.eif_fd);
	if (rc < 0)
		return -1;
	l->cid = (uint32_t)e->cid;
	l->watch_fd = e->vm_fd; /* EPOLLHUP when the enclave stops */
	instance_id(iid, sizeof(iid));
	snprintf(l->enclave_id, sizeof(l->enclave_id), "%s-enc%llx", iid, (unsigned long long)e->slot_uid);
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
