/* nsm_doc STATE_DIR PCR0_HEX SPKI_DER_FILE OUT [debug]: an attestation document from the NSM
 * emulator (development CA in STATE_DIR) with the given PCR0 and public key, as a local
 * enclave's NSM would give it. A test helper for kms-local's Recipient checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "base/hex.h"
#include "codec/cbor.h"
#include "eif/pcr.h"
#include "nitro/devca.h"
#include "nitro/nsm_emu.h"

int main(int argc, char **argv)
{
	struct devca *ca = NULL;
	struct err err = { 0 };
	struct nsm_emu emu;
	uint8_t pcr0[48], other[48];
	struct buf spki = BUF_INIT, req = BUF_INIT, resp = BUF_INIT;
	struct cbor_item *it = NULL;
	const struct cbor_item *doc;

	if (argc < 5 || hex_decode(argv[2], pcr0, sizeof(pcr0)) != 48) {
		fprintf(stderr, "usage: nsm_doc STATE_DIR PCR0_HEX SPKI_DER_FILE OUT [debug]\n");
		return 2;
	}
	if (devca_open(argv[1], &ca, &err) < 0 || fs_read_file(argv[3], 65536, &spki, &err) < 0) {
		fprintf(stderr, "nsm_doc: %s\n", err.msg);
		return 1;
	}
	pcr_of_bytes("other", 5, other);
	{
		struct nsm_emu_config c = { pcr0, other, other, NULL, NULL, "i-0123456789abcdef0",
					    argc > 5 && !strcmp(argv[5], "debug"), ca };

		nsm_emu_init(&emu, &c);
	}
	cbor_put_map(&req, 1);
	cbor_put_text(&req, "Attestation");
	cbor_put_map(&req, 3);
	cbor_put_text(&req, "user_data");
	cbor_put_null(&req);
	cbor_put_text(&req, "nonce");
	cbor_put_null(&req);
	cbor_put_text(&req, "public_key");
	cbor_put_bytes(&req, spki.data, spki.len);
	nsm_emu_handle(&emu, req.data, req.len, &resp);
	if (cbor_decode(resp.data, resp.len, 8, &it, &err) < 0 ||
	    !(doc = cbor_map_get(cbor_map_get(it, "Attestation"), "document")) ||
	    fs_write_file_atomic(argv[4], doc->data, doc->len, 0644, &err) < 0) {
		fprintf(stderr, "nsm_doc: no document: %s\n", err.msg);
		return 1;
	}
	cbor_free(it);
	devca_free(ca);
	buf_free(&spki);
	buf_free(&req);
	buf_free(&resp);
	return 0;
}
