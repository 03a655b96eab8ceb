/*
 * plugin.h - what the plugin's parts share: a volume and its gate state.
 */
#ifndef VD_DOCKER_PLUGIN_H
#define VD_DOCKER_PLUGIN_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vdrive.h"

#define MAX_CTS 64 /* containers remembered per volume */
#define MAX_NS 16  /* namespaces admitted per volume (the library's limit) */

struct ct_verdict {
	char id[65];
	int verdict; /* VD_ADMIT_* flags, or -EACCES */
};

struct volume {
	struct volume *next;
	char name[128];
	char source[1024];
	char opts[1024];
	bool host;
	char mountpoint[PATH_MAX];
	struct vd_drive *drive;
	dev_t dev;  /* the drive's superblock, to find it in mount tables */
	int mounts; /* Mount requests not yet unmounted */
	struct ct_verdict cts[MAX_CTS];
	int ncts, next_ct;
	uint64_t ns[MAX_NS]; /* namespaces admitted by gate() */
	int nns;
};

/* Guards each volume's gate state (cts, ns) against the gate hook, which
 * runs on the drives' threads. */
extern pthread_mutex_t vd_docker_lock;
extern char vd_docker_driver[128]; /* the driver's name: "vdrive" */
extern const char *vd_docker_host; /* the Engine: unix:///PATH */

void vd_docker_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The gate hook of a volume's drive (arg: the volume). */
int vd_docker_gate(void *arg, pid_t pid, uint64_t ns);

/* pid connected to the plugin's socket: remembered if it is dockerd. */
void vd_docker_peer(pid_t pid);

#endif
