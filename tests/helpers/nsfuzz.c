/*
 * nsfuzz.c - differential fuzzing of the name space: the same random
 * sequence of creates, mkdirs, renames (plain, RENAME_NOREPLACE,
 * RENAME_EXCHANGE), links, symlinks, unlinks, rmdirs, truncates, chmods,
 * chowns, user.* xattr sets and removals, and small writes runs in a reference
 * folder (native ext4 or tmpfs) and in the folder under test. Every call must
 * give the same result and errno in both, and every few operations the two
 * trees must be the same: names, types, modes, owners, sizes, contents, xattrs,
 * link counts, and which names share an inode.
 *
 *   nsfuzz [-s SEED] [-n OPS] [-u] REFDIR TESTDIR
 *
 * -u: each operation runs as root, uid 1000 (groups 1000, 2000) or uid
 * 1001, at random, so permission checks, ownership of new entries,
 * setgid folders, sticky folders and set-id clearing are compared too
 * (a drive needs allow_other for that). *
 * Paths are drawn from a few short names nested up to three deep, so
 * calls collide often (existing targets, non-empty folders, moves into
 * one's own subfolder, symlinks in the way). Symlink targets are relative
 * and never climb out with "..", so they resolve alike in both trees.
 * Prints one TAP line; on a difference, the operation and the last ones
 * before it, and the seed to reproduce.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define LOG_KEEP 25
#define MAXFILE 8192

static uint64_t rng;
static unsigned long seed = 1;
static long nops = 5000, opnum;
static const char *root[2];
static char oplog[LOG_KEEP][PATH_MAX * 2 + 64];
static int op_uid[LOG_KEEP], users;

/* xorshift64*: the same sequence for a seed on every machine. */
static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

/* Print the failure, the last operations and how to rerun; exit 1. */
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt,
								...)
{
	va_list ap;

	printf("not ok 1 - nsfuzz seed %lu: differs at op %ld\n# ", seed,
	       opnum);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n# last operations:\n");
	for (long i = opnum - LOG_KEEP + 1; i <= opnum; i++)
		if (i >= 1)
			printf("#   %6ld uid %4d: %s\n", i,
			       op_uid[i % LOG_KEEP], oplog[i % LOG_KEEP]);
	printf("# reproduce: nsfuzz -s %lu -n %ld%s REFDIR TESTDIR\n", seed,
	       opnum, users ? " -u" : "");
	exit(1);
}

/* A random relative path: 1 to 3 components from a few names. */
static void rnd_path(char *out, size_t n)
{
	static const char *const names[] = {"a", "b", "c", "dd"};
	int depth = 1 + (int)(rnd() % 3);
	size_t len = 0;

	out[0] = 0;
	for (int i = 0; i < depth; i++)
		len += snprintf(out + len, n - len, "%s%s", i ? "/" : "",
				names[rnd() % 4]);
}

/* root[side] + "/" + rel. */
static void full(int side, const char *rel, char *out, size_t n)
{
	snprintf(out, n, "%s/%s", root[side], rel);
}

/* One result of a call on one side: return value and errno. */
struct res {
	long r;
	int err;
};

/* Compare the two sides' results of the current operation. */
static void same(const char *what, struct res a, struct res b)
{
	if (a.r != b.r || (a.r < 0 && a.err != b.err))
		die("%s: reference gave %ld (%s), test gave %ld (%s)", what,
		    a.r, a.r < 0 ? strerrorname_np(a.err) : "ok", b.r,
		    b.r < 0 ? strerrorname_np(b.err) : "ok");
}

/* Create/open with random flags and write a few bytes, on one side. */
static struct res do_write(int side, const char *rel, int flags, long off,
			   const char *data, size_t len)
{
	char p[PATH_MAX];
	struct res r = {0, 0};
	int fd;

	full(side, rel, p, sizeof(p));
	fd = open(p, flags, 0644);
	if (fd < 0)
		return (struct res){-1, errno};
	if (pwrite(fd, data, len, off) != (ssize_t)len)
		r = (struct res){-2, errno};
	close(fd);
	return r;
}

/* Run one random operation on both sides and compare the results. */
static void step(void)
{
	char pa[PATH_MAX], pb[PATH_MAX], a[2][PATH_MAX], b[2][PATH_MAX];
	char data[256], *log = oplog[opnum % LOG_KEEP];
	struct res r[2];
	int kind = (int)(rnd() % 17);
	int s;

	rnd_path(pa, sizeof(pa));
	rnd_path(pb, sizeof(pb));
	for (s = 0; s < 2; s++) {
		full(s, pa, a[s], sizeof(a[s]));
		full(s, pb, b[s], sizeof(b[s]));
	}
	switch (kind) {
	case 0:
	case 1: {
		static const int fl[] = {
			O_CREAT, O_CREAT | O_EXCL, O_CREAT | O_TRUNC, O_TRUNC,
			0,	 O_APPEND};
		int flags = O_WRONLY | fl[rnd() % 6];
		long off = (long)(rnd() % MAXFILE);
		size_t len = 1 + rnd() % sizeof(data);

		for (size_t i = 0; i < len; i++)
			data[i] = (char)('A' + (opnum + i) % 26);
		snprintf(log, sizeof(oplog[0]),
			 "write %s flags %#x off %ld len %zu", pa, flags, off,
			 len);
		for (s = 0; s < 2; s++)
			r[s] = do_write(s, pa, flags, off, data, len);
		break;
	}
	case 2:
		snprintf(log, sizeof(oplog[0]), "mkdir %s", pa);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){mkdir(a[s], 0755), errno};
		break;
	case 3:
		snprintf(log, sizeof(oplog[0]), "rmdir %s", pa);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){rmdir(a[s]), errno};
		break;
	case 4:
		snprintf(log, sizeof(oplog[0]), "unlink %s", pa);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){unlink(a[s]), errno};
		break;
	case 5:
	case 6:
		snprintf(log, sizeof(oplog[0]), "rename %s %s", pa, pb);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){rename(a[s], b[s]), errno};
		break;
	case 7: {
		unsigned int fl =
			rnd() % 2 ? RENAME_NOREPLACE : RENAME_EXCHANGE;

		snprintf(log, sizeof(oplog[0]), "renameat2 %s %s %s", pa, pb,
			 fl == RENAME_NOREPLACE ? "NOREPLACE" : "EXCHANGE");
		for (s = 0; s < 2; s++)
			r[s] = (struct res){
				renameat2(AT_FDCWD, a[s], AT_FDCWD, b[s], fl),
				errno};
		break;
	}
	case 8:
		snprintf(log, sizeof(oplog[0]), "link %s %s", pa, pb);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){link(a[s], b[s]), errno};
		break;
	case 9:
		snprintf(log, sizeof(oplog[0]), "symlink %s -> %s", pb, pa);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){symlink(pa, b[s]), errno};
		break;
	case 10: {
		static const long sizes[] = {0, 3, 100, 4096, 5000, MAXFILE};
		long sz = sizes[rnd() % 6];

		snprintf(log, sizeof(oplog[0]), "truncate %s %ld", pa, sz);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){truncate(a[s], sz), errno};
		break;
	}
	case 11: {
		static const mode_t modes[] = {0644, 0600,  0755,  01777, 0444,
					       0700, 02775, 04755, 06777, 0711};
		mode_t m = modes[rnd() % 10];

		snprintf(log, sizeof(oplog[0]), "chmod %s %o", pa, m);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){chmod(a[s], m), errno};
		break;
	}
	case 14: {
		static const int fl[] = {0, XATTR_CREATE, XATTR_REPLACE};
		int f = fl[rnd() % 3];
		size_t len = rnd() % 40;
		char name[16];

		snprintf(name, sizeof(name), "user.k%d", (int)(rnd() % 3));
		memset(data, 'a' + opnum % 26, len);
		snprintf(log, sizeof(oplog[0]),
			 "setxattr %s %s len %zu flags %d", pa, name, len, f);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){setxattr(a[s], name, data, len, f),
					    errno};
		break;
	}
	case 15: {
		char name[16];

		snprintf(name, sizeof(name), "user.k%d", (int)(rnd() % 3));
		snprintf(log, sizeof(oplog[0]), "removexattr %s %s", pa, name);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){removexattr(a[s], name), errno};
		break;
	}
	case 13: {
		static const int ids[] = {-1, 0, 1000, 1001, 2000};
		int u = ids[rnd() % 4], g = ids[rnd() % 5];

		snprintf(log, sizeof(oplog[0]), "chown %s %d:%d", pa, u, g);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){chown(a[s], u, g), errno};
		break;
	}
	case 12: {
		struct stat st[2];

		snprintf(log, sizeof(oplog[0]), "stat %s", pa);
		for (s = 0; s < 2; s++)
			r[s] = (struct res){stat(a[s], &st[s]), errno};
		same(log, r[0], r[1]);
		if (r[0].r == 0 && (st[0].st_mode != st[1].st_mode ||
				    st[0].st_uid != st[1].st_uid ||
				    st[0].st_gid != st[1].st_gid ||
				    (S_ISREG(st[0].st_mode) &&
				     st[0].st_size != st[1].st_size) ||
				    st[0].st_nlink != st[1].st_nlink))
			die("stat %s: mode %o/%o size %ld/%ld nlink %lu/%lu",
			    pa, st[0].st_mode, st[1].st_mode,
			    (long)st[0].st_size, (long)st[1].st_size,
			    (unsigned long)st[0].st_nlink,
			    (unsigned long)st[1].st_nlink);
		return;
	}
	default: {
		char buf[2][PATH_MAX];

		snprintf(log, sizeof(oplog[0]), "readlink %s", pa);
		for (s = 0; s < 2; s++) {
			r[s] = (struct res){readlink(a[s], buf[s], PATH_MAX),
					    errno};
		}
		same(log, r[0], r[1]);
		if (r[0].r > 0 && memcmp(buf[0], buf[1], r[0].r))
			die("readlink %s: targets differ", pa);
		return;
	}
	}
	same(log, r[0], r[1]);
}

/* An entry of a tree walk, for comparing the two sides. */
struct ent {
	char path[PATH_MAX];
	struct stat st;
};

static struct ent *ents[2];
static int nents[2], cap[2];

/* Collect every entry under root[side]/rel, depth first, sorted. */
static void walk(int side, const char *rel)
{
	char p[PATH_MAX], sub[PATH_MAX];
	struct dirent **list;
	int n;

	full(side, rel, p, sizeof(p));
	n = scandir(p, &list, NULL, alphasort);
	if (n < 0)
		die("scandir %s: %s", p, strerror(errno));
	for (int i = 0; i < n; i++) {
		struct ent *e;

		if (!strcmp(list[i]->d_name, ".") ||
		    !strcmp(list[i]->d_name, "..")) {
			free(list[i]);
			continue;
		}
		if (nents[side] == cap[side]) {
			cap[side] = cap[side] ? cap[side] * 2 : 64;
			ents[side] = realloc(ents[side],
					     cap[side] * sizeof(struct ent));
		}
		e = &ents[side][nents[side]++];
		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "",
			 list[i]->d_name);
		snprintf(e->path, sizeof(e->path), "%s", sub);
		full(side, sub, p, sizeof(p));
		if (lstat(p, &e->st))
			die("listed %s does not lstat: %s", p, strerror(errno));
		free(list[i]);
		if (S_ISDIR(e->st.st_mode))
			walk(side, sub);
	}
	free(list);
}

/*
 * Compare the user.* xattrs of rel on both sides: names and values
 * (names from the fuzzer's three, so their order can be ignored).
 */
static void same_xattrs(const char *rel)
{
	char p[PATH_MAX], v[2][256], name[16];
	ssize_t n[2];

	for (int k = 0; k < 3; k++) {
		snprintf(name, sizeof(name), "user.k%d", k);
		for (int s = 0; s < 2; s++) {
			full(s, rel, p, sizeof(p));
			n[s] = lgetxattr(p, name, v[s], sizeof(v[s]));
			if (n[s] < 0 && errno != ENODATA)
				die("lgetxattr %s %s: %s", p, name,
				    strerror(errno));
		}
		if (n[0] != n[1] || (n[0] > 0 && memcmp(v[0], v[1], n[0])))
			die("%s: xattr %s is %zd bytes here, %zd there (or "
			    "differs)",
			    rel, name, n[0], n[1]);
	}
}

/* Compare the contents of two regular files of the same size. */
static void same_bytes(const char *rel, off_t size)
{
	static char buf[2][MAXFILE + 512];
	char p[PATH_MAX];

	for (int s = 0; s < 2; s++) {
		int fd;

		full(s, rel, p, sizeof(p));
		fd = open(p, O_RDONLY);
		if (fd < 0 || pread(fd, buf[s], sizeof(buf[s]), 0) != size)
			die("read %s: %s", p, strerror(errno));
		close(fd);
	}
	if (memcmp(buf[0], buf[1], size))
		die("%s: contents differ", rel);
}

/* Walk both trees and compare everything a user can see. */
static void compare_trees(void)
{
	nents[0] = nents[1] = 0;
	walk(0, "");
	walk(1, "");
	for (int i = 0; i < nents[0] || i < nents[1]; i++) {
		struct ent *x = i < nents[0] ? &ents[0][i] : NULL;
		struct ent *y = i < nents[1] ? &ents[1][i] : NULL;

		if (!x || !y || strcmp(x->path, y->path))
			die("trees differ: reference has %s, test has %s",
			    x ? x->path : "(end)", y ? y->path : "(end)");
		if (x->st.st_uid != y->st.st_uid ||
		    x->st.st_gid != y->st.st_gid)
			die("%s: owner %d:%d/%d:%d", x->path, x->st.st_uid,
			    x->st.st_gid, y->st.st_uid, y->st.st_gid);
		if (x->st.st_mode != y->st.st_mode ||
		    x->st.st_nlink != y->st.st_nlink ||
		    (!S_ISDIR(x->st.st_mode) && x->st.st_size != y->st.st_size))
			die("%s: mode %o/%o nlink %lu/%lu size %ld/%ld",
			    x->path, x->st.st_mode, y->st.st_mode,
			    (unsigned long)x->st.st_nlink,
			    (unsigned long)y->st.st_nlink, (long)x->st.st_size,
			    (long)y->st.st_size);
		if (S_ISREG(x->st.st_mode))
			same_bytes(x->path, x->st.st_size);
		if (!S_ISLNK(x->st.st_mode))
			same_xattrs(x->path);
		/* Names sharing an inode on one side share it on the other. */
		for (int j = 0; j < i; j++)
			if ((ents[0][j].st.st_ino == x->st.st_ino) !=
			    (ents[1][j].st.st_ino == y->st.st_ino))
				die("%s and %s: hard-link sharing differs",
				    ents[0][j].path, x->path);
	}
}

/*
 * Act as root (who 0), or as uid/gid 1000 (also in group 2000) or 1001,
 * for the next operation: effective ids only, so root can come back.
 */
static void become(int who)
{
	static const gid_t groups[3][2] = {{0, 0}, {1000, 2000}, {1001, 1001}};
	static const uid_t ids[3] = {0, 1000, 1001};

	if (seteuid(0) || setgroups(who == 1 ? 2 : 1, groups[who]) ||
	    setegid(ids[who]) || seteuid(ids[who]))
		die("cannot become uid %d: %s", ids[who], strerror(errno));
}

/* Parse arguments, run the operations, compare the trees as we go. */
int main(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "s:n:u")) != -1) {
		if (c == 'u')
			users = 1;
		else if (c == 's')
			seed = strtoul(optarg, NULL, 0);
		else if (c == 'n')
			nops = atol(optarg);
		else
			goto usage;
	}
	if (optind != argc - 2)
		goto usage;
	root[0] = argv[optind];
	root[1] = argv[optind + 1];
	rng = seed * 0x9E3779B97F4A7C15ULL + 3;
	if (users && (chmod(root[0], 0777) || chmod(root[1], 0777)))
		die("chmod 777 the roots: %s", strerror(errno));
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("1..1\n");
	for (opnum = 1; opnum <= nops; opnum++) {
		if (users) {
			int who = (int)(rnd() % 3);

			op_uid[opnum % LOG_KEEP] = who ? 999 + who : 0;
			become(who);
		}
		step();
		if (users)
			become(0);
		if (opnum % 50 == 0)
			compare_trees();
	}
	opnum--;
	compare_trees();
	printf("ok 1 - nsfuzz seed %lu: %ld operations, %d entries alike\n",
	       seed, nops, nents[0]);
	return 0;
usage:
	fprintf(stderr, "usage: %s [-s SEED] [-n OPS] [-u] REFDIR TESTDIR\n",
		argv[0]);
	return 2;
}
