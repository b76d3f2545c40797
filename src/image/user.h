/*
 * An image's USER, resolved at build time as Docker's runtime (runc) resolves it when a container
 * starts: against the image's own /etc/passwd and /etc/group. The files come from image authors
 * and registries: every line is parsed with bounds, and a bad one is skipped as runc skips it.
 */
#ifndef ENCLAVER_IMAGE_USER_H
#define ENCLAVER_IMAGE_USER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define IMAGE_USER_MAX_GROUPS 64

struct image_user {
	uint32_t uid, gid;
	uint32_t groups[IMAGE_USER_MAX_GROUPS]; /* supplementary groups: the primary one first */
	size_t n_groups;
	char home[4096]; /* the passwd entry's, else "/" */
};

/* spec: "", "name", "uid", "name:group", "uid:gid", any mix. passwd and group: the files'
 * contents, NULL when the image has none. One error line names what is not there. */
int image_user_resolve(const char *spec, const char *passwd, size_t passwd_len, const char *group, size_t group_len,
		       struct image_user *out, struct err *err);

#endif
