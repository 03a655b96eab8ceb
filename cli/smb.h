/*
 * smb.h - serving a drive over SMB with Samba's smbd (smb.c).
 */
#ifndef VD_CLI_SMB_H
#define VD_CLI_SMB_H

#include <stdbool.h>
#include <stddef.h>

struct vd_drive;
struct cli_smb;

/*
 * Start smbd for drive d (registry name drive) as share name, from the
 * request words in spec (listen=ADDR:PORT netns=PID guest=0|1 user=NAME
 * pass=HEX). smbd runs in its own mount and pid namespaces, where (and
 * only where) the drive is attached and admitted. addr gets
 * //ADDR:PORT/NAME. On failure msg says why.
 */
int cli_smb_start(struct vd_drive *d, const char *drive, const char *name,
		  const char *spec, bool ro, struct cli_smb **out, char *addr,
		  size_t an, char *msg, size_t mn);

/* A pidfd of the running smbd, or -1 once the share has failed. */
int cli_smb_pidfd(const struct cli_smb *s);

/* smbd exited: reap it, and restart it unless it keeps dying (then the
 * share is failed). Returns true. */
bool cli_smb_exited(struct vd_drive *d, struct cli_smb *s);

bool cli_smb_failed(const struct cli_smb *s);

/* Stop smbd (by its pid), detach the drive from its namespace, remove its
 * folders, free s. */
void cli_smb_stop(struct vd_drive *d, struct cli_smb *s);

#endif
