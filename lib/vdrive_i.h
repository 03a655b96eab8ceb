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

	/* ns.c: mounted in another namespace or through vdrived; the gate */
	bool ns_mounted;    /* ns_fd/ns_path are valid */
	int ns_fd;	    /* the target mount namespace */
	char *ns_path;	    /* the mount point inside it */
	bool via_daemon;    /* daemon_fd is valid */
	int daemon_fd;	    /* connection to vdrived; closing it unmounts */
	bool daemon_io;	    /* mounting through vdrived: clones come from it */
	bool daemon_clones; /* ... and this libfuse lets them (custom io) */
	bool gate;	    /* admit only callers in allowed[] namespaces */
	size_t nallowed;
	uint64_t allowed[VD_MAX_ALLOWED];
	pthread_mutex_t gate_lock;
	dev_t gate_dev; /* our superblock, for callers we cannot inspect */
	struct vd_gate_ent {
		pid_t pid;
		bool ok;
		uint64_t expires;
	} gate_cache[VD_GATE_CACHE];
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

/* ns.c */
int vd_gate_check(struct vd_drive *d, fuse_req_t req);
void vd_ns_unmount(struct vd_drive *d);
/* drive.c */
void vd_unmount_once(struct vd_drive *d);
void vd_ns_free(struct vd_drive *d);
bool vd_ns_daemon_available(void);
int vd_ns_mount_via_daemon(struct vd_drive *d, const char *mountpoint);
int vd_ns_session_mount(struct vd_drive *d, const char *mountpoint);
bool vd_ns_can_clone(const struct vd_drive *d);

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

void vd_set_error(struct vd_drive *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
