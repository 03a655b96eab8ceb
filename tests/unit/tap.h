/*
 * tap.h - what the C unit tests share: TAP output (ok, IS, bail and the
 * plan at the end), a temp folder that goes away however the test ends,
 * opening a built-in source with a fresh caller context, short calls
 * through its vd_ops table, and POSIX ACL xattr values. The Makefile
 * builds each tests/unit/X.c into its own program, so this is a header
 * of static functions rather than a library.
 */
#ifndef VD_TESTS_TAP_H
#define VD_TESTS_TAP_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sources.h"

static int ntest, nfail;
static const struct vd_ops *ops; /* the table of the source under test */
static struct vd_ctx ctx;	 /* the caller every call is made as */
static char tap_dir[256];	 /* the temp folder from tap_tmpdir() */

/* Print one TAP result line and count it. */
static inline void ok(int cond, const char *fmt, ...)
{
	va_list ap;

	ntest++;
	if (!cond)
		nfail++;
	printf("%sok %d - ", cond ? "" : "not ", ntest);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* ok() for a call's result, printing what came back when it is wrong. */
#define IS(got, want, what)                                                    \
	do {                                                                   \
		long long g_ = (long long)(got), w_ = (long long)(want);       \
		ok(g_ == w_, "%s", what);                                      \
		if (g_ != w_)                                                  \
			printf("#   got %lld, want %lld (line %d)\n", g_, w_,  \
			       __LINE__);                                      \
	} while (0)

/* Stop the whole test: a setup step failed, so no result would mean much. */
static inline void bail(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	exit(1);
}

/* Print the plan (after the results) and give main() its exit status. */
static inline int tap_done(void)
{
	printf("1..%d\n", ntest);
	return nfail ? 1 : 0;
}

/* nftw() callback of tap_rmtree(): remove one entry, keep walking. */
static inline int tap_rm_one(const char *path, const struct stat *st, int flag,
			     struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path), 0;
}

/* Remove the temp folder and all in it (atexit: nothing left behind). */
static inline void tap_rmtree(void)
{
	nftw(tap_dir, tap_rm_one, 64, FTW_DEPTH | FTW_PHYS);
}

/*
 * Make a fresh folder $TMPDIR/NAME.XXXXXX (default /tmp) into tap_dir,
 * removed when the program exits. Without one the test is skipped.
 */
static inline const char *tap_tmpdir(const char *name)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(tap_dir, sizeof(tap_dir), "%s/%s.XXXXXX", tmp ? tmp : "/tmp",
		 name);
	if (!mkdtemp(tap_dir)) {
		printf("1..0 # SKIP no temp folder\n");
		exit(0);
	}
	atexit(tap_rmtree);
	return tap_dir;
}

/* NAME inside the temp folder (four results may be live at once). */
static inline const char *tap_path(const char *name)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", tap_dir, name);
	return buf[i];
}

/*
 * Open the built-in source for SPEC ("kind:arg") and make it the one
 * under test: ops is its table, ctx a fresh caller (root, umask 022) on
 * its data. On failure return -errno with the source's message in err
 * and leave ops and ctx alone; -ENOSYS if no source has that kind.
 */
static inline int tap_open(const char *spec, char *err, size_t errlen)
{
	const struct vd_source *src = vd_source_find(spec);
	const char *colon = strchr(spec, ':');
	const struct vd_ops *o = NULL;
	void *data = NULL;
	int r;

	if (!src)
		return -ENOSYS;
	r = src->open(colon ? colon + 1 : "", &o, &data, err, errlen);
	if (r)
		return r;
	ops = o;
	memset(&ctx, 0, sizeof(ctx));
	ctx.data = data;
	ctx.umask = 022;
	return 0;
}

/* The node NAME in PARENT, or 0. */
static inline vd_node_t lookup(vd_node_t parent, const char *name)
{
	struct stat st;
	vd_node_t n = 0;

	return ops->lookup(&ctx, parent, name, &n, &st) ? 0 : n;
}

/* Create the file NAME in PARENT and close it; its node, or 0. */
static inline vd_node_t mkfile(vd_node_t parent, const char *name, mode_t mode)
{
	struct vd_file fi = {.flags = O_RDWR | O_CREAT};
	struct stat st;
	vd_node_t n = 0;

	if (ops->create(&ctx, parent, name, mode, &fi, &n, &st))
		return 0;
	ops->release(&ctx, n, &fi);
	return n;
}

/* Make the folder NAME (0755) in PARENT; its node, or 0. */
static inline vd_node_t mkdirn(vd_node_t parent, const char *name)
{
	struct stat st;
	vd_node_t n = 0;

	return ops->mkdir(&ctx, parent, name, 0755, &n, &st) ? 0 : n;
}

/* The attributes of N (zeros if getattr fails). */
static inline struct stat attr(vd_node_t n)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	ops->getattr(&ctx, n, NULL, &st);
	return st;
}

/* Write to N through a fresh read-write handle; bytes written or -errno. */
static inline int wr(vd_node_t n, const void *buf, size_t size, off_t off)
{
	struct vd_file fi = {.flags = O_RDWR};

	return ops->write(&ctx, n, &fi, buf, size, off);
}

/* Read from N through a fresh read-only handle; bytes read or -errno. */
static inline int rd(vd_node_t n, void *buf, size_t size, off_t off)
{
	struct vd_file fi = {.flags = O_RDONLY};

	return ops->read(&ctx, n, &fi, buf, size, off);
}

/*
 * A system.posix_acl_* xattr value into buf: version 2, then N entries
 * of (tag, perm, id) taken three at a time from E. Its length.
 */
static inline size_t acl_value(char *buf, int n, const unsigned int *e)
{
	uint32_t v = 2;

	memcpy(buf, &v, 4);
	for (int i = 0; i < n; i++) {
		uint16_t tag = (uint16_t)e[3 * i],
			 perm = (uint16_t)e[3 * i + 1];
		uint32_t id = e[3 * i + 2];
		memcpy(buf + 4 + 8 * i, &tag, 2);
		memcpy(buf + 6 + 8 * i, &perm, 2);
		memcpy(buf + 8 + 8 * i, &id, 4);
	}
	return 4 + 8 * (size_t)n;
}

#endif
