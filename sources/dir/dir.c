/*
 * dir.c - the "dir:PATH" source: a mirror of an existing folder.
 *
 * Design, and why:
 *  - A node is a struct dnode keyed by (st_dev, st_ino) in a hash table,
 *    holding the kernel file handle of the inode (name_to_handle_at()).
 *    The node handle given to the library is the struct's address (the
 *    root is VD_ROOT). Renames and hard links need no bookkeeping: a node
 *    names an inode, not a path.
 *  - No descriptor is kept per node (libfuse's passthrough_ll does, and
 *    dies with EMFILE near the 20,000-descriptor limit). An O_PATH
 *    descriptor is made on demand with open_by_handle_at() (we run as
 *    root: CAP_DAC_READ_SEARCH) and kept in a bounded LRU cache
 *    (DIR_FD_CACHE), so hot folders keep theirs. Name operations use the
 *    parent's cached descriptor plus the name (openat, fstatat, mkdirat,
 *    unlinkat, renameat2, ...); opening a file goes straight from the
 *    handle to a real descriptor (one syscall, no parent needed).
 *  - A lookup costs one statx (a negative lookup fails there). A known
 *    inode whose birth time still matches needs nothing more: the node's
 *    handle is still right. Otherwise name_to_handle_at on the same
 *    parent and name takes the handle (file systems without birth times
 *    always pay it). The two calls are not atomic against someone
 *    renaming in the backing folder behind our back; a later lookup of
 *    the inode replaces a handle that differs.
 *  - A plain listing hands back node 0 with the type and inode number
 *    from getdents64: one getdents64 per buffer, no node made. Only when
 *    the kernel asks for READDIRPLUS (vd_file.readdirplus: `ls -l`) does
 *    each entry get its node and attributes, which saves a LOOKUP round
 *    trip per entry. Offsets are the backing file system's d_off, which
 *    stay valid while the folder changes; the kernel may cache listings.
 *  - Measured (loop ext4, 20,000 files, 2 busy cores, best of several):
 *    create+close+stat 22-25k/s against 70-105k/s native; unlink 29-36k/s
 *    against 175k/s; listing 2.1M entries/s against 4.4M/s; every one
 *    of those is bound by FUSE round trips, not by this file (perf: under
 *    3% of the serving process in it). A lookup or getattr of a file
 *    whose descriptor is not cached costs one open_by_handle_at more;
 *    25,000 files looked up and stat'ed keep ~1,030 descriptors open.
 *  - Where handles cannot be used (overlayfs without nfs_export, FUSE, or
 *    not root), each node keeps an O_PATH descriptor of its own instead
 *    (as passthrough_ll does), and files are reopened through
 *    /proc/self/fd: everything works, within the descriptor limit.
 *  - Ownership: creating syscalls run with the caller's fsuid/fsgid on
 *    the serving thread (raw setfsuid/setfsgid are per thread), so the
 *    backing file system applies its own setgid-folder rules. Each
 *    serving thread unshares its fs_struct once (unshare(CLONE_FS)) so
 *    that umask(2) is per thread too: creating with the caller's umask
 *    lets the backing file system apply it, or a default ACL instead of
 *    it, exactly as it would natively. Supplementary groups are not
 *    switched (setgroups costs a credential copy per call): only when
 *    the backing file system answers EACCES are the caller's groups
 *    fetched and the call retried with them.
 *
 * This file holds the callbacks and the source's setup; nodes.c the node
 * table and descriptor cache, listing.c the listing read-ahead, remote.c
 * the probes of the backing file system (dir.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "dir/dir.h"

static __thread bool tl_fs_private; /* this thread did unshare(CLONE_FS) */
static __thread mode_t tl_umask;    /* this thread's umask when private */

/* A creating call, run by with_caller() under the caller's identity. */
enum mk_kind { MK_OPEN, MK_TMPFILE, MK_MKNOD, MK_MKDIR, MK_SYMLINK };

struct mk {
	enum mk_kind kind;
	int dfd;
	const char *name;
	const char *target;
	mode_t mode;
	dev_t rdev;
	int flags;
};

/* Run m; returns a descriptor (MK_OPEN, MK_TMPFILE), 0, or -errno. */
static int mk_run(const struct mk *m)
{
	int r;

	switch (m->kind) {
	case MK_OPEN:
		r = openat(m->dfd, m->name, m->flags, m->mode);
		break;
	case MK_TMPFILE:
		r = openat(m->dfd, ".", m->flags, m->mode);
		break;
	case MK_MKNOD:
		r = mknodat(m->dfd, m->name, m->mode, m->rdev);
		break;
	case MK_MKDIR:
		r = mkdirat(m->dfd, m->name, m->mode);
		break;
	default:
		r = symlinkat(m->target, m->dfd, m->name);
		break;
	}
	return r < 0 ? -errno : r;
}

/*
 * Run m as the caller would natively: fsuid/fsgid of the caller, its
 * umask (per thread, see the top of the file), and on EACCES once more
 * with its supplementary groups. The thread is root again afterwards.
 */
static int with_caller(const struct vd_ctx *ctx, struct mk m)
{
	struct dir_src *s = SRC(ctx);
	bool as_user = ctx->uid != 0 || ctx->gid != 0;
	int r;

	if (!tl_fs_private && unshare(CLONE_FS) == 0) {
		tl_fs_private = true;
		tl_umask = umask(0);
		umask(tl_umask);
	}
	if (m.kind != MK_SYMLINK) {
		if (!tl_fs_private) {
			m.mode &= ~ctx->umask; /* no default ACL support */
		} else if (tl_umask != (ctx->umask & 0777)) {
			tl_umask = ctx->umask & 0777;
			umask(tl_umask);
		}
	}
	if (!as_user)
		return mk_run(&m);

	syscall(SYS_setfsgid, ctx->gid);
	syscall(SYS_setfsuid, ctx->uid);
	r = mk_run(&m);
	if (r == -EACCES) {
		gid_t list[256];
		int n = vd_ctx_groups(ctx, list, 256);
		if (n > 0 && n <= 256 &&
		    syscall(SYS_setgroups, (size_t)n, list) == 0) {
			r = mk_run(&m);
			syscall(SYS_setgroups, (size_t)s->ngroups, s->groups);
		}
	}
	syscall(SYS_setfsuid, 0);
	syscall(SYS_setfsgid, 0);
	return r;
}

/*
 * Open flags for the backing file: no creation bits, no O_DIRECT (the
 * library's buffers are not aligned), no O_APPEND (the kernel already
 * passes the end as the offset, and with a writeback cache it writes
 * pages back at their own offsets through any open), and read access
 * added to write-only opens so a writeback cache can read around
 * partial pages.
 */
static int backing_flags(int flags)
{
	flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT | O_APPEND);
	if ((flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags | O_CLOEXEC;
}

/* A real descriptor for node n opened with flags. */
static int node_open(struct dir_src *s, struct dnode *n, int flags)
{
	union dir_fh h;
	int mfd, fd;

	if (n == &s->root) {
		fd = openat(s->root.fd, ".", flags);
		return fd < 0 ? -errno : fd;
	}
	if (s->nohandles) {
		char path[64];
		int pfd, r = dir_pin(s, n, &pfd);
		if (r)
			return r;
		dir_proc_path(path, sizeof(path), pfd);
		fd = open(path, flags);
		r = fd < 0 ? -errno : fd;
		dir_unpin(s, n);
		return r;
	}
	pthread_mutex_lock(&s->lock);
	memcpy(&h, n->fh, sizeof(*n->fh) + n->fh->handle_bytes);
	mfd = s->mounts[n->mnt].fd;
	pthread_mutex_unlock(&s->lock);
	fd = open_by_handle_at(mfd, &h.h, flags);
	if (fd < 0)
		return -errno;
	return fd;
}

static int dir_lookup(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t *node, struct stat *st)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *p = N(s, parent), *n;
	int pfd, r;

	r = dir_pin(s, p, &pfd);
	if (r)
		return r;
	r = dir_node_at(s, pfd, name, &n, st);
	dir_unpin(s, p);
	if (r == 0)
		*node = ID(s, n);
	return r;
}

/* The kernel dropped node: unhash it and free it (or leave that to the
 * last unpin if a call still uses its descriptor). */
static void dir_forget(void *data, vd_node_t node)
{
	struct dir_src *s = data;
	struct dnode *n = N(s, node);
	bool now;
	int fd = -1;

	if (n == &s->root)
		return;
	pthread_mutex_lock(&s->lock);
	vd_htab_del(&s->nodes, &n->hl);
	now = n->pins == 0;
	if (n->fd >= 0) {
		if (n->fh) {
			dir_lru_unlink(n);
			s->nfds--;
		}
		if (now) {
			fd = n->fd;
			n->fd = -1;
		}
	}
	n->dead = true;
	pthread_mutex_unlock(&s->lock);
	if (fd >= 0)
		close(fd);
	if (now)
		dir_node_free(n);
}

static int dir_getattr(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, struct stat *st)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *n = N(s, node);
	int fd, r;

	if (fi && fi->fh)
		return fstat((int)fi->fh, st) < 0 ? -errno : 0;
	r = dir_pin(s, n, &fd);
	if (r)
		return r;
	r = fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0
		    ? -errno
		    : 0;
	dir_unpin(s, n);
	return r;
}

/* The setattr steps on an O_PATH descriptor fd (or the open file ofd). */
static int set_attrs(struct dnode *n, int fd, int ofd, const struct stat *st,
		     int to_set)
{
	char path[64];

	dir_proc_path(path, sizeof(path), fd);
	if (to_set & VD_SET_MODE) {
		if (n->link)
			return -EOPNOTSUPP;
		if ((ofd >= 0 ? fchmod(ofd, st->st_mode & 07777)
			      : chmod(path, st->st_mode & 07777)) < 0)
			return -errno;
	}
	if (to_set & (VD_SET_UID | VD_SET_GID)) {
		uid_t uid = (to_set & VD_SET_UID) ? st->st_uid : (uid_t)-1;
		gid_t gid = (to_set & VD_SET_GID) ? st->st_gid : (gid_t)-1;
		if (fchownat(fd, "", uid, gid,
			     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (to_set & VD_SET_SIZE) {
		if ((ofd >= 0 ? ftruncate(ofd, st->st_size)
			      : truncate(path, st->st_size)) < 0)
			return -errno;
	}
	if (to_set & (VD_SET_ATIME | VD_SET_MTIME)) {
		struct timespec ts[2] = {st->st_atim, st->st_mtim};
		if (!(to_set & VD_SET_ATIME))
			ts[0].tv_nsec = UTIME_OMIT;
		if (!(to_set & VD_SET_MTIME))
			ts[1].tv_nsec = UTIME_OMIT;
		if (utimensat(fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) <
		    0)
			return -errno;
	}
	return 0;
}

/* Change attributes in the order chmod, chown, truncate, utimes (as
 * coreutils would) and hand back the result. */
static int dir_setattr(const struct vd_ctx *ctx, vd_node_t node,
		       struct stat *st, int to_set, struct vd_file *fi)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *n = N(s, node);
	int ofd = fi && fi->fh ? (int)fi->fh : -1;
	int fd, r;

	r = dir_pin(s, n, &fd);
	if (r)
		return r;
	r = set_attrs(n, fd, ofd, st, to_set);
	if (r == 0 && fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
		r = -errno;
	dir_unpin(s, n);
	return r;
}

static int dir_readlink(const struct vd_ctx *ctx, vd_node_t node, char *buf,
			size_t size)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *n = N(s, node);
	ssize_t len;
	int fd, r;

	if (size == 0)
		return -EINVAL;
	r = dir_pin(s, n, &fd);
	if (r)
		return r;
	len = readlinkat(fd, "", buf, size - 1);
	r = len < 0 ? -errno : 0;
	dir_unpin(s, n);
	if (r == 0)
		buf[len] = '\0';
	return r;
}

/* mknod, mkdir and symlink: create under parent as the caller, then
 * hand back the new node. */
static int make_node(const struct vd_ctx *ctx, vd_node_t parent, struct mk m,
		     vd_node_t *node, struct stat *st)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *p = N(s, parent), *n;
	int r;

	r = dir_pin(s, p, &m.dfd);
	if (r)
		return r;
	r = with_caller(ctx, m);
	if (r == 0)
		r = dir_node_at(s, m.dfd, m.name, &n, st);
	dir_unpin(s, p);
	if (r == 0)
		*node = ID(s, n);
	return r;
}

static int dir_mknod(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, dev_t rdev, vd_node_t *node,
		     struct stat *st)
{
	struct mk m = {
		.kind = MK_MKNOD, .name = name, .mode = mode, .rdev = rdev};

	return make_node(ctx, parent, m, node, st);
}

static int dir_mkdir(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, vd_node_t *node,
		     struct stat *st)
{
	struct mk m = {.kind = MK_MKDIR, .name = name, .mode = mode & 07777};

	return make_node(ctx, parent, m, node, st);
}

static int dir_symlink(const struct vd_ctx *ctx, const char *target,
		       vd_node_t parent, const char *name, vd_node_t *node,
		       struct stat *st)
{
	struct mk m = {.kind = MK_SYMLINK, .name = name, .target = target};

	return make_node(ctx, parent, m, node, st);
}

/* unlink and rmdir: flags is 0 or AT_REMOVEDIR. */
static int remove_name(const struct vd_ctx *ctx, vd_node_t parent,
		       const char *name, int flags)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *p = N(s, parent);
	int pfd, r;

	r = dir_pin(s, p, &pfd);
	if (r)
		return r;
	r = unlinkat(pfd, name, flags) < 0 ? -errno : 0;
	dir_unpin(s, p);
	return r;
}

static int dir_unlink(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name)
{
	return remove_name(ctx, parent, name, 0);
}

static int dir_rmdir(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name)
{
	return remove_name(ctx, parent, name, AT_REMOVEDIR);
}

static int dir_rename(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t newparent,
		      const char *newname, unsigned int flags)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *p = N(s, parent), *np = N(s, newparent);
	int pfd, npfd, r;

	r = dir_pin(s, p, &pfd);
	if (r)
		return r;
	r = dir_pin(s, np, &npfd);
	if (r == 0) {
		r = renameat2(pfd, name, npfd, newname, flags) < 0 ? -errno : 0;
		dir_unpin(s, np);
	}
	dir_unpin(s, p);
	return r;
}

/* Give the file fd the name dfd/name. AT_EMPTY_PATH needs
 * CAP_DAC_READ_SEARCH; without it /proc's link to fd does the same
 * (except for an O_TMPFILE file). */
static int link_fd(int fd, int dfd, const char *name)
{
	char path[64];

	if (linkat(fd, "", dfd, name, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != EPERM && errno != ENOENT)
		return -errno;
	dir_proc_path(path, sizeof(path), fd);
	if (linkat(AT_FDCWD, path, dfd, name, AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	return 0;
}

static int dir_link(const struct vd_ctx *ctx, vd_node_t node,
		    vd_node_t newparent, const char *newname, struct stat *st)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *n = N(s, node), *np = N(s, newparent);
	int fd, npfd, r;

	r = dir_pin(s, n, &fd);
	if (r)
		return r;
	r = dir_pin(s, np, &npfd);
	if (r == 0) {
		r = link_fd(fd, npfd, newname);
		if (r == 0 && fstatat(fd, "", st,
				      AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			r = -errno;
		dir_unpin(s, np);
	}
	dir_unpin(s, n);
	return r;
}

/* Open the real file; fh and backing_fd are its descriptor. */
static int dir_open(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi)
{
	struct dir_src *s = SRC(ctx);
	int flags = backing_flags(fi->flags);
	int fd = node_open(s, N(s, node), flags);

	if (fd == -EACCES && (fi->flags & O_ACCMODE) == O_WRONLY)
		fd = node_open(s, N(s, node), (flags & ~O_ACCMODE) | O_WRONLY);
	if (fd < 0)
		return fd;
	fi->fh = (uint64_t)fd;
	fi->backing_fd = fd;
	return 0;
}

static int dir_read(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, char *buf, size_t size, off_t off)
{
	ssize_t r = pread((int)fi->fh, buf, size, off);

	(void)ctx, (void)node;
	return r < 0 ? -errno : (int)r;
}

static int dir_write(const struct vd_ctx *ctx, vd_node_t node,
		     struct vd_file *fi, const char *buf, size_t size,
		     off_t off)
{
	ssize_t r;

	/* Set-id bits: the kernel clears them for cached writes, libvdrive
	 * for direct_io ones. */
	(void)ctx, (void)node;
	r = pwrite((int)fi->fh, buf, size, off);
	return r < 0 ? -errno : (int)r;
}

static int dir_release(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi)
{
	(void)ctx, (void)node;
	close((int)fi->fh);
	return 0;
}

static int dir_fsync(const struct vd_ctx *ctx, vd_node_t node, int datasync,
		     struct vd_file *fi)
{
	int fd = (int)fi->fh;

	(void)ctx, (void)node;
	return (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
}

static int dir_opendir(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi)
{
	struct dir_src *s = SRC(ctx);
	struct dir_handle *h = malloc(sizeof(*h));
	int fd;

	if (!h)
		return -ENOMEM;
	fd = node_open(s, N(s, node), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		free(h);
		return fd;
	}
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cv, NULL);
	h->fd = fd;
	h->next = 0;
	h->pos = h->len = 0;
	h->buf = h->bufs[0];
	h->ra_buf = h->bufs[1];
	h->ra_state = RA_IDLE;
	h->ra_next = NULL;
	fi->fh = (uint64_t)(uintptr_t)h;
	/* Let the kernel keep listings: it drops them when the folder
	 * changes through the drive or its mtime changes behind it. */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	return 0;
}

static bool is_dot(const char *name)
{
	return name[0] == '.' &&
	       (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/*
 * List from off; the offset of each entry is the backing d_off. A plain
 * listing hands node 0 with the type and inode number from getdents64;
 * READDIRPLUS also finds each entry's node and attributes, which saves
 * the kernel a LOOKUP per entry for `ls -l`. A node made for an entry
 * that no longer fits the buffer stays in the table unreferenced until
 * a later lookup hands it out (and its forget frees it). Once a reply is
 * full, the next batch is read ahead on another thread, so that reading the
 * backing folder overlaps with the kernel's share of the listing.
 */
static int dir_readdir(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, off_t off, vd_fill_fn fill,
		       void *buf)
{
	struct dir_src *s = SRC(ctx);
	struct dir_handle *h = (struct dir_handle *)(uintptr_t)fi->fh;
	struct stat st;
	bool full = false;
	int r = 0;

	(void)node;
	pthread_mutex_lock(&h->lock);
	if (off != h->next) {
		dir_ra_wait(h);
		h->ra_state = RA_IDLE; /* what it read is for another place */
		if (lseek(h->fd, off, SEEK_SET) < 0) {
			r = -errno;
			goto out;
		}
		h->next = off;
		h->pos = h->len = 0;
	}
	for (;;) {
		if (h->pos >= h->len) {
			long n = dir_next_batch(h);
			if (n < 0) {
				r = (int)n;
				break;
			}
			if (n == 0)
				break;
			h->len = (size_t)n;
			h->pos = 0;
		}
		struct linux_dirent64 *e = (void *)(h->buf + h->pos);
		struct dnode *n = NULL;
		if (!fi->readdirplus || is_dot(e->d_name) ||
		    dir_node_at(s, h->fd, e->d_name, &n, &st) != 0) {
			memset(&st, 0, sizeof(st));
			st.st_ino = e->d_ino;
			st.st_mode = DTTOIF(e->d_type);
			n = NULL;
		}
		if (fill(buf, e->d_name, n ? ID(s, n) : 0, &st, e->d_off)) {
			full = true;
			break;
		}
		h->pos += e->d_reclen;
		h->next = e->d_off;
	}
	if (full && h->ra_state == RA_IDLE)
		dir_ra_queue(s, h);
out:
	pthread_mutex_unlock(&h->lock);
	return r;
}

static int dir_releasedir(const struct vd_ctx *ctx, vd_node_t node,
			  struct vd_file *fi)
{
	struct dir_handle *h = (struct dir_handle *)(uintptr_t)fi->fh;

	(void)ctx, (void)node;
	pthread_mutex_lock(&h->lock);
	dir_ra_wait(h);
	pthread_mutex_unlock(&h->lock);
	close(h->fd);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return 0;
}

static int dir_fsyncdir(const struct vd_ctx *ctx, vd_node_t node, int datasync,
			struct vd_file *fi)
{
	struct dir_handle *h = (struct dir_handle *)(uintptr_t)fi->fh;
	int fd = h->fd;

	(void)ctx, (void)node;
	return (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
}

static int dir_statfs(const struct vd_ctx *ctx, vd_node_t node,
		      struct statvfs *st)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *n = N(s, node);
	int fd, r;

	r = dir_pin(s, n, &fd);
	if (r)
		return r;
	r = fstatvfs(fd, st) < 0 ? -errno : 0;
	dir_unpin(s, n);
	return r;
}

/* The xattr calls go through /proc/self/fd/N of the O_PATH descriptor
 * (the f*xattr calls refuse O_PATH descriptors); the l* forms act on the
 * magic link's target without following it further, so symbolic links
 * are reached themselves. */
enum xa_kind { XA_SET, XA_GET, XA_LIST, XA_REMOVE };

static int xattr_call(const struct vd_ctx *ctx, vd_node_t node,
		      enum xa_kind kind, const char *name, char *value,
		      size_t size, int flags)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *n = N(s, node);
	char path[64];
	ssize_t r;
	int fd, e;

	e = dir_pin(s, n, &fd);
	if (e)
		return e;
	dir_proc_path(path, sizeof(path), fd);
	switch (kind) {
	case XA_SET:
		r = setxattr(path, name, value, size, flags);
		break;
	case XA_GET:
		r = getxattr(path, name, value, size);
		break;
	case XA_LIST:
		r = listxattr(path, value, size);
		break;
	default:
		r = removexattr(path, name);
		break;
	}
	e = errno;
	dir_unpin(s, n);
	if (r < 0)
		return -e;
	return r > INT_MAX ? -E2BIG : (int)r;
}

static int dir_setxattr(const struct vd_ctx *ctx, vd_node_t node,
			const char *name, const char *value, size_t size,
			int flags)
{
	return xattr_call(ctx, node, XA_SET, name, (char *)value, size, flags);
}

static int dir_getxattr(const struct vd_ctx *ctx, vd_node_t node,
			const char *name, char *value, size_t size)
{
	return xattr_call(ctx, node, XA_GET, name, value, size, 0);
}

static int dir_listxattr(const struct vd_ctx *ctx, vd_node_t node, char *list,
			 size_t size)
{
	return xattr_call(ctx, node, XA_LIST, NULL, list, size, 0);
}

static int dir_removexattr(const struct vd_ctx *ctx, vd_node_t node,
			   const char *name)
{
	return xattr_call(ctx, node, XA_REMOVE, name, NULL, 0, 0);
}

/* create and tmpfile: open a new file as the caller, then its node. */
static int make_open(const struct vd_ctx *ctx, vd_node_t parent, struct mk m,
		     struct vd_file *fi, vd_node_t *node, struct stat *st)
{
	struct dir_src *s = SRC(ctx);
	struct dnode *p = N(s, parent), *n;
	int fd, r;

	r = dir_pin(s, p, &m.dfd);
	if (r)
		return r;
	fd = with_caller(ctx, m);
	dir_unpin(s, p);
	if (fd < 0)
		return fd;
	r = dir_node_at(s, fd, NULL, &n, st);
	if (r) {
		close(fd);
		return r;
	}
	*node = ID(s, n);
	fi->fh = (uint64_t)fd;
	fi->backing_fd = fd;
	return 0;
}

static int dir_create(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, mode_t mode, struct vd_file *fi,
		      vd_node_t *node, struct stat *st)
{
	struct mk m = {.kind = MK_OPEN,
		       .name = name,
		       .mode = mode & 07777,
		       .flags = backing_flags(fi->flags) | O_CREAT |
				(fi->flags & O_EXCL)};

	return make_open(ctx, parent, m, fi, node, st);
}

static int dir_tmpfile(const struct vd_ctx *ctx, vd_node_t parent, mode_t mode,
		       struct vd_file *fi, vd_node_t *node, struct stat *st)
{
	struct mk m = {.kind = MK_TMPFILE,
		       .mode = mode & 07777,
		       .flags = (backing_flags(fi->flags) & ~O_CREAT) |
				O_TMPFILE | (fi->flags & O_EXCL)};

	return make_open(ctx, parent, m, fi, node, st);
}

static int dir_fallocate(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, int mode, off_t off, off_t len)
{
	(void)ctx, (void)node;
	return fallocate((int)fi->fh, mode, off, len) < 0 ? -errno : 0;
}

static int64_t dir_copy_file_range(const struct vd_ctx *ctx, vd_node_t in,
				   struct vd_file *fi_in, off_t off_in,
				   vd_node_t out, struct vd_file *fi_out,
				   off_t off_out, size_t len, int flags)
{
	loff_t oi = off_in, oo = off_out;
	ssize_t r = copy_file_range((int)fi_in->fh, &oi, (int)fi_out->fh, &oo,
				    len, (unsigned int)flags);

	(void)ctx, (void)in, (void)out;
	return r < 0 ? -errno : r;
}

static int64_t dir_lseek(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, off_t off, int whence)
{
	off_t r = lseek((int)fi->fh, off, whence);

	(void)ctx, (void)node;
	return r < 0 ? -errno : r;
}

static void dir_destroy(void *data)
{
	struct dir_src *s = data;

	pthread_mutex_lock(&s->ra_lock);
	s->ra_stop = true;
	pthread_cond_signal(&s->ra_cv);
	pthread_mutex_unlock(&s->ra_lock);
	if (s->ra_started)
		pthread_join(s->ra_thread, NULL);
	pthread_cond_destroy(&s->ra_cv);
	pthread_mutex_destroy(&s->ra_lock);

	for (size_t i = 0; i < s->nodes.nb; i++) {
		struct vd_hlink *l = vd_htab_bucket(&s->nodes, i), *next;

		for (; l; l = next) {
			struct dnode *n = vd_container_of(l, struct dnode, hl);

			next = l->next;
			if (n->fd >= 0)
				close(n->fd);
			dir_node_free(n);
		}
	}
	for (int i = 0; i < s->nmounts; i++)
		close(s->mounts[i].fd);
	close(s->root.fd);
	vd_htab_fini(&s->nodes);
	free(s->groups);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct vd_ops dir_ops = {
	.flags = VD_OPS_THREAD_SAFE | VD_OPS_QUICK | VD_OPS_BACKING,
	.destroy = dir_destroy,
	.lookup = dir_lookup,
	.forget = dir_forget,
	.getattr = dir_getattr,
	.setattr = dir_setattr,
	.readlink = dir_readlink,
	.mknod = dir_mknod,
	.mkdir = dir_mkdir,
	.unlink = dir_unlink,
	.rmdir = dir_rmdir,
	.symlink = dir_symlink,
	.rename = dir_rename,
	.link = dir_link,
	.open = dir_open,
	.read = dir_read,
	.write = dir_write,
	.release = dir_release,
	.fsync = dir_fsync,
	.opendir = dir_opendir,
	.readdir = dir_readdir,
	.releasedir = dir_releasedir,
	.fsyncdir = dir_fsyncdir,
	.statfs = dir_statfs,
	.setxattr = dir_setxattr,
	.getxattr = dir_getxattr,
	.listxattr = dir_listxattr,
	.removexattr = dir_removexattr,
	.create = dir_create,
	.fallocate = dir_fallocate,
	.copy_file_range = dir_copy_file_range,
	.lseek = dir_lseek,
	.tmpfile = dir_tmpfile,
};

/* The same, for a folder on a network or FUSE file system: a call there
 * can wait on a server, so not VD_OPS_QUICK. Filled once from dir_ops. */
static struct vd_ops dir_ops_remote;
static pthread_once_t dir_ops_remote_once = PTHREAD_ONCE_INIT;

static void fill_dir_ops_remote(void)
{
	dir_ops_remote = dir_ops;
	dir_ops_remote.flags &= ~VD_OPS_QUICK;
}

/* Fill the root node of s from the folder at path. */
static int open_root(struct dir_src *s, const char *path, char *err,
		     size_t errlen)
{
	struct stat st;

	s->root.fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (s->root.fd < 0) {
		int e = errno;
		if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
			e = ENOTDIR;
		snprintf(err, errlen, "dir: %s: %s", path,
			 e == ENOTDIR  ? "not a folder"
			 : e == ENOENT ? "no such folder"
				       : strerror(e));
		return -e;
	}
	if (faccessat(s->root.fd, ".", R_OK | X_OK, 0) < 0 ||
	    fstat(s->root.fd, &st) < 0) {
		int e = errno;
		snprintf(err, errlen, "dir: %s: %s", path, strerror(e));
		return -e;
	}
	s->root.dev = st.st_dev;
	s->root.ino = st.st_ino;
	s->nohandles = !dir_handles_work(s);
	return 0;
}

/* The file descriptor limit up to the hard one: every client's open
 * file costs one here. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int dir_src_open(const char *arg, const struct vd_ops **ops, void **data,
			char *err, size_t errlen)
{
	struct dir_src *s;
	int r;

	if (!arg || !*arg) {
		snprintf(err, errlen,
			 "dir: give the folder to mirror: dir:PATH");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "dir: out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->ra_lock, NULL);
	pthread_cond_init(&s->ra_cv, NULL);
	s->ra_tail = &s->ra_head;
	s->root.fd = -1;
	s->lru.lnext = s->lru.lprev = &s->lru;
	r = vd_htab_init(&s->nodes, 4096);
	s->ngroups = getgroups(0, NULL);
	if (s->ngroups > 0)
		s->groups = calloc((size_t)s->ngroups, sizeof(gid_t));
	if (r || (s->ngroups > 0 && !s->groups)) {
		snprintf(err, errlen, "dir: out of memory");
		r = -ENOMEM;
		goto fail;
	}
	if (s->ngroups > 0)
		s->ngroups = getgroups(s->ngroups, s->groups);
	if (s->ngroups < 0)
		s->ngroups = 0;
	r = open_root(s, arg, err, errlen);
	if (r)
		goto fail;
	raise_fd_limit();
	*ops = &dir_ops;
	if (dir_remote_fs(s->root.fd)) {
		pthread_once(&dir_ops_remote_once, fill_dir_ops_remote);
		*ops = &dir_ops_remote;
	}
	*data = s;
	return 0;
fail:
	for (int i = 0; i < s->nmounts; i++)
		close(s->mounts[i].fd);
	if (s->root.fd >= 0)
		close(s->root.fd);
	vd_htab_fini(&s->nodes);
	free(s->groups);
	pthread_cond_destroy(&s->ra_cv);
	pthread_mutex_destroy(&s->ra_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return r;
}

const struct vd_source vd_source_dir = {
	.kind = "dir",
	.usage = "dir:PATH",
	.help = "a mirror of an existing folder",
	.open = dir_src_open,
};
