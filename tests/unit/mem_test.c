/*
 * mem_test.c - the mem: source through its vd_ops table, no kernel.
 * Prints TAP. Each check names the behaviour it pins down.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "sources.h"
#include "tap.h"

extern const struct vd_source vd_source_mem;

/* Open a fresh mem: drive with ARG as the caller uid/gid 1000. */
static void new_drive(const char *arg)
{
	char spec[256], err[256];

	snprintf(spec, sizeof(spec), "mem:%s", arg);
	if (tap_open(spec, err, sizeof(err)))
		bail("mem:%s: %s", arg, err);
	ctx.uid = 1000;
	ctx.gid = 1000;
}

static void free_drive(void)
{
	ops->destroy(ctx.data);
}

static int all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i])
			return 0;
	}
	return 1;
}

static unsigned long long files_free(void)
{
	struct statvfs sv;

	memset(&sv, 0, sizeof(sv));
	ops->statfs(&ctx, VD_ROOT, &sv);
	return sv.f_ffree;
}

static void test_args(void)
{
	const struct vd_ops *o;
	void *data;
	char err[256] = "";

	IS(vd_source_mem.open("bogus", &o, &data, err, sizeof(err)), -EINVAL,
	   "mem:bogus is refused");
	ok(strstr(err, "size=") != NULL, "with a message naming size= (%s)",
	   err);
	IS(vd_source_mem.open("size=", &o, &data, err, sizeof(err)), -EINVAL,
	   "mem:size= without a number is refused");
	IS(vd_source_mem.open("size=12q", &o, &data, err, sizeof(err)), -EINVAL,
	   "mem:size=12q is refused");
	IS(vd_source_mem.open("size=0", &o, &data, err, sizeof(err)), -EINVAL,
	   "mem:size=0 is refused");
	IS(vd_source_mem.open("size=4m", &o, &data, err, sizeof(err)), 0,
	   "mem:size=4m is accepted");
	o->destroy(data);
	IS(vd_source_mem.open("size=10%", &o, &data, err, sizeof(err)), 0,
	   "mem:size=10% is accepted");
	o->destroy(data);
	IS(vd_source_mem.open("size=101%", &o, &data, err, sizeof(err)),
	   -EINVAL, "mem:size=101% is refused");
	ok(!strcmp(vd_source_find("mem:")->kind, "mem"),
	   "the registry finds mem:");
}

static void test_files(void)
{
	char buf[70000], big[200000];
	struct stat st;
	vd_node_t f;

	new_drive("");
	f = mkfile(VD_ROOT, "a", 0666);
	ok(f != 0, "create a file");
	st = attr(f);
	IS(st.st_mode, S_IFREG | 0644, "umask applied on create");
	IS(st.st_uid, 1000, "owner is the caller");
	IS(st.st_nlink, 1, "new file has one link");
	IS(lookup(VD_ROOT, "a"), f, "lookup finds it");
	IS(wr(f, "hello", 5, 0), 5, "write 5 bytes");
	IS(rd(f, buf, sizeof(buf), 0), 5, "read returns 5 at EOF");
	ok(!memcmp(buf, "hello", 5), "read back what was written");
	IS(rd(f, buf, 10, 5), 0, "read at EOF returns 0");
	st = attr(f);
	IS(st.st_size, 5, "size 5");
	ok(st.st_blocks > 0 && st.st_blocks <= 8,
	   "small file holds few blocks (%lld)", (long long)st.st_blocks);

	/* Sparse: a write far out leaves a hole that reads as zeros. */
	IS(wr(f, "x", 1, 10 << 20), 1, "write 1 byte at 10 MiB");
	st = attr(f);
	IS(st.st_size, (10 << 20) + 1, "size follows the far write");
	ok(st.st_blocks < 1024, "the hole holds no blocks (%lld)",
	   (long long)st.st_blocks);
	memset(buf, 1, sizeof(buf));
	IS(rd(f, buf, sizeof(buf), 1 << 20), (int)sizeof(buf),
	   "read inside the hole");
	ok(all_zero(buf, sizeof(buf)), "the hole reads as zeros");
	IS(ops->lseek(&ctx, f, NULL, 65536, SEEK_DATA), (10 << 20),
	   "SEEK_DATA skips the hole");
	IS(ops->lseek(&ctx, f, NULL, 0, SEEK_HOLE), 65536,
	   "SEEK_HOLE finds the hole after the first page");
	IS(ops->lseek(&ctx, f, NULL, (10 << 20), SEEK_HOLE), (10 << 20) + 1,
	   "SEEK_HOLE in the last page answers EOF");
	IS(ops->lseek(&ctx, f, NULL, (10 << 20) + 1, SEEK_DATA), -ENXIO,
	   "SEEK_DATA at EOF is ENXIO");
	IS(ops->lseek(&ctx, f, NULL, -1, SEEK_HOLE), -ENXIO,
	   "SEEK_HOLE before 0 is ENXIO");

	/* A write across pages, then shrink and grow again. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 + 1);
	IS(wr(f, big, sizeof(big), 1000), (int)sizeof(big),
	   "write 200000 bytes across pages");
	memset(buf, 0, sizeof(buf));
	IS(rd(f, buf, sizeof(buf), 1000 + 65000), (int)sizeof(buf),
	   "read across a page boundary");
	ok(!memcmp(buf, big + 65000, sizeof(buf)), "data across pages intact");
	st.st_size = 70000;
	IS(ops->setattr(&ctx, f, &st, VD_SET_SIZE, NULL), 0,
	   "truncate to 70000");
	IS(st.st_size, 70000, "setattr hands back the new size");
	st.st_size = 300000;
	IS(ops->setattr(&ctx, f, &st, VD_SET_SIZE, NULL), 0,
	   "extend to 300000");
	IS(rd(f, buf, sizeof(buf), 69990), (int)sizeof(buf),
	   "read over the old end");
	ok(!memcmp(buf, big + 68990, 10) &&
		   all_zero(buf + 10, sizeof(buf) - 10),
	   "bytes cut by the truncate read as zeros after extending");
	st.st_size = 0;
	ops->setattr(&ctx, f, &st, VD_SET_SIZE, NULL);
	IS(attr(f).st_blocks, 0, "truncate to 0 frees every page");

	/* O_TRUNC on open. */
	wr(f, "abc", 3, 0);
	struct vd_file fi = {.flags = O_WRONLY | O_TRUNC};
	IS(ops->open(&ctx, f, &fi), 0, "open O_TRUNC");
	IS(attr(f).st_size, 0, "O_TRUNC empties the file");
	ops->release(&ctx, f, &fi);
	free_drive();
}

static void test_times_modes(void)
{
	struct stat st, st2;
	vd_node_t f, d, s;
	char buf[64];

	new_drive("");
	f = mkfile(VD_ROOT, "f", 0644);
	st.st_mode = 04755;
	st.st_uid = 5;
	st.st_gid = 6;
	st.st_atim.tv_sec = 1000;
	st.st_atim.tv_nsec = 1;
	st.st_mtim.tv_sec = 2000;
	st.st_mtim.tv_nsec = 2;
	IS(ops->setattr(&ctx, f, &st,
			VD_SET_MODE | VD_SET_UID | VD_SET_GID | VD_SET_ATIME |
				VD_SET_MTIME,
			NULL),
	   0, "setattr mode, owner, times");
	st2 = attr(f);
	IS(st2.st_mode, S_IFREG | 04755, "mode set, type kept");
	ok(st2.st_uid == 5 && st2.st_gid == 6, "owner set");
	ok(st2.st_atim.tv_sec == 1000 && st2.st_atim.tv_nsec == 1 &&
		   st2.st_mtim.tv_sec == 2000 && st2.st_mtim.tv_nsec == 2,
	   "atime and mtime set to the nanosecond");
	ok(st2.st_ctim.tv_sec > 2000, "ctime moved to now");
	st.st_ctim.tv_sec = 3000;
	st.st_ctim.tv_nsec = 3;
	ops->setattr(&ctx, f, &st, VD_SET_CTIME, NULL);
	IS(attr(f).st_ctim.tv_sec, 3000, "explicit ctime is kept");

	d = mkdirn(VD_ROOT, "d");
	IS(attr(d).st_nlink, 2, "new folder has 2 links");
	IS(attr(VD_ROOT).st_nlink, 3, "parent gains a link per subfolder");
	mkdirn(d, "sub");
	IS(attr(d).st_nlink, 3, "2 + subfolders");

	/* setgid folder: group and the bit are inherited. */
	st.st_mode = 02775;
	st.st_gid = 77;
	ops->setattr(&ctx, d, &st, VD_SET_MODE | VD_SET_GID, NULL);
	IS(attr(mkfile(d, "g", 0666)).st_gid, 77,
	   "file in setgid folder gets its group");
	st2 = attr(mkdirn(d, "gd"));
	ok(st2.st_gid == 77 && (st2.st_mode & S_ISGID),
	   "folder in setgid folder gets group and setgid");

	IS(ops->symlink(&ctx, "../target", VD_ROOT, "ln", &s, &st), 0,
	   "symlink");
	IS(st.st_mode, S_IFLNK | 0777, "symlink mode");
	IS(st.st_size, 9, "symlink size is the target length");
	IS(ops->readlink(&ctx, s, buf, sizeof(buf)), 0, "readlink");
	ok(!strcmp(buf, "../target"), "readlink gives the target");
	IS(ops->readlink(&ctx, f, buf, sizeof(buf)), -EINVAL,
	   "readlink on a file is EINVAL");

	vd_node_t n;
	IS(ops->mknod(&ctx, VD_ROOT, "fifo", S_IFIFO | 0600, 0, &n, &st), 0,
	   "mknod fifo");
	ok(S_ISFIFO(st.st_mode), "fifo type");
	IS(ops->mknod(&ctx, VD_ROOT, "chr", S_IFCHR | 0600, makedev(1, 3), &n,
		      &st),
	   0, "mknod char device");
	ok(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3),
	   "device number kept");
	IS(ops->mknod(&ctx, VD_ROOT, "sock", S_IFSOCK | 0600, 0, &n, &st), 0,
	   "mknod socket");
	IS(ops->mknod(&ctx, VD_ROOT, "bad", 0170000 | 0600, 0, &n, &st),
	   -EINVAL, "mknod of an unknown type is EINVAL");
	free_drive();
}

/* Names seen by a listing, for the readdir tests. */
struct seen {
	char names[1000][16];
	off_t offs[1000];
	int n, stop_after;
};

static int collect(void *buf, const char *name, vd_node_t node,
		   const struct stat *st, off_t next)
{
	struct seen *s = buf;

	(void)node, (void)st;
	if (s->n == s->stop_after || s->n == 1000)
		return 1;
	snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
	s->offs[s->n++] = next;
	return 0;
}

static int count_name(struct seen *s, const char *name)
{
	int c = 0;

	for (int i = 0; i < s->n; i++)
		c += !strcmp(s->names[i], name);
	return c;
}

static void test_readdir(void)
{
	struct seen s1 = {.stop_after = 12}, s2 = {.stop_after = 1000};
	struct vd_file fi = {0};
	char name[16];
	vd_node_t d;
	int bad = 0;

	new_drive("");
	d = mkdirn(VD_ROOT, "d");
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		mkfile(d, name, 0644);
	}
	IS(ops->opendir(&ctx, d, &fi), 0, "opendir");
	IS(ops->readdir(&ctx, d, &fi, 0, collect, &s1), 0, "readdir from 0");
	IS(s1.n, 12, "the listing stops when the buffer is full");
	ok(!strcmp(s1.names[0], ".") && !strcmp(s1.names[1], ".."),
	   "listing starts with . and ..");
	/* Change the folder between two batches. */
	ops->unlink(&ctx, d, s1.names[11]); /* the last one seen */
	ops->unlink(&ctx, d, "f050");	    /* one not seen yet */
	mkfile(d, "new1", 0644);
	ops->rename(&ctx, d, "f060", d, "moved", 0);
	IS(ops->readdir(&ctx, d, &fi, s1.offs[11], collect, &s2), 0,
	   "readdir from the last offset");
	for (int i = 0; i < s2.n; i++) {
		if (count_name(&s1, s2.names[i]))
			bad++;
	}
	IS(bad, 0, "no entry comes twice across batches");
	IS(count_name(&s2, "f050"), 0, "a removed entry is not listed");
	IS(count_name(&s2, "new1"), 1, "an entry added meanwhile is listed");
	IS(count_name(&s2, "f060"), 0,
	   "a renamed entry is not listed by its old name");
	IS(s1.n - 2 + s2.n, 100, "every other entry listed exactly once");
	struct seen s3 = {.stop_after = 1000};
	ops->readdir(&ctx, d, &fi, s2.offs[s2.n - 1], collect, &s3);
	IS(s3.n, 0, "listing from the last offset is empty");
	ops->releasedir(&ctx, d, &fi);

	/* Many removals: the slots compact, offsets still hold. */
	struct seen s4 = {.stop_after = 30}, s5 = {.stop_after = 1000};
	ops->readdir(&ctx, d, &fi, 0, collect, &s4);
	for (int i = 0; i < 100; i += 2) {
		snprintf(name, sizeof(name), "f%03d", i);
		ops->unlink(&ctx, d, name);
	}
	ops->readdir(&ctx, d, &fi, s4.offs[29], collect, &s5);
	bad = 0;
	for (int i = 0; i < s5.n; i++)
		bad += count_name(&s4, s5.names[i]);
	IS(bad, 0, "no repeats after the folder compacts");
	IS(count_name(&s5, "f099"), 1,
	   "entries after the cut are still listed");
	free_drive();
}

static void test_rename_link(void)
{
	struct stat st;
	vd_node_t a, b, d1, d2, sub, x;

	new_drive("");
	a = mkfile(VD_ROOT, "a", 0644);
	b = mkfile(VD_ROOT, "b", 0644);
	d1 = mkdirn(VD_ROOT, "d1");
	d2 = mkdirn(VD_ROOT, "d2");
	sub = mkdirn(d1, "sub");
	mkfile(d2, "inside", 0644);

	IS(ops->rename(&ctx, VD_ROOT, "a", VD_ROOT, "b", RENAME_NOREPLACE),
	   -EEXIST, "RENAME_NOREPLACE onto a name is EEXIST");
	IS(ops->rename(&ctx, VD_ROOT, "a", VD_ROOT, "b", 0), 0,
	   "rename replaces an existing file");
	IS(lookup(VD_ROOT, "b"), a, "the new name is the moved file");
	IS(lookup(VD_ROOT, "a"), 0, "the old name is gone");
	IS(ops->rename(&ctx, VD_ROOT, "b", VD_ROOT, "d1", 0), -EISDIR,
	   "file over folder is EISDIR");
	IS(ops->rename(&ctx, VD_ROOT, "d1", VD_ROOT, "b", 0), -ENOTDIR,
	   "folder over file is ENOTDIR");
	IS(ops->rename(&ctx, VD_ROOT, "d1", VD_ROOT, "d2", 0), -ENOTEMPTY,
	   "folder over a non-empty folder is ENOTEMPTY");
	IS(ops->rename(&ctx, VD_ROOT, "d1", sub, "x", 0), -EINVAL,
	   "folder into its own subtree is EINVAL");
	IS(ops->rename(&ctx, VD_ROOT, "d1", d1, "x", 0), -EINVAL,
	   "folder into itself is EINVAL");
	IS(ops->rename(&ctx, VD_ROOT, "nope", VD_ROOT, "x", 0), -ENOENT,
	   "missing source is ENOENT");
	IS(ops->rename(&ctx, VD_ROOT, "b", VD_ROOT, "zz", RENAME_EXCHANGE),
	   -ENOENT, "RENAME_EXCHANGE with a missing target is ENOENT");
	IS(ops->rename(&ctx, VD_ROOT, "b", VD_ROOT, "c",
		       RENAME_EXCHANGE | RENAME_NOREPLACE),
	   -EINVAL, "EXCHANGE|NOREPLACE is EINVAL");

	/* Move a folder: link counts follow. */
	IS(ops->rename(&ctx, d1, "sub", d2, "sub", 0), 0, "move a folder");
	IS(attr(d1).st_nlink, 2, "old parent loses a link");
	IS(attr(d2).st_nlink, 3, "new parent gains one");
	IS(lookup(sub, ".."), d2, ".. follows the move");

	/* Exchange a file and a folder across folders. */
	IS(ops->rename(&ctx, VD_ROOT, "b", d2, "sub", RENAME_EXCHANGE), 0,
	   "RENAME_EXCHANGE file <-> folder");
	IS(lookup(VD_ROOT, "b"), sub, "folder now at b");
	IS(lookup(d2, "sub"), a, "file now at d2/sub");
	IS(attr(d2).st_nlink, 2, "d2 lost its subfolder");
	IS(attr(VD_ROOT).st_nlink, 5, "root gained one (d1, d2, b)");

	/* Empty folder over empty folder. */
	IS(ops->rename(&ctx, VD_ROOT, "b", VD_ROOT, "d1", 0), 0,
	   "folder replaces an empty folder");
	IS(attr(VD_ROOT).st_nlink, 4, "root link count after the replace");

	/* Hard links. */
	x = mkfile(VD_ROOT, "x", 0644);
	IS(ops->link(&ctx, x, d2, "x2", &st), 0, "link");
	IS(st.st_nlink, 2, "nlink 2 after link");
	IS(ops->rename(&ctx, VD_ROOT, "x", d2, "x2", 0), 0,
	   "rename onto another name of the same file does nothing");
	IS(lookup(VD_ROOT, "x"), x, "both names remain");
	IS(ops->unlink(&ctx, VD_ROOT, "x"), 0, "unlink one name");
	IS(attr(x).st_nlink, 1, "nlink 1");
	IS(ops->link(&ctx, d2, VD_ROOT, "dl", &st), -EPERM,
	   "link of a folder is EPERM");
	IS(ops->link(&ctx, x, VD_ROOT, "b", &st), 0, "link");
	IS(ops->link(&ctx, x, VD_ROOT, "b", &st), -EEXIST,
	   "link onto a name is EEXIST");
	(void)b;
	free_drive();
}

static void test_lifetime(void)
{
	struct vd_file fi = {.flags = O_RDWR};
	unsigned long long before;
	char buf[8];
	vd_node_t f, t, d;
	struct stat st;

	new_drive("");
	before = files_free();
	f = mkfile(VD_ROOT, "f", 0644);
	ops->forget(ctx.data, f); /* the kernel let go after create */
	IS(files_free(), before - 1, "a named file counts");
	f = lookup(VD_ROOT, "f");
	ops->open(&ctx, f, &fi);
	wr(f, "data", 4, 0);
	IS(ops->unlink(&ctx, VD_ROOT, "f"), 0, "unlink an open file");
	IS(lookup(VD_ROOT, "f"), 0, "its name is gone");
	IS(rd(f, buf, sizeof(buf), 0), 4, "still readable while open");
	IS(attr(f).st_nlink, 0, "nlink 0");
	ops->forget(ctx.data, f);
	IS(files_free(), before - 1, "kept while open after forget");
	ops->release(&ctx, f, &fi);
	IS(files_free(), before, "freed at the last release");

	/* Forget after release frees too. */
	f = mkfile(VD_ROOT, "g", 0644);
	ops->unlink(&ctx, VD_ROOT, "g");
	IS(files_free(), before - 1, "kept while the kernel holds it");
	ops->forget(ctx.data, f);
	IS(files_free(), before, "freed at forget");

	/* tmpfile: no name until link(). */
	IS(ops->tmpfile(&ctx, VD_ROOT, 0600, &fi, &t, &st), 0, "tmpfile");
	IS(st.st_nlink, 0, "unnamed file has nlink 0");
	wr(t, "tmp", 3, 0);
	IS(ops->link(&ctx, t, VD_ROOT, "named", &st), 0, "link names it");
	IS(lookup(VD_ROOT, "named"), t, "lookup finds it");
	IS(st.st_nlink, 1, "nlink 1 after link");
	ops->release(&ctx, t, &fi);
	ops->forget(ctx.data, t);
	IS(ops->unlink(&ctx, VD_ROOT, "named"), 0, "unlink it");
	IS(files_free(), before, "all gone");

	/* Unlinked (not tmpfile) file cannot be linked again. */
	f = mkfile(VD_ROOT, "h", 0644);
	ops->unlink(&ctx, VD_ROOT, "h");
	IS(ops->link(&ctx, f, VD_ROOT, "h2", &st), -ENOENT,
	   "link of an unlinked file is ENOENT");
	ops->forget(ctx.data, f);

	/* A READDIRPLUS listing hands nodes to the kernel; a plain one not. */
	struct vd_file dfi = {.readdirplus = 1};
	struct seen sn = {.stop_after = 1000};
	f = mkfile(VD_ROOT, "p", 0644);
	ops->forget(ctx.data, f);
	ops->readdir(&ctx, VD_ROOT, &dfi, 0, collect, &sn);
	ops->unlink(&ctx, VD_ROOT, "p");
	IS(files_free(), before - 1,
	   "a node listed by READDIRPLUS waits for forget");
	ops->forget(ctx.data, f);
	IS(files_free(), before, "and goes at forget");
	f = mkfile(VD_ROOT, "q", 0644);
	ops->forget(ctx.data, f);
	dfi.readdirplus = 0;
	sn.n = 0;
	ops->readdir(&ctx, VD_ROOT, &dfi, 0, collect, &sn);
	ops->unlink(&ctx, VD_ROOT, "q");
	IS(files_free(), before, "a plain listing does not pin nodes");

	/* A removed folder stays usable until forgotten. */
	d = mkdirn(VD_ROOT, "d");
	IS(ops->rmdir(&ctx, VD_ROOT, "d"), 0, "rmdir");
	IS(attr(d).st_nlink, 0, "removed folder has nlink 0");
	vd_node_t n;
	IS(ops->create(&ctx, d, "x", 0644, &fi, &n, &st), -ENOENT,
	   "create in a removed folder is ENOENT");
	ops->forget(ctx.data, d);
	IS(files_free(), before, "removed folder freed at forget");
	free_drive();
}

/* Perm of the first entry with tag in an ACL value. */
static int acl_perm(const char *buf, size_t len, unsigned int tag)
{
	for (size_t off = 4; off + 8 <= len; off += 8) {
		uint16_t t, p;
		memcpy(&t, buf + off, 2);
		memcpy(&p, buf + off + 2, 2);
		if (t == tag)
			return p;
	}
	return -1;
}

static void test_xattr_acl(void)
{
	char buf[256], val[256];
	struct stat st;
	vd_node_t f, d, g, sd;
	size_t len;

	new_drive("");
	f = mkfile(VD_ROOT, "f", 0644);
	IS(ops->getxattr(&ctx, f, "user.a", buf, sizeof(buf)), -ENODATA,
	   "missing xattr is ENODATA");
	IS(ops->setxattr(&ctx, f, "user.a", "1234", 4, XATTR_REPLACE), -ENODATA,
	   "XATTR_REPLACE of a missing one is ENODATA");
	IS(ops->setxattr(&ctx, f, "user.a", "1234", 4, XATTR_CREATE), 0,
	   "XATTR_CREATE");
	IS(ops->setxattr(&ctx, f, "user.a", "xy", 2, XATTR_CREATE), -EEXIST,
	   "XATTR_CREATE of an existing one is EEXIST");
	IS(ops->setxattr(&ctx, f, "user.a", "xy", 2, XATTR_REPLACE), 0,
	   "XATTR_REPLACE");
	IS(ops->setxattr(&ctx, f, "user.b", "", 0, 0), 0, "empty value");
	IS(ops->getxattr(&ctx, f, "user.a", NULL, 0), 2, "size probe");
	IS(ops->getxattr(&ctx, f, "user.a", buf, 1), -ERANGE,
	   "ERANGE when short");
	IS(ops->getxattr(&ctx, f, "user.a", buf, sizeof(buf)), 2, "get");
	ok(!memcmp(buf, "xy", 2), "value replaced");
	IS(ops->listxattr(&ctx, f, NULL, 0), 14, "list size probe");
	IS(ops->listxattr(&ctx, f, buf, 5), -ERANGE, "list ERANGE");
	IS(ops->listxattr(&ctx, f, buf, sizeof(buf)), 14, "list");
	ok(!memcmp(buf, "user.a\0user.b\0", 14), "names NUL-separated");
	IS(ops->removexattr(&ctx, f, "user.a"), 0, "remove");
	IS(ops->removexattr(&ctx, f, "user.a"), -ENODATA,
	   "remove again is ENODATA");
	IS(ops->setxattr(&ctx, f, "system.foo", "x", 1, 0), -EOPNOTSUPP,
	   "unknown system.* is EOPNOTSUPP");

	/* Access ACL: the mode follows; a minimal one is not stored. */
	const unsigned int ext[] = {1, 7,    0, 2, 6,	 1234, 4, 4,
				    0, 0x10, 6, 0, 0x20, 0,    0};
	len = acl_value(val, 5, ext);
	IS(ops->setxattr(&ctx, f, "system.posix_acl_access", val + 0, len, 0),
	   0, "set an access ACL");
	IS(attr(f).st_mode & 0777, 0760,
	   "mode follows the ACL (mask as group)");
	st.st_mode = 0750;
	ops->setattr(&ctx, f, &st, VD_SET_MODE, NULL);
	len = (size_t)ops->getxattr(&ctx, f, "system.posix_acl_access", buf,
				    sizeof(buf));
	IS(acl_perm(buf, len, 0x10), 5, "chmod rewrites the mask");
	IS(acl_perm(buf, len, 0x04), 4, "and leaves the owning group entry");
	IS(acl_perm(buf, len, 0x01), 7, "owner entry follows");
	IS(acl_perm(buf, len, 0x20), 0, "other entry follows");
	const unsigned int min[] = {1, 6, 0, 4, 4, 0, 0x20, 4, 0};
	len = acl_value(val, 3, min);
	IS(ops->setxattr(&ctx, f, "system.posix_acl_access", val, len, 0), 0,
	   "set a minimal ACL");
	IS(attr(f).st_mode & 0777, 0644, "mode from the minimal ACL");
	IS(ops->getxattr(&ctx, f, "system.posix_acl_access", buf, sizeof(buf)),
	   -ENODATA, "a minimal ACL is not stored");
	IS(ops->setxattr(&ctx, f, "system.posix_acl_access", "bad!", 4, 0),
	   -EINVAL, "malformed ACL is EINVAL");
	IS(ops->setxattr(&ctx, f, "system.posix_acl_default", val, len, 0),
	   -EACCES, "default ACL on a file is EACCES");
	const unsigned int nomask[] = {1, 7, 0, 2,    6, 1234,
				       4, 4, 0, 0x20, 0, 0};
	len = acl_value(val, 4, nomask);
	IS(ops->setxattr(&ctx, f, "system.posix_acl_access", val, len, 0),
	   -EINVAL, "a named entry without a mask is EINVAL (posix_acl_valid)");
	const unsigned int order[] = {1, 7, 0, 0x20, 0, 0, 4, 4, 0};
	len = acl_value(val, 3, order);
	IS(ops->setxattr(&ctx, f, "system.posix_acl_access", val, len, 0),
	   -EINVAL, "entries out of order are EINVAL");

	/* Inheritance from a default ACL; the umask does not apply. */
	d = mkdirn(VD_ROOT, "d");
	const unsigned int def[] = {1, 7,    0, 2, 7,	 1234, 4, 5,
				    0, 0x10, 7, 0, 0x20, 0,    0};
	len = acl_value(val, 5, def);
	IS(ops->setxattr(&ctx, d, "system.posix_acl_default", val, len, 0), 0,
	   "set a default ACL");
	ctx.umask = 077;
	g = mkfile(d, "g", 0666);
	IS(attr(g).st_mode & 0777, 0660,
	   "new file: mode narrowed by the ACL, no umask");
	len = (size_t)ops->getxattr(&ctx, g, "system.posix_acl_access", buf,
				    sizeof(buf));
	ok(len == 44, "new file has an access ACL of 5 entries");
	IS(acl_perm(buf, len, 0x10), 6, "its mask is the mode's group bits");
	IS(acl_perm(buf, len, 0x02), 7, "named user entry copied");
	IS(ops->getxattr(&ctx, g, "system.posix_acl_default", buf, sizeof(buf)),
	   -ENODATA, "a file gets no default ACL");
	IS(ops->mkdir(&ctx, d, "sd", 0777, &sd, &st), 0, "mkdir under it");
	IS(st.st_mode & 0777, 0770, "new folder mode");
	IS(ops->getxattr(&ctx, sd, "system.posix_acl_default", buf,
			 sizeof(buf)),
	   (int)len, "new folder inherits the default ACL");
	g = mkfile(VD_ROOT, "plain", 0666);
	IS(attr(g).st_mode & 0777, 0600, "outside it the umask applies");
	ctx.umask = 022;
	free_drive();
}

static void test_fallocate_copy(void)
{
	char buf[70000];
	struct stat st;
	vd_node_t f, g;

	new_drive("");
	f = mkfile(VD_ROOT, "f", 0644);
	IS(ops->fallocate(&ctx, f, NULL, 0, 0, 100000), 0, "fallocate mode 0");
	st = attr(f);
	IS(st.st_size, 100000, "extends the size");
	ok(st.st_blocks >= 100000 / 512, "and allocates blocks (%lld)",
	   (long long)st.st_blocks);
	IS(ops->lseek(&ctx, f, NULL, 0, SEEK_HOLE), 100000,
	   "allocated space is data");
	IS(ops->fallocate(&ctx, f, NULL, FALLOC_FL_KEEP_SIZE, 0, 300000), 0,
	   "fallocate KEEP_SIZE");
	IS(attr(f).st_size, 100000, "KEEP_SIZE keeps the size");
	ok(attr(f).st_blocks >= 300000 / 512, "but allocates");
	memset(buf, 'z', sizeof(buf));
	wr(f, buf, sizeof(buf), 0);
	IS(ops->fallocate(&ctx, f, NULL,
			  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10,
			  65536 * 2),
	   0, "punch a hole");
	IS(attr(f).st_size, 100000, "punch keeps the size");
	IS(rd(f, buf, sizeof(buf), 0), (int)sizeof(buf), "read around it");
	ok(buf[9] == 'z' && all_zero(buf + 10, sizeof(buf) - 10),
	   "punched range reads zeros");
	IS(ops->lseek(&ctx, f, NULL, 0, SEEK_HOLE), 65536,
	   "the whole page inside the punch is a hole");
	wr(f, "qqqq", 4, 200);
	IS(ops->fallocate(&ctx, f, NULL, FALLOC_FL_ZERO_RANGE, 201, 2), 0,
	   "zero range");
	rd(f, buf, 4, 200);
	ok(!memcmp(buf, "q\0\0q", 4), "zero range zeroes just the range");
	IS(ops->fallocate(&ctx, f, NULL, FALLOC_FL_ZERO_RANGE, 0, 200000), 0,
	   "zero range past the end");
	IS(attr(f).st_size, 200000, "zero range extends without KEEP_SIZE");
	IS(ops->fallocate(&ctx, f, NULL, FALLOC_FL_PUNCH_HOLE, 0, 10),
	   -EOPNOTSUPP, "punch without KEEP_SIZE is EOPNOTSUPP");
	IS(ops->fallocate(&ctx, f, NULL, FALLOC_FL_COLLAPSE_RANGE, 0, 65536),
	   -EOPNOTSUPP, "collapse range is EOPNOTSUPP");
	IS(ops->fallocate(&ctx, f, NULL, 0, 0, 0), -EINVAL,
	   "length 0 is EINVAL");
	IS(ops->fallocate(&ctx, VD_ROOT, NULL, 0, 0, 10), -EISDIR,
	   "on a folder is EISDIR");

	/* copy_file_range keeps holes and data. */
	st.st_size = 0;
	ops->setattr(&ctx, f, &st, VD_SET_SIZE, NULL);
	wr(f, "head", 4, 0);
	wr(f, "tail", 4, 5 << 20);
	g = mkfile(VD_ROOT, "g", 0644);
	IS(ops->copy_file_range(&ctx, f, NULL, 0, g, NULL, 0, 10 << 20, 0),
	   (5 << 20) + 4, "copy stops at the source's end");
	IS(attr(g).st_size, (5 << 20) + 4, "destination size");
	ok(attr(g).st_blocks < 1024, "holes stay holes in the copy");
	rd(g, buf, 4, 5 << 20);
	ok(!memcmp(buf, "tail", 4), "data copied");
	IS(ops->copy_file_range(&ctx, f, NULL, 0, f, NULL, 2, 4, 0), -EINVAL,
	   "overlapping copy within a file is EINVAL");
	IS(ops->copy_file_range(&ctx, f, NULL, 0, g, NULL, 0, 4, 1), -EINVAL,
	   "flags are EINVAL");
	free_drive();
}

static void test_limits_errors(void)
{
	static char big[200000];
	struct stat st;
	vd_node_t f, d, n;
	char name[300];
	struct statvfs sv;

	new_drive("size=128k");
	f = mkfile(VD_ROOT, "f", 0644);
	int r = wr(f, big, sizeof(big), 0);
	ok(r > 0 && r < (int)sizeof(big),
	   "a write past the limit is short (%d)", r);
	IS(wr(f, big, 1000, r), -ENOSPC, "then ENOSPC");
	IS(ops->fallocate(&ctx, f, NULL, 0, 0, 1 << 20), -ENOSPC,
	   "fallocate past the limit is ENOSPC");
	ops->statfs(&ctx, VD_ROOT, &sv);
	IS(sv.f_blocks, 32, "statfs size is the limit");
	IS(sv.f_bfree, 0, "and it is full");
	IS(sv.f_namemax, 255, "f_namemax 255");
	st.st_size = 0;
	ops->setattr(&ctx, f, &st, VD_SET_SIZE, NULL);
	ops->statfs(&ctx, VD_ROOT, &sv);
	IS(sv.f_bfree, 32, "truncate gives the room back");

	memset(name, 'n', sizeof(name));
	name[256] = '\0';
	IS(ops->lookup(&ctx, VD_ROOT, name, &n, &st), -ENAMETOOLONG,
	   "lookup of a 256-byte name");
	IS(mkfile(VD_ROOT, name, 0644), 0, "create of a 256-byte name fails");
	name[255] = '\0';
	ok(mkfile(VD_ROOT, name, 0644) != 0, "a 255-byte name is fine");
	IS(ops->mkdir(&ctx, VD_ROOT, "f", 0755, &n, &st), -EEXIST,
	   "mkdir over a file is EEXIST");
	IS(ops->lookup(&ctx, f, "x", &n, &st), -ENOTDIR, "lookup in a file");
	d = mkdirn(VD_ROOT, "d");
	mkfile(d, "x", 0644);
	IS(ops->rmdir(&ctx, VD_ROOT, "d"), -ENOTEMPTY, "rmdir non-empty");
	IS(ops->rmdir(&ctx, VD_ROOT, "f"), -ENOTDIR, "rmdir of a file");
	IS(ops->unlink(&ctx, VD_ROOT, "d"), -EISDIR, "unlink of a folder");
	IS(ops->unlink(&ctx, VD_ROOT, "nope"), -ENOENT, "unlink of nothing");
	IS(rd(d, big, 10, 0), -EISDIR, "read of a folder");
	IS(ops->symlink(&ctx, "", VD_ROOT, "s", &n, &st), -ENOENT,
	   "empty symlink target");
	st.st_size = -1;
	IS(ops->setattr(&ctx, f, &st, VD_SET_SIZE, NULL), -EINVAL,
	   "negative size");
	IS(ops->setattr(&ctx, d, &st, VD_SET_SIZE, NULL), -EISDIR,
	   "truncate of a folder");
	IS(wr(f, "x", 1, (off_t)1 << 50), -EFBIG, "write past 16 TiB");
	int made = 0;
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		made += mkfile(VD_ROOT, name, 0644) != 0;
	}
	ops->statfs(&ctx, VD_ROOT, &sv);
	ok(made > 100 && made < 200 && sv.f_ffree == 0,
	   "node count is bounded by the size (%d made)", made);
	IS(ops->mkdir(&ctx, VD_ROOT, "more", 0755, &n, &st), -ENOSPC,
	   "then ENOSPC");
	static char v[65536];
	int i, r2 = 0;
	for (i = 0; i < 10 && r2 == 0; i++) {
		snprintf(name, sizeof(name), "user.%d", i);
		r2 = ops->setxattr(&ctx, f, name, v, sizeof(v), 0);
	}
	ok(r2 == -ENOSPC && i > 2, "xattr room per node is bounded (%d)", i);
	free_drive();
}

/* Writers and listers at once, for the sanitizers and lock checks. */
static void *churn(void *arg)
{
	long id = (long)arg;
	char name[32], buf[4096];

	memset(buf, (int)id, sizeof(buf));
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "t%ld-%d", id, i);
		vd_node_t f = mkfile(VD_ROOT, name, 0644);
		wr(f, buf, sizeof(buf), i * 100);
		rd(f, buf, sizeof(buf), 0);
		if (i % 3 == 0) {
			ops->unlink(&ctx, VD_ROOT, name);
			ops->forget(ctx.data, f);
		}
	}
	return NULL;
}

static void *lister(void *arg)
{
	(void)arg;
	for (int i = 0; i < 50; i++) {
		struct seen s = {.stop_after = 1000};
		ops->readdir(&ctx, VD_ROOT, NULL, 0, collect, &s);
	}
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[5];
	struct seen s = {.stop_after = 1000};

	new_drive("");
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, churn, (void *)i);
	pthread_create(&t[4], NULL, lister, NULL);
	for (int i = 0; i < 5; i++)
		pthread_join(t[i], NULL);
	ops->readdir(&ctx, VD_ROOT, NULL, 0, collect, &s);
	IS(s.n, 2 + 4 * 200,
	   "concurrent creates and unlinks leave the right names");
	free_drive();
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_args();
	test_files();
	test_times_modes();
	test_readdir();
	test_rename_link();
	test_lifetime();
	test_xattr_acl();
	test_fallocate_copy();
	test_limits_errors();
	test_threads();
	return tap_done();
}
