/*
 * log.c - a drive's error message and its log lines. At the bottom of
 * lib/: every other file may call it, it calls nothing of theirs.
 */
#include <stdarg.h>
#include <stdio.h>

#include "vdrive_i.h"

void vd_set_error(struct vd_drive *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
}

void vd_clear_error(struct vd_drive *d)
{
	if (d)
		d->err[0] = '\0';
}

const char *vd_drive_error(const struct vd_drive *d)
{
	return d ? d->err : "";
}

void vd_log(const struct vd_drive *d, const char *fmt, ...)
{
	va_list ap;
	char msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vdrive[%s]: %s\n", d && d->fsname ? d->fsname : "-",
		msg);
}
