/*
 * core.c - the file store behind sqlite: and postgres:: a read-write
 * POSIX drive whose files, folders, links, owners, modes, times and
 * extended attributes live in SQL tables. Written only against vdrive.h;
 * what differs between databases is in the back ends (sqlite.c with its
 * sqlar mirror in sqlar.c, postgres.c) behind struct fs_backend (core.h).
 *
 * The schema is in docs/sqlite-schema.md and docs/postgres.md. In short: a node handle is the
 * inode's row id; file content is stored in fixed-size chunks (a missing
 * chunk is a hole); a folder's names are rows of dentries, unique per
 * folder. Every callback runs under s->lock inside a transaction: with a
 * batching back end (SQLite) one write transaction stays open across
 * callbacks and is committed on fsync, when the drive has been idle for a
 * moment, after a second or after enough bytes; otherwise (PostgreSQL)
 * each callback is one transaction, rolled back if the callback fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "core.h"

#define FS_COMMIT_MS 1000 /* commit a transaction at least this often */
#define FS_COMMIT_BYTES (64u << 20) /* or once this much was written */
#define FS_XATTR_MAX 65536

#define ATTR_NCOLS 12

/* Before storing more bytes: room for them (SQLite: on its disk)? */
static int make_room(struct fs *s, uint64_t bytes)
{
	return s->be->make_room ? s->be->make_room(s, bytes) : 0;
}

/* Nanoseconds since 1970, now. */
int64_t fs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * FS_NS + ts.tv_nsec;
}

/* Milliseconds on the monotonic clock, for commit deadlines. */
int64_t fs_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A timespec as nanoseconds since 1970. */
static int64_t ts_ns(const struct timespec *ts)
{
	return ts->tv_sec * FS_NS + ts->tv_nsec;
}

/* Nanoseconds since 1970 as a timespec (tv_nsec kept non-negative). */
static struct timespec ns_ts(int64_t ns)
{
	struct timespec ts = {ns / FS_NS, ns % FS_NS};

	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += FS_NS;
	}
	return ts;
}

/* Step a statement that returns no rows, and reset it. */
int fs_run(struct fs *s, struct fs_stmt *q)
{
	int rc = fs_step(q);

	(void)s;
	fs_reset(q);
	if (rc == FS_DONE || rc == FS_ROW)
		return 0;
	return rc;
}

/* A prepared statement with ino bound as ?1 (every statement's key). */
struct fs_stmt *fs_q_ino(struct fs *s, int id, uint64_t ino)
{
	struct fs_stmt *q = s->stmt[id];

	fs_bind_int(q, 1, (int64_t)ino);
	return q;
}

/* Read ATTR_COLS starting at column col into a. */
static void attr_row(struct fs_stmt *q, int col, struct fs_attr *a)
{
	a->ino = fs_col_int(q, col);
	a->mode = fs_col_int(q, col + 1);
	a->uid = fs_col_int(q, col + 2);
	a->gid = fs_col_int(q, col + 3);
	a->nlink = fs_col_int(q, col + 4);
	a->size = fs_col_int(q, col + 5);
	a->used = fs_col_int(q, col + 6);
	a->atime = fs_col_int(q, col + 7);
	a->mtime = fs_col_int(q, col + 8);
	a->ctime = fs_col_int(q, col + 9);
	a->rdev = fs_col_int(q, col + 10);
	a->parent = fs_col_int(q, col + 11);
}

/* Bind a's fields as ?2..?12 (the ino is ?1). */
static void attr_bind(struct fs_stmt *q, const struct fs_attr *a)
{
	fs_bind_int(q, 2, a->mode);
	fs_bind_int(q, 3, a->uid);
	fs_bind_int(q, 4, a->gid);
	fs_bind_int(q, 5, a->nlink);
	fs_bind_int(q, 6, a->size);
	fs_bind_int(q, 7, a->used);
	fs_bind_int(q, 8, a->atime);
	fs_bind_int(q, 9, a->mtime);
	fs_bind_int(q, 10, a->ctime);
	fs_bind_int(q, 11, (int64_t)a->rdev);
	fs_bind_int(q, 12, (int64_t)a->parent);
}

/* Load inode ino. -ENOENT if there is no such row. */
int fs_get_attr(struct fs *s, uint64_t ino, struct fs_attr *a)
{
	struct fs_stmt *q = fs_q_ino(s, S_GET, ino);
	int rc = fs_step(q);

	if (rc == FS_ROW)
		attr_row(q, 0, a);
	fs_reset(q);
	if (rc == FS_ROW)
		return 0;
	return rc == FS_DONE ? -ENOENT : rc;
}

/*
 * Note that ino's sqlar rows must be refreshed before the next commit.
 * Refreshing once per commit, not per change, keeps a file written 4 KiB
 * at a time from rewriting its sqlar copy on every write.
 */
static int mark_dirty(struct fs *s, uint64_t ino)
{
	if (s->ndirty && s->dirty[s->ndirty - 1] == ino)
		return 0;
	if (s->ndirty == s->dirty_cap) {
		size_t cap = s->dirty_cap * 2 + 64;
		uint64_t *p = realloc(s->dirty, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		s->dirty = p;
		s->dirty_cap = cap;
	}
	s->dirty[s->ndirty++] = ino;
	return 0;
}

/* Store a's attributes into its row (its sqlar rows follow at commit). */
static int put_attr(struct fs *s, const struct fs_attr *a)
{
	struct fs_stmt *q = fs_q_ino(s, S_PUT, a->ino);
	int r;

	attr_bind(q, a);
	r = fs_run(s, q);
	return r ? r : mark_dirty(s, a->ino);
}

/* Find name in folder parent: its inode and the dentry's row id. */
static int lookup_name(struct fs *s, uint64_t parent, const char *name,
		       struct fs_attr *a, int64_t *rowid)
{
	struct fs_stmt *q = fs_q_ino(s, S_LOOKUP, parent);
	int rc;

	fs_bind_text(q, 2, name);
	rc = fs_step(q);
	if (rc == FS_ROW) {
		attr_row(q, 0, a);
		if (rowid)
			*rowid = fs_col_int(q, ATTR_NCOLS);
	}
	fs_reset(q);
	if (rc == FS_ROW)
		return 0;
	return rc == FS_DONE ? -ENOENT : rc;
}

/* Load folder ino, failing as a path walk would if it is not one. */
static int get_dir(struct fs *s, uint64_t ino, struct fs_attr *a)
{
	int r = fs_get_attr(s, ino, a);

	if (r)
		return r;
	if (!S_ISDIR(a->mode))
		return -ENOTDIR;
	return a->nlink > 0 ? 0 : -ENOENT; /* removed while in use */
}

/* The struct stat the kernel sees for inode a. */
static void attr_stat(const struct fs *s, const struct fs_attr *a,
		      struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = a->size;
	st->st_blksize = s->cs;
	st->st_blocks = (a->used + 511) / 512;
	st->st_atim = ns_ts(a->atime);
	st->st_mtim = ns_ts(a->mtime);
	st->st_ctim = ns_ts(a->ctime);
}

static int slots_flush(struct fs *s, uint64_t ino);

/* The back end's mirrors follow a rename (sqlar.c). */
static int renaming(struct fs *s, uint64_t parent, const char *name,
		    uint64_t newparent, const char *newname, bool dir,
		    bool exists, bool exchange, bool dstdir)
{
	if (!s->be->renaming)
		return 0;
	return s->be->renaming(s, parent, name, newparent, newname, dir, exists,
			       exchange, dstdir);
}

/* Bytes a write up to end adds beyond its own (sqlar.c's copies). */
static int64_t write_extra(struct fs *s, const struct fs_attr *a, int64_t end,
			   int64_t bytes)
{
	return s->be->write_extra ? s->be->write_extra(s, a, end, bytes) : 0;
}

/* Forget the names noted for other mounts. */
static void names_clear(struct fs *s)
{
	for (size_t i = 0; i < s->nnames; i++)
		free(s->names[i].name);
	s->nnames = 0;
}

void fs_lost_txn(struct fs *s)
{
	s->in_txn = false;
	for (int i = 0; i < FS_SLOTS; i++)
		s->slot[i].ino = 0;
	s->ndirty = 0; /* the sqlar rows were rolled back too */
	names_clear(s);
}

/* Commit the open transaction, if any, storing the chunks held in
 * memory and refreshing the sqlar rows of changed inodes first, so a
 * commit never leaves the sqlar table behind. Called with s->lock held. */
int fs_commit(struct fs *s)
{
	int flushed, r;

	if (!s->in_txn)
		return 0;
	flushed = slots_flush(s, 0);
	r = s->be->precommit ? s->be->precommit(s) : 0;
	if (!flushed)
		flushed = r;
	if (!s->in_txn)
		return flushed; /* an error rolled everything back */
	if (flushed && !s->be->batch) {
		s->be->rollback(s);
		fs_lost_txn(s);
		return flushed;
	}
	r = s->be->commit(s);
	if (!s->be->batch) {
		/* Another mount may change the chunks before the next call. */
		for (int i = 0; i < FS_SLOTS; i++)
			s->slot[i].ino = 0;
	}
	if (r) {
		if (!s->be->batch) {
			s->be->rollback(s);
			fs_lost_txn(s);
		}
		return r;
	}
	s->in_txn = false;
	s->ndirty = 0;
	names_clear(s);
	return flushed;
}

/* Open a transaction, unless one is open. */
static int fs_begin(struct fs *s, bool write)
{
	int r;

	if (s->in_txn)
		return 0;
	r = s->be->begin(s, write);
	if (r)
		return r;
	s->in_txn = true;
	s->txn_start = fs_mono_ms();
	s->txn_bytes = 0;
	pthread_cond_signal(&s->wake);
	return 0;
}

/* Start a callback: take the lock and make sure a transaction is open. */
static int fs_enter(struct fs *s, bool write)
{
	int r;

	pthread_mutex_lock(&s->lock);
	s->last_op = fs_mono_ms();
	r = fs_begin(s, write);
	if (r)
		pthread_mutex_unlock(&s->lock);
	return r;
}

/*
 * End a callback. Batching: commit if the transaction is old or big.
 * Otherwise the callback is its own transaction: committed if it
 * succeeded (a failed commit fails the callback), else rolled back.
 */
static int64_t fs_leave(struct fs *s, int64_t r)
{
	if (!s->be->batch) {
		if (r < 0) {
			if (s->in_txn)
				s->be->rollback(s);
			fs_lost_txn(s);
		} else {
			int c = fs_commit(s);

			if (c)
				r = c;
		}
	} else if (s->in_txn && (fs_mono_ms() - s->txn_start >= FS_COMMIT_MS ||
				 s->txn_bytes >= FS_COMMIT_BYTES)) {
		fs_commit(s);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Run one callback body between fs_enter and fs_leave; FS_CALL may
 * change the store, FS_READ only reads it. */
#define FS_CALL_(s, write, expr)                                               \
	({                                                                     \
		struct fs *s_ = (s);                                           \
		int64_t r_ = fs_enter(s_, write);                              \
		if (r_ == 0)                                                   \
			r_ = fs_leave(s_, (expr));                             \
		r_;                                                            \
	})
#define FS_CALL(s, expr) FS_CALL_(s, true, expr)
#define FS_READ(s, expr) FS_CALL_(s, false, expr)

/* The store of a callback; remembers the drive for invalidations. */
static struct fs *fs_of(const struct vd_ctx *ctx)
{
	struct fs *s = ctx->data;

	if (ctx->drive && !__atomic_load_n(&s->drive, __ATOMIC_ACQUIRE))
		__atomic_store_n(&s->drive, ctx->drive, __ATOMIC_RELEASE);
	return s;
}

/* Note that name in parent changed, for other mounts. */
static int note_name(struct fs *s, uint64_t parent, const char *name)
{
	if (!s->be->notify)
		return 0;
	if (s->nnames == s->names_cap) {
		size_t cap = s->names_cap * 2 + 8;
		struct fs_name *p = realloc(s->names, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		s->names = p;
		s->names_cap = cap;
	}
	s->names[s->nnames].name = strdup(name);
	if (!s->names[s->nnames].name)
		return -ENOMEM;
	s->names[s->nnames++].parent = parent;
	return 0;
}

/* The open-count record of ino, or NULL (made when create is set). */
static struct fs_open *open_find(struct fs *s, uint64_t ino, bool create)
{
	struct fs_open **b = &s->open[ino % FS_OPEN_BUCKETS], *o;

	for (o = *b; o; o = o->next) {
		if (o->ino == ino)
			return o;
	}
	if (!create)
		return NULL;
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->ino = ino;
	o->next = *b;
	*b = o;
	return o;
}

/* Unlink an open-count record from its bucket and free it. */
static void open_free(struct fs *s, struct fs_open *o)
{
	struct fs_open **p = &s->open[o->ino % FS_OPEN_BUCKETS];

	while (*p != o)
		p = &(*p)->next;
	*p = o->next;
	free(o);
}

/* Delete inode ino with its content and extended attributes. */
static int drop_inode(struct fs *s, uint64_t ino)
{
	struct fs_stmt *q = fs_q_ino(s, S_DROPCHUNKS, ino);
	int r;

	for (int i = 0; i < FS_SLOTS; i++) {
		if (s->slot[i].ino == ino)
			s->slot[i].ino = 0;
	}
	fs_bind_int(q, 2, 0);
	fs_bind_int(q, 3, INT64_MAX);
	r = fs_run(s, q);
	if (!r)
		r = fs_run(s, fs_q_ino(s, S_DROPXATTRS, ino));
	if (!r)
		r = fs_run(s, fs_q_ino(s, S_DROPINODE, ino));
	return r;
}

/* Nothing uses ino any more: delete it if it has no name left either. */
static int reap(struct fs *s, uint64_t ino)
{
	struct fs_attr a;
	int r;

	if (ino == VD_ROOT)
		return 0;
	r = fs_get_attr(s, ino, &a);
	if (r)
		return r == -ENOENT ? 0 : r;
	return a.nlink == 0 ? drop_inode(s, ino) : 0;
}

/* Count one more open of ino. */
static int open_ref(struct fs *s, uint64_t ino)
{
	struct fs_open *o = open_find(s, ino, true);

	if (!o)
		return -ENOMEM;
	o->opens++;
	return 0;
}

/* Load chunk idx of ino into dst (cs bytes); returns its length (0: a
 * hole). */
static int64_t load_chunk_into(struct fs *s, uint64_t ino, int64_t idx,
			       char *dst)
{
	struct fs_stmt *q = fs_q_ino(s, S_CHUNKS, ino);
	int64_t len = 0;
	int rc;

	fs_bind_int(q, 2, idx);
	fs_bind_int(q, 3, idx);
	rc = fs_step(q);
	if (rc == FS_ROW) {
		len = fs_col_bytes(q, 1);
		if (len > s->cs)
			len = s->cs;
		if (len)
			memcpy(dst, fs_col_blob(q, 1), len);
	}
	fs_reset(q);
	if (rc != FS_ROW && rc != FS_DONE)
		return rc;
	return len;
}

/* load_chunk_into() the scratch buffer s->buf. */
static int64_t load_chunk(struct fs *s, uint64_t ino, int64_t idx)
{
	return load_chunk_into(s, ino, idx, s->buf);
}

/* The stored length of chunk idx of ino (0: a hole). */
static int64_t chunk_len(struct fs *s, uint64_t ino, int64_t idx)
{
	struct fs_stmt *q = fs_q_ino(s, S_CHUNKLEN, ino);
	int64_t len = 0;
	int rc;

	fs_bind_int(q, 2, idx);
	rc = fs_step(q);
	if (rc == FS_ROW)
		len = fs_col_int(q, 0);
	fs_reset(q);
	if (rc != FS_ROW && rc != FS_DONE)
		return rc;
	return len;
}

/* Store len bytes as chunk idx of ino (replacing what was there). */
static int put_chunk(struct fs *s, uint64_t ino, int64_t idx, const void *data,
		     int64_t len)
{
	struct fs_stmt *q = fs_q_ino(s, S_PUTCHUNK, ino);

	fs_bind_int(q, 2, idx);
	fs_bind_blob(q, 3, data, len);
	return fs_run(s, q);
}

/* Store a slot's chunk if it changed. */
static int slot_flush(struct fs *s, struct fs_slot *sl)
{
	int r;

	if (!sl->ino || !sl->dirty)
		return 0;
	r = put_chunk(s, sl->ino, sl->idx, sl->buf, sl->len);
	if (!r)
		sl->dirty = false;
	return r;
}

/* Store and forget every slot of ino (0: of every file). */
static int slots_flush(struct fs *s, uint64_t ino)
{
	int r = 0;

	for (int i = 0; i < FS_SLOTS; i++) {
		struct fs_slot *sl = &s->slot[i];

		if (!sl->ino || (ino && sl->ino != ino))
			continue;
		if (!r)
			r = slot_flush(s, sl);
		if (ino)
			sl->ino = 0;
	}
	return r;
}

/* The slot holding chunk idx of ino, or NULL. */
static struct fs_slot *slot_find(struct fs *s, uint64_t ino, int64_t idx)
{
	for (int i = 0; i < FS_SLOTS; i++) {
		if (s->slot[i].ino == ino && s->slot[i].idx == idx)
			return &s->slot[i];
	}
	return NULL;
}

/* Chunk idx of ino in a slot, loading it (and evicting another). */
static int slot_get(struct fs *s, uint64_t ino, int64_t idx,
		    struct fs_slot **out)
{
	struct fs_slot *sl = slot_find(s, ino, idx);
	int64_t len;
	int r;

	if (!sl) {
		sl = &s->slot[0];
		for (int i = 1; i < FS_SLOTS && sl->ino; i++) {
			if (!s->slot[i].ino || s->slot[i].tick < sl->tick)
				sl = &s->slot[i];
		}
		r = slot_flush(s, sl);
		if (r)
			return r;
		sl->ino = 0;
		len = load_chunk_into(s, ino, idx, sl->buf);
		if (len < 0)
			return (int)len;
		sl->ino = ino;
		sl->idx = idx;
		sl->len = len;
	}
	sl->tick = ++s->tick;
	*out = sl;
	return 0;
}

/* Delete chunks first..last of a; keeps a->used right. */
static int drop_chunks(struct fs *s, struct fs_attr *a, int64_t first,
		       int64_t last)
{
	struct fs_stmt *q = fs_q_ino(s, S_SUMCHUNKS, a->ino);
	int rc;

	if (first > last)
		return 0;
	fs_bind_int(q, 2, first);
	fs_bind_int(q, 3, last);
	rc = fs_step(q);
	if (rc == FS_ROW)
		a->used -= fs_col_int(q, 0);
	fs_reset(q);
	if (rc != FS_ROW)
		return rc;
	q = fs_q_ino(s, S_DROPCHUNKS, a->ino);
	fs_bind_int(q, 2, first);
	fs_bind_int(q, 3, last);
	return fs_run(s, q);
}

/* Cut a's content to size bytes (a->size is left to the caller). */
static int cut_content(struct fs *s, struct fs_attr *a, int64_t size)
{
	int64_t last, keep, len;
	int r;

	if (size >= a->size)
		return 0;
	if (size == 0)
		return drop_chunks(s, a, 0, INT64_MAX);
	last = (size - 1) / s->cs;
	keep = size - last * s->cs;
	r = drop_chunks(s, a, last + 1, INT64_MAX);
	if (r || keep == s->cs)
		return r;
	len = chunk_len(s, a->ino, last);
	if (len <= keep)
		return len < 0 ? (int)len : 0;
	/* Bytes past the new end must read as zeros if the file grows. */
	len = load_chunk(s, a->ino, last);
	if (len < 0)
		return (int)len;
	r = put_chunk(s, a->ino, last, s->buf, keep);
	if (!r)
		a->used -= len - keep;
	return r;
}

/* Make [off, off+len) of a read as zeros, dropping whole chunks. */
static int zero_range(struct fs *s, struct fs_attr *a, int64_t off, int64_t len)
{
	int64_t end = off + len, first, last, idx;
	int r = 0;

	if (end > a->size)
		end = a->size;
	if (off >= end)
		return 0;
	first = (off + s->cs - 1) / s->cs; /* first chunk wholly inside */
	last = end / s->cs - 1;		   /* last chunk wholly inside */
	if (first <= last)
		r = drop_chunks(s, a, first, last);
	/* The partly covered chunks at either edge. */
	for (idx = off / s->cs; !r && idx <= (end - 1) / s->cs; idx++) {
		int64_t base = idx * s->cs, from, to, n;

		if (idx >= first && idx <= last)
			continue;
		n = load_chunk(s, a->ino, idx);
		if (n < 0)
			return (int)n;
		from = off > base ? off - base : 0;
		to = end - base < n ? end - base : n;
		if (from >= to)
			continue;
		memset(s->buf + from, 0, to - from);
		r = put_chunk(s, a->ino, idx, s->buf, n);
	}
	return r;
}

/*
 * fallocate proper: store zeros in the holes of [off, off+len) so that
 * the space is really taken (and ENOSPC shows now, not on a later write).
 */
static int alloc_range(struct fs *s, struct fs_attr *a, int64_t off,
		       int64_t len)
{
	int64_t end = off + len;

	for (int64_t idx = off / s->cs; idx <= (end - 1) / s->cs; idx++) {
		int64_t n =
			end - idx * s->cs < s->cs ? end - idx * s->cs : s->cs;
		struct fs_stmt *q = fs_q_ino(s, S_ALLOCCHUNK, a->ino);
		int r;

		fs_bind_int(q, 2, idx);
		fs_bind_int(q, 3, n);
		r = fs_run(s, q);
		if (r)
			return r;
		if (fs_changes(q))
			a->used += n;
	}
	s->txn_bytes += len;
	return 0;
}

/* Is anc the folder dir or one of the folders above it? */
static int is_ancestor(struct fs *s, uint64_t anc, uint64_t dir)
{
	struct fs_attr a;
	int r;

	for (;;) {
		if (dir == anc)
			return 1;
		if (dir == VD_ROOT)
			return 0;
		r = fs_get_attr(s, dir, &a);
		if (r)
			return r;
		dir = a.parent;
	}
}

/* Is gid the caller's group or one of its supplementary groups? */
static bool in_group(const struct vd_ctx *ctx, gid_t gid)
{
	gid_t groups[64];
	int n;

	if (ctx->gid == gid)
		return true;
	n = vd_ctx_groups(ctx, groups, 64);
	for (int i = 0; i < n && i < 64; i++) {
		if (groups[i] == gid)
			return true;
	}
	return false;
}

/* Read xattr name of ino into a malloc'd buffer; -ENODATA if absent. */
static int get_xattr(struct fs *s, uint64_t ino, const char *name, void **val,
		     size_t *len)
{
	struct fs_stmt *q = fs_q_ino(s, S_GETX, ino);
	int rc;

	*val = NULL;
	fs_bind_text(q, 2, name);
	rc = fs_step(q);
	if (rc == FS_ROW) {
		*len = fs_col_bytes(q, 0);
		*val = malloc(*len + 1);
		if (*val && *len)
			memcpy(*val, fs_col_blob(q, 0), *len);
	}
	fs_reset(q);
	if (rc == FS_ROW)
		return *val ? 0 : -ENOMEM;
	return rc == FS_DONE ? -ENODATA : rc;
}

/* Set (create or replace) xattr name of ino. */
static int put_xattr(struct fs *s, uint64_t ino, const char *name,
		     const void *val, size_t len)
{
	struct fs_stmt *q = fs_q_ino(s, S_PUTX, ino);

	fs_bind_text(q, 2, name);
	fs_bind_blob(q, 3, len ? val : "", len);
	return fs_run(s, q);
}

/*
 * Make a new inode in folder parent (named name, or unnamed when name
 * is NULL: an O_TMPFILE file). Sets the owner the way the kernel would
 * (setgid folders pass on their group), and the permissions from the
 * folder's default ACL when it has one, or else from the caller's umask.
 */
static int make_node(const struct vd_ctx *ctx, uint64_t parent,
		     const char *name, mode_t mode, dev_t rdev,
		     const char *target, struct fs_attr *a)
{
	struct fs *s = ctx->data;
	struct fs_attr pa, old;
	void *dflt = NULL, *access = NULL;
	size_t dflt_len = 0, access_len = 0;
	struct fs_stmt *q;
	int r;

	if (name && strlen(name) > FS_NAME_MAX)
		return -ENAMETOOLONG;
	r = get_dir(s, parent, &pa);
	if (r)
		return r;
	if (name) {
		r = lookup_name(s, parent, name, &old, NULL);
		if (r != -ENOENT)
			return r ? r : -EEXIST;
	}
	memset(a, 0, sizeof(*a));
	a->uid = ctx->uid;
	a->gid = ctx->gid;
	if (pa.mode & S_ISGID) {
		a->gid = pa.gid;
		if (S_ISDIR(mode))
			mode |= S_ISGID;
		else if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) &&
			 ctx->uid != 0 && !in_group(ctx, a->gid))
			mode &= ~S_ISGID;
	}
	if (S_ISLNK(mode)) {
		mode = S_IFLNK | 0777;
	} else {
		r = get_xattr(s, parent, VD_ACL_DEFAULT, &dflt, &dflt_len);
		if (r == -ENODATA)
			mode &= ~(ctx->umask & 0777);
		else if (r == 0)
			r = vd_acl_inherit(dflt, dflt_len, &mode, &access,
					   &access_len);
		if (r && r != -ENODATA)
			goto out;
	}
	a->mode = mode;
	a->nlink = !name ? 0 : S_ISDIR(mode) ? 2 : 1;
	a->size = target ? (int64_t)strlen(target) : 0;
	a->atime = a->mtime = a->ctime = fs_now_ns();
	a->rdev = rdev;
	a->parent = S_ISDIR(mode) ? parent : 0;
	q = s->stmt[S_NEW];
	attr_bind(q, a);
	if (target)
		fs_bind_blob(q, 13, target, a->size);
	else
		fs_bind_null(q, 13);
	r = fs_step(q); /* the statement hands back the new row's ino */
	if (r == FS_ROW)
		a->ino = fs_col_int(q, 0);
	fs_reset(q);
	if (r != FS_ROW) {
		r = r < 0 ? r : -EIO;
		goto out;
	}
	r = mark_dirty(s, a->ino);
	if (!r && access)
		r = put_xattr(s, a->ino, VD_ACL_ACCESS, access, access_len);
	if (!r && dflt && S_ISDIR(mode))
		r = put_xattr(s, a->ino, VD_ACL_DEFAULT, dflt, dflt_len);
	if (r || !name)
		goto out;
	q = fs_q_ino(s, S_ADDNAME, parent);
	fs_bind_text(q, 2, name);
	fs_bind_int(q, 3, a->ino);
	r = fs_run(s, q);
	if (!r)
		r = note_name(s, parent, name);
	if (r)
		goto out;
	if (S_ISDIR(mode))
		pa.nlink++;
	pa.mtime = pa.ctime = a->ctime;
	r = put_attr(s, &pa);
out:
	free(dflt);
	free(access);
	return r;
}

/* lookup: name in folder parent, with its attributes. */
static int do_lookup(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, vd_node_t *node, struct stat *st)
{
	struct fs *s = ctx->data;
	struct fs_attr a;
	int r;

	if (strlen(name) > FS_NAME_MAX)
		return -ENAMETOOLONG;
	r = lookup_name(s, parent, name, &a, NULL);
	if (r)
		return r;
	*node = a.ino;
	attr_stat(s, &a, st);
	return 0;
}

/* vd_ops.lookup, under the lock, in the open transaction. */
int fs_lookup(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	      vd_node_t *node, struct stat *st)
{
	return FS_READ(fs_of(ctx), do_lookup(ctx, parent, name, node, st));
}

/* The kernel forgot node: delete it if it has no name and no opener. */
static int do_forget(struct fs *s, vd_node_t node)
{
	struct fs_open *o = open_find(s, node, false);

	if (o && o->opens > 0) {
		o->forgotten = true;
		return 0;
	}
	return reap(s, node);
}

/* vd_ops.forget, under the lock, in the open transaction. */
void fs_forget(void *data, vd_node_t node)
{
	/* Only deletes an inode no name leads to and no one here has open:
	 * safe without the drive's write lock. */
	(void)FS_READ((struct fs *)data, do_forget(data, node));
}

/* getattr: the inode row as a struct stat. */
static int do_getattr(const struct vd_ctx *ctx, vd_node_t node, struct stat *st)
{
	struct fs *s = ctx->data;
	struct fs_attr a;
	int r = fs_get_attr(s, node, &a);

	if (!r)
		attr_stat(s, &a, st);
	return r;
}

/* vd_ops.getattr, under the lock, in the open transaction. */
int fs_getattr(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
	       struct stat *st)
{
	(void)fi;
	return FS_READ(fs_of(ctx), do_getattr(ctx, node, st));
}

/* chmod: keep an access ACL in step with the new mode bits. */
static int chmod_acl(struct fs *s, uint64_t ino, mode_t mode)
{
	void *acl;
	size_t len;
	int r = get_xattr(s, ino, VD_ACL_ACCESS, &acl, &len);

	if (r)
		return r == -ENODATA ? 0 : r;
	r = vd_acl_chmod(acl, len, mode);
	if (!r)
		r = put_xattr(s, ino, VD_ACL_ACCESS, acl, len);
	free(acl);
	return r;
}

/*
 * setattr: truncation (chunks cut, slots stored first), mode (and the
 * access ACL with it), owner and times; ctime is now unless given.
 */
static int do_setattr(const struct vd_ctx *ctx, vd_node_t node, struct stat *st,
		      int to_set)
{
	struct fs *s = ctx->data;
	struct fs_attr a;
	int64_t now = fs_now_ns();
	int r = fs_get_attr(s, node, &a);

	if (r)
		return r;
	if (to_set & VD_SET_SIZE) {
		if (S_ISDIR(a.mode))
			return -EISDIR;
		if (!S_ISREG(a.mode))
			return -EINVAL;
		if (st->st_size < 0)
			return -EINVAL;
		r = slots_flush(s, node);
		if (!r)
			r = cut_content(s, &a, st->st_size);
		if (r)
			return r;
		a.size = st->st_size;
		a.mtime = now;
	}
	if (to_set & VD_SET_MODE) {
		a.mode = (a.mode & S_IFMT) | (st->st_mode & 07777);
		r = chmod_acl(s, a.ino, a.mode);
		if (r)
			return r;
	}
	if (to_set & VD_SET_UID)
		a.uid = st->st_uid;
	if (to_set & VD_SET_GID)
		a.gid = st->st_gid;
	if (to_set & VD_SET_ATIME)
		a.atime = ts_ns(&st->st_atim);
	if (to_set & VD_SET_MTIME)
		a.mtime = ts_ns(&st->st_mtim);
	a.ctime = (to_set & VD_SET_CTIME) ? ts_ns(&st->st_ctim) : now;
	r = put_attr(s, &a);
	if (!r)
		attr_stat(s, &a, st);
	return r;
}

/* vd_ops.setattr, under the lock, in the open transaction. */
int fs_setattr(const struct vd_ctx *ctx, vd_node_t node, struct stat *st,
	       int to_set, struct vd_file *fi)
{
	(void)fi;
	return FS_CALL(fs_of(ctx), do_setattr(ctx, node, st, to_set));
}

/* readlink: the target, cut to fit buf; -EINVAL if not a symlink. */
int fs_readlink_into(struct fs *s, vd_node_t node, char *buf, size_t size)
{
	struct fs_stmt *q = fs_q_ino(s, S_TARGET, node);
	int rc = fs_step(q);
	int r = 0;

	if (rc == FS_ROW && !fs_col_null(q, 0)) {
		size_t len = fs_col_bytes(q, 0);

		if (size == 0) {
			r = -ERANGE;
		} else {
			if (len > size - 1)
				len = size - 1;
			memcpy(buf, fs_col_blob(q, 0), len);
			buf[len] = '\0';
		}
	} else if (rc == FS_ROW) {
		r = -EINVAL;
	} else {
		r = rc == FS_DONE ? -ENOENT : rc;
	}
	fs_reset(q);
	return r;
}

/* vd_ops.readlink, under the lock, in the open transaction. */
int fs_readlink(const struct vd_ctx *ctx, vd_node_t node, char *buf,
		size_t size)
{
	return FS_READ(fs_of(ctx),
		       fs_readlink_into(ctx->data, node, buf, size));
}

/* mknod, mkdir and symlink: make the node and report it. */
static int do_new(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
		  mode_t mode, dev_t rdev, const char *target, vd_node_t *node,
		  struct stat *st)
{
	struct fs_attr a;
	int r = make_node(ctx, parent, name, mode, rdev, target, &a);

	if (r)
		return r;
	*node = a.ino;
	attr_stat(ctx->data, &a, st);
	return 0;
}

/* vd_ops.mknod, under the lock, in the open transaction. */
int fs_mknod(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	     mode_t mode, dev_t rdev, vd_node_t *node, struct stat *st)
{
	if (S_ISDIR(mode) || S_ISLNK(mode))
		return -EINVAL;
	if (!(mode & S_IFMT))
		mode |= S_IFREG;
	return FS_CALL(fs_of(ctx),
		       do_new(ctx, parent, name, mode, rdev, NULL, node, st));
}

/* vd_ops.mkdir, under the lock, in the open transaction. */
int fs_mkdir(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	     mode_t mode, vd_node_t *node, struct stat *st)
{
	mode = S_IFDIR | (mode & 07777);
	return FS_CALL(fs_of(ctx),
		       do_new(ctx, parent, name, mode, 0, NULL, node, st));
}

/* vd_ops.symlink, under the lock, in the open transaction. */
int fs_symlink(const struct vd_ctx *ctx, const char *target, vd_node_t parent,
	       const char *name, vd_node_t *node, struct stat *st)
{
	if (strlen(target) >= PATH_MAX)
		return -ENAMETOOLONG;
	return FS_CALL(fs_of(ctx), do_new(ctx, parent, name, S_IFLNK | 0777, 0,
					  target, node, st));
}

/*
 * Take name away from node a (found at dentry rowid in folder pa).
 * A folder loses its last link and its parent's ".." link; the inode
 * itself is deleted later, when nothing uses it (reap).
 */
static int drop_name(struct fs *s, struct fs_attr *pa, struct fs_attr *a,
		     int64_t rowid, int64_t now)
{
	int r = fs_run(s, fs_q_ino(s, S_DELNAME, rowid));

	if (r)
		return r;
	if (S_ISDIR(a->mode)) {
		a->nlink = 0;
		pa->nlink--;
	} else {
		a->nlink--;
	}
	a->ctime = now;
	return put_attr(s, a);
}

/* Does folder ino have any entry? 1, 0 or -errno. */
static int has_child(struct fs *s, uint64_t ino)
{
	struct fs_stmt *q = fs_q_ino(s, S_HASCHILD, ino);
	int rc = fs_step(q);

	fs_reset(q);
	if (rc == FS_ROW)
		return 1;
	return rc == FS_DONE ? 0 : rc;
}

/* unlink (dir false) and rmdir (dir true). */
static int do_remove(struct fs *s, vd_node_t parent, const char *name, bool dir)
{
	struct fs_attr pa, a;
	int64_t rowid, now = fs_now_ns();
	int r = get_dir(s, parent, &pa);

	if (!r)
		r = lookup_name(s, parent, name, &a, &rowid);
	if (r)
		return r;
	if (dir && !S_ISDIR(a.mode))
		return -ENOTDIR;
	if (!dir && S_ISDIR(a.mode))
		return -EISDIR;
	if (dir) {
		r = has_child(s, a.ino);
		if (r)
			return r > 0 ? -ENOTEMPTY : r;
	}
	r = s->be->name_gone ? s->be->name_gone(s, parent, name) : 0;
	if (!r)
		r = drop_name(s, &pa, &a, rowid, now);
	if (!r)
		r = note_name(s, parent, name);
	if (r)
		return r;
	pa.mtime = pa.ctime = now;
	return put_attr(s, &pa);
}

/* vd_ops.unlink, under the lock, in the open transaction. */
int fs_unlink(const struct vd_ctx *ctx, vd_node_t parent, const char *name)
{
	return FS_CALL(fs_of(ctx), do_remove(ctx->data, parent, name, false));
}

/* vd_ops.rmdir, under the lock, in the open transaction. */
int fs_rmdir(const struct vd_ctx *ctx, vd_node_t parent, const char *name)
{
	return FS_CALL(fs_of(ctx), do_remove(ctx->data, parent, name, true));
}

/* Point dentry rowid at inode ino (one half of RENAME_EXCHANGE). */
static int retarget(struct fs *s, int64_t rowid, uint64_t ino)
{
	struct fs_stmt *q = fs_q_ino(s, S_RETARGET, rowid);

	fs_bind_int(q, 2, ino);
	return fs_run(s, q);
}

/*
 * Swap two names (RENAME_EXCHANGE). Folders that change parent move
 * their ".." link along.
 */
static int exchange(struct fs *s, struct fs_attr *pa, struct fs_attr *npa,
		    struct fs_attr *sa, int64_t srow, struct fs_attr *da,
		    int64_t drow, int64_t now)
{
	int r = retarget(s, srow, da->ino);

	if (!r)
		r = retarget(s, drow, sa->ino);
	if (r)
		return r;
	if (pa != npa && S_ISDIR(sa->mode)) {
		sa->parent = npa->ino;
		pa->nlink--;
		npa->nlink++;
	}
	if (pa != npa && S_ISDIR(da->mode)) {
		da->parent = pa->ino;
		npa->nlink--;
		pa->nlink++;
	}
	sa->ctime = da->ctime = now;
	r = put_attr(s, sa);
	return r ? r : put_attr(s, da);
}

/*
 * rename with rename(2)'s rules, plus RENAME_NOREPLACE and
 * RENAME_EXCHANGE. A replaced name's inode loses a link and is deleted
 * later, when nothing uses it (reap).
 */
static int do_rename(struct fs *s, vd_node_t parent, const char *name,
		     vd_node_t newparent, const char *newname,
		     unsigned int flags)
{
	struct fs_attr pbuf, npbuf, sa, da;
	struct fs_attr *pa = &pbuf, *npa = parent == newparent ? pa : &npbuf;
	int64_t srow, drow, now = fs_now_ns();
	bool exists;
	int r;

	if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) ||
	    flags == (RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if (strlen(newname) > FS_NAME_MAX)
		return -ENAMETOOLONG;
	r = get_dir(s, parent, pa);
	if (!r && npa != pa)
		r = get_dir(s, newparent, npa);
	if (!r)
		r = lookup_name(s, parent, name, &sa, &srow);
	if (r)
		return r;
	r = lookup_name(s, newparent, newname, &da, &drow);
	if (r && r != -ENOENT)
		return r;
	exists = r == 0;
	r = 0;
	if ((flags & RENAME_EXCHANGE) && !exists)
		return -ENOENT;
	if ((flags & RENAME_NOREPLACE) && exists)
		return -EEXIST;
	if (exists && da.ino == sa.ino)
		return 0; /* two names of one file: nothing to do */
	if (S_ISDIR(sa.mode) && parent != newparent) {
		r = is_ancestor(s, sa.ino, newparent);
		if (r)
			return r > 0 ? -EINVAL : r;
	}
	if ((flags & RENAME_EXCHANGE) && S_ISDIR(da.mode) &&
	    parent != newparent) {
		r = is_ancestor(s, da.ino, parent);
		if (r)
			return r > 0 ? -EINVAL : r;
	}
	if (flags & RENAME_EXCHANGE) {
		r = exchange(s, pa, npa, &sa, srow, &da, drow, now);
		if (!r)
			r = renaming(s, parent, name, newparent, newname,
				     S_ISDIR(sa.mode), exists, true,
				     S_ISDIR(da.mode));
	} else {
		if (exists && S_ISDIR(sa.mode)) {
			if (!S_ISDIR(da.mode))
				return -ENOTDIR;
			r = has_child(s, da.ino);
			if (r)
				return r > 0 ? -ENOTEMPTY : r;
		} else if (exists && S_ISDIR(da.mode)) {
			return -EISDIR;
		}
		r = renaming(s, parent, name, newparent, newname,
			     S_ISDIR(sa.mode), exists, false, false);
		if (!r && exists)
			r = drop_name(s, npa, &da, drow, now);
		if (!r) {
			struct fs_stmt *q = fs_q_ino(s, S_MOVE, srow);

			fs_bind_int(q, 2, newparent);
			fs_bind_text(q, 3, newname);
			r = fs_run(s, q);
		}
		if (!r && S_ISDIR(sa.mode) && pa != npa) {
			sa.parent = newparent;
			pa->nlink--;
			npa->nlink++;
		}
		sa.ctime = now;
		if (!r)
			r = put_attr(s, &sa);
	}
	if (r)
		return r;
	r = note_name(s, parent, name);
	if (!r)
		r = note_name(s, newparent, newname);
	if (r)
		return r;
	pa->mtime = pa->ctime = npa->mtime = npa->ctime = now;
	r = put_attr(s, pa);
	if (!r && npa != pa)
		r = put_attr(s, npa);
	return r;
}

/* vd_ops.rename, under the lock, in the open transaction. */
int fs_rename(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	      vd_node_t newparent, const char *newname, unsigned int flags)
{
	return FS_CALL(fs_of(ctx), do_rename(ctx->data, parent, name, newparent,
					     newname, flags));
}

/* link: one more name for a file (also gives a tmpfile its first). */
static int do_link(struct fs *s, vd_node_t node, vd_node_t newparent,
		   const char *newname, struct stat *st)
{
	struct fs_attr a, pa, old;
	struct fs_stmt *q;
	int r;

	if (strlen(newname) > FS_NAME_MAX)
		return -ENAMETOOLONG;
	r = fs_get_attr(s, node, &a);
	if (!r && S_ISDIR(a.mode))
		r = -EPERM;
	if (!r)
		r = get_dir(s, newparent, &pa);
	if (r)
		return r;
	r = lookup_name(s, newparent, newname, &old, NULL);
	if (r != -ENOENT)
		return r ? r : -EEXIST;
	q = fs_q_ino(s, S_ADDNAME, newparent);
	fs_bind_text(q, 2, newname);
	fs_bind_int(q, 3, a.ino);
	r = fs_run(s, q);
	if (!r)
		r = note_name(s, newparent, newname);
	if (r)
		return r;
	a.nlink++;
	a.ctime = pa.mtime = pa.ctime = fs_now_ns();
	r = put_attr(s, &a);
	if (!r)
		r = put_attr(s, &pa);
	if (!r)
		attr_stat(s, &a, st);
	return r;
}

/* vd_ops.link, under the lock, in the open transaction. */
int fs_link(const struct vd_ctx *ctx, vd_node_t node, vd_node_t newparent,
	    const char *newname, struct stat *st)
{
	return FS_CALL(fs_of(ctx),
		       do_link(ctx->data, node, newparent, newname, st));
}

/* open: count the opener; O_TRUNC arrives here (atomic_o_trunc). */
static int do_open(struct fs *s, vd_node_t node, struct vd_file *fi)
{
	struct fs_attr a;
	int r = fs_get_attr(s, node, &a);

	if (r)
		return r;
	if ((fi->flags & O_TRUNC) && S_ISREG(a.mode) &&
	    (fi->flags & O_ACCMODE) != O_RDONLY && a.size > 0) {
		r = slots_flush(s, node);
		if (!r)
			r = cut_content(s, &a, 0);
		if (r)
			return r;
		a.size = 0;
		a.mtime = a.ctime = fs_now_ns();
		r = put_attr(s, &a);
		if (r)
			return r;
	}
	fi->fh = 0;
	return open_ref(s, node);
}

/* vd_ops.open, under the lock, in the open transaction. */
int fs_open_file(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi)
{
	return FS_CALL_(fs_of(ctx), (fi->flags & O_TRUNC) != 0,
			do_open(ctx->data, node, fi));
}

/* Copy [off, off+size) of a's content into buf; holes read as zeros. */
int fs_read_content(struct fs *s, const struct fs_attr *a, char *buf,
		    size_t size, off_t off)
{
	struct fs_stmt *q;
	int64_t end, done = off; /* buf is final up to done */
	int rc, r = 0;

	if (off >= a->size)
		return 0;
	if ((int64_t)size > a->size - off)
		size = a->size - off;
	if (size == 0)
		return 0;
	end = off + size;
	/* With blob_read: row ids and lengths, the bytes read in place;
	 * else the chunks themselves. */
	q = fs_q_ino(s, s->be->blob_read ? S_CHUNKROWS : S_CHUNKS, a->ino);
	fs_bind_int(q, 2, off / s->cs);
	fs_bind_int(q, 3, (end - 1) / s->cs);
	while (!r && (rc = fs_step(q)) == FS_ROW) {
		int64_t base = fs_col_int(q, 0) * s->cs;
		int64_t len = s->be->blob_read ? fs_col_int(q, 2)
					       : fs_col_bytes(q, 1);
		int64_t from = off > base ? off - base : 0;
		int64_t to = end - base < len ? end - base : len;
		char *dst = buf + (base + from - off);

		if (from >= to)
			continue;
		if (base + from > done)
			memset(buf + (done - off), 0, base + from - done);
		if (s->be->blob_read)
			r = s->be->blob_read(s, fs_col_int(q, 1), dst,
					     (int)(to - from), (int)from);
		else
			memcpy(dst, (const char *)fs_col_blob(q, 1) + from,
			       to - from);
		done = base + to;
	}
	fs_reset(q);
	if (r)
		return r;
	if (rc != FS_DONE && rc != FS_ROW)
		return rc;
	if (done < end)
		memset(buf + (done - off), 0, end - done);
	return (int)size;
}

/* read: store the file's slots first, then read its chunks. */
static int do_read(struct fs *s, vd_node_t node, char *buf, size_t size,
		   off_t off)
{
	struct fs_attr a;
	int r = fs_get_attr(s, node, &a);

	if (r)
		return r;
	if (S_ISDIR(a.mode))
		return -EISDIR;
	r = slots_flush(s, node);
	return r ? r : fs_read_content(s, &a, buf, size, off);
}

/* vd_ops.read, under the lock, in the open transaction. */
int fs_read(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
	    char *buf, size_t size, off_t off)
{
	(void)fi;
	return FS_READ(fs_of(ctx), do_read(ctx->data, node, buf, size, off));
}

/*
 * Write size bytes at off into a's chunks (a->size and a->used follow).
 * A chunk the write covers from its start to its end, or to the end of
 * the file, is stored as given; others are read, patched and stored.
 */
static int write_content(struct fs *s, struct fs_attr *a, const char *buf,
			 size_t size, off_t off)
{
	int64_t pos = off, end = off + size;

	while (pos < end) {
		int64_t idx = pos / s->cs, coff = pos % s->cs;
		int64_t n = s->cs - coff < end - pos ? s->cs - coff : end - pos;
		const char *src = buf + (pos - off);
		int64_t old, len;
		int r;

		if (coff == 0 && (n == s->cs || pos + n >= a->size)) {
			struct fs_slot *sl = slot_find(s, a->ino, idx);

			if (sl) {
				old = sl->len; /* superseded: drop it */
				sl->ino = 0;
			} else {
				old = chunk_len(s, a->ino, idx);
				if (old < 0)
					return (int)old;
			}
			len = n;
			r = put_chunk(s, a->ino, idx, src, n);
		} else {
			struct fs_slot *sl = NULL;

			r = slot_get(s, a->ino, idx, &sl);
			if (r)
				return r;
			old = sl->len;
			len = old > coff + n ? old : coff + n;
			if (coff > old)
				memset(sl->buf + old, 0, coff - old);
			memcpy(sl->buf + coff, src, n);
			sl->len = len;
			sl->dirty = true;
		}
		if (r)
			return r;
		a->used += len - old;
		pos += n;
	}
	if (end > a->size)
		a->size = end;
	return 0;
}

/*
 * write. kill_priv: the writer may not keep set-id bits (not root); the
 * kernel clears them itself except on direct_io writes, so do it here as
 * ext4 would: set-user-ID always, set-group-ID when group-executable.
 */
static int do_write(struct fs *s, vd_node_t node, const char *buf, size_t size,
		    off_t off, bool kill_priv)
{
	struct fs_attr a;
	int64_t twice;
	int r;

	if (off < 0 || (int64_t)size > INT64_MAX - off)
		return -EFBIG;
	r = fs_get_attr(s, node, &a);
	if (r)
		return r;
	if (size == 0)
		return 0;
	twice = write_extra(s, &a, off + size, size);
	r = make_room(s, size + twice);
	if (r)
		return r;
	r = write_content(s, &a, buf, size, off);
	if (r)
		return r;
	a.mtime = a.ctime = fs_now_ns();
	if (kill_priv) {
		a.mode &= ~(mode_t)S_ISUID;
		if (a.mode & S_IXGRP)
			a.mode &= ~(mode_t)S_ISGID;
	}
	r = put_attr(s, &a);
	if (r)
		return r;
	s->txn_bytes += size + twice;
	return (int)size;
}

/* vd_ops.write, under the lock, in the open transaction. */
int fs_write(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
	     const char *buf, size_t size, off_t off)
{
	return FS_CALL(fs_of(ctx), do_write(ctx->data, node, buf, size, off,
					    ctx->uid != 0 && !fi->writepage));
}

#define FS_COPY_MAX (16 << 20) /* bytes per copy_file_range call */

/*
 * copy_file_range: copy inside the drive, so the data never crosses into
 * the kernel and back. At most FS_COPY_MAX bytes per call (callers loop).
 */
static int64_t do_copy(struct fs *s, vd_node_t in, off_t off_in, vd_node_t out,
		       off_t off_out, size_t len, int flags)
{
	struct fs_attr ain, aout, *src = &ain, *dst = in == out ? &ain : &aout;
	int64_t done = 0, n, twice;
	char *buf;
	int r;

	if (flags)
		return -EINVAL;
	if (off_in < 0 || off_out < 0)
		return -EINVAL;
	r = fs_get_attr(s, in, src);
	if (!r && dst != src)
		r = fs_get_attr(s, out, dst);
	if (r)
		return r;
	if (!S_ISREG(src->mode) || !S_ISREG(dst->mode))
		return -EINVAL;
	if (off_in >= src->size)
		return 0;
	if (len > (size_t)(src->size - off_in))
		len = src->size - off_in;
	if (len > FS_COPY_MAX)
		len = FS_COPY_MAX;
	if ((int64_t)len > INT64_MAX - off_out)
		return -EFBIG;
	if (in == out && off_in < off_out + (off_t)len &&
	    off_out < off_in + (off_t)len)
		return -EINVAL; /* overlapping ranges of one file */
	twice = write_extra(s, dst, off_out + len, len);
	r = make_room(s, len + twice);
	if (r)
		return r;
	buf = malloc(s->cs);
	if (!buf)
		return -ENOMEM;
	while (done < (int64_t)len) {
		n = (int64_t)len - done < s->cs ? (int64_t)len - done : s->cs;
		/* Within one file, the last piece written may be in a slot. */
		r = slots_flush(s, in);
		if (!r)
			r = fs_read_content(s, src, buf, n, off_in + done);
		if (r > 0)
			r = write_content(s, dst, buf, r, off_out + done);
		if (r)
			break;
		done += n;
	}
	free(buf);
	if (r && !done)
		return r;
	dst->mtime = dst->ctime = fs_now_ns();
	r = put_attr(s, dst);
	if (r)
		return r;
	s->txn_bytes += done + twice;
	return done;
}

/* vd_ops.copy_file_range, under the lock, in the open transaction. */
int64_t fs_copy_file_range(const struct vd_ctx *ctx, vd_node_t in,
			   struct vd_file *fi_in, off_t off_in, vd_node_t out,
			   struct vd_file *fi_out, off_t off_out, size_t len,
			   int flags)
{
	(void)fi_in, (void)fi_out;
	return FS_CALL(fs_of(ctx), do_copy(ctx->data, in, off_in, out, off_out,
					   len, flags));
}

/* Last close: delete the node if the kernel forgot it while open. */
static int do_release(struct fs *s, vd_node_t node)
{
	struct fs_open *o = open_find(s, node, false);
	bool forgotten;

	if (!o || --o->opens > 0)
		return 0;
	forgotten = o->forgotten;
	open_free(s, o);
	return forgotten ? reap(s, node) : 0;
}

/* vd_ops.release, under the lock, in the open transaction. */
int fs_release(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi)
{
	(void)fi;
	/* As forget: at most deletes an inode nothing leads to. */
	return FS_READ(fs_of(ctx), do_release(ctx->data, node));
}

/*
 * fsync and fsyncdir: commit, then make every commit so far durable
 * (the back end's sync: SQLite syncs its WAL file).
 */
static int do_sync(struct fs *s)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = fs_commit(s);
	if (!r && s->be->sync)
		r = s->be->sync(s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* vd_ops.fsync: commit everything (see do_sync). */
int fs_fsync(const struct vd_ctx *ctx, vd_node_t node, int datasync,
	     struct vd_file *fi)
{
	(void)node, (void)datasync, (void)fi;
	return do_sync(ctx->data);
}

/*
 * List a folder. Offsets: 0 is ".", 1 is "..", and an entry's offset is
 * its dentry row id + 2, so a listing resumes in the right place even if
 * entries were added or removed in between.
 */
static int do_readdir(struct fs *s, vd_node_t node, off_t off, vd_fill_fn fill,
		      void *buf)
{
	struct fs_attr a;
	struct stat st;
	struct fs_stmt *q;
	int rc, r = fs_get_attr(s, node, &a);

	if (r)
		return r;
	if (!S_ISDIR(a.mode))
		return -ENOTDIR;
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFDIR;
	if (off < 1) {
		st.st_ino = node;
		if (fill(buf, ".", 0, &st, 1))
			return 0;
	}
	if (off < 2) {
		st.st_ino = node == VD_ROOT ? VD_ROOT : a.parent;
		if (fill(buf, "..", 0, &st, 2))
			return 0;
	}
	q = fs_q_ino(s, S_LIST, node);
	fs_bind_int(q, 2, off < 2 ? 0 : off - 2);
	while ((rc = fs_step(q)) == FS_ROW) {
		int64_t rowid = fs_col_int(q, 0);
		const char *name = fs_col_text(q, 1);

		attr_row(q, 2, &a);
		attr_stat(s, &a, &st);
		if (fill(buf, name, a.ino, &st, rowid + 2))
			break;
	}
	fs_reset(q);
	if (rc != FS_DONE && rc != FS_ROW)
		return rc;
	return 0;
}

/*
 * vd_ops.opendir: let the kernel keep listings across opens. Every
 * change comes through the drive, and the kernel drops a folder's cached
 * listing when the folder changes.
 */
int fs_opendir(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi)
{
	(void)ctx, (void)node;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	return 0;
}

/* vd_ops.readdir, under the lock, in the open transaction. */
int fs_readdir(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
	       off_t off, vd_fill_fn fill, void *buf)
{
	(void)fi;
	return FS_READ(fs_of(ctx), do_readdir(ctx->data, node, off, fill, buf));
}

/* vd_ops.fsyncdir: commit everything (see do_sync). */
int fs_fsyncdir(const struct vd_ctx *ctx, vd_node_t node, int datasync,
		struct vd_file *fi)
{
	(void)node, (void)datasync, (void)fi;
	return do_sync(ctx->data);
}

/* Space as the back end sees it (SQLite: the database's file system). */
int fs_statfs(const struct vd_ctx *ctx, vd_node_t node, struct statvfs *st)
{
	struct fs *s = ctx->data;
	int r;

	(void)node;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&s->lock);
	r = s->be->statfs(s, st);
	pthread_mutex_unlock(&s->lock);
	if (r)
		return r;
	st->f_namemax = FS_NAME_MAX;
	st->f_flag &= ~(unsigned long)ST_RDONLY;
	return 0;
}

/* Namespaces this source stores; the kernel enforces who may set them. */
static bool xattr_name_ok(const char *name)
{
	return !strncmp(name, "user.", 5) || !strncmp(name, "trusted.", 8) ||
	       !strncmp(name, "security.", 9) || !strcmp(name, VD_ACL_ACCESS) ||
	       !strcmp(name, VD_ACL_DEFAULT);
}

/* Bump ino's ctime after a change to its extended attributes. */
static int touch_ctime(struct fs *s, uint64_t ino)
{
	struct fs_attr a;
	int r = fs_get_attr(s, ino, &a);

	if (r)
		return r;
	a.ctime = fs_now_ns();
	return put_attr(s, &a);
}

/*
 * Setting an access ACL sets the mode bits it stands for (the kernel
 * leaves that to FUSE servers), and one that says no more than the mode
 * bits is not kept, as posix_acl_update_mode() does.
 */
static int set_access_acl(struct fs *s, vd_node_t node, const char *value,
			  size_t size, bool had)
{
	struct fs_attr a;
	mode_t perm;
	int extended, r;

	r = vd_acl_mode(value, size, &perm, &extended);
	if (!r)
		r = fs_get_attr(s, node, &a);
	if (r)
		return r;
	if (extended) {
		r = put_xattr(s, node, VD_ACL_ACCESS, value, size);
	} else if (had) {
		struct fs_stmt *q = fs_q_ino(s, S_DELX, node);

		fs_bind_text(q, 2, VD_ACL_ACCESS);
		r = fs_run(s, q);
	}
	if (r)
		return r;
	a.mode = (a.mode & ~(mode_t)0777) | perm;
	a.ctime = fs_now_ns();
	return put_attr(s, &a);
}

/* setxattr with XATTR_CREATE / XATTR_REPLACE; bumps ctime. */
static int do_setxattr(struct fs *s, vd_node_t node, const char *name,
		       const char *value, size_t size, int flags)
{
	void *old;
	size_t len;
	int r;

	if (strlen(name) > XATTR_NAME_MAX || !*name)
		return -ERANGE;
	if (size > FS_XATTR_MAX)
		return -E2BIG;
	if (!xattr_name_ok(name))
		return -EOPNOTSUPP;
	r = get_xattr(s, node, name, &old, &len);
	free(old);
	if (r && r != -ENODATA)
		return r;
	if ((flags & XATTR_CREATE) && r == 0)
		return -EEXIST;
	if ((flags & XATTR_REPLACE) && r == -ENODATA)
		return -ENODATA;
	if (!strcmp(name, VD_ACL_ACCESS))
		return set_access_acl(s, node, value, size, r == 0);
	r = put_xattr(s, node, name, value, size);
	return r ? r : touch_ctime(s, node);
}

/* vd_ops.setxattr, under the lock, in the open transaction. */
int fs_setxattr(const struct vd_ctx *ctx, vd_node_t node, const char *name,
		const char *value, size_t size, int flags)
{
	return FS_CALL(fs_of(ctx),
		       do_setxattr(ctx->data, node, name, value, size, flags));
}

/* getxattr: size 0 asks for the size; -ERANGE if it does not fit. */
static int do_getxattr(struct fs *s, vd_node_t node, const char *name,
		       char *value, size_t size)
{
	void *val;
	size_t len;
	int r = get_xattr(s, node, name, &val, &len);

	if (r)
		return r;
	if (size && len > size) {
		r = -ERANGE;
	} else {
		if (size)
			memcpy(value, val, len);
		r = (int)len;
	}
	free(val);
	return r;
}

/* vd_ops.getxattr, under the lock, in the open transaction. */
int fs_getxattr(const struct vd_ctx *ctx, vd_node_t node, const char *name,
		char *value, size_t size)
{
	return FS_READ(fs_of(ctx),
		       do_getxattr(ctx->data, node, name, value, size));
}

/* listxattr: NUL-separated names, with getxattr's size rules. */
static int do_listxattr(struct fs *s, vd_node_t node, char *list, size_t size)
{
	struct fs_stmt *q = fs_q_ino(s, S_LISTX, node);
	size_t total = 0;
	int rc;

	while ((rc = fs_step(q)) == FS_ROW) {
		const char *name = fs_col_text(q, 0);
		size_t n = strlen(name) + 1;

		if (size && total + n <= size)
			memcpy(list + total, name, n);
		total += n;
	}
	fs_reset(q);
	if (rc != FS_DONE)
		return rc;
	if (size && total > size)
		return -ERANGE;
	return (int)total;
}

/* vd_ops.listxattr, under the lock, in the open transaction. */
int fs_listxattr(const struct vd_ctx *ctx, vd_node_t node, char *list,
		 size_t size)
{
	return FS_READ(fs_of(ctx), do_listxattr(ctx->data, node, list, size));
}

/* removexattr: -ENODATA if there is no such attribute. */
static int do_removexattr(struct fs *s, vd_node_t node, const char *name)
{
	struct fs_stmt *q = fs_q_ino(s, S_DELX, node);
	int r;

	fs_bind_text(q, 2, name);
	r = fs_run(s, q);
	if (r)
		return r;
	if (fs_changes(q) == 0)
		return -ENODATA;
	return touch_ctime(s, node);
}

/* vd_ops.removexattr, under the lock, in the open transaction. */
int fs_removexattr(const struct vd_ctx *ctx, vd_node_t node, const char *name)
{
	return FS_CALL(fs_of(ctx), do_removexattr(ctx->data, node, name));
}

/* create and tmpfile: a new regular file, opened. */
static int do_create(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, struct vd_file *fi,
		     vd_node_t *node, struct stat *st)
{
	struct fs_attr a;
	int r;

	mode = S_IFREG | (mode & 07777);
	r = make_node(ctx, parent, name, mode, 0, NULL, &a);
	if (!r)
		r = open_ref(ctx->data, a.ino);
	if (r)
		return r;
	fi->fh = 0;
	*node = a.ino;
	attr_stat(ctx->data, &a, st);
	return 0;
}

/* vd_ops.create, under the lock, in the open transaction. */
int fs_create(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
	      mode_t mode, struct vd_file *fi, vd_node_t *node, struct stat *st)
{
	return FS_CALL(fs_of(ctx),
		       do_create(ctx, parent, name, mode, fi, node, st));
}

/* vd_ops.tmpfile, under the lock, in the open transaction. */
int fs_tmpfile(const struct vd_ctx *ctx, vd_node_t parent, mode_t mode,
	       struct vd_file *fi, vd_node_t *node, struct stat *st)
{
	return FS_CALL(fs_of(ctx),
		       do_create(ctx, parent, NULL, mode, fi, node, st));
}

/*
 * fallocate: mode 0 and KEEP_SIZE store zeros in holes; PUNCH_HOLE
 * (with KEEP_SIZE) and ZERO_RANGE make the range read as zeros.
 */
static int do_fallocate(struct fs *s, vd_node_t node, int mode, off_t off,
			off_t len)
{
	struct fs_attr a;
	int r;

	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
		     FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if (off < 0 || len <= 0 || len > INT64_MAX - off)
		return -EINVAL;
	r = fs_get_attr(s, node, &a);
	if (r)
		return r;
	if (S_ISDIR(a.mode))
		return -EISDIR;
	if (!S_ISREG(a.mode))
		return -ENODEV;
	r = slots_flush(s, node);
	if (r)
		return r;
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		r = zero_range(s, &a, off, len);
		if (r)
			return r;
		a.mtime = a.ctime = fs_now_ns();
	}
	if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
		r = make_room(s, len);
		if (!r)
			r = alloc_range(s, &a, off, len);
		if (r)
			return r;
	}
	if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > a.size) {
		a.size = off + len;
		a.mtime = a.ctime = fs_now_ns();
	}
	return put_attr(s, &a);
}

/* vd_ops.fallocate, under the lock, in the open transaction. */
int fs_fallocate(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
		 int mode, off_t off, off_t len)
{
	(void)fi;
	return FS_CALL(fs_of(ctx),
		       do_fallocate(ctx->data, node, mode, off, len));
}

/* SEEK_DATA / SEEK_HOLE: a stored chunk is data, a missing one a hole. */
static int64_t do_lseek(struct fs *s, vd_node_t node, off_t off, int whence)
{
	struct fs_attr a;
	struct fs_stmt *q;
	int64_t want, pos;
	int rc, r;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	r = fs_get_attr(s, node, &a);
	if (r)
		return r;
	if (off < 0)
		return -ENXIO;
	if (off >= a.size)
		return -ENXIO;
	r = slots_flush(s, node);
	if (r)
		return r;
	want = off / s->cs;
	q = fs_q_ino(s, S_NEXTCHUNK, node);
	fs_bind_int(q, 2, want);
	if (whence == SEEK_DATA) {
		rc = fs_step(q);
		pos = -ENXIO;
		if (rc == FS_ROW) {
			int64_t idx = fs_col_int(q, 0);

			pos = idx == want ? off : idx * s->cs;
			if (pos >= a.size)
				pos = -ENXIO;
		}
	} else {
		while ((rc = fs_step(q)) == FS_ROW && fs_col_int(q, 0) == want)
			want++;
		pos = want == off / s->cs ? off : want * s->cs;
		if (pos > a.size)
			pos = a.size;
	}
	fs_reset(q);
	if (rc != FS_ROW && rc != FS_DONE)
		return rc;
	return pos;
}

/* vd_ops.lseek, under the lock, in the open transaction. */
int64_t fs_lseek(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
		 off_t off, int whence)
{
	(void)fi;
	return FS_READ(fs_of(ctx), do_lseek(ctx->data, node, off, whence));
}

/* Delete inodes that lost their last name before a crash. */
int fs_collect_orphans(struct fs *s)
{
	struct fs_stmt *q = s->stmt[S_ORPHANS];
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc, r = 0;

	pthread_mutex_lock(&s->lock);
	r = fs_begin(s, true);
	while (!r && (rc = fs_step(q)) == FS_ROW) {
		if (n == cap) {
			int64_t *p = realloc(ids, (cap = cap * 2 + 16) *
							  sizeof(*ids));
			if (!p) {
				r = -ENOMEM;
				break;
			}
			ids = p;
		}
		ids[n++] = fs_col_int(q, 0);
	}
	fs_reset(q);
	for (size_t i = 0; !r && i < n; i++)
		r = drop_inode(s, ids[i]);
	free(ids);
	if (!r) {
		r = fs_commit(s);
	} else if (s->in_txn) {
		s->be->rollback(s);
		fs_lost_txn(s);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* vd_ops.destroy: commit, close, free. */
void fs_destroy(void *data)
{
	fs_free(data);
}

int fs_new(const struct fs_backend *be, struct fs **out)
{
	struct fs *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->be = be;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	*out = s;
	return 0;
}

int fs_alloc_buffers(struct fs *s)
{
	s->buf = malloc(s->cs * (FS_SLOTS + 1));
	if (!s->buf)
		return -ENOMEM;
	for (int i = 0; i < FS_SLOTS; i++)
		s->slot[i].buf = s->buf + s->cs * (i + 1);
	return 0;
}

void fs_free(struct fs *s)
{
	if (!s)
		return;
	if (s->be->close)
		s->be->close(s);
	for (int i = 0; i < FS_OPEN_BUCKETS; i++) {
		while (s->open[i])
			open_free(s, s->open[i]);
	}
	names_clear(s);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s->buf);
	free(s->dirty);
	free(s->names);
	free(s->dir_path);
	free(s->path);
	free(s);
}
