/*
 * control.c - the drive process's control socket, and its shares.
 *
 * `vdrive mount` leaves a drive process behind; `vdrive share` and
 * `vdrive unshare` reach it through a unix socket beside its record
 * ($VDRIVE_RUNDIR/drives/NAME.ctl, mode 0600: only the drive's owner and
 * root may connect, and the peer's uid is checked again). One request
 * line, with the target's mount namespace attached (SCM_RIGHTS), one
 * reply line: "ok ..." or "err ERRNO message".
 *
 *   share container|host ro|rw PID LABEL PATH     (namespace attached)
 *   share smb ro|rw 0 NAME SPEC                   (see smb.c)
 *   share daemon ro|rw 0 host|pid:N NAME          (a drive from vdrived)
 *   unshare container|host|smb LABEL              (namespace optional)
 *
 * The loop also watches each container a share went to (a pidfd of its
 * init): when it ends, its share is detached and forgotten, so a stopped
 * container keeps nothing mounted, running or recorded.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cli.h"
#include "smb.h"
#include "sock.h"
#include "vdrive.h"

/* What the loop keeps for each share beside its record entry. */
struct share_state {
	uint64_t ino; /* target mount namespace (0 for smb) */
	int pidfd;    /* the target's init, or smbd; -1: nothing to watch */
	struct cli_smb *smb;
	char remote[72]; /* shared through vdrived under this name */
};

struct ctl {
	struct vd_drive *d;
	struct vd_rec *rec;
	struct share_state st[CLI_MAX_SHARES];
};

static void save(struct ctl *c)
{
	int r = cli_rec_write(c->rec);

	if (r)
		vd_log(c->d, "cannot update the record: %s", strerror(-r));
}

static void forget(struct ctl *c, int i)
{
	int last = --c->rec->nshares;

	if (c->st[i].pidfd >= 0)
		close(c->st[i].pidfd);
	c->rec->shares[i] = c->rec->shares[last];
	c->st[i] = c->st[last];
}

/* Detach share i and forget it. */
static void end_share(struct ctl *c, int i)
{
	struct cli_share *s = &c->rec->shares[i];

	if (c->st[i].smb)
		cli_smb_stop(c->d, c->st[i].smb);
	else if (c->st[i].remote[0])
		vd_drive_unshare_remote(c->d, s->label, c->st[i].remote);
	else
		vd_drive_detach(c->d, s->path, c->st[i].ino);
	forget(c, i);
	save(c);
}

static int reply(int fd, int err, const char *msg)
{
	char line[1200];
	int n;

	if (err)
		n = snprintf(line, sizeof(line), "err %d %s\n", err, msg);
	else
		n = snprintf(line, sizeof(line), "ok %s\n", msg);
	if (n >= (int)sizeof(line))
		n = sizeof(line) - 1;
	return vd_sock_send(fd, line, (size_t)n, -1, 0) ? -EIO : 0;
}

static int do_share(struct ctl *c, int cfd, char *args, int nsfd)
{
	char kind[12], mode[4], label[256], msg[512] = "";
	struct cli_share *s;
	struct stat st;
	int pid, off = 0, r, i;

	if (sscanf(args, "%11s %3s %d %255s %n", kind, mode, &pid, label,
		   &off) != 4 ||
	    !off || (strcmp(mode, "ro") && strcmp(mode, "rw")))
		return reply(cfd, EINVAL, "bad request");
	args += off;
	if (c->rec->nshares == CLI_MAX_SHARES)
		return reply(cfd, ENOSPC, "too many shares on this drive");
	for (i = 0; i < c->rec->nshares; i++)
		if ((!strcmp(c->rec->shares[i].kind, kind) ||
		     !strcmp(kind, "daemon")) &&
		    !strcmp(c->rec->shares[i].label, label) &&
		    (strcmp(kind, "host") ||
		     !strcmp(c->rec->shares[i].path, args)))
			return reply(cfd, EEXIST, "already shared there");
	i = c->rec->nshares;
	s = &c->rec->shares[i];
	memset(s, 0, sizeof(*s));
	memset(&c->st[i], 0, sizeof(c->st[i]));
	c->st[i].pidfd = -1;
	snprintf(s->kind, sizeof(s->kind), "%s", kind);
	snprintf(s->label, sizeof(s->label), "%s", label);
	s->ro = !strcmp(mode, "ro");
	if (!strcmp(kind, "smb")) {
		r = cli_smb_start(c->d, c->rec->name, label, args, s->ro,
				  &c->st[i].smb, s->path, sizeof(s->path), msg,
				  sizeof(msg));
		if (r)
			return reply(cfd, -r, msg);
		c->st[i].pidfd = cli_smb_pidfd(c->st[i].smb);
		snprintf(s->state, sizeof(s->state), "serving");
	} else if (!strcmp(kind, "daemon")) {
		/* label: host or pid:N; args: the share's name */
		r = vd_drive_share_remote(c->d, label, args,
					  s->ro ? VD_ADMIT_READONLY : 0,
					  s->path, sizeof(s->path));
		if (r)
			return reply(cfd, -r, vd_drive_error(c->d));
		snprintf(s->kind, sizeof(s->kind), "%s",
			 strcmp(label, "host") ? "container" : "host");
		snprintf(c->st[i].remote, sizeof(c->st[i].remote), "%s", args);
		snprintf(s->state, sizeof(s->state), "attached");
	} else if (!strcmp(kind, "container") || !strcmp(kind, "host")) {
		if (nsfd < 0 || fstat(nsfd, &st) != 0)
			return reply(cfd, EINVAL, "no namespace attached");
		snprintf(s->path, sizeof(s->path), "%s", args);
		r = vd_drive_attach(c->d, s->path, nsfd,
				    s->ro ? VD_ADMIT_READONLY : 0);
		if (r)
			return reply(cfd, -r, vd_drive_error(c->d));
		c->st[i].ino = (uint64_t)st.st_ino;
		if (pid > 0)
			c->st[i].pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		snprintf(s->state, sizeof(s->state), "attached");
	} else {
		return reply(cfd, EINVAL, "unknown share kind");
	}
	c->rec->nshares++;
	save(c);
	vd_log(c->d, "shared with %s %s at %s%s", kind, label, s->path,
	       s->ro ? " (read-only)" : "");
	return reply(cfd, 0, s->path);
}

static int do_unshare(struct ctl *c, int cfd, char *args, int nsfd)
{
	char kind[12], label[256];
	struct stat st;
	uint64_t ino = 0;
	int found = 0;

	if (sscanf(args, "%11s %255s", kind, label) != 2)
		return reply(cfd, EINVAL, "bad request");
	if (nsfd >= 0 && fstat(nsfd, &st) == 0)
		ino = (uint64_t)st.st_ino;
	for (int i = c->rec->nshares - 1; i >= 0; i--) {
		struct cli_share *s = &c->rec->shares[i];

		if (strcmp(s->kind, kind) ||
		    (strcmp(s->label, label) && (!ino || c->st[i].ino != ino)))
			continue;
		vd_log(c->d, "unshared from %s %s", kind, s->label);
		end_share(c, i);
		found++;
	}
	if (!found)
		return reply(cfd, ENOENT, "the drive is not shared there");
	return reply(cfd, 0, "");
}

/* One request from a connected client, then close it. */
static void serve_client(struct ctl *c, int cfd)
{
	char buf[4096];
	struct timeval tv = {.tv_sec = 5};
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int nsfd = -1;
	ssize_t n;

	setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 ||
	    (cr.uid != 0 && cr.uid != getuid())) {
		reply(cfd, EPERM,
		      "only the drive's owner or root may share it");
		return;
	}
	n = vd_sock_recv(cfd, buf, sizeof(buf) - 1, &nsfd, 0);
	if (n <= 0) {
		if (nsfd >= 0)
			close(nsfd);
		return;
	}
	buf[n] = '\0';
	if (!memchr(buf, '\n', (size_t)n) || memchr(buf, '\0', (size_t)n)) {
		reply(cfd, EINVAL, "bad request");
	} else {
		buf[strcspn(buf, "\n")] = '\0';
		if (!strncmp(buf, "share ", 6))
			do_share(c, cfd, buf + 6, nsfd);
		else if (!strncmp(buf, "unshare ", 8))
			do_unshare(c, cfd, buf + 8, nsfd);
		else
			reply(cfd, EINVAL, "unknown request");
	}
	if (nsfd >= 0)
		close(nsfd);
}

/* Only the drive's owner (and root) may connect: mode 0700. */
static int listen_ctl(const char *name)
{
	char path[PATH_MAX];

	cli_ctl_path(path, sizeof(path), name);
	return vd_sock_listen(path, 0, 8, 0);
}

int cli_ctl_run(struct vd_drive *d, struct vd_rec *rec, const sigset_t *set)
{
	struct ctl c = {.d = d, .rec = rec};
	struct pollfd p[2 + CLI_MAX_SHARES];
	int sfd = signalfd(-1, set, SFD_CLOEXEC), lfd, n;
	struct signalfd_siginfo si;
	bool done = false;
	int polled;

	lfd = listen_ctl(rec->name);
	if (lfd < 0)
		vd_log(d, "no control socket (%s): the drive cannot be shared",
		       strerror(-lfd));
	while (!done) {
		p[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		p[1] = (struct pollfd){.fd = lfd, .events = POLLIN};
		for (n = 0; n < rec->nshares; n++)
			p[2 + n] = (struct pollfd){.fd = c.st[n].pidfd,
						   .events = POLLIN};
		polled = rec->nshares;
		if (poll(p, (nfds_t)(2 + polled), -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents && read(sfd, &si, sizeof(si)) > 0)
			done = true;
		if (!done && (p[1].revents & POLLIN)) {
			int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (cfd >= 0) {
				serve_client(&c, cfd);
				close(cfd);
			}
		}
		/* Only what was polled (a request may have added or
		 * removed shares since), from the end, so forget() moves
		 * only checked entries. */
		for (n = polled - 1; !done && n >= 0; n--) {
			if (n >= rec->nshares || p[2 + n].fd != c.st[n].pidfd)
				continue;
			if (!(p[2 + n].revents & (POLLIN | POLLHUP)))
				continue;
			if (c.st[n].smb && cli_smb_exited(d, c.st[n].smb)) {
				/* Restarted, or given up on: either way
				 * the record says which. */
				snprintf(rec->shares[n].state,
					 sizeof(rec->shares[n].state), "%s",
					 cli_smb_failed(c.st[n].smb)
						 ? "failed"
						 : "serving");
				c.st[n].pidfd = cli_smb_pidfd(c.st[n].smb);
				save(&c);
				continue;
			}
			vd_log(d, "%s %s is gone: share ended",
			       rec->shares[n].kind, rec->shares[n].label);
			end_share(&c, n);
		}
	}
	while (rec->nshares > 0)
		end_share(&c, rec->nshares - 1);
	if (lfd >= 0)
		close(lfd);
	close(sfd);
	return 0;
}
