/*
 * child.h - running a step in a short-lived child (to enter another mount
 * namespace, which a multi-threaded process cannot do itself). Shared by
 * libvdrive and vdrived; not part of the public API (vdrive.h).
 */
#ifndef VD_CHILD_H
#define VD_CHILD_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * Wait for child pid and turn its exit status back into 0 or -errno (the
 * child exits with an errno). A child still running after timeout_ms (a
 * hung drive on its path, say) is killed; *killed (if not NULL) says so.
 * A child that did not exit normally gives -ETIMEDOUT.
 */
int vd_child_wait(pid_t pid, int timeout_ms, bool *killed);

/* mkdir -p with mode 0755: 0 or an errno. Only syscalls, no allocation,
 * so a child of a multi-threaded process may call it. */
int vd_child_mkdir_p(const char *path);

/* Detach the mount at path inside mount namespace ns_fd, from a child:
 * 0 or -errno. */
int vd_child_umount_in(int ns_fd, const char *path, int timeout_ms,
		       bool *killed);

#endif
