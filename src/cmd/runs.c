/* The named runs of enclaver run --eif (see runs.h). Runs in enclaver, on the user's own state
 * folder. */
#include "cmd/runs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "nitro/devca.h"

#define RUN_JSON_MAX (64 * 1024)

bool runs_name_ok(const char *name)
{
	size_t len = strlen(name);

	/* one path component, never "." or ".." nor a hidden folder: the first character is
	 * alphanumeric, the rest cannot hold '/' */
	if (len < 2 || len > RUN_NAME_MAX)
		return false;
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= '0' && name[0] <= '9')))
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == len;
}

static void runs_root(char *out, size_t size)
{
	char state[4096];

	devca_state_dir(state, sizeof(state));
	snprintf(out, size, "%s/runs", state);
}

/* The runs folder is believed only when it is this user's and nobody else may write in it: a
 * record planted there would have enclaver stop signal a process of the attacker's choosing. */
static int root_is_ours(const char *root, struct err *err)
{
	struct stat st;

	if (lstat(root, &st) < 0)
		return errno == ENOENT ? 0 : err_sys(err, "%s", root);
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022))
		return err_set(err, EPERM,
			       "%s: not this user's own folder (owner %u, mode %03o): enclaver acts on no run recorded "
			       "there; remove it, or set ENCLAVER_STATE_DIR to a folder of your own",
			       root, (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
	return 0;
}

bool runs_is_runner(pid_t pid)
{
	char path[64], comm[32] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	if (n <= 0)
		return false;
	comm[strcspn(comm, "\n")] = 0;
	return !strcmp(comm, "enclaver-run") || !strcmp(comm, "enclaver");
}

unsigned long long runs_start_time(pid_t pid)
{
	char path[64], text[1024], *p;
	unsigned long long start = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = 0;
	/* the command name may hold spaces and parentheses: fields count from the last ')' */
	p = strrchr(text, ')');
	if (!p)
		return 0;
	p++;
	for (int field = 3; field <= 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
		if (field == 22 && p) /* p is at field 22, starttime */
			start = strtoull(p, NULL, 10);
	}
	return start;
}

bool runs_alive(pid_t pid, unsigned long long start)
{
	/* a pid alone may be reused by anything: the start time names the process */
	return pid > 0 && start && runs_start_time(pid) == start;
}

static void now_rfc3339(char out[32])
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int write_json(const char *path, json_t *j, struct err *err)
{
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	int rc;

	if (!text)
		abort();
	rc = fs_write_file_atomic(path, text, strlen(text), 0600, err);
	free(text);
	return rc;
}

static json_t *read_json(const char *path)
{
	struct buf b = { 0 };
	struct err err = { 0 };
	json_t *j;

	if (fs_read_regular(path, RUN_JSON_MAX, &b, &err) < 0)
		return NULL;
	j = json_loadb((const char *)b.data, b.len, 0, NULL);
	buf_free(&b);
	return j;
}

static void copy_str(char *out, size_t size, json_t *v)
{
	snprintf(out, size, "%s", json_is_string(v) ? json_string_value(v) : "");
}

/* Reads dir as run `name`; false when it holds no run.json we can read. */
static bool read_run(const char *dir, const char *name, struct run_info *ri)
{
	char path[PATH_MAX + 16];
	json_t *j, *ex;
	pid_t sup;
	unsigned long long sup_start;

	memset(ri, 0, sizeof(*ri));
	snprintf(ri->name, sizeof(ri->name), "%s", name);
	snprintf(ri->dir, sizeof(ri->dir), "%s", dir);
	snprintf(path, sizeof(path), "%s/run.json", dir);
	j = read_json(path);
	if (!j)
		return false;
	ri->pid = (pid_t)json_integer_value(json_object_get(j, "Pid"));
	ri->start = (unsigned long long)json_integer_value(json_object_get(j, "Start"));
	ri->detached = json_is_true(json_object_get(j, "Detached"));
	sup = (pid_t)json_integer_value(json_object_get(j, "SupervisorPid"));
	sup_start = (unsigned long long)json_integer_value(json_object_get(j, "SupervisorStart"));
	copy_str(ri->eif, sizeof(ri->eif), json_object_get(j, "Eif"));
	copy_str(ri->ports, sizeof(ri->ports), json_object_get(j, "Ports"));
	copy_str(ri->created, sizeof(ri->created), json_object_get(j, "Created"));
	json_decref(j);
	snprintf(path, sizeof(path), "%s/exit", dir);
	ex = read_json(path);
	if (ex) {
		ri->ended = true;
		ri->exit_code = (int)json_integer_value(json_object_get(ex, "ExitCode"));
		copy_str(ri->finished, sizeof(ri->finished), json_object_get(ex, "Finished"));
		json_decref(ex);
	}
	ri->running = !ri->ended && (runs_alive(ri->pid, ri->start) || runs_alive(sup, sup_start));
	return true;
}

/* Ended without a record: a foreground run (its output went to its terminal) or one killed. */
static bool stale(const struct run_info *ri)
{
	return !ri->running && !ri->ended;
}

/* Moves dir out of the way under a unique name, then removes it: two takers cannot both win. */
static void take_away(const char *root, const char *dir)
{
	char gone[PATH_MAX];
	struct err err = { 0 };

	snprintf(gone, sizeof(gone), "%s/.gone-%d-%ld", root, (int)getpid(), (long)random());
	if (rename(dir, gone) == 0)
		fs_remove_tree(gone, &err);
}

int runs_reserve(const char *name, char *dir, size_t size, struct err *err)
{
	char root[PATH_MAX - 128], tmp[PATH_MAX], path[PATH_MAX + 16], created[32];
	struct run_info ri;
	json_t *j;
	int rc;

	if (!runs_name_ok(name))
		return err_set(err, EINVAL,
			       "--name %s: a name is 2 to %d letters, digits, '_', '.' or '-', starting with a letter or digit",
			       name, RUN_NAME_MAX);
	runs_root(root, sizeof(root));
	if (fs_mkdir_p(root, 0700, err) < 0 || root_is_ours(root, err) < 0)
		return -1;
	{
		/* foreground runs that ended (they cannot remove their own record once they became
		 * enclaver-run) go now: listing takes them away */
		struct run_info *all = NULL;
		size_t n_all = 0;

		if (runs_list(&all, &n_all, err) < 0)
			return -1;
		free(all);
	}
	snprintf(dir, size, "%s/%s", root, name);
	/* The folder appears whole, with a run.json naming this process, or not at all: a second
	 * enclaver run of the same name meets a live run, never an empty folder it might take. */
	snprintf(tmp, sizeof(tmp), "%s/.new-%s-XXXXXX", root, name);
	if (!mkdtemp(tmp))
		return err_sys(err, "%s", tmp);
	now_rfc3339(created);
	j = json_pack("{s:s, s:i, s:I, s:s}", "Name", name, "Pid", (int)getpid(), "Start",
		      (json_int_t)runs_start_time(getpid()), "Created", created);
	snprintf(path, sizeof(path), "%s/run.json", tmp);
	rc = write_json(path, j, err);
	json_decref(j);
	for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
		if (rename(tmp, dir) == 0)
			return 0;
		if (errno != EEXIST && errno != ENOTEMPTY) {
			rc = err_sys(err, "%s", dir);
			break;
		}
		if (read_run(dir, name, &ri) && !stale(&ri)) {
			rc = err_set(err, EEXIST,
				     ri.running ? "the name %s is in use by a running enclave: stop it with 'enclaver stop %s', "
						  "or choose another --name"
						: "the name %s is in use by an enclave that ended: remove it with 'enclaver rm %s', "
						  "or choose another --name",
				     name, name);
			break;
		}
		take_away(root, dir);
	}
	if (rc == 0)
		rc = err_set(err, EEXIST, "the name %s is in use (another enclaver run took it just now)", name);
	fs_remove_tree(tmp, &(struct err){ 0 });
	return rc;
}

int runs_record(const char *dir, const char *name, pid_t pid, bool detached, const char *eif, const char *ports,
		struct err *err)
{
	char path[PATH_MAX + 16], created[32];
	json_t *j;
	int rc;

	now_rfc3339(created);
	j = json_pack("{s:s, s:i, s:I, s:b, s:s, s:s, s:s}", "Name", name, "Pid", (int)pid, "Start",
		      (json_int_t)runs_start_time(pid), "Detached", detached, "Eif", eif, "Ports", ports, "Created",
		      created);
	if (detached) {
		/* the supervisor outlives enclaver-run by the moment it takes to write exit */
		json_object_set_new(j, "SupervisorPid", json_integer(getpid()));
		json_object_set_new(j, "SupervisorStart", json_integer((json_int_t)runs_start_time(getpid())));
	}
	snprintf(path, sizeof(path), "%s/run.json", dir);
	rc = write_json(path, j, err);
	json_decref(j);
	return rc;
}

int runs_finish(const char *dir, int code, struct err *err)
{
	char path[PATH_MAX + 16], finished[32];
	json_t *j;
	int rc;

	now_rfc3339(finished);
	j = json_pack("{s:i, s:s}", "ExitCode", code, "Finished", finished);
	snprintf(path, sizeof(path), "%s/exit", dir);
	rc = write_json(path, j, err);
	json_decref(j);
	return rc;
}

int runs_find(const char *name, struct run_info *out, struct err *err)
{
	char root[PATH_MAX - 128], dir[PATH_MAX];

	if (!runs_name_ok(name))
		return err_set(err, ENOENT, "no enclave named %s", name);
	runs_root(root, sizeof(root));
	if (root_is_ours(root, err) < 0)
		return -1;
	snprintf(dir, sizeof(dir), "%s/%s", root, name);
	if (!read_run(dir, name, out) || stale(out))
		return err_set(err, ENOENT, "no enclave named %s", name);
	return 0;
}

static int by_created(const void *a, const void *b)
{
	const struct run_info *x = a, *y = b;
	int c = strcmp(x->created, y->created);

	return c ? c : strcmp(x->name, y->name);
}

int runs_list(struct run_info **out, size_t *n, struct err *err)
{
	char root[PATH_MAX - 128], dir[PATH_MAX];
	struct run_info *v = NULL;
	size_t len = 0;
	struct dirent *e;
	DIR *d;

	*out = NULL;
	*n = 0;
	runs_root(root, sizeof(root));
	if (root_is_ours(root, err) < 0)
		return -1;
	d = opendir(root);
	if (!d)
		return errno == ENOENT ? 0 : err_sys(err, "%s", root);
	while ((e = readdir(d))) {
		struct run_info ri;

		if (!runs_name_ok(e->d_name)) /* ".", "..", and folders being made or taken away */
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", root, e->d_name);
		if (!read_run(dir, e->d_name, &ri))
			continue;
		if (stale(&ri)) {
			take_away(root, dir);
			continue;
		}
		v = realloc(v, (len + 1) * sizeof(*v));
		if (!v)
			abort();
		v[len++] = ri;
	}
	closedir(d);
	if (len)
		qsort(v, len, sizeof(*v), by_created);
	*out = v;
	*n = len;
	return 0;
}

int runs_remove(const struct run_info *ri, struct err *err)
{
	char root[PATH_MAX - 128];

	runs_root(root, sizeof(root));
	take_away(root, ri->dir);
	if (access(ri->dir, F_OK) == 0)
		return err_set(err, EIO, "%s: could not remove it", ri->dir);
	return 0;
}
