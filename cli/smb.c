/*
 * smb.c - `vdrive share DRIVE --smb`: Samba's smbd serving a drive.
 *
 * smbd is started, configured and supervised by the drive process, with
 * everything of its own under $VDRIVE_RUNDIR/smb/NAME (config, passdb,
 * locks, state, log; mode 0700), never the system's smb.conf or passdb.
 * It runs as pid 1 of a new pid namespace (stopping it by its pid ends
 * every child it forked) inside a new mount namespace, where the drive is
 * attached with vd_drive_attach(): the gate admits that namespace and no
 * other, so smbd reaches the drive only through this share. With --netns
 * it listens inside a container's network namespace.
 *
 * Security settings: SMB3 only, signing mandatory, no NetBIOS, no
 * printing; without --guest, no guest access and only the named user,
 * whose password is kept in the private passdb (the SMB user name maps to
 * the drive owner's account, which smbd acts as on the drive).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "smb.h"
#include "vdrive.h"

#define SMBD "/usr/sbin/smbd"
#define SMBPASSWD "/usr/bin/smbpasswd"
#define SMB_RESTARTS 3 /* deaths within SMB_WINDOW before failing */
#define SMB_WINDOW 60
#define SMB_READY_MS 15000

struct cli_smb {
	char dir[PATH_MAX];   /* our folder: conf, passdb, log, share */
	char share[PATH_MAX]; /* where the drive is attached for smbd */
	char conf[PATH_MAX];
	char addr[64];
	int port;
	int netns_fd; /* -1: the drive process's network */
	bool ro, failed;
	pid_t pid;
	int pidfd;
	uint64_t ns_ino; /* smbd's mount namespace, where the share is */
	time_t deaths[SMB_RESTARTS];
	int ndeaths;
};

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(p); /* what cannot go is left for the next start */
	return 0;
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* A spec word "key=value": copy value, or "" if absent. */
static void spec_get(const char *spec, const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);
	const char *p = spec;

	out[0] = '\0';
	while (p && *p) {
		if (!strncmp(p, key, kl) && p[kl] == '=') {
			p += kl + 1;
			snprintf(out, n, "%.*s", (int)strcspn(p, " "), p);
			return;
		}
		p = strchr(p, ' ');
		if (p)
			p++;
	}
}

static int write_conf(struct cli_smb *s, const char *name, bool guest,
		      const char *owner, const char *user)
{
	char path[PATH_MAX + 16];
	FILE *f;

	snprintf(s->conf, sizeof(s->conf), "%s/smb.conf", s->dir);
	f = fopen(s->conf, "we");
	if (!f)
		return -errno;
	fprintf(f,
		"# written by vdrive for this share only\n"
		"[global]\n"
		"server role = standalone server\n"
		"server min protocol = SMB3\n"
		"server signing = mandatory\n"
		"smb ports = %d\n"
		"disable netbios = yes\n"
		"load printers = no\n"
		"printing = bsd\n"
		"printcap name = /dev/null\n"
		"disable spoolss = yes\n"
		"private dir = %s/private\n"
		"lock directory = %s/lock\n"
		"state directory = %s/state\n"
		"cache directory = %s/cache\n"
		"pid directory = %s/run\n"
		"ncalrpc dir = %s/run/ncalrpc\n"
		"binddns dir = %s/private/bind-dns\n"
		"log file = %s/log.smbd\n"
		"max log size = 1000\n"
		"passdb backend = tdbsam:%s/private/passdb.tdb\n"
		"username map = %s/users.map\n"
		"guest account = %s\n"
		"map to guest = %s\n"
		"restrict anonymous = %d\n",
		s->port, s->dir, s->dir, s->dir, s->dir, s->dir, s->dir, s->dir,
		s->dir, s->dir, s->dir, owner, guest ? "Bad User" : "Never",
		guest ? 0 : 2);
	if (strcmp(s->addr, "0.0.0.0") != 0)
		fprintf(f, "interfaces = %s\nbind interfaces only = yes\n",
			s->addr);
	fprintf(f,
		"\n[%s]\n"
		"path = %s\n"
		"read only = %s\n"
		"guest ok = %s\n"
		"guest only = %s\n"
		"force user = %s\n"
		"%s%s%s"
		"browseable = yes\n",
		name, s->share, s->ro ? "yes" : "no", guest ? "yes" : "no",
		guest ? "yes" : "no", owner,
		guest ? "" : "valid users = ", guest ? "" : owner,
		guest ? "" : "\n");
	if (fclose(f) != 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/users.map", s->dir);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	/* The SMB user is the drive owner's account to smbd. */
	if (user[0])
		fprintf(f, "%s = %s\n", owner, user);
	return fclose(f) ? -errno : 0;
}

/* Put the owner's password into our private passdb (smbpasswd -s). */
static int set_password(struct cli_smb *s, const char *owner, const char *hex,
			char *msg, size_t mn)
{
	char pw[256];
	int p[2], status, i;
	pid_t pid;

	for (i = 0; hex[2 * i] && hex[2 * i + 1] && i < 255; i++) {
		unsigned int b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -EINVAL;
		pw[i] = (char)b;
	}
	pw[i] = '\0';
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(p[0], 0);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execl(SMBPASSWD, "smbpasswd", "-c", s->conf, "-s", "-a", owner,
		      (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	if (pid > 0) {
		dprintf(p[1], "%s\n%s\n", pw, pw);
	}
	memset(pw, 0, sizeof(pw));
	close(p[1]);
	if (pid < 0)
		return -errno;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(msg, mn, "smbpasswd could not set the password (%s)",
			 WIFEXITED(status) && WEXITSTATUS(status) == 127
				 ? "smbpasswd missing: apt-get install "
				   "samba-common-bin"
				 : "see its exit status");
		return -EIO;
	}
	return 0;
}

static int parse_listen(struct cli_smb *s, const char *listen, char *msg,
			size_t mn)
{
	const char *colon = strrchr(listen, ':');
	struct in_addr a;
	char *end;
	long port;

	if (!colon || colon == listen ||
	    (size_t)(colon - listen) >= sizeof(s->addr)) {
		snprintf(msg, mn, "--listen takes ADDR:PORT, not '%s'", listen);
		return -EINVAL;
	}
	snprintf(s->addr, sizeof(s->addr), "%.*s", (int)(colon - listen),
		 listen);
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535 ||
	    inet_pton(AF_INET, s->addr, &a) != 1) {
		snprintf(msg, mn,
			 "--listen %s: need an IPv4 address and a port "
			 "1-65535",
			 listen);
		return -EINVAL;
	}
	s->port = (int)port;
	return 0;
}

/* In the child: can we bind the address? 0 or an errno. */
static int try_bind(const struct cli_smb *s)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)s->port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, r = 0;

	if (fd < 0)
		return errno;
	inet_pton(AF_INET, s->addr, &sa.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		r = errno;
	close(fd);
	return r;
}

/*
 * Start smbd: a child in new pid and mount namespaces (and the container's
 * network, with --netns) says it is ready, the drive is attached in its
 * namespace, then it becomes smbd.
 */
static int spawn(struct vd_drive *d, struct cli_smb *s, char *msg, size_t mn)
{
	char nspath[64], logpath[PATH_MAX + 16];
	int up[2], go[2], err = 0, nsfd, r;
	pid_t pid;

	if (pipe2(up, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
		return -errno;
	snprintf(logpath, sizeof(logpath), "%s/smbd.out", s->dir);
	/* Like fork(), with the child as pid 1 of a new pid namespace. */
	pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | SIGCHLD,
			     NULL, NULL, NULL, NULL);
	if (pid == 0) {
		int e = 0, out;
		char c;

		close(up[0]);
		close(go[1]);
		/* smbd's SIGTERM handler signals its whole process group
		 * (kill(0, SIGTERM)); without a group of its own that is the
		 * drive process's (and with -f the user's shell's). */
		if (setsid() < 0)
			e = errno;
		if (!e &&
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
			e = errno;
		if (!e && s->netns_fd >= 0 &&
		    setns(s->netns_fd, CLONE_NEWNET) != 0)
			e = errno;
		if (!e)
			e = try_bind(s);
		if (write(up[1], &e, sizeof(e)) != sizeof(e) || e)
			_exit(1);
		if (read(go[0], &c, 1) != 1)
			_exit(1);
		out = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			   0600);
		if (out >= 0) {
			dup2(out, 1);
			dup2(out, 2);
		}
		execl(SMBD, "smbd", "--foreground", "--no-process-group",
		      "--configfile", s->conf, (char *)NULL);
		_exit(127);
	}
	close(up[1]);
	close(go[0]);
	if (pid < 0) {
		r = -errno;
		goto out;
	}
	if (read(up[0], &err, sizeof(err)) != sizeof(err))
		err = EIO;
	if (err) {
		if (err == EADDRINUSE)
			snprintf(msg, mn, "port %d on %s is in use", s->port,
				 s->addr);
		else
			snprintf(msg, mn, "cannot set up smbd on %s:%d: %s",
				 s->addr, s->port, strerror(err));
		r = -err;
		waitpid(pid, NULL, 0);
		goto out;
	}
	snprintf(nspath, sizeof(nspath), "/proc/%d/ns/mnt", (int)pid);
	nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
	r = nsfd < 0 ? -errno
		     : vd_drive_attach(d, s->share, nsfd,
				       s->ro ? VD_ADMIT_READONLY : 0);
	if (nsfd >= 0) {
		struct stat st;

		if (fstat(nsfd, &st) == 0)
			s->ns_ino = (uint64_t)st.st_ino;
		close(nsfd);
	}
	if (r) {
		snprintf(msg, mn, "cannot attach the drive for smbd: %s",
			 r == -ENOENT ? strerror(-r) : vd_drive_error(d));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto out;
	}
	if (write(go[1], "g", 1) != 1) {
		r = -EIO;
		goto out;
	}
	s->pid = pid;
	s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
out:
	close(up[0]);
	close(go[1]);
	return r;
}

/* Wait until smbd accepts connections (from its network), or dies. */
static int wait_ready(struct cli_smb *s, char *msg, size_t mn)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)s->port)};
	int status;

	inet_pton(AF_INET, s->addr, &sa.sin_addr);
	if (sa.sin_addr.s_addr == htonl(INADDR_ANY))
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int waited = 0; waited < SMB_READY_MS; waited += 50) {
		pid_t c;
		int ok;

		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			snprintf(msg, mn,
				 "smbd exited at once (status %d); see "
				 "%s/log.smbd",
				 WIFEXITED(status) ? WEXITSTATUS(status) : -1,
				 s->dir);
			s->pid = 0;
			return -EIO;
		}
		/* A child probes from smbd's network namespace. */
		c = fork();
		if (c == 0) {
			int fd;

			if (s->netns_fd >= 0 &&
			    setns(s->netns_fd, CLONE_NEWNET) != 0)
				_exit(1);
			fd = socket(AF_INET, SOCK_STREAM, 0);
			_exit(fd >= 0 && connect(fd, (struct sockaddr *)&sa,
						 sizeof(sa)) == 0
				      ? 0
				      : 1);
		}
		ok = c > 0 && waitpid(c, &status, 0) == c &&
		     WIFEXITED(status) && WEXITSTATUS(status) == 0;
		if (ok)
			return 0;
		usleep(50000);
	}
	snprintf(msg, mn, "smbd did not start listening on %s:%d", s->addr,
		 s->port);
	return -ETIMEDOUT;
}

static void kill_smbd(struct vd_drive *d, struct cli_smb *s)
{
	if (s->pid > 0) {
		struct pollfd p = {.fd = s->pidfd, .events = POLLIN};

		kill(s->pid, SIGTERM);
		if (s->pidfd < 0 || poll(&p, 1, 5000) <= 0)
			kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
	if (s->pidfd >= 0)
		close(s->pidfd);
	s->pidfd = -1;
	if (s->ns_ino)
		vd_drive_detach(d, s->share, s->ns_ino);
	s->ns_ino = 0;
}

int cli_smb_start(struct vd_drive *d, const char *drive, const char *name,
		  const char *spec, bool ro, struct cli_smb **out, char *addr,
		  size_t an, char *msg, size_t mn)
{
	char listen[128], netns[16], guest[4], user[80], hex[520],
		base[PATH_MAX];
	struct passwd *pw = getpwuid(getuid());
	struct cli_smb *s;
	int r;

	if (access(SMBD, X_OK) != 0) {
		snprintf(msg, mn,
			 "Samba's smbd is not installed (%s): apt-get install "
			 "samba",
			 SMBD);
		return -ENOENT;
	}
	if (!pw) {
		snprintf(msg, mn, "the drive's owner has no account name");
		return -ENOENT;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->netns_fd = -1;
	s->pidfd = -1;
	s->ro = ro;
	spec_get(spec, "listen", listen, sizeof(listen));
	spec_get(spec, "netns", netns, sizeof(netns));
	spec_get(spec, "guest", guest, sizeof(guest));
	spec_get(spec, "user", user, sizeof(user));
	spec_get(spec, "pass", hex, sizeof(hex));
	if (!strcmp(user, "-"))
		user[0] = '\0';
	r = parse_listen(s, listen, msg, mn);
	if (r)
		goto fail;
	if (atoi(netns) > 0) {
		char p[64];

		snprintf(p, sizeof(p), "/proc/%d/ns/net", atoi(netns));
		s->netns_fd = open(p, O_RDONLY | O_CLOEXEC);
		if (s->netns_fd < 0) {
			r = -errno;
			snprintf(msg, mn, "--netns: the container is gone (%s)",
				 strerror(errno));
			goto fail;
		}
	}
	/* $VDRIVE_RUNDIR/smb/DRIVE-NAME, beside the drives folder. */
	snprintf(base, sizeof(base), "%s", cli_rundir());
	*strrchr(base, '/') = '\0';
	snprintf(s->dir, sizeof(s->dir), "%s/smb", base);
	mkdir(s->dir, 0700);
	snprintf(s->dir, sizeof(s->dir), "%s/smb/%s-%s", base, drive, name);
	rm_rf(s->dir);
	if (mkdir(s->dir, 0700) != 0) {
		r = -errno;
		snprintf(msg, mn, "cannot make %s: %s", s->dir,
			 strerror(errno));
		goto fail;
	}
	{
		static const char *const sub[] = {"private", "lock", "state",
						  "cache",   "run",  "share"};
		char p[PATH_MAX + 16];

		for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
			snprintf(p, sizeof(p), "%s/%s", s->dir, sub[i]);
			mkdir(p, 0700);
		}
	}
	snprintf(s->share, sizeof(s->share), "%s/share", s->dir);
	r = write_conf(s, name, atoi(guest) == 1, pw->pw_name, user);
	if (r) {
		snprintf(msg, mn, "cannot write smb.conf: %s", strerror(-r));
		goto fail;
	}
	if (user[0]) {
		r = set_password(s, pw->pw_name, hex, msg, mn);
		memset(hex, 0, sizeof(hex));
		if (r)
			goto fail;
	}
	r = spawn(d, s, msg, mn);
	if (r)
		goto fail;
	r = wait_ready(s, msg, mn);
	if (r)
		goto fail;
	snprintf(addr, an, "//%s:%d/%s", s->addr, s->port, name);
	*out = s;
	return 0;
fail:
	cli_smb_stop(d, s);
	return r;
}

int cli_smb_pidfd(const struct cli_smb *s)
{
	return s->failed ? -1 : s->pidfd;
}

bool cli_smb_failed(const struct cli_smb *s)
{
	return s->failed;
}

bool cli_smb_exited(struct vd_drive *d, struct cli_smb *s)
{
	time_t now = time(NULL);
	char msg[256];
	int status = 0, n = 0;

	waitpid(s->pid, &status, 0);
	s->pid = 0;
	kill_smbd(d, s);
	for (int i = 0; i < s->ndeaths; i++)
		if (now - s->deaths[i] < SMB_WINDOW)
			s->deaths[n++] = s->deaths[i];
	s->ndeaths = n;
	if (s->ndeaths == SMB_RESTARTS) {
		vd_log(d, "smbd died %d times within %d s: SMB share failed",
		       SMB_RESTARTS, SMB_WINDOW);
		s->failed = true;
		return true;
	}
	s->deaths[s->ndeaths++] = now;
	vd_log(d, "smbd exited (status %d): restarting it",
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	if (spawn(d, s, msg, sizeof(msg)) != 0 ||
	    wait_ready(s, msg, sizeof(msg)) != 0) {
		vd_log(d, "cannot restart smbd: %s", msg);
		kill_smbd(d, s);
		s->failed = true;
	}
	return true;
}

void cli_smb_stop(struct vd_drive *d, struct cli_smb *s)
{
	if (!s)
		return;
	kill_smbd(d, s);
	if (s->netns_fd >= 0)
		close(s->netns_fd);
	if (s->dir[0])
		rm_rf(s->dir);
	free(s);
}
