/*
 * vdrived - mounts drives for unprivileged containers.
 *
 * A container without /dev/fuse or CAP_SYS_ADMIN cannot mount a FUSE
 * drive. vdrived runs as root on the host and listens on a unix socket
 * that the operator mounts into containers. A client asks "mount OPTS
 * PATH"; the daemon identifies the client's container from the kernel
 * (SO_PEERPIDFD / SO_PEERCRED, never from what the client says), opens
 * /dev/fuse, mounts it at PATH in the client's own mount namespace, and
 * sends the descriptor back (SCM_RIGHTS). The client serves it with
 * libvdrive. When the client's connection ends (or it says "unmount"),
 * the daemon unmounts. The protocol is in docs/containers.md.
 *
 * Single-threaded: one poll loop. Everything done inside a container's
 * namespace runs in a forked child with a time limit, so a hostile or
 * hung container cannot stall the daemon.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fuse.h>
#include <linux/mount.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "sock.h"
#include "vdproto.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define MAX_CLIENTS 256
/* Drives one namespace may hold, and connections it may open (so one
 * container cannot starve the others), and connections one process may
 * open. */
#define MAX_PER_NS 16
#define MAX_CONN_PER_NS 32
#define MAX_CONN_PER_PID 8
/* A connection without a drive that sends nothing for this long, or
 * leaves a request unfinished this long, is closed: idle connections
 * must not fill the table. A connection holding a drive lives as long
 * as the drive. */
#define IDLE_TIMEOUT_MS 10000
#define MAX_SHARES 8  /* places one drive may be shared */
#define MAX_CLONES 64 /* cloned connections per drive */
#define CHILD_TIMEOUT_MS 5000

struct client {
	int fd;
	int pidfd; /* the peer process, pinned at connect time */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint64_t ns_ino;
	char buf[VD_PROTO_LINE_MAX];
	size_t len;
	/* its drive, when it has one */
	bool mounted;
	int ns_fd;
	unsigned int id;
	char path[PATH_MAX];
	int passed_fd; /* a descriptor sent with the current request, or -1 */
	int clones;
	uint64_t last_ms; /* when it last sent a whole request */
	/* a shareable drive: mounted from the host's pid namespace, so the
	 * server asks us ("gate PID") who may use it */
	bool shareable;
	int nshares;
	struct share {
		char target[VD_PROTO_TARGET_MAX + 1]; /* host, or pid:N */
		char name[VD_PROTO_NAME_MAX + 1];
		char path[PATH_MAX];
		int ns_fd;
		uint64_t ino;
		int pidfd; /* the target's process, -1 for the host */
		bool ro;
	} shares[MAX_SHARES];
};

/* A drive recovered from a record after a restart: its process is
 * watched, and when it ends the drive is unmounted. */
struct orphan {
	int pidfd;
	int ns_fd;
	unsigned int id;
	char path[PATH_MAX];
	int nshares;
	struct {
		char target[32];
		unsigned long long ino;
		char path[PATH_MAX];
	} shares[MAX_SHARES];
};

static struct client *clients[MAX_CLIENTS];
static struct orphan *orphans[MAX_CLIENTS];
static const char *state_dir = "/run/vdrive/vdrived";
/* Where shares are attached, on the host and in containers. */
static const char *share_dir = "/srv/vdrive";
/* Who a container may share its drive with (--share-policy). */
static bool policy_host = true, policy_same_uid = true, policy_any;
static unsigned int next_id = 1;
static volatile sig_atomic_t stopping;

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr (the journal, under systemd). */
static void logmsg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vdrived: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* The inode of pid's mount namespace, or 0. */
static uint64_t ns_of_pid(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	if (stat(path, &st) != 0)
		return 0;
	return (uint64_t)st.st_ino;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* True while the process behind pidfd lives (so its pid is still its). */
static bool pidfd_alive(int pidfd)
{
	return syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0;
}

/*
 * Wait for child pid at most CHILD_TIMEOUT_MS, then kill it (and say so).
 * Returns 0 or -errno (the child's exit status is an errno).
 */
static int wait_child(pid_t pid)
{
	bool killed;
	int r = vd_child_wait(pid, CHILD_TIMEOUT_MS, &killed);

	if (killed)
		logmsg("child %d took too long: killed", (int)pid);
	return r;
}

/*
 * The mounting child: enter the client's mount and pid namespaces (via
 * its pidfd, so a recycled pid cannot redirect us), fork once more so the
 * mount is made from inside the pid namespace (the kernel then reports
 * request pids as the client's server sees them), check or create path,
 * and mount. Never returns.
 */
static void mount_child(const struct client *c, int fuse_fd, const char *opts,
			bool ro)
{
	int nstype = CLONE_NEWNS | (c->shareable ? 0 : CLONE_NEWPID);
	unsigned long flags = MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0);
	char data[256];
	struct stat st;
	pid_t pid;
	int r;

	/* A shareable drive stays in our pid namespace: request pids are
	 * then host pids, which we can place in any container. */
	if (setns(c->pidfd, nstype) != 0)
		_exit(errno);
	pid = fork();
	if (pid < 0)
		_exit(errno);
	if (pid > 0) {
		int status;

		if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
			_exit(EIO);
		_exit(WEXITSTATUS(status));
	}
	if (chdir("/") != 0)
		_exit(errno);
	if (c->uid == 0) {
		r = vd_child_mkdir_p(c->path);
		if (r)
			_exit(r);
	}
	/* Like fusermount: a client mounts only on a folder it owns (so a
	 * root client without capabilities cannot cover a user's folder). */
	if (stat(c->path, &st) != 0)
		_exit(errno);
	if (!S_ISDIR(st.st_mode))
		_exit(ENOTDIR);
	if (st.st_uid != c->uid)
		_exit(EPERM);
	snprintf(data, sizeof(data),
		 "fd=%d,rootmode=40000,user_id=%u,group_id=%u%s", fuse_fd,
		 (unsigned)c->uid, (unsigned)c->gid, opts);
	if (mount("vdrive", c->path, "fuse.vdrive", flags, data) != 0)
		_exit(errno);
	_exit(0);
}

/* Detach the mount at path in namespace ns_fd (from a child). */
static int unmount_in(int ns_fd, const char *path)
{
	bool killed;
	int r = vd_child_umount_in(ns_fd, path, CHILD_TIMEOUT_MS, &killed);

	if (killed)
		logmsg("unmounting %s: child took too long: killed", path);
	return r;
}

/* Record file of drive id: what a restarted daemon needs. */
static void record_path(unsigned int id, char *out, size_t n)
{
	snprintf(out, n, "%s/%u.drive", state_dir, id);
}

static void record_write(const struct client *c)
{
	char p[PATH_MAX];
	FILE *f;

	record_path(c->id, p, sizeof(p));
	f = fopen(p, "w");
	if (!f) {
		logmsg("cannot write %s: %s", p, strerror(errno));
		return;
	}
	fprintf(f, "pid=%d\nuid=%u\nns=%llu\npath=%s\n", (int)c->pid,
		(unsigned)c->uid, (unsigned long long)c->ns_ino, c->path);
	/* Shares, so that a restarted daemon still detaches them. */
	for (int i = 0; i < c->nshares; i++)
		fprintf(f, "share=%s %llu %s\n", c->shares[i].target,
			(unsigned long long)c->shares[i].ino,
			c->shares[i].path);
	fclose(f);
}

static void record_remove(unsigned int id)
{
	char p[PATH_MAX];

	record_path(id, p, sizeof(p));
	unlink(p);
}

static void reply(struct client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Send one reply line; a client that does not read loses it. */
static void reply(struct client *c, const char *fmt, ...)
{
	char line[VD_PROTO_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	n = vd_sock_send(c->fd, line, (size_t)n, -1, MSG_DONTWAIT);
	if (n < 0)
		logmsg("pid %d: reply lost: %s", (int)c->pid, strerror(-n));
}

/* Send "ok\n" with fd attached. */
static int send_fd(struct client *c, int fd)
{
	return vd_sock_send(c->fd, "ok\n", 3, fd, MSG_DONTWAIT) ? -EIO : 0;
}

/* An absolute path without "." or ".." components or control bytes. */
static bool path_ok(const char *p)
{
	const char *s;

	if (p[0] != '/' || strlen(p) >= PATH_MAX || !strcmp(p, "/"))
		return false;
	for (s = p; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	for (s = p; s; s = strchr(s + 1, '/')) {
		if (!strncmp(s, "/./", 3) || !strncmp(s, "/../", 4) ||
		    !strcmp(s, "/.") || !strcmp(s, "/.."))
			return false;
	}
	return true;
}

/* Parse the client's options into mount data; false on an unknown one. */
static bool parse_opts(char *opts, char *data, size_t n, bool *ro,
		       bool *shareable)
{
	char *tok, *save = NULL;

	data[0] = '\0';
	*ro = false;
	*shareable = false;
	if (!strcmp(opts, "-"))
		return true;
	for (tok = strtok_r(opts, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "ro"))
			*ro = true;
		else if (!strcmp(tok, "shareable"))
			*shareable = true;
		else if (!strcmp(tok, "allow_other") ||
			 !strcmp(tok, "default_permissions"))
			snprintf(data + strlen(data), n - strlen(data), ",%s",
				 tok);
		else
			return false;
	}
	return true;
}

static int count_in_ns(uint64_t ino)
{
	int n = 0;

	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i] && clients[i]->mounted &&
		    clients[i]->ns_ino == ino)
			n++;
	return n;
}

/* "mount OPTS PATH": mount in the client's namespace, send the fd. */
static void do_mount(struct client *c, char *args)
{
	char *path = strchr(args, ' ');
	char data[128];
	bool ro, shareable;
	int fuse_fd, r;
	pid_t pid;

	if (!path) {
		reply(c, "err %d usage: mount OPTS PATH\n", EINVAL);
		return;
	}
	*path++ = '\0';
	if (c->mounted) {
		reply(c, "err %d this connection has a drive already\n", EBUSY);
		return;
	}
	if (!path_ok(path) ||
	    !parse_opts(args, data, sizeof(data), &ro, &shareable)) {
		reply(c, "err %d bad path or option\n", EINVAL);
		return;
	}
	if (count_in_ns(c->ns_ino) >= MAX_PER_NS) {
		reply(c, "err %d too many drives in this container\n", ENOSPC);
		return;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->shareable = shareable;
	c->ns_fd = -1;
	{
		char p[64];

		snprintf(p, sizeof(p), "/proc/%d/ns/mnt", (int)c->pid);
		c->ns_fd = open(p, O_RDONLY | O_CLOEXEC);
	}
	/* Opened by pid: only trust it if that process is still the peer. */
	if (c->ns_fd < 0 || !pidfd_alive(c->pidfd)) {
		if (c->ns_fd >= 0)
			close(c->ns_fd);
		reply(c, "err %d the client is gone\n", ESRCH);
		return;
	}
	fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fuse_fd < 0) {
		r = errno;
		close(c->ns_fd);
		reply(c, "err %d cannot open /dev/fuse: %s\n", r, strerror(r));
		return;
	}
	pid = fork();
	if (pid == 0)
		mount_child(c, fuse_fd, data, ro);
	r = pid < 0 ? -errno : wait_child(pid);
	if (r) {
		close(fuse_fd);
		close(c->ns_fd);
		reply(c, "err %d cannot mount at %s: %s\n", -r, path,
		      strerror(-r));
		return;
	}
	c->mounted = true;
	c->id = next_id++;
	if (send_fd(c, fuse_fd) != 0) {
		logmsg("pid %d: cannot send the descriptor", (int)c->pid);
		close(fuse_fd);
		unmount_in(c->ns_fd, c->path);
		close(c->ns_fd);
		c->mounted = false;
		return;
	}
	close(fuse_fd);
	record_write(c);
	logmsg("drive %u: pid %d uid %u mounted %s in mnt ns %llu", c->id,
	       (int)c->pid, (unsigned)c->uid, c->path,
	       (unsigned long long)c->ns_ino);
}

static void detach_share(struct client *c, int i);

/* Undo the client's drive, if any: its shares first (each keeps the
 * superblock alive). */
static void drop_drive(struct client *c)
{
	int r;

	if (!c->mounted)
		return;
	while (c->nshares > 0)
		detach_share(c, c->nshares - 1);
	c->mounted = false;
	r = unmount_in(c->ns_fd, c->path);
	if (r && r != -EINVAL && r != -ENOENT)
		logmsg("drive %u: unmount %s: %s", c->id, c->path,
		       strerror(-r));
	close(c->ns_fd);
	record_remove(c->id);
	logmsg("drive %u: unmounted", c->id);
}

/* "list": the drives of the client's own namespace, then "ok N". */
static void do_list(struct client *c)
{
	int n = 0;

	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *o = clients[i];

		if (o && o->mounted && o->ns_ino == c->ns_ino) {
			reply(c, "drive %s\n", o->path);
			n++;
		}
	}
	reply(c, "ok %d\n", n);
}

/*
 * "clone" with the drive's FUSE descriptor attached: open /dev/fuse, which
 * the container cannot, attach it to the same connection and send it
 * back, so each serving thread has a descriptor of its own.
 */
static void do_clone(struct client *c)
{
	uint32_t master = (uint32_t)c->passed_fd;
	int fd;

	if (!c->mounted || c->passed_fd < 0) {
		reply(c,
		      "err %d clone needs this connection's drive and its "
		      "descriptor\n",
		      EINVAL);
		return;
	}
	if (c->clones >= MAX_CLONES) {
		reply(c, "err %d too many clones\n", ENOSPC);
		return;
	}
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, FUSE_DEV_IOC_CLONE, &master) != 0) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		reply(c, "err %d cannot clone: %s\n", e, strerror(e));
		return;
	}
	c->clones++;
	if (send_fd(c, fd) != 0)
		logmsg("pid %d: cannot send a clone", (int)c->pid);
	close(fd);
}

/* The pid of pid as seen from the pid namespace of ref, or 0 when pid is
 * not in that namespace. */
static pid_t pid_seen_by(pid_t pid, pid_t ref)
{
	char a[64], b[64], la[64] = "", lb[64] = "", line[256];
	pid_t last = 0;
	FILE *f;

	snprintf(a, sizeof(a), "/proc/%d/ns/pid", (int)pid);
	snprintf(b, sizeof(b), "/proc/%d/ns/pid", (int)ref);
	if (readlink(a, la, sizeof(la) - 1) < 0 ||
	    readlink(b, lb, sizeof(lb) - 1) < 0 || strcmp(la, lb))
		return 0;
	snprintf(a, sizeof(a), "/proc/%d/status", (int)pid);
	f = fopen(a, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *p;

		if (strncmp(line, "NSpid:", 6))
			continue;
		for (p = strtok(line + 6, " \t\n"); p;
		     p = strtok(NULL, " \t\n"))
			last = (pid_t)atoi(p);
	}
	fclose(f);
	return last;
}

/*
 * "gate PID": may the host process PID use this connection's shareable
 * drive? "ok 0|1 NSPID" (1: read-only; NSPID: the pid as the drive's
 * own container sees it, 0 if it cannot) or "err 13". The drive's
 * namespace and its shares are admitted, nothing else.
 */
static void do_gate(struct client *c, const char *arg)
{
	char *end;
	long pid = strtol(arg, &end, 10);
	uint64_t ino;

	if (!c->mounted || !c->shareable || *end || pid <= 0 ||
	    pid > 0x7fffffff) {
		reply(c, "err %d gate needs a shareable drive and a pid\n",
		      EINVAL);
		return;
	}
	ino = ns_of_pid((pid_t)pid);
	if (ino && ino == c->ns_ino) {
		reply(c, "ok 0 %d\n", (int)pid_seen_by((pid_t)pid, c->pid));
		return;
	}
	for (int i = 0; ino && i < c->nshares; i++)
		if (c->shares[i].ino == ino) {
			reply(c, "ok %d 0\n", c->shares[i].ro);
			return;
		}
	reply(c, "err %d not admitted\n", EACCES);
}

/* Real uid of pid on the host, or -1. */
static long uid_of(pid_t pid)
{
	char p[64], line[256];
	long uid = -1;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	f = fopen(p, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %ld", &uid) == 1)
			break;
	fclose(f);
	return uid;
}

/*
 * In a child: clone the drive's mount in the client's namespace and
 * attach the clone at path in namespace dst (created there). Never
 * returns.
 */
static void share_child(const struct client *c, int dst, const char *path,
			bool ro)
{
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID |
					      MOUNT_ATTR_NODEV |
					      (ro ? MOUNT_ATTR_RDONLY : 0)};
	int fd, r;

	if (setns(c->ns_fd, CLONE_NEWNS) != 0)
		_exit(errno);
	fd = (int)syscall(SYS_open_tree, AT_FDCWD, c->path,
			  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (fd < 0)
		_exit(errno);
	if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr,
		    sizeof(attr)) != 0)
		_exit(errno);
	if (setns(dst, CLONE_NEWNS) != 0)
		_exit(errno);
	r = vd_child_mkdir_p(path);
	if (r)
		_exit(r);
	if (syscall(SYS_move_mount, fd, "", AT_FDCWD, path,
		    MOVE_MOUNT_F_EMPTY_PATH) != 0)
		_exit(errno);
	_exit(0);
}

/*
 * "share TARGET ro|rw NAME": attach this connection's drive at
 * SHARE_DIR/NAME on the host (TARGET "host") or in the container whose
 * process has host pid N (TARGET "pid:N"), if the policy allows; the
 * gate then admits that namespace. "ok PATH" or "err ERRNO message".
 */
static void do_share(struct client *c, char *args)
{
	char target[32], mode[4], name[80], p[64];
	struct share *sh;
	struct stat st;
	long tpid = 0;
	int off = 0, dst, r;
	pid_t pid;

	if (sscanf(args, "%31s %3s %79s%n", target, mode, name, &off) != 3 ||
	    args[off] || (strcmp(mode, "ro") && strcmp(mode, "rw")) ||
	    !vd_proto_name_ok(name)) {
		reply(c, "err %d usage: share host|pid:N ro|rw NAME\n", EINVAL);
		return;
	}
	if (!c->mounted) {
		reply(c, "err %d no drive on this connection\n", ENOENT);
		return;
	}
	if (!c->shareable) {
		reply(c,
		      "err %d this drive was mounted without -o shareable: "
		      "only a shareable drive can be shared\n",
		      EPERM);
		return;
	}
	if (c->nshares == MAX_SHARES) {
		reply(c, "err %d too many shares of this drive\n", ENOSPC);
		return;
	}
	if (!strcmp(target, "host")) {
		if (!policy_host && !policy_any) {
			reply(c,
			      "err %d the policy forbids sharing with the "
			      "host\n",
			      EPERM);
			return;
		}
		dst = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	} else if (sscanf(target, "pid:%ld%n", &tpid, &off) == 1 &&
		   !target[off] && tpid > 0) {
		snprintf(p, sizeof(p), "/proc/%ld/ns/mnt", tpid);
		dst = open(p, O_RDONLY | O_CLOEXEC);
		if (dst < 0) {
			reply(c, "err %d no process %ld on the host\n", ESRCH,
			      tpid);
			return;
		}
		if (!policy_any &&
		    (!policy_same_uid || uid_of((pid_t)tpid) != (long)c->uid)) {
			close(dst);
			reply(c,
			      "err %d the policy forbids sharing with "
			      "pid %ld\n",
			      EPERM, tpid);
			return;
		}
	} else {
		reply(c, "err %d target must be host or pid:N\n", EINVAL);
		return;
	}
	if (dst < 0 || fstat(dst, &st) != 0) {
		r = errno;
		if (dst >= 0)
			close(dst);
		reply(c, "err %d target namespace: %s\n", r, strerror(r));
		return;
	}
	if ((uint64_t)st.st_ino == c->ns_ino) {
		close(dst);
		reply(c,
		      "err %d a container cannot share a drive with "
		      "itself\n",
		      EEXIST);
		return;
	}
	sh = &c->shares[c->nshares];
	memset(sh, 0, sizeof(*sh));
	snprintf(sh->path, sizeof(sh->path), "%s/%s", share_dir, name);
	for (int i = 0; i < c->nshares; i++)
		if (c->shares[i].ino == (uint64_t)st.st_ino &&
		    !strcmp(c->shares[i].path, sh->path)) {
			close(dst);
			reply(c, "err %d already shared there\n", EEXIST);
			return;
		}
	pid = fork();
	if (pid == 0)
		share_child(c, dst, sh->path, !strcmp(mode, "ro"));
	r = pid < 0 ? -errno : wait_child(pid);
	if (r) {
		close(dst);
		reply(c, "err %d cannot attach at %s: %s\n", -r, sh->path,
		      strerror(-r));
		return;
	}
	snprintf(sh->target, sizeof(sh->target), "%s", target);
	snprintf(sh->name, sizeof(sh->name), "%s", name);
	sh->ns_fd = dst;
	sh->ino = (uint64_t)st.st_ino;
	sh->ro = !strcmp(mode, "ro");
	sh->pidfd = tpid ? (int)syscall(SYS_pidfd_open, (pid_t)tpid, 0) : -1;
	c->nshares++;
	record_write(c);
	logmsg("drive %u: shared with %s at %s%s", c->id, target, sh->path,
	       sh->ro ? " (read-only)" : "");
	reply(c, "ok %s\n", sh->path);
}

static void detach_share(struct client *c, int i)
{
	struct share *sh = &c->shares[i];
	int r = unmount_in(sh->ns_fd, sh->path);

	if (r && r != -EINVAL && r != -ENOENT)
		logmsg("drive %u: detach %s: %s", c->id, sh->path,
		       strerror(-r));
	close(sh->ns_fd);
	if (sh->pidfd >= 0)
		close(sh->pidfd);
	logmsg("drive %u: share with %s ended", c->id, sh->target);
	c->shares[i] = c->shares[--c->nshares];
	record_write(c);
}

/* "unshare TARGET NAME" */
static void do_unshare(struct client *c, char *args)
{
	char target[32], name[80];
	int n = 0;

	if (sscanf(args, "%31s %79s", target, name) != 2) {
		reply(c, "err %d usage: unshare host|pid:N NAME\n", EINVAL);
		return;
	}
	for (int i = c->nshares - 1; i >= 0; i--)
		if (!strcmp(c->shares[i].target, target) &&
		    !strcmp(c->shares[i].name, name)) {
			detach_share(c, i);
			n++;
		}
	if (!n)
		reply(c, "err %d not shared there\n", ENOENT);
	else
		reply(c, "ok\n");
}

/* One request line from c. */
static void handle_line(struct client *c, char *line)
{
	char *a;

	if ((a = vd_proto_args(line, VD_REQ_GATE))) {
		do_gate(c, a);
	} else if ((a = vd_proto_args(line, VD_REQ_SHARE))) {
		do_share(c, a);
	} else if ((a = vd_proto_args(line, VD_REQ_UNSHARE))) {
		do_unshare(c, a);
	} else if (!strcmp(line, VD_REQ_CLONE)) {
		do_clone(c);
	} else if ((a = vd_proto_args(line, VD_REQ_MOUNT))) {
		do_mount(c, a);
	} else if (!strcmp(line, VD_REQ_UNMOUNT)) {
		if (!c->mounted) {
			reply(c, "err %d no drive on this connection\n",
			      ENOENT);
			return;
		}
		drop_drive(c);
		reply(c, "ok\n");
	} else if (!strcmp(line, VD_REQ_LIST)) {
		do_list(c);
	} else if (!strcmp(line, VD_REQ_PING)) {
		reply(c, VD_PROTO_PING_REPLY "\n");
	} else {
		reply(c, "err %d unknown request\n", EINVAL);
	}
}

static void drop_client(int i)
{
	struct client *c = clients[i];

	drop_drive(c);
	if (c->passed_fd >= 0)
		close(c->passed_fd);
	close(c->fd);
	close(c->pidfd);
	free(c);
	clients[i] = NULL;
}

/* Read what c sent; returns false when the connection must end. */
static bool client_input(struct client *c)
{
	char *nl;
	int fd;
	ssize_t n = vd_sock_recv(c->fd, c->buf + c->len,
				 sizeof(c->buf) - c->len, &fd, MSG_DONTWAIT);

	if (n == -EAGAIN || n == -EINTR)
		return true;
	if (n <= 0)
		return false;
	/* A descriptor is for "clone"; one left from an earlier request
	 * goes. The kernel drops any beyond the first. */
	if (fd >= 0) {
		if (c->passed_fd >= 0)
			close(c->passed_fd);
		c->passed_fd = fd;
	}
	if (memchr(c->buf + c->len, '\0', (size_t)n)) {
		reply(c, "err %d NUL byte in request\n", EINVAL);
		return false;
	}
	c->len += (size_t)n;
	while ((nl = memchr(c->buf, '\n', c->len))) {
		size_t used = (size_t)(nl - c->buf) + 1;

		*nl = '\0';
		c->last_ms = now_ms();
		handle_line(c, c->buf);
		if (c->passed_fd >= 0) {
			close(c->passed_fd); /* good for one request only */
			c->passed_fd = -1;
		}
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
	}
	if (c->len == sizeof(c->buf)) {
		reply(c, "err %d request too long\n", E2BIG);
		return false;
	}
	return true;
}

/* Accept a client, pinning its identity from the kernel. */
static void accept_client(int lfd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct client *c;
	int fd, i;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	for (i = 0; i < MAX_CLIENTS && clients[i]; i++)
		;
	c = i < MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
	if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		static uint64_t said;

		/* Full: refuse at once, and say so now and then. */
		if (!c && now_ms() - said > 10000) {
			logmsg("%d connections: refusing more", MAX_CLIENTS);
			said = now_ms();
		}
		free(c);
		close(fd);
		return;
	}
	c->fd = fd;
	c->passed_fd = -1;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->gid = cred.gid;
	len = sizeof(c->pidfd);
	/* Only a kernel without SO_PEERPIDFD (before 6.5) falls back to the
	 * pid; a peer that is already gone is turned away. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &c->pidfd, &len) != 0)
		c->pidfd = errno == ENOPROTOOPT
				   ? (int)syscall(SYS_pidfd_open, c->pid, 0)
				   : -1;
	c->ns_ino = c->pidfd >= 0 ? ns_of_pid(c->pid) : 0;
	c->last_ms = now_ms();
	for (int k = 0, n = 0, np = 0; c->ns_ino && k < MAX_CLIENTS; k++) {
		if (!clients[k])
			continue;
		if (clients[k]->ns_ino == c->ns_ino && ++n >= MAX_CONN_PER_NS) {
			logmsg("pid %d: too many connections from mnt ns %llu",
			       (int)c->pid, (unsigned long long)c->ns_ino);
			c->ns_ino = 0;
		} else if (clients[k]->pid == c->pid &&
			   ++np >= MAX_CONN_PER_PID) {
			logmsg("pid %d: too many connections", (int)c->pid);
			c->ns_ino = 0;
		}
	}
	if (c->pidfd < 0 || !c->ns_ino || !pidfd_alive(c->pidfd)) {
		if (c->pidfd >= 0)
			close(c->pidfd);
		close(fd);
		free(c);
		return;
	}
	clients[i] = c;
}

/* A recovered drive's process ended: detach its shares, unmount it. */
static void drop_orphan(int slot)
{
	struct orphan *o = orphans[slot];

	for (int j = 0; j < o->nshares; j++) {
		int pid = 0, fd = -1;
		char p[64];

		if (!strcmp(o->shares[j].target, "host"))
			fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
		else if (sscanf(o->shares[j].target, "pid:%d", &pid) == 1 &&
			 ns_of_pid(pid) == o->shares[j].ino) {
			snprintf(p, sizeof(p), "/proc/%d/ns/mnt", pid);
			fd = open(p, O_RDONLY | O_CLOEXEC);
		}
		if (fd >= 0) {
			unmount_in(fd, o->shares[j].path);
			close(fd);
		}
	}
	unmount_in(o->ns_fd, o->path);
	record_remove(o->id);
	logmsg("drive %u: its process ended: unmounted", o->id);
	close(o->ns_fd);
	close(o->pidfd);
	free(o);
	orphans[slot] = NULL;
}

/*
 * After a restart: each record whose process still lives in the same
 * namespace is watched and unmounted when it ends; other records are
 * stale (their namespace is gone, and the mount with it) and removed.
 */
static void recover(void)
{
	DIR *dir = opendir(state_dir);
	struct dirent *e;

	if (!dir)
		return;
	while ((e = readdir(dir))) {
		char p[PATH_MAX + 300], path[PATH_MAX] = "";
		unsigned long long ns = 0;
		unsigned int id;
		struct orphan *o;
		int pid = 0, slot;
		FILE *f;

		if (sscanf(e->d_name, "%u.drive", &id) != 1)
			continue;
		snprintf(p, sizeof(p), "%s/%s", state_dir, e->d_name);
		f = fopen(p, "r");
		if (!f)
			continue;
		if (fscanf(f, "pid=%d\nuid=%*u\nns=%llu\npath=%4095[^\n]\n",
			   &pid, &ns, path) != 3)
			pid = 0;
		for (slot = 0; slot < MAX_CLIENTS && orphans[slot]; slot++)
			;
		o = slot < MAX_CLIENTS ? calloc(1, sizeof(*o)) : NULL;
		while (o && o->nshares < MAX_SHARES &&
		       fscanf(f, "share=%31s %llu %4095[^\n]\n",
			      o->shares[o->nshares].target,
			      &o->shares[o->nshares].ino,
			      o->shares[o->nshares].path) == 3)
			o->nshares++;
		fclose(f);
		if (o && pid > 0 &&
		    (o->pidfd = (int)syscall(SYS_pidfd_open, pid, 0)) >= 0) {
			snprintf(p, sizeof(p), "/proc/%d/ns/mnt", pid);
			o->ns_fd = open(p, O_RDONLY | O_CLOEXEC);
			if (o->ns_fd >= 0 && ns_of_pid(pid) == ns &&
			    pidfd_alive(o->pidfd)) {
				o->id = id;
				snprintf(o->path, sizeof(o->path), "%s", path);
				orphans[slot] = o;
				if (id >= next_id)
					next_id = id + 1;
				logmsg("drive %u: recovered, watching pid %d",
				       id, pid);
				continue;
			}
			if (o->ns_fd >= 0)
				close(o->ns_fd);
			close(o->pidfd);
		}
		free(o);
		record_remove(id);
	}
	closedir(dir);
}

static int listen_on(const char *path)
{
	/* Any process may connect: the kernel says who it is. */
	int fd = vd_sock_listen(path, 0666, 64, SOCK_NONBLOCK);

	if (fd == -ENAMETOOLONG)
		logmsg("socket path too long: %s", path);
	else if (fd < 0)
		logmsg("cannot listen on %s: %s", path, strerror(-fd));
	return fd < 0 ? -1 : fd;
}

/* mkdir -p for the daemon's own folders. */
static int make_dirs(const char *path)
{
	int r = vd_child_mkdir_p(path);

	if (r)
		logmsg("cannot create %s: %s", path, strerror(r));
	return r;
}

/* --share-policy: a comma list of host, same-uid, any; or none. */
static int parse_policy(const char *arg)
{
	char buf[128], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", arg);
	policy_host = policy_same_uid = policy_any = false;
	if (!strcmp(buf, "none"))
		return 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "host"))
			policy_host = true;
		else if (!strcmp(tok, "same-uid"))
			policy_same_uid = true;
		else if (!strcmp(tok, "any"))
			policy_any = true;
		else {
			logmsg("bad --share-policy word '%s'", tok);
			return -EINVAL;
		}
	}
	return 0;
}

static const char usage[] =
	"usage: vdrived [--socket PATH] [--state DIR] [--share-dir DIR]\n"
	"               [--share-policy host,same-uid|any|none]\n"
	"\n"
	"Mount FUSE drives for unprivileged containers, in the namespace of\n"
	"the process that asks (see docs/containers.md). Runs in the\n"
	"foreground, as root.\n"
	"  --socket PATH  where to listen (default /run/vdrive/vdrived.sock)\n"
	"  --state DIR    records for recovery (default /run/vdrive/vdrived)\n"
	"  --share-dir DIR  where a container's shared drive is attached, on\n"
	"                 the host and in containers (default /srv/vdrive)\n"
	"  --share-policy LIST  whom a container may share its drive with:\n"
	"                 host, same-uid (containers whose process runs as\n"
	"                 the same host uid), any, or none (default\n"
	"                 host,same-uid)\n";

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"socket", required_argument, NULL, 's'},
		{"state", required_argument, NULL, 'S'},
		{"share-dir", required_argument, NULL, 'd'},
		{"share-policy", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *sock = VD_PROTO_SOCKET;
	static struct pollfd
		pfd[1 + 2 * MAX_CLIENTS + MAX_CLIENTS * MAX_SHARES];
	static int who[1 + 2 * MAX_CLIENTS + MAX_CLIENTS * MAX_SHARES];
	struct sigaction sa = {.sa_handler = on_signal};
	char sockdir[PATH_MAX], *slash;
	int lfd, c;

	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		if (c == 's')
			sock = optarg;
		else if (c == 'S')
			state_dir = optarg;
		else if (c == 'd' && optarg[0] == '/' && strlen(optarg) > 1)
			share_dir = optarg;
		else if (c == 'P' && parse_policy(optarg) == 0)
			;
		else {
			fputs(usage, c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : 2;
		}
	}
	if (optind != argc) {
		fputs(usage, stderr);
		return 2;
	}
	if (geteuid() != 0) {
		logmsg("must run as root");
		return 1;
	}
	snprintf(sockdir, sizeof(sockdir), "%s", sock);
	slash = strrchr(sockdir, '/');
	if (slash && slash != sockdir) {
		*slash = '\0';
		if (make_dirs(sockdir))
			return 1;
	}
	if (make_dirs(state_dir))
		return 1;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	recover();
	lfd = listen_on(sock);
	if (lfd < 0)
		return 1;
	logmsg("listening on %s", sock);

	while (!stopping) {
		uint64_t now;
		int n = 0;

		pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
		who[n++] = -1;
		for (int i = 0; i < MAX_CLIENTS; i++) {
			if (clients[i]) {
				pfd[n] = (struct pollfd){.fd = clients[i]->fd,
							 .events = POLLIN};
				who[n++] = i;
				/* a share's container: its end ends the share
				 */
				for (int j = 0; j < clients[i]->nshares; j++) {
					if (clients[i]->shares[j].pidfd < 0)
						continue;
					pfd[n] = (struct pollfd){
						.fd = clients[i]
							      ->shares[j]
							      .pidfd,
						.events = POLLIN};
					who[n++] = 2 * MAX_CLIENTS +
						   i * MAX_SHARES + j;
				}
			}
			if (orphans[i]) {
				pfd[n] =
					(struct pollfd){.fd = orphans[i]->pidfd,
							.events = POLLIN};
				who[n++] = MAX_CLIENTS + i;
			}
		}
		if (poll(pfd, (nfds_t)n, 1000) < 0)
			continue;
		for (int k = 0; k < n; k++) {
			if (!pfd[k].revents)
				continue;
			if (who[k] < 0) {
				accept_client(lfd);
			} else if (who[k] < MAX_CLIENTS) {
				if (clients[who[k]] &&
				    !client_input(clients[who[k]]))
					drop_client(who[k]);
			} else if (who[k] < 2 * MAX_CLIENTS) {
				drop_orphan(who[k] - MAX_CLIENTS);
			} else {
				int i = (who[k] - 2 * MAX_CLIENTS) / MAX_SHARES;
				int j = (who[k] - 2 * MAX_CLIENTS) % MAX_SHARES;
				struct client *c = clients[i];

				if (c && j < c->nshares &&
				    c->shares[j].pidfd == pfd[k].fd)
					detach_share(c, j);
			}
		}
		/* Connections that hold no drive and say nothing go. */
		now = now_ms();
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (clients[i] && !clients[i]->mounted &&
			    now - clients[i]->last_ms > IDLE_TIMEOUT_MS) {
				logmsg("pid %d: idle for %d s: closed",
				       (int)clients[i]->pid,
				       IDLE_TIMEOUT_MS / 1000);
				drop_client(i);
			}
	}
	/* Drives stay mounted and recorded: a restarted daemon adopts them. */
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (!clients[i])
			continue;
		if (clients[i]->mounted) {
			close(clients[i]->ns_fd);
			clients[i]->mounted = false;
		}
		drop_client(i);
	}
	close(lfd);
	unlink(sock);
	logmsg("stopped");
	return 0;
}
