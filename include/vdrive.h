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
 * Every member is optional. A NULL member answers as documented on it,
 * most often -ENOSYS (the kernel then stops asking, where it can) or
 * -EOPNOTSUPP.
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
 */
struct vd_ops {
	unsigned int flags; /* VD_OPS_* */

	/* The drive is being freed: release data. */
	void (*destroy)(void *data);

	/* Find name in folder parent. -ENOENT if absent. */
	int (*lookup)(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t *node, struct stat *st);

	/* The kernel holds no more references to node. NULL: nothing. */
	void (*forget)(void *data, vd_node_t node);

	/* fi is NULL unless the kernel asks through an open file. Required
	 * in practice: NULL answers -ENOSYS. */
	int (*getattr)(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, struct stat *st);

	/* Change the attributes named in to_set (VD_SET_*) to those in st;
	 * on success st holds the node's full new attributes. */
	int (*setattr)(const struct vd_ctx *ctx, vd_node_t node,
		       struct stat *st, int to_set, struct vd_file *fi);

	/* Copy the link target, NUL-terminated, into buf (size bytes). */
	int (*readlink)(const struct vd_ctx *ctx, vd_node_t node, char *buf,
			size_t size);

	/* Create a regular file, fifo, socket or device node. */
	int (*mknod)(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, dev_t rdev, vd_node_t *node,
		     struct stat *st);

	int (*mkdir)(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, vd_node_t *node,
		     struct stat *st);

	int (*unlink)(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name);

	/* -ENOTEMPTY if the folder has entries. */
	int (*rmdir)(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name);

	int (*symlink)(const struct vd_ctx *ctx, const char *target,
		       vd_node_t parent, const char *name, vd_node_t *node,
		       struct stat *st);

	/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE; -EINVAL for flags
	 * the source does not support. */
	int (*rename)(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t newparent,
		      const char *newname, unsigned int flags);

	/* Make newparent/newname a new name of node. NULL: -EPERM. */
	int (*link)(const struct vd_ctx *ctx, vd_node_t node,
		    vd_node_t newparent, const char *newname, struct stat *st);

	/* Open a file. NULL: success with fh 0. */
	int (*open)(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi);

	/* Read up to size bytes at off into buf. Returns the count read
	 * (short only at end of file) or -errno. */
	int (*read)(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, char *buf, size_t size, off_t off);

	/* Write size bytes at off. Returns the count written or -errno.
	 * With O_APPEND opens the kernel passes the end as off. */
	int (*write)(const struct vd_ctx *ctx, vd_node_t node,
		     struct vd_file *fi, const char *buf, size_t size,
		     off_t off);

	/* Called on each close(2) of a descriptor. NULL: the kernel stops
	 * sending flushes, which saves a round trip per close. */
	int (*flush)(const struct vd_ctx *ctx, vd_node_t node,
		     struct vd_file *fi);

	/* Last close of an open. The return value is ignored. */
	int (*release)(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi);

	/* Make data (datasync) or data and metadata durable. NULL: 0. */
	int (*fsync)(const struct vd_ctx *ctx, vd_node_t node, int datasync,
		     struct vd_file *fi);

	/* NULL: success with fh 0. */
	int (*opendir)(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi);

	/* List entries from offset off (0: from the start, including "."
	 * and ".."), calling fill until it returns 1 or the folder ends. */
	int (*readdir)(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, off_t off, vd_fill_fn fill,
		       void *buf);

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
	 * size, or -ERANGE if it does not fit; -ENODATA if absent. */
	int (*getxattr)(const struct vd_ctx *ctx, vd_node_t node,
			const char *name, char *value, size_t size);

	/* NUL-separated names; size rules as getxattr. */
	int (*listxattr)(const struct vd_ctx *ctx, vd_node_t node, char *list,
			 size_t size);

	int (*removexattr)(const struct vd_ctx *ctx, vd_node_t node,
			   const char *name);

	/* Create and open a regular file. NULL: mknod then open. */
	int (*create)(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, mode_t mode, struct vd_file *fi,
		      vd_node_t *node, struct stat *st);

	/* mode is a FALLOC_FL_* combination (0, KEEP_SIZE, PUNCH_HOLE,
	 * ZERO_RANGE). NULL: -EOPNOTSUPP (posix_fallocate then writes). */
	int (*fallocate)(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, int mode, off_t off, off_t len);

	/* Copy len bytes between two open files; returns the count copied.
	 * NULL: the kernel falls back to read and write. */
	int64_t (*copy_file_range)(const struct vd_ctx *ctx, vd_node_t in,
				   struct vd_file *fi_in, off_t off_in,
				   vd_node_t out, struct vd_file *fi_out,
				   off_t off_out, size_t len, int flags);

	/* SEEK_DATA / SEEK_HOLE; returns the new offset. NULL: the kernel
	 * treats the whole file as data. */
	int64_t (*lseek)(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, off_t off, int whence);

	/*
	 * Create an unnamed file in parent (O_TMPFILE); it gets a name only
	 * through link(). Used when the FUSE library underneath supports it.
	 */
	int (*tmpfile)(const struct vd_ctx *ctx, vd_node_t parent, mode_t mode,
		       struct vd_file *fi, vd_node_t *node, struct stat *st);

	/* Room for members added later without changing the size. */
	void (*reserved[8])(void);
};

/*
 * Create a drive served by ops with private data. Nothing is mounted yet.
 * op_size is sizeof(struct vd_ops) as the caller was compiled.
 * The drive does not own ops (keep it alive) but calls ops->destroy(data)
 * from vd_drive_free().
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
 *   cache=yes|no|DIR (VD_OPS_CACHE sources: the body cache, on by default
 *   where the kernel allows passthrough; DIR, an absolute path, is its
 *   folder, default $VDRIVE_CACHE_DIR/NAME, or /var/cache/vdrive/NAME
 *   for root, else $XDG_CACHE_HOME/vdrive/NAME), cache_size=BYTES (with
 *   K/M/G/T; the limit, default a quarter of the folder's file system, at
 *   most 8G), cache_fill_max=BYTES (larger files are not cached; 1G).
 * Returns -EINVAL, with a message from vd_drive_error(), on a bad option.
 * Only before mounting.
 */
int vd_drive_set_options(struct vd_drive *d, const char *opts);

/* The message for the last failure on d, or "" if none. */
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
 */
int vd_drive_mount(struct vd_drive *d, const char *mountpoint);

/*
 * Mount the drive at path (absolute) inside another mount namespace,
 * given as an open descriptor of a namespace file (/proc/PID/ns/mnt),
 * creating path there when missing; it is served from this process. The
 * mount carries nosuid,nodev and shows in that namespace's mount table
 * only. The drive then admits only callers in that namespace (see
 * vd_drive_allow()). Unmounting (vd_drive_stop/free) removes it there.
 */
int vd_drive_mount_ns(struct vd_drive *d, const char *path, int mntns_fd);

/*
 * Admit callers whose mount namespace has inode number mntns_ino (as in
 * stat /proc/PID/ns/mnt; 0: this process's own). The first call turns the
 * gate on: from then on lookups, opens, creates and other name-based
 * requests from any other namespace, or from a caller not visible in this
 * process's pid namespace, fail with EACCES. Before mounting.
 * docs/containers.md says exactly what the gate covers.
 */
int vd_drive_allow(struct vd_drive *d, uint64_t mntns_ino);

/*
 * Stop and unmount the drive when process pid ends (a container's init),
 * leaving the serving loop to return. After mounting.
 */
int vd_drive_watch_pid(struct vd_drive *d, pid_t pid);

/*
 * Serve requests until the drive is unmounted or vd_drive_stop() is
 * called. With handle_signals, SIGINT, SIGTERM and SIGHUP stop it too.
 * Unmounts before returning.
 */
int vd_drive_serve(struct vd_drive *d, int handle_signals);

/* Serve in a background thread; vd_drive_stop() ends it. */
int vd_drive_start(struct vd_drive *d);

/* Stop serving and unmount. Safe to call from any thread. */
int vd_drive_stop(struct vd_drive *d);

/* Unmount if mounted, call ops->destroy and free. Accepts NULL. */
void vd_drive_free(struct vd_drive *d);

/* The mount point given to vd_drive_mount(), or NULL. */
const char *vd_drive_mountpoint(const struct vd_drive *d);

/*
 * Tell the kernel that what it cached about node is stale: its attributes
 * and the data in [off, off+len) (len 0: to the end; off < 0: attributes
 * only). -ENOENT if the kernel holds no reference to node (nothing to do).
 */
int vd_drive_invalidate_node(struct vd_drive *d, vd_node_t node, off_t off,
			     off_t len);

/* Tell the kernel that the name in parent changed (added, removed, or
 * now names another node). */
int vd_drive_invalidate_entry(struct vd_drive *d, vd_node_t parent,
			      const char *name);

/* A printf-style log line on stderr, prefixed with the drive's name. */
void vd_log(const struct vd_drive *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif /* VDRIVE_H */
