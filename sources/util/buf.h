/*
 * buf.h - a growing byte buffer for the built-in sources (records: and
 * gen: use it; mem: and sqlite: have their own still). Not part of the
 * public API: a source of one's own needs none of this.
 */
#ifndef VD_UTIL_BUF_H
#define VD_UTIL_BUF_H

#include <stddef.h>

/*
 * Zero-initialise. p is NUL-terminated after any successful add (the NUL
 * is not counted in len). max, if not 0, is a hard limit on len. Once an
 * allocation fails, oom is set and further adds do nothing, so a caller
 * may add many times and check oom once.
 */
struct vd_buf {
	char *p;
	size_t len, cap, max;
	int oom;
};

/* Append n bytes of data: 0, -ENOMEM (oom set), or -EFBIG past max (the
 * buffer unchanged). */
int vd_buf_add(struct vd_buf *b, const void *data, size_t n);
/* Append printf output of up to 255 bytes; longer output sets oom. */
void vd_buf_addf(struct vd_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Free p and zero b; b may be reused. */
void vd_buf_free(struct vd_buf *b);

#endif
