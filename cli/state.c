/*
 * state.c - the registry of live drives: one small key=value file per
 * drive in $VDRIVE_RUNDIR/drives (default /run/vdrive/drives), written by
 * the drive's own process and removed when it ends. Readers check the
 * pid, so a crashed drive shows up as dead rather than vanishing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

const char *cli_rundir(void)
{
	static char dir[PATH_MAX];
	const char *base = getenv("VDRIVE_RUNDIR");

	if (!dir[0])
		snprintf(dir, sizeof(dir), "%s/drives",
			 base && *base ? base : "/run/vdrive");
	return dir;
}

static int mkdirs(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

int cli_rundir_make(void)
{
	return mkdirs(cli_rundir());
}

static void rec_path(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", cli_rundir(), name);
}

/* Written to a temp file and renamed, so readers never see half a record. */
int cli_rec_write(const struct vd_rec *r)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	FILE *f;
	int e;

	e = cli_rundir_make();
	if (e)
		return e;
	rec_path(path, sizeof(path), r->name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "name=%s\nsource=%s\nmountpoint=%s\ncontainer=%s\npid=%d\n",
		r->name, r->source, r->mountpoint, r->container, (int)r->pid);
	if (r->via_daemon)
		fputs("via=vdrived\n", f);
	/* The path is last: it is the one field that may hold a '|'. */
	for (int i = 0; i < r->nshares; i++)
		fprintf(f, "share=%s|%s|%s|%s|%s\n", r->shares[i].kind,
			r->shares[i].label, r->shares[i].ro ? "ro" : "rw",
			r->shares[i].state, r->shares[i].path);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		e = -errno;
		unlink(tmp);
		return e;
	}
	return 0;
}

/* KIND|LABEL|ro|STATE|PATH */
static void parse_share(char *v, struct cli_share *s)
{
	char *f[5];
	int i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < 4 && v; i++) {
		f[i] = v;
		v = strchr(v, '|');
		if (v)
			*v++ = '\0';
	}
	if (i < 4 || !v)
		return;
	snprintf(s->kind, sizeof(s->kind), "%s", f[0]);
	snprintf(s->label, sizeof(s->label), "%s", f[1]);
	s->ro = !strcmp(f[2], "ro");
	snprintf(s->state, sizeof(s->state), "%s", f[3]);
	snprintf(s->path, sizeof(s->path), "%s", v);
}

int cli_rec_read(const char *name, struct vd_rec *r)
{
	char path[PATH_MAX], line[8192];
	FILE *f;

	if (!name[0] || strchr(name, '/') || name[0] == '.')
		return -EINVAL;
	rec_path(path, sizeof(path), name);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	memset(r, 0, sizeof(*r));
	while (fgets(line, sizeof(line), f)) {
		char *v = strchr(line, '=');
		if (!v)
			continue;
		*v++ = '\0';
		v[strcspn(v, "\n")] = '\0';
		if (!strcmp(line, "name"))
			snprintf(r->name, sizeof(r->name), "%s", v);
		else if (!strcmp(line, "source"))
			snprintf(r->source, sizeof(r->source), "%s", v);
		else if (!strcmp(line, "mountpoint"))
			snprintf(r->mountpoint, sizeof(r->mountpoint), "%s", v);
		else if (!strcmp(line, "container"))
			snprintf(r->container, sizeof(r->container), "%s", v);
		else if (!strcmp(line, "pid"))
			r->pid = (pid_t)atoi(v);
		else if (!strcmp(line, "via"))
			r->via_daemon = !strcmp(v, "vdrived");
		else if (!strcmp(line, "share") && r->nshares < CLI_MAX_SHARES)
			parse_share(v, &r->shares[r->nshares++]);
	}
	fclose(f);
	return r->name[0] ? 0 : -EINVAL;
}

void cli_ctl_path(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s.ctl", cli_rundir(), name);
}

/* Removes the record, the drive's log and its control socket: a clean
 * exit needs none of them. */
int cli_rec_remove(const char *name)
{
	char path[PATH_MAX], log[PATH_MAX + 8];

	rec_path(path, sizeof(path), name);
	snprintf(log, sizeof(log), "%s.log", path);
	unlink(log);
	cli_ctl_path(log, sizeof(log), name);
	unlink(log);
	return unlink(path) ? -errno : 0;
}

int cli_rec_each(int (*fn)(const struct vd_rec *r, void *arg), void *arg)
{
	DIR *dir = opendir(cli_rundir());
	struct dirent *de;
	struct vd_rec r;
	int ret = 0;

	if (!dir)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp") ||
		    strstr(de->d_name, ".log") || strstr(de->d_name, ".ctl"))
			continue;
		if (cli_rec_read(de->d_name, &r) != 0)
			continue;
		ret = fn(&r, arg);
		if (ret)
			break;
	}
	closedir(dir);
	return ret;
}

/* mountinfo escapes spaces and such as \ooo. */
static void unescape(char *s)
{
	char *o = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] &&
		    s[3]) {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 4;
		} else {
			*o++ = *s++;
		}
	}
	*o = '\0';
}

bool cli_is_mountpoint(const char *path)
{
	char line[8192];
	FILE *f;
	bool found = false;

	f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char mp[4096];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		unescape(mp);
		found = !strcmp(mp, path);
	}
	fclose(f);
	return found;
}

/* A zombie is dead too: a drive whose parent exited may wait unreaped. */
bool cli_pid_alive(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	bool alive = false;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return kill(pid, 0) == 0 || errno == EPERM;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1])
		alive = p[2] != 'Z' && p[2] != 'X';
	fclose(f);
	return alive;
}
