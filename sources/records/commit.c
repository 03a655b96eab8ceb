/*
 * commit.c - saving an edited row file back into its table.
 *
 * On close, the content of a row file is parsed as one JSON object and
 * applied in one transaction: an UPDATE of the columns it names, or an
 * INSERT for a file just created. Each step (match the members to
 * columns, build the statement, bind, apply) can refuse with a reason,
 * and then the row is untouched and close(2) fails.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records/records.h"

/* Map an SQLite failure to an errno, as docs/sources.md lists them. */
int rec_sqlite_errno(sqlite3 *db, int rc)
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
int rec_is_int_key(const struct vd_buf *key)
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
			const struct vd_buf *key)
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

/* What one commit works on, from the content to the statement. */
struct commit_job {
	struct rec *s;
	struct rec_node *n;
	struct rec_table t;
	struct vd_json_object o; /* the content */
	int *col;		 /* per member of o: its column in t */
	struct vd_buf key;	 /* the file name, unescaped, less ".json" */
	char *why;
	size_t wlen;
};

/* Whether JSON value v, the key column's, names this same file: 0, or
 * -EINVAL / -EIO. */
static int key_matches(struct commit_job *j, const struct vd_json_value *v)
{
	struct vd_buf kn = {0};
	sqlite3_stmt *ks;
	int r = 0;

	if (sqlite3_prepare_v2(j->s->db, "SELECT ?", -1, &ks, NULL) !=
	    SQLITE_OK)
		return -EIO;
	bind_json(ks, 1, v);
	sqlite3_step(ks);
	if (rec_row_name(&kn, sqlite3_column_value(ks, 0)) ||
	    strcmp(kn.p ? kn.p : "", j->n->name))
		r = -EINVAL;
	sqlite3_finalize(ks);
	vd_buf_free(&kn);
	return r;
}

/* Step 1: give each member of the content its column, dropping generated
 * columns (read back as shown; SQLite computes them) and refusing unknown
 * columns, values of the wrong type and a key that names another file. */
static int match_columns(struct commit_job *j)
{
	struct vd_json_object *o = &j->o;
	const struct rec_table *t = &j->t;
	int *col = j->col, r;

	for (size_t i = 0; i < o->n; i++) {
		struct vd_json_value *v = &o->m[i].v;

		col[i] = -1;
		for (int c = 0; c < t->ncol; c++)
			if (!strcmp(t->cols[c], o->m[i].name))
				col[i] = c;
		if (col[i] < 0 && is_generated(j->s, t->name, o->m[i].name)) {
			free(o->m[i].name);
			free(v->s);
			memmove(&o->m[i], &o->m[i + 1],
				(o->n - i - 1) * sizeof(o->m[0]));
			o->n--;
			i--;
			continue;
		}
		if (col[i] < 0) {
			snprintf(j->why, j->wlen, "unknown column '%s'",
				 o->m[i].name);
			return -EINVAL;
		}
		if (check_type(t->aff[col[i]], v)) {
			snprintf(j->why, j->wlen,
				 "column '%s' (%s) does not take %s",
				 o->m[i].name, aff_name(t->aff[col[i]]),
				 json_type_name(v));
			return -EINVAL;
		}
		r = col[i] == t->key ? key_matches(j, v) : 0;
		if (r) {
			snprintf(j->why, j->wlen,
				 "key column '%s' in the content does "
				 "not match the file name",
				 o->m[i].name);
			return r;
		}
	}
	return 0;
}

/* Whether the content names the key column. */
static int has_key(const struct commit_job *j)
{
	for (size_t i = 0; i < j->o.n; i++)
		if (j->col[i] == j->t.key)
			return 1;
	return 0;
}

/* Step 2: the statement. A new file INSERTs its members (and its key,
 * from the file name, if the content has none); an existing one UPDATEs
 * them WHERE key = ?, or sets the key to itself when there is nothing to
 * change, which still proves the row is there. */
static void build_sql(const struct commit_job *j, struct vd_buf *sql)
{
	const struct rec_table *t = &j->t;
	size_t n = j->o.n;
	int nb = 0;

	if (j->n->pending) {
		int hk = has_key(j);

		vd_buf_add(sql, "INSERT INTO ", 12);
		rec_put_ident(sql, t->name);
		vd_buf_add(sql, " (", 2);
		for (size_t i = 0; i < n; i++) {
			if (i)
				vd_buf_add(sql, ", ", 2);
			rec_put_ident(sql, t->cols[j->col[i]]);
		}
		if (!hk) {
			if (n)
				vd_buf_add(sql, ", ", 2);
			rec_put_key(sql, t);
		}
		vd_buf_add(sql, ") VALUES (", 10);
		for (size_t i = 0; i < n + !hk; i++)
			vd_buf_add(sql, i ? ", ?" : "?", i ? 3 : 1);
		vd_buf_add(sql, ")", 1);
		return;
	}
	vd_buf_add(sql, "UPDATE ", 7);
	rec_put_ident(sql, t->name);
	vd_buf_add(sql, " SET ", 5);
	for (size_t i = 0; i < n; i++) {
		if (j->col[i] == t->key)
			continue;
		if (nb++)
			vd_buf_add(sql, ", ", 2);
		rec_put_ident(sql, t->cols[j->col[i]]);
		vd_buf_add(sql, " = ?", 4);
	}
	if (!nb) {
		rec_put_key(sql, t);
		vd_buf_add(sql, " = ", 3);
		rec_put_key(sql, t);
	}
	vd_buf_add(sql, " WHERE ", 7);
	rec_put_key(sql, t);
	vd_buf_add(sql, " = ?", 4);
}

/* Step 3: bind the values in the order build_sql() wrote them. */
static int bind_values(struct commit_job *j, sqlite3_stmt *st)
{
	int nb = 0;

	for (size_t i = 0; i < j->o.n; i++)
		if (j->n->pending || j->col[i] != j->t.key)
			bind_json(st, ++nb, &j->o.m[i].v);
	if (!j->n->pending) {
		rec_bind_key(st, ++nb, j->n);
		return 0;
	}
	if (!has_key(j) && bind_new_key(st, ++nb, &j->t, &j->key)) {
		snprintf(j->why, j->wlen,
			 "the file name is not an integer key");
		return -EINVAL;
	}
	return 0;
}

/* SQLite's failure as an errno, its message as the reason. */
static int db_failed(struct commit_job *j, int rc)
{
	snprintf(j->why, j->wlen, "%s", sqlite3_errmsg(j->s->db));
	return rec_sqlite_errno(j->s->db, rc);
}

/* Step 4: run st in one transaction. An UPDATE must change exactly one
 * row; a new row must read back under this file's name, whose key the
 * node then takes. Rolled back on any failure. */
static int apply(struct commit_job *j, sqlite3_stmt *st)
{
	struct rec *s = j->s;
	struct rec_node *n = j->n;
	int rc, r = 0;

	rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_failed(j, rc);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		r = db_failed(j, rc);
		goto out;
	}
	if (!n->pending && sqlite3_changes(s->db) != 1) {
		snprintf(j->why, j->wlen, "the row is gone");
		r = -ENOENT;
		goto out;
	}
	if (n->pending) {
		struct rec_node probe;

		memset(&probe, 0, sizeof(probe));
		if (rec_row_find(s, &j->t, n->name, &probe)) {
			snprintf(j->why, j->wlen,
				 "the new row's key does not read back as '%s'",
				 n->name);
			free(probe.kt);
			r = -EINVAL;
			goto out;
		}
		free(n->kt);
		n->ktype = probe.ktype, n->ki = probe.ki, n->kr = probe.kr;
		n->kt = probe.kt, n->ktlen = probe.ktlen;
	}
	rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		r = db_failed(j, rc);
		goto out;
	}
	n->pending = 0;
	return 0;
out:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

/*
 * Apply the content of open h to its row in one transaction: UPDATE the
 * columns it names, or INSERT for a file just created. On failure the row
 * is untouched, the reason is logged and written into why.
 */
int rec_commit(struct rec *s, struct rec_open *h, char *why, size_t wlen)
{
	struct commit_job j = {.s = s, .n = h->node, .why = why, .wlen = wlen};
	struct rec_node *n = h->node;
	struct vd_buf sql = {0};
	sqlite3_stmt *st = NULL;
	const char *text = h->buf.p ? h->buf.p : "";
	size_t tl = h->buf.len;
	int r;

	why[0] = 0;
	r = rec_table_load(s, n->table, &j.t);
	if (r) {
		snprintf(why, wlen, "the table is gone");
		return r;
	}
	/* A new file closed empty (touch) is an empty object: all defaults. */
	if (n->pending && strspn(text, " \t\r\n") == tl)
		text = "{}", tl = 2;
	r = vd_json_parse(text, tl, &j.o, why, wlen);
	if (r)
		goto out;
	j.col = calloc(j.o.n + 1, sizeof(*j.col));
	if (!j.col) {
		r = -ENOMEM;
		goto out;
	}
	r = rec_unesc_name(&j.key, n->name, strlen(n->name) - 5);
	if (!r)
		r = match_columns(&j);
	if (r)
		goto out;
	build_sql(&j, &sql);
	r = rec_prepare(s, &sql, &st);
	if (!r)
		r = bind_values(&j, st);
	if (!r)
		r = apply(&j, st);
out:
	sqlite3_finalize(st);
	if (r && !why[0])
		snprintf(why, wlen, "%s", strerror(-r));
	if (r)
		vd_log(s->drive, "records: %s/%s: not saved: %s", n->table,
		       n->name, why);
	free(j.col);
	vd_json_object_free(&j.o);
	vd_buf_free(&sql);
	vd_buf_free(&j.key);
	rec_table_free(&j.t);
	return r;
}

/* Save h's edits if it has any; the result is what close(2) returns. */
int rec_save(struct rec *s, struct rec_open *h)
{
	char why[256];
	int r;

	if (!h->dirty)
		return 0;
	h->dirty = 0;
	h->tried = 1;
	if (h->node->writer == h)
		h->node->writer = NULL;
	r = rec_commit(s, h, why, sizeof(why));
	/* A file whose insert failed must vanish, and a saved row makes the
	 * sizes of CSV files stale: the poller tells the kernel. */
	if (!r || h->node->pending)
		s->rescan = 1;
	return r;
}
