/*
 * bench/attest: attestation documents per second from the NSM emulator (in process, and through
 * its socket as odyn asks for them), and verifications per second, each against the OpenSSL
 * operations it cannot avoid, measured in the same run: one P-384 ECDSA signature per document,
 * three P-384 ECDSA verifications per check (the document, the leaf, the intermediate).
 * Prints the rates and the ratios; `bench/attest.py` judges them.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "host/nsm_server.h"
#include "net/loop.h"
#include "nitro/attestation.h"
#include "nitro/devca.h"
#include "nitro/nsm.h"
#include "nitro/nsm_emu.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct loop *loop;

static void *serve(void *arg)
{
	struct err err = { 0 };

	loop_run(loop, &err);
	return NULL;
}

/* Runs fn until `secs` have passed; returns operations per second. */
#define RATE(secs, body)                                                  \
	({                                                                \
		double t0_ = now_s(), el_;                                 \
		long n_ = 0;                                        \
		do {                                                      \
			body;                                             \
			n_++;                                             \
		} while ((el_ = now_s() - t0_) < (secs));                  \
		(double)n_ / el_;                                      \
	})

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	char dir[] = "/tmp/bench-attest-XXXXXX", sock[128], cmd[128];
	struct devca *ca = NULL;
	struct nsm_emu emu;
	struct nsm_server *srv = NULL;
	struct nsm *client = NULL;
	struct err err = { 0 };
	uint8_t pcr[48] = { 7 }, nonce[32] = { 1 };
	static const uint8_t att_req[] = { /* {"Attestation":{"user_data":null,"nonce":h'00..',"public_key":null}} */
		0xa1, 0x6b, 'A', 't', 't', 'e', 's', 't', 'a', 't', 'i', 'o', 'n', 0xa3,
		0x69, 'u', 's', 'e', 'r', '_', 'd', 'a', 't', 'a', 0xf6,
		0x65, 'n', 'o', 'n', 'c', 'e', 0x44, 1, 2, 3, 4,
		0x6a, 'p', 'u', 'b', 'l', 'i', 'c', '_', 'k', 'e', 'y', 0xf6,
	};
	struct buf out = BUF_INIT, doc = BUF_INIT;
	struct nsm_bytes nb = { nonce, sizeof(nonce) };
	EVP_PKEY *key = EVP_EC_gen("P-384");
	uint8_t digest[48] = { 3 }, sig[256];
	size_t sig_len = sizeof(sig);
	double r_sign, r_verify, r_emu, r_sock, r_check;
	pthread_t t;
	struct att_doc d;

	if (!mkdtemp(dir) || devca_open(dir, &ca, &err) < 0) {
		fprintf(stderr, "bench attest: %s\n", err.msg);
		return 1;
	}
	{
		struct nsm_emu_config c = { pcr, pcr, pcr, NULL, NULL, "i-0123456789abcdef0", false, ca };

		nsm_emu_init(&emu, &c);
	}
	/* the baselines: raw P-384 ECDSA over a SHA-384 digest */
	r_sign = RATE(secs, {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);

		sig_len = sizeof(sig);
		EVP_PKEY_sign_init(c);
		EVP_PKEY_sign(c, sig, &sig_len, digest, sizeof(digest));
		EVP_PKEY_CTX_free(c);
	});
	r_verify = RATE(secs, {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);

		EVP_PKEY_verify_init(c);
		if (EVP_PKEY_verify(c, sig, sig_len, digest, sizeof(digest)) != 1)
			abort();
		EVP_PKEY_CTX_free(c);
	});
	r_emu = RATE(secs, {
		buf_reset(&out);
		nsm_emu_handle(&emu, att_req, sizeof(att_req), &out);
	});
	snprintf(sock, sizeof(sock), "%s/nsm.sock", dir);
	if (loop_new(&loop, &err) < 0 || nsm_server_start(loop, sock, &emu, &srv, &err) < 0 ||
	    nsm_open_socket(sock, &client, &err) < 0) {
		fprintf(stderr, "bench attest: %s\n", err.msg);
		return 1;
	}
	pthread_create(&t, NULL, serve, NULL);
	pthread_detach(t);
	r_sock = RATE(secs, {
		buf_reset(&doc);
		if (nsm_attestation(client, NULL, &nb, NULL, &doc, &err) < 0)
			abort();
	});
	if (att_parse(doc.data, doc.len, &d, &err) < 0)
		abort();
	r_check = RATE(secs, {
		struct att_doc v;

		if (att_parse(doc.data, doc.len, &v, &err) < 0 || att_verify(&v, ca->root, time(NULL), &err) < 0)
			abort();
	});
	printf("p384_signs_per_s %.0f\n", r_sign);
	printf("p384_verifies_per_s %.0f\n", r_verify);
	printf("emulator_documents_per_s %.0f\n", r_emu);
	printf("socket_documents_per_s %.0f\n", r_sock);
	printf("verifications_per_s %.0f\n", r_check);
	printf("document_bytes %zu\n", doc.len);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) != 0;
}
