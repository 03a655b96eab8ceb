/*
 * gen_test.c - the gen: source through its vd_ops table (no mount):
 * config parsing, per-caller content, and generators that fail, hang or
 * write too much. Prints TAP.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sources.h"
#include "tap.h"

static void write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	if (!f || fputs(text, f) < 0 || fclose(f))
		bail("cannot write %s", p);
}

/* Open the source on a config with text; the error message into err. */
static int open_conf(const char *text, char *err, size_t len)
{
	char spec[600];

	write_file(tap_path("gen.conf"), text);
	snprintf(spec, sizeof(spec), "gen:%s", tap_path("gen.conf"));
	err[0] = 0;
	return tap_open(spec, err, len);
}

static vd_node_t walk(const char *p)
{
	char tmp[256], *save = NULL;
	vd_node_t n = VD_ROOT;
	struct stat st;

	snprintf(tmp, sizeof(tmp), "%s", p);
	for (char *c = strtok_r(tmp, "/", &save); c;
	     c = strtok_r(NULL, "/", &save))
		if (ops->lookup(&ctx, n, c, &n, &st))
			return 0;
	return n;
}

/* Open and read the file at p as the caller in ctx; -errno of open. */
static int slurp(const char *p, char *buf, size_t size)
{
	struct vd_file fi = {.flags = O_RDONLY, .backing_fd = -1};
	vd_node_t n = walk(p);
	int r, got, total = 0;

	if (!n)
		return -ENOENT;
	r = ops->open(&ctx, n, &fi);
	if (r)
		return r;
	if (!fi.direct_io)
		total = -1000; /* per-caller content must not be cached */
	while (total >= 0 && (size_t)total < size - 1 &&
	       (got = ops->read(&ctx, n, &fi, buf + total, size - 1 - total,
				total)) > 0)
		total += got;
	buf[total > 0 ? total : 0] = 0;
	ops->release(&ctx, n, &fi);
	return total < 0 ? -EBADF : 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Whether pid runs (exists and is not a zombie). */
static int process_alive(int pid)
{
	char p[64], line[512], *rp;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/%d/stat", pid);
	f = fopen(p, "r");
	if (!f)
		return 0;
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	rp = strrchr(line, ')');
	return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

static int collect(void *buf, const char *name, vd_node_t node,
		   const struct stat *st, off_t next)
{
	(void)node, (void)st, (void)next;
	strcat(buf, name);
	strcat(buf, " ");
	return 0;
}

static void test_bad_configs(void)
{
	static const char *bad[] = {
		"a.txt  nosuchkind  x\n",
		"a.txt  template  ${nosuchvar}\n",
		"a.txt  template  x\na.txt  template  y\n",
		"a  template  x\na/b  template  y\n",
		"a/../b  template  x\n",
		"a.txt  cmd\n",
		"a.txt  cmd timeout=0  true\n",
		"a.txt  cmd max=0  true\n",
		"a.txt  template mode=0644  x\n",
		"default  timeout=abc\n",
	};
	char err[256];
	int r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = open_conf(bad[i], err, sizeof(err));
		ok(r == -EINVAL && err[0], "bad config refused: %s", err);
		if (r == 0)
			ops->destroy(ctx.data);
	}
	ok(tap_open("gen:/nonexistent/gen.conf", err, sizeof(err)) == -ENOENT,
	   "missing config: ENOENT (%s)", err);
}

int main(void)
{
	char err[256], buf[8192], conf[2048], pidfile[300];
	double t0;
	int r;

	tap_tmpdir("gen_test");
	ok(vd_source_find("gen:") != NULL, "gen: is registered");
	test_bad_configs();

	snprintf(pidfile, sizeof(pidfile), "%s", tap_path("bg.pid"));
	snprintf(conf, sizeof(conf),
		 "# a comment\n"
		 "\n"
		 "default timeout=3\n"
		 "who.txt       template  uid=${uid} gid=${gid} pid=${pid} "
		 "ns=${container} ${path}\\n\\$x\n"
		 "env/vars      cmd  echo \"$VDRIVE_UID $VDRIVE_GID "
		 "$VDRIVE_PID $VDRIVE_MNTNS $VDRIVE_PATH\"\n"
		 "env/cwd       cmd  pwd\n"
		 "/lim/slow     cmd timeout=0.4  sleep 10; echo late\n"
		 "lim/bg        cmd timeout=0.4  sleep 30 & echo $! > %s; "
		 "sleep 20\n"
		 "lim/huge      cmd max=64K  head -c 100000 /dev/zero\n"
		 "lim/exact     cmd max=64K  head -c 65536 /dev/zero\n"
		 "lim/fail      cmd  echo broken >&2; exit 3\n"
		 "lim/noexec    cmd  /nonexistent/program\n"
		 "lim/big       cmd  yes a | head -c 3000000\n",
		 pidfile);
	r = open_conf(conf, err, sizeof(err));
	ok(r == 0, "config loads (%s)", err);
	if (r)
		return 1;
	ctx.pid = getpid();
	ctx.uid = 1234;
	ctx.gid = 567;

	buf[0] = 0;
	{
		struct vd_file fi = {.backing_fd = -1};

		ops->readdir(&ctx, VD_ROOT, &fi, 0, collect, buf);
	}
	ok(!strcmp(buf, ". .. who.txt env lim "),
	   "folders implied by paths (%s)", buf);
	{
		struct stat st;

		ok(ops->getattr(&ctx, walk("lim"), NULL, &st) == 0 &&
			   S_ISDIR(st.st_mode) &&
			   ops->getattr(&ctx, walk("who.txt"), NULL, &st) ==
				   0 &&
			   st.st_mode == (S_IFREG | 0444),
		   "folders and read-only files");
	}
	{
		struct vd_file fi = {.flags = O_WRONLY, .backing_fd = -1};

		ok(ops->open(&ctx, walk("who.txt"), &fi) == -EROFS,
		   "open for writing: EROFS");
	}

	r = slurp("who.txt", buf, sizeof(buf));
	snprintf(conf, sizeof(conf),
		 "uid=1234 gid=567 pid=%d ns=%llu /who.txt\n$x\n",
		 (int)getpid(), (unsigned long long)vd_ctx_mntns(&ctx));
	ok(r == 0 && !strcmp(buf, conf), "template for the caller: %s", buf);
	ctx.uid = 42;
	r = slurp("who.txt", buf, sizeof(buf));
	ok(r == 0 && !strncmp(buf, "uid=42 ", 7),
	   "another uid reads other content");
	r = slurp("env/vars", buf, sizeof(buf));
	snprintf(conf, sizeof(conf), "42 567 %d %llu /env/vars\n",
		 (int)getpid(), (unsigned long long)vd_ctx_mntns(&ctx));
	ok(r == 0 && !strcmp(buf, conf),
	   "command sees VDRIVE_* of the caller: %s", buf);
	r = slurp("env/cwd", buf, sizeof(buf));
	snprintf(conf, sizeof(conf), "%s\n", tap_dir);
	ok(r == 0 && !strcmp(buf, conf), "command runs in the config's folder");
	r = slurp("lim/big", buf, sizeof(buf));
	ok(r == 0 && strlen(buf) == sizeof(buf) - 1 &&
		   !strncmp(buf, "a\na\n", 4),
	   "3 MB of output reads back");

	t0 = now();
	r = slurp("lim/slow", buf, sizeof(buf));
	ok(r == -EIO && now() - t0 < 1.5,
	   "a generator past its time: EIO in %.2f s", now() - t0);
	t0 = now();
	r = slurp("lim/bg", buf, sizeof(buf));
	ok(r == -EIO && now() - t0 < 1.5,
	   "one whose child holds the pipe: EIO in %.2f s", now() - t0);
	{
		FILE *f = fopen(pidfile, "r");
		int bg = 0, alive = 1;

		if (f) {
			if (fscanf(f, "%d", &bg) != 1)
				bg = 0;
			fclose(f);
		}
		/* Killed with the process group (a zombie until reaped). */
		for (int i = 0; i < 100 && bg > 0 && alive; i++) {
			alive = process_alive(bg);
			if (alive)
				usleep(10000);
		}
		ok(bg > 0 && !alive,
		   "its background child was killed too (pid %d)", bg);
	}
	ok(slurp("lim/huge", buf, sizeof(buf)) == -EIO, "too much output: EIO");
	ok(slurp("lim/exact", buf, sizeof(buf)) == 0 && strlen(buf) == 0,
	   "output at exactly the limit is fine");
	ok(slurp("lim/fail", buf, sizeof(buf)) == -EIO, "non-zero exit: EIO");
	ok(slurp("lim/noexec", buf, sizeof(buf)) == -EIO,
	   "a command that cannot run: EIO");
	ok(slurp("who.txt", buf, sizeof(buf)) == 0,
	   "the drive still answers afterwards");

	ops->destroy(ctx.data);
	return tap_done();
}
