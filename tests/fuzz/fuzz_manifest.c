/* Fuzzes the manifest loader and the JSON rendering of whatever it accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest *m = NULL;
	struct err err = { 0 };

	if (manifest_parse("fuzz.yaml", "/fuzz", data, size, &m, &err) == 0) {
		char *json = manifest_to_json(m);

		if (m->has_kms_proxy && !manifest_egress_enabled(m))
			abort(); /* validation must have refused this */
		for (size_t i = 0; i < m->n_ingress; i++)
			if (m->ingress[i].listen_port == 0 ||
			    (m->ingress[i].listen_port >= PORT_STATUS && m->ingress[i].listen_port <= PORT_EGRESS))
				abort();
		free(json);
		manifest_free(m);
	} else if (strncmp(err.msg, "fuzz.yaml", 9) != 0) {
		abort(); /* every error names the file */
	}
	return 0;
}
