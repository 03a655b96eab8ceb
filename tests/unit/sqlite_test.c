/*
 * sqlite_test.c - the sqlite: source through its vd_ops table, no kernel.
 * Prints TAP. Covers content round trips across chunk boundaries (also
 * against an in-memory model), sparse files, truncation, fallocate,
 * SEEK_DATA/SEEK_HOLE, every rename rule, links, xattrs, ACL and setgid
 * inheritance, unlink while open, stable readdir offsets, persistence
 * across reopen, crash orphans, and refusing files that are not drives;
 * the sqlar table kept in step with the tree through all of it, and the
 * upgrade of a version 1 database (which had a view).
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sources.h"
#include "tap.h"

#define CS 131072

static char dbpath[256];

/* Open the sqlite: drive at path as the one under test. */
static int open_drive(const char *path, char *err, size_t errlen)
{
	char spec[300];

	snprintf(spec, sizeof(spec), "sqlite:%s", path);
	return tap_open(spec, err, errlen);
}

static void close_drive(void)
{
	ops->destroy(ctx.data);
	ctx.data = NULL;
}

static int truncate_(vd_node_t n, off_t size)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_size = size;
	return ops->setattr(&ctx, n, &st, VD_SET_SIZE, NULL);
}

/* One integer from SQL on the database, through a second connection. */
static long long sql_int(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	long long v = -1;

	if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL))
		return -2;
	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			v = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	sqlite3_close(db);
	return v;
}

/* Run SQL on the database through a second, writing connection. */
static int sql_exec(const char *sql)
{
	sqlite3 *db;
	int rc;

	if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL))
		return -1;
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

/*
 * The rows in which the sqlar table and the tree differ (0: in step),
 * with what sqlar should hold computed from the other tables in SQL:
 * a row per name of every file, folder and symlink; content (holes
 * zero-filled) for regular files up to 1 MiB, NULL for larger ones.
 */
#define SQLAR_DIFF                                                             \
	"WITH RECURSIVE paths(ino, path) AS ("                                 \
	" SELECT ino, name FROM dentries WHERE parent = 1 UNION ALL"           \
	" SELECT d.ino, p.path || '/' || d.name FROM dentries d"               \
	" JOIN paths p ON d.parent = p.ino),"                                  \
	" want(name, mode, mtime, sz, data) AS ("                              \
	" SELECT p.path, i.mode, CAST(floor(i.mtime / 1e9) AS INT),"           \
	" CASE i.mode & 61440 WHEN 32768 THEN i.size"                          \
	"  WHEN 40960 THEN length(i.target) ELSE 0 END,"                       \
	" CASE WHEN i.mode & 61440 = 32768 AND i.size <= 1048576 THEN ("       \
	"  WITH RECURSIVE k(idx) AS (SELECT 0 UNION ALL SELECT idx + 1"        \
	"   FROM k WHERE (idx + 1) * 131072 < i.size)"                         \
	"  SELECT CAST(coalesce(group_concat(part, ''), x'') AS BLOB) FROM ("  \
	"   SELECT CAST(coalesce(c.data, x'') || zeroblob(min(131072,"         \
	"    i.size - k.idx * 131072) - coalesce(length(c.data), 0))"          \
	"    AS BLOB) AS part FROM k LEFT JOIN chunks c"                       \
	"    ON c.ino = i.ino AND c.idx = k.idx ORDER BY k.idx))"              \
	"  WHEN i.mode & 61440 = 40960 THEN CAST(i.target AS BLOB) END"        \
	" FROM paths p JOIN inodes i ON i.ino = p.ino"                         \
	" WHERE i.mode & 61440 IN (32768, 16384, 40960))"                      \
	" SELECT (SELECT count(*) FROM (SELECT * FROM want EXCEPT"             \
	"  SELECT * FROM sqlar)) + (SELECT count(*) FROM (SELECT * FROM sqlar" \
	"  EXCEPT SELECT * FROM want))"

/* Does PRAGMA integrity_check answer "ok"? */
static int integrity_ok(void)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	int good = 0;

	if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL))
		return 0;
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL) ==
	    SQLITE_OK) {
		good = sqlite3_step(q) == SQLITE_ROW &&
		       !strcmp((const char *)sqlite3_column_text(q, 0), "ok");
		sqlite3_finalize(q);
	}
	sqlite3_close(db);
	return good;
}

static void pattern(unsigned char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = seed >> 16;
	}
}

struct listing {
	char names[64][32];
	off_t next[64];
	int n, max;
};

static int collect(void *buf, const char *name, vd_node_t node,
		   const struct stat *st, off_t next)
{
	struct listing *l = buf;

	(void)node, (void)st;
	if (l->n >= l->max)
		return 1;
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s", name);
	l->next[l->n++] = next;
	return 0;
}

static void test_round_trip(void)
{
	static unsigned char buf[3 * CS + 100], back[3 * CS + 100];
	vd_node_t d = mkdirn(VD_ROOT, "d"), f;
	struct stat st;

	ok(d != 0, "mkdir");
	f = mkfile(d, "f", 0644);
	ok(f != 0, "create");
	st = attr(f);
	ok(S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0644 &&
		   st.st_size == 0 && st.st_nlink == 1,
	   "new file attributes");
	ok(attr(d).st_nlink == 2 && attr(VD_ROOT).st_nlink == 3,
	   "folder link counts");
	pattern(buf, sizeof(buf), 1);
	ok(wr(f, buf, sizeof(buf), 0) == (int)sizeof(buf), "write 3 chunks+");
	ok(attr(f).st_size == (off_t)sizeof(buf), "size after write");
	memset(back, 0, sizeof(back));
	ok(rd(f, back, sizeof(back), 0) == (int)sizeof(back) &&
		   !memcmp(buf, back, sizeof(buf)),
	   "read back");
	/* Across a chunk boundary, unaligned. */
	pattern(buf, 1000, 2);
	ok(wr(f, buf, 1000, CS - 500) == 1000, "write across a boundary");
	ok(rd(f, back, 1000, CS - 500) == 1000 && !memcmp(buf, back, 1000),
	   "read across a boundary");
	ok(rd(f, back, 100, 3 * CS + 50) == 50, "short read at end of file");
	ok(rd(f, back, 100, 3 * CS + 100) == 0, "read at end of file");
	ok(lookup(d, "f") == f && lookup(d, "nope") == 0, "lookup");
}

/* Random writes, truncates and punches against an in-memory model. */
static void test_model(void)
{
	enum { MAX = 5 * CS + 777 };
	static unsigned char model[MAX], buf[MAX], back[MAX];
	vd_node_t f = mkfile(VD_ROOT, "model", 0644);
	struct vd_file fi = {.flags = O_RDWR};
	size_t size = 0;
	unsigned seed = 7;
	int bad = 0;

	for (int i = 0; i < 400 && !bad; i++) {
		seed = seed * 1103515245 + 12345;
		unsigned op = (seed >> 16) % 10;
		size_t off = (seed = seed * 1103515245 + 12345) % MAX;
		size_t len = (seed = seed * 1103515245 + 12345) % (2 * CS);

		if (off + len > MAX)
			len = MAX - off;
		if (op < 6) {
			pattern(buf, len, seed);
			if (wr(f, buf, len, off) != (int)len)
				bad = 1;
			memcpy(model + off, buf, len);
			if (off > size)
				memset(model + size, 0, off - size);
			if (off + len > size)
				size = off + len;
		} else if (op < 8) {
			if (truncate_(f, off))
				bad = 2;
			if (off > size)
				memset(model + size, 0, off - size);
			size = off;
		} else if (op == 8) {
			if (ops->fallocate(&ctx, f, &fi,
					   FALLOC_FL_PUNCH_HOLE |
						   FALLOC_FL_KEEP_SIZE,
					   off, len ? len : 1))
				bad = 3;
			if (off < size)
				memset(model + off, 0,
				       (off + len > size ? size : off + len) -
					       off);
		} else {
			if (ops->fallocate(&ctx, f, &fi, FALLOC_FL_ZERO_RANGE,
					   off, len ? len : 1))
				bad = 4;
			size_t end = off + (len ? len : 1);
			if (off < size)
				memset(model + off, 0,
				       (end > size ? size : end) - off);
			if (end > size) {
				memset(model + size, 0, end - size);
				size = end;
			}
		}
		if ((size_t)attr(f).st_size != size)
			bad = 5;
		memset(back, 0xee, sizeof(back));
		if (rd(f, back, MAX, 0) != (int)size ||
		    memcmp(back, model, size))
			bad = 6;
	}
	ok(!bad, "400 random writes/truncates/punches match the model (%d)",
	   bad);
}

/*
 * Small writes to six files in turn (more files than the source keeps
 * chunks in memory), with commits, truncates and reads in between.
 */
static void test_small_writes(void)
{
	enum { NF = 6, MAX = 3 * CS };
	static unsigned char model[NF][MAX], back[MAX], buf[5000];
	size_t size[NF] = {0};
	vd_node_t f[NF];
	unsigned seed = 11;
	int bad = 0;
	char name[16];

	for (int i = 0; i < NF; i++) {
		snprintf(name, sizeof(name), "small%d", i);
		f[i] = mkfile(VD_ROOT, name, 0644);
	}
	for (int i = 0; i < 3000 && !bad; i++) {
		int k = i % NF;
		seed = seed * 1103515245 + 12345;
		size_t len = (seed >> 8) % sizeof(buf) + 1;
		size_t off = (seed >> 4) % 4 ? size[k] : (seed >> 12) % MAX;

		if (off + len > MAX)
			off = MAX - len;
		pattern(buf, len, seed);
		if (wr(f[k], buf, len, off) != (int)len)
			bad = 1;
		if (off > size[k])
			memset(model[k] + size[k], 0, off - size[k]);
		memcpy(model[k] + off, buf, len);
		if (off + len > size[k])
			size[k] = off + len;
		if (i % 97 == 0)
			ops->fsync(&ctx, f[k], 0, NULL);
		if (i % 251 == 0) {
			size[k] /= 2;
			if (truncate_(f[k], size[k]))
				bad = 2;
		}
		if (i % 13 == 0 && (rd(f[k], back, MAX, 0) != (int)size[k] ||
				    memcmp(back, model[k], size[k])))
			bad = 3;
	}
	for (int k = 0; k < NF && !bad; k++) {
		if (attr(f[k]).st_size != (off_t)size[k] ||
		    rd(f[k], back, MAX, 0) != (int)size[k] ||
		    memcmp(back, model[k], size[k]))
			bad = 4;
	}
	ok(!bad, "3000 small writes over 6 files match the model (%d)", bad);
}

static void test_sparse(void)
{
	static unsigned char buf[CS], back[CS];
	vd_node_t f = mkfile(VD_ROOT, "sparse", 0644);
	struct vd_file fi = {.flags = O_RDWR};
	off_t far = 10LL << 30; /* 10 GiB */

	pattern(buf, sizeof(buf), 3);
	ok(wr(f, buf, 100, far) == 100, "write at 10 GiB");
	ok(attr(f).st_size == far + 100, "sparse size");
	ok(attr(f).st_blocks < 8, "sparse file uses no blocks for holes");
	memset(back, 1, sizeof(back));
	ok(rd(f, back, CS, far / 2) == CS && back[0] == 0 &&
		   !memcmp(back, back + 1, CS - 1),
	   "hole reads zeros");
	ok(ops->lseek(&ctx, f, &fi, 0, SEEK_DATA) == far - far % CS,
	   "SEEK_DATA skips the hole");
	ok(ops->lseek(&ctx, f, &fi, 0, SEEK_HOLE) == 0, "SEEK_HOLE at 0");
	ok(ops->lseek(&ctx, f, &fi, far, SEEK_HOLE) == far + 100,
	   "SEEK_HOLE at the end");
	ok(ops->lseek(&ctx, f, &fi, far + 100, SEEK_DATA) == -ENXIO,
	   "SEEK_DATA past the end: ENXIO");
	ok(rd(f, back, 100, far) == 100 && !memcmp(back, buf, 100),
	   "data after the hole");
}

static void test_truncate(void)
{
	static unsigned char buf[2 * CS], back[2 * CS];
	vd_node_t f = mkfile(VD_ROOT, "trunc", 0644);
	struct vd_file fi = {.flags = O_WRONLY | O_TRUNC};

	pattern(buf, sizeof(buf), 4);
	wr(f, buf, sizeof(buf), 0);
	ok(truncate_(f, CS + 10) == 0 && attr(f).st_size == CS + 10,
	   "truncate down");
	ok(truncate_(f, 2 * CS) == 0, "truncate up");
	ok(rd(f, back, sizeof(back), 0) == 2 * CS &&
		   !memcmp(back, buf, CS + 10) && back[CS + 10] == 0 &&
		   !memcmp(back + CS + 10, back + CS + 11, CS - 11),
	   "the cut tail reads as zeros after growing");
	ok(ops->open(&ctx, f, &fi) == 0 && attr(f).st_size == 0,
	   "open with O_TRUNC empties the file");
	ops->release(&ctx, f, &fi);
	ok(attr(f).st_blocks == 0, "no blocks after O_TRUNC");
}

static void test_rename(void)
{
	vd_node_t a = mkdirn(VD_ROOT, "ra"), b = mkdirn(VD_ROOT, "rb");
	vd_node_t sub = mkdirn(a, "sub"), x = mkfile(a, "x", 0644);
	vd_node_t y = mkfile(b, "y", 0644), full = mkdirn(b, "full");

	mkfile(full, "inside", 0644);
	ok(ops->rename(&ctx, a, "x", b, "x2", 0) == 0 && lookup(b, "x2") == x &&
		   !lookup(a, "x"),
	   "rename a file across folders");
	ok(ops->rename(&ctx, b, "x2", b, "y", RENAME_NOREPLACE) == -EEXIST,
	   "NOREPLACE on an existing name: EEXIST");
	ok(ops->rename(&ctx, b, "x2", b, "y", RENAME_EXCHANGE) == 0 &&
		   lookup(b, "y") == x && lookup(b, "x2") == y,
	   "EXCHANGE swaps");
	ok(ops->rename(&ctx, b, "x2", b, "nope", RENAME_EXCHANGE) == -ENOENT,
	   "EXCHANGE with a missing target: ENOENT");
	ok(ops->rename(&ctx, b, "x2", b, "y", 0) == 0 && lookup(b, "y") == y &&
		   attr(x).st_nlink == 0,
	   "rename replaces a file, which loses its link");
	ok(ops->rename(&ctx, VD_ROOT, "ra", a, "in", 0) == -EINVAL &&
		   ops->rename(&ctx, VD_ROOT, "ra", sub, "in", 0) == -EINVAL,
	   "a folder into its own subtree: EINVAL");
	ok(ops->rename(&ctx, a, "sub", b, "full", 0) == -ENOTEMPTY,
	   "onto a non-empty folder: ENOTEMPTY");
	ok(ops->rename(&ctx, b, "y", a, "sub", 0) == -EISDIR,
	   "a file onto a folder: EISDIR");
	ok(ops->rename(&ctx, a, "sub", b, "y", 0) == -ENOTDIR,
	   "a folder onto a file: ENOTDIR");
	ok(ops->rename(&ctx, a, "sub", b, "sub", 0) == 0 &&
		   attr(a).st_nlink == 2 && attr(b).st_nlink == 4,
	   "moving a folder moves its parent link");
	ok(ops->rename(&ctx, b, "sub", b, "full", RENAME_EXCHANGE) == 0 &&
		   lookup(b, "full") == sub,
	   "EXCHANGE two folders");
	vd_node_t empty = mkdirn(a, "empty");
	ok(ops->rename(&ctx, b, "full", a, "empty", 0) == 0 &&
		   lookup(a, "empty") == sub && attr(empty).st_nlink == 0 &&
		   attr(a).st_nlink == 3 && attr(b).st_nlink == 3,
	   "a folder replaces an empty folder");
	ok(ops->rename(&ctx, a, "empty", a, "empty", 0) == 0,
	   "rename onto itself");
	ok(ops->rename(&ctx, a, "empty", a, "e2", 1u << 5) == -EINVAL,
	   "unknown flags: EINVAL");
	ops->forget(ctx.data, x);
	ops->forget(ctx.data, empty);
	ok(attr(x).st_mode == 0 && attr(empty).st_mode == 0,
	   "forget deletes an inode with no name left");
}

static void test_links(void)
{
	vd_node_t f = mkfile(VD_ROOT, "l1", 0644), d = lookup(VD_ROOT, "ra");
	struct stat st;
	vd_node_t s = 0;
	char buf[64];

	ok(ops->link(&ctx, f, VD_ROOT, "l2", &st) == 0 && st.st_nlink == 2 &&
		   lookup(VD_ROOT, "l2") == f,
	   "hard link");
	ok(ops->link(&ctx, d, VD_ROOT, "l3", &st) == -EPERM,
	   "hard link to a folder: EPERM");
	ok(ops->link(&ctx, f, VD_ROOT, "l2", &st) == -EEXIST,
	   "hard link onto a name: EEXIST");
	ok(ops->unlink(&ctx, VD_ROOT, "l1") == 0 && attr(f).st_nlink == 1,
	   "unlink one of two names");
	ok(ops->symlink(&ctx, "some/target", VD_ROOT, "sym", &s, &st) == 0 &&
		   S_ISLNK(st.st_mode) && st.st_size == 11,
	   "symlink");
	ok(ops->readlink(&ctx, s, buf, sizeof(buf)) == 0 &&
		   !strcmp(buf, "some/target"),
	   "readlink");
	ok(ops->readlink(&ctx, f, buf, sizeof(buf)) == -EINVAL,
	   "readlink of a file: EINVAL");
	ok(ops->unlink(&ctx, VD_ROOT, "ra") == -EISDIR,
	   "unlink a folder: EISDIR");
	ok(ops->rmdir(&ctx, VD_ROOT, "ra") == -ENOTEMPTY,
	   "rmdir a non-empty folder: ENOTEMPTY");
	ok(ops->rmdir(&ctx, VD_ROOT, "l2") == -ENOTDIR,
	   "rmdir a file: ENOTDIR");
	ok(ops->mknod(&ctx, VD_ROOT, "fifo", S_IFIFO | 0600, 0, &s, &st) == 0 &&
		   S_ISFIFO(attr(s).st_mode),
	   "mknod a fifo");
	ok(ops->mkdir(&ctx, VD_ROOT, "l2", 0755, &s, &st) == -EEXIST,
	   "mkdir on a name: EEXIST");
}

static void test_xattr(void)
{
	vd_node_t f = mkfile(VD_ROOT, "xa", 0644);
	char buf[64];

	ok(ops->setxattr(&ctx, f, "user.a", "hello", 5, 0) == 0, "setxattr");
	ok(ops->getxattr(&ctx, f, "user.a", NULL, 0) == 5, "size probe");
	ok(ops->getxattr(&ctx, f, "user.a", buf, 2) == -ERANGE, "ERANGE");
	ok(ops->getxattr(&ctx, f, "user.a", buf, sizeof(buf)) == 5 &&
		   !memcmp(buf, "hello", 5),
	   "getxattr");
	ok(ops->getxattr(&ctx, f, "user.b", buf, sizeof(buf)) == -ENODATA,
	   "missing: ENODATA");
	ok(ops->setxattr(&ctx, f, "user.a", "x", 1, XATTR_CREATE) == -EEXIST,
	   "XATTR_CREATE on an existing one: EEXIST");
	ok(ops->setxattr(&ctx, f, "user.b", "x", 1, XATTR_REPLACE) == -ENODATA,
	   "XATTR_REPLACE on a missing one: ENODATA");
	ok(ops->setxattr(&ctx, f, "user.b", "", 0, XATTR_CREATE) == 0 &&
		   ops->getxattr(&ctx, f, "user.b", buf, sizeof(buf)) == 0,
	   "empty value");
	ok(ops->listxattr(&ctx, f, NULL, 0) == 14 &&
		   ops->listxattr(&ctx, f, buf, sizeof(buf)) == 14 &&
		   !memcmp(buf, "user.a\0user.b\0", 14),
	   "listxattr");
	ok(ops->listxattr(&ctx, f, buf, 3) == -ERANGE, "listxattr ERANGE");
	ok(ops->removexattr(&ctx, f, "user.a") == 0 &&
		   ops->removexattr(&ctx, f, "user.a") == -ENODATA,
	   "removexattr");
	ok(ops->setxattr(&ctx, f, "bogus.a", "x", 1, 0) == -EOPNOTSUPP,
	   "unknown namespace: EOPNOTSUPP");
}

/* A default ACL u::rwx g::r-x o::--- plus user 1000 rwx, mask rwx. */
static void test_inherit(void)
{
	/* user::rwx user:1000:rwx group::r-x mask::rwx other::--- */
	static const unsigned int ent[] = {
		0x01, 7, 0, 0x02, 7, 1000, 0x04, 5, 0, 0x10, 7, 0, 0x20, 0, 0};
	static const unsigned int min[] = {0x01, 6, 0, 0x04, 4, 0, 0x20, 0, 0};
	char acl[4 + 5 * 8], three[4 + 3 * 8];
	vd_node_t d = mkdirn(VD_ROOT, "acl"), f, sub;
	struct stat st;
	char buf[128];

	acl_value(acl, 5, ent);
	ok(ops->setxattr(&ctx, d, "system.posix_acl_default", acl, sizeof(acl),
			 0) == 0,
	   "set a default ACL");
	ctx.umask = 077;
	f = mkfile(d, "f", 0666);
	ok((attr(f).st_mode & 0777) == 0660,
	   "default ACL wins over the umask (mode %o)", attr(f).st_mode & 0777);
	ok(ops->getxattr(&ctx, f, "system.posix_acl_access", buf,
			 sizeof(buf)) == (int)sizeof(acl),
	   "the file inherits an access ACL");
	sub = mkdirn(d, "sub");
	ok(ops->getxattr(&ctx, sub, "system.posix_acl_default", buf,
			 sizeof(buf)) == (int)sizeof(acl),
	   "a subfolder inherits the default ACL");
	f = mkfile(VD_ROOT, "um", 0666);
	ok((attr(f).st_mode & 0777) == 0600, "umask applies without an ACL");
	ctx.umask = 022;
	memset(&st, 0, sizeof(st));
	st.st_mode = 02775;
	ops->setattr(&ctx, d, &st, VD_SET_MODE, NULL);
	st.st_gid = 4242;
	ops->setattr(&ctx, d, &st, VD_SET_GID, NULL);
	ctx.uid = 1000;
	ctx.gid = 1000;
	f = mkfile(d, "g", 0644);
	sub = mkdirn(d, "gsub");
	ok(attr(f).st_gid == 4242 && attr(f).st_uid == 1000 &&
		   attr(sub).st_gid == 4242 && (attr(sub).st_mode & S_ISGID),
	   "a setgid folder passes on its group and setgid bit");
	ctx.uid = ctx.gid = 0;
	/* Setting an access ACL sets the mode bits it stands for. */
	f = mkfile(VD_ROOT, "acl-mode", 0600);
	acl[4 + 3 * 8 + 2] = 4; /* mask r-- */
	ok(ops->setxattr(&ctx, f, "system.posix_acl_access", acl, sizeof(acl),
			 0) == 0 &&
		   (attr(f).st_mode & 0777) == 0740,
	   "an access ACL sets the mode");
	acl_value(three, 3, min);
	ok(ops->setxattr(&ctx, f, "system.posix_acl_access", three,
			 sizeof(three), 0) == 0 &&
		   (attr(f).st_mode & 0777) == 0640 &&
		   ops->getxattr(&ctx, f, "system.posix_acl_access", buf,
				 sizeof(buf)) == -ENODATA,
	   "a minimal access ACL only sets the mode");
}

static void test_unlink_open(void)
{
	static unsigned char buf[1000], back[1000];
	struct vd_file fi = {.flags = O_RDWR};
	struct stat st;
	vd_node_t f = 0;
	char q[128];

	ops->create(&ctx, VD_ROOT, "uo", 0644, &fi, &f, &st);
	pattern(buf, sizeof(buf), 5);
	wr(f, buf, sizeof(buf), 0);
	ok(ops->unlink(&ctx, VD_ROOT, "uo") == 0 && !lookup(VD_ROOT, "uo"),
	   "unlink an open file");
	ops->forget(ctx.data, f);
	ok(rd(f, back, sizeof(back), 0) == (int)sizeof(back) &&
		   !memcmp(buf, back, sizeof(buf)),
	   "still readable while open, even after forget");
	ops->release(&ctx, f, &fi);
	ok(attr(f).st_mode == 0, "gone after the last release");
	ops->fsync(&ctx, VD_ROOT, 0, NULL);
	snprintf(q, sizeof(q), "SELECT count(*) FROM chunks WHERE ino=%llu",
		 (unsigned long long)f);
	ok(sql_int(q) == 0, "its chunks are deleted");
	ok(ops->tmpfile(&ctx, VD_ROOT, 0600, &fi, &f, &st) == 0 &&
		   st.st_nlink == 0,
	   "tmpfile has no name");
	ok(wr(f, "tmp", 3, 0) == 3 &&
		   ops->link(&ctx, f, VD_ROOT, "tmpnamed", &st) == 0 &&
		   st.st_nlink == 1,
	   "tmpfile linked in");
	ops->release(&ctx, f, &fi);
	ops->forget(ctx.data, f);
	ok(attr(lookup(VD_ROOT, "tmpnamed")).st_size == 3,
	   "a linked tmpfile survives release and forget");
}

static void test_readdir(void)
{
	vd_node_t d = mkdirn(VD_ROOT, "list");
	struct listing l = {.max = 64};
	char name[16];
	int i, all, seen = 0;

	for (i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "e%d", i);
		mkfile(d, name, 0644);
	}
	ops->readdir(&ctx, d, NULL, 0, collect, &l);
	ok(l.n == 12 && !strcmp(l.names[0], ".") && !strcmp(l.names[1], ".."),
	   "readdir lists . .. and 10 entries");
	all = l.n;
	/* Resume after the 5th entry, after removing an earlier one. */
	off_t resume = l.next[4];
	ops->unlink(&ctx, d, "e0");
	mkfile(d, "late", 0644);
	struct listing m = {.max = 64};
	ops->readdir(&ctx, d, NULL, resume, collect, &m);
	for (i = 0; i < m.n; i++)
		seen += !strcmp(m.names[i], l.names[5 + i]);
	ok(m.n == all - 5 + 1 && seen == all - 5 &&
		   !strcmp(m.names[m.n - 1], "late"),
	   "resuming at an offset continues where it left off");
	struct listing small = {.max = 3};
	ops->readdir(&ctx, d, NULL, 0, collect, &small);
	ok(small.n == 3, "a full buffer stops the listing");
}

static void test_fallocate(void)
{
	vd_node_t f = mkfile(VD_ROOT, "fa", 0644);
	struct vd_file fi = {.flags = O_RDWR};
	static unsigned char buf[3 * CS], back[3 * CS];

	ok(ops->fallocate(&ctx, f, &fi, 0, 0, 1000) == 0 &&
		   attr(f).st_size == 1000 && attr(f).st_blocks >= 1000 / 512,
	   "fallocate grows the file and takes the space");
	ok(ops->fallocate(&ctx, f, &fi, FALLOC_FL_KEEP_SIZE, 0, 5000) == 0 &&
		   attr(f).st_size == 1000,
	   "KEEP_SIZE keeps the size");
	pattern(buf, sizeof(buf), 6);
	wr(f, buf, sizeof(buf), 0);
	long long before = attr(f).st_blocks;
	ok(ops->fallocate(&ctx, f, &fi,
			  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100,
			  2 * CS) == 0,
	   "punch a hole");
	memset(buf + 100, 0, 2 * CS);
	ok(rd(f, back, sizeof(back), 0) == 3 * CS &&
		   !memcmp(back, buf, sizeof(buf)),
	   "the hole reads as zeros, the rest is intact");
	ok(attr(f).st_blocks < before, "punching frees space");
	ok(ops->fallocate(&ctx, f, &fi, FALLOC_FL_PUNCH_HOLE, 0, 10) ==
		   -EOPNOTSUPP,
	   "PUNCH_HOLE without KEEP_SIZE is refused");
	ok(ops->fallocate(&ctx, f, &fi, FALLOC_FL_ZERO_RANGE, 3 * CS - 10,
			  100) == 0 &&
		   attr(f).st_size == 3 * CS + 90,
	   "ZERO_RANGE past the end grows the file");
}

static void test_copy(void)
{
	static unsigned char buf[3 * CS], back[3 * CS];
	struct vd_file fi = {.flags = O_RDWR};
	vd_node_t a = mkfile(VD_ROOT, "cpa", 0644),
		  b = mkfile(VD_ROOT, "cpb", 0644);

	pattern(buf, sizeof(buf), 8);
	wr(a, buf, sizeof(buf), 0);
	ok(ops->copy_file_range(&ctx, a, &fi, 1000, b, &fi, 77, 2 * CS, 0) ==
		   2 * CS,
	   "copy_file_range between files");
	ok(attr(b).st_size == 77 + 2 * CS &&
		   rd(b, back, 2 * CS, 77) == 2 * CS &&
		   !memcmp(back, buf + 1000, 2 * CS),
	   "the copy reads back");
	ok(ops->copy_file_range(&ctx, a, &fi, 3 * CS - 10, b, &fi, 0, 100, 0) ==
		   10,
	   "copy_file_range stops at the end of the source");
	wr(a, "small", 5, 0);
	ok(ops->copy_file_range(&ctx, a, &fi, 0, a, &fi, 2 * CS + 5, 2 * CS - 5,
				0) == 2 * CS - 5 &&
		   rd(a, back, 10, 2 * CS + 5) == 10 &&
		   !memcmp(back, "small", 5) && !memcmp(back + 5, buf + 5, 5),
	   "copy_file_range within one file");
	ok(ops->copy_file_range(&ctx, a, &fi, 0, a, &fi, 10, 100, 0) == -EINVAL,
	   "overlapping ranges of one file: EINVAL");
}

static void test_setattr(void)
{
	vd_node_t f = mkfile(VD_ROOT, "sa", 0644);
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = 0600;
	st.st_uid = 12;
	st.st_gid = 34;
	st.st_mtim.tv_sec = 1000000000;
	st.st_mtim.tv_nsec = 123456789;
	st.st_atim.tv_sec = 5;
	ok(ops->setattr(&ctx, f, &st,
			VD_SET_MODE | VD_SET_UID | VD_SET_GID | VD_SET_MTIME |
				VD_SET_ATIME,
			NULL) == 0,
	   "setattr");
	st = attr(f);
	ok((st.st_mode & 07777) == 0600 && S_ISREG(st.st_mode) &&
		   st.st_uid == 12 && st.st_gid == 34 &&
		   st.st_mtim.tv_sec == 1000000000 &&
		   st.st_mtim.tv_nsec == 123456789 && st.st_atim.tv_sec == 5,
	   "attributes stick, with nanoseconds");
	memset(&st, 0, sizeof(st));
	ok(ops->setattr(&ctx, lookup(VD_ROOT, "ra"), &st, VD_SET_SIZE, NULL) ==
		   -EISDIR,
	   "truncating a folder: EISDIR");
}

/* A committed sqlar row count: rows named name matching cond. */
static long long ar_rows(const char *name, const char *cond)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM sqlar WHERE name='%s' AND (%s)", name,
		 cond);
	return sql_int(sql);
}

/* Commit, so that a second connection sees the sqlar table. */
static int commit(void)
{
	return ops->fsync(&ctx, VD_ROOT, 0, NULL);
}

static void test_sqlar(void)
{
	static unsigned char buf[CS];
	vd_node_t ar = mkdirn(VD_ROOT, "ar"), sub = mkdirn(ar, "sub");
	vd_node_t f = mkfile(sub, "f", 0640), big = mkfile(ar, "big", 0644);
	vd_node_t ln = 0;
	struct stat st;

	pattern(buf, sizeof(buf), 7);
	wr(f, buf, 1000, 0);
	wr(big, buf, CS, 2 << 20);
	ops->symlink(&ctx, "sub/f", ar, "ln", &ln, &st);
	ops->link(&ctx, f, ar, "f2", &st);
	ok(commit() == 0 &&
		   sql_int("SELECT count(*) FROM sqlar WHERE name='ar' OR"
			   " name LIKE 'ar/%'") == 6,
	   "sqlar: a row per folder, file, symlink and hard link");
	ok(ar_rows("ar/sub/f", "mode=33184 AND sz=1000 AND "
			       "length(data)=1000") == 1 &&
		   ar_rows("ar/f2", "sz=1000 AND length(data)=1000") == 1,
	   "sqlar: a small file and its hard link carry mode, size, data");
	ok(ar_rows("ar/big", "sz=2228224 AND data IS NULL") == 1,
	   "sqlar: a file over 1 MiB has its size and NULL data");
	ok(ar_rows("ar/ln", "data=CAST('sub/f' AS BLOB) AND sz=5") == 1 &&
		   ar_rows("ar/sub", "data IS NULL AND sz=0 AND mode=16877") ==
			   1,
	   "sqlar: symlink target and folder rows");
	ok(ops->rename(&ctx, VD_ROOT, "ar", VD_ROOT, "ar2", 0) == 0 &&
		   commit() == 0 &&
		   sql_int("SELECT count(*) FROM sqlar WHERE name LIKE "
			   "'ar/%'") == 0 &&
		   ar_rows("ar2/sub/f", "length(data)=1000") == 1,
	   "sqlar: renaming a folder moves the rows under it");
	ok(truncate_(f, 10) == 0 && commit() == 0 &&
		   ar_rows("ar2/sub/f", "sz=10 AND length(data)=10") == 1 &&
		   ar_rows("ar2/f2", "sz=10 AND length(data)=10") == 1,
	   "sqlar: truncate reaches every name");
	ok(ops->rename(&ctx, ar, "sub", ar, "big", RENAME_EXCHANGE) == 0 &&
		   commit() == 0 && ar_rows("ar2/big/f", "sz=10") == 1 &&
		   ar_rows("ar2/sub", "sz=2228224") == 1 &&
		   ar_rows("ar2/big", "mode=16877") == 1,
	   "sqlar: RENAME_EXCHANGE of a folder and a file");
	ok(ops->unlink(&ctx, ar, "f2") == 0 && commit() == 0 &&
		   ar_rows("ar2/f2", "1") == 0 &&
		   ar_rows("ar2/big/f", "1") == 1,
	   "sqlar: unlink drops that name's row only");
	wr(f, buf, 100, 1 << 20);
	ok(commit() == 0 && ar_rows("ar2/big/f", "data IS NULL") == 1,
	   "sqlar: a file grown past 1 MiB loses its data copy");
	ok(truncate_(f, 5) == 0 && commit() == 0 &&
		   ar_rows("ar2/big/f", "length(data)=5") == 1,
	   "sqlar: and gets it back when cut down");
	ok(sql_int(SQLAR_DIFF) == 0, "sqlar matches the tree");
}

static int file_same(const char *path, const char *want, size_t len)
{
	char buf[256];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf));

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)len && !memcmp(buf, want, len);
}

static void test_bad_files(const char *dir)
{
	char path[256], err[256];
	static const char text[] = "just some text, not a database\n";
	int fd;
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/text", dir);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	ok(fd >= 0 && write(fd, text, sizeof(text)) == sizeof(text),
	   "made a text file");
	close(fd);
	err[0] = 0;
	ok(open_drive(path, err, sizeof(err)) == -EINVAL &&
		   strstr(err, "not an SQLite database"),
	   "a text file is refused: %s", err);
	ok(file_same(path, text, sizeof(text)), "and left intact");

	snprintf(path, sizeof(path), "%s/other.db", dir);
	sqlite3_open(path, &db);
	sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1)", NULL,
		     NULL, NULL);
	sqlite3_close(db);
	struct stat before, after;
	stat(path, &before);
	err[0] = 0;
	ok(open_drive(path, err, sizeof(err)) == -EINVAL &&
		   strstr(err, "not a vdrive"),
	   "another SQLite database is refused: %s", err);
	stat(path, &after);
	ok(before.st_size == after.st_size &&
		   before.st_mtim.tv_nsec == after.st_mtim.tv_nsec,
	   "and left intact");
	ok(open_drive(dir, err, sizeof(err)) == -EISDIR, "a folder is refused");
	ok(open_drive("", err, sizeof(err)) == -EINVAL, "no path is refused");
}

int main(void)
{
	static unsigned char buf[CS], back[CS];
	char err[256] = "";
	vd_node_t f;
	int r;

	tap_tmpdir("sqlite_test");
	snprintf(dbpath, sizeof(dbpath), "%s", tap_path("drive.db"));
	r = open_drive(dbpath, err, sizeof(err));
	ok(r == 0, "open a new database (%s)", err);
	if (r) {
		tap_done();
		return 1;
	}
	ok(S_ISDIR(attr(VD_ROOT).st_mode), "root is a folder");
	ok(ops->fsync(&ctx, VD_ROOT, 0, NULL) == 0 &&
		   sql_int("SELECT count(*) FROM inodes WHERE ino=1") == 1,
	   "the root row is there");
	err[0] = 0;
	ok(open_drive(dbpath, err, sizeof(err)) == -EBUSY,
	   "a second drive on the same database: EBUSY (%s)", err);
	test_round_trip();
	test_model();
	test_small_writes();
	test_sparse();
	test_truncate();
	test_rename();
	test_links();
	test_xattr();
	test_inherit();
	test_unlink_open();
	test_readdir();
	test_fallocate();
	test_setattr();
	test_copy();
	test_sqlar();

	ok(ops->fsync(&ctx, VD_ROOT, 0, NULL) == 0 &&
		   sql_int("SELECT count(*) FROM dentries WHERE "
			   "name='sparse'") == 1,
	   "fsync commits: a second connection sees the data");
	ok(sql_int("SELECT count(*) FROM sqlar WHERE name='d/f'") == 1 &&
		   sql_int("SELECT sz = length(data) FROM sqlar"
			   " WHERE name='d/f'") == 1,
	   "the sqlar table lists files with their data");
	ok(sql_int(SQLAR_DIFF) == 0,
	   "after every test above the sqlar table matches the tree");
	/* A crash leaves an unlinked inode behind; reopening collects it. */
	f = mkfile(VD_ROOT, "orphan", 0644);
	wr(f, "x", 1, 0);
	ops->unlink(&ctx, VD_ROOT, "orphan");
	close_drive();
	ok(sql_int("SELECT count(*) FROM inodes WHERE nlink=0") > 0,
	   "an orphan is left after close");
	r = open_drive(dbpath, err, sizeof(err));
	ok(r == 0, "reopen (%s)", err);
	if (r) {
		tap_done();
		return 1;
	}
	ok(sql_int("SELECT count(*) FROM inodes WHERE nlink=0") == 0,
	   "reopening collects orphans");
	pattern(buf, sizeof(buf), 3);
	f = lookup(VD_ROOT, "sparse");
	ok(f && attr(f).st_size == (10LL << 30) + 100 &&
		   rd(f, back, 100, 10LL << 30) == 100 &&
		   !memcmp(back, buf, 100),
	   "content persists across reopen");
	f = lookup(lookup(VD_ROOT, "d"), "f");
	pattern(buf, sizeof(buf), 1);
	ok(f && rd(f, back, 1000, 0) == 1000 && !memcmp(back, buf, 1000),
	   "a folder's file persists across reopen");
	ok(lookup(VD_ROOT, "sym") && lookup(VD_ROOT, "fifo") &&
		   attr(lookup(VD_ROOT, "l2")).st_nlink == 1,
	   "links persist");
	char v[8];
	ok(ops->getxattr(&ctx, lookup(VD_ROOT, "xa"), "user.b", v, 8) == 0 &&
		   ops->getxattr(&ctx, lookup(VD_ROOT, "xa"), "user.a", v, 8) ==
			   -ENODATA,
	   "xattrs persist");
	close_drive();
	ok(integrity_ok(), "PRAGMA integrity_check says ok");
	/* Make it a version 1 database again: the view, no table. */
	ok(sql_exec("DROP TABLE sqlar; DROP INDEX dentries_ino;"
		    " CREATE VIEW sqlar(name, mode, mtime, sz, data) AS"
		    " SELECT name, 0, 0, 0, NULL FROM dentries;"
		    " UPDATE meta SET value=1 WHERE key='version'") == 0,
	   "turn the database into a version 1 one");
	r = open_drive(dbpath, err, sizeof(err));
	ok(r == 0 && commit() == 0, "open a version 1 database (%s)", err);
	ok(sql_int("SELECT value FROM meta WHERE key='version'") == 2 &&
		   sql_int("SELECT count(*) FROM sqlite_schema WHERE"
			   " name='sqlar' AND type='table'") == 1 &&
		   sql_int(SQLAR_DIFF) == 0,
	   "it is upgraded: version 2, a sqlar table filled from the tree");
	if (!r)
		close_drive();
	test_bad_files(tap_dir);
	return tap_done();
}
