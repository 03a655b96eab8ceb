/*
 * cache.c - a local cache of file bodies, served by kernel passthrough.
 *
 * What: for a source that sets VD_OPS_CACHE, the library copies a file's
 * bytes into a sparse "body" file in a cache folder on its first open and
 * hands the kernel that body as the open's passthrough backing file. Reads,
 * writes and mmap then run at the local file system's speed (large folios,
 * readahead) and never reach the source; FUSE's own page cache holds only
 * 4 KiB folios in this kernel, which caps warm reads at ~0.65x of ext4.
 *
 * Choices, and why:
 *  - Whole-file fill on open, up to cache_fill_max bytes (default 1 GiB):
 *    passthrough reads never reach the server, so a body must be complete
 *    before the kernel reads from it. Larger files (and opens that find the
 *    cache full or its folder gone) are served the ordinary FUSE way. The
 *    price is the first open's latency: it reads the whole file.
 *  - Creates are served the ordinary way (no body), so create-heavy work
 *    pays nothing; the next open of the file gets a body.
 *  - An inode is either in passthrough or in FUSE-cached mode (the kernel
 *    fails a mixed open with EIO), so the mode of the first open holds
 *    until the last open of the inode is released (vd_entry.io_*).
 *  - Writes land in the body; the library writes the whole body back
 *    through the source's write callback on fsync (which returns only when
 *    the source has it and has run its own fsync), on close (flush, whose
 *    error close(2) returns), on the last release, and every few seconds
 *    while a writer keeps it open. A failed write-back leaves the body
 *    dirty (it is retried, never evicted) and fails that fsync/close with
 *    EIO. Passthrough writes do not reach us: a body is dirty when its
 *    size or mtime differs from when it last matched the source. Kernels
 *    >= 6.13 give ext4/tmpfs/xfs/btrfs fine-grained timestamps once they
 *    were read (multigrain), which a probe at mount checks; elsewhere
 *    every body opened for writing is written back.
 *  - Coherence: vd_drive_invalidate_node(), a write the ordinary way, or a
 *    source whose size/mtime no longer match the body mark it stale: the
 *    next open refills it (in place, so opens that share it see the new
 *    bytes). Local dirty data wins over a stale mark (logged).
 *  - Limit: bodies count their size against cache_size; least recently
 *    used clean, closed bodies are evicted to make room; if there is none,
 *    the open is served the ordinary way. Writers can grow a body past the
 *    limit; it is evicted once closed and clean.
 *  - Restart: each body carries its source's size and mtime and its own
 *    clean size and mtime in an xattr; at mount a body whose xattr is
 *    missing or no longer matches (a crash mid-fill, unsynced local writes)
 *    is deleted; the rest are checked against the source at their open.
 *  - The folder is 0700 and bodies 0600 (owner only), on the host side: a
 *    drive mounted into a container never shows it there. One drive at a
 *    time (flock); a second drive on the same folder runs without cache.
 *  - Opening a backing file needs CAP_SYS_ADMIN: without it (a drive in an
 *    unprivileged container) the first open turns the cache off.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "vdrive_i.h"

#ifdef FUSE_CAP_PASSTHROUGH

#define META_XATTR "user.vdrive.cache"
#define META_MAGIC 0x31636476u /* "vdc1" */
#define CHUNK (1024 * 1024)
#define NBUCKETS 4096
#define FLUSH_EVERY_S 2 /* delayed write-back: a body idle this long */

/* What a body's xattr holds: enough to know at restart whether the file
 * still is what it was when it matched the source. */
struct meta {
	uint32_t magic, pad;
	uint64_t node;
	int64_t src_size, src_sec, src_nsec;
	int64_t size, sec, nsec;
};

struct vd_body {
	vd_node_t node;
	struct vd_body *hnext, *prev, *next; /* hash chain; LRU, newest first */
	/* Held while filling, writing back or truncating the file. */
	pthread_mutex_t lock;
	/* Under the cache lock: */
	unsigned int refs; /* users in flight and passthrough opens */
	unsigned int pins; /* passthrough opens */
	bool stale;	   /* the source changed: refill at the next open */
	bool writers;	   /* opened for writing since it was last clean */
	off_t size;	   /* bytes counted against the limit */
	/* Under lock (and the cache lock to change fd): */
	int fd; /* -1: closed, the file stays on disk */
	bool valid;
	bool failed;	/* the last write-back failed: dirty */
	int backing_id; /* the kernel's id for fd's file, 0: none */
	ino_t ino;	/* of the file backing_id names */
	off_t clean_size, src_size;
	struct timespec clean_mtime, src_mtime;
};

struct vd_cache {
	pthread_mutex_t lock;
	int dirfd, lockfd;
	char *dir;
	struct vd_body *buckets[NBUCKETS];
	struct vd_body *head, *tail;
	uint64_t used, limit, fill_max;
	bool mgtime; /* every write changes the mtime */
	bool off;    /* no passthrough after all: serve everything via FUSE */
	pthread_t flusher;
	bool flusher_on, stopping;
	pthread_cond_t cv;
};

/* Io modes of an inode (vd_entry.io_mode). */
enum { IO_NONE, IO_PT, IO_FUSE };

static size_t bucket(vd_node_t n)
{
	n ^= n >> 29;
	n *= 0xbf58476d1ce4e5b9ULL;
	n ^= n >> 32;
	return (size_t)(n & (NBUCKETS - 1));
}

static void body_name(char *buf, size_t n, vd_node_t node)
{
	snprintf(buf, n, "%016llx", (unsigned long long)node);
}

static bool ts_eq(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* Cache lock held. */
static struct vd_body *find(struct vd_cache *k, vd_node_t node)
{
	struct vd_body *b = k->buckets[bucket(node)];

	while (b && b->node != node)
		b = b->hnext;
	return b;
}

static void lru_unlink(struct vd_cache *k, struct vd_body *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		k->head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		k->tail = b->prev;
	b->prev = b->next = NULL;
}

static void lru_front(struct vd_cache *k, struct vd_body *b)
{
	if (k->head == b)
		return;
	if (b->prev || b->next || k->tail == b)
		lru_unlink(k, b);
	b->next = k->head;
	if (k->head)
		k->head->prev = b;
	k->head = b;
	if (!k->tail)
		k->tail = b;
}

static struct vd_body *body_new(struct vd_cache *k, vd_node_t node)
{
	struct vd_body *b = calloc(1, sizeof(*b));
	size_t h = bucket(node);

	if (!b)
		return NULL;
	b->node = node;
	b->fd = -1;
	pthread_mutex_init(&b->lock, NULL);
	b->hnext = k->buckets[h];
	k->buckets[h] = b;
	lru_front(k, b);
	return b;
}

/* Take b out of the table and free it; its file is deleted. Cache lock
 * held, nobody else holds b. */
static void body_drop(struct vd_drive *d, struct vd_body *b)
{
	struct vd_cache *k = d->cache;
	struct vd_body **pp = &k->buckets[bucket(b->node)];
	char name[32];

	while (*pp && *pp != b)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = b->hnext;
	lru_unlink(k, b);
	k->used -= (uint64_t)b->size;
	body_name(name, sizeof(name), b->node);
	unlinkat(k->dirfd, name, 0);
	if (b->fd >= 0)
		close(b->fd);
	vd_backing_close(d, b->backing_id);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* Give back a reference; an empty body nobody uses goes. */
static void body_put(struct vd_drive *d, struct vd_body *b)
{
	struct vd_cache *k = d->cache;

	pthread_mutex_lock(&k->lock);
	if (--b->refs == 0 && !b->valid)
		body_drop(d, b);
	pthread_mutex_unlock(&k->lock);
}

/* b->lock held: whether the body holds bytes the source has not got. */
static bool body_dirty(struct vd_drive *d, struct vd_body *b, struct stat *out)
{
	struct stat st;

	if (!b->valid || b->fd < 0 || fstat(b->fd, &st) != 0)
		return false;
	if (out)
		*out = st;
	return b->failed || st.st_size != b->clean_size ||
	       !ts_eq(st.st_mtim, b->clean_mtime) ||
	       (!d->cache->mgtime && b->writers);
}

/* b->lock held: store what the body matches now, for a later restart. */
static void mark_clean(struct vd_body *b, const struct stat *body,
		       const struct stat *src)
{
	struct meta m = {.magic = META_MAGIC, .node = b->node};

	b->clean_size = body->st_size;
	b->clean_mtime = body->st_mtim;
	b->src_size = src->st_size;
	b->src_mtime = src->st_mtim;
	b->failed = false;
	m.src_size = src->st_size;
	m.src_sec = src->st_mtim.tv_sec;
	m.src_nsec = src->st_mtim.tv_nsec;
	m.size = body->st_size;
	m.sec = body->st_mtim.tv_sec;
	m.nsec = body->st_mtim.tv_nsec;
	/* No xattr (a file system without user xattrs): the body is simply
	 * not trusted after a restart. */
	fsetxattr(b->fd, META_XATTR, &m, sizeof(m), 0);
}

/* Account a body's new size; cache lock taken here. */
static void set_size(struct vd_cache *k, struct vd_body *b, off_t size)
{
	pthread_mutex_lock(&k->lock);
	k->used = k->used - (uint64_t)b->size + (uint64_t)size;
	b->size = size;
	pthread_mutex_unlock(&k->lock);
}

/*
 * Make room for need more bytes, evicting least recently used bodies that
 * nobody holds and that are clean. Cache lock held. Returns whether the
 * room is there.
 */
static bool make_room(struct vd_drive *d, uint64_t need)
{
	struct vd_cache *k = d->cache;
	struct vd_body *b = k->tail, *prev;

	if (need > k->limit)
		return false;
	while (k->used + need > k->limit && b) {
		prev = b->prev;
		/* Nobody holds it (refs only grow under our lock): drop it
		 * unless it is dirty. */
		if (b->refs == 0 && b->pins == 0 &&
		    pthread_mutex_trylock(&b->lock) == 0) {
			bool dirty = body_dirty(d, b, NULL);
			pthread_mutex_unlock(&b->lock);
			if (!dirty)
				body_drop(d, b);
		}
		b = prev;
	}
	return k->used + need <= k->limit;
}

/* Open (or create) the body's file. b->lock held. */
static int body_open(struct vd_drive *d, struct vd_body *b, bool create)
{
	struct vd_cache *k = d->cache;
	char name[32];
	struct stat st;
	int fd;

	body_name(name, sizeof(name), b->node);
	fd = openat(k->dirfd, name,
		    O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0),
		    0600);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid()) {
		close(fd);
		return -EINVAL;
	}
	/* Another file than the one the kernel was given (the folder was
	 * emptied under us): that id must go before a new one is made. */
	if (b->backing_id > 0 && st.st_ino != b->ino && b->pins == 0) {
		vd_backing_close(d, b->backing_id);
		b->backing_id = 0;
	}
	b->ino = st.st_ino;
	pthread_mutex_lock(&k->lock);
	b->fd = fd;
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static void body_close(struct vd_drive *d, struct vd_body *b)
{
	struct vd_cache *k = d->cache;
	int fd;

	pthread_mutex_lock(&k->lock);
	fd = b->fd;
	b->fd = -1;
	pthread_mutex_unlock(&k->lock);
	if (fd >= 0)
		close(fd);
}

/* A context for calls the library makes on its own. */
static void own_ctx(struct vd_drive *d, const struct vd_ctx *from,
		    struct vd_ctx *c)
{
	if (from) {
		*c = *from;
		c->req_ = NULL;
		return;
	}
	memset(c, 0, sizeof(*c));
	c->drive = d;
	c->data = d->data;
}

/*
 * Copy the source's file into the body, which is open: size bytes, per
 * src. b->lock held. 0 or -errno (the body is then invalid).
 */
static int fill(struct vd_drive *d, const struct vd_ctx *c, struct vd_body *b,
		const struct stat *src)
{
	struct vd_file vf;
	struct stat st;
	char *buf = NULL;
	off_t off = 0;
	int r = 0, n;

	b->valid = false;
	fremovexattr(b->fd, META_XATTR); /* a crash mid-fill: not trusted */
	if (ftruncate(b->fd, 0) != 0 || ftruncate(b->fd, src->st_size) != 0)
		return -errno;
	set_size(d->cache, b, src->st_size);
	memset(&vf, 0, sizeof(vf));
	vf.backing_fd = -1;
	vf.flags = O_RDONLY;
	if (src->st_size > 0) {
		if (!d->ops.read)
			return -ENOSYS;
		buf = malloc(CHUNK);
		if (!buf)
			return -ENOMEM;
		if (d->ops.open)
			r = VD_CALL(d, d->ops.open(c, b->node, &vf));
		if (r) {
			free(buf);
			return r;
		}
	}
	while (off < src->st_size) {
		size_t want = src->st_size - off < CHUNK
				      ? (size_t)(src->st_size - off)
				      : CHUNK;
		n = VD_CALL(d, d->ops.read(c, b->node, &vf, buf, want, off));
		if (n < 0) {
			r = n;
			break;
		}
		if (n == 0)
			break; /* shorter than it said: the rest is a hole */
		if (pwrite(b->fd, buf, (size_t)n, off) != n) {
			r = errno ? -errno : -EIO;
			break;
		}
		off += n;
	}
	if (src->st_size > 0 && d->ops.release)
		VD_CALL(d, d->ops.release(c, b->node, &vf));
	free(buf);
	if (r)
		return r;
	if (fstat(b->fd, &st) != 0)
		return -errno;
	mark_clean(b, &st, src);
	b->valid = true;
	b->stale = false;
	return 0;
}

/*
 * Write the body back to the source if it is dirty, then (sync) run the
 * source's fsync. b->lock held. 0 or -EIO, with the reason logged; on
 * failure the body stays dirty.
 */
static int write_back(struct vd_drive *d, const struct vd_ctx *from,
		      struct vd_body *b, bool sync)
{
	struct vd_ctx c;
	struct vd_file vf;
	struct stat st, src;
	char *buf = NULL;
	off_t off = 0;
	int r = 0, n;
	bool opened = false;

	if (!body_dirty(d, b, &st))
		goto out_sync;
	own_ctx(d, from, &c);
	memset(&vf, 0, sizeof(vf));
	vf.backing_fd = -1;
	vf.flags = O_WRONLY;
	memset(&src, 0, sizeof(src));
	if (!d->ops.write || !d->ops.getattr || !(buf = malloc(CHUNK))) {
		r = d->ops.write ? -ENOMEM : -EROFS;
		goto out;
	}
	if (d->ops.open) {
		r = VD_CALL(d, d->ops.open(&c, b->node, &vf));
		if (r)
			goto out;
	}
	opened = true;
	r = VD_CALL(d, d->ops.getattr(&c, b->node, NULL, &src));
	if (r == 0 && src.st_size != st.st_size) {
		src.st_size = st.st_size;
		r = d->ops.setattr
			    ? VD_CALL(d, d->ops.setattr(&c, b->node, &src,
							VD_SET_SIZE, &vf))
			    : -ENOSYS;
	}
	while (r == 0 && off < st.st_size) {
		ssize_t got = pread(b->fd, buf, CHUNK, off);
		if (got <= 0) {
			r = got < 0 ? -errno : 0;
			break;
		}
		for (ssize_t done = 0; r == 0 && done < got;) {
			n = VD_CALL(d,
				    d->ops.write(&c, b->node, &vf, buf + done,
						 (size_t)(got - done),
						 off + done));
			if (n <= 0)
				r = n < 0 ? n : -EIO;
			else
				done += n;
		}
		off += got;
	}
	if (r == 0 && sync && d->ops.fsync)
		r = VD_CALL(d, d->ops.fsync(&c, b->node, 0, &vf));
	if (r == 0)
		r = VD_CALL(d, d->ops.getattr(&c, b->node, NULL, &src));
	if (r == 0) {
		/* What was read from st on: later writes change the mtime
		 * again and are caught by the next write-back. */
		mark_clean(b, &st, &src);
		sync = false; /* done above */
	}
out:
	if (opened && d->ops.release)
		VD_CALL(d, d->ops.release(&c, b->node, &vf));
	free(buf);
	if (r) {
		b->failed = true;
		vd_log(d, "cache: cannot write node %llu back: %s",
		       (unsigned long long)b->node, strerror(-r));
		return -EIO;
	}
out_sync:
	if (sync && d->ops.fsync) {
		own_ctx(d, from, &c);
		memset(&vf, 0, sizeof(vf));
		vf.backing_fd = -1;
		vf.flags = O_WRONLY;
		r = d->ops.open ? VD_CALL(d, d->ops.open(&c, b->node, &vf)) : 0;
		if (r == 0) {
			r = VD_CALL(d, d->ops.fsync(&c, b->node, 0, &vf));
			if (d->ops.release)
				VD_CALL(d, d->ops.release(&c, b->node, &vf));
		}
		if (r)
			return -EIO;
	}
	return 0;
}

/*
 * A referenced body for node holding the file's current bytes, its file
 * open; NULL to serve this open the ordinary way. Opens that share a body
 * in passthrough always get it (refilled in place if stale).
 */
static struct vd_body *body_get(struct vd_drive *d, const struct vd_ctx *c,
				vd_node_t node, int flags)
{
	struct vd_cache *k = d->cache;
	struct vd_body *b;
	struct stat src, st;
	bool dirty;
	int r;

	pthread_mutex_lock(&k->lock);
	b = find(k, node);
	if (!b)
		b = body_new(k, node);
	if (b) {
		b->refs++;
		lru_front(k, b);
	}
	pthread_mutex_unlock(&k->lock);
	if (!b)
		return NULL;
	pthread_mutex_lock(&b->lock);
	if (b->valid && b->fd < 0 && body_open(d, b, false) != 0)
		b->valid = false;
	memset(&src, 0, sizeof(src));
	r = d->ops.getattr ? VD_CALL(d, d->ops.getattr(c, node, NULL, &src))
			   : -ENOSYS;
	if (r || !S_ISREG(src.st_mode))
		goto fail;
	dirty = body_dirty(d, b, &st);
	if (flags & O_TRUNC) {
		/* The source's open truncated it: so does the body. */
		if (ftruncate(b->fd, 0) == 0 && fstat(b->fd, &st) == 0) {
			mark_clean(b, &st, &src);
			set_size(k, b, 0);
			goto ok;
		}
		b->valid = false;
	} else if (dirty) {
		if (b->stale)
			vd_log(d,
			       "cache: node %llu changed in the source "
			       "and here; keeping the local bytes",
			       (unsigned long long)node);
		goto ok;
	} else if (b->valid && !b->stale &&
		   (b->pins || (src.st_size == b->src_size &&
				ts_eq(src.st_mtim, b->src_mtime)))) {
		goto ok;
	}
	if ((uint64_t)src.st_size > k->fill_max)
		goto fail;
	pthread_mutex_lock(&k->lock);
	bool room = make_room(d, (uint64_t)src.st_size > (uint64_t)b->size
					 ? (uint64_t)(src.st_size - b->size)
					 : 0);
	pthread_mutex_unlock(&k->lock);
	if (!room)
		goto fail;
	if (b->fd < 0 && body_open(d, b, true) != 0)
		goto fail;
	r = fill(d, c, b, &src);
	if (r) {
		vd_log(d, "cache: cannot fill node %llu: %s",
		       (unsigned long long)node, strerror(-r));
		goto fail;
	}
ok:
	pthread_mutex_unlock(&b->lock);
	return b;
fail:
	if (b->pins) {
		/* Its opens read what it has; better than refusing. */
		if (b->fd >= 0)
			goto ok;
	}
	b->valid = false;
	if (b->fd >= 0 && b->pins == 0) {
		char name[32];
		body_close(d, b);
		body_name(name, sizeof(name), node);
		unlinkat(k->dirfd, name, 0);
		set_size(k, b, 0);
	}
	pthread_mutex_unlock(&b->lock);
	body_put(d, b);
	return NULL;
}

/* Cache lock held: the referenced body of node, or NULL. */
static struct vd_body *body_ref(struct vd_cache *k, vd_node_t node)
{
	struct vd_body *b = find(k, node);

	if (b)
		b->refs++;
	return b;
}

/* The kernel's backing id for b's file, registered on first use; 0 if
 * the kernel refuses it (without CAP_SYS_ADMIN: then the cache goes off). */
static int body_backing(struct vd_drive *d, fuse_req_t req, struct vd_body *b)
{
	struct vd_cache *k = d->cache;
	int id;

	pthread_mutex_lock(&b->lock);
	if (b->backing_id <= 0 && b->fd >= 0) {
		errno = 0;
		id = fuse_passthrough_open(req, b->fd);
		if (id > 0) {
			b->backing_id = id;
		} else if (errno == EPERM && !k->off) {
			/* Not for this process at all. */
			k->off = true;
			vd_log(d, "cache: off, the kernel refused a backing "
				  "file (needs CAP_SYS_ADMIN)");
		}
	}
	id = b->backing_id;
	pthread_mutex_unlock(&b->lock);
	return id;
}

void vd_cache_open(struct vd_drive *d, fuse_req_t req, const struct vd_ctx *c,
		   fuse_ino_t ino, vd_node_t node, const struct vd_file *vf,
		   struct fuse_file_info *fi, bool create)
{
	struct vd_cache *k = d->cache;
	struct vd_entry *e = vd_nodes_get(&d->nodes, ino);
	struct vd_body *b = NULL;
	struct vd_ctx own;
	bool pt = false, wr = (vf->flags & O_ACCMODE) != O_RDONLY;
	int id = 0;

	if (!c) {
		own_ctx(d, NULL, &own);
		c = &own;
	}

	for (int tries = 0; tries < 3; tries++) {
		pthread_mutex_lock(&d->nodes.lock);
		int mode = e->io_opens ? e->io_mode : IO_NONE;
		pthread_mutex_unlock(&d->nodes.lock);
		/* Opens in passthrough hold their body: always follow. */
		if (mode == IO_FUSE ||
		    (mode == IO_NONE && (k->off || vf->direct_io || create)))
			break;
		if (!b)
			b = body_get(d, c, node, vf->flags);
		/* The backing id first, outside the node table's lock: a
		 * fill or write-back may hold the body a while. */
		id = b ? body_backing(d, req, b) : 0;
		pthread_mutex_lock(&d->nodes.lock);
		if (e->io_opens && e->io_mode != IO_PT) {
			pthread_mutex_unlock(&d->nodes.lock);
			break; /* another open went the ordinary way */
		}
		if (id <= 0 && e->io_opens) {
			pthread_mutex_unlock(&d->nodes.lock);
			continue; /* passthrough opens hold one: get it */
		}
		if (id > 0) {
			e->io_opens++;
			e->io_mode = IO_PT;
			e->had_pt = true;
			pt = true;
		}
		pthread_mutex_unlock(&d->nodes.lock);
		break;
	}
	if (pt) {
		pthread_mutex_lock(&k->lock);
		b->pins++;
		if (wr)
			b->writers = true;
		pthread_mutex_unlock(&k->lock);
		fi->backing_id = id;
		fi->keep_cache = 0;
		/* A reader's close has nothing to write back. */
		fi->noflush = !wr && !d->ops.flush;
		return;
	}
	if (b)
		body_put(d, b);
	pthread_mutex_lock(&d->nodes.lock);
	e->io_opens++;
	e->io_mode = IO_FUSE;
	/* Pages cached before passthrough opens wrote to a body are stale. */
	if (e->had_pt)
		fi->keep_cache = 0;
	pthread_mutex_unlock(&d->nodes.lock);
	/* No FLUSH for it, unless the source wants them: the library answers
	 * flush (for passthrough writers) so the kernel never turns it off. */
	fi->noflush = !d->ops.flush;
	/* What the ordinary way writes makes a body stale. */
	if (wr || (vf->flags & O_TRUNC))
		vd_cache_stale(d, node);
}

void vd_cache_release(struct vd_drive *d, fuse_ino_t ino, vd_node_t node)
{
	struct vd_cache *k = d->cache;
	struct vd_entry *e = vd_nodes_get(&d->nodes, ino);
	struct vd_body *b;
	struct stat st;
	int mode;

	pthread_mutex_lock(&d->nodes.lock);
	mode = e->io_mode;
	if (e->io_opens)
		e->io_opens--;
	pthread_mutex_unlock(&d->nodes.lock);
	if (mode != IO_PT)
		return;
	pthread_mutex_lock(&k->lock);
	b = find(k, node);
	pthread_mutex_unlock(&k->lock);
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	write_back(d, NULL, b, false); /* logged; retried while dirty */
	pthread_mutex_lock(&k->lock);
	bool last = --b->pins == 0;
	bool alone = --b->refs == 0; /* no open on its way holds it */
	if (last)
		b->writers = false;
	pthread_mutex_unlock(&k->lock);
	/* Closed bodies cost no descriptor; a dirty one stays open so the
	 * flusher retries it. */
	if (last && alone && !body_dirty(d, b, &st))
		body_close(d, b);
	pthread_mutex_unlock(&b->lock);
	if (last) {
		pthread_mutex_lock(&k->lock);
		make_room(d, 0);
		pthread_mutex_unlock(&k->lock);
	}
}

int vd_cache_sync(struct vd_drive *d, const struct vd_ctx *c, vd_node_t node,
		  bool sync)
{
	struct vd_cache *k = d->cache;
	struct vd_body *b;
	int r;

	pthread_mutex_lock(&k->lock);
	b = body_ref(k, node);
	pthread_mutex_unlock(&k->lock);
	if (!b)
		return 0;
	pthread_mutex_lock(&b->lock);
	r = b->fd >= 0 ? write_back(d, c, b, sync) : 0;
	pthread_mutex_unlock(&b->lock);
	body_put(d, b);
	return r;
}

bool vd_cache_has_pt(struct vd_drive *d, fuse_ino_t ino)
{
	struct vd_entry *e = vd_nodes_get(&d->nodes, ino);
	bool pt;

	pthread_mutex_lock(&d->nodes.lock);
	pt = e->io_opens && e->io_mode == IO_PT;
	pthread_mutex_unlock(&d->nodes.lock);
	return pt;
}

void vd_cache_set_size(struct vd_drive *d, vd_node_t node,
		       const struct stat *src)
{
	struct vd_cache *k = d->cache;
	struct vd_body *b;
	struct stat st;

	pthread_mutex_lock(&k->lock);
	b = body_ref(k, node);
	pthread_mutex_unlock(&k->lock);
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	if (b->fd >= 0 && b->valid) {
		bool dirty = body_dirty(d, b, NULL);
		if (ftruncate(b->fd, src->st_size) == 0 &&
		    fstat(b->fd, &st) == 0) {
			if (!dirty)
				mark_clean(b, &st, src);
			set_size(k, b, src->st_size);
		} else {
			b->failed = true; /* keep what it has; retried */
		}
	} else {
		pthread_mutex_lock(&k->lock);
		b->stale = true;
		pthread_mutex_unlock(&k->lock);
	}
	pthread_mutex_unlock(&b->lock);
	body_put(d, b);
}

/*
 * fallocate and SEEK_DATA/SEEK_HOLE on an inode in passthrough: the kernel
 * sends them to us, not to the backing file, but the body holds the file.
 * The write-back carries the result to the source. -ENOENT: no body.
 */
int64_t vd_cache_fileop(struct vd_drive *d, vd_node_t node, int op, int mode,
			off_t off, off_t len)
{
	struct vd_cache *k = d->cache;
	struct vd_body *b;
	struct stat st;
	int64_t r;

	pthread_mutex_lock(&k->lock);
	b = body_ref(k, node);
	pthread_mutex_unlock(&k->lock);
	if (!b)
		return -ENOENT;
	pthread_mutex_lock(&b->lock);
	if (b->fd < 0)
		r = -ENOENT;
	else if (op == VD_CACHE_FALLOCATE)
		r = fallocate(b->fd, mode, off, len) ? -errno : 0;
	else
		r = lseek(b->fd, off, mode) < 0 ? -errno
						: lseek(b->fd, off, mode);
	if (op == VD_CACHE_FALLOCATE && r == 0 && fstat(b->fd, &st) == 0)
		set_size(k, b, st.st_size);
	pthread_mutex_unlock(&b->lock);
	body_put(d, b);
	return r;
}

void vd_cache_stale(struct vd_drive *d, vd_node_t node)
{
	struct vd_cache *k = d->cache;
	struct vd_body *b;

	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	b = find(k, node);
	if (b)
		b->stale = true;
	pthread_mutex_unlock(&k->lock);
}

void vd_cache_fix_attr(struct vd_drive *d, vd_node_t node, struct stat *st)
{
	struct vd_cache *k = d->cache;
	struct vd_body *b;
	struct stat bs;

	if (!k || !S_ISREG(st->st_mode))
		return;
	pthread_mutex_lock(&k->lock);
	b = find(k, node);
	/* Only a body open for writing can hold what the source lacks;
	 * fstat under the lock, as fd only changes under it. */
	if (b && b->pins && b->fd >= 0 && fstat(b->fd, &bs) == 0 &&
	    (bs.st_size != b->clean_size ||
	     !ts_eq(bs.st_mtim, b->clean_mtime))) {
		st->st_size = bs.st_size;
		st->st_blocks = bs.st_blocks;
		st->st_mtim = bs.st_mtim;
		st->st_ctim = bs.st_ctim;
	}
	pthread_mutex_unlock(&k->lock);
}

void vd_cache_forget(struct vd_drive *d, vd_node_t node)
{
	struct vd_cache *k = d->cache;
	struct vd_ctx c;
	struct stat st;
	struct vd_body *b;
	int r;

	pthread_mutex_lock(&k->lock);
	b = find(k, node);
	pthread_mutex_unlock(&k->lock);
	if (!b || !d->ops.getattr)
		return;
	/* Removed from the source: its body is garbage (and its node
	 * handle may name another file later). */
	own_ctx(d, NULL, &c);
	memset(&st, 0, sizeof(st));
	r = VD_CALL(d, d->ops.getattr(&c, node, NULL, &st));
	if (r == 0 && st.st_nlink > 0)
		return;
	pthread_mutex_lock(&k->lock);
	b = find(k, node);
	if (b && b->refs == 0 && b->pins == 0 &&
	    pthread_mutex_trylock(&b->lock) == 0) {
		pthread_mutex_unlock(&b->lock);
		body_drop(d, b);
	}
	pthread_mutex_unlock(&k->lock);
}

/* The delayed write-back: bodies open for writing, idle a little. */
static void *flusher(void *arg)
{
	struct vd_drive *d = arg;
	struct vd_cache *k = d->cache;
	struct timespec ts;

	pthread_mutex_lock(&k->lock);
	while (!k->stopping) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&k->cv, &k->lock, &ts);
		if (k->stopping)
			break;
		for (struct vd_body *b = k->head; b; b = b->next) {
			struct stat st;
			if (!b->pins || !b->writers || b->fd < 0 ||
			    fstat(b->fd, &st) != 0 ||
			    (st.st_size == b->clean_size &&
			     ts_eq(st.st_mtim, b->clean_mtime)) ||
			    st.st_mtim.tv_sec > ts.tv_sec - 1 - FLUSH_EVERY_S)
				continue;
			b->refs++;
			pthread_mutex_unlock(&k->lock);
			if (pthread_mutex_trylock(&b->lock) == 0) {
				write_back(d, NULL, b, false);
				pthread_mutex_unlock(&b->lock);
			}
			pthread_mutex_lock(&k->lock);
			b->refs--;
			break; /* the list may have changed: next round */
		}
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

/* Whether a write right after reading the times changes the mtime (the
 * kernel's multigrain timestamps), even after an xattr change. */
static bool probe_mgtime(int dirfd)
{
	const char *name = ".probe";
	struct stat a, b;
	bool ok = true;
	int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
			0600);

	if (fd < 0)
		return false;
	for (int i = 0; i < 3 && ok; i++) {
		if (pwrite(fd, "x", 1, 0) != 1 || fstat(fd, &a) != 0)
			ok = false;
		fsetxattr(fd, META_XATTR, "x", 1, 0);
		if (!ok || pwrite(fd, "y", 1, 0) != 1 || fstat(fd, &b) != 0 ||
		    ts_eq(a.st_mtim, b.st_mtim))
			ok = false;
	}
	close(fd);
	unlinkat(dirfd, name, 0);
	return ok;
}

/* Bodies left by an earlier run: keep those whose xattr still matches. */
static void scan(struct vd_drive *d)
{
	struct vd_cache *k = d->cache;
	int fd = dup(k->dirfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	size_t kept = 0, dropped = 0;

	if (!dir) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(dir))) {
		struct meta m;
		struct stat st;
		char *end;
		unsigned long long node;
		struct vd_body *b;
		int bfd;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strcmp(de->d_name, ".lock"))
			continue;
		errno = 0;
		node = strtoull(de->d_name, &end, 16);
		bfd = -1;
		if (*end || strlen(de->d_name) != 16 || errno || !node)
			goto drop;
		bfd = openat(k->dirfd, de->d_name,
			     O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (bfd < 0 || fstat(bfd, &st) != 0 || !S_ISREG(st.st_mode) ||
		    fgetxattr(bfd, META_XATTR, &m, sizeof(m)) != sizeof(m) ||
		    m.magic != META_MAGIC || m.node != node ||
		    m.size != st.st_size || m.sec != st.st_mtim.tv_sec ||
		    m.nsec != st.st_mtim.tv_nsec)
			goto drop;
		close(bfd);
		b = find(k, node) ? NULL : body_new(k, node);
		if (!b)
			continue;
		b->valid = true;
		b->size = st.st_size;
		k->used += (uint64_t)st.st_size;
		b->clean_size = st.st_size;
		b->clean_mtime = st.st_mtim;
		b->src_size = m.src_size;
		b->src_mtime.tv_sec = m.src_sec;
		b->src_mtime.tv_nsec = m.src_nsec;
		kept++;
		continue;
	drop:
		if (bfd >= 0)
			close(bfd);
		unlinkat(k->dirfd, de->d_name, 0);
		dropped++;
	}
	closedir(dir);
	make_room(d, 0);
	if (kept || dropped)
		vd_log(d, "cache: %zu bodies kept, %zu dropped", kept, dropped);
}

/* mkdir -p, the last part with mode 0700. */
static int mkdirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * The default folder: $VDRIVE_CACHE_DIR, else per user (XDG cache, or
 * /var/cache for root); one subfolder per drive named after its fsname
 * (the source's spec).
 */
static char *default_dir(struct vd_drive *d)
{
	const char *fs = d->fsname ? d->fsname : "vdrive";
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	const char *env = getenv("VDRIVE_CACHE_DIR");
	char base[PATH_MAX - 64], *out;
	uint64_t h = 1469598103934665603ULL;
	char tag[24];
	size_t i;

	if (env && *env == '/')
		snprintf(base, sizeof(base), "%s", env);
	else if (geteuid() == 0)
		snprintf(base, sizeof(base), "/var/cache/vdrive");
	else if (xdg && *xdg == '/')
		snprintf(base, sizeof(base), "%s/vdrive", xdg);
	else if (home && *home == '/')
		snprintf(base, sizeof(base), "%s/.cache/vdrive", home);
	else
		return NULL;
	for (const char *p = fs; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	/* A readable head of the name, then a hash of all of it. */
	for (i = 0; i < sizeof(tag) - 1 && fs[i]; i++)
		tag[i] = (fs[i] == '/' || fs[i] == '.' || fs[i] == ':') ? '_'
									: fs[i];
	tag[i] = '\0';
	if (asprintf(&out, "%s/%s-%016llx", base, tag, (unsigned long long)h) <
	    0)
		return NULL;
	return out;
}

int vd_cache_setup(struct vd_drive *d)
{
	struct vd_cache *k;
	struct statvfs sv;
	struct stat st;
	char *dir;
	int r;

	dir = d->cache_dir ? strdup(d->cache_dir) : default_dir(d);
	if (!dir)
		return -ENOMEM;
	k = calloc(1, sizeof(*k));
	if (!k) {
		free(dir);
		return -ENOMEM;
	}
	k->dir = dir;
	k->dirfd = k->lockfd = -1;
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->cv, NULL);
	d->cache = k;
	r = mkdirs(dir);
	if (r)
		goto fail;
	k->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (k->dirfd < 0 || fstat(k->dirfd, &st) != 0) {
		r = -errno;
		goto fail;
	}
	/* Bodies are the drive's data: its owner only. */
	if (st.st_uid != geteuid()) {
		r = -EPERM;
		goto fail;
	}
	if ((st.st_mode & 077) && fchmod(k->dirfd, 0700) != 0) {
		r = -errno;
		goto fail;
	}
	k->lockfd =
		openat(k->dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (k->lockfd < 0) {
		r = -errno;
		goto fail;
	}
	if (flock(k->lockfd, LOCK_EX | LOCK_NB) != 0) {
		r = -errno;
		vd_log(d, "cache: %s is in use by another drive", dir);
		goto fail;
	}
	k->limit = d->cache_size;
	if (!k->limit && fstatvfs(k->dirfd, &sv) == 0) {
		/* A quarter of the folder's file system, at most 8 GiB. */
		k->limit = (uint64_t)sv.f_blocks * sv.f_frsize / 4;
		if (k->limit > (8ULL << 30))
			k->limit = 8ULL << 30;
	}
	k->fill_max = d->cache_fill_max;
	k->mgtime = probe_mgtime(k->dirfd);
	scan(d);
	if (pthread_create(&k->flusher, NULL, flusher, d) == 0)
		k->flusher_on = true;
	return 0;
fail:
	vd_log(d, "cache: off, %s: %s", dir, strerror(-r));
	vd_cache_free(d);
	return r;
}

void vd_cache_free(struct vd_drive *d)
{
	struct vd_cache *k = d->cache;

	if (!k)
		return;
	if (k->flusher_on) {
		pthread_mutex_lock(&k->lock);
		k->stopping = true;
		pthread_cond_signal(&k->cv);
		pthread_mutex_unlock(&k->lock);
		pthread_join(k->flusher, NULL);
	}
	/* Last chance for bodies still dirty (the drive was stopped with
	 * files open); the session is gone, so no backing ids to close. */
	while (k->head) {
		struct vd_body *b = k->head;
		pthread_mutex_lock(&b->lock);
		if (b->fd >= 0 && body_dirty(d, b, NULL))
			write_back(d, NULL, b, true);
		pthread_mutex_unlock(&b->lock);
		lru_unlink(k, b);
		if (b->fd >= 0)
			close(b->fd);
		pthread_mutex_destroy(&b->lock);
		free(b);
	}
	if (k->lockfd >= 0)
		close(k->lockfd);
	if (k->dirfd >= 0)
		close(k->dirfd);
	pthread_mutex_destroy(&k->lock);
	pthread_cond_destroy(&k->cv);
	free(k->dir);
	free(k);
	d->cache = NULL;
}

#else /* no passthrough in this libfuse: no cache */

int vd_cache_setup(struct vd_drive *d)
{
	(void)d;
	return -EOPNOTSUPP;
}

void vd_cache_free(struct vd_drive *d)
{
	(void)d;
}

void vd_cache_open(struct vd_drive *d, fuse_req_t req, const struct vd_ctx *c,
		   fuse_ino_t ino, vd_node_t node, const struct vd_file *vf,
		   struct fuse_file_info *fi, bool create)
{
	(void)d, (void)req, (void)c, (void)ino, (void)node, (void)vf;
	(void)fi, (void)create;
}

void vd_cache_release(struct vd_drive *d, fuse_ino_t ino, vd_node_t node)
{
	(void)d, (void)ino, (void)node;
}

int vd_cache_sync(struct vd_drive *d, const struct vd_ctx *c, vd_node_t node,
		  bool sync)
{
	(void)d, (void)c, (void)node, (void)sync;
	return 0;
}

bool vd_cache_has_pt(struct vd_drive *d, fuse_ino_t ino)
{
	(void)d, (void)ino;
	return false;
}

void vd_cache_set_size(struct vd_drive *d, vd_node_t node,
		       const struct stat *src)
{
	(void)d, (void)node, (void)src;
}

int64_t vd_cache_fileop(struct vd_drive *d, vd_node_t node, int op, int mode,
			off_t off, off_t len)
{
	(void)d, (void)node, (void)op, (void)mode, (void)off, (void)len;
	return -ENOENT;
}

void vd_cache_stale(struct vd_drive *d, vd_node_t node)
{
	(void)d, (void)node;
}

void vd_cache_fix_attr(struct vd_drive *d, vd_node_t node, struct stat *st)
{
	(void)d, (void)node, (void)st;
}

void vd_cache_forget(struct vd_drive *d, vd_node_t node)
{
	(void)d, (void)node;
}

#endif /* FUSE_CAP_PASSTHROUGH */
