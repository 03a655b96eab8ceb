/*
 * acl.h - pure helpers for POSIX ACLs stored as the kernel's
 * system.posix_acl_access / system.posix_acl_default xattr values.
 * Shared by the built-in sources that keep extended attributes.
 */
#ifndef VD_ACL_H
#define VD_ACL_H

#include <stddef.h>
#include <sys/types.h>

#define VD_ACL_ACCESS "system.posix_acl_access"
#define VD_ACL_DEFAULT "system.posix_acl_default"

/*
 * Whether acl (len bytes) is well formed, as posix_acl_valid() checks
 * before any file system sees one: known tags, permissions within rwx,
 * and in order one owner entry, named users, one owning group entry,
 * named groups, a mask (required with named entries) and one other entry.
 * Returns 0 or -EINVAL.
 */
int vd_acl_valid(const void *acl, size_t len);

/*
 * A new node of type and permissions *mode is created in a folder whose
 * default ACL is dflt (len bytes). Applies the inheritance rules of
 * posix_acl_create(): *mode is narrowed by the ACL, and *access receives
 * a malloc'd access ACL (*access_len bytes) or NULL when the mode bits
 * say it all. Returns 0, -EINVAL for a malformed ACL or -ENOMEM.
 */
int vd_acl_inherit(const void *dflt, size_t len, mode_t *mode, void **access,
		   size_t *access_len);

/*
 * chmod on a node with access ACL acl (len bytes): rewrite, in place, the
 * owner, mask (or group) and other entries from mode, as
 * posix_acl_chmod() does. Returns 0 or -EINVAL for a malformed ACL.
 */
int vd_acl_chmod(void *acl, size_t len, mode_t mode);

/*
 * The permission bits an access ACL stands for (posix_acl_equiv_mode):
 * owner, mask (or group) and other. *extended is set when the ACL has
 * more than those three entries, i.e. when the mode bits alone cannot
 * say it. Returns 0 or -EINVAL for a malformed ACL.
 */
int vd_acl_mode(const void *acl, size_t len, mode_t *perm, int *extended);

#endif
