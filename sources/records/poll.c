/*
 * poll.c - the change poller.
 *
 * A thread polls PRAGMA data_version; when another program changed the
 * database, it checks which rows and tables the kernel holds are gone or
 * changed and invalidates them, outside the source's lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "records/records.h"

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
		struct vd_buf sql = {0};
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
		if (rec_table_load(s, e->table, &t) == 0) {
			vd_buf_add(&sql, "SELECT 1 FROM ", 14);
			rec_put_ident(&sql, t.name);
			vd_buf_add(&sql, " WHERE ", 7);
			rec_put_key(&sql, &t);
			vd_buf_add(&sql, " = ?", 4);
			if (rec_prepare(s, &sql, &q->st))
				q->st = NULL;
			rec_table_free(&t);
		}
		vd_buf_free(&sql);
	}
	if (!q->st)
		return 0;
	sqlite3_reset(q->st);
	rec_bind_key(q->st, 1, e);
	r = sqlite3_step(q->st);
	return r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : -1;
}

/* A walk over every node the kernel holds, then the root: start with
 * e = NULL and *bucket = 0; NULL at the end. */
static struct rec_node *next_node(struct rec *s, struct rec_node *e,
				  size_t *bucket)
{
	struct vd_hlink *l = e ? e->idl.next : NULL;

	if (e == &s->root)
		return NULL;
	while (!l && *bucket < s->byid.nb)
		l = vd_htab_bucket(&s->byid, (*bucket)++);
	return l ? vd_container_of(l, struct rec_node, idl) : &s->root;
}

/*
 * Another program committed: list every node the kernel holds for
 * invalidation, and rows that no longer exist as names to drop.
 */
static size_t collect_changes(struct rec *s, struct rec_inval **out)
{
	struct rec_inval *v = NULL;
	struct exist_q *qs = NULL;
	struct rec_node *e;
	size_t n = 0, cap = 0, nq = 0, bucket = 0;

	for (e = next_node(s, NULL, &bucket); e; e = next_node(s, e, &bucket)) {
		struct rec_inval x = {e->id, 0, NULL};

		if (e->kind == REC_ROW && !e->writer &&
		    (!e->pending || !e->nopen) &&
		    (e->pending || row_exists(s, &qs, &nq, e) == 0)) {
			struct vd_buf tname = {0};
			struct rec_node *tn = NULL;

			rec_esc_name(&tname, e->table, strlen(e->table));
			if (tname.p)
				tn = rec_node_find(s, REC_TABLE, e->table,
						   tname.p);
			vd_buf_free(&tname);
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
sqlite3_int64 rec_data_version(struct rec *s)
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
void *rec_poll_thread(void *arg)
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
		dv = rec_data_version(s);
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
