/*
 * sock.h - unix stream sockets that carry text lines and, now and then,
 * one descriptor (SCM_RIGHTS). Shared by libvdrive, vdrived and the
 * vdrive tool; not part of the public API (vdrive.h).
 */
#ifndef VD_SOCK_H
#define VD_SOCK_H

#include <sys/types.h>

/* Connect to the socket at path: a close-on-exec descriptor, or -errno
 * (-ENAMETOOLONG when path does not fit in a sockaddr_un). */
int vd_sock_connect(const char *path);

/*
 * Listen on path, replacing what is there: a close-on-exec descriptor, or
 * -errno. The socket is created under umask 077 and then, if mode is not
 * 0, chmod()ed to mode. flags are ORed into the socket type
 * (SOCK_NONBLOCK). umask is process-wide: call this before other threads
 * create files.
 */
int vd_sock_listen(const char *path, mode_t mode, int backlog, int flags);

/*
 * Send len bytes of line in one message, with descriptor fd attached when
 * fd >= 0. flags are added to MSG_NOSIGNAL (MSG_DONTWAIT, say). 0 when all
 * was sent, -errno, or -EIO for a short send.
 */
int vd_sock_send(int sock, const void *line, size_t len, int fd, int flags);

/*
 * One recvmsg() of at most len bytes into buf, taking at most one
 * descriptor (close-on-exec) into *fd, else -1 (the kernel closes any
 * more than one). flags as for recvmsg(). Returns the bytes received, 0
 * when the peer has closed, or -errno.
 */
ssize_t vd_sock_recv(int sock, void *buf, size_t len, int *fd, int flags);

/* vd_sock_recv() of one reply line: at most size - 1 bytes, NUL-ended.
 * 0, -ECONNRESET when the peer has closed, or -errno. */
int vd_sock_recv_line(int sock, char *buf, size_t size, int *fd);

#endif
