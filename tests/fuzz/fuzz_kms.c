/* Fuzzes kms-local: key policies from clients (first byte even) and signed KMS JSON requests
 * to every operation (first byte odd: the second picks the operation, the rest is the body). */
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto/sigv4.h"
#include "kms/policy.h"
#include "kms/service.h"
#include "nitro/attestation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const ops[] = { "CreateKey", "DescribeKey", "ListKeys", "CreateAlias", "ListAliases",
				   "PutKeyPolicy", "GetKeyPolicy", "Encrypt", "Decrypt", "ReEncrypt",
				   "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPair",
				   "GenerateRandom", "Nope" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kms_service svc;
	static char dir[64];
	struct err err = { 0 };

	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz-kms-%d", (int)getpid());
		if (local_creds_open(dir, "us-east-1", &svc.master, &err) < 0 ||
		    kms_store_open(dir, svc.master.account, svc.master.region, &svc.store, &err) < 0)
			abort();
		svc.root = att_aws_root();
		svc.max_doc_age = 300;
		/* a key to find: "alias/f" */
		kms_store_add_alias(svc.store, "alias/f", kms_store_create(svc.store, "fuzz", NULL), &err);
	}
	if (size < 2)
		return 0;
	if (!(data[0] & 1)) {
		char *text = strndup((const char *)data + 1, size - 1), why[256];
		struct kms_policy_request r = { "kms:Decrypt", "arn:aws:iam::111122223333:root", "111122223333", true, { "" } };

		snprintf(r.pcr[0], sizeof(r.pcr[0]), "aa11");
		kms_policy_evaluate(text, &r, why, sizeof(why), &err);
		free(text);
		return 0;
	}
	{
		char target[64], date[17], *auth = NULL;
		struct http_request req = { 0 };
		struct sigv4_header h[4];
		struct sigv4_request sr;
		struct buf out = BUF_INIT;
		int status;

		snprintf(target, sizeof(target), "TrentService.%s", ops[data[1] % (sizeof(ops) / sizeof(ops[0]))]);
		sigv4_amz_date((long long)time(NULL), date);
		h[0] = (struct sigv4_header){ "host", "localhost" };
		h[1] = (struct sigv4_header){ "x-amz-date", date };
		h[2] = (struct sigv4_header){ "x-amz-target", target };
		sr = (struct sigv4_request){ "POST", "/", NULL, h, 3, data + 2, size - 2 };
		if (sigv4_sign(&sr, date, "us-east-1", "kms", svc.master.access_key, svc.master.secret_key, &auth, &err) < 0)
			abort();
		h[3] = (struct sigv4_header){ "authorization", auth };
		req.method = "POST";
		req.target = "/";
		req.minor_version = 1;
		for (int i = 0; i < 4; i++)
			req.headers[i] = (struct http_header){ h[i].name, h[i].value };
		req.n_headers = 4;
		kms_service_handle(&svc, &req, data + 2, size - 2, &status, &out);
		if (status == 200 && !out.len)
			abort();
		buf_free(&out);
		free(auth);
	}
	/* keep the store small: the fuzzer creates keys and aliases freely */
	while (svc.store->n_keys > 8) {
		free(svc.store->keys[svc.store->n_keys - 1].policy);
		svc.store->n_keys--;
	}
	if (svc.store->n_aliases > 8)
		svc.store->n_aliases = 1;
	return 0;
}
