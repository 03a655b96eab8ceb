/*
 * plugin.c - vdrive-docker, a Docker volume plugin serving vdrive drives.
 *
 *   docker volume create -d vdrive -o source=sqlite:/srv/app.db app
 *   docker run -v app:/data ...
 *
 * Docker finds the plugin by its socket, /run/docker/plugins/vdrive.sock
 * (the file's name is the driver's name), and speaks HTTP/1.1 with JSON
 * bodies: /Plugin.Activate, then /VolumeDriver.Create, Remove, Mount,
 * Unmount, Path, Get, List, Capabilities. One request per connection,
 * answered in turn by the main thread.
 *
 * The choices:
 *  - A volume's drive is mounted at Create (so a bad source, option or
 *    database fails `docker volume create` with vdrive's own message) and
 *    unmounted at Remove, served by this process's threads; Mount and
 *    Unmount only count users. A mem: volume so keeps its data across
 *    containers, as a local volume does.
 *  - Each drive is mounted under --root (mode 0700) on the host; dockerd
 *    bind-mounts it into the containers. The per-request gate admits no
 *    namespace up front: every caller goes to vd_docker_gate() (gate.c),
 *    which admits a process when (1) /proc/PID/cgroup names a container,
 *    (2) the Docker Engine says that container mounts this volume
 *    (read-only if it mounts it so), and (3) the caller's own mount table
 *    holds this drive. Docker's Mount request carries a random id, not the
 *    container's, hence the Engine question, asked once per container and
 *    remembered; an admitted caller's mount namespace is then admitted
 *    outright (no more questions) until the next Unmount of the volume,
 *    which revokes them all, since namespace numbers are reused.
 *    dockerd itself (the peer of our socket, if it is dockerd) is
 *    admitted: it may list the volume to copy image content in. Host
 *    users, other containers and /proc/PID/root walkers fail (1), (2) or
 *    (3). Volume option host=yes admits the host's namespace too.
 *  - Volumes are remembered in --root/volumes.d, one file each, and
 *    mounted again when the plugin restarts.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "json.h"
#include "plugin.h"
#include "sources.h"
#include "vdrive.h"

static const char usage_text[] =
	"usage: vdrive-docker [--socket PATH] [--root DIR] "
	"[--docker-host unix:///PATH]\n"
	"\n"
	"A Docker volume plugin: `docker volume create -d vdrive -o "
	"source=KIND:ARG NAME`\n"
	"mounts a vdrive drive that only the containers which mount the "
	"volume can use.\n"
	"Runs in the foreground, as root, beside dockerd.\n"
	"\n"
	"  --socket PATH  where Docker finds it (default\n"
	"                 /run/docker/plugins/vdrive.sock; the file's name is "
	"the\n"
	"                 driver's name)\n"
	"  --root DIR     the drives' mount points and the list of volumes\n"
	"                 (default /var/lib/vdrive-docker)\n"
	"  --docker-host unix:///PATH  the Engine API, asked which containers\n"
	"                 mount a volume (default $DOCKER_HOST, else\n"
	"                 unix:///run/docker.sock)\n"
	"\n"
	"Volume options (docker volume create -o KEY=VALUE):\n"
	"  -o source=KIND:ARG  the drive's source, as for `vdrive mount` "
	"(required)\n"
	"  -o o=OPT,...   `vdrive mount` -o options (ro, attr_timeout=S, "
	"...)\n"
	"  -o host=yes    admit the host too (default: only containers that "
	"mount it)\n";

static struct volume *volumes;
pthread_mutex_t vd_docker_lock = PTHREAD_MUTEX_INITIALIZER;
char vd_docker_driver[128] = "vdrive";
const char *vd_docker_host;
static char root_dir[PATH_MAX] = "/var/lib/vdrive-docker";

void vd_docker_log(const char *fmt, ...)
{
	va_list ap;

	fputs("vdrive-docker: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static struct volume *find_volume(const char *name)
{
	for (struct volume *v = volumes; v; v = v->next)
		if (!strcmp(v->name, name))
			return v;
	return NULL;
}

/* Docker's own rule for volume names, which keeps paths plain. */
static bool valid_name(const char *s)
{
	if (!isalnum((unsigned char)s[0]) || strlen(s) >= 100)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
			return false;
	return true;
}

/* ---- volumes ---- */

static void state_path(const char *name, char *out, size_t n)
{
	snprintf(out, n, "%s/volumes.d/%s", root_dir, name);
}

static int mkdirs(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, mode) != 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Open the source, mount and start the drive of v. */
static int volume_start(struct volume *v, char *err, size_t n)
{
	const struct vd_source *src = vd_source_find(v->source);
	const struct vd_ops *ops;
	void *data = NULL;
	char opts[1100];
	struct stat st;
	int r;

	if (!src || !strchr(v->source, ':')) {
		snprintf(err, n,
			 "unknown source '%s' (kinds: see `vdrive help`; write "
			 "it as KIND:ARG, e.g. mem:)",
			 v->source);
		return -EINVAL;
	}
	r = src->open(strchr(v->source, ':') + 1, &ops, &data, err, n);
	if (r) {
		if (!err[0])
			snprintf(err, n, "%s: %s", v->source, strerror(-r));
		return r;
	}
	r = vd_drive_new(ops, sizeof(*ops), data, &v->drive);
	if (r) {
		if (ops->destroy)
			ops->destroy(data);
		snprintf(err, n, "%s", strerror(-r));
		return r;
	}
	/* fsname shows in mount tables, where a comma would split it. */
	snprintf(opts, sizeof(opts), "%s", v->source);
	for (char *p = opts; *p; p++)
		if (*p == ',')
			*p = '_';
	memmove(opts + 7, opts, strlen(opts) + 1);
	memcpy(opts, "fsname=", 7);
	strncat(opts, ",subtype=vdrive,allow_other",
		sizeof(opts) - strlen(opts) - 1);
	if (vd_drive_set_options(v->drive, opts) ||
	    (v->opts[0] && vd_drive_set_options(v->drive, v->opts))) {
		snprintf(err, n, "%s", vd_drive_error(v->drive));
		r = -EINVAL;
		goto fail;
	}
	r = vd_drive_set_gate_hook(v->drive, vd_docker_gate, v);
	if (!r && v->host)
		r = vd_drive_admit(v->drive, 0, 0);
	if (r) {
		snprintf(err, n, "cannot set up the gate: %s", strerror(-r));
		goto fail;
	}
	snprintf(v->mountpoint, sizeof(v->mountpoint), "%s/volumes/%s",
		 root_dir, v->name);
	r = mkdirs(v->mountpoint, 0700);
	if (r) {
		snprintf(err, n, "%s: %s", v->mountpoint, strerror(-r));
		goto fail;
	}
	r = vd_drive_mount(v->drive, v->mountpoint);
	if (r) {
		snprintf(err, n, "%s", vd_drive_error(v->drive));
		goto fail;
	}
	r = vd_drive_start(v->drive);
	if (r) {
		snprintf(err, n, "cannot serve: %s", strerror(-r));
		goto fail;
	}
	/* The root's attributes pass the gate: a getattr proves it answers. */
	if (stat(v->mountpoint, &st) != 0) {
		r = -errno;
		snprintf(err, n, "the drive does not answer: %s",
			 strerror(errno));
		goto fail;
	}
	v->dev = st.st_dev;
	return 0;
fail:
	vd_drive_free(v->drive);
	v->drive = NULL;
	rmdir(v->mountpoint);
	return r;
}

static void volume_stop(struct volume *v)
{
	vd_drive_stop(v->drive);
	vd_drive_free(v->drive);
	v->drive = NULL;
	rmdir(v->mountpoint);
}

static int save_volume(const struct volume *v)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "%s/volumes.d", root_dir);
	r = mkdirs(path, 0700);
	if (r)
		return r;
	state_path(v->name, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "source=%s\nopts=%s\nhost=%d\n", v->source, v->opts,
		(int)v->host);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		r = -errno;
		unlink(tmp);
		return r;
	}
	return 0;
}

/* Set one volume option from docker volume create -o KEY=VALUE. */
static int volume_opt(struct volume *v, const char *key, const char *val,
		      char *err, size_t n)
{
	if (!strcmp(key, "source")) {
		if (strlen(val) >= sizeof(v->source))
			goto long_;
		snprintf(v->source, sizeof(v->source), "%s", val);
	} else if (!strcmp(key, "o")) {
		if (strlen(val) >= sizeof(v->opts))
			goto long_;
		snprintf(v->opts, sizeof(v->opts), "%s", val);
	} else if (!strcmp(key, "host")) {
		if (strcmp(val, "yes") && strcmp(val, "no")) {
			snprintf(err, n, "host=%s: yes or no", val);
			return -EINVAL;
		}
		v->host = !strcmp(val, "yes");
	} else {
		snprintf(err, n,
			 "unknown volume option '%s' (source=KIND:ARG, "
			 "o=OPT,..., host=yes|no)",
			 key);
		return -EINVAL;
	}
	return 0;
long_:
	snprintf(err, n, "option %s is too long", key);
	return -EINVAL;
}

/* Create and start a volume; on success it is on the list. */
static int volume_create(struct volume *v, char *err, size_t n)
{
	int r;

	if (!v->source[0]) {
		snprintf(err, n,
			 "no source: docker volume create -d %s -o "
			 "source=KIND:ARG (see `vdrive help`)",
			 vd_docker_driver);
		return -EINVAL;
	}
	r = volume_start(v, err, n);
	if (r)
		return r;
	r = save_volume(v);
	if (r)
		vd_docker_log("%s: cannot remember it in %s/volumes.d: %s",
			      v->name, root_dir, strerror(-r));
	v->next = volumes;
	volumes = v;
	vd_docker_log("%s: %s mounted at %s", v->name, v->source,
		      v->mountpoint);
	return 0;
}

/* Mount again the volumes of an earlier run. */
static void restore_volumes(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 300], line[2200], err[1024];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/volumes.d", root_dir);
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		struct volume *v;
		FILE *f;

		if (!valid_name(e->d_name) || strstr(e->d_name, ".tmp"))
			continue;
		v = calloc(1, sizeof(*v));
		if (!v)
			break;
		snprintf(v->name, sizeof(v->name), "%s", e->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "re");
		while (f && fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = '\0';
			if (!strncmp(line, "source=", 7))
				snprintf(v->source, sizeof(v->source), "%s",
					 line + 7);
			else if (!strncmp(line, "opts=", 5))
				snprintf(v->opts, sizeof(v->opts), "%s",
					 line + 5);
			else if (!strcmp(line, "host=1"))
				v->host = true;
		}
		if (f)
			fclose(f);
		err[0] = '\0';
		if (volume_create(v, err, sizeof(err)) != 0) {
			vd_docker_log("%s: cannot mount it again: %s", v->name,
				      err);
			free(v);
		}
	}
	closedir(d);
}

/* ---- the protocol ---- */

struct reply {
	char buf[65536];
	size_t len;
};

static void put(struct reply *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void put(struct reply *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->len >= sizeof(o->buf))
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, sizeof(o->buf) - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n;
}

static void put_str(struct reply *o, const char *s)
{
	char q[4200];

	if (vd_js_quote(q, sizeof(q), s) < 0)
		snprintf(q, sizeof(q), "\"\"");
	put(o, "%s", q);
}

static void reply_err(struct reply *o, const char *msg)
{
	o->len = 0;
	put(o, "{\"Err\":");
	put_str(o, msg);
	put(o, "}");
}

static void put_volume(struct reply *o, const struct volume *v, bool status)
{
	put(o, "{\"Name\":");
	put_str(o, v->name);
	put(o, ",\"Mountpoint\":");
	put_str(o, v->mountpoint);
	if (status) {
		put(o, ",\"Status\":{\"source\":");
		put_str(o, v->source);
		put(o, ",\"options\":");
		put_str(o, v->opts);
		put(o, ",\"users\":%d}", v->mounts);
	}
	put(o, "}");
}

/* Answer one request: path and body in, JSON out. */
static void handle(const char *path, const char *body, size_t blen,
		   struct reply *o)
{
	struct vd_js j = {body, body + blen};
	char name[128] = "", err[1024] = "";
	struct volume *v;

	if (!strcmp(path, "/Plugin.Activate")) {
		put(o, "{\"Implements\":[\"VolumeDriver\"]}");
		return;
	}
	if (!strcmp(path, "/VolumeDriver.Capabilities")) {
		put(o, "{\"Capabilities\":{\"Scope\":\"local\"}}");
		return;
	}
	if (!strcmp(path, "/VolumeDriver.List")) {
		put(o, "{\"Volumes\":[");
		for (v = volumes; v; v = v->next) {
			put_volume(o, v, false);
			if (v->next)
				put(o, ",");
		}
		put(o, "],\"Err\":\"\"}");
		return;
	}
	if (strncmp(path, "/VolumeDriver.", 14)) {
		reply_err(o, "unknown request");
		return;
	}
	if (vd_js_member(&j, "Name") || vd_js_string(&j, name, sizeof(name)) ||
	    !valid_name(name)) {
		reply_err(o, "bad or missing volume name");
		return;
	}
	v = find_volume(name);
	path += 14;
	if (!strcmp(path, "Create")) {
		struct vd_js_it it = {0};
		char key[64], val[1100];
		int r;

		struct volume *nv = calloc(1, sizeof(*nv));

		if (!nv) {
			reply_err(o, "out of memory");
			return;
		}
		snprintf(nv->name, sizeof(nv->name), "%s", name);
		j = (struct vd_js){body, body + blen};
		if (vd_js_member(&j, "Opts") == 0 && *j.p != 'n') {
			while ((r = vd_js_next(&j, &it, key, sizeof(key))) ==
			       1) {
				if (vd_js_string(&j, val, sizeof(val)) ||
				    volume_opt(nv, key, val, err,
					       sizeof(err))) {
					if (!err[0])
						snprintf(err, sizeof(err),
							 "bad value for "
							 "option %s",
							 key);
					break;
				}
			}
		}
		/* Again with the same options (a retry): nothing to do. */
		if (!err[0] && v &&
		    (strcmp(v->source, nv->source) ||
		     strcmp(v->opts, nv->opts) || v->host != nv->host))
			snprintf(err, sizeof(err),
				 "volume %s exists with other options", name);
		if (err[0] ||
		    (!v && volume_create(nv, err, sizeof(err)) != 0)) {
			reply_err(o, err);
			free(nv);
			return;
		}
		if (v)
			free(nv);
		put(o, "{\"Err\":\"\"}");
		return;
	}
	if (!v) {
		snprintf(err, sizeof(err), "no such volume: %s", name);
		reply_err(o, err);
		return;
	}
	if (!strcmp(path, "Remove")) {
		struct volume **pp;

		/* Docker refuses to remove a volume a container uses; our own
		 * count may be stale (a dockerd that died sends no Unmount). */
		volume_stop(v);
		state_path(v->name, err, sizeof(err));
		unlink(err);
		pthread_mutex_lock(&vd_docker_lock);
		for (pp = &volumes; *pp != v; pp = &(*pp)->next)
			;
		*pp = v->next;
		pthread_mutex_unlock(&vd_docker_lock);
		vd_docker_log("%s: removed", v->name);
		free(v);
		put(o, "{\"Err\":\"\"}");
	} else if (!strcmp(path, "Mount") || !strcmp(path, "Path")) {
		if (path[0] == 'M')
			v->mounts++;
		put(o, "{\"Mountpoint\":");
		put_str(o, v->mountpoint);
		put(o, ",\"Err\":\"\"}");
	} else if (!strcmp(path, "Unmount")) {
		if (v->mounts > 0)
			v->mounts--;
		/* A container went: its namespace's number may come back. */
		pthread_mutex_lock(&vd_docker_lock);
		for (int i = 0; i < v->nns; i++)
			vd_drive_revoke(v->drive, v->ns[i]);
		v->nns = 0;
		pthread_mutex_unlock(&vd_docker_lock);
		put(o, "{\"Err\":\"\"}");
	} else if (!strcmp(path, "Get")) {
		put(o, "{\"Volume\":");
		put_volume(o, v, true);
		put(o, ",\"Err\":\"\"}");
	} else {
		reply_err(o, "unknown request");
	}
}

/* Read one HTTP request from fd, answer it. */
static void serve_conn(int fd)
{
	static char req[65536];
	struct timeval tv = {5, 0};
	struct reply *o = calloc(1, sizeof(*o));
	char path[256] = "", hdr[256];
	size_t len = 0, blen = 0, want;
	char *body = NULL, *cl;
	struct ucred cred;
	socklen_t cl_len = sizeof(cred);
	ssize_t n;

	if (!o)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl_len) == 0)
		vd_docker_peer(cred.pid);
	while (len < sizeof(req) - 1) {
		n = read(fd, req + len, sizeof(req) - 1 - len);
		if (n <= 0)
			goto out;
		len += (size_t)n;
		req[len] = '\0';
		body = strstr(req, "\r\n\r\n");
		if (!body)
			continue;
		body += 4;
		cl = strcasestr(req, "\r\nContent-Length:");
		want = cl && cl < body ? strtoul(cl + 17, NULL, 10) : 0;
		blen = len - (size_t)(body - req);
		if (blen >= want || want >= sizeof(req) - (size_t)(body - req))
			break;
	}
	if (!body || sscanf(req, "POST %255s HTTP/1.", path) != 1) {
		snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
			 "Connection: close\r\n\r\n");
		if (write(fd, hdr, strlen(hdr)) < 0)
			goto out;
		goto out;
	}
	handle(path, body, blen, o);
	snprintf(hdr, sizeof(hdr),
		 "HTTP/1.1 200 OK\r\nContent-Type: "
		 "application/vnd.docker.plugins.v1+json\r\nContent-Length: "
		 "%zu\r\nConnection: close\r\n\r\n",
		 o->len);
	if (write(fd, hdr, strlen(hdr)) < 0 || write(fd, o->buf, o->len) < 0)
		vd_docker_log("%s: cannot answer: %s", path, strerror(errno));
out:
	free(o);
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[PATH_MAX], *slash;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdirs(dir, 0755);
	}
	strcpy(sa.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    chmod(path, 0600) != 0 || listen(fd, 16) != 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"socket", required_argument, NULL, 's'},
		{"root", required_argument, NULL, 'r'},
		{"docker-host", required_argument, NULL, 'D'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *sock = "/run/docker/plugins/vdrive.sock", *base;
	struct pollfd p[2];
	sigset_t set;
	int c, lfd, sfd;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'r':
			snprintf(root_dir, sizeof(root_dir), "%s", optarg);
			break;
		case 'D':
			vd_docker_host = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fprintf(stderr,
				"vdrive-docker: unknown option '%s'\n%s",
				argv[optind - 1], usage_text);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "vdrive-docker: unexpected '%s'\n%s",
			argv[optind], usage_text);
		return 2;
	}
	if (!vd_docker_host)
		vd_docker_host = getenv("DOCKER_HOST");
	if (!vd_docker_host || !*vd_docker_host)
		vd_docker_host = "unix:///run/docker.sock";
	base = strrchr(sock, '/') ? strrchr(sock, '/') + 1 : sock;
	snprintf(vd_docker_driver, sizeof(vd_docker_driver), "%.*s",
		 (int)strcspn(base, "."), base);

	/* Signals arrive through sfd; the drives' threads inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (mkdirs(root_dir, 0700) != 0) {
		vd_docker_log("%s: %s", root_dir, strerror(errno));
		return 1;
	}
	restore_volumes();
	lfd = listen_on(sock);
	if (lfd < 0 || sfd < 0) {
		vd_docker_log("cannot listen on %s: %s", sock,
			      strerror(lfd < 0 ? -lfd : errno));
		return 1;
	}
	vd_docker_log("driver '%s' on %s, Engine %s", vd_docker_driver, sock,
		      vd_docker_host);
	p[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
	p[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0) {
				serve_conn(fd);
				close(fd);
			}
		}
	}
	/* Stopping unmounts every drive; Docker's records stay, and the
	 * volumes come back with the next start. */
	unlink(sock);
	while (volumes) {
		struct volume *v = volumes;

		volumes = v->next;
		volume_stop(v);
		free(v);
	}
	vd_docker_log("stopped");
	return 0;
}
