/*
 * ns.c - drives in other mount namespaces, and the vdrived client.
 *
 * A multi-threaded process cannot setns() into a mount namespace, so every
 * step that must happen "inside" (mkdir, mount, umount) runs in a forked,
 * single-threaded child that enters the namespace, does one thing and
 * exits with 0 or an errno. The parent keeps the /dev/fuse descriptor and
 * serves it through libfuse as "/dev/fd/N".
 *
 * The per-request gate that keeps such a drive to its namespace is in
 * gate.c; attaching a live drive in more namespaces is in share.c.
 *
 * Inside a container without /dev/fuse, vd_drive_mount() asks the host
 * daemon vdrived (over a unix socket) to mount for it and hand back the
 * FUSE descriptor; the protocol is in docs/containers.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vdrive_i.h"
#include "child.h"

#define VD_DEFAULT_SOCKET "/run/vdrive/vdrived.sock"

/* A namespace child stuck this long (a hung drive on its path, say) is
 * killed. */
#define NS_CHILD_TIMEOUT_MS 10000

/*
 * Mount fuse descriptor fuse_fd at path inside the mount namespace ns_fd,
 * creating path there when missing. Runs the namespace part in a child.
 */
static int ns_mount(int ns_fd, const char *path, int fuse_fd,
		    const struct vd_drive *d)
{
	char data[512], type[128];
	unsigned long flags = MS_NOSUID | MS_NODEV;
	pid_t pid;

	snprintf(data, sizeof(data),
		 "fd=%d,rootmode=40000,user_id=%u,group_id=%u%s%s", fuse_fd,
		 (unsigned)getuid(), (unsigned)getgid(),
		 d->default_permissions ? ",default_permissions" : "",
		 d->allow_other ? ",allow_other" : "");
	snprintf(type, sizeof(type), "fuse.%s",
		 d->subtype ? d->subtype : "vdrive");
	if (d->ro)
		flags |= MS_RDONLY;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int r;

		if (setns(ns_fd, CLONE_NEWNS) != 0)
			_exit(errno);
		r = vd_child_mkdir_p(path);
		if (r)
			_exit(r);
		if (mount(d->fsname ? d->fsname : "vdrive", path, type, flags,
			  data) != 0)
			_exit(errno);
		_exit(0);
	}
	return vd_child_wait(pid, NS_CHILD_TIMEOUT_MS, NULL);
}

/* Detach the mount at path inside namespace ns_fd (from a child). */
static int ns_umount(int ns_fd, const char *path)
{
	return vd_child_umount_in(ns_fd, path, NS_CHILD_TIMEOUT_MS, NULL);
}

int vd_drive_mount_ns(struct vd_drive *d, const char *path, int mntns_fd)
{
	char fdpath[32];
	struct stat st;
	int fuse_fd, ns_fd, r;

	if (!d || !path || path[0] != '/' || mntns_fd < 0)
		return -EINVAL;
	if (d->se) {
		vd_set_error(d, "already mounted at %s", d->mountpoint);
		return -EBUSY;
	}
	if (fstat(mntns_fd, &st) != 0) {
		r = -errno;
		vd_set_error(d, "target namespace: %s", strerror(errno));
		return r;
	}
	r = vd_drive_allow(d, (uint64_t)st.st_ino);
	if (r)
		return r;
	ns_fd = fcntl(mntns_fd, F_DUPFD_CLOEXEC, 3);
	if (ns_fd < 0)
		return -errno;
	fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fuse_fd < 0) {
		r = -errno;
		vd_set_error(d, "cannot open /dev/fuse: %s", strerror(errno));
		close(ns_fd);
		return r;
	}
	r = ns_mount(ns_fd, path, fuse_fd, d);
	if (r) {
		vd_set_error(d,
			     "cannot mount at %s in the target namespace: %s",
			     path, strerror(-r));
		goto out_err;
	}
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", fuse_fd);
	r = vd_drive_mount(d, fdpath);
	if (r) {
		ns_umount(ns_fd, path);
		goto out_err;
	}
	/* The session owns fuse_fd now; show the real mount point. */
	free(d->mountpoint);
	d->mountpoint = strdup(path);
	d->ns_path = strdup(path);
	if (!d->mountpoint || !d->ns_path) {
		vd_drive_stop(d);
		ns_umount(ns_fd, path);
		close(ns_fd);
		return -ENOMEM;
	}
	d->ns_fd = ns_fd;
	d->ns_mounted = true;
	return 0;

out_err:
	close(fuse_fd);
	close(ns_fd);
	return r;
}

/* Called with state_lock held when the drive is unmounted. */
void vd_ns_unmount(struct vd_drive *d)
{
	char buf[256];

	if (d->ns_mounted) {
		d->ns_mounted = false;
		ns_umount(d->ns_fd, d->ns_path);
		/* Let the namespace go when its last process does. */
		close(d->ns_fd);
	}
	if (d->via_daemon) {
		d->via_daemon = false;
#ifdef VD_DAEMON_CLONES
		clone_map_set(fuse_session_fd(d->se), -1);
		pthread_mutex_lock(&clone_lock);
#endif
		/* The daemon unmounts, then answers; closing is enough if it
		 * is gone (it unmounts when the connection ends). */
		if (send(d->daemon_fd, "unmount\n", 8, MSG_NOSIGNAL) == 8) {
			struct pollfd p = {.fd = d->daemon_fd,
					   .events = POLLIN};

			if (poll(&p, 1, 5000) > 0 &&
			    read(d->daemon_fd, buf, sizeof(buf)) < 0)
				buf[0] = '\0';
		}
		close(d->daemon_fd);
#ifdef VD_DAEMON_CLONES
		pthread_mutex_unlock(&clone_lock);
#endif
	}
}

/* Watcher thread: when the watched process ends, stop the drive. */
static void *watch_thread(void *arg)
{
	struct vd_drive *d = arg;
	struct pollfd p[2] = {
		{.fd = d->watch_pidfd, .events = POLLIN},
		{.fd = d->watch_pipe[0], .events = POLLIN},
	};

	while (poll(p, 2, -1) < 0 && errno == EINTR)
		;
	if (p[0].revents && !p[1].revents) {
		vd_log(d, "the container's process ended: unmounting");
		fuse_session_exit(d->se);
		vd_unmount_once(d);
	}
	return NULL;
}

int vd_drive_watch_pid(struct vd_drive *d, pid_t pid)
{
	int r;

	if (!d || pid <= 0 || !d->se)
		return -EINVAL;
	if (d->watching)
		return -EBUSY;
	d->watch_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (d->watch_pidfd < 0)
		return -errno;
	if (pipe2(d->watch_pipe, O_CLOEXEC) != 0) {
		r = -errno;
		close(d->watch_pidfd);
		return r;
	}
	r = pthread_create(&d->watch_thread, NULL, watch_thread, d);
	if (r) {
		close(d->watch_pidfd);
		close(d->watch_pipe[0]);
		close(d->watch_pipe[1]);
		return -r;
	}
	d->watching = true;
	return 0;
}

/* Stop the watcher; before the session goes away. */
void vd_ns_free(struct vd_drive *d)
{
	if (d->watching) {
		d->watching = false;
		if (write(d->watch_pipe[1], "x", 1) < 0)
			vd_log(d, "cannot wake the watcher");
		pthread_join(d->watch_thread, NULL);
		close(d->watch_pidfd);
		close(d->watch_pipe[0]);
		close(d->watch_pipe[1]);
	}
}

#if FUSE_MAJOR_VERSION * 100 + FUSE_MINOR_VERSION >= 317
#define VD_DAEMON_CLONES 1
#endif

static int recv_reply(int sock, char *buf, size_t size, int *fd);

/* One request at a time on each daemon connection (clones from the
 * serving threads, gate questions, shares). */
static pthread_mutex_t clone_lock = PTHREAD_MUTEX_INITIALIZER;

#ifdef VD_DAEMON_CLONES
/*
 * libfuse asks for a clone of the connection for each worker thread by
 * master descriptor only, so the daemon connection of each master lives
 * here.
 */
static struct {
	int master, sock;
} clone_map[32];

static void clone_map_set(int master, int sock)
{
	pthread_mutex_lock(&clone_lock);
	for (size_t i = 0; i < sizeof(clone_map) / sizeof(clone_map[0]); i++) {
		if (sock >= 0 && clone_map[i].sock <= 0) {
			clone_map[i].master = master;
			clone_map[i].sock = sock + 1; /* 0: a free slot */
			break;
		}
		if (sock < 0 && clone_map[i].sock > 0 &&
		    clone_map[i].master == master)
			clone_map[i].sock = 0;
	}
	pthread_mutex_unlock(&clone_lock);
}

/* Send "clone" with the master attached; vdrived opens /dev/fuse, clones
 * the connection onto it (FUSE_DEV_IOC_CLONE) and sends it back. */
static int clone_via_daemon(int master_fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = {0}, reply[64];
	struct iovec iov = {.iov_base = "clone\n", .iov_len = 6};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	int sock = -1, fd = -1;

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &master_fd, sizeof(int));
	pthread_mutex_lock(&clone_lock);
	for (size_t i = 0; i < sizeof(clone_map) / sizeof(clone_map[0]); i++)
		if (clone_map[i].sock > 0 && clone_map[i].master == master_fd)
			sock = clone_map[i].sock - 1;
	if (sock >= 0 && sendmsg(sock, &mh, MSG_NOSIGNAL) == 6 &&
	    recv_reply(sock, reply, sizeof(reply), &fd) == 0 &&
	    strncmp(reply, "ok", 2) != 0 && fd >= 0) {
		close(fd);
		fd = -1;
	}
	pthread_mutex_unlock(&clone_lock);
	return fd;
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	return writev(fd, iov, count);
}
#endif

/*
 * Attach the session to its connection: fuse_session_mount(), except for
 * a connection from vdrived with a libfuse that takes a clone callback.
 */
int vd_ns_session_mount(struct vd_drive *d, const char *mountpoint)
{
#ifdef VD_DAEMON_CLONES
	static const struct fuse_custom_io io = {
		.read = io_read,
		.writev = io_writev,
		.clone_fd = clone_via_daemon,
	};
	int fd;

	if (d->daemon_io && sscanf(mountpoint, "/dev/fd/%d", &fd) == 1) {
		int r = fuse_session_custom_io_317(d->se, &io, sizeof(io), fd);

		if (r == 0) {
			clone_map_set(fd, d->daemon_fd);
			d->daemon_clones = true;
			return 0;
		}
		if (r != -ENOTSUP)
			return -1;
		/* A libfuse built without custom io (3.18's default): the
		 * workers then share the one descriptor. */
	}
#endif
	return fuse_session_mount(d->se, mountpoint);
}

bool vd_ns_can_clone(const struct vd_drive *d)
{
#ifdef VD_DAEMON_CLONES
	return !d->via_daemon || d->daemon_clones;
#else
	return !d->via_daemon;
#endif
}

/* Receive one line (up to size-1 bytes) and at most one descriptor. */
static int recv_reply(int sock, char *buf, size_t size, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = buf, .iov_len = size - 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;
	ssize_t n;

	*fd = -1;
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : -errno;
	buf[n] = '\0';
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	return 0;
}

/* Where vdrived listens: $VDRIVE_SOCKET, or the default. */
static const char *daemon_socket(void)
{
	const char *s = getenv("VDRIVE_SOCKET");

	return s && *s ? s : VD_DEFAULT_SOCKET;
}

bool vd_ns_daemon_available(void)
{
	return access(daemon_socket(), W_OK) == 0;
}

/*
 * Ask vdrived to mount a FUSE connection at path in this process's own
 * namespace, then serve the descriptor it sends back.
 */
int vd_ns_mount_via_daemon(struct vd_drive *d, const char *mountpoint)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char path[PATH_MAX], req[PATH_MAX + 256], reply[512], fdpath[32];
	const char *sock = daemon_socket();
	int s, fd = -1, r, err;

	if (mountpoint[0] == '/') {
		snprintf(path, sizeof(path), "%s", mountpoint);
	} else {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		snprintf(path, sizeof(path), "%s/%s", cwd, mountpoint);
	}
	if (strlen(sock) >= sizeof(sa.sun_path) || strchr(path, '\n'))
		return -EINVAL;
	strcpy(sa.sun_path, sock);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		r = -errno;
		vd_set_error(d, "no /dev/fuse, and vdrived at %s: %s", sock,
			     strerror(errno));
		goto out;
	}
	snprintf(req, sizeof(req), "mount %s%s%s%s %s\n", d->ro ? "ro," : "",
		 d->allow_other ? "allow_other," : "",
		 d->shareable ? "shareable," : "",
		 d->default_permissions ? "default_permissions" : "-", path);
	if (write(s, req, strlen(req)) != (ssize_t)strlen(req)) {
		r = -EIO;
		vd_set_error(d, "vdrived: cannot send the request");
		goto out;
	}
	r = recv_reply(s, reply, sizeof(reply), &fd);
	if (r) {
		vd_set_error(d, "vdrived: no answer (%s)", strerror(-r));
		goto out;
	}
	reply[strcspn(reply, "\n")] = '\0';
	if (strncmp(reply, "ok", 2) != 0 || fd < 0) {
		err = 0;
		if (sscanf(reply, "err %d", &err) != 1 || err <= 0)
			err = EIO;
		r = -err;
		vd_set_error(d, "vdrived refused: %s", reply);
		goto out;
	}
	/* This drive lives in our namespace only; nobody else may use it
	 * (a shareable one: nobody the daemon does not admit). */
	r = vd_drive_allow(d, 0);
	if (r)
		goto out;
	d->gate_daemon = d->shareable;
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", fd);
	d->daemon_fd = s;
	d->daemon_io = true;
	r = vd_drive_mount(d, fdpath);
	d->daemon_io = false;
	if (r)
		goto out; /* closing s makes the daemon unmount */
	free(d->mountpoint);
	d->mountpoint = strdup(path);
	d->gate_dev = vd_own_mount_dev(path);
	d->daemon_fd = s;
	d->via_daemon = true;
	return 0;
out:
	if (fd >= 0)
		close(fd);
	close(s);
	return r;
}

/* Send one request line on the drive's daemon connection and read the
 * one-line answer into buf: 0 for "ok ...", else -errno from "err". */
static int daemon_ask(struct vd_drive *d, const char *req, char *buf, size_t n)
{
	int fd = -1, r, err;

	/* daemon_io: still mounting, daemon_fd already valid */
	if (!d->via_daemon && !d->daemon_io)
		return -EINVAL;
	pthread_mutex_lock(&clone_lock);
	if (send(d->daemon_fd, req, strlen(req), MSG_NOSIGNAL) !=
	    (ssize_t)strlen(req))
		r = -EIO;
	else
		r = recv_reply(d->daemon_fd, buf, n, &fd);
	pthread_mutex_unlock(&clone_lock);
	if (fd >= 0)
		close(fd);
	if (r)
		return r;
	buf[strcspn(buf, "\n")] = '\0';
	if (!strncmp(buf, "ok", 2))
		return 0;
	err = EIO;
	if (sscanf(buf, "err %d", &err) != 1 || err <= 0)
		err = EIO;
	return -err;
}

int vd_ns_daemon_gate(struct vd_drive *d, pid_t pid, pid_t *local)
{
	char req[64], buf[128];
	int ro = 0, lp = 0;

	snprintf(req, sizeof(req), "gate %d\n", (int)pid);
	/* Fail closed: no daemon, no admission. */
	if (daemon_ask(d, req, buf, sizeof(buf)) != 0 ||
	    sscanf(buf, "ok %d %d", &ro, &lp) != 2)
		return -EACCES;
	*local = (pid_t)lp;
	return ro ? (int)VD_ADMIT_READONLY : 0;
}

int vd_drive_via_daemon(const struct vd_drive *d)
{
	return d && d->via_daemon;
}

/* A plain word: what vdrived accepts as a share name. */
static bool plain(const char *s)
{
	if (!s || !*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
		      *s == '.'))
			return false;
	return true;
}

int vd_drive_share_remote(struct vd_drive *d, const char *target,
			  const char *name, unsigned int flags, char *where,
			  size_t n)
{
	char req[256], buf[PATH_MAX + 64];
	int r;

	if (!d || !target || strlen(target) > 31 || strchr(target, ' ') ||
	    strchr(target, '\n') || !plain(name) ||
	    (flags & ~VD_ADMIT_READONLY))
		return -EINVAL;
	if (!d->via_daemon) {
		vd_set_error(d, "the drive was not mounted through vdrived");
		return -EINVAL;
	}
	snprintf(req, sizeof(req), "share %s %s %s\n", target,
		 flags & VD_ADMIT_READONLY ? "ro" : "rw", name);
	r = daemon_ask(d, req, buf, sizeof(buf));
	if (r) {
		vd_set_error(d, "vdrived: %s",
			     strchr(buf + 4, ' ') ? strchr(buf + 4, ' ') + 1
						  : strerror(-r));
		return r;
	}
	if (where && n)
		snprintf(where, n, "%s", buf[2] ? buf + 3 : "");
	return 0;
}

int vd_drive_unshare_remote(struct vd_drive *d, const char *target,
			    const char *name)
{
	char req[256], buf[256];
	int r;

	if (!d || !target || strlen(target) > 31 || strchr(target, ' ') ||
	    strchr(target, '\n') || !plain(name))
		return -EINVAL;
	snprintf(req, sizeof(req), "unshare %s %s\n", target, name);
	r = daemon_ask(d, req, buf, sizeof(buf));
	if (r)
		vd_set_error(d, "vdrived: %s",
			     strchr(buf + 4, ' ') ? strchr(buf + 4, ' ') + 1
						  : strerror(-r));
	return r;
}
