/*
 * share-gate.c - the gate around vd_drive_attach()/vd_drive_detach(),
 * through the public API only (tests/share-gate.t builds and runs it).
 *
 *   share-gate MOUNTPOINT NSFILE DIR
 *
 * Mounts a one-file drive at MOUNTPOINT and checks, with a child that
 * lives in the mount namespace NSFILE and keeps a descriptor of a share
 * (as a process with its working folder there would):
 *  - two shares in that namespace, detached one by one: the namespace may
 *    use the drive until the last one goes, and is refused (EACCES) after;
 *  - a namespace admitted with vd_drive_allow() before a share stays
 *    admitted after the share is detached.
 * Prints TAP.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vdrive.h>

#define FILE_NODE 2
static const char text[] = "shared\n";
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

static void fill(vd_node_t node, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = node;
	st->st_nlink = node == VD_ROOT ? 2 : 1;
	st->st_mode = node == VD_ROOT ? S_IFDIR | 0755 : S_IFREG | 0444;
	st->st_size = node == VD_ROOT ? 0 : sizeof(text) - 1;
}

static int t_lookup(const struct vd_ctx *c, vd_node_t parent, const char *name,
		    vd_node_t *node, struct stat *st)
{
	(void)c;
	if (parent != VD_ROOT || strcmp(name, "f") != 0)
		return -ENOENT;
	*node = FILE_NODE;
	fill(*node, st);
	return 0;
}

static int t_getattr(const struct vd_ctx *c, vd_node_t node, struct vd_file *fi,
		     struct stat *st)
{
	(void)c, (void)fi;
	fill(node, st);
	return 0;
}

static int t_read(const struct vd_ctx *c, vd_node_t node, struct vd_file *fi,
		  char *buf, size_t size, off_t off)
{
	size_t len = sizeof(text) - 1;

	(void)c, (void)node, (void)fi;
	if ((size_t)off >= len)
		return 0;
	size = size < len - (size_t)off ? size : len - (size_t)off;
	memcpy(buf, text + off, size);
	return (int)size;
}

static const struct vd_ops t_ops = {
	.flags = VD_OPS_THREAD_SAFE,
	.lookup = t_lookup,
	.getattr = t_getattr,
	.read = t_read,
};

/* A child in namespace ns that opens dir there and then, on each byte
 * from the parent, tries to open dir/f, answering 0 or the errno. */
struct prober {
	pid_t pid;
	int ask, answer;
};

static int prober_start(struct prober *p, int ns, const char *dir)
{
	int q[2], a[2];

	if (pipe(q) || pipe(a))
		return -errno;
	p->pid = fork();
	if (p->pid < 0)
		return -errno;
	if (p->pid == 0) {
		int fd = -1, e, f;
		char c;

		close(q[1]);
		close(a[0]);
		if (setns(ns, CLONE_NEWNS) == 0)
			fd = open(dir, O_RDONLY | O_DIRECTORY);
		while (read(q[0], &c, 1) == 1) {
			f = fd < 0 ? -1 : openat(fd, "f", O_RDONLY);
			e = f >= 0 ? 0 : errno;
			if (f >= 0)
				close(f);
			if (write(a[1], &e, sizeof(e)) != sizeof(e))
				break;
		}
		_exit(0);
	}
	close(q[0]);
	close(a[1]);
	p->ask = q[1];
	p->answer = a[0];
	return 0;
}

/* 0 when the prober may open the file, else its errno. Waits past the
 * gate's verdict cache (1 s) first. */
static int probe(struct prober *p)
{
	int e = -1;

	usleep(1100 * 1000);
	if (write(p->ask, "?", 1) != 1 ||
	    read(p->answer, &e, sizeof(e)) != sizeof(e))
		return -1;
	return e;
}

static void prober_stop(struct prober *p)
{
	close(p->ask);
	close(p->answer);
	waitpid(p->pid, NULL, 0);
}

int main(int argc, char **argv)
{
	struct vd_drive *d = NULL;
	struct prober pr;
	char x[4096], y[4096], z[4096];
	struct stat st;
	uint64_t ino;
	int ns, r;

	if (argc != 4) {
		fprintf(stderr, "usage: %s MOUNTPOINT NSFILE DIR\n", argv[0]);
		return 2;
	}
	snprintf(x, sizeof(x), "%s/x", argv[3]);
	snprintf(y, sizeof(y), "%s/y", argv[3]);
	snprintf(z, sizeof(z), "%s/z", argv[3]);
	ns = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (ns < 0 || fstat(ns, &st) != 0) {
		printf("1..0 # SKIP cannot open %s: %s\n", argv[2],
		       strerror(errno));
		return 0;
	}
	ino = (uint64_t)st.st_ino;
	r = vd_drive_new(&t_ops, sizeof(t_ops), NULL, &d);
	if (r == 0)
		r = vd_drive_mount(d, argv[1]);
	if (r == 0)
		r = vd_drive_start(d);
	ok(r == 0, "drive mounted and serving (%s)",
	   r ? vd_drive_error(d) : "");
	if (r)
		goto out;

	/* Two shares in one namespace, detached one by one. */
	ok(vd_drive_attach(d, x, ns, 0) == 0, "share at x in the namespace");
	ok(vd_drive_attach(d, y, ns, 0) == 0, "a second share at y there");
	if (prober_start(&pr, ns, x) != 0)
		goto out;
	ok(probe(&pr) == 0, "the namespace reads through x");
	ok(vd_drive_detach(d, x, ino) == 0, "detach x");
	r = probe(&pr);
	ok(r == 0, "with y left, the namespace still may use the drive (%s)",
	   r ? strerror(r) : "ok");
	ok(vd_drive_detach(d, y, ino) == 0, "detach y");
	r = probe(&pr);
	ok(r == EACCES, "with no share left, it is refused: EACCES (got %s)",
	   r ? strerror(r) : "success");
	prober_stop(&pr);

	/* A namespace allowed on its own stays allowed after a share. */
	ok(vd_drive_allow(d, ino) == 0, "allow the namespace");
	ok(vd_drive_attach(d, z, ns, 0) == 0, "share at z there");
	if (prober_start(&pr, ns, z) != 0)
		goto out;
	ok(probe(&pr) == 0, "it reads through z");
	ok(vd_drive_detach(d, z, ino) == 0, "detach z");
	r = probe(&pr);
	ok(r == 0, "allowed before the share, it still may use the drive (%s)",
	   r ? strerror(r) : "ok");
	prober_stop(&pr);
	ok(vd_drive_revoke(d, ino) == 0, "revoke it");
out:
	close(ns);
	vd_drive_free(d);
	printf("1..%d\n", ntest);
	return nfail ? 1 : 0;
}
