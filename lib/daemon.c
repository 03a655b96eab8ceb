/*
 * daemon.c - the vdrived client.
 *
 * Inside a container without /dev/fuse, vd_drive_mount() asks the host
 * daemon vdrived (over a unix socket) to mount for it and hand back the
 * FUSE descriptor; the connection then stays open for the drive's life:
 * closing it unmounts. On it the drive also asks for clones of its FUSE
 * connection (one per worker thread), for the gate's verdict on a host pid
 * (a shareable drive), and for shares. The protocol is in
 * common/vdproto.h (docs/containers.md for people).
 *
 * Below the drive's lifecycle (drive.c), beside the gate: it calls only
 * log.c and common/.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "vdrive_i.h"
#include "sock.h"
#include "vdproto.h"

#if FUSE_MAJOR_VERSION * 100 + FUSE_MINOR_VERSION >= 317
#define VD_DAEMON_CLONES 1
#endif

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
	static const char req[] = VD_REQ_CLONE "\n";
	char reply[64];
	int sock = -1, fd = -1;

	pthread_mutex_lock(&clone_lock);
	for (size_t i = 0; i < sizeof(clone_map) / sizeof(clone_map[0]); i++)
		if (clone_map[i].sock > 0 && clone_map[i].master == master_fd)
			sock = clone_map[i].sock - 1;
	if (sock >= 0 &&
	    vd_sock_send(sock, req, sizeof(req) - 1, master_fd, 0) == 0 &&
	    vd_sock_recv_line(sock, reply, sizeof(reply), &fd) == 0 &&
	    vd_proto_reply(reply, NULL) != 0 && fd >= 0) {
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
int vd_daemon_session_mount(struct vd_drive *d, const char *mountpoint)
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

bool vd_daemon_can_clone(const struct vd_drive *d)
{
#ifdef VD_DAEMON_CLONES
	return !d->via_daemon || d->daemon_clones;
#else
	return !d->via_daemon;
#endif
}

/* Where vdrived listens: $VDRIVE_SOCKET, or the default. */
static const char *daemon_socket(void)
{
	const char *s = getenv(VD_PROTO_SOCKET_ENV);

	return s && *s ? s : VD_PROTO_SOCKET;
}

bool vd_daemon_available(void)
{
	return access(daemon_socket(), W_OK) == 0;
}

int vd_daemon_mount(struct vd_drive *d, const char *mountpoint, char *path,
		    size_t n, int *fuse_fd)
{
	struct sockaddr_un sa;
	char req[PATH_MAX + 256], reply[512];
	const char *sock = daemon_socket();
	int s, fd = -1, r;

	if (mountpoint[0] == '/') {
		snprintf(path, n, "%s", mountpoint);
	} else {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		snprintf(path, n, "%s/%s", cwd, mountpoint);
	}
	if (strlen(sock) >= sizeof(sa.sun_path) || strchr(path, '\n'))
		return -EINVAL;
	s = vd_sock_connect(sock);
	if (s < 0) {
		vd_set_error(d, "no /dev/fuse, and vdrived at %s: %s", sock,
			     strerror(-s));
		return s;
	}
	snprintf(req, sizeof(req), VD_REQ_MOUNT " %s%s%s%s %s\n",
		 d->ro ? VD_PROTO_OPT_RO "," : "",
		 d->allow_other ? VD_PROTO_OPT_ALLOW_OTHER "," : "",
		 d->shareable ? VD_PROTO_OPT_SHAREABLE "," : "",
		 d->default_permissions ? VD_PROTO_OPT_DEFAULT_PERMISSIONS
					: "-",
		 path);
	r = vd_sock_send(s, req, strlen(req), -1, 0);
	if (r) {
		r = -EIO;
		vd_set_error(d, "vdrived: cannot send the request");
		goto out;
	}
	r = vd_sock_recv_line(s, reply, sizeof(reply), &fd);
	if (r) {
		vd_set_error(d, "vdrived: no answer (%s)", strerror(-r));
		goto out;
	}
	reply[strcspn(reply, "\n")] = '\0';
	r = vd_proto_reply(reply, NULL);
	if (r || fd < 0) {
		if (!r)
			r = -EIO;
		vd_set_error(d, "vdrived refused: %s", reply);
		goto out;
	}
	d->daemon_fd = s;
	*fuse_fd = fd;
	return 0;
out:
	if (fd >= 0)
		close(fd);
	close(s);
	return r;
}

void vd_daemon_close(struct vd_drive *d)
{
	close(d->daemon_fd);
	d->daemon_fd = -1;
}

/* Called with state_lock held when the drive is unmounted. */
void vd_daemon_unmount(struct vd_drive *d)
{
	static const char req[] = VD_REQ_UNMOUNT "\n";
	char buf[256];

	if (!d->via_daemon)
		return;
	d->via_daemon = false;
#ifdef VD_DAEMON_CLONES
	clone_map_set(fuse_session_fd(d->se), -1);
#endif
	pthread_mutex_lock(&clone_lock);
	/* The daemon unmounts, then answers; closing is enough if it is
	 * gone (it unmounts when the connection ends). */
	if (vd_sock_send(d->daemon_fd, req, sizeof(req) - 1, -1, 0) == 0) {
		struct pollfd p = {.fd = d->daemon_fd, .events = POLLIN};
		int fd;

		if (poll(&p, 1, 5000) > 0 &&
		    vd_sock_recv(d->daemon_fd, buf, sizeof(buf), &fd, 0) >= 0 &&
		    fd >= 0)
			close(fd);
	}
	vd_daemon_close(d);
	pthread_mutex_unlock(&clone_lock);
}

/* Send one request line on the drive's daemon connection and read the
 * one-line answer into buf: 0 for "ok ...", else -errno from "err". */
static int daemon_ask(struct vd_drive *d, const char *req, char *buf, size_t n)
{
	int fd = -1, r;

	/* daemon_io: still mounting, daemon_fd already valid */
	if (!d->via_daemon && !d->daemon_io)
		return -EINVAL;
	pthread_mutex_lock(&clone_lock);
	r = vd_sock_send(d->daemon_fd, req, strlen(req), -1, 0);
	if (r)
		r = -EIO;
	else
		r = vd_sock_recv_line(d->daemon_fd, buf, n, &fd);
	pthread_mutex_unlock(&clone_lock);
	if (fd >= 0)
		close(fd);
	if (r)
		return r;
	buf[strcspn(buf, "\n")] = '\0';
	return vd_proto_reply(buf, NULL);
}

int vd_daemon_gate(struct vd_drive *d, pid_t pid, pid_t *local)
{
	char req[64], buf[128];
	int ro = 0, lp = 0;

	snprintf(req, sizeof(req), VD_REQ_GATE " %d\n", (int)pid);
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

/* A share target vdrived accepts: "host" or "pid:N", one word. */
static bool target_ok(const char *t)
{
	return t && strlen(t) <= VD_PROTO_TARGET_MAX && !strchr(t, ' ') &&
	       !strchr(t, '\n');
}

/* The message of a failed reply, or what its errno says. */
static void set_reply_error(struct vd_drive *d, const char *buf, int r)
{
	const char *msg = NULL;

	vd_proto_reply(buf, &msg);
	vd_set_error(d, "vdrived: %s", msg ? msg : strerror(-r));
}

int vd_drive_share_remote(struct vd_drive *d, const char *target,
			  const char *name, unsigned int flags, char *where,
			  size_t n)
{
	char req[256], buf[PATH_MAX + 64];
	const char *rest;
	int r;

	vd_clear_error(d);
	if (!d || !target_ok(target) || !vd_proto_name_ok(name) ||
	    (flags & ~VD_ADMIT_READONLY))
		return -EINVAL;
	if (!d->via_daemon) {
		vd_set_error(d, "the drive was not mounted through vdrived");
		return -EINVAL;
	}
	snprintf(req, sizeof(req), VD_REQ_SHARE " %s %s %s\n", target,
		 flags & VD_ADMIT_READONLY ? "ro" : "rw", name);
	buf[0] = '\0';
	r = daemon_ask(d, req, buf, sizeof(buf));
	if (r) {
		set_reply_error(d, buf, r);
		return r;
	}
	if (where && n) {
		vd_proto_reply(buf, &rest);
		snprintf(where, n, "%s", rest);
	}
	return 0;
}

int vd_drive_unshare_remote(struct vd_drive *d, const char *target,
			    const char *name)
{
	char req[256], buf[256];
	int r;

	vd_clear_error(d);
	if (!d || !target_ok(target) || !vd_proto_name_ok(name))
		return -EINVAL;
	snprintf(req, sizeof(req), VD_REQ_UNSHARE " %s %s\n", target, name);
	buf[0] = '\0';
	r = daemon_ask(d, req, buf, sizeof(buf));
	if (r)
		set_reply_error(d, buf, r);
	return r;
}
