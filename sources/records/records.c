/*
 * records.c - records:PATH[,csv][,ro][,poll=MS]: the tables of an existing
 * SQLite database as folders, one JSON file per row.
 *
 *   /TABLE/KEY.json   the row, column -> value, read-write
 *   /TABLE.csv        the whole table (option csv), read-only
 *
 * Writes are buffered per open and applied in one transaction when the
 * file is closed (flush), so a row never holds half an edit and a bad edit
 * fails close(2) with the row untouched. A thread polls PRAGMA
 * data_version and tells the kernel what other programs changed.
 * docs/sources.md describes the mapping, escaping and errors.
 *
 * This file holds the callbacks and the source's setup; names.c the node
 * table and file-name escaping, table.c the schema, render.c JSON and
 * CSV, commit.c saving a row, poll.c the change poller (records.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "records/records.h"

/* Remember the drive so the poller can invalidate and vd_log can name it. */
static struct rec *rec_enter(const struct vd_ctx *ctx)
{
	struct rec *s = ctx->data;

	if (ctx->drive && !__atomic_load_n(&s->drive, __ATOMIC_ACQUIRE))
		__atomic_store_n(&s->drive, ctx->drive, __ATOMIC_RELEASE);
	pthread_mutex_lock(&s->lock);
	return s;
}

static void rec_leave(struct rec *s)
{
	pthread_mutex_unlock(&s->lock);
}

/* Newest modification time of the database (file or its WAL). */
static void db_times(struct rec *s, struct stat *st)
{
	struct stat a, w;
	char wal[4096];

	if (stat(s->path, &a) != 0)
		return;
	snprintf(wal, sizeof(wal), "%s-wal", s->path);
	if (stat(wal, &w) == 0 && (w.st_mtim.tv_sec > a.st_mtim.tv_sec ||
				   (w.st_mtim.tv_sec == a.st_mtim.tv_sec &&
				    w.st_mtim.tv_nsec > a.st_mtim.tv_nsec)))
		a.st_mtim = w.st_mtim;
	st->st_mtim = a.st_mtim;
	st->st_ctim = a.st_mtim;
	st->st_atim = a.st_mtim;
}

static void fill_stat(struct rec *s, const struct rec_node *n, off_t size,
		      struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->id;
	st->st_uid = s->uid;
	st->st_gid = s->gid;
	if (n->kind == REC_ROOT || n->kind == REC_TABLE) {
		st->st_mode = S_IFDIR | (s->ro ? 0555 : 0755);
		st->st_nlink = 2;
	} else {
		st->st_mode =
			S_IFREG | (s->ro || n->kind == REC_CSV ? 0444 : 0644);
		st->st_nlink = 1;
		st->st_size = size;
	}
	st->st_blksize = 4096;
	st->st_blocks = (size + 511) / 512;
	if (n->kind != REC_SCRATCH) {
		db_times(s, st);
		return;
	}
	st->st_mode = S_IFREG | n->mode;
	st->st_nlink = n->linked;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_size = (off_t)n->data.len;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtim = st->st_ctim = st->st_atim = n->mtime;
}

/* Whether name is a row's (KEY.json) rather than a scratch file's. */
static int is_row_name(const char *name)
{
	size_t len = strlen(name);

	return len > 5 && !strcmp(name + len - 5, ".json");
}

/* Free scratch node n once it has no name, no open and no kernel ref. */
static void scratch_maybe_free(struct rec *s, struct rec_node *n)
{
	if (n->kind == REC_SCRATCH && !n->linked && !n->held && !n->nopen)
		rec_node_remove(s, n);
}

/* Remove scratch file n's name. */
static void scratch_unlink(struct rec *s, struct rec_node *n)
{
	rec_name_unhash(s, n);
	n->linked = 0;
	scratch_maybe_free(s, n);
}

/* Attributes of node n as the database has it now; -ENOENT if gone. */
static int node_stat(struct rec *s, struct rec_node *n, struct stat *st)
{
	struct rec_table t;
	struct vd_buf b = {0};
	off_t size = 0;
	int r = 0;

	if (n->kind == REC_ROOT || n->kind == REC_SCRATCH) {
		fill_stat(s, n, 0, st);
		return 0;
	}
	r = rec_table_load(s, n->table, &t);
	if (r)
		return r;
	if (n->kind == REC_ROW) {
		/* Created, never saved: it never existed. */
		if (n->pending && !n->nopen)
			r = -ENOENT;
		else if (n->writer && n->writer->dirty)
			size = (off_t)n->writer->buf.len;
		else if (!n->pending)
			r = rec_row_json(s, &t, n, &b);
	} else if (n->kind == REC_CSV) {
		r = rec_table_csv(s, &t, &b);
	}
	if (b.len)
		size = (off_t)b.len;
	if (!r)
		fill_stat(s, n, size, st);
	vd_buf_free(&b);
	rec_table_free(&t);
	return r;
}

static int rec_lookup(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t *node, struct stat *st)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *p = rec_node_get(s, parent), *n = NULL, probe;
	struct rec_table t;
	int r = -ENOENT;

	memset(&probe, 0, sizeof(probe));
	if (!p) {
		r = -ESTALE;
	} else if (p->kind == REC_ROOT) {
		r = rec_root_table(s, name, NULL, &t);
		if (!r) {
			n = rec_node_make(s, REC_TABLE, t.name, name);
			rec_table_free(&t);
		} else if (s->csv &&
			   (r = rec_root_table(s, name, ".csv", &t)) == 0) {
			n = rec_node_make(s, REC_CSV, t.name, name);
			rec_table_free(&t);
		}
		if (!r && !n)
			r = -ENOMEM;
	} else if (p->kind == REC_TABLE && !is_row_name(name)) {
		n = rec_node_find(s, REC_SCRATCH, p->table, name);
		r = n ? 0 : -ENOENT;
		if (n)
			n->held = 1;
	} else if (p->kind == REC_TABLE &&
		   !(r = rec_table_load(s, p->table, &t))) {
		r = rec_row_find(s, &t, name, &probe);
		if (!r) {
			n = rec_node_make(s, REC_ROW, t.name, name);
			if (!n) {
				r = -ENOMEM;
			} else if (!n->writer) {
				free(n->kt);
				n->ktype = probe.ktype, n->ki = probe.ki;
				n->kr = probe.kr, n->kt = probe.kt;
				n->ktlen = probe.ktlen;
				probe.kt = NULL;
				n->pending = 0;
			}
		}
		free(probe.kt);
		rec_table_free(&t);
	} else if (p->kind != REC_TABLE) {
		r = -ENOTDIR;
	}
	if (!r)
		r = node_stat(s, n, st);
	if (!r)
		*node = n->id;
	rec_leave(s);
	return r;
}

static void rec_forget(void *data, vd_node_t node)
{
	struct rec *s = data;
	struct rec_node *n;

	pthread_mutex_lock(&s->lock);
	n = rec_node_get(s, node);
	if (n && n->kind == REC_SCRATCH) {
		n->held = 0;
		scratch_maybe_free(s, n);
	} else if (n && n != &s->root) {
		rec_node_remove(s, n);
	}
	pthread_mutex_unlock(&s->lock);
}

static int rec_getattr(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, struct stat *st)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *n = rec_node_get(s, node);
	int r;

	if (!n)
		r = -ESTALE;
	else if (fi && fi->fh && n->kind == REC_ROW)
		r = (fill_stat(s, n,
			       (off_t)((struct rec_open *)fi->fh)->buf.len, st),
		     0);
	else
		r = node_stat(s, n, st);
	rec_leave(s);
	return r;
}

static int open_node(struct rec *s, struct rec_node *n, struct vd_file *fi,
		     int trunc)
{
	struct rec_open *h;
	struct rec_table t;
	int acc = fi->flags & O_ACCMODE, r;

	if (n->kind == REC_ROOT || n->kind == REC_TABLE)
		return -EISDIR;
	if (acc != O_RDONLY && (s->ro || n->kind == REC_CSV))
		return n->kind == REC_CSV ? -EACCES : -EROFS;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->node = n;
	h->writable = acc != O_RDONLY;
	if (n->kind == REC_SCRATCH) {
		if (trunc && n->data.p)
			n->data.p[n->data.len = 0] = 0;
		goto opened;
	}
	r = rec_table_load(s, n->table, &t);
	if (!r) {
		if (n->kind == REC_CSV)
			r = rec_table_csv(s, &t, &h->buf);
		else if (!trunc && !n->pending)
			r = rec_row_json(s, &t, n, &h->buf);
		rec_table_free(&t);
	}
	if (r) {
		vd_buf_free(&h->buf);
		free(h);
		return r;
	}
opened:
	fi->fh = (uint64_t)(uintptr_t)h;
	n->nopen++;
	/* Content comes from the database at each open: no stale pages. */
	fi->direct_io = 1;
	fi->keep_cache = 0;
	return 0;
}

static int rec_open(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *n = rec_node_get(s, node);
	int r = n ? open_node(s, n, fi,
			      (fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE))
		  : -ESTALE;

	rec_leave(s);
	return r;
}

static int rec_create(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, mode_t mode, struct vd_file *fi,
		      vd_node_t *node, struct stat *st)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *p = rec_node_get(s, parent), *n = NULL, probe;
	struct vd_buf key = {0};
	struct rec_table t;
	size_t len = strlen(name);
	int r;

	memset(&probe, 0, sizeof(probe));
	if (!p) {
		r = -ESTALE;
	} else if (s->ro) {
		r = -EROFS;
	} else if (p->kind != REC_TABLE || !S_ISREG(mode)) {
		r = -EACCES;
	} else if (!is_row_name(name)) {
		r = rec_node_find(s, REC_SCRATCH, p->table, name) ? -EEXIST : 0;
		if (!r && !(n = rec_node_make(s, REC_SCRATCH, p->table, name)))
			r = -ENOMEM;
		if (!r) {
			n->mode = mode & 07777;
			n->uid = ctx->uid;
			n->gid = ctx->gid;
			n->linked = 1;
			clock_gettime(CLOCK_REALTIME, &n->mtime);
		}
	} else if (len <= 5 || strcmp(name + len - 5, ".json") ||
		   rec_unesc_name(&key, name, len - 5)) {
		vd_log(s->drive,
		       "records: %s/%s: not a row file name (KEY.json)",
		       p->table, name);
		r = -EINVAL;
	} else if (!(r = rec_table_load(s, p->table, &t))) {
		r = rec_row_find(s, &t, name, &probe);
		if (r == -ENOENT && (t.key < 0 || t.aff[t.key] == 'I') &&
		    !rec_is_int_key(&key)) {
			vd_log(s->drive,
			       "records: %s/%s: the key must be an integer",
			       p->table, name);
			r = -EINVAL;
		} else if (r == 0) {
			r = -EEXIST;
		} else if (r == -ENOENT) {
			n = rec_node_make(s, REC_ROW, t.name, name);
			r = n ? 0 : -ENOMEM;
		}
		free(probe.kt);
		rec_table_free(&t);
	}
	if (!r) {
		n->pending = n->kind == REC_ROW;
		r = open_node(s, n, fi, 1);
	}
	if (!r) {
		fill_stat(s, n, 0, st);
		*node = n->id;
		n->held = 1;
	}
	vd_buf_free(&key);
	rec_leave(s);
	return r;
}

static int rec_read(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, char *buf, size_t size, off_t off)
{
	struct rec *s = rec_enter(ctx);
	struct rec_open *h = (struct rec_open *)(uintptr_t)fi->fh;
	struct vd_buf *b =
		h->node->kind == REC_SCRATCH ? &h->node->data : &h->buf;
	int r = 0;

	(void)node;
	if (off >= 0 && (size_t)off < b->len) {
		if (size > b->len - (size_t)off)
			size = b->len - (size_t)off;
		memcpy(buf, b->p + off, size);
		r = (int)size;
	}
	rec_leave(s);
	return r;
}

/* Make b exactly size bytes long (zero-filled when growing). */
static int buf_resize(struct vd_buf *b, off_t size)
{
	if (size < 0 || size > REC_MAX_FILE)
		return -EFBIG;
	if ((size_t)size > b->len) {
		size_t grow = (size_t)size - b->len;
		char *z = calloc(1, grow);

		if (!z)
			return -ENOMEM;
		vd_buf_add(b, z, grow);
		free(z);
		if (b->oom)
			return -ENOMEM;
	} else if (b->p) {
		b->len = (size_t)size;
		b->p[size] = 0;
	}
	return 0;
}

/* Resize what open h edits: a scratch file's content, or the row edit
 * (which then has to be saved). */
static int resize(struct rec_open *h, off_t size)
{
	struct rec_node *n = h->node;
	int r;

	if (n->kind == REC_SCRATCH) {
		r = buf_resize(&n->data, size);
		clock_gettime(CLOCK_REALTIME, &n->mtime);
		return r;
	}
	r = buf_resize(&h->buf, size);
	if (!r) {
		h->dirty = 1;
		n->writer = h;
	}
	return r;
}

static int rec_write(const struct vd_ctx *ctx, vd_node_t node,
		     struct vd_file *fi, const char *buf, size_t size,
		     off_t off)
{
	struct rec *s = rec_enter(ctx);
	struct rec_open *h = (struct rec_open *)(uintptr_t)fi->fh;
	int r;

	(void)node;
	if (!h->writable) {
		r = -EBADF;
	} else if (off < 0 || size > REC_MAX_FILE ||
		   (size_t)off > REC_MAX_FILE - size) {
		r = -EFBIG;
	} else {
		struct vd_buf *b =
			h->node->kind == REC_SCRATCH ? &h->node->data : &h->buf;

		r = (size_t)off + size > b->len ? resize(h, off + (off_t)size)
						: 0;
		if (!r) {
			memcpy(b->p + off, buf, size);
			if (h->node->kind == REC_SCRATCH) {
				clock_gettime(CLOCK_REALTIME, &h->node->mtime);
			} else {
				h->dirty = 1;
				h->node->writer = h;
			}
			r = (int)size;
		}
	}
	rec_leave(s);
	return r;
}

/* Whether a setattr leaves mode and owner as they are: tools that copy
 * them (cp -p, install) then work; real changes are refused. */
static int same_owner_mode(struct rec *s, const struct rec_node *n,
			   const struct stat *want, int to_set)
{
	struct stat cur;

	fill_stat(s, n, 0, &cur);
	return !((to_set & VD_SET_MODE) &&
		 (want->st_mode & 07777) != (cur.st_mode & 07777)) &&
	       !((to_set & VD_SET_UID) && want->st_uid != cur.st_uid) &&
	       !((to_set & VD_SET_GID) && want->st_gid != cur.st_gid);
}

static int rec_setattr(const struct vd_ctx *ctx, vd_node_t node,
		       struct stat *st, int to_set, struct vd_file *fi)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *n = rec_node_get(s, node);
	struct rec_open *h = fi ? (struct rec_open *)(uintptr_t)fi->fh : NULL;
	struct vd_file tmp;
	int r = 0;

	if (n && n->kind == REC_SCRATCH) {
		/* Scratch files take any attribute, like a file in /tmp. */
		if (to_set & VD_SET_MODE)
			n->mode = st->st_mode & 07777;
		if (to_set & VD_SET_UID)
			n->uid = st->st_uid;
		if (to_set & VD_SET_GID)
			n->gid = st->st_gid;
		if (to_set & VD_SET_MTIME)
			n->mtime = st->st_mtim;
		if (to_set & VD_SET_SIZE) {
			r = buf_resize(&n->data, st->st_size);
			clock_gettime(CLOCK_REALTIME, &n->mtime);
		}
		h = NULL;
	} else if (!n) {
		r = -ESTALE;
	} else if (!same_owner_mode(s, n, st, to_set)) {
		r = -EPERM;
	} else if (to_set & VD_SET_SIZE) {
		if (n->kind != REC_ROW)
			r = n->kind == REC_CSV ? -EACCES : -EISDIR;
		else if (s->ro)
			r = -EROFS;
		if (!r && !h)
			h = n->writer;
		if (!r && h) {
			r = resize(h, st->st_size);
		} else if (!r) {
			/* truncate(2) with nobody writing: an edit of its own.
			 */
			memset(&tmp, 0, sizeof(tmp));
			tmp.flags = O_WRONLY;
			r = open_node(s, n, &tmp, 0);
			if (!r) {
				h = (struct rec_open *)(uintptr_t)tmp.fh;
				r = resize(h, st->st_size);
				if (!r)
					r = rec_save(s, h);
				if (n->writer == h)
					n->writer = NULL;
				n->nopen--;
				vd_buf_free(&h->buf);
				free(h);
				h = NULL;
			}
		}
	}
	/* Times are the database's: setting them is accepted and ignored. */
	if (!r)
		r = h ? (fill_stat(s, n, (off_t)h->buf.len, st), 0)
		      : node_stat(s, n, st);
	rec_leave(s);
	return r;
}

static int rec_flush(const struct vd_ctx *ctx, vd_node_t node,
		     struct vd_file *fi)
{
	struct rec *s = rec_enter(ctx);
	int r = rec_save(s, (struct rec_open *)(uintptr_t)fi->fh);

	(void)node;
	rec_leave(s);
	return r;
}

static int rec_fsync(const struct vd_ctx *ctx, vd_node_t node, int datasync,
		     struct vd_file *fi)
{
	(void)datasync;
	return fi ? rec_flush(ctx, node, fi) : 0;
}

static int rec_release(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi)
{
	struct rec *s = rec_enter(ctx);
	struct rec_open *h = (struct rec_open *)(uintptr_t)fi->fh;

	(void)node;
	/* A new file closed without a write (touch) is a row of defaults. */
	if (h->writable && h->node->pending && !h->tried)
		h->dirty = 1;
	rec_save(s, h); /* the last chance; an error here can only be logged */
	if (h->node->writer == h)
		h->node->writer = NULL;
	h->node->nopen--;
	scratch_maybe_free(s, h->node);
	vd_buf_free(&h->buf);
	free(h);
	rec_leave(s);
	return 0;
}

static int rec_unlink(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *p = rec_node_get(s, parent), probe;
	struct vd_buf sql = {0};
	struct rec_table t;
	sqlite3_stmt *st = NULL;
	int r, rc;

	memset(&probe, 0, sizeof(probe));
	if (!p) {
		r = -ESTALE;
	} else if (p->kind != REC_TABLE) {
		r = p->kind == REC_ROOT ? -EPERM : -ENOTDIR;
	} else if (s->ro) {
		r = -EROFS;
	} else if (!is_row_name(name)) {
		struct rec_node *n =
			rec_node_find(s, REC_SCRATCH, p->table, name);

		r = n ? 0 : -ENOENT;
		if (n)
			scratch_unlink(s, n);
	} else if (!(r = rec_table_load(s, p->table, &t))) {
		r = rec_row_find(s, &t, name, &probe);
		if (!r) {
			vd_buf_add(&sql, "DELETE FROM ", 12);
			rec_put_ident(&sql, t.name);
			vd_buf_add(&sql, " WHERE ", 7);
			rec_put_key(&sql, &t);
			vd_buf_add(&sql, " = ?", 4);
			r = rec_prepare(s, &sql, &st);
		}
		if (!r) {
			rec_bind_key(st, 1, &probe);
			rc = sqlite3_step(st);
			if (rc != SQLITE_DONE) {
				r = rec_sqlite_errno(s->db, rc);
				vd_log(s->drive,
				       "records: %s/%s: not deleted: %s",
				       t.name, name, sqlite3_errmsg(s->db));
			} else if (sqlite3_changes(s->db) != 1) {
				r = -ENOENT;
			} else {
				s->rescan = 1; /* CSV files changed too */
			}
		}
		sqlite3_finalize(st);
		free(probe.kt);
		rec_table_free(&t);
	}
	vd_buf_free(&sql);
	rec_leave(s);
	return r;
}

/* Give scratch file n the name newname, replacing a scratch file there. */
static int scratch_move(struct rec *s, struct rec_node *n, const char *newname,
			unsigned int flags)
{
	struct rec_node *old = rec_node_find(s, REC_SCRATCH, n->table, newname);
	char *nm;

	if (old == n)
		return 0;
	if (old && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	nm = strdup(newname);
	if (!nm)
		return -ENOMEM;
	if (old)
		scratch_unlink(s, old);
	rec_name_unhash(s, n);
	free(n->name);
	n->name = nm;
	rec_name_hash(s, n);
	return 0;
}

/*
 * Rename scratch file n to the row file newname: save its content into
 * that row (update, or insert if there is none) exactly as a write and
 * close of newname would. On success n becomes that row's node, as the
 * kernel now has it under newname; on failure nothing changes.
 */
static int scratch_save(struct rec *s, struct rec_node *n, const char *newname,
			unsigned int flags)
{
	struct rec_node probe, *old;
	struct rec_open h;
	struct vd_buf key = {0};
	struct rec_table t;
	char why[256], *nm = strdup(newname);
	int r = nm ? rec_table_load(s, n->table, &t) : -ENOMEM;

	if (r) {
		free(nm);
		return r;
	}
	memset(&probe, 0, sizeof(probe));
	probe.kind = REC_ROW;
	probe.table = n->table;
	probe.name = nm;
	r = rec_row_find(s, &t, newname, &probe);
	if (r == 0 && (flags & RENAME_NOREPLACE)) {
		r = -EEXIST;
	} else if (r == -ENOENT) {
		r = rec_unesc_name(&key, newname, strlen(newname) - 5) ? -EINVAL
								       : 0;
		if (!r && (t.key < 0 || t.aff[t.key] == 'I') &&
		    !rec_is_int_key(&key)) {
			vd_log(s->drive,
			       "records: %s/%s: the key must be an integer",
			       n->table, newname);
			r = -EINVAL;
		}
		probe.pending = 1;
	}
	if (!r) {
		memset(&h, 0, sizeof(h));
		h.node = &probe;
		h.buf = n->data; /* borrowed: rec_commit() only reads it */
		r = rec_commit(s, &h, why, sizeof(why));
	}
	if (!r) {
		s->rescan = 1; /* CSV files changed too */
		old = rec_node_find(s, REC_ROW, n->table, newname);
		if (old)
			rec_name_unhash(s, old); /* the replaced file's node */
		rec_name_unhash(s, n);
		free(n->name);
		free(n->kt);
		vd_buf_free(&n->data);
		n->name = nm;
		n->kind = REC_ROW;
		n->ktype = probe.ktype, n->ki = probe.ki, n->kr = probe.kr;
		n->kt = probe.kt, n->ktlen = probe.ktlen;
		n->pending = 0;
		n->linked = 0;
		rec_name_hash(s, n);
	} else {
		free(probe.kt);
		free(nm);
	}
	vd_buf_free(&key);
	rec_table_free(&t);
	return r;
}

/* Renames inside one table folder, of scratch files only: to another
 * scratch name, or to KEY.json, which saves the content into that row. */
static int rec_rename(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t newparent,
		      const char *newname, unsigned int flags)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *p = rec_node_get(s, parent),
			*np = rec_node_get(s, newparent);
	struct rec_node *n = NULL;
	int r;

	if (!p || !np)
		r = -ESTALE;
	else if (flags & ~(unsigned int)RENAME_NOREPLACE)
		r = -EINVAL;
	else if (p->kind != REC_TABLE || np->kind != REC_TABLE)
		r = -EPERM;
	else if (strcmp(p->table, np->table))
		r = -EXDEV;
	else if (s->ro)
		r = -EROFS;
	else if (is_row_name(name))
		r = -EPERM; /* a row's key changes through its content */
	else if (!(n = rec_node_find(s, REC_SCRATCH, p->table, name)))
		r = -ENOENT;
	else if (!is_row_name(newname))
		r = scratch_move(s, n, newname, flags);
	else
		r = scratch_save(s, n, newname, flags);
	rec_leave(s);
	return r;
}

/* A stand-in inode number for a listed entry the kernel holds no node
 * for: readers skip entries numbered 0. Top bit set, apart from ids. */
static ino_t list_ino(const char *table, const char *name)
{
	uint64_t h = rec_hash_bytes(14695981039346656037ull, table,
				    strlen(table) + 1);

	return (ino_t)(rec_hash_bytes(h, name, strlen(name)) | 1ull << 63);
}

/* Names in the root: tables as folders, then (option csv) TABLE.csv. */
static int list_root(struct rec *s, off_t off, vd_fill_fn fill, void *buf)
{
	sqlite3_stmt *st = NULL;
	off_t i = 2;
	int r = 0;

	if (sqlite3_prepare_v2(
		    s->db,
		    "SELECT name FROM pragma_table_list WHERE schema = 'main' "
		    "AND type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE "
		    "'\\' "
		    "ORDER BY name",
		    -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	for (int pass = 0; pass < (s->csv ? 2 : 1) && !r; pass++) {
		sqlite3_reset(st);
		while (!r && sqlite3_step(st) == SQLITE_ROW) {
			const char *tn =
				(const char *)sqlite3_column_text(st, 0);
			struct vd_buf nm = {0};
			struct rec_table t;
			struct stat sb;

			if (i++ < off || rec_table_load(s, tn, &t))
				continue;
			rec_table_free(&t);
			rec_esc_name(&nm, tn, strlen(tn));
			if (pass)
				vd_buf_add(&nm, ".csv", 4);
			memset(&sb, 0, sizeof(sb));
			sb.st_mode = pass ? S_IFREG : S_IFDIR;
			sb.st_ino = nm.p ? list_ino("", nm.p) : 1;
			if (nm.len <= REC_NAME_MAX && !nm.oom &&
			    fill(buf, nm.p, 0, &sb, i))
				r = 1;
			vd_buf_free(&nm);
		}
	}
	sqlite3_finalize(st);
	return 0;
}

/* Offsets of scratch files in a listing start here, after any row. */
#define REC_SCRATCH_OFF ((off_t)1 << 40)

/* Scratch files of table t from offset off (REC_SCRATCH_OFF + index). */
static void list_scratch(struct rec *s, const struct rec_table *t, off_t off,
			 vd_fill_fn fill, void *buf)
{
	off_t k = REC_SCRATCH_OFF;

	for (size_t b = 0; b < s->byid.nb; b++) {
		struct vd_hlink *l = vd_htab_bucket(&s->byid, b);

		for (; l; l = l->next) {
			struct rec_node *n =
				vd_container_of(l, struct rec_node, idl);
			struct stat sb;

			if (n->kind != REC_SCRATCH || !n->linked ||
			    strcmp(n->table, t->name))
				continue;
			if (++k <= off)
				continue;
			fill_stat(s, n, 0, &sb);
			if (fill(buf, n->name, 0, &sb, k))
				return;
		}
	}
}

/* Rows of table t from offset off, one KEY.json each, in key order, then
 * its scratch files. */
static int list_table(struct rec *s, const struct rec_table *t, off_t off,
		      vd_fill_fn fill, void *buf)
{
	struct vd_buf sql = {0};
	sqlite3_stmt *st = NULL;
	off_t i = off < 2 ? 2 : off;
	int r, full = 0;

	if (off >= REC_SCRATCH_OFF) {
		list_scratch(s, t, off, fill, buf);
		return 0;
	}

	vd_buf_add(&sql, "SELECT ", 7);
	rec_put_key(&sql, t);
	vd_buf_add(&sql, " FROM ", 6);
	rec_put_ident(&sql, t->name);
	vd_buf_add(&sql, " ORDER BY ", 10);
	rec_put_key(&sql, t);
	vd_buf_add(&sql, " LIMIT -1 OFFSET ?", 18);
	r = rec_prepare(s, &sql, &st);
	vd_buf_free(&sql);
	if (r)
		return r;
	sqlite3_bind_int64(st, 1, i - 2);
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct vd_buf nm = {0};
		struct stat sb;

		i++;
		memset(&sb, 0, sizeof(sb));
		sb.st_mode = S_IFREG;
		if (rec_row_name(&nm, sqlite3_column_value(st, 0)) == 0 &&
		    !nm.oom) {
			sb.st_ino = list_ino(t->name, nm.p);
			full = fill(buf, nm.p, 0, &sb, i);
		}
		vd_buf_free(&nm);
		if (full)
			break;
	}
	sqlite3_finalize(st);
	if (!full)
		list_scratch(s, t, REC_SCRATCH_OFF, fill, buf);
	return 0;
}

static int rec_readdir(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, off_t off, vd_fill_fn fill,
		       void *buf)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *n = rec_node_get(s, node);
	struct rec_table t;
	struct stat sb;
	int r = 0;

	(void)fi;
	if (!n || (n->kind != REC_ROOT && n->kind != REC_TABLE)) {
		r = n ? -ENOTDIR : -ESTALE;
		goto out;
	}
	if (n->kind == REC_TABLE && (r = rec_table_load(s, n->table, &t)) != 0)
		goto out;
	memset(&sb, 0, sizeof(sb));
	sb.st_mode = S_IFDIR;
	sb.st_ino = node;
	if ((off > 0 || !fill(buf, ".", 0, &sb, 1)) &&
	    (off > 1 || !fill(buf, "..", 0, &sb, 2))) {
		if (n->kind == REC_ROOT)
			r = list_root(s, off, fill, buf);
		else
			r = list_table(s, &t, off, fill, buf);
	}
	if (n->kind == REC_TABLE)
		rec_table_free(&t);
out:
	rec_leave(s);
	return r;
}

static int rec_statfs(const struct vd_ctx *ctx, vd_node_t node,
		      struct statvfs *st)
{
	(void)ctx, (void)node;
	memset(st, 0, sizeof(*st));
	st->f_bsize = 4096;
	st->f_frsize = 4096;
	st->f_namemax = REC_NAME_MAX;
	return 0;
}

static void rec_destroy(void *data)
{
	struct rec *s = data;

	if (!s)
		return;
	if (s->poller_started) {
		pthread_mutex_lock(&s->lock);
		s->stopping = 1;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->poller, NULL);
	}
	for (size_t b = 0; b < s->byid.nb; b++) {
		struct vd_hlink *l = vd_htab_bucket(&s->byid, b), *next;

		for (; l; l = next) {
			next = l->next;
			rec_node_free(vd_container_of(l, struct rec_node, idl));
		}
	}
	vd_htab_fini(&s->byid);
	vd_htab_fini(&s->byname);
	rec_tcache_clear(s);
	sqlite3_finalize(s->sv_stmt);
	sqlite3_close_v2(s->db);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}

static const struct vd_ops rec_ops = {
	.flags = VD_OPS_THREAD_SAFE |
		 VD_OPS_QUICK, /* one lock: see rec_enter() */
	.destroy = rec_destroy,
	.lookup = rec_lookup,
	.forget = rec_forget,
	.getattr = rec_getattr,
	.setattr = rec_setattr,
	.unlink = rec_unlink,
	.rename = rec_rename,
	.open = rec_open,
	.read = rec_read,
	.write = rec_write,
	.flush = rec_flush,
	.release = rec_release,
	.fsync = rec_fsync,
	.readdir = rec_readdir,
	.statfs = rec_statfs,
	.create = rec_create,
};

/* Parse "PATH[,csv][,ro][,poll=MS]" into s. */
static int parse_arg(struct rec *s, const char *arg, char *err, size_t errlen)
{
	char *copy = strdup(arg), *opt, *save = NULL;

	if (!copy)
		return -ENOMEM;
	opt = strtok_r(copy, ",", &save);
	if (!opt || !*opt) {
		free(copy);
		snprintf(err, errlen,
			 "records: give the database: records:PATH[,csv]");
		return -EINVAL;
	}
	s->path = strdup(opt);
	while ((opt = strtok_r(NULL, ",", &save))) {
		char *end;

		if (!strcmp(opt, "csv")) {
			s->csv = 1;
		} else if (!strcmp(opt, "ro")) {
			s->ro = 1;
		} else if (!strncmp(opt, "poll=", 5)) {
			unsigned long v = strtoul(opt + 5, &end, 10);

			if (*end || end == opt + 5 || v < 10 || v > 60000) {
				snprintf(err, errlen,
					 "records: poll=MS wants 10..60000");
				free(copy);
				return -EINVAL;
			}
			s->poll_ms = (unsigned int)v;
		} else {
			snprintf(err, errlen,
				 "records: unknown option '%s' (csv, ro, "
				 "poll=MS)",
				 opt);
			free(copy);
			return -EINVAL;
		}
	}
	free(copy);
	return s->path ? 0 : -ENOMEM;
}

static int rec_new(const char *arg, const struct vd_ops **ops, void **data,
		   char *err, size_t errlen)
{
	struct rec *s = calloc(1, sizeof(*s));
	struct stat st;
	int r, flags;

	if (!s)
		return -ENOMEM;
	if (vd_htab_init(&s->byid, 4096) || vd_htab_init(&s->byname, 4096)) {
		vd_htab_fini(&s->byid);
		free(s);
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->poll_ms = 100;
	s->next_id = 2;
	s->root.id = VD_ROOT;
	s->root.kind = REC_ROOT;
	r = parse_arg(s, arg, err, errlen);
	if (r)
		goto fail;
	if (stat(s->path, &st) != 0 || !S_ISREG(st.st_mode)) {
		r = -ENOENT;
		snprintf(err, errlen,
			 "records: %s: not an existing database file", s->path);
		goto fail;
	}
	s->uid = st.st_uid;
	s->gid = st.st_gid;
	flags = (s->ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) |
		SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(s->path, &s->db, flags, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->db, "SELECT count(*) FROM sqlite_schema", NULL,
			 NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "records: %s: %s", s->path,
			 s->db ? sqlite3_errmsg(s->db) : "cannot open");
		r = -EINVAL;
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000);
	sqlite3_exec(s->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
	s->data_version = rec_data_version(s);
	if (pthread_create(&s->poller, NULL, rec_poll_thread, s) != 0) {
		r = -EAGAIN;
		snprintf(err, errlen,
			 "records: cannot start the change poller");
		goto fail;
	}
	s->poller_started = 1;
	*ops = &rec_ops;
	*data = s;
	return 0;
fail:
	rec_destroy(s);
	return r;
}

const struct vd_source vd_source_records = {
	.kind = "records",
	.usage = "records:PATH[,csv][,ro][,poll=MS]",
	.help = "the tables of an existing SQLite database, a JSON file per "
		"row",
	.open = rec_new,
};
