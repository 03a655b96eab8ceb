/*
 * sqlar.c - the SQLite back end's sqlar table: the drive's tree as an
 * SQLite Archive (sqlite3 -A lists and extracts it), kept in step with
 * the dentries. Hooks of struct fs_backend (core.h), called by the core
 * under the lock inside the open transaction: a name goes (name_gone), a
 * rename (renaming), before each commit (precommit: the rows of every
 * inode changed since the last commit are rewritten), and the bytes a
 * write adds to the transaction (write_extra). docs/sqlite-schema.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"
#include "sqlar.h"

/*
 * The sqlar path of name in folder parent ("a/b/name"), malloc'd into
 * *path; -ENOENT if the folder is no longer reachable from the root.
 */
static int dentry_path(struct fs *s, uint64_t parent, const char *name,
		       char **path)
{
	struct fs_stmt *q = fs_q_ino(s, S_PATH, parent);
	int rc;

	*path = NULL;
	fs_bind_text(q, 2, name);
	rc = fs_step(q);
	if (rc == FS_ROW)
		*path = strdup(fs_col_text(q, 0));
	fs_reset(q);
	if (rc == FS_ROW)
		return *path ? 0 : -ENOMEM;
	return rc == FS_DONE ? -ENOENT : rc;
}

/* Run one of the sqlar statements on paths from and (unless NULL) to. */
static int sqlar_run(struct fs *s, int id, const char *from, const char *to)
{
	struct fs_stmt *q = s->stmt[id];

	fs_bind_text(q, 1, from);
	if (to)
		fs_bind_text(q, 2, to);
	return fs_run(s, q);
}

/* The sqlar row of name in folder parent goes with the name. */
int sq_sqlar_drop(struct fs *s, uint64_t parent, const char *name)
{
	char *path;
	int r = dentry_path(s, parent, name, &path);

	if (r)
		return r == -ENOENT ? 0 : r;
	r = sqlar_run(s, S_SQLARDEL, path, NULL);
	free(path);
	return r;
}

/* Rename sqlar row from to to, and for a folder everything under it
 * (the rows of every file below move in one statement). */
static int sqlar_move(struct fs *s, const char *from, const char *to, bool tree)
{
	int r = sqlar_run(s, S_SQLARMOVE, from, to);

	if (!r && tree)
		r = sqlar_run(s, S_SQLARTREE, from, to);
	return r;
}

/*
 * The sqlar side of a rename: the source's rows (a folder's whole tree)
 * take the new path; a replaced name's row goes, or with exchange the
 * two swap (through a path no name can have: it starts with '/').
 * Called before or after the dentries change: parents' paths are the
 * same either way.
 */
int sq_sqlar_rename(struct fs *s, uint64_t parent, const char *name,
		    uint64_t newparent, const char *newname, bool dir,
		    bool exists, bool exchange, bool dstdir)
{
	char *from = NULL, *to = NULL, *tmp = NULL;
	int r;

	r = dentry_path(s, parent, name, &from);

	if (!r)
		r = dentry_path(s, newparent, newname, &to);
	if (r) {
		r = r == -ENOENT ? 0 : r;
		goto out;
	}
	if (exchange) {
		if (asprintf(&tmp, "/%s", from) < 0) {
			tmp = NULL;
			r = -ENOMEM;
			goto out;
		}
		r = sqlar_move(s, from, tmp, dir);
		if (!r)
			r = sqlar_move(s, to, from, dstdir);
		if (!r)
			r = sqlar_move(s, tmp, to, dir);
		goto out;
	}
	if (exists)
		r = sqlar_run(s, S_SQLARDEL, to, NULL);
	if (!r)
		r = sqlar_move(s, from, to, dir);
out:
	free(from);
	free(to);
	free(tmp);
	return r;
}

/*
 * The sqlar path of folder ino ("" for the root), for the refresh before
 * a commit: files of one folder come together (new inodes get adjacent
 * numbers), so the last folder's path is kept. -ENOENT if the folder is
 * no longer reachable from the root.
 */
static int folder_path(struct fs *s, uint64_t ino, const char **path)
{
	struct fs_stmt *q;
	int rc;

	if (ino == VD_ROOT) {
		*path = "";
		return 0;
	}
	if (s->dir_path && s->dir_ino == ino) {
		*path = s->dir_path;
		return 0;
	}
	free(s->dir_path);
	s->dir_path = NULL;
	q = fs_q_ino(s, S_PATHS, ino);
	rc = fs_step(q);
	if (rc == FS_ROW)
		s->dir_path = strdup(fs_col_text(q, 0));
	fs_reset(q);
	if (rc != FS_ROW)
		return rc == FS_DONE ? -ENOENT : rc;
	if (!s->dir_path)
		return -ENOMEM;
	s->dir_ino = ino;
	*path = s->dir_path;
	return 0;
}

/*
 * Write the sqlar rows of inode ino, one per name, from its inode row:
 * mode, mtime in whole seconds, size, and as data the content of a
 * regular file up to FS_SQLAR_MAX bytes (stored, not compressed:
 * sz = length(data)), a symlink's target, or NULL (folders and larger
 * files). Fifos, sockets and devices have no rows. The slots must have
 * been stored.
 */
static int sqlar_refresh(struct fs *s, uint64_t ino)
{
	struct fs_stmt *q, *put = s->stmt[S_SQLARPUT];
	struct fs_attr a;
	char *data = NULL;
	bool has_data = false;
	int rc = FS_DONE, r;

	if (ino == VD_ROOT)
		return 0;
	r = fs_get_attr(s, ino, &a);
	if (r)
		return r == -ENOENT ? 0 : r;
	if (a.nlink == 0 ||
	    (!S_ISREG(a.mode) && !S_ISDIR(a.mode) && !S_ISLNK(a.mode)))
		return 0;
	if ((S_ISREG(a.mode) && a.size <= FS_SQLAR_MAX) || S_ISLNK(a.mode)) {
		data = malloc(a.size + 1);
		if (!data)
			return -ENOMEM;
		if (S_ISREG(a.mode))
			r = fs_read_content(s, &a, data, a.size, 0);
		else
			r = fs_readlink_into(s, ino, data, a.size + 1);
		if (r < 0)
			goto out;
		has_data = true;
	}
	fs_bind_int(put, 2, a.mode);
	/* whole seconds, rounded down */
	fs_bind_int(put, 3,
		    (a.mtime - ((a.mtime % FS_NS) + FS_NS) % FS_NS) / FS_NS);
	fs_bind_int(put, 4, S_ISDIR(a.mode) ? 0 : a.size);
	if (has_data)
		fs_bind_blob(put, 5, data, a.size);
	else
		fs_bind_null(put, 5);
	r = 0;
	q = fs_q_ino(s, S_NAMES, ino);
	while (!r && (rc = fs_step(q)) == FS_ROW) {
		const char *name = fs_col_text(q, 1);
		const char *dir = "";
		char *path;

		r = folder_path(s, fs_col_int(q, 0), &dir);
		if (r) {
			r = r == -ENOENT ? 0 : r;
			continue;
		}
		if (asprintf(&path, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
			path = NULL;
		if (!path) {
			r = -ENOMEM;
			break;
		}
		fs_bind_text(put, 1, path);
		r = fs_run(s, put);
		free(path);
	}
	fs_reset(q);
	if (!r && rc != FS_DONE)
		r = rc;
out:
	fs_bind_null(put, 5); /* data is freed */
	free(data);
	return r;
}

/* qsort() order of inode numbers. */
static int cmp_ino(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/* Refresh the sqlar rows of every inode changed since the last commit. */
int sq_sqlar_flush(struct fs *s)
{
	int r = 0;

	if (s->ndirty)
		qsort(s->dirty, s->ndirty, sizeof(*s->dirty), cmp_ino);
	for (size_t i = 0; !r && i < s->ndirty; i++) {
		if (i == 0 || s->dirty[i] != s->dirty[i - 1])
			r = sqlar_refresh(s, s->dirty[i]);
	}
	s->ndirty = 0;
	free(s->dir_path); /* paths change once requests run again */
	s->dir_path = NULL;
	return r;
}

/*
 * The bytes the sqlar copy of file a adds to the transaction when bytes
 * are written up to end: a small file's whole copy is rewritten at the
 * commit, so its full size counts, once per run of writes to it (it is
 * then the last inode marked dirty); later writes in the run count what
 * they add. make_room() and the commit size see them, so the refresh
 * before a commit does not run out of disk inside SQLite.
 */
int64_t sq_sqlar_bytes(struct fs *s, const struct fs_attr *a, int64_t end,
		       int64_t bytes)
{
	if (!S_ISREG(a->mode) || a->size > FS_SQLAR_MAX || end > FS_SQLAR_MAX)
		return 0;
	if (s->ndirty && s->dirty[s->ndirty - 1] == a->ino)
		return bytes;
	return end > a->size ? end : a->size;
}
