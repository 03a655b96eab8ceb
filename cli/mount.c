/*
 * mount.c - `vdrive mount SOURCE MOUNTPOINT`.
 *
 * The parent checks what it can, then forks the drive process, which
 * opens the source, mounts, proves the drive answers, records itself in
 * the registry and only then tells the parent "ok" through a pipe. Any
 * failure before that comes back as a message, and nothing stays mounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "container.h"
#include "sources.h"

const char usage_mount[] =
	"usage: vdrive mount SOURCE MOUNTPOINT [-o OPT,...] [--name NAME] "
	"[-f]\n"
	"\n"
	"Mount a drive served by SOURCE (see `vdrive help` for the kinds) at\n"
	"MOUNTPOINT, an existing empty folder. Returns once the drive "
	"answers;\n"
	"the drive keeps running in the background until `vdrive unmount`.\n"
	"\n"
	"  -o OPTS        drive options, comma-separated: ro, allow_other,\n"
	"                 entry_timeout=S, attr_timeout=S, "
	"negative_timeout=S,\n"
	"                 kernel_cache=yes|no, direct_io, writeback_cache,\n"
	"                 max_io=BYTES, readdirplus=yes|no|auto, threads=N,\n"
	"                 passthrough=yes|no, default_permissions=yes|no\n"
	"                 (no: nothing checks permissions on built-in "
	"sources)\n"
	"                 and mount(8)'s flags: rw, noexec, noatime, nosuid,\n"
	"                 nodev, exec, suid, dev, sync, dirsync, nodiratime\n"
	"                 (default: nosuid,nodev)\n"
	"  --name NAME    name for list/unmount (default: the folder's name)\n"
	"  -f             stay in the foreground; Ctrl-C unmounts\n"
	"  --container REF  mount at MOUNTPOINT inside a container (PID,\n"
	"                 docker:NAME_OR_ID or /proc/PID/ns/mnt); created "
	"there\n"
	"                 if missing; only that container may use the drive,\n"
	"                 and the drive ends when the container does\n"
	"  --allow REF    also admit `host` or another container (repeatable)\n"
	"  --docker-host unix:///PATH  the Docker socket (default "
	"$DOCKER_HOST)\n"
	"  -o isolate     admit callers from this mount namespace only (for a\n"
	"                 drive a privileged container mounts itself)\n";

struct mount_args {
	const char *spec;
	char mountpoint[PATH_MAX];
	const char *opts;
	char name[128];
	bool foreground;
	const char *container; /* --container REF, or NULL */
	const char *allow[8];
	int nallow;
	const char *docker_host;
};

/* Names are file names in the registry: keep them plain. */
static bool valid_name(const char *s)
{
	if (!*s || *s == '.' || strlen(s) >= 100)
		return false;
	for (; *s; s++)
		if (!(*s == '-' || *s == '_' || *s == '.' ||
		      (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= 'A' && *s <= 'Z')))
			return false;
	return true;
}

static bool name_taken(const char *name)
{
	struct vd_rec r;

	return cli_rec_read(name, &r) == 0 && cli_pid_alive(r.pid);
}

/* Default name: the mount point's last component, made unique. */
static void default_name(struct mount_args *a)
{
	const char *base = strrchr(a->mountpoint, '/');
	char stem[64];
	size_t o = 0;

	base = base && base[1] ? base + 1 : "root";
	for (; *base && o < sizeof(stem) - 1; base++)
		stem[o++] = valid_name((char[]){*base, 0}) || *base == '.'
				    ? *base
				    : '_';
	stem[o] = '\0';
	if (stem[0] == '.')
		stem[0] = '_';
	snprintf(a->name, sizeof(a->name), "%s", stem);
	for (int i = 2; name_taken(a->name) && i < 1000; i++)
		snprintf(a->name, sizeof(a->name), "%s-%d", stem, i);
}

/* Check the options on a throwaway drive so errors come before forking. */
static int check_opts(const char *opts)
{
	static const struct vd_ops none;
	struct vd_drive *d;
	int r;

	if (!opts)
		return 0;
	r = vd_drive_new(&none, sizeof(none), NULL, &d);
	if (r)
		return r;
	r = vd_drive_set_options(d, opts);
	if (r)
		cli_err("%s", vd_drive_error(d));
	vd_drive_free(d);
	return r;
}

static int parse(int argc, char **argv, struct mount_args *a)
{
	static const struct option lopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"options", required_argument, NULL, 'o'},
		{"foreground", no_argument, NULL, 'f'},
		{"container", required_argument, NULL, 'C'},
		{"allow", required_argument, NULL, 'A'},
		{"docker-host", required_argument, NULL, 'D'},
		{NULL, 0, NULL, 0},
	};
	const char *mp;
	struct stat st;
	int c;

	memset(a, 0, sizeof(*a));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:fn:", lopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			a->opts = optarg;
			break;
		case 'f':
			a->foreground = true;
			break;
		case 'C':
			a->container = optarg;
			break;
		case 'A':
			if (a->nallow == 8) {
				cli_err("mount: at most 8 --allow");
				return 2;
			}
			a->allow[a->nallow++] = optarg;
			break;
		case 'D':
			a->docker_host = optarg;
			break;
		case 'n':
			if (!valid_name(optarg)) {
				cli_err("bad drive name '%s' (letters, digits, "
					"'-', '_', '.'; not starting with '.')",
					optarg);
				return 2;
			}
			snprintf(a->name, sizeof(a->name), "%s", optarg);
			break;
		default:
			cli_err("mount: unknown or incomplete option '%s'\n%s",
				argv[optind - 1], usage_mount);
			return 2;
		}
	}
	if (argc - optind != 2) {
		cli_err("mount: need SOURCE and MOUNTPOINT\n%s", usage_mount);
		return 2;
	}
	a->spec = argv[optind];
	mp = argv[optind + 1];
	if (!vd_source_find(a->spec) || !strchr(a->spec, ':')) {
		cli_err("unknown source '%s' (kinds: see `vdrive help`; "
			"write it as KIND:ARG, e.g. mem:)",
			a->spec);
		return 2;
	}
	if (a->container || a->nallow) {
		/* The path is inside the container: nothing to check here. */
		if (!a->container || mp[0] != '/' ||
		    strlen(mp) >= sizeof(a->mountpoint)) {
			cli_err("mount: --allow needs --container, and the "
				"mount "
				"point in a container must be an absolute "
				"path");
			return 2;
		}
		snprintf(a->mountpoint, sizeof(a->mountpoint), "%s", mp);
		goto checked;
	}
	if (!realpath(mp, a->mountpoint)) {
		cli_err("mount point %s: %s%s", mp, strerror(errno),
			errno == ENOTCONN
				? " (a dead drive: `vdrive unmount` it)"
				: "");
		return 1;
	}
	if (stat(a->mountpoint, &st) != 0 || !S_ISDIR(st.st_mode)) {
		cli_err("mount point %s is not a folder", mp);
		return 1;
	}
	if (cli_is_mountpoint(a->mountpoint)) {
		cli_err("%s is already a mount point", a->mountpoint);
		return 1;
	}
checked:
	if (a->name[0] && name_taken(a->name)) {
		cli_err("a drive named '%s' is already running", a->name);
		return 1;
	}
	if (!a->name[0])
		default_name(a);
	if (check_opts(a->opts))
		return 2;
	return 0;
}

static pthread_t main_thread;

static void *serve(void *arg)
{
	vd_drive_serve(arg, 0);
	/* Unmounted from outside, or stopped: wake the main thread. */
	pthread_kill(main_thread, SIGUSR1);
	return NULL;
}

/* Report to the waiting parent: "" for success, else the message. */
static void report(int fd, const char *msg)
{
	if (fd < 0) {
		if (*msg)
			cli_err("%s", msg);
		return;
	}
	if (write(fd, msg, strlen(msg) + 1) < 0)
		return;
	close(fd);
}

/*
 * The drive process: open, mount, check, record, serve until unmounted or
 * signalled. Returns the exit status.
 */
static int run_drive(struct mount_args *a, int status_fd)
{
	const struct vd_source *src = vd_source_find(a->spec);
	const struct vd_ops *ops;
	struct vd_drive *d = NULL;
	struct vd_rec rec;
	char msg[1024] = "", fsname[256], shown[512];
	void *data = NULL;
	sigset_t set;
	pthread_t th;
	struct stat st;
	struct cli_container ct = {.ns_fd = -1};
	int r;

	/* Signals are taken by sigwait below, never by a worker thread. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	main_thread = pthread_self();
	vd_source_shown(a->spec, shown, sizeof(shown));

	r = src->open(strchr(a->spec, ':') + 1, &ops, &data, msg, sizeof(msg));
	if (r) {
		if (!msg[0])
			snprintf(msg, sizeof(msg), "%s: %s", shown,
				 strerror(-r));
		report(status_fd, msg);
		return 1;
	}
	r = vd_drive_new(ops, sizeof(*ops), data, &d);
	if (r) {
		if (ops->destroy)
			ops->destroy(data);
		snprintf(msg, sizeof(msg), "%s", strerror(-r));
		goto fail;
	}
	/* fsname shows in the mount table (secrets left out); commas would
	 * split the options. */
	snprintf(fsname, sizeof(fsname), "fsname=%s", shown);
	for (char *p = fsname; *p; p++)
		if (*p == ',')
			*p = '_';
	if (vd_drive_set_options(d, fsname) ||
	    vd_drive_set_options(d, "subtype=vdrive") ||
	    (a->opts && vd_drive_set_options(d, a->opts))) {
		snprintf(msg, sizeof(msg), "%s", vd_drive_error(d));
		goto fail;
	}
	if (a->container)
		r = cli_container_mount(d, a->container,
					(const char *const *)a->allow,
					a->nallow, a->docker_host,
					a->mountpoint, &ct, msg, sizeof(msg));
	else
		r = vd_drive_mount(d, a->mountpoint);
	if (r) {
		if (!msg[0])
			snprintf(msg, sizeof(msg), "%s", vd_drive_error(d));
		goto fail;
	}
	if (pthread_create(&th, NULL, serve, d) != 0) {
		snprintf(msg, sizeof(msg), "cannot start a thread");
		goto fail;
	}
	/* The drive answers only when this stat comes back through it (in a
	 * container, through /proc/PID/root, and the gate's EACCES counts). */
	if (a->container ? cli_container_answers(&ct, a->mountpoint) != 0
			 : stat(a->mountpoint, &st) != 0) {
		snprintf(msg, sizeof(msg), "the drive does not answer: %s",
			 strerror(errno));
		vd_drive_stop(d);
		pthread_join(th, NULL);
		goto fail;
	}
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.name, sizeof(rec.name), "%s", a->name);
	snprintf(rec.source, sizeof(rec.source), "%s", shown);
	snprintf(rec.mountpoint, sizeof(rec.mountpoint), "%s", a->mountpoint);
	rec.pid = getpid();
	rec.via_daemon = vd_drive_via_daemon(d);
	if (a->container)
		snprintf(rec.container, sizeof(rec.container), "%s", ct.label);
	r = cli_rec_write(&rec);
	if (r)
		vd_log(d, "cannot record the drive in %s: %s", cli_rundir(),
		       strerror(-r));
	report(status_fd, "");

	/* Any of them ends the drive; SIGUSR1 means it was unmounted.
	 * Until then, `vdrive share` and `unshare` are served. */
	cli_ctl_run(d, &rec, &set);
	vd_drive_stop(d);
	pthread_join(th, NULL);
	cli_rec_remove(a->name);
	vd_drive_free(d);
	return 0;

fail:
	vd_drive_free(d);
	report(status_fd, msg);
	return 1;
}

int cmd_mount(int argc, char **argv)
{
	struct mount_args a;
	int pfd[2], r, status;
	char msg[1024];
	ssize_t n;
	size_t got = 0;
	pid_t pid;

	r = parse(argc, argv, &a);
	if (r)
		return r;
	if (a.foreground)
		return run_drive(&a, -1);
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		cli_err("pipe: %s", strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		cli_err("fork: %s", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		char logpath[PATH_MAX];
		int fd;

		close(pfd[0]);
		setsid();
		/* The drive's messages go to a log beside its record. */
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, 0);
			close(fd);
		}
		snprintf(logpath, sizeof(logpath), "%s/%s.log", cli_rundir(),
			 a.name);
		if (cli_rundir_make() == 0 &&
		    (fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644)) >=
			    0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		_exit(run_drive(&a, pfd[1]));
	}
	close(pfd[1]);
	while (got < sizeof(msg) - 1 &&
	       (n = read(pfd[0], msg + got, sizeof(msg) - 1 - got)) > 0) {
		got += (size_t)n;
		if (memchr(msg, '\0', got))
			break;
	}
	close(pfd[0]);
	msg[got] = '\0';
	if (got == 0) {
		waitpid(pid, &status, 0);
		cli_err("the drive process exited before the drive answered");
		return 1;
	}
	if (msg[0]) {
		waitpid(pid, &status, 0);
		cli_err("%s", msg);
		return 1;
	}
	return 0;
}
