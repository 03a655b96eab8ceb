/*
 * names.c - records:'s name tables and file names.
 *
 * The node table: every node the kernel holds, found by id and by
 * (kind, table, name), in two chained hash tables. File names: the
 * escaping of table names and keys into entry names and back, and the
 * quoting of SQL identifiers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records/records.h"

uint64_t rec_hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 1099511628211ull;
	return h;
}

static uint64_t name_key(enum rec_kind kind, const char *table,
			 const char *name)
{
	uint64_t h = 14695981039346656037ull;

	h = rec_hash_bytes(h, &kind, sizeof(kind));
	h = rec_hash_bytes(h, table, strlen(table) + 1);
	return rec_hash_bytes(h, name, strlen(name));
}

struct rec_node *rec_node_get(struct rec *s, vd_node_t id)
{
	struct vd_hlink *l;

	if (id == VD_ROOT)
		return &s->root;
	for (l = vd_htab_first(&s->byid, id); l; l = l->next) {
		struct rec_node *n = vd_container_of(l, struct rec_node, idl);

		if (n->id == id)
			return n;
	}
	return NULL;
}

struct rec_node *rec_node_find(struct rec *s, enum rec_kind kind,
			       const char *table, const char *name)
{
	uint64_t h = name_key(kind, table, name);
	struct vd_hlink *l;

	for (l = vd_htab_first(&s->byname, h); l; l = l->next) {
		struct rec_node *n = vd_container_of(l, struct rec_node, namel);

		if (l->hash == h && n->kind == kind &&
		    !strcmp(n->table, table) && !strcmp(n->name, name))
			return n;
	}
	return NULL;
}

void rec_node_free(struct rec_node *n)
{
	free(n->table);
	free(n->name);
	free(n->kt);
	vd_buf_free(&n->data);
	free(n);
}

/* Enter n under its (kind, table, name) for rec_node_find(). */
void rec_name_hash(struct rec *s, struct rec_node *n)
{
	vd_htab_add(&s->byname, &n->namel,
		    name_key(n->kind, n->table, n->name));
}

/* Take n out of the name chains: rec_node_find() no longer finds it. */
void rec_name_unhash(struct rec *s, struct rec_node *n)
{
	vd_htab_del(&s->byname, &n->namel);
}

/* The node for (kind, table, name), made if the kernel holds none yet. */
struct rec_node *rec_node_make(struct rec *s, enum rec_kind kind,
			       const char *table, const char *name)
{
	struct rec_node *n = rec_node_find(s, kind, table, name);

	if (n)
		return n;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->table = strdup(table);
	n->name = strdup(name);
	if (!n->table || !n->name) {
		rec_node_free(n);
		return NULL;
	}
	n->kind = kind;
	n->id = s->next_id++;
	vd_htab_add(&s->byid, &n->idl, n->id);
	rec_name_hash(s, n);
	return n;
}

/* Drop n from both hash chains and free it. */
void rec_node_remove(struct rec *s, struct rec_node *n)
{
	vd_htab_del(&s->byid, &n->idl);
	rec_name_unhash(s, n);
	rec_node_free(n);
}

/*
 * File-name escaping: '%' -> %25, '/' -> %2F, NUL -> %00, and the whole
 * names "." and ".." -> %2E and %2E%2E. Everything else is kept as is.
 */
void rec_esc_name(struct vd_buf *b, const char *s, size_t n)
{
	if ((n == 1 && s[0] == '.') || (n == 2 && !memcmp(s, "..", 2))) {
		vd_buf_add(b, n == 1 ? "%2E" : "%2E%2E", n == 1 ? 3 : 6);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%')
			vd_buf_add(b, "%25", 3);
		else if (s[i] == '/')
			vd_buf_add(b, "%2F", 3);
		else if (s[i] == 0)
			vd_buf_add(b, "%00", 3);
		else
			vd_buf_add(b, s + i, 1);
	}
}

/* Undo rec_esc_name() on the n bytes at name; -ENOENT unless name is exactly
 * what rec_esc_name() makes, so each key has a single file name. */
int rec_unesc_name(struct vd_buf *out, const char *name, size_t n)
{
	struct vd_buf back = {0};
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		if (name[i] != '%') {
			vd_buf_add(out, name + i, 1);
			continue;
		}
		if (i + 2 >= n) {
			r = -ENOENT;
			break;
		}
		if (!strncmp(name + i, "%25", 3))
			vd_buf_add(out, "%", 1);
		else if (!strncmp(name + i, "%2F", 3))
			vd_buf_add(out, "/", 1);
		else if (!strncmp(name + i, "%00", 3))
			vd_buf_add(out, "", 1);
		else if (!strncmp(name + i, "%2E", 3))
			vd_buf_add(out, ".", 1);
		else
			r = -ENOENT;
		i += 2;
	}
	if (!r) {
		rec_esc_name(&back, out->p ? out->p : "", out->len);
		if (back.oom || out->oom)
			r = -ENOMEM;
		else if (back.len != n || memcmp(back.p, name, n))
			r = -ENOENT;
	}
	vd_buf_free(&back);
	return r;
}

/* Append "name" quoted as an SQL identifier. */
void rec_put_ident(struct vd_buf *b, const char *name)
{
	vd_buf_add(b, "\"", 1);
	for (; *name; name++) {
		if (*name == '"')
			vd_buf_add(b, "\"", 1);
		vd_buf_add(b, name, 1);
	}
	vd_buf_add(b, "\"", 1);
}

/* The key text of a stored key value (the file name before escaping), or
 * -1 for keys that cannot name a file (NULL, blob). */
static int key_text(struct vd_buf *b, sqlite3_value *v)
{
	switch (sqlite3_value_type(v)) {
	case SQLITE_INTEGER:
		vd_buf_addf(b, "%lld", (long long)sqlite3_value_int64(v));
		return 0;
	case SQLITE_FLOAT:
		vd_json_put_real(b, sqlite3_value_double(v));
		return 0;
	case SQLITE_TEXT:
		vd_buf_add(b, sqlite3_value_text(v),
			   (size_t)sqlite3_value_bytes(v));
		return 0;
	default:
		return -1;
	}
}

/* The file name of a row (escaped key + ".json"), or -1 if it has none. */
int rec_row_name(struct vd_buf *b, sqlite3_value *key)
{
	struct vd_buf t = {0};
	int r = key_text(&t, key);

	if (r == 0) {
		rec_esc_name(b, t.p ? t.p : "", t.len);
		vd_buf_add(b, ".json", 5);
		if (b->len > REC_NAME_MAX)
			r = -1;
	}
	vd_buf_free(&t);
	return r;
}
