/*
 * share.c - one live drive attached in more mount namespaces.
 *
 * A share is a clone of the drive's own mount, made with the new mount
 * API in a forked single-threaded child (a multi-threaded process cannot
 * setns() into a mount namespace): open_tree(OPEN_TREE_CLONE) where the
 * drive is mounted gives a detached copy of the mount, mount_setattr()
 * makes it read-only and nosuid,nodev, and after setns() into the target
 * namespace move_mount() puts it at the path. Same superblock, same
 * connection: requests from there reach this process, and the gate
 * (gate.c) admits the target namespace with the share's flags.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "child.h"
#include "vdrive_i.h"

#define VD_MAX_SHARES 64
#define SHARE_CHILD_TIMEOUT_MS 10000

struct vd_attach {
	struct vd_attach *next;
	char *path;
	int ns_fd;
	uint64_t ino;
	unsigned int flags;
	bool admitted; /* the gate admitted the namespace before the share */
};

/* Valid share paths: absolute, not "/", no "." or ".." components. */
static bool good_path(const char *p)
{
	const char *c;

	if (!p || p[0] != '/' || !p[1] || strlen(p) >= 4096)
		return false;
	for (c = p; *c; c++)
		if ((unsigned char)*c < 0x20)
			return false;
	for (c = p; (c = strchr(c, '/')); c++)
		if ((c[1] == '.' && (c[2] == '/' || !c[2])) ||
		    (c[1] == '.' && c[2] == '.' && (c[3] == '/' || !c[3])))
			return false;
	return true;
}

/*
 * In a child: clone the drive's mount (in src_ns, or here when -1) and
 * attach the clone at path in dst_ns. Only syscalls: the parent has
 * threads.
 */
static int clone_into(int src_ns, const char *src, int dst_ns, const char *path,
		      unsigned int flags)
{
	struct mount_attr attr = {.attr_set =
					  MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd, r;

		if (src_ns >= 0 && setns(src_ns, CLONE_NEWNS) != 0)
			_exit(errno);
		fd = (int)syscall(SYS_open_tree, AT_FDCWD, src,
				  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (fd < 0)
			_exit(errno);
		if (flags & VD_ADMIT_READONLY)
			attr.attr_set |= MOUNT_ATTR_RDONLY;
		if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr,
			    sizeof(attr)) != 0)
			_exit(errno);
		if (setns(dst_ns, CLONE_NEWNS) != 0)
			_exit(errno);
		r = vd_child_mkdir_p(path);
		if (r)
			_exit(r);
		if (syscall(SYS_move_mount, fd, "", AT_FDCWD, path,
			    MOVE_MOUNT_F_EMPTY_PATH) != 0)
			_exit(errno);
		_exit(0);
	}
	return vd_child_wait(pid, SHARE_CHILD_TIMEOUT_MS, NULL);
}

int vd_drive_attach(struct vd_drive *d, const char *path, int mntns_fd,
		    unsigned int flags)
{
	struct vd_attach *a = NULL, *p;
	struct stat st, nst;
	bool other = false, pre = false;
	uint64_t own;
	size_t n = 0;
	int r;

	vd_clear_error(d);
	if (!d || mntns_fd < 0 || (flags & ~VD_ADMIT_READONLY))
		return -EINVAL;
	if (!good_path(path)) {
		vd_set_error(d,
			     "bad share path '%s': absolute, not /, no . or .. "
			     "parts",
			     path ? path : "");
		return -EINVAL;
	}
	if (fstat(mntns_fd, &st) != 0)
		return -errno;
	pthread_mutex_lock(&d->state_lock);
	if (!d->mounted) {
		vd_set_error(d, "the drive is not mounted");
		r = -EINVAL;
		goto out;
	}
	if (d->via_daemon) {
		vd_set_error(d, "a drive mounted through vdrived is shared "
				"through vdrived");
		r = -EPERM;
		goto out;
	}
	if (!d->ns_mounted)
		own = vd_ns_ino_of("/proc/self/ns/mnt");
	else
		own = fstat(d->ns_fd, &nst) == 0 ? (uint64_t)nst.st_ino : 0;
	if ((uint64_t)st.st_ino == own &&
	    !strcmp(path, d->ns_mounted ? d->ns_path : d->mountpoint)) {
		vd_set_error(d, "the drive already lives at %s there", path);
		r = -EEXIST;
		goto out;
	}
	pthread_mutex_lock(&d->share_lock);
	for (p = d->attached; p; p = p->next, n++) {
		if (p->ino != (uint64_t)st.st_ino)
			continue;
		if (!strcmp(p->path, path))
			break;
		other = true;
		pre = p->admitted;
	}
	pthread_mutex_unlock(&d->share_lock);
	if (p) {
		vd_set_error(d, "already shared at %s there", path);
		r = -EEXIST;
		goto out;
	}
	if (n >= VD_MAX_SHARES) {
		vd_set_error(d, "at most %d shares", VD_MAX_SHARES);
		r = -ENOSPC;
		goto out;
	}
	a = calloc(1, sizeof(*a));
	if (!a || !(a->path = strdup(path))) {
		r = -ENOMEM;
		goto out;
	}
	a->ns_fd = fcntl(mntns_fd, F_DUPFD_CLOEXEC, 3);
	if (a->ns_fd < 0) {
		r = -errno;
		goto out;
	}
	a->ino = (uint64_t)st.st_ino;
	a->flags = flags;
	/* A drive without a gate was open to all: from now on it is open to
	 * its own namespace and its shares. */
	if (a->ino != own && !__atomic_load_n(&d->gate, __ATOMIC_ACQUIRE)) {
		r = vd_drive_admit(d, own, 0);
		if (r)
			goto out;
		d->gate_by_share = own;
	}
	if (a->ino != own && d->gate_open) {
		/* Shared again: only its namespace and its shares. */
		pthread_mutex_lock(&d->gate_lock);
		d->gate_open = false;
		d->gate_gen++;
		pthread_mutex_unlock(&d->gate_lock);
	}
	/* Admit before attaching: the target may use it at once. A
	 * namespace admitted already (--allow, or the drive's own) stays as
	 * it was. One with a share already keeps that share's admission: it
	 * was admitted by the share, and must be revoked when its last share
	 * goes. */
	a->admitted =
		other ? pre : a->ino == own || vd_gate_admitted(d, a->ino);
	r = other || a->admitted ? 0 : vd_drive_admit(d, a->ino, flags);
	if (r)
		goto out;
	r = clone_into(d->ns_mounted ? d->ns_fd : -1,
		       d->ns_mounted ? d->ns_path : d->mountpoint, a->ns_fd,
		       path, flags);
	if (r) {
		vd_set_error(d, "cannot attach at %s there: %s", path,
			     strerror(-r));
		if (!other && !a->admitted)
			vd_drive_revoke(d, a->ino);
		goto out;
	}
	pthread_mutex_lock(&d->share_lock);
	a->next = d->attached;
	d->attached = a;
	pthread_mutex_unlock(&d->share_lock);
	a = NULL;
out:
	pthread_mutex_unlock(&d->state_lock);
	if (a) {
		if (a->ns_fd > 0)
			close(a->ns_fd);
		free(a->path);
		free(a);
	}
	return r;
}

/* Detach one share and let its namespace go. */
static void drop(struct vd_drive *d, struct vd_attach *a)
{
	int r = vd_child_umount_in(a->ns_fd, a->path, SHARE_CHILD_TIMEOUT_MS,
				   NULL);

	/* EINVAL/ENOENT: already gone with its namespace. */
	if (r && r != -EINVAL && r != -ENOENT)
		vd_log(d, "cannot detach the share at %s: %s", a->path,
		       strerror(-r));
	close(a->ns_fd);
	free(a->path);
	free(a);
}

/*
 * The last share is gone from a drive whose gate its first share turned
 * on: it is open again to everyone it was open to before (other
 * namespaces that see its mount: services with a private /tmp, unshare -m
 * shells), but not to the namespaces it was shared with, which stay
 * refused (also through /proc/PID/root). gone: those namespaces.
 */
static void reopen_if_unshared(struct vd_drive *d, const uint64_t *gone,
			       size_t ngone)
{
	bool none;

	pthread_mutex_lock(&d->share_lock);
	none = !d->attached;
	pthread_mutex_unlock(&d->share_lock);
	pthread_mutex_lock(&d->gate_lock);
	for (size_t i = 0; d->gate_by_share && i < ngone; i++) {
		bool seen = gone[i] == d->gate_by_share;

		for (size_t k = 0; k < d->ndenied; k++)
			seen |= d->denied[k] == gone[i];
		if (!seen && d->ndenied < VD_MAX_ALLOWED)
			d->denied[d->ndenied++] = gone[i];
	}
	if (none && d->gate_by_share && d->nallowed == 1 &&
	    d->allowed[0].ino == d->gate_by_share && !d->gate_hook) {
		d->gate_open = true;
		d->gate_gen++;
	}
	pthread_mutex_unlock(&d->gate_lock);
}

int vd_drive_detach(struct vd_drive *d, const char *path, uint64_t mntns_ino)
{
	struct vd_attach **pp, *a, *gone = NULL;
	bool left = false, keep = false;

	vd_clear_error(d);
	if (!d || !mntns_ino)
		return -EINVAL;
	pthread_mutex_lock(&d->share_lock);
	for (pp = &d->attached; (a = *pp);) {
		if (a->ino == mntns_ino && (!path || !strcmp(a->path, path))) {
			*pp = a->next;
			a->next = gone;
			gone = a;
			keep |= a->admitted;
		} else {
			left |= a->ino == mntns_ino;
			pp = &a->next;
		}
	}
	pthread_mutex_unlock(&d->share_lock);
	if (!gone)
		return -ENOENT;
	/* Refuse the namespace before its mount goes, so nothing slips in
	 * between. */
	if (!left && !keep)
		vd_drive_revoke(d, mntns_ino);
	while ((a = gone)) {
		gone = a->next;
		drop(d, a);
	}
	if (!left && !keep)
		reopen_if_unshared(d, &mntns_ino, 1);
	return 0;
}

/* Called with state_lock held, before the drive's own mount goes. */
void vd_share_detach_all(struct vd_drive *d)
{
	struct vd_attach *a;

	pthread_mutex_lock(&d->share_lock);
	a = d->attached;
	d->attached = NULL;
	pthread_mutex_unlock(&d->share_lock);
	while (a) {
		struct vd_attach *next = a->next;

		if (!a->admitted)
			vd_drive_revoke(d, a->ino);
		drop(d, a);
		a = next;
	}
}

int vd_drive_shares(struct vd_drive *d, struct vd_share *out, int n)
{
	int count = 0;

	if (!d || n < 0 || (n && !out))
		return -EINVAL;
	pthread_mutex_lock(&d->share_lock);
	for (struct vd_attach *a = d->attached; a; a = a->next, count++) {
		if (count >= n)
			continue;
		snprintf(out[count].path, sizeof(out[count].path), "%s",
			 a->path);
		out[count].mntns_ino = a->ino;
		out[count].flags = a->flags;
	}
	pthread_mutex_unlock(&d->share_lock);
	return count;
}
