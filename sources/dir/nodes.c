/*
 * nodes.c - dir:'s node table and its descriptor cache.
 *
 * Nodes keyed by (st_dev, st_ino) in a hash table, each holding the
 * kernel file handle of its inode; O_PATH descriptors made from handles
 * on demand and kept in a bounded LRU (DIR_FD_CACHE); finding the node
 * of a name. dir.c's design note says why.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "dir/dir.h"

/* Where inode (dev, ino) goes in the node table. */
static uint64_t hash_key(dev_t dev, ino_t ino)
{
	uint64_t k = (uint64_t)ino ^ ((uint64_t)dev << 47) ^ (uint64_t)dev;

	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return k;
}

/* The /proc path that reaches fd's inode, for calls with no fd form. */
void dir_proc_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

void dir_lru_unlink(struct dnode *n)
{
	n->lprev->lnext = n->lnext;
	n->lnext->lprev = n->lprev;
}

static void lru_push(struct dir_src *s, struct dnode *n)
{
	n->lnext = s->lru.lnext;
	n->lprev = &s->lru;
	s->lru.lnext->lprev = n;
	s->lru.lnext = n;
}

void dir_node_free(struct dnode *n)
{
	free(n->fh);
	free(n);
}

/*
 * Drop cached descriptors beyond DIR_FD_CACHE, oldest first, skipping
 * pinned ones. Called under the lock; the descriptors go into out (at
 * most max) to be closed after it is released. Returns their count.
 */
static int lru_trim(struct dir_src *s, int *out, int max)
{
	struct dnode *n = s->lru.lprev;
	int k = 0;

	while (s->nfds > DIR_FD_CACHE && n != &s->lru && k < max) {
		struct dnode *prev = n->lprev;
		if (n->pins == 0) {
			dir_lru_unlink(n);
			out[k++] = n->fd;
			n->fd = -1;
			s->nfds--;
		}
		n = prev;
	}
	return k;
}

/*
 * Pin node n's O_PATH descriptor into *fd, opening it from the handle if
 * it is not cached. Every successful call is paired with dir_unpin().
 */
int dir_pin(struct dir_src *s, struct dnode *n, int *fd)
{
	union dir_fh h;
	int mfd, nfd, old[8], k = 0;

	if (n == &s->root) {
		*fd = s->root.fd;
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	n->pins++;
	if (n->fd >= 0) {
		if (!n->dead && n->fh) { /* in the LRU */
			dir_lru_unlink(n);
			lru_push(s, n);
		}
		*fd = n->fd;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	memcpy(&h, n->fh, sizeof(*n->fh) + n->fh->handle_bytes);
	mfd = s->mounts[n->mnt].fd;
	pthread_mutex_unlock(&s->lock);

	nfd = open_by_handle_at(mfd, &h.h, O_PATH | O_CLOEXEC);
	int err = errno;

	pthread_mutex_lock(&s->lock);
	if (nfd < 0) {
		n->pins--;
		bool gone = n->dead && n->pins == 0;
		pthread_mutex_unlock(&s->lock);
		if (gone)
			dir_node_free(n);
		return -err;
	}
	if (n->fd >= 0) {
		old[k++] = nfd; /* another thread was quicker */
	} else if (n->dead) {
		n->fd = nfd; /* closed by the unpin that frees n */
	} else {
		n->fd = nfd;
		lru_push(s, n);
		s->nfds++;
		k += lru_trim(s, old + k, 7);
	}
	*fd = n->fd;
	pthread_mutex_unlock(&s->lock);
	while (k--)
		close(old[k]);
	return 0;
}

/* Release a pin taken by dir_pin(); frees a node forgotten meanwhile. */
void dir_unpin(struct dir_src *s, struct dnode *n)
{
	bool gone;

	if (n == &s->root)
		return;
	pthread_mutex_lock(&s->lock);
	gone = --n->pins == 0 && n->dead;
	pthread_mutex_unlock(&s->lock);
	if (gone) {
		if (n->fd >= 0)
			close(n->fd);
		dir_node_free(n);
	}
}

/*
 * Index of the mount with id mnt_id in s->mounts, registering it with a
 * descriptor on it (dfd/name, or without name the file dfd itself).
 */
static int mount_index(struct dir_src *s, int mnt_id, int dfd, const char *name)
{
	int i, fd;

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->nmounts; i++) {
		if (s->mounts[i].id == mnt_id) {
			pthread_mutex_unlock(&s->lock);
			return i;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (name) {
		fd = openat(dfd, name, MOUNT_FD_FLAGS);
	} else {
		char path[64];
		dir_proc_path(path, sizeof(path), dfd);
		fd = open(path, MOUNT_FD_FLAGS);
	}
	if (fd < 0)
		return -errno;
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->nmounts; i++) {
		if (s->mounts[i].id == mnt_id)
			break;
	}
	if (i == s->nmounts) {
		if (i == DIR_MAX_MOUNTS) {
			pthread_mutex_unlock(&s->lock);
			close(fd);
			return -EMFILE;
		}
		s->mounts[i].id = mnt_id;
		s->mounts[i].fd = fd;
		s->nmounts++;
		fd = -1;
	}
	pthread_mutex_unlock(&s->lock);
	if (fd >= 0)
		close(fd);
	return i;
}

static bool same_fh(const struct file_handle *a, const struct file_handle *b)
{
	return a->handle_bytes == b->handle_bytes &&
	       a->handle_type == b->handle_type &&
	       !memcmp(a->f_handle, b->f_handle, a->handle_bytes);
}

/* The node for inode (dev, ino) in the table, or NULL. s->lock held. */
static struct dnode *table_find(struct dir_src *s, dev_t dev, ino_t ino)
{
	uint64_t h = hash_key(dev, ino);
	struct vd_hlink *l;

	for (l = vd_htab_first(&s->nodes, h); l; l = l->next) {
		struct dnode *n = vd_container_of(l, struct dnode, hl);

		if (l->hash == h && n->dev == dev && n->ino == ino)
			return n;
	}
	return NULL;
}

/* Put fresh, not in the table yet, into it. s->lock held. */
static void table_add(struct dir_src *s, struct dnode *fresh)
{
	vd_htab_add(&s->nodes, &fresh->hl, hash_key(fresh->dev, fresh->ino));
}

/*
 * The node for the inode st describes, whose handle is h on mount mnt
 * (an index); made if new. A known inode with another handle (its number
 * was reused) takes the new one.
 */
static int node_get(struct dir_src *s, const struct file_handle *h, int mnt,
		    const struct stat *st, const struct statx_timestamp *bt,
		    struct dnode **out)
{
	size_t hsz = sizeof(*h) + h->handle_bytes;
	struct file_handle *copy = malloc(hsz);
	struct dnode *n, *fresh = NULL;
	int stale = -1;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, h, hsz);
	if (st->st_dev == s->root.dev && st->st_ino == s->root.ino) {
		free(copy);
		*out = &s->root;
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	n = table_find(s, st->st_dev, st->st_ino);
	if (n) {
		if (same_fh(n->fh, h)) {
			n->btime = *bt;
			pthread_mutex_unlock(&s->lock);
			free(copy);
			*out = n;
			return 0;
		}
		free(n->fh);
		n->fh = copy;
		n->mnt = mnt;
		n->link = S_ISLNK(st->st_mode);
		n->btime = *bt;
		if (n->fd >= 0 && n->pins == 0) {
			dir_lru_unlink(n);
			stale = n->fd;
			n->fd = -1;
			s->nfds--;
		}
		pthread_mutex_unlock(&s->lock);
		if (stale >= 0)
			close(stale);
		*out = n;
		return 0;
	}
	pthread_mutex_unlock(&s->lock);

	fresh = calloc(1, sizeof(*fresh));
	if (!fresh) {
		free(copy);
		return -ENOMEM;
	}
	fresh->dev = st->st_dev;
	fresh->ino = st->st_ino;
	fresh->fd = -1;
	fresh->mnt = mnt;
	fresh->link = S_ISLNK(st->st_mode);
	fresh->btime = *bt;
	fresh->fh = copy;

	pthread_mutex_lock(&s->lock);
	n = table_find(s, st->st_dev, st->st_ino);
	if (!n) {
		table_add(s, fresh);
		n = fresh;
		fresh = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	if (fresh)
		dir_node_free(fresh); /* another thread made it first */
	*out = n;
	return 0;
}

/*
 * The node for dfd/name (name NULL: for the file dfd itself), with its
 * attributes in st.
 */
/*
 * statx of dfd/name (name "": dfd itself) into st, with the birth time
 * in bt (tv_sec -1 when the file system keeps none).
 */
static int stat_bt(int dfd, const char *name, struct stat *st,
		   struct statx_timestamp *bt)
{
	struct statx x;
	int flags = AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH);

	if (statx(dfd, name, flags, STATX_BASIC_STATS | STATX_BTIME, &x) < 0)
		return -errno;
	memset(st, 0, sizeof(*st));
	st->st_dev = makedev(x.stx_dev_major, x.stx_dev_minor);
	st->st_ino = x.stx_ino;
	st->st_mode = x.stx_mode;
	st->st_nlink = x.stx_nlink;
	st->st_uid = x.stx_uid;
	st->st_gid = x.stx_gid;
	st->st_rdev = makedev(x.stx_rdev_major, x.stx_rdev_minor);
	st->st_size = (off_t)x.stx_size;
	st->st_blksize = x.stx_blksize;
	st->st_blocks = (blkcnt_t)x.stx_blocks;
	st->st_atim.tv_sec = x.stx_atime.tv_sec;
	st->st_atim.tv_nsec = x.stx_atime.tv_nsec;
	st->st_mtim.tv_sec = x.stx_mtime.tv_sec;
	st->st_mtim.tv_nsec = x.stx_mtime.tv_nsec;
	st->st_ctim.tv_sec = x.stx_ctime.tv_sec;
	st->st_ctim.tv_nsec = x.stx_ctime.tv_nsec;
	*bt = x.stx_btime;
	if (!(x.stx_mask & STATX_BTIME))
		bt->tv_sec = -1;
	return 0;
}

/* The known node for st's inode if its birth time says it is the same
 * inode (not a reuse of the number), else NULL. */
static struct dnode *node_known(struct dir_src *s, const struct stat *st,
				const struct statx_timestamp *bt)
{
	struct dnode *n;

	if (bt->tv_sec == -1)
		return NULL;
	if (st->st_dev == s->root.dev && st->st_ino == s->root.ino)
		return &s->root;
	pthread_mutex_lock(&s->lock);
	n = table_find(s, st->st_dev, st->st_ino);
	if (n &&
	    (n->btime.tv_sec != bt->tv_sec || n->btime.tv_nsec != bt->tv_nsec))
		n = NULL;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/*
 * dir_node_at() without handles: the node for st's inode holds an O_PATH
 * descriptor of dfd/name (name NULL: of the file dfd itself). A known
 * inode takes the new descriptor (its number may have been reused).
 */
static int node_at_fd(struct dir_src *s, int dfd, const char *name,
		      const struct stat *st, const struct statx_timestamp *bt,
		      struct dnode **out)
{
	struct dnode *n, *fresh;
	char path[64];
	int fd, old = -1;

	if (st->st_dev == s->root.dev && st->st_ino == s->root.ino) {
		*out = &s->root;
		return 0;
	}
	if (name) {
		fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	} else {
		dir_proc_path(path, sizeof(path), dfd);
		fd = open(path, O_PATH | O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	fresh = calloc(1, sizeof(*fresh));
	if (!fresh) {
		close(fd);
		return -ENOMEM;
	}
	fresh->dev = st->st_dev;
	fresh->ino = st->st_ino;
	fresh->link = S_ISLNK(st->st_mode);
	fresh->btime = *bt;
	fresh->fd = fd;
	pthread_mutex_lock(&s->lock);
	n = table_find(s, st->st_dev, st->st_ino);
	if (n) {
		if (n->pins == 0) {
			old = n->fd;
			n->fd = fd;
			n->btime = *bt;
			n->link = fresh->link;
		} else {
			old = fd; /* in use: keep the one it has */
		}
	} else {
		table_add(s, fresh);
		n = fresh;
		fresh = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	if (old >= 0)
		close(old);
	free(fresh);
	*out = n;
	return 0;
}

/*
 * The node for dfd/name (name NULL: for the file dfd itself), with its
 * attributes in st.
 */
int dir_node_at(struct dir_src *s, int dfd, const char *name,
		struct dnode **out, struct stat *st)
{
	struct statx_timestamp bt;
	union dir_fh h;
	int mnt_id, mnt, r;

	r = stat_bt(dfd, name ? name : "", st, &bt);
	if (r)
		return r;
	*out = node_known(s, st, &bt);
	if (*out)
		return 0;
	if (s->nohandles)
		return node_at_fd(s, dfd, name, st, &bt, out);
	h.h.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(dfd, name ? name : "", &h.h, &mnt_id,
			      name ? 0 : AT_EMPTY_PATH) < 0)
		return -errno;
	mnt = mount_index(s, mnt_id, dfd, name);
	if (mnt < 0)
		return mnt;
	return node_get(s, &h.h, mnt, st, &bt, out);
}
