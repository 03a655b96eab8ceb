/*
 * vdrive.h - the public interface of libvdrive.
 *
 * A data source is a table of callbacks (struct vd_ops) plus a private
 * pointer. libvdrive turns kernel FUSE requests into calls on that table
 * and turns the results back into replies. Everything a source needs is
 * here; built-in sources (mem:, dir:, sqlite:, ...) use nothing else.
 *
 * Conventions, everywhere in this header:
 *  - Functions and callbacks return 0 (or a non-negative count where the
 *    comment says so) on success and -errno on failure.
 *  - Constructors hand the object back through an out parameter; every
 *    vd_x_new() has a vd_x_free() that accepts NULL.
 */
#ifndef VDRIVE_H
#define VDRIVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VD_VERSION_MAJOR 0
#define VD_VERSION_MINOR 1

/*
 * A node handle belongs to the source: any non-zero 64-bit value that
 * names one file, folder or link (a pointer, a row id, an inode number).
 * VD_ROOT names the root folder of every drive. The library maps node
 * handles to kernel inode numbers, counts the kernel's references and
 * tells the source through ops->forget() when the last one is gone.
 */
typedef uint64_t vd_node_t;
#define VD_ROOT ((vd_node_t)1)

struct vd_drive;

/*
 * Who is asking. Valid for the duration of one callback.
 * pid is the caller's pid as seen from the serving process's pid
 * namespace: 0 when the caller is not visible there, and for requests the
 * kernel makes on its own (writeback, readahead), whose uid/gid are then
 * those of whoever last touched the file, or 0.
 */
struct vd_ctx {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	mode_t umask; /* of the caller, for create/mkdir/mknod */
	struct vd_drive *drive;
	void *data;	       /* the source's private pointer */
	uint64_t mntns_cache_; /* private: use vd_ctx_mntns() */
	void *req_;	       /* private */
};

/*
 * Identity of the caller's mount namespace: the inode number of
 * /proc/PID/ns/mnt, computed on first use and cached for the request.
 * Returns 0 when it cannot be known (pid 0, process gone).
 */
uint64_t vd_ctx_mntns(const struct vd_ctx *ctx);

/*
 * The caller's supplementary groups, as the kernel reports them.
 * Fills up to n entries of list; returns the total number of groups
 * (may exceed n) or -errno.
 */
int vd_ctx_groups(const struct vd_ctx *ctx, gid_t *list, int n);

/*
 * Per-open state, shared between open/create and every later call on the
 * same open file (read, write, flush, fsync, release, ...).
 * in:  flags (the open(2) flags).
 * out: fh, direct_io, keep_cache, nonseekable, cache_readdir (opendir),
 *      backing_fd (see below).
 */
struct vd_file {
	int flags;
	uint64_t fh;		     /* the source's own handle for this open */
	unsigned int direct_io : 1;  /* bypass the page cache for this open */
	unsigned int keep_cache : 1; /* data cached earlier is still valid */
	unsigned int nonseekable : 1;
	unsigned int cache_readdir : 1;
	unsigned int writepage : 1; /* in: a write from the page cache */
	/* in (readdir): the kernel wants attributes and nodes (READDIRPLUS);
	 * when 0 the library ignores the nodes given to fill, so a source
	 * can skip finding them (and must not count on their forget). */
	unsigned int readdirplus : 1;
	unsigned int reserved_bits : 26;
	/*
	 * out (open/create): a descriptor of a real file holding the same
	 * bytes, for kernel FUSE passthrough. When the library and kernel
	 * support it, reads and writes of this open go straight to that file
	 * and never reach the source. -1 (the default) for none. Only read
	 * when ops->flags has VD_OPS_BACKING. The library does not take
	 * ownership: keep it open until release().
	 */
	int backing_fd;
	uint64_t lock_owner;
	uint64_t reserved[4];
};

/*
 * Directory listing callback handed to ops->readdir.
 * name: the entry's name. node: its node handle, or 0 if unknown (then
 * the library lists the entry without attributes). st: at least st_mode's
 * file type and st_ino; full attributes when node is non-zero. next: the
 * offset readdir must be given to continue after this entry.
 * Returns 0 while there is room, 1 when the buffer is full: stop and
 * return 0 from readdir (that entry was not added).
 * The library counts a reference for each node it hands to the kernel;
 * a source must not assume one forget per fill.
 */
typedef int (*vd_fill_fn)(void *buf, const char *name, vd_node_t node,
			  const struct stat *st, off_t next);

/* Bits of setattr's to_set. */
#define VD_SET_MODE (1 << 0)
#define VD_SET_UID (1 << 1)
#define VD_SET_GID (1 << 2)
#define VD_SET_SIZE (1 << 3)
#define VD_SET_ATIME (1 << 4)
#define VD_SET_MTIME (1 << 5)
#define VD_SET_CTIME (1 << 10)
/* "set to now" arrives as VD_SET_ATIME/MTIME with the current time. */

/* ops->flags */
#define VD_OPS_THREAD_SAFE (1u << 0) /* callbacks may run concurrently */
/* Nothing but this drive changes the source's data (a RAM drive): the
 * kernel may keep names and attributes for a day instead of a second
 * (entry_timeout/attr_timeout set as options still win). */
#define VD_OPS_EXCLUSIVE (1u << 1)
/* Every callback returns quickly (memory, a local disk; no network, no
 * child processes), or the source runs them one at a time anyway (one
 * lock): the library may then serve over FUSE's io_uring transport, one
 * thread per CPU, where a slow callback would hold up every caller on its
 * CPU (option io_uring, default "auto"). */
#define VD_OPS_QUICK (1u << 2)
/* Opens may hand back vd_file.backing_fd (kernel FUSE passthrough). A
 * drive without it lets the kernel skip a getxattr(security.capability)
 * per write (HANDLE_KILLPRIV_V2): passthrough writes bypass that check. */
#define VD_OPS_BACKING (1u << 3)
/* The library may keep a copy of a file's bytes in a local cache folder
 * and serve opens from it by kernel passthrough (native-speed reads and
 * writes, mmap): it fills the copy with read() on the first open, writes
 * it back with write() (and setattr for the size) on fsync, close and a
 * few seconds after the last change, and refills it after
 * vd_drive_invalidate_node() or when the file's size or mtime changed. For
 * a source with no real files of its own (sqlite:, mem:, remote ones).
 * Options cache, cache_size, cache_fill_max; docs/cache.md. */
#define VD_OPS_CACHE (1u << 4)

/*
 * The callback table.
 *
 * Pass it with its size (vd_drive_new(ops, sizeof(*ops), ...)) so that
 * members appended in later versions read as NULL for older callers.
 * Every member is optional. A NULL member answers as documented on it:
 * most often -ENOSYS (the kernel then stops asking, where it can), but
 * not always (listxattr: an empty list; tmpfile: -EOPNOTSUPP; release:
 * nothing; open, opendir, fsync: success).
 *
 * Errors: a callback returns 0 (or the count its comment names) or
 * -errno, which the caller's system call then fails with. Beyond the
 * errnos named on each member, any errno the operation can have natively
 * is fine (-EACCES, -EROFS, -ENOSPC, -EIO, -ENAMETOOLONG, ...).
 *
 * fi: callbacks on an open file or folder get its struct vd_file (the
 * one open/opendir/create filled); getattr and setattr get it only when
 * the request came through an open file (fstat, ftruncate), else NULL.
 *
 * Arguments: const pointers and strings are owned by the library and
 * valid during the call only. "out" parameters are filled by the source.
 * Attributes (struct stat *st, out) are the full attributes of the node;
 * st_ino may be left 0, the library then reports the node handle.
 *
 * Node references: every call that hands back a node (lookup, mknod,
 * mkdir, symlink, link, create, tmpfile, readdir with a node) keeps it
 * alive in the library until the kernel forgets it; then ops->forget()
 * is called once. Until then the node must stay valid, even if unlinked
 * (an unlinked file that is still open is still readable).
 *
 * Threads: unless flags has VD_OPS_THREAD_SAFE, the library calls at most
 * one callback at a time. Otherwise calls come from several threads at
 * once and the source does its own locking.
 *
 * Permissions: by default the kernel checks POSIX permissions and ACLs
 * (stored as system.posix_acl_* extended attributes) against the
 * attributes the source returns before calling it; a source only sets the
 * owner of what it creates (ctx->uid/gid, or the parent's gid under
 * setgid) and applies ctx->umask where the kernel has not.
 * The umask: the mode given to create, mknod, mkdir and tmpfile is
 * already masked by the caller's umask, except when the drive has POSIX
 * ACLs (getxattr and setxattr set, default_permissions on, a kernel that
 * allows it): then it arrives unmasked and the source applies ctx->umask
 * itself, unless the parent folder has a default ACL, which applies
 * instead (as ext4 does).
 */
struct vd_ops {
	unsigned int flags; /* VD_OPS_* */

	/* The drive is being freed (vd_drive_free(), after serving has
	 * stopped): release data. NULL: nothing. */
	void (*destroy)(void *data);

	/* Find name in folder parent: fill *node and st. -ENOENT if absent
	 * (the kernel caches that for negative_timeout). NULL: -ENOSYS. */
	int (*lookup)(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t *node, struct stat *st);

	/* The kernel holds no more references to node. NULL: nothing. */
	void (*forget)(void *data, vd_node_t node);

	/* fi is NULL unless the kernel asks through an open file. Required
	 * in practice: NULL answers -ENOSYS. */
	int (*getattr)(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, struct stat *st);

	/* Change the attributes named in to_set (VD_SET_*) to those in st;
	 * on success st holds the node's full new attributes. A mode change
	 * keeps the file type. fi: see above (ftruncate). NULL: -ENOSYS. */
	int (*setattr)(const struct vd_ctx *ctx, vd_node_t node,
		       struct stat *st, int to_set, struct vd_file *fi);

	/* Copy the link target, NUL-terminated, into buf (size bytes:
	 * PATH_MAX + 1). NULL: -ENOSYS. */
	int (*readlink)(const struct vd_ctx *ctx, vd_node_t node, char *buf,
			size_t size);

	/* Create a regular file, fifo, socket or device node: mode has the
	 * type (S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK), rdev the
	 * device. Fill *node and st. -EEXIST if name exists. The umask: see
	 * above. NULL: -ENOSYS. */
	int (*mknod)(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, dev_t rdev, vd_node_t *node,
		     struct stat *st);

	/* Create a folder. mode arrives with S_IFDIR set (the kernel sends
	 * only the permission bits; the library adds the type). Fill *node
	 * and st. -EEXIST if name exists. NULL: -ENOSYS. */
	int (*mkdir)(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, vd_node_t *node,
		     struct stat *st);

	/* Remove a name (the kernel sends folders to rmdir). The node stays
	 * valid (open files still read) until its forget. NULL: -ENOSYS. */
	int (*unlink)(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name);

	/* Remove a folder: -ENOTEMPTY if it has entries. NULL: -ENOSYS. */
	int (*rmdir)(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name);

	/* Make name a symbolic link to target; fill *node and st. -EEXIST if
	 * name exists. NULL: -ENOSYS. */
	int (*symlink)(const struct vd_ctx *ctx, const char *target,
		       vd_node_t parent, const char *name, vd_node_t *node,
		       struct stat *st);

	/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE; -EINVAL for flags
	 * the source does not support. A replaced name behaves as unlinked;
	 * -EEXIST (NOREPLACE), -ENOTEMPTY (a folder over a non-empty one).
	 * NULL: -ENOSYS. */
	int (*rename)(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t newparent,
		      const char *newname, unsigned int flags);

	/* Make newparent/newname a new name of node. NULL: -EPERM. */
	int (*link)(const struct vd_ctx *ctx, vd_node_t node,
		    vd_node_t newparent, const char *newname, struct stat *st);

	/* Open a file: fi->flags are the open(2) flags (O_CREAT, O_EXCL
	 * handled by the kernel); set fi->fh and the out bits. NULL: success
	 * with fh 0. */
	int (*open)(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi);

	/* Read up to size bytes at off into buf. Returns the count read
	 * (short only at end of file) or -errno. NULL: -ENOSYS. */
	int (*read)(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, char *buf, size_t size, off_t off);

	/* Write size bytes at off. Returns the count written or -errno.
	 * With O_APPEND opens the kernel passes the end as off. -EFBIG past
	 * the source's largest file. NULL: -ENOSYS. */
	int (*write)(const struct vd_ctx *ctx, vd_node_t node,
		     struct vd_file *fi, const char *buf, size_t size,
		     off_t off);

	/* Called on each close(2) of a descriptor; an error is what close(2)
	 * returns. NULL: the kernel stops sending flushes, which saves a
	 * round trip per close. */
	int (*flush)(const struct vd_ctx *ctx, vd_node_t node,
		     struct vd_file *fi);

	/* Last close of an open: free what open stored in fi->fh. The return
	 * value is ignored. NULL: nothing. */
	int (*release)(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi);

	/* Make data (datasync) or data and metadata durable. NULL: 0. */
	int (*fsync)(const struct vd_ctx *ctx, vd_node_t node, int datasync,
		     struct vd_file *fi);

	/* NULL: success with fh 0. */
	int (*opendir)(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi);

	/* List entries from offset off (0: from the start, including "."
	 * and ".."), calling fill until it returns 1 or the folder ends.
	 * NULL: -ENOSYS. */
	int (*readdir)(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, off_t off, vd_fill_fn fill,
		       void *buf);

	/* Last close of an opened folder. The return value is ignored.
	 * NULL: nothing. */
	int (*releasedir)(const struct vd_ctx *ctx, vd_node_t node,
			  struct vd_file *fi);

	/* NULL: 0. */
	int (*fsyncdir)(const struct vd_ctx *ctx, vd_node_t node, int datasync,
			struct vd_file *fi);

	/* NULL: a zeroed statvfs with f_namemax 255, f_bsize 4096. */
	int (*statfs)(const struct vd_ctx *ctx, vd_node_t node,
		      struct statvfs *st);

	/* Extended attributes; flags are XATTR_CREATE / XATTR_REPLACE.
	 * NULL: -EOPNOTSUPP. */
	int (*setxattr)(const struct vd_ctx *ctx, vd_node_t node,
			const char *name, const char *value, size_t size,
			int flags);

	/* size 0: return the value's size. Otherwise copy it and return its
	 * size, or -ERANGE if it does not fit; -ENODATA if absent.
	 * NULL: -EOPNOTSUPP. */
	int (*getxattr)(const struct vd_ctx *ctx, vd_node_t node,
			const char *name, char *value, size_t size);

	/* NUL-separated names; size rules as getxattr. NULL: an empty list
	 * (no attributes), not an error. */
	int (*listxattr)(const struct vd_ctx *ctx, vd_node_t node, char *list,
			 size_t size);

	/* -ENODATA if absent. NULL: -EOPNOTSUPP. */
	int (*removexattr)(const struct vd_ctx *ctx, vd_node_t node,
			   const char *name);

	/* Create and open a regular file (mode has S_IFREG; the umask: see
	 * above): fill *node, st and fi as open does. NULL: mknod then open;
	 * without mknod either: -ENOSYS. */
	int (*create)(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, mode_t mode, struct vd_file *fi,
		      vd_node_t *node, struct stat *st);

	/* mode is a FALLOC_FL_* combination (0, KEEP_SIZE, PUNCH_HOLE,
	 * ZERO_RANGE). NULL: -EOPNOTSUPP (posix_fallocate then writes). */
	int (*fallocate)(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, int mode, off_t off, off_t len);

	/* Copy len bytes between two open files; returns the count copied.
	 * NULL: -ENOSYS, and the kernel falls back to read and write. */
	int64_t (*copy_file_range)(const struct vd_ctx *ctx, vd_node_t in,
				   struct vd_file *fi_in, off_t off_in,
				   vd_node_t out, struct vd_file *fi_out,
				   off_t off_out, size_t len, int flags);

	/* SEEK_DATA / SEEK_HOLE; returns the new offset, -ENXIO past the
	 * end. NULL: -ENOSYS, and the kernel treats the whole file as data. */
	int64_t (*lseek)(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, off_t off, int whence);

	/*
	 * Create an unnamed file in parent (O_TMPFILE); it gets a name only
	 * through link(). Fill *node, st and fi as create does. Used when
	 * the FUSE library underneath supports it (libfuse >= 3.17). NULL:
	 * -EOPNOTSUPP, which open(O_TMPFILE) then fails with.
	 */
	int (*tmpfile)(const struct vd_ctx *ctx, vd_node_t parent, mode_t mode,
		       struct vd_file *fi, vd_node_t *node, struct stat *st);

	/* Room for members added later without changing the size. */
	void (*reserved[8])(void);
};

/*
 * Create a drive served by ops with private data. Nothing is mounted yet.
 * op_size is sizeof(struct vd_ops) as the caller was compiled. The drive
 * copies the table (ops need not outlive the call; later changes to it
 * are not seen); members past op_size read as NULL, and a table larger
 * than this library knows is accepted with a warning on stderr (its newer
 * members are never called). It calls ops->destroy(data) from
 * vd_drive_free(). Returns 0, -EINVAL (ops NULL or op_size 0), -ENOMEM.
 */
int vd_drive_new(const struct vd_ops *ops, size_t op_size, void *data,
		 struct vd_drive **out);

/*
 * Set drive options from a comma-separated list (as mount -o takes):
 *   ro, allow_other, default_permissions (on by default;
 *   "default_permissions=no" or "no_perm_check" turns the kernel's POSIX
 *   permission and ACL checks off and leaves them to the source: only for
 *   a source that checks ctx itself. The built-in sources check nothing,
 *   so on them every caller could then read, change and chown anything),
 *   entry_timeout=SEC, attr_timeout=SEC, negative_timeout=SEC,
 *   kernel_cache (keep page cache across opens), direct_io,
 *   writeback_cache, max_io=BYTES (up to 1 MiB), readdirplus=yes|no|auto,
 *   threads=N (worker threads), fsname=NAME, subtype=NAME,
 *   passthrough=yes|no (use backing_fd where the kernel allows),
 *   io_uring=yes|no|auto (FUSE over io_uring: requests are served on a
 *   thread pinned to the caller's CPU, which saves a cross-CPU wakeup per
 *   request; needs libfuse >= 3.18 and the fuse module's enable_uring=Y,
 *   "yes" fails the mount without them; "auto", the default, uses it for
 *   VD_OPS_QUICK sources when both are there),
 *   isolate (admit callers from this mount namespace only, as
 *   vd_drive_allow(d, 0): for a drive a privileged container mounts),
 *   shareable (through vdrived: mount so that the drive can later be
 *   shared with vd_drive_share_remote(); vdrived then answers its gate,
 *   one question per caller pid and second),
 *   cache=yes|no|DIR (VD_OPS_CACHE sources: the body cache, on by default
 *   where the kernel allows passthrough; DIR, an absolute path, is its
 *   folder, default $VDRIVE_CACHE_DIR/NAME, or /var/cache/vdrive/NAME
 *   for root, else $XDG_CACHE_HOME/vdrive/NAME), cache_size=BYTES (with
 *   K/M/G/T; the limit, default a quarter of the folder's file system, at
 *   most 8G), cache_fill_max=BYTES (larger files are not cached; 1G),
 *   and mount(8)'s per-mount flags suid, nosuid, dev, nodev, exec, noexec,
 *   async, sync, dirsync, noatime, nodiratime, nostrictatime, symfollow,
 *   nosymfollow (on vd_drive_mount() only, the last of a pair wins; the
 *   default is nosuid,nodev; vd_drive_mount_ns() always mounts
 *   nosuid,nodev).
 * Returns 0; -EINVAL, with a message from vd_drive_error(), on a bad
 * option (options before it in the list have taken effect); -EBUSY once
 * mounted (only before mounting); -ENOMEM.
 */
int vd_drive_set_options(struct vd_drive *d, const char *opts);

/*
 * The message for the last failure of vd_drive_set_options, _mount,
 * _mount_ns, _attach, _detach, _share_remote or _unshare_remote on d.
 * Each of those clears it first, so it is "" after one succeeds, and
 * never left over from an earlier failure. Valid until the next such
 * call; "" for d NULL. Not every failure has a message: check the result.
 */
const char *vd_drive_error(const struct vd_drive *d);

/*
 * Mount the drive at mountpoint (an existing folder, or "/dev/fd/N" for
 * an already-open /dev/fuse descriptor that someone else mounted).
 * Does not serve yet: call vd_drive_serve() or vd_drive_start().
 * Without a usable /dev/fuse (an unprivileged container) and with the
 * host daemon's socket present ($VDRIVE_SOCKET, default
 * /run/vdrive/vdrived.sock), vdrived mounts it in this process's mount
 * namespace and hands back the connection; the drive then admits callers
 * from this namespace only.
 * Returns 0; -EINVAL; -EBUSY (already mounted); the mount point's error
 * (-ENOENT, -ENOTDIR, -EACCES) or /dev/fuse's; -EOPNOTSUPP (io_uring=yes
 * without FUSE over io_uring); -EPERM when the kernel refused the mount,
 * whatever the reason (libfuse does not say which); through vdrived, the
 * errno vdrived answered (-EBUSY, -ENOSPC, ...); vd_drive_error() says
 * which step failed.
 */
int vd_drive_mount(struct vd_drive *d, const char *mountpoint);

/*
 * Mount the drive at path (absolute) inside another mount namespace,
 * given as an open descriptor of a namespace file (/proc/PID/ns/mnt),
 * creating path there when missing; it is served from this process. The
 * mount carries nosuid,nodev and shows in that namespace's mount table
 * only. The drive then admits only callers in that namespace (see
 * vd_drive_allow()). Unmounting (vd_drive_stop/free) removes it there.
 * Needs CAP_SYS_ADMIN over that namespace. Returns 0; -EINVAL (path not
 * absolute, mntns_fd < 0); -EBUSY (already mounted); -ENOSPC (see
 * vd_drive_allow); the errno of opening /dev/fuse, of entering the
 * namespace or of mount(2) there (-EPERM, -ETIMEDOUT when that step hung
 * for 10 s); then as vd_drive_mount(). vd_drive_error() says which.
 */
int vd_drive_mount_ns(struct vd_drive *d, const char *path, int mntns_fd);

/*
 * Admit callers whose mount namespace has inode number mntns_ino (as in
 * stat /proc/PID/ns/mnt; 0: this process's own). The first call turns the
 * gate on: from then on lookups, opens, creates and other name-based
 * requests from any other namespace, or from a caller not visible in this
 * process's pid namespace, fail with EACCES. May be called before or
 * after mounting, from any thread. Returns 0, -EINVAL (d NULL), -ENOENT
 * (no such namespace), or -ENOSPC (16 namespaces already admitted).
 * docs/containers.md says exactly what the gate covers.
 */
int vd_drive_allow(struct vd_drive *d, uint64_t mntns_ino);

/* Flags for vd_drive_admit() and vd_drive_attach(). */
#define VD_ADMIT_READONLY 0x1u /* changes from there fail with EROFS */

/*
 * vd_drive_allow() with flags: VD_ADMIT_READONLY admits the namespace for
 * reading only (creates, writes, renames, removals, setattr and xattr
 * changes from it fail with EROFS). Admitting an admitted namespace again
 * replaces its flags. -EINVAL for unknown flags.
 */
int vd_drive_admit(struct vd_drive *d, uint64_t mntns_ino, unsigned int flags);

/*
 * Stop admitting a namespace: verdicts cached for it are dropped at once.
 * Descriptors its processes already opened keep working (the gate checks
 * names and opens, not open files). -ENOENT if it was not admitted,
 * -EINVAL for d NULL or mntns_ino 0.
 */
int vd_drive_revoke(struct vd_drive *d, uint64_t mntns_ino);

/*
 * Ask fn about callers the admitted namespaces do not cover: it gets the
 * caller's pid (as this process sees it) and mount namespace inode (0 if
 * unknown) and returns VD_ADMIT_* flags (>= 0) to admit it, or a negative
 * errno to refuse (EACCES is answered). Verdicts are cached per pid for a
 * second. fn runs on a serving thread: it must not call back into the
 * drive's mount. Turns the gate on; fn NULL removes the hook. Setting
 * or removing it drops every cached verdict. Returns 0, or -EINVAL for d
 * NULL.
 */
int vd_drive_set_gate_hook(struct vd_drive *d,
			   int (*fn)(void *arg, pid_t pid, uint64_t mntns_ino),
			   void *arg);

/*
 * Share the mounted drive: attach the same live mount (same connection,
 * same data, no copy) at path inside the mount namespace mntns_fd (an
 * open /proc/PID/ns/mnt; this process's own namespace is fine too),
 * creating path there when missing, and admit that namespace
 * (vd_drive_admit() with flags; VD_ADMIT_READONLY also makes that mount
 * read-only, so writes there fail with EROFS while the owner still
 * writes). A drive without a gate gets one with its first share into
 * another namespace (its own namespace and its shares); when its last
 * share is detached it is open again to all but the namespaces it was
 * shared with. The mount carries nosuid,nodev. The drive keeps a descriptor
 * of the namespace until vd_drive_detach() or unmount (which detaches
 * every share): detach when the target goes away, or its namespace
 * outlives it. Needs CAP_SYS_ADMIN. Returns 0, -EINVAL (bad path, not
 * mounted), -EEXIST (already attached there), -ENOSPC (too many shares), or the
 * kernel's error, with a message from vd_drive_error().
 */
int vd_drive_attach(struct vd_drive *d, const char *path, int mntns_fd,
		    unsigned int flags);

/*
 * Undo vd_drive_attach(): detach the mount at path (NULL: every share)
 * in namespace mntns_ino, and revoke that namespace once no share is left
 * there. -ENOENT if there is no such share.
 */
int vd_drive_detach(struct vd_drive *d, const char *path, uint64_t mntns_ino);

/*
 * For a drive mounted through vdrived (inside an unprivileged container):
 * true. Such a drive is shared with vd_drive_share_remote().
 */
int vd_drive_via_daemon(const struct vd_drive *d);

/*
 * Ask vdrived to attach this drive elsewhere: target "host", or "pid:N"
 * for the container of host pid N. vdrived picks the place, its share
 * folder /NAME there (name: letters, digits, '-', '_', '.'), copied to
 * where; its policy says which targets a container may use (default: the
 * host, and containers whose process runs as the same host uid), and a
 * container never shares with itself. Needs a drive mounted with the
 * option "shareable" (its gate is then answered by vdrived, which can
 * place any caller). Returns 0, -EPERM (policy, or not shareable),
 * -EEXIST, -ESRCH (no such target), -ENOSPC, with vd_drive_error() set.
 */
int vd_drive_share_remote(struct vd_drive *d, const char *target,
			  const char *name, unsigned int flags, char *where,
			  size_t n);

/* Undo vd_drive_share_remote(); -ENOENT if there is no such share. */
int vd_drive_unshare_remote(struct vd_drive *d, const char *target,
			    const char *name);

/* One share, as vd_drive_shares() reports it. */
struct vd_share {
	char path[4096];
	uint64_t mntns_ino;
	unsigned int flags;
};

/* Copy up to n shares into out; returns how many there are in all, or
 * -EINVAL (d NULL, n < 0, out NULL with n > 0). */
int vd_drive_shares(struct vd_drive *d, struct vd_share *out, int n);

/*
 * Stop and unmount the drive when process pid ends (a container's init),
 * leaving the serving loop to return. After mounting. Returns 0, -EINVAL
 * (not mounted, pid <= 0), -EBUSY (already watching one), or the errno of
 * pidfd_open(2) (-ESRCH: pid is gone), pipe or thread creation.
 */
int vd_drive_watch_pid(struct vd_drive *d, pid_t pid);

/*
 * Serve requests until the drive is unmounted or vd_drive_stop() is
 * called. With handle_signals, SIGINT, SIGTERM and SIGHUP stop it too.
 * Unmounts before returning. Returns 0 (also when a signal ended it),
 * -EINVAL (not mounted), -EIO (signal handlers), -ENOMEM, or the serving
 * loop's error.
 */
int vd_drive_serve(struct vd_drive *d, int handle_signals);

/* Serve in a background thread; vd_drive_stop() ends it. Returns 0,
 * -EINVAL (not mounted), -EBUSY (already started), or thread creation's
 * errno. */
int vd_drive_start(struct vd_drive *d);

/* Stop serving and unmount. Safe to call from any thread but a serving
 * one (it waits for them). Returns 0, or -EINVAL when not mounted. */
int vd_drive_stop(struct vd_drive *d);

/* Unmount if mounted, call ops->destroy and free. Accepts NULL. */
void vd_drive_free(struct vd_drive *d);

/* The mount point given to vd_drive_mount(), or NULL. */
const char *vd_drive_mountpoint(const struct vd_drive *d);

/*
 * Tell the kernel that what it cached about node is stale: its attributes
 * and the data in [off, off+len) (len 0: to the end; off < 0: attributes
 * only). -ENOENT if the kernel holds no reference to node (nothing to do);
 * -EINVAL when not mounted; else libfuse's answer (-ENOSYS: the kernel
 * has no such notification).
 *
 * Re-entrancy (this and vd_drive_invalidate_entry): the kernel may wait
 * for a request in flight on the same inode or folder before it takes the
 * notification, so calling these from a callback handling a related
 * request (about node, or a name in parent), or while holding a lock such
 * a callback needs, can deadlock. Call them from a thread of the source's
 * own (records: does, from its poller) and outside its locks.
 */
int vd_drive_invalidate_node(struct vd_drive *d, vd_node_t node, off_t off,
			     off_t len);

/* Tell the kernel that the name in parent changed (added, removed, or
 * now names another node). Errors as vd_drive_invalidate_node (-EINVAL
 * also for name NULL); see the re-entrancy rule there. */
int vd_drive_invalidate_entry(struct vd_drive *d, vd_node_t parent,
			      const char *name);

/* A printf-style log line on stderr, prefixed with the drive's name. */
void vd_log(const struct vd_drive *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif /* VDRIVE_H */
