/*
 * drive.c - a drive's life: options, mount, serve, stop, free.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "vdrive_i.h"

#define VD_MAX_IO (1024 * 1024)

int vd_drive_new(const struct vd_ops *ops, size_t op_size, void *data,
		 struct vd_drive **out)
{
	struct vd_drive *d;
	int r;

	*out = NULL;
	if (!ops || op_size == 0)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	/* Members the caller's struct did not have read as NULL; members
	 * this library does not know are never called: say so, as libfuse
	 * does for its own ops table. */
	memcpy(&d->ops, ops,
	       op_size < sizeof(d->ops) ? op_size : sizeof(d->ops));
	if (op_size > sizeof(d->ops))
		vd_log(NULL,
		       "warning: the callback table (%zu bytes) is newer than "
		       "this libvdrive (%zu): its new callbacks are not called",
		       op_size, sizeof(d->ops));
	d->data = data;
	d->serialize = !(d->ops.flags & VD_OPS_THREAD_SAFE);
	/* What the kernel caches is only ever stale when something else
	 * changes the data; revalidating costs a round trip per name. */
	d->entry_timeout = (d->ops.flags & VD_OPS_EXCLUSIVE) ? 86400.0 : 1.0;
	d->attr_timeout = d->entry_timeout;
	d->negative_timeout = 0.0;
	d->default_permissions = true;
	d->kernel_cache = true;
	d->readdirplus = 2;
	d->max_io = VD_MAX_IO;
	d->threads = 4;
	d->io_uring = 2;
	d->passthrough = true;
	d->cache_opt = 2;
	d->cache_fill_max = 1ULL << 30;
	r = vd_nodes_init(&d->nodes);
	if (r) {
		free(d);
		return r;
	}
	pthread_rwlock_init(&d->forget_lock, NULL);
	pthread_mutex_init(&d->serial, NULL);
	pthread_mutex_init(&d->state_lock, NULL);
	pthread_mutex_init(&d->gate_lock, NULL);
	pthread_mutex_init(&d->share_lock, NULL);
	pthread_cond_init(&d->serve_cv, NULL);
	*out = d;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	if (!v || !strcmp(v, "yes") || !strcmp(v, "1") || !strcmp(v, "on")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "no") || !strcmp(v, "0") || !strcmp(v, "off")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

/* yes|no|auto as 1, 0, 2. */
static int parse_auto(const char *v, int *out)
{
	bool b;

	if (v && !strcmp(v, "auto")) {
		*out = 2;
		return 0;
	}
	if (parse_bool(v, &b))
		return -EINVAL;
	*out = b;
	return 0;
}

static int parse_double(const char *v, double *out)
{
	char *end;

	if (!v || !*v)
		return -EINVAL;
	errno = 0;
	*out = strtod(v, &end);
	if (errno || *end || *out < 0)
		return -EINVAL;
	return 0;
}

static int parse_uint(const char *v, unsigned long max, unsigned int *out)
{
	char *end;
	unsigned long n;

	if (!v || !*v || *v == '-')
		return -EINVAL;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n == 0 || n > max)
		return -EINVAL;
	*out = (unsigned int)n;
	return 0;
}

/* A size in bytes, with an optional K, M, G or T suffix (powers of 1024). */
static int parse_size(const char *v, uint64_t *out)
{
	char *end;
	unsigned long long n;
	int shift = 0;

	if (!v || !*v || *v == '-')
		return -EINVAL;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v)
		return -EINVAL;
	switch (*end) {
	case 'K':
	case 'k':
		shift = 10;
		end++;
		break;
	case 'M':
	case 'm':
		shift = 20;
		end++;
		break;
	case 'G':
	case 'g':
		shift = 30;
		end++;
		break;
	case 'T':
	case 't':
		shift = 40;
		end++;
		break;
	}
	if (*end || (shift && n > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)n << shift;
	return 0;
}

static int set_string(char **dst, const char *v);

/* cache=yes|no|auto|DIR: DIR (absolute) also turns it on. */
static int parse_cache(struct vd_drive *d, const char *v)
{
	bool b;

	if (v && *v == '/') {
		d->cache_opt = 2;
		return set_string(&d->cache_dir, v);
	}
	if (v && !strcmp(v, "auto")) {
		d->cache_opt = 2;
		return 0;
	}
	if (parse_bool(v, &b))
		return -EINVAL;
	d->cache_opt = b ? 2 : 0;
	return 0;
}

static int set_string(char **dst, const char *v)
{
	char *s;

	if (!v || !*v || strchr(v, ','))
		return -EINVAL;
	s = strdup(v);
	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/*
 * mount(8)'s per-mount flags, which libfuse applies when it mounts on the
 * host (its own defaults: nosuid,nodev). Kept in order, so the last of
 * "exec,noexec" wins as with mount(8).
 */
static const char *const mount_flags[] = {
	"suid",	      "nosuid",	       "dev",	    "nodev",	   "exec",
	"noexec",     "async",	       "sync",	    "dirsync",	   "noatime",
	"nodiratime", "nostrictatime", "symfollow", "nosymfollow", NULL,
};

static int add_mount_flag(struct vd_drive *d, const char *flag)
{
	size_t n = d->mntflags ? strlen(d->mntflags) : 0;
	char *s = realloc(d->mntflags, n + strlen(flag) + 2);

	if (!s)
		return -ENOMEM;
	s[n] = ',';
	strcpy(s + n + 1, flag);
	d->mntflags = s;
	return 0;
}

/* One "key" or "key=value" option. */
static int set_option(struct vd_drive *d, char *key)
{
	char *v = strchr(key, '=');
	bool b;
	int r;

	if (v)
		*v++ = '\0';
	for (int i = 0; mount_flags[i] && !v; i++)
		if (!strcmp(key, mount_flags[i]))
			return add_mount_flag(d, key);
	if (!strcmp(key, "ro") || !strcmp(key, "allow_other") ||
	    !strcmp(key, "kernel_cache") || !strcmp(key, "direct_io") ||
	    !strcmp(key, "writeback_cache") ||
	    !strcmp(key, "default_permissions") ||
	    !strcmp(key, "passthrough")) {
		r = parse_bool(v, &b);
		if (r)
			goto bad;
		if (!strcmp(key, "ro"))
			d->ro = b;
		else if (!strcmp(key, "allow_other"))
			d->allow_other = b;
		else if (!strcmp(key, "kernel_cache"))
			d->kernel_cache = b;
		else if (!strcmp(key, "direct_io"))
			d->direct_io = b;
		else if (!strcmp(key, "writeback_cache"))
			d->writeback_cache = b;
		else if (!strcmp(key, "default_permissions"))
			d->default_permissions = b;
		else
			d->passthrough = b;
		return 0;
	}
	if (!strcmp(key, "rw") && !v) {
		d->ro = false;
		return 0;
	}
	if (!strcmp(key, "isolate") && !v)
		return vd_drive_allow(d, 0); /* this namespace only */
	if (!strcmp(key, "shareable") && !v) {
		d->shareable = true;
		return 0;
	}
	if (!strcmp(key, "no_perm_check") && !v) {
		d->default_permissions = false;
		return 0;
	}
	if (!strcmp(key, "entry_timeout"))
		r = parse_double(v, &d->entry_timeout);
	else if (!strcmp(key, "attr_timeout"))
		r = parse_double(v, &d->attr_timeout);
	else if (!strcmp(key, "negative_timeout"))
		r = parse_double(v, &d->negative_timeout);
	else if (!strcmp(key, "max_io"))
		r = parse_uint(v, VD_MAX_IO, &d->max_io);
	else if (!strcmp(key, "threads"))
		r = parse_uint(v, 256, &d->threads);
	else if (!strcmp(key, "fsname"))
		r = set_string(&d->fsname, v);
	else if (!strcmp(key, "subtype"))
		r = set_string(&d->subtype, v);
	else if (!strcmp(key, "io_uring"))
		r = parse_auto(v, &d->io_uring);
	else if (!strcmp(key, "readdirplus"))
		r = parse_auto(v, &d->readdirplus);
	else if (!strcmp(key, "cache"))
		r = parse_cache(d, v);
	else if (!strcmp(key, "cache_size"))
		r = parse_size(v, &d->cache_size);
	else if (!strcmp(key, "cache_fill_max"))
		r = parse_size(v, &d->cache_fill_max);
	else {
		vd_set_error(d, "unknown option '%s'", key);
		return -EINVAL;
	}
	if (r == 0)
		return 0;
bad:
	vd_set_error(d, "bad value for option '%s': '%s'", key, v ? v : "");
	return -EINVAL;
}

int vd_drive_set_options(struct vd_drive *d, const char *opts)
{
	char *copy, *tok, *save = NULL;
	int r = 0;

	vd_clear_error(d);
	if (!d || !opts)
		return -EINVAL;
	if (d->se) {
		vd_set_error(d, "options must be set before mounting");
		return -EBUSY;
	}
	copy = strdup(opts);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		r = set_option(d, tok);
		if (r)
			break;
	}
	free(copy);
	return r;
}

static unsigned int conn_id_of(const char *mountpoint);

#define FUSE_URING_PARAM "/sys/module/fuse/parameters/enable_uring"

/* Whether the kernel takes FUSE requests over io_uring: off unless the
 * administrator (or `make install`) set the fuse module's enable_uring. */
static bool kernel_uring(void)
{
	char c = 0;
	int fd = open(FUSE_URING_PARAM, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c == 'Y' || c == '1';
}

/*
 * Decide the transport. io_uring serves each CPU's requests on a thread
 * pinned to that CPU: no cross-CPU wakeup per request (the main cost of a
 * round trip on small machines), but a slow callback holds up every
 * caller on its CPU, so "auto" takes it only for VD_OPS_QUICK sources.
 * Returns 1 to use it, 0 not to, -EOPNOTSUPP if it was required and
 * cannot be had.
 */
static int want_uring(struct vd_drive *d)
{
	bool lib = FUSE_MAJOR_VERSION * 100 + FUSE_MINOR_VERSION >= 318;

	if (d->io_uring == 0)
		return 0;
	if (d->io_uring == 2)
		return lib && (d->ops.flags & VD_OPS_QUICK) && kernel_uring();
	if (!lib) {
		vd_set_error(d,
			     "io_uring: this libvdrive was built on libfuse "
			     "%d.%d, which has no io_uring transport (3.18 "
			     "has: make deps)",
			     FUSE_MAJOR_VERSION, FUSE_MINOR_VERSION);
		return -EOPNOTSUPP;
	}
	if (!kernel_uring()) {
		vd_set_error(d, "io_uring: the kernel has FUSE over io_uring "
				"off (echo Y > " FUSE_URING_PARAM ")");
		return -EOPNOTSUPP;
	}
	return 1;
}

/*
 * In a container without /dev/fuse: vdrived mounts at mountpoint and
 * hands back the connection, which we serve as /dev/fd/N. The drive lives
 * in our namespace only; nobody else may use it (a shareable one: nobody
 * the daemon does not admit).
 */
static int mount_via_daemon(struct vd_drive *d, const char *mountpoint)
{
	char path[PATH_MAX], fdpath[32];
	int fd, r;

	r = vd_daemon_mount(d, mountpoint, path, sizeof(path), &fd);
	if (r)
		return r;
	r = vd_drive_allow(d, 0);
	if (!r) {
		d->gate_daemon = d->shareable;
		snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", fd);
		d->daemon_io = true;
		r = vd_drive_mount(d, fdpath);
		d->daemon_io = false;
	}
	if (r) {
		close(fd);
		vd_daemon_close(d); /* the daemon unmounts */
		return r;
	}
	free(d->mountpoint);
	d->mountpoint = strdup(path);
	d->gate_dev = vd_own_mount_dev(path);
	d->via_daemon = true;
	return 0;
}

int vd_drive_mount(struct vd_drive *d, const char *mountpoint)
{
	char opts[1024];
	char *argv[4];
	struct fuse_args args;
	int r, uring;

	vd_clear_error(d);
	if (!d || !mountpoint)
		return -EINVAL;
	if (d->se) {
		vd_set_error(d, "already mounted at %s", d->mountpoint);
		return -EBUSY;
	}
	/* In a container without /dev/fuse: the host's vdrived mounts. */
	if (strncmp(mountpoint, "/dev/fd/", 8) != 0 &&
	    access("/dev/fuse", R_OK | W_OK) != 0 && vd_daemon_available())
		return mount_via_daemon(d, mountpoint);
	uring = want_uring(d);
	if (uring < 0)
		return uring;
	snprintf(opts, sizeof(opts), "fsname=%s,subtype=%s%s%s%s%s%s",
		 d->fsname ? d->fsname : "vdrive",
		 d->subtype ? d->subtype : "vdrive",
		 d->default_permissions ? ",default_permissions" : "",
		 d->allow_other ? ",allow_other" : "", d->ro ? ",ro" : "",
		 uring ? ",io_uring" : "", d->mntflags ? d->mntflags : "");
	argv[0] = "vdrive";
	argv[1] = "-o";
	argv[2] = opts;
	argv[3] = NULL;
	args = (struct fuse_args)FUSE_ARGS_INIT(3, argv);
	d->se = fuse_session_new(&args, &vd_fuse_ops, sizeof(vd_fuse_ops), d);
	/* Parsing may have copied the arguments; the session keeps none. */
	fuse_opt_free_args(&args);
	if (!d->se) {
		vd_set_error(d, "cannot create a FUSE session");
		return -EIO;
	}
	d->mountpoint = strdup(mountpoint);
	if (!d->mountpoint) {
		r = -ENOMEM;
		goto out_err;
	}
	if (strncmp(mountpoint, "/dev/fd/", 8) != 0) {
		/* libfuse's own message is vague: say which check failed. */
		if (access("/dev/fuse", R_OK | W_OK) != 0) {
			r = -errno;
			vd_set_error(d, "cannot open /dev/fuse: %s",
				     strerror(errno));
			goto out_err;
		}
		struct stat st;
		if (stat(mountpoint, &st) != 0) {
			r = -errno;
			vd_set_error(d, "mount point %s: %s", mountpoint,
				     strerror(errno));
			goto out_err;
		}
		if (!S_ISDIR(st.st_mode)) {
			r = -ENOTDIR;
			vd_set_error(d, "mount point %s is not a folder",
				     mountpoint);
			goto out_err;
		}
	}
	if (vd_daemon_session_mount(d, mountpoint) != 0) {
		r = -EPERM;
		vd_set_error(d,
			     "cannot mount at %s (not permitted, or no FUSE)",
			     mountpoint);
		goto out_err;
	}
	d->mounted = true;
	d->conn_id = conn_id_of(mountpoint);
	return 0;

out_err:
	fuse_session_destroy(d->se);
	d->se = NULL;
	free(d->mountpoint);
	d->mountpoint = NULL;
	return r;
}

int vd_drive_mount_ns(struct vd_drive *d, const char *path, int mntns_fd)
{
	char fdpath[32];
	int fuse_fd, r;

	vd_clear_error(d);
	if (!d || !path || path[0] != '/' || mntns_fd < 0)
		return -EINVAL;
	if (d->se) {
		vd_set_error(d, "already mounted at %s", d->mountpoint);
		return -EBUSY;
	}
	r = vd_ns_mount(d, path, mntns_fd, &fuse_fd);
	if (r)
		return r;
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", fuse_fd);
	r = vd_drive_mount(d, fdpath);
	if (r) {
		vd_ns_unmount(d);
		close(fuse_fd);
		return r;
	}
	/* The session owns fuse_fd now; show the real mount point. */
	free(d->mountpoint);
	d->mountpoint = strdup(path);
	if (!d->mountpoint) {
		vd_drive_stop(d);
		return -ENOMEM;
	}
	return 0;
}

/*
 * The FUSE connection number of the mount at mountpoint: the minor of its
 * device, read from mountinfo (a stat would wait for the drive to answer).
 * 0 when not found, as for drives mounted in another namespace.
 */
static unsigned int conn_id_of(const char *mountpoint)
{
	char real[PATH_MAX], line[8192], mp[4096];
	unsigned int major, minor, id = 0;
	FILE *f;

	if (strncmp(mountpoint, "/dev/fd/", 8) == 0 ||
	    !realpath(mountpoint, real))
		return 0;
	f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return 0;
	/* The last match is the top mount; escaped names simply never match. */
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*s %*s %u:%u %*s %4095s", &major, &minor,
			   mp) == 3 &&
		    strcmp(mp, real) == 0 && strstr(line, " - fuse"))
			id = minor;
	}
	fclose(f);
	return id;
}

/*
 * End the connection through fusectl, mounting it if nobody has: needed
 * when a copy of the mount lives on in another mount namespace (unshare -m
 * copies every mount), so unmounting here leaves the workers reading.
 */
static void abort_conn(struct vd_drive *d)
{
	const char *dir = "/sys/fs/fuse/connections";
	char path[96];
	bool mounted_here = false;
	int fd;

	if (!d->conn_id)
		return;
	snprintf(path, sizeof(path), "%s/%u/abort", dir, d->conn_id);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT &&
	    mount("fusectl", dir, "fusectl", 0, NULL) == 0) {
		mounted_here = true;
		fd = open(path, O_WRONLY | O_CLOEXEC);
	}
	if (fd >= 0) {
		if (write(fd, "1", 1) < 0)
			vd_log(d, "cannot abort the FUSE connection: %s",
			       strerror(errno));
		close(fd);
	}
	/* Leave the system's mounts as they were. */
	if (mounted_here)
		umount2(dir, MNT_DETACH);
}

/* Wait up to ms for the serving loop to end; true if it has. */
static bool wait_served(struct vd_drive *d, int ms)
{
	struct timespec ts;
	bool done;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->state_lock);
	while (d->serving &&
	       pthread_cond_timedwait(&d->serve_cv, &d->state_lock, &ts) == 0)
		;
	done = !d->serving;
	pthread_mutex_unlock(&d->state_lock);
	return done;
}

const char *vd_drive_mountpoint(const struct vd_drive *d)
{
	return d ? d->mountpoint : NULL;
}

int vd_drive_serve(struct vd_drive *d, int handle_signals)
{
	struct fuse_loop_config *cfg;
	int r;

	if (!d || !d->se)
		return -EINVAL;
	if (handle_signals && fuse_set_signal_handlers(d->se) != 0)
		return -EIO;
	cfg = fuse_loop_cfg_create();
	if (!cfg) {
		r = -ENOMEM;
		goto out;
	}
	/* Keep idle workers around: libfuse 3.14 otherwise starts and ends
	 * threads on every burst of requests. */
	fuse_loop_cfg_set_idle_threads(cfg, d->threads);
	fuse_loop_cfg_set_max_threads(cfg, d->threads);
	/* Through vdrived, clones come from the daemon (libfuse >= 3.17)
	 * or not at all: there is no /dev/fuse to clone from. */
	fuse_loop_cfg_set_clone_fd(cfg, vd_daemon_can_clone(d));
	pthread_mutex_lock(&d->state_lock);
	d->serving = true;
	pthread_mutex_unlock(&d->state_lock);
	r = fuse_session_loop_mt(d->se, cfg);
	pthread_mutex_lock(&d->state_lock);
	d->serving = false;
	pthread_cond_broadcast(&d->serve_cv);
	pthread_mutex_unlock(&d->state_lock);
	fuse_loop_cfg_destroy(cfg);
	if (r > 0)
		r = 0; /* ended by a signal */
out:
	if (handle_signals)
		fuse_remove_signal_handlers(d->se);
	vd_unmount_once(d);
	return r;
}

static void *serve_thread(void *arg)
{
	struct vd_drive *d = arg;

	vd_drive_serve(d, 0);
	return NULL;
}

int vd_drive_start(struct vd_drive *d)
{
	int r;

	if (!d || !d->se)
		return -EINVAL;
	if (d->thread_started)
		return -EBUSY;
	r = pthread_create(&d->thread, NULL, serve_thread, d);
	if (r)
		return -r;
	d->thread_started = true;
	return 0;
}

int vd_drive_stop(struct vd_drive *d)
{
	if (!d || !d->se)
		return -EINVAL;
	fuse_session_exit(d->se);
	/* Workers sleep in read(2) on the device: unmounting wakes them,
	 * unless the mount lives on elsewhere; then the connection is cut. */
	vd_unmount_once(d);
	if (!wait_served(d, 1000)) {
		abort_conn(d);
		wait_served(d, 5000);
	}
	if (d->thread_started) {
		pthread_join(d->thread, NULL);
		d->thread_started = false;
	}
	return 0;
}

void vd_drive_free(struct vd_drive *d)
{
	if (!d)
		return;
	vd_ns_free(d);
	if (d->se)
		vd_drive_stop(d);
	/* Before the session goes: a source's own threads (records: polls
	 * for changes) may call vd_drive_invalidate_*() until destroy has
	 * stopped them; on a stopped session those calls just fail. The cache
	 * writes back what is still dirty while the source is there. */
	vd_cache_free(d);
	if (d->ops.destroy)
		d->ops.destroy(d->data);
	if (d->se)
		fuse_session_destroy(d->se);
	vd_nodes_fini(&d->nodes);
	pthread_rwlock_destroy(&d->forget_lock);
	pthread_mutex_destroy(&d->serial);
	pthread_mutex_destroy(&d->state_lock);
	pthread_mutex_destroy(&d->gate_lock);
	pthread_mutex_destroy(&d->share_lock);
	pthread_cond_destroy(&d->serve_cv);
	free(d->mountpoint);
	free(d->ns_path);
	free(d->fsname);
	free(d->subtype);
	free(d->mntflags);
	free(d->cache_dir);
	free(d);
}

int vd_drive_invalidate_node(struct vd_drive *d, vd_node_t node, off_t off,
			     off_t len)
{
	fuse_ino_t ino;

	if (!d || !d->se)
		return -EINVAL;
	/* A cached body is refilled at the next open, even if the kernel
	 * holds no reference now. */
	vd_cache_stale(d, node);
	ino = vd_nodes_ino(&d->nodes, node);
	if (!ino)
		return -ENOENT;
	return fuse_lowlevel_notify_inval_inode(d->se, ino, off, len);
}

int vd_drive_invalidate_entry(struct vd_drive *d, vd_node_t parent,
			      const char *name)
{
	fuse_ino_t ino;

	if (!d || !d->se || !name)
		return -EINVAL;
	ino = vd_nodes_ino(&d->nodes, parent);
	if (!ino)
		return -ENOENT;
	return fuse_lowlevel_notify_inval_entry(d->se, ino, name, strlen(name));
}

uint64_t vd_ctx_mntns(const struct vd_ctx *ctx)
{
	struct vd_ctx *c = (struct vd_ctx *)ctx; /* a cache, not a change */
	char path[64];
	struct stat st;

	if (c->mntns_cache_)
		return c->mntns_cache_;
	if (c->pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)c->pid);
	if (stat(path, &st) != 0)
		return 0;
	c->mntns_cache_ = (uint64_t)st.st_ino;
	return c->mntns_cache_;
}

int vd_ctx_groups(const struct vd_ctx *ctx, gid_t *list, int n)
{
	if (!ctx->req_)
		return -EINVAL;
	return fuse_req_getgroups((fuse_req_t)ctx->req_, n, list);
}
