/*
 * container.c - turn `--container REF` into a mount namespace.
 *
 * REF is a PID, a path to a namespace file (/proc/PID/ns/mnt), or
 * docker:NAME_OR_ID, which is asked of the Docker Engine API over its
 * unix socket with a hand-written HTTP/1.1 request (no client library).
 * Containers whose runtime does not share the host kernel (gVisor's
 * runsc, Kata) are refused: a mount in the namespace of their host-side
 * process would be invisible inside the sandbox.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>

#include "cli.h"
#include "container.h"
#include "sock.h"
#include "vdrive.h"

#define DOCKER_DEFAULT "unix:///var/run/docker.sock"

/* The runtime named by an executable or argv[0], or NULL for "shares the
 * host kernel". */
static const char *vm_runtime_name(const char *s)
{
	if (strstr(s, "runsc"))
		return "gVisor (runsc)";
	if (strstr(s, "kata"))
		return "Kata Containers";
	return NULL;
}

/*
 * Is pid the host-side process of a sandboxed runtime? Looks at its
 * executable and its argv[0] (runsc re-executes itself as
 * "runsc-sandbox"). Returns the runtime's name or NULL.
 */
static const char *pid_vm_runtime(pid_t pid, char *buf, size_t n)
{
	char path[64], exe[PATH_MAX];
	const char *rt;
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	len = readlink(path, exe, sizeof(exe) - 1);
	if (len > 0) {
		exe[len] = '\0';
		rt = vm_runtime_name(exe);
		if (rt)
			return rt;
	}
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	len = read(fd, buf, n - 1);
	close(fd);
	if (len <= 0)
		return NULL;
	buf[len] = '\0'; /* argv[0] only: it ends at the first NUL */
	return vm_runtime_name(buf);
}

/* Connect to the Docker Engine's unix socket named by host. */
static int docker_connect(const char *host, char *msg, size_t n)
{
	const char *path;
	int s;

	if (strncmp(host, "unix://", 7) != 0) {
		snprintf(msg, n,
			 "Docker host %s: only unix:// sockets are "
			 "supported",
			 host);
		return -EINVAL;
	}
	path = host + 7;
	s = vd_sock_connect(path);
	if (s == -ENAMETOOLONG) {
		snprintf(msg, n, "Docker socket path too long: %s", path);
		return -EINVAL;
	}
	if (s < 0)
		snprintf(msg, n, "cannot reach Docker at %s: %s", path,
			 strerror(-s));
	return s;
}

/* Undo HTTP/1.1 chunked transfer coding in place; returns the length. */
static size_t unchunk(char *body, size_t len)
{
	size_t in = 0, out = 0;

	while (in < len) {
		char *end;
		unsigned long sz = strtoul(body + in, &end, 16);
		char *nl = memchr(body + in, '\n', len - in);

		if (!nl || end == body + in || sz == 0)
			break;
		in = (size_t)(nl - body) + 1;
		if (sz > len - in)
			sz = len - in;
		memmove(body + out, body + in, sz);
		out += sz;
		in += sz + 2; /* the chunk's CRLF */
	}
	body[out] = '\0';
	return out;
}

/*
 * GET path from the Engine API; on 200 the body (malloc'd, NUL-ended) is
 * returned in *body. Returns 0, -ENOENT on 404, or another -errno.
 */
static int docker_get(const char *host, const char *path, char **body,
		      char *msg, size_t n)
{
	char req[1024];
	char *buf = NULL, *p;
	size_t len = 0, cap = 0;
	ssize_t got;
	int s, status = 0;

	*body = NULL;
	s = docker_connect(host, msg, n);
	if (s < 0)
		return s;
	snprintf(req, sizeof(req),
		 "GET %s HTTP/1.1\r\nHost: docker\r\nUser-Agent: vdrive\r\n"
		 "Connection: close\r\n\r\n",
		 path);
	if (write(s, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(s);
		snprintf(msg, n, "Docker: cannot send the request");
		return -EIO;
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 16384;
			if (cap > (16u << 20) || !(p = realloc(buf, cap))) {
				free(buf);
				close(s);
				snprintf(msg, n, "Docker: answer too large");
				return -ENOMEM;
			}
			buf = p;
		}
		got = read(s, buf + len, cap - len - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	close(s);
	if (!buf) {
		snprintf(msg, n, "Docker: empty answer");
		return -EIO;
	}
	buf[len] = '\0';
	p = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !p) {
		free(buf);
		snprintf(msg, n, "Docker: not an HTTP answer");
		return -EIO;
	}
	*p = '\0';
	p += 4;
	len -= (size_t)(p - buf);
	if (strcasestr(buf, "\r\nTransfer-Encoding: chunked"))
		len = unchunk(p, len);
	memmove(buf, p, len + 1);
	if (status == 404) {
		free(buf);
		return -ENOENT;
	}
	if (status != 200) {
		snprintf(msg, n, "Docker answered %d: %.200s", status, buf);
		free(buf);
		return -EIO;
	}
	*body = buf;
	return 0;
}

/*
 * The value after "key": in json, as text (a string without its quotes,
 * or a bare number/literal), into out. Good enough for the flat fields
 * read here (Pid, Running, Runtime, Name, Id); not a JSON parser.
 */
static int json_field(const char *json, const char *key, char *out, size_t n)
{
	char pat[64];
	const char *p;
	size_t i = 0;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return -ENOENT;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	if (*p == '"') {
		for (p++; *p && *p != '"' && i < n - 1; p++)
			out[i++] = *p == '\\' && p[1] ? *++p : *p;
	} else {
		for (; *p && !strchr(",}] \n", *p) && i < n - 1; p++)
			out[i++] = *p;
	}
	out[i] = '\0';
	return 0;
}

/* Resolve docker:NAME through the Engine API. */
static int resolve_docker(const char *name, const char *host,
			  struct cli_container *c, char *msg, size_t n)
{
	char path[512], v[256];
	const char *rt;
	char *body;
	int r;

	for (const char *s = name; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_.-", *s)) {
			snprintf(msg, n, "bad container name '%s'", name);
			return -EINVAL;
		}
	if (!*name) {
		snprintf(msg, n, "docker: needs a container name or id");
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "/containers/%s/json", name);
	r = docker_get(host, path, &body, msg, n);
	if (r == -ENOENT)
		snprintf(msg, n, "no Docker container named '%s'", name);
	if (r)
		return r;
	if (json_field(body, "Runtime", v, sizeof(v)) == 0 &&
	    (rt = vm_runtime_name(v))) {
		snprintf(msg, n,
			 "container '%s' runs under %s, which does not "
			 "share the host kernel: a drive mounted from the host "
			 "would be invisible inside it",
			 name, rt);
		free(body);
		return -EOPNOTSUPP;
	}
	if (json_field(body, "Running", v, sizeof(v)) != 0 ||
	    strcmp(v, "true") != 0 || json_field(body, "Pid", v, sizeof(v)) ||
	    atoi(v) <= 0) {
		snprintf(msg, n, "Docker container '%s' is not running", name);
		free(body);
		return -ESRCH;
	}
	c->pid = atoi(v);
	if (json_field(body, "Name", v, sizeof(v)) == 0 && v[0] == '/')
		snprintf(c->label, sizeof(c->label), "docker:%s", v + 1);
	else
		snprintf(c->label, sizeof(c->label), "docker:%s", name);
	free(body);
	return 0;
}

/* The Docker host: --docker-host, else $DOCKER_HOST, else the default. */
static const char *docker_host(const char *opt)
{
	const char *e = getenv("DOCKER_HOST");

	if (opt && *opt)
		return opt;
	return e && *e ? e : DOCKER_DEFAULT;
}

int cli_container_resolve(const char *ref, const char *dhost,
			  struct cli_container *c, char *msg, size_t n)
{
	char path[PATH_MAX], arg0[256];
	const char *rt;
	struct stat st;
	char *end;
	long v;
	int r;

	memset(c, 0, sizeof(*c));
	c->ns_fd = -1;
	msg[0] = '\0';
	if (!strncmp(ref, "docker:", 7)) {
		r = resolve_docker(ref + 7, docker_host(dhost), c, msg, n);
		if (r)
			return r;
	} else if (ref[0] == '/') {
		/* A namespace file; /proc/PID/ns/mnt also names a process. */
		if (sscanf(ref, "/proc/%d/ns/mnt", &c->pid) != 1)
			c->pid = 0;
		snprintf(c->label, sizeof(c->label), "%s", ref);
	} else {
		errno = 0;
		v = strtol(ref, &end, 10);
		if (errno || *end || v <= 0 || v > INT_MAX) {
			snprintf(msg, n,
				 "bad container '%s': give a PID, "
				 "docker:NAME or /proc/PID/ns/mnt",
				 ref);
			return -EINVAL;
		}
		c->pid = (pid_t)v;
		snprintf(c->label, sizeof(c->label), "pid:%ld", v);
	}
	if (c->pid > 0) {
		rt = pid_vm_runtime(c->pid, arg0, sizeof(arg0));
		if (rt) {
			snprintf(msg, n,
				 "process %d belongs to %s, which does "
				 "not share the host kernel: a drive mounted "
				 "from the host would be invisible inside it",
				 (int)c->pid, rt);
			return -EOPNOTSUPP;
		}
		snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)c->pid);
		if (ref[0] != '/')
			ref = path;
	}
	c->ns_fd = open(ref, O_RDONLY | O_CLOEXEC);
	if (c->ns_fd < 0) {
		r = -errno;
		snprintf(msg, n, "container %s: %s", c->label, strerror(errno));
		return r;
	}
	if (fstat(c->ns_fd, &st) != 0 ||
	    ioctl(c->ns_fd, NS_GET_NSTYPE) != CLONE_NEWNS) {
		snprintf(msg, n, "%s is not a mount namespace", ref);
		close(c->ns_fd);
		c->ns_fd = -1;
		return -EINVAL;
	}
	c->ns_ino = (uint64_t)st.st_ino;
	return 0;
}

int cli_allow_resolve(const char *ref, const char *dhost, uint64_t *ino,
		      char *msg, size_t n)
{
	struct cli_container c;
	struct stat st;
	int r;

	if (!strcmp(ref, "host")) {
		if (stat("/proc/self/ns/mnt", &st) != 0)
			return -errno;
		*ino = (uint64_t)st.st_ino;
		return 0;
	}
	r = cli_container_resolve(ref, dhost, &c, msg, n);
	if (r)
		return r;
	*ino = c.ns_ino;
	close(c.ns_fd);
	return 0;
}

int cli_container_mount(struct vd_drive *d, const char *ref,
			const char *const *allow, int nallow, const char *dhost,
			const char *path, struct cli_container *c, char *msg,
			size_t n)
{
	uint64_t ino;
	int r;

	r = cli_container_resolve(ref, dhost, c, msg, n);
	if (r)
		return r;
	for (int i = 0; i < nallow; i++) {
		r = cli_allow_resolve(allow[i], dhost, &ino, msg, n);
		if (!r)
			r = vd_drive_allow(d, ino);
		if (r) {
			if (!msg[0])
				snprintf(msg, n, "--allow %s: %s", allow[i],
					 strerror(-r));
			goto out;
		}
	}
	r = vd_drive_mount_ns(d, path, c->ns_fd);
	if (r) {
		snprintf(msg, n, "%s", vd_drive_error(d));
		goto out;
	}
	/* The drive ends with the container: watch its init. */
	if (c->pid > 0) {
		r = vd_drive_watch_pid(d, c->pid);
		if (r)
			snprintf(msg, n,
				 "container %s: cannot watch process "
				 "%d: %s",
				 c->label, (int)c->pid, strerror(-r));
	}
out:
	close(c->ns_fd);
	c->ns_fd = -1;
	return r;
}

int cli_container_answers(const struct cli_container *c, const char *path)
{
	char p[PATH_MAX + 64];
	struct stat st;

	if (c->pid <= 0)
		return 0; /* only a namespace file: no way in to look */
	snprintf(p, sizeof(p), "/proc/%d/root%s", (int)c->pid, path);
	if (stat(p, &st) == 0 || errno == EACCES)
		return 0;
	return -errno;
}

struct ct_match {
	char label[256];
	char alt[256];
	int count;
};

/* Stop each recorded drive whose container matches. */
static int stop_matching(const struct vd_rec *r, void *arg)
{
	struct ct_match *m = arg;
	struct timespec ts = {0, 20 * 1000 * 1000};

	if (!r->container[0] || (strcmp(r->container, m->label) != 0 &&
				 strcmp(r->container, m->alt) != 0))
		return 0;
	m->count++;
	if (cli_pid_alive(r->pid)) {
		kill(r->pid, SIGTERM);
		for (int i = 0; i < 250 && cli_pid_alive(r->pid); i++)
			nanosleep(&ts, NULL);
	}
	if (cli_pid_alive(r->pid))
		cli_err("drive '%s' does not stop (pid %d)", r->name,
			(int)r->pid);
	else
		cli_rec_remove(r->name);
	return 0;
}

int cli_container_unmount(const char *ref, const char *dhost)
{
	struct ct_match m = {.count = 0};
	struct cli_container c;
	char msg[512];
	char *end;

	/* The label as recorded, as given, and as Docker names it now. */
	if (strtol(ref, &end, 10) > 0 && !*end)
		snprintf(m.label, sizeof(m.label), "pid:%s", ref);
	else
		snprintf(m.label, sizeof(m.label), "%s", ref);
	snprintf(m.alt, sizeof(m.alt), "%s", m.label);
	if (cli_container_resolve(ref, dhost, &c, msg, sizeof(msg)) == 0) {
		snprintf(m.alt, sizeof(m.alt), "%s", c.label);
		close(c.ns_fd);
	}
	cli_rec_each(stop_matching, &m);
	if (m.count == 0) {
		cli_err("no drive in container %s", ref);
		return 1;
	}
	return 0;
}
