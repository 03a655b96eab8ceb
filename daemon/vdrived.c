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
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define MAX_CLIENTS 256
/* Drives one namespace may hold, and connections it may open (so one
 * container cannot starve the others). */
#define MAX_PER_NS 16
#define MAX_CONN_PER_NS 32
#define LINE_MAX_ 4096
#define MAX_CLONES 64 /* cloned connections per drive */
#define CHILD_TIMEOUT_MS 5000

struct client {
	int fd;
	int pidfd; /* the peer process, pinned at connect time */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint64_t ns_ino;
	char buf[LINE_MAX_];
	size_t len;
	/* its drive, when it has one */
	bool mounted;
	int ns_fd;
	unsigned int id;
	char path[PATH_MAX];
	int passed_fd; /* a descriptor sent with the current request, or -1 */
	int clones;
};

/* A drive recovered from a record after a restart: its process is
 * watched, and when it ends the drive is unmounted. */
struct orphan {
	int pidfd;
	int ns_fd;
	unsigned int id;
	char path[PATH_MAX];
};

static struct client *clients[MAX_CLIENTS];
static struct orphan *orphans[MAX_CLIENTS];
static const char *state_dir = "/run/vdrive/vdrived";
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
	unsigned long flags = MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0);
	char data[256];
	struct stat st;
	pid_t pid;
	int r;

	if (setns(c->pidfd, CLONE_NEWNS | CLONE_NEWPID) != 0)
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
	char line[LINE_MAX_];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		logmsg("pid %d: reply lost: %s", (int)c->pid, strerror(errno));
}

/* Send "ok\n" with fd attached. */
static int send_fd(struct client *c, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {.iov_base = "ok\n", .iov_len = 3};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	if (sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) != 3)
		return -EIO;
	return 0;
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
static bool parse_opts(char *opts, char *data, size_t n, bool *ro)
{
	char *tok, *save = NULL;

	data[0] = '\0';
	*ro = false;
	if (!strcmp(opts, "-"))
		return true;
	for (tok = strtok_r(opts, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "ro"))
			*ro = true;
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
	bool ro;
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
	if (!path_ok(path) || !parse_opts(args, data, sizeof(data), &ro)) {
		reply(c, "err %d bad path or option\n", EINVAL);
		return;
	}
	if (count_in_ns(c->ns_ino) >= MAX_PER_NS) {
		reply(c, "err %d too many drives in this container\n", ENOSPC);
		return;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
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

/* Undo the client's drive, if any. */
static void drop_drive(struct client *c)
{
	int r;

	if (!c->mounted)
		return;
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

/* One request line from c. */
static void handle_line(struct client *c, char *line)
{
	if (!strcmp(line, "clone")) {
		do_clone(c);
	} else if (!strncmp(line, "mount ", 6)) {
		do_mount(c, line + 6);
	} else if (!strcmp(line, "unmount")) {
		if (!c->mounted) {
			reply(c, "err %d no drive on this connection\n",
			      ENOENT);
			return;
		}
		drop_drive(c);
		reply(c, "ok\n");
	} else if (!strcmp(line, "list")) {
		do_list(c);
	} else if (!strcmp(line, "ping")) {
		reply(c, "ok vdrived 1\n");
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

/* Keep the first descriptor a message carried (for "clone"); close the
 * rest, and any left from an earlier request. */
static void take_fds(struct client *c, struct msghdr *mh)
{
	struct cmsghdr *cm;

	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		int *fds = (int *)CMSG_DATA(cm);
		size_t n;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			if (c->passed_fd >= 0)
				close(c->passed_fd);
			c->passed_fd = fds[i];
		}
	}
}

/* Read what c sent; returns false when the connection must end. */
static bool client_input(struct client *c)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))];
	struct iovec iov = {.iov_base = c->buf + c->len,
			    .iov_len = sizeof(c->buf) - c->len};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	char *nl;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0)
		return false;
	take_fds(c, &mh);
	if (memchr(c->buf + c->len, '\0', (size_t)n)) {
		reply(c, "err %d NUL byte in request\n", EINVAL);
		return false;
	}
	c->len += (size_t)n;
	while ((nl = memchr(c->buf, '\n', c->len))) {
		size_t used = (size_t)(nl - c->buf) + 1;

		*nl = '\0';
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
	for (int k = 0, n = 0; c->ns_ino && k < MAX_CLIENTS; k++)
		if (clients[k] && clients[k]->ns_ino == c->ns_ino &&
		    ++n >= MAX_CONN_PER_NS) {
			logmsg("pid %d: too many connections from mnt ns %llu",
			       (int)c->pid, (unsigned long long)c->ns_ino);
			c->ns_ino = 0;
			break;
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
		if (fscanf(f, "pid=%d\nuid=%*u\nns=%llu\npath=%4095[^\n]", &pid,
			   &ns, path) != 3)
			pid = 0;
		fclose(f);
		for (slot = 0; slot < MAX_CLIENTS && orphans[slot]; slot++)
			;
		o = slot < MAX_CLIENTS ? calloc(1, sizeof(*o)) : NULL;
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
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		logmsg("socket path too long: %s", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    chmod(path, 0666) != 0 || listen(fd, 64) != 0) {
		logmsg("cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* mkdir -p for the daemon's own folders. */
static int make_dirs(const char *path)
{
	int r = vd_child_mkdir_p(path);

	if (r)
		logmsg("cannot create %s: %s", path, strerror(r));
	return r;
}

static const char usage[] =
	"usage: vdrived [--socket PATH] [--state DIR]\n"
	"\n"
	"Mount FUSE drives for unprivileged containers, in the namespace of\n"
	"the process that asks (see docs/containers.md). Runs in the\n"
	"foreground, as root.\n"
	"  --socket PATH  where to listen (default /run/vdrive/vdrived.sock)\n"
	"  --state DIR    records for recovery (default /run/vdrive/vdrived)\n";

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"socket", required_argument, NULL, 's'},
		{"state", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *sock = "/run/vdrive/vdrived.sock";
	struct pollfd pfd[1 + 2 * MAX_CLIENTS];
	int who[1 + 2 * MAX_CLIENTS];
	struct sigaction sa = {.sa_handler = on_signal};
	char sockdir[PATH_MAX], *slash;
	int lfd, c;

	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		if (c == 's')
			sock = optarg;
		else if (c == 'S')
			state_dir = optarg;
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
		int n = 0;

		pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
		who[n++] = -1;
		for (int i = 0; i < MAX_CLIENTS; i++) {
			if (clients[i]) {
				pfd[n] = (struct pollfd){.fd = clients[i]->fd,
							 .events = POLLIN};
				who[n++] = i;
			}
			if (orphans[i]) {
				pfd[n] =
					(struct pollfd){.fd = orphans[i]->pidfd,
							.events = POLLIN};
				who[n++] = MAX_CLIENTS + i;
			}
		}
		if (poll(pfd, (nfds_t)n, -1) < 0)
			continue;
		for (int k = 0; k < n; k++) {
			if (!pfd[k].revents)
				continue;
			if (who[k] < 0) {
				accept_client(lfd);
			} else if (who[k] < MAX_CLIENTS) {
				if (!client_input(clients[who[k]]))
					drop_client(who[k]);
			} else {
				struct orphan *o =
					orphans[who[k] - MAX_CLIENTS];

				unmount_in(o->ns_fd, o->path);
				record_remove(o->id);
				logmsg("drive %u: its process ended: unmounted",
				       o->id);
				close(o->ns_fd);
				close(o->pidfd);
				free(o);
				orphans[who[k] - MAX_CLIENTS] = NULL;
			}
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
