/*
 * unmount.c - `vdrive unmount MOUNTPOINT|NAME`.
 *
 * Asks the drive process to stop (SIGTERM: it unmounts and exits). A
 * drive whose process died or hangs is cleared anyway: its FUSE
 * connection is aborted, so nothing waits on it, then it is unmounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "container.h"
#include "vdrive.h"

const char usage_unmount[] =
	"usage: vdrive unmount MOUNTPOINT|NAME\n"
	"       vdrive unmount --container REF [--docker-host unix:///PATH]\n"
	"\n"
	"Stop the drive and unmount it. Works on drives whose process died or\n"
	"hangs, and on any vdrive mount point even without a record.\n"
	"--container: every drive mounted into that container.\n";

/* Absolute and without trailing '/', without touching the path itself:
 * stat on a hung drive would hang us too. */
static void absolute(const char *in, char *out, size_t n)
{
	char cwd[PATH_MAX];
	size_t len;

	if (in[0] == '/')
		snprintf(out, n, "%s", in);
	else if (getcwd(cwd, sizeof(cwd)))
		snprintf(out, n, "%s/%s", strcmp(cwd, "/") ? cwd : "", in);
	else
		snprintf(out, n, "%s", in);
	len = strlen(out);
	while (len > 1 && out[len - 1] == '/')
		out[--len] = '\0';
}

struct find {
	const char *mountpoint;
	struct vd_rec rec;
	bool found;
};

static int match_mp(const struct vd_rec *r, void *arg)
{
	struct find *f = arg;

	if (strcmp(r->mountpoint, f->mountpoint) != 0)
		return 0;
	f->rec = *r;
	f->found = true;
	return 1;
}

static bool wait_gone(pid_t pid, int ms)
{
	struct timespec ts = {0, 20 * 1000 * 1000};

	for (int i = 0; i < ms / 20; i++) {
		if (!cli_pid_alive(pid))
			return true;
		nanosleep(&ts, NULL);
	}
	return !cli_pid_alive(pid);
}

/* The FUSE connection number is the minor of the mount's device. */
static void abort_connection(const char *mp)
{
	char line[8192], path[128];
	FILE *f = fopen("/proc/self/mountinfo", "r");
	unsigned int major, minor;
	bool found = false;
	int fd;

	if (!f)
		return;
	while (!found && fgets(line, sizeof(line), f)) {
		char m[4096];
		if (sscanf(line, "%*s %*s %u:%u %*s %4095s", &major, &minor,
			   m) == 3 &&
		    !strcmp(m, mp))
			found = true;
	}
	fclose(f);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort",
		 minor);
	fd = open(path, O_WRONLY);
	if (fd >= 0) {
		/* A failed abort leaves only umount to try, which follows. */
		if (write(fd, "1", 1) < 0)
			vd_log(NULL, "abort %s: %s", path, strerror(errno));
		close(fd);
	}
}

int cmd_unmount(int argc, char **argv)
{
	struct find f = {0};
	char mp[PATH_MAX];
	bool have_rec, in_ct;

	if (argc >= 3 && !strcmp(argv[1], "--container"))
		return cli_container_unmount(
			argv[2], argc == 5 && !strcmp(argv[3], "--docker-host")
					 ? argv[4]
					 : NULL);
	if (argc != 2) {
		cli_err("unmount: need one MOUNTPOINT or NAME\n%s",
			usage_unmount);
		return 2;
	}
	have_rec = !strchr(argv[1], '/') && cli_rec_read(argv[1], &f.rec) == 0;
	if (!have_rec) {
		absolute(argv[1], mp, sizeof(mp));
		f.mountpoint = mp;
		cli_rec_each(match_mp, &f);
		have_rec = f.found;
	}
	if (have_rec)
		snprintf(mp, sizeof(mp), "%s", f.rec.mountpoint);
	if (!have_rec && !cli_is_mountpoint(mp)) {
		cli_err("no drive named or mounted at '%s'", argv[1]);
		return 1;
	}

	/* A drive in a container: its path means nothing on the host, and
	 * the drive process unmounts it there; never touch the host's. */
	in_ct = have_rec && f.rec.container[0];
	if (have_rec && cli_pid_alive(f.rec.pid)) {
		kill(f.rec.pid, SIGTERM);
		if (!wait_gone(f.rec.pid, 5000)) {
			/* Hung: cut it off, then it can be killed. */
			if (!in_ct)
				abort_connection(mp);
			kill(f.rec.pid, SIGKILL);
			wait_gone(f.rec.pid, 2000);
		}
	}
	if (!in_ct && cli_is_mountpoint(mp) && umount2(mp, 0) != 0) {
		abort_connection(mp);
		if (umount2(mp, 0) != 0 && umount2(mp, MNT_DETACH) != 0) {
			cli_err("cannot unmount %s: %s", mp, strerror(errno));
			return 1;
		}
	}
	if (have_rec && !cli_pid_alive(f.rec.pid))
		cli_rec_remove(f.rec.name);
	return 0;
}
