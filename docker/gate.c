/*
 * gate.c - who may use a volume: the gate hook of every volume's drive,
 * and the one question it asks the Docker Engine.
 *
 * A caller is admitted when (1) /proc/PID/cgroup names a container, (2)
 * the Engine lists that container as mounting this volume of this driver
 * (read-only if it mounts it so), and (3) the caller's own mount table
 * holds the drive. dockerd (our socket's peer) and this process pass as
 * well. docs/ecosystem.md has the reasoning.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "plugin.h"

static pid_t engine_pids[4]; /* dockerd, as the peer of our socket */

/* ---- the Engine API: does container id mount volume name? ---- */

/* GET path from the Engine; the body (malloc'd) on status 200. */
static int engine_get(const char *path, char **body)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {3, 0};
	char req[512], *buf = NULL, *b;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd, r = -EIO;

	if (strncmp(vd_docker_host, "unix://", 7) ||
	    strlen(vd_docker_host + 7) >= sizeof(sa.sun_path))
		return -EINVAL;
	strcpy(sa.sun_path, vd_docker_host + 7);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		r = -errno;
		goto out;
	}
	/* HTTP/1.0: the Engine then answers without chunks and closes. */
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: docker\r\n\r\n",
		 path);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		goto out;
	for (;;) {
		if (len + 4097 > cap) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 65536);

			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	b = strstr(buf, "\r\n\r\n");
	if (!b || strncmp(buf, "HTTP/1.", 7) || strlen(buf) < 12) {
		r = -EIO;
		goto out;
	}
	if (strncmp(buf + 9, "200", 3)) {
		r = strncmp(buf + 9, "404", 3) ? -EIO : -ENOENT;
		goto out;
	}
	memmove(buf, b + 4, len - (size_t)(b + 4 - buf) + 1);
	*body = buf;
	buf = NULL;
	r = 0;
out:
	free(buf);
	close(fd);
	return r;
}

/* VD_ADMIT_* flags when container id mounts volume name of our driver,
 * -EACCES when it does not, another -errno when the Engine cannot say. */
static int engine_verdict(const char *id, const char *name)
{
	struct vd_js j, el;
	struct vd_js_it it = {0};
	char path[256], *body = NULL, vname[128], vdrv[128], type[32];
	bool rw;
	int r;

	/* The list, not /containers/ID/json: that one waits for the
	 * container's lock, which a starting container holds, while its
	 * runc stats the volume and so waits for us. The list does not. */
	snprintf(path, sizeof(path),
		 "/containers/json?all=1&filters=%%7B%%22id%%22%%3A%%5B%%22%s"
		 "%%22%%5D%%7D",
		 id);
	r = engine_get(path, &body);
	if (r)
		return r;
	j = (struct vd_js){body, body + strlen(body)};
	r = vd_js_next(&j, &it, NULL, 0); /* the first (only) container */
	if (r != 1) {
		r = r ? r : -EACCES; /* [] : no such container */
		goto out;
	}
	r = vd_js_member(&j, "Mounts");
	if (r)
		goto out;
	it = (struct vd_js_it){0};
	r = -EACCES;
	while (vd_js_next(&j, &it, NULL, 0) == 1) {
		const char *start = j.p;

		if (vd_js_skip(&j))
			break;
		vname[0] = vdrv[0] = type[0] = '\0';
		rw = false;
		el = (struct vd_js){start, j.p};
		if (vd_js_member(&el, "Type") == 0)
			vd_js_string(&el, type, sizeof(type));
		el = (struct vd_js){start, j.p};
		if (vd_js_member(&el, "Name") == 0)
			vd_js_string(&el, vname, sizeof(vname));
		el = (struct vd_js){start, j.p};
		if (vd_js_member(&el, "Driver") == 0)
			vd_js_string(&el, vdrv, sizeof(vdrv));
		el = (struct vd_js){start, j.p};
		if (vd_js_member(&el, "RW") == 0)
			vd_js_bool(&el, &rw);
		if (!strcmp(type, "volume") && !strcmp(vname, name) &&
		    !strcmp(vdrv, vd_docker_driver)) {
			r = rw ? 0 : (int)VD_ADMIT_READONLY;
			break;
		}
	}
out:
	free(body);
	return r;
}

/* ---- the gate ---- */

/* The container id (64 hex digits) in pid's cgroup path, or "". */
static void container_of(pid_t pid, char id[65])
{
	char path[64], line[4096];
	FILE *f;

	id[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return;
	/* "0::/docker/ID", "0::/system.slice/docker-ID.scope", ... */
	while (fgets(line, sizeof(line), f)) {
		for (char *p = line; *p; p++) {
			size_t n = strspn(p, "0123456789abcdef");

			if (n == 64 &&
			    (p == line || !isxdigit((unsigned char)p[-1]))) {
				memcpy(id, p, 64);
				id[64] = '\0';
			}
			if (n)
				p += n - 1;
		}
	}
	fclose(f);
}

static bool pid_in(pid_t pid, const char *field, pid_t want)
{
	char path[64], line[256];
	bool yes = false;
	FILE *f;
	size_t n = strlen(field);

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':') {
			yes = atoi(line + n + 1) == (int)want;
			break;
		}
	fclose(f);
	return yes;
}

static bool is_dockerd(pid_t pid)
{
	char path[64], comm[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	return !strcmp(comm, "dockerd\n");
}

/* dockerd, or this process (its own stat of a mount point). */
static bool is_engine(pid_t pid)
{
	if (pid == getpid() || pid_in(pid, "Tgid", getpid()))
		return true;
	for (int i = 0; i < 4; i++)
		if (engine_pids[i] && (pid == engine_pids[i] ||
				       pid_in(pid, "Tgid", engine_pids[i])))
			return true;
	return false;
}

/* Does pid's mount table hold the superblock dev? */
static bool sees_dev(pid_t pid, dev_t dev)
{
	char path[64], line[8192];
	unsigned int ma, mi;
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "%*u %*u %u:%u", &ma, &mi) == 2 &&
			makedev(ma, mi) == dev;
	fclose(f);
	return found;
}

int vd_docker_gate(void *arg, pid_t pid, uint64_t ns)
{
	struct volume *v = arg;
	char id[65];
	int verdict = -EACCES, i;
	bool known = false;

	if (pid <= 0)
		return -EACCES;
	if (is_engine(pid))
		return 0;
	container_of(pid, id);
	if (!id[0] || !sees_dev(pid, v->dev))
		return -EACCES;
	pthread_mutex_lock(&vd_docker_lock);
	for (i = 0; i < v->ncts; i++)
		if (!strcmp(v->cts[i].id, id)) {
			verdict = v->cts[i].verdict;
			known = true;
		}
	pthread_mutex_unlock(&vd_docker_lock);
	if (!known) {
		struct timespec t0, t1;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		verdict = engine_verdict(id, v->name);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (verdict != 0 && verdict != (int)VD_ADMIT_READONLY &&
		    verdict != -EACCES) {
			vd_docker_log(
				"%s: cannot ask the Engine about container "
				"%.12s: %s",
				v->name, id, strerror(-verdict));
			return -EACCES; /* not remembered: ask again */
		}
		vd_docker_log(
			"%s: container %.12s %s (the Engine answered in %.1f "
			"ms)",
			v->name, id,
			verdict < 0   ? "refused"
			: verdict > 0 ? "admitted read-only"
				      : "admitted",
			(double)(t1.tv_sec - t0.tv_sec) * 1e3 +
				(double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
		pthread_mutex_lock(&vd_docker_lock);
		snprintf(v->cts[v->next_ct].id, sizeof(v->cts[0].id), "%s", id);
		v->cts[v->next_ct].verdict = verdict;
		v->next_ct = (v->next_ct + 1) % MAX_CTS;
		if (v->ncts < MAX_CTS)
			v->ncts++;
		pthread_mutex_unlock(&vd_docker_lock);
	}
	if (verdict >= 0 && ns) {
		/* Admit the namespace: its next callers skip this hook. */
		pthread_mutex_lock(&vd_docker_lock);
		if (v->nns < MAX_NS &&
		    vd_drive_admit(v->drive, ns, (unsigned)verdict) == 0)
			v->ns[v->nns++] = ns;
		pthread_mutex_unlock(&vd_docker_lock);
	}
	return verdict;
}

void vd_docker_peer(pid_t pid)
{
	/* Only dockerd is admitted this way, not any root client. */
	if (pid <= 0 || !is_dockerd(pid) || is_engine(pid))
		return;
	memmove(engine_pids + 1, engine_pids,
		sizeof(engine_pids) - sizeof(engine_pids[0]));
	engine_pids[0] = pid;
}
