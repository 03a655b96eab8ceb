/*
 * cli.h - shared pieces of the vdrive command-line tool.
 */
#ifndef VD_CLI_H
#define VD_CLI_H

#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <sys/types.h>

struct vd_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage; /* printed by `vdrive CMD --help` */
	const char *summary;
};

#define CLI_MAX_SHARES 16

/* One place a drive is shared: `vdrive share` made it, `list` shows it. */
struct cli_share {
	char kind[12];	 /* container, host or smb */
	char label[256]; /* docker:NAME, pid:N, host, or the SMB share name */
	char path[1024]; /* where it is attached; for smb: //ADDR:PORT/NAME */
	char state[16];	 /* attached, serving, failed */
	bool ro;
};

/* A live drive as recorded in the registry. */
struct vd_rec {
	char name[128];
	char source[1024];
	char mountpoint[4096];
	char container[256]; /* empty: the host */
	pid_t pid;
	bool via_daemon; /* mounted through vdrived: shared through it */
	int nshares;
	struct cli_share shares[CLI_MAX_SHARES];
};

/* Registry folder: $VDRIVE_RUNDIR or /run/vdrive, then "/drives". */
const char *cli_rundir(void);
int cli_rundir_make(void);
int cli_rec_write(const struct vd_rec *r);
int cli_rec_read(const char *name, struct vd_rec *r);
int cli_rec_remove(const char *name);
/* Calls fn for each record; stops early when fn returns non-zero. */
int cli_rec_each(int (*fn)(const struct vd_rec *r, void *arg), void *arg);
/* True when some file system is mounted exactly at path, which must be
 * absolute and resolved: a hung drive must not be touched to check. */
bool cli_is_mountpoint(const char *path);
/* True when pid is alive. */
bool cli_pid_alive(pid_t pid);

/* Print "vdrive: msg" to stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* True if argv has -h or --help. */
bool cli_wants_help(int argc, char **argv);

/* The drive process's control socket: $VDRIVE_RUNDIR/drives/NAME.ctl. */
void cli_ctl_path(char *buf, size_t n, const char *name);
struct vd_drive;
/* The drive process after mounting: serve `vdrive share/unshare` on the
 * control socket and watch share targets until a signal in set (or
 * SIGUSR1: unmounted) ends the drive. rec is rewritten as shares change. */
int cli_ctl_run(struct vd_drive *d, struct vd_rec *rec, const sigset_t *set);

int cmd_mount(int argc, char **argv);
int cmd_share(int argc, char **argv);
int cmd_unshare(int argc, char **argv);
int cmd_unmount(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_init(int argc, char **argv);
/* argv[0] is mount.vdrive or mount.fuse.vdrive: mount(8)'s helper. */
int cli_mount_helper(int argc, char **argv);

extern const char usage_mount[], usage_unmount[], usage_list[], usage_share[],
	usage_unshare[], usage_init[];

#endif
