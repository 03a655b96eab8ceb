/*
 * records.h - records:'s private parts, shared by its files (records.c:
 * the callbacks and the source; names.c, table.c, render.c, commit.c,
 * poll.c). Not a public interface.
 */
#ifndef VD_RECORDS_H
#define VD_RECORDS_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "records/json.h"
#include "sources.h"
#include "util/htab.h"

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
	struct vd_buf data;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec mtime;
	int linked; /* has a name in its folder */
	int held;   /* the kernel holds it (handed out, not forgotten) */
	struct vd_hlink idl, namel; /* in rec.byid and rec.byname */
};

/* One open file: a snapshot of the content, then the caller's edits. */
struct rec_open {
	struct vd_buf buf;
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
	struct vd_htab byid, byname; /* nodes by id, by (kind, table, name) */
	struct rec_node root;
	/* the change poller */
	pthread_t poller;
	int poller_started, stopping;
	int rescan; /* look for stale nodes even without a new data_version */
	pthread_cond_t cond;
	sqlite3_int64 data_version;
};

/* names.c */
uint64_t rec_hash_bytes(uint64_t h, const void *p, size_t n);
struct rec_node *rec_node_get(struct rec *s, vd_node_t id);
struct rec_node *rec_node_find(struct rec *s, enum rec_kind kind,
			       const char *table, const char *name);
void rec_node_free(struct rec_node *n);
void rec_name_hash(struct rec *s, struct rec_node *n);
void rec_name_unhash(struct rec *s, struct rec_node *n);
struct rec_node *rec_node_make(struct rec *s, enum rec_kind kind,
			       const char *table, const char *name);
void rec_node_remove(struct rec *s, struct rec_node *n);
void rec_esc_name(struct vd_buf *b, const char *s, size_t n);
int rec_unesc_name(struct vd_buf *out, const char *name, size_t n);
void rec_put_ident(struct vd_buf *b, const char *name);
int rec_row_name(struct vd_buf *b, sqlite3_value *key);

/* table.c */
void rec_table_free(struct rec_table *t);
void rec_tcache_clear(struct rec *s);
int rec_table_load(struct rec *s, const char *name, struct rec_table *t);
void rec_put_key(struct vd_buf *b, const struct rec_table *t);
int rec_prepare(struct rec *s, struct vd_buf *sql, sqlite3_stmt **st);
void rec_bind_key(sqlite3_stmt *st, int i, const struct rec_node *n);
int rec_row_find(struct rec *s, const struct rec_table *t, const char *name,
		 struct rec_node *n);
int rec_root_table(struct rec *s, const char *name, const char *suffix,
		   struct rec_table *t);

/* render.c */
int rec_row_json(struct rec *s, const struct rec_table *t,
		 const struct rec_node *n, struct vd_buf *out);
int rec_table_csv(struct rec *s, const struct rec_table *t, struct vd_buf *out);

/* commit.c */
int rec_sqlite_errno(sqlite3 *db, int rc);
int rec_is_int_key(const struct vd_buf *key);
int rec_commit(struct rec *s, struct rec_open *h, char *why, size_t wlen);
int rec_save(struct rec *s, struct rec_open *h);

/* poll.c */
sqlite3_int64 rec_data_version(struct rec *s);
void *rec_poll_thread(void *arg);

#endif
