/*
 * The native Nitro launch sequence against a model of the Nitro Enclaves driver and of a host's
 * sysfs. The model follows drivers/virt/nitro_enclaves/ne_misc_dev.c (Linux 6.1): the region
 * limit comes from the device, regions must be 2 MiB multiples at 2 MiB-aligned addresses,
 * backed by hugepages of the CPU pool's NUMA node; vCPUs come from the pool a whole core at a
 * time and an enclave must use the whole cores it took; every NE_ERR_* comes from the check that
 * returns it there. The host is what sysfs shows: hugepage pools per size and node, the pool in
 * ne_cpus, the CPUs' nodes and CPU 0's siblings. Fault injection covers the errors that a correct
 * launcher cannot provoke.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "host/nitro.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define NODES 2
#define CORES 8
#define FD_BASE 100000 /* the model's descriptors: never a real one */

struct fake_page {
	uint8_t *map; /* the mapping; the page starts at the first 2 MiB boundary in it */
	uint8_t *addr;
	uint64_t size;
	int node;
};

struct fake {
	/* the host */
	unsigned threads;     /* per core; CPU c is on core c % CORES, with sibling c + CORES */
	uint64_t avail[CORES]; /* the pool: free CPUs per core (bit = CPU) */
	int cpu_node;          /* the pool's CPUs' node */
	int local_node;        /* this process's node: pages come from it when none is preferred */
	struct {
		uint64_t size, free[NODES];
	} sizes[4];
	size_t n_sizes;
	bool no_siblings_file; /* sysfs without CPU 0's topology */
	bool no_node_files;    /* sysfs without per-node hugepage counts */
	const char *pool_text; /* ne_cpus as the module shows it */
	/* the device */
	uint64_t max_mem_regions;
	/* the enclave */
	int state; /* 0 none, 1 init, 2 running */
	bool debug;
	uint64_t threads_of[CORES], vcpus;
	unsigned nr_vcpus;
	uint64_t nr_mem_regions, mem_size;
	struct {
		uintptr_t addr;
		uint64_t size;
	} regions[4096];
	size_t n_regions;
	struct fake_page pages[4096];
	size_t n_pages;
	/* the boot */
	bool boots, stray_heartbeat, dies_booting;
	int heartbeat_timeout;
	bool listening_at_start;
	int console[2];
	/* faults */
	const char *fail_call;
	int fail_code;
	/* what the last enclave got */
	size_t got_pages;
	uint64_t got_mb, got_first, got_last;
	/* bookkeeping */
	int next_fd, fds_open, vm_fd, hb_fd;
	char log[1 << 16];
};

static void note(struct fake *f, const char *s)
{
	size_t n = strlen(f->log);

	snprintf(f->log + n, sizeof(f->log) - n, "%s;", s);
}

static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->threads = 2;
	f->avail[1] = (1ull << 1) | (1ull << (1 + CORES)); /* CPUs 1 and 9 */
	f->pool_text = "1,9";
	f->max_mem_regions = 4096;
	f->boots = true;
	f->console[0] = f->console[1] = -1;
	f->next_fd = FD_BASE;
	f->vm_fd = f->hb_fd = -1;
}

static void add_pages(struct fake *f, uint64_t size, uint64_t node0, uint64_t node1)
{
	f->sizes[f->n_sizes].size = size;
	f->sizes[f->n_sizes].free[0] = node0;
	f->sizes[f->n_sizes].free[1] = node1;
	f->n_sizes++;
}

static void put(const char *root, const char *rel, const char *text)
{
	char path[1024], *dir;
	struct err err = { 0 };

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	dir = fs_dirname(path);
	if (fs_mkdir_p(dir, 0755, &err) < 0 || fs_write_file_atomic(path, text, strlen(text), 0644, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		abort();
	}
	free(dir);
}

/* Writes the sysfs this host shows and reads it as the launcher does. */
static void host_of(struct fake *f, struct ne_host *h)
{
	char root[] = "/tmp/ne-sysfs-XXXXXX", rel[256], num[32];
	struct err err = { 0 };

	if (!mkdtemp(root))
		abort();
	put(root, "module/nitro_enclaves/parameters/ne_cpus", f->pool_text);
	if (!f->no_siblings_file)
		put(root, "devices/system/cpu/cpu0/topology/thread_siblings_list", f->threads == 2 ? "0,8\n" : "0\n");
	for (int c = 1; c < 2 * CORES; c++) {
		snprintf(rel, sizeof(rel), "devices/system/cpu/cpu%d/node%d/cpulist", c, f->cpu_node);
		put(root, rel, "");
	}
	put(root, "kernel/mm/hugepages/hugepages-64kB/free_hugepages", "512\n"); /* not for enclaves */
	for (size_t i = 0; i < f->n_sizes; i++) {
		unsigned long long kb = (unsigned long long)(f->sizes[i].size / 1024);

		snprintf(rel, sizeof(rel), "kernel/mm/hugepages/hugepages-%llukB/free_hugepages", kb);
		snprintf(num, sizeof(num), "%llu\n", (unsigned long long)(f->sizes[i].free[0] + f->sizes[i].free[1]));
		put(root, rel, num);
		for (int n = 0; n < NODES && !f->no_node_files; n++) {
			snprintf(rel, sizeof(rel), "devices/system/node/node%d/hugepages/hugepages-%llukB/free_hugepages", n,
				 kb);
			snprintf(num, sizeof(num), "%llu\n", (unsigned long long)f->sizes[i].free[n]);
			put(root, rel, num);
		}
	}
	CHECK_EQ_INT(ne_host_read(root, h, &err), 0);
	fs_remove_tree(root, &err);
}

static int fail_here(struct fake *f, const char *call, struct err *e)
{
	note(f, call);
	if (f->fail_call && !strcmp(f->fail_call, call))
		return err_set(e, f->fail_code, "ioctl: Unknown error %d", f->fail_code);
	return 0;
}

static int driver_error(struct err *e, int code)
{
	return err_set(e, code, "ioctl: Unknown error %d", code);
}

static int f_open(void *c, struct err *e)
{
	struct fake *f = c;

	if (fail_here(f, "open", e) < 0)
		return -1;
	f->fds_open++;
	return f->next_fd++;
}

static int f_create(void *c, int dev, uint64_t *slot, struct err *e)
{
	struct fake *f = c;
	bool any = false;

	if (fail_here(f, "create_vm", e) < 0)
		return -1;
	for (int i = 0; i < CORES; i++)
		any |= f->avail[i] != 0;
	if (!any)
		return driver_error(e, NE_ERR_NO_CPUS_AVAIL_IN_POOL);
	f->state = 1;
	*slot = 0x1234;
	f->fds_open++;
	f->vm_fd = f->next_fd++;
	return f->vm_fd;
}

static int f_offset(void *c, int vm, uint64_t *off, struct err *e)
{
	struct fake *f = c;

	if (fail_here(f, "load_info", e) < 0)
		return -1;
	if (f->state != 1)
		return driver_error(e, NE_ERR_NOT_IN_INIT_STATE);
	*off = 8 * MiB; /* NE_EIF_LOAD_OFFSET */
	return 0;
}

static void *f_alloc(void *c, uint64_t size, int node)
{
	struct fake *f = c;
	int order[NODES + 2] = { node, f->local_node, 0, 1 };

	for (size_t i = 0; i < f->n_sizes; i++) {
		if (f->sizes[i].size != size)
			continue;
		/* the preferred node, else this process's, else any: as the kernel's fallback does */
		for (int k = 0; k < NODES + 2; k++) {
			int n = order[k];
			struct fake_page *p = &f->pages[f->n_pages];
			uintptr_t a;

			if (n < 0 || !f->sizes[i].free[n])
				continue;
			if (f->n_pages == sizeof(f->pages) / sizeof(f->pages[0]))
				abort();
			p->map = mmap(NULL, size + 2 * MiB, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (p->map == MAP_FAILED)
				abort();
			a = ((uintptr_t)p->map + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1);
			p->addr = (uint8_t *)a;
			p->size = size;
			p->node = n;
			f->sizes[i].free[n]--;
			f->n_pages++;
			return p->addr;
		}
	}
	return NULL;
}

static struct fake_page *page_at(struct fake *f, uintptr_t a)
{
	for (size_t i = 0; i < f->n_pages; i++)
		if ((uintptr_t)f->pages[i].addr <= a && a < (uintptr_t)f->pages[i].addr + f->pages[i].size)
			return &f->pages[i];
	return NULL;
}

static void f_free(void *c, void *a, uint64_t size)
{
	struct fake *f = c;
	struct fake_page *p = page_at(f, (uintptr_t)a);

	if (!p || p->addr != a || p->size != size)
		abort(); /* freeing what was not handed out */
	for (size_t i = 0; i < f->n_sizes; i++)
		if (f->sizes[i].size == size)
			f->sizes[i].free[p->node]++;
	munmap(p->map, size + 2 * MiB);
	*p = f->pages[--f->n_pages];
}

/* ne_set_user_memory_region_ioctl and the sanity checks it runs, in their order */
static int f_region(void *c, int vm, void *addr, uint64_t size, struct err *e)
{
	struct fake *f = c;
	uintptr_t a = (uintptr_t)addr;
	uint64_t done = 0, phys = 0;

	if (fail_here(f, "region", e) < 0)
		return -1;
	if (f->state != 1)
		return driver_error(e, NE_ERR_NOT_IN_INIT_STATE);
	if (size & (2 * MiB - 1))
		return driver_error(e, NE_ERR_INVALID_MEM_REGION_SIZE);
	if (a & (2 * MiB - 1))
		return driver_error(e, NE_ERR_UNALIGNED_MEM_REGION_ADDR);
	for (size_t i = 0; i < f->n_regions; i++)
		if ((f->regions[i].addr <= a && a < f->regions[i].addr + f->regions[i].size) ||
		    (a <= f->regions[i].addr && a + size > f->regions[i].addr))
			return driver_error(e, NE_ERR_MEM_REGION_ALREADY_USED);
	while (done < size) {
		struct fake_page *p = page_at(f, a + done);

		if (!p) /* not memory the hugepage allocator gave */
			return driver_error(e, NE_ERR_MEM_NOT_HUGE_PAGE);
		if (p->size & (2 * MiB - 1))
			return driver_error(e, NE_ERR_INVALID_PAGE_SIZE);
		if (p->node != f->cpu_node)
			return driver_error(e, NE_ERR_MEM_DIFFERENT_NUMA_NODE);
		done += p->size;
		phys++; /* separate allocations: never physically contiguous in this model */
	}
	if (f->nr_mem_regions + phys > f->max_mem_regions)
		return driver_error(e, NE_ERR_MEM_MAX_REGIONS);
	f->regions[f->n_regions].addr = a;
	f->regions[f->n_regions++].size = size;
	f->nr_mem_regions += phys;
	f->mem_size += size;
	return 0;
}

/* NE_ADD_VCPU with vcpu_id 0: the rest of a core the enclave has, else a whole new core */
static int f_vcpu(void *c, int vm, uint32_t *cpu, struct err *e)
{
	struct fake *f = c;

	if (fail_here(f, "vcpu", e) < 0)
		return -1;
	if (f->state != 1)
		return driver_error(e, NE_ERR_NOT_IN_INIT_STATE);
	for (int core = 0; core < CORES; core++)
		for (int t = 0; t < 64; t++)
			if ((f->threads_of[core] >> t & 1) && !(f->vcpus >> t & 1)) {
				*cpu = (uint32_t)t;
				goto add;
			}
	for (int core = 0;; core++) {
		if (core == CORES)
			return driver_error(e, NE_ERR_NO_CPUS_AVAIL_IN_POOL);
		if (!f->avail[core])
			continue;
		f->threads_of[core] = f->avail[core];
		f->avail[core] = 0;
		*cpu = (uint32_t)__builtin_ctzll(f->threads_of[core]);
		break;
	}
add:
	f->vcpus |= 1ull << *cpu;
	f->nr_vcpus++;
	return 0;
}

static int f_listen(void *c, struct err *e)
{
	struct fake *f = c;

	if (fail_here(f, "hb_listen", e) < 0)
		return -1;
	f->fds_open++;
	f->hb_fd = f->next_fd++;
	return f->hb_fd;
}

/* ne_start_enclave_ioctl */
static int f_start(void *c, int vm, bool debug, uint64_t *cid, struct err *e)
{
	struct fake *f = c;

	if (fail_here(f, debug ? "start_debug" : "start", e) < 0)
		return -1;
	f->listening_at_start = f->hb_fd >= 0;
	if (f->state != 1)
		return driver_error(e, NE_ERR_NOT_IN_INIT_STATE);
	if (!f->nr_mem_regions)
		return driver_error(e, NE_ERR_NO_MEM_REGIONS_ADDED);
	if (f->mem_size < 64 * MiB)
		return driver_error(e, NE_ERR_ENCLAVE_MEM_MIN_SIZE);
	if (!f->nr_vcpus)
		return driver_error(e, NE_ERR_NO_VCPUS_ADDED);
	for (int core = 0; core < CORES; core++)
		if (f->threads_of[core] & ~f->vcpus)
			return driver_error(e, NE_ERR_FULL_CORES_NOT_USED);
	f->state = 2;
	f->debug = debug;
	*cid = 16;
	return 0;
}

/* The hypervisor's console: open in debug mode only, ended when the enclave is. */
static int f_console(void *c, uint64_t cid, struct err *e)
{
	struct fake *f = c;
	static const char boot[] = "[    0.000000] Linux version 4.14 (boot line)\n";

	note(f, "console");
	if (f->state != 2 || !f->debug || cid != 16)
		return err_set(e, ECONNRESET, "vsock connect 0:%llu: connection reset", (unsigned long long)cid + 10000);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->console) < 0)
		abort();
	if (write(f->console[1], boot, sizeof(boot) - 1) != sizeof(boot) - 1)
		abort();
	return f->console[0];
}

static int f_accept(void *c, int lfd, int vm, int timeout, uint64_t *peer, struct err *e)
{
	struct fake *f = c;

	note(f, "hb_accept");
	f->heartbeat_timeout = timeout;
	if (lfd != f->hb_fd || vm != f->vm_fd)
		abort();
	if (f->dies_booting)
		return err_set(e, ESRCH, "the enclave stopped");
	if (f->stray_heartbeat) {
		f->stray_heartbeat = false;
		*peer = 17;
	} else if (f->boots) {
		*peer = 16;
	} else {
		return err_set(e, ETIMEDOUT, "timed out");
	}
	f->fds_open++;
	return f->next_fd++;
}

static int f_reply(void *c, int fd, struct err *e)
{
	note(c, "hb_reply");
	return 0;
}

static void f_close(void *c, int fd)
{
	struct fake *f = c;
	static const char last[] = "reboot: Power down (last line)\n";

	if (fd == f->console[0]) {
		close(fd);
		f->console[0] = -1;
		return;
	}
	if (fd < FD_BASE)
		abort();
	f->fds_open--;
	if (fd == f->hb_fd)
		f->hb_fd = -1;
	if (fd != f->vm_fd)
		return;
	/* ne_enclave_release: the enclave stops, its cores go back to the pool, its console ends */
	for (int core = 0; core < CORES; core++) {
		f->avail[core] |= f->threads_of[core];
		f->threads_of[core] = 0;
	}
	f->vm_fd = -1;
	f->state = 0;
	if (f->console[1] >= 0) {
		if (write(f->console[1], last, sizeof(last) - 1) != sizeof(last) - 1)
			abort();
		close(f->console[1]);
		f->console[1] = -1;
	}
}

static const struct ne_ops fake_ops = {
	.open_device = f_open,
	.create_vm = f_create,
	.image_load_offset = f_offset,
	.alloc_page = f_alloc,
	.free_page = f_free,
	.set_memory_region = f_region,
	.add_vcpu = f_vcpu,
	.heartbeat_listen = f_listen,
	.start = f_start,
	.console_connect = f_console,
	.heartbeat_accept = f_accept,
	.heartbeat_reply = f_reply,
	.close_fd = f_close,
};

static int make_eif(size_t size)
{
	int fd = memfd_create("eif", 0);
	uint8_t *b = malloc(size);

	for (size_t i = 0; i < size; i++)
		b[i] = (uint8_t)(i * 7);
	if (fs_write_full(fd, b, size) < 0)
		abort();
	free(b);
	return fd;
}

static struct ne_request request(uint64_t memory_mb, unsigned cpus)
{
	return (struct ne_request){ .eif_fd = make_eif(100000), .eif_size = 100000, .memory_mb = memory_mb,
				    .cpus = cpus, .console_out = -1 };
}

/* Launches; on success checks the memory and CPUs the enclave holds, then releases it. After
 * either, nothing may be left held: pages, descriptors, pool CPUs. */
static int launch(struct fake *f, struct ne_request req, struct ne_enclave *e, struct err *err)
{
	struct ne_host h;
	uint64_t pool[CORES];
	uint64_t free_before[4][NODES];
	int rc;

	memcpy(pool, f->avail, sizeof(pool));
	for (size_t i = 0; i < f->n_sizes; i++)
		memcpy(free_before[i], f->sizes[i].free, sizeof(free_before[i]));
	host_of(f, &h);
	rc = ne_launch(&fake_ops, f, &h, &req, e, err);
	if (rc == 0) {
		uint64_t total = 0;
		bool ok = true;

		CHECK_EQ_INT(f->state, 2);
		CHECK_EQ_INT(f->n_pages, e->n_pages);
		for (size_t i = 0; i < e->n_pages; i++)
			total += e->pages[i].size;
		CHECK_EQ_INT(total / MiB, e->memory_mb);
		CHECK(e->memory_mb >= req.memory_mb);
		CHECK_EQ_INT(f->mem_size, total);
		CHECK_EQ_INT(f->nr_vcpus, req.cpus);
		/* the EIF, byte for byte, from the load offset on */
		for (size_t i = 0, off = 8 * MiB, k = 0; i < 100000; i++, off++) {
			while (off >= e->pages[k].size)
				off -= e->pages[k++].size;
			ok &= ((uint8_t *)e->pages[k].addr)[off] == (uint8_t)(i * 7);
		}
		CHECK(ok);
		CHECK(f->listening_at_start);
		f->got_pages = e->n_pages;
		f->got_mb = e->memory_mb;
		f->got_first = e->pages[0].size;
		f->got_last = e->pages[e->n_pages - 1].size;
		ne_release(&fake_ops, f, e);
	} else {
		CHECK(strstr(err->msg, "Unknown error") == NULL);
		if (strstr(err->msg, "Unknown error"))
			fprintf(stderr, "got \"%s\"\n", err->msg);
	}
	CHECK_EQ_INT(f->n_pages, 0);
	CHECK_EQ_INT(f->fds_open, 0);
	CHECK_EQ_INT(f->state, 0);
	CHECK(!memcmp(pool, f->avail, sizeof(pool)));
	for (size_t i = 0; i < f->n_sizes; i++)
		CHECK(!memcmp(free_before[i], f->sizes[i].free, sizeof(free_before[i])));
	close(req.eif_fd);
	return rc;
}

static void expect_error(struct fake *f, struct ne_request req, const char *msg)
{
	struct ne_enclave e;
	struct err err = { 0 };

	CHECK(launch(f, req, &e, &err) < 0);
	CHECK(strstr(err.msg, msg) != NULL);
	if (!strstr(err.msg, msg))
		fprintf(stderr, "expected \"%s\"\n     got \"%s\"\n", msg, err.msg);
}

static void test_four_gib_on_2mib_pages(void)
{
	struct fake f;
	struct ne_enclave e;
	struct err err = { 0 };

	/* the documented recipe: 2048 x 2 MiB reserved, the default memory_mb of 4096 */
	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	CHECK_EQ_INT(launch(&f, request(4096, 2), &e, &err), 0);
	CHECK_EQ_INT(f.got_pages, 2048);
	CHECK_EQ_INT(f.got_mb, 4096);
	CHECK(strstr(f.log, "open;create_vm;load_info;") == f.log);
	CHECK(strstr(f.log, "region;vcpu;vcpu;hb_listen;start;hb_accept;hb_reply;") != NULL);
}

static void test_small_enclave_on_one_gib_page(void)
{
	struct fake f;
	struct ne_enclave e;
	struct err err = { 0 };

	/* an allocator that reserved one 1 GiB page: nitro-cli starts a 256 MiB enclave on it */
	fake_init(&f);
	add_pages(&f, GiB, 1, 0);
	add_pages(&f, 2 * MiB, 0, 0);
	CHECK_EQ_INT(launch(&f, request(256, 2), &e, &err), 0);
	CHECK_EQ_INT(f.got_pages, 1);
	CHECK_EQ_INT(f.got_mb, 1024);
}

static void test_32mib_pages(void)
{
	struct fake f;
	struct ne_enclave e;
	struct err err = { 0 };

	/* Graviton: 32 MiB pages (and 64 KiB ones, which the driver does not take) */
	fake_init(&f);
	add_pages(&f, 32 * MiB, 64, 0);
	add_pages(&f, 2 * MiB, 8, 0);
	CHECK_EQ_INT(launch(&f, request(516, 2), &e, &err), 0);
	CHECK_EQ_INT(f.got_pages, 18); /* 16 x 32 MiB, then 2 x 2 MiB */
	CHECK_EQ_INT(f.got_first, 32 * MiB);
	CHECK_EQ_INT(f.got_last, 2 * MiB);
	/* only 32 MiB pages: the last one tops it up */
	fake_init(&f);
	add_pages(&f, 32 * MiB, 64, 0);
	CHECK_EQ_INT(launch(&f, request(100, 2), &e, &err), 0);
	CHECK_EQ_INT(f.got_mb, 128);
}

static void test_largest_pages_first_and_surplus_returned(void)
{
	struct fake f;
	struct ne_enclave e;
	struct err err = { 0 };

	fake_init(&f);
	add_pages(&f, GiB, 2, 0);
	add_pages(&f, 2 * MiB, 100, 0);
	CHECK_EQ_INT(launch(&f, request(1030, 2), &e, &err), 0);
	CHECK_EQ_INT(f.got_pages, 4); /* 1 GiB, then 3 x 2 MiB */
	CHECK_EQ_INT(f.got_first, GiB);
	CHECK_EQ_INT(f.got_mb, 1030);
	/* 2 MiB pages run out: a second 1 GiB page tops it up and the 2 MiB ones go back */
	fake_init(&f);
	add_pages(&f, GiB, 2, 0);
	add_pages(&f, 2 * MiB, 1, 0);
	CHECK_EQ_INT(launch(&f, request(1030, 2), &e, &err), 0);
	CHECK_EQ_INT(f.got_pages, 2);
	CHECK_EQ_INT(f.got_mb, 2048);
}

static void test_checks_before_the_driver(void)
{
	struct fake f;
	struct ne_request r;

	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	r = request(300, 2);
	r.eif_size = 100 * MiB;
	expect_error(&f, r, "At least 400 MB must be allocated (which is 4 times the EIF file size)");
	expect_error(&f, request(32, 2), "at least 64MiB of memory are required, got: 32");
	expect_error(&f, request(256, 0), "at least 1 CPU is required");
	expect_error(&f, request(256, 3), "Insufficient CPUs available (requested 3, but the enclave CPU pool \"1,9\" has 2)");
	f.avail[2] = (1ull << 2) | (1ull << (2 + CORES));
	f.pool_text = "1-2,9-10";
	expect_error(&f, request(256, 3), "the CPU count must be a multiple of 2 here");
	f.pool_text = "";
	expect_error(&f, request(256, 2), "the enclave CPU pool is empty");
	fake_init(&f);
	expect_error(&f, request(256, 2), "this host has no hugepages of 2 MiB or more: reserve 256 MiB");
	add_pages(&f, 2 * MiB, 100, 0);
	expect_error(&f, request(256, 2), "not enough free hugepages for 256 MiB (free: 100 x 2 MiB)");
	/* a two-node host: the pages on node 0, the pool on node 1 */
	fake_init(&f);
	f.cpu_node = 1;
	add_pages(&f, 2 * MiB, 2048, 10);
	expect_error(&f, request(4096, 2),
		     "the enclave CPU pool is on NUMA node 1, where only 20 MiB of hugepages are free (10 x 2 MiB; on all nodes: 2058 x 2 MiB): reserve them on node 1");
	CHECK_EQ_INT(f.log[0], 0); /* none of these touched the driver */
}

static void test_two_numa_nodes(void)
{
	struct fake f;
	struct ne_enclave e;
	struct err err = { 0 };

	/* pages on both nodes: those of the pool's node are the ones taken */
	fake_init(&f);
	f.cpu_node = 1;
	add_pages(&f, 2 * MiB, 2048, 2048);
	CHECK_EQ_INT(launch(&f, request(4096, 2), &e, &err), 0);
	/* a sysfs without per-node counts: the pages come from the wrong node and the driver says so */
	fake_init(&f);
	f.cpu_node = 1;
	f.no_node_files = true;
	add_pages(&f, 2 * MiB, 2048, 0);
	expect_error(&f, request(256, 2),
		     "memory region 1 of 128 (2 MiB): NE_SET_USER_MEMORY_REGION: the hugepages are on another NUMA node than the enclave CPU pool");
}

static void test_driver_errors_the_model_produces(void)
{
	struct fake f;

	/* the region limit is the device's, not ours */
	fake_init(&f);
	f.max_mem_regions = 100;
	add_pages(&f, 2 * MiB, 2048, 0);
	expect_error(&f, request(256, 2),
		     "memory region 101 of 128 (2 MiB): NE_SET_USER_MEMORY_REGION: the enclave has more memory regions than the Nitro device allows");
	/* another enclave holds every CPU of the pool */
	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	f.avail[1] = 0;
	expect_error(&f, request(256, 2), "NE_CREATE_VM: no CPUs are left in the enclave CPU pool");
	/* two cores in the pool, one of them taken */
	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	f.pool_text = "1-2,9-10";
	expect_error(&f, request(256, 4), "vCPU 3 of 4: NE_ADD_VCPU: no CPUs are left in the enclave CPU pool");
	/* a sysfs that does not show the core size: the driver wants whole cores */
	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	f.no_siblings_file = true;
	expect_error(&f, request(256, 1), "NE_START_ENCLAVE: the enclave does not use whole CPU cores");
}

static void test_every_driver_error_reads_as_a_sentence(void)
{
	static const struct {
		int code;
		const char *call, *ioctl;
	} where[] = {
		{ NE_ERR_VCPU_ALREADY_USED, "vcpu", "NE_ADD_VCPU" },
		{ NE_ERR_VCPU_NOT_IN_CPU_POOL, "vcpu", "NE_ADD_VCPU" },
		{ NE_ERR_VCPU_INVALID_CPU_CORE, "vcpu", "NE_ADD_VCPU" },
		{ NE_ERR_INVALID_MEM_REGION_SIZE, "region", "NE_SET_USER_MEMORY_REGION" },
		{ NE_ERR_INVALID_MEM_REGION_ADDR, "region", "NE_SET_USER_MEMORY_REGION" },
		{ NE_ERR_UNALIGNED_MEM_REGION_ADDR, "region", "NE_SET_USER_MEMORY_REGION" },
		{ NE_ERR_MEM_REGION_ALREADY_USED, "region", "NE_SET_USER_MEMORY_REGION" },
		{ NE_ERR_MEM_NOT_HUGE_PAGE, "region", "NE_SET_USER_MEMORY_REGION" },
		{ NE_ERR_MEM_DIFFERENT_NUMA_NODE, "region", "NE_SET_USER_MEMORY_REGION" },
		{ NE_ERR_MEM_MAX_REGIONS, "region", "NE_SET_USER_MEMORY_REGION" },
		{ NE_ERR_NO_MEM_REGIONS_ADDED, "start", "NE_START_ENCLAVE" },
		{ NE_ERR_NO_VCPUS_ADDED, "start", "NE_START_ENCLAVE" },
		{ NE_ERR_ENCLAVE_MEM_MIN_SIZE, "start", "NE_START_ENCLAVE" },
		{ NE_ERR_FULL_CORES_NOT_USED, "start", "NE_START_ENCLAVE" },
		{ NE_ERR_NOT_IN_INIT_STATE, "load_info", "NE_GET_IMAGE_LOAD_INFO" },
		{ NE_ERR_INVALID_VCPU, "vcpu", "NE_ADD_VCPU" },
		{ NE_ERR_NO_CPUS_AVAIL_IN_POOL, "create_vm", "NE_CREATE_VM" },
		{ NE_ERR_INVALID_PAGE_SIZE, "region", "NE_SET_USER_MEMORY_REGION" },
		{ NE_ERR_INVALID_FLAG_VALUE, "load_info", "NE_GET_IMAGE_LOAD_INFO" },
		{ NE_ERR_INVALID_ENCLAVE_CID, "start", "NE_START_ENCLAVE" },
	};

	CHECK_EQ_INT(sizeof(where) / sizeof(where[0]), NE_ERR_LAST - 256 + 1);
	CHECK(ne_strerror(255) == NULL && ne_strerror(NE_ERR_LAST + 1) == NULL);
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		struct fake f;
		char want[600];

		fake_init(&f);
		add_pages(&f, 2 * MiB, 2048, 0);
		f.fail_call = where[i].call;
		f.fail_code = where[i].code;
		CHECK(ne_strerror(where[i].code) != NULL);
		snprintf(want, sizeof(want), "%s: %s", where[i].ioctl, ne_strerror(where[i].code));
		expect_error(&f, request(256, 2), want);
	}
}

static void test_heartbeat(void)
{
	struct fake f;
	struct ne_enclave e;
	struct err err = { 0 };

	/* another enclave's heartbeat first: not taken for this one's */
	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	f.stray_heartbeat = true;
	CHECK_EQ_INT(launch(&f, request(256, 2), &e, &err), 0);
	CHECK(strstr(f.log, "start;hb_accept;hb_accept;hb_reply;") != NULL);
	/* nitro-cli's bound: 90 s for an EIF under 6 GiB plus 90 s for memory under 100 GiB */
	CHECK(f.heartbeat_timeout > 179000 && f.heartbeat_timeout <= 180000);
	/* the enclave stops while it boots: said at once, not after the bound */
	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	f.dies_booting = true;
	expect_error(&f, request(256, 2),
		     "the enclave stopped while it booted: run it with --debug-mode to see its console");
	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	f.boots = false;
	expect_error(&f, request(256, 2), "the enclave did not boot within 180 s (no heartbeat from its init on vsock port 9000)");
}

static void test_debug_console_streams(void)
{
	struct fake f;
	struct ne_enclave e;
	struct err err = { 0 };
	struct ne_request r;
	int out[2];
	char got[4096] = "";
	ssize_t n, len = 0;

	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	CHECK_EQ_INT(pipe(out), 0);
	r = request(256, 2);
	r.debug = true;
	r.console_out = out[1];
	CHECK_EQ_INT(launch(&f, r, &e, &err), 0);
	close(out[1]);
	while ((n = read(out[0], got + len, sizeof(got) - 1 - (size_t)len)) > 0)
		len += n;
	close(out[0]);
	/* connected once started (before the heartbeat), and streamed to its end */
	CHECK(strstr(f.log, "start_debug;console;hb_accept;") != NULL);
	CHECK(strstr(got, "[    0.000000] Linux version 4.14 (boot line)\nreboot: Power down (last line)\n") == got);
	CHECK_EQ_INT(f.console[0], -1);
	/* not in debug mode: the hypervisor has no console to give */
	fake_init(&f);
	add_pages(&f, 2 * MiB, 2048, 0);
	r = request(256, 2);
	r.console_out = 2;
	CHECK_EQ_INT(launch(&f, r, &e, &err), 0);
	CHECK(strstr(f.log, "console") == NULL);
}

static void test_cpu_lists(void)
{
	int first;

	CHECK_EQ_INT(ne_cpulist_count("1,9", &first), 2);
	CHECK_EQ_INT(first, 1);
	CHECK_EQ_INT(ne_cpulist_count("2-7,10-15", &first), 12);
	CHECK_EQ_INT(first, 2);
	CHECK_EQ_INT(ne_cpulist_count("", &first), 0);
	CHECK_EQ_INT(ne_cpulist_count("3-1", &first), -1);
	CHECK_EQ_INT(ne_cpulist_count("1,", &first), -1);
	CHECK_EQ_INT(ne_cpulist_count("-1", &first), -1);
	CHECK_EQ_INT(ne_cpulist_count(" 1", &first), -1);
	CHECK_EQ_INT(ne_cpulist_count("0-2147483647", &first), -1);
	CHECK_EQ_INT(ne_cpulist_count("0-8000,0-8000", &first), -1);
}

TEST_MAIN(T(test_cpu_lists), T(test_four_gib_on_2mib_pages), T(test_small_enclave_on_one_gib_page), T(test_32mib_pages),
	  T(test_largest_pages_first_and_surplus_returned), T(test_checks_before_the_driver), T(test_two_numa_nodes),
	  T(test_driver_errors_the_model_produces), T(test_every_driver_error_reads_as_a_sentence), T(test_heartbeat),
	  T(test_debug_console_streams))
