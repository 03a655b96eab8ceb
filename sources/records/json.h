/*
 * json.h - the small, strict JSON reader and writer behind records:.
 *
 * Only what a row needs: one top-level object whose members are null,
 * true/false, numbers, strings, or {"$base64": "..."} for a blob.
 * The reader follows RFC 8259 strictly (valid UTF-8, no trailing commas,
 * no duplicate names, nothing after the object) and rejects arrays and
 * other nested objects.
 */
#ifndef VD_RECORDS_JSON_H
#define VD_RECORDS_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum vd_json_type {
	VD_JSON_NULL,
	VD_JSON_INT, /* also true (1) and false (0) */
	VD_JSON_REAL,
	VD_JSON_TEXT,
	VD_JSON_BLOB, /* {"$base64": "..."} */
};

struct vd_json_value {
	enum vd_json_type type;
	int64_t i;
	double r;
	char *s;    /* TEXT / BLOB bytes, NUL-terminated for convenience */
	size_t len; /* length of s */
};

struct vd_json_member {
	char *name;
	struct vd_json_value v;
};

struct vd_json_object {
	struct vd_json_member *m;
	size_t n;
};

/*
 * Parse text (len bytes) as one object into out. Returns 0, or -EINVAL
 * with a reason for a person in err, or -ENOMEM. out is empty on failure;
 * free it with vd_json_object_free() on success.
 */
int vd_json_parse(const char *text, size_t len, struct vd_json_object *out,
		  char *err, size_t errlen);
void vd_json_object_free(struct vd_json_object *o);

/* Append s (n bytes) as a JSON string; bytes that are not UTF-8 become
 * U+FFFD, so the output is always valid JSON. */
void vd_json_put_string(struct vd_buf *b, const char *s, size_t n);
/* Append a real so that it reads back as a real: 1.0, not 1; infinities
 * as 1e999 / -1e999 (JSON has no Inf; every reader maps those to Inf). */
void vd_json_put_real(struct vd_buf *b, double r);
/* Append data base64-encoded (RFC 4648, with padding). */
void vd_base64_put(struct vd_buf *b, const unsigned char *data, size_t n);

#endif
