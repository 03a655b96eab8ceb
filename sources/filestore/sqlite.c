/*
 * sqlite.c - the "sqlite:PATH" source: the file store (core.c) in one
 * SQLite database file. Written only against vdrive.h. This file holds
 * what is SQLite's own: the SQL text, the file's checks and lock, WAL
 * mode and checkpoints, the room check before writes, and the committer.
 *
 * The schema and the durability rules are in docs/sqlite-schema.md. In
 * short: a node handle is the inode's row id; file content is stored in
 * fixed-size chunks (a missing chunk is a hole); every change goes into
 * one write transaction that stays open and is committed on fsync, when
 * the drive has been idle for a moment, after a second, or after enough
 * bytes. The database is in WAL mode; fsync commits and then syncs the
 * WAL file, so what fsync() returned for survives a crash of the machine,
 * and everything committed survives a crash of this process.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "sqlar.h"
#include "sources.h"

#define SQ_FORMAT FS_FORMAT_SQLITE
#define SQ_VERSION 2	  /* 2: a real sqlar table (1 had a view) */
#define SQ_CHUNK 131072	  /* bytes per chunk of a new database */
#define SQ_COMMIT_MS 1000 /* commit a transaction at least this often */
#define SQ_IDLE_MS 100	  /* or once the drive has been idle this long */
/* WAL frames (64 KiB pages) that start a checkpoint in the background,
 * and that many, one in the foreground. */
#define SQ_CKPT_FRAMES 256
#define SQ_CKPT_INLINE 4096

#define ATTR_COLS                                                              \
	"i.ino,i.mode,i.uid,i.gid,i.nlink,i.size,i.used,i.atime,i.mtime,"      \
	"i.ctime,i.rdev,i.parent"
#define ATTR_NCOLS 12

static const char *const sq_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_GET] = "SELECT " ATTR_COLS " FROM inodes i WHERE i.ino=?1",
	[S_LOOKUP] = "SELECT " ATTR_COLS ",d.rowid FROM dentries d"
		     " JOIN inodes i ON i.ino=d.ino"
		     " WHERE d.parent=?1 AND d.name=?2",
	[S_PUT] = "UPDATE inodes SET mode=?2,uid=?3,gid=?4,nlink=?5,size=?6,"
		  "used=?7,atime=?8,mtime=?9,ctime=?10,rdev=?11,parent=?12"
		  " WHERE ino=?1",
	[S_NEW] = "INSERT INTO inodes(mode,uid,gid,nlink,size,used,atime,"
		  "mtime,ctime,rdev,parent,target)"
		  " VALUES(?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"
		  " RETURNING ino",
	[S_TARGET] = "SELECT target FROM inodes WHERE ino=?1",
	[S_ADDNAME] = "INSERT INTO dentries(parent,name,ino) VALUES(?1,?2,?3)",
	[S_DELNAME] = "DELETE FROM dentries WHERE rowid=?1",
	[S_MOVE] = "UPDATE dentries SET parent=?2,name=?3 WHERE rowid=?1",
	[S_RETARGET] = "UPDATE dentries SET ino=?2 WHERE rowid=?1",
	[S_HASCHILD] = "SELECT 1 FROM dentries WHERE parent=?1 LIMIT 1",
	[S_LIST] = "SELECT d.rowid,d.name," ATTR_COLS " FROM dentries d"
		   " JOIN inodes i ON i.ino=d.ino"
		   " WHERE d.parent=?1 AND d.rowid>?2 ORDER BY d.rowid",
	[S_DROPINODE] = "DELETE FROM inodes WHERE ino=?1",
	[S_DROPCHUNKS] = "DELETE FROM chunks WHERE ino=?1 AND idx>=?2"
			 " AND idx<=?3",
	[S_SUMCHUNKS] = "SELECT total(length(data)) FROM chunks"
			" WHERE ino=?1 AND idx>=?2 AND idx<=?3",
	[S_DROPXATTRS] = "DELETE FROM xattrs WHERE ino=?1",
	[S_CHUNKS] = "SELECT idx,data FROM chunks WHERE ino=?1 AND idx>=?2"
		     " AND idx<=?3 ORDER BY idx",
	[S_CHUNKROWS] = "SELECT idx,rowid,length(data) FROM chunks WHERE ino=?1"
			" AND idx>=?2 AND idx<=?3 ORDER BY idx",
	[S_CHUNKLEN] = "SELECT length(data) FROM chunks WHERE ino=?1"
		       " AND idx=?2",
	[S_PUTCHUNK] = "INSERT OR REPLACE INTO chunks(ino,idx,data)"
		       " VALUES(?1,?2,?3)",
	[S_ALLOCCHUNK] = "INSERT OR IGNORE INTO chunks(ino,idx,data)"
			 " VALUES(?1,?2,zeroblob(?3))",
	[S_NEXTCHUNK] = "SELECT idx FROM chunks WHERE ino=?1 AND idx>=?2"
			" ORDER BY idx",
	[S_GETX] = "SELECT value FROM xattrs WHERE ino=?1 AND name=?2",
	[S_PUTX] = "INSERT OR REPLACE INTO xattrs(ino,name,value)"
		   " VALUES(?1,?2,?3)",
	[S_DELX] = "DELETE FROM xattrs WHERE ino=?1 AND name=?2",
	[S_LISTX] = "SELECT name FROM xattrs WHERE ino=?1 ORDER BY name",
	[S_ORPHANS] = "SELECT ino FROM inodes WHERE nlink=0 AND ino<>1",
	[S_FREELIST] = "SELECT freelist_count * page_size"
		       " FROM pragma_freelist_count, pragma_page_size",
	/* The archive path of name ?2 in folder ?1, walking up the folders'
	 * own (single) names; no row if ?1 is no longer under the root. */
	[S_PATH] = "WITH RECURSIVE up(ino,path) AS (SELECT ?1,?2 UNION ALL"
		   " SELECT d.parent,d.name||'/'||up.path FROM up"
		   " JOIN dentries d ON d.ino=up.ino WHERE up.ino<>1)"
		   " SELECT path FROM up WHERE ino=1",
	/* Every archive path of inode ?1 (one per hard link). */
	[S_PATHS] = "WITH RECURSIVE up(ino,path) AS ("
		    "SELECT parent,name FROM dentries WHERE ino=?1 UNION ALL"
		    " SELECT d.parent,d.name||'/'||up.path FROM up"
		    " JOIN dentries d ON d.ino=up.ino WHERE up.ino<>1)"
		    " SELECT path FROM up WHERE ino=1",
	[S_NAMES] = "SELECT parent,name FROM dentries WHERE ino=?1",
	[S_SQLARPUT] = "INSERT OR REPLACE INTO sqlar(name,mode,mtime,sz,data)"
		       " VALUES(?1,?2,?3,?4,?5)",
	[S_SQLARDEL] = "DELETE FROM sqlar WHERE name=?1",
	[S_SQLARMOVE] = "UPDATE OR REPLACE sqlar SET name=?2 WHERE name=?1",
	/* Everything under folder ?1 moves under ?2 ('0' follows '/'). */
	[S_SQLARTREE] = "UPDATE OR REPLACE sqlar"
			" SET name=?2||substr(name,length(?1)+1)"
			" WHERE name>?1||'/' AND name<?1||'0'",
};

/* The sqlar table (the SQLite Archive schema) and the index that finds
 * an inode's names, for keeping it in step. */
#define SQ_SQLAR_SCHEMA                                                        \
	"CREATE TABLE sqlar(name TEXT PRIMARY KEY, mode INT, mtime INT,"       \
	" sz INT, data BLOB);"                                                 \
	"CREATE INDEX dentries_ino ON dentries(ino);"

/*
 * The schema of a new database; %d is the chunk size. The sqlar table
 * shows the tree as an SQLite Archive (see docs/sqlite-schema.md).
 */
static const char sq_schema[] =
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
	"CREATE TABLE inodes(ino INTEGER PRIMARY KEY, mode INTEGER NOT NULL,"
	" uid INTEGER NOT NULL, gid INTEGER NOT NULL, nlink INTEGER NOT NULL,"
	" size INTEGER NOT NULL DEFAULT 0, used INTEGER NOT NULL DEFAULT 0,"
	" atime INTEGER NOT NULL, mtime INTEGER NOT NULL,"
	" ctime INTEGER NOT NULL, rdev INTEGER NOT NULL DEFAULT 0,"
	" parent INTEGER NOT NULL DEFAULT 0, target BLOB);"
	"CREATE TABLE dentries(parent INTEGER NOT NULL, name TEXT NOT NULL,"
	" ino INTEGER NOT NULL, UNIQUE(parent, name));"
	"CREATE INDEX dentries_order ON dentries(parent);"
	"CREATE TABLE chunks(ino INTEGER NOT NULL, idx INTEGER NOT NULL,"
	" data BLOB NOT NULL, UNIQUE(ino, idx));"
	"CREATE TABLE xattrs(ino INTEGER NOT NULL, name TEXT NOT NULL,"
	" value BLOB NOT NULL, PRIMARY KEY(ino, name)) WITHOUT ROWID;"
	"INSERT INTO meta VALUES('format', '" SQ_FORMAT "'), ('version', 2),"
	" ('chunk_size', %d);" SQ_SQLAR_SCHEMA;

/*
 * Fill the sqlar table from the tree in one statement, when a version 1
 * database (which had a view instead) is upgraded. The same rows as
 * sqlar_refresh() writes: content assembled from the chunks (holes and
 * short chunks zero-filled) for regular files up to %d bytes; the other
 * %d are the chunk size. mtime is in whole seconds, rounded down.
 */
static const char sq_sqlar_fill[] =
	"WITH RECURSIVE paths(ino, path) AS ("
	"  SELECT ino, name FROM dentries WHERE parent = 1"
	"  UNION ALL"
	"  SELECT d.ino, p.path || '/' || d.name"
	"  FROM dentries d JOIN paths p ON d.parent = p.ino)"
	" INSERT OR REPLACE INTO sqlar(name, mode, mtime, sz, data)"
	" SELECT p.path, i.mode,"
	"  (i.mtime - (i.mtime %% 1000000000 + 1000000000) %% 1000000000)"
	"   / 1000000000,"
	"  CASE i.mode & 61440 WHEN 32768 THEN i.size"
	"   WHEN 40960 THEN length(i.target) ELSE 0 END,"
	"  CASE WHEN i.mode & 61440 = 32768 AND i.size <= %d THEN ("
	"   WITH RECURSIVE k(idx) AS (SELECT 0 UNION ALL"
	"    SELECT idx + 1 FROM k WHERE (idx + 1) * %d < i.size)"
	"   SELECT CAST(coalesce(group_concat(part, ''), x'') AS BLOB) FROM ("
	"    SELECT CAST(coalesce(c.data, x'') || zeroblob(min(%d,"
	"     i.size - k.idx * %d) - coalesce(length(c.data), 0)) AS BLOB)"
	"     AS part"
	"    FROM k LEFT JOIN chunks c ON c.ino = i.ino AND c.idx = k.idx"
	"    ORDER BY k.idx))"
	"   WHEN i.mode & 61440 = 40960 THEN CAST(i.target AS BLOB)"
	"   ELSE NULL END"
	" FROM paths p JOIN inodes i ON i.ino = p.ino"
	" WHERE i.mode & 61440 IN (32768, 16384, 40960);";

/* SQLite's side of a store (s->priv). */
struct sq {
	struct fs *fs;
	sqlite3 *db;
	sqlite3 *ckpt_db;   /* the background thread's own connection */
	sqlite3_blob *blob; /* kept open on chunks.data between reads */
	char *dir;	    /* the folder holding the database, for statfs */
	int lock_fd;	    /* flock()ed: one drive per database */
	pthread_t committer;
	bool committer_running, stop;
	bool want_ckpt; /* the WAL has grown: checkpoint it */
	bool unsynced;	/* commits since the WAL was last synced */
	int64_t room;	/* bytes make_room may let through before it looks again
			 */
};

/* A prepared statement, behind the core's cursor interface. */
struct sq_stmt {
	struct fs_stmt base;
	sqlite3_stmt *q;
	struct sq *sq;
};

#define SQ(s) ((struct sq *)(s)->priv)
#define Q(x) (((struct sq_stmt *)(x))->q)

/*
 * Turn an SQLite result code into -errno, logging the unexpected. Some
 * errors (SQLITE_FULL, I/O errors) make SQLite roll back the whole open
 * transaction: then say so, and forget the chunks held in memory, which
 * may belong to files that no longer exist.
 */
static int sq_err(struct sq *p, int rc)
{
	struct fs *s = p->fs;

	if (s->in_txn && sqlite3_get_autocommit(p->db)) {
		fs_lost_txn(s);
		fprintf(stderr,
			"sqlite:%s: %s: SQLite rolled back the transaction; "
			"changes since the last commit are lost\n",
			s->path, sqlite3_errmsg(p->db));
	}
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_TOOBIG:
		return -EFBIG;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_READONLY:
		return -EROFS;
	}
	fprintf(stderr, "sqlite:%s: %s\n", s->path, sqlite3_errmsg(p->db));
	return -EIO;
}

static void sq_bind_int(struct fs_stmt *q, int i, int64_t v)
{
	sqlite3_bind_int64(Q(q), i, v);
}

static void sq_bind_text(struct fs_stmt *q, int i, const char *v)
{
	sqlite3_bind_text(Q(q), i, v, -1, SQLITE_STATIC);
}

static void sq_bind_blob(struct fs_stmt *q, int i, const void *v, int64_t n)
{
	sqlite3_bind_blob64(Q(q), i, v, n, SQLITE_STATIC);
}

static void sq_bind_null(struct fs_stmt *q, int i)
{
	sqlite3_bind_null(Q(q), i);
}

static int sq_step(struct fs_stmt *q)
{
	int rc = sqlite3_step(Q(q));

	if (rc == SQLITE_ROW)
		return FS_ROW;
	if (rc == SQLITE_DONE)
		return FS_DONE;
	return sq_err(((struct sq_stmt *)q)->sq, rc);
}

static void sq_reset(struct fs_stmt *q)
{
	sqlite3_reset(Q(q));
}

static int64_t sq_col_int(struct fs_stmt *q, int c)
{
	return sqlite3_column_int64(Q(q), c);
}

static const char *sq_col_text(struct fs_stmt *q, int c)
{
	return (const char *)sqlite3_column_text(Q(q), c);
}

static const void *sq_col_blob(struct fs_stmt *q, int c)
{
	return sqlite3_column_blob(Q(q), c);
}

static int64_t sq_col_bytes(struct fs_stmt *q, int c)
{
	return sqlite3_column_bytes(Q(q), c);
}

static bool sq_col_null(struct fs_stmt *q, int c)
{
	return sqlite3_column_type(Q(q), c) == SQLITE_NULL;
}

static int64_t sq_changes(struct fs_stmt *q)
{
	return sqlite3_changes(((struct sq_stmt *)q)->sq->db);
}

static const struct fs_stmt_ops sq_stmt_ops = {
	.bind_int = sq_bind_int,
	.bind_text = sq_bind_text,
	.bind_blob = sq_bind_blob,
	.bind_null = sq_bind_null,
	.step = sq_step,
	.reset = sq_reset,
	.col_int = sq_col_int,
	.col_text = sq_col_text,
	.col_blob = sq_col_blob,
	.col_bytes = sq_col_bytes,
	.col_null = sq_col_null,
	.changes = sq_changes,
};

/* Open the write transaction (readers share it: one connection). */
static int sq_begin(struct fs *s, bool write)
{
	struct fs_stmt *q = s->stmt[S_BEGIN];
	int rc;

	(void)write;
	rc = fs_step(q);
	fs_reset(q);
	return rc == FS_DONE ? 0 : rc;
}

/* Commit; the blob handle must not outlive the transaction. */
static int sq_commit(struct fs *s)
{
	struct sq *p = SQ(s);
	struct fs_stmt *q = s->stmt[S_COMMIT];
	int rc;

	sqlite3_blob_close(p->blob);
	p->blob = NULL;
	rc = fs_step(q);
	fs_reset(q);
	if (rc != FS_DONE) {
		/* On an I/O error SQLite may have rolled back already. */
		if (sqlite3_get_autocommit(p->db))
			s->in_txn = false;
		return rc < 0 ? rc : -EIO;
	}
	p->unsynced = true;
	return 0;
}

static void sq_rollback(struct fs *s)
{
	struct sq *p = SQ(s);

	sqlite3_blob_close(p->blob);
	p->blob = NULL;
	sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
}

/*
 * After a commit, for fsync: sync the WAL file. Ordinary commits run
 * with synchronous=NORMAL and do not sync (they survive a crash of the
 * process, not of the machine); syncing the WAL makes every commit so
 * far durable, without a checkpoint.
 */
static int sq_sync(struct fs *s)
{
	struct sq *p = SQ(s);
	sqlite3_file *wal = NULL;
	int rc;

	if (!p->unsynced)
		return 0;
	rc = sqlite3_file_control(p->db, "main", SQLITE_FCNTL_JOURNAL_POINTER,
				  &wal);
	if (rc == SQLITE_OK && wal && wal->pMethods)
		rc = wal->pMethods->xSync(wal, SQLITE_SYNC_FULL);
	if (rc != SQLITE_OK)
		return sq_err(p, rc);
	p->unsynced = false;
	return 0;
}

/* Space is the space of the file system that holds the database. */
static int sq_statfs(struct fs *s, struct statvfs *st)
{
	return statvfs(SQ(s)->dir, st) ? -errno : 0;
}

/* Bytes of free pages inside the database file (reused before it grows). */
static uint64_t free_pages(struct fs *s)
{
	struct fs_stmt *q = s->stmt[S_FREELIST];
	uint64_t n = 0;

	if (fs_step(q) == FS_ROW)
		n = fs_col_int(q, 0);
	fs_reset(q);
	return n;
}

/*
 * Before storing more bytes: is there room for them and for the open
 * transaction's in the WAL, on top of what the WAL file already holds,
 * and then in the database (free pages first)? If not, commit, copy the
 * WAL into the database and empty it, and look again; -ENOSPC if there
 * still is not room. Running out of space inside SQLite would roll back
 * the whole open transaction instead.
 */
static int sq_make_room(struct fs *s, uint64_t bytes)
{
	struct sq *p = SQ(s);
	uint64_t pending, need, inside, have;
	char path[PATH_MAX];
	struct statvfs v;
	struct stat wal;
	int r;

	/* Far from full: look again only once a third of the slack is used
	 * (data takes room twice, in the WAL and then in the database). */
	p->room -= (int64_t)(3 * bytes);
	if (p->room > 0)
		return 0;
	for (int pass = 0; pass < 2; pass++) {
		if (statvfs(s->path, &v))
			return 0;
		/* Pages take up to 5/4 of the bytes they hold (cells, index
		 * and b-tree pages); 8 MiB stay for metadata changes. */
		pending = (s->txn_bytes + bytes) / 4 * 5;
		inside = free_pages(s);
		need = pending + (8u << 20);
		if (pending > inside)
			need += pending - inside;
		snprintf(path, sizeof(path), "%s-wal", s->path);
		if (!stat(path, &wal))
			need += wal.st_size;
		have = (uint64_t)v.f_bavail * v.f_frsize;
		if (have >= need) {
			p->room = (int64_t)(have - need);
			return 0;
		}
		if (pass == 0) {
			r = fs_commit(s);
			if (!r)
				sqlite3_wal_checkpoint_v2(
					p->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
					NULL, NULL);
			if (!r)
				r = sq_begin(s, true);
			if (r)
				return r;
			s->in_txn = true;
			s->txn_start = fs_mono_ms();
			s->txn_bytes = 0;
			pthread_cond_signal(&s->wake); /* for the idle commit */
		}
	}
	return -ENOSPC;
}

/*
 * Read n bytes at off of the chunk in row rowid straight into dst, with
 * one blob handle that is moved from row to row.
 */
static int sq_blob_read(struct fs *s, int64_t rowid, char *dst, int n, int off)
{
	struct sq *p = SQ(s);
	int rc = SQLITE_ERROR;

	if (p->blob)
		rc = sqlite3_blob_reopen(p->blob, rowid);
	if (rc != SQLITE_OK) {
		sqlite3_blob_close(p->blob);
		p->blob = NULL;
		rc = sqlite3_blob_open(p->db, "main", "chunks", "data", rowid,
				       0, &p->blob);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_blob_read(p->blob, dst, n, off);
	return rc == SQLITE_OK ? 0 : sq_err(p, rc);
}

/*
 * After each commit: ask the background thread to copy the WAL back into
 * the database once it has grown, so the thread serving requests does
 * not pay for it. If that thread falls far behind, checkpoint here.
 */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct sq *p = arg;

	if (frames >= SQ_CKPT_INLINE)
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE,
					  NULL, NULL);
	else if (frames >= SQ_CKPT_FRAMES && !p->want_ckpt) {
		p->want_ckpt = true;
		pthread_cond_signal(&p->fs->wake);
	}
	return SQLITE_OK;
}

/*
 * The background thread: commits so that a burst of changes does not
 * sit in an open transaction once the drive goes quiet, and runs WAL
 * checkpoints on its own connection, outside the lock, while requests
 * are being served on the other CPU.
 */
static void *committer(void *arg)
{
	struct sq *p = arg;
	struct fs *s = p->fs;
	struct timespec ts;

	pthread_mutex_lock(&s->lock);
	while (!p->stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += SQ_IDLE_MS * 1000000L;
		if (ts.tv_nsec >= FS_NS) {
			ts.tv_sec++;
			ts.tv_nsec -= FS_NS;
		}
		/* Idle with nothing open: sleep until a begin wakes us. */
		if (!s->in_txn && !p->want_ckpt)
			pthread_cond_wait(&s->wake, &s->lock);
		else if (!p->want_ckpt)
			pthread_cond_timedwait(&s->wake, &s->lock, &ts);
		if (s->in_txn && (fs_mono_ms() - s->last_op >= SQ_IDLE_MS ||
				  fs_mono_ms() - s->txn_start >= SQ_COMMIT_MS))
			fs_commit(s);
		if (p->want_ckpt && !p->stop) {
			p->want_ckpt = false;
			pthread_mutex_unlock(&s->lock);
			sqlite3_wal_checkpoint_v2(p->ckpt_db, NULL,
						  SQLITE_CHECKPOINT_PASSIVE,
						  NULL, NULL);
			pthread_mutex_lock(&s->lock);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Stop the committer, commit what is left, close the database. */
static void sq_close(struct fs *s)
{
	struct sq *p = SQ(s);

	if (!p)
		return;
	if (p->committer_running) {
		pthread_mutex_lock(&s->lock);
		p->stop = true;
		pthread_cond_signal(&s->wake);
		pthread_mutex_unlock(&s->lock);
		pthread_join(p->committer, NULL);
	}
	/* Closing the last connection checkpoints and removes the WAL. */
	sqlite3_close(p->ckpt_db);
	sqlite3_blob_close(p->blob);
	p->blob = NULL;
	if (p->db) {
		fs_commit(s);
		for (int i = 0; i < S_COUNT; i++) {
			if (s->stmt[i])
				sqlite3_finalize(Q(s->stmt[i]));
			free(s->stmt[i]);
		}
		sqlite3_close(p->db);
	}
	if (p->lock_fd >= 0)
		close(p->lock_fd);
	free(p->dir);
	free(p);
	s->priv = NULL;
}

static const struct fs_backend sq_backend = {
	.kind = "sqlite",
	.batch = true,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.sync = sq_sync,
	.make_room = sq_make_room,
	.blob_read = sq_blob_read,
	.statfs = sq_statfs,
	.name_gone = sq_sqlar_drop,
	.renaming = sq_sqlar_rename,
	.precommit = sq_sqlar_flush,
	.write_extra = sq_sqlar_bytes,
	.close = sq_close,
};

static const struct vd_ops sq_ops = {
	/* QUICK: every callback runs under s->lock, so one thread per CPU
	 * (io_uring) loses no concurrency, and saves a wakeup per request. */
	.flags = VD_OPS_THREAD_SAFE | VD_OPS_EXCLUSIVE | VD_OPS_QUICK |
		 VD_OPS_CACHE,
	FS_OPS_CALLBACKS,
};

static int exec_sql(struct sq *s, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(err, errlen, "%s: %s", s->fs->path,
		 msg ? msg : "SQLite error");
	sqlite3_free(msg);
	return -EIO;
}

/* One integer from a query, or -1. */
static int64_t query_int(struct sq *s, const char *sql)
{
	sqlite3_stmt *q;
	int64_t v = -1;

	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(q) == SQLITE_ROW &&
	    sqlite3_column_type(q, 0) == SQLITE_INTEGER)
		v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return v;
}

/*
 * Is the open file a vdrive database (1), an empty one to set up (0),
 * or something else (-EINVAL, with a message)? Reads only.
 */
static int check_format(struct sq *s, char *err, size_t errlen)
{
	sqlite3_stmt *q = NULL;
	int64_t count = 0;
	int rc, r = -EINVAL;

	rc = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_schema", -1,
				&q, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(q);
		if (rc == SQLITE_ROW) {
			count = sqlite3_column_int64(q, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s is not an SQLite database (%s)",
			 s->fs->path, sqlite3_errstr(rc));
		return -EINVAL;
	}
	if (count == 0)
		return 0;
	rc = sqlite3_prepare_v2(s->db,
				"SELECT value FROM meta WHERE key='format'", -1,
				&q, NULL);
	if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW &&
	    !strcmp((const char *)sqlite3_column_text(q, 0), SQ_FORMAT))
		r = 1;
	sqlite3_finalize(q);
	if (r != 1) {
		snprintf(err, errlen,
			 "%s is an SQLite database but not a vdrive drive "
			 "(no meta table saying format=" SQ_FORMAT ")",
			 s->fs->path);
		return -EINVAL;
	}
	if (query_int(s, "SELECT value FROM meta WHERE key='version'") >
	    SQ_VERSION) {
		snprintf(err, errlen,
			 "%s: made by a newer vdrive (format "
			 "version above %d)",
			 s->fs->path, SQ_VERSION);
		return -EINVAL;
	}
	s->fs->cs =
		query_int(s, "SELECT value FROM meta WHERE key='chunk_size'");
	if (s->fs->cs < 4096 || s->fs->cs > (16 << 20)) {
		snprintf(err, errlen, "%s: bad chunk_size in meta",
			 s->fs->path);
		return -EINVAL;
	}
	return 1;
}

/* Create the tables of a new database. */
static int create_schema(struct sq *s, char *err, size_t errlen)
{
	char *sql;
	int64_t now = fs_now_ns();
	int r;

	s->fs->cs = SQ_CHUNK;
	sql = sqlite3_mprintf(sq_schema, SQ_CHUNK);
	if (!sql)
		return -ENOMEM;
	r = exec_sql(s, "PRAGMA page_size=65536; BEGIN", err, errlen);
	if (!r)
		r = exec_sql(s, sql, err, errlen);
	sqlite3_free(sql);
	if (r)
		return r;
	sql = sqlite3_mprintf("INSERT INTO inodes(ino,mode,uid,gid,nlink,"
			      "atime,mtime,ctime,parent) VALUES(1,%d,%d,%d,2,"
			      "%lld,%lld,%lld,1); COMMIT",
			      S_IFDIR | 0755, (int)getuid(), (int)getgid(),
			      (long long)now, (long long)now, (long long)now);
	if (!sql)
		return -ENOMEM;
	r = exec_sql(s, sql, err, errlen);
	sqlite3_free(sql);
	return r;
}

/*
 * Upgrade a version 1 database in one transaction: its sqlar view, which
 * the sqlite3 shell's -A refuses, becomes a table filled from the tree.
 */
static int upgrade_v1(struct sq *s, char *err, size_t errlen)
{
	char *fill =
		sqlite3_mprintf(sq_sqlar_fill, FS_SQLAR_MAX, (int)s->fs->cs,
				(int)s->fs->cs, (int)s->fs->cs);
	int r;

	if (!fill)
		return -ENOMEM;
	r = exec_sql(
		s,
		"BEGIN IMMEDIATE; DROP VIEW IF EXISTS sqlar;" SQ_SQLAR_SCHEMA,
		err, errlen);
	if (!r)
		r = exec_sql(s, fill, err, errlen);
	if (!r)
		r = exec_sql(s,
			     "UPDATE meta SET value=2 WHERE key='version';"
			     " COMMIT",
			     err, errlen);
	if (r)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_free(fill);
	return r;
}

/* Absolute path of arg, and the folder holding it. */
static int set_paths(struct sq *s, const char *arg)
{
	char cwd[PATH_MAX];
	const char *slash;

	if (arg[0] == '/') {
		s->fs->path = strdup(arg);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		if (asprintf(&s->fs->path, "%s/%s", cwd, arg) < 0)
			s->fs->path = NULL;
	}
	if (!s->fs->path)
		return -ENOMEM;
	slash = strrchr(s->fs->path, '/');
	s->dir = slash == s->fs->path
			 ? strdup("/")
			 : strndup(s->fs->path, slash - s->fs->path);
	return s->dir ? 0 : -ENOMEM;
}

/* Make a new file's name in dir durable (SQLite syncs only its WAL's). */
static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Open the database at s->fs->path, after the checks; sets up the rest. */
static int open_db(struct sq *s, char *err, size_t errlen)
{
	int r, rc;

	rc = sqlite3_open_v2(s->fs->path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", s->fs->path,
			 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		return -EIO;
	}
	sqlite3_busy_timeout(s->db, 5000);
	r = check_format(s, err, errlen);
	if (r < 0)
		return r;
	if (r == 0) {
		r = create_schema(s, err, errlen);
		if (r)
			return r;
		sync_dir(s->dir);
	}
	r = exec_sql(s,
		     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
		     " PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;"
		     " PRAGMA secure_delete=OFF;"
		     " PRAGMA mmap_size=1073741824;"
		     " PRAGMA journal_size_limit=67108864;"
		     " PRAGMA wal_autocheckpoint=0",
		     err, errlen);
	if (r)
		return r;
	if (query_int(s, "SELECT value FROM meta WHERE key='version'") < 2) {
		r = upgrade_v1(s, err, errlen);
		if (r)
			return r;
	}
	sqlite3_wal_hook(s->db, wal_hook, s);
	rc = sqlite3_open_v2(s->fs->path, &s->ckpt_db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", s->fs->path,
			 sqlite3_errstr(rc));
		return -EIO;
	}
	sqlite3_busy_timeout(s->ckpt_db, 5000);
	/* Checkpoints must sync the database before the WAL is reused. */
	sqlite3_exec(s->ckpt_db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	for (int i = 0; i < S_COUNT; i++) {
		struct sq_stmt *q = calloc(1, sizeof(*q));

		if (!q)
			return -ENOMEM;
		q->base.ops = &sq_stmt_ops;
		q->sq = s;
		s->fs->stmt[i] = &q->base;
		rc = sqlite3_prepare_v3(s->db, sq_sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &q->q, NULL);
		if (rc != SQLITE_OK) {
			snprintf(err, errlen, "%s: %s (schema too old?)",
				 s->fs->path, sqlite3_errmsg(s->db));
			return -EINVAL;
		}
	}
	r = fs_collect_orphans(s->fs);
	if (r)
		snprintf(err, errlen, "%s: collecting orphans: %s", s->fs->path,
			 strerror(-r));
	return r;
}

/* Refuse, untouched, a file that is not an SQLite database at all. */
static int check_header(const char *path, char *err, size_t errlen)
{
	static const char magic[16] = "SQLite format 3";
	char head[16];
	struct stat st;
	ssize_t n;
	int fd;

	if (stat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is a folder, not a database file",
			 path);
		return -EISDIR;
	}
	if (st.st_size == 0)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, head, sizeof(head));
	close(fd);
	if (n != sizeof(head) || memcmp(head, magic, sizeof(magic))) {
		snprintf(err, errlen, "%s is not an SQLite database", path);
		return -EINVAL;
	}
	return 0;
}

/*
 * vd_source.open for "sqlite:PATH": refuse what is not a vdrive database
 * (untouched), create a missing one, lock it, collect orphans, start the
 * background thread.
 */
static int sq_open(const char *arg, const struct vd_ops **ops, void **data,
		   char *err, size_t errlen)
{
	struct sq *s;
	struct fs *f;
	int r;

	if (errlen)
		err[0] = '\0';
	if (!arg || !*arg) {
		snprintf(err, errlen,
			 "sqlite: needs a database file: "
			 "sqlite:PATH");
		return -EINVAL;
	}
	r = fs_new(&sq_backend, &f);
	if (r)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s) {
		fs_free(f);
		return -ENOMEM;
	}
	s->fs = f;
	f->priv = s;
	s->lock_fd = -1;
	r = set_paths(s, arg);
	if (r)
		goto fail;
	r = check_header(s->fs->path, err, errlen);
	if (r)
		goto fail;
	s->lock_fd = open(s->fs->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", s->fs->path, strerror(errno));
		goto fail;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB)) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(err, errlen, "%s is in use by another drive",
			 s->fs->path);
		goto fail;
	}
	r = open_db(s, err, errlen);
	if (r)
		goto fail;
	r = fs_alloc_buffers(f);
	if (r)
		goto fail;
	r = -pthread_create(&s->committer, NULL, committer, s);
	if (r)
		goto fail;
	s->committer_running = true;
	*ops = &sq_ops;
	*data = f;
	return 0;
fail:
	if (!*err)
		snprintf(err, errlen, "%s: %s", arg, strerror(-r));
	fs_free(f);
	return r;
}

const struct vd_source vd_source_sqlite = {
	.kind = "sqlite",
	.usage = "sqlite:PATH",
	.help = "files in an SQLite database",
	.open = sq_open,
};
