/*
 * postgres.c - the "postgres:CONNINFO" source: the file store (core.c)
 * in a PostgreSQL database that many mounts, on one host or many, share.
 * Written only against vdrive.h and libpq.
 *
 * What differs from SQLite, and why:
 * - Each callback is one transaction (core.c, be->batch false): other
 *   mounts see a change as soon as the callback returns. A callback that
 *   may write first locks the meta row 'format' (SELECT ... FOR UPDATE),
 *   so writers of one drive take turns and every read-modify-write of an
 *   inode row (link counts, sizes) sees the last commit. Names are unique
 *   per folder in the schema (UNIQUE(parent, name)): a create that loses
 *   a race gets EEXIST from the database, never a second row.
 * - After a commit that changed something, NOTIFY vdrive_changes lists
 *   the inodes and names changed; a listener thread on its own connection
 *   turns other mounts' notices into vd_drive_invalidate_node/entry(), so
 *   the kernel's caches stay long-lived yet coherent within a second.
 * - Every query waits at most the timeout (vdrive_timeout=SECONDS in the
 *   conninfo, default 10): then, or when the connection breaks, the call
 *   fails with EIO and the connection is dropped; the next call connects
 *   again. A callback that returned success was committed (the server
 *   syncs its WAL at commit), so fsync has nothing left to do.
 * - Credentials come from libpq: a service file, PGPASSFILE or PGPASSWORD.
 *   A password in the conninfo is accepted but never shown: messages and
 *   the drive's name use the conninfo without it (vd_pg_redact()).
 * - Names, xattr names and values are bytea: file names are bytes, not
 *   text in the database's encoding.
 * docs/postgres.md lists the SQL the back end needs.
 */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "sources.h"

#define PG_FORMAT "vdrive-postgres"
#define PG_VERSION 1
#define PG_CHUNK 131072		    /* bytes per chunk of a new store */
#define PG_TIMEOUT_S 10		    /* default vdrive_timeout */
#define PG_CHANNEL "vdrive_changes" /* LISTEN/NOTIFY channel */
#define PG_PAYLOAD_MAX 7000	    /* NOTIFY payloads must stay < 8000 */
#define PG_MAXPARAM 16
#define OID_INT8 20
#define OID_BYTEA 17

#define ATTR_COLS                                                              \
	"i.ino,i.mode,i.uid,i.gid,i.nlink,i.size,i.used,i.atime,i.mtime,"      \
	"i.ctime,i.rdev,i.parent"

/* The store's statements in PostgreSQL's dialect (NULL: SQLite only). */
static const char *const pg_sql[S_COUNT] = {
	[S_GET] = "SELECT " ATTR_COLS " FROM inodes i WHERE i.ino=$1",
	[S_LOOKUP] = "SELECT " ATTR_COLS ",d.id FROM dentries d"
		     " JOIN inodes i ON i.ino=d.ino"
		     " WHERE d.parent=$1 AND d.name=$2",
	[S_PUT] = "UPDATE inodes SET mode=$2,uid=$3,gid=$4,nlink=$5,size=$6,"
		  "used=$7,atime=$8,mtime=$9,ctime=$10,rdev=$11,parent=$12"
		  " WHERE ino=$1",
	/* $1 (unused) is typed by the binding: every index is sent. */
	[S_NEW] = "INSERT INTO inodes(mode,uid,gid,nlink,size,used,atime,"
		  "mtime,ctime,rdev,parent,target)"
		  " SELECT $2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13"
		  " WHERE $1::bigint IS NULL OR TRUE RETURNING ino",
	[S_TARGET] = "SELECT target FROM inodes WHERE ino=$1",
	[S_ADDNAME] = "INSERT INTO dentries(parent,name,ino) VALUES($1,$2,$3)",
	[S_DELNAME] = "DELETE FROM dentries WHERE id=$1",
	[S_MOVE] = "UPDATE dentries SET parent=$2,name=$3 WHERE id=$1",
	[S_RETARGET] = "UPDATE dentries SET ino=$2 WHERE id=$1",
	[S_HASCHILD] = "SELECT 1 FROM dentries WHERE parent=$1 LIMIT 1",
	[S_LIST] = "SELECT d.id,d.name," ATTR_COLS " FROM dentries d"
		   " JOIN inodes i ON i.ino=d.ino"
		   " WHERE d.parent=$1 AND d.id>$2 ORDER BY d.id",
	[S_DROPINODE] = "DELETE FROM inodes WHERE ino=$1",
	[S_DROPCHUNKS] = "DELETE FROM chunks WHERE ino=$1 AND idx>=$2"
			 " AND idx<=$3",
	[S_SUMCHUNKS] = "SELECT coalesce(sum(length(data)),0)::bigint"
			" FROM chunks WHERE ino=$1 AND idx>=$2 AND idx<=$3",
	[S_DROPXATTRS] = "DELETE FROM xattrs WHERE ino=$1",
	[S_CHUNKS] = "SELECT idx,data FROM chunks WHERE ino=$1 AND idx>=$2"
		     " AND idx<=$3 ORDER BY idx",
	[S_CHUNKLEN] = "SELECT length(data)::bigint FROM chunks WHERE ino=$1"
		       " AND idx=$2",
	[S_PUTCHUNK] =
		"INSERT INTO chunks(ino,idx,data) VALUES($1,$2,$3)"
		" ON CONFLICT (ino,idx) DO UPDATE SET data=EXCLUDED.data",
	[S_ALLOCCHUNK] = "INSERT INTO chunks(ino,idx,data)"
			 " VALUES($1,$2,decode(repeat('00',$3::int),'hex'))"
			 " ON CONFLICT (ino,idx) DO NOTHING",
	[S_NEXTCHUNK] = "SELECT idx FROM chunks WHERE ino=$1 AND idx>=$2"
			" ORDER BY idx",
	[S_GETX] = "SELECT value FROM xattrs WHERE ino=$1 AND name=$2",
	[S_PUTX] = "INSERT INTO xattrs(ino,name,value) VALUES($1,$2,$3)"
		   " ON CONFLICT (ino,name) DO UPDATE SET value=EXCLUDED.value",
	[S_DELX] = "DELETE FROM xattrs WHERE ino=$1 AND name=$2",
	[S_LISTX] = "SELECT name FROM xattrs WHERE ino=$1 ORDER BY name",
	/* Another mount may hold a nameless file open (unlinked, or
	 * O_TMPFILE): only those untouched for a day are orphans. */
	[S_ORPHANS] = "SELECT ino FROM inodes WHERE nlink=0 AND ino<>1"
		      " AND ctime < (extract(epoch FROM now()) * 1e9)::bigint"
		      " - 86400000000000",
};

/* The schema of a new store; %d: chunk size, then the root's fields. */
static const char pg_schema[] =
	"CREATE TABLE meta(key text PRIMARY KEY, value text NOT NULL);"
	"CREATE TABLE inodes(ino bigint GENERATED BY DEFAULT AS IDENTITY"
	" (START WITH 2) PRIMARY KEY, mode bigint NOT NULL,"
	" uid bigint NOT NULL, gid bigint NOT NULL, nlink bigint NOT NULL,"
	" size bigint NOT NULL DEFAULT 0, used bigint NOT NULL DEFAULT 0,"
	" atime bigint NOT NULL, mtime bigint NOT NULL,"
	" ctime bigint NOT NULL, rdev bigint NOT NULL DEFAULT 0,"
	" parent bigint NOT NULL DEFAULT 0, target bytea);"
	"CREATE TABLE dentries(id bigint GENERATED BY DEFAULT AS IDENTITY"
	" PRIMARY KEY, parent bigint NOT NULL, name bytea NOT NULL,"
	" ino bigint NOT NULL, UNIQUE(parent, name));"
	"CREATE INDEX dentries_ino ON dentries(ino);"
	"CREATE TABLE chunks(ino bigint NOT NULL, idx bigint NOT NULL,"
	" data bytea NOT NULL, PRIMARY KEY(ino, idx));"
	"CREATE TABLE xattrs(ino bigint NOT NULL, name bytea NOT NULL,"
	" value bytea NOT NULL, PRIMARY KEY(ino, name));"
	"INSERT INTO meta VALUES('format', '" PG_FORMAT "'),"
	" ('version', '1'), ('chunk_size', '%d');"
	"INSERT INTO inodes(ino,mode,uid,gid,nlink,atime,mtime,ctime,parent)"
	" VALUES(1,%d,%d,%d,2,%lld,%lld,%lld,1);";

/* PostgreSQL's side of a store (s->priv). */
struct pg {
	struct fs *fs;
	char *conninfo; /* as given, minus vdrive_timeout: may hold secrets */
	int timeout_ms;
	PGconn *conn; /* NULL or broken: connect at the next call */
	bool in_begin;
	bool lost;  /* the connection dropped inside the open transaction */
	bool empty; /* check_store(): no table in the current schema */
	bool want_write;  /* this callback may write: BEGIN and lock first */
	unsigned int gen; /* connections made so far */
	unsigned int prepared[S_COUNT]; /* gen when statement i was prepared */
	int pid; /* the server process of conn, to skip our own notices */
	/* the listener */
	pthread_t listener;
	bool listener_running;
	int stop_pipe[2];
};

/* A statement: its parameters, and the rows of its last run. */
struct pg_stmt {
	struct fs_stmt base;
	struct pg *pg;
	int id;
	int nparams;
	const char *vals[PG_MAXPARAM];
	int lens[PG_MAXPARAM], fmts[PG_MAXPARAM];
	Oid types[PG_MAXPARAM];
	char ints[PG_MAXPARAM][24];
	PGresult *res;
	int row; /* the row the last step returned */
	int64_t changes;
};

#define PGS(x) ((struct pg_stmt *)(x))
#define PG(s) ((struct pg *)(s)->priv)

/* A conninfo without password=: for messages and the drive's name. */
int vd_pg_redact(const char *conninfo, char *out, size_t len)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL), *o;
	size_t n = 0;

	if (!len)
		return -EINVAL;
	out[0] = '\0';
	if (!opts) {
		snprintf(out, len, "(unparsable conninfo)");
		return -EINVAL;
	}
	for (o = opts; o->keyword; o++) {
		if (!o->val || !strcmp(o->keyword, "password"))
			continue;
		n += snprintf(out + (n < len ? n : len), n < len ? len - n : 0,
			      "%s%s=%s", n ? " " : "", o->keyword, o->val);
	}
	PQconninfoFree(opts);
	return 0;
}

/*
 * Split our own key vdrive_timeout=SECONDS off a key=value conninfo
 * (libpq refuses keys it does not know). Sets p->conninfo.
 */
static int parse_arg(struct pg *p, const char *arg, char *err, size_t errlen)
{
	const char *k = strstr(arg, "vdrive_timeout=");

	p->timeout_ms = PG_TIMEOUT_S * 1000;
	if (!k || (k > arg && k[-1] != ' ')) {
		p->conninfo = strdup(arg);
		return p->conninfo ? 0 : -ENOMEM;
	}
	{
		const char *v = k + strlen("vdrive_timeout="), *end;
		char *e;
		double sec = strtod(v, &e);

		if (e == v || sec <= 0 || sec > 3600 || (*e && *e != ' ')) {
			snprintf(err, errlen,
				 "postgres: vdrive_timeout wants seconds "
				 "(0 < s <= 3600)");
			return -EINVAL;
		}
		p->timeout_ms = (int)(sec * 1000);
		end = e;
		if (asprintf(&p->conninfo, "%.*s%s", (int)(k - arg), arg,
			     *end ? end + 1 : "") < 0) {
			p->conninfo = NULL;
			return -ENOMEM;
		}
	}
	return 0;
}

/* Connect with the timeout; NULL and a message from libpq on failure. */
static PGconn *pg_dial(struct pg *p, char *err, size_t errlen)
{
	char secs[16];
	/* The conninfo comes last: its own connect_timeout wins. */
	const char *keys[] = {"connect_timeout", "fallback_application_name",
			      "dbname", NULL};
	const char *vals[] = {secs, "vdrive", p->conninfo, NULL};
	PGconn *c;

	snprintf(secs, sizeof(secs), "%d", (p->timeout_ms + 999) / 1000);
	c = PQconnectdbParams(keys, vals, 1);
	if (c && PQstatus(c) == CONNECTION_OK)
		return c;
	if (err)
		snprintf(err, errlen, "%s",
			 c ? PQerrorMessage(c) : "out of memory");
	PQfinish(c);
	return NULL;
}

/* Drop a broken connection; the next call dials again. */
static void pg_drop(struct pg *p)
{
	PQfinish(p->conn);
	p->conn = NULL;
	p->lost = p->in_begin;
	p->in_begin = false;
	__atomic_store_n(&p->pid, 0, __ATOMIC_RELAXED);
}

/* Have a connection, dialling if needed. -EIO if the server is away. */
static int pg_ready(struct pg *p)
{
	char msg[256];

	if (p->conn && PQstatus(p->conn) == CONNECTION_OK)
		return 0;
	if (p->conn)
		pg_drop(p);
	p->conn = pg_dial(p, msg, sizeof(msg));
	if (!p->conn) {
		fprintf(stderr, "postgres:%s: cannot connect: %s", p->fs->path,
			msg);
		return -EIO;
	}
	__atomic_store_n(&p->pid, PQbackendPID(p->conn), __ATOMIC_RELAXED);
	p->gen++;
	return 0;
}

/* -errno for a failed result; logs what is not a plain conflict. */
static int pg_errno(struct pg *p, const PGresult *res)
{
	const char *state =
		res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (state && !strcmp(state, "23505"))
		return -EEXIST; /* unique_violation: the name is taken */
	fprintf(stderr, "postgres:%s: %s", p->fs->path,
		res ? PQresultErrorMessage(res) : PQerrorMessage(p->conn));
	if (state && !strcmp(state, "53100"))
		return -ENOSPC;
	if (state && !strcmp(state, "54000"))
		return -EFBIG;
	return -EIO;
}

#define PG_BROKEN 1 /* pg_try(): the connection broke */

/*
 * Wait for the result of what was just sent, at most the timeout: the
 * one place that waits on the server. A timeout drops the connection
 * (its transaction dies with it) and gives -EIO; a broken connection
 * gives PG_BROKEN, after dropping it.
 */
static int pg_wait(struct pg *p, PGresult **out)
{
	struct timespec t0, t;
	PGresult *res, *last = NULL;
	int r;

	*out = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd pfd = {PQsocket(p->conn), POLLIN, 0};
		int64_t left;
		int f = PQflush(p->conn);

		if (f < 0)
			goto broken;
		if (!f && !PQisBusy(p->conn)) {
			res = PQgetResult(p->conn);
			if (!res)
				break;
			PQclear(last);
			last = res;
			continue;
		}
		if (f)
			pfd.events |= POLLOUT;
		clock_gettime(CLOCK_MONOTONIC, &t);
		left = p->timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000 +
					(t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0) {
			fprintf(stderr,
				"postgres:%s: no answer in %d ms: "
				"dropping the connection\n",
				p->fs->path, p->timeout_ms);
			PQclear(last);
			pg_drop(p);
			return -EIO;
		}
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			goto broken;
		if ((pfd.revents & (POLLIN | POLLERR | POLLHUP)) &&
		    !PQconsumeInput(p->conn))
			goto broken;
	}
	if (PQstatus(p->conn) != CONNECTION_OK)
		goto broken;
	if (!last || (PQresultStatus(last) != PGRES_COMMAND_OK &&
		      PQresultStatus(last) != PGRES_TUPLES_OK)) {
		r = pg_errno(p, last);
		PQclear(last);
		return r;
	}
	*out = last;
	return 0;
broken:
	PQclear(last);
	pg_drop(p);
	return PG_BROKEN;
}

/*
 * Run sql once: statement id (>= 0) as a statement prepared on this
 * connection (prepared on first use), else as given. Without
 * parameters, the simple protocol, which takes several statements at
 * once (BEGIN and the lock in one round trip).
 */
static int pg_try(struct pg *p, int id, const char *sql, int n,
		  const Oid *types, const char *const *vals, const int *lens,
		  const int *fmts, PGresult **out)
{
	char name[16];
	int r, sent;

	*out = NULL;
	if (p->lost)
		return -EIO; /* never carry on outside the transaction */
	r = pg_ready(p);
	if (r)
		return r;
	snprintf(name, sizeof(name), "s%d", id);
	if (id >= 0 && p->prepared[id] != p->gen) {
		if (!PQsendPrepare(p->conn, name, sql, 0, NULL)) {
			pg_drop(p);
			return PG_BROKEN;
		}
		r = pg_wait(p, out);
		PQclear(*out);
		*out = NULL;
		if (r)
			return r;
		p->prepared[id] = p->gen;
	}
	if (id >= 0)
		sent = PQsendQueryPrepared(p->conn, name, n, vals, lens, fmts,
					   1);
	else if (vals)
		sent = PQsendQueryParams(p->conn, sql, n, types, vals, lens,
					 fmts, 1);
	else
		sent = PQsendQuery(p->conn, sql);
	if (!sent) {
		pg_drop(p);
		return PG_BROKEN;
	}
	return pg_wait(p, out);
}

/*
 * pg_try(), once more on a new connection when the old one turns out to
 * be broken (a server restart) before this callback's transaction began:
 * nothing was lost with it. A callback that may write opens its
 * transaction, and takes the drive's write lock, before its first
 * statement (one that sends none costs no round trip).
 */
static int pg_run_id(struct pg *p, int id, const char *sql, int n,
		     const Oid *types, const char *const *vals, const int *lens,
		     const int *fmts, PGresult **out)
{
	static const char begin[] = "BEGIN; SELECT 1 FROM meta"
				    " WHERE key='format' FOR UPDATE";
	bool fresh;
	int r;

	*out = NULL;
	if (p->want_write && !p->in_begin && !p->lost) {
		r = pg_try(p, -1, begin, 0, NULL, NULL, NULL, NULL, out);
		if (r == PG_BROKEN)
			r = pg_try(p, -1, begin, 0, NULL, NULL, NULL, NULL,
				   out);
		PQclear(*out);
		*out = NULL;
		if (r)
			return r == PG_BROKEN ? -EIO : r;
		p->in_begin = true;
	}
	fresh = !p->in_begin;
	r = pg_try(p, id, sql, n, types, vals, lens, fmts, out);
	if (r == PG_BROKEN && fresh && !p->lost)
		r = pg_try(p, id, sql, n, types, vals, lens, fmts, out);
	if (r == PG_BROKEN) {
		fprintf(stderr, "postgres:%s: connection lost\n", p->fs->path);
		r = -EIO;
	}
	return r;
}

static int pg_run(struct pg *p, const char *sql, int n, const Oid *types,
		  const char *const *vals, const int *lens, const int *fmts,
		  PGresult **out)
{
	return pg_run_id(p, -1, sql, n, types, vals, lens, fmts, out);
}

/* Run SQL without parameters whose result does not matter. */
static int pg_exec(struct pg *p, const char *sql)
{
	PGresult *res;
	int r = pg_run(p, sql, 0, NULL, NULL, NULL, NULL, &res);

	PQclear(res);
	return r;
}

static void pg_param(struct fs_stmt *q, int i, const char *v, int len, int fmt,
		     Oid type)
{
	struct pg_stmt *ps = PGS(q);

	if (i < 1 || i > PG_MAXPARAM)
		return;
	ps->vals[i - 1] = v;
	ps->lens[i - 1] = len;
	ps->fmts[i - 1] = fmt;
	ps->types[i - 1] = type;
	if (i > ps->nparams)
		ps->nparams = i;
}

static void pg_bind_int(struct fs_stmt *q, int i, int64_t v)
{
	if (i < 1 || i > PG_MAXPARAM)
		return;
	snprintf(PGS(q)->ints[i - 1], sizeof(PGS(q)->ints[0]), "%lld",
		 (long long)v);
	pg_param(q, i, PGS(q)->ints[i - 1], 0, 0, OID_INT8);
}

/* Names are bytea, sent as their bytes. */
static void pg_bind_text(struct fs_stmt *q, int i, const char *v)
{
	pg_param(q, i, v, (int)strlen(v), 1, OID_BYTEA);
}

static void pg_bind_blob(struct fs_stmt *q, int i, const void *v, int64_t n)
{
	pg_param(q, i, n ? v : "", (int)n, 1, OID_BYTEA);
}

static void pg_bind_null(struct fs_stmt *q, int i)
{
	pg_param(q, i, NULL, 0, 0, 0);
}

/* The first step runs the statement; each step moves to the next row. */
static int pg_step(struct fs_stmt *q)
{
	struct pg_stmt *ps = PGS(q);
	int r;

	if (!ps->res) {
		/* Unbound parameters are typed so the server can plan. */
		for (int i = 0; i < ps->nparams; i++) {
			if (!ps->types[i] && ps->vals[i])
				ps->types[i] = OID_INT8;
		}
		r = pg_run_id(ps->pg, ps->id, pg_sql[ps->id], ps->nparams,
			      ps->types, ps->vals, ps->lens, ps->fmts,
			      &ps->res);
		if (r)
			return r;
		ps->row = -1;
		ps->changes = atoll(PQcmdTuples(ps->res));
	}
	if (++ps->row < PQntuples(ps->res))
		return FS_ROW;
	return FS_DONE;
}

static void pg_reset(struct fs_stmt *q)
{
	struct pg_stmt *ps = PGS(q);

	PQclear(ps->res);
	ps->res = NULL;
	ps->nparams = 0;
	memset(ps->types, 0, sizeof(ps->types));
}

/* Integers come back in binary: big-endian, 2, 4 or 8 bytes. */
static int64_t pg_col_int(struct fs_stmt *q, int c)
{
	struct pg_stmt *ps = PGS(q);
	const unsigned char *v;
	int len;
	uint64_t x = 0;

	if (PQgetisnull(ps->res, ps->row, c))
		return 0;
	v = (const unsigned char *)PQgetvalue(ps->res, ps->row, c);
	len = PQgetlength(ps->res, ps->row, c);
	for (int i = 0; i < len && i < 8; i++)
		x = x << 8 | v[i];
	if (len == 4)
		return (int32_t)x;
	if (len == 2)
		return (int16_t)x;
	return (int64_t)x;
}

static const char *pg_col_text(struct fs_stmt *q, int c)
{
	return PQgetvalue(PGS(q)->res, PGS(q)->row, c);
}

static const void *pg_col_blob(struct fs_stmt *q, int c)
{
	return PQgetvalue(PGS(q)->res, PGS(q)->row, c);
}

static int64_t pg_col_bytes(struct fs_stmt *q, int c)
{
	return PQgetlength(PGS(q)->res, PGS(q)->row, c);
}

static bool pg_col_null(struct fs_stmt *q, int c)
{
	return PQgetisnull(PGS(q)->res, PGS(q)->row, c);
}

static int64_t pg_changes(struct fs_stmt *q)
{
	return PGS(q)->changes;
}

static const struct fs_stmt_ops pg_stmt_ops = {
	.bind_int = pg_bind_int,
	.bind_text = pg_bind_text,
	.bind_blob = pg_bind_blob,
	.bind_null = pg_bind_null,
	.step = pg_step,
	.reset = pg_reset,
	.col_int = pg_col_int,
	.col_text = pg_col_text,
	.col_blob = pg_col_blob,
	.col_bytes = pg_col_bytes,
	.col_null = pg_col_null,
	.changes = pg_changes,
};

/*
 * A callback that may write opens a transaction holding the drive's
 * write lock (one round trip); one that only reads runs its statements
 * on their own, each seeing the latest commits.
 */
static int pg_begin(struct fs *s, bool write)
{
	struct pg *p = PG(s);

	p->want_write = write; /* BEGIN waits for the first statement */
	p->lost = false;
	return 0;
}

/* Hex of a name, for a NOTIFY payload (which must be text). */
static void hex(char *out, const char *name)
{
	static const char digits[] = "0123456789abcdef";

	for (; *name; name++) {
		*out++ = digits[(unsigned char)*name >> 4];
		*out++ = digits[*name & 15];
	}
	*out = '\0';
}

/* Append a NOTIFY of payload to the commit's SQL (which it precedes:
 * notices go out when the transaction commits). The payload holds only
 * letters, digits, spaces and newlines, so it needs no quoting. */
static int notify_add(char **sql, size_t *len, const char *payload)
{
	static const char fmt[] = "SELECT pg_notify('" PG_CHANNEL "', '%s');";
	size_t add = strlen(payload) + sizeof(fmt);
	char *p;

	if (!*payload)
		return 0;
	p = realloc(*sql, *len + add + 1);
	if (!p)
		return -ENOMEM;
	*sql = p;
	*len += snprintf(p + *len, add + 1, fmt, payload);
	return 0;
}

/*
 * Commit, telling other mounts what the transaction changed in the same
 * round trip: "n INO" for each inode, "e PARENT HEXNAME" for each name,
 * one per line, in as many notices as needed.
 */
static int pg_commit(struct fs *s)
{
	struct pg *p = PG(s);
	char payload[PG_PAYLOAD_MAX + 600], line[600];
	char *sql = NULL;
	size_t n = 0, len = 0;
	int r = 0;

	if (p->lost)
		return -EIO;
	if (!p->in_begin)
		return 0;
	payload[0] = '\0';
	for (size_t i = 0; !r && i < s->ndirty + s->nnames; i++) {
		if (i < s->ndirty) {
			snprintf(line, sizeof(line), "n %llu\n",
				 (unsigned long long)s->dirty[i]);
		} else {
			struct fs_name *nm = &s->names[i - s->ndirty];
			int k = snprintf(line, sizeof(line), "e %llu ",
					 (unsigned long long)nm->parent);

			hex(line + k, nm->name);
			strcat(line, "\n");
		}
		if (n + strlen(line) > PG_PAYLOAD_MAX) {
			r = notify_add(&sql, &len, payload);
			n = 0;
			payload[0] = '\0';
		}
		strcpy(payload + n, line);
		n += strlen(line);
	}
	if (!r)
		r = notify_add(&sql, &len, payload);
	if (!r) {
		char *p2 = realloc(sql, len + sizeof("COMMIT"));

		if (!p2) {
			r = -ENOMEM;
		} else {
			sql = p2;
			strcpy(sql + len, "COMMIT");
			r = pg_exec(p, sql);
		}
	}
	free(sql);
	if (r)
		return r; /* still open (or dropped): pg_rollback ends it */
	p->in_begin = false;
	p->want_write = false;
	return 0;
}

static void pg_rollback(struct fs *s)
{
	struct pg *p = PG(s);

	if (p->in_begin && p->conn)
		pg_exec(p, "ROLLBACK");
	p->in_begin = false;
	p->want_write = false;
	p->lost = false;
}

/* The server's disk is not ours to measure: report a large, empty one. */
static int pg_statfs(struct fs *s, struct statvfs *st)
{
	st->f_bsize = st->f_frsize = s->cs;
	st->f_blocks = st->f_bfree = st->f_bavail = (1ULL << 50) / s->cs;
	st->f_files = st->f_ffree = st->f_favail = 1ULL << 40;
	return 0;
}

/* Parse one line of a notice and invalidate what it names. */
static void apply_line(struct vd_drive *d, char *line)
{
	char name[FS_NAME_MAX + 1], *h;
	unsigned long long a;
	size_t k = 0;

	if (line[0] == 'n' && sscanf(line + 1, "%llu", &a) == 1) {
		vd_drive_invalidate_node(d, a, 0, 0);
		return;
	}
	if (line[0] != 'e' || sscanf(line + 1, "%llu", &a) != 1)
		return;
	h = strchr(line + 2, ' ');
	if (!h)
		return;
	for (h++; h[0] && h[1] && k < FS_NAME_MAX; h += 2) {
		char b[3] = {h[0], h[1], 0};

		name[k++] = (char)strtol(b, NULL, 16);
	}
	name[k] = '\0';
	vd_drive_invalidate_entry(d, a, name);
}

/*
 * The listener: its own connection LISTENs on the channel and hands
 * other mounts' changes to the kernel. Reconnects by itself; a notice
 * missed while away is covered by the one-second cache timeouts.
 */
static void *listener(void *arg)
{
	struct pg *p = arg;
	PGconn *c = NULL;

	for (;;) {
		struct pollfd pfd[2] = {{p->stop_pipe[0], POLLIN, 0},
					{-1, POLLIN, 0}};
		PGnotify *nt;

		if (!c || PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = pg_dial(p, NULL, 0);
			if (c) {
				PGresult *res = PQexec(c, "LISTEN " PG_CHANNEL);

				PQclear(res);
			}
		}
		pfd[1].fd = c ? PQsocket(c) : -1;
		if (poll(pfd, 2, c ? 1000 : 500) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (!c || !pfd[1].revents)
			continue;
		if (!PQconsumeInput(c))
			continue; /* broken: dial again */
		while ((nt = PQnotifies(c))) {
			struct vd_drive *d = __atomic_load_n(&p->fs->drive,
							     __ATOMIC_ACQUIRE);
			int own = __atomic_load_n(&p->pid, __ATOMIC_RELAXED);

			if (d && nt->be_pid != own) {
				char *save = NULL, *line;

				for (line = strtok_r(nt->extra, "\n", &save);
				     line; line = strtok_r(NULL, "\n", &save))
					apply_line(d, line);
			}
			PQfreemem(nt);
		}
	}
	PQfinish(c);
	return NULL;
}

static void pg_close(struct fs *s)
{
	struct pg *p = PG(s);

	if (!p)
		return;
	if (p->listener_running) {
		if (write(p->stop_pipe[1], "x", 1) < 0)
			perror("postgres: stopping the listener");
		pthread_join(p->listener, NULL);
	}
	if (p->stop_pipe[0] >= 0) {
		close(p->stop_pipe[0]);
		close(p->stop_pipe[1]);
	}
	for (int i = 0; i < S_COUNT; i++) {
		if (s->stmt[i])
			PQclear(PGS(s->stmt[i])->res);
		free(s->stmt[i]);
		s->stmt[i] = NULL;
	}
	PQfinish(p->conn);
	free(p->conninfo);
	free(p);
	s->priv = NULL;
}

static const struct fs_backend pg_backend = {
	.kind = "postgres",
	.batch = false,
	.notify = true,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.statfs = pg_statfs,
	.close = pg_close,
};

static const struct vd_ops pg_ops = {
	/* Not EXCLUSIVE: other mounts change the store (1 s cache timeouts,
	 * invalidated sooner by their notices). Not QUICK: callbacks wait
	 * on the network. */
	.flags = VD_OPS_THREAD_SAFE | VD_OPS_CACHE,
	FS_OPS_CALLBACKS,
};

/*
 * Say which of the four ways a mount fails: the server cannot be
 * reached, the database is missing, it is not a vdrive store, or the
 * store is newer than this vdrive. 0: a store; sets s->cs.
 */
static int check_store(struct pg *p, const char *shown, char *err,
		       size_t errlen)
{
	PGresult *res = NULL;
	char msg[512];
	int r;

	p->conn = pg_dial(p, msg, sizeof(msg));
	if (!p->conn) {
		msg[strcspn(msg, "\n")] = '\0';
		if (strstr(msg, "database") && strstr(msg, "does not exist"))
			snprintf(err, errlen,
				 "postgres:%s: the database is missing (%s)",
				 shown, msg);
		else if (strstr(msg, "authentication") ||
			 strstr(msg, "password"))
			snprintf(err, errlen,
				 "postgres:%s: the server refused the "
				 "credentials (%s)",
				 shown, msg);
		else
			snprintf(err, errlen,
				 "postgres:%s: the server is unreachable (%s)",
				 shown, msg);
		return -EHOSTUNREACH;
	}
	res = PQexec(p->conn, "SELECT 1 FROM pg_tables"
			      " WHERE schemaname = current_schema() LIMIT 1");
	p->empty = PQresultStatus(res) == PGRES_TUPLES_OK && !PQntuples(res);
	PQclear(res);
	/* No meta table at all: not a store (asked first, since a query
	 * naming a missing table fails to parse). */
	res = PQexec(p->conn, "SELECT 1 WHERE to_regclass('meta') IS NOT NULL");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		PQclear(res);
		res = PQexec(
			p->conn,
			"SELECT (SELECT value FROM meta WHERE key='format'),"
			" (SELECT value FROM meta WHERE key='version'),"
			" (SELECT value FROM meta WHERE key='chunk_size')");
	}
	r = -EINVAL;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "postgres:%s: %s", shown,
			 PQresultErrorMessage(res));
		r = -EIO;
	} else if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0) ||
		   strcmp(PQgetvalue(res, 0, 0), PG_FORMAT)) {
		snprintf(err, errlen,
			 "postgres:%s: not a vdrive store (no meta table "
			 "saying format=" PG_FORMAT
			 "; `vdrive init` makes one)",
			 shown);
	} else if (atoi(PQgetvalue(res, 0, 1)) > PG_VERSION) {
		snprintf(err, errlen,
			 "postgres:%s: made by a newer vdrive (format "
			 "version %s, this one knows up to %d)",
			 shown, PQgetvalue(res, 0, 1), PG_VERSION);
	} else {
		p->fs->cs = atoll(PQgetvalue(res, 0, 2));
		r = 0;
		if (p->fs->cs < 4096 || p->fs->cs > (16 << 20)) {
			snprintf(err, errlen, "postgres:%s: bad chunk_size",
				 shown);
			r = -EINVAL;
		}
	}
	PQclear(res);
	if (r)
		return r;
	__atomic_store_n(&p->pid, PQbackendPID(p->conn), __ATOMIC_RELAXED);
	p->gen++;
	return 0;
}

/* A struct fs with a struct pg for arg; the shown (redacted) name. */
static int pg_new(const char *arg, struct fs **out, char *err, size_t errlen)
{
	char shown[1024];
	struct fs *f;
	struct pg *p;
	int r;

	if (errlen)
		err[0] = '\0';
	r = fs_new(&pg_backend, &f);
	if (r)
		return r;
	p = calloc(1, sizeof(*p));
	if (!p) {
		fs_free(f);
		return -ENOMEM;
	}
	p->fs = f;
	p->stop_pipe[0] = p->stop_pipe[1] = -1;
	f->priv = p;
	r = parse_arg(p, arg ? arg : "", err, errlen);
	if (!r && vd_pg_redact(p->conninfo, shown, sizeof(shown))) {
		snprintf(err, errlen,
			 "postgres: cannot parse the conninfo (key=value "
			 "pairs or a postgresql:// URI)");
		r = -EINVAL;
	}
	if (!r) {
		f->path = strdup(shown);
		if (!f->path)
			r = -ENOMEM;
	}
	if (r) {
		fs_free(f);
		return r;
	}
	*out = f;
	return 0;
}

/*
 * vd_source.open for "postgres:CONNINFO": check the store, prepare the
 * statements, collect orphans, start the listener.
 */
static int pg_open(const char *arg, const struct vd_ops **ops, void **data,
		   char *err, size_t errlen)
{
	struct fs *f;
	struct pg *p;
	int r = pg_new(arg, &f, err, errlen);

	if (r)
		return r;
	p = f->priv;
	r = check_store(p, f->path, err, errlen);
	for (int i = 0; !r && i < S_COUNT; i++) {
		struct pg_stmt *q;

		if (!pg_sql[i])
			continue;
		q = calloc(1, sizeof(*q));
		if (!q) {
			r = -ENOMEM;
			break;
		}
		q->base.ops = &pg_stmt_ops;
		q->pg = p;
		q->id = i;
		f->stmt[i] = &q->base;
	}
	if (!r)
		r = fs_alloc_buffers(f);
	if (!r && pipe2(p->stop_pipe, O_CLOEXEC))
		r = -errno;
	if (!r) {
		r = -pthread_create(&p->listener, NULL, listener, p);
		p->listener_running = !r;
	}
	if (r) {
		if (!*err)
			snprintf(err, errlen, "postgres:%s: %s", f->path,
				 strerror(-r));
		fs_free(f);
		return r;
	}
	*ops = &pg_ops;
	*data = f;
	return 0;
}

/*
 * vd_source.init for "postgres:CONNINFO": make the tables of a new store
 * in an existing, empty database (refusing one that has a store or
 * other tables named like ours), in one transaction.
 */
static int pg_init(const char *arg, char *err, size_t errlen)
{
	struct fs *f;
	struct pg *p;
	char *sql = NULL;
	int64_t now = fs_now_ns();
	int r = pg_new(arg, &f, err, errlen);

	if (r)
		return r;
	p = f->priv;
	r = check_store(p, f->path, err, errlen);
	if (r == -EINVAL && p->conn && !p->empty) {
		snprintf(err, errlen,
			 "postgres:%s: the database has tables but no vdrive "
			 "store: init wants an empty database (or schema)",
			 f->path);
		r = -ENOTEMPTY;
		goto out;
	}
	if (r == 0) {
		snprintf(err, errlen, "postgres:%s: already a vdrive store",
			 f->path);
		r = -EEXIST;
		goto out;
	}
	if (r != -EINVAL || !p->conn)
		goto out;
	err[0] = '\0';
	if (asprintf(&sql, pg_schema, PG_CHUNK, S_IFDIR | 0755, (int)getuid(),
		     (int)getgid(), (long long)now, (long long)now,
		     (long long)now) < 0) {
		sql = NULL;
		r = -ENOMEM;
		goto out;
	}
	r = pg_exec(p, "BEGIN");
	if (!r)
		r = pg_exec(p, sql);
	if (!r)
		r = pg_exec(p, "COMMIT");
	if (r)
		snprintf(err, errlen,
			 "postgres:%s: cannot create the tables (see above)",
			 f->path);
out:
	free(sql);
	fs_free(f);
	return r;
}

/* vd_source.redact: the spec's argument without its password. */
static void pg_redact(const char *arg, char *out, size_t len)
{
	char *c = NULL;
	struct pg p = {0};

	if (parse_arg(&p, arg, out, len) == 0)
		c = p.conninfo;
	if (!c || vd_pg_redact(c, out, len))
		snprintf(out, len, "(conninfo)");
	free(c);
}

const struct vd_source vd_source_postgres = {
	.kind = "postgres",
	.usage = "postgres:CONNINFO",
	.help = "files in a PostgreSQL database, shared by many mounts",
	.open = pg_open,
	.init = pg_init,
	.redact = pg_redact,
};
