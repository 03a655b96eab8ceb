/*
 * sqlite.c - the "sqlite:PATH" source: a read-write POSIX drive whose
 * files, folders, links, owners, modes, times and extended attributes
 * live in one SQLite database file. Written only against vdrive.h.
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

#include "acl.h"
#include "sources.h"

#define SQ_FORMAT "vdrive-sqlite"
#define SQ_VERSION 2	  /* 2: a real sqlar table (1 had a view) */
#define SQ_CHUNK 131072	  /* bytes per chunk of a new database */
#define SQ_COMMIT_MS 1000 /* commit a transaction at least this often */
#define SQ_IDLE_MS 100	  /* or once the drive has been idle this long */
#define SQ_COMMIT_BYTES (64u << 20) /* or once this much was written */
/* WAL frames (64 KiB pages) that start a checkpoint in the background,
 * and that many, one in the foreground. */
#define SQ_CKPT_FRAMES 256
#define SQ_CKPT_INLINE 4096
#define SQ_SLOTS 4 /* chunks kept in memory for small writes */
#define SQ_NAME_MAX 255
#define SQ_XATTR_MAX 65536
#define SQ_OPEN_BUCKETS 256
/* Regular files up to this size keep a copy of their content in the sqlar
 * table (sqlite3 -A -x extracts them); larger ones only their attributes. */
#define SQ_SQLAR_MAX (1 << 20)
#define NS 1000000000LL

/* The prepared statements, made once when the database is opened. */
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
		  " VALUES(?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
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

/* The attributes of one inode row. Times are nanoseconds since 1970. */
struct sq_attr {
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
struct sq_slot {
	uint64_t ino; /* 0: unused */
	int64_t idx;
	int64_t len;   /* bytes of the chunk; 'used' already counts them */
	bool dirty;    /* differs from the row */
	uint64_t tick; /* last use, for eviction */
	char *buf;     /* cs bytes */
};

/* A node that is open: it outlives its last name until released. */
struct sq_open {
	uint64_t ino;
	unsigned int opens;
	bool forgotten; /* the kernel forgot it while it was open */
	struct sq_open *next;
};

struct sq {
	sqlite3 *db;
	sqlite3 *ckpt_db; /* the background thread's own connection */
	sqlite3_stmt *stmt[S_COUNT];
	sqlite3_blob *blob; /* kept open on chunks.data between reads */
	char *path;
	char *dir;   /* the folder holding the database, for statfs */
	int lock_fd; /* flock()ed: one drive per database */
	int64_t cs;  /* chunk size */
	char *buf;   /* one chunk, for read-modify-write */
	struct sq_slot slot[SQ_SLOTS];
	uint64_t tick;

	pthread_mutex_t lock; /* everything below, and the connection */
	pthread_cond_t wake;
	pthread_t committer;
	bool committer_running, stop;
	bool want_ckpt; /* the WAL has grown: checkpoint it */
	bool in_txn;
	bool unsynced;		    /* commits since the WAL was last synced */
	int64_t txn_start, last_op; /* monotonic ms */
	uint64_t txn_bytes;
	int64_t room; /* bytes make_room may let through before it looks again
		       */
	struct sq_open *open[SQ_OPEN_BUCKETS];
	/* Inodes whose sqlar rows are refreshed before the next commit
	 * (kept in order of change; sorted and deduplicated then). */
	uint64_t *dirty;
	size_t ndirty, dirty_cap;
	uint64_t dir_ino; /* during that refresh: the last folder's path */
	char *dir_path;
};

/* Nanoseconds since 1970, now. */
static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

/* Milliseconds on the monotonic clock, for commit deadlines. */
static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A timespec as nanoseconds since 1970. */
static int64_t ts_ns(const struct timespec *ts)
{
	return ts->tv_sec * NS + ts->tv_nsec;
}

/* Nanoseconds since 1970 as a timespec (tv_nsec kept non-negative). */
static struct timespec ns_ts(int64_t ns)
{
	struct timespec ts = {ns / NS, ns % NS};

	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += NS;
	}
	return ts;
}

/*
 * Turn an SQLite result code into -errno, logging the unexpected. Some
 * errors (SQLITE_FULL, I/O errors) make SQLite roll back the whole open
 * transaction: then say so, and forget the chunks held in memory, which
 * may belong to files that no longer exist.
 */
static int sq_err(struct sq *s, int rc)
{
	if (s->in_txn && sqlite3_get_autocommit(s->db)) {
		s->in_txn = false;
		for (int i = 0; i < SQ_SLOTS; i++)
			s->slot[i].ino = 0;
		s->ndirty = 0; /* the sqlar rows were rolled back too */
		fprintf(stderr,
			"sqlite:%s: %s: SQLite rolled back the transaction; "
			"changes since the last commit are lost\n",
			s->path, sqlite3_errmsg(s->db));
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
	fprintf(stderr, "sqlite:%s: %s\n", s->path, sqlite3_errmsg(s->db));
	return -EIO;
}

/* Step a statement that returns no rows, and reset it. */
static int run(struct sq *s, sqlite3_stmt *q)
{
	int rc = sqlite3_step(q);

	sqlite3_reset(q);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return sq_err(s, rc);
}

/* A prepared statement with ino bound as ?1 (every statement's key). */
static sqlite3_stmt *q_ino(struct sq *s, int id, uint64_t ino)
{
	sqlite3_stmt *q = s->stmt[id];

	sqlite3_bind_int64(q, 1, (sqlite3_int64)ino);
	return q;
}

/* Read ATTR_COLS starting at column col into a. */
static void attr_row(sqlite3_stmt *q, int col, struct sq_attr *a)
{
	a->ino = sqlite3_column_int64(q, col);
	a->mode = sqlite3_column_int64(q, col + 1);
	a->uid = sqlite3_column_int64(q, col + 2);
	a->gid = sqlite3_column_int64(q, col + 3);
	a->nlink = sqlite3_column_int64(q, col + 4);
	a->size = sqlite3_column_int64(q, col + 5);
	a->used = sqlite3_column_int64(q, col + 6);
	a->atime = sqlite3_column_int64(q, col + 7);
	a->mtime = sqlite3_column_int64(q, col + 8);
	a->ctime = sqlite3_column_int64(q, col + 9);
	a->rdev = sqlite3_column_int64(q, col + 10);
	a->parent = sqlite3_column_int64(q, col + 11);
}

/* Bind a's fields as ?2..?12 (the ino is ?1). */
static void attr_bind(sqlite3_stmt *q, const struct sq_attr *a)
{
	sqlite3_bind_int64(q, 2, a->mode);
	sqlite3_bind_int64(q, 3, a->uid);
	sqlite3_bind_int64(q, 4, a->gid);
	sqlite3_bind_int64(q, 5, a->nlink);
	sqlite3_bind_int64(q, 6, a->size);
	sqlite3_bind_int64(q, 7, a->used);
	sqlite3_bind_int64(q, 8, a->atime);
	sqlite3_bind_int64(q, 9, a->mtime);
	sqlite3_bind_int64(q, 10, a->ctime);
	sqlite3_bind_int64(q, 11, (sqlite3_int64)a->rdev);
	sqlite3_bind_int64(q, 12, (sqlite3_int64)a->parent);
}

/* Load inode ino. -ENOENT if there is no such row. */
static int get_attr(struct sq *s, uint64_t ino, struct sq_attr *a)
{
	sqlite3_stmt *q = q_ino(s, S_GET, ino);
	int rc = sqlite3_step(q);

	if (rc == SQLITE_ROW)
		attr_row(q, 0, a);
	sqlite3_reset(q);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc);
}

/*
 * Note that ino's sqlar rows must be refreshed before the next commit.
 * Refreshing once per commit, not per change, keeps a file written 4 KiB
 * at a time from rewriting its sqlar copy on every write.
 */
static int mark_dirty(struct sq *s, uint64_t ino)
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
static int put_attr(struct sq *s, const struct sq_attr *a)
{
	sqlite3_stmt *q = q_ino(s, S_PUT, a->ino);
	int r;

	attr_bind(q, a);
	r = run(s, q);
	return r ? r : mark_dirty(s, a->ino);
}

/* Find name in folder parent: its inode and the dentry's row id. */
static int lookup_name(struct sq *s, uint64_t parent, const char *name,
		       struct sq_attr *a, int64_t *rowid)
{
	sqlite3_stmt *q = q_ino(s, S_LOOKUP, parent);
	int rc;

	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		attr_row(q, 0, a);
		if (rowid)
			*rowid = sqlite3_column_int64(q, ATTR_NCOLS);
	}
	sqlite3_reset(q);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc);
}

/* Load folder ino, failing as a path walk would if it is not one. */
static int get_dir(struct sq *s, uint64_t ino, struct sq_attr *a)
{
	int r = get_attr(s, ino, a);

	if (r)
		return r;
	if (!S_ISDIR(a->mode))
		return -ENOTDIR;
	return a->nlink > 0 ? 0 : -ENOENT; /* removed while in use */
}

/* The struct stat the kernel sees for inode a. */
static void attr_stat(const struct sq *s, const struct sq_attr *a,
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

static int slots_flush(struct sq *s, uint64_t ino);
static int sqlar_flush(struct sq *s);

/* Commit the open transaction, if any, storing the chunks held in
 * memory and refreshing the sqlar rows of changed inodes first, so a
 * commit never leaves the sqlar table behind. Called with s->lock held. */
static int sq_commit(struct sq *s)
{
	int rc, flushed, r;

	if (!s->in_txn)
		return 0;
	flushed = slots_flush(s, 0);
	r = sqlar_flush(s);
	if (!flushed)
		flushed = r;
	if (!s->in_txn)
		return flushed; /* an error rolled everything back */
	sqlite3_blob_close(s->blob);
	s->blob = NULL;
	rc = sqlite3_step(s->stmt[S_COMMIT]);
	sqlite3_reset(s->stmt[S_COMMIT]);
	if (rc != SQLITE_DONE) {
		int r = sq_err(s, rc);

		/* On an I/O error SQLite may have rolled back already. */
		if (sqlite3_get_autocommit(s->db))
			s->in_txn = false;
		return r;
	}
	s->in_txn = false;
	s->unsynced = true;
	return flushed;
}

/* Open the write transaction, unless one is open. */
static int sq_begin(struct sq *s)
{
	int rc;

	if (s->in_txn)
		return 0;
	rc = sqlite3_step(s->stmt[S_BEGIN]);
	sqlite3_reset(s->stmt[S_BEGIN]);
	if (rc != SQLITE_DONE)
		return sq_err(s, rc);
	s->in_txn = true;
	s->txn_start = mono_ms();
	s->txn_bytes = 0;
	pthread_cond_signal(&s->wake);
	return 0;
}

/* Start a callback: take the lock and make sure a transaction is open. */
static int sq_enter(struct sq *s)
{
	int r;

	pthread_mutex_lock(&s->lock);
	s->last_op = mono_ms();
	r = sq_begin(s);
	if (r)
		pthread_mutex_unlock(&s->lock);
	return r;
}

/* Bytes of free pages inside the database file (reused before it grows). */
static uint64_t free_pages(struct sq *s)
{
	sqlite3_stmt *q = s->stmt[S_FREELIST];
	uint64_t n = 0;

	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
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
static int make_room(struct sq *s, uint64_t bytes)
{
	uint64_t pending, need, inside, have;
	char path[PATH_MAX];
	struct statvfs v;
	struct stat wal;
	int r;

	/* Far from full: look again only once a third of the slack is used
	 * (data takes room twice, in the WAL and then in the database). */
	s->room -= (int64_t)(3 * bytes);
	if (s->room > 0)
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
			s->room = (int64_t)(have - need);
			return 0;
		}
		if (pass == 0) {
			r = sq_commit(s);
			if (!r)
				sqlite3_wal_checkpoint_v2(
					s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
					NULL, NULL);
			if (!r)
				r = sq_begin(s);
			if (r)
				return r;
		}
	}
	return -ENOSPC;
}

/* End a callback: commit if the transaction is old or big, unlock. */
static int64_t sq_leave(struct sq *s, int64_t r)
{
	if (s->in_txn && (mono_ms() - s->txn_start >= SQ_COMMIT_MS ||
			  s->txn_bytes >= SQ_COMMIT_BYTES))
		sq_commit(s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Run one callback body between sq_enter and sq_leave. */
#define SQ_CALL(s, expr)                                                       \
	({                                                                     \
		int64_t r_ = sq_enter(s);                                      \
		if (r_ == 0)                                                   \
			r_ = sq_leave((s), (expr));                            \
		r_;                                                            \
	})

/*
 * After each commit: ask the background thread to copy the WAL back into
 * the database once it has grown, so the thread serving requests does
 * not pay for it. If that thread falls far behind, checkpoint here.
 */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct sq *s = arg;

	if (frames >= SQ_CKPT_INLINE)
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE,
					  NULL, NULL);
	else if (frames >= SQ_CKPT_FRAMES && !s->want_ckpt) {
		s->want_ckpt = true;
		pthread_cond_signal(&s->wake);
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
	struct sq *s = arg;
	struct timespec ts;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += SQ_IDLE_MS * 1000000L;
		if (ts.tv_nsec >= NS) {
			ts.tv_sec++;
			ts.tv_nsec -= NS;
		}
		/* Idle with nothing open: sleep until sq_begin() wakes us. */
		if (!s->in_txn && !s->want_ckpt)
			pthread_cond_wait(&s->wake, &s->lock);
		else if (!s->want_ckpt)
			pthread_cond_timedwait(&s->wake, &s->lock, &ts);
		if (s->in_txn && (mono_ms() - s->last_op >= SQ_IDLE_MS ||
				  mono_ms() - s->txn_start >= SQ_COMMIT_MS))
			sq_commit(s);
		if (s->want_ckpt && !s->stop) {
			s->want_ckpt = false;
			pthread_mutex_unlock(&s->lock);
			sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL,
						  SQLITE_CHECKPOINT_PASSIVE,
						  NULL, NULL);
			pthread_mutex_lock(&s->lock);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* The open-count record of ino, or NULL (made when create is set). */
static struct sq_open *open_find(struct sq *s, uint64_t ino, bool create)
{
	struct sq_open **b = &s->open[ino % SQ_OPEN_BUCKETS], *o;

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
static void open_free(struct sq *s, struct sq_open *o)
{
	struct sq_open **p = &s->open[o->ino % SQ_OPEN_BUCKETS];

	while (*p != o)
		p = &(*p)->next;
	*p = o->next;
	free(o);
}

/* Delete inode ino with its content and extended attributes. */
static int drop_inode(struct sq *s, uint64_t ino)
{
	sqlite3_stmt *q = q_ino(s, S_DROPCHUNKS, ino);
	int r;

	for (int i = 0; i < SQ_SLOTS; i++) {
		if (s->slot[i].ino == ino)
			s->slot[i].ino = 0;
	}
	sqlite3_bind_int64(q, 2, 0);
	sqlite3_bind_int64(q, 3, INT64_MAX);
	r = run(s, q);
	if (!r)
		r = run(s, q_ino(s, S_DROPXATTRS, ino));
	if (!r)
		r = run(s, q_ino(s, S_DROPINODE, ino));
	return r;
}

/* Nothing uses ino any more: delete it if it has no name left either. */
static int reap(struct sq *s, uint64_t ino)
{
	struct sq_attr a;
	int r;

	if (ino == VD_ROOT)
		return 0;
	r = get_attr(s, ino, &a);
	if (r)
		return r == -ENOENT ? 0 : r;
	return a.nlink == 0 ? drop_inode(s, ino) : 0;
}

/* Count one more open of ino. */
static int open_ref(struct sq *s, uint64_t ino)
{
	struct sq_open *o = open_find(s, ino, true);

	if (!o)
		return -ENOMEM;
	o->opens++;
	return 0;
}

/* Load chunk idx of ino into dst (cs bytes); returns its length (0: a
 * hole). */
static int64_t load_chunk_into(struct sq *s, uint64_t ino, int64_t idx,
			       char *dst)
{
	sqlite3_stmt *q = q_ino(s, S_CHUNKS, ino);
	int64_t len = 0;
	int rc;

	sqlite3_bind_int64(q, 2, idx);
	sqlite3_bind_int64(q, 3, idx);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		len = sqlite3_column_bytes(q, 1);
		if (len > s->cs)
			len = s->cs;
		if (len)
			memcpy(dst, sqlite3_column_blob(q, 1), len);
	}
	sqlite3_reset(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sq_err(s, rc);
	return len;
}

/* load_chunk_into() the scratch buffer s->buf. */
static int64_t load_chunk(struct sq *s, uint64_t ino, int64_t idx)
{
	return load_chunk_into(s, ino, idx, s->buf);
}

/* The stored length of chunk idx of ino (0: a hole). */
static int64_t chunk_len(struct sq *s, uint64_t ino, int64_t idx)
{
	sqlite3_stmt *q = q_ino(s, S_CHUNKLEN, ino);
	int64_t len = 0;
	int rc;

	sqlite3_bind_int64(q, 2, idx);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		len = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sq_err(s, rc);
	return len;
}

/* Store len bytes as chunk idx of ino (replacing what was there). */
static int put_chunk(struct sq *s, uint64_t ino, int64_t idx, const void *data,
		     int64_t len)
{
	sqlite3_stmt *q = q_ino(s, S_PUTCHUNK, ino);

	sqlite3_bind_int64(q, 2, idx);
	sqlite3_bind_blob64(q, 3, data, len, SQLITE_STATIC);
	return run(s, q);
}

/* Store a slot's chunk if it changed. */
static int slot_flush(struct sq *s, struct sq_slot *sl)
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
static int slots_flush(struct sq *s, uint64_t ino)
{
	int r = 0;

	for (int i = 0; i < SQ_SLOTS; i++) {
		struct sq_slot *sl = &s->slot[i];

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
static struct sq_slot *slot_find(struct sq *s, uint64_t ino, int64_t idx)
{
	for (int i = 0; i < SQ_SLOTS; i++) {
		if (s->slot[i].ino == ino && s->slot[i].idx == idx)
			return &s->slot[i];
	}
	return NULL;
}

/* Chunk idx of ino in a slot, loading it (and evicting another). */
static int slot_get(struct sq *s, uint64_t ino, int64_t idx,
		    struct sq_slot **out)
{
	struct sq_slot *sl = slot_find(s, ino, idx);
	int64_t len;
	int r;

	if (!sl) {
		sl = &s->slot[0];
		for (int i = 1; i < SQ_SLOTS && sl->ino; i++) {
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
static int drop_chunks(struct sq *s, struct sq_attr *a, int64_t first,
		       int64_t last)
{
	sqlite3_stmt *q = q_ino(s, S_SUMCHUNKS, a->ino);
	int rc;

	if (first > last)
		return 0;
	sqlite3_bind_int64(q, 2, first);
	sqlite3_bind_int64(q, 3, last);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		a->used -= (int64_t)sqlite3_column_double(q, 0);
	sqlite3_reset(q);
	if (rc != SQLITE_ROW)
		return sq_err(s, rc);
	q = q_ino(s, S_DROPCHUNKS, a->ino);
	sqlite3_bind_int64(q, 2, first);
	sqlite3_bind_int64(q, 3, last);
	return run(s, q);
}

/* Cut a's content to size bytes (a->size is left to the caller). */
static int cut_content(struct sq *s, struct sq_attr *a, int64_t size)
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
static int zero_range(struct sq *s, struct sq_attr *a, int64_t off, int64_t len)
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
static int alloc_range(struct sq *s, struct sq_attr *a, int64_t off,
		       int64_t len)
{
	int64_t end = off + len;

	for (int64_t idx = off / s->cs; idx <= (end - 1) / s->cs; idx++) {
		int64_t n =
			end - idx * s->cs < s->cs ? end - idx * s->cs : s->cs;
		sqlite3_stmt *q = q_ino(s, S_ALLOCCHUNK, a->ino);
		int r;

		sqlite3_bind_int64(q, 2, idx);
		sqlite3_bind_int64(q, 3, n);
		r = run(s, q);
		if (r)
			return r;
		if (sqlite3_changes(s->db))
			a->used += n;
	}
	s->txn_bytes += len;
	return 0;
}

/* Is anc the folder dir or one of the folders above it? */
static int is_ancestor(struct sq *s, uint64_t anc, uint64_t dir)
{
	struct sq_attr a;
	int r;

	for (;;) {
		if (dir == anc)
			return 1;
		if (dir == VD_ROOT)
			return 0;
		r = get_attr(s, dir, &a);
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
static int get_xattr(struct sq *s, uint64_t ino, const char *name, void **val,
		     size_t *len)
{
	sqlite3_stmt *q = q_ino(s, S_GETX, ino);
	int rc;

	*val = NULL;
	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		*len = sqlite3_column_bytes(q, 0);
		*val = malloc(*len + 1);
		if (*val && *len)
			memcpy(*val, sqlite3_column_blob(q, 0), *len);
	}
	sqlite3_reset(q);
	if (rc == SQLITE_ROW)
		return *val ? 0 : -ENOMEM;
	return rc == SQLITE_DONE ? -ENODATA : sq_err(s, rc);
}

/* Set (create or replace) xattr name of ino. */
static int put_xattr(struct sq *s, uint64_t ino, const char *name,
		     const void *val, size_t len)
{
	sqlite3_stmt *q = q_ino(s, S_PUTX, ino);

	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(q, 3, len ? val : "", len, SQLITE_STATIC);
	return run(s, q);
}

/*
 * Make a new inode in folder parent (named name, or unnamed when name
 * is NULL: an O_TMPFILE file). Sets the owner the way the kernel would
 * (setgid folders pass on their group), and the permissions from the
 * folder's default ACL when it has one, or else from the caller's umask.
 */
static int make_node(const struct vd_ctx *ctx, uint64_t parent,
		     const char *name, mode_t mode, dev_t rdev,
		     const char *target, struct sq_attr *a)
{
	struct sq *s = ctx->data;
	struct sq_attr pa, old;
	void *dflt = NULL, *access = NULL;
	size_t dflt_len = 0, access_len = 0;
	sqlite3_stmt *q;
	int r;

	if (name && strlen(name) > SQ_NAME_MAX)
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
	a->atime = a->mtime = a->ctime = now_ns();
	a->rdev = rdev;
	a->parent = S_ISDIR(mode) ? parent : 0;
	q = s->stmt[S_NEW];
	attr_bind(q, a);
	if (target)
		sqlite3_bind_blob64(q, 13, target, a->size, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 13);
	r = run(s, q);
	if (r)
		goto out;
	a->ino = sqlite3_last_insert_rowid(s->db);
	r = mark_dirty(s, a->ino);
	if (!r && access)
		r = put_xattr(s, a->ino, VD_ACL_ACCESS, access, access_len);
	if (!r && dflt && S_ISDIR(mode))
		r = put_xattr(s, a->ino, VD_ACL_DEFAULT, dflt, dflt_len);
	if (r || !name)
		goto out;
	q = q_ino(s, S_ADDNAME, parent);
	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, a->ino);
	r = run(s, q);
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
	struct sq *s = ctx->data;
	struct sq_attr a;
	int r;

	if (strlen(name) > SQ_NAME_MAX)
		return -ENAMETOOLONG;
	r = lookup_name(s, parent, name, &a, NULL);
	if (r)
		return r;
	*node = a.ino;
	attr_stat(s, &a, st);
	return 0;
}

/* vd_ops.lookup, under the lock, in the open transaction. */
static int sq_lookup(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, vd_node_t *node, struct stat *st)
{
	return SQ_CALL(ctx->data, do_lookup(ctx, parent, name, node, st));
}

/* The kernel forgot node: delete it if it has no name and no opener. */
static int do_forget(struct sq *s, vd_node_t node)
{
	struct sq_open *o = open_find(s, node, false);

	if (o && o->opens > 0) {
		o->forgotten = true;
		return 0;
	}
	return reap(s, node);
}

/* vd_ops.forget, under the lock, in the open transaction. */
static void sq_forget(void *data, vd_node_t node)
{
	(void)SQ_CALL((struct sq *)data, do_forget(data, node));
}

/* getattr: the inode row as a struct stat. */
static int do_getattr(const struct vd_ctx *ctx, vd_node_t node, struct stat *st)
{
	struct sq *s = ctx->data;
	struct sq_attr a;
	int r = get_attr(s, node, &a);

	if (!r)
		attr_stat(s, &a, st);
	return r;
}

/* vd_ops.getattr, under the lock, in the open transaction. */
static int sq_getattr(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi, struct stat *st)
{
	(void)fi;
	return SQ_CALL(ctx->data, do_getattr(ctx, node, st));
}

/* chmod: keep an access ACL in step with the new mode bits. */
static int chmod_acl(struct sq *s, uint64_t ino, mode_t mode)
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
	struct sq *s = ctx->data;
	struct sq_attr a;
	int64_t now = now_ns();
	int r = get_attr(s, node, &a);

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
static int sq_setattr(const struct vd_ctx *ctx, vd_node_t node, struct stat *st,
		      int to_set, struct vd_file *fi)
{
	(void)fi;
	return SQ_CALL(ctx->data, do_setattr(ctx, node, st, to_set));
}

/* readlink: the target, cut to fit buf; -EINVAL if not a symlink. */
static int do_readlink(struct sq *s, vd_node_t node, char *buf, size_t size)
{
	sqlite3_stmt *q = q_ino(s, S_TARGET, node);
	int rc = sqlite3_step(q);
	int r = 0;

	if (rc == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL) {
		size_t len = sqlite3_column_bytes(q, 0);

		if (size == 0) {
			r = -ERANGE;
		} else {
			if (len > size - 1)
				len = size - 1;
			memcpy(buf, sqlite3_column_blob(q, 0), len);
			buf[len] = '\0';
		}
	} else if (rc == SQLITE_ROW) {
		r = -EINVAL;
	} else {
		r = rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc);
	}
	sqlite3_reset(q);
	return r;
}

/* vd_ops.readlink, under the lock, in the open transaction. */
static int sq_readlink(const struct vd_ctx *ctx, vd_node_t node, char *buf,
		       size_t size)
{
	return SQ_CALL(ctx->data, do_readlink(ctx->data, node, buf, size));
}

/* mknod, mkdir and symlink: make the node and report it. */
static int do_new(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
		  mode_t mode, dev_t rdev, const char *target, vd_node_t *node,
		  struct stat *st)
{
	struct sq_attr a;
	int r = make_node(ctx, parent, name, mode, rdev, target, &a);

	if (r)
		return r;
	*node = a.ino;
	attr_stat(ctx->data, &a, st);
	return 0;
}

/* vd_ops.mknod, under the lock, in the open transaction. */
static int sq_mknod(const struct vd_ctx *ctx, vd_node_t parent,
		    const char *name, mode_t mode, dev_t rdev, vd_node_t *node,
		    struct stat *st)
{
	if (S_ISDIR(mode) || S_ISLNK(mode))
		return -EINVAL;
	if (!(mode & S_IFMT))
		mode |= S_IFREG;
	return SQ_CALL(ctx->data,
		       do_new(ctx, parent, name, mode, rdev, NULL, node, st));
}

/* vd_ops.mkdir, under the lock, in the open transaction. */
static int sq_mkdir(const struct vd_ctx *ctx, vd_node_t parent,
		    const char *name, mode_t mode, vd_node_t *node,
		    struct stat *st)
{
	mode = S_IFDIR | (mode & 07777);
	return SQ_CALL(ctx->data,
		       do_new(ctx, parent, name, mode, 0, NULL, node, st));
}

/* vd_ops.symlink, under the lock, in the open transaction. */
static int sq_symlink(const struct vd_ctx *ctx, const char *target,
		      vd_node_t parent, const char *name, vd_node_t *node,
		      struct stat *st)
{
	if (strlen(target) >= PATH_MAX)
		return -ENAMETOOLONG;
	return SQ_CALL(ctx->data, do_new(ctx, parent, name, S_IFLNK | 0777, 0,
					 target, node, st));
}

/*
 * The sqlar path of name in folder parent ("a/b/name"), malloc'd into
 * *path; -ENOENT if the folder is no longer reachable from the root.
 */
static int dentry_path(struct sq *s, uint64_t parent, const char *name,
		       char **path)
{
	sqlite3_stmt *q = q_ino(s, S_PATH, parent);
	int rc;

	*path = NULL;
	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		*path = strdup((const char *)sqlite3_column_text(q, 0));
	sqlite3_reset(q);
	if (rc == SQLITE_ROW)
		return *path ? 0 : -ENOMEM;
	return rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc);
}

/* Run one of the sqlar statements on paths from and (unless NULL) to. */
static int sqlar_run(struct sq *s, int id, const char *from, const char *to)
{
	sqlite3_stmt *q = s->stmt[id];

	sqlite3_bind_text(q, 1, from, -1, SQLITE_STATIC);
	if (to)
		sqlite3_bind_text(q, 2, to, -1, SQLITE_STATIC);
	return run(s, q);
}

/* The sqlar row of name in folder parent goes with the name. */
static int sqlar_drop(struct sq *s, uint64_t parent, const char *name)
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
static int sqlar_move(struct sq *s, const char *from, const char *to, bool tree)
{
	int r = sqlar_run(s, S_SQLARMOVE, from, to);

	if (!r && tree)
		r = sqlar_run(s, S_SQLARTREE, from, to);
	return r;
}

/*
 * Take name away from node a (found at dentry rowid in folder pa).
 * A folder loses its last link and its parent's ".." link; the inode
 * itself is deleted later, when nothing uses it (reap).
 */
static int drop_name(struct sq *s, struct sq_attr *pa, struct sq_attr *a,
		     int64_t rowid, int64_t now)
{
	int r = run(s, q_ino(s, S_DELNAME, rowid));

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
static int has_child(struct sq *s, uint64_t ino)
{
	sqlite3_stmt *q = q_ino(s, S_HASCHILD, ino);
	int rc = sqlite3_step(q);

	sqlite3_reset(q);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : sq_err(s, rc);
}

/* unlink (dir false) and rmdir (dir true). */
static int do_remove(struct sq *s, vd_node_t parent, const char *name, bool dir)
{
	struct sq_attr pa, a;
	int64_t rowid, now = now_ns();
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
	r = sqlar_drop(s, parent, name);
	if (!r)
		r = drop_name(s, &pa, &a, rowid, now);
	if (r)
		return r;
	pa.mtime = pa.ctime = now;
	return put_attr(s, &pa);
}

/* vd_ops.unlink, under the lock, in the open transaction. */
static int sq_unlink(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name)
{
	return SQ_CALL(ctx->data, do_remove(ctx->data, parent, name, false));
}

/* vd_ops.rmdir, under the lock, in the open transaction. */
static int sq_rmdir(const struct vd_ctx *ctx, vd_node_t parent,
		    const char *name)
{
	return SQ_CALL(ctx->data, do_remove(ctx->data, parent, name, true));
}

/* Point dentry rowid at inode ino (one half of RENAME_EXCHANGE). */
static int retarget(struct sq *s, int64_t rowid, uint64_t ino)
{
	sqlite3_stmt *q = q_ino(s, S_RETARGET, rowid);

	sqlite3_bind_int64(q, 2, ino);
	return run(s, q);
}

/*
 * Swap two names (RENAME_EXCHANGE). Folders that change parent move
 * their ".." link along.
 */
static int exchange(struct sq *s, struct sq_attr *pa, struct sq_attr *npa,
		    struct sq_attr *sa, int64_t srow, struct sq_attr *da,
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
 * The sqlar side of a rename: the source's rows (a folder's whole tree)
 * take the new path; a replaced name's row goes, or with exchange the
 * two swap (through a path no name can have: it starts with '/').
 * Called before or after the dentries change: parents' paths are the
 * same either way.
 */
static int sqlar_rename(struct sq *s, uint64_t parent, const char *name,
			uint64_t newparent, const char *newname, bool dir,
			bool exists, bool exchange, bool dstdir)
{
	char *from = NULL, *to = NULL, *tmp = NULL;
	int r = dentry_path(s, parent, name, &from);

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
 * rename with rename(2)'s rules, plus RENAME_NOREPLACE and
 * RENAME_EXCHANGE. A replaced name's inode loses a link and is deleted
 * later, when nothing uses it (reap).
 */
static int do_rename(struct sq *s, vd_node_t parent, const char *name,
		     vd_node_t newparent, const char *newname,
		     unsigned int flags)
{
	struct sq_attr pbuf, npbuf, sa, da;
	struct sq_attr *pa = &pbuf, *npa = parent == newparent ? pa : &npbuf;
	int64_t srow, drow, now = now_ns();
	bool exists;
	int r;

	if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) ||
	    flags == (RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if (strlen(newname) > SQ_NAME_MAX)
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
			r = sqlar_rename(s, parent, name, newparent, newname,
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
		r = sqlar_rename(s, parent, name, newparent, newname,
				 S_ISDIR(sa.mode), exists, false, false);
		if (!r && exists)
			r = drop_name(s, npa, &da, drow, now);
		if (!r) {
			sqlite3_stmt *q = q_ino(s, S_MOVE, srow);

			sqlite3_bind_int64(q, 2, newparent);
			sqlite3_bind_text(q, 3, newname, -1, SQLITE_STATIC);
			r = run(s, q);
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
	pa->mtime = pa->ctime = npa->mtime = npa->ctime = now;
	r = put_attr(s, pa);
	if (!r && npa != pa)
		r = put_attr(s, npa);
	return r;
}

/* vd_ops.rename, under the lock, in the open transaction. */
static int sq_rename(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, vd_node_t newparent, const char *newname,
		     unsigned int flags)
{
	return SQ_CALL(ctx->data, do_rename(ctx->data, parent, name, newparent,
					    newname, flags));
}

/* link: one more name for a file (also gives a tmpfile its first). */
static int do_link(struct sq *s, vd_node_t node, vd_node_t newparent,
		   const char *newname, struct stat *st)
{
	struct sq_attr a, pa, old;
	sqlite3_stmt *q;
	int r;

	if (strlen(newname) > SQ_NAME_MAX)
		return -ENAMETOOLONG;
	r = get_attr(s, node, &a);
	if (!r && S_ISDIR(a.mode))
		r = -EPERM;
	if (!r)
		r = get_dir(s, newparent, &pa);
	if (r)
		return r;
	r = lookup_name(s, newparent, newname, &old, NULL);
	if (r != -ENOENT)
		return r ? r : -EEXIST;
	q = q_ino(s, S_ADDNAME, newparent);
	sqlite3_bind_text(q, 2, newname, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, a.ino);
	r = run(s, q);
	if (r)
		return r;
	a.nlink++;
	a.ctime = pa.mtime = pa.ctime = now_ns();
	r = put_attr(s, &a);
	if (!r)
		r = put_attr(s, &pa);
	if (!r)
		attr_stat(s, &a, st);
	return r;
}

/* vd_ops.link, under the lock, in the open transaction. */
static int sq_link(const struct vd_ctx *ctx, vd_node_t node,
		   vd_node_t newparent, const char *newname, struct stat *st)
{
	return SQ_CALL(ctx->data,
		       do_link(ctx->data, node, newparent, newname, st));
}

/* open: count the opener; O_TRUNC arrives here (atomic_o_trunc). */
static int do_open(struct sq *s, vd_node_t node, struct vd_file *fi)
{
	struct sq_attr a;
	int r = get_attr(s, node, &a);

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
		a.mtime = a.ctime = now_ns();
		r = put_attr(s, &a);
		if (r)
			return r;
	}
	fi->fh = 0;
	return open_ref(s, node);
}

/* vd_ops.open, under the lock, in the open transaction. */
static int sq_open_file(const struct vd_ctx *ctx, vd_node_t node,
			struct vd_file *fi)
{
	return SQ_CALL(ctx->data, do_open(ctx->data, node, fi));
}

/*
 * Read n bytes at off of the chunk in row rowid straight into dst, with
 * one blob handle that is moved from row to row.
 */
static int blob_read(struct sq *s, int64_t rowid, char *dst, int n, int off)
{
	int rc = SQLITE_ERROR;

	if (s->blob)
		rc = sqlite3_blob_reopen(s->blob, rowid);
	if (rc != SQLITE_OK) {
		sqlite3_blob_close(s->blob);
		s->blob = NULL;
		rc = sqlite3_blob_open(s->db, "main", "chunks", "data", rowid,
				       0, &s->blob);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_blob_read(s->blob, dst, n, off);
	return rc == SQLITE_OK ? 0 : sq_err(s, rc);
}

/* Copy [off, off+size) of a's content into buf; holes read as zeros. */
static int read_content(struct sq *s, const struct sq_attr *a, char *buf,
			size_t size, off_t off)
{
	sqlite3_stmt *q;
	int64_t end, done = off; /* buf is final up to done */
	int rc, r = 0;

	if (off >= a->size)
		return 0;
	if ((int64_t)size > a->size - off)
		size = a->size - off;
	if (size == 0)
		return 0;
	end = off + size;
	q = q_ino(s, S_CHUNKROWS, a->ino);
	sqlite3_bind_int64(q, 2, off / s->cs);
	sqlite3_bind_int64(q, 3, (end - 1) / s->cs);
	while (!r && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		int64_t base = sqlite3_column_int64(q, 0) * s->cs;
		int64_t len = sqlite3_column_int64(q, 2);
		int64_t from = off > base ? off - base : 0;
		int64_t to = end - base < len ? end - base : len;

		if (from >= to)
			continue;
		if (base + from > done)
			memset(buf + (done - off), 0, base + from - done);
		r = blob_read(s, sqlite3_column_int64(q, 1),
			      buf + (base + from - off), (int)(to - from),
			      (int)from);
		done = base + to;
	}
	sqlite3_reset(q);
	if (r)
		return r;
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return sq_err(s, rc);
	if (done < end)
		memset(buf + (done - off), 0, end - done);
	return (int)size;
}

/*
 * The sqlar path of folder ino ("" for the root), for the refresh before
 * a commit: files of one folder come together (new inodes get adjacent
 * numbers), so the last folder's path is kept. -ENOENT if the folder is
 * no longer reachable from the root.
 */
static int folder_path(struct sq *s, uint64_t ino, const char **path)
{
	sqlite3_stmt *q;
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
	q = q_ino(s, S_PATHS, ino);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		s->dir_path = strdup((const char *)sqlite3_column_text(q, 0));
	sqlite3_reset(q);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc);
	if (!s->dir_path)
		return -ENOMEM;
	s->dir_ino = ino;
	*path = s->dir_path;
	return 0;
}

/*
 * Write the sqlar rows of inode ino, one per name, from its inode row:
 * mode, mtime in whole seconds, size, and as data the content of a
 * regular file up to SQ_SQLAR_MAX bytes (stored, not compressed:
 * sz = length(data)), a symlink's target, or NULL (folders and larger
 * files). Fifos, sockets and devices have no rows. The slots must have
 * been stored.
 */
static int sqlar_refresh(struct sq *s, uint64_t ino)
{
	sqlite3_stmt *q, *put = s->stmt[S_SQLARPUT];
	struct sq_attr a;
	char *data = NULL;
	bool has_data = false;
	int rc = SQLITE_DONE, r;

	if (ino == VD_ROOT)
		return 0;
	r = get_attr(s, ino, &a);
	if (r)
		return r == -ENOENT ? 0 : r;
	if (a.nlink == 0 ||
	    (!S_ISREG(a.mode) && !S_ISDIR(a.mode) && !S_ISLNK(a.mode)))
		return 0;
	if ((S_ISREG(a.mode) && a.size <= SQ_SQLAR_MAX) || S_ISLNK(a.mode)) {
		data = malloc(a.size + 1);
		if (!data)
			return -ENOMEM;
		if (S_ISREG(a.mode))
			r = read_content(s, &a, data, a.size, 0);
		else
			r = do_readlink(s, ino, data, a.size + 1);
		if (r < 0)
			goto out;
		has_data = true;
	}
	sqlite3_bind_int64(put, 2, a.mode);
	sqlite3_bind_int64(put, 3, ns_ts(a.mtime).tv_sec);
	sqlite3_bind_int64(put, 4, S_ISDIR(a.mode) ? 0 : a.size);
	if (has_data)
		sqlite3_bind_blob64(put, 5, data, a.size, SQLITE_STATIC);
	else
		sqlite3_bind_null(put, 5);
	r = 0;
	q = q_ino(s, S_NAMES, ino);
	while (!r && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(q, 1);
		const char *dir = "";
		char *path;

		r = folder_path(s, sqlite3_column_int64(q, 0), &dir);
		if (r) {
			r = r == -ENOENT ? 0 : r;
			continue;
		}
		path = *dir ? sqlite3_mprintf("%s/%s", dir, name)
			    : sqlite3_mprintf("%s", name);
		if (!path) {
			r = -ENOMEM;
			break;
		}
		sqlite3_bind_text(put, 1, path, -1, sqlite3_free);
		r = run(s, put);
	}
	sqlite3_reset(q);
	if (!r && rc != SQLITE_DONE)
		r = sq_err(s, rc);
out:
	sqlite3_bind_null(put, 5); /* data is freed */
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
static int sqlar_flush(struct sq *s)
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

/* read: store the file's slots first, then read its chunks. */
static int do_read(struct sq *s, vd_node_t node, char *buf, size_t size,
		   off_t off)
{
	struct sq_attr a;
	int r = get_attr(s, node, &a);

	if (r)
		return r;
	if (S_ISDIR(a.mode))
		return -EISDIR;
	r = slots_flush(s, node);
	return r ? r : read_content(s, &a, buf, size, off);
}

/* vd_ops.read, under the lock, in the open transaction. */
static int sq_read(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
		   char *buf, size_t size, off_t off)
{
	(void)fi;
	return SQ_CALL(ctx->data, do_read(ctx->data, node, buf, size, off));
}

/*
 * Write size bytes at off into a's chunks (a->size and a->used follow).
 * A chunk the write covers from its start to its end, or to the end of
 * the file, is stored as given; others are read, patched and stored.
 */
static int write_content(struct sq *s, struct sq_attr *a, const char *buf,
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
			struct sq_slot *sl = slot_find(s, a->ino, idx);

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
			struct sq_slot *sl = NULL;

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
 * The bytes the sqlar copy of file a adds to the transaction when bytes
 * are written up to end: a small file's whole copy is rewritten at the
 * commit, so its full size counts, once per run of writes to it (it is
 * then the last inode marked dirty); later writes in the run count what
 * they add. make_room() and the commit size see them, so the refresh
 * before a commit does not run out of disk inside SQLite.
 */
static int64_t sqlar_bytes(struct sq *s, const struct sq_attr *a, int64_t end,
			   int64_t bytes)
{
	if (!S_ISREG(a->mode) || a->size > SQ_SQLAR_MAX || end > SQ_SQLAR_MAX)
		return 0;
	if (s->ndirty && s->dirty[s->ndirty - 1] == a->ino)
		return bytes;
	return end > a->size ? end : a->size;
}

/*
 * write. kill_priv: the writer may not keep set-id bits (not root); the
 * kernel clears them itself except on direct_io writes, so do it here as
 * ext4 would: set-user-ID always, set-group-ID when group-executable.
 */
static int do_write(struct sq *s, vd_node_t node, const char *buf, size_t size,
		    off_t off, bool kill_priv)
{
	struct sq_attr a;
	int64_t twice;
	int r;

	if (off < 0 || (int64_t)size > INT64_MAX - off)
		return -EFBIG;
	r = get_attr(s, node, &a);
	if (r)
		return r;
	if (size == 0)
		return 0;
	twice = sqlar_bytes(s, &a, off + size, size);
	r = make_room(s, size + twice);
	if (r)
		return r;
	r = write_content(s, &a, buf, size, off);
	if (r)
		return r;
	a.mtime = a.ctime = now_ns();
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
static int sq_write(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, const char *buf, size_t size, off_t off)
{
	return SQ_CALL(ctx->data, do_write(ctx->data, node, buf, size, off,
					   ctx->uid != 0 && !fi->writepage));
}

#define SQ_COPY_MAX (16 << 20) /* bytes per copy_file_range call */

/*
 * copy_file_range: copy inside the drive, so the data never crosses into
 * the kernel and back. At most SQ_COPY_MAX bytes per call (callers loop).
 */
static int64_t do_copy(struct sq *s, vd_node_t in, off_t off_in, vd_node_t out,
		       off_t off_out, size_t len, int flags)
{
	struct sq_attr ain, aout, *src = &ain, *dst = in == out ? &ain : &aout;
	int64_t done = 0, n, twice;
	char *buf;
	int r;

	if (flags)
		return -EINVAL;
	if (off_in < 0 || off_out < 0)
		return -EINVAL;
	r = get_attr(s, in, src);
	if (!r && dst != src)
		r = get_attr(s, out, dst);
	if (r)
		return r;
	if (!S_ISREG(src->mode) || !S_ISREG(dst->mode))
		return -EINVAL;
	if (off_in >= src->size)
		return 0;
	if (len > (size_t)(src->size - off_in))
		len = src->size - off_in;
	if (len > SQ_COPY_MAX)
		len = SQ_COPY_MAX;
	if ((int64_t)len > INT64_MAX - off_out)
		return -EFBIG;
	if (in == out && off_in < off_out + (off_t)len &&
	    off_out < off_in + (off_t)len)
		return -EINVAL; /* overlapping ranges of one file */
	twice = sqlar_bytes(s, dst, off_out + len, len);
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
			r = read_content(s, src, buf, n, off_in + done);
		if (r > 0)
			r = write_content(s, dst, buf, r, off_out + done);
		if (r)
			break;
		done += n;
	}
	free(buf);
	if (r && !done)
		return r;
	dst->mtime = dst->ctime = now_ns();
	r = put_attr(s, dst);
	if (r)
		return r;
	s->txn_bytes += done + twice;
	return done;
}

/* vd_ops.copy_file_range, under the lock, in the open transaction. */
static int64_t sq_copy_file_range(const struct vd_ctx *ctx, vd_node_t in,
				  struct vd_file *fi_in, off_t off_in,
				  vd_node_t out, struct vd_file *fi_out,
				  off_t off_out, size_t len, int flags)
{
	(void)fi_in, (void)fi_out;
	return SQ_CALL(ctx->data, do_copy(ctx->data, in, off_in, out, off_out,
					  len, flags));
}

/* Last close: delete the node if the kernel forgot it while open. */
static int do_release(struct sq *s, vd_node_t node)
{
	struct sq_open *o = open_find(s, node, false);
	bool forgotten;

	if (!o || --o->opens > 0)
		return 0;
	forgotten = o->forgotten;
	open_free(s, o);
	return forgotten ? reap(s, node) : 0;
}

/* vd_ops.release, under the lock, in the open transaction. */
static int sq_release(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi)
{
	(void)fi;
	return SQ_CALL(ctx->data, do_release(ctx->data, node));
}

/*
 * fsync and fsyncdir: commit, then sync the WAL file. Ordinary commits
 * run with synchronous=NORMAL and do not sync (they survive a crash of
 * the process, not of the machine); syncing the WAL makes every commit
 * so far durable, without a checkpoint.
 */
static int do_sync(struct sq *s)
{
	sqlite3_file *wal = NULL;
	int r, rc;

	pthread_mutex_lock(&s->lock);
	r = sq_commit(s);
	if (!r && s->unsynced) {
		rc = sqlite3_file_control(s->db, "main",
					  SQLITE_FCNTL_JOURNAL_POINTER, &wal);
		if (rc == SQLITE_OK && wal && wal->pMethods)
			rc = wal->pMethods->xSync(wal, SQLITE_SYNC_FULL);
		if (rc == SQLITE_OK)
			s->unsynced = false;
		else
			r = sq_err(s, rc);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* vd_ops.fsync: commit everything (see do_sync). */
static int sq_fsync(const struct vd_ctx *ctx, vd_node_t node, int datasync,
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
static int do_readdir(struct sq *s, vd_node_t node, off_t off, vd_fill_fn fill,
		      void *buf)
{
	struct sq_attr a;
	struct stat st;
	sqlite3_stmt *q;
	int rc, r = get_attr(s, node, &a);

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
	q = q_ino(s, S_LIST, node);
	sqlite3_bind_int64(q, 2, off < 2 ? 0 : off - 2);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		int64_t rowid = sqlite3_column_int64(q, 0);
		const char *name = (const char *)sqlite3_column_text(q, 1);

		attr_row(q, 2, &a);
		attr_stat(s, &a, &st);
		if (fill(buf, name, a.ino, &st, rowid + 2))
			break;
	}
	sqlite3_reset(q);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return sq_err(s, rc);
	return 0;
}

/*
 * vd_ops.opendir: let the kernel keep listings across opens. Every
 * change comes through the drive, and the kernel drops a folder's cached
 * listing when the folder changes.
 */
static int sq_opendir(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi)
{
	(void)ctx, (void)node;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	return 0;
}

/* vd_ops.readdir, under the lock, in the open transaction. */
static int sq_readdir(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi, off_t off, vd_fill_fn fill, void *buf)
{
	(void)fi;
	return SQ_CALL(ctx->data, do_readdir(ctx->data, node, off, fill, buf));
}

/* vd_ops.fsyncdir: commit everything (see do_sync). */
static int sq_fsyncdir(const struct vd_ctx *ctx, vd_node_t node, int datasync,
		       struct vd_file *fi)
{
	(void)node, (void)datasync, (void)fi;
	return do_sync(ctx->data);
}

/* Space is the space of the file system that holds the database. */
static int sq_statfs(const struct vd_ctx *ctx, vd_node_t node,
		     struct statvfs *st)
{
	struct sq *s = ctx->data;

	(void)node;
	if (statvfs(s->dir, st))
		return -errno;
	st->f_namemax = SQ_NAME_MAX;
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
static int touch_ctime(struct sq *s, uint64_t ino)
{
	struct sq_attr a;
	int r = get_attr(s, ino, &a);

	if (r)
		return r;
	a.ctime = now_ns();
	return put_attr(s, &a);
}

/*
 * Setting an access ACL sets the mode bits it stands for (the kernel
 * leaves that to FUSE servers), and one that says no more than the mode
 * bits is not kept, as posix_acl_update_mode() does.
 */
static int set_access_acl(struct sq *s, vd_node_t node, const char *value,
			  size_t size, bool had)
{
	struct sq_attr a;
	mode_t perm;
	int extended, r;

	r = vd_acl_mode(value, size, &perm, &extended);
	if (!r)
		r = get_attr(s, node, &a);
	if (r)
		return r;
	if (extended) {
		r = put_xattr(s, node, VD_ACL_ACCESS, value, size);
	} else if (had) {
		sqlite3_stmt *q = q_ino(s, S_DELX, node);

		sqlite3_bind_text(q, 2, VD_ACL_ACCESS, -1, SQLITE_STATIC);
		r = run(s, q);
	}
	if (r)
		return r;
	a.mode = (a.mode & ~(mode_t)0777) | perm;
	a.ctime = now_ns();
	return put_attr(s, &a);
}

/* setxattr with XATTR_CREATE / XATTR_REPLACE; bumps ctime. */
static int do_setxattr(struct sq *s, vd_node_t node, const char *name,
		       const char *value, size_t size, int flags)
{
	void *old;
	size_t len;
	int r;

	if (strlen(name) > XATTR_NAME_MAX || !*name)
		return -ERANGE;
	if (size > SQ_XATTR_MAX)
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
static int sq_setxattr(const struct vd_ctx *ctx, vd_node_t node,
		       const char *name, const char *value, size_t size,
		       int flags)
{
	return SQ_CALL(ctx->data,
		       do_setxattr(ctx->data, node, name, value, size, flags));
}

/* getxattr: size 0 asks for the size; -ERANGE if it does not fit. */
static int do_getxattr(struct sq *s, vd_node_t node, const char *name,
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
static int sq_getxattr(const struct vd_ctx *ctx, vd_node_t node,
		       const char *name, char *value, size_t size)
{
	return SQ_CALL(ctx->data,
		       do_getxattr(ctx->data, node, name, value, size));
}

/* listxattr: NUL-separated names, with getxattr's size rules. */
static int do_listxattr(struct sq *s, vd_node_t node, char *list, size_t size)
{
	sqlite3_stmt *q = q_ino(s, S_LISTX, node);
	size_t total = 0;
	int rc;

	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(q, 0);
		size_t n = strlen(name) + 1;

		if (size && total + n <= size)
			memcpy(list + total, name, n);
		total += n;
	}
	sqlite3_reset(q);
	if (rc != SQLITE_DONE)
		return sq_err(s, rc);
	if (size && total > size)
		return -ERANGE;
	return (int)total;
}

/* vd_ops.listxattr, under the lock, in the open transaction. */
static int sq_listxattr(const struct vd_ctx *ctx, vd_node_t node, char *list,
			size_t size)
{
	return SQ_CALL(ctx->data, do_listxattr(ctx->data, node, list, size));
}

/* removexattr: -ENODATA if there is no such attribute. */
static int do_removexattr(struct sq *s, vd_node_t node, const char *name)
{
	sqlite3_stmt *q = q_ino(s, S_DELX, node);
	int r;

	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	r = run(s, q);
	if (r)
		return r;
	if (sqlite3_changes(s->db) == 0)
		return -ENODATA;
	return touch_ctime(s, node);
}

/* vd_ops.removexattr, under the lock, in the open transaction. */
static int sq_removexattr(const struct vd_ctx *ctx, vd_node_t node,
			  const char *name)
{
	return SQ_CALL(ctx->data, do_removexattr(ctx->data, node, name));
}

/* create and tmpfile: a new regular file, opened. */
static int do_create(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, struct vd_file *fi,
		     vd_node_t *node, struct stat *st)
{
	struct sq_attr a;
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
static int sq_create(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, struct vd_file *fi,
		     vd_node_t *node, struct stat *st)
{
	return SQ_CALL(ctx->data,
		       do_create(ctx, parent, name, mode, fi, node, st));
}

/* vd_ops.tmpfile, under the lock, in the open transaction. */
static int sq_tmpfile(const struct vd_ctx *ctx, vd_node_t parent, mode_t mode,
		      struct vd_file *fi, vd_node_t *node, struct stat *st)
{
	return SQ_CALL(ctx->data,
		       do_create(ctx, parent, NULL, mode, fi, node, st));
}

/*
 * fallocate: mode 0 and KEEP_SIZE store zeros in holes; PUNCH_HOLE
 * (with KEEP_SIZE) and ZERO_RANGE make the range read as zeros.
 */
static int do_fallocate(struct sq *s, vd_node_t node, int mode, off_t off,
			off_t len)
{
	struct sq_attr a;
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
	r = get_attr(s, node, &a);
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
		a.mtime = a.ctime = now_ns();
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
		a.mtime = a.ctime = now_ns();
	}
	return put_attr(s, &a);
}

/* vd_ops.fallocate, under the lock, in the open transaction. */
static int sq_fallocate(const struct vd_ctx *ctx, vd_node_t node,
			struct vd_file *fi, int mode, off_t off, off_t len)
{
	(void)fi;
	return SQ_CALL(ctx->data,
		       do_fallocate(ctx->data, node, mode, off, len));
}

/* SEEK_DATA / SEEK_HOLE: a stored chunk is data, a missing one a hole. */
static int64_t do_lseek(struct sq *s, vd_node_t node, off_t off, int whence)
{
	struct sq_attr a;
	sqlite3_stmt *q;
	int64_t want, pos;
	int rc, r;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	r = get_attr(s, node, &a);
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
	q = q_ino(s, S_NEXTCHUNK, node);
	sqlite3_bind_int64(q, 2, want);
	if (whence == SEEK_DATA) {
		rc = sqlite3_step(q);
		pos = -ENXIO;
		if (rc == SQLITE_ROW) {
			int64_t idx = sqlite3_column_int64(q, 0);

			pos = idx == want ? off : idx * s->cs;
			if (pos >= a.size)
				pos = -ENXIO;
		}
	} else {
		while ((rc = sqlite3_step(q)) == SQLITE_ROW &&
		       sqlite3_column_int64(q, 0) == want)
			want++;
		pos = want == off / s->cs ? off : want * s->cs;
		if (pos > a.size)
			pos = a.size;
	}
	sqlite3_reset(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sq_err(s, rc);
	return pos;
}

/* vd_ops.lseek, under the lock, in the open transaction. */
static int64_t sq_lseek(const struct vd_ctx *ctx, vd_node_t node,
			struct vd_file *fi, off_t off, int whence)
{
	(void)fi;
	return SQ_CALL(ctx->data, do_lseek(ctx->data, node, off, whence));
}

/* Close the database and free everything; the last commit happens here. */
static void sq_free(struct sq *s)
{
	if (!s)
		return;
	if (s->committer_running) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_signal(&s->wake);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->committer, NULL);
	}
	/* Closing the last connection checkpoints and removes the WAL. */
	sqlite3_close(s->ckpt_db);
	sqlite3_blob_close(s->blob);
	s->blob = NULL;
	if (s->db) {
		sq_commit(s);
		for (int i = 0; i < S_COUNT; i++)
			sqlite3_finalize(s->stmt[i]);
		sqlite3_close(s->db);
	}
	for (int i = 0; i < SQ_OPEN_BUCKETS; i++) {
		while (s->open[i])
			open_free(s, s->open[i]);
	}
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s->buf);
	free(s->dirty);
	free(s->dir_path);
	free(s->path);
	free(s->dir);
	free(s);
}

/* vd_ops.destroy: commit, close, free. */
static void sq_destroy(void *data)
{
	sq_free(data);
}

static const struct vd_ops sq_ops = {
	/* QUICK: every callback runs under s->lock, so one thread per CPU
	 * (io_uring) loses no concurrency, and saves a wakeup per request. */
	.flags = VD_OPS_THREAD_SAFE | VD_OPS_EXCLUSIVE | VD_OPS_QUICK |
		 VD_OPS_CACHE,
	.destroy = sq_destroy,
	.lookup = sq_lookup,
	.forget = sq_forget,
	.getattr = sq_getattr,
	.setattr = sq_setattr,
	.readlink = sq_readlink,
	.mknod = sq_mknod,
	.mkdir = sq_mkdir,
	.unlink = sq_unlink,
	.rmdir = sq_rmdir,
	.symlink = sq_symlink,
	.rename = sq_rename,
	.link = sq_link,
	.open = sq_open_file,
	.read = sq_read,
	.write = sq_write,
	.release = sq_release,
	.fsync = sq_fsync,
	.opendir = sq_opendir,
	.readdir = sq_readdir,
	.fsyncdir = sq_fsyncdir,
	.statfs = sq_statfs,
	.setxattr = sq_setxattr,
	.getxattr = sq_getxattr,
	.listxattr = sq_listxattr,
	.removexattr = sq_removexattr,
	.create = sq_create,
	.fallocate = sq_fallocate,
	.lseek = sq_lseek,
	.copy_file_range = sq_copy_file_range,
	.tmpfile = sq_tmpfile,
};

/* Run SQL that returns nothing of interest; -EIO with a message. */
static int exec_sql(struct sq *s, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(err, errlen, "%s: %s", s->path, msg ? msg : "SQLite error");
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
			 s->path, sqlite3_errstr(rc));
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
			 s->path);
		return -EINVAL;
	}
	if (query_int(s, "SELECT value FROM meta WHERE key='version'") >
	    SQ_VERSION) {
		snprintf(err, errlen,
			 "%s: made by a newer vdrive (format "
			 "version above %d)",
			 s->path, SQ_VERSION);
		return -EINVAL;
	}
	s->cs = query_int(s, "SELECT value FROM meta WHERE key='chunk_size'");
	if (s->cs < 4096 || s->cs > (16 << 20)) {
		snprintf(err, errlen, "%s: bad chunk_size in meta", s->path);
		return -EINVAL;
	}
	return 1;
}

/* Create the tables of a new database. */
static int create_schema(struct sq *s, char *err, size_t errlen)
{
	char *sql;
	int64_t now = now_ns();
	int r;

	s->cs = SQ_CHUNK;
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
	char *fill = sqlite3_mprintf(sq_sqlar_fill, SQ_SQLAR_MAX, (int)s->cs,
				     (int)s->cs, (int)s->cs);
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

/* Delete inodes that lost their last name before a crash. */
static int collect_orphans(struct sq *s, char *err, size_t errlen)
{
	sqlite3_stmt *q = s->stmt[S_ORPHANS];
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc, r = 0;

	pthread_mutex_lock(&s->lock);
	r = exec_sql(s, "BEGIN IMMEDIATE", err, errlen);
	while (!r && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (n == cap) {
			int64_t *p = realloc(ids, (cap = cap * 2 + 16) *
							  sizeof(*ids));
			if (!p) {
				r = -ENOMEM;
				break;
			}
			ids = p;
		}
		ids[n++] = sqlite3_column_int64(q, 0);
	}
	sqlite3_reset(q);
	for (size_t i = 0; !r && i < n; i++)
		r = drop_inode(s, ids[i]);
	free(ids);
	if (!r)
		r = exec_sql(s, "COMMIT", err, errlen);
	else
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Absolute path of arg, and the folder holding it. */
static int set_paths(struct sq *s, const char *arg)
{
	char cwd[PATH_MAX];
	const char *slash;

	if (arg[0] == '/') {
		s->path = strdup(arg);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		if (asprintf(&s->path, "%s/%s", cwd, arg) < 0)
			s->path = NULL;
	}
	if (!s->path)
		return -ENOMEM;
	slash = strrchr(s->path, '/');
	s->dir = slash == s->path ? strdup("/")
				  : strndup(s->path, slash - s->path);
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

/* Open the database at s->path, after the checks; sets up the rest. */
static int open_db(struct sq *s, char *err, size_t errlen)
{
	int r, rc;

	rc = sqlite3_open_v2(s->path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", s->path,
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
	rc = sqlite3_open_v2(s->path, &s->ckpt_db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", s->path, sqlite3_errstr(rc));
		return -EIO;
	}
	sqlite3_busy_timeout(s->ckpt_db, 5000);
	/* Checkpoints must sync the database before the WAL is reused. */
	sqlite3_exec(s->ckpt_db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	for (int i = 0; i < S_COUNT; i++) {
		rc = sqlite3_prepare_v3(s->db, sq_sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
					NULL);
		if (rc != SQLITE_OK) {
			snprintf(err, errlen, "%s: %s (schema too old?)",
				 s->path, sqlite3_errmsg(s->db));
			return -EINVAL;
		}
	}
	return collect_orphans(s, err, errlen);
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
	int r;

	if (errlen)
		err[0] = '\0';
	if (!arg || !*arg) {
		snprintf(err, errlen,
			 "sqlite: needs a database file: "
			 "sqlite:PATH");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lock_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	r = set_paths(s, arg);
	if (r)
		goto fail;
	r = check_header(s->path, err, errlen);
	if (r)
		goto fail;
	s->lock_fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
		goto fail;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB)) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(err, errlen, "%s is in use by another drive", s->path);
		goto fail;
	}
	r = open_db(s, err, errlen);
	if (r)
		goto fail;
	s->buf = malloc(s->cs * (SQ_SLOTS + 1));
	if (!s->buf) {
		r = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < SQ_SLOTS; i++)
		s->slot[i].buf = s->buf + s->cs * (i + 1);
	r = -pthread_create(&s->committer, NULL, committer, s);
	if (r)
		goto fail;
	s->committer_running = true;
	*ops = &sq_ops;
	*data = s;
	return 0;
fail:
	if (!*err)
		snprintf(err, errlen, "%s: %s", arg, strerror(-r));
	sq_free(s);
	return r;
}

const struct vd_source vd_source_sqlite = {
	"sqlite",
	"sqlite:PATH",
	"files in an SQLite database",
	sq_open,
};
