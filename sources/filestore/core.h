/*
 * core.h - the file store shared by the SQL back ends (sqlite:,
 * postgres:): nodes, names, chunks, extended attributes and the POSIX
 * rules live in core.c; a back end brings its connection, its SQL text
 * for each statement, and how it opens, commits and syncs.
 *
 * Statements are reached through a small cursor interface (bind, step,
 * read columns, reset) that each back end implements over its client
 * library, so the core never sees sqlite3 or libpq. Parameters are
 * numbered from 1 as in SQLite's ?N; the back end's SQL uses its own
 * spelling ($N for PostgreSQL).
 */
#ifndef VD_FILESTORE_CORE_H
#define VD_FILESTORE_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "vdrive.h"

#define FS_FORMAT_SQLITE "vdrive-sqlite"
#define FS_NAME_MAX 255
#define FS_SLOTS 4 /* chunks kept in memory for small writes */
#define FS_SQLAR_MAX                                                           \
	(1 << 20) /* files whose content the sqlar table copies                \
		   */
#define FS_OPEN_BUCKETS 256
#define FS_NS 1000000000LL

/* The statements of the store, made once per connection. */
enum {
	S_BEGIN,
	S_COMMIT,
	S_GET,
	S_LOOKUP,
	S_PUT,
	S_NEW,
	S_TARGET,
	S_ADDNAME,
	S_DELNAME,
	S_MOVE,
	S_RETARGET,
	S_HASCHILD,
	S_LIST,
	S_DROPINODE,
	S_DROPCHUNKS,
	S_SUMCHUNKS,
	S_DROPXATTRS,
	S_CHUNKS,
	S_CHUNKROWS,
	S_CHUNKLEN,
	S_PUTCHUNK,
	S_ALLOCCHUNK,
	S_NEXTCHUNK,
	S_GETX,
	S_PUTX,
	S_DELX,
	S_LISTX,
	S_ORPHANS,
	S_FREELIST,
	S_PATH,
	S_PATHS,
	S_NAMES,
	S_SQLARPUT,
	S_SQLARDEL,
	S_SQLARMOVE,
	S_SQLARTREE,
	S_COUNT
};

/* fs_step() results; errors are -errno. */
#define FS_DONE 0
#define FS_ROW 1

struct fs;
struct fs_stmt;
struct fs_attr;

/* A back end's cursor functions (one table per back end). */
struct fs_stmt_ops {
	void (*bind_int)(struct fs_stmt *q, int i, int64_t v);
	/* text and blobs must stay valid until the statement is reset */
	void (*bind_text)(struct fs_stmt *q, int i, const char *v);
	void (*bind_blob)(struct fs_stmt *q, int i, const void *v, int64_t n);
	void (*bind_null)(struct fs_stmt *q, int i);
	int (*step)(struct fs_stmt *q); /* FS_ROW, FS_DONE or -errno */
	void (*reset)(struct fs_stmt *q);
	int64_t (*col_int)(struct fs_stmt *q, int c);
	const char *(*col_text)(struct fs_stmt *q, int c);
	const void *(*col_blob)(struct fs_stmt *q, int c);
	int64_t (*col_bytes)(struct fs_stmt *q, int c);
	bool (*col_null)(struct fs_stmt *q, int c);
	int64_t (*changes)(struct fs_stmt *q); /* rows the last run changed */
};

/* Every back end's statement starts with this. */
struct fs_stmt {
	const struct fs_stmt_ops *ops;
};

/*
 * What a back end does differently. Called with s->lock held. Optional
 * members may be NULL.
 */
struct fs_backend {
	const char *kind; /* "sqlite", "postgres": for messages */
	/* Transactions span many callbacks, committed on fsync, when idle
	 * or after a second (SQLite, one writer); else each callback is one
	 * transaction, committed before it returns (PostgreSQL, shared). */
	bool batch;
	bool notify; /* collect changed inodes and names for ->commit */
	/* write: the callback may change the store */
	int (*begin)(struct fs *s, bool write);
	int (*commit)(struct fs *s);
	void (*rollback)(struct fs *s); /* after a failed callback */
	int (*sync)(struct fs *s);	/* after a commit, for fsync */
	int (*make_room)(struct fs *s, uint64_t bytes);
	/* n bytes at off of the chunk in row rowid (S_CHUNKROWS); NULL:
	 * read chunks through S_CHUNKS */
	int (*blob_read)(struct fs *s, int64_t rowid, char *dst, int n,
			 int off);
	int (*statfs)(struct fs *s, struct statvfs *st);
	/* Mirrors kept in step (SQLite's sqlar table, sqlar.c): before the
	 * dentry of name in parent is deleted; before or after a rename
	 * (the parents' paths are the same either way); before each commit;
	 * and the bytes a write up to end adds to the transaction. */
	int (*name_gone)(struct fs *s, uint64_t parent, const char *name);
	int (*renaming)(struct fs *s, uint64_t parent, const char *name,
			uint64_t newparent, const char *newname, bool dir,
			bool exists, bool exchange, bool dstdir);
	int (*precommit)(struct fs *s);
	int64_t (*write_extra)(struct fs *s, const struct fs_attr *a,
			       int64_t end, int64_t bytes);
	void (*close)(struct fs *s); /* commit left, connections closed */
};

/* The attributes of one inode row. Times are nanoseconds since 1970. */
struct fs_attr {
	uint64_t ino;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	int64_t nlink;
	int64_t size;
	int64_t used; /* bytes stored in chunks */
	int64_t atime, mtime, ctime;
	uint64_t rdev;
	uint64_t parent; /* folders only: the folder holding it */
};

/*
 * A chunk held in memory while small writes patch it, so that appending
 * 4 KiB at a time does not rewrite a 128 KiB blob per write. Stored
 * (flushed) before anything else reads chunks of that file through SQL,
 * and before every commit.
 */
struct fs_slot {
	uint64_t ino; /* 0: unused */
	int64_t idx;
	int64_t len;   /* bytes of the chunk; 'used' already counts them */
	bool dirty;    /* differs from the row */
	uint64_t tick; /* last use, for eviction */
	char *buf;     /* cs bytes */
};

/* A node that is open: it outlives its last name until released. */
struct fs_open {
	uint64_t ino;
	unsigned int opens;
	bool forgotten; /* the kernel forgot it while it was open */
	struct fs_open *next;
};

/* A name that changed in this transaction (for other mounts). */
struct fs_name {
	uint64_t parent;
	char *name;
};

struct fs {
	const struct fs_backend *be;
	void *priv; /* the back end's connection state */
	struct fs_stmt *stmt[S_COUNT];
	char *path; /* for messages: the file, or the redacted conninfo */
	int64_t cs; /* chunk size */
	char *buf;  /* one chunk, for read-modify-write */
	struct fs_slot slot[FS_SLOTS];
	uint64_t tick;
	struct vd_drive *drive; /* learned from the first callback */

	pthread_mutex_t lock; /* everything below, and the connection */
	pthread_cond_t wake;
	bool in_txn;
	int64_t txn_start, last_op; /* monotonic ms */
	uint64_t txn_bytes;
	struct fs_open *open[FS_OPEN_BUCKETS];
	/* Inodes changed since the last commit (kept in order of change;
	 * sorted and deduplicated then): their sqlar rows are refreshed, or
	 * other mounts are told. */
	uint64_t *dirty;
	size_t ndirty, dirty_cap;
	struct fs_name *names; /* with be->notify: names changed */
	size_t nnames, names_cap;
	uint64_t dir_ino; /* during that refresh: the last folder's path */
	char *dir_path;
};

static inline void fs_bind_int(struct fs_stmt *q, int i, int64_t v)
{
	q->ops->bind_int(q, i, v);
}
static inline void fs_bind_text(struct fs_stmt *q, int i, const char *v)
{
	q->ops->bind_text(q, i, v);
}
static inline void fs_bind_blob(struct fs_stmt *q, int i, const void *v,
				int64_t n)
{
	q->ops->bind_blob(q, i, v, n);
}
static inline void fs_bind_null(struct fs_stmt *q, int i)
{
	q->ops->bind_null(q, i);
}
static inline int fs_step(struct fs_stmt *q)
{
	return q->ops->step(q);
}
static inline void fs_reset(struct fs_stmt *q)
{
	q->ops->reset(q);
}
static inline int64_t fs_col_int(struct fs_stmt *q, int c)
{
	return q->ops->col_int(q, c);
}
static inline const char *fs_col_text(struct fs_stmt *q, int c)
{
	return q->ops->col_text(q, c);
}
static inline const void *fs_col_blob(struct fs_stmt *q, int c)
{
	return q->ops->col_blob(q, c);
}
static inline int64_t fs_col_bytes(struct fs_stmt *q, int c)
{
	return q->ops->col_bytes(q, c);
}
static inline bool fs_col_null(struct fs_stmt *q, int c)
{
	return q->ops->col_null(q, c);
}
static inline int64_t fs_changes(struct fs_stmt *q)
{
	return q->ops->changes(q);
}

/* A new store around back end be (lock and buffers set up later). */
int fs_new(const struct fs_backend *be, struct fs **out);
/* Allocate the chunk buffers once s->cs is known. */
int fs_alloc_buffers(struct fs *s);
/* Close the back end and free everything; accepts NULL. */
void fs_free(struct fs *s);

/* Commit the open transaction (slots, sqlar rows first); lock held. */
int fs_commit(struct fs *s);
/* The back end found its transaction rolled back: forget what the
 * core holds for it. */
void fs_lost_txn(struct fs *s);
/* Delete inodes without names (left by a crash), in one transaction. */
int fs_collect_orphans(struct fs *s);

/* Helpers for the back ends' hooks (lock held, in the transaction). */
int fs_run(struct fs *s, struct fs_stmt *q); /* step, no rows, reset */
struct fs_stmt *fs_q_ino(struct fs *s, int id, uint64_t ino); /* ?1 = ino */
int fs_get_attr(struct fs *s, uint64_t ino, struct fs_attr *a);
/* [off, off+size) of a's content (slots stored first); bytes or -errno */
int fs_read_content(struct fs *s, const struct fs_attr *a, char *buf,
		    size_t size, off_t off);
/* a symlink's target, cut to size - 1 bytes and NUL-terminated */
int fs_readlink_into(struct fs *s, vd_node_t node, char *buf, size_t size);

/* Milliseconds on the monotonic clock. */
int64_t fs_mono_ms(void);
/* Nanoseconds since 1970, now. */
int64_t fs_now_ns(void);

/* The callbacks, for a back end's struct vd_ops (data is a struct fs). */
#define FS_OPS_CALLBACKS                                                       \
	.destroy = fs_destroy, .lookup = fs_lookup, .forget = fs_forget,       \
	.getattr = fs_getattr, .setattr = fs_setattr, .readlink = fs_readlink, \
	.mknod = fs_mknod, .mkdir = fs_mkdir, .unlink = fs_unlink,             \
	.rmdir = fs_rmdir, .symlink = fs_symlink, .rename = fs_rename,         \
	.link = fs_link, .open = fs_open_file, .read = fs_read,                \
	.write = fs_write, .release = fs_release, .fsync = fs_fsync,           \
	.opendir = fs_opendir, .readdir = fs_readdir, .fsyncdir = fs_fsyncdir, \
	.statfs = fs_statfs, .setxattr = fs_setxattr, .getxattr = fs_getxattr, \
	.listxattr = fs_listxattr, .removexattr = fs_removexattr,              \
	.create = fs_create, .fallocate = fs_fallocate, .lseek = fs_lseek,     \
	.copy_file_range = fs_copy_file_range, .tmpfile = fs_tmpfile

void fs_destroy(void *data);
int fs_lookup(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	      vd_node_t *node, struct stat *st);
void fs_forget(void *data, vd_node_t node);
int fs_getattr(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
	       struct stat *st);
int fs_setattr(const struct vd_ctx *ctx, vd_node_t node, struct stat *st,
	       int to_set, struct vd_file *fi);
int fs_readlink(const struct vd_ctx *ctx, vd_node_t node, char *buf,
		size_t size);
int fs_mknod(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	     mode_t mode, dev_t rdev, vd_node_t *node, struct stat *st);
int fs_mkdir(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	     mode_t mode, vd_node_t *node, struct stat *st);
int fs_unlink(const struct vd_ctx *ctx, vd_node_t parent, const char *name);
int fs_rmdir(const struct vd_ctx *ctx, vd_node_t parent, const char *name);
int fs_symlink(const struct vd_ctx *ctx, const char *target, vd_node_t parent,
	       const char *name, vd_node_t *node, struct stat *st);
int fs_rename(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	      vd_node_t newparent, const char *newname, unsigned int flags);
int fs_link(const struct vd_ctx *ctx, vd_node_t node, vd_node_t newparent,
	    const char *newname, struct stat *st);
int fs_open_file(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi);
int fs_read(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
	    char *buf, size_t size, off_t off);
int fs_write(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
	     const char *buf, size_t size, off_t off);
int fs_release(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi);
int fs_fsync(const struct vd_ctx *ctx, vd_node_t node, int datasync,
	     struct vd_file *fi);
int fs_opendir(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi);
int fs_readdir(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
	       off_t off, vd_fill_fn fill, void *buf);
int fs_fsyncdir(const struct vd_ctx *ctx, vd_node_t node, int datasync,
		struct vd_file *fi);
int fs_statfs(const struct vd_ctx *ctx, vd_node_t node, struct statvfs *st);
int fs_setxattr(const struct vd_ctx *ctx, vd_node_t node, const char *name,
		const char *value, size_t size, int flags);
int fs_getxattr(const struct vd_ctx *ctx, vd_node_t node, const char *name,
		char *value, size_t size);
int fs_listxattr(const struct vd_ctx *ctx, vd_node_t node, char *list,
		 size_t size);
int fs_removexattr(const struct vd_ctx *ctx, vd_node_t node, const char *name);
int fs_create(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	      mode_t mode, struct vd_file *fi, vd_node_t *node,
	      struct stat *st);
int fs_fallocate(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
		 int mode, off_t off, off_t len);
int64_t fs_lseek(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
		 off_t off, int whence);
int64_t fs_copy_file_range(const struct vd_ctx *ctx, vd_node_t in,
			   struct vd_file *fi_in, off_t off_in, vd_node_t out,
			   struct vd_file *fi_out, off_t off_out, size_t len,
			   int flags);
int fs_tmpfile(const struct vd_ctx *ctx, vd_node_t parent, mode_t mode,
	       struct vd_file *fi, vd_node_t *node, struct stat *st);

#endif
