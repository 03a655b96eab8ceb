/*
 * json.h - just enough JSON for Docker's plugin protocol and Engine API:
 * walk an object or array in place, read strings and booleans, skip the
 * rest, and write escaped strings. Nothing is allocated.
 */
#ifndef VD_DOCKER_JSON_H
#define VD_DOCKER_JSON_H

#include <stdbool.h>
#include <stddef.h>

struct vd_js {
	const char *p, *end;
};

/* An iteration over the object or array at j->p (see vd_js_next). */
struct vd_js_it {
	char close; /* '}' or ']'; 0 before the first step */
};

/* j at an object: find member key at its top level and leave j at its
 * value. -ENOENT when absent, -EINVAL on bad JSON. */
int vd_js_member(struct vd_js *j, const char *key);

/* Read the string at j into out (unescaped; \u escapes above 0x7f become
 * '?'). -ENAMETOOLONG when it does not fit, -EINVAL when not a string. */
int vd_js_string(struct vd_js *j, char *out, size_t n);

/* Read true or false. -EINVAL otherwise. */
int vd_js_bool(struct vd_js *j, bool *b);

/* Skip any one value. */
int vd_js_skip(struct vd_js *j);

/* Step through the object or array at j: returns 1 with j at the next
 * value (and its key in key, for an object), 0 at the end, -EINVAL on bad
 * JSON. Skip or read each value before the next step. */
int vd_js_next(struct vd_js *j, struct vd_js_it *it, char *key, size_t n);

/* s as a JSON string, quotes included, into out. Returns the length, or
 * -ENAMETOOLONG when it does not fit. */
int vd_js_quote(char *out, size_t n, const char *s);

#endif
