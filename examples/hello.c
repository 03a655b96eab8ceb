/*
 * hello.c - the smallest complete vdrive source: one read-only file.
 *
 *   cc hello.c $(pkg-config --cflags --libs vdrive) -o hello
 *   mkdir -p /tmp/hello && ./hello /tmp/hello &
 *   cat /tmp/hello/hello.txt
 *   umount /tmp/hello            (or Ctrl-C)
 * Copy it to start your own: fill in lookup, getattr, readdir and read.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vdrive.h>

#define HELLO_NODE 2 /* any non-zero handle but VD_ROOT */
static const char text[] = "Hello from vdrive!\n";

static void fill_stat(vd_node_t node, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = node;
	st->st_nlink = node == VD_ROOT ? 2 : 1;
	st->st_mode = node == VD_ROOT ? S_IFDIR | 0755 : S_IFREG | 0444;
	st->st_size = node == VD_ROOT ? 0 : sizeof(text) - 1;
}

static int hello_lookup(const struct vd_ctx *ctx, vd_node_t parent,
			const char *name, vd_node_t *node, struct stat *st)
{
	(void)ctx;
	if (parent != VD_ROOT || strcmp(name, "hello.txt") != 0)
		return -ENOENT;
	*node = HELLO_NODE;
	fill_stat(*node, st);
	return 0;
}

static int hello_getattr(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, struct stat *st)
{
	(void)ctx, (void)fi;
	fill_stat(node, st);
	return 0;
}

static int hello_readdir(const struct vd_ctx *ctx, vd_node_t node,
			 struct vd_file *fi, off_t off, vd_fill_fn fill,
			 void *buf)
{
	static const char *names[] = {".", "..", "hello.txt"};
	struct stat st;

	(void)ctx, (void)fi;
	for (off_t i = off; i < 3; i++) {
		fill_stat(i == 2 ? HELLO_NODE : node, &st);
		if (fill(buf, names[i], 0, &st, i + 1))
			break;
	}
	return 0;
}

static int hello_read(const struct vd_ctx *ctx, vd_node_t node,
		      struct vd_file *fi, char *buf, size_t size, off_t off)
{
	size_t len = sizeof(text) - 1;

	(void)ctx, (void)node, (void)fi;
	if ((size_t)off >= len)
		return 0;
	size = size < len - (size_t)off ? size : len - (size_t)off;
	memcpy(buf, text + off, size);
	return (int)size;
}

static const struct vd_ops hello_ops = {
	.flags = VD_OPS_THREAD_SAFE,
	.lookup = hello_lookup,
	.getattr = hello_getattr,
	.readdir = hello_readdir,
	.read = hello_read,
};

int main(int argc, char **argv)
{
	struct vd_drive *d = NULL;
	int r;

	if (argc != 2)
		return fprintf(stderr, "usage: %s MOUNTPOINT\n", argv[0]), 2;
	r = vd_drive_new(&hello_ops, sizeof(hello_ops), NULL, &d);
	if (r == 0 && (r = vd_drive_set_options(d, "ro,fsname=hello")) == 0 &&
	    (r = vd_drive_mount(d, argv[1])) == 0)
		r = vd_drive_serve(d, 1); /* until unmounted or Ctrl-C */
	if (r)
		fprintf(stderr, "hello: %s (%s)\n", vd_drive_error(d),
			strerror(-r));
	vd_drive_free(d);
	return r ? 1 : 0;
}
