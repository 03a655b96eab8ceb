/*
 * cache_drive.c - the body cache against a source the test controls: one
 * file whose bytes the test changes behind the drive (then invalidates),
 * and whose write callback it can make fail. Prints TAP.
 *
 *   cache_drive MNT CACHEDIR
 *
 * Cases: a cached body is served until the source invalidates the node,
 * then refilled; a failed write-back fails fsync and close with EIO and
 * keeps the bytes, which a later fsync delivers; a writer that stays open
 * is written back after a short delay; without CAP_SYS_ADMIN (no backing
 * files) the drive runs without cache and without errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vdrive.h"

#define FILE_NODE 2

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char data[4096];
static size_t len;
static struct timespec mtime;
static int fail_writes;
static int ntest, nfail;

static void ok(int cond, const char *fmt, ...)
{
	va_list ap;

	ntest++;
	nfail += !cond;
	printf("%sok %d - ", cond ? "" : "not ", ntest);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void fill_stat(vd_node_t node, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = node;
	st->st_nlink = node == VD_ROOT ? 2 : 1;
	st->st_mode = node == VD_ROOT ? S_IFDIR | 0755 : S_IFREG | 0644;
	st->st_size = node == VD_ROOT ? 0 : (off_t)len;
	st->st_mtim = mtime;
}

static int cd_lookup(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, vd_node_t *node, struct stat *st)
{
	(void)ctx;
	if (parent != VD_ROOT || strcmp(name, "f") != 0)
		return -ENOENT;
	*node = FILE_NODE;
	pthread_mutex_lock(&lock);
	fill_stat(*node, st);
	pthread_mutex_unlock(&lock);
	return 0;
}

static int cd_getattr(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi, struct stat *st)
{
	(void)ctx, (void)fi;
	pthread_mutex_lock(&lock);
	fill_stat(node, st);
	pthread_mutex_unlock(&lock);
	return 0;
}

static int cd_setattr(const struct vd_ctx *ctx, vd_node_t node, struct stat *st,
		      int to_set, struct vd_file *fi)
{
	(void)ctx, (void)fi;
	pthread_mutex_lock(&lock);
	if (to_set & VD_SET_SIZE) {
		size_t n = (size_t)st->st_size;
		if (n > sizeof(data)) {
			pthread_mutex_unlock(&lock);
			return -EFBIG;
		}
		if (n > len)
			memset(data + len, 0, n - len);
		len = n;
		clock_gettime(CLOCK_REALTIME, &mtime);
	}
	fill_stat(node, st);
	pthread_mutex_unlock(&lock);
	return 0;
}

static int cd_read(const struct vd_ctx *ctx, vd_node_t node, struct vd_file *fi,
		   char *buf, size_t size, off_t off)
{
	size_t n = 0;

	(void)ctx, (void)node, (void)fi;
	pthread_mutex_lock(&lock);
	if ((size_t)off < len) {
		n = len - (size_t)off < size ? len - (size_t)off : size;
		memcpy(buf, data + off, n);
	}
	pthread_mutex_unlock(&lock);
	return (int)n;
}

static int cd_write(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, const char *buf, size_t size, off_t off)
{
	(void)ctx, (void)node, (void)fi;
	pthread_mutex_lock(&lock);
	if (fail_writes || (size_t)off + size > sizeof(data)) {
		pthread_mutex_unlock(&lock);
		return fail_writes ? -EIO : -EFBIG;
	}
	if ((size_t)off > len)
		memset(data + len, 0, (size_t)off - len);
	memcpy(data + off, buf, size);
	if ((size_t)off + size > len)
		len = (size_t)off + size;
	clock_gettime(CLOCK_REALTIME, &mtime);
	pthread_mutex_unlock(&lock);
	return (int)size;
}

static int cd_readdir(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi, off_t off, vd_fill_fn fill, void *buf)
{
	static const char *names[] = {".", "..", "f"};
	struct stat st;

	(void)ctx, (void)fi;
	for (off_t i = off; i < 3; i++) {
		pthread_mutex_lock(&lock);
		fill_stat(i == 2 ? FILE_NODE : node, &st);
		pthread_mutex_unlock(&lock);
		if (fill(buf, names[i], 0, &st, i + 1))
			break;
	}
	return 0;
}

static const struct vd_ops cd_ops = {
	.flags = VD_OPS_THREAD_SAFE | VD_OPS_CACHE,
	.lookup = cd_lookup,
	.getattr = cd_getattr,
	.setattr = cd_setattr,
	.read = cd_read,
	.write = cd_write,
	.readdir = cd_readdir,
};

/* Set the source's bytes (as an outside change would), keeping the size
 * and mtime when asked, so only an invalidation can tell. */
static void set_data(const char *s, int touch)
{
	pthread_mutex_lock(&lock);
	len = strlen(s);
	memcpy(data, s, len);
	if (touch)
		clock_gettime(CLOCK_REALTIME, &mtime);
	pthread_mutex_unlock(&lock);
}

static int source_is(const char *s)
{
	int r;

	pthread_mutex_lock(&lock);
	r = len == strlen(s) && memcmp(data, s, len) == 0;
	pthread_mutex_unlock(&lock);
	return r;
}

/* The file's bytes through the mount, NUL-terminated, or "" on error. */
static const char *cat(const char *path)
{
	static char buf[4097];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static int bodies(const char *dir)
{
	char cmd[512];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd),
		 "find '%s' -maxdepth 1 -type f -regex '.*/[0-9a-f]*' | wc -l",
		 dir);
	p = popen(cmd, "r");
	if (p) {
		if (fscanf(p, "%d", &n) != 1)
			n = -1;
		pclose(p);
	}
	return n;
}

/* Raise or drop CAP_SYS_ADMIN in this thread's effective set (threads
 * started later inherit it). */
static int set_sys_admin(int on)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct c[2];

	if (syscall(SYS_capget, &h, c) != 0)
		return -errno;
	if (on)
		c[0].effective |= 1u << CAP_SYS_ADMIN;
	else
		c[0].effective &= ~(1u << CAP_SYS_ADMIN);
	return syscall(SYS_capset, &h, c) == 0 ? 0 : -errno;
}

/* Mount (with every capability: mount(2) needs them), then serve from
 * threads that have CAP_SYS_ADMIN only when cap. */
static struct vd_drive *start(const char *mnt, const char *opts, int cap)
{
	struct vd_drive *d = NULL;
	int r;

	if (vd_drive_new(&cd_ops, sizeof(cd_ops), NULL, &d) ||
	    vd_drive_set_options(d, opts) || vd_drive_mount(d, mnt))
		r = -1;
	else if (!cap && set_sys_admin(0) != 0)
		r = -1;
	else
		r = vd_drive_start(d);
	if (!cap)
		set_sys_admin(1);
	if (r) {
		fprintf(stderr, "cannot start the drive: %s\n",
			vd_drive_error(d));
		vd_drive_free(d);
		return NULL;
	}
	return d;
}

int main(int argc, char **argv)
{
	char path[512], opts[600];
	struct vd_drive *d;
	const char *mnt, *cache;
	int fd, r, e;

	if (argc != 3) {
		fprintf(stderr, "usage: %s MNT CACHEDIR\n", argv[0]);
		return 2;
	}
	mnt = argv[1];
	cache = argv[2];
	mkdir(mnt, 0755);
	snprintf(path, sizeof(path), "%s/f", mnt);
	snprintf(opts, sizeof(opts), "cache=%s,cache_size=1M,attr_timeout=0",
		 cache);
	set_data("one", 1);
	d = start(mnt, opts, 1);
	if (!d) {
		printf("1..0 # SKIP cannot mount\n");
		return 0;
	}

	ok(!strcmp(cat(path), "one"), "the file reads");
	ok(bodies(cache) == 1, "its body is in the cache folder");
	set_data("ONE", 0);
	ok(!strcmp(cat(path), "one"),
	   "changed in the source, same size and mtime: the body is served");
	r = vd_drive_invalidate_node(d, FILE_NODE, 0, 0);
	ok(r == 0 || r == -ENOENT, "vd_drive_invalidate_node: %d", r);
	ok(!strcmp(cat(path), "ONE"),
	   "after invalidation the next open reads "
	   "the new bytes (got '%s')",
	   cat(path));
	set_data("one more", 1);
	ok(!strcmp(cat(path), "one more"),
	   "a new size and mtime in the source refill without invalidation");

	/* A failed write-back. */
	fail_writes = 1;
	fd = open(path, O_RDWR);
	r = pwrite(fd, "zzz", 3, 0) == 3 ? fsync(fd) : -2;
	e = errno;
	ok(r == -1 && e == EIO,
	   "fsync fails with EIO when the write-back "
	   "fails (%d, %s)",
	   r, strerror(e));
	r = close(fd);
	e = errno;
	ok(r == -1 && e == EIO, "close fails with EIO too (%d, %s)", r,
	   strerror(e));
	ok(source_is("one more"), "the source was not changed");
	ok(!strcmp(cat(path), "zzz more"), "the written bytes are kept");
	fail_writes = 0;
	fd = open(path, O_RDWR);
	r = fsync(fd);
	ok(r == 0 && source_is("zzz more"),
	   "once the source takes writes, fsync delivers them");
	close(fd);

	/* Delayed write-back: a writer that stays open. */
	fd = open(path, O_RDWR);
	r = (int)pwrite(fd, "later", 5, 0);
	for (int i = 0; i < 100 && !source_is("laterore"); i++)
		usleep(100000);
	ok(r == 5 && source_is("laterore"),
	   "an open writer's bytes reach the source within seconds");
	close(fd);
	vd_drive_free(d);

	/* No CAP_SYS_ADMIN: no backing files, so no cache; no errors. */
	r = set_sys_admin(0);
	if (r || set_sys_admin(1) != 0) {
		ok(1, "no CAP_SYS_ADMIN # SKIP cannot drop it: %s",
		   strerror(-r));
	} else {
		snprintf(opts, sizeof(opts), "cache=%s/nocap,attr_timeout=0",
			 cache);
		d = start(mnt, opts, 0);
		if (!d) {
			ok(0, "mount without CAP_SYS_ADMIN in the workers");
		} else {
			set_data("plain", 1);
			ok(!strcmp(cat(path), "plain"),
			   "without CAP_SYS_ADMIN the file reads");
			fd = open(path, O_RDWR);
			r = fd >= 0 && pwrite(fd, "P", 1, 0) == 1 &&
			    fsync(fd) == 0 && close(fd) == 0;
			ok(r && source_is("Plain"),
			   "... and writes go to the source");
			vd_drive_free(d);
		}
	}
	printf("1..%d\n", ntest);
	fflush(stdout); /* before LeakSanitizer's exit, in sanitizer builds */
	return nfail ? 1 : 0;
}
