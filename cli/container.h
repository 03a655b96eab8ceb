/*
 * container.h - `--container REF` and `--allow REF` resolution.
 */
#ifndef VD_CLI_CONTAINER_H
#define VD_CLI_CONTAINER_H

#include <stdint.h>
#include <sys/types.h>

/* A container as the CLI sees it: its mount namespace and init pid. */
struct cli_container {
	char label[256]; /* for `vdrive list`: docker:NAME, pid:N or a path */
	pid_t pid;	 /* its init on the host; 0 when only a ns file */
	int ns_fd;	 /* open mount namespace file, or -1 */
	uint64_t ns_ino; /* that namespace's inode number */
};

/*
 * Resolve REF (PID, docker:NAME_OR_ID, /proc/PID/ns/mnt) into c, with an
 * open namespace descriptor the caller closes. dhost: --docker-host or
 * NULL ($DOCKER_HOST, then unix:///var/run/docker.sock). Refuses sandboxed
 * runtimes (gVisor, Kata) with -EOPNOTSUPP. On failure msg says why.
 */
int cli_container_resolve(const char *ref, const char *dhost,
			  struct cli_container *c, char *msg, size_t n);

/* The namespace inode that `--allow REF` names ("host": this one's). */
int cli_allow_resolve(const char *ref, const char *dhost, uint64_t *ino,
		      char *msg, size_t n);

struct vd_drive;

/*
 * Mount d at path inside container ref, admitting that container plus
 * each of allow[] ("host" or a container REF), and arrange for the drive
 * to end when the container does. Fills c (its ns_fd is closed after).
 */
int cli_container_mount(struct vd_drive *d, const char *ref,
			const char *const *allow, int nallow, const char *dhost,
			const char *path, struct cli_container *c, char *msg,
			size_t n);

/* 0 when the drive at path in container c answers (even with EACCES). */
int cli_container_answers(const struct cli_container *c, const char *path);

/* `vdrive unmount --container REF`: stop every drive recorded for it. */
int cli_container_unmount(const char *ref, const char *dhost);

#endif
