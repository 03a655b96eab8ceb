/*
 * table.c - records:'s view of the database schema.
 *
 * Table descriptions (columns, affinities, the key), cached until the
 * schema version changes; finding a row by its file name; binding keys.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "records/records.h"

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

void rec_table_free(struct rec_table *t)
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
		rec_table_free(t);
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
		rec_table_free(dst);
		return -ENOMEM;
	}
	memcpy(dst->aff, src->aff, (size_t)src->ncol);
	dst->key = src->key;
	for (; dst->ncol < src->ncol; dst->ncol++) {
		dst->cols[dst->ncol] = strdup(src->cols[dst->ncol]);
		if (!dst->cols[dst->ncol]) {
			rec_table_free(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

void rec_tcache_clear(struct rec *s)
{
	while (s->tcache) {
		struct rec_tcache *c = s->tcache;

		s->tcache = c->next;
		rec_table_free(&c->t);
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
int rec_table_load(struct rec *s, const char *name, struct rec_table *t)
{
	sqlite3_int64 sv = schema_version(s);
	struct rec_tcache *c;
	int r;

	if (sv < 0 || sv != s->schema_version) {
		rec_tcache_clear(s);
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
void rec_put_key(struct vd_buf *b, const struct rec_table *t)
{
	if (t->key < 0)
		vd_buf_add(b, "rowid", 5);
	else
		rec_put_ident(b, t->cols[t->key]);
}

int rec_prepare(struct rec *s, struct vd_buf *sql, sqlite3_stmt **st)
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

void rec_bind_key(sqlite3_stmt *st, int i, const struct rec_node *n)
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
int rec_row_find(struct rec *s, const struct rec_table *t, const char *name,
		 struct rec_node *n)
{
	struct vd_buf key = {0}, sql = {0};
	sqlite3_stmt *st = NULL;
	size_t len = strlen(name);
	int r;

	if (len <= 5 || strcmp(name + len - 5, ".json"))
		return -ENOENT;
	r = rec_unesc_name(&key, name, len - 5);
	if (r)
		goto out;
	vd_buf_add(&sql, "SELECT ", 7);
	rec_put_key(&sql, t);
	vd_buf_add(&sql, " FROM ", 6);
	rec_put_ident(&sql, t->name);
	vd_buf_add(&sql, " WHERE ", 7);
	rec_put_key(&sql, t);
	vd_buf_add(&sql, " = ?", 4);
	r = rec_prepare(s, &sql, &st);
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
			struct vd_buf got = {0};
			sqlite3_value *v = sqlite3_column_value(st, 0);

			if (rec_row_name(&got, v) == 0 && got.len == len &&
			    !memcmp(got.p, name, len))
				r = set_key(n, v);
			vd_buf_free(&got);
		}
	}
out:
	sqlite3_finalize(st);
	vd_buf_free(&key);
	vd_buf_free(&sql);
	return r;
}

/* Split the escaped root entry name into a table name; -ENOENT if it is
 * not one. suffix is NULL for folders, ".csv" for CSV files. */
int rec_root_table(struct rec *s, const char *name, const char *suffix,
		   struct rec_table *t)
{
	struct vd_buf tn = {0};
	size_t len = strlen(name), sl = suffix ? strlen(suffix) : 0;
	int r;

	if (len <= sl || (sl && strcmp(name + len - sl, suffix)))
		return -ENOENT;
	r = rec_unesc_name(&tn, name, len - sl);
	if (!r && memchr(tn.p ? tn.p : "", 0, tn.len))
		r = -ENOENT; /* table names have no NUL */
	if (!r)
		r = rec_table_load(s, tn.p ? tn.p : "", t);
	vd_buf_free(&tn);
	return r;
}
