/*
 * child.c - see child.h.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"

int vd_child_wait(pid_t pid, int timeout_ms, bool *killed)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0), status;
	struct pollfd p = {.fd = pfd, .events = POLLIN};

	if (killed)
		*killed = false;
	if (pfd >= 0) {
		if (poll(&p, 1, timeout_ms) == 0) {
			kill(pid, SIGKILL);
			if (killed)
				*killed = true;
		}
		close(pfd);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status))
		return -WEXITSTATUS(status);
	return -ETIMEDOUT;
}

int vd_child_mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return errno;
	return 0;
}

int vd_child_umount_in(int ns_fd, const char *path, int timeout_ms,
		       bool *killed)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (setns(ns_fd, CLONE_NEWNS) != 0)
			_exit(errno);
		if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) != 0)
			_exit(errno);
		_exit(0);
	}
	return vd_child_wait(pid, timeout_ms, killed);
}
