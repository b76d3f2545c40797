/* Fuzzes the NSM emulator's request decoder and handlers with what an enclave could send. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "nitro/devca.h"
#include "nitro/nsm_emu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nsm_emu emu;
	static struct devca *ca;
	static const uint8_t pcr[48] = { 1 };
	struct buf out = BUF_INIT;

	if (!ca) {
		char dir[64];
		struct err err = { 0 };
		struct nsm_emu_config c = { pcr, pcr, pcr, NULL, NULL, "i-0123456789abcdef0", false, NULL };

		snprintf(dir, sizeof(dir), "/tmp/fuzz-nsm-%d", (int)getpid());
		if (devca_open(dir, &ca, &err) < 0)
			abort();
		c.ca = ca;
		nsm_emu_init(&emu, &c);
	}
	/* a fresh emulator now and then, so that locks and extends do not saturate */
	if (size && data[0] == 0xff) {
		struct nsm_emu_config c = { pcr, pcr, pcr, NULL, NULL, "i-0123456789abcdef0", false, ca };

		nsm_emu_init(&emu, &c);
	}
	nsm_emu_handle(&emu, data, size, &out);
	if (!out.len)
		abort(); /* every request gets an answer */
	buf_free(&out);
	return 0;
}
