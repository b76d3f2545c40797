/*
 * The Enclave Image Format (spec/nitro.md §1): writer, reader and verification.
 * Written by the CLI at build time; read by the CLI, enclaver-run and the local launcher.
 */
#ifndef ENCLAVER_EIF_EIF_H
#define ENCLAVER_EIF_EIF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "eif/pcr.h"

#define EIF_HDR_LEN 548
#define EIF_SEC_HDR_LEN 12
#define EIF_VERSION 4
#define EIF_MAX_SECTIONS 32
#define EIF_DEFAULT_MEM (1ull << 30)
#define EIF_DEFAULT_CPUS 2
#define EIF_FLAG_ARM64 1
#define EIF_MAX_SIGNATURE_LEN 32768
#define EIF_MAX_METADATA_LEN (1u << 20)
#define EIF_MAX_CMDLINE_LEN 65536

enum eif_section_type {
	EIF_SEC_INVALID = 0,
	EIF_SEC_KERNEL = 1,
	EIF_SEC_CMDLINE = 2,
	EIF_SEC_RAMDISK = 3,
	EIF_SEC_SIGNATURE = 4,
	EIF_SEC_METADATA = 5,
};

const char *eif_section_name(unsigned type);

struct eif_measurements {
	uint8_t pcr0[PCR_LEN];
	uint8_t pcr1[PCR_LEN];
	uint8_t pcr2[PCR_LEN];
	uint8_t pcr8[PCR_LEN];
	bool has_pcr8;
};

/* --- writing --- */

struct eif_writer;

/* Creates path's temporary file; nothing appears at path until eif_writer_finish succeeds. */
int eif_writer_open(struct eif_writer **out, const char *path, uint16_t flags, struct err *err);
/* Sections must come in nitro-cli's order: kernel, cmdline, metadata, ramdisk... */
int eif_writer_begin(struct eif_writer *w, enum eif_section_type type, struct err *err);
int eif_writer_write(struct eif_writer *w, const void *data, size_t len, struct err *err);
/* Gives back len bytes written into the open section, from offset off of its data. */
int eif_writer_read_back(struct eif_writer *w, uint64_t off, void *data, size_t len, struct err *err);
/* Bytes of the EIF so far, what is buffered included. */
uint64_t eif_writer_size(const struct eif_writer *w);
int eif_writer_end(struct eif_writer *w, struct err *err);
int eif_writer_add_bytes(struct eif_writer *w, enum eif_section_type type, const void *data,
			 size_t len, struct err *err);
int eif_writer_add_file(struct eif_writer *w, enum eif_section_type type, const char *path,
			struct err *err);
/* A section whose data is len bytes of fd from offset off. */
int eif_writer_add_fd_range(struct eif_writer *w, enum eif_section_type type, int fd, uint64_t off,
			    uint64_t len, struct err *err);
/* Appends the signature section when cert_pem/key_pem are given, writes the header and CRC,
 * and moves the file into place. Frees w whatever the outcome. */
int eif_writer_finish(struct eif_writer *w, const char *cert_pem, const char *key_pem,
		      struct eif_measurements *m, struct err *err);
void eif_writer_abort(struct eif_writer *w);

/* Metadata section JSON exactly as nitro-cli's EifIdentityInfo serializes it. */
struct eif_metadata {
	const char *image_name;
	const char *image_version;
	const char *build_time; /* RFC 3339 */
	const char *build_tool;
	const char *build_tool_version;
	const char *os;
	const char *kernel_version;
	const char *docker_info_json; /* JSON text or NULL for null */
	const char *custom_json;      /* JSON text or NULL for null */
};
/* Returns malloc'd compact JSON; fails on invalid docker/custom JSON. */
int eif_metadata_json(const struct eif_metadata *md, char **out, struct err *err);
/* SOURCE_DATE_EPOCH when set (reproducible builds), else now, as "YYYY-MM-DDTHH:MM:SS+00:00";
 * caller frees. */
char *eif_default_build_time(void);
/* Checks RFC 3339 date-time syntax (as chrono's to_rfc3339 produces and parses). */
bool eif_rfc3339_valid(const char *s);

/* {"Measurements": {["HashAlgorithm",] "PCR0", "PCR1", "PCR2"[, "PCR8"]}} as indented JSON, the
 * way nitro-cli (with HashAlgorithm) and upstream enclaver (without) print it; caller frees. */
char *eif_measurements_json(const struct eif_measurements *m, bool hash_algorithm);
/* The inner object alone, for callers composing larger JSON (a jansson json_t; caller decrefs). */
struct json_t;
struct json_t *eif_measurements_object(const struct eif_measurements *m, bool hash_algorithm);

/* --- reading --- */

struct eif_section_info {
	uint16_t type;
	uint16_t flags;
	uint64_t offset; /* of the 12-byte section header */
	uint64_t size;   /* of the data */
};

struct eif_info {
	uint16_t version;
	uint16_t flags;
	uint64_t default_mem;
	uint64_t default_cpus;
	uint16_t num_sections;
	struct eif_section_info sections[EIF_MAX_SECTIONS];
	size_t n_sections;
	uint64_t file_size;

	uint32_t crc_stored;
	uint32_t crc_computed;
	bool crc_ok;
	char structure_error[256]; /* empty when the section layout is valid */

	struct eif_measurements m;
	char *cmdline;  /* NUL-terminated */
	char *metadata; /* NUL-terminated JSON, or NULL */
	uint8_t *signature;
	size_t signature_len;

	bool has_signature;
	bool signature_ok;        /* COSE verifies and its payload is PCR0 (describe-eif) */
	char signature_error[256];
	char *signing_cert_pem;   /* NUL-terminated */
};

/* Reads the whole file once: CRC, PCRs, metadata, signature. Fails only when the file cannot
 * be read or is not an EIF at all; layout problems land in structure_error. */
int eif_read(const char *path, struct eif_info **out, struct err *err);
void eif_info_free(struct eif_info *info);
/* What loading for a run requires: valid layout, matching CRC, a valid signature if any. */
int eif_info_check(const struct eif_info *info, const char *path, struct err *err);
/* Index of the n-th section of a type, or -1. */
int eif_info_find(const struct eif_info *info, enum eif_section_type type, unsigned n);

/* Writes a copy of in_path signed with cert_pem/key_pem (replacing any signature) to out_path,
 * as nitro-cli sign-eif does. The input must pass eif_info_check apart from its signature. */
int eif_sign_file(const char *in_path, const char *out_path, const char *cert_pem, const char *key_pem,
		  struct eif_measurements *m, struct err *err);

#endif
