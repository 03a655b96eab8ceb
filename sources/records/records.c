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
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "records/json.h"
#include "sources.h"

#define REC_NBUCKETS 4096
#define REC_MAX_FILE (64 << 20) /* bigger writes: EFBIG */
#define REC_NAME_MAX 255

/* REC_SCRATCH: a file in a table folder whose name is not KEY.json, kept
 * in memory until renamed to KEY.json (how sed -i and editors save). */
enum rec_kind { REC_ROOT, REC_TABLE, REC_ROW, REC_CSV, REC_SCRATCH };

/* A node the kernel holds: a table folder, a row file or a CSV file. */
struct rec_node {
	vd_node_t id;
	enum rec_kind kind;
	char *table; /* the table's real name */
	char *name;  /* the entry's (escaped) name in its folder */
	/* REC_ROW: the key as SQLite stores it, to bind in WHERE clauses */
	int ktype; /* SQLITE_INTEGER, SQLITE_FLOAT or SQLITE_TEXT */
	sqlite3_int64 ki;
	double kr;
	char *kt;
	size_t ktlen;
	int pending;		 /* created, not inserted yet */
	int nopen;		 /* opens of this node */
	struct rec_open *writer; /* an open with unsaved writes */
	/* REC_SCRATCH: its content and attributes */
	struct vd_jbuf data;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec mtime;
	int linked; /* has a name in its folder */
	int held;   /* the kernel holds it (handed out, not forgotten) */
	struct rec_node *idnext, *namenext;
};

/* One open file: a snapshot of the content, then the caller's edits. */
struct rec_open {
	struct vd_jbuf buf;
	int dirty; /* written or truncated since the last save */
	int writable;
	int tried; /* a save was attempted through this open */
	struct rec_node *node;
};

/* What records: needs to know about a table, read fresh for each use. */
struct rec_table {
	char *name;
	int ncol;
	char **cols;
	char *aff; /* per column: 'I', 'R', 'N', 'T' or 'B' (none) */
	int key;   /* key column, or -1: the rowid */
};

/* A cached table description. */
struct rec_tcache {
	struct rec_table t;
	struct rec_tcache *next;
};

struct rec {
	pthread_mutex_t lock;
	sqlite3 *db;
	sqlite3_stmt *sv_stmt; /* PRAGMA schema_version */
	sqlite3_int64 schema_version;
	struct rec_tcache *tcache;
	char *path;
	int csv, ro;
	unsigned int poll_ms;
	struct vd_drive *drive; /* learned from the first callback */
	uid_t uid;
	gid_t gid;
	vd_node_t next_id;
	struct rec_node *byid[REC_NBUCKETS];
	struct rec_node *byname[REC_NBUCKETS];
	struct rec_node root;
	/* the change poller */
	pthread_t poller;
	int poller_started, stopping;
	int rescan; /* look for stale nodes even without a new data_version */
	pthread_cond_t cond;
	sqlite3_int64 data_version;
};

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

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 1099511628211ull;
	return h;
}

static unsigned int name_bucket(enum rec_kind kind, const char *table,
				const char *name)
{
	uint64_t h = 14695981039346656037ull;

	h = hash_bytes(h, &kind, sizeof(kind));
	h = hash_bytes(h, table, strlen(table) + 1);
	h = hash_bytes(h, name, strlen(name));
	return (unsigned int)(h % REC_NBUCKETS);
}

static struct rec_node *node_get(struct rec *s, vd_node_t id)
{
	struct rec_node *n;

	if (id == VD_ROOT)
		return &s->root;
	for (n = s->byid[id % REC_NBUCKETS]; n; n = n->idnext)
		if (n->id == id)
			return n;
	return NULL;
}

static struct rec_node *node_find(struct rec *s, enum rec_kind kind,
				  const char *table, const char *name)
{
	struct rec_node *n;

	for (n = s->byname[name_bucket(kind, table, name)]; n; n = n->namenext)
		if (n->kind == kind && !strcmp(n->table, table) &&
		    !strcmp(n->name, name))
			return n;
	return NULL;
}

static void node_free(struct rec_node *n)
{
	free(n->table);
	free(n->name);
	free(n->kt);
	vd_jbuf_free(&n->data);
	free(n);
}

/* Enter n under its (kind, table, name) for node_find(). */
static void name_hash(struct rec *s, struct rec_node *n)
{
	unsigned int b = name_bucket(n->kind, n->table, n->name);

	n->namenext = s->byname[b];
	s->byname[b] = n;
}

/* Take n out of the name chains: node_find() no longer finds it. */
static void name_unhash(struct rec *s, struct rec_node *n)
{
	struct rec_node **pp;

	for (pp = &s->byname[name_bucket(n->kind, n->table, n->name)]; *pp;
	     pp = &(*pp)->namenext)
		if (*pp == n) {
			*pp = n->namenext;
			break;
		}
	n->namenext = NULL;
}

/* The node for (kind, table, name), made if the kernel holds none yet. */
static struct rec_node *node_make(struct rec *s, enum rec_kind kind,
				  const char *table, const char *name)
{
	struct rec_node *n = node_find(s, kind, table, name);

	if (n)
		return n;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->table = strdup(table);
	n->name = strdup(name);
	if (!n->table || !n->name) {
		node_free(n);
		return NULL;
	}
	n->kind = kind;
	n->id = s->next_id++;
	n->idnext = s->byid[n->id % REC_NBUCKETS];
	s->byid[n->id % REC_NBUCKETS] = n;
	name_hash(s, n);
	return n;
}

/* Drop n from both hash chains and free it. */
static void node_remove(struct rec *s, struct rec_node *n)
{
	struct rec_node **pp;

	for (pp = &s->byid[n->id % REC_NBUCKETS]; *pp; pp = &(*pp)->idnext)
		if (*pp == n) {
			*pp = n->idnext;
			break;
		}
	name_unhash(s, n);
	node_free(n);
}

/*
 * File-name escaping: '%' -> %25, '/' -> %2F, NUL -> %00, and the whole
 * names "." and ".." -> %2E and %2E%2E. Everything else is kept as is.
 */
static void esc_name(struct vd_jbuf *b, const char *s, size_t n)
{
	if ((n == 1 && s[0] == '.') || (n == 2 && !memcmp(s, "..", 2))) {
		vd_jbuf_add(b, n == 1 ? "%2E" : "%2E%2E", n == 1 ? 3 : 6);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%')
			vd_jbuf_add(b, "%25", 3);
		else if (s[i] == '/')
			vd_jbuf_add(b, "%2F", 3);
		else if (s[i] == 0)
			vd_jbuf_add(b, "%00", 3);
		else
			vd_jbuf_add(b, s + i, 1);
	}
}

/* Undo esc_name() on the n bytes at name; -ENOENT unless name is exactly
 * what esc_name() makes, so each key has a single file name. */
static int unesc_name(struct vd_jbuf *out, const char *name, size_t n)
{
	struct vd_jbuf back = {0};
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		if (name[i] != '%') {
			vd_jbuf_add(out, name + i, 1);
			continue;
		}
		if (i + 2 >= n) {
			r = -ENOENT;
			break;
		}
		if (!strncmp(name + i, "%25", 3))
			vd_jbuf_add(out, "%", 1);
		else if (!strncmp(name + i, "%2F", 3))
			vd_jbuf_add(out, "/", 1);
		else if (!strncmp(name + i, "%00", 3))
			vd_jbuf_add(out, "", 1);
		else if (!strncmp(name + i, "%2E", 3))
			vd_jbuf_add(out, ".", 1);
		else
			r = -ENOENT;
		i += 2;
	}
	if (!r) {
		esc_name(&back, out->p ? out->p : "", out->len);
		if (back.oom || out->oom)
			r = -ENOMEM;
		else if (back.len != n || memcmp(back.p, name, n))
			r = -ENOENT;
	}
	vd_jbuf_free(&back);
	return r;
}

/* Append "name" quoted as an SQL identifier. */
static void put_ident(struct vd_jbuf *b, const char *name)
{
	vd_jbuf_add(b, "\"", 1);
	for (; *name; name++) {
		if (*name == '"')
			vd_jbuf_add(b, "\"", 1);
		vd_jbuf_add(b, name, 1);
	}
	vd_jbuf_add(b, "\"", 1);
}

/* The key text of a stored key value (the file name before escaping), or
 * -1 for keys that cannot name a file (NULL, blob). */
static int key_text(struct vd_jbuf *b, sqlite3_value *v)
{
	switch (sqlite3_value_type(v)) {
	case SQLITE_INTEGER:
		vd_jbuf_addf(b, "%lld", (long long)sqlite3_value_int64(v));
		return 0;
	case SQLITE_FLOAT:
		vd_json_put_real(b, sqlite3_value_double(v));
		return 0;
	case SQLITE_TEXT:
		vd_jbuf_add(b, sqlite3_value_text(v),
			    (size_t)sqlite3_value_bytes(v));
		return 0;
	default:
		return -1;
	}
}

/* The file name of a row (escaped key + ".json"), or -1 if it has none. */
static int row_name(struct vd_jbuf *b, sqlite3_value *key)
{
	struct vd_jbuf t = {0};
	int r = key_text(&t, key);

	if (r == 0) {
		esc_name(b, t.p ? t.p : "", t.len);
		vd_jbuf_add(b, ".json", 5);
		if (b->len > REC_NAME_MAX)
			r = -1;
	}
	vd_jbuf_free(&t);
	return r;
}

/* SQLite's column affinity for a declared type (its section 3.1 rules). */
static char type_affinity(const char *decl, int strict)
{
	char up[64];
	size_t i;

	for (i = 0; decl[i] && i < sizeof(up) - 1; i++)
		up[i] = (char)(decl[i] >= 'a' && decl[i] <= 'z' ? decl[i] - 32
								: decl[i]);
	up[i] = 0;
	if (strstr(up, "INT"))
		return 'I';
	if (strstr(up, "CHAR") || strstr(up, "CLOB") || strstr(up, "TEXT"))
		return 'T';
	if (!up[0] || strstr(up, "BLOB") || (strict && !strcmp(up, "ANY")))
		return 'B';
	if (strstr(up, "REAL") || strstr(up, "FLOA") || strstr(up, "DOUB"))
		return 'R';
	return 'N';
}

static void table_free(struct rec_table *t)
{
	for (int i = 0; i < t->ncol; i++)
		free(t->cols[i]);
	free(t->cols);
	free(t->aff);
	free(t->name);
	memset(t, 0, sizeof(*t));
}

/*
 * Read what records: needs about table name from the schema. -ENOENT if
 * there is no such table, or it is one records: does not show (internal,
 * virtual, or WITHOUT ROWID with a key of several columns).
 */
static int table_query(struct rec *s, const char *name, struct rec_table *t)
{
	sqlite3_stmt *st = NULL;
	int strict = 0, wr = 0, npk = 0, pkcol = -1, r = -ENOENT;

	memset(t, 0, sizeof(*t));
	if (!strncmp(name, "sqlite_", 7))
		return -ENOENT;
	if (sqlite3_prepare_v2(
		    s->db,
		    "SELECT strict, wr FROM pragma_table_list "
		    "WHERE schema = 'main' AND type = 'table' AND name = ?",
		    -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		strict = sqlite3_column_int(st, 0);
		wr = sqlite3_column_int(st, 1);
		r = 0;
	}
	sqlite3_finalize(st);
	if (r)
		return r;
	if (sqlite3_prepare_v2(s->db,
			       "SELECT name, type, pk FROM "
			       "pragma_table_info(?) ORDER BY cid",
			       -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	t->name = strdup(name);
	r = t->name ? 0 : -ENOMEM;
	while (!r && sqlite3_step(st) == SQLITE_ROW) {
		const char *cn = (const char *)sqlite3_column_text(st, 0);
		const char *ct = (const char *)sqlite3_column_text(st, 1);
		char **cols = realloc(t->cols, (t->ncol + 1) * sizeof(*cols));
		char *aff = realloc(t->aff, (t->ncol + 1) * sizeof(*aff));

		if (cols)
			t->cols = cols;
		if (aff)
			t->aff = aff;
		if (!cols || !aff || !(cols[t->ncol] = strdup(cn ? cn : ""))) {
			r = -ENOMEM;
			break;
		}
		aff[t->ncol] = type_affinity(ct ? ct : "", strict);
		if (sqlite3_column_int(st, 2) > 0) {
			npk++;
			pkcol = t->ncol;
		}
		t->ncol++;
	}
	sqlite3_finalize(st);
	if (!r && npk == 1) {
		t->key = pkcol;
	} else if (!r && !wr) {
		t->key = -1;
	} else if (!r) {
		r = -ENOENT;
	}
	if (r)
		table_free(t);
	return r;
}

/* Make dst a deep copy of src. */
static int table_copy(struct rec_table *dst, const struct rec_table *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->name = strdup(src->name);
	dst->cols = calloc((size_t)src->ncol + 1, sizeof(*dst->cols));
	dst->aff = malloc((size_t)src->ncol + 1);
	if (!dst->name || !dst->cols || !dst->aff) {
		table_free(dst);
		return -ENOMEM;
	}
	memcpy(dst->aff, src->aff, (size_t)src->ncol);
	dst->key = src->key;
	for (; dst->ncol < src->ncol; dst->ncol++) {
		dst->cols[dst->ncol] = strdup(src->cols[dst->ncol]);
		if (!dst->cols[dst->ncol]) {
			table_free(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

static void tcache_clear(struct rec *s)
{
	while (s->tcache) {
		struct rec_tcache *c = s->tcache;

		s->tcache = c->next;
		table_free(&c->t);
		free(c);
	}
}

/* The schema's version (PRAGMA schema_version), or -1 on failure. */
static sqlite3_int64 schema_version(struct rec *s)
{
	sqlite3_int64 v = -1;

	if (!s->sv_stmt &&
	    sqlite3_prepare_v2(s->db, "PRAGMA schema_version", -1, &s->sv_stmt,
			       NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s->sv_stmt) == SQLITE_ROW)
		v = sqlite3_column_int64(s->sv_stmt, 0);
	sqlite3_reset(s->sv_stmt);
	return v;
}

/*
 * table_query() through a cache that holds while the schema version does,
 * so a lookup costs one small statement instead of two schema scans.
 */
static int table_load(struct rec *s, const char *name, struct rec_table *t)
{
	sqlite3_int64 sv = schema_version(s);
	struct rec_tcache *c;
	int r;

	if (sv < 0 || sv != s->schema_version) {
		tcache_clear(s);
		s->schema_version = sv;
	}
	for (c = s->tcache; c; c = c->next)
		if (!strcmp(c->t.name, name))
			return table_copy(t, &c->t);
	r = table_query(s, name, t);
	if (r || sv < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (c && table_copy(&c->t, t) == 0) {
		c->next = s->tcache;
		s->tcache = c;
	} else {
		free(c);
	}
	return 0;
}

/* The key expression of t in SQL: its key column, or rowid. */
static void put_key(struct vd_jbuf *b, const struct rec_table *t)
{
	if (t->key < 0)
		vd_jbuf_add(b, "rowid", 5);
	else
		put_ident(b, t->cols[t->key]);
}

static int prepare(struct rec *s, struct vd_jbuf *sql, sqlite3_stmt **st)
{
	if (sql->oom)
		return -ENOMEM;
	if (sqlite3_prepare_v2(s->db, sql->p, (int)sql->len, st, NULL) !=
	    SQLITE_OK) {
		vd_log(s->drive, "records: %s: %s", sql->p,
		       sqlite3_errmsg(s->db));
		return -EIO;
	}
	return 0;
}

static void bind_key(sqlite3_stmt *st, int i, const struct rec_node *n)
{
	if (n->ktype == SQLITE_INTEGER)
		sqlite3_bind_int64(st, i, n->ki);
	else if (n->ktype == SQLITE_FLOAT)
		sqlite3_bind_double(st, i, n->kr);
	else
		sqlite3_bind_text64(st, i, n->kt, n->ktlen, SQLITE_STATIC,
				    SQLITE_UTF8);
}

/* Remember the stored key value v in row node n. */
static int set_key(struct rec_node *n, sqlite3_value *v)
{
	n->ktype = sqlite3_value_type(v);
	free(n->kt);
	n->kt = NULL;
	n->ktlen = 0;
	if (n->ktype == SQLITE_INTEGER) {
		n->ki = sqlite3_value_int64(v);
	} else if (n->ktype == SQLITE_FLOAT) {
		n->kr = sqlite3_value_double(v);
	} else {
		n->ktlen = (size_t)sqlite3_value_bytes(v);
		n->kt = malloc(n->ktlen + 1);
		if (!n->kt)
			return -ENOMEM;
		memcpy(n->kt, sqlite3_value_text(v), n->ktlen);
		n->kt[n->ktlen] = 0;
	}
	return 0;
}

/*
 * Find the row of t whose file name is name and store its key in n.
 * The key text is tried as an integer, as text and as a real, in that
 * order, and the row found must give back exactly name. -ENOENT if none.
 */
static int row_find(struct rec *s, const struct rec_table *t, const char *name,
		    struct rec_node *n)
{
	struct vd_jbuf key = {0}, sql = {0};
	sqlite3_stmt *st = NULL;
	size_t len = strlen(name);
	int r;

	if (len <= 5 || strcmp(name + len - 5, ".json"))
		return -ENOENT;
	r = unesc_name(&key, name, len - 5);
	if (r)
		goto out;
	vd_jbuf_add(&sql, "SELECT ", 7);
	put_key(&sql, t);
	vd_jbuf_add(&sql, " FROM ", 6);
	put_ident(&sql, t->name);
	vd_jbuf_add(&sql, " WHERE ", 7);
	put_key(&sql, t);
	vd_jbuf_add(&sql, " = ?", 4);
	r = prepare(s, &sql, &st);
	if (r)
		goto out;
	r = -ENOENT;
	for (int how = 0; how < 3 && r == -ENOENT; how++) {
		const char *k = key.p ? key.p : "";
		char *end;

		sqlite3_reset(st);
		if (how == 0) {
			long long v;

			errno = 0;
			v = strtoll(k, &end, 10);
			if (errno || end == k || *end ||
			    (size_t)(end - k) != key.len)
				continue;
			sqlite3_bind_int64(st, 1, v);
		} else if (how == 1) {
			sqlite3_bind_text64(st, 1, k, key.len, SQLITE_STATIC,
					    SQLITE_UTF8);
		} else {
			double v = strtod(k, &end);

			if (end == k || *end || (size_t)(end - k) != key.len)
				continue;
			sqlite3_bind_double(st, 1, v);
		}
		while (r == -ENOENT && sqlite3_step(st) == SQLITE_ROW) {
			struct vd_jbuf got = {0};
			sqlite3_value *v = sqlite3_column_value(st, 0);

			if (row_name(&got, v) == 0 && got.len == len &&
			    !memcmp(got.p, name, len))
				r = set_key(n, v);
			vd_jbuf_free(&got);
		}
	}
out:
	sqlite3_finalize(st);
	vd_jbuf_free(&key);
	vd_jbuf_free(&sql);
	return r;
}

/* Append column value v to b as JSON. */
static void put_json_value(struct vd_jbuf *b, sqlite3_value *v)
{
	switch (sqlite3_value_type(v)) {
	case SQLITE_INTEGER:
		vd_jbuf_addf(b, "%lld", (long long)sqlite3_value_int64(v));
		break;
	case SQLITE_FLOAT:
		vd_json_put_real(b, sqlite3_value_double(v));
		break;
	case SQLITE_TEXT:
		vd_json_put_string(b, (const char *)sqlite3_value_text(v),
				   (size_t)sqlite3_value_bytes(v));
		break;
	case SQLITE_BLOB:
		vd_jbuf_add(b, "{\"$base64\": \"", 13);
		vd_base64_put(b, sqlite3_value_blob(v),
			      (size_t)sqlite3_value_bytes(v));
		vd_jbuf_add(b, "\"}", 2);
		break;
	default:
		vd_jbuf_add(b, "null", 4);
	}
}

/* The row of node n as a JSON object, one column a line. -ENOENT if the
 * row is gone. */
static int row_json(struct rec *s, const struct rec_table *t,
		    const struct rec_node *n, struct vd_jbuf *out)
{
	struct vd_jbuf sql = {0};
	sqlite3_stmt *st = NULL;
	int r;

	vd_jbuf_add(&sql, "SELECT * FROM ", 14);
	put_ident(&sql, t->name);
	vd_jbuf_add(&sql, " WHERE ", 7);
	put_key(&sql, t);
	vd_jbuf_add(&sql, " = ?", 4);
	r = prepare(s, &sql, &st);
	vd_jbuf_free(&sql);
	if (r)
		return r;
	bind_key(st, 1, n);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		int nc = sqlite3_column_count(st);

		vd_jbuf_add(out, "{", 1);
		for (int i = 0; i < nc; i++) {
			const char *cn = sqlite3_column_name(st, i);

			vd_jbuf_add(out, i ? ",\n  " : "\n  ", i ? 4 : 3);
			vd_json_put_string(out, cn, strlen(cn));
			vd_jbuf_add(out, ": ", 2);
			put_json_value(out, sqlite3_column_value(st, i));
		}
		vd_jbuf_add(out, "\n}\n", 3);
		r = out->oom ? -ENOMEM : 0;
	} else {
		r = r == SQLITE_DONE ? -ENOENT : -EIO;
	}
	sqlite3_finalize(st);
	return r;
}

/* Append one CSV field (RFC 4180), quoted when it has to be. */
static void put_csv_field(struct vd_jbuf *b, sqlite3_value *v)
{
	struct vd_jbuf t = {0};
	const char *p;
	size_t n;

	switch (sqlite3_value_type(v)) {
	case SQLITE_NULL:
		return;
	case SQLITE_BLOB:
		vd_base64_put(b, sqlite3_value_blob(v),
			      (size_t)sqlite3_value_bytes(v));
		return;
	case SQLITE_FLOAT:
		vd_json_put_real(b, sqlite3_value_double(v));
		return;
	default:
		p = (const char *)sqlite3_value_text(v);
		n = (size_t)sqlite3_value_bytes(v);
	}
	if (!memchr(p, '"', n) && !memchr(p, ',', n) && !memchr(p, '\n', n) &&
	    !memchr(p, '\r', n)) {
		vd_jbuf_add(b, p, n);
		return;
	}
	vd_jbuf_add(&t, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '"')
			vd_jbuf_add(&t, "\"", 1);
		vd_jbuf_add(&t, p + i, 1);
	}
	vd_jbuf_add(&t, "\"", 1);
	vd_jbuf_add(b, t.p, t.len);
	if (t.oom)
		b->oom = 1;
	vd_jbuf_free(&t);
}

/* The whole table as CSV: a header line of column names, then the rows
 * in key order, CRLF line ends as RFC 4180 has them. */
static int table_csv(struct rec *s, const struct rec_table *t,
		     struct vd_jbuf *out)
{
	struct vd_jbuf sql = {0};
	sqlite3_stmt *st = NULL;
	int r;

	vd_jbuf_add(&sql, "SELECT * FROM ", 14);
	put_ident(&sql, t->name);
	vd_jbuf_add(&sql, " ORDER BY ", 10);
	put_key(&sql, t);
	r = prepare(s, &sql, &st);
	vd_jbuf_free(&sql);
	if (r)
		return r;
	for (int i = 0; i < sqlite3_column_count(st); i++) {
		sqlite3_value *v;
		sqlite3_stmt *nm;

		/* Column names go through the same quoting as text fields. */
		if (sqlite3_prepare_v2(s->db, "SELECT ?", -1, &nm, NULL) !=
		    SQLITE_OK)
			break;
		sqlite3_bind_text(nm, 1, sqlite3_column_name(st, i), -1,
				  SQLITE_STATIC);
		sqlite3_step(nm);
		v = sqlite3_column_value(nm, 0);
		if (i)
			vd_jbuf_add(out, ",", 1);
		put_csv_field(out, v);
		sqlite3_finalize(nm);
	}
	vd_jbuf_add(out, "\r\n", 2);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		for (int i = 0; i < sqlite3_column_count(st); i++) {
			if (i)
				vd_jbuf_add(out, ",", 1);
			put_csv_field(out, sqlite3_column_value(st, i));
		}
		vd_jbuf_add(out, "\r\n", 2);
	}
	r = r == SQLITE_DONE ? 0 : -EIO;
	sqlite3_finalize(st);
	return out->oom ? -ENOMEM : r;
}

/* Split the escaped root entry name into a table name; -ENOENT if it is
 * not one. suffix is NULL for folders, ".csv" for CSV files. */
static int root_table(struct rec *s, const char *name, const char *suffix,
		      struct rec_table *t)
{
	struct vd_jbuf tn = {0};
	size_t len = strlen(name), sl = suffix ? strlen(suffix) : 0;
	int r;

	if (len <= sl || (sl && strcmp(name + len - sl, suffix)))
		return -ENOENT;
	r = unesc_name(&tn, name, len - sl);
	if (!r && memchr(tn.p ? tn.p : "", 0, tn.len))
		r = -ENOENT; /* table names have no NUL */
	if (!r)
		r = table_load(s, tn.p ? tn.p : "", t);
	vd_jbuf_free(&tn);
	return r;
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
		node_remove(s, n);
}

/* Remove scratch file n's name. */
static void scratch_unlink(struct rec *s, struct rec_node *n)
{
	name_unhash(s, n);
	n->linked = 0;
	scratch_maybe_free(s, n);
}

/* Attributes of node n as the database has it now; -ENOENT if gone. */
static int node_stat(struct rec *s, struct rec_node *n, struct stat *st)
{
	struct rec_table t;
	struct vd_jbuf b = {0};
	off_t size = 0;
	int r = 0;

	if (n->kind == REC_ROOT || n->kind == REC_SCRATCH) {
		fill_stat(s, n, 0, st);
		return 0;
	}
	r = table_load(s, n->table, &t);
	if (r)
		return r;
	if (n->kind == REC_ROW) {
		/* Created, never saved: it never existed. */
		if (n->pending && !n->nopen)
			r = -ENOENT;
		else if (n->writer && n->writer->dirty)
			size = (off_t)n->writer->buf.len;
		else if (!n->pending)
			r = row_json(s, &t, n, &b);
	} else if (n->kind == REC_CSV) {
		r = table_csv(s, &t, &b);
	}
	if (b.len)
		size = (off_t)b.len;
	if (!r)
		fill_stat(s, n, size, st);
	vd_jbuf_free(&b);
	table_free(&t);
	return r;
}

static int rec_lookup(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t *node, struct stat *st)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *p = node_get(s, parent), *n = NULL, probe;
	struct rec_table t;
	int r = -ENOENT;

	memset(&probe, 0, sizeof(probe));
	if (!p) {
		r = -ESTALE;
	} else if (p->kind == REC_ROOT) {
		r = root_table(s, name, NULL, &t);
		if (!r) {
			n = node_make(s, REC_TABLE, t.name, name);
			table_free(&t);
		} else if (s->csv &&
			   (r = root_table(s, name, ".csv", &t)) == 0) {
			n = node_make(s, REC_CSV, t.name, name);
			table_free(&t);
		}
		if (!r && !n)
			r = -ENOMEM;
	} else if (p->kind == REC_TABLE && !is_row_name(name)) {
		n = node_find(s, REC_SCRATCH, p->table, name);
		r = n ? 0 : -ENOENT;
		if (n)
			n->held = 1;
	} else if (p->kind == REC_TABLE && !(r = table_load(s, p->table, &t))) {
		r = row_find(s, &t, name, &probe);
		if (!r) {
			n = node_make(s, REC_ROW, t.name, name);
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
		table_free(&t);
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
	n = node_get(s, node);
	if (n && n->kind == REC_SCRATCH) {
		n->held = 0;
		scratch_maybe_free(s, n);
	} else if (n && n != &s->root) {
		node_remove(s, n);
	}
	pthread_mutex_unlock(&s->lock);
}

static int rec_getattr(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, struct stat *st)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *n = node_get(s, node);
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

/* Map an SQLite failure to an errno, as docs/sources.md lists them. */
static int sqlite_errno(sqlite3 *db, int rc)
{
	switch (sqlite3_extended_errcode(db)) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_ROWID:
		return -EEXIST;
	default:
		break;
	}
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
	case SQLITE_MISMATCH:
	case SQLITE_TOOBIG:
	case SQLITE_RANGE:
		return -EINVAL;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static const char *json_type_name(const struct vd_json_value *v)
{
	static const char *names[] = {"null", "an integer", "a real", "text",
				      "a blob"};

	return names[v->type];
}

/* Check v against the column's affinity: typed columns take only values
 * of their own kind (documented), so "abc" never lands in an INTEGER. */
static int check_type(char aff, struct vd_json_value *v)
{
	if (v->type == VD_JSON_NULL || aff == 'B')
		return 0;
	switch (aff) {
	case 'I':
		if (v->type == VD_JSON_INT)
			return 0;
		if (v->type == VD_JSON_REAL && v->r == floor(v->r) &&
		    fabs(v->r) < 9.2e18) {
			v->type = VD_JSON_INT;
			v->i = (int64_t)v->r;
			return 0;
		}
		return -1;
	case 'R':
	case 'N':
		return v->type == VD_JSON_INT || v->type == VD_JSON_REAL ? 0
									 : -1;
	default: /* 'T' */
		return v->type == VD_JSON_TEXT ? 0 : -1;
	}
}

static void bind_json(sqlite3_stmt *st, int i, const struct vd_json_value *v)
{
	switch (v->type) {
	case VD_JSON_NULL:
		sqlite3_bind_null(st, i);
		break;
	case VD_JSON_INT:
		sqlite3_bind_int64(st, i, v->i);
		break;
	case VD_JSON_REAL:
		sqlite3_bind_double(st, i, v->r);
		break;
	case VD_JSON_TEXT:
		sqlite3_bind_text64(st, i, v->s, v->len, SQLITE_STATIC,
				    SQLITE_UTF8);
		break;
	case VD_JSON_BLOB:
		sqlite3_bind_blob64(st, i, v->s, v->len, SQLITE_STATIC);
		break;
	}
}

static const char *aff_name(char aff)
{
	switch (aff) {
	case 'I':
		return "INTEGER";
	case 'R':
		return "REAL";
	case 'N':
		return "NUMERIC";
	case 'T':
		return "TEXT";
	default:
		return "BLOB";
	}
}

/* Whether key is an integer written the one way SQLite writes it. */
static int is_int_key(const struct vd_jbuf *key)
{
	char canon[32];
	long long v;
	char *end;

	if (!key->len || key->len >= sizeof(canon))
		return 0;
	errno = 0;
	v = strtoll(key->p, &end, 10);
	snprintf(canon, sizeof(canon), "%lld", v);
	return !errno && !*end && !strcmp(canon, key->p);
}

/*
 * Bind the key of a new row from its file name: an integer for integer
 * keys (the name must be a plain integer), text otherwise, so that the
 * column's own affinity decides.
 */
static int bind_new_key(sqlite3_stmt *st, int i, const struct rec_table *t,
			const struct vd_jbuf *key)
{
	const char *k = key->p ? key->p : "";
	char *end;
	long long v;

	errno = 0;
	v = strtoll(k, &end, 10);
	if (!errno && end != k && !*end && (size_t)(end - k) == key->len &&
	    (t->key < 0 || t->aff[t->key] != 'T')) {
		sqlite3_bind_int64(st, i, v);
		return 0;
	}
	if (t->key < 0 || t->aff[t->key] == 'I')
		return -EINVAL;
	sqlite3_bind_text64(st, i, k, key->len, SQLITE_STATIC, SQLITE_UTF8);
	return 0;
}

/* Whether column name of table is generated (shown, never written). */
static int is_generated(struct rec *s, const char *table, const char *name)
{
	sqlite3_stmt *st;
	int r = 0;

	if (sqlite3_prepare_v2(s->db,
			       "SELECT 1 FROM pragma_table_xinfo(?) "
			       "WHERE name = ? AND hidden IN (2, 3)",
			       -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	r = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return r;
}

/*
 * Apply the content of open h to its row in one transaction: UPDATE the
 * columns it names, or INSERT for a file just created. On failure the row
 * is untouched, the reason is logged and written into why.
 */
static int commit(struct rec *s, struct rec_open *h, char *why, size_t wlen)
{
	struct rec_node *n = h->node;
	struct vd_json_object o = {0};
	struct rec_table t;
	struct vd_jbuf sql = {0}, key = {0};
	sqlite3_stmt *st = NULL;
	int *col = NULL, r, rc, nb = 0, began = 0;
	const char *text = h->buf.p ? h->buf.p : "";
	size_t tl = h->buf.len;

	why[0] = 0;
	r = table_load(s, n->table, &t);
	if (r) {
		snprintf(why, wlen, "the table is gone");
		return r;
	}
	/* A new file closed empty (touch) is an empty object: all defaults. */
	if (n->pending && strspn(text, " \t\r\n") == tl)
		text = "{}", tl = 2;
	r = vd_json_parse(text, tl, &o, why, wlen);
	if (r)
		goto out;
	col = calloc(o.n + 1, sizeof(*col));
	if (!col) {
		r = -ENOMEM;
		goto out;
	}
	r = unesc_name(&key, n->name, strlen(n->name) - 5);
	if (r)
		goto out;
	for (size_t i = 0; i < o.n; i++) {
		struct vd_json_value *v = &o.m[i].v;

		col[i] = -1;
		for (int c = 0; c < t.ncol; c++)
			if (!strcmp(t.cols[c], o.m[i].name))
				col[i] = c;
		if (col[i] < 0 && is_generated(s, t.name, o.m[i].name)) {
			/* Read back as it was shown; SQLite computes it. */
			free(o.m[i].name);
			free(v->s);
			memmove(&o.m[i], &o.m[i + 1],
				(o.n - i - 1) * sizeof(o.m[0]));
			o.n--;
			i--;
			continue;
		}
		if (col[i] < 0) {
			snprintf(why, wlen, "unknown column '%s'", o.m[i].name);
			r = -EINVAL;
			goto out;
		}
		if (check_type(t.aff[col[i]], v)) {
			snprintf(why, wlen, "column '%s' (%s) does not take %s",
				 o.m[i].name, aff_name(t.aff[col[i]]),
				 json_type_name(v));
			r = -EINVAL;
			goto out;
		}
		if (col[i] == t.key) {
			struct vd_jbuf kn = {0};
			sqlite3_stmt *ks;

			/* The key in the content must name this same file. */
			rc = sqlite3_prepare_v2(s->db, "SELECT ?", -1, &ks,
						NULL);
			if (rc == SQLITE_OK) {
				bind_json(ks, 1, v);
				sqlite3_step(ks);
				if (row_name(&kn,
					     sqlite3_column_value(ks, 0)) ||
				    strcmp(kn.p ? kn.p : "", n->name))
					r = -EINVAL;
				sqlite3_finalize(ks);
			} else {
				r = -EIO;
			}
			vd_jbuf_free(&kn);
			if (r) {
				snprintf(why, wlen,
					 "key column '%s' in the content does "
					 "not match the file name",
					 o.m[i].name);
				goto out;
			}
		}
	}
	if (n->pending) {
		int has_key = 0;

		vd_jbuf_add(&sql, "INSERT INTO ", 12);
		put_ident(&sql, t.name);
		vd_jbuf_add(&sql, " (", 2);
		for (size_t i = 0; i < o.n; i++) {
			if (i)
				vd_jbuf_add(&sql, ", ", 2);
			put_ident(&sql, t.cols[col[i]]);
			has_key |= col[i] == t.key;
		}
		if (!has_key) {
			if (o.n)
				vd_jbuf_add(&sql, ", ", 2);
			put_key(&sql, &t);
		}
		vd_jbuf_add(&sql, ") VALUES (", 10);
		for (size_t i = 0; i < o.n + !has_key; i++)
			vd_jbuf_add(&sql, i ? ", ?" : "?", i ? 3 : 1);
		vd_jbuf_add(&sql, ")", 1);
		nb = (int)o.n + !has_key;
	} else {
		vd_jbuf_add(&sql, "UPDATE ", 7);
		put_ident(&sql, t.name);
		vd_jbuf_add(&sql, " SET ", 5);
		for (size_t i = 0; i < o.n; i++) {
			if (col[i] == t.key)
				continue;
			if (nb++)
				vd_jbuf_add(&sql, ", ", 2);
			put_ident(&sql, t.cols[col[i]]);
			vd_jbuf_add(&sql, " = ?", 4);
		}
		if (!nb) {
			/* Nothing to change; an UPDATE still proves the row. */
			put_key(&sql, &t);
			vd_jbuf_add(&sql, " = ", 3);
			put_key(&sql, &t);
		}
		vd_jbuf_add(&sql, " WHERE ", 7);
		put_key(&sql, &t);
		vd_jbuf_add(&sql, " = ?", 4);
	}
	r = prepare(s, &sql, &st);
	if (r)
		goto out;
	nb = 0;
	for (size_t i = 0; i < o.n; i++)
		if (n->pending || col[i] != t.key)
			bind_json(st, ++nb, &o.m[i].v);
	if (n->pending) {
		int has_key = 0;

		for (size_t i = 0; i < o.n; i++)
			has_key |= col[i] == t.key;
		if (!has_key && bind_new_key(st, ++nb, &t, &key)) {
			snprintf(why, wlen,
				 "the file name is not an integer key");
			r = -EINVAL;
			goto out;
		}
	} else {
		bind_key(st, ++nb, n);
	}
	rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		r = sqlite_errno(s->db, rc);
		snprintf(why, wlen, "%s", sqlite3_errmsg(s->db));
		goto out;
	}
	began = 1;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		r = sqlite_errno(s->db, rc);
		snprintf(why, wlen, "%s", sqlite3_errmsg(s->db));
		goto out;
	}
	if (!n->pending && sqlite3_changes(s->db) != 1) {
		r = -ENOENT;
		snprintf(why, wlen, "the row is gone");
		goto out;
	}
	if (n->pending) {
		struct rec_node probe;

		/* The new row must read back under this file's name. */
		memset(&probe, 0, sizeof(probe));
		r = row_find(s, &t, n->name, &probe);
		if (r) {
			snprintf(why, wlen,
				 "the new row's key does not read back as '%s'",
				 n->name);
			r = -EINVAL;
			free(probe.kt);
			goto out;
		}
		free(n->kt);
		n->ktype = probe.ktype, n->ki = probe.ki, n->kr = probe.kr;
		n->kt = probe.kt, n->ktlen = probe.ktlen;
	}
	rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		r = sqlite_errno(s->db, rc);
		snprintf(why, wlen, "%s", sqlite3_errmsg(s->db));
		goto out;
	}
	began = 0;
	n->pending = 0;
out:
	if (began)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_finalize(st);
	if (r && !why[0])
		snprintf(why, wlen, "%s", strerror(-r));
	if (r)
		vd_log(s->drive, "records: %s/%s: not saved: %s", n->table,
		       n->name, why);
	free(col);
	vd_json_object_free(&o);
	vd_jbuf_free(&sql);
	vd_jbuf_free(&key);
	table_free(&t);
	return r;
}

/* Save h's edits if it has any; the result is what close(2) returns. */
static int save(struct rec *s, struct rec_open *h)
{
	char why[256];
	int r;

	if (!h->dirty)
		return 0;
	h->dirty = 0;
	h->tried = 1;
	if (h->node->writer == h)
		h->node->writer = NULL;
	r = commit(s, h, why, sizeof(why));
	/* A file whose insert failed must vanish, and a saved row makes the
	 * sizes of CSV files stale: the poller tells the kernel. */
	if (!r || h->node->pending)
		s->rescan = 1;
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
	r = table_load(s, n->table, &t);
	if (!r) {
		if (n->kind == REC_CSV)
			r = table_csv(s, &t, &h->buf);
		else if (!trunc && !n->pending)
			r = row_json(s, &t, n, &h->buf);
		table_free(&t);
	}
	if (r) {
		vd_jbuf_free(&h->buf);
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
	struct rec_node *n = node_get(s, node);
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
	struct rec_node *p = node_get(s, parent), *n = NULL, probe;
	struct vd_jbuf key = {0};
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
		r = node_find(s, REC_SCRATCH, p->table, name) ? -EEXIST : 0;
		if (!r && !(n = node_make(s, REC_SCRATCH, p->table, name)))
			r = -ENOMEM;
		if (!r) {
			n->mode = mode & 07777;
			n->uid = ctx->uid;
			n->gid = ctx->gid;
			n->linked = 1;
			clock_gettime(CLOCK_REALTIME, &n->mtime);
		}
	} else if (len <= 5 || strcmp(name + len - 5, ".json") ||
		   unesc_name(&key, name, len - 5)) {
		vd_log(s->drive,
		       "records: %s/%s: not a row file name (KEY.json)",
		       p->table, name);
		r = -EINVAL;
	} else if (!(r = table_load(s, p->table, &t))) {
		r = row_find(s, &t, name, &probe);
		if (r == -ENOENT && (t.key < 0 || t.aff[t.key] == 'I') &&
		    !is_int_key(&key)) {
			vd_log(s->drive,
			       "records: %s/%s: the key must be an integer",
			       p->table, name);
			r = -EINVAL;
		} else if (r == 0) {
			r = -EEXIST;
		} else if (r == -ENOENT) {
			n = node_make(s, REC_ROW, t.name, name);
			r = n ? 0 : -ENOMEM;
		}
		free(probe.kt);
		table_free(&t);
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
	vd_jbuf_free(&key);
	rec_leave(s);
	return r;
}

static int rec_read(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, char *buf, size_t size, off_t off)
{
	struct rec *s = rec_enter(ctx);
	struct rec_open *h = (struct rec_open *)(uintptr_t)fi->fh;
	struct vd_jbuf *b =
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
static int buf_resize(struct vd_jbuf *b, off_t size)
{
	if (size < 0 || size > REC_MAX_FILE)
		return -EFBIG;
	if ((size_t)size > b->len) {
		size_t grow = (size_t)size - b->len;
		char *z = calloc(1, grow);

		if (!z)
			return -ENOMEM;
		vd_jbuf_add(b, z, grow);
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
		struct vd_jbuf *b =
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
	struct rec_node *n = node_get(s, node);
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
					r = save(s, h);
				if (n->writer == h)
					n->writer = NULL;
				n->nopen--;
				vd_jbuf_free(&h->buf);
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
	int r = save(s, (struct rec_open *)(uintptr_t)fi->fh);

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
	save(s, h); /* the last chance; an error here can only be logged */
	if (h->node->writer == h)
		h->node->writer = NULL;
	h->node->nopen--;
	scratch_maybe_free(s, h->node);
	vd_jbuf_free(&h->buf);
	free(h);
	rec_leave(s);
	return 0;
}

static int rec_unlink(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *p = node_get(s, parent), probe;
	struct vd_jbuf sql = {0};
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
		struct rec_node *n = node_find(s, REC_SCRATCH, p->table, name);

		r = n ? 0 : -ENOENT;
		if (n)
			scratch_unlink(s, n);
	} else if (!(r = table_load(s, p->table, &t))) {
		r = row_find(s, &t, name, &probe);
		if (!r) {
			vd_jbuf_add(&sql, "DELETE FROM ", 12);
			put_ident(&sql, t.name);
			vd_jbuf_add(&sql, " WHERE ", 7);
			put_key(&sql, &t);
			vd_jbuf_add(&sql, " = ?", 4);
			r = prepare(s, &sql, &st);
		}
		if (!r) {
			bind_key(st, 1, &probe);
			rc = sqlite3_step(st);
			if (rc != SQLITE_DONE) {
				r = sqlite_errno(s->db, rc);
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
		table_free(&t);
	}
	vd_jbuf_free(&sql);
	rec_leave(s);
	return r;
}

/* Give scratch file n the name newname, replacing a scratch file there. */
static int scratch_move(struct rec *s, struct rec_node *n, const char *newname,
			unsigned int flags)
{
	struct rec_node *old = node_find(s, REC_SCRATCH, n->table, newname);
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
	name_unhash(s, n);
	free(n->name);
	n->name = nm;
	name_hash(s, n);
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
	struct vd_jbuf key = {0};
	struct rec_table t;
	char why[256], *nm = strdup(newname);
	int r = nm ? table_load(s, n->table, &t) : -ENOMEM;

	if (r) {
		free(nm);
		return r;
	}
	memset(&probe, 0, sizeof(probe));
	probe.kind = REC_ROW;
	probe.table = n->table;
	probe.name = nm;
	r = row_find(s, &t, newname, &probe);
	if (r == 0 && (flags & RENAME_NOREPLACE)) {
		r = -EEXIST;
	} else if (r == -ENOENT) {
		r = unesc_name(&key, newname, strlen(newname) - 5) ? -EINVAL
								   : 0;
		if (!r && (t.key < 0 || t.aff[t.key] == 'I') &&
		    !is_int_key(&key)) {
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
		h.buf = n->data; /* borrowed: commit() only reads it */
		r = commit(s, &h, why, sizeof(why));
	}
	if (!r) {
		s->rescan = 1; /* CSV files changed too */
		old = node_find(s, REC_ROW, n->table, newname);
		if (old)
			name_unhash(s, old); /* the replaced file's node */
		name_unhash(s, n);
		free(n->name);
		free(n->kt);
		vd_jbuf_free(&n->data);
		n->name = nm;
		n->kind = REC_ROW;
		n->ktype = probe.ktype, n->ki = probe.ki, n->kr = probe.kr;
		n->kt = probe.kt, n->ktlen = probe.ktlen;
		n->pending = 0;
		n->linked = 0;
		name_hash(s, n);
	} else {
		free(probe.kt);
		free(nm);
	}
	vd_jbuf_free(&key);
	table_free(&t);
	return r;
}

/* Renames inside one table folder, of scratch files only: to another
 * scratch name, or to KEY.json, which saves the content into that row. */
static int rec_rename(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t newparent,
		      const char *newname, unsigned int flags)
{
	struct rec *s = rec_enter(ctx);
	struct rec_node *p = node_get(s, parent), *np = node_get(s, newparent);
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
	else if (!(n = node_find(s, REC_SCRATCH, p->table, name)))
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
	uint64_t h =
		hash_bytes(14695981039346656037ull, table, strlen(table) + 1);

	return (ino_t)(hash_bytes(h, name, strlen(name)) | 1ull << 63);
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
			struct vd_jbuf nm = {0};
			struct rec_table t;
			struct stat sb;

			if (i++ < off || table_load(s, tn, &t))
				continue;
			table_free(&t);
			esc_name(&nm, tn, strlen(tn));
			if (pass)
				vd_jbuf_add(&nm, ".csv", 4);
			memset(&sb, 0, sizeof(sb));
			sb.st_mode = pass ? S_IFREG : S_IFDIR;
			sb.st_ino = nm.p ? list_ino("", nm.p) : 1;
			if (nm.len <= REC_NAME_MAX && !nm.oom &&
			    fill(buf, nm.p, 0, &sb, i))
				r = 1;
			vd_jbuf_free(&nm);
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

	for (unsigned int b = 0; b < REC_NBUCKETS; b++) {
		for (struct rec_node *n = s->byid[b]; n; n = n->idnext) {
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
	struct vd_jbuf sql = {0};
	sqlite3_stmt *st = NULL;
	off_t i = off < 2 ? 2 : off;
	int r, full = 0;

	if (off >= REC_SCRATCH_OFF) {
		list_scratch(s, t, off, fill, buf);
		return 0;
	}

	vd_jbuf_add(&sql, "SELECT ", 7);
	put_key(&sql, t);
	vd_jbuf_add(&sql, " FROM ", 6);
	put_ident(&sql, t->name);
	vd_jbuf_add(&sql, " ORDER BY ", 10);
	put_key(&sql, t);
	vd_jbuf_add(&sql, " LIMIT -1 OFFSET ?", 18);
	r = prepare(s, &sql, &st);
	vd_jbuf_free(&sql);
	if (r)
		return r;
	sqlite3_bind_int64(st, 1, i - 2);
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct vd_jbuf nm = {0};
		struct stat sb;

		i++;
		memset(&sb, 0, sizeof(sb));
		sb.st_mode = S_IFREG;
		if (row_name(&nm, sqlite3_column_value(st, 0)) == 0 &&
		    !nm.oom) {
			sb.st_ino = list_ino(t->name, nm.p);
			full = fill(buf, nm.p, 0, &sb, i);
		}
		vd_jbuf_free(&nm);
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
	struct rec_node *n = node_get(s, node);
	struct rec_table t;
	struct stat sb;
	int r = 0;

	(void)fi;
	if (!n || (n->kind != REC_ROOT && n->kind != REC_TABLE)) {
		r = n ? -ENOTDIR : -ESTALE;
		goto out;
	}
	if (n->kind == REC_TABLE && (r = table_load(s, n->table, &t)) != 0)
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
		table_free(&t);
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

/* One change the poller found, to tell the kernel outside the lock. */
struct rec_inval {
	vd_node_t node;
	vd_node_t parent; /* non-zero: also drop parent/name */
	char *name;
};

/* One prepared existence query per table, for a pass over many rows. */
struct exist_q {
	char *table;
	sqlite3_stmt *st; /* NULL: the table is gone */
};

/* Whether row e still exists: 1, 0 (gone, or its table is), -1 unknown.
 * Queries are prepared once per table and kept in *qs for the pass. */
static int row_exists(struct rec *s, struct exist_q **qs, size_t *nq,
		      const struct rec_node *e)
{
	struct exist_q *q = NULL, *nqs;
	int r;

	for (size_t i = 0; i < *nq && !q; i++)
		if (!strcmp((*qs)[i].table, e->table))
			q = &(*qs)[i];
	if (!q) {
		struct vd_jbuf sql = {0};
		struct rec_table t;

		nqs = realloc(*qs, (*nq + 1) * sizeof(**qs));
		if (!nqs)
			return -1;
		*qs = nqs;
		q = &nqs[*nq];
		q->st = NULL;
		q->table = strdup(e->table);
		if (!q->table)
			return -1;
		(*nq)++;
		if (table_load(s, e->table, &t) == 0) {
			vd_jbuf_add(&sql, "SELECT 1 FROM ", 14);
			put_ident(&sql, t.name);
			vd_jbuf_add(&sql, " WHERE ", 7);
			put_key(&sql, &t);
			vd_jbuf_add(&sql, " = ?", 4);
			if (prepare(s, &sql, &q->st))
				q->st = NULL;
			table_free(&t);
		}
		vd_jbuf_free(&sql);
	}
	if (!q->st)
		return 0;
	sqlite3_reset(q->st);
	bind_key(q->st, 1, e);
	r = sqlite3_step(q->st);
	return r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : -1;
}

/*
 * Another program committed: list every node the kernel holds for
 * invalidation, and rows that no longer exist as names to drop.
 */
static size_t collect_changes(struct rec *s, struct rec_inval **out)
{
	struct rec_inval *v = NULL;
	struct exist_q *qs = NULL;
	size_t n = 0, cap = 0, nq = 0;

	for (unsigned int b = 0; b <= REC_NBUCKETS; b++) {
		struct rec_node *e = b == REC_NBUCKETS ? &s->root : s->byid[b];

		for (; e; e = b == REC_NBUCKETS ? NULL : e->idnext) {
			struct rec_inval x = {e->id, 0, NULL};

			if (e->kind == REC_ROW && !e->writer &&
			    (!e->pending || !e->nopen) &&
			    (e->pending || row_exists(s, &qs, &nq, e) == 0)) {
				struct vd_jbuf tname = {0};
				struct rec_node *tn = NULL;

				esc_name(&tname, e->table, strlen(e->table));
				if (tname.p)
					tn = node_find(s, REC_TABLE, e->table,
						       tname.p);
				vd_jbuf_free(&tname);
				x.name = strdup(e->name);
				x.parent = tn ? tn->id : 0;
			}
			if (n == cap) {
				struct rec_inval *nv;

				cap = cap ? cap * 2 : 64;
				nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					free(x.name);
					goto out;
				}
				v = nv;
			}
			v[n++] = x;
		}
	}
out:
	for (size_t i = 0; i < nq; i++) {
		sqlite3_finalize(qs[i].st);
		free(qs[i].table);
	}
	free(qs);
	*out = v;
	return n;
}

/* SQLite's count of commits by other connections, or -1 on failure. */
static sqlite3_int64 data_version(struct rec *s)
{
	sqlite3_stmt *st;
	sqlite3_int64 dv = -1;

	if (sqlite3_prepare_v2(s->db, "PRAGMA data_version", -1, &st, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			dv = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	return dv;
}

/* The poller: every poll_ms, ask SQLite whether another connection
 * committed (PRAGMA data_version) and, if so, invalidate. */
static void *poll_thread(void *arg)
{
	struct rec *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		struct timespec ts;
		sqlite3_int64 dv;
		struct rec_inval *v = NULL;
		size_t n = 0;
		struct vd_drive *d;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)s->poll_ms * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->stopping)
			break;
		dv = data_version(s);
		d = __atomic_load_n(&s->drive, __ATOMIC_ACQUIRE);
		if ((dv == s->data_version && !s->rescan) || dv < 0 || !d)
			continue;
		s->data_version = dv;
		s->rescan = 0;
		n = collect_changes(s, &v);
		pthread_mutex_unlock(&s->lock);
		for (size_t i = 0; i < n; i++) {
			if (v[i].name && v[i].parent)
				vd_drive_invalidate_entry(d, v[i].parent,
							  v[i].name);
			vd_drive_invalidate_node(d, v[i].node, 0, 0);
			free(v[i].name);
		}
		free(v);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
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
	for (unsigned int b = 0; b < REC_NBUCKETS; b++) {
		while (s->byid[b]) {
			struct rec_node *n = s->byid[b];

			s->byid[b] = n->idnext;
			node_free(n);
		}
	}
	tcache_clear(s);
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
	s->data_version = data_version(s);
	if (pthread_create(&s->poller, NULL, poll_thread, s) != 0) {
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
