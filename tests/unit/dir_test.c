/*
 * dir_test.c - the dir: source's callbacks, called directly on a temp
 * folder (no mount). Prints TAP. Needs root (ownership and handles).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sources.h"
#include "tap.h"

/* Open the source for spec into ops and ctx; its message as a diagnostic. */
static int src_open(const char *spec)
{
	char err[256] = "";
	int r = tap_open(spec, err, sizeof(err));

	if (r)
		printf("# %s\n", err);
	return r;
}

/* Create name in parent with mode and write text into it; closes it. */
static int make_file(vd_node_t parent, const char *name, mode_t mode,
		     const char *text, vd_node_t *node, struct stat *st)
{
	struct vd_file fi = {.flags = O_RDWR | O_CREAT, .backing_fd = -1};
	int r = ops->create(&ctx, parent, name, mode, &fi, node, st);

	if (r)
		return r;
	if (text)
		r = ops->write(&ctx, *node, &fi, text, strlen(text), 0);
	ops->release(&ctx, *node, &fi);
	return r < 0 ? r : 0;
}

struct listing {
	char names[64][64];
	vd_node_t nodes[64];
	off_t sizes[64];
	ino_t inos[64];
	off_t offs[64];
	int n, room;
};

static int collect(void *buf, const char *name, vd_node_t node,
		   const struct stat *st, off_t next)
{
	struct listing *l = buf;

	if (l->room-- == 0 || l->n == 64)
		return 1;
	snprintf(l->names[l->n], 64, "%s", name);
	l->nodes[l->n] = node;
	l->sizes[l->n] = st->st_size;
	l->inos[l->n] = st->st_ino;
	l->offs[l->n] = next;
	l->n++;
	return 0;
}

static int has_name(const struct listing *l, const char *name)
{
	int k = 0;

	for (int i = 0; i < l->n; i++)
		k += !strcmp(l->names[i], name);
	return k;
}

static void test_bad_paths(void)
{
	char f[600];

	ok(src_open("dir:") == -EINVAL, "dir: with no path is refused");
	ok(src_open("dir:/nonexistent/vdrive-x") == -ENOENT,
	   "missing folder: -ENOENT");
	snprintf(f, sizeof(f), "dir:%s", tap_path("plainfile"));
	close(open(tap_path("plainfile"), O_CREAT | O_WRONLY, 0644));
	ok(src_open(f) == -ENOTDIR, "a file: -ENOTDIR");
	unlink(tap_path("plainfile"));
}

static void test_files(void)
{
	struct vd_file fi = {.flags = O_RDWR, .backing_fd = -1};
	vd_node_t a, a2, c;
	struct stat st, nat;
	char buf[64];
	int r;

	r = make_file(VD_ROOT, "a", 0644, "hello", &a, &st);
	ok(r == 0 && a != 0, "create a (%d)", r);
	ok(stat(tap_path("a"), &nat) == 0 && nat.st_ino == st.st_ino &&
		   nat.st_size == 5,
	   "backing file has the data and the same inode");
	r = ops->lookup(&ctx, VD_ROOT, "a", &a2, &st);
	ok(r == 0 && a2 == a && st.st_size == 5, "lookup finds the same node");
	ok(ops->lookup(&ctx, VD_ROOT, "nope", &a2, &st) == -ENOENT,
	   "lookup of a missing name: -ENOENT");

	r = ops->open(&ctx, a, &fi);
	ok(r == 0 && fi.backing_fd == (int)fi.fh,
	   "open sets fh and backing_fd");
	memset(buf, 0, sizeof(buf));
	r = ops->read(&ctx, a, &fi, buf, sizeof(buf), 1);
	ok(r == 4 && !memcmp(buf, "ello", 4), "read at an offset");
	ops->release(&ctx, a, &fi);

	ok(ops->rename(&ctx, VD_ROOT, "a", VD_ROOT, "b", 0) == 0 &&
		   access(tap_path("b"), F_OK) == 0 &&
		   access(tap_path("a"), F_OK) != 0,
	   "rename a to b");
	r = ops->lookup(&ctx, VD_ROOT, "b", &a2, &st);
	ok(r == 0 && a2 == a, "the renamed file is the same node");
	ok(ops->getattr(&ctx, a, NULL, &st) == 0 && st.st_size == 5,
	   "getattr after rename");
	make_file(VD_ROOT, "other", 0644, "x", &c, &st);
	ok(ops->rename(&ctx, VD_ROOT, "b", VD_ROOT, "other",
		       RENAME_NOREPLACE) == -EEXIST,
	   "RENAME_NOREPLACE onto a name: -EEXIST");
	ok(ops->rename(&ctx, VD_ROOT, "b", VD_ROOT, "other", RENAME_EXCHANGE) ==
			   0 &&
		   stat(tap_path("other"), &nat) == 0 && nat.st_size == 5,
	   "RENAME_EXCHANGE swaps");

	r = ops->link(&ctx, a, VD_ROOT, "hard", &st);
	ok(r == 0 && st.st_nlink == 2 && stat(tap_path("hard"), &nat) == 0 &&
		   nat.st_ino == st.st_ino,
	   "link makes a second name (%d)", r);
	ok(ops->unlink(&ctx, VD_ROOT, "hard") == 0 &&
		   ops->getattr(&ctx, a, NULL, &st) == 0 && st.st_nlink == 1,
	   "unlink one name");
	ops->unlink(&ctx, VD_ROOT, "other");
	ops->unlink(&ctx, VD_ROOT, "b");
	ops->forget(ctx.data, a);
	ops->forget(ctx.data, c);
}

static void test_unlink_open(void)
{
	struct vd_file fi = {.flags = O_RDWR, .backing_fd = -1};
	vd_node_t n;
	struct stat st;
	char buf[16] = "";

	make_file(VD_ROOT, "gone", 0600, "still here", &n, &st);
	ops->open(&ctx, n, &fi);
	ok(ops->unlink(&ctx, VD_ROOT, "gone") == 0 &&
		   access(tap_path("gone"), F_OK) != 0,
	   "unlink an open file");
	ok(ops->read(&ctx, n, &fi, buf, sizeof(buf), 0) == 10 &&
		   !memcmp(buf, "still here", 10),
	   "it is still readable");
	ok(ops->write(&ctx, n, &fi, "S", 1, 0) == 1, "and writable");
	ok(ops->getattr(&ctx, n, NULL, &st) == 0 && st.st_nlink == 0 &&
		   st.st_size == 10,
	   "getattr by node while unlinked");
	ops->release(&ctx, n, &fi);
	ops->forget(ctx.data, n);
}

static void test_xattr(void)
{
	vd_node_t n;
	struct stat st;
	char buf[256];
	int r;

	make_file(VD_ROOT, "x", 0644, NULL, &n, &st);
	r = ops->setxattr(&ctx, n, "user.color", "blue", 4, 0);
	if (r == -EOPNOTSUPP) {
		ok(1, "# SKIP no user xattrs on %s", tap_dir);
		return;
	}
	ok(r == 0, "setxattr (%d)", r);
	ok(getxattr(tap_path("x"), "user.color", buf, sizeof(buf)) == 4,
	   "the backing file has it");
	ok(ops->getxattr(&ctx, n, "user.color", NULL, 0) == 4,
	   "getxattr size probe");
	r = ops->getxattr(&ctx, n, "user.color", buf, sizeof(buf));
	ok(r == 4 && !memcmp(buf, "blue", 4), "getxattr value");
	ok(ops->getxattr(&ctx, n, "user.color", buf, 2) == -ERANGE,
	   "getxattr too small: -ERANGE");
	ok(ops->setxattr(&ctx, n, "user.color", "red", 3, XATTR_CREATE) ==
		   -EEXIST,
	   "XATTR_CREATE on an existing name: -EEXIST");
	r = ops->listxattr(&ctx, n, buf, sizeof(buf));
	ok(r > 0 && memmem(buf, (size_t)r, "user.color", 11) != NULL,
	   "listxattr");
	ok(ops->removexattr(&ctx, n, "user.color") == 0 &&
		   ops->getxattr(&ctx, n, "user.color", buf, sizeof(buf)) ==
			   -ENODATA,
	   "removexattr");
	ops->unlink(&ctx, VD_ROOT, "x");
	ops->forget(ctx.data, n);
}

static void test_sparse(void)
{
	struct vd_file fi = {.flags = O_RDWR, .backing_fd = -1};
	vd_node_t n;
	struct stat st;
	int64_t off;
	int r;

	make_file(VD_ROOT, "sparse", 0644, NULL, &n, &st);
	ops->open(&ctx, n, &fi);
	ok(ops->write(&ctx, n, &fi, "data", 4, 1 << 20) == 4, "write at 1 MiB");
	off = ops->lseek(&ctx, n, &fi, 0, SEEK_DATA);
	ok(off == 1 << 20, "SEEK_DATA finds the data (%lld)", (long long)off);
	off = ops->lseek(&ctx, n, &fi, 0, SEEK_HOLE);
	ok(off == 0, "SEEK_HOLE finds the hole at 0 (%lld)", (long long)off);
	r = ops->fallocate(&ctx, n, &fi, 0, 0, 4 << 20);
	ok(r == 0 && ops->getattr(&ctx, n, &fi, &st) == 0 &&
		   st.st_size == 4 << 20,
	   "fallocate grows the file (%d)", r);
	r = ops->fallocate(&ctx, n, &fi, FALLOC_FL_KEEP_SIZE, 0, 8 << 20);
	ok(r == 0 && ops->getattr(&ctx, n, &fi, &st) == 0 &&
		   st.st_size == 4 << 20,
	   "FALLOC_FL_KEEP_SIZE keeps the size (%d)", r);
	r = ops->fallocate(&ctx, n, &fi,
			   FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			   2 << 20);
	char buf[4] = "x";
	ok(r == 0 && ops->read(&ctx, n, &fi, buf, 4, 1 << 20) == 4 &&
		   !memcmp(buf, "\0\0\0\0", 4) &&
		   ops->getattr(&ctx, n, &fi, &st) == 0 &&
		   st.st_size == 4 << 20,
	   "punch a hole: the data is gone, the size stays (%d)", r);
	ops->release(&ctx, n, &fi);
	ops->unlink(&ctx, VD_ROOT, "sparse");
	ops->forget(ctx.data, n);
}

static void test_readdir(void)
{
	struct vd_file fi = {.flags = O_RDONLY, .backing_fd = -1};
	struct listing l, part;
	vd_node_t dnode, n;
	struct stat st, nat;
	off_t off = 0;
	int r, seen = 0, ok_ino = 1;
	static const char *names[] = {"f1", "f2", "f3", "f4", "f5"};

	r = ops->mkdir(&ctx, VD_ROOT, "d", 0755, &dnode, &st);
	ok(r == 0 && S_ISDIR(st.st_mode), "mkdir (%d)", r);
	for (int i = 0; i < 5; i++) {
		make_file(dnode, names[i], 0644, "z", &n, &st);
		ops->forget(ctx.data, n);
	}
	r = ops->opendir(&ctx, dnode, &fi);
	ok(r == 0, "opendir");
	memset(&l, 0, sizeof(l));
	l.room = 1000;
	r = ops->readdir(&ctx, dnode, &fi, 0, collect, &l);
	ok(r == 0 && l.n == 7 && has_name(&l, ".") && has_name(&l, "..") &&
		   has_name(&l, "f3"),
	   "readdir lists . .. and 5 files (%d entries)", l.n);
	for (int i = 0; i < l.n; i++) {
		if (stat(tap_path("d"), &nat) == 0 && l.names[i][0] != '.') {
			char p[600];
			snprintf(p, sizeof(p), "d/%s", l.names[i]);
			stat(tap_path(p), &nat);
			ok_ino &= nat.st_ino == l.inos[i];
		}
	}
	ok(ok_ino, "entries carry the real inode numbers");

	/* Two entries per call, resuming from the last offset each time,
	 * while a file is added: nothing listed twice. */
	make_file(dnode, "late", 0644, NULL, &n, &st);
	ops->forget(ctx.data, n);
	for (int round = 0; round < 20; round++) {
		memset(&part, 0, sizeof(part));
		part.room = 2;
		ops->readdir(&ctx, dnode, &fi, off, collect, &part);
		if (part.n == 0)
			break;
		for (int i = 0; i < part.n; i++)
			seen += has_name(&l, part.names[i]);
		off = part.offs[part.n - 1];
	}
	ok(seen == 7, "paged readdir sees every old entry once (%d)", seen);
	memset(&part, 0, sizeof(part));
	part.room = 1000;
	ops->readdir(&ctx, dnode, &fi, l.offs[3], collect, &part);
	seen = 0;
	for (int i = 0; i < l.n; i++)
		seen += has_name(&part, l.names[i]) << (i >= 4 ? 4 : 0);
	ok(seen == 3 << 4, "readdir from a saved offset resumes there (%x)",
	   seen);
	memset(&part, 0, sizeof(part));
	part.room = 1000;
	fi.readdirplus = 1;
	ops->readdir(&ctx, dnode, &fi, 0, collect, &part);
	fi.readdirplus = 0;
	seen = 0;
	for (int i = 0; i < part.n; i++) {
		vd_node_t m = 0;
		if (part.names[i][0] == '.')
			seen += part.nodes[i] == 0;
		else if (ops->lookup(&ctx, dnode, part.names[i], &m, &st) == 0)
			seen += m == part.nodes[i] && m != 0 &&
				part.sizes[i] == st.st_size;
	}
	ok(part.n == 8 && seen == 8,
	   "readdirplus hands the nodes and attributes lookup would");
	for (int i = 0; i < part.n; i++) {
		if (part.nodes[i])
			ops->forget(ctx.data, part.nodes[i]);
	}
	ok(ops->fsyncdir(&ctx, dnode, 0, &fi) == 0, "fsyncdir");
	ops->releasedir(&ctx, dnode, &fi);
	ok(ops->rmdir(&ctx, VD_ROOT, "d") == -ENOTEMPTY,
	   "rmdir of a full folder: -ENOTEMPTY");
	for (int i = 0; i < 5; i++)
		ops->unlink(&ctx, dnode, names[i]);
	ops->unlink(&ctx, dnode, "late");
	ok(ops->rmdir(&ctx, VD_ROOT, "d") == 0 && access(tap_path("d"), F_OK),
	   "rmdir");
	ops->forget(ctx.data, dnode);
}

static void test_special(void)
{
	vd_node_t n, l;
	struct stat st, nat;
	char buf[64];
	int r;

	r = ops->mknod(&ctx, VD_ROOT, "fifo", S_IFIFO | 0640, 0, &n, &st);
	ok(r == 0 && S_ISFIFO(st.st_mode) &&
		   lstat(tap_path("fifo"), &nat) == 0 && S_ISFIFO(nat.st_mode),
	   "mknod a fifo (%d)", r);
	r = ops->symlink(&ctx, "some/target", VD_ROOT, "sl", &l, &st);
	ok(r == 0 && S_ISLNK(st.st_mode), "symlink (%d)", r);
	r = ops->readlink(&ctx, l, buf, sizeof(buf));
	ok(r == 0 && !strcmp(buf, "some/target"), "readlink");
	ok(ops->getattr(&ctx, l, NULL, &st) == 0 && S_ISLNK(st.st_mode),
	   "getattr of a link is the link's");
	ops->unlink(&ctx, VD_ROOT, "fifo");
	ops->unlink(&ctx, VD_ROOT, "sl");
	ops->forget(ctx.data, n);
	ops->forget(ctx.data, l);
}

static void test_setattr(void)
{
	struct vd_file fi = {.flags = O_RDWR, .backing_fd = -1};
	vd_node_t n;
	struct stat st, nat;
	int r;

	make_file(VD_ROOT, "attrs", 0644, "123456", &n, &st);
	memset(&st, 0, sizeof(st));
	st.st_mode = 0600;
	st.st_size = 2;
	st.st_uid = 123;
	st.st_gid = 456;
	st.st_mtim.tv_sec = 1000000000;
	st.st_mtim.tv_nsec = 123456789;
	r = ops->setattr(&ctx, n, &st,
			 VD_SET_MODE | VD_SET_SIZE | VD_SET_MTIME | VD_SET_UID |
				 VD_SET_GID,
			 NULL);
	ok(r == 0 && lstat(tap_path("attrs"), &nat) == 0 &&
		   (nat.st_mode & 07777) == 0600 && nat.st_size == 2 &&
		   nat.st_uid == 123 && nat.st_gid == 456 &&
		   nat.st_mtim.tv_sec == 1000000000 &&
		   nat.st_mtim.tv_nsec == 123456789,
	   "setattr mode, size, owner, mtime with ns (%d)", r);
	ok(st.st_size == 2 && st.st_mtim.tv_nsec == 123456789,
	   "setattr hands back the new attributes");
	ops->open(&ctx, n, &fi);
	st.st_size = 0;
	r = ops->setattr(&ctx, n, &st, VD_SET_SIZE, &fi);
	ok(r == 0 && lstat(tap_path("attrs"), &nat) == 0 && nat.st_size == 0,
	   "truncate through an open file");
	ops->release(&ctx, n, &fi);
	ops->unlink(&ctx, VD_ROOT, "attrs");
	ops->forget(ctx.data, n);
}

static void test_ownership(void)
{
	struct vd_ctx user = ctx;
	vd_node_t n, sg, sub;
	struct stat st, nat;
	/* rwx for owner, group, mask and others */
	static const unsigned int rwx_all[] = {0x01, 7, -1u, 0x04, 7, -1u,
					       0x10, 7, -1u, 0x20, 7, -1u};
	char acl[64];
	size_t acl_len;
	int r;

	user.uid = 1000;
	user.gid = 1000;
	user.umask = 022;
	ok(ops->getattr(&ctx, VD_ROOT, NULL, &st) == 0, "getattr root");
	chmod(tap_dir, 0777);
	struct vd_file fi = {.flags = O_WRONLY | O_CREAT, .backing_fd = -1};
	r = ops->create(&user, VD_ROOT, "mine", 0666, &fi, &n, &st);
	ok(r == 0 && lstat(tap_path("mine"), &nat) == 0 && nat.st_uid == 1000 &&
		   nat.st_gid == 1000 && (nat.st_mode & 0777) == 0644,
	   "create as uid 1000: owned by 1000:1000, umask applied (%d)", r);
	if (r == 0)
		ops->release(&user, n, &fi);

	r = ops->mkdir(&ctx, VD_ROOT, "sgid", 0777, &sg, &st);
	chown(tap_path("sgid"), 0, 2000);
	chmod(tap_path("sgid"), 02777);
	r = ops->mkdir(&user, sg, "sub", 0777, &sub, &st);
	ok(r == 0 && lstat(tap_path("sgid/sub"), &nat) == 0 &&
		   nat.st_uid == 1000 && nat.st_gid == 2000 &&
		   (nat.st_mode & 02000) && st.st_gid == 2000,
	   "mkdir in a setgid folder takes its group and bit (%d)", r);

	user.umask = 077;
	r = ops->mknod(&user, sg, "plain", S_IFREG | 0666, 0, &n, &st);
	ok(r == 0 && (st.st_mode & 0777) == 0600,
	   "mknod with umask 077: 0600 (%o)", st.st_mode & 0777);
	acl_len = acl_value(acl, 4, rwx_all);
	r = ops->setxattr(&ctx, sub, "system.posix_acl_default", acl, acl_len,
			  0);
	if (r == -EOPNOTSUPP) {
		ok(1, "# SKIP no ACLs on %s", tap_dir);
	} else {
		r = ops->mknod(&user, sub, "acl", S_IFREG | 0666, 0, &n, &st);
		ok(r == 0 && (st.st_mode & 0777) == 0666,
		   "a default ACL overrides the umask (%o)", st.st_mode & 0777);
		unlink(tap_path("sgid/sub/acl"));
	}
	unlink(tap_path("sgid/plain"));
	rmdir(tap_path("sgid/sub"));
	rmdir(tap_path("sgid"));
	unlink(tap_path("mine"));
}

static void test_misc(void)
{
	struct vd_file fi = {.flags = O_RDWR, .backing_fd = -1};
	struct vd_file f2 = {.flags = O_RDWR, .backing_fd = -1};
	vd_node_t t, a, b;
	struct stat st;
	struct statvfs sv;
	char buf[16] = "";
	int r;

	r = ops->tmpfile(&ctx, VD_ROOT, 0600, &fi, &t, &st);
	ok(r == 0 && st.st_nlink == 0, "tmpfile (%d)", r);
	if (r == 0) {
		ops->write(&ctx, t, &fi, "tmp", 3, 0);
		r = ops->link(&ctx, t, VD_ROOT, "named", &st);
		ok(r == 0 && st.st_nlink == 1 && st.st_size == 3,
		   "link gives the tmpfile a name (%d)", r);
		ops->release(&ctx, t, &fi);
		ops->unlink(&ctx, VD_ROOT, "named");
	}
	make_file(VD_ROOT, "src", 0644, "copy me", &a, &st);
	make_file(VD_ROOT, "dst", 0644, NULL, &b, &st);
	ops->open(&ctx, a, &fi);
	ops->open(&ctx, b, &f2);
	ok(ops->copy_file_range(&ctx, a, &fi, 5, b, &f2, 0, 2, 0) == 2 &&
		   ops->read(&ctx, b, &f2, buf, sizeof(buf), 0) == 2 &&
		   !memcmp(buf, "me", 2),
	   "copy_file_range");
	ok(ops->fsync(&ctx, b, 1, &f2) == 0 && ops->fsync(&ctx, b, 0, &f2) == 0,
	   "fsync and fdatasync");
	ops->release(&ctx, a, &fi);
	ops->release(&ctx, b, &f2);
	ok(ops->statfs(&ctx, VD_ROOT, &sv) == 0 && sv.f_bsize > 0 &&
		   sv.f_blocks > 0,
	   "statfs of the backing file system");
	ops->unlink(&ctx, VD_ROOT, "src");
	ops->unlink(&ctx, VD_ROOT, "dst");
	ops->forget(ctx.data, a);
	ops->forget(ctx.data, b);
}

/* A file deleted behind the drive while its node is still known, and
 * its inode number reused by a new file: the node must reach the new
 * file, not fail with a stale handle. */
static void test_reuse(void)
{
	struct vd_file fi = {.flags = O_RDONLY, .backing_fd = -1};
	struct stat st, st2;
	vd_node_t n, m;
	char buf[8] = "";
	int tries, fd, r;

	for (tries = 0; tries < 200; tries++) {
		fd = open(tap_path("old"), O_CREAT | O_WRONLY, 0644);
		close(fd);
		if (ops->lookup(&ctx, VD_ROOT, "old", &n, &st))
			break;
		unlink(tap_path("old"));
		fd = open(tap_path("new"), O_CREAT | O_WRONLY, 0644);
		r = write(fd, "new", 3);
		close(fd);
		stat(tap_path("new"), &st2);
		if (r == 3 && st2.st_ino == st.st_ino)
			break;
		unlink(tap_path("new"));
		ops->forget(ctx.data, n);
	}
	if (tries == 200) {
		ok(1, "# SKIP no inode number reused in 200 tries");
		return;
	}
	r = ops->lookup(&ctx, VD_ROOT, "new", &m, &st);
	ok(r == 0 && m == n && ops->open(&ctx, m, &fi) == 0 &&
		   ops->read(&ctx, m, &fi, buf, sizeof(buf), 0) == 3 &&
		   !memcmp(buf, "new", 3),
	   "a reused inode number reaches the new file (after %d tries)",
	   tries);
	ops->release(&ctx, m, &fi);
	ops->forget(ctx.data, n);
	unlink(tap_path("new"));
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

/* More files than the descriptor limit, each looked up and stat'ed. */
static void test_many(void)
{
	enum { MANY = 25000 };
	vd_node_t dnode, *nodes = calloc(MANY, sizeof(*nodes));
	struct stat st;
	char name[32];
	int bad = 0, fds = 0;

	ops->mkdir(&ctx, VD_ROOT, "many", 0755, &dnode, &st);
	for (int i = 0; i < MANY; i++) {
		snprintf(name, sizeof(name), "many/f%d", i);
		int fd = open(tap_path(name), O_CREAT | O_WRONLY, 0644);
		if (fd < 0)
			bad++;
		else
			close(fd);
	}
	ok(bad == 0, "made %d files", MANY);
	for (int i = 0; i < MANY; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		if (ops->lookup(&ctx, dnode, name, &nodes[i], &st) ||
		    ops->getattr(&ctx, nodes[i], NULL, &st))
			bad++;
		if (i == MANY - 1)
			fds = count_fds();
	}
	ok(bad == 0, "looked up and stat'ed all %d (%d failed)", MANY, bad);
	ok(fds < 1200, "descriptors stay bounded (%d open)", fds);
	for (int i = 0; i < MANY; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		if (ops->unlink(&ctx, dnode, name))
			bad++;
		ops->forget(ctx.data, nodes[i]);
	}
	ok(bad == 0 && ops->rmdir(&ctx, VD_ROOT, "many") == 0,
	   "unlinked them all");
	ops->forget(ctx.data, dnode);
	free(nodes);
}

enum { SHARED = 3000, WORKERS = 4, ROUNDS = 1500 };

struct worker {
	int id;
	vd_node_t dir;
	vd_node_t *shared;
	int errors;
};

/* One thread's churn: private files made, renamed, linked and removed,
 * while every thread stats the same shared files, more of them than
 * the descriptor cache holds. */
static void *churn(void *arg)
{
	struct worker *w = arg;
	struct stat st;
	char a[32], b[32];

	for (int i = 0; i < ROUNDS; i++) {
		struct vd_file fi = {.flags = O_RDWR, .backing_fd = -1};
		vd_node_t n = 0, m;
		snprintf(a, sizeof(a), "w%d_%d", w->id, i % 7);
		snprintf(b, sizeof(b), "w%d_r%d", w->id, i % 7);
		/* The file stays open until its node is forgotten, as the
		 * kernel would have it: its inode number cannot be reused by
		 * another thread's file while the node is known. */
		if (ops->create(&ctx, w->dir, a, 0644, &fi, &n, &st)) {
			w->errors++;
			continue;
		}
		if (ops->rename(&ctx, w->dir, a, w->dir, b, 0) ||
		    ops->lookup(&ctx, w->dir, b, &m, &st) || m != n ||
		    ops->link(&ctx, n, w->dir, a, &st) || st.st_nlink != 2 ||
		    ops->unlink(&ctx, w->dir, a) ||
		    ops->unlink(&ctx, w->dir, b) ||
		    ops->getattr(&ctx, n, NULL, &st) || st.st_nlink != 0)
			w->errors++;
		ops->forget(ctx.data, n);
		ops->release(&ctx, n, &fi);
		for (int k = 0; k < 8; k++) {
			vd_node_t s =
				w->shared[(i * 8 + k + w->id * 997) % SHARED];
			if (ops->getattr(&ctx, s, NULL, &st) || st.st_size != 1)
				w->errors++;
		}
	}
	return NULL;
}

static void test_threads(void)
{
	vd_node_t dnode, *shared = calloc(SHARED, sizeof(*shared));
	struct worker w[WORKERS];
	pthread_t t[WORKERS];
	struct stat st;
	char name[32];
	int bad = 0;

	ops->mkdir(&ctx, VD_ROOT, "threads", 0755, &dnode, &st);
	for (int i = 0; i < SHARED; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		if (make_file(dnode, name, 0644, "x", &shared[i], &st))
			bad++;
	}
	for (int i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){.id = i, .dir = dnode, .shared = shared};
		pthread_create(&t[i], NULL, churn, &w[i]);
	}
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(t[i], NULL);
		bad += w[i].errors;
	}
	ok(bad == 0, "%d threads churn and share nodes (%d errors)", WORKERS,
	   bad);
	for (int i = 0; i < SHARED; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		ops->unlink(&ctx, dnode, name);
		ops->forget(ctx.data, shared[i]);
	}
	ok(ops->rmdir(&ctx, VD_ROOT, "threads") == 0, "threads folder empty");
	ops->forget(ctx.data, dnode);
	free(shared);
}

int main(void)
{
	char spec[300];

	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root\n");
		return 0;
	}
	tap_tmpdir("dirtest");
	test_bad_paths();
	snprintf(spec, sizeof(spec), "dir:%s", tap_dir);
	ok(src_open(spec) == 0, "open %s", spec);
	if (!ctx.data) {
		tap_done();
		return 1;
	}
	test_files();
	test_unlink_open();
	test_xattr();
	test_sparse();
	test_readdir();
	test_special();
	test_setattr();
	test_ownership();
	test_misc();
	test_reuse();
	test_many();
	test_threads();
	ops->destroy(ctx.data);
	ok(rmdir(tap_dir) == 0, "the temp folder is left empty");
	return tap_done();
}
