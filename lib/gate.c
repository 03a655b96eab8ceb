/*
 * gate.c - the per-request gate: which callers may use a drive.
 *
 * A drive that lives in a namespace (or is shared into others) admits
 * only requests whose caller's mount namespace is on its list, read-write
 * or read-only; a hook may admit others (the Docker volume plugin admits
 * by container). It sits where names are resolved and files opened;
 * docs/containers.md says what it covers. The list may change while the
 * drive serves (sharing and unsharing): cached verdicts carry the list's
 * generation and go stale when a namespace is revoked.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "vdrive_i.h"

#define VD_GATE_TTL_NS 1000000000ull /* a cached verdict lives 1 s */

uint64_t vd_ns_ino_of(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return 0;
	return (uint64_t)st.st_ino;
}

int vd_drive_admit(struct vd_drive *d, uint64_t mntns_ino, unsigned int flags)
{
	size_t i;
	int r = 0;

	if (!d || (flags & ~VD_ADMIT_READONLY))
		return -EINVAL;
	if (mntns_ino == 0)
		mntns_ino = vd_ns_ino_of("/proc/self/ns/mnt");
	if (mntns_ino == 0)
		return -ENOENT;
	pthread_mutex_lock(&d->gate_lock);
	for (i = 0; i < d->nallowed; i++)
		if (d->allowed[i].ino == mntns_ino)
			break;
	if (i == d->nallowed) {
		if (d->nallowed == VD_MAX_ALLOWED) {
			r = -ENOSPC;
			goto out;
		}
		d->nallowed++;
	} else if (d->allowed[i].flags & VD_ADMIT_READONLY) {
		d->nreadonly--;
	}
	d->allowed[i].ino = mntns_ino;
	d->allowed[i].flags = flags;
	for (size_t k = 0; k < d->ndenied; k++)
		if (d->denied[k] == mntns_ino)
			d->denied[k] = d->denied[--d->ndenied];
	if (flags & VD_ADMIT_READONLY)
		d->nreadonly++;
	d->gate_gen++; /* a read-write namespace may have become read-only */
	__atomic_store_n(&d->gate, true, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&d->gate_lock);
	return r;
}

int vd_drive_allow(struct vd_drive *d, uint64_t mntns_ino)
{
	return vd_drive_admit(d, mntns_ino, 0);
}

int vd_drive_revoke(struct vd_drive *d, uint64_t mntns_ino)
{
	int r = -ENOENT;

	if (!d || !mntns_ino)
		return -EINVAL;
	pthread_mutex_lock(&d->gate_lock);
	for (size_t i = 0; i < d->nallowed; i++) {
		if (d->allowed[i].ino != mntns_ino)
			continue;
		if (d->allowed[i].flags & VD_ADMIT_READONLY)
			d->nreadonly--;
		d->allowed[i] = d->allowed[--d->nallowed];
		d->gate_gen++;
		r = 0;
		break;
	}
	pthread_mutex_unlock(&d->gate_lock);
	return r;
}

bool vd_gate_admitted(struct vd_drive *d, uint64_t mntns_ino)
{
	bool found = false;

	pthread_mutex_lock(&d->gate_lock);
	for (size_t i = 0; i < d->nallowed; i++)
		found |= d->allowed[i].ino == mntns_ino;
	pthread_mutex_unlock(&d->gate_lock);
	return found;
}

int vd_drive_set_gate_hook(struct vd_drive *d,
			   int (*fn)(void *arg, pid_t pid, uint64_t mntns_ino),
			   void *arg)
{
	if (!d)
		return -EINVAL;
	pthread_mutex_lock(&d->gate_lock);
	d->gate_hook = fn;
	d->gate_hook_arg = arg;
	d->gate_gen++;
	if (fn)
		__atomic_store_n(&d->gate, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&d->gate_lock);
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] &&
		    s[3]) {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

dev_t vd_own_mount_dev(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], mp[4096], *sep;
	unsigned int ma, mi;
	dev_t dev = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		sep = strstr(line, " - fuse");
		if (!sep ||
		    sscanf(line, "%*u %*u %u:%u %*s %4095s", &ma, &mi, mp) != 3)
			continue;
		unescape(mp);
		if (!strcmp(mp, path))
			dev = makedev(ma, mi);
	}
	fclose(f);
	return dev;
}

/* Does pid's mount table hold the superblock dev? /proc/PID/mountinfo
 * needs no ptrace rights, unlike /proc/PID/ns/mnt. */
static bool pid_sees_dev(pid_t pid, dev_t dev)
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

/*
 * The verdict for pid: -EACCES, or the VD_ADMIT_* flags it is admitted
 * with. Its mount namespace must be on the list (or the hook must admit
 * it). When this process may not look at pid's namespace (an unprivileged
 * server and a caller with other credentials), a drive mounted through
 * vdrived asks instead whether pid's mount table holds this very
 * superblock: a mount belongs to one namespace. Verdicts are cached for a
 * second (pids wrap only after pid_max).
 */
static int gate_verdict(struct vd_drive *d, pid_t pid)
{
	struct vd_gate_ent *e = &d->gate_cache[(unsigned)pid % VD_GATE_CACHE];
	int (*hook)(void *, pid_t, uint64_t);
	uint64_t now = now_ns(), ino = 0, gen;
	int v = -EACCES;
	char path[64];
	struct stat st;
	void *arg;

	pthread_mutex_lock(&d->gate_lock);
	if (e->pid == pid && e->expires > now && e->gen == d->gate_gen) {
		v = e->verdict;
		pthread_mutex_unlock(&d->gate_lock);
		return v;
	}
	gen = d->gate_gen;
	pthread_mutex_unlock(&d->gate_lock);
	if (d->gate_daemon) {
		pid_t local = 0;

		v = vd_daemon_gate(d, pid, &local);
		pthread_mutex_lock(&d->gate_lock);
		e->pid = pid;
		e->verdict = v;
		e->local = local;
		e->expires = now + VD_GATE_TTL_NS;
		e->gen = gen;
		pthread_mutex_unlock(&d->gate_lock);
		return v;
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	if (stat(path, &st) == 0) {
		ino = (uint64_t)st.st_ino;
	} else if ((errno == EACCES || errno == EPERM) && d->gate_dev) {
		if (pid_sees_dev(pid, d->gate_dev))
			v = 0;
	} else {
		return -EACCES; /* gone: nothing to cache */
	}
	pthread_mutex_lock(&d->gate_lock);
	for (size_t i = 0; ino && i < d->nallowed; i++)
		if (d->allowed[i].ino == ino)
			v = (int)d->allowed[i].flags;
	if (d->gate_open && ino) {
		v = 0;
		for (size_t i = 0; i < d->ndenied; i++)
			if (d->denied[i] == ino)
				v = -EACCES;
	}
	hook = d->gate_hook;
	arg = d->gate_hook_arg;
	pthread_mutex_unlock(&d->gate_lock);
	if (v < 0 && hook) {
		v = hook(arg, pid, ino);
		if (v >= 0)
			v &= VD_ADMIT_READONLY;
		else
			v = -EACCES;
	}
	pthread_mutex_lock(&d->gate_lock);
	if (gen == d->gate_gen) {
		e->pid = pid;
		e->verdict = v;
		e->expires = now + VD_GATE_TTL_NS;
		e->gen = gen;
	}
	pthread_mutex_unlock(&d->gate_lock);
	return v;
}

/* For a drive gated by vdrived: the caller's pid in our own pid
 * namespace, as the gate last learnt it (0: unknown or not ours). */
pid_t vd_gate_local_pid(struct vd_drive *d, pid_t pid)
{
	struct vd_gate_ent *e = &d->gate_cache[(unsigned)pid % VD_GATE_CACHE];
	pid_t local = 0;

	pthread_mutex_lock(&d->gate_lock);
	if (e->pid == pid)
		local = e->local;
	pthread_mutex_unlock(&d->gate_lock);
	return local;
}

int vd_gate_check(struct vd_drive *d, fuse_req_t req, bool write)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	int v;

	if (fc->pid <= 0) /* not visible from here: another pid ns */
		return __atomic_load_n(&d->gate_open, __ATOMIC_ACQUIRE)
			       ? 0
			       : -EACCES;
	v = gate_verdict(d, fc->pid);
	if (v < 0)
		return v;
	return write && (v & VD_ADMIT_READONLY) ? -EROFS : 0;
}
