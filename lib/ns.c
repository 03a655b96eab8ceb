/*
 * ns.c - where a drive is mounted: in another mount namespace, and
 * unmounting it from everywhere once.
 *
 * A multi-threaded process cannot setns() into a mount namespace, so every
 * step that must happen "inside" (mkdir, mount, umount) runs in a forked,
 * single-threaded child that enters the namespace, does one thing and
 * exits with 0 or an errno. The parent keeps the /dev/fuse descriptor and
 * serves it through libfuse as "/dev/fd/N" (drive.c's vd_drive_mount_ns).
 *
 * Below the drive's lifecycle (drive.c): it calls the gate (gate.c),
 * shares (share.c), the vdrived client (daemon.c) and log.c, never back
 * up. The watcher that ends a drive when its container's process ends is
 * here too: all it does is unmount.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vdrive_i.h"
#include "child.h"

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

int vd_ns_mount(struct vd_drive *d, const char *path, int mntns_fd,
		int *fuse_fd)
{
	struct stat st;
	int fd, ns_fd, r;

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
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		vd_set_error(d, "cannot open /dev/fuse: %s", strerror(errno));
		close(ns_fd);
		return r;
	}
	r = ns_mount(ns_fd, path, fd, d);
	if (r) {
		vd_set_error(d,
			     "cannot mount at %s in the target namespace: %s",
			     path, strerror(-r));
		goto out_err;
	}
	free(d->ns_path);
	d->ns_path = strdup(path);
	if (!d->ns_path) {
		ns_umount(ns_fd, path);
		r = -ENOMEM;
		goto out_err;
	}
	d->ns_fd = ns_fd;
	d->ns_mounted = true;
	*fuse_fd = fd;
	return 0;

out_err:
	close(fd);
	close(ns_fd);
	return r;
}

void vd_ns_unmount(struct vd_drive *d)
{
	if (d->ns_mounted) {
		d->ns_mounted = false;
		ns_umount(d->ns_fd, d->ns_path);
		/* Let the namespace go when its last process does. */
		close(d->ns_fd);
	}
}

void vd_unmount_once(struct vd_drive *d)
{
	pthread_mutex_lock(&d->state_lock);
	if (d->mounted) {
		d->mounted = false;
		/* Shares first: each keeps the superblock alive. */
		vd_share_detach_all(d);
		fuse_session_unmount(d->se);
		vd_ns_unmount(d);
		vd_daemon_unmount(d);
	}
	pthread_mutex_unlock(&d->state_lock);
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
