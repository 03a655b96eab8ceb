/*
 * mem.c - the mem: source, a RAM drive with POSIX semantics.
 *
 * The reference source: it uses only vdrive.h, as a third-party source
 * would, and implements every callback, so the library and the kernel
 * can be tested against a source whose behaviour is known.
 *
 * Layout:
 *  - A node is a struct mem_node; its handle is its address (the root's
 *    is VD_ROOT). A node lives while it has a name (nlink), an open, or a
 *    kernel reference (from hand-out until forget()).
 *  - Names live in one hash table keyed by (folder, name). Each folder
 *    also keeps its entries in an array ordered by a cookie that only
 *    grows, so a listing continues after the last cookie it saw even
 *    while entries come and go.
 *  - File data lives in pages of MEM_PAGE bytes found through a radix
 *    tree; absent pages are holes. A page holds as little as MEM_MIN_CAP
 *    bytes and grows by doubling, so small files stay small.
 *  - One drive-wide rwlock: lookups, stats, reads and listings share it;
 *    everything that changes something takes it alone.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "sources.h"

#define MEM_PAGE_SHIFT 16
#define MEM_PAGE ((off_t)1 << MEM_PAGE_SHIFT)
#define MEM_MIN_CAP 512
#define MEM_RADIX_SHIFT 8
#define MEM_RADIX (1 << MEM_RADIX_SHIFT)
#define MEM_MAX_SIZE ((off_t)1 << 44) /* 16 TiB, as ext4 */
#define MEM_NAME_MAX 255
#define MEM_LINK_MAX 4095
#define MEM_XATTR_NAME_MAX 255
#define MEM_XATTR_SIZE_MAX 65536
#define MEM_XATTR_TOTAL_MAX (4 * MEM_XATTR_SIZE_MAX) /* per node */
#define MEM_DIRENT_SIZE 20 /* st_size per folder entry, as tmpfs */
#define MEM_FIRST_COOKIE 3 /* 1 and 2 follow "." and ".." */
#define MEM_TRIM_BYTES ((uint64_t)32 << 20)

struct mem_page {
	uint32_t cap; /* bytes of data[]; beyond it the page reads as zeros */
	char data[];
};

struct mem_radix {
	void *slot[MEM_RADIX]; /* children, or pages at the lowest level */
};

struct mem_xattr {
	struct mem_xattr *next;
	size_t size;
	char *value;
	char name[];
};

struct mem_dent {
	struct mem_dent *hnext;
	struct mem_node *dir;
	struct mem_node *child;
	uint64_t hash;
	uint64_t cookie;
	char name[];
};

/* A folder's entries in cookie order; d == NULL marks a removed one. */
struct mem_dslot {
	uint64_t cookie;
	struct mem_dent *d;
};

struct mem_node {
	struct mem_node *prev, *next; /* every node, for destroy */
	uint64_t ino;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	nlink_t nlink;
	dev_t rdev;
	off_t size;
	struct timespec atime, mtime, ctime;
	uint32_t opens;	 /* opens and opendirs not yet released */
	bool referenced; /* the kernel may hold it: handed out, not forgotten */
	bool linkable;	 /* an O_TMPFILE file that link() may still name */
	struct mem_xattr *xattrs;
	union {
		struct {
			struct mem_radix *root;
			unsigned int height; /* levels below root; 0: empty */
			uint64_t alloc;	     /* bytes held by pages */
		} file;
		struct {
			struct mem_node *parent; /* NULL once removed */
			struct mem_dslot *slots;
			size_t n, cap, live;
			uint64_t next_cookie;
		} dir;
		char *target;
	} u;
};

struct mem {
	pthread_rwlock_t lock;
	struct mem_node *root;
	struct mem_node all; /* list head of every node */
	struct mem_dent **htab;
	size_t hmask, hcount;
	uint64_t next_ino;
	uint64_t nnodes;
	uint64_t limit; /* bytes of file data allowed */
	uint64_t used;	/* bytes of file data held */
	uint64_t freed; /* bytes of pages freed since the last malloc_trim */
};

/* The current time, for timestamps. */
static struct timespec now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

/* The drive behind a callback. */
static struct mem *mem_of(const struct vd_ctx *ctx)
{
	return ctx->data;
}

/*
 * Drop the write lock. Once enough pages were freed, hand the memory back
 * to the system: malloc keeps freed heap memory, and a RAM drive whose
 * files are deleted should shrink.
 */
static void wunlock(struct mem *m)
{
	bool trim = m->freed >= MEM_TRIM_BYTES;

	if (trim)
		m->freed = 0;
	pthread_rwlock_unlock(&m->lock);
	if (trim)
		malloc_trim(0);
}

/* Handles are node addresses, except VD_ROOT for the root. */
static struct mem_node *node_of(struct mem *m, vd_node_t h)
{
	return h == VD_ROOT ? m->root : (struct mem_node *)(uintptr_t)h;
}

/* The handle the library knows n by. */
static vd_node_t handle_of(struct mem *m, struct mem_node *n)
{
	return n == m->root ? VD_ROOT : (vd_node_t)(uintptr_t)n;
}

/* Record that n goes to the kernel, which will forget() it later. */
static vd_node_t hand_out(struct mem *m, struct mem_node *n)
{
	__atomic_store_n(&n->referenced, true, __ATOMIC_RELAXED);
	return handle_of(m, n);
}

/* n's full attributes; st_blocks counts the bytes its pages hold. */
static void fill_stat(const struct mem_node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = n->mode;
	st->st_nlink = n->nlink;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_rdev = n->rdev;
	st->st_blksize = 4096;
	st->st_atim = n->atime;
	st->st_mtim = n->mtime;
	st->st_ctim = n->ctime;
	if (S_ISREG(n->mode)) {
		st->st_size = n->size;
		st->st_blocks = (blkcnt_t)(n->u.file.alloc / 512);
	} else if (S_ISDIR(n->mode)) {
		st->st_size = (off_t)(n->u.dir.live + 2) * MEM_DIRENT_SIZE;
	} else if (S_ISLNK(n->mode)) {
		st->st_size = (off_t)strlen(n->u.target);
	}
}

/* Check a new entry name: 0, or the errno a file system gives. */
static int check_name(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || strchr(name, '/'))
		return -EINVAL;
	if (len > MEM_NAME_MAX)
		return -ENAMETOOLONG;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return -EEXIST;
	return 0;
}

/* ---- pages ---- */

/*
 * The slot holding page idx of f, creating the tree path to it when
 * create is set. NULL: absent (or out of memory when creating).
 */
static struct mem_page **page_slot(struct mem_node *f, uint64_t idx,
				   bool create)
{
	struct mem_radix *r;
	unsigned int h = f->u.file.height;

	while (h == 0 || idx >> (MEM_RADIX_SHIFT * h)) {
		if (!create)
			return NULL;
		r = calloc(1, sizeof(*r));
		if (!r)
			return NULL;
		r->slot[0] = f->u.file.root;
		f->u.file.root = r;
		f->u.file.height = ++h;
	}
	r = f->u.file.root;
	for (unsigned int level = h - 1; level > 0; level--) {
		void **s = &r->slot[(idx >> (MEM_RADIX_SHIFT * level)) &
				    (MEM_RADIX - 1)];
		if (!*s) {
			if (!create)
				return NULL;
			*s = calloc(1, sizeof(struct mem_radix));
			if (!*s)
				return NULL;
		}
		r = *s;
	}
	return (struct mem_page **)&r->slot[idx & (MEM_RADIX - 1)];
}

/* Page idx of f, or NULL for a hole. */
static struct mem_page *page_get(struct mem_node *f, uint64_t idx)
{
	struct mem_page **s = page_slot(f, idx, false);

	return s ? *s : NULL;
}

/*
 * Page idx of f with room for at least need bytes, allocated or grown
 * (zero-filled) as needed and charged to the drive. -ENOSPC over the
 * size limit.
 */
static int page_reserve(struct mem *m, struct mem_node *f, uint64_t idx,
			size_t need, struct mem_page **out)
{
	struct mem_page **s = page_slot(f, idx, true);
	struct mem_page *p;
	size_t cap = MEM_MIN_CAP, old;

	if (!s)
		return -ENOMEM;
	p = *s;
	old = p ? p->cap : 0;
	if (p && old >= need) {
		*out = p;
		return 0;
	}
	while (cap < need)
		cap *= 2;
	if (m->used + (cap - old) > m->limit)
		return -ENOSPC;
	p = realloc(p, sizeof(*p) + cap);
	if (!p)
		return -ENOMEM;
	memset(p->data + old, 0, cap - old);
	p->cap = (uint32_t)cap;
	*s = p;
	m->used += cap - old;
	f->u.file.alloc += cap - old;
	*out = p;
	return 0;
}

/*
 * Free the pages with index in [first, last] under r (covering indices
 * base.. at this level). Returns true when r is left empty.
 */
static bool radix_free(struct mem *m, struct mem_node *f, struct mem_radix *r,
		       unsigned int level, uint64_t base, uint64_t first,
		       uint64_t last)
{
	unsigned int shift = MEM_RADIX_SHIFT * level;
	bool empty = true;

	for (uint64_t i = 0; i < MEM_RADIX; i++) {
		uint64_t lo = base + (i << shift);
		uint64_t hi = lo + ((uint64_t)1 << shift) - 1;

		if (!r->slot[i])
			continue;
		if (hi < first || lo > last) {
			empty = false;
			continue;
		}
		if (level == 0) {
			struct mem_page *p = r->slot[i];
			m->used -= p->cap;
			m->freed += p->cap;
			f->u.file.alloc -= p->cap;
			free(p);
			r->slot[i] = NULL;
		} else if (radix_free(m, f, r->slot[i], level - 1, lo, first,
				      last)) {
			free(r->slot[i]);
			r->slot[i] = NULL;
		} else {
			empty = false;
		}
	}
	return empty;
}

/* Free f's pages with index in [first, last]. */
static void pages_free(struct mem *m, struct mem_node *f, uint64_t first,
		       uint64_t last)
{
	if (!f->u.file.root || first > last)
		return;
	if (radix_free(m, f, f->u.file.root, f->u.file.height - 1, 0, first,
		       last)) {
		free(f->u.file.root);
		f->u.file.root = NULL;
		f->u.file.height = 0;
	}
}

/* The first present page at index >= start under r, or UINT64_MAX. */
static uint64_t radix_next(struct mem_radix *r, unsigned int level,
			   uint64_t base, uint64_t start)
{
	unsigned int shift = MEM_RADIX_SHIFT * level;

	for (uint64_t i = 0; i < MEM_RADIX; i++) {
		uint64_t lo = base + (i << shift);
		uint64_t hi = lo + ((uint64_t)1 << shift) - 1;

		if (!r->slot[i] || hi < start)
			continue;
		if (level == 0)
			return lo;
		uint64_t got = radix_next(r->slot[i], level - 1, lo, start);
		if (got != UINT64_MAX)
			return got;
	}
	return UINT64_MAX;
}

/* f's first present page at index >= start, or UINT64_MAX. */
static uint64_t page_next(struct mem_node *f, uint64_t start)
{
	if (!f->u.file.root)
		return UINT64_MAX;
	return radix_next(f->u.file.root, f->u.file.height - 1, 0, start);
}

/* Copy [off, off+size) of f into buf; holes read as zeros. */
static void data_read(struct mem_node *f, char *buf, size_t size, off_t off)
{
	while (size) {
		size_t in = (size_t)(off & (MEM_PAGE - 1));
		size_t chunk = (size_t)MEM_PAGE - in, have = 0;
		struct mem_page *p =
			page_get(f, (uint64_t)off >> MEM_PAGE_SHIFT);

		if (chunk > size)
			chunk = size;
		if (p && p->cap > in)
			have = p->cap - in < chunk ? p->cap - in : chunk;
		if (have)
			memcpy(buf, p->data + in, have);
		memset(buf + have, 0, chunk - have);
		buf += chunk;
		off += chunk;
		size -= chunk;
	}
}

/*
 * Store buf at [off, off+size) of f, allocating pages. Returns the count
 * stored: short only when a page could not be had, -errno when nothing was
 * stored.
 */
static ssize_t data_write(struct mem *m, struct mem_node *f, const char *buf,
			  size_t size, off_t off)
{
	size_t done = 0;

	while (done < size) {
		size_t in = (size_t)(off & (MEM_PAGE - 1));
		size_t chunk = (size_t)MEM_PAGE - in;
		struct mem_page *p;
		int r;

		if (chunk > size - done)
			chunk = size - done;
		r = page_reserve(m, f, (uint64_t)off >> MEM_PAGE_SHIFT,
				 in + chunk, &p);
		if (r)
			return done ? (ssize_t)done : r;
		memcpy(p->data + in, buf + done, chunk);
		done += chunk;
		off += chunk;
	}
	return (ssize_t)done;
}

/* Zero [off, off+len) of f, a range within one page. */
static void zero_part(struct mem_node *f, off_t off, size_t len)
{
	struct mem_page *p = page_get(f, (uint64_t)off >> MEM_PAGE_SHIFT);
	size_t in = (size_t)(off & (MEM_PAGE - 1));

	if (p && p->cap > in)
		memset(p->data + in, 0, p->cap - in < len ? p->cap - in : len);
}

/* Make [off, off+len) of f a hole: zero partial pages, free whole ones. */
static void data_punch(struct mem *m, struct mem_node *f, off_t off, off_t len)
{
	off_t end = off + len;
	uint64_t first = (uint64_t)(off + MEM_PAGE - 1) >> MEM_PAGE_SHIFT;
	uint64_t stop = (uint64_t)end >> MEM_PAGE_SHIFT;

	if (first > stop) { /* inside one page */
		zero_part(f, off, (size_t)len);
		return;
	}
	if (off & (MEM_PAGE - 1))
		zero_part(f, off,
			  (size_t)(((off_t)first << MEM_PAGE_SHIFT) - off));
	if (end & (MEM_PAGE - 1))
		zero_part(f, (off_t)stop << MEM_PAGE_SHIFT,
			  (size_t)(end & (MEM_PAGE - 1)));
	if (first < stop)
		pages_free(m, f, first, stop - 1);
}

/* Set f's size, dropping data beyond a smaller one. */
static void data_truncate(struct mem *m, struct mem_node *f, off_t size)
{
	if (size < f->size) {
		/* Bytes past the end stay zero: extending must read zeros. */
		off_t tail = (size | (MEM_PAGE - 1)) + 1;
		if (size & (MEM_PAGE - 1))
			data_punch(m, f, size, tail - size);
		pages_free(m, f,
			   (uint64_t)(size + MEM_PAGE - 1) >> MEM_PAGE_SHIFT,
			   UINT64_MAX);
	}
	f->size = size;
}

/* ---- names ---- */

/* FNV-1a of name, seeded with the folder's inode number. */
static uint64_t hash_name(const struct mem_node *dir, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ (dir->ino * 0x9e3779b97f4a7c15ULL);

	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	return h ^ (h >> 29);
}

/* The entry name in dir, or NULL. */
static struct mem_dent *dent_find(struct mem *m, struct mem_node *dir,
				  const char *name)
{
	uint64_t h = hash_name(dir, name);

	for (struct mem_dent *d = m->htab[h & m->hmask]; d; d = d->hnext) {
		if (d->hash == h && d->dir == dir && !strcmp(d->name, name))
			return d;
	}
	return NULL;
}

/* Double the name table. Failure keeps the longer chains. */
static void htab_grow(struct mem *m)
{
	size_t n = (m->hmask + 1) * 2;
	struct mem_dent **t = calloc(n, sizeof(*t));

	if (!t)
		return;
	for (size_t i = 0; i <= m->hmask; i++) {
		struct mem_dent *d = m->htab[i], *next;
		for (; d; d = next) {
			next = d->hnext;
			d->hnext = t[d->hash & (n - 1)];
			t[d->hash & (n - 1)] = d;
		}
	}
	free(m->htab);
	m->htab = t;
	m->hmask = n - 1;
}

/* Add name -> child to dir with the next cookie. */
static int dent_add(struct mem *m, struct mem_node *dir, const char *name,
		    struct mem_node *child)
{
	size_t len = strlen(name);
	struct mem_dent *d = malloc(sizeof(*d) + len + 1);

	if (!d)
		return -ENOMEM;
	if (dir->u.dir.n == dir->u.dir.cap) {
		size_t cap = dir->u.dir.cap ? dir->u.dir.cap * 2 : 8;
		struct mem_dslot *s =
			realloc(dir->u.dir.slots, cap * sizeof(*s));
		if (!s) {
			free(d);
			return -ENOMEM;
		}
		dir->u.dir.slots = s;
		dir->u.dir.cap = cap;
	}
	memcpy(d->name, name, len + 1);
	d->dir = dir;
	d->child = child;
	d->hash = hash_name(dir, name);
	d->cookie = dir->u.dir.next_cookie++;
	dir->u.dir.slots[dir->u.dir.n].cookie = d->cookie;
	dir->u.dir.slots[dir->u.dir.n].d = d;
	dir->u.dir.n++;
	dir->u.dir.live++;
	d->hnext = m->htab[d->hash & m->hmask];
	m->htab[d->hash & m->hmask] = d;
	if (++m->hcount > m->hmask + 1)
		htab_grow(m);
	return 0;
}

/* Index of the first slot of dir with cookie > after. */
static size_t slot_after(const struct mem_node *dir, uint64_t after)
{
	size_t lo = 0, hi = dir->u.dir.n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (dir->u.dir.slots[mid].cookie <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Drop removed slots once they outnumber the live ones. */
static void slots_compact(struct mem_node *dir)
{
	size_t dead = dir->u.dir.n - dir->u.dir.live, j = 0;

	if (dead < 16 || dead < dir->u.dir.live)
		return;
	for (size_t i = 0; i < dir->u.dir.n; i++) {
		if (dir->u.dir.slots[i].d)
			dir->u.dir.slots[j++] = dir->u.dir.slots[i];
	}
	dir->u.dir.n = j;
}

/* Remove entry d from its folder and the name table, and free it. */
static void dent_del(struct mem *m, struct mem_dent *d)
{
	struct mem_node *dir = d->dir;
	struct mem_dent **pp = &m->htab[d->hash & m->hmask];
	size_t i = slot_after(dir, d->cookie - 1);

	while (*pp != d)
		pp = &(*pp)->hnext;
	*pp = d->hnext;
	m->hcount--;
	dir->u.dir.slots[i].d = NULL;
	dir->u.dir.live--;
	slots_compact(dir);
	free(d);
}

/* ---- nodes ---- */

/* Free a list of extended attributes. */
static void xattrs_free(struct mem_xattr *x)
{
	while (x) {
		struct mem_xattr *next = x->next;
		free(x->value);
		free(x);
		x = next;
	}
}

/* Free n and what it holds; its names must be gone already. */
static void node_free(struct mem *m, struct mem_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	xattrs_free(n->xattrs);
	if (S_ISREG(n->mode))
		pages_free(m, n, 0, UINT64_MAX);
	else if (S_ISDIR(n->mode))
		free(n->u.dir.slots);
	else if (S_ISLNK(n->mode))
		free(n->u.target);
	m->nnodes--;
	free(n);
}

/* Free n if nothing can reach it any more: no name, open or reference. */
static void node_put(struct mem *m, struct mem_node *n)
{
	if (n && n != m->root && n->nlink == 0 && n->opens == 0 &&
	    !n->referenced)
		node_free(m, n);
}

/* A new node of type and permissions mode, owned by uid:gid. */
static struct mem_node *node_new(struct mem *m, mode_t mode, uid_t uid,
				 gid_t gid)
{
	struct mem_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->ino = m->next_ino++;
	n->mode = mode;
	n->uid = uid;
	n->gid = gid;
	n->atime = n->mtime = n->ctime = now();
	if (S_ISDIR(mode))
		n->u.dir.next_cookie = MEM_FIRST_COOKIE;
	n->next = &m->all;
	n->prev = m->all.prev;
	m->all.prev->next = n;
	m->all.prev = n;
	m->nnodes++;
	return n;
}

/* ---- extended attributes and ACLs ---- */

/* The link to n's attribute name: *result is NULL when absent. */
static struct mem_xattr **xattr_find(struct mem_node *n, const char *name)
{
	struct mem_xattr **pp = &n->xattrs;

	while (*pp && strcmp((*pp)->name, name))
		pp = &(*pp)->next;
	return pp;
}

/* Set name to value on n, replacing any value it had. */
static int xattr_put(struct mem_node *n, const char *name, const void *value,
		     size_t size)
{
	struct mem_xattr **pp = xattr_find(n, name), *x = *pp;
	size_t total = size;
	char *v;

	for (struct mem_xattr *o = n->xattrs; o; o = o->next) {
		if (o != x)
			total += o->size + strlen(o->name);
	}
	if (total > MEM_XATTR_TOTAL_MAX)
		return -ENOSPC;
	v = malloc(size ? size : 1);
	if (!v)
		return -ENOMEM;
	memcpy(v, value, size);
	if (!x) {
		x = calloc(1, sizeof(*x) + strlen(name) + 1);
		if (!x) {
			free(v);
			return -ENOMEM;
		}
		strcpy(x->name, name);
		*pp = x;
	}
	free(x->value);
	x->value = v;
	x->size = size;
	return 0;
}

/* Remove n's attribute name, if present. */
static void xattr_del(struct mem_node *n, const char *name)
{
	struct mem_xattr **pp = xattr_find(n, name), *x = *pp;

	if (x) {
		*pp = x->next;
		free(x->value);
		free(x);
	}
}

/*
 * Give new node n its permissions under dir: mode less the umask, or,
 * when dir has a default ACL, mode narrowed by it and an access ACL
 * copied from it (and the default ACL itself for a folder).
 */
static int inherit_acl(struct mem_node *dir, struct mem_node *n, mode_t mode,
		       mode_t umask)
{
	struct mem_xattr *def = *xattr_find(dir, VD_ACL_DEFAULT);
	void *access;
	size_t len;
	int r;

	if (!def) {
		n->mode = (mode & S_IFMT) | (mode & 07777 & ~umask);
		return 0;
	}
	r = vd_acl_inherit(def->value, def->size, &mode, &access, &len);
	if (r)
		return r;
	if (access)
		r = xattr_put(n, VD_ACL_ACCESS, access, len);
	if (r == 0 && S_ISDIR(mode))
		r = xattr_put(n, VD_ACL_DEFAULT, def->value, def->size);
	free(access);
	n->mode = mode;
	return r;
}

/* ---- creating and removing names ---- */

/*
 * How many nodes the drive may hold. Names and attributes are not counted
 * in the size limit, so their number is bounded instead: a node with its
 * entry costs a few hundred bytes, so one per KiB of the limit.
 */
static uint64_t max_nodes(const struct mem *m)
{
	return m->limit / 1024 > 64 ? m->limit / 1024 : 64;
}

/*
 * Make a node of mode (type and permissions) named name in dir for the
 * caller: its owner, umask or inherited ACL, setgid folder rules.
 * name NULL makes an unnamed file (O_TMPFILE). Called with the lock held.
 */
static int node_create(struct mem *m, const struct vd_ctx *ctx,
		       struct mem_node *dir, const char *name, mode_t mode,
		       dev_t rdev, const char *target, struct mem_node **out)
{
	struct mem_node *n;
	gid_t gid = ctx->gid;
	int r;

	if (!S_ISDIR(dir->mode))
		return -ENOTDIR;
	if (dir->nlink == 0)
		return -ENOENT;
	if (name) {
		r = check_name(name);
		if (r)
			return r;
		if (dent_find(m, dir, name))
			return -EEXIST;
	}
	if (dir->mode & S_ISGID) {
		gid = dir->gid;
		if (S_ISDIR(mode))
			mode |= S_ISGID;
	}
	if (m->nnodes >= max_nodes(m))
		return -ENOSPC;
	n = node_new(m, mode, ctx->uid, gid);
	if (!n)
		return -ENOMEM;
	if (target) {
		n->u.target = strdup(target);
		r = n->u.target ? 0 : -ENOMEM;
	} else {
		r = inherit_acl(dir, n, mode, ctx->umask);
	}
	if (r == 0 && name)
		r = dent_add(m, dir, name, n);
	if (r) {
		node_free(m, n);
		return r;
	}
	n->rdev = rdev;
	if (!name) {
		n->linkable = true;
	} else if (S_ISDIR(mode)) {
		n->nlink = 2;
		n->u.dir.parent = dir;
		dir->nlink++;
	} else {
		n->nlink = 1;
	}
	if (name)
		dir->mtime = dir->ctime = n->ctime;
	*out = n;
	return 0;
}

/* n lost a name (or, for a folder, its only one). */
static void drop_link(struct mem_node *n, struct timespec t)
{
	if (S_ISDIR(n->mode)) {
		n->u.dir.parent->nlink--;
		n->u.dir.parent = NULL;
		n->nlink = 0;
	} else {
		n->nlink--;
	}
	n->ctime = t;
}

/* Whether dir is anc or lies below it. */
static bool in_subtree(struct mem_node *dir, struct mem_node *anc)
{
	for (; dir; dir = dir->u.dir.parent) {
		if (dir == anc)
			return true;
	}
	return false;
}

/* ---- callbacks ---- */

/* Find name in parent; "." and ".." too, for NFS-style lookups. */
static int mem_lookup(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t *node, struct stat *st)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *dir = node_of(m, parent), *n = NULL;
	int r = 0;

	if (strlen(name) > MEM_NAME_MAX)
		return -ENAMETOOLONG;
	pthread_rwlock_rdlock(&m->lock);
	if (!S_ISDIR(dir->mode)) {
		r = -ENOTDIR;
	} else if (!strcmp(name, ".")) {
		n = dir;
	} else if (!strcmp(name, "..")) {
		n = dir->u.dir.parent ? dir->u.dir.parent : dir;
	} else {
		struct mem_dent *d = dent_find(m, dir, name);
		if (d)
			n = d->child;
		else
			r = -ENOENT;
	}
	if (n) {
		*node = hand_out(m, n);
		fill_stat(n, st);
	}
	pthread_rwlock_unlock(&m->lock);
	return r;
}

/* The kernel let go of node: free it if it has no name or open. */
static void mem_forget(void *data, vd_node_t node)
{
	struct mem *m = data;
	struct mem_node *n = node_of(m, node);

	pthread_rwlock_wrlock(&m->lock);
	n->referenced = false;
	node_put(m, n);
	wunlock(m);
}

/* Attributes of node; reads share the lock. */
static int mem_getattr(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, struct stat *st)
{
	struct mem *m = mem_of(ctx);

	(void)fi;
	pthread_rwlock_rdlock(&m->lock);
	fill_stat(node_of(m, node), st);
	pthread_rwlock_unlock(&m->lock);
	return 0;
}

/* Rewrite n's access ACL, if any, to agree with its new mode. */
static void acl_chmod(struct mem_node *n)
{
	struct mem_xattr *x = *xattr_find(n, VD_ACL_ACCESS);

	if (x)
		vd_acl_chmod(x->value, x->size, n->mode);
}

/*
 * chmod, chown, truncate and utimes. Any change moves ctime (unless set
 * explicitly); a chmod also rewrites the access ACL, which the kernel
 * leaves to the file system.
 */
static int mem_setattr(const struct vd_ctx *ctx, vd_node_t node,
		       struct stat *st, int to_set, struct vd_file *fi)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);
	struct timespec t = now();
	int r = 0;

	(void)fi;
	pthread_rwlock_wrlock(&m->lock);
	if (to_set & VD_SET_SIZE) {
		if (S_ISDIR(n->mode))
			r = -EISDIR;
		else if (!S_ISREG(n->mode) || st->st_size < 0)
			r = -EINVAL;
		else if (st->st_size > MEM_MAX_SIZE)
			r = -EFBIG;
		if (r)
			goto out;
		data_truncate(m, n, st->st_size);
		if (!(to_set & VD_SET_MTIME))
			n->mtime = t;
	}
	if (to_set & VD_SET_MODE) {
		n->mode = (n->mode & S_IFMT) | (st->st_mode & 07777);
		acl_chmod(n);
	}
	if (to_set & VD_SET_UID)
		n->uid = st->st_uid;
	if (to_set & VD_SET_GID)
		n->gid = st->st_gid;
	if (to_set & VD_SET_ATIME)
		n->atime = st->st_atim;
	if (to_set & VD_SET_MTIME)
		n->mtime = st->st_mtim;
	n->ctime = (to_set & VD_SET_CTIME) ? st->st_ctim : t;
	fill_stat(n, st);
out:
	wunlock(m);
	return r;
}

/* Copy a symlink's target, cut to fit buf. */
static int mem_readlink(const struct vd_ctx *ctx, vd_node_t node, char *buf,
			size_t size)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);
	int r = 0;

	pthread_rwlock_rdlock(&m->lock);
	if (!S_ISLNK(n->mode)) {
		r = -EINVAL;
	} else if (size) {
		size_t len = strlen(n->u.target);
		if (len >= size)
			len = size - 1;
		memcpy(buf, n->u.target, len);
		buf[len] = '\0';
	}
	pthread_rwlock_unlock(&m->lock);
	return r;
}

/* Shared tail of the calls that make a named node and hand it out. */
static int make(const struct vd_ctx *ctx, vd_node_t parent, const char *name,
		mode_t mode, dev_t rdev, const char *target, vd_node_t *node,
		struct stat *st, struct vd_file *fi)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n;
	int r;

	pthread_rwlock_wrlock(&m->lock);
	r = node_create(m, ctx, node_of(m, parent), name, mode, rdev, target,
			&n);
	if (r == 0) {
		if (fi)
			n->opens++;
		*node = hand_out(m, n);
		fill_stat(n, st);
	}
	pthread_rwlock_unlock(&m->lock);
	return r;
}

/* Regular files, fifos, sockets and devices; type 0 means regular. */
static int mem_mknod(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, dev_t rdev, vd_node_t *node,
		     struct stat *st)
{
	switch (mode & S_IFMT) {
	case 0:
		mode |= S_IFREG;
		break;
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
		break;
	case S_IFCHR:
	case S_IFBLK:
		return make(ctx, parent, name, mode, rdev, NULL, node, st,
			    NULL);
	case S_IFDIR:
		return -EPERM;
	default:
		return -EINVAL;
	}
	return make(ctx, parent, name, mode, 0, NULL, node, st, NULL);
}

/* A new folder: nlink 2, and the parent gains one. */
static int mem_mkdir(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, vd_node_t *node,
		     struct stat *st)
{
	return make(ctx, parent, name, S_IFDIR | (mode & 07777), 0, NULL, node,
		    st, NULL);
}

/* A symlink; like Linux, refuses an empty or over-long target. */
static int mem_symlink(const struct vd_ctx *ctx, const char *target,
		       vd_node_t parent, const char *name, vd_node_t *node,
		       struct stat *st)
{
	size_t len = strlen(target);

	if (len == 0)
		return -ENOENT;
	if (len > MEM_LINK_MAX)
		return -ENAMETOOLONG;
	return make(ctx, parent, name, S_IFLNK | 0777, 0, target, node, st,
		    NULL);
}

/* Create and open a regular file (one round trip for open(O_CREAT)). */
static int mem_create(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, mode_t mode, struct vd_file *fi,
		      vd_node_t *node, struct stat *st)
{
	return make(ctx, parent, name, S_IFREG | (mode & 07777), 0, NULL, node,
		    st, fi);
}

/* O_TMPFILE: an open file with no name that link() may name later. */
static int mem_tmpfile(const struct vd_ctx *ctx, vd_node_t parent, mode_t mode,
		       struct vd_file *fi, vd_node_t *node, struct stat *st)
{
	return make(ctx, parent, NULL, S_IFREG | (mode & 07777), 0, NULL, node,
		    st, fi);
}

/*
 * Remove entry d from folder dir at time t: the name goes, its node loses
 * the link and lives on only while open or referenced.
 */
static void dent_remove(struct mem *m, struct mem_node *dir, struct mem_dent *d,
			struct timespec t)
{
	struct mem_node *n = d->child;

	dent_del(m, d);
	drop_link(n, t);
	dir->mtime = dir->ctime = t;
	node_put(m, n);
}

/* Remove a name; the node lives on while open or referenced. */
static int mem_unlink(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *dir = node_of(m, parent);
	struct mem_dent *d;
	struct timespec t = now();
	int r = 0;

	pthread_rwlock_wrlock(&m->lock);
	d = S_ISDIR(dir->mode) ? dent_find(m, dir, name) : NULL;
	if (!S_ISDIR(dir->mode)) {
		r = -ENOTDIR;
	} else if (!d) {
		r = -ENOENT;
	} else if (S_ISDIR(d->child->mode)) {
		r = -EISDIR;
	} else {
		dent_remove(m, dir, d, t);
	}
	wunlock(m);
	return r;
}

/* Remove an empty folder. */
static int mem_rmdir(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *dir = node_of(m, parent);
	struct mem_dent *d = NULL;
	struct timespec t = now();
	int r = 0;

	if (!strcmp(name, "."))
		return -EINVAL;
	if (!strcmp(name, ".."))
		return -ENOTEMPTY;
	pthread_rwlock_wrlock(&m->lock);
	if (!S_ISDIR(dir->mode))
		r = -ENOTDIR;
	else if (!(d = dent_find(m, dir, name)))
		r = -ENOENT;
	else if (!S_ISDIR(d->child->mode))
		r = -ENOTDIR;
	else if (d->child->u.dir.live)
		r = -ENOTEMPTY;
	if (r == 0)
		dent_remove(m, dir, d, t);
	wunlock(m);
	return r;
}

/* Move folder child from one parent to another, fixing link counts. */
static void reparent(struct mem_node *child, struct mem_node *to)
{
	if (!S_ISDIR(child->mode) || child->u.dir.parent == to)
		return;
	child->u.dir.parent->nlink--;
	to->nlink++;
	child->u.dir.parent = to;
}

/* Swap the nodes behind two entries (RENAME_EXCHANGE). */
static int rename_exchange(struct mem_dent *a, struct mem_dent *b)
{
	struct mem_node *na = a->child, *nb = b->child;

	if (S_ISDIR(na->mode) && in_subtree(b->dir, na))
		return -EINVAL;
	if (S_ISDIR(nb->mode) && in_subtree(a->dir, nb))
		return -EINVAL;
	a->child = nb;
	b->child = na;
	reparent(na, b->dir);
	reparent(nb, a->dir);
	return 0;
}

/*
 * rename(2) and renameat2(2) with RENAME_NOREPLACE or RENAME_EXCHANGE,
 * with Linux's errors: EISDIR/ENOTDIR for a type mismatch, ENOTEMPTY for
 * a non-empty target folder, EINVAL for a folder into its own subtree.
 */
static int mem_rename(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t newparent,
		      const char *newname, unsigned int flags)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *sd = node_of(m, parent), *td = node_of(m, newparent);
	struct mem_node *src, *victim = NULL;
	struct mem_dent *se, *te;
	struct timespec t = now();
	int r = 0;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    flags == (RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	r = check_name(newname);
	if (r == -EEXIST || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EBUSY;
	if (r)
		return r;
	pthread_rwlock_wrlock(&m->lock);
	if (!S_ISDIR(sd->mode) || !S_ISDIR(td->mode)) {
		r = -ENOTDIR;
		goto out;
	}
	if (td->nlink == 0) {
		r = -ENOENT;
		goto out;
	}
	se = dent_find(m, sd, name);
	te = dent_find(m, td, newname);
	if (!se || (!te && (flags & RENAME_EXCHANGE))) {
		r = -ENOENT;
		goto out;
	}
	if (te && (flags & RENAME_NOREPLACE)) {
		r = -EEXIST;
		goto out;
	}
	if (se == te)
		goto out;
	src = se->child;
	if (flags & RENAME_EXCHANGE) {
		r = rename_exchange(se, te);
		if (r)
			goto out;
		se->child->ctime = t; /* src's is set below */
	} else if (te && te->child == src) {
		goto out; /* two names of one file: POSIX says do nothing */
	} else {
		if (S_ISDIR(src->mode)) {
			if (in_subtree(td, src))
				r = -EINVAL;
			else if (te && !S_ISDIR(te->child->mode))
				r = -ENOTDIR;
			else if (te && te->child->u.dir.live)
				r = -ENOTEMPTY;
		} else if (te && S_ISDIR(te->child->mode)) {
			r = -EISDIR;
		}
		if (r)
			goto out;
		if (te) {
			victim = te->child;
			drop_link(victim, t);
			te->child = src;
		} else {
			r = dent_add(m, td, newname, src);
			if (r)
				goto out;
		}
		dent_del(m, se);
		reparent(src, td);
	}
	src->ctime = t;
	sd->mtime = sd->ctime = t;
	td->mtime = td->ctime = t;
	node_put(m, victim);
out:
	wunlock(m);
	return r;
}

/* A new name for a non-folder (or the first for an O_TMPFILE file). */
static int mem_link(const struct vd_ctx *ctx, vd_node_t node,
		    vd_node_t newparent, const char *newname, struct stat *st)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node), *dir = node_of(m, newparent);
	int r;

	pthread_rwlock_wrlock(&m->lock);
	r = check_name(newname);
	if (r)
		goto out;
	if (S_ISDIR(n->mode)) {
		r = -EPERM;
	} else if (!S_ISDIR(dir->mode)) {
		r = -ENOTDIR;
	} else if ((n->nlink == 0 && !n->linkable) || dir->nlink == 0) {
		r = -ENOENT;
	} else if (dent_find(m, dir, newname)) {
		r = -EEXIST;
	} else {
		r = dent_add(m, dir, newname, n);
	}
	if (r)
		goto out;
	n->nlink++;
	n->linkable = false;
	n->ctime = now();
	dir->mtime = dir->ctime = n->ctime;
	hand_out(m, n);
	fill_stat(n, st);
out:
	pthread_rwlock_unlock(&m->lock);
	return r;
}

/*
 * Open: count it (an unlinked file lives while open) and truncate for
 * O_TRUNC, which the kernel passes here (atomic_o_trunc).
 */
static int mem_open(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);

	/* Every change reaches the data through this kernel, so what it
	 * cached from an earlier open is still right. */
	if (!fi->direct_io)
		fi->keep_cache = 1;
	if (fi->flags & O_TRUNC) {
		pthread_rwlock_wrlock(&m->lock);
		if (S_ISREG(n->mode)) {
			data_truncate(m, n, 0);
			n->mtime = n->ctime = now();
		}
		n->opens++;
		wunlock(m);
		return 0;
	}
	pthread_rwlock_rdlock(&m->lock);
	__atomic_add_fetch(&n->opens, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&m->lock);
	return 0;
}

/* Whether reading n now should move its atime (the relatime rule). */
static bool atime_due(const struct mem_node *n, struct timespec t)
{
	const struct timespec *a = &n->atime;

	if (a->tv_sec < n->mtime.tv_sec ||
	    (a->tv_sec == n->mtime.tv_sec && a->tv_nsec <= n->mtime.tv_nsec))
		return true;
	if (a->tv_sec < n->ctime.tv_sec ||
	    (a->tv_sec == n->ctime.tv_sec && a->tv_nsec <= n->ctime.tv_nsec))
		return true;
	return t.tv_sec - a->tv_sec >= 24 * 3600;
}

/*
 * Move n's atime after a read or listing, under the write lock: rare
 * under relatime, so reads themselves share the lock. n is open, so it
 * cannot go away between the two locks.
 */
static void touch_atime(struct mem *m, struct mem_node *n, bool due)
{
	if (!due)
		return;
	pthread_rwlock_wrlock(&m->lock);
	n->atime = now();
	pthread_rwlock_unlock(&m->lock);
}

/* Read under the shared lock; holes read as zeros. */
static int mem_read(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, char *buf, size_t size, off_t off)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);
	bool due = false;
	int r = 0;

	(void)fi;
	if (off < 0)
		return -EINVAL;
	if (size > INT_MAX)
		size = INT_MAX;
	pthread_rwlock_rdlock(&m->lock);
	if (S_ISDIR(n->mode)) {
		r = -EISDIR;
	} else if (!S_ISREG(n->mode)) {
		r = -EINVAL;
	} else if (off < n->size) {
		if ((off_t)size > n->size - off)
			size = (size_t)(n->size - off);
		data_read(n, buf, size, off);
		r = (int)size;
		due = atime_due(n, now());
	}
	pthread_rwlock_unlock(&m->lock);
	touch_atime(m, n, due);
	return r;
}

/* Write, allocating pages; a short count when the drive fills up. */
static int mem_write(const struct vd_ctx *ctx, vd_node_t node,
		     struct vd_file *fi, const char *buf, size_t size,
		     off_t off)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);
	ssize_t r;

	(void)fi;
	if (off < 0)
		return -EINVAL;
	if (size > INT_MAX)
		size = INT_MAX;
	if (off >= MEM_MAX_SIZE || (off_t)size > MEM_MAX_SIZE - off)
		return -EFBIG;
	pthread_rwlock_wrlock(&m->lock);
	if (!S_ISREG(n->mode)) {
		r = S_ISDIR(n->mode) ? -EISDIR : -EINVAL;
	} else {
		r = size ? data_write(m, n, buf, size, off) : 0;
		if (r > 0) {
			if (off + r > n->size)
				n->size = off + r;
			n->mtime = n->ctime = now();
		}
	}
	pthread_rwlock_unlock(&m->lock);
	return (int)r;
}

/* Release an open or opendir: the node may now be unreachable. */
static int close_node(const struct vd_ctx *ctx, vd_node_t node)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);

	pthread_rwlock_wrlock(&m->lock);
	n->opens--;
	node_put(m, n);
	wunlock(m);
	return 0;
}

/* Last close of an open. */
static int mem_release(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi)
{
	(void)fi;
	return close_node(ctx, node);
}

/* Nothing to make durable: the data lives in memory only. */
static int mem_fsync(const struct vd_ctx *ctx, vd_node_t node, int datasync,
		     struct vd_file *fi)
{
	(void)ctx, (void)node, (void)datasync, (void)fi;
	return 0;
}

/* Count the open, so a removed folder lives until releasedir. */
static int mem_opendir(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);
	int r = 0;

	(void)fi;
	pthread_rwlock_rdlock(&m->lock);
	if (S_ISDIR(n->mode))
		__atomic_add_fetch(&n->opens, 1, __ATOMIC_RELAXED);
	else
		r = -ENOTDIR;
	pthread_rwlock_unlock(&m->lock);
	return r;
}

/*
 * List from off: 0 is ".", 1 "..", and any larger offset the cookie of
 * the last entry seen, so the listing resumes after it whatever was
 * added or removed meanwhile.
 */
static int mem_readdir(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, off_t off, vd_fill_fn fill,
		       void *buf)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *dir = node_of(m, node), *up;
	bool plus =
		fi && fi->readdirplus; /* only then nodes reach the kernel */
	struct stat st;
	bool due = false;
	int r = 0;

	if (off < 0)
		return -EINVAL;
	pthread_rwlock_rdlock(&m->lock);
	if (!S_ISDIR(dir->mode)) {
		r = -ENOTDIR;
		goto out;
	}
	due = atime_due(dir, now());
	up = dir->u.dir.parent ? dir->u.dir.parent : dir;
	if (off < 1) {
		fill_stat(dir, &st);
		if (fill(buf, ".", node, &st, 1))
			goto out;
	}
	if (off < 2) {
		fill_stat(up, &st);
		if (fill(buf, "..", handle_of(m, up), &st, 2))
			goto out;
	}
	for (size_t i = slot_after(dir, (uint64_t)off); i < dir->u.dir.n; i++) {
		struct mem_dent *d = dir->u.dir.slots[i].d;
		if (!d)
			continue;
		fill_stat(d->child, &st);
		if (fill(buf, d->name, handle_of(m, d->child), &st,
			 (off_t)d->cookie))
			break;
		if (plus)
			hand_out(m, d->child);
	}
out:
	pthread_rwlock_unlock(&m->lock);
	touch_atime(m, dir, due);
	return r;
}

/* Last close of an opendir. */
static int mem_releasedir(const struct vd_ctx *ctx, vd_node_t node,
			  struct vd_file *fi)
{
	(void)fi;
	return close_node(ctx, node);
}

/* Sizes against the drive's limit, in 4 KiB blocks. */
static int mem_statfs(const struct vd_ctx *ctx, vd_node_t node,
		      struct statvfs *st)
{
	struct mem *m = mem_of(ctx);

	(void)node;
	pthread_rwlock_rdlock(&m->lock);
	st->f_bsize = 4096;
	st->f_frsize = 4096;
	st->f_blocks = m->limit / 4096;
	st->f_bfree = st->f_bavail = (m->limit - m->used) / 4096;
	st->f_files = max_nodes(m);
	st->f_ffree = st->f_favail = st->f_files - m->nnodes;
	st->f_namemax = MEM_NAME_MAX;
	pthread_rwlock_unlock(&m->lock);
	return 0;
}

/*
 * Store an access ACL: the mode follows it, and one that says no more
 * than the mode bits is not kept (as ext4 does).
 */
static int set_acl_access(struct mem_node *n, const char *value, size_t size)
{
	mode_t mode;
	int extended, r = vd_acl_mode(value, size, &mode, &extended);

	if (r)
		return r;
	n->mode = (n->mode & ~(mode_t)0777) | mode;
	if (!extended) {
		xattr_del(n, VD_ACL_ACCESS);
		return 0;
	}
	return xattr_put(n, VD_ACL_ACCESS, value, size);
}

/*
 * Set an extended attribute with XATTR_CREATE / XATTR_REPLACE rules.
 * POSIX ACLs are checked; other system.* names are not supported.
 */
static int mem_setxattr(const struct vd_ctx *ctx, vd_node_t node,
			const char *name, const char *value, size_t size,
			int flags)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);
	bool exists, acl_a = !strcmp(name, VD_ACL_ACCESS);
	bool acl_d = !strcmp(name, VD_ACL_DEFAULT);
	int r = 0;

	if (!*name)
		return -EINVAL;
	if (strlen(name) > MEM_XATTR_NAME_MAX)
		return -ERANGE;
	if (size > MEM_XATTR_SIZE_MAX)
		return -E2BIG;
	if (!strncmp(name, "system.", 7) && !acl_a && !acl_d)
		return -EOPNOTSUPP;
	if (acl_a || acl_d) {
		r = vd_acl_valid(value, size);
		if (r)
			return r;
	}
	pthread_rwlock_wrlock(&m->lock);
	exists = *xattr_find(n, name) != NULL;
	if ((flags & XATTR_CREATE) && exists)
		r = -EEXIST;
	else if ((flags & XATTR_REPLACE) && !exists)
		r = -ENODATA;
	else if (acl_d && !S_ISDIR(n->mode))
		r = -EACCES;
	else if (acl_a)
		r = set_acl_access(n, value, size);
	else
		r = xattr_put(n, name, value, size);
	if (r == 0)
		n->ctime = now();
	pthread_rwlock_unlock(&m->lock);
	return r;
}

/* Get an attribute; size 0 asks for its size. */
static int mem_getxattr(const struct vd_ctx *ctx, vd_node_t node,
			const char *name, char *value, size_t size)
{
	struct mem *m = mem_of(ctx);
	struct mem_xattr *x;
	int r;

	pthread_rwlock_rdlock(&m->lock);
	x = *xattr_find(node_of(m, node), name);
	if (!x) {
		r = -ENODATA;
	} else if (size == 0) {
		r = (int)x->size;
	} else if (size < x->size) {
		r = -ERANGE;
	} else {
		memcpy(value, x->value, x->size);
		r = (int)x->size;
	}
	pthread_rwlock_unlock(&m->lock);
	return r;
}

/* NUL-separated names; size 0 asks for the total size. */
static int mem_listxattr(const struct vd_ctx *ctx, vd_node_t node, char *list,
			 size_t size)
{
	struct mem *m = mem_of(ctx);
	size_t total = 0;
	int r;

	pthread_rwlock_rdlock(&m->lock);
	for (struct mem_xattr *x = node_of(m, node)->xattrs; x; x = x->next) {
		size_t len = strlen(x->name) + 1;
		if (size && total + len <= size)
			memcpy(list + total, x->name, len);
		total += len;
	}
	pthread_rwlock_unlock(&m->lock);
	r = (int)total;
	if (size && total > size)
		r = -ERANGE;
	return r;
}

/* Remove an attribute; ENODATA if absent. */
static int mem_removexattr(const struct vd_ctx *ctx, vd_node_t node,
			   const char *name)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);
	int r = 0;

	pthread_rwlock_wrlock(&m->lock);
	if (*xattr_find(n, name)) {
		xattr_del(n, name);
		n->ctime = now();
	} else {
		r = -ENODATA;
	}
	pthread_rwlock_unlock(&m->lock);
	return r;
}

/*
 * Preallocate (mode 0, KEEP_SIZE), punch holes (PUNCH_HOLE|KEEP_SIZE) or
 * zero a range (ZERO_RANGE); anything else is EOPNOTSUPP.
 */
static int mem_fallocate(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, int mode, off_t off, off_t len)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);
	bool keep = mode & FALLOC_FL_KEEP_SIZE, grew = false;
	int op = mode & ~FALLOC_FL_KEEP_SIZE;
	int r = 0;

	(void)fi;
	if (op != 0 && op != FALLOC_FL_PUNCH_HOLE && op != FALLOC_FL_ZERO_RANGE)
		return -EOPNOTSUPP;
	if (op == FALLOC_FL_PUNCH_HOLE && !keep)
		return -EOPNOTSUPP;
	if (off < 0 || len <= 0)
		return -EINVAL;
	if (off > MEM_MAX_SIZE || len > MEM_MAX_SIZE - off)
		return -EFBIG;
	pthread_rwlock_wrlock(&m->lock);
	if (!S_ISREG(n->mode)) {
		r = S_ISDIR(n->mode) ? -EISDIR : -ENODEV;
		goto out;
	}
	if (op == FALLOC_FL_PUNCH_HOLE) {
		data_punch(m, n, off, len); /* past the end too, as ext4 */
	} else {
		/* Allocate page by page; zeroing only for ZERO_RANGE, as
		 * fresh pages and bytes past the end are zero already. */
		for (off_t o = off, end = off + len; o < end;) {
			size_t in = (size_t)(o & (MEM_PAGE - 1));
			size_t chunk = (size_t)MEM_PAGE - in;
			struct mem_page *p;

			if ((off_t)chunk > end - o)
				chunk = (size_t)(end - o);
			r = page_reserve(m, n, (uint64_t)o >> MEM_PAGE_SHIFT,
					 in + chunk, &p);
			if (r)
				goto out;
			if (op == FALLOC_FL_ZERO_RANGE)
				memset(p->data + in, 0, chunk);
			o += (off_t)chunk;
		}
		if (!keep && off + len > n->size) {
			n->size = off + len;
			grew = true;
		}
	}
	/* As ext4: the data changes (or the file grows) move mtime too. */
	n->ctime = now();
	if (op || grew)
		n->mtime = n->ctime;
out:
	wunlock(m);
	return r;
}

/*
 * SEEK_DATA / SEEK_HOLE at page granularity: a present page is data, an
 * absent one a hole, and the end of the file is a hole. ENXIO past EOF.
 */
static int64_t mem_lseek(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, off_t off, int whence)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *n = node_of(m, node);
	int64_t r;

	(void)fi;
	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	pthread_rwlock_rdlock(&m->lock);
	if (!S_ISREG(n->mode)) {
		r = -EINVAL;
	} else if (off < 0 || off >= n->size) {
		r = -ENXIO;
	} else if (whence == SEEK_DATA) {
		uint64_t idx = page_next(n, (uint64_t)off >> MEM_PAGE_SHIFT);
		r = -ENXIO;
		if (idx != UINT64_MAX &&
		    (idx << MEM_PAGE_SHIFT) < (uint64_t)n->size)
			r = (idx << MEM_PAGE_SHIFT) > (uint64_t)off
				    ? (int64_t)(idx << MEM_PAGE_SHIFT)
				    : off;
	} else {
		uint64_t idx = (uint64_t)off >> MEM_PAGE_SHIFT;
		while ((off_t)(idx << MEM_PAGE_SHIFT) < n->size &&
		       page_get(n, idx))
			idx++;
		r = (int64_t)(idx << MEM_PAGE_SHIFT);
		if (r < off)
			r = off;
		if (r > n->size)
			r = n->size;
	}
	pthread_rwlock_unlock(&m->lock);
	return r;
}

/*
 * Copy len bytes of in at off_in to out at off_out through a bounce
 * buffer, a page at a time; source holes stay holes.
 */
static int64_t mem_copy_file_range(const struct vd_ctx *ctx, vd_node_t in,
				   struct vd_file *fi_in, off_t off_in,
				   vd_node_t out, struct vd_file *fi_out,
				   off_t off_out, size_t len, int flags)
{
	struct mem *m = mem_of(ctx);
	struct mem_node *src = node_of(m, in), *dst = node_of(m, out);
	char *bounce;
	int64_t done = 0;
	int r = 0;

	(void)fi_in, (void)fi_out;
	if (flags)
		return -EINVAL;
	if (off_in < 0 || off_out < 0)
		return -EINVAL;
	if (len > (size_t)MEM_MAX_SIZE || off_out > MEM_MAX_SIZE - (off_t)len)
		return -EFBIG;
	bounce = malloc(MEM_PAGE);
	if (!bounce)
		return -ENOMEM;
	pthread_rwlock_wrlock(&m->lock);
	if (!S_ISREG(src->mode) || !S_ISREG(dst->mode)) {
		r = S_ISDIR(src->mode) || S_ISDIR(dst->mode) ? -EISDIR
							     : -EINVAL;
		goto out;
	}
	if (off_in >= src->size)
		goto out;
	if ((off_t)len > src->size - off_in)
		len = (size_t)(src->size - off_in);
	if (src == dst && off_in < off_out + (off_t)len &&
	    off_out < off_in + (off_t)len) {
		r = -EINVAL; /* overlapping ranges of one file */
		goto out;
	}
	while ((size_t)done < len) {
		off_t o = off_in + done;
		size_t chunk = (size_t)(MEM_PAGE - (o & (MEM_PAGE - 1)));
		ssize_t w;

		if (chunk > len - (size_t)done)
			chunk = len - (size_t)done;
		if (!page_get(src, (uint64_t)o >> MEM_PAGE_SHIFT)) {
			/* Past dst's end the bytes are zero already. */
			if (off_out + done < dst->size)
				data_punch(m, dst, off_out + done, chunk);
			w = (ssize_t)chunk;
		} else {
			data_read(src, bounce, chunk, o);
			w = data_write(m, dst, bounce, chunk, off_out + done);
		}
		if (w < 0) {
			r = (int)w;
			break;
		}
		done += w;
		if (off_out + done > dst->size)
			dst->size = off_out + done;
		if ((size_t)w < chunk)
			break;
	}
	if (done)
		dst->mtime = dst->ctime = now();
out:
	wunlock(m);
	free(bounce);
	return done ? done : r;
}

/* Free the drive: every entry, every node (named or not), the tables. */
static void mem_destroy(void *data)
{
	struct mem *m = data;

	for (size_t i = 0; i <= m->hmask; i++) {
		struct mem_dent *d = m->htab[i], *next;
		for (; d; d = next) {
			next = d->hnext;
			free(d);
		}
	}
	while (m->all.next != &m->all)
		node_free(m, m->all.next);
	free(m->htab);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

/* Every callback but flush: without it the kernel skips FLUSH on close. */
static const struct vd_ops mem_ops = {
	.flags = VD_OPS_THREAD_SAFE | VD_OPS_EXCLUSIVE | VD_OPS_QUICK |
		 VD_OPS_CACHE,
	.destroy = mem_destroy,
	.lookup = mem_lookup,
	.forget = mem_forget,
	.getattr = mem_getattr,
	.setattr = mem_setattr,
	.readlink = mem_readlink,
	.mknod = mem_mknod,
	.mkdir = mem_mkdir,
	.unlink = mem_unlink,
	.rmdir = mem_rmdir,
	.symlink = mem_symlink,
	.rename = mem_rename,
	.link = mem_link,
	.open = mem_open,
	.read = mem_read,
	.write = mem_write,
	.release = mem_release,
	.fsync = mem_fsync,
	.opendir = mem_opendir,
	.readdir = mem_readdir,
	.releasedir = mem_releasedir,
	.statfs = mem_statfs,
	.setxattr = mem_setxattr,
	.getxattr = mem_getxattr,
	.listxattr = mem_listxattr,
	.removexattr = mem_removexattr,
	.create = mem_create,
	.fallocate = mem_fallocate,
	.copy_file_range = mem_copy_file_range,
	.lseek = mem_lseek,
	.tmpfile = mem_tmpfile,
};

/*
 * Parse "size=BYTES" (suffixes k, m, g, t: powers of 1024; or N% of the
 * machine's memory) into *limit. The default is half the memory, as tmpfs.
 */
static int parse_arg(const char *arg, uint64_t *limit, char *err, size_t errlen)
{
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) *
		       (uint64_t)sysconf(_SC_PAGESIZE);
	unsigned long long v;
	char *end;

	*limit = ram / 2;
	if (!*arg)
		return 0;
	if (strncmp(arg, "size=", 5) || arg[5] < '0' || arg[5] > '9')
		goto bad;
	errno = 0;
	v = strtoull(arg + 5, &end, 10);
	if (errno)
		goto bad;
	if (*end && strchr("kmgtKMGT", *end)) {
		int shift = 10 *
			    (1 + (int)(strchr("kmgt", tolower(*end)) - "kmgt"));
		v = v > ULLONG_MAX >> shift ? 0 : v << shift;
		end++;
	} else if (*end == '%') {
		v = v > 100 ? 0 : ram / 100 * v;
		end++;
	}
	if (*end || v == 0)
		goto bad;
	*limit = v;
	return 0;
bad:
	snprintf(err, errlen,
		 "mem: bad argument '%s' (expected nothing or size=BYTES, "
		 "e.g. mem:size=512m or mem:size=25%%)",
		 arg);
	return -EINVAL;
}

/* Make an empty drive from "" or "size=...". */
static int mem_open_source(const char *arg, const struct vd_ops **ops,
			   void **data, char *err, size_t errlen)
{
	struct mem *m = calloc(1, sizeof(*m));
	pthread_rwlockattr_t attr;
	int r;

	if (!m)
		return -ENOMEM;
	r = parse_arg(arg, &m->limit, err, errlen);
	if (r)
		goto fail;
	m->hmask = 1023;
	m->htab = calloc(m->hmask + 1, sizeof(*m->htab));
	m->all.next = m->all.prev = &m->all;
	m->next_ino = VD_ROOT;
	r = -ENOMEM;
	if (!m->htab)
		goto fail;
	m->root = node_new(m, S_IFDIR | 0755, getuid(), getgid());
	if (!m->root)
		goto fail;
	m->root->nlink = 2;
	/* Writers first: a steady stream of reads must not starve them. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(
		&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&m->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	*ops = &mem_ops;
	*data = m;
	return 0;
fail:
	if (r == -ENOMEM)
		snprintf(err, errlen, "mem: out of memory");
	if (m->root)
		node_free(m, m->root);
	free(m->htab);
	free(m);
	return r;
}

/* mem:[size=BYTES] in the table of built-in sources. */
const struct vd_source vd_source_mem = {
	.kind = "mem",
	.usage = "mem:",
	.help = "a RAM drive",
	.open = mem_open_source,
};
