/*
 * Docker Engine API client for the CLI (`enclaver build` sources and outputs, `enclaver run`).
 * The daemon is found as the docker CLI finds it: DOCKER_HOST (unix:// or tcp://, with
 * DOCKER_TLS_VERIFY and DOCKER_CERT_PATH), else /var/run/docker.sock. Answers from the daemon
 * are parsed as untrusted JSON.
 */
#ifndef ENCLAVER_IMAGE_DOCKER_H
#define ENCLAVER_IMAGE_DOCKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "image/http_client.h"

struct docker;

/* Prepares a client; nothing is contacted yet. */
int docker_open(struct docker **out, struct err *err);
void docker_free(struct docker *d);
/* Where the daemon is, for messages ("unix:///var/run/docker.sock"). */
const char *docker_where(const struct docker *d);
/* true when a daemon answers /_ping within a second. */
bool docker_reachable(struct docker *d);

/* A JSON request (body may be NULL); *out receives the parsed answer (may be NULL when the body
 * is empty). A status >= 400 is an error carrying the daemon's message. */
int docker_json(struct docker *d, const char *method, const char *path, json_t *body, json_t **out,
		struct err *err);
/* A raw request with the caller's routing of the response (url and unix_socket are filled in). */
int docker_raw(struct docker *d, const char *path, struct hc_req *r, struct hc_resp *resp, struct err *err);

/* GET /images/{ref}/json: 1 found (*out set), 0 not present, < 0 error. */
int docker_image_inspect(struct docker *d, const char *ref, json_t **out, struct err *err);
/* POST /images/create: pulls ref, with progress lines on a terminal. */
int docker_image_pull(struct docker *d, const char *ref, struct err *err);
/* GET /images/{ref}/get: a docker-archive of the image into fd. */
int docker_image_save(struct docker *d, const char *ref, int fd, struct err *err);
/* POST /images/load of a docker-archive file. */
int docker_image_load(struct docker *d, const char *path, struct err *err);

/* Demultiplexes a container's log stream (frames of stream byte, 3 zeros, big-endian length,
 * bytes) to out_fd and err_fd; an on_data callback for hc_req. */
struct docker_demux {
	uint8_t head[8];
	size_t have;   /* header bytes held */
	uint32_t left; /* payload bytes still to come */
	int fd, out_fd, err_fd;
};
int docker_demux_feed(void *ctx, const void *data, size_t len, struct err *err);
/* One line of a JSON message stream (pull, load): progress shown, {"error"} returned as < 0. */
int docker_stream_message(const char *what, const char *line, size_t len, struct err *err);

/* POST /containers/create, named name (NULL: the daemon picks one); id receives the new
 * container's ID. */
int docker_container_create(struct docker *d, const char *name, json_t *body, char id[80], struct err *err);
/* POST /containers/{id}/stop, with seconds before the daemon kills it. */
int docker_container_stop(struct docker *d, const char *id, int seconds, struct err *err);
/* GET /containers/json of the containers carrying label (all: stopped ones too): *out is the
 * daemon's array. */
int docker_container_list(struct docker *d, const char *label, bool all, json_t **out, struct err *err);
/* action: "start", "stop", "kill" or "remove" (forced). */
int docker_container_do(struct docker *d, const char *id, const char *action, struct err *err);
/* Whether the (created) container's file system holds path: HEAD /containers/{id}/archive. */
int docker_container_has_path(struct docker *d, const char *id, const char *path, bool *has, struct err *err);
/* Blocks until the container exits; *code is its exit code. */
int docker_container_wait(struct docker *d, const char *id, int *code, struct err *err);
/* Copies the container's output to out_fd (its stdout) and our stderr; follow: until it ends. */
int docker_container_logs(struct docker *d, const char *id, bool follow, int out_fd, struct err *err);

#endif
