/* The native Nitro launch sequence against a fake driver: order of calls, memory layout, the
 * EIF copied at the load offset, checks before the driver is touched, cleanup on failure. */
#include "harness.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host/nitro.h"

struct fake {
	char log[8192];
	int next_fd;
	int open_fds;
	uint64_t load_offset;
	unsigned max_vcpus;
	bool heartbeat_ok;
	bool no_gib_pages;
	bool listening_before_start;
	bool listening;
	uint64_t mapped;
};

static void logf_(struct fake *f, const char *s)
{
	strncat(f->log, s, sizeof(f->log) - strlen(f->log) - 1);
	strncat(f->log, ";", sizeof(f->log) - strlen(f->log) - 1);
}

static int f_open(void *c, struct err *e)
{
	struct fake *f = c;

	logf_(f, "open");
	f->open_fds++;
	return f->next_fd++;
}

static int f_create(void *c, int dev, uint64_t *slot, struct err *e)
{
	struct fake *f = c;

	logf_(f, "create_vm");
	*slot = 0x1234;
	f->open_fds++;
	return f->next_fd++;
}

static int f_offset(void *c, int vm, uint64_t *off, struct err *e)
{
	struct fake *f = c;

	logf_(f, "load_info");
	*off = f->load_offset;
	return 0;
}

static void *f_alloc(void *c, uint64_t size, uint64_t page)
{
	struct fake *f = c;
	void *p;

	if (page == (1ull << 30) && f->no_gib_pages)
		return NULL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	f->mapped += size;
	logf_(f, page == (1ull << 30) ? "alloc1G" : "alloc2M");
	return p;
}

static void f_free(void *c, void *a, uint64_t size)
{
	struct fake *f = c;

	f->mapped -= size;
	munmap(a, size);
}

static int f_region(void *c, int vm, void *a, uint64_t size, struct err *e)
{
	logf_(c, "region");
	return 0;
}

static int f_vcpu(void *c, int vm, uint32_t *cpu, struct err *e)
{
	struct fake *f = c;

	if (f->max_vcpus == 0)
		return err_set(e, 272, "NE_ADD_VCPU: No CPUs available in pool");
	f->max_vcpus--;
	logf_(f, "vcpu");
	return 0;
}

static int f_listen(void *c, struct err *e)
{
	struct fake *f = c;

	logf_(f, "hb_listen");
	f->listening = true;
	f->open_fds++;
	return f->next_fd++;
}

static int f_start(void *c, int vm, bool debug, uint64_t *cid, struct err *e)
{
	struct fake *f = c;

	logf_(f, debug ? "start_debug" : "start");
	f->listening_before_start = f->listening;
	*cid = 17;
	return 0;
}

static int f_wait(void *c, int lfd, int timeout, struct err *e)
{
	struct fake *f = c;

	logf_(f, "hb_wait");
	return f->heartbeat_ok ? 0 : err_set(e, 110, "timed out");
}

static void f_close(void *c, int fd)
{
	((struct fake *)c)->open_fds--;
}

static const struct ne_ops fake_ops = { f_open, f_create, f_offset, f_alloc, f_free, f_region,
					f_vcpu, f_listen, f_start, f_wait, f_close };

static int make_eif(size_t size)
{
	int fd = memfd_create("eif", 0);

	for (size_t i = 0; i < size; i++) {
		uint8_t b = (uint8_t)(i * 7);

		if (write(fd, &b, 1) != 1)
			abort();
	}
	return fd;
}

static void test_sequence_and_layout(void)
{
	struct fake f = { .next_fd = 10, .load_offset = 8u << 20, .max_vcpus = 8, .heartbeat_ok = true,
			  .no_gib_pages = true };
	struct ne_request req = { .eif_fd = make_eif(100000), .eif_size = 100000, .memory_mb = 64, .cpus = 2,
				  .threads_per_core = 2 };
	struct ne_enclave e;
	struct err err = { 0 };
	bool ok = true;

	CHECK_EQ_INT(ne_launch(&fake_ops, &f, &req, &e, &err), 0);
	/* 64 MiB = 32 regions of 2 MiB; the EIF sits at 8 MiB, i.e. at the start of region 4 */
	CHECK_EQ_INT(e.n_regions, 32);
	for (size_t i = 0; i < 100000; i++)
		ok &= ((uint8_t *)e.regions[4])[i] == (uint8_t)(i * 7);
	CHECK(ok);
	CHECK(f.listening_before_start);
	CHECK_EQ_INT(e.cid, 17);
	CHECK(strstr(f.log, "open;create_vm;load_info;alloc2M;") == f.log);
	CHECK(strstr(f.log, "region;vcpu;vcpu;hb_listen;start;hb_wait;") != NULL);
	ne_release(&fake_ops, &f, &e);
	CHECK_EQ_INT(f.mapped, 0);
	CHECK_EQ_INT(f.open_fds, 0);
	close(req.eif_fd);
}

static void test_gib_pages_first(void)
{
	struct fake f = { .next_fd = 10, .load_offset = 8u << 20, .max_vcpus = 8, .heartbeat_ok = true };
	struct ne_request req = { .eif_fd = make_eif(4096), .eif_size = 4096, .memory_mb = 1024 + 6, .cpus = 2,
				  .threads_per_core = 2, .debug = true };
	struct ne_enclave e;
	struct err err = { 0 };

	CHECK_EQ_INT(ne_launch(&fake_ops, &f, &req, &e, &err), 0);
	CHECK_EQ_INT(e.n_regions, 4); /* 1 GiB, then 3 x 2 MiB: regions sorted by size, largest first */
	CHECK_EQ_INT(e.sizes[0], 1ull << 30);
	CHECK_EQ_INT(e.sizes[3], 2u << 20);
	CHECK(strstr(f.log, "start_debug") != NULL);
	ne_release(&fake_ops, &f, &e);
	close(req.eif_fd);
}

static void expect_refusal(struct ne_request req, const char *msg)
{
	struct fake f = { .next_fd = 10, .max_vcpus = 8, .heartbeat_ok = true };
	struct ne_enclave e;
	struct err err = { 0 };

	CHECK(ne_launch(&fake_ops, &f, &req, &e, &err) < 0);
	CHECK(strstr(err.msg, msg) != NULL);
	if (!strstr(err.msg, msg))
		fprintf(stderr, "got \"%s\"\n", err.msg);
	CHECK_EQ_INT(f.log[0], 0); /* the driver was never touched */
}

static void test_checks_before_the_driver(void)
{
	struct ne_request base = { .eif_size = 100u << 20, .memory_mb = 300, .cpus = 2, .threads_per_core = 2 };
	struct ne_request r;

	expect_refusal(base, "At least 400 MB must be allocated (which is 4 times the EIF file size)");
	r = base;
	r.eif_size = 1 << 20;
	r.memory_mb = 32;
	expect_refusal(r, "at least 64MiB of memory are required, got: 32");
	r = base;
	r.eif_size = 1 << 20;
	r.cpus = 3;
	expect_refusal(r, "the CPU count must be a multiple of 2 here");
	r.cpus = 0;
	expect_refusal(r, "at least 1 CPU is required");
}

static void test_failures_release_everything(void)
{
	struct fake f = { .next_fd = 10, .load_offset = 8u << 20, .max_vcpus = 1, .heartbeat_ok = true,
			  .no_gib_pages = true };
	struct ne_request req = { .eif_fd = make_eif(4096), .eif_size = 4096, .memory_mb = 64, .cpus = 2,
				  .threads_per_core = 1 };
	struct ne_enclave e;
	struct err err = { 0 };

	CHECK(ne_launch(&fake_ops, &f, &req, &e, &err) < 0);
	CHECK(strstr(err.msg, "adding vCPU 2 of 2") != NULL);
	CHECK_EQ_INT(f.mapped, 0);
	CHECK_EQ_INT(f.open_fds, 0);
	f = (struct fake){ .next_fd = 10, .load_offset = 8u << 20, .max_vcpus = 8, .heartbeat_ok = false,
			   .no_gib_pages = true };
	CHECK(ne_launch(&fake_ops, &f, &req, &e, &err) < 0);
	CHECK(strstr(err.msg, "the enclave did not boot (no heartbeat)") != NULL);
	CHECK_EQ_INT(f.mapped, 0);
	CHECK_EQ_INT(f.open_fds, 0);
	close(req.eif_fd);
}

TEST_MAIN(T(test_sequence_and_layout), T(test_gib_pages_first), T(test_checks_before_the_driver),
	  T(test_failures_release_everything))
