/*
 * webdav.c - the "webdav:URL" source: read-write access to a folder on a
 * WebDAV server (RFC 4918) through libcurl.
 *
 * Design, and why:
 *  - A node is a struct wd_node in a tree that mirrors what the server
 *    showed us: parent id + name, kept in two hash tables (by id, and by
 *    parent and name) and in a sibling list per folder. Handles are ids
 *    that are never reused (root is VD_ROOT), so a late invalidation or
 *    forget can never hit another file. Nodes seen once stay in the tree
 *    (a few hundred bytes each); detached ones are freed on forget.
 *  - Metadata is cached for `cache` seconds (default 1). A folder listing
 *    is one PROPFIND Depth: 1 and refreshes every child at once, so
 *    `ls -l` of any folder costs one request; a lookup or getattr whose
 *    cache ran out costs one PROPFIND Depth: 0 of that name. When a
 *    refresh finds a changed ETag (or size/date where there is none), a
 *    new or a vanished name, the kernel's copy is invalidated from a
 *    helper thread (invalidating from inside a request could deadlock on
 *    the kernel's own locks), and the next open drops cached pages.
 *  - Reads are ranged GETs into a per-open window that doubles while
 *    reads stay sequential (256 KiB up to `readahead`, default 8 MiB) and
 *    falls back on a jump: a small read of a big file fetches little.
 *  - Writes: HTTP can only replace a whole file, so a file opened for
 *    writing gets one unlinked temporary file (in `tmpdir`, on disk, not
 *    in RAM) shared by its opens; the old body is downloaded into it on
 *    the first change unless the open truncates. Flush, fsync and the
 *    last release PUT it if it changed. Creates PUT an empty body with
 *    If-None-Match: * first, so the name exists at once and a file made
 *    meanwhile elsewhere gives EEXIST instead of being overwritten.
 *  - WebDAV has no modes, owners, links or extended attributes: files are
 *    0644 and folders 0755, owned by whoever mounted; chmod and chown
 *    that change something, symlink, link, mknod of non-files and xattrs
 *    fail with EPERM/EOPNOTSUPP; times are the server's (utimensat
 *    succeeds and changes nothing). No WebDAV locks: last writer wins.
 *  - Threads: callbacks run concurrently (VD_OPS_THREAD_SAFE). One mutex
 *    guards the tree and is never held across a request; each request
 *    takes a curl easy handle from a small pool (its connections are
 *    kept alive across requests).
 *  - Every request has a connect timeout and a low-speed limit of
 *    `timeout` seconds (default 10): a dead or stopped server gives EIO,
 *    never a hang, and the next request reconnects.
 *  - Credentials never appear on a command line: a password in the URL is
 *    refused; they come from a netrc file (`netrc=PATH`,
 *    $VDRIVE_WEBDAV_NETRC, else ~/.netrc) or $VDRIVE_WEBDAV_USER and
 *    $VDRIVE_WEBDAV_PASSWORD. TLS is verified unless `insecure` is given.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sources.h"
#include "vdrive.h"

#define WD_ETAG 128
#define WD_POOL 16
#define WD_MAX_XML (512u << 20) /* a listing bigger than this is refused */
#define WD_WINDOW0 (256u << 10) /* first read window */

struct wd_wr;

struct wd_node {
	uint64_t id;
	uint64_t parent; /* 0: detached (deleted, or the root) */
	char *name;
	bool dir;
	bool in_tree; /* reachable by (parent, name) */
	bool kref;    /* the kernel may hold it */
	off_t size;
	time_t mtime;
	char etag[WD_ETAG];
	char kcache_etag[WD_ETAG]; /* the body the page cache holds */
	double stamp;		   /* attributes fetched at (0: stale) */
	double listed;		   /* folder: children fetched at */
	double born;		   /* put at its place in the tree at */
	struct wd_wr *wr;	   /* open for writing */
	struct wd_node *id_next, *name_next;
	struct wd_node *kids, *sib_prev, *sib_next; /* folder children */
};

/* Write state of one file: a local copy that flush PUTs back. */
struct wd_wr {
	pthread_mutex_t lock;
	int fd;
	int refs;
	bool filled; /* holds the whole body */
	bool dirty;  /* changed since the last upload */
};

/* One open: the read window, or the folder snapshot for readdir. */
struct wd_fh {
	uint64_t node;
	bool writer;
	pthread_mutex_t lock;
	char *buf;
	off_t boff;
	size_t blen, bcap;
	off_t next;    /* where a sequential read would continue */
	size_t window; /* next GET size */
	char etag[WD_ETAG];
	/* readdir snapshot */
	struct wd_dent *ents;
	size_t nents;
};

struct wd_dent {
	char *name;
	uint64_t node;
	struct stat st;
};

struct wd_inval {
	uint64_t node;
	uint64_t parent;
	char *name; /* NULL: invalidate node; else the entry */
	struct wd_inval *next;
};

struct webdav {
	/* settings */
	char *origin;	  /* scheme://host[:port] */
	char *req_origin; /* the same with "user@" for netrc look-ups */
	char *base;	  /* encoded base path, ends in '/' */
	char *base_dec;	  /* decoded, ends in '/' */
	char *url_shown;
	char *user;
	char *password;
	char *netrc;
	char *cafile;
	char *tmpdir;
	double cache;
	long timeout;
	size_t readahead;
	bool insecure;
	long auth;
	int64_t down_until; /* ms: after a timeout, fail at once until then */
	bool noslash;	    /* the URL given did not end in '/' */
	uid_t uid;
	gid_t gid;

	pthread_mutex_t lock; /* the tree */
	struct wd_node **by_id, **by_name;
	size_t nbuckets, count;
	uint64_t next_id;

	pthread_mutex_t pool_lock;
	CURL *pool[WD_POOL];
	int npool;

	struct vd_drive *drive;
	pthread_t inval_thread;
	bool inval_started, stopping;
	pthread_mutex_t inval_lock;
	pthread_cond_t inval_cond;
	struct wd_inval *inval_head, *inval_tail;
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool fresh(const struct webdav *s, double t)
{
	return t > 0 && now_mono() - t < s->cache;
}

static struct webdav *wd_of(const struct vd_ctx *ctx)
{
	struct webdav *s = ctx->data;

	if (ctx->drive && !__atomic_load_n(&s->drive, __ATOMIC_ACQUIRE))
		__atomic_store_n(&s->drive, ctx->drive, __ATOMIC_RELEASE);
	return s;
}

/* ---- Strings: percent-encoding, XML entities, ETags -------------------- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode %XX in place; returns s. */
static char *pct_decode(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
			*o++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return s;
}

/* Append s percent-encoded (all but unreserved characters and '/'). */
static void pct_encode(char *out, size_t n, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = strlen(out);

	for (; *s && o + 4 < n; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' ||
		    c == '~' || c == '/') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}

/* Decode the five XML entities and numeric references in place. */
static void xml_unescape(char *s)
{
	static const struct {
		const char *e;
		char c;
	} ents[] = {{"&amp;", '&'},
		    {"&lt;", '<'},
		    {"&gt;", '>'},
		    {"&quot;", '"'},
		    {"&apos;", '\''}};
	char *o = s;

	for (char *p = s; *p;) {
		bool done = false;

		if (*p == '&' && p[1] == '#') {
			char *end;
			unsigned long v = p[2] == 'x' || p[2] == 'X'
						  ? strtoul(p + 3, &end, 16)
						  : strtoul(p + 2, &end, 10);
			if (*end == ';' && v > 0) {
				/* UTF-8 encode */
				if (v < 0x80) {
					*o++ = (char)v;
				} else if (v < 0x800) {
					*o++ = (char)(0xc0 | (v >> 6));
					*o++ = (char)(0x80 | (v & 0x3f));
				} else if (v < 0x10000) {
					*o++ = (char)(0xe0 | (v >> 12));
					*o++ = (char)(0x80 | ((v >> 6) & 0x3f));
					*o++ = (char)(0x80 | (v & 0x3f));
				} else {
					*o++ = (char)(0xf0 | (v >> 18));
					*o++ = (char)(0x80 |
						      ((v >> 12) & 0x3f));
					*o++ = (char)(0x80 | ((v >> 6) & 0x3f));
					*o++ = (char)(0x80 | (v & 0x3f));
				}
				p = end + 1;
				done = true;
			}
		} else if (*p == '&') {
			for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]);
			     i++) {
				size_t l = strlen(ents[i].e);
				if (!strncmp(p, ents[i].e, l)) {
					*o++ = ents[i].c;
					p += l;
					done = true;
					break;
				}
			}
		}
		if (!done)
			*o++ = *p++;
	}
	*o = '\0';
}

/* Trim white space at both ends, in place. */
static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Weak and strong forms of one ETag compare equal: servers (Apache)
 * hand out W/"x" for a file changed in the last second and "x" later. */
static void etag_norm(char *dst, const char *src)
{
	if (!strncmp(src, "W/", 2))
		src += 2;
	snprintf(dst, WD_ETAG, "%s", src);
}

/* RFC 1123 dates (getlastmodified); ISO 8601 as a fallback. */
static time_t parse_date(const char *s)
{
	struct tm tm;
	const char *e;

	memset(&tm, 0, sizeof(tm));
	e = strptime(s, "%a, %d %b %Y %H:%M:%S", &tm);
	if (!e) {
		memset(&tm, 0, sizeof(tm));
		e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	}
	return e ? timegm(&tm) : 0;
}

/* ---- Multistatus parsing ------------------------------------------------ */

/* One <response>: path relative to the base, decoded, no slashes at the
 * ends ("" is the base itself); NULL when outside the base. */
struct wd_entry {
	char *rel;
	bool dir;
	bool has_size;
	off_t size;
	time_t mtime;
	char etag[WD_ETAG];
};

struct wd_list {
	struct wd_entry *v;
	size_t n, cap;
};

static void list_free(struct wd_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].rel);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* The href of a response as a path relative to the base, or NULL. */
static char *href_rel(const struct webdav *s, const char *href)
{
	const char *p = href, *q;
	char *path, *rel;
	size_t bl = strlen(s->base_dec);
	size_t l;

	q = strstr(p, "://");
	if (q && q < strchr(p, '/') + 1) {
		p = strchr(q + 3, '/');
		if (!p)
			p = "/";
	}
	path = strdup(p);
	if (!path)
		return NULL;
	path[strcspn(path, "?#")] = '\0';
	pct_decode(path);
	l = strlen(path);
	/* the base itself, with or without its slash */
	if ((l == bl && !strcmp(path, s->base_dec)) ||
	    (l + 1 == bl && !strncmp(path, s->base_dec, l))) {
		free(path);
		return strdup("");
	}
	if (l <= bl || strncmp(path, s->base_dec, bl)) {
		free(path);
		return NULL;
	}
	rel = strdup(path + bl);
	free(path);
	if (!rel)
		return NULL;
	l = strlen(rel);
	while (l && rel[l - 1] == '/')
		rel[--l] = '\0';
	return rel;
}

enum wd_cap { CAP_NONE, CAP_HREF, CAP_STATUS, CAP_LEN, CAP_MOD, CAP_ETAG };

/*
 * Parse a multistatus body into l. Namespace prefixes are ignored (the
 * local names are DAV:'s own and distinctive); only properties under a
 * propstat whose status is 200 count. Returns 0 or -EIO for a body that
 * is no multistatus at all.
 */
static int parse_multistatus(const struct webdav *s, const char *xml,
			     size_t len, struct wd_list *l)
{
	const char *p = xml, *end = xml + len;
	bool in_resp = false, in_ps = false, in_rt = false, seen_ms = false;
	enum wd_cap cap = CAP_NONE;
	char *text = NULL;
	size_t tlen = 0, tcap = 0;
	char href[4096] = "", rstatus[128] = "", pstatus[128] = "";
	struct wd_entry e, pe; /* the response, and one propstat's props */

	memset(&e, 0, sizeof(e));
	memset(&pe, 0, sizeof(pe));
	while (p < end) {
		const char *lt = memchr(p, '<', (size_t)(end - p));
		const char *gt, *nm, *ne, *local;
		bool close, selfclose;

		if (!lt)
			break;
		if (cap != CAP_NONE && lt > p) {
			size_t n = (size_t)(lt - p);
			if (tlen + n + 1 > tcap) {
				char *t;
				tcap = (tlen + n + 1) * 2;
				t = realloc(text, tcap);
				if (!t)
					goto nomem;
				text = t;
			}
			memcpy(text + tlen, p, n);
			tlen += n;
			text[tlen] = '\0';
		}
		if (!strncmp(lt, "<!--", 4)) {
			const char *c = strstr(lt + 4, "-->");
			p = c ? c + 3 : end;
			continue;
		}
		if (!strncmp(lt, "<![CDATA[", 9)) {
			const char *c = strstr(lt + 9, "]]>");
			if (c && cap != CAP_NONE) {
				size_t n = (size_t)(c - (lt + 9));
				char *t = realloc(text, tlen + n + 1);
				if (!t)
					goto nomem;
				text = t;
				tcap = tlen + n + 1;
				memcpy(text + tlen, lt + 9, n);
				tlen += n;
				text[tlen] = '\0';
			}
			p = c ? c + 3 : end;
			continue;
		}
		/* the end of this tag, skipping quoted attribute values */
		gt = lt + 1;
		{
			char quote = 0;
			for (; gt < end; gt++) {
				if (quote) {
					if (*gt == quote)
						quote = 0;
				} else if (*gt == '"' || *gt == '\'') {
					quote = *gt;
				} else if (*gt == '>') {
					break;
				}
			}
		}
		if (gt >= end)
			break;
		p = gt + 1;
		if (lt[1] == '?' || lt[1] == '!')
			continue;
		close = lt[1] == '/';
		selfclose = gt[-1] == '/';
		nm = lt + 1 + close;
		ne = nm;
		while (ne < gt && !isspace((unsigned char)*ne) && *ne != '/')
			ne++;
		local = nm;
		for (const char *c = nm; c < ne; c++)
			if (*c == ':')
				local = c + 1;
#define IS(x)                                                                  \
	((size_t)(ne - local) == sizeof(x) - 1 &&                              \
	 !strncmp(local, x, sizeof(x) - 1))
		if (!close) {
			if (IS("multistatus")) {
				seen_ms = true;
			} else if (IS("response")) {
				in_resp = true;
				memset(&e, 0, sizeof(e));
				href[0] = rstatus[0] = '\0';
			} else if (in_resp && IS("propstat")) {
				in_ps = true;
				memset(&pe, 0, sizeof(pe));
				pstatus[0] = '\0';
			} else if (in_resp && !in_ps && IS("href")) {
				cap = CAP_HREF;
			} else if (in_resp && IS("status")) {
				cap = CAP_STATUS;
			} else if (in_ps && IS("resourcetype")) {
				in_rt = !selfclose;
			} else if (in_rt && IS("collection")) {
				pe.dir = true;
			} else if (in_ps && IS("getcontentlength")) {
				cap = CAP_LEN;
			} else if (in_ps && IS("getlastmodified")) {
				cap = CAP_MOD;
			} else if (in_ps && IS("getetag")) {
				cap = CAP_ETAG;
			}
			if (cap != CAP_NONE && !selfclose) {
				tlen = 0;
				if (text)
					text[0] = '\0';
				continue;
			}
			cap = CAP_NONE;
			if (!selfclose)
				continue;
		}
		/* an end tag (or a self-closing one) */
		if (cap != CAP_NONE) {
			char *t = text ? text : (char[]){0};

			xml_unescape(t);
			t = trim(t);
			switch (cap) {
			case CAP_HREF:
				snprintf(href, sizeof(href), "%s", t);
				break;
			case CAP_STATUS:
				snprintf(in_ps ? pstatus : rstatus,
					 sizeof(pstatus), "%s", t);
				break;
			case CAP_LEN:
				pe.size = (off_t)strtoll(t, NULL, 10);
				pe.has_size = true;
				break;
			case CAP_MOD:
				pe.mtime = parse_date(t);
				break;
			case CAP_ETAG:
				etag_norm(pe.etag, t);
				break;
			default:
				break;
			}
			cap = CAP_NONE;
		}
		if (IS("resourcetype")) {
			in_rt = false;
		} else if (IS("propstat") && in_ps) {
			in_ps = false;
			/* "HTTP/1.1 200 OK": props that exist */
			if (strstr(pstatus, " 200")) {
				e.dir |= pe.dir;
				if (pe.has_size) {
					e.has_size = true;
					e.size = pe.size;
				}
				if (pe.mtime)
					e.mtime = pe.mtime;
				if (pe.etag[0])
					memcpy(e.etag, pe.etag, WD_ETAG);
			}
		} else if (IS("response") && in_resp) {
			in_resp = false;
			if (href[0] && (!rstatus[0] || strstr(rstatus, " 2"))) {
				if (l->n == l->cap) {
					size_t nc = l->cap ? l->cap * 2 : 64;
					struct wd_entry *v =
						realloc(l->v, nc * sizeof(*v));
					if (!v)
						goto nomem;
					l->v = v;
					l->cap = nc;
				}
				e.rel = href_rel(s, href);
				if (e.rel)
					l->v[l->n++] = e;
			}
		}
#undef IS
	}
	free(text);
	return seen_ms ? 0 : -EIO;
nomem:
	free(text);
	return -ENOMEM;
}

/* ---- HTTP --------------------------------------------------------------- */

struct wd_req {
	const char *method; /* GET, PUT, PROPFIND, MKCOL, DELETE, MOVE */
	const char *path;   /* decoded, relative to the base */
	bool dir;	    /* a folder: its URL ends in '/' */
	const char *depth;
	const char *body; /* request body (PROPFIND) */
	int up_fd;	  /* PUT: the body, from this file (-1: empty) */
	off_t up_size, up_off;
	bool if_none_match; /* PUT: only if absent */
	const char *dest;   /* MOVE: decoded destination */
	bool dest_dir, overwrite;
	off_t roff;  /* GET: range start */
	size_t rlen; /* GET: range length (0: whole body) */
	/* response body: into buf (up to max), or into out_fd */
	char *buf;
	size_t len, cap, max;
	bool own_buf;
	int out_fd;
	off_t skip; /* bytes to drop first (a server that ignored Range) */
	bool truncated;
	CURL *h;
	double moved_at; /* last time bytes went either way */
	curl_off_t moved;
	long timeout;
	long status;
	char etag[WD_ETAG];
	char err[CURL_ERROR_SIZE];
};

static size_t on_body(char *data, size_t sz, size_t nm, void *arg)
{
	struct wd_req *q = arg;
	size_t n = sz * nm, take = n;

	if (q->status == 0) {
		curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &q->status);
		/* A whole body where a range was asked: skip to it. */
		if (q->rlen && q->status == 200)
			q->skip = q->roff;
	}
	if (q->skip) {
		size_t d = (size_t)q->skip < n ? (size_t)q->skip : n;
		q->skip -= (off_t)d;
		data += d;
		take -= d;
	}
	if (q->out_fd >= 0) {
		for (size_t done = 0; done < take;) {
			ssize_t w = pwrite(q->out_fd, data + done, take - done,
					   (off_t)q->len);
			if (w <= 0)
				return 0; /* aborts the transfer */
			done += (size_t)w;
			q->len += (size_t)w;
		}
		return n;
	}
	if (q->len + take > q->max) {
		take = q->max - q->len;
		q->truncated = true;
	}
	if (q->len + take > q->cap) {
		size_t nc = q->cap ? q->cap : 65536;
		char *b;
		while (nc < q->len + take)
			nc *= 2;
		if (nc > q->max)
			nc = q->max;
		b = realloc(q->buf, nc);
		if (!b)
			return 0;
		q->buf = b;
		q->cap = nc;
	}
	memcpy(q->buf + q->len, data, take);
	q->len += take;
	/* Enough of a range the server sent whole: stop it. */
	if (q->truncated && q->rlen)
		return 0;
	return n;
}

static size_t on_header(char *data, size_t sz, size_t nm, void *arg)
{
	struct wd_req *q = arg;
	size_t n = sz * nm;

	if (n > 5 && !strncasecmp(data, "ETag:", 5)) {
		char v[WD_ETAG];
		size_t l = n - 5 < sizeof(v) - 1 ? n - 5 : sizeof(v) - 1;
		memcpy(v, data + 5, l);
		v[l] = '\0';
		etag_norm(q->etag, trim(v));
	}
	return n;
}

/* No byte either way for `timeout` seconds: give up. curl's own
 * low-speed limit measured 9 s for 3 here on a stopped server. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct wd_req *q = arg;
	double t = now_mono();

	(void)dltotal;
	(void)ultotal;
	if (dlnow + ulnow != q->moved || q->moved_at == 0) {
		q->moved = dlnow + ulnow;
		q->moved_at = t;
		return 0;
	}
	return t - q->moved_at > (double)q->timeout;
}

static size_t on_upload(char *data, size_t sz, size_t nm, void *arg)
{
	struct wd_req *q = arg;
	size_t n = sz * nm;
	ssize_t r;

	if (q->up_fd < 0 || q->up_off >= q->up_size)
		return 0;
	if ((off_t)n > q->up_size - q->up_off)
		n = (size_t)(q->up_size - q->up_off);
	r = pread(q->up_fd, data, n, q->up_off);
	if (r < 0)
		return CURL_READFUNC_ABORT;
	q->up_off += r;
	return (size_t)r;
}

static CURL *pool_get(struct webdav *s)
{
	CURL *h = NULL;

	pthread_mutex_lock(&s->pool_lock);
	if (s->npool)
		h = s->pool[--s->npool];
	pthread_mutex_unlock(&s->pool_lock);
	return h ? h : curl_easy_init();
}

static void pool_put(struct webdav *s, CURL *h)
{
	pthread_mutex_lock(&s->pool_lock);
	if (s->npool < WD_POOL) {
		s->pool[s->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s->pool_lock);
	if (h)
		curl_easy_cleanup(h);
}

static void make_url(const struct webdav *s, char *out, size_t n,
		     const char *path, bool dir)
{
	snprintf(out, n, "%s%s", s->req_origin ? s->req_origin : s->origin,
		 s->base);
	pct_encode(out, n, path);
	if (dir && path[0] && strlen(out) + 1 < n)
		strcat(out, "/");
}

/*
 * Run one request. Returns 0 when an HTTP answer came (q->status holds
 * it), -EIO when none did (no connection, timeout, TLS): q->err says why.
 */
static int wd_do(struct webdav *s, struct wd_req *q)
{
	char url[8192], hdr[8400];
	struct curl_slist *hl = NULL;
	CURLcode rc;
	CURL *h = pool_get(s);

	if (!h)
		return -ENOMEM;
	/* One stat may send several requests: after one timed out, the
	 * next second's fail at once instead of each waiting the timeout. */
	if ((int64_t)(now_mono() * 1000) <
	    __atomic_load_n(&s->down_until, __ATOMIC_RELAXED)) {
		pool_put(s, h);
		snprintf(q->err, sizeof(q->err),
			 "the server timed out just now");
		return -EIO;
	}
	curl_easy_reset(h);
	q->h = h;
	q->status = 0;
	q->len = 0;
	q->err[0] = '\0';
	if (!q->max)
		q->max = 1u << 20;
	make_url(s, url, sizeof(url), q->path, q->dir);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, s->timeout);
	q->timeout = s->timeout;
	q->moved_at = 0;
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, q);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, q->err);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "vdrive-webdav/0.1");
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
	curl_easy_setopt(h, CURLOPT_HTTPAUTH, s->auth);
	if (s->password) {
		if (s->user)
			curl_easy_setopt(h, CURLOPT_USERNAME, s->user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, s->password);
	} else {
		/* The user, if any, is in req_origin: curl then takes that
		 * login's password from the netrc file. */
		curl_easy_setopt(h, CURLOPT_NETRC, (long)CURL_NETRC_OPTIONAL);
		if (s->netrc)
			curl_easy_setopt(h, CURLOPT_NETRC_FILE, s->netrc);
	}
	if (s->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (s->cafile)
		curl_easy_setopt(h, CURLOPT_CAINFO, s->cafile);
	/* No 100-continue pause before bodies. */
	hl = curl_slist_append(hl, "Expect:");
	if (q->depth) {
		snprintf(hdr, sizeof(hdr), "Depth: %s", q->depth);
		hl = curl_slist_append(hl, hdr);
	}
	if (!strcmp(q->method, "GET")) {
		if (q->rlen) {
			char range[64];
			snprintf(range, sizeof(range), "%lld-%lld",
				 (long long)q->roff,
				 (long long)(q->roff + (off_t)q->rlen - 1));
			curl_easy_setopt(h, CURLOPT_RANGE, range);
		}
	} else if (!strcmp(q->method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
		curl_easy_setopt(h, CURLOPT_READDATA, q);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)(q->up_fd < 0 ? 0 : q->up_size));
		q->up_off = 0;
		if (q->if_none_match)
			hl = curl_slist_append(hl, "If-None-Match: *");
		hl = curl_slist_append(
			hl, "Content-Type: application/octet-stream");
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
		if (q->body) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
			hl = curl_slist_append(hl,
					       "Content-Type: application/xml; "
					       "charset=utf-8");
		}
		if (q->dest) {
			char du[8192];
			snprintf(du, sizeof(du), "%s%s", s->origin, s->base);
			pct_encode(du, sizeof(du), q->dest);
			if (q->dest_dir && strlen(du) + 1 < sizeof(du))
				strcat(du, "/");
			snprintf(hdr, sizeof(hdr), "Destination: %s", du);
			hl = curl_slist_append(hl, hdr);
			hl = curl_slist_append(hl, q->overwrite
							   ? "Overwrite: T"
							   : "Overwrite: F");
		}
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &q->status);
	curl_slist_free_all(hl);
	q->h = NULL;
	pool_put(s, h);
	/* A write callback that stopped a whole-body answer on purpose. */
	if (rc == CURLE_WRITE_ERROR && q->truncated && q->rlen)
		return 0;
	if (rc == CURLE_ABORTED_BY_CALLBACK)
		snprintf(q->err, sizeof(q->err),
			 "no answer from the server for %ld s", s->timeout);
	if (rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_ABORTED_BY_CALLBACK) {
		int64_t until = (int64_t)(now_mono() * 1000) + 1000;
		__atomic_store_n(&s->down_until, until, __ATOMIC_RELAXED);
	}
	if (rc != CURLE_OK) {
		if (!q->err[0])
			snprintf(q->err, sizeof(q->err), "%s",
				 curl_easy_strerror(rc));
		if (s->drive)
			vd_log(s->drive, "webdav: %s /%s: %s", q->method,
			       q->path, q->err);
		return -EIO;
	}
	return 0;
}

/* The errno for an HTTP status (2xx: 0). */
static int http_errno(long st)
{
	if (st >= 200 && st < 300)
		return 0;
	switch (st) {
	case 401:
	case 403:
		return -EACCES;
	case 404:
	case 409: /* a missing parent */
	case 410:
		return -ENOENT;
	case 412:
		return -EEXIST;
	case 413:
		return -EFBIG;
	case 414:
		return -ENAMETOOLONG;
	case 423:
		return -EBUSY;
	case 507:
		return -ENOSPC;
	default:
		return -EIO;
	}
}

static const char propfind_body[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>"
	"<D:propfind xmlns:D=\"DAV:\"><D:prop>"
	"<D:resourcetype/><D:getcontentlength/><D:getlastmodified/>"
	"<D:getetag/></D:prop></D:propfind>";

/* PROPFIND path with depth "0" or "1" into l. Returns 0 or -errno. */
static int propfind(struct webdav *s, const char *path, bool dir,
		    const char *depth, struct wd_list *l, long *status)
{
	struct wd_req q = {.method = "PROPFIND",
			   .path = path,
			   .dir = dir,
			   .depth = depth,
			   .body = propfind_body,
			   .up_fd = -1,
			   .out_fd = -1,
			   .max = WD_MAX_XML};
	int r = wd_do(s, &q);

	memset(l, 0, sizeof(*l));
	if (status)
		*status = q.status;
	if (!r && q.status != 207)
		r = q.status == 200 || q.status == 405 || q.status == 501 ||
				    (q.status >= 300 && q.status < 400)
			    ? -EPROTO /* not WebDAV, or not this URL */
			    : http_errno(q.status ? q.status : 500);
	if (!r && q.truncated)
		r = -EFBIG;
	if (!r)
		r = parse_multistatus(s, q.buf, q.len, l);
	free(q.buf);
	if (r == -EPROTO && status == NULL)
		r = -EIO;
	return r;
}

/* ---- The tree ------------------------------------------------------------ */

static size_t hash_id(const struct webdav *s, uint64_t id)
{
	return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 17) & (s->nbuckets - 1);
}

static size_t hash_name(const struct webdav *s, uint64_t parent,
			const char *name)
{
	uint64_t h = 1469598103934665603ull ^ parent;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29)) & (s->nbuckets - 1);
}

static struct wd_node *node_get(const struct webdav *s, uint64_t id)
{
	for (struct wd_node *n = s->by_id[hash_id(s, id)]; n; n = n->id_next)
		if (n->id == id)
			return n;
	return NULL;
}

static struct wd_node *child_get(const struct webdav *s, uint64_t parent,
				 const char *name)
{
	for (struct wd_node *n = s->by_name[hash_name(s, parent, name)]; n;
	     n = n->name_next)
		if (n->parent == parent && !strcmp(n->name, name))
			return n;
	return NULL;
}

static void grow(struct webdav *s)
{
	size_t nb = s->nbuckets * 2, ob = s->nbuckets;
	struct wd_node **bi = calloc(nb, sizeof(*bi)),
		       **bn = calloc(nb, sizeof(*bn));
	struct wd_node **oi = s->by_id, **on = s->by_name;

	if (!bi || !bn) {
		free(bi);
		free(bn);
		return;
	}
	s->by_id = bi;
	s->by_name = bn;
	s->nbuckets = nb;
	for (size_t b = 0; b < ob; b++) {
		for (struct wd_node *n = oi[b], *nx; n; n = nx) {
			size_t h = hash_id(s, n->id);
			nx = n->id_next;
			n->id_next = bi[h];
			bi[h] = n;
		}
		for (struct wd_node *n = on[b], *nx; n; n = nx) {
			size_t h = hash_name(s, n->parent, n->name);
			nx = n->name_next;
			n->name_next = bn[h];
			bn[h] = n;
		}
	}
	free(oi);
	free(on);
}

/* Link n under (parent, name) in the name hash and its folder's list. */
static void attach(struct webdav *s, struct wd_node *n, uint64_t parent)
{
	struct wd_node *p = node_get(s, parent);
	size_t h;

	n->parent = parent;
	n->born = now_mono();
	h = hash_name(s, parent, n->name);
	n->name_next = s->by_name[h];
	s->by_name[h] = n;
	n->in_tree = true;
	if (p) {
		n->sib_prev = NULL;
		n->sib_next = p->kids;
		if (p->kids)
			p->kids->sib_prev = n;
		p->kids = n;
	}
}

static void node_free(struct webdav *s, struct wd_node *n);

/* Take n out of the tree (it was deleted or renamed over). Its
 * descendants go too. */
static void detach(struct webdav *s, struct wd_node *n)
{
	struct wd_node **pp, *p;

	if (!n->in_tree)
		return;
	while (n->kids)
		detach(s, n->kids);
	for (pp = &s->by_name[hash_name(s, n->parent, n->name)]; *pp;
	     pp = &(*pp)->name_next)
		if (*pp == n) {
			*pp = n->name_next;
			break;
		}
	p = node_get(s, n->parent);
	if (p) {
		if (n->sib_prev)
			n->sib_prev->sib_next = n->sib_next;
		else if (p->kids == n)
			p->kids = n->sib_next;
		if (n->sib_next)
			n->sib_next->sib_prev = n->sib_prev;
	}
	n->sib_prev = n->sib_next = NULL;
	n->in_tree = false;
	n->parent = 0;
	if (!n->kref && !n->wr)
		node_free(s, n);
}

static void node_free(struct webdav *s, struct wd_node *n)
{
	struct wd_node **pp;

	for (pp = &s->by_id[hash_id(s, n->id)]; *pp; pp = &(*pp)->id_next)
		if (*pp == n) {
			*pp = n->id_next;
			break;
		}
	s->count--;
	free(n->name);
	free(n);
}

static struct wd_node *node_new(struct webdav *s, uint64_t parent,
				const char *name, bool dir)
{
	struct wd_node *n = calloc(1, sizeof(*n));
	size_t h;

	if (!n || !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	if (s->count + 1 > s->nbuckets)
		grow(s);
	n->id = s->next_id++;
	n->dir = dir;
	h = hash_id(s, n->id);
	n->id_next = s->by_id[h];
	s->by_id[h] = n;
	s->count++;
	attach(s, n, parent);
	return n;
}

/* The decoded path of n relative to the base ("" for the root); -ENOENT
 * for a detached node. */
static int node_path(const struct webdav *s, const struct wd_node *n, char *out,
		     size_t size)
{
	const struct wd_node *chain[512];
	size_t depth = 0, o = 0;

	while (n->id != VD_ROOT) {
		if (!n->in_tree || depth == 512)
			return -ENOENT;
		chain[depth++] = n;
		n = node_get(s, n->parent);
		if (!n)
			return -ENOENT;
	}
	out[0] = '\0';
	while (depth--) {
		int w = snprintf(out + o, size - o, "%s%s", o ? "/" : "",
				 chain[depth]->name);
		if (w < 0 || (size_t)w >= size - o)
			return -ENAMETOOLONG;
		o += (size_t)w;
	}
	return 0;
}

static void join(char *out, size_t n, const char *dir, const char *name)
{
	snprintf(out, n, "%s%s%s", dir, dir[0] ? "/" : "", name);
}

/* ---- Invalidations, from a thread of their own -------------------------- */

static void inval_queue(struct webdav *s, uint64_t node, uint64_t parent,
			const char *name)
{
	struct wd_inval *v = calloc(1, sizeof(*v));

	if (!v)
		return;
	v->node = node;
	v->parent = parent;
	v->name = name ? strdup(name) : NULL;
	pthread_mutex_lock(&s->inval_lock);
	if (s->inval_tail)
		s->inval_tail->next = v;
	else
		s->inval_head = v;
	s->inval_tail = v;
	pthread_cond_signal(&s->inval_cond);
	pthread_mutex_unlock(&s->inval_lock);
}

static void *inval_main(void *arg)
{
	struct webdav *s = arg;

	pthread_mutex_lock(&s->inval_lock);
	for (;;) {
		struct wd_inval *v;
		struct vd_drive *d;

		while (!s->inval_head && !s->stopping)
			pthread_cond_wait(&s->inval_cond, &s->inval_lock);
		if (s->stopping)
			break;
		v = s->inval_head;
		s->inval_head = v->next;
		if (!s->inval_head)
			s->inval_tail = NULL;
		pthread_mutex_unlock(&s->inval_lock);
		d = __atomic_load_n(&s->drive, __ATOMIC_ACQUIRE);
		if (d && v->name)
			vd_drive_invalidate_entry(d, v->parent, v->name);
		else if (d)
			vd_drive_invalidate_node(d, v->node, 0, 0);
		free(v->name);
		free(v);
		pthread_mutex_lock(&s->inval_lock);
	}
	pthread_mutex_unlock(&s->inval_lock);
	return NULL;
}

/* ---- Applying what the server said -------------------------------------- */

/* Copy e's attributes into n, queueing an invalidation when the body
 * changed. A file open for writing keeps its local attributes. */
static void set_attrs(struct webdav *s, struct wd_node *n,
		      const struct wd_entry *e, double t)
{
	bool changed;

	n->stamp = t;
	if (n->wr)
		return;
	if (n->dir) {
		n->mtime = e->mtime;
		return;
	}
	changed = e->etag[0] || n->etag[0]
			  ? strcmp(e->etag, n->etag) != 0
			  : (e->size != n->size || e->mtime != n->mtime);
	if (changed && (n->etag[0] || n->size || n->mtime))
		inval_queue(s, n->id, 0, NULL);
	n->size = e->has_size ? e->size : 0;
	n->mtime = e->mtime;
	memcpy(n->etag, e->etag, WD_ETAG);
}

/* The node for (parent, name) as e describes it, made or replaced when
 * its type changed. Under s->lock. */
static struct wd_node *upsert(struct webdav *s, uint64_t parent,
			      const char *name, const struct wd_entry *e,
			      double t)
{
	struct wd_node *n = child_get(s, parent, name);

	if (n && n->dir != e->dir) {
		detach(s, n);
		inval_queue(s, 0, parent, name);
		n = NULL;
	}
	if (!n) {
		/* No entry invalidation for a new name: the kernel keeps no
		 * negative entries (negative_timeout 0), and one sent now would
		 * drop the entry (and the pages) of a lookup answered just now.
		 */
		n = node_new(s, parent, name, e->dir);
		if (!n)
			return NULL;
	}
	set_attrs(s, n, e, t);
	return n;
}

/* A name the server says is gone: forget it and tell the kernel. */
static void gone(struct webdav *s, uint64_t parent, const char *name)
{
	struct wd_node *n = child_get(s, parent, name);

	if (n) {
		detach(s, n);
		inval_queue(s, 0, parent, name);
	}
}

/* Apply a Depth: 1 listing of folder dir (path) to the tree. Under
 * s->lock. */
static void apply_listing(struct webdav *s, struct wd_node *dir,
			  const char *path, const struct wd_list *l, double t)
{
	size_t pl = strlen(path);
	struct wd_node *k, *next;

	for (k = dir->kids; k; k = k->sib_next)
		k->stamp = -k->stamp - 1; /* marks "not seen yet" */
	for (size_t i = 0; i < l->n; i++) {
		const char *rel = l->v[i].rel, *name;

		if (!strcmp(rel, path)) {
			dir->mtime = l->v[i].mtime;
			continue;
		}
		if (pl && (strncmp(rel, path, pl) || rel[pl] != '/'))
			continue;
		name = rel + (pl ? pl + 1 : 0);
		if (!*name || strchr(name, '/') || strlen(name) > 255)
			continue;
		k = child_get(s, dir->id, name);
		if (k && k->stamp < 0)
			k->stamp = -k->stamp - 1;
		upsert(s, dir->id, name, &l->v[i], t);
	}
	for (k = dir->kids; k; k = next) {
		next = k->sib_next;
		if (k->stamp >= 0)
			continue;
		k->stamp = -k->stamp - 1;
		/* Made or renamed here while the listing was on its way, or
		 * open with changes still to upload: not gone. */
		if (k->born >= t || k->wr)
			continue;
		inval_queue(s, 0, dir->id, k->name);
		detach(s, k);
	}
	dir->listed = t;
	dir->stamp = t;
}

static void fill_stat(const struct webdav *s, const struct wd_node *n,
		      struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->id;
	st->st_mode = n->dir ? S_IFDIR | 0755 : S_IFREG | 0644;
	st->st_nlink = 1;
	/* A folder whose children we know counts its subfolders, as
	 * POSIX file systems do (find relies on it); 1 means "unknown". */
	if (n->dir && n->listed > 0) {
		st->st_nlink = 2;
		for (const struct wd_node *k = n->kids; k; k = k->sib_next)
			st->st_nlink += k->dir;
	}
	st->st_uid = s->uid;
	st->st_gid = s->gid;
	st->st_size = n->dir ? 0 : n->size;
	st->st_blksize = 65536;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec = n->mtime;
	if (n->wr) {
		struct stat ls;
		if (fstat(n->wr->fd, &ls) == 0 && n->wr->filled) {
			st->st_size = ls.st_size;
			st->st_blocks = (ls.st_size + 511) / 512;
		}
		if (n->wr->dirty)
			st->st_mtim = st->st_ctim = ls.st_mtim;
	}
}

/* Refresh node id's attributes from the server (Depth: 0). Returns 0 with
 * s->lock held and *np set, or -errno without the lock. */
static int revalidate(struct webdav *s, uint64_t id, struct wd_node **np)
{
	char path[4096];
	struct wd_list l;
	struct wd_node *n;
	uint64_t parent;
	char name[256];
	bool dir;
	double t;
	int r;

	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	if (!n) {
		pthread_mutex_unlock(&s->lock);
		return -ESTALE;
	}
	if (n->wr || fresh(s, n->stamp)) {
		*np = n;
		return 0;
	}
	r = node_path(s, n, path, sizeof(path));
	if (r) {
		/* deleted while open: what we have is all there is */
		*np = n;
		return 0;
	}
	parent = n->parent;
	snprintf(name, sizeof(name), "%s", n->name);
	dir = n->dir;
	pthread_mutex_unlock(&s->lock);

	t = now_mono();
	r = propfind(s, path, dir, "0", &l, NULL);
	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	if (!r && !n)
		r = -ESTALE;
	if (r == -ENOENT && id != VD_ROOT)
		gone(s, parent, name);
	if (!r && (l.n == 0 || strcmp(l.v[0].rel, path)))
		r = -EIO;
	if (!r && id == VD_ROOT) {
		set_attrs(s, n, &l.v[0], t);
	} else if (!r && n->in_tree) {
		n = upsert(s, parent, name, &l.v[0], t);
		if (n && n->id != id) {
			r = -ENOENT; /* now another node (type changed) */
			n = NULL;
		}
	}
	list_free(&l);
	if (r) {
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	*np = n;
	return 0;
}

/* Make sure folder id's listing is at most `cache` old (force: now). */
static int list_dir(struct webdav *s, uint64_t id, bool force)
{
	char path[4096];
	struct wd_list l;
	struct wd_node *n;
	double t;
	int r;

	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	if (!n) {
		r = -ESTALE;
		goto out;
	}
	if (!n->dir) {
		r = -ENOTDIR;
		goto out;
	}
	if (!force && fresh(s, n->listed)) {
		r = 0;
		goto out;
	}
	r = node_path(s, n, path, sizeof(path));
	if (r)
		goto out;
	pthread_mutex_unlock(&s->lock);

	t = now_mono();
	r = propfind(s, path, true, "1", &l, NULL);
	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	if (r == -ENOENT && n && n->in_tree && id != VD_ROOT) {
		uint64_t parent = n->parent;
		char name[256];
		snprintf(name, sizeof(name), "%s", n->name);
		gone(s, parent, name);
	}
	if (!r && n && n->in_tree)
		apply_listing(s, n, path, &l, t);
	else if (!r && n && id == VD_ROOT)
		apply_listing(s, n, path, &l, t);
	list_free(&l);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ---- Callbacks: names ---------------------------------------------------- */

static int wd_lookup(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, vd_node_t *node, struct stat *st)
{
	struct webdav *s = wd_of(ctx);
	struct wd_node *p, *n;
	char path[4096], cpath[4096];
	struct wd_list l;
	double t;
	int r;

	if (strlen(name) > 255)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&s->lock);
	p = node_get(s, parent);
	if (!p || !p->dir) {
		pthread_mutex_unlock(&s->lock);
		return p ? -ENOTDIR : -ESTALE;
	}
	n = child_get(s, parent, name);
	if (fresh(s, p->listed) || (n && (fresh(s, n->stamp) || n->wr))) {
		if (!n) {
			pthread_mutex_unlock(&s->lock);
			return -ENOENT;
		}
		goto found;
	}
	r = node_path(s, p, path, sizeof(path));
	pthread_mutex_unlock(&s->lock);
	if (r)
		return r;
	join(cpath, sizeof(cpath), path, name);

	t = now_mono();
	r = propfind(s, cpath, false, "0", &l, NULL);
	pthread_mutex_lock(&s->lock);
	if (r == -ENOENT)
		gone(s, parent, name);
	if (!r && (l.n == 0 || strcmp(l.v[0].rel, cpath)))
		r = -EIO;
	if (!r && !node_get(s, parent))
		r = -ESTALE;
	n = r ? NULL : upsert(s, parent, name, &l.v[0], t);
	list_free(&l);
	if (!r && !n)
		r = -ENOMEM;
	if (r) {
		pthread_mutex_unlock(&s->lock);
		return r;
	}
found:
	n->kref = true;
	*node = n->id;
	fill_stat(s, n, st);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void wd_forget(void *data, vd_node_t node)
{
	struct webdav *s = data;
	struct wd_node *n;

	pthread_mutex_lock(&s->lock);
	n = node_get(s, node);
	if (n && node != VD_ROOT) {
		n->kref = false;
		if (!n->in_tree && !n->wr)
			node_free(s, n);
	}
	pthread_mutex_unlock(&s->lock);
}

static int wd_getattr(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi, struct stat *st)
{
	struct webdav *s = wd_of(ctx);
	struct wd_node *n;
	int r;

	(void)fi;
	r = revalidate(s, node, &n);
	if (r)
		return r;
	fill_stat(s, n, st);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* The path of parent/name, for a request about to change it. */
static int child_path(struct webdav *s, vd_node_t parent, const char *name,
		      char *out, size_t n)
{
	char path[4096];
	struct wd_node *p;
	int r;

	if (strlen(name) > 255)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&s->lock);
	p = node_get(s, parent);
	r = !p	      ? -ESTALE
	    : !p->dir ? -ENOTDIR
		      : node_path(s, p, path, sizeof(path));
	pthread_mutex_unlock(&s->lock);
	if (!r)
		join(out, n, path, name);
	return r;
}

/* A simple request whose only result is its status. */
static int simple(struct webdav *s, struct wd_req *q)
{
	int r;

	q->out_fd = -1;
	q->max = 65536;
	r = wd_do(s, q);
	free(q->buf);
	q->buf = NULL;
	return r;
}

static int wd_mkdir(const struct vd_ctx *ctx, vd_node_t parent,
		    const char *name, mode_t mode, vd_node_t *node,
		    struct stat *st)
{
	struct webdav *s = wd_of(ctx);
	char path[4096];
	struct wd_req q = {.method = "MKCOL", .up_fd = -1, .dir = true};
	struct wd_entry e = {.dir = true, .mtime = time(NULL)};
	struct wd_node *n;
	int r;

	(void)mode;
	r = child_path(s, parent, name, path, sizeof(path));
	if (r)
		return r;
	q.path = path;
	r = simple(s, &q);
	if (!r && (q.status == 405 || q.status == 301))
		r = -EEXIST; /* RFC 4918: MKCOL on an existing name */
	else if (!r)
		r = http_errno(q.status);
	if (r)
		return r;
	pthread_mutex_lock(&s->lock);
	if (!node_get(s, parent)) {
		pthread_mutex_unlock(&s->lock);
		return -ESTALE;
	}
	n = upsert(s, parent, name, &e, 0);
	if (n) {
		n->listed = now_mono(); /* it is empty */
		n->kref = true;
		*node = n->id;
		fill_stat(s, n, st);
	}
	pthread_mutex_unlock(&s->lock);
	return n ? 0 : -ENOMEM;
}

static int remove_name(struct webdav *s, vd_node_t parent, const char *name,
		       bool dir)
{
	char path[4096];
	struct wd_req q = {.method = "DELETE", .up_fd = -1, .dir = dir};
	struct wd_node *n;
	int r;

	r = child_path(s, parent, name, path, sizeof(path));
	if (r)
		return r;
	pthread_mutex_lock(&s->lock);
	n = child_get(s, parent, name);
	r = n && n->dir != dir ? (dir ? -ENOTDIR : -EISDIR) : 0;
	if (!r && n && dir) {
		uint64_t id = n->id;
		pthread_mutex_unlock(&s->lock);
		/* DELETE takes a whole tree: only an empty folder goes. */
		r = list_dir(s, id, true);
		pthread_mutex_lock(&s->lock);
		n = node_get(s, id);
		if (!r && n && n->kids)
			r = -ENOTEMPTY;
	}
	pthread_mutex_unlock(&s->lock);
	if (r)
		return r;
	q.path = path;
	r = simple(s, &q);
	if (!r)
		r = http_errno(q.status);
	if (r && r != -ENOENT)
		return r;
	pthread_mutex_lock(&s->lock);
	n = child_get(s, parent, name);
	if (n)
		detach(s, n);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int wd_unlink(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name)
{
	return remove_name(wd_of(ctx), parent, name, false);
}

static int wd_rmdir(const struct vd_ctx *ctx, vd_node_t parent,
		    const char *name)
{
	return remove_name(wd_of(ctx), parent, name, true);
}

/* Current node of parent/name, asking the server if the cache is old. */
static int find(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
		uint64_t *id, bool *dir)
{
	struct stat st;
	vd_node_t n;
	int r = wd_lookup(ctx, parent, name, &n, &st);

	if (!r) {
		*id = n;
		*dir = S_ISDIR(st.st_mode);
	}
	return r;
}

static int wd_rename(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, vd_node_t newparent, const char *newname,
		     unsigned int flags)
{
	struct webdav *s = wd_of(ctx);
	char from[4096], to[4096];
	struct wd_req q = {.method = "MOVE", .up_fd = -1};
	uint64_t sid, did;
	bool sdir, ddir;
	struct wd_node *n;
	int r;

	if (flags & ~(unsigned int)RENAME_NOREPLACE)
		return -EINVAL;
	if (parent == newparent && !strcmp(name, newname))
		return 0;
	r = find(ctx, parent, name, &sid, &sdir);
	if (r)
		return r;
	r = find(ctx, newparent, newname, &did, &ddir);
	if (r && r != -ENOENT)
		return r;
	if (!r) {
		if (flags & RENAME_NOREPLACE)
			return -EEXIST;
		if (sdir && !ddir)
			return -ENOTDIR;
		if (!sdir && ddir)
			return -EISDIR;
		if (ddir) {
			/* Overwrite: T deletes a whole tree: only if empty. */
			r = list_dir(s, did, true);
			if (r)
				return r;
			pthread_mutex_lock(&s->lock);
			n = node_get(s, did);
			r = n && n->kids ? -ENOTEMPTY : 0;
			pthread_mutex_unlock(&s->lock);
			if (r)
				return r;
		}
	}
	/* A folder into itself. */
	pthread_mutex_lock(&s->lock);
	for (n = node_get(s, newparent); n && sdir; n = node_get(s, n->parent))
		if (n->id == sid) {
			pthread_mutex_unlock(&s->lock);
			return -EINVAL;
		}
	pthread_mutex_unlock(&s->lock);
	r = child_path(s, parent, name, from, sizeof(from));
	if (!r)
		r = child_path(s, newparent, newname, to, sizeof(to));
	if (r)
		return r;
	q.path = from;
	q.dir = q.dest_dir = sdir;
	q.dest = to;
	q.overwrite = !(flags & RENAME_NOREPLACE);
	r = simple(s, &q);
	if (!r)
		r = http_errno(q.status);
	if (r)
		return r;
	pthread_mutex_lock(&s->lock);
	n = child_get(s, newparent, newname);
	if (n)
		detach(s, n);
	n = node_get(s, sid);
	if (n && n->in_tree && node_get(s, newparent)) {
		struct wd_node *p = node_get(s, n->parent);
		char *nn = strdup(newname);
		if (nn) {
			struct wd_node **pp;
			/* unlink from the old name and folder list */
			for (pp = &s->by_name[hash_name(s, n->parent, n->name)];
			     *pp; pp = &(*pp)->name_next)
				if (*pp == n) {
					*pp = n->name_next;
					break;
				}
			if (p) {
				if (n->sib_prev)
					n->sib_prev->sib_next = n->sib_next;
				else if (p->kids == n)
					p->kids = n->sib_next;
				if (n->sib_next)
					n->sib_next->sib_prev = n->sib_prev;
			}
			free(n->name);
			n->name = nn;
			attach(s, n, newparent);
		} else {
			detach(s, n);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- Callbacks: data ------------------------------------------------------
 */

static int tmp_open(struct webdav *s)
{
	char tmpl[4096];
	int fd = open(s->tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	snprintf(tmpl, sizeof(tmpl), "%s/vdrive-webdav.XXXXXX", s->tmpdir);
	fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(tmpl);
	return fd;
}

/* The node's writer, made if needed (refs + 1). Under s->lock. */
static int wr_get(struct webdav *s, struct wd_node *n, struct wd_wr **out)
{
	struct wd_wr *w = n->wr;

	if (!w) {
		int fd = tmp_open(s);
		if (fd < 0)
			return fd;
		w = calloc(1, sizeof(*w));
		if (!w) {
			close(fd);
			return -ENOMEM;
		}
		w->fd = fd;
		pthread_mutex_init(&w->lock, NULL);
		n->wr = w;
	}
	w->refs++;
	*out = w;
	return 0;
}

/* Drop one reference; the last one frees the writer. */
static void wr_put(struct webdav *s, uint64_t id)
{
	struct wd_node *n;
	struct wd_wr *w = NULL;

	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	if (n && n->wr && --n->wr->refs == 0) {
		w = n->wr;
		n->wr = NULL;
		n->stamp = 0; /* the server's view from now on */
		if (!n->in_tree && !n->kref)
			node_free(s, n);
	}
	pthread_mutex_unlock(&s->lock);
	if (w) {
		close(w->fd);
		pthread_mutex_destroy(&w->lock);
		free(w);
	}
}

/* Fetch the whole body into the writer's file. Under w->lock. */
static int wr_fill(struct webdav *s, uint64_t id, struct wd_wr *w)
{
	char path[4096];
	struct wd_req q = {.method = "GET", .up_fd = -1};
	struct wd_node *n;
	int r;

	if (w->filled)
		return 0;
	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	r = n ? node_path(s, n, path, sizeof(path)) : -ESTALE;
	pthread_mutex_unlock(&s->lock);
	if (r)
		return r;
	if (ftruncate(w->fd, 0) != 0)
		return -errno;
	q.path = path;
	q.out_fd = w->fd;
	r = wd_do(s, &q);
	if (!r)
		r = http_errno(q.status);
	if (!r)
		w->filled = true;
	return r;
}

/* PUT the writer's file if it changed. Under w->lock. */
static int wr_upload(struct webdav *s, uint64_t id, struct wd_wr *w)
{
	char path[4096];
	struct wd_req q = {.method = "PUT"};
	struct wd_list l;
	struct wd_node *n;
	struct stat st;
	double t;
	int r;

	if (!w->dirty)
		return 0;
	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	r = n ? node_path(s, n, path, sizeof(path)) : -ESTALE;
	pthread_mutex_unlock(&s->lock);
	if (r == -ENOENT) {
		w->dirty = false; /* deleted meanwhile: nowhere to put it */
		return 0;
	}
	if (r)
		return r;
	if (fstat(w->fd, &st) != 0)
		return -errno;
	q.path = path;
	q.up_fd = w->fd;
	q.up_size = st.st_size;
	r = simple(s, &q);
	if (!r)
		r = http_errno(q.status);
	if (r) {
		pthread_mutex_lock(&s->lock);
		if (s->drive)
			vd_log(s->drive, "webdav: upload of /%s failed: %s",
			       path, strerror(-r));
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	w->dirty = false;
	/* Learn the new ETag, so our own write is not taken for someone
	 * else's change (that would drop the page cache). */
	t = now_mono();
	if (!q.etag[0] && propfind(s, path, false, "0", &l, NULL) == 0) {
		if (l.n && l.v[0].etag[0])
			memcpy(q.etag, l.v[0].etag, WD_ETAG);
		list_free(&l);
	}
	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	if (n) {
		n->size = st.st_size;
		n->mtime = st.st_mtime;
		memcpy(n->etag, q.etag, WD_ETAG);
		memcpy(n->kcache_etag, q.etag, WD_ETAG);
		n->stamp = q.etag[0] ? t : 0;
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int fh_new(uint64_t node, bool writer, struct vd_file *fi)
{
	struct wd_fh *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->node = node;
	f->writer = writer;
	f->window = WD_WINDOW0;
	pthread_mutex_init(&f->lock, NULL);
	fi->fh = (uint64_t)(uintptr_t)f;
	return 0;
}

static void fh_free(struct wd_fh *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->nents; i++)
		free(f->ents[i].name);
	free(f->ents);
	free(f->buf);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* Open node for writing (writer reference taken), truncating it. */
static int open_writer(struct webdav *s, uint64_t id, bool trunc)
{
	struct wd_node *n;
	struct wd_wr *w;
	int r;

	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	r = n ? wr_get(s, n, &w) : -ESTALE;
	pthread_mutex_unlock(&s->lock);
	if (r || !trunc)
		return r;
	pthread_mutex_lock(&w->lock);
	if (ftruncate(w->fd, 0) != 0)
		r = -errno;
	w->filled = true;
	w->dirty = true;
	pthread_mutex_unlock(&w->lock);
	if (r)
		wr_put(s, id);
	return r;
}

static int wd_open(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi)
{
	struct webdav *s = wd_of(ctx);
	bool writer = (fi->flags & O_ACCMODE) != O_RDONLY;
	struct wd_node *n;
	int r;

	r = revalidate(s, node, &n);
	if (r)
		return r;
	if (n->dir) {
		pthread_mutex_unlock(&s->lock);
		return -EISDIR;
	}
	/* Pages cached from another version of the body are stale. */
	if (!n->wr && strcmp(n->kcache_etag, n->etag)) {
		fi->keep_cache = 0;
		memcpy(n->kcache_etag, n->etag, WD_ETAG);
	}
	pthread_mutex_unlock(&s->lock);
	if (writer) {
		r = open_writer(s, node, fi->flags & O_TRUNC);
		if (r)
			return r;
	}
	r = fh_new(node, writer, fi);
	if (r && writer)
		wr_put(s, node);
	return r;
}

/* O_CREAT without O_EXCL of a name made on the server since our cache
 * said it was free: open what is there, as a local file system would. */
static int create_existing(const struct vd_ctx *ctx, vd_node_t parent,
			   const char *name, struct vd_file *fi,
			   vd_node_t *node, struct stat *st)
{
	struct webdav *s = wd_of(ctx);
	struct wd_node *p, *n;
	int r;

	pthread_mutex_lock(&s->lock);
	p = node_get(s, parent);
	if (p)
		p->listed = 0;
	n = p ? child_get(s, parent, name) : NULL;
	if (n)
		n->stamp = 0;
	pthread_mutex_unlock(&s->lock);
	r = wd_lookup(ctx, parent, name, node, st);
	if (r)
		return r;
	if (S_ISDIR(st->st_mode))
		return -EISDIR;
	return wd_open(ctx, *node, fi);
}

static int wd_create(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, struct vd_file *fi,
		     vd_node_t *node, struct stat *st)
{
	struct webdav *s = wd_of(ctx);
	char path[4096];
	struct wd_req q = {.method = "PUT", .if_none_match = true};
	struct wd_entry e = {.mtime = time(NULL)};
	struct wd_node *n;
	uint64_t id;
	int r;

	if (!S_ISREG(mode))
		return -EPERM;
	r = child_path(s, parent, name, path, sizeof(path));
	if (r)
		return r;
	q.path = path;
	q.up_fd = -1;
	r = simple(s, &q);
	if (!r)
		r = q.status == 405 ? -EISDIR : http_errno(q.status);
	if (r == -EEXIST && !(fi->flags & O_EXCL))
		return create_existing(ctx, parent, name, fi, node, st);
	if (r)
		return r;
	pthread_mutex_lock(&s->lock);
	n = node_get(s, parent) ? upsert(s, parent, name, &e, 0) : NULL;
	if (!n) {
		pthread_mutex_unlock(&s->lock);
		return -ESTALE;
	}
	n->size = 0;
	memcpy(n->etag, q.etag, WD_ETAG);
	memcpy(n->kcache_etag, q.etag, WD_ETAG);
	n->kref = true;
	id = n->id;
	pthread_mutex_unlock(&s->lock);
	r = open_writer(s, id, true);
	if (r)
		return r;
	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	n->wr->dirty = false; /* the empty body is there already */
	*node = id;
	fill_stat(s, n, st);
	pthread_mutex_unlock(&s->lock);
	r = fh_new(id, true, fi);
	if (r)
		wr_put(s, id);
	return r;
}

static int wd_mknod(const struct vd_ctx *ctx, vd_node_t parent,
		    const char *name, mode_t mode, dev_t rdev, vd_node_t *node,
		    struct stat *st)
{
	struct vd_file fi = {.flags = O_WRONLY};
	int r;

	(void)rdev;
	if (!S_ISREG(mode))
		return -EPERM; /* no fifos, sockets or devices over HTTP */
	r = wd_create(ctx, parent, name, mode, &fi, node, st);
	if (!r) {
		struct wd_fh *f = (struct wd_fh *)(uintptr_t)fi.fh;
		wr_put(wd_of(ctx), f->node);
		fh_free(f);
	}
	return r;
}

/* The node's writer with a reference taken (wr_put() it), or NULL. A
 * read-only open may race with the last writer's release. */
static struct wd_wr *writer_of(struct webdav *s, uint64_t id)
{
	struct wd_node *n;
	struct wd_wr *w;

	pthread_mutex_lock(&s->lock);
	n = node_get(s, id);
	w = n ? n->wr : NULL;
	if (w)
		w->refs++;
	pthread_mutex_unlock(&s->lock);
	return w;
}

/* Ranged GET of [off, off+len) into f's window. Under f->lock. */
static int fetch(struct webdav *s, struct wd_fh *f, const char *path, off_t off,
		 size_t len)
{
	struct wd_req q = {.method = "GET", .up_fd = -1, .out_fd = -1};
	int r;

	q.path = path;
	q.roff = off;
	q.rlen = len;
	q.max = len;
	q.buf = f->buf;
	q.cap = f->bcap;
	r = wd_do(s, &q);
	f->buf = q.buf;
	f->bcap = q.cap;
	f->boff = off;
	f->blen = 0;
	if (r)
		return r;
	if (q.status == 416)
		return 0; /* past the end */
	r = http_errno(q.status);
	if (!r)
		f->blen = q.len;
	return r;
}

static int wd_read(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
		   char *buf, size_t size, off_t off)
{
	struct webdav *s = wd_of(ctx);
	struct wd_fh *f = (struct wd_fh *)(uintptr_t)fi->fh;
	struct wd_wr *w = writer_of(s, node);
	char path[4096], etag[WD_ETAG];
	struct wd_node *n;
	off_t fsize;
	int r = 0;

	if (w) {
		ssize_t got = -1;
		bool filled;

		pthread_mutex_lock(&w->lock);
		filled = w->filled;
		if (filled)
			got = pread(w->fd, buf, size, off);
		r = got < 0 ? -errno : (int)got;
		pthread_mutex_unlock(&w->lock);
		wr_put(s, node);
		if (filled)
			return r;
		r = 0;
	}
	pthread_mutex_lock(&s->lock);
	n = node_get(s, node);
	r = n ? node_path(s, n, path, sizeof(path)) : -ESTALE;
	if (!r) {
		memcpy(etag, n->etag, WD_ETAG);
		fsize = n->size;
	}
	pthread_mutex_unlock(&s->lock);
	if (r)
		return r;
	if (off >= fsize)
		return 0;
	pthread_mutex_lock(&f->lock);
	if (strcmp(etag, f->etag)) {
		f->blen = 0; /* another version of the body */
		memcpy(f->etag, etag, WD_ETAG);
	}
	if (!(off >= f->boff &&
	      off + (off_t)size <= f->boff + (off_t)f->blen)) {
		size_t want = size;

		/* Grow the window while reads are sequential. */
		if (off == f->next ||
		    (off >= f->boff && off <= f->boff + (off_t)f->blen)) {
			if (f->window < s->readahead)
				f->window *= 2;
		} else {
			f->window = WD_WINDOW0;
		}
		if (f->window > s->readahead)
			f->window = s->readahead;
		if (want < f->window)
			want = f->window;
		if ((off_t)want > fsize - off)
			want = (size_t)(fsize - off);
		r = fetch(s, f, path, off, want);
	}
	if (!r) {
		size_t have = 0;
		if (off >= f->boff && off < f->boff + (off_t)f->blen)
			have = (size_t)(f->boff + (off_t)f->blen - off);
		if (have > size)
			have = size;
		if (have)
			memcpy(buf, f->buf + (off - f->boff), have);
		f->next = off + (off_t)have;
		r = (int)have;
	}
	pthread_mutex_unlock(&f->lock);
	if (r == -ENOENT) {
		pthread_mutex_lock(&s->lock);
		n = node_get(s, node);
		if (n && n->in_tree) {
			uint64_t p = n->parent;
			char name[256];
			snprintf(name, sizeof(name), "%s", n->name);
			gone(s, p, name);
		}
		pthread_mutex_unlock(&s->lock);
	}
	return r;
}

static int wd_write(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, const char *buf, size_t size, off_t off)
{
	struct webdav *s = wd_of(ctx);
	struct wd_wr *w = writer_of(s, node);
	ssize_t done;
	int r;

	(void)fi;
	if (!w)
		return -EBADF;
	pthread_mutex_lock(&w->lock);
	r = wr_fill(s, node, w);
	if (!r) {
		done = pwrite(w->fd, buf, size, off);
		if (done >= 0)
			w->dirty = true;
		r = done < 0 ? -errno : (int)done;
	}
	pthread_mutex_unlock(&w->lock);
	wr_put(s, node);
	return r;
}

/* Upload node's changes, if it has a writer. */
static int sync_node(struct webdav *s, uint64_t node)
{
	struct wd_wr *w = writer_of(s, node);
	int r;

	if (!w)
		return 0;
	pthread_mutex_lock(&w->lock);
	r = wr_upload(s, node, w);
	pthread_mutex_unlock(&w->lock);
	wr_put(s, node);
	return r;
}

static int wd_flush(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi)
{
	struct wd_fh *f = (struct wd_fh *)(uintptr_t)fi->fh;

	return f && f->writer ? sync_node(wd_of(ctx), node) : 0;
}

static int wd_fsync(const struct vd_ctx *ctx, vd_node_t node, int datasync,
		    struct vd_file *fi)
{
	(void)datasync;
	(void)fi;
	return sync_node(wd_of(ctx), node);
}

static int wd_release(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi)
{
	struct webdav *s = wd_of(ctx);
	struct wd_fh *f = (struct wd_fh *)(uintptr_t)fi->fh;
	int r = 0;

	if (f && f->writer) {
		r = sync_node(s, node);
		wr_put(s, node);
	}
	fh_free(f);
	return r;
}

static int wd_setattr(const struct vd_ctx *ctx, vd_node_t node, struct stat *st,
		      int to_set, struct vd_file *fi)
{
	struct webdav *s = wd_of(ctx);
	struct wd_node *n;
	struct wd_wr *w;
	bool alone;
	int r;

	(void)fi;
	r = revalidate(s, node, &n);
	if (r)
		return r;
	/* chmod is taken and changes nothing (as times): tools that copy
	 * modes (cp -a, tar, rsync) work; a change of owner is refused. */
	if (((to_set & VD_SET_UID) && st->st_uid != s->uid) ||
	    ((to_set & VD_SET_GID) && st->st_gid != s->gid)) {
		pthread_mutex_unlock(&s->lock);
		return -EPERM; /* WebDAV keeps no owners */
	}
	if ((to_set & VD_SET_SIZE) && n->dir) {
		pthread_mutex_unlock(&s->lock);
		return -EISDIR;
	}
	pthread_mutex_unlock(&s->lock);
	if (to_set & VD_SET_SIZE) {
		/* A truncate by name gets a writer of its own for the time. */
		r = open_writer(s, node, false);
		if (r)
			return r;
		w = writer_of(s, node);
		pthread_mutex_lock(&s->lock);
		alone = w->refs == 2; /* ours, twice */
		pthread_mutex_unlock(&s->lock);
		pthread_mutex_lock(&w->lock);
		if (st->st_size == 0) {
			w->filled = true;
		} else {
			r = wr_fill(s, node, w);
		}
		if (!r && ftruncate(w->fd, st->st_size) != 0)
			r = -errno;
		if (!r) {
			w->dirty = true;
			if (alone)
				r = wr_upload(s, node, w);
		}
		pthread_mutex_unlock(&w->lock);
		wr_put(s, node);
		wr_put(s, node);
		if (r)
			return r;
	}
	/* Times are the server's: utimensat succeeds and changes nothing. */
	pthread_mutex_lock(&s->lock);
	n = node_get(s, node);
	if (!n) {
		pthread_mutex_unlock(&s->lock);
		return -ESTALE;
	}
	fill_stat(s, n, st);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int wd_opendir(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi)
{
	(void)ctx;
	return fh_new(node, false, fi);
}

static int wd_readdir(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi, off_t off, vd_fill_fn fill, void *buf)
{
	struct webdav *s = wd_of(ctx);
	struct wd_fh *f = (struct wd_fh *)(uintptr_t)fi->fh;
	struct wd_node *n, *k;
	struct stat st;
	int r = 0;

	if (off == 0 || !f->ents) {
		r = list_dir(s, node, false);
		if (r)
			return r;
		pthread_mutex_lock(&s->lock);
		n = node_get(s, node);
		for (size_t i = 0; i < f->nents; i++)
			free(f->ents[i].name);
		f->nents = 0;
		for (k = n ? n->kids : NULL; k; k = k->sib_next) {
			struct wd_dent *e;
			if (f->nents % 64 == 0) {
				e = realloc(f->ents,
					    (f->nents + 64) * sizeof(*e));
				if (!e) {
					r = -ENOMEM;
					break;
				}
				f->ents = e;
			}
			e = &f->ents[f->nents];
			e->name = strdup(k->name);
			if (!e->name) {
				r = -ENOMEM;
				break;
			}
			e->node = k->id;
			fill_stat(s, k, &e->st);
			f->nents++;
		}
		if (!f->ents)
			f->ents = calloc(1, sizeof(*f->ents));
		pthread_mutex_unlock(&s->lock);
		if (r)
			return r;
	}
	/* glibc hides entries whose inode number is 0 */
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFDIR;
	st.st_ino = node;
	if (off < 1 && fill(buf, ".", 0, &st, 1))
		return 0;
	pthread_mutex_lock(&s->lock);
	n = node_get(s, node);
	st.st_ino = n && n->parent ? n->parent : node;
	pthread_mutex_unlock(&s->lock);
	if (off < 2 && fill(buf, "..", 0, &st, 2))
		return 0;
	for (size_t i = off < 2 ? 0 : (size_t)off - 2; i < f->nents; i++) {
		if (fill(buf, f->ents[i].name, f->ents[i].node, &f->ents[i].st,
			 (off_t)i + 3))
			break;
		if (fi->readdirplus) {
			pthread_mutex_lock(&s->lock);
			k = node_get(s, f->ents[i].node);
			if (k)
				k->kref = true;
			pthread_mutex_unlock(&s->lock);
		}
	}
	return 0;
}

static int wd_releasedir(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi)
{
	(void)ctx;
	(void)node;
	fh_free((struct wd_fh *)(uintptr_t)fi->fh);
	return 0;
}

static int wd_symlink(const struct vd_ctx *ctx, const char *target,
		      vd_node_t parent, const char *name, vd_node_t *node,
		      struct stat *st)
{
	(void)ctx;
	(void)target;
	(void)parent;
	(void)name;
	(void)node;
	(void)st;
	return -EPERM; /* WebDAV has no links */
}

static int wd_statfs(const struct vd_ctx *ctx, vd_node_t node,
		     struct statvfs *st)
{
	(void)ctx;
	(void)node;
	memset(st, 0, sizeof(*st));
	st->f_bsize = st->f_frsize = 65536;
	st->f_namemax = 255;
	return 0;
}

/* ---- Setting up -------------------------------------------------------- */

static void wd_destroy(void *data)
{
	struct webdav *s = data;

	if (!s)
		return;
	if (s->inval_started) {
		pthread_mutex_lock(&s->inval_lock);
		s->stopping = true;
		pthread_cond_signal(&s->inval_cond);
		pthread_mutex_unlock(&s->inval_lock);
		pthread_join(s->inval_thread, NULL);
	}
	while (s->inval_head) {
		struct wd_inval *v = s->inval_head;
		s->inval_head = v->next;
		free(v->name);
		free(v);
	}
	for (size_t b = 0; s->by_id && b < s->nbuckets; b++) {
		for (struct wd_node *n = s->by_id[b], *nx; n; n = nx) {
			nx = n->id_next;
			if (n->wr) {
				close(n->wr->fd);
				pthread_mutex_destroy(&n->wr->lock);
				free(n->wr);
			}
			free(n->name);
			free(n);
		}
	}
	free(s->by_id);
	free(s->by_name);
	for (int i = 0; i < s->npool; i++)
		curl_easy_cleanup(s->pool[i]);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->pool_lock);
	pthread_mutex_destroy(&s->inval_lock);
	pthread_cond_destroy(&s->inval_cond);
	free(s->origin);
	free(s->req_origin);
	free(s->base);
	free(s->base_dec);
	free(s->url_shown);
	free(s->user);
	if (s->password) {
		explicit_bzero(s->password, strlen(s->password));
		free(s->password);
	}
	free(s->netrc);
	free(s->cafile);
	free(s->tmpdir);
	free(s);
}

static const struct vd_ops wd_ops = {
	.flags = VD_OPS_THREAD_SAFE,
	.destroy = wd_destroy,
	.lookup = wd_lookup,
	.forget = wd_forget,
	.getattr = wd_getattr,
	.setattr = wd_setattr,
	.mknod = wd_mknod,
	.mkdir = wd_mkdir,
	.unlink = wd_unlink,
	.rmdir = wd_rmdir,
	.symlink = wd_symlink,
	.rename = wd_rename,
	.open = wd_open,
	.read = wd_read,
	.write = wd_write,
	.flush = wd_flush,
	.release = wd_release,
	.fsync = wd_fsync,
	.opendir = wd_opendir,
	.readdir = wd_readdir,
	.releasedir = wd_releasedir,
	.statfs = wd_statfs,
	.create = wd_create,
};

/* One "key=value" (or "key") of the options after '#'. */
static int set_option(struct webdav *s, char *kv, char *err, size_t errlen)
{
	char *v = strchr(kv, '=');
	char *end;

	if (v)
		*v++ = '\0';
	if (!strcmp(kv, "cache") && v) {
		s->cache = strtod(v, &end);
		if (*end || s->cache < 0)
			goto bad;
	} else if (!strcmp(kv, "timeout") && v) {
		s->timeout = strtol(v, &end, 10);
		if (*end || s->timeout < 1)
			goto bad;
	} else if (!strcmp(kv, "readahead") && v) {
		unsigned long long ra = strtoull(v, &end, 10);
		if (*end || ra < WD_WINDOW0 || ra > (256ull << 20))
			goto bad;
		s->readahead = (size_t)ra;
	} else if (!strcmp(kv, "netrc") && v && *v) {
		free(s->netrc);
		s->netrc = strdup(v);
	} else if (!strcmp(kv, "cafile") && v && *v) {
		free(s->cafile);
		s->cafile = strdup(v);
	} else if (!strcmp(kv, "tmpdir") && v && *v) {
		free(s->tmpdir);
		s->tmpdir = strdup(v);
	} else if (!strcmp(kv, "auth") && v) {
		if (!strcmp(v, "basic"))
			s->auth = CURLAUTH_BASIC;
		else if (!strcmp(v, "digest"))
			s->auth = CURLAUTH_DIGEST;
		else if (!strcmp(v, "any"))
			s->auth = CURLAUTH_ANY;
		else
			goto bad;
	} else if (!strcmp(kv, "insecure") && !v) {
		s->insecure = true;
	} else {
		snprintf(err, errlen,
			 "webdav: unknown option '%s' (options after '#': "
			 "cache=SEC, timeout=SEC, readahead=BYTES, "
			 "netrc=FILE, cafile=FILE, tmpdir=DIR, "
			 "auth=basic|digest|any, insecure)",
			 kv);
		return -EINVAL;
	}
	return 0;
bad:
	snprintf(err, errlen, "webdav: bad value '%s' for option %s", v, kv);
	return -EINVAL;
}

static int set_options(struct webdav *s, const char *list, char *err,
		       size_t errlen)
{
	char *copy = strdup(list), *save = NULL;
	int r = 0;

	if (!copy)
		return -ENOMEM;
	for (char *kv = strtok_r(copy, ",", &save); kv && !r;
	     kv = strtok_r(NULL, ",", &save))
		r = set_option(s, kv, err, errlen);
	free(copy);
	return r;
}

/* Split the URL into origin and base path (curl's parser), refusing a
 * password in it: the URL shows in `ps` and `vdrive list`. */
static int parse_url(struct webdav *s, const char *url, char *err,
		     size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL,
	     *user = NULL, *pass = NULL, *query = NULL;
	size_t l;
	int r = -EINVAL;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(err, errlen,
			 "webdav: bad URL '%s' (want http[s]://HOST[:PORT]/"
			 "PATH)",
			 url);
		goto out;
	}
	if (strcmp(scheme, "http") && strcmp(scheme, "https")) {
		snprintf(err, errlen,
			 "webdav: bad URL scheme '%s' (http or https)", scheme);
		goto out;
	}
	curl_url_get(u, CURLUPART_PASSWORD, &pass, 0);
	if (pass) {
		snprintf(err, errlen,
			 "webdav: refusing a password in the URL (it would "
			 "show in ps and vdrive list): put it in a netrc file "
			 "(netrc=FILE, $VDRIVE_WEBDAV_NETRC or ~/.netrc) or "
			 "$VDRIVE_WEBDAV_PASSWORD");
		goto out;
	}
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	if (query) {
		snprintf(err, errlen, "webdav: a folder URL takes no query");
		goto out;
	}
	curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE);
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	if (user && !s->user)
		s->user = strdup(user);
	l = strlen(host) + strlen(scheme) + (port ? strlen(port) : 0) + 8;
	s->origin = malloc(l);
	if (s->origin)
		snprintf(s->origin, l, "%s://%s%s%s", scheme, host,
			 port ? ":" : "", port ? port : "");
	if (s->user && !s->password) {
		char eu[512] = "";
		size_t rl;

		pct_encode(eu, sizeof(eu), s->user);
		rl = l + strlen(eu) + 1;
		s->req_origin = malloc(rl);
		if (s->req_origin)
			snprintf(s->req_origin, rl, "%s://%s@%s%s%s", scheme,
				 eu, host, port ? ":" : "", port ? port : "");
	}
	l = strlen(path ? path : "/");
	s->base = malloc(l + 2);
	if (s->base) {
		snprintf(s->base, l + 2, "%s", path ? path : "/");
		if (!l || s->base[l - 1] != '/') {
			strcat(s->base, "/");
			s->noslash = true;
		}
		s->base_dec = pct_decode(strdup(s->base) ?: strdup(""));
	}
	r = s->origin && s->base && s->base_dec ? 0 : -ENOMEM;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(user);
	curl_free(pass);
	curl_free(query);
	curl_url_cleanup(u);
	return r;
}

/* libcurl's global setup: once, before any thread uses it. */
static void global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Is the URL, as given without a final '/', a file? For a clear error. */
static bool is_file(struct webdav *s)
{
	size_t bl = strlen(s->base);
	struct wd_list l;
	bool file = false;

	if (!s->noslash || bl < 2)
		return false;
	s->base[bl - 1] = '\0';
	if (propfind(s, "", false, "0", &l, NULL) == 0) {
		file = l.n && !l.v[0].dir;
		list_free(&l);
	}
	s->base[bl - 1] = '/';
	return file;
}

static int wd_open_source(const char *arg, const struct vd_ops **ops,
			  void **data, char *err, size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct webdav *s;
	char *url, *hash;
	const char *env;
	struct wd_list l;
	long status = 0;
	int r;

	pthread_once(&once, global_init);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->pool_lock, NULL);
	pthread_mutex_init(&s->inval_lock, NULL);
	pthread_cond_init(&s->inval_cond, NULL);
	s->cache = 1;
	s->timeout = 10;
	s->readahead = 8u << 20;
	s->auth = CURLAUTH_BASIC;
	s->uid = getuid();
	s->gid = getgid();
	s->next_id = VD_ROOT;
	s->nbuckets = 1024;
	s->by_id = calloc(s->nbuckets, sizeof(*s->by_id));
	s->by_name = calloc(s->nbuckets, sizeof(*s->by_name));
	env = getenv("TMPDIR");
	s->tmpdir = strdup(env && *env ? env : "/var/tmp");
	env = getenv("VDRIVE_WEBDAV_NETRC");
	if (env && *env)
		s->netrc = strdup(env);
	env = getenv("VDRIVE_WEBDAV_USER");
	if (env && *env)
		s->user = strdup(env);
	env = getenv("VDRIVE_WEBDAV_PASSWORD");
	if (env && *env)
		s->password = strdup(env);
	url = strdup(arg);
	if (!url || !s->by_id || !s->by_name || !s->tmpdir) {
		free(url);
		wd_destroy(s);
		return -ENOMEM;
	}
	r = 0;
	env = getenv("VDRIVE_WEBDAV_OPTIONS");
	if (env && *env)
		r = set_options(s, env, err, errlen);
	hash = strchr(url, '#');
	if (hash) {
		*hash = '\0';
		if (!r)
			r = set_options(s, hash + 1, err, errlen);
	}
	if (!r && !*url) {
		snprintf(err, errlen,
			 "webdav: need a URL: webdav:https://HOST/PATH/"
			 "[#OPTIONS]");
		r = -EINVAL;
	}
	if (!r)
		r = parse_url(s, url, err, errlen);
	free(url);
	if (!r && s->netrc && access(s->netrc, R_OK) != 0) {
		r = -errno;
		snprintf(err, errlen, "webdav: netrc file %s: %s", s->netrc,
			 strerror(errno));
	}
	if (!r && access(s->tmpdir, W_OK) != 0) {
		r = -errno;
		snprintf(err, errlen, "webdav: tmpdir %s: %s", s->tmpdir,
			 strerror(errno));
	}
	if (r)
		goto fail;
	/* The root node, and one request proving it is a WebDAV folder. */
	if (!node_new(s, 0, "", true)) {
		r = -ENOMEM;
		goto fail;
	}
	{
		struct wd_req q = {.method = "PROPFIND",
				   .path = "",
				   .dir = true,
				   .depth = "0",
				   .body = propfind_body,
				   .up_fd = -1,
				   .out_fd = -1,
				   .max = WD_MAX_XML};
		r = wd_do(s, &q);
		status = q.status;
		if (r) {
			snprintf(err, errlen, "webdav: cannot reach %s%s: %s",
				 s->origin, s->base, q.err);
		} else if (status == 401) {
			r = -EACCES;
			snprintf(err, errlen,
				 "webdav: %s%s: authentication failed (HTTP "
				 "401): check the credentials (%s)",
				 s->origin, s->base,
				 s->password ? "$VDRIVE_WEBDAV_PASSWORD"
				 : s->netrc  ? s->netrc
					     : "~/.netrc");
		} else if (status == 403) {
			r = -EACCES;
			snprintf(err, errlen,
				 "webdav: %s%s: access denied (HTTP 403)",
				 s->origin, s->base);
		} else if (is_file(s)) {
			r = -ENOTDIR;
			snprintf(err, errlen,
				 "webdav: %s%.*s is a file, not a folder",
				 s->origin, (int)strlen(s->base) - 1, s->base);
		} else if (status == 404) {
			r = -ENOENT;
			snprintf(err, errlen,
				 "webdav: %s%s: no such folder (HTTP 404)",
				 s->origin, s->base);
		} else if (status != 207) {
			r = -EPROTO;
			snprintf(err, errlen,
				 "webdav: %s%s is not a WebDAV folder "
				 "(PROPFIND answered HTTP %ld)",
				 s->origin, s->base, status);
		} else {
			memset(&l, 0, sizeof(l));
			r = parse_multistatus(s, q.buf, q.len, &l);
			if (!r && (l.n == 0 || l.v[0].rel[0]))
				r = -EPROTO;
			if (r) {
				snprintf(err, errlen,
					 "webdav: %s%s: the server's PROPFIND "
					 "answer is not a WebDAV multistatus "
					 "about this folder",
					 s->origin, s->base);
			} else if (!l.v[0].dir) {
				r = -ENOTDIR;
				snprintf(err, errlen,
					 "webdav: %s%s is a file, not a "
					 "folder",
					 s->origin, s->base);
			} else {
				struct wd_node *root = node_get(s, VD_ROOT);
				root->mtime = l.v[0].mtime;
				root->stamp = now_mono();
			}
			list_free(&l);
		}
		free(q.buf);
	}
	if (r)
		goto fail;
	if (pthread_create(&s->inval_thread, NULL, inval_main, s) != 0) {
		r = -EAGAIN;
		snprintf(err, errlen, "webdav: cannot start a thread");
		goto fail;
	}
	s->inval_started = true;
	*ops = &wd_ops;
	*data = s;
	return 0;
fail:
	wd_destroy(s);
	return r;
}

const struct vd_source vd_source_webdav = {
	.kind = "webdav",
	.usage = "webdav:URL[#OPTIONS]",
	.help = "a folder on a WebDAV server (http/https; options after '#': "
		"cache=SEC, timeout=SEC, netrc=FILE, ...; docs/sources.md)",
	.open = wd_open_source,
};
