/*
 * sqlar.h - the sqlar mirror of the SQLite back end (sqlar.c), as the
 * struct fs_backend hooks of the same names. Paths are the names from the
 * root joined by '/'; only regular files up to FS_SQLAR_MAX bytes carry
 * their content.
 */
#ifndef VD_FILESTORE_SQLAR_H
#define VD_FILESTORE_SQLAR_H

#include "core.h"

int sq_sqlar_drop(struct fs *s, uint64_t parent, const char *name);
int sq_sqlar_rename(struct fs *s, uint64_t parent, const char *name,
		    uint64_t newparent, const char *newname, bool dir,
		    bool exists, bool exchange, bool dstdir);
int sq_sqlar_flush(struct fs *s);
int64_t sq_sqlar_bytes(struct fs *s, const struct fs_attr *a, int64_t end,
		       int64_t bytes);

#endif
