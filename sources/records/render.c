/*
 * render.c - rows as JSON files and tables as CSV files.
 *
 * What a read returns: a row rendered as one JSON object (column ->
 * value), or a whole table as CSV (option csv).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records/records.h"

/* Append column value v to b as JSON. */
static void put_json_value(struct vd_buf *b, sqlite3_value *v)
{
	switch (sqlite3_value_type(v)) {
	case SQLITE_INTEGER:
		vd_buf_addf(b, "%lld", (long long)sqlite3_value_int64(v));
		break;
	case SQLITE_FLOAT:
		vd_json_put_real(b, sqlite3_value_double(v));
		break;
	case SQLITE_TEXT:
		vd_json_put_string(b, (const char *)sqlite3_value_text(v),
				   (size_t)sqlite3_value_bytes(v));
		break;
	case SQLITE_BLOB:
		vd_buf_add(b, "{\"$base64\": \"", 13);
		vd_base64_put(b, sqlite3_value_blob(v),
			      (size_t)sqlite3_value_bytes(v));
		vd_buf_add(b, "\"}", 2);
		break;
	default:
		vd_buf_add(b, "null", 4);
	}
}

/* The row of node n as a JSON object, one column a line. -ENOENT if the
 * row is gone. */
int rec_row_json(struct rec *s, const struct rec_table *t,
		 const struct rec_node *n, struct vd_buf *out)
{
	struct vd_buf sql = {0};
	sqlite3_stmt *st = NULL;
	int r;

	vd_buf_add(&sql, "SELECT * FROM ", 14);
	rec_put_ident(&sql, t->name);
	vd_buf_add(&sql, " WHERE ", 7);
	rec_put_key(&sql, t);
	vd_buf_add(&sql, " = ?", 4);
	r = rec_prepare(s, &sql, &st);
	vd_buf_free(&sql);
	if (r)
		return r;
	rec_bind_key(st, 1, n);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		int nc = sqlite3_column_count(st);

		vd_buf_add(out, "{", 1);
		for (int i = 0; i < nc; i++) {
			const char *cn = sqlite3_column_name(st, i);

			vd_buf_add(out, i ? ",\n  " : "\n  ", i ? 4 : 3);
			vd_json_put_string(out, cn, strlen(cn));
			vd_buf_add(out, ": ", 2);
			put_json_value(out, sqlite3_column_value(st, i));
		}
		vd_buf_add(out, "\n}\n", 3);
		r = out->oom ? -ENOMEM : 0;
	} else {
		r = r == SQLITE_DONE ? -ENOENT : -EIO;
	}
	sqlite3_finalize(st);
	return r;
}

/* Append one CSV field (RFC 4180), quoted when it has to be. */
static void put_csv_field(struct vd_buf *b, sqlite3_value *v)
{
	struct vd_buf t = {0};
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
		vd_buf_add(b, p, n);
		return;
	}
	vd_buf_add(&t, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '"')
			vd_buf_add(&t, "\"", 1);
		vd_buf_add(&t, p + i, 1);
	}
	vd_buf_add(&t, "\"", 1);
	vd_buf_add(b, t.p, t.len);
	if (t.oom)
		b->oom = 1;
	vd_buf_free(&t);
}

/* The whole table as CSV: a header line of column names, then the rows
 * in key order, CRLF line ends as RFC 4180 has them. */
int rec_table_csv(struct rec *s, const struct rec_table *t, struct vd_buf *out)
{
	struct vd_buf sql = {0};
	sqlite3_stmt *st = NULL;
	int r;

	vd_buf_add(&sql, "SELECT * FROM ", 14);
	rec_put_ident(&sql, t->name);
	vd_buf_add(&sql, " ORDER BY ", 10);
	rec_put_key(&sql, t);
	r = rec_prepare(s, &sql, &st);
	vd_buf_free(&sql);
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
			vd_buf_add(out, ",", 1);
		put_csv_field(out, v);
		sqlite3_finalize(nm);
	}
	vd_buf_add(out, "\r\n", 2);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		for (int i = 0; i < sqlite3_column_count(st); i++) {
			if (i)
				vd_buf_add(out, ",", 1);
			put_csv_field(out, sqlite3_column_value(st, i));
		}
		vd_buf_add(out, "\r\n", 2);
	}
	r = r == SQLITE_DONE ? 0 : -EIO;
	sqlite3_finalize(st);
	return out->oom ? -ENOMEM : r;
}
