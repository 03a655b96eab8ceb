/*
 * sources.h - the built-in data sources, as the vdrive tool and vdrived
 * find them by kind ("mem", "dir", ...). Each is written only against
 * vdrive.h; this table is just how the tool names them.
 */
#ifndef VD_SOURCES_H
#define VD_SOURCES_H

#include <stddef.h>

#include "vdrive.h"

struct vd_source {
	const char *kind;  /* "mem": the part before ':' in "mem:ARG" */
	const char *usage; /* "mem:", "dir:PATH", ... */
	const char *help;  /* one line */
	/*
	 * Make a new instance from ARG (the text after ':'; may be ""),
	 * handing back its callback table and private data. On failure,
	 * return -errno and write a message for a person into err.
	 * The instance is freed by ops->destroy(data).
	 */
	int (*open)(const char *arg, const struct vd_ops **ops, void **data,
		    char *err, size_t errlen);
	/*
	 * Optional: make a new, empty store from ARG (`vdrive init`); 0 or
	 * -errno with a message in err. Sources without it make their store
	 * on first open, or need none.
	 */
	int (*init)(const char *arg, char *err, size_t errlen);
	/*
	 * Optional: ARG as it may be shown (mount table, `vdrive list`,
	 * messages): without secrets such as a password.
	 */
	void (*redact)(const char *arg, char *out, size_t len);
};

/* NULL-terminated table of every built-in source. */
extern const struct vd_source *const vd_sources[];

/* The source for "KIND:ARG" (kind matched up to ':'), or NULL. */
const struct vd_source *vd_source_find(const char *spec);

/* "KIND:ARG" as it may be shown: the source's redact() applied to ARG. */
void vd_source_shown(const char *spec, char *out, size_t len);

#endif
