/*
 * posix_cases.c - one shared set of POSIX behaviour cases, run against any
 * folder (a native ext4/tmpfs folder or a mounted vdrive), printing TAP.
 *
 *   posix_cases [--list] [--only NAME[,NAME...]] [--keep] DIR
 *
 * Every case asserts what a user sees on ext4. Each runs in its own forked
 * process, in its own fresh subfolder of DIR, under a 60 s alarm; the
 * subfolder is removed afterwards and a removal failure fails the case.
 * Permission cases switch to uids/gids 1000, 1001, 2000 (they need not
 * exist in /etc/passwd) and so need root, and on FUSE a mount with
 * allow_other.
 *
 * A case is reported as "skip" only for these named reasons, each of which
 * a correct file system may legitimately give:
 *   - tmpfile: open(O_TMPFILE) fails with EOPNOTSUPP (FUSE served by
 *     libfuse 3.14 has no tmpfile request; tmpfs/ext4 support it). Not
 *     when the build's libfuse is 3.17 or later (VD_FUSE_VERSION).
 *   - seek_data_hole: SEEK_HOLE from 0 answers the file size, i.e. the
 *     whole file is reported as data (the generic fallback the kernel
 *     uses for a FUSE server without lseek; POSIX allows it).
 *   - odirect: open(O_DIRECT) fails with EINVAL (file system without
 *     direct I/O).
 *   - zero_range: FALLOC_FL_ZERO_RANGE fails with EOPNOTSUPP (tmpfs, and
 *     folders mirrored onto it, do not have it).
 *   - mmap_shared: mmap(MAP_SHARED) fails with ENODEV (a FUSE file opened
 *     with direct_io, when the server cannot ask for
 *     FUSE_DIRECT_IO_ALLOW_MMAP: libfuse 3.14 cannot). Not when the
 *     build's libfuse is 3.17 or later.
 *   - permission cases when not run as root (they need setuid()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define PC_PASS 0
#define PC_FAIL 1
#define PC_SKIP 2

/* The libfuse the build serves drives with, as major * 100 + minor (the
 * Makefile passes it; 0: unknown). From 3.17 on, O_TMPFILE and shared
 * mmap of direct_io files work, so their skips would hide a bug. */
#ifndef VD_FUSE_VERSION
#define VD_FUSE_VERSION 0
#endif
#define FUSE_HAS_317 (VD_FUSE_VERSION >= 317)

/* Result of the running case, in memory shared with its processes. */
struct pc_result {
	int status;
	char msg[1024];
};

static struct pc_result *res;

/* Name of an errno value, "0" for none. */
static const char *en(int e)
{
	const char *s = e ? strerrorname_np(e) : "0";

	return s ? s : "E?";
}

/* Record a failure (the first one wins); returns -1 for `return fail()`. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
	va_list ap;

	if (res->status != PC_FAIL) {
		res->status = PC_FAIL;
		va_start(ap, fmt);
		vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Record a named skip reason; returns 1 for `return skip()`. */
static int skip(const char *reason)
{
	if (res->status == PC_PASS) {
		res->status = PC_SKIP;
		snprintf(res->msg, sizeof(res->msg), "%s", reason);
	}
	return 1;
}

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			char m_[512];                                          \
			snprintf(m_, sizeof(m_), __VA_ARGS__);                 \
			return fail("line %d: %s", __LINE__, m_);              \
		}                                                              \
	} while (0)

/* Call must succeed (not return -1); returns its value. */
#define OK(call)                                                               \
	({                                                                     \
		long r_ = (long)(call);                                        \
		if (r_ == -1)                                                  \
			return fail("line %d: %s: %s", __LINE__, #call,        \
				    en(errno));                                \
		r_;                                                            \
	})

/* Call must fail with errno e (or e2, where ext4 may answer either). */
#define ERR2(call, e, e2)                                                      \
	do {                                                                   \
		long r_ = (long)(call);                                        \
		int x_ = errno;                                                \
		if (r_ != -1)                                                  \
			return fail("line %d: %s: expected %s, got success",   \
				    __LINE__, #call, en(e));                   \
		if (x_ != (e) && x_ != (e2))                                   \
			return fail("line %d: %s: expected %s, got %s",        \
				    __LINE__, #call, en(e), en(x_));           \
	} while (0)
#define ERR(call, e) ERR2(call, e, e)

/* Write all of buf to a new file name (mode 0644). */
static int put(const char *name, const void *buf, size_t len)
{
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return fail("create %s: %s", name, en(errno));
	if (write(fd, buf, len) != (ssize_t)len) {
		close(fd);
		return fail("write %s: %s", name, en(errno));
	}
	if (close(fd))
		return fail("close %s: %s", name, en(errno));
	return 0;
}

/* Check that file name holds exactly the len bytes of want. */
static int expect_content(const char *name, const void *want, size_t len)
{
	char *buf = malloc(len + 16);
	int fd = open(name, O_RDONLY);
	ssize_t n, got = 0;

	if (fd < 0) {
		free(buf);
		return fail("open %s: %s", name, en(errno));
	}
	while ((n = read(fd, buf + got, len + 16 - got)) > 0)
		got += n;
	close(fd);
	if (n < 0 || got != (ssize_t)len || memcmp(buf, want, len)) {
		free(buf);
		return fail("%s: content differs (read %zd bytes, want %zu)",
			    name, got, len);
	}
	free(buf);
	return 0;
}

/* Whether name is listed in folder dir (count of times, -1 on error). */
static int listed(const char *dir, const char *name)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, name) == 0;
	closedir(d);
	return n;
}

/*
 * Fork a process that runs as uid/gid with the given supplementary
 * groups. Returns 0 in that process (which must `return` from the case:
 * the runner then exits it) and its pid in the caller.
 */
static pid_t as_user(uid_t uid, gid_t gid, const gid_t *groups, int ngroups)
{
	pid_t p = fork();

	if (p != 0)
		return p;
	if (setgroups(ngroups, groups) || setgid(gid) || setuid(uid)) {
		fail("cannot become uid %d: %s", uid, en(errno));
		_exit(PC_FAIL);
	}
	return 0;
}

/* Wait for a process from as_user() or fork(); 0 when it passed. */
static int join(pid_t p)
{
	int st;

	if (p < 0)
		return fail("fork: %s", en(errno));
	if (waitpid(p, &st, 0) < 0)
		return fail("waitpid: %s", en(errno));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFSIGNALED(st))
		return fail("helper process killed by signal %d", WTERMSIG(st));
	return fail("helper process failed (exit %d)", WEXITSTATUS(st));
}

/* Sleep long enough for the coarse file-time clock to move. */
static void tick(void)
{
	struct timespec ts = {0, 30 * 1000 * 1000};

	nanosleep(&ts, NULL);
}

static const gid_t g1000[] = {1000};
static const gid_t g1001[] = {1001};
static const gid_t g1000_2000[] = {1000, 2000};

/* Reading another user's 0600 file is EACCES; its owner can; root can. */
static int case_perm_read(void)
{
	pid_t p;

	if (put("secret", "s3cret", 6))
		return -1;
	OK(chown("secret", 1001, 1001));
	OK(chmod("secret", 0600));
	p = as_user(1000, 1000, g1000, 1);
	if (p == 0) {
		ERR(open("secret", O_RDONLY), EACCES);
		ERR(open("secret", O_WRONLY), EACCES);
		ERR(truncate("secret", 0), EACCES);
		ERR(access("secret", R_OK), EACCES);
		OK(access("secret", F_OK));
		return 0;
	}
	if (join(p))
		return -1;
	p = as_user(1001, 1001, g1001, 1);
	if (p == 0)
		return expect_content("secret", "s3cret", 6);
	if (join(p))
		return -1;
	OK(chmod("secret", 0444));
	p = as_user(1001, 1001, g1001, 1);
	if (p == 0) {
		ERR(open("secret", O_WRONLY), EACCES);
		return 0;
	}
	if (join(p))
		return -1;
	OK(close(OK(open("secret", O_WRONLY)))); /* root overrides */
	return 0;
}

/* A 0755 folder of another user accepts no new or removed entries. */
static int case_perm_write_dir(void)
{
	pid_t p;

	OK(mkdir("d", 0755));
	if (put("d/f", "x", 1))
		return -1;
	OK(chown("d", 1001, 1001));
	OK(chown("d/f", 1000, 1000));
	p = as_user(1000, 1000, g1000, 1);
	if (p == 0) {
		ERR(open("d/new", O_WRONLY | O_CREAT, 0644), EACCES);
		ERR(mkdir("d/sub", 0755), EACCES);
		ERR(unlink("d/f"), EACCES);
		ERR(rename("d/f", "d/g"), EACCES);
		ERR(symlink("x", "d/l"), EACCES);
		return 0;
	}
	if (join(p))
		return -1;
	p = as_user(1001, 1001, g1001, 1);
	if (p == 0) {
		OK(close(OK(open("d/new", O_WRONLY | O_CREAT, 0644))));
		OK(unlink("d/f"));
		return 0;
	}
	if (join(p))
		return -1;
	CHECK(listed("d", "f") == 0 && listed("d", "new") == 1,
	      "listing of d wrong after owner's changes");
	return 0;
}

/* A 0700 folder of another user cannot be searched or listed. */
static int case_perm_search_dir(void)
{
	pid_t p;

	OK(mkdir("d", 0700));
	if (put("d/f", "x", 1))
		return -1;
	OK(chown("d", 1001, 1001));
	p = as_user(1000, 1000, g1000, 1);
	if (p == 0) {
		struct stat st;

		ERR(stat("d/f", &st), EACCES);
		CHECK(opendir("d") == NULL && errno == EACCES,
		      "opendir of 0700 dir: expected EACCES, got %s",
		      en(errno));
		ERR(chdir("d"), EACCES);
		OK(stat("d", &st));
		return 0;
	}
	return join(p);
}

/* Sticky folder: only the owner of an entry (or of the folder) removes it. */
static int case_sticky(void)
{
	struct stat st;
	pid_t p;

	OK(mkdir("t", 0777));
	OK(chmod("t", 01777));
	OK(stat("t", &st));
	CHECK((st.st_mode & 07777) == 01777, "mode of t is %o",
	      st.st_mode & 07777);
	p = as_user(1000, 1000, g1000, 1);
	if (p == 0) {
		OK(close(OK(open("t/a", O_WRONLY | O_CREAT, 0666))));
		OK(close(OK(open("t/a2", O_WRONLY | O_CREAT, 0666))));
		return 0;
	}
	if (join(p))
		return -1;
	p = as_user(1001, 1001, g1001, 1);
	if (p == 0) {
		OK(close(OK(open("t/b", O_WRONLY | O_CREAT, 0666))));
		ERR(unlink("t/a"), EPERM);
		ERR(rename("t/a", "t/c"), EPERM);
		ERR(rename("t/b", "t/a"), EPERM);
		return 0;
	}
	if (join(p))
		return -1;
	p = as_user(1000, 1000, g1000, 1);
	if (p == 0) {
		OK(unlink("t/a"));
		OK(rename("t/a2", "t/a3"));
		return 0;
	}
	if (join(p))
		return -1;
	OK(unlink("t/b")); /* root may */
	CHECK(listed("t", "a") == 0 && listed("t", "a3") == 1 &&
		      listed("t", "b") == 0,
	      "listing of sticky folder wrong");
	return 0;
}

/* Entries made in a setgid folder take its group; subfolders keep setgid. */
static int case_setgid_dir(void)
{
	struct stat st;
	pid_t p;

	OK(mkdir("g", 0775));
	OK(chown("g", 1000, 2000));
	OK(chmod("g", 02775));
	OK(stat("g", &st));
	CHECK((st.st_mode & 07777) == 02775 && st.st_gid == 2000,
	      "g: mode %o gid %d", st.st_mode & 07777, st.st_gid);
	p = as_user(1000, 1000, g1000, 1);
	if (p == 0) {
		OK(close(OK(open("g/f", O_WRONLY | O_CREAT, 0644))));
		OK(mkdir("g/sub", 0755));
		OK(stat("g/f", &st));
		CHECK(st.st_gid == 2000 && st.st_uid == 1000,
		      "file in setgid dir: uid %d gid %d, want 1000 2000",
		      st.st_uid, st.st_gid);
		OK(stat("g/sub", &st));
		CHECK(st.st_gid == 2000, "subdir gid %d, want 2000", st.st_gid);
		CHECK(st.st_mode & S_ISGID,
		      "subdir of setgid dir lost setgid (mode %o)",
		      st.st_mode & 07777);
		return 0;
	}
	if (join(p))
		return -1;
	OK(mkdir("plain", 0777));
	OK(chmod("plain", 0777));
	p = as_user(1000, 1000, g1000, 1);
	if (p == 0) {
		OK(close(OK(open("plain/f", O_WRONLY | O_CREAT, 0644))));
		OK(stat("plain/f", &st));
		CHECK(st.st_gid == 1000, "file in plain dir: gid %d, want 1000",
		      st.st_gid);
		return 0;
	}
	return join(p);
}

/* chmod by a non-owner is EPERM; by the owner works. */
static int case_chmod_nonowner(void)
{
	struct stat st;
	pid_t p;

	if (put("f", "x", 1))
		return -1;
	OK(chown("f", 1000, 1000));
	OK(chmod("f", 0666));
	p = as_user(1001, 1001, g1001, 1);
	if (p == 0) {
		ERR(chmod("f", 0777), EPERM);
		ERR(utimensat(AT_FDCWD, "f",
			      (struct timespec[]){{1, 0}, {1, 0}}, 0),
		    EPERM);
		OK(utimensat(AT_FDCWD, "f", NULL, 0)); /* may: can write */
		return 0;
	}
	if (join(p))
		return -1;
	p = as_user(1000, 1000, g1000, 1);
	if (p == 0) {
		OK(chmod("f", 0640));
		return 0;
	}
	if (join(p))
		return -1;
	OK(stat("f", &st));
	CHECK((st.st_mode & 07777) == 0640, "mode %o, want 640",
	      st.st_mode & 07777);
	return 0;
}

/* chown by a non-root user is EPERM; chgrp to an own group works. */
static int case_chown_nonroot(void)
{
	struct stat st;
	pid_t p;

	if (put("f", "x", 1))
		return -1;
	OK(chown("f", 1000, 1000));
	p = as_user(1000, 1000, g1000_2000, 2);
	if (p == 0) {
		ERR(chown("f", 1001, -1), EPERM);
		ERR(chown("f", -1, 3000), EPERM);
		OK(chown("f", -1, 2000));
		return 0;
	}
	if (join(p))
		return -1;
	p = as_user(1001, 1001, g1001, 1);
	if (p == 0) {
		ERR(chown("f", 1001, -1), EPERM);
		return 0;
	}
	if (join(p))
		return -1;
	OK(stat("f", &st));
	CHECK(st.st_uid == 1000 && st.st_gid == 2000,
	      "owner %d:%d, want 1000:2000", st.st_uid, st.st_gid);
	OK(chown("f", 1001, 1001));
	OK(stat("f", &st));
	CHECK(st.st_uid == 1001 && st.st_gid == 1001,
	      "owner after root chown %d:%d", st.st_uid, st.st_gid);
	return 0;
}

/* The creator's umask is applied to create, mkdir, mknod (fifo). */
static int case_umask(void)
{
	struct stat st;
	pid_t p;

	umask(027);
	OK(close(OK(open("f", O_WRONLY | O_CREAT, 0666))));
	OK(mkdir("d", 0777));
	OK(mkfifo("p", 0666));
	OK(stat("f", &st));
	CHECK((st.st_mode & 0777) == 0640, "file mode %o, want 640",
	      st.st_mode & 0777);
	OK(stat("d", &st));
	CHECK((st.st_mode & 0777) == 0750, "dir mode %o, want 750",
	      st.st_mode & 0777);
	OK(stat("p", &st));
	CHECK((st.st_mode & 0777) == 0640, "fifo mode %o, want 640",
	      st.st_mode & 0777);
	p = as_user(1000, 1000, g1000, 1);
	if (p == 0) {
		umask(077);
		OK(close(OK(open("u", O_WRONLY | O_CREAT, 0666))));
		OK(stat("u", &st));
		CHECK((st.st_mode & 0777) == 0600 && st.st_uid == 1000,
		      "user file mode %o uid %d", st.st_mode & 0777, st.st_uid);
		return 0;
	}
	return join(p);
}

/* rename over an existing file replaces it; an open fd keeps the old one. */
static int case_rename_file(void)
{
	struct stat sa, sb;
	char buf[8] = {0};
	int fd;

	if (put("a", "AAAA", 4) || put("b", "BB", 2))
		return -1;
	OK(stat("a", &sa));
	fd = OK(open("b", O_RDONLY));
	OK(rename("a", "b"));
	OK(stat("b", &sb));
	CHECK(sa.st_ino == sb.st_ino, "b has inode %lu, want a's %lu",
	      (unsigned long)sb.st_ino, (unsigned long)sa.st_ino);
	ERR(stat("a", &sa), ENOENT);
	CHECK(listed(".", "a") == 0 && listed(".", "b") == 1,
	      "listing after rename wrong");
	if (expect_content("b", "AAAA", 4))
		return -1;
	CHECK(pread(fd, buf, 8, 0) == 2 && memcmp(buf, "BB", 2) == 0,
	      "open fd of replaced file reads '%s', want 'BB'", buf);
	close(fd);
	OK(rename("b", "b")); /* same name: no-op */
	if (expect_content("b", "AAAA", 4))
		return -1;
	OK(link("b", "c"));
	OK(rename("b", "c")); /* hard links of one file: no-op */
	CHECK(listed(".", "b") == 1 && listed(".", "c") == 1,
	      "rename between links of one inode removed a name");
	ERR(rename("nosuch", "x"), ENOENT);
	return 0;
}

/* rename of folders: over empty works, over non-empty is ENOTEMPTY. */
static int case_rename_dir(void)
{
	struct stat st;

	OK(mkdir("p1", 0755));
	OK(mkdir("p2", 0755));
	OK(mkdir("p1/d", 0755));
	if (put("p1/d/f", "x", 1))
		return -1;
	OK(mkdir("p2/empty", 0755));
	OK(mkdir("full", 0755));
	if (put("full/g", "y", 1))
		return -1;
	OK(stat("p1", &st));
	CHECK(st.st_nlink == 3, "p1 nlink %lu, want 3",
	      (unsigned long)st.st_nlink);
	OK(rename("p1/d", "p2/empty"));
	OK(stat("p1", &st));
	CHECK(st.st_nlink == 2, "p1 nlink after move %lu, want 2",
	      (unsigned long)st.st_nlink);
	OK(stat("p2", &st));
	CHECK(st.st_nlink == 3, "p2 nlink after move %lu, want 3",
	      (unsigned long)st.st_nlink);
	if (expect_content("p2/empty/f", "x", 1))
		return -1;
	CHECK(listed("p1", "d") == 0, "p1/d still listed");
	ERR2(rename("p2/empty", "full"), ENOTEMPTY, EEXIST);
	if (put("file", "z", 1))
		return -1;
	ERR(rename("p2/empty", "file"), ENOTDIR);
	ERR(rename("file", "p2/empty"), EISDIR);
	ERR(rename("p2", "p2/empty/inside"), EINVAL);
	OK(rename("p2", "p3"));
	if (expect_content("p3/empty/f", "x", 1))
		return -1;
	return 0;
}

/* renameat2(RENAME_NOREPLACE): EEXIST on an existing target. */
static int case_rename_noreplace(void)
{
	if (put("a", "A", 1) || put("b", "B", 1))
		return -1;
	ERR(renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_NOREPLACE), EEXIST);
	if (expect_content("a", "A", 1) || expect_content("b", "B", 1))
		return -1;
	OK(renameat2(AT_FDCWD, "a", AT_FDCWD, "c", RENAME_NOREPLACE));
	if (expect_content("c", "A", 1))
		return -1;
	CHECK(listed(".", "a") == 0, "a still listed");
	return 0;
}

/* renameat2(RENAME_EXCHANGE) swaps two names atomically. */
static int case_rename_exchange(void)
{
	struct stat sa, sb, st;

	if (put("a", "AAA", 3) || put("b", "B", 1))
		return -1;
	OK(mkdir("d", 0755));
	OK(stat("a", &sa));
	OK(stat("b", &sb));
	OK(renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_EXCHANGE));
	if (expect_content("a", "B", 1) || expect_content("b", "AAA", 3))
		return -1;
	OK(stat("a", &st));
	CHECK(st.st_ino == sb.st_ino, "a did not take b's inode");
	OK(renameat2(AT_FDCWD, "a", AT_FDCWD, "d", RENAME_EXCHANGE));
	OK(stat("a", &st));
	CHECK(S_ISDIR(st.st_mode), "a is not the folder after exchange");
	if (expect_content("d", "B", 1))
		return -1;
	ERR(renameat2(AT_FDCWD, "a", AT_FDCWD, "nosuch", RENAME_EXCHANGE),
	    ENOENT);
	return 0;
}

/* Hard links: one inode, nlink counts, data survives unlink of one name. */
static int case_hardlink(void)
{
	struct stat sa, sb;
	int fd;

	if (put("a", "hello", 5))
		return -1;
	OK(link("a", "b"));
	OK(stat("a", &sa));
	OK(stat("b", &sb));
	CHECK(sa.st_ino == sb.st_ino, "links have different inodes");
	CHECK(sa.st_nlink == 2 && sb.st_nlink == 2, "nlink %lu/%lu, want 2",
	      (unsigned long)sa.st_nlink, (unsigned long)sb.st_nlink);
	fd = OK(open("b", O_WRONLY | O_APPEND));
	CHECK(write(fd, " world", 6) == 6, "write via b");
	close(fd);
	if (expect_content("a", "hello world", 11))
		return -1;
	OK(unlink("a"));
	OK(stat("b", &sb));
	CHECK(sb.st_nlink == 1, "nlink after unlink %lu, want 1",
	      (unsigned long)sb.st_nlink);
	if (expect_content("b", "hello world", 11))
		return -1;
	OK(mkdir("d", 0755));
	ERR(link("d", "d2"), EPERM);
	if (put("c", "c", 1))
		return -1;
	ERR(link("b", "c"), EEXIST);
	ERR(link("nosuch", "x"), ENOENT);
	return 0;
}

/* Symlinks: readlink, lstat, dangling, following, O_NOFOLLOW. */
static int case_symlink(void)
{
	char target[1001], buf[2048];
	struct stat st;
	ssize_t n;

	OK(symlink("missing", "l"));
	OK(lstat("l", &st));
	CHECK(S_ISLNK(st.st_mode) && st.st_size == 7, "lstat: mode %o size %ld",
	      st.st_mode, (long)st.st_size);
	n = OK(readlink("l", buf, sizeof(buf)));
	CHECK(n == 7 && memcmp(buf, "missing", 7) == 0, "readlink wrong");
	ERR(stat("l", &st), ENOENT);
	ERR(open("l", O_RDONLY), ENOENT);
	ERR(open("l", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	if (put("missing", "now", 3))
		return -1;
	if (expect_content("l", "now", 3))
		return -1;
	ERR(open("l", O_RDONLY | O_NOFOLLOW), ELOOP);
	ERR(readlink("missing", buf, sizeof(buf)), EINVAL);
	ERR(symlink("x", "l"), EEXIST);
	OK(mkdir("d", 0755));
	OK(symlink("../missing", "d/up"));
	if (expect_content("d/up", "now", 3))
		return -1;
	OK(symlink("d", "dl"));
	if (expect_content("dl/up", "now", 3))
		return -1;
	memset(target, 'x', 1000);
	target[1000] = 0;
	OK(symlink(target, "long"));
	n = OK(readlink("long", buf, sizeof(buf)));
	CHECK(n == 1000 && memcmp(buf, target, 1000) == 0,
	      "1000-byte target read back as %zd bytes", n);
	OK(unlink("l"));
	OK(stat("missing", &st)); /* unlink removes the link, not the target */
	return 0;
}

/*
 * A file written at 1 GiB is sparse: few blocks, holes read as zeros.
 * Then a write past 4 GiB lands there and nowhere else.
 */
static int case_sparse(void)
{
	char buf[4096], zero[4096] = {0};
	struct stat st;
	int fd;

	fd = OK(open("s", O_RDWR | O_CREAT, 0644));
	CHECK(pwrite(fd, "X", 1, 1L << 30) == 1, "pwrite at 1 GiB: %s",
	      en(errno));
	OK(fsync(fd));
	OK(fstat(fd, &st));
	CHECK(st.st_size == (1L << 30) + 1, "size %ld", (long)st.st_size);
	CHECK(st.st_blocks * 512 < (1 << 20),
	      "st_blocks %ld for 1 byte at 1 GiB: not sparse",
	      (long)st.st_blocks);
	CHECK(pread(fd, buf, 4096, 512L << 20) == 4096 &&
		      memcmp(buf, zero, 4096) == 0,
	      "hole at 512 MiB does not read as zeros");
	CHECK(pread(fd, buf, 4096, 0) == 4096 && memcmp(buf, zero, 4096) == 0,
	      "hole at 0 does not read as zeros");
	CHECK(pread(fd, buf, 4096, (1L << 30) - 1) == 2 && buf[0] == 0 &&
		      buf[1] == 'X',
	      "read across the end of the hole wrong");
	CHECK(pread(fd, buf, 16, (1L << 30) + 1) == 0, "read at EOF not 0");
	CHECK(pwrite(fd, "YZ", 2, (5L << 30) + 123) == 2, "pwrite at 5 GiB: %s",
	      en(errno));
	OK(fstat(fd, &st));
	CHECK(st.st_size == (5L << 30) + 125, "size after write at 5 GiB %ld",
	      (long)st.st_size);
	CHECK(pread(fd, buf, 4, (5L << 30) + 122) == 3 && buf[0] == 0 &&
		      buf[1] == 'Y' && buf[2] == 'Z',
	      "read back at 5 GiB wrong (32-bit offset?)");
	CHECK(pread(fd, buf, 4096, (1L << 30) + 123) == 4096 &&
		      memcmp(buf, zero, 4096) == 0,
	      "write at 5 GiB showed up at 1 GiB + 123 (offset wrapped)");
	close(fd);
	return 0;
}

/*
 * SEEK_DATA/SEEK_HOLE find the data and the holes. ext4 answers at 4 KiB
 * blocks; a coarser block (up to the 1 MiB between the two data runs) is
 * accepted, as POSIX lets a file system report part of a hole as data.
 */
static int case_seek_data_hole(void)
{
	char data[4096];
	off_t r, h;
	int fd;

	memset(data, 'd', sizeof(data));
	fd = OK(open("s", O_RDWR | O_CREAT, 0644));
	CHECK(pwrite(fd, data, 4096, 0) == 4096, "pwrite");
	CHECK(pwrite(fd, data, 4096, 1 << 20) == 4096, "pwrite");
	OK(ftruncate(fd, 2 << 20));
	OK(fsync(fd));
	r = lseek(fd, 0, SEEK_HOLE);
	if (r == (2 << 20)) {
		close(fd);
		return skip("SEEK_HOLE reports the whole file as data "
			    "(generic fallback, allowed by POSIX)");
	}
	CHECK(r >= 4096 && r < 1 << 20,
	      "SEEK_HOLE from 0 = %ld (%s), want 4096 (or up to 1 MiB)",
	      (long)r, en(errno));
	h = r;
	r = lseek(fd, h, SEEK_DATA);
	CHECK(r > h && r <= 1 << 20, "SEEK_DATA from %ld = %ld, want 1 MiB",
	      (long)h, (long)r);
	r = lseek(fd, 1 << 20, SEEK_HOLE);
	CHECK(r >= (1 << 20) + 4096 && r <= 2 << 20,
	      "SEEK_HOLE from 1 MiB = %ld, want 1 MiB + 4096", (long)r);
	if (r < 2 << 20)
		ERR(lseek(fd, r, SEEK_DATA), ENXIO);
	ERR(lseek(fd, 2 << 20, SEEK_DATA), ENXIO);
	ERR(lseek(fd, 3 << 20, SEEK_HOLE), ENXIO);
	close(fd);
	return 0;
}

/* truncate shrinks (old data gone) and extends with zeros. */
static int case_truncate(void)
{
	static char buf[10000], back[60000];
	struct stat st;
	int fd, i;

	for (i = 0; i < 10000; i++)
		buf[i] = 'a' + i % 26;
	if (put("t", buf, 10000))
		return -1;
	fd = OK(open("t", O_RDWR));
	OK(ftruncate(fd, 100));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 100, "size after shrink %ld", (long)st.st_size);
	OK(ftruncate(fd, 50000));
	CHECK(pread(fd, back, sizeof(back), 0) == 50000,
	      "read after extend: wrong length");
	CHECK(memcmp(back, buf, 100) == 0, "first 100 bytes changed");
	for (i = 100; i < 50000; i++)
		CHECK(back[i] == 0, "byte %d after shrink+extend is %d, want 0",
		      i, back[i]);
	close(fd);
	OK(truncate("t", 7));
	if (expect_content("t", buf, 7))
		return -1;
	OK(truncate("t", 0));
	OK(stat("t", &st));
	CHECK(st.st_size == 0 && st.st_blocks == 0,
	      "size %ld blocks %ld after truncate to 0", (long)st.st_size,
	      (long)st.st_blocks);
	fd = OK(open("t", O_RDWR | O_TRUNC));
	CHECK(write(fd, "new", 3) == 3, "write");
	close(fd);
	return expect_content("t", "new", 3);
}

/* O_APPEND writes land at the end, also from two processes at once. */
static int case_append(void)
{
	char rec[17], *all;
	struct stat st;
	pid_t p;
	int fd, i, n[2] = {0, 0};

	if (put("a", "abc", 3))
		return -1;
	fd = OK(open("a", O_WRONLY | O_APPEND));
	OK(lseek(fd, 0, SEEK_SET));
	CHECK(write(fd, "def", 3) == 3, "write");
	CHECK(lseek(fd, 0, SEEK_CUR) == 6, "offset after append write");
	close(fd);
	if (expect_content("a", "abcdef", 6))
		return -1;
	OK(close(OK(open("r", O_WRONLY | O_CREAT, 0644))));
	p = fork();
	fd = OK(open("r", O_WRONLY | O_APPEND));
	for (i = 0; i < 1000; i++) {
		snprintf(rec, sizeof(rec), "%c%014d\n", p ? 'P' : 'C', i);
		CHECK(write(fd, rec, 16) == 16, "append write: %s", en(errno));
	}
	close(fd);
	if (p == 0)
		return 0;
	if (join(p))
		return -1;
	OK(stat("r", &st));
	CHECK(st.st_size == 32000, "two appenders: size %ld, want 32000",
	      (long)st.st_size);
	all = malloc(32000);
	fd = OK(open("r", O_RDONLY));
	CHECK(read(fd, all, 32000) == 32000, "read back");
	close(fd);
	for (i = 0; i < 2000; i++) {
		char *r = all + i * 16;
		int who = r[0] == 'P' ? 0 : 1;

		if ((r[0] != 'P' && r[0] != 'C') || r[15] != '\n' ||
		    atoi(r + 1) != n[who]) {
			free(all);
			return fail("record %d garbled or out of order", i);
		}
		n[who]++;
	}
	free(all);
	return 0;
}

/* O_CREAT|O_EXCL on an existing name is EEXIST. */
static int case_excl(void)
{
	if (put("e", "x", 1))
		return -1;
	ERR(open("e", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	OK(mkdir("d", 0755));
	ERR(open("d", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	OK(close(OK(open("n", O_WRONLY | O_CREAT | O_EXCL, 0644))));
	ERR(open("n", O_RDONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	return expect_content("e", "x", 1);
}

/*
 * An unlinked open file stays readable and writable through its fd, and
 * its attributes and xattrs can still be changed through it.
 */
static int case_unlink_open(void)
{
	char buf[32] = {0};
	struct stat st;
	int fd;

	fd = OK(open("u", O_RDWR | O_CREAT, 0644));
	CHECK(write(fd, "hello", 5) == 5, "write");
	OK(unlink("u"));
	ERR(stat("u", &st), ENOENT);
	CHECK(listed(".", "u") == 0, "unlinked file still listed");
	OK(fstat(fd, &st));
	CHECK(st.st_nlink == 0, "fstat nlink %lu after unlink, want 0",
	      (unsigned long)st.st_nlink);
	CHECK(pread(fd, buf, sizeof(buf), 0) == 5 &&
		      memcmp(buf, "hello", 5) == 0,
	      "read after unlink: '%s'", buf);
	CHECK(pwrite(fd, " again", 6, 5) == 6, "write after unlink: %s",
	      en(errno));
	OK(ftruncate(fd, 11));
	CHECK(pread(fd, buf, sizeof(buf), 0) == 11 &&
		      memcmp(buf, "hello again", 11) == 0,
	      "read back after unlink: '%s'", buf);
	OK(fchmod(fd, 0600));
	OK(fstat(fd, &st));
	CHECK((st.st_mode & 0777) == 0600, "fchmod after unlink: mode %o",
	      st.st_mode & 0777);
	OK(fsetxattr(fd, "user.gone", "1", 1, 0));
	CHECK(fgetxattr(fd, "user.gone", buf, sizeof(buf)) == 1,
	      "xattr on an unlinked file: %s", en(errno));
	OK(futimens(fd, (struct timespec[]){{7, 0}, {8, 0}}));
	OK(fstat(fd, &st));
	CHECK(st.st_mtim.tv_sec == 8, "futimens after unlink: mtime %ld",
	      (long)st.st_mtim.tv_sec);
	if (put("u", "other", 5))
		return -1;
	CHECK(pread(fd, buf, sizeof(buf), 0) == 11 &&
		      memcmp(buf, "hello again", 11) == 0,
	      "new file of the same name changed the unlinked one");
	close(fd);
	return expect_content("u", "other", 5);
}

/* Read folder entries with getdents64 in small batches; count names. */
static int read_some(int fd, char names[][16], int *n, int max, int batches)
{
	char buf[512];

	while (batches-- != 0) {
		long got = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		long off = 0;

		if (got < 0)
			return fail("getdents64: %s", en(errno));
		if (got == 0)
			return 1;
		while (off < got) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);

			if (*n >= max)
				return fail(
					"readdir returned too many entries");
			snprintf(names[(*n)++], 16, "%s", d->d_name);
			off += d->d_reclen;
		}
	}
	return 0;
}

/*
 * Listing while the folder changes: every entry that exists throughout
 * is seen exactly once, and no name is seen twice.
 */
static int case_readdir_churn(void)
{
	enum { KEEP = 300, CHURN = 300, MAX = 2000 };
	static char names[MAX][16];
	char name[32];
	int fd, i, j, n = 0, r;

	for (i = 0; i < KEEP; i++) {
		snprintf(name, sizeof(name), "k%04d", i);
		OK(close(OK(open(name, O_WRONLY | O_CREAT, 0644))));
		snprintf(name, sizeof(name), "c%04d", i);
		OK(close(OK(open(name, O_WRONLY | O_CREAT, 0644))));
	}
	fd = OK(open(".", O_RDONLY | O_DIRECTORY));
	r = read_some(fd, names, &n, MAX, 4);
	if (r < 0)
		return -1;
	for (i = 0; i < CHURN; i++) {
		snprintf(name, sizeof(name), "c%04d", i);
		OK(unlink(name));
		snprintf(name, sizeof(name), "n%04d", i);
		OK(close(OK(open(name, O_WRONLY | O_CREAT, 0644))));
	}
	if (r == 0 && read_some(fd, names, &n, MAX, -1) < 0)
		return -1;
	close(fd);
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			CHECK(strcmp(names[i], names[j]) != 0,
			      "entry %s listed twice", names[i]);
	for (i = 0; i < KEEP; i++) {
		int seen = 0;

		snprintf(name, sizeof(name), "k%04d", i);
		for (j = 0; j < n; j++)
			seen += strcmp(names[j], name) == 0;
		CHECK(seen == 1, "%s (existed throughout) seen %d times", name,
		      seen);
	}
	return 0;
}

/* user.* extended attributes: set, get, list, remove and their errors. */
static int case_xattr(void)
{
	char buf[8192], big[4000];
	ssize_t n;

	if (put("f", "x", 1))
		return -1;
	OK(setxattr("f", "user.a", "one", 3, 0));
	OK(setxattr("f", "user.b", "", 0, 0));
	n = OK(getxattr("f", "user.a", NULL, 0));
	CHECK(n == 3, "size query of user.a = %zd", n);
	n = OK(getxattr("f", "user.a", buf, sizeof(buf)));
	CHECK(n == 3 && memcmp(buf, "one", 3) == 0, "user.a value wrong");
	CHECK(getxattr("f", "user.b", buf, sizeof(buf)) == 0,
	      "empty value not empty");
	ERR(getxattr("f", "user.a", buf, 2), ERANGE);
	ERR(setxattr("f", "user.a", "two", 3, XATTR_CREATE), EEXIST);
	ERR(setxattr("f", "user.c", "two", 3, XATTR_REPLACE), ENODATA);
	OK(setxattr("f", "user.a", "two!", 4, XATTR_REPLACE));
	n = OK(getxattr("f", "user.a", buf, sizeof(buf)));
	CHECK(n == 4 && memcmp(buf, "two!", 4) == 0, "replaced value wrong");
	n = OK(listxattr("f", buf, sizeof(buf)));
	CHECK(n == 14 && (memcmp(buf, "user.a\0user.b\0", 14) == 0 ||
			  memcmp(buf, "user.b\0user.a\0", 14) == 0),
	      "listxattr gave %zd bytes", n);
	CHECK(listxattr("f", NULL, 0) == 14, "listxattr size query");
	ERR(listxattr("f", buf, 5), ERANGE);
	ERR(getxattr("f", "user.none", buf, sizeof(buf)), ENODATA);
	ERR(removexattr("f", "user.none"), ENODATA);
	OK(removexattr("f", "user.a"));
	ERR(getxattr("f", "user.a", buf, sizeof(buf)), ENODATA);
	memset(big, 'v', sizeof(big));
	OK(setxattr("f", "user.big", big, sizeof(big), 0));
	n = OK(getxattr("f", "user.big", buf, sizeof(buf)));
	CHECK(n == sizeof(big) && memcmp(buf, big, n) == 0, "4000-byte value");
	OK(mkdir("d", 0755));
	OK(setxattr("d", "user.dir", "D", 1, 0));
	CHECK(getxattr("d", "user.dir", buf, sizeof(buf)) == 1,
	      "xattr on a folder");
	return 0;
}

/*
 * utimensat keeps nanoseconds; write moves mtime/ctime; chmod moves ctime;
 * creating, removing and renaming entries move the folders' mtime; rename
 * and link move the file's ctime (as ext4 does), not its mtime.
 */
static int case_timestamps(void)
{
	struct timespec ts[2] = {{1000000000, 123456789},
				 {1500000000, 987654321}};
	struct timespec now;
	struct stat a, b;
	char buf[4];
	int fd;

	if (put("f", "x", 1))
		return -1;
	OK(utimensat(AT_FDCWD, "f", ts, 0));
	OK(stat("f", &a));
	CHECK(a.st_atim.tv_sec == ts[0].tv_sec &&
		      a.st_atim.tv_nsec == ts[0].tv_nsec,
	      "atime %ld.%09ld", a.st_atim.tv_sec, a.st_atim.tv_nsec);
	CHECK(a.st_mtim.tv_sec == ts[1].tv_sec &&
		      a.st_mtim.tv_nsec == ts[1].tv_nsec,
	      "mtime %ld.%09ld", a.st_mtim.tv_sec, a.st_mtim.tv_nsec);
	tick();
	fd = OK(open("f", O_RDWR));
	CHECK(read(fd, buf, 1) == 1, "read");
	OK(fstat(fd, &b));
	CHECK(b.st_mtim.tv_sec == ts[1].tv_sec, "read changed mtime");
	CHECK(pwrite(fd, "y", 1, 0) == 1, "write");
	close(fd);
	clock_gettime(CLOCK_REALTIME, &now);
	OK(stat("f", &b));
	CHECK(b.st_mtim.tv_sec > now.tv_sec - 10 &&
		      b.st_mtim.tv_sec <= now.tv_sec,
	      "mtime after write is %ld, now %ld", b.st_mtim.tv_sec,
	      now.tv_sec);
	CHECK(b.st_ctim.tv_sec > now.tv_sec - 10,
	      "ctime after write is %ld, now %ld", b.st_ctim.tv_sec,
	      now.tv_sec);
	a = b;
	tick();
	OK(chmod("f", 0600));
	OK(stat("f", &b));
	CHECK(b.st_ctim.tv_sec > a.st_ctim.tv_sec ||
		      (b.st_ctim.tv_sec == a.st_ctim.tv_sec &&
		       b.st_ctim.tv_nsec > a.st_ctim.tv_nsec),
	      "chmod did not move ctime");
	CHECK(b.st_mtim.tv_sec == a.st_mtim.tv_sec &&
		      b.st_mtim.tv_nsec == a.st_mtim.tv_nsec,
	      "chmod moved mtime");
	OK(utimensat(AT_FDCWD, "f",
		     (struct timespec[]){{0, UTIME_OMIT}, {5, 5}}, 0));
	OK(stat("f", &a));
	CHECK(a.st_mtim.tv_sec == 5 && a.st_mtim.tv_nsec == 5 &&
		      a.st_atim.tv_sec == b.st_atim.tv_sec,
	      "UTIME_OMIT: atime %ld mtime %ld.%ld", a.st_atim.tv_sec,
	      a.st_mtim.tv_sec, a.st_mtim.tv_nsec);
	OK(mkdir("d", 0755));
	OK(utimensat(AT_FDCWD, "d", ts, 0));
	tick();
	OK(close(OK(open("d/new", O_WRONLY | O_CREAT, 0644))));
	OK(stat("d", &a));
	CHECK(a.st_mtim.tv_sec > now.tv_sec - 10,
	      "creating an entry did not move the folder's mtime");
	OK(mkdir("e", 0755));
	OK(utimensat(AT_FDCWD, "d", ts, 0));
	OK(unlink("d/new"));
	OK(stat("d", &a));
	CHECK(a.st_mtim.tv_sec > now.tv_sec - 10,
	      "removing an entry did not move the folder's mtime");
	if (put("d/f", "x", 1))
		return -1;
	OK(utimensat(AT_FDCWD, "d", ts, 0));
	OK(utimensat(AT_FDCWD, "e", ts, 0));
	OK(utimensat(AT_FDCWD, "d/f", ts, 0));
	OK(stat("d/f", &b));
	tick();
	OK(rename("d/f", "e/f"));
	OK(stat("d", &a));
	CHECK(a.st_mtim.tv_sec > now.tv_sec - 10,
	      "rename did not move the source folder's mtime");
	OK(stat("e", &a));
	CHECK(a.st_mtim.tv_sec > now.tv_sec - 10,
	      "rename did not move the target folder's mtime");
	OK(stat("e/f", &a));
	CHECK(a.st_mtim.tv_sec == ts[1].tv_sec,
	      "rename moved the file's mtime");
	CHECK(a.st_ctim.tv_sec > b.st_ctim.tv_sec ||
		      (a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
		       a.st_ctim.tv_nsec > b.st_ctim.tv_nsec),
	      "rename did not move the file's ctime");
	b = a;
	tick();
	OK(link("e/f", "e/g"));
	OK(stat("e/f", &a));
	CHECK(a.st_ctim.tv_sec > b.st_ctim.tv_sec ||
		      (a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
		       a.st_ctim.tv_nsec > b.st_ctim.tv_nsec),
	      "link did not move the file's ctime");
	return 0;
}

/* Check that len bytes at off of fd all equal c. */
static int expect_bytes(int fd, off_t off, size_t len, char c)
{
	char buf[4096];

	while (len > 0) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);

		if (pread(fd, buf, n, off) != (ssize_t)n)
			return fail("short read at %ld", (long)off);
		for (size_t i = 0; i < n; i++)
			if (buf[i] != c)
				return fail("byte at %ld is %d, want %d",
					    (long)(off + i), buf[i], c);
		off += n;
		len -= n;
	}
	return 0;
}

/* fallocate: plain allocation and FALLOC_FL_KEEP_SIZE. */
static int case_fallocate(void)
{
	struct stat st;
	int fd;

	fd = OK(open("f", O_RDWR | O_CREAT, 0644));
	OK(fallocate(fd, 0, 0, 1 << 20));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 1 << 20, "size after fallocate %ld",
	      (long)st.st_size);
	CHECK(st.st_blocks * 512 >= 1 << 20, "st_blocks %ld after fallocate",
	      (long)st.st_blocks);
	if (expect_bytes(fd, 0, 1 << 20, 0))
		return -1;
	OK(ftruncate(fd, 10));
	OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 1 << 20));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 10, "KEEP_SIZE changed size to %ld",
	      (long)st.st_size);
	close(fd);
	return 0;
}

/* FALLOC_FL_PUNCH_HOLE zeroes a range and keeps the size. */
static int case_punch_hole(void)
{
	static char buf[65536];
	struct stat st;
	int fd;

	memset(buf, 'a', sizeof(buf));
	fd = OK(open("f", O_RDWR | O_CREAT, 0644));
	CHECK(write(fd, buf, sizeof(buf)) == sizeof(buf), "write");
	OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096,
		     8192));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 65536, "size after punch %ld", (long)st.st_size);
	if (expect_bytes(fd, 0, 4096, 'a') || expect_bytes(fd, 4096, 8192, 0) ||
	    expect_bytes(fd, 12288, 65536 - 12288, 'a'))
		return -1;
	OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 10));
	if (expect_bytes(fd, 99, 1, 'a') || expect_bytes(fd, 100, 10, 0) ||
	    expect_bytes(fd, 110, 1, 'a'))
		return -1;
	ERR(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), EOPNOTSUPP);
	close(fd);
	return 0;
}

/* FALLOC_FL_ZERO_RANGE zeroes a range; past EOF it extends the size. */
static int case_zero_range(void)
{
	static char buf[65536];
	struct stat st;
	int fd, r;

	memset(buf, 'a', sizeof(buf));
	fd = OK(open("f", O_RDWR | O_CREAT, 0644));
	CHECK(write(fd, buf, sizeof(buf)) == sizeof(buf), "write");
	if (fallocate(fd, FALLOC_FL_ZERO_RANGE, 1000, 5000) &&
	    errno == EOPNOTSUPP) {
		close(fd);
		return skip("FALLOC_FL_ZERO_RANGE: EOPNOTSUPP "
			    "(not supported by this file system, e.g. tmpfs)");
	}
	OK(fstat(fd, &st));
	CHECK(st.st_size == 65536, "size after zero range %ld",
	      (long)st.st_size);
	if (expect_bytes(fd, 0, 1000, 'a') || expect_bytes(fd, 1000, 5000, 0) ||
	    expect_bytes(fd, 6000, 65536 - 6000, 'a'))
		return -1;
	OK(fallocate(fd, FALLOC_FL_ZERO_RANGE, 65536, 4096));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 65536 + 4096, "zero range past EOF: size %ld",
	      (long)st.st_size);
	r = expect_bytes(fd, 65536, 4096, 0);
	close(fd);
	return r;
}

/* copy_file_range copies the right bytes and moves both offsets. */
static int case_copy_file_range(void)
{
	static char src[100000], dst[60000];
	loff_t in = 1000, out = 3;
	ssize_t n, done = 0;
	int a, b, i;

	for (i = 0; i < (int)sizeof(src); i++)
		src[i] = (char)(i * 7 + i / 251);
	if (put("src", src, sizeof(src)))
		return -1;
	a = OK(open("src", O_RDONLY));
	b = OK(open("dst", O_RDWR | O_CREAT, 0644));
	CHECK(pwrite(b, "xyz", 3, 0) == 3, "write");
	while (done < 50000) {
		n = copy_file_range(a, &in, b, &out, 50000 - done, 0);
		CHECK(n > 0, "copy_file_range: %zd (%s)", n, en(errno));
		done += n;
	}
	CHECK(in == 51000 && out == 50003, "offsets in=%ld out=%ld", (long)in,
	      (long)out);
	CHECK(lseek(a, 0, SEEK_CUR) == 0, "source fd offset moved");
	close(a);
	close(b);
	memcpy(dst, "xyz", 3);
	memcpy(dst + 3, src + 1000, 50000);
	return expect_content("dst", dst, 50003);
}

/* O_DIRECT reads and writes of aligned buffers agree with buffered I/O. */
static int case_odirect(void)
{
	char *w, *r;
	int fd, i;

	fd = open("d", O_RDWR | O_CREAT | O_DIRECT, 0644);
	if (fd < 0 && errno == EINVAL)
		return skip("open(O_DIRECT): EINVAL (no direct I/O here)");
	CHECK(fd >= 0, "open O_DIRECT: %s", en(errno));
	if (posix_memalign((void **)&w, 4096, 65536) ||
	    posix_memalign((void **)&r, 4096, 65536))
		return fail("posix_memalign");
	for (i = 0; i < 65536; i++)
		w[i] = (char)(i ^ (i >> 8));
	CHECK(pwrite(fd, w, 65536, 0) == 65536, "O_DIRECT write: %s",
	      en(errno));
	CHECK(pwrite(fd, w, 4096, 65536) == 4096, "O_DIRECT write 2: %s",
	      en(errno));
	memset(r, 0, 65536);
	CHECK(pread(fd, r, 65536, 0) == 65536, "O_DIRECT read: %s", en(errno));
	CHECK(memcmp(r, w, 65536) == 0, "O_DIRECT read back differs");
	CHECK(pread(fd, r, 8192, 65536) == 4096, "O_DIRECT read at tail");
	close(fd);
	fd = OK(open("d", O_RDONLY));
	CHECK(pread(fd, r, 65536, 0) == 65536 && memcmp(r, w, 65536) == 0,
	      "buffered read of O_DIRECT data differs");
	close(fd);
	free(w);
	free(r);
	return 0;
}

/* A fifo made with mkfifo carries data between two processes. */
static int case_mkfifo(void)
{
	char buf[16] = {0};
	struct stat st;
	pid_t p;
	int fd;

	OK(mkfifo("fifo", 0644));
	OK(stat("fifo", &st));
	CHECK(S_ISFIFO(st.st_mode), "mode %o is not a fifo", st.st_mode);
	p = fork();
	if (p == 0) {
		fd = OK(open("fifo", O_WRONLY));
		CHECK(write(fd, "through", 7) == 7, "write to fifo");
		close(fd);
		return 0;
	}
	fd = OK(open("fifo", O_RDONLY));
	CHECK(read(fd, buf, sizeof(buf)) == 7 && strcmp(buf, "through") == 0,
	      "read from fifo '%s'", buf);
	close(fd);
	if (join(p))
		return -1;
	ERR(mkfifo("fifo", 0644), EEXIST);
	return 0;
}

/* flock: an exclusive lock held by one process blocks another. */
static int case_flock(void)
{
	int fd, go[2], done[2];
	char c;
	pid_t p;

	if (put("l", "x", 1) || pipe(go) || pipe(done))
		return -1;
	p = fork();
	if (p == 0) {
		fd = OK(open("l", O_RDONLY));
		OK(flock(fd, LOCK_EX));
		CHECK(write(go[1], "g", 1) == 1, "pipe");
		CHECK(read(done[0], &c, 1) == 1, "pipe");
		return 0;
	}
	CHECK(read(go[0], &c, 1) == 1, "child did not lock");
	fd = OK(open("l", O_RDONLY));
	ERR(flock(fd, LOCK_EX | LOCK_NB), EWOULDBLOCK);
	ERR(flock(fd, LOCK_SH | LOCK_NB), EWOULDBLOCK);
	CHECK(write(done[1], "d", 1) == 1, "pipe");
	if (join(p))
		return -1;
	OK(flock(fd, LOCK_EX | LOCK_NB)); /* released when the child exited */
	OK(flock(fd, LOCK_UN));
	close(fd);
	return 0;
}

/* fcntl record locks: conflicts, F_GETLK reports the holder, ranges. */
static int case_fcntl_lock(void)
{
	struct flock fl = {.l_type = F_WRLCK,
			   .l_whence = SEEK_SET,
			   .l_start = 0,
			   .l_len = 100};
	int fd, go[2], done[2];
	pid_t p, me = getpid();
	char c;

	if (put("l", "0123456789", 10) || pipe(go) || pipe(done))
		return -1;
	fd = OK(open("l", O_RDWR));
	OK(fcntl(fd, F_SETLK, &fl));
	p = fork();
	if (p == 0) {
		struct flock q = {.l_type = F_WRLCK,
				  .l_whence = SEEK_SET,
				  .l_start = 50,
				  .l_len = 10};

		fd = OK(open("l", O_RDWR));
		ERR2(fcntl(fd, F_SETLK, &q), EAGAIN, EACCES);
		q.l_type = F_RDLCK;
		ERR2(fcntl(fd, F_SETLK, &q), EAGAIN, EACCES);
		q.l_type = F_WRLCK;
		OK(fcntl(fd, F_GETLK, &q));
		CHECK(q.l_type == F_WRLCK && q.l_pid == me && q.l_start == 0 &&
			      q.l_len == 100,
		      "F_GETLK: type %d pid %d (want %d) start %ld len %ld",
		      q.l_type, q.l_pid, me, (long)q.l_start, (long)q.l_len);
		q.l_start = 200;
		OK(fcntl(fd, F_SETLK, &q)); /* a range nobody holds */
		CHECK(write(go[1], "g", 1) == 1, "pipe");
		CHECK(read(done[0], &c, 1) == 1, "pipe");
		return 0;
	}
	CHECK(read(go[0], &c, 1) == 1, "child failed before locking");
	fl.l_start = 200;
	fl.l_len = 1;
	ERR2(fcntl(fd, F_SETLK, &fl), EAGAIN, EACCES);
	CHECK(write(done[1], "d", 1) == 1, "pipe");
	if (join(p))
		return -1;
	OK(fcntl(fd, F_SETLK, &fl));
	close(fd);
	return 0;
}

/* O_TMPFILE makes an unnamed file that linkat() can give a name. */
static int case_tmpfile(void)
{
	char path[64];
	struct stat st;
	int fd;

	fd = open(".", O_TMPFILE | O_RDWR, 0600);
	if (fd < 0 && errno == EOPNOTSUPP && !FUSE_HAS_317)
		return skip("O_TMPFILE: EOPNOTSUPP (FUSE with libfuse 3.14 "
			    "has no tmpfile request)");
	CHECK(fd >= 0, "open O_TMPFILE: %s (libfuse %d.%d)", en(errno),
	      VD_FUSE_VERSION / 100, VD_FUSE_VERSION % 100);
	CHECK(write(fd, "anon", 4) == 4, "write to tmpfile: %s", en(errno));
	OK(fstat(fd, &st));
	CHECK(st.st_nlink == 0 && S_ISREG(st.st_mode),
	      "tmpfile nlink %lu mode %o", (unsigned long)st.st_nlink,
	      st.st_mode);
	CHECK(listed(".", "named") == 0, "tmpfile visible early");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	OK(linkat(AT_FDCWD, path, AT_FDCWD, "named", AT_SYMLINK_FOLLOW));
	OK(fstat(fd, &st));
	CHECK(st.st_nlink == 1, "nlink after linkat %lu",
	      (unsigned long)st.st_nlink);
	close(fd);
	CHECK(listed(".", "named") == 1, "linked tmpfile not listed");
	fd = OK(open(".", O_TMPFILE | O_RDWR | O_EXCL, 0600));
	ERR(linkat(AT_FDCWD, path, AT_FDCWD, "never", AT_SYMLINK_FOLLOW),
	    ENOENT);
	close(fd);
	return expect_content("named", "anon", 4);
}

/* Folders: EEXIST, ENOTEMPTY, ENOTDIR, EISDIR, nlink, "." and "..". */
static int case_dir_basic(void)
{
	struct stat st;

	OK(mkdir("d", 0755));
	ERR(mkdir("d", 0755), EEXIST);
	OK(mkdir("d/a", 0755));
	OK(mkdir("d/b", 0755));
	if (put("d/f", "x", 1))
		return -1;
	OK(stat("d", &st));
	CHECK(st.st_nlink == 4, "nlink of d with 2 subfolders %lu, want 4",
	      (unsigned long)st.st_nlink);
	CHECK(listed("d", ".") == 1 && listed("d", "..") == 1,
	      "'.' or '..' not listed once");
	ERR2(rmdir("d"), ENOTEMPTY, EEXIST);
	ERR(rmdir("d/f"), ENOTDIR);
	ERR(unlink("d/a"), EISDIR);
	ERR(mkdir("d/f/x", 0755), ENOTDIR);
	ERR(open("d/f/x", O_RDONLY), ENOTDIR);
	ERR(open("d", O_WRONLY), EISDIR);
	OK(rmdir("d/a"));
	OK(stat("d/b/..", &st));
	CHECK(listed("d", "a") == 0, "removed folder still listed");
	OK(stat("d", &st));
	CHECK(st.st_nlink == 3, "nlink after rmdir %lu, want 3",
	      (unsigned long)st.st_nlink);
	return 0;
}

/* Data written in many sizes reads back the same in other sizes. */
static int case_rw_pattern(void)
{
	enum { SIZE = 8 << 20 };
	char *w = malloc(SIZE), *r = malloc(SIZE);
	size_t off = 0, n;
	unsigned int seed = 42;
	int fd;

	for (size_t i = 0; i < SIZE; i++)
		w[i] = (char)rand_r(&seed);
	fd = OK(open("big", O_RDWR | O_CREAT, 0644));
	while (off < SIZE) {
		n = 1 + rand_r(&seed) % 200000;
		if (n > SIZE - off)
			n = SIZE - off;
		CHECK(pwrite(fd, w + off, n, off) == (ssize_t)n, "pwrite: %s",
		      en(errno));
		off += n;
	}
	close(fd);
	fd = OK(open("big", O_RDONLY));
	for (off = 0; off < SIZE; off += n) {
		n = 1 + rand_r(&seed) % 300000;
		if (n > SIZE - off)
			n = SIZE - off;
		CHECK(pread(fd, r + off, n, off) == (ssize_t)n, "pread: %s",
		      en(errno));
	}
	close(fd);
	CHECK(memcmp(w, r, SIZE) == 0, "8 MiB pattern differs on read back");
	free(w);
	free(r);
	return 0;
}

/* A shared mapping's writes reach read(), and write() reaches the map. */
static int case_mmap_shared(void)
{
	char buf[8192], *m;
	int fd;

	fd = OK(open("m", O_RDWR | O_CREAT, 0644));
	OK(ftruncate(fd, 8192));
	m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED && errno == ENODEV && !FUSE_HAS_317) {
		close(fd);
		return skip("shared mmap: ENODEV (FUSE direct_io open without "
			    "FUSE_DIRECT_IO_ALLOW_MMAP, as libfuse 3.14 sets)");
	}
	CHECK(m != MAP_FAILED, "mmap: %s (libfuse %d.%d)", en(errno),
	      VD_FUSE_VERSION / 100, VD_FUSE_VERSION % 100);
	memcpy(m + 4000, "mapped", 6);
	OK(msync(m, 8192, MS_SYNC));
	CHECK(pread(fd, buf, 8192, 0) == 8192 &&
		      memcmp(buf + 4000, "mapped", 6) == 0,
	      "read() does not see mmap write");
	CHECK(pwrite(fd, "written", 7, 100) == 7, "pwrite");
	CHECK(memcmp(m + 100, "written", 7) == 0, "mmap does not see write()");
	munmap(m, 8192);
	close(fd);
	fd = OK(open("m", O_RDONLY));
	CHECK(pread(fd, buf, 8192, 0) == 8192 &&
		      memcmp(buf + 4000, "mapped", 6) == 0,
	      "mmap write lost after close");
	close(fd);
	return 0;
}

/* Names up to 255 bytes work; 256 is ENAMETOOLONG. */
static int case_long_names(void)
{
	char name[257];
	struct stat st;

	memset(name, 'n', 255);
	name[255] = 0;
	OK(close(OK(open(name, O_WRONLY | O_CREAT, 0644))));
	OK(stat(name, &st));
	CHECK(listed(".", name) == 1, "255-byte name not listed");
	OK(unlink(name));
	memset(name, 'n', 256);
	name[256] = 0;
	ERR(open(name, O_WRONLY | O_CREAT, 0644), ENAMETOOLONG);
	ERR(mkdir(name, 0755), ENAMETOOLONG);
	ERR(stat(name, &st), ENAMETOOLONG);
	return 0;
}

/*
 * A write or truncate by another user clears set-user-ID (and set-group-ID
 * with group execute); a chown clears both, even by root.
 */
static int case_suid_clear(void)
{
	struct stat st;
	pid_t p;
	int fd;

	if (put("w", "x", 1) || put("t", "x", 1) || put("c", "x", 1))
		return -1;
	OK(chown("w", 1000, 1000));
	OK(chmod("w", 06777));
	OK(chown("t", 1000, 1000));
	OK(chmod("t", 04777));
	OK(chmod("c", 06755));
	p = as_user(1001, 1001, g1001, 1);
	if (p == 0) {
		fd = OK(open("w", O_WRONLY));
		CHECK(write(fd, "y", 1) == 1, "write: %s", en(errno));
		close(fd);
		OK(truncate("t", 0));
		return 0;
	}
	if (join(p))
		return -1;
	OK(stat("w", &st));
	CHECK((st.st_mode & 07777) == 0777,
	      "mode after another user's write %o, want 777",
	      st.st_mode & 07777);
	OK(stat("t", &st));
	CHECK((st.st_mode & 07777) == 0777,
	      "mode after another user's truncate %o, want 777",
	      st.st_mode & 07777);
	OK(chown("c", 1000, 1000));
	OK(stat("c", &st));
	CHECK((st.st_mode & 07777) == 0755, "mode after chown %o, want 755",
	      st.st_mode & 07777);
	return 0;
}

/* readdir's d_ino and d_type agree with lstat for every kind of entry. */
static int case_readdir_ino(void)
{
	struct dirent *e;
	struct stat st;
	int seen = 0;
	DIR *d;

	if (put("f", "x", 1))
		return -1;
	OK(mkdir("d", 0755));
	OK(symlink("f", "l"));
	OK(mkfifo("p", 0644));
	OK(link("f", "h"));
	d = opendir(".");
	CHECK(d, "opendir: %s", en(errno));
	while ((e = readdir(d))) {
		unsigned char want;

		if (e->d_name[0] == '.')
			continue;
		if (lstat(e->d_name, &st)) {
			closedir(d);
			return fail("lstat %s: %s", e->d_name, en(errno));
		}
		want = S_ISREG(st.st_mode)   ? DT_REG
		       : S_ISDIR(st.st_mode) ? DT_DIR
		       : S_ISLNK(st.st_mode) ? DT_LNK
					     : DT_FIFO;
		if (e->d_ino != st.st_ino ||
		    (e->d_type != DT_UNKNOWN && e->d_type != want)) {
			closedir(d);
			return fail("%s: d_ino %lu d_type %d, lstat ino %lu "
				    "type %d",
				    e->d_name, (unsigned long)e->d_ino,
				    e->d_type, (unsigned long)st.st_ino, want);
		}
		seen++;
	}
	closedir(d);
	CHECK(seen == 5, "listed %d entries, want 5", seen);
	return 0;
}

/* telldir() in a long listing, then seekdir() back: the same next entry. */
/*
 * Back to an earlier place in the middle of a listing (where a server may
 * have read ahead), then to the start: the same names, then all of them.
 */
static int check_seekdir_mid(void)
{
	enum { AFTER = 400 };
	static char names[AFTER][64];
	struct dirent *e;
	long pos = -1;
	int i, total = 0, again = 0;
	DIR *d = opendir(".");

	CHECK(d, "opendir: %s", en(errno));
	while ((e = readdir(d)))
		total++;
	rewinddir(d);
	for (i = 0; i < 1200 && (e = readdir(d)); i++)
		if (i == 799) /* after entry 799: the place of entry 800 */
			pos = telldir(d);
	for (i = 0; i < AFTER && (e = readdir(d)); i++)
		snprintf(names[i], sizeof(names[i]), "%s", e->d_name);
	if (pos < 0 || i < AFTER) {
		closedir(d);
		return fail("fewer than %d entries listed", 1200 + AFTER);
	}
	seekdir(d, pos);
	for (i = 0; i < 400 + AFTER && (e = readdir(d)); i++) {
		if (i >= 400 && strcmp(e->d_name, names[i - 400])) {
			closedir(d);
			return fail("after seekdir to the middle: entry %d is "
				    "'%s', want '%s'",
				    i, e->d_name, names[i - 400]);
		}
	}
	rewinddir(d);
	while ((e = readdir(d)))
		again++;
	closedir(d);
	CHECK(again == total, "after rewinddir: %d entries, want %d", again,
	      total);
	return 0;
}

static int check_seekdir(void)
{
	char want[256];
	struct dirent *e;
	long pos = -1;
	DIR *d = opendir(".");
	int i;

	CHECK(d, "opendir: %s", en(errno));
	for (i = 0; (e = readdir(d)); i++) {
		if (i == 1000)
			pos = telldir(d);
		if (i == 1001)
			snprintf(want, sizeof(want), "%s", e->d_name);
	}
	if (pos < 0) {
		closedir(d);
		return fail("fewer than 1002 entries listed");
	}
	seekdir(d, pos);
	e = readdir(d);
	if (!e || strcmp(e->d_name, want)) {
		closedir(d);
		return fail("after seekdir: '%s', want '%s'",
			    e ? e->d_name : "(end)", want);
	}
	closedir(d);
	return check_seekdir_mid();
}

struct pw_arg {
	int fd, t;
};

enum { PW_THREADS = 8, PW_BLOCK = 65536 + 512, PW_ROUNDS = 16 };

/* Fill a block with bytes that say which block it is. */
static void pw_fill(char *b, int block)
{
	for (int i = 0; i < PW_BLOCK; i++)
		b[i] = (char)(block * 31 + i % 251);
}

/* One writer: its blocks, interleaved with the other threads', in order. */
static void *pw_writer(void *p)
{
	struct pw_arg *a = p;
	char *b = malloc(PW_BLOCK);

	for (int r = 0; r < PW_ROUNDS; r++) {
		int block = r * PW_THREADS + a->t;

		pw_fill(b, block);
		if (pwrite(a->fd, b, PW_BLOCK, (off_t)block * PW_BLOCK) !=
		    PW_BLOCK) {
			fail("thread %d: pwrite block %d: %s", a->t, block,
			     en(errno));
			break;
		}
	}
	free(b);
	return NULL;
}

/* Thousands of entries in one folder: all listed once, all found. */
static int case_many_files(void)
{
	enum { N = 3000 };
	static char seen[N];
	char name[32];
	struct dirent *e;
	struct stat st;
	int i, n = 0;
	DIR *d;

	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "file-%05d", i);
		OK(close(OK(open(name, O_WRONLY | O_CREAT | O_EXCL, 0644))));
	}
	d = opendir(".");
	CHECK(d, "opendir: %s", en(errno));
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		i = atoi(e->d_name + 5);
		if (strncmp(e->d_name, "file-", 5) || i < 0 || i >= N ||
		    seen[i]++) {
			closedir(d);
			return fail("unexpected or repeated entry %s",
				    e->d_name);
		}
		n++;
	}
	closedir(d);
	CHECK(n == N, "listed %d of %d files", n, N);
	if (check_seekdir())
		return -1;
	for (i = N - 1; i >= 0; i -= 7) {
		snprintf(name, sizeof(name), "file-%05d", i);
		OK(stat(name, &st));
	}
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "file-%05d", i);
		OK(unlink(name));
	}
	CHECK(listed(".", "file-00000") == 0 && listed(".", "file-02999") == 0,
	      "removed files still listed");
	return 0;
}

/* A deep tree: renaming its top keeps every descendant reachable. */
static int case_deep_tree(void)
{
	enum { DEPTH = 40 };
	char path[DEPTH * 4 + 64];
	int i, len = 0;

	OK(mkdir("top", 0755));
	len = snprintf(path, sizeof(path), "top");
	for (i = 0; i < DEPTH; i++) {
		len += snprintf(path + len, sizeof(path) - len, "/d%d", i % 10);
		OK(mkdir(path, 0755));
	}
	snprintf(path + len, sizeof(path) - len, "/leaf");
	if (put(path, "deep", 4))
		return -1;
	OK(rename("top", "moved"));
	memmove(path + 5, path + 3, strlen(path + 3) + 1);
	memcpy(path, "moved", 5);
	if (expect_content(path, "deep", 4))
		return -1;
	CHECK(access("top", F_OK) && errno == ENOENT, "old top still there");
	OK(mkdir("top", 0755));
	OK(rename("moved/d0/d1", "top/x"));
	CHECK(access("top/x/d2/d3/d4/d5", F_OK) == 0,
	      "subtree not reachable after move: %s", en(errno));
	CHECK(access("moved/d0/d1", F_OK) && errno == ENOENT,
	      "moved subtree still at old place");
	return 0;
}

/*
 * Eight threads write interleaved blocks of one file at once, each write
 * growing it; every block must read back whole, none lost or torn.
 */
static int case_threads_one_file(void)
{
	struct pw_arg args[PW_THREADS];
	pthread_t tid[PW_THREADS];
	char *want = malloc(PW_BLOCK), *got = malloc(PW_BLOCK);
	struct stat st;
	int fd, i;

	fd = OK(open("shared", O_RDWR | O_CREAT, 0644));
	for (i = 0; i < PW_THREADS; i++) {
		args[i].fd = fd;
		args[i].t = i;
		CHECK(pthread_create(&tid[i], NULL, pw_writer, &args[i]) == 0,
		      "pthread_create");
	}
	for (i = 0; i < PW_THREADS; i++)
		pthread_join(tid[i], NULL);
	if (res->status == PC_FAIL)
		return -1;
	OK(fstat(fd, &st));
	CHECK(st.st_size == (off_t)PW_THREADS * PW_ROUNDS * PW_BLOCK,
	      "size %ld, want %ld", (long)st.st_size,
	      (long)PW_THREADS * PW_ROUNDS * PW_BLOCK);
	close(fd);
	fd = OK(open("shared", O_RDONLY));
	for (i = 0; i < PW_THREADS * PW_ROUNDS; i++) {
		pw_fill(want, i);
		CHECK(pread(fd, got, PW_BLOCK, (off_t)i * PW_BLOCK) ==
				      PW_BLOCK &&
			      memcmp(got, want, PW_BLOCK) == 0,
		      "block %d (by thread %d) lost or torn", i,
		      i % PW_THREADS);
	}
	close(fd);
	free(want);
	free(got);
	return 0;
}

struct pc_case {
	const char *name;
	int (*fn)(void);
	int root; /* needs root (switches users) */
};

static const struct pc_case cases[] = {
	{"perm_read", case_perm_read, 1},
	{"perm_write_dir", case_perm_write_dir, 1},
	{"perm_search_dir", case_perm_search_dir, 1},
	{"sticky", case_sticky, 1},
	{"setgid_dir", case_setgid_dir, 1},
	{"chmod_nonowner", case_chmod_nonowner, 1},
	{"chown_nonroot", case_chown_nonroot, 1},
	{"umask", case_umask, 1},
	{"suid_clear", case_suid_clear, 1},
	{"dir_basic", case_dir_basic, 0},
	{"long_names", case_long_names, 0},
	{"readdir_ino", case_readdir_ino, 0},
	{"many_files", case_many_files, 0},
	{"deep_tree", case_deep_tree, 0},
	{"rename_file", case_rename_file, 0},
	{"rename_dir", case_rename_dir, 0},
	{"rename_noreplace", case_rename_noreplace, 0},
	{"rename_exchange", case_rename_exchange, 0},
	{"hardlink", case_hardlink, 0},
	{"symlink", case_symlink, 0},
	{"rw_pattern", case_rw_pattern, 0},
	{"threads_one_file", case_threads_one_file, 0},
	{"sparse", case_sparse, 0},
	{"seek_data_hole", case_seek_data_hole, 0},
	{"truncate", case_truncate, 0},
	{"append", case_append, 0},
	{"excl", case_excl, 0},
	{"unlink_open", case_unlink_open, 0},
	{"readdir_churn", case_readdir_churn, 0},
	{"xattr", case_xattr, 0},
	{"timestamps", case_timestamps, 0},
	{"fallocate", case_fallocate, 0},
	{"punch_hole", case_punch_hole, 0},
	{"zero_range", case_zero_range, 0},
	{"copy_file_range", case_copy_file_range, 0},
	{"odirect", case_odirect, 0},
	{"mmap_shared", case_mmap_shared, 0},
	{"mkfifo", case_mkfifo, 0},
	{"flock", case_flock, 0},
	{"fcntl_lock", case_fcntl_lock, 0},
	{"tmpfile", case_tmpfile, 0},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* nftw callback: remove one entry of a case folder. */
static int rm_entry(const char *path, const struct stat *st, int type,
		    struct FTW *ftw)
{
	(void)st, (void)ftw;
	if (type == FTW_DP ? rmdir(path) : unlink(path)) {
		fail("cleanup: removing %s: %s", path, en(errno));
		return 1;
	}
	return 0;
}

/* Whether name is in the comma-separated list (NULL list: everything). */
static int selected(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p = list;

	if (!list)
		return 1;
	while ((p = strstr(p, name))) {
		if ((p == list || p[-1] == ',') && (p[n] == ',' || !p[n]))
			return 1;
		p += n;
	}
	return 0;
}

/*
 * Run one case in a child, in a fresh folder under base; print its TAP
 * line. Returns 1 when it failed.
 */
static int run_case(int num, const struct pc_case *c, const char *base,
		    int keep)
{
	char dir[PATH_MAX];
	pid_t p;
	int st;

	memset(res, 0, sizeof(*res));
	snprintf(dir, sizeof(dir), "%s/%s", base, c->name);
	if (c->root && geteuid() != 0) {
		printf("ok %d - %s # SKIP needs root to switch users\n", num,
		       c->name);
		return 0;
	}
	fflush(stdout);
	if (mkdir(dir, 0777) || chmod(dir, 0777)) {
		fail("mkdir %s: %s", dir, en(errno));
	} else if ((p = fork()) == 0) {
		int r;

		alarm(60);
		umask(022);
		if (chdir(dir)) {
			fail("chdir %s: %s", dir, en(errno));
			_exit(PC_FAIL);
		}
		r = c->fn();
		_exit(r < 0 ? PC_FAIL : r > 0 ? PC_SKIP : PC_PASS);
	} else if (p < 0 || waitpid(p, &st, 0) < 0) {
		fail("fork/wait: %s", en(errno));
	} else if (WIFSIGNALED(st)) {
		fail("case killed by signal %d%s", WTERMSIG(st),
		     WTERMSIG(st) == SIGALRM ? " (timeout 60 s)" : "");
	} else if (WEXITSTATUS(st) == PC_FAIL && res->status != PC_FAIL) {
		fail("case failed without a message");
	}
	if (!keep)
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (res->status == PC_SKIP) {
		printf("ok %d - %s # SKIP %s\n", num, c->name, res->msg);
	} else if (res->status == PC_FAIL) {
		printf("not ok %d - %s\n# %s: %s\n", num, c->name, c->name,
		       res->msg);
		return 1;
	} else {
		printf("ok %d - %s\n", num, c->name);
	}
	return 0;
}

/* Parse options, make a work folder in DIR, run the chosen cases. */
int main(int argc, char **argv)
{
	const char *only = NULL, *dir = NULL;
	char base[PATH_MAX];
	int keep = 0, list = 0, n = 0, failed = 0, num = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--list"))
			list = 1;
		else if (!strcmp(argv[i], "--keep"))
			keep = 1;
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else if (argv[i][0] != '-' && !dir)
			dir = argv[i];
		else
			dir = NULL, i = argc;
	}
	if (list) {
		for (size_t i = 0; i < NCASES; i++)
			printf("%s\n", cases[i].name);
		return 0;
	}
	if (!dir) {
		fprintf(stderr,
			"usage: %s [--list] [--only NAME[,NAME..]] "
			"[--keep] DIR\n",
			argv[0]);
		return 2;
	}
	res = mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < NCASES; i++)
		n += selected(only, cases[i].name);
	if (n == 0) {
		fprintf(stderr, "posix_cases: no case matches '%s'\n", only);
		return 2;
	}
	snprintf(base, sizeof(base), "%s/posix_cases.%d", dir, (int)getpid());
	if (mkdir(base, 0755) || chmod(base, 0755)) {
		printf("1..1\nnot ok 1 - make work folder\n# mkdir %s: %s\n",
		       base, en(errno));
		return 1;
	}
	printf("1..%d\n", n);
	for (size_t i = 0; i < NCASES; i++)
		if (selected(only, cases[i].name))
			failed += run_case(++num, &cases[i], base, keep);
	if (!keep && rmdir(base)) {
		printf("# cleanup: rmdir %s: %s\n", base, en(errno));
		failed++;
	}
	return failed ? 1 : 0;
}
