/*
 * dir.h - dir:'s private parts, shared by its files (dir.c: the callbacks
 * and the source; nodes.c, listing.c, remote.c). Not a public interface.
 */
#ifndef VD_DIR_H
#define VD_DIR_H

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "sources.h"
#include "util/htab.h"

/* Cached O_PATH descriptors; the hard limit here is 20,000 and every open
 * file of a client costs one more. */
#define DIR_FD_CACHE 1024
#define DIR_MAX_MOUNTS 64
#define DIR_BUF 32768

/* A file handle with room for the largest one the kernel makes. */
union dir_fh {
	struct file_handle h;
	char bytes[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};

struct dnode {
	struct vd_hlink hl;	     /* in dir_src.nodes, by dev and ino */
	struct dnode *lprev, *lnext; /* in the LRU while fd >= 0 */
	dev_t dev;
	ino_t ino;
	int fd;	   /* cached O_PATH descriptor, or -1 */
	int pins;  /* calls using fd right now */
	int mnt;   /* index in dir_src.mounts */
	bool dead; /* forgotten while pinned: freed by the last unpin */
	bool link; /* a symbolic link */
	struct statx_timestamp btime; /* birth time; tv_sec -1: unknown */
	struct file_handle *fh;
};

struct dir_mount {
	int id; /* mount id from name_to_handle_at */
	int fd; /* any descriptor on that mount, for open_by_handle_at */
};

struct dir_src {
	pthread_mutex_t lock;
	struct dnode root;
	struct vd_htab nodes;
	struct dnode lru; /* sentinel: lnext is the most recently used */
	size_t nfds;
	struct dir_mount mounts[DIR_MAX_MOUNTS];
	int nmounts;
	gid_t *groups; /* the serving process's own groups, to restore */
	int ngroups;
	/* The file system gives no handles (overlayfs without nfs_export,
	 * FUSE), or we may not use them (not root): each node then keeps an
	 * O_PATH descriptor of its own for life, and the folder can hold only
	 * as many files in use as the descriptor limit allows. */
	bool nohandles;
	/* Read-ahead of listings: one thread reads a folder's next getdents64
	 * batch while the kernel digests the last reply (started on first
	 * use; a queue of handles under ra_lock). */
	pthread_mutex_t ra_lock;
	pthread_cond_t ra_cv;
	struct dir_handle *ra_head, **ra_tail;
	pthread_t ra_thread;
	bool ra_started, ra_stop;
};

/* An open folder: a real descriptor and what getdents64 gave. */
struct dir_handle {
	pthread_mutex_t lock;
	pthread_cond_t cv; /* ra_state changed */
	int fd;
	off_t next; /* offset of the entry at buf[pos] */
	size_t pos, len;
	char *buf;
	/* Read-ahead: while ra_state is RA_QUEUED or RA_BUSY the read-ahead
	 * thread owns fd's position and ra_buf; RA_DONE leaves ra_len bytes
	 * (or -errno) there for the next batch. */
	enum { RA_IDLE, RA_QUEUED, RA_BUSY, RA_DONE } ra_state;
	long ra_len;
	char *ra_buf;
	struct dir_handle *ra_next;
	char bufs[2][DIR_BUF];
};

struct linux_dirent64 {
	ino64_t d_ino;
	off64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* open_by_handle_at() refuses an O_PATH descriptor for the mount, so a
 * mount's root is opened for reading (without blocking on a fifo or
 * taking a terminal, should a file be mounted there). */
#define MOUNT_FD_FLAGS                                                         \
	(O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC)

#define SRC(ctx) ((struct dir_src *)(ctx)->data)

static inline struct dnode *N(struct dir_src *s, vd_node_t node)
{
	return node == VD_ROOT ? &s->root : (struct dnode *)(uintptr_t)node;
}

static inline vd_node_t ID(struct dir_src *s, struct dnode *n)
{
	return n == &s->root ? VD_ROOT : (vd_node_t)(uintptr_t)n;
}

/* nodes.c */
void dir_proc_path(char *buf, size_t len, int fd);
void dir_lru_unlink(struct dnode *n);
void dir_node_free(struct dnode *n);
int dir_pin(struct dir_src *s, struct dnode *n, int *fd);
void dir_unpin(struct dir_src *s, struct dnode *n);
int dir_node_at(struct dir_src *s, int dfd, const char *name,
		struct dnode **out, struct stat *st);

/* listing.c */
void dir_ra_queue(struct dir_src *s, struct dir_handle *h);
void dir_ra_wait(struct dir_handle *h);
long dir_next_batch(struct dir_handle *h);

/* remote.c */
bool dir_remote_fs(int fd);
bool dir_handles_work(struct dir_src *s);

#endif
