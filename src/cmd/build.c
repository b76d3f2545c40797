/*
 * enclaver build: an app image and a manifest in, an EIF out (spec/enclaver-compat.md §3). No
 * Docker build and no nitro-cli: the image's layers are merged straight into the customer
 * ramdisk while the EIF is written and measured.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "cmd/cmd.h"
#include "eif/bootkit.h"
#include "eif/eif.h"
#include "image/docker.h"
#include "image/ramdisk.h"
#include "image/bootkit_image.h"
#include "image/release.h"
#include "image/source.h"
#include "manifest/manifest.h"

#define AWS_BLOBS "/usr/share/nitro_enclaves/blobs"
/* scripts/install-deps.sh: Debian's cloud kernel and the modules it needs to boot as an enclave */
#define DEFAULT_KIT "/usr/local/share/enclaver/bootkit/x86_64"
/* AWS's cmdline, then the boot parameters that make a distribution kernel behave as AWS's enclave
 * kernel is built (aws-nitro-enclaves-sdk-bootstrap's microvm config): no crypto self-tests at
 * boot (CRYPTO_MANAGER_DISABLE_TESTS), no KASLR (RANDOMIZE_BASE), 4-level paging (X86_5LEVEL),
 * no zeroing of every allocation (INIT_ON_ALLOC_DEFAULT_ON) and no hardened usercopy. Measured
 * under software emulation: the boot about a second shorter, vsock half again as fast. */
#define DEFAULT_CMDLINE                                                                             \
	"reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp " \
	"i8042.dumbkbd random.trust_cpu=on cryptomgr.notests nokaslr no5lvl init_on_alloc=0 "   \
	"hardened_usercopy=off"

struct bootkit {
	char kernel[PATH_MAX];
	char init[PATH_MAX];
	char nsm[PATH_MAX]; /* empty: none */
	char modules[PATH_MAX]; /* empty: none */
	struct buf cmdline;
	char origin[PATH_MAX + 400];
	bool nitro_known;   /* a kit known to boot on Nitro: AWS's */
	char tmp[PATH_MAX]; /* a kit read from an image: its folder, removed after the build */
	int tmp_partial;
	struct bootkit_image from;
};

static int read_cmdline(const char *path, struct bootkit *bk, struct err *err)
{
	if (fs_read_file(path, 65536, &bk->cmdline, err) < 0)
		return -1;
	while (bk->cmdline.len && strchr(" \n\r\t", bk->cmdline.data[bk->cmdline.len - 1]))
		bk->cmdline.len--;
	return 0;
}

/* A kit in AWS's blobs layout: a folder of ours, filled from an image. */
static int pick_image_bootkit(const char *spec, struct bootkit *bk, struct err *err)
{
	snprintf(bk->tmp, sizeof(bk->tmp), "%s/enclaver-bootkit-XXXXXX", fs_tmp_dir());
	if (!mkdtemp(bk->tmp)) {
		bk->tmp[0] = 0;
		return err_sys(err, "boot kit folder");
	}
	bk->tmp_partial = fs_partial_add(bk->tmp);
	if (bootkit_from_image(spec, bk->tmp, &bk->from, err) < 0)
		return -1;
	snprintf(bk->kernel, sizeof(bk->kernel), "%s/bzImage", bk->tmp);
	snprintf(bk->init, sizeof(bk->init), "%s/init", bk->tmp);
	if (bk->from.has_nsm)
		snprintf(bk->nsm, sizeof(bk->nsm), "%s/nsm.ko", bk->tmp);
	if (bk->from.has_modules)
		snprintf(bk->modules, sizeof(bk->modules), "%s/modules", bk->tmp);
	snprintf(bk->origin, sizeof(bk->origin), "image %s (%s%s%s)", spec, bk->from.id,
		 bk->from.repo_digest[0] ? ", " : "", bk->from.repo_digest);
	/* AWS's kits carry the NSM driver as nsm.ko; a kit without it is not theirs */
	bk->nitro_known = bk->from.has_nsm;
	{
		char path[PATH_MAX + 16];

		snprintf(path, sizeof(path), "%s/cmdline", bk->tmp);
		return read_cmdline(path, bk, err);
	}
}

static void bootkit_done(struct bootkit *bk)
{
	struct err err = { 0 };

	if (bk->tmp[0]) {
		fs_remove_tree(bk->tmp, &err);
		fs_partial_remove(bk->tmp_partial);
	}
	buf_free(&bk->cmdline);
}

static int pick_bootkit(const char *kernel, const char *image, struct bootkit *bk, struct err *err)
{
	if (image)
		return pick_image_bootkit(image, bk, err);
	if (!kernel && access(AWS_BLOBS "/bzImage", R_OK) == 0) {
		/* AWS's blobs: PCR1 then matches every nitro-cli-built enclave on this host */
		snprintf(bk->kernel, sizeof(bk->kernel), AWS_BLOBS "/bzImage");
		snprintf(bk->init, sizeof(bk->init), AWS_BLOBS "/init");
		snprintf(bk->nsm, sizeof(bk->nsm), AWS_BLOBS "/nsm.ko");
		if (read_cmdline(AWS_BLOBS "/cmdline", bk, err) < 0)
			return -1;
		snprintf(bk->origin, sizeof(bk->origin), "AWS Nitro Enclaves blobs (" AWS_BLOBS ")");
		bk->nitro_known = true;
		return 0;
	}
	if (!kernel)
		kernel = getenv("ENCLAVER_KERNEL");
	if ((!kernel || !*kernel) && access(DEFAULT_KIT "/bzImage", R_OK) == 0) {
		kernel = DEFAULT_KIT "/bzImage";
		snprintf(bk->modules, sizeof(bk->modules), DEFAULT_KIT "/modules");
	}
	if (!kernel || !*kernel)
		return err_set(err, ENOENT,
			       "no enclave kernel: install AWS's aws-nitro-enclaves-cli-devel blobs, name a boot kit image with --bootkit IMAGE or a kernel with --kernel FILE or ENCLAVER_KERNEL, or install the default kit with scripts/install-deps.sh");
	if (access(kernel, R_OK) < 0)
		return err_sys(err, "kernel %s", kernel);
	snprintf(bk->kernel, sizeof(bk->kernel), "%s", kernel);
	fs_beside_self("enclaver-init", bk->init, sizeof(bk->init));
	if (access(bk->init, R_OK) < 0)
		return err_set(err, ENOENT, "enclaver-init is not installed beside enclaver (%s)", bk->init);
	buf_append_str(&bk->cmdline, DEFAULT_CMDLINE);
	snprintf(bk->origin, sizeof(bk->origin), "kernel %s with enclaver-init%s", kernel,
		 bk->modules[0] ? " and its boot modules" : "");
	return 0;
}

/* Nitro refuses an enclave whose memory is less than 4 times its EIF (spec/nitro.md §4), and a
 * local enclave unpacks the ramdisks into memory_mb. Past the EIF size memory_mb allows, nothing
 * more is written (a small archive can expand without bound): the rest is only counted, to say
 * how much memory the image needs. */
#define EIF_MEMORY_FACTOR 4

struct sink_ctx {
	struct eif_writer *w;
	uint64_t limit; /* the largest EIF memory_mb allows */
	uint64_t over;	/* bytes counted, not written, past the limit */
};

static int eif_read_back(void *ctx, uint64_t off, void *data, size_t len, struct err *err)
{
	struct sink_ctx *s = ctx;

	if (s->over) { /* the build fails for its size anyway: nothing was kept to read */
		memset(data, 0, len);
		return 0;
	}
	return eif_writer_read_back(s->w, off, data, len, err);
}

static int eif_sink(void *ctx, const void *data, size_t len, struct err *err)
{
	struct sink_ctx *s = ctx;

	if (s->over || eif_writer_size(s->w) + len > s->limit) {
		s->over += len;
		return 0;
	}
	return eif_writer_write(s->w, data, len, err);
}

int cmd_build(int argc, char **argv)
{
	enum { O_EIF_ONLY = 256, O_KERNEL, O_ODYN, O_OUTPUT, O_JSON, O_PULL, O_RUN, O_BOOTKIT };
	static const struct option opts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "pull", no_argument, NULL, O_PULL },
		{ "json", no_argument, NULL, O_JSON },
		{ "eif-only", required_argument, NULL, O_EIF_ONLY },
		{ "output", required_argument, NULL, O_OUTPUT },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "bootkit", required_argument, NULL, O_BOOTKIT },
		{ "odyn", required_argument, NULL, O_ODYN },
		{ "enclaver-run", required_argument, NULL, O_RUN },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = "enclaver.yaml", *enclaver_run = NULL, *eif_only = NULL, *kernel = NULL, *bootkit = NULL, *odyn = NULL, *output = NULL;
	char eif_tmp[PATH_MAX] = "", image_id[80] = "", archive_tmp[PATH_MAX] = "", default_archive[PATH_MAX];
	bool as_json = false;
	struct image_opts io = { 0 };
	enum { OUT_EIF, OUT_DAEMON, OUT_ARCHIVE, OUT_OCI } out_kind = OUT_DAEMON;
	const char *out_path = NULL;
	struct docker *dk = NULL;
	char odyn_default[PATH_MAX], *name = NULL, real[PATH_MAX];
	struct bootkit bk = { .cmdline = BUF_INIT };
	struct manifest *m = NULL;
	struct image *img = NULL;
	struct eif_writer *w = NULL;
	struct eif_measurements meas;
	struct err err = { 0 };
	struct sink_ctx sink;
	struct cpio_writer cw;
	struct ramdisk_inputs ri;
	char *canon = NULL;
	struct eif_metadata md = { .build_tool = "enclaver", .build_tool_version = ENCLAVER_VERSION,
				   .os = "Linux", .kernel_version = "unknown" };
	char *md_json = NULL, *build_time = NULL;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': file = optarg; break;
		case O_EIF_ONLY: eif_only = optarg; break;
		case O_KERNEL: kernel = optarg; break;
		case O_BOOTKIT: bootkit = optarg; break;
		case O_ODYN: odyn = optarg; break;
		case O_RUN: enclaver_run = optarg; break;
		case O_OUTPUT: output = optarg; break;
		case O_JSON: as_json = true; break;
		case O_PULL: io.pull = true; break;
		case 'h':
			return cmd_help("build");
		default:
			return cmd_bad_option("build", argv, "f:h", opts);
		}
	}
	if (optind != argc) {
		log_error("unexpected argument \"%s\"", argv[optind]);
		return EXIT_USAGE;
	}
	if (eif_only && output) {
		log_error("--eif-only and --output do not go together: --eif-only builds no release image");
		return EXIT_USAGE;
	}
	if (eif_only) {
		out_kind = OUT_EIF;
	} else if (output && !strncmp(output, "docker-archive:", 15) && output[15]) {
		out_kind = OUT_ARCHIVE;
		out_path = output + 15;
	} else if (output && !strncmp(output, "oci:", 4) && output[4]) {
		out_kind = OUT_OCI;
		out_path = output + 4;
	} else if (output && strcmp(output, "docker")) {
		log_error("--output %s: use docker, docker-archive:PATH or oci:DIR", output);
		return EXIT_USAGE;
	}
	if (out_kind == OUT_DAEMON) {
		/* checked before the build, which can take a while */
		if (docker_open(&dk, &err) < 0) {
			log_error("%s", err.msg);
			return 1;
		}
		if (!docker_reachable(dk)) {
			/* no daemon to load it into: a docker-archive in the current folder instead */
			log_warn("no Docker daemon answers at %s: the release image is written as a docker-archive (name another place with --output docker-archive:PATH or oci:DIR)",
				 docker_where(dk));
			docker_free(dk);
			dk = NULL;
			out_kind = OUT_ARCHIVE;
		}
	}
	if (manifest_load(file, &m, &err) < 0)
		goto fail;
	if (out_kind == OUT_ARCHIVE && !out_path) {
		/* "hello-enclave:latest" -> hello-enclave_latest.tar */
		snprintf(default_archive, sizeof(default_archive), "%s.tar", m->target);
		for (char *p = default_archive; *p; p++)
			if (*p == '/' || *p == ':' || *p == '@')
				*p = '_';
		out_path = default_archive;
	}
	if (out_kind != OUT_EIF) {
		/* the EIF goes into the image; it is built beside the output (or in TMPDIR) first */
		if (out_path)
			snprintf(eif_tmp, sizeof(eif_tmp), "%s.eif.tmp", out_path);
		else
			snprintf(eif_tmp, sizeof(eif_tmp), "%s/enclaver-%d.eif", fs_tmp_dir(), (int)getpid());
		eif_only = eif_tmp;
		fs_partial_add(eif_tmp); /* an intermediate file: never left behind */
	}
	if (!odyn) {
		fs_beside_self("odyn", odyn_default, sizeof(odyn_default));
		odyn = odyn_default;
	}
	if (kernel && bootkit) {
		log_error("--kernel and --bootkit both name a kernel: give one");
		rc = EXIT_USAGE;
		goto out;
	}
	if (pick_bootkit(kernel, bootkit, &bk, &err) < 0 || image_open(m->source_app, &io, &img, &err) < 0)
		goto fail;
	if (!bk.nitro_known)
		log_warn("boot kit %s is not known to boot on Nitro (it is not AWS's: no nsm.ko): this EIF boots in local and VM enclaves; for Nitro hosts build with AWS's kit (aws-nitro-enclaves-cli-devel, or --bootkit IMAGE with /%s)",
			 bk.origin, BOOTKIT_IMAGE_DIR);
	if (!m->n_ingress)
		log_warn("no ingress specified in manifest; there will be no way to connect to this enclave");
	if (!m->has_egress)
		log_warn("no egress specified in manifest; this enclave will have no outbound network access");
	log_info("app %s (%s), boot kit: %s", m->source_app, img->id ? img->id : "?", bk.origin);
	/* upstream's images for these hold its Rust binaries; ours are the ones built with enclaver */
	if (m->source_odyn)
		log_info("sources.odyn (%s) is not read: the EIF gets %s (name another with --odyn)", m->source_odyn, odyn);
	if (m->source_sleeve && out_kind != OUT_EIF)
		log_info("sources.sleeve (%s) is not read: the release image is written from scratch with enclaver-run",
			 m->source_sleeve);
	build_time = eif_default_build_time();
	name = strdup(m->target);
	name[strcspn(name, ":@")] = 0;
	md.image_name = name;
	md.image_version = img->id && !strncmp(img->id, "sha256:", 7) ? img->id + 7 : "unknown";
	md.build_time = build_time;
	if (eif_metadata_json(&md, &md_json, &err) < 0 || eif_writer_open(&w, eif_only, 0, &err) < 0 ||
	    eif_writer_add_file(w, EIF_SEC_KERNEL, bk.kernel, &err) < 0 ||
	    eif_writer_add_bytes(w, EIF_SEC_CMDLINE, bk.cmdline.data, bk.cmdline.len, &err) < 0 ||
	    eif_writer_add_bytes(w, EIF_SEC_METADATA, md_json, strlen(md_json), &err) < 0)
		goto fail;
	sink = (struct sink_ctx){ w, (uint64_t)m->memory_mb * (1 << 20) / EIF_MEMORY_FACTOR, 0 };
	/* both ramdisks are streamed into the EIF as they are written, hashed on the way */
	cpio_writer_init(&cw, eif_sink, &sink);
	if (eif_writer_begin(w, EIF_SEC_RAMDISK, &err) < 0 ||
	    bootkit_write_bootstrap(&cw, bk.init, bk.nsm[0] ? bk.nsm : NULL, bk.modules[0] ? bk.modules : NULL, &err) < 0 || eif_writer_end(w, &err) < 0)
		goto fail;
	cpio_writer_init(&cw, eif_sink, &sink);
	cw.read_back = eif_read_back;
	canon = manifest_canonical(m);
	ri = (struct ramdisk_inputs){ img, odyn, (const uint8_t *)canon, strlen(canon) };
	if (eif_writer_begin(w, EIF_SEC_RAMDISK, &err) < 0 || ramdisk_write_customer(&cw, &ri, &err) < 0 ||
	    eif_writer_end(w, &err) < 0)
		goto fail;
	if (sink.over) {
		uint64_t need = (eif_writer_size(w) + sink.over) * EIF_MEMORY_FACTOR;

		err_set(&err, EFBIG,
			"%s: defaults.memory_mb = %d is too small for this image: its EIF would be %llu MiB, and an enclave "
			"needs %d times that: set memory_mb to at least %llu",
			m->path, m->memory_mb, (unsigned long long)((eif_writer_size(w) + sink.over) >> 20),
			EIF_MEMORY_FACTOR, (unsigned long long)((need + (1 << 20) - 1) >> 20));
		goto fail;
	}
	rc = eif_writer_finish(w, m->has_signature ? m->signature_certificate : NULL,
			       m->has_signature ? m->signature_key : NULL, &meas, &err);
	w = NULL;
	if (rc < 0)
		goto fail;
	if (eif_tmp[0]) {
		char ca[PATH_MAX] = "/etc/ssl/certs/ca-certificates.crt";
		struct release_inputs rel = { m->target, NULL, access(ca, R_OK) == 0 ? ca : NULL, eif_tmp,
					      m->raw.data, m->raw.len, 0, NULL, 0 };
		char run_bin[PATH_MAX];
		const char *sde = getenv("SOURCE_DATE_EPOCH");
		uint16_t *ports = calloc(m->n_ingress + 1, sizeof(*ports));

		if (!ports)
			abort();
		for (size_t i = 0; i < m->n_ingress; i++)
			ports[i] = m->ingress[i].listen_port;
		rel.ports = ports;
		rel.n_ports = m->n_ingress;

		if (enclaver_run) {
			snprintf(run_bin, sizeof(run_bin), "%s", enclaver_run);
		} else {
			fs_beside_self("enclaver-run", run_bin, sizeof(run_bin));
		}
		rel.enclaver_run = run_bin;
		rel.mtime = sde && *sde ? (time_t)strtoll(sde, NULL, 10) : 0;
		if (out_kind == OUT_ARCHIVE) {
			rc = release_write_docker_archive(&rel, out_path, image_id, &err);
		} else if (out_kind == OUT_OCI) {
			rc = release_write_oci(&rel, out_path, image_id, &err);
		} else {
			snprintf(archive_tmp, sizeof(archive_tmp), "%s/enclaver-release-%d.tar", fs_tmp_dir(),
				 (int)getpid());
			fs_partial_add(archive_tmp);
			rc = release_write_docker_archive(&rel, archive_tmp, image_id, &err);
			if (rc == 0)
				rc = docker_image_load(dk, archive_tmp, &err);
			unlink(archive_tmp);
		}
		free(ports);
		unlink(eif_tmp);
		if (rc < 0)
			goto fail;
		if (out_kind == OUT_DAEMON)
			log_info("release image %s loaded into the Docker daemon at %s", m->target, docker_where(dk));
		else
			log_info("release image %s written to %s%s", m->target, out_kind == OUT_OCI ? "oci:" : "docker-archive:",
				 out_path);
	}
	if (as_json) {
		/* upstream v0.6.1's BuildSummary */
		json_t *sum = json_object(), *srcs = json_object(), *app = json_object();
		char *text;

		json_object_set_new(app, "ID", json_string(img->id ? img->id : ""));
		if (img->repo_digest)
			json_object_set_new(app, "RepoDigest", json_string(img->repo_digest));
		json_object_set_new(srcs, "App", app);
		if (bk.tmp[0]) {
			json_t *kit = json_pack("{s:s}", "ID", bk.from.id);

			if (bk.from.repo_digest[0])
				json_object_set_new(kit, "RepoDigest", json_string(bk.from.repo_digest));
			json_object_set_new(srcs, "BootKit", kit);
		}
		json_object_set_new(sum, "Sources", srcs);
		json_object_set_new(sum, "Measurements", eif_measurements_object(&meas, false));
		if (image_id[0])
			json_object_set_new(sum, "Image", json_pack("{s:s, s:s}", "ID", image_id, "Name", m->target));
		else
			json_object_set_new(sum, "EIF", json_string(realpath(eif_only, real) ? real : eif_only));
		text = json_dumps(sum, JSON_INDENT(2));
		printf("%s\n", text);
		free(text);
		json_decref(sum);
	} else {
		char *json = eif_measurements_json(&meas, false);

		if (image_id[0])
			printf("Built Release Image: %s (%s)\nEIF Info:\n", image_id, m->target);
		else
			printf("Built EIF: %s\nEIF Info:\n", realpath(eif_only, real) ? real : eif_only);
		printf("%s\n", json);
		free(json);
	}
	rc = 0;
	goto out;
fail:
	eif_writer_abort(w);
	log_error("%s", err.msg);
	rc = 1;
out:
	free(canon);
	free(md_json);
	free(build_time);
	free(name);
	bootkit_done(&bk);
	image_free(img);
	manifest_free(m);
	docker_free(dk);
	return rc;
}
