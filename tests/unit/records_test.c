/*
 * records_test.c - the records: source through its vd_ops table (no
 * mount) on a temp SQLite database, and its JSON reader. Prints TAP.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "records/json.h"
#include "sources.h"
#include "tap.h"

static char dbpath[256];
static sqlite3 *db;

/* One SQL query's first column as text ("" if no row, "NULL" for null). */
static const char *q(const char *sql)
{
	static char out[4][512];
	static int i;
	sqlite3_stmt *st;

	i = (i + 1) % 4;
	strcpy(out[i], "");
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return "ERROR";
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(out[i], sizeof(out[i]), "%s",
			 sqlite3_column_type(st, 0) == SQLITE_NULL
				 ? "NULL"
				 : (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return out[i];
}

/* Read a whole file through open/read/release into buf. */
static int slurp(vd_node_t n, char *buf, size_t size)
{
	struct vd_file fi = {.flags = O_RDONLY, .backing_fd = -1};
	int r = ops->open(&ctx, n, &fi), got;

	if (r)
		return r;
	got = ops->read(&ctx, n, &fi, buf, size - 1, 0);
	buf[got > 0 ? got : 0] = 0;
	ops->release(&ctx, n, &fi);
	return got < 0 ? got : 0;
}

/* Open n for writing (truncating), write text, and return what the
 * flush (close) says. */
static int put(vd_node_t n, const char *text)
{
	struct vd_file fi = {.flags = O_WRONLY | O_TRUNC, .backing_fd = -1};
	int r = ops->open(&ctx, n, &fi), w;

	if (r)
		return r;
	w = ops->write(&ctx, n, &fi, text, strlen(text), 0);
	r = ops->flush(&ctx, n, &fi);
	ops->release(&ctx, n, &fi);
	return w < 0 ? w : r;
}

struct names {
	char all[2048];
};

static int collect(void *buf, const char *name, vd_node_t node,
		   const struct stat *st, off_t next)
{
	struct names *n = buf;

	(void)node, (void)next;
	if (!st->st_ino)
		strcat(n->all, "(ino0)");
	strcat(n->all, name);
	strcat(n->all, " ");
	return 0;
}

static const char *list(vd_node_t dir)
{
	static struct names n;
	struct vd_file fi = {.backing_fd = -1};

	n.all[0] = 0;
	if (ops->readdir(&ctx, dir, &fi, 0, collect, &n))
		return "ERROR";
	return n.all;
}

static void test_json(void)
{
	struct vd_json_object o;
	char err[128];
	static const char *bad[] = {
		"",
		"[]",
		"{",
		"{\"a\":1,}",
		"{\"a\":1 \"b\":2}",
		"{\"a\":01}",
		"{\"a\":1}x",
		"{\"a\":1,\"a\":2}",
		"{\"a\":[1]}",
		"{\"a\":{\"b\":1}}",
		"{\"a\":\"\\ud800\"}",
		"{\"a\":\"\xff\"}",
		"{\"a\":\"x\ny\"}",
		"{\"a\":tru}",
		"{\"a\":1.}",
		"{\"a\":-}",
		"{\"a\":\"\\x\"}",
		"{\"a\":{\"$base64\":\"AAE\"}}",
		"{'a':1}",
	};
	struct vd_buf b = {0};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = vd_json_parse(bad[i], strlen(bad[i]), &o, err,
				      sizeof(err));
		char shown[64];
		size_t k = 0;

		/* One plain TAP line: bytes of the input that are not
		 * printable ASCII shown as '?'. */
		for (const char *c = bad[i]; *c && k < sizeof(shown) - 1; c++)
			shown[k++] = *c < 0x20 || *c > 0x7e ? '?' : *c;
		shown[k] = 0;
		ok(r == -EINVAL && err[0], "json rejects %s (%s)", shown, err);
	}
	ok(vd_json_parse(
		   " {\"i\": -12, \"r\": 1e3, \"t\": "
		   "\"\\u00e9\\ud83d\\ude00\\n\","
		   " \"n\": null, \"b\": true, \"big\": 99999999999999999999,"
		   " \"x\": {\"$base64\": \"AAEC\"}} ",
		   strlen(" {\"i\": -12, \"r\": 1e3, \"t\": "
			  "\"\\u00e9\\ud83d\\ude00\\n\","
			  " \"n\": null, \"b\": true, \"big\": "
			  "99999999999999999999,"
			  " \"x\": {\"$base64\": \"AAEC\"}} "),
		   &o, err, sizeof(err)) == 0 &&
		   o.n == 7,
	   "json reads every kind of value");
	ok(o.n == 7 && o.m[0].v.type == VD_JSON_INT && o.m[0].v.i == -12 &&
		   o.m[1].v.type == VD_JSON_REAL && o.m[1].v.r == 1000.0 &&
		   o.m[2].v.type == VD_JSON_TEXT &&
		   !strcmp(o.m[2].v.s, "\xc3\xa9\xf0\x9f\x98\x80\n") &&
		   o.m[3].v.type == VD_JSON_NULL && o.m[4].v.i == 1 &&
		   o.m[5].v.type == VD_JSON_REAL &&
		   o.m[6].v.type == VD_JSON_BLOB && o.m[6].v.len == 3 &&
		   !memcmp(o.m[6].v.s, "\0\1\2", 3),
	   "json values have the right types and bytes");
	vd_json_object_free(&o);
	vd_json_put_string(&b, "a\"\\\n\x01\xff", 6);
	vd_json_put_real(&b, 2.0);
	vd_json_put_real(&b, 0.1);
	ok(b.p && !strcmp(b.p, "\"a\\\"\\\\\\n\\u0001\xef\xbf\xbd\"2.00.1"),
	   "json writer escapes and writes reals that read back as reals (%s)",
	   b.p);
	vd_buf_free(&b);
}

/* Make scratch file name in dir with content text (closed again). */
static int scratch(vd_node_t dir, const char *name, const char *text)
{
	struct vd_file fi = {.flags = O_RDWR, .backing_fd = -1};
	struct stat st;
	vd_node_t n = 0;
	int r = ops->create(&ctx, dir, name, S_IFREG | 0600, &fi, &n, &st);

	if (r)
		return r;
	if (ops->write(&ctx, n, &fi, text, strlen(text), 0) !=
	    (int)strlen(text))
		r = -EIO;
	if (!r)
		r = ops->flush(&ctx, n, &fi);
	ops->release(&ctx, n, &fi);
	return r;
}

/* Files that are not KEY.json: kept in memory, saved by rename (sed -i). */
static void test_scratch(vd_node_t people)
{
	char buf[512];
	vd_node_t n;
	struct stat st;

	ok(scratch(people, "sedAbc", "{\"name\": \"Sed\"}") == 0 &&
		   strstr(list(people), "sedAbc"),
	   "a scratch file is created and listed (%s)", list(people));
	n = lookup(people, "sedAbc");
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | 0644;
	ok(n && ops->setattr(&ctx, n, &st, VD_SET_MODE, NULL) == 0 &&
		   st.st_mode == (S_IFREG | 0644) &&
		   slurp(n, buf, sizeof(buf)) == 0 &&
		   !strcmp(buf, "{\"name\": \"Sed\"}"),
	   "it takes a mode and reads back");
	ok(!strcmp(q("SELECT name FROM people WHERE id=1"), "Ann B"),
	   "it does not touch the row");
	ok(ops->rename(&ctx, people, "sedAbc", people, "1.json", 0) == 0 &&
		   !strcmp(q("SELECT name FROM people WHERE id=1"), "Sed") &&
		   !lookup(people, "sedAbc"),
	   "rename onto 1.json saves it into the row");
	n = lookup(people, "1.json");
	ok(n && slurp(n, buf, sizeof(buf)) == 0 && strstr(buf, "\"Sed\""),
	   "1.json reads the saved row");
	ok(scratch(people, "t1", "{\"age\": \"x\"}") == 0 &&
		   ops->rename(&ctx, people, "t1", people, "1.json", 0) ==
			   -EINVAL &&
		   !strcmp(q("SELECT age FROM people WHERE id=1"), "32") &&
		   lookup(people, "t1"),
	   "a bad save by rename fails with EINVAL; row and scratch stay");
	ok(ops->rename(&ctx, people, "t1", people, "t2", 0) == 0 &&
		   !lookup(people, "t1") && lookup(people, "t2") &&
		   ops->unlink(&ctx, people, "t2") == 0 &&
		   !lookup(people, "t2"),
	   "scratch files rename among themselves and unlink");
	ok(scratch(people, "t3", "{\"name\": \"Neo\"}") == 0 &&
		   ops->rename(&ctx, people, "t3", people, "1.json",
			       RENAME_NOREPLACE) == -EEXIST &&
		   ops->rename(&ctx, people, "t3", people, "40.json",
			       RENAME_NOREPLACE) == 0 &&
		   !strcmp(q("SELECT name FROM people WHERE id=40"), "Neo"),
	   "rename to a new KEY.json inserts; NOREPLACE onto a row: EEXIST");
	ok(ops->rename(&ctx, people, "40.json", people, "41.json", 0) ==
			   -EPERM &&
		   ops->unlink(&ctx, people, "40.json") == 0,
	   "rows are not renamed: EPERM");
	ok(!strcmp(list(people), ". .. 1.json 2.json 7.json "),
	   "no scratch file left (%s)", list(people));
}

static void setup_db(void)
{
	tap_tmpdir("records_test");
	snprintf(dbpath, sizeof(dbpath), "%s", tap_path("drive.db"));
	if (sqlite3_open(dbpath, &db) != SQLITE_OK ||
	    sqlite3_exec(
		    db,
		    "PRAGMA journal_mode=WAL;"
		    "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT "
		    "NULL,"
		    " age INTEGER CHECK(age >= 0), score REAL, pic BLOB,"
		    " email TEXT UNIQUE);"
		    "INSERT INTO people VALUES(1, 'Ann', 30, 1.5, x'0102ff', "
		    "'a@x');"
		    "INSERT INTO people VALUES(2, 'Bob', NULL, 2.0, NULL, "
		    "'b@x');"
		    "CREATE TABLE tags(name TEXT PRIMARY KEY, n INT);"
		    "INSERT INTO tags VALUES('a/b', 1), ('.', 2), ('x%y', 3);"
		    "CREATE TABLE log(msg);"
		    "INSERT INTO log VALUES('hello'), ('world');"
		    "CREATE TABLE s(id INTEGER PRIMARY KEY, v INTEGER) STRICT;"
		    "CREATE TABLE pair(a, b, PRIMARY KEY(a, b)) WITHOUT ROWID;"
		    "CREATE TABLE g(id INTEGER PRIMARY KEY, x INT,"
		    " twice INT GENERATED ALWAYS AS (x * 2));"
		    "INSERT INTO g(id, x) VALUES (1, 5);",
		    NULL, NULL, NULL) != SQLITE_OK)
		bail("cannot make %s: %s", dbpath, sqlite3_errmsg(db));
}

int main(void)
{
	const struct vd_source *src = vd_source_find("records:");
	char spec[300], err[256] = "", buf[4096];
	vd_node_t people, tags, logt, n;
	void *data = NULL;
	int r;

	test_json();
	setup_db();
	ctx.pid = getpid();
	ok(src != NULL, "records: is registered");
	if (!src)
		return 1;
	r = src->open("/nonexistent.db", &ops, &data, err, sizeof(err));
	ok(r < 0 && err[0], "a missing database fails to open (%s)", err);
	snprintf(spec, sizeof(spec), "%s,csv,poll=50", dbpath);
	err[0] = 0;
	r = src->open(spec, &ops, &data, err, sizeof(err));
	ok(r == 0, "opens %s (%s)", spec, err);
	if (r)
		return 1;
	ctx.data = data;

	ok(!strcmp(list(VD_ROOT), ". .. g log people s tags g.csv log.csv "
				  "people.csv s.csv tags.csv "),
	   "root lists tables and CSV files, not the composite-key table (%s)",
	   list(VD_ROOT));
	people = lookup(VD_ROOT, "people");
	tags = lookup(VD_ROOT, "tags");
	logt = lookup(VD_ROOT, "log");
	ok(people && tags && logt && !lookup(VD_ROOT, "pair") &&
		   !lookup(VD_ROOT, "sqlite_schema"),
	   "tables look up as folders");
	ok(!strcmp(list(people), ". .. 1.json 2.json "), "a file per row");
	n = lookup(people, "1.json");
	ok(n && slurp(n, buf, sizeof(buf)) == 0 &&
		   !strcmp(buf, "{\n  \"id\": 1,\n  \"name\": \"Ann\",\n  "
				"\"age\": 30,\n"
				"  \"score\": 1.5,\n  \"pic\": {\"$base64\": "
				"\"AQL/\"},\n"
				"  \"email\": \"a@x\"\n}\n"),
	   "row 1 reads as JSON:\n%s", buf);
	ok(!lookup(people, "01.json") && !lookup(people, "1") &&
		   !lookup(people, "3.json"),
	   "non-canonical, suffix-less and missing names do not exist");

	/* Edits: good, then each kind of bad, the row unchanged after each. */
	ok(put(n, "{\"name\": \"Ann B\", \"age\": 31, \"pic\": {\"$base64\": "
		  "\"AAEC\"}}") == 0 &&
		   !strcmp(q("SELECT name || age || hex(pic) FROM people WHERE "
			     "id=1"),
			   "Ann B31000102"),
	   "writing the file updates the row");
	ok(put(n, "{\"name\": \"X\",") == -EINVAL, "bad JSON: EINVAL");
	ok(put(n, "{\"age\": \"old\"}") == -EINVAL,
	   "text into INTEGER: EINVAL");
	ok(put(n, "{\"nmae\": \"X\"}") == -EINVAL, "unknown column: EINVAL");
	ok(put(n, "{\"age\": -1}") == -EINVAL, "CHECK violation: EINVAL");
	ok(put(n, "{\"name\": null}") == -EINVAL, "NOT NULL violation: EINVAL");
	ok(put(n, "{\"email\": \"b@x\"}") == -EEXIST,
	   "UNIQUE violation: EEXIST");
	ok(put(n, "{\"id\": 2, \"name\": \"X\"}") == -EINVAL,
	   "a key not matching the file name: EINVAL");
	ok(put(n, "{\"name\": 5}") == -EINVAL, "a number into TEXT: EINVAL");
	ok(!strcmp(q("SELECT name || age || score || email FROM people WHERE "
		     "id=1"),
		   "Ann B311.5a@x"),
	   "the row is unchanged after every failure");
	ok(put(n, "{\"id\": 1, \"age\": 32.0, \"score\": 3}") == 0 &&
		   !strcmp(q("SELECT age || ':' || typeof(age) || ':' || score "
			     "FROM people WHERE id=1"),
			   "32:integer:3.0"),
	   "a matching key and integral reals are accepted");

	/* Create, truncate, unlink. */
	{
		struct vd_file fi = {.flags = O_WRONLY | O_CREAT,
				     .backing_fd = -1};
		struct stat st;
		const char *t = "{\"name\": \"Cat\"}";
		vd_node_t c = 0;

		r = ops->create(&ctx, people, "7.json", S_IFREG | 0644, &fi, &c,
				&st);
		ok(r == 0, "create 7.json");
		ok(!r &&
			   ops->write(&ctx, c, &fi, t, strlen(t), 0) ==
				   (int)strlen(t) &&
			   ops->flush(&ctx, c, &fi) == 0 &&
			   !strcmp(q("SELECT name FROM people WHERE id=7"),
				   "Cat"),
		   "writing and closing it inserts the row");
		if (!r)
			ops->release(&ctx, c, &fi);
		memset(&fi, 0, sizeof(fi));
		fi.flags = O_WRONLY;
		r = ops->create(&ctx, people, "8.json", S_IFREG | 0644, &fi, &c,
				&st);
		t = "{\"age\": 3}";
		ok(!r && ops->write(&ctx, c, &fi, t, strlen(t), 0) > 0 &&
			   ops->flush(&ctx, c, &fi) == -EINVAL &&
			   !strcmp(q("SELECT count(*) FROM people WHERE id=8"),
				   "0"),
		   "an insert failing NOT NULL fails close and inserts "
		   "nothing");
		if (!r)
			ops->release(&ctx, c, &fi);
		memset(&fi, 0, sizeof(fi));
		ok(ops->create(&ctx, people, "x.json", S_IFREG | 0644, &fi, &c,
			       &st) == -EINVAL,
		   "a non-integer key for an INTEGER key: EINVAL");
		ok(ops->create(&ctx, people, "2.json", S_IFREG | 0644, &fi, &c,
			       &st) == -EEXIST,
		   "creating an existing row: EEXIST");
		memset(&st, 0, sizeof(st));
		st.st_size = 3;
		ok(ops->setattr(&ctx, lookup(people, "2.json"), &st,
				VD_SET_SIZE, NULL) == -EINVAL &&
			   !strcmp(q("SELECT name FROM people WHERE id=2"),
				   "Bob"),
		   "truncate(2) to a broken row: EINVAL, row kept");
	}
	{
		struct stat st;
		vd_node_t r2 = lookup(people, "2.json");

		ops->getattr(&ctx, r2, NULL, &st);
		st.st_mode = (st.st_mode & ~07777) | 0644;
		r = ops->setattr(&ctx, r2, &st, VD_SET_MODE | VD_SET_UID, NULL);
		st.st_mode = (st.st_mode & ~07777) | 0600;
		ok(r == 0 && ops->setattr(&ctx, r2, &st, VD_SET_MODE, NULL) ==
				     -EPERM,
		   "chmod to the same mode succeeds, to another fails with "
		   "EPERM");
	}
	test_scratch(people);
	ok(ops->unlink(&ctx, people, "2.json") == 0 &&
		   !strcmp(q("SELECT count(*) FROM people WHERE id=2"), "0") &&
		   !lookup(people, "2.json"),
	   "unlink deletes the row");
	ok(ops->unlink(&ctx, people, "2.json") == -ENOENT,
	   "unlink of a missing row: ENOENT");

	/* Text keys and escaping; rowid tables; CSV; STRICT. */
	ok(!strcmp(list(tags), ". .. %2E.json a%2Fb.json x%25y.json "),
	   "text keys escaped: / as %%2F, %% as %%25, . as %%2E (%s)",
	   list(tags));
	n = lookup(tags, "a%2Fb.json");
	ok(n && slurp(n, buf, sizeof(buf)) == 0 &&
		   strstr(buf, "\"name\": \"a/b\""),
	   "escaped name reads its row");
	ok(!lookup(tags, "a%2fb.json") && !lookup(tags, "a%2Xb.json"),
	   "non-canonical escapes do not exist");
	ok(put(n, "{\"n\": 10}") == 0 &&
		   !strcmp(q("SELECT n FROM tags WHERE name='a/b'"), "10"),
	   "update through an escaped name");
	{
		struct vd_file fi = {.flags = O_WRONLY, .backing_fd = -1};
		struct stat st;
		vd_node_t c = 0;

		r = ops->create(&ctx, tags, "new%25key.json", S_IFREG | 0644,
				&fi, &c, &st);
		ok(r == 0 && ops->flush(&ctx, c, &fi) == 0,
		   "create with an escaped name");
		if (!r)
			ops->release(&ctx, c, &fi);
		ok(!strcmp(q("SELECT count(*) FROM tags WHERE name='new%key'"),
			   "1"),
		   "touch of a new file inserts a row of defaults with the "
		   "decoded key");
	}
	ok(!strcmp(list(logt), ". .. 1.json 2.json "),
	   "rowid table: files by rowid");
	n = lookup(logt, "2.json");
	ok(n && slurp(n, buf, sizeof(buf)) == 0 &&
		   !strcmp(buf, "{\n  \"msg\": \"world\"\n}\n"),
	   "rowid row reads without the rowid");
	n = lookup(VD_ROOT, "people.csv");
	ok(n && slurp(n, buf, sizeof(buf)) == 0 &&
		   !strcmp(buf, "id,name,age,score,pic,email\r\n"
				"1,Sed,32,3.0,AAEC,a@x\r\n"
				"7,Cat,,,,\r\n"),
	   "CSV of the table:\n%s", buf);
	{
		struct vd_file fi = {.flags = O_WRONLY, .backing_fd = -1};

		ok(n && ops->open(&ctx, n, &fi) == -EACCES, "CSV is read-only");
	}
	n = lookup(VD_ROOT, "s");
	{
		struct vd_file fi = {.flags = O_WRONLY, .backing_fd = -1};
		struct stat st;
		vd_node_t c = 0;
		const char *t = "{\"v\": \"x\"}";

		r = ops->create(&ctx, n, "1.json", S_IFREG | 0644, &fi, &c,
				&st);
		ok(!r && ops->write(&ctx, c, &fi, t, strlen(t), 0) > 0 &&
			   ops->flush(&ctx, c, &fi) == -EINVAL,
		   "STRICT INTEGER column refuses text: EINVAL");
		if (!r)
			ops->release(&ctx, c, &fi);
	}

	/* Generated columns show, and are skipped when written back. */
	n = lookup(lookup(VD_ROOT, "g"), "1.json");
	ok(n && slurp(n, buf, sizeof(buf)) == 0 &&
		   !strcmp(buf, "{\n  \"id\": 1,\n  \"x\": 5,\n  \"twice\": "
				"10\n}\n") &&
		   put(n, "{\"id\": 1, \"x\": 6, \"twice\": 10}") == 0 &&
		   !strcmp(q("SELECT twice FROM g WHERE id=1"), "12"),
	   "a generated column reads, and is ignored when written back");

	/* A schema change by another program is seen at once. */
	sqlite3_exec(db, "ALTER TABLE people ADD COLUMN nick TEXT", NULL, NULL,
		     NULL);
	n = lookup(people, "1.json");
	ok(n && put(n, "{\"nick\": \"Annie\"}") == 0 &&
		   !strcmp(q("SELECT nick FROM people WHERE id=1"), "Annie") &&
		   slurp(n, buf, sizeof(buf)) == 0 &&
		   strstr(buf, "\"nick\": \"Annie\""),
	   "a column added outside is read and written");

	/* A change by another program is read at the next open. */
	sqlite3_exec(db, "UPDATE people SET name='Outside' WHERE id=1", NULL,
		     NULL, NULL);
	n = lookup(people, "1.json");
	ok(n && slurp(n, buf, sizeof(buf)) == 0 && strstr(buf, "\"Outside\""),
	   "outside changes are read");

	ops->destroy(data);

	/* Option ro: everything reads, nothing writes. */
	snprintf(spec, sizeof(spec), "%s,ro", dbpath);
	r = src->open(spec, &ops, &data, err, sizeof(err));
	ok(r == 0, "opens with ro (%s)", err);
	if (!r) {
		struct vd_file fi = {.flags = O_WRONLY, .backing_fd = -1};
		struct stat st;
		vd_node_t c;

		ctx.data = data;
		people = lookup(VD_ROOT, "people");
		n = lookup(people, "1.json");
		ok(n && slurp(n, buf, sizeof(buf)) == 0 &&
			   ops->open(&ctx, n, &fi) == -EROFS &&
			   ops->create(&ctx, people, "9.json", S_IFREG | 0644,
				       &fi, &c, &st) == -EROFS &&
			   ops->unlink(&ctx, people, "1.json") == -EROFS &&
			   ops->getattr(&ctx, n, NULL, &st) == 0 &&
			   (st.st_mode & 0222) == 0,
		   "ro: reads work; open for writing, create and unlink: "
		   "EROFS; no write bits");
		ops->destroy(data);
	}
	sqlite3_close(db);
	return tap_done();
}
