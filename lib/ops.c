/*
 * ops.c - FUSE low-level requests turned into vd_ops calls.
 *
 * Each handler builds a vd_ctx, maps nodeids to source nodes, calls the
 * source (under the serial lock when it is not thread-safe), counts the
 * references it hands to the kernel, and replies.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <time.h>

#include "vdrive_i.h"

#define DRIVE(req) ((struct vd_drive *)fuse_req_userdata(req))
#define NODE(d, ino) (vd_nodes_get(&(d)->nodes, (ino))->node)

#define CALL(d, expr) VD_CALL(d, expr)

/* Refuse callers from namespaces the drive is not allowed in, and
 * changes from namespaces it is shared with read-only (EROFS). */
#define GATE_FOR(d, req, write)                                                \
	do {                                                                   \
		int g_;                                                        \
		if (__atomic_load_n(&(d)->gate, __ATOMIC_ACQUIRE) &&           \
		    (g_ = vd_gate_check((d), (req), (write))) != 0) {          \
			fuse_reply_err((req), -g_);                            \
			return;                                                \
		}                                                              \
	} while (0)
#define GATE(d, req) GATE_FOR(d, req, false)
#define GATE_W(d, req) GATE_FOR(d, req, true)

/*
 * HANDLE_KILLPRIV_V2 (libfuse >= 3.18, which reports the kernel flag): the
 * kernel then marks the drive SB_NOSEC, so a write stops asking
 * getxattr(security.capability) once it knows the file has no privileges (a
 * round trip per write(2) before), and flags the writes, truncates, chowns and
 * O_TRUNC opens that must clear set-id bits instead.
 */
#if FUSE_MAJOR_VERSION * 100 + FUSE_MINOR_VERSION >= 318
#define VD_KILLPRIV_V2 1
#define KILL(fi) ((fi) && (fi)->kill_suidgid)
#define SETATTR_KILL                                                           \
	FUSE_SET_ATTR_KILL_SUID /* the kernel's FATTR_KILL_SUIDGID */
#else
#define KILL(fi) 0
#define SETATTR_KILL 0
#endif

static void mkctx(struct vd_ctx *c, fuse_req_t req)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct vd_drive *d = DRIVE(req);

	/* A shareable drive from vdrived gets host pids: show the source
	 * the pid its own container knows, if the gate learnt it. */
	c->pid = d->gate_daemon ? vd_gate_local_pid(d, fc->pid) : fc->pid;
	c->uid = fc->uid;
	c->gid = fc->gid;
	c->umask = fc->umask;
	c->drive = d;
	c->data = d->data;
	c->mntns_cache_ = 0;
	c->req_ = req;
}

static void from_fi(struct vd_file *vf, const struct fuse_file_info *fi)
{
	memset(vf, 0, sizeof(*vf));
	vf->backing_fd = -1;
	if (!fi)
		return;
	vf->flags = fi->flags;
	vf->fh = fi->fh;
	vf->writepage = fi->writepage;
	vf->lock_owner = fi->lock_owner;
}

static void to_fi(struct fuse_file_info *fi, const struct vd_file *vf)
{
	fi->fh = vf->fh;
	fi->direct_io = vf->direct_io;
	fi->keep_cache = vf->keep_cache;
	fi->nonseekable = vf->nonseekable;
	fi->cache_readdir = vf->cache_readdir;
}

#ifdef FUSE_CAP_PASSTHROUGH
/*
 * Put this open in kernel passthrough mode on the source's backing file.
 * The kernel fails (EIO) an open whose backing file differs from the one
 * other opens of the same inode use, so the first open registers
 * vf->backing_fd and every later open of the entry reuses that id. A
 * release does not say which backing id its open had, so the id stays
 * with the entry until the kernel forgets the inode (put_backing).
 */
static void set_backing(fuse_req_t req, struct vd_drive *d, struct vd_entry *e,
			struct fuse_file_info *fi, const struct vd_file *vf)
{
	int id;

	if (!d->passthrough_ok || vf->backing_fd < 0 || vf->direct_io ||
	    e == &d->nodes.root)
		return;
	pthread_mutex_lock(&d->nodes.lock);
	if (e->backing_id <= 0) {
		id = fuse_passthrough_open(req, vf->backing_fd);
		if (id > 0)
			e->backing_id = id;
	}
	if (e->backing_id > 0) {
		fi->backing_id = e->backing_id;
		fi->keep_cache = 0;
	}
	pthread_mutex_unlock(&d->nodes.lock);
}

/* FUSE_DEV_IOC_BACKING_CLOSE, which Debian 12's kernel headers lack. */
#define VD_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/*
 * The kernel forgot the inode that held backing id (0: none), or never
 * got the reply that named it: drop it. Through the session's descriptor,
 * not a request, since an undone reply has no request left.
 */
void vd_backing_close(struct vd_drive *d, int id)
{
	uint32_t u = (uint32_t)id;

	if (id > 0 &&
	    ioctl(fuse_session_fd(d->se), VD_IOC_BACKING_CLOSE, &u) < 0)
		vd_log(d, "cannot close backing id %d: %s", id,
		       strerror(errno));
}

#define entry_backing(e) ((e)->backing_id)
#else
#define set_backing(req, d, e, fi, vf) ((void)(vf))
void vd_backing_close(struct vd_drive *d, int id)
{
	(void)d, (void)id;
}
#define entry_backing(e) 0
#endif

/*
 * Hand node to the kernel as a new entry reference and reply. Returns 0,
 * or the nodeid when the kernel refused the reply (the caller was
 * interrupted): nothing holds that reference then, and the caller gives
 * it back with undo_entry() once it no longer holds forget_lock.
 */
static fuse_ino_t reply_entry(fuse_req_t req, struct vd_drive *d,
			      vd_node_t node, struct stat *st,
			      struct fuse_file_info *fi,
			      const struct vd_file *vf)
{
	struct fuse_entry_param e;
	struct vd_entry *ent;
	int r;

	memset(&e, 0, sizeof(e));
	if (st->st_ino == 0)
		st->st_ino = node;
	ent = vd_nodes_ref(&d->nodes, node);
	if (!ent) {
		fuse_reply_err(req, ENOMEM);
		return 0;
	}
	e.ino = ent == &d->nodes.root ? FUSE_ROOT_ID
				      : (fuse_ino_t)(uintptr_t)ent;
	e.generation = 1;
	if (d->cache)
		vd_cache_fix_attr(d, node, st);
	e.attr = *st;
	e.attr_timeout = d->attr_timeout;
	e.entry_timeout = d->entry_timeout;
	if (fi) {
		if (d->cache)
			vd_cache_open(d, req, NULL, e.ino, node, vf, fi, true);
		else
			set_backing(req, d, ent, fi, vf);
		r = fuse_reply_create(req, &e, fi);
	} else {
		r = fuse_reply_entry(req, &e);
	}
	return r == -ENOENT ? e.ino : 0;
}

static void reply_attr(fuse_req_t req, struct vd_drive *d, vd_node_t node,
		       struct stat *st)
{
	if (st->st_ino == 0)
		st->st_ino = node;
	if (d->cache)
		vd_cache_fix_attr(d, node, st);
	fuse_reply_attr(req, st, d->attr_timeout);
}

static void vd_init(void *userdata, struct fuse_conn_info *conn)
{
	struct vd_drive *d = userdata;

	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV; /* the kernel clears suid */
	if (d->writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	if (d->readdirplus == 0) {
		conn->want &=
			~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	} else if (d->readdirplus == 1) {
		conn->want |= FUSE_CAP_READDIRPLUS;
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	}
	if (d->default_permissions && d->ops.getxattr && d->ops.setxattr &&
	    (conn->capable & FUSE_CAP_POSIX_ACL))
		conn->want |= FUSE_CAP_POSIX_ACL;
	/* Under a default ACL the umask must not apply, so with ACLs the
	 * kernel leaves it to the source (ctx->umask) instead of masking the
	 * mode before the source sees it. */
	if ((conn->want & FUSE_CAP_POSIX_ACL) &&
	    (conn->capable & FUSE_CAP_DONT_MASK))
		conn->want |= FUSE_CAP_DONT_MASK;
	if (!d->serialize && (conn->capable & FUSE_CAP_PARALLEL_DIROPS))
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
	/* Shared mmap of direct_io files, as on any local file system. */
	if (conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP)
		conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
#endif
#ifdef FUSE_CAP_PASSTHROUGH
	/* The body cache serves opens by passthrough: it needs the kernel's
	 * passthrough, which excludes the writeback cache and direct_io. */
	if (d->cache_opt && (d->ops.flags & VD_OPS_CACHE) && d->passthrough &&
	    !d->writeback_cache && !d->direct_io &&
	    (conn->capable & FUSE_CAP_PASSTHROUGH))
		vd_cache_setup(d); /* logs why not; the drive runs without */
	if (d->passthrough && !d->writeback_cache &&
	    ((d->ops.flags & VD_OPS_BACKING) || d->cache) &&
	    (conn->capable & FUSE_CAP_PASSTHROUGH)) {
		conn->want |= FUSE_CAP_PASSTHROUGH;
		d->passthrough_ok = true;
	}
#endif
	/* Not with passthrough (its writes reach neither the server nor the
	 * kernel's FUSE privilege check, only the backing file as the server)
	 * nor with writeback_cache (cached writes reach the server unflagged;
	 * the nsfuzz runs caught a set-group-ID bit kept). */
#ifdef VD_KILLPRIV_V2
	if (d->ops.getattr && d->ops.setattr && !d->passthrough_ok &&
	    !d->writeback_cache &&
	    (conn->capable & FUSE_CAP_HANDLE_KILLPRIV_V2)) {
		conn->want |= FUSE_CAP_HANDLE_KILLPRIV_V2;
		d->killpriv_v2 = true;
	}
#endif
	conn->max_write = d->max_io;
	conn->max_readahead = d->max_io;
	conn->time_gran = 1;
}

static void vd_destroy(void *userdata)
{
	(void)userdata;
}

static void undo_entry(struct vd_drive *d, fuse_ino_t ino);

static void vd_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct stat st;
	vd_node_t node = 0;
	fuse_ino_t undo = 0;
	int r;

	GATE(d, req);

	if (!d->ops.lookup) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	mkctx(&c, req);
	memset(&st, 0, sizeof(st));
	pthread_rwlock_rdlock(&d->forget_lock);
	r = CALL(d, d->ops.lookup(&c, NODE(d, parent), name, &node, &st));
	if (r == 0) {
		undo = reply_entry(req, d, node, &st, NULL, NULL);
	} else if (r == -ENOENT && d->negative_timeout > 0) {
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.entry_timeout = d->negative_timeout;
		fuse_reply_entry(req, &e);
	} else {
		fuse_reply_err(req, -r);
	}
	pthread_rwlock_unlock(&d->forget_lock);
	undo_entry(d, undo);
}

/* Drop n kernel references; the last one tells the source. req is NULL
 * when no request is left to close a backing id with: the id then stays
 * registered until the connection ends (only interrupted creates). */
static void forget_one(struct vd_drive *d, fuse_ino_t ino, uint64_t n)
{
	struct vd_entry *e = vd_nodes_get(&d->nodes, ino);
	vd_node_t node = e->node;
	int backing = entry_backing(e);

	if (!vd_nodes_unref(&d->nodes, e, n))
		return;
	vd_backing_close(d, backing);
	if (d->cache)
		vd_cache_forget(d, node);
	if (d->ops.forget)
		CALL(d, (d->ops.forget(d->data, node), 0));
}

static void vd_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct vd_drive *d = DRIVE(req);

	pthread_rwlock_wrlock(&d->forget_lock);
	forget_one(d, ino, nlookup);
	pthread_rwlock_unlock(&d->forget_lock);
	fuse_reply_none(req);
}

static void vd_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct vd_drive *d = DRIVE(req);

	pthread_rwlock_wrlock(&d->forget_lock);
	for (size_t i = 0; i < count; i++)
		forget_one(d, forgets[i].ino, forgets[i].nlookup);
	pthread_rwlock_unlock(&d->forget_lock);
	fuse_reply_none(req);
}

/* Give back the reference of a refused entry reply, as a forget would. */
static void undo_entry(struct vd_drive *d, fuse_ino_t ino)
{
	if (!ino)
		return;
	pthread_rwlock_wrlock(&d->forget_lock);
	forget_one(d, ino, 1);
	pthread_rwlock_unlock(&d->forget_lock);
}

static void vd_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	struct stat st;
	vd_node_t node = NODE(d, ino);
	int r;

	if (ino == FUSE_ROOT_ID)
		GATE(d, req);
	if (!d->ops.getattr) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	mkctx(&c, req);
	from_fi(&vf, fi);
	memset(&st, 0, sizeof(st));
	r = CALL(d, d->ops.getattr(&c, node, fi ? &vf : NULL, &st));
	if (r)
		fuse_reply_err(req, -r);
	else
		reply_attr(req, d, node, &st);
}

/*
 * A write by anyone but root clears set-user-ID, and set-group-ID on a
 * group-executable file; so do truncate and chown. The kernel does it for
 * cached writes unless HANDLE_KILLPRIV_V2 was agreed (then it flags the
 * request, KILL()); direct_io writes it leaves to the server. The library
 * does it for every source. If it changed the mode and out is not NULL,
 * *out gets the node's new attributes.
 */
static void kill_suid(struct vd_drive *d, struct vd_ctx *c, vd_node_t node,
		      struct stat *out)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	if (!d->ops.getattr || !d->ops.setattr ||
	    CALL(d, d->ops.getattr(c, node, NULL, &st)) != 0)
		return;
	if (S_ISDIR(st.st_mode) ||
	    (!(st.st_mode & S_ISUID) &&
	     (st.st_mode & (S_ISGID | S_IXGRP)) != (S_ISGID | S_IXGRP)))
		return;
	st.st_mode &=
		~(mode_t)(S_ISUID | ((st.st_mode & S_IXGRP) ? S_ISGID : 0));
	if (CALL(d, d->ops.setattr(c, node, &st, VD_SET_MODE, NULL)) == 0 &&
	    out)
		*out = st; /* setattr left the full new attributes there */
}

static void vd_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	struct stat st = *attr;
	vd_node_t node = NODE(d, ino);
	int set = 0;
	struct timespec now;
	int r;

	/* Only a read-only share needs the gate here: a setattr always
	 * follows a lookup or open that the gate admitted. */
	if (__atomic_load_n(&d->nreadonly, __ATOMIC_RELAXED))
		GATE_W(d, req);
	if (!d->ops.setattr) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	if (to_set & FUSE_SET_ATTR_MODE)
		set |= VD_SET_MODE;
	if (to_set & FUSE_SET_ATTR_UID)
		set |= VD_SET_UID;
	if (to_set & FUSE_SET_ATTR_GID)
		set |= VD_SET_GID;
	if (to_set & FUSE_SET_ATTR_SIZE)
		set |= VD_SET_SIZE;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
		st.st_atim = now;
		set |= VD_SET_ATIME;
	} else if (to_set & FUSE_SET_ATTR_ATIME) {
		set |= VD_SET_ATIME;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		st.st_mtim = now;
		set |= VD_SET_MTIME;
	} else if (to_set & FUSE_SET_ATTR_MTIME) {
		set |= VD_SET_MTIME;
	}
	if (to_set & FUSE_SET_ATTR_CTIME)
		set |= VD_SET_CTIME;
	mkctx(&c, req);
	from_fi(&vf, fi);
	r = CALL(d, d->ops.setattr(&c, node, &st, set, fi ? &vf : NULL));
	/* chown(f, -1, -1) clears set-id bits too, but reaches us as a bare
	 * ctime update without the kernel's kill flag. */
	if (r == 0 &&
	    ((to_set & SETATTR_KILL) || (SETATTR_KILL && d->killpriv_v2 &&
					 (to_set & ~FUSE_SET_ATTR_CTIME) == 0)))
		kill_suid(d, &c, node, &st);
	if (r == 0 && d->cache && (set & VD_SET_SIZE))
		vd_cache_set_size(d, node, &st);
	if (r)
		fuse_reply_err(req, -r);
	else
		reply_attr(req, d, node, &st);
}

static void vd_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	char buf[PATH_MAX + 1];
	int r;

	GATE(d, req);

	if (!d->ops.readlink) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	mkctx(&c, req);
	buf[0] = '\0';
	r = CALL(d, d->ops.readlink(&c, NODE(d, ino), buf, sizeof(buf)));
	buf[sizeof(buf) - 1] = '\0';
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_readlink(req, buf);
}

/* mknod, mkdir and symlink share their tail: count the new node. */
static void new_node_done(fuse_req_t req, struct vd_drive *d, int r,
			  vd_node_t node, struct stat *st)
{
	fuse_ino_t undo = 0;

	if (r)
		fuse_reply_err(req, -r);
	else
		undo = reply_entry(req, d, node, st, NULL, NULL);
	pthread_rwlock_unlock(&d->forget_lock);
	undo_entry(d, undo);
}

static void vd_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct stat st;
	vd_node_t node = 0;
	int r;

	GATE_W(d, req);

	if (!d->ops.mknod) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	mkctx(&c, req);
	memset(&st, 0, sizeof(st));
	pthread_rwlock_rdlock(&d->forget_lock);
	r = CALL(d, d->ops.mknod(&c, NODE(d, parent), name, mode, rdev, &node,
				 &st));
	new_node_done(req, d, r, node, &st);
}

static void vd_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct stat st;
	vd_node_t node = 0;
	int r;

	GATE_W(d, req);

	if (!d->ops.mkdir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	mkctx(&c, req);
	memset(&st, 0, sizeof(st));
	pthread_rwlock_rdlock(&d->forget_lock);
	r = CALL(d, d->ops.mkdir(&c, NODE(d, parent), name, mode | S_IFDIR,
				 &node, &st));
	new_node_done(req, d, r, node, &st);
}

static void vd_symlink(fuse_req_t req, const char *target, fuse_ino_t parent,
		       const char *name)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct stat st;
	vd_node_t node = 0;
	int r;

	GATE_W(d, req);

	if (!d->ops.symlink) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	mkctx(&c, req);
	memset(&st, 0, sizeof(st));
	pthread_rwlock_rdlock(&d->forget_lock);
	r = CALL(d,
		 d->ops.symlink(&c, target, NODE(d, parent), name, &node, &st));
	new_node_done(req, d, r, node, &st);
}

static void vd_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct stat st;
	vd_node_t node = NODE(d, ino);
	int r;

	GATE_W(d, req);

	if (!d->ops.link) {
		fuse_reply_err(req, EPERM);
		return;
	}
	mkctx(&c, req);
	memset(&st, 0, sizeof(st));
	pthread_rwlock_rdlock(&d->forget_lock);
	r = CALL(d, d->ops.link(&c, node, NODE(d, newparent), newname, &st));
	new_node_done(req, d, r, node, &st);
}

/* unlink and rmdir: no reply data. */
static void vd_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	int r = -ENOSYS;

	GATE_W(d, req);

	mkctx(&c, req);
	if (d->ops.unlink)
		r = CALL(d, d->ops.unlink(&c, NODE(d, parent), name));
	fuse_reply_err(req, -r);
}

static void vd_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	int r = -ENOSYS;

	GATE_W(d, req);

	mkctx(&c, req);
	if (d->ops.rmdir)
		r = CALL(d, d->ops.rmdir(&c, NODE(d, parent), name));
	fuse_reply_err(req, -r);
}

static void vd_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	int r = -ENOSYS;

	GATE_W(d, req);

	mkctx(&c, req);
	if (d->ops.rename)
		r = CALL(d, d->ops.rename(&c, NODE(d, parent), name,
					  NODE(d, newparent), newname, flags));
	fuse_reply_err(req, -r);
}

static void vd_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	int r = 0;

	GATE_FOR(d, req,
		 (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC));

	mkctx(&c, req);
	from_fi(&vf, fi);
	vf.keep_cache = d->kernel_cache;
	vf.direct_io = d->direct_io;
	if (d->ops.open)
		r = CALL(d, d->ops.open(&c, NODE(d, ino), &vf));
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	if (KILL(fi) && (fi->flags & O_TRUNC))
		kill_suid(d, &c, NODE(d, ino), NULL);
	to_fi(fi, &vf);
	if (d->cache)
		vd_cache_open(d, req, &c, ino, NODE(d, ino), &vf, fi, false);
	else
		set_backing(req, d, vd_nodes_get(&d->nodes, ino), fi, &vf);
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* Interrupted opener: nobody will release this open. */
		c.req_ = NULL; /* the request is gone with the reply */
		if (d->cache)
			vd_cache_release(d, ino, NODE(d, ino));
		if (d->ops.release)
			CALL(d, d->ops.release(&c, NODE(d, ino), &vf));
	}
}

/*
 * create, and tmpfile when name is NULL: make and open a file and hand
 * the kernel its entry. An interrupted caller's open is released here.
 */
static void do_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	struct stat st;
	vd_node_t node = 0;
	fuse_ino_t undo = 0;
	int r;

	GATE_W(d, req);

	mkctx(&c, req);
	from_fi(&vf, fi);
	vf.keep_cache = d->kernel_cache;
	vf.direct_io = d->direct_io;
	memset(&st, 0, sizeof(st));
	pthread_rwlock_rdlock(&d->forget_lock);
	if (!name) {
		r = d->ops.tmpfile
			    ? CALL(d, d->ops.tmpfile(&c, NODE(d, parent), mode,
						     &vf, &node, &st))
			    : -EOPNOTSUPP;
	} else if (d->ops.create) {
		r = CALL(d, d->ops.create(&c, NODE(d, parent), name, mode, &vf,
					  &node, &st));
	} else if (d->ops.mknod) {
		r = CALL(d, d->ops.mknod(&c, NODE(d, parent), name, mode, 0,
					 &node, &st));
		if (r == 0 && d->ops.open)
			r = CALL(d, d->ops.open(&c, node, &vf));
	} else {
		r = -ENOSYS;
	}
	if (r) {
		fuse_reply_err(req, -r);
	} else {
		to_fi(fi, &vf);
		undo = reply_entry(req, d, node, &st, fi, &vf);
	}
	pthread_rwlock_unlock(&d->forget_lock);
	if (undo) {
		/* Nobody will release the open the source made. */
		c.req_ = NULL;
		if (d->cache)
			vd_cache_release(d, undo, node);
		if (d->ops.release)
			CALL(d, d->ops.release(&c, node, &vf));
		undo_entry(d, undo);
	}
}

static void vd_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	do_create(req, parent, name, mode, fi);
}

#if FUSE_VERSION >= FUSE_MAKE_VERSION(3, 17)
/* O_TMPFILE: an unnamed file; only libfuse >= 3.17 passes it on. */
static void vd_tmpfile(fuse_req_t req, fuse_ino_t parent, mode_t mode,
		       struct fuse_file_info *fi)
{
	do_create(req, parent, NULL, mode, fi);
}
#endif

static void vd_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	char *buf;
	int r;

	if (!d->ops.read) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	mkctx(&c, req);
	from_fi(&vf, fi);
	r = CALL(d, d->ops.read(&c, NODE(d, ino), &vf, buf, size, off));
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, buf, (size_t)r > size ? size : (size_t)r);
	free(buf);
}

static void vd_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	int r;

	if (!d->ops.write) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	mkctx(&c, req);
	from_fi(&vf, fi);
	r = CALL(d, d->ops.write(&c, NODE(d, ino), &vf, buf, size, off));
	if (r > 0 &&
	    ((d->direct_io && c.uid != 0 && !fi->writepage) || KILL(fi)))
		kill_suid(d, &c, NODE(d, ino), NULL);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, (size_t)r);
}

static void vd_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	int r = -ENOSYS;

	mkctx(&c, req);
	from_fi(&vf, fi);
	if (d->cache) {
		/* close(2) reports a failed write-back of a cached body; and
		 * never ENOSYS, which would stop flushes for every file. */
		r = vd_cache_has_pt(d, ino)
			    ? vd_cache_sync(d, &c, NODE(d, ino), false)
			    : 0;
		if (r == 0 && d->ops.flush)
			r = CALL(d, d->ops.flush(&c, NODE(d, ino), &vf));
	} else if (d->ops.flush) {
		r = CALL(d, d->ops.flush(&c, NODE(d, ino), &vf));
	}
	fuse_reply_err(req, -r);
}

static void vd_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;

	mkctx(&c, req);
	from_fi(&vf, fi);
	if (d->cache)
		vd_cache_release(d, ino, NODE(d, ino));
	if (d->ops.release)
		CALL(d, d->ops.release(&c, NODE(d, ino), &vf));
	fuse_reply_err(req, 0);
}

static void vd_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	int r = 0;

	mkctx(&c, req);
	from_fi(&vf, fi);
	/* A cached body's bytes reach the source first, then its fsync. */
	if (d->cache)
		r = vd_cache_sync(d, &c, NODE(d, ino), false);
	if (r == 0 && d->ops.fsync)
		r = CALL(d, d->ops.fsync(&c, NODE(d, ino), datasync, &vf));
	fuse_reply_err(req, -r);
}

static void vd_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	int r = 0;

	GATE(d, req);

	mkctx(&c, req);
	from_fi(&vf, fi);
	if (d->ops.opendir)
		r = CALL(d, d->ops.opendir(&c, NODE(d, ino), &vf));
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	to_fi(fi, &vf);
	if (fuse_reply_open(req, fi) == -ENOENT && d->ops.releasedir)
		CALL(d, d->ops.releasedir(&c, NODE(d, ino), &vf));
}

struct dirbuf {
	fuse_req_t req;
	struct vd_drive *d;
	char *buf;
	size_t size, pos;
	bool plus;
	fuse_ino_t *refs; /* plus: the references handed out, to give back */
	size_t nrefs;
};

/* The smallest readdirplus entry: fuse_entry_out, fuse_dirent, 8 bytes of
 * name; bounds how many references one reply can carry. */
#define MIN_DIRENTPLUS (128 + 24 + 8)

static int is_dot(const char *name)
{
	return name[0] == '.' &&
	       (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static int fill(void *arg, const char *name, vd_node_t node,
		const struct stat *st, off_t next)
{
	struct dirbuf *b = arg;
	size_t room = b->size - b->pos, need;
	struct stat s = *st;

	if (s.st_ino == 0)
		s.st_ino = node;
	if (!b->plus) {
		need = fuse_add_direntry(b->req, b->buf + b->pos, room, name,
					 &s, next);
		if (need > room)
			return 1;
		b->pos += need;
		return 0;
	}

	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	if (b->d->cache && node)
		vd_cache_fix_attr(b->d, node, &s);
	e.attr = s;
	need = fuse_add_direntry_plus(b->req, NULL, 0, name, &e, next);
	if (need > room)
		return 1;
	if (node && !is_dot(name)) {
		struct vd_entry *ent = vd_nodes_ref(&b->d->nodes, node);
		if (ent) {
			e.ino = ent == &b->d->nodes.root
					? FUSE_ROOT_ID
					: (fuse_ino_t)(uintptr_t)ent;
			b->refs[b->nrefs++] = e.ino;
			e.generation = 1;
			e.attr_timeout = b->d->attr_timeout;
			e.entry_timeout = b->d->entry_timeout;
		}
	}
	fuse_add_direntry_plus(b->req, b->buf + b->pos, room, name, &e, next);
	b->pos += need;
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	struct dirbuf b = {.req = req, .d = d, .size = size, .plus = plus};
	int r;

	if (!d->ops.readdir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	b.buf = malloc(size ? size : 1);
	if (plus)
		b.refs = malloc((size / MIN_DIRENTPLUS + 1) * sizeof(*b.refs));
	if (!b.buf || (plus && !b.refs)) {
		fuse_reply_err(req, ENOMEM);
		goto out;
	}
	mkctx(&c, req);
	from_fi(&vf, fi);
	vf.readdirplus = plus;
	if (plus)
		pthread_rwlock_rdlock(&d->forget_lock);
	r = CALL(d, d->ops.readdir(&c, NODE(d, ino), &vf, off, fill, &b));
	/* An error after entries were added would leak their references:
	 * send what was gathered instead. */
	if (r && b.pos == 0)
		fuse_reply_err(req, -r);
	else if (fuse_reply_buf(req, b.buf, b.pos) != -ENOENT)
		b.nrefs = 0; /* the kernel took them */
	if (plus) {
		pthread_rwlock_unlock(&d->forget_lock);
		/* An interrupted reader took none: forget them as it would. */
		if (b.nrefs) {
			pthread_rwlock_wrlock(&d->forget_lock);
			for (size_t i = 0; i < b.nrefs; i++)
				forget_one(d, b.refs[i], 1);
			pthread_rwlock_unlock(&d->forget_lock);
		}
	}
out:
	free(b.refs);
	free(b.buf);
}

static void vd_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void vd_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void vd_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;

	mkctx(&c, req);
	from_fi(&vf, fi);
	if (d->ops.releasedir)
		CALL(d, d->ops.releasedir(&c, NODE(d, ino), &vf));
	fuse_reply_err(req, 0);
}

static void vd_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	int r = 0;

	mkctx(&c, req);
	from_fi(&vf, fi);
	if (d->ops.fsyncdir)
		r = CALL(d, d->ops.fsyncdir(&c, NODE(d, ino), datasync, &vf));
	fuse_reply_err(req, -r);
}

static void vd_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct statvfs st;
	int r = 0;

	mkctx(&c, req);
	memset(&st, 0, sizeof(st));
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_namemax = 255;
	if (d->ops.statfs)
		r = CALL(d, d->ops.statfs(&c, NODE(d, ino), &st));
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_statfs(req, &st);
}

static void vd_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	int r = -EOPNOTSUPP;

	GATE_W(d, req);

	mkctx(&c, req);
	if (d->ops.setxattr)
		r = CALL(d, d->ops.setxattr(&c, NODE(d, ino), name, value, size,
					    flags));
	fuse_reply_err(req, -r);
}

/* getxattr and listxattr share the size-probe protocol. */
static void reply_xattr(fuse_req_t req, int r, char *buf, size_t size)
{
	if (r < 0)
		fuse_reply_err(req, -r);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)r);
	else if ((size_t)r > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, (size_t)r);
}

static void vd_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	char *buf = NULL;
	int r;

	GATE(d, req);

	if (!d->ops.getxattr) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	mkctx(&c, req);
	r = CALL(d, d->ops.getxattr(&c, NODE(d, ino), name, buf, size));
	reply_xattr(req, r, buf, size);
	free(buf);
}

static void vd_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	char *buf = NULL;
	int r;

	GATE(d, req);

	if (!d->ops.listxattr) {
		/* No xattrs at all is a valid, empty answer. */
		if (size == 0)
			fuse_reply_xattr(req, 0);
		else
			fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	mkctx(&c, req);
	r = CALL(d, d->ops.listxattr(&c, NODE(d, ino), buf, size));
	reply_xattr(req, r, buf, size);
	free(buf);
}

static void vd_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	int r = -EOPNOTSUPP;

	GATE_W(d, req);

	mkctx(&c, req);
	if (d->ops.removexattr)
		r = CALL(d, d->ops.removexattr(&c, NODE(d, ino), name));
	fuse_reply_err(req, -r);
}

static void vd_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			 off_t length, struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	int r = -EOPNOTSUPP;

	mkctx(&c, req);
	from_fi(&vf, fi);
	/* In passthrough the body is the file: the write-back carries it. */
	if (d->cache && vd_cache_has_pt(d, ino))
		r = (int)vd_cache_fileop(d, NODE(d, ino), VD_CACHE_FALLOCATE,
					 mode, offset, length);
	else if (d->ops.fallocate)
		r = CALL(d, d->ops.fallocate(&c, NODE(d, ino), &vf, mode,
					     offset, length));
	fuse_reply_err(req, -r);
}

static void vd_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			       off_t off_out, struct fuse_file_info *fi_out,
			       size_t len, int flags)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vin, vout;
	int64_t r;

	if (!d->ops.copy_file_range) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	/* The source's copy would miss a body's bytes: the kernel copies
	 * through read and write instead (only this time: not ENOSYS). */
	if (d->cache &&
	    (vd_cache_has_pt(d, ino_in) || vd_cache_has_pt(d, ino_out))) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	mkctx(&c, req);
	from_fi(&vin, fi_in);
	from_fi(&vout, fi_out);
	r = CALL(d, d->ops.copy_file_range(&c, NODE(d, ino_in), &vin, off_in,
					   NODE(d, ino_out), &vout, off_out,
					   len, flags));
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_write(req, (size_t)r);
}

static void vd_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct vd_drive *d = DRIVE(req);
	struct vd_ctx c;
	struct vd_file vf;
	int64_t r;

	if (!d->ops.lseek) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	mkctx(&c, req);
	from_fi(&vf, fi);
	if (d->cache && vd_cache_has_pt(d, ino))
		r = vd_cache_fileop(d, NODE(d, ino), VD_CACHE_LSEEK, whence,
				    off, 0);
	else
		r = CALL(d, d->ops.lseek(&c, NODE(d, ino), &vf, off, whence));
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_lseek(req, r);
}

const struct fuse_lowlevel_ops vd_fuse_ops = {
	.init = vd_init,
	.destroy = vd_destroy,
	.lookup = vd_lookup,
	.forget = vd_forget,
	.forget_multi = vd_forget_multi,
	.getattr = vd_getattr,
	.setattr = vd_setattr,
	.readlink = vd_readlink,
	.mknod = vd_mknod,
	.mkdir = vd_mkdir,
	.unlink = vd_unlink,
	.rmdir = vd_rmdir,
	.symlink = vd_symlink,
	.rename = vd_rename,
	.link = vd_link,
	.open = vd_open,
	.read = vd_read,
	.write = vd_write,
	.flush = vd_flush,
	.release = vd_release,
	.fsync = vd_fsync,
	.opendir = vd_opendir,
	.readdir = vd_readdir,
	.readdirplus = vd_readdirplus,
	.releasedir = vd_releasedir,
	.fsyncdir = vd_fsyncdir,
	.statfs = vd_statfs,
	.setxattr = vd_setxattr,
	.getxattr = vd_getxattr,
	.listxattr = vd_listxattr,
	.removexattr = vd_removexattr,
	.create = vd_create,
	.fallocate = vd_fallocate,
	.copy_file_range = vd_copy_file_range,
	.lseek = vd_lseek,
#if FUSE_VERSION >= FUSE_MAKE_VERSION(3, 17)
	.tmpfile = vd_tmpfile,
#endif
};
