/*
 * vdproto.h - the vdrived protocol, spelled out once for its two ends:
 * the client in libvdrive (lib/daemon.c) and the daemon (daemon/vdrived.c).
 * Private: not part of the public API (vdrive.h). docs/containers.md
 * describes it for people.
 *
 * Text lines over a SOCK_STREAM unix socket. A request is one line ending
 * in '\n', at most VD_PROTO_LINE_MAX - 1 bytes, no NUL. A reply is one or
 * more lines; the last starts with "ok" (maybe followed by a space and
 * words) or "err ERRNO message". The drive process's control socket
 * (cli/control.c) answers in the same reply format.
 */
#ifndef VD_PROTO_H
#define VD_PROTO_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Where vdrived listens unless $VD_PROTO_SOCKET_ENV names another path. */
#define VD_PROTO_SOCKET "/run/vdrive/vdrived.sock"
#define VD_PROTO_SOCKET_ENV "VDRIVE_SOCKET"

/* A request line, its '\n' included, is shorter than this. */
#define VD_PROTO_LINE_MAX 4096
/* A share target ("host" or "pid:N") and a share name, in bytes. */
#define VD_PROTO_TARGET_MAX 31
#define VD_PROTO_NAME_MAX 64

/*
 * The requests, each a word and its arguments:
 *   mount OPTS PATH       ok + FUSE descriptor (SCM_RIGHTS) | err
 *   unmount               ok once this connection's drive is gone
 *   list                  "drive PATH" lines, then ok N
 *   clone (+descriptor)   ok + a clone of the drive's FUSE connection
 *   ping                  ok vdrived 1
 *   gate PID              ok RO NSPID | err 13 (shareable drives)
 *   share TARGET ro|rw NAME   ok PATH | err
 *   unshare TARGET NAME   ok | err 2
 * OPTS is "-" or a comma list of VD_PROTO_OPT_*.
 */
#define VD_REQ_MOUNT "mount"
#define VD_REQ_UNMOUNT "unmount"
#define VD_REQ_LIST "list"
#define VD_REQ_CLONE "clone"
#define VD_REQ_PING "ping"
#define VD_REQ_GATE "gate"
#define VD_REQ_SHARE "share"
#define VD_REQ_UNSHARE "unshare"

#define VD_PROTO_OPT_RO "ro"
#define VD_PROTO_OPT_ALLOW_OTHER "allow_other"
#define VD_PROTO_OPT_DEFAULT_PERMISSIONS "default_permissions"
#define VD_PROTO_OPT_SHAREABLE "shareable"

/* What "ping" answers: the protocol's version. */
#define VD_PROTO_PING_REPLY "ok vdrived 1"

/* If line is the request word req followed by a space, return its
 * arguments (what follows the space); else NULL. */
static inline char *vd_proto_args(char *line, const char *req)
{
	size_t n = strlen(req);

	if (strncmp(line, req, n) != 0 || line[n] != ' ')
		return NULL;
	return line + n + 1;
}

/*
 * Parse a reply line (its '\n' already cut): 0 for "ok", with *rest (if
 * not NULL) at what follows "ok " ("" if nothing); -ERRNO for
 * "err ERRNO message" (-EIO when ERRNO is missing or not positive, or the
 * line is neither), with *rest at the message, or NULL when there is none.
 */
static inline int vd_proto_reply(const char *line, const char **rest)
{
	const char *sp;
	int err = 0;

	if (!strncmp(line, "ok", 2)) {
		if (rest)
			*rest = line[2] ? line + 3 : "";
		return 0;
	}
	if (rest) {
		sp = !strncmp(line, "err ", 4) ? strchr(line + 4, ' ') : NULL;
		*rest = sp ? sp + 1 : NULL;
	}
	if (sscanf(line, "err %d", &err) != 1 || err <= 0)
		err = EIO;
	return -err;
}

/* A share name: a plain word of letters, digits, '-', '_' and '.', not
 * starting with '.', so the path vdrived makes of it is plain too. */
static inline bool vd_proto_name_ok(const char *s)
{
	if (!s || !*s || strlen(s) > VD_PROTO_NAME_MAX || *s == '.')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
		      *s == '.'))
			return false;
	return true;
}

#endif
