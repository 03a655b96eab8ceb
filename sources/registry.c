/*
 * registry.c - the table of built-in sources.
 */
#include <stdio.h>
#include <string.h>

#include "sources.h"

extern const struct vd_source vd_source_mem;
extern const struct vd_source vd_source_dir;
extern const struct vd_source vd_source_records;
extern const struct vd_source vd_source_gen;
extern const struct vd_source vd_source_sqlite;
extern const struct vd_source vd_source_postgres;
extern const struct vd_source vd_source_webdav;

const struct vd_source *const vd_sources[] = {
	&vd_source_mem,	    &vd_source_dir,	 &vd_source_records,
	&vd_source_gen,	    &vd_source_sqlite, &vd_source_postgres,
	&vd_source_webdav,

	NULL,
};

const struct vd_source *vd_source_find(const char *spec)
{
	const char *colon = strchr(spec, ':');
	size_t n = colon ? (size_t)(colon - spec) : strlen(spec);

	for (size_t i = 0; vd_sources[i]; i++) {
		if (strlen(vd_sources[i]->kind) == n &&
		    !strncmp(vd_sources[i]->kind, spec, n))
			return vd_sources[i];
	}
	return NULL;
}

void vd_source_shown(const char *spec, char *out, size_t len)
{
	const struct vd_source *src = vd_source_find(spec);
	const char *colon = strchr(spec, ':');
	int n;

	if (!src || !src->redact || !colon) {
		snprintf(out, len, "%s", spec);
		return;
	}
	n = snprintf(out, len, "%.*s:", (int)(colon - spec), spec);
	if (n >= 0 && (size_t)n < len)
		src->redact(colon + 1, out + n, len - n);
}
