/*
 * share.c - `vdrive share` and `vdrive unshare`: attach a live drive in
 * another container, on the host, or serve it over SMB, and undo that.
 *
 * The tool resolves the target (a container's namespace and init pid, or
 * its own namespace for --host) and hands it to the drive process over
 * its control socket (control.c), which does the work: the drive process
 * owns the mount, the gate and any smbd.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "container.h"
#include "sock.h"
#include "vdproto.h"

const char usage_share[] =
	"usage: vdrive share DRIVE --container REF [--at PATH] [--read-only]\n"
	"       vdrive share DRIVE --host PATH [--read-only]\n"
	"       vdrive share DRIVE --smb [--name SHARE] [--listen ADDR:PORT]\n"
	"                          [--netns REF] [--read-only]\n"
	"                          [--user NAME --password-file FILE | "
	"--guest]\n"
	"\n"
	"Share a running drive (its name, or its mount point) without a copy:\n"
	"the same live drive, served by the same process.\n"
	"\n"
	"  --container REF  attach it inside another container (PID,\n"
	"                   docker:NAME_OR_ID or /proc/PID/ns/mnt) at PATH\n"
	"                   (default: the drive's own mount point); that\n"
	"                   container may use it from then on, and the share\n"
	"                   ends when the container stops\n"
	"  --host PATH      attach it on the host at PATH\n"
	"  --read-only      writes from there fail with EROFS; the owner "
	"still\n"
	"                   writes\n"
	"  --smb            serve it over SMB3 (signing required) with "
	"Samba's\n"
	"                   smbd, started and supervised by the drive\n"
	"  --name SHARE     the SMB share name (default: the drive's name)\n"
	"  --listen ADDR:PORT  where smbd listens (default 0.0.0.0:445)\n"
	"  --netns REF      listen inside a container's network namespace\n"
	"  --user NAME      the SMB user; its password is the first line of\n"
	"  --password-file FILE  FILE (mode 0600 or stricter advised)\n"
	"  --guest          no password at all (anyone who can connect)\n"
	"  --docker-host unix:///PATH  the Docker socket (default "
	"$DOCKER_HOST)\n"
	"\n"
	"A drive made inside a container through vdrived (mounted with\n"
	"-o shareable) is attached by vdrived at its share folder, under its\n"
	"policy: `--host --name NAME` or `--container HOST_PID --name NAME`\n"
	"(see docs/containers.md).\n";

const char usage_unshare[] =
	"usage: vdrive unshare DRIVE --container REF | --host | --smb "
	"[--name SHARE]\n"
	"\n"
	"End a share: the attached mount disappears there (or smbd stops), "
	"and\n"
	"the drive refuses that environment again.\n";

struct find {
	const char *what;
	struct vd_rec *out;
	bool found;
};

static int found_by_path(const struct vd_rec *r, void *arg)
{
	struct find *f = arg;

	if (strcmp(r->mountpoint, f->what) || r->container[0])
		return 0;
	*f->out = *r;
	f->found = true;
	return 1;
}

/* Find the drive by name or mount point. */
static int find_drive(const char *what, struct vd_rec *out)
{
	struct find f = {what, out, false};
	char real[PATH_MAX];

	if (cli_rec_read(what, out) == 0)
		goto check;
	if (realpath(what, real))
		f.what = real;
	cli_rec_each(found_by_path, &f);
	if (!f.found) {
		cli_err("no drive named '%s' (see `vdrive list`)", what);
		return -ENOENT;
	}
check:
	if (!cli_pid_alive(out->pid)) {
		cli_err("drive '%s' is dead: `vdrive unmount` it", out->name);
		return -ESRCH;
	}
	return 0;
}

/* Send one request (with nsfd attached if >= 0) to the drive process and
 * print its error; 0 on "ok". */
static int ask_drive(const struct vd_rec *rec, const char *req, int nsfd,
		     char *answer, size_t n)
{
	char path[PATH_MAX], buf[1200];
	const char *rest;
	int s, fd, r;

	cli_ctl_path(path, sizeof(path), rec->name);
	s = vd_sock_connect(path);
	if (s < 0) {
		cli_err("cannot reach drive '%s' (%s): %s", rec->name, path,
			strerror(-s));
		return 1;
	}
	if (vd_sock_send(s, req, strlen(req), nsfd, 0) != 0) {
		cli_err("drive '%s': cannot send the request", rec->name);
		close(s);
		return 1;
	}
	r = vd_sock_recv_line(s, buf, sizeof(buf), &fd);
	close(s);
	if (fd >= 0)
		close(fd);
	if (r) {
		cli_err("drive '%s' did not answer", rec->name);
		return 1;
	}
	buf[strcspn(buf, "\n")] = '\0';
	r = vd_proto_reply(buf, &rest);
	if (!r) {
		if (answer)
			snprintf(answer, n, "%s", rest);
		return 0;
	}
	if (rest)
		cli_err("%s", rest);
	else
		cli_err("drive '%s': %s", rec->name, buf);
	return 1;
}

/* Read the first line of a password file; refuse what cannot be one. */
static int read_password(const char *file, char *out, size_t n)
{
	FILE *f = fopen(file, "re");
	size_t len;

	if (!f) {
		cli_err("password file %s: %s", file, strerror(errno));
		return -1;
	}
	if (!fgets(out, (int)n, f)) {
		fclose(f);
		cli_err("password file %s is empty", file);
		return -1;
	}
	fclose(f);
	len = strcspn(out, "\r\n");
	out[len] = '\0';
	if (len == 0) {
		cli_err("password file %s: the first line is empty", file);
		return -1;
	}
	return 0;
}

struct share_args {
	const char *container, *host, *at, *smb_name, *listen, *netns, *user,
		*pwfile, *dhost;
	bool smb, ro, guest, host_flag;
};

static int parse(int argc, char **argv, struct share_args *a, bool unshare)
{
	static const struct option lopts[] = {
		{"container", required_argument, NULL, 'C'},
		{"host", optional_argument, NULL, 'H'},
		{"at", required_argument, NULL, 'a'},
		{"read-only", no_argument, NULL, 'r'},
		{"smb", no_argument, NULL, 'S'},
		{"name", required_argument, NULL, 'n'},
		{"listen", required_argument, NULL, 'l'},
		{"netns", required_argument, NULL, 'N'},
		{"user", required_argument, NULL, 'u'},
		{"password-file", required_argument, NULL, 'p'},
		{"guest", no_argument, NULL, 'g'},
		{"docker-host", required_argument, NULL, 'D'},
		{NULL, 0, NULL, 0},
	};
	const char *usage = unshare ? usage_unshare : usage_share;
	int c, targets;

	memset(a, 0, sizeof(*a));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'C':
			a->container = optarg;
			break;
		case 'H':
			a->host_flag = true;
			/* --host PATH: the argument may be the next word */
			if (!optarg && optind < argc && argv[optind][0] == '/')
				optarg = argv[optind++];
			a->host = optarg;
			break;
		case 'a':
			a->at = optarg;
			break;
		case 'r':
			a->ro = true;
			break;
		case 'S':
			a->smb = true;
			break;
		case 'n':
			a->smb_name = optarg;
			break;
		case 'l':
			a->listen = optarg;
			break;
		case 'N':
			a->netns = optarg;
			break;
		case 'u':
			a->user = optarg;
			break;
		case 'p':
			a->pwfile = optarg;
			break;
		case 'g':
			a->guest = true;
			break;
		case 'D':
			a->dhost = optarg;
			break;
		default:
			cli_err("%s: unknown or incomplete option '%s'\n%s",
				argv[0], argv[optind - 1], usage);
			return 2;
		}
	}
	if (argc - optind != 1) {
		cli_err("%s: need exactly one DRIVE\n%s", argv[0], usage);
		return 2;
	}
	targets = !!a->container + a->host_flag + a->smb;
	if (targets != 1) {
		cli_err("%s: name one of --container, --host or --smb\n%s",
			argv[0], usage);
		return 2;
	}
	if (unshare) {
		if (a->at || a->ro || a->listen || a->netns || a->user ||
		    a->pwfile || a->guest) {
			cli_err("unshare: takes only the target\n%s", usage);
			return 2;
		}
		return 0;
	}
	if (a->host && a->host[0] != '/') {
		cli_err("share: --host needs an absolute PATH");
		return 2;
	}
	if (a->at && (a->at[0] != '/' || !a->container)) {
		cli_err("share: --at needs --container and an absolute PATH");
		return 2;
	}
	if (!a->smb &&
	    (a->listen || a->netns || a->user || a->pwfile || a->guest)) {
		cli_err("share: --listen, --netns, --user, --password-file and "
			"--guest go with --smb");
		return 2;
	}
	if (a->smb && !a->guest && (!a->user || !a->pwfile)) {
		cli_err("share: --smb needs --user NAME --password-file FILE, "
			"or --guest");
		return 2;
	}
	if (a->smb && a->guest && (a->user || a->pwfile)) {
		cli_err("share: --guest takes no --user or --password-file");
		return 2;
	}
	return 0;
}

static bool plain_word(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
		      *s == '.'))
			return false;
	return true;
}

/* The SMB part of the request: key=value words, the password in hex. */
static int smb_spec(const struct share_args *a, char *out, size_t n)
{
	char pw[256] = "", hex[520] = "", msg[256];
	struct cli_container ct = {.ns_fd = -1};
	int netns_pid = 0;

	if (a->user && !plain_word(a->user)) {
		cli_err("share: bad SMB user name '%s' (letters, digits, "
			"'-', '_', '.')",
			a->user);
		return 2;
	}
	if (a->listen && !strchr(a->listen, ':')) {
		cli_err("share: --listen takes ADDR:PORT, e.g. 127.0.0.1:4450");
		return 2;
	}
	if (a->pwfile && read_password(a->pwfile, pw, sizeof(pw)))
		return 1;
	for (size_t i = 0; pw[i]; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)pw[i]);
	memset(pw, 0, sizeof(pw));
	if (a->netns) {
		if (cli_container_resolve(a->netns, a->dhost, &ct, msg,
					  sizeof(msg)) != 0) {
			cli_err("--netns %s: %s", a->netns, msg);
			return 1;
		}
		close(ct.ns_fd);
		netns_pid = ct.pid;
		if (netns_pid <= 0) {
			cli_err("--netns %s: needs a container with a process",
				a->netns);
			return 2;
		}
	}
	snprintf(out, n, "listen=%s netns=%d guest=%d user=%s pass=%s",
		 a->listen ? a->listen : "0.0.0.0:445", netns_pid, a->guest,
		 a->user ? a->user : "-", hex[0] ? hex : "-");
	memset(hex, 0, sizeof(hex));
	return 0;
}

/*
 * A drive made through vdrived (inside an unprivileged container): the
 * daemon attaches it, at its share folder /NAME in the target, which is
 * the host or the container of a host pid (this container cannot resolve
 * other containers' names).
 */
static int run_daemon(const struct share_args *a, const struct vd_rec *rec,
		      bool unshare)
{
	const char *name = a->smb_name ? a->smb_name : rec->name;
	char target[32], req[512], answer[1100];
	const char *ref = a->container;
	char *end;
	long pid;

	if (a->host || a->at) {
		cli_err("drive '%s' was made through vdrived, which attaches "
			"it at its own share folder: name the share with "
			"--name NAME instead of a path",
			rec->name);
		return 2;
	}
	if (!plain_word(name)) {
		cli_err("share: bad share name '%s'", name);
		return 2;
	}
	if (ref) {
		if (!strncmp(ref, "pid:", 4))
			ref += 4;
		pid = strtol(ref, &end, 10);
		if (*end || pid <= 0) {
			cli_err("drive '%s' was made through vdrived: name the "
				"container by a host pid (--container PID)",
				rec->name);
			return 2;
		}
		snprintf(target, sizeof(target), "pid:%ld", pid);
	} else {
		snprintf(target, sizeof(target), "host");
	}
	if (unshare)
		snprintf(req, sizeof(req), "unshare %s %s\n",
			 ref ? "container" : "host", target);
	else
		snprintf(req, sizeof(req), "share daemon %s 0 %s %s\n",
			 a->ro ? "ro" : "rw", target, name);
	if (ask_drive(rec, req, -1, answer, sizeof(answer)))
		return 1;
	if (!unshare)
		printf("%s: shared with %s at %s%s\n", rec->name, target,
		       answer, a->ro ? " (read-only)" : "");
	return 0;
}

static int run(int argc, char **argv, bool unshare)
{
	struct cli_container ct = {.ns_fd = -1};
	struct share_args a;
	struct vd_rec rec;
	char req[8192], msg[512], answer[1100], spec[1024];
	const char *kind, *label;
	int r, nsfd = -1;

	r = parse(argc, argv, &a, unshare);
	if (r)
		return r;
	if (find_drive(argv[optind], &rec))
		return 1;
	if (rec.via_daemon && !a.smb)
		return run_daemon(&a, &rec, unshare);
	if (a.smb_name && !a.smb) {
		cli_err("share: --name goes with --smb, or with a drive made "
			"through vdrived");
		return 2;
	}
	if (a.host_flag && !a.host && !unshare) {
		cli_err("share: --host needs an absolute PATH");
		return 2;
	}
	if (a.container) {
		if (cli_container_resolve(a.container, a.dhost, &ct, msg,
					  sizeof(msg)) != 0) {
			cli_err("container %s: %s", a.container, msg);
			return 1;
		}
		nsfd = ct.ns_fd;
		kind = "container";
		label = ct.label;
	} else if (a.host_flag) {
		nsfd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
		if (nsfd < 0) {
			cli_err("cannot open this namespace: %s",
				strerror(errno));
			return 1;
		}
		kind = "host";
		label = "host";
	} else {
		kind = "smb";
		label = a.smb_name ? a.smb_name : rec.name;
		if (!plain_word(label)) {
			cli_err("share: bad SMB share name '%s'", label);
			return 2;
		}
	}
	if (unshare) {
		snprintf(req, sizeof(req), "unshare %s %s\n", kind, label);
	} else if (a.smb) {
		r = smb_spec(&a, spec, sizeof(spec));
		if (r)
			return r;
		snprintf(req, sizeof(req), "share smb %s 0 %s %s\n",
			 a.ro ? "ro" : "rw", label, spec);
		memset(spec, 0, sizeof(spec));
	} else {
		snprintf(req, sizeof(req), "share %s %s %d %s %s\n", kind,
			 a.ro ? "ro" : "rw", (int)ct.pid, label,
			 a.host ? a.host
			 : a.at ? a.at
				: rec.mountpoint);
	}
	r = ask_drive(&rec, req, nsfd, answer, sizeof(answer));
	memset(req, 0, sizeof(req));
	if (nsfd >= 0)
		close(nsfd);
	if (r == 0 && !unshare)
		printf("%s: shared with %s %s at %s%s\n", rec.name, kind, label,
		       answer, a.ro ? " (read-only)" : "");
	return r;
}

int cmd_share(int argc, char **argv)
{
	return run(argc, argv, false);
}

int cmd_unshare(int argc, char **argv)
{
	return run(argc, argv, true);
}
