/* Fuzzes the attestation document parser and verifier (COSE_Sign1, payload, certificates). */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "nitro/attestation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static X509 *root;
	struct att_doc doc;
	struct err err = { 0 };

	if (!root)
		root = att_aws_root();
	if (att_parse(data, size, &doc, &err) == 0) {
		att_is_debug(&doc);
		att_verify(&doc, root, (time_t)(doc.timestamp / 1000), &err);
	}
	return 0;
}
