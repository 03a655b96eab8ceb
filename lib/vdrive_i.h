/*
 * vdrive_i.h - libvdrive internals. Nothing outside lib/ includes this.
 */
#ifndef VDRIVE_I_H
#define VDRIVE_I_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>

#include "vdrive.h"

/*
 * One kernel inode. The kernel's nodeid is the entry's address (root:
 * FUSE_ROOT_ID), so mapping a request to its entry costs nothing; the
 * hash maps a source node back to its entry for dedup and invalidation.
 */
struct vd_entry {
	vd_node_t node;
	uint64_t nlookup;
	struct vd_entry *hnext;
#ifdef FUSE_CAP_PASSTHROUGH
	/* Kernel passthrough: the backing id all opens of this inode share
	 * (0: none yet). Under the node table's lock. */
	int backing_id;
	/* The cache (cache.c): opens of this inode now (io_opens), all in
	 * one mode (io_mode: passthrough or FUSE-cached, as the kernel
	 * refuses a mix); had_pt: some open was served by passthrough, so
	 * FUSE-cached pages may be stale. Under the node table's lock. */
	unsigned int io_opens;
	unsigned char io_mode;
	bool had_pt;
#endif
};

struct vd_nodes {
	pthread_mutex_t lock;
	struct vd_entry **buckets;
	size_t nbuckets;
	size_t count;
	struct vd_entry root;
};

#define VD_MAX_ALLOWED 16
#define VD_GATE_CACHE 64

struct vd_drive {
	struct vd_ops ops; /* copied, zero-padded to the current size */
	void *data;
	struct fuse_session *se;
	char *mountpoint;
	char *fsname;
	char *subtype;
	char *mntflags; /* ",noexec,noatime...": mount(8)'s per-mount flags */
	char err[256];

	struct vd_nodes nodes;
	/* Lookups hold it shared, forgets exclusive: a source never sees a
	 * forget for a node that a lookup in flight is handing back. */
	pthread_rwlock_t forget_lock;
	/* Taken around every callback when the source is not thread-safe. */
	pthread_mutex_t serial;
	bool serialize;

	/* options */
	double entry_timeout, attr_timeout, negative_timeout;
	bool ro, allow_other, default_permissions, kernel_cache, direct_io;
	bool writeback_cache, passthrough;
	int cache_opt; /* cache=: 0 no, 1 yes, 2 auto (VD_OPS_CACHE) */
	char *cache_dir;
	uint64_t cache_size, cache_fill_max;
	int readdirplus; /* 0 no, 1 yes, 2 auto */
	unsigned int max_io;
	unsigned int threads;
	/* FUSE over io_uring: 0 no, 1 yes (required), 2 auto (VD_OPS_QUICK). */
	int io_uring;

	/* state */
	bool mounted;
	bool passthrough_ok;
	bool killpriv_v2;	/* HANDLE_KILLPRIV_V2 agreed with the kernel */
	struct vd_cache *cache; /* cache.c; NULL: no cache on this drive */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t state_lock;
	pthread_cond_t serve_cv; /* signalled when serving ends */
	bool serving;
	unsigned int conn_id; /* FUSE connection number (fusectl), 0: unknown */

	/* ns.c and daemon.c: mounted in another namespace or through
	 * vdrived; the gate */
	bool ns_mounted;    /* ns_fd/ns_path are valid */
	int ns_fd;	    /* the target mount namespace */
	char *ns_path;	    /* the mount point inside it */
	bool via_daemon;    /* daemon_fd is valid */
	int daemon_fd;	    /* connection to vdrived; closing it unmounts */
	bool daemon_io;	    /* mounting through vdrived: clones come from it */
	bool daemon_clones; /* ... and this libfuse lets them (custom io) */
	bool gate;	    /* admit only callers in allowed[] namespaces */
	/* Through vdrived, -o shareable: request pids are host pids, and
	 * the daemon (which sees the host) answers the gate for us. */
	bool shareable;
	bool gate_daemon;
	/* gate.c: admitted namespaces, the hook for the rest, and verdicts
	 * cached per pid; all under gate_lock (set up in vd_drive_new). */
	pthread_mutex_t gate_lock;
	size_t nallowed;
	struct vd_admit {
		uint64_t ino;
		unsigned int flags; /* VD_ADMIT_* */
	} allowed[VD_MAX_ALLOWED];
	size_t nreadonly; /* admitted read-only: setattr is checked too */
	/* Open mode: a host drive whose shares all ended admits everyone
	 * but the namespaces it was shared with and that were unshared. */
	bool gate_open;
	size_t ndenied;
	uint64_t denied[VD_MAX_ALLOWED];
	int (*gate_hook)(void *arg, pid_t pid, uint64_t mntns_ino);
	void *gate_hook_arg;
	uint64_t gate_gen; /* bumped on revoke: cached verdicts are stale */
	dev_t gate_dev;	   /* our superblock, for callers we cannot inspect */
	struct vd_gate_ent {
		pid_t pid;
		int verdict; /* -EACCES, or VD_ADMIT_* flags */
		pid_t local; /* gate_daemon: the pid as we see it, or 0 */
		uint64_t expires, gen;
	} gate_cache[VD_GATE_CACHE];
	/* share.c: the drive attached in other namespaces */
	pthread_mutex_t share_lock;
	uint64_t gate_by_share; /* own ns the first share admitted, gate off
				   before */
	struct vd_attach *attached;
	bool watching; /* watch_* are valid */
	int watch_pidfd, watch_pipe[2];
	pthread_t watch_thread;
};

/* Run one source call, serialised when the source asked for it. */
#define VD_CALL(d, expr)                                                       \
	({                                                                     \
		if ((d)->serialize)                                            \
			pthread_mutex_lock(&(d)->serial);                      \
		__typeof__(expr) r_ = (expr);                                  \
		if ((d)->serialize)                                            \
			pthread_mutex_unlock(&(d)->serial);                    \
		r_;                                                            \
	})

/* nodes.c */
int vd_nodes_init(struct vd_nodes *t);
void vd_nodes_fini(struct vd_nodes *t);
struct vd_entry *vd_nodes_get(struct vd_nodes *t, fuse_ino_t ino);
struct vd_entry *vd_nodes_ref(struct vd_nodes *t, vd_node_t node);
bool vd_nodes_unref(struct vd_nodes *t, struct vd_entry *e, uint64_t n);
fuse_ino_t vd_nodes_ino(struct vd_nodes *t, vd_node_t node);

/*
 * lib/ has one direction: drive.c (the drive's lifecycle) and ops.c (the
 * requests) on top; below them the gate, mounting in other namespaces,
 * shares and the vdrived client, which never call back up; log.c and
 * nodes.c at the bottom.
 */

/* gate.c: 0, -EACCES, or -EROFS for a write from a read-only share */
int vd_gate_check(struct vd_drive *d, fuse_req_t req, bool write);
uint64_t vd_ns_ino_of(const char *path);
bool vd_gate_admitted(struct vd_drive *d, uint64_t mntns_ino);
dev_t vd_own_mount_dev(const char *path);
pid_t vd_gate_local_pid(struct vd_drive *d, pid_t pid);
/* share.c */
void vd_share_detach_all(struct vd_drive *d);
/* ns.c: mount fuse's device at path in namespace mntns_fd (admitting
 * it), handing back the descriptor to serve: 0 or -errno (message set) */
int vd_ns_mount(struct vd_drive *d, const char *path, int mntns_fd,
		int *fuse_fd);
/* ... and unmount it there, once; called with state_lock held */
void vd_ns_unmount(struct vd_drive *d);
/* Unmount from everywhere (shares, here, the namespace, vdrived), once */
void vd_unmount_once(struct vd_drive *d);
/* Stop the watcher of vd_drive_watch_pid() */
void vd_ns_free(struct vd_drive *d);
/* daemon.c: the vdrived client */
bool vd_daemon_available(void);
/* Ask vdrived to mount at mountpoint (made absolute into path): 0 and
 * the FUSE descriptor to serve, with daemon_fd set; or -errno (message
 * set) */
int vd_daemon_mount(struct vd_drive *d, const char *mountpoint, char *path,
		    size_t n, int *fuse_fd);
/* Close the connection: vdrived unmounts */
void vd_daemon_close(struct vd_drive *d);
/* Unmount through vdrived, once; called with state_lock held */
void vd_daemon_unmount(struct vd_drive *d);
int vd_daemon_session_mount(struct vd_drive *d, const char *mountpoint);
bool vd_daemon_can_clone(const struct vd_drive *d);
/* Ask vdrived about a host pid for a shareable drive: VD_ADMIT_* flags
 * and the pid as the drive sees it, or -EACCES */
int vd_daemon_gate(struct vd_drive *d, pid_t pid, pid_t *local);

/* ops.c */
extern const struct fuse_lowlevel_ops vd_fuse_ops;
void vd_backing_close(struct vd_drive *d, int id);

/* cache.c: bodies of files in a local folder, served by passthrough. */
int vd_cache_setup(struct vd_drive *d);
void vd_cache_free(struct vd_drive *d);
void vd_cache_open(struct vd_drive *d, fuse_req_t req, const struct vd_ctx *c,
		   fuse_ino_t ino, vd_node_t node, const struct vd_file *vf,
		   struct fuse_file_info *fi, bool create);
void vd_cache_release(struct vd_drive *d, fuse_ino_t ino, vd_node_t node);
int vd_cache_sync(struct vd_drive *d, const struct vd_ctx *c, vd_node_t node,
		  bool sync);
bool vd_cache_has_pt(struct vd_drive *d, fuse_ino_t ino);
void vd_cache_set_size(struct vd_drive *d, vd_node_t node,
		       const struct stat *src);
enum { VD_CACHE_FALLOCATE, VD_CACHE_LSEEK };
int64_t vd_cache_fileop(struct vd_drive *d, vd_node_t node, int op, int mode,
			off_t off, off_t len);
void vd_cache_stale(struct vd_drive *d, vd_node_t node);
void vd_cache_fix_attr(struct vd_drive *d, vd_node_t node, struct stat *st);
void vd_cache_forget(struct vd_drive *d, vd_node_t node);

/* log.c: the message vd_drive_error() returns; the calls that may set
 * it clear it first, so it is never left over from an earlier failure */
void vd_set_error(struct vd_drive *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void vd_clear_error(struct vd_drive *d);

#endif
