/*
 * acl.c - POSIX ACL inheritance and chmod on the kernel's xattr format:
 * a little-endian u32 version (2) followed by entries of u16 tag,
 * u16 perm, u32 id.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "acl.h"

#define ACL_VERSION 2
#define TAG_USER_OBJ 0x01
#define TAG_USER 0x02
#define TAG_GROUP_OBJ 0x04
#define TAG_GROUP 0x08
#define TAG_MASK 0x10
#define TAG_OTHER 0x20

struct acl_entry {
	uint16_t tag;
	uint16_t perm;
	uint32_t id;
};

/* Check the header and size; returns the entry count or -EINVAL. */
static int acl_count(const void *acl, size_t len)
{
	uint32_t version;

	if (len < 4 || (len - 4) % sizeof(struct acl_entry))
		return -EINVAL;
	memcpy(&version, acl, 4);
	if (le32toh(version) != ACL_VERSION)
		return -EINVAL;
	return (int)((len - 4) / sizeof(struct acl_entry));
}

/*
 * Apply mode's permission bits to the owner, group-class and other
 * entries (the shared core of create and chmod). With create, bits are
 * only taken away (AND); with chmod they are replaced. Returns the
 * resulting permission bits, or -EINVAL if a required entry is missing.
 */
static int acl_apply(void *acl, int n, mode_t mode, int create)
{
	struct acl_entry *e = (struct acl_entry *)((char *)acl + 4);
	struct acl_entry *owner = NULL, *group = NULL, *mask = NULL;
	struct acl_entry *other = NULL;
	int i;

	for (i = 0; i < n; i++) {
		switch (le16toh(e[i].tag)) {
		case TAG_USER_OBJ:
			owner = &e[i];
			break;
		case TAG_GROUP_OBJ:
			group = &e[i];
			break;
		case TAG_MASK:
			mask = &e[i];
			break;
		case TAG_OTHER:
			other = &e[i];
			break;
		}
	}
	if (!owner || !group || !other)
		return -EINVAL;
	if (mask)
		group = mask;

	struct acl_entry *cls[3] = {owner, group, other};
	int shift[3] = {6, 3, 0};
	int bits = 0;

	for (i = 0; i < 3; i++) {
		uint16_t want = (mode >> shift[i]) & 7;
		uint16_t perm = le16toh(cls[i]->perm);

		perm = create ? (perm & want) : want;
		cls[i]->perm = htole16(perm);
		bits |= perm << shift[i];
	}
	return bits;
}

int vd_acl_valid(const void *acl, size_t len)
{
	const char *e = (const char *)acl + 4;
	int n = acl_count(acl, len), state = TAG_USER_OBJ, needs_mask = 0;

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		struct acl_entry x;

		memcpy(&x, e + i * sizeof(x), sizeof(x));
		if (le16toh(x.perm) & ~7)
			return -EINVAL;
		switch (le16toh(x.tag)) {
		case TAG_USER_OBJ:
			if (state != TAG_USER_OBJ)
				return -EINVAL;
			state = TAG_USER;
			break;
		case TAG_USER:
			if (state != TAG_USER)
				return -EINVAL;
			needs_mask = 1;
			break;
		case TAG_GROUP_OBJ:
			if (state != TAG_USER)
				return -EINVAL;
			state = TAG_GROUP;
			break;
		case TAG_GROUP:
			if (state != TAG_GROUP)
				return -EINVAL;
			needs_mask = 1;
			break;
		case TAG_MASK:
			if (state != TAG_GROUP)
				return -EINVAL;
			state = TAG_OTHER;
			break;
		case TAG_OTHER:
			if (state != TAG_OTHER &&
			    (state != TAG_GROUP || needs_mask))
				return -EINVAL;
			state = 0;
			break;
		default:
			return -EINVAL;
		}
	}
	return state == 0 ? 0 : -EINVAL;
}

int vd_acl_inherit(const void *dflt, size_t len, mode_t *mode, void **access,
		   size_t *access_len)
{
	int n = acl_count(dflt, len);
	void *acl;
	int bits;

	*access = NULL;
	*access_len = 0;
	if (n < 0)
		return n;
	acl = malloc(len);
	if (!acl)
		return -ENOMEM;
	memcpy(acl, dflt, len);
	bits = acl_apply(acl, n, *mode, 1);
	if (bits < 0) {
		free(acl);
		return bits;
	}
	*mode = (*mode & ~(mode_t)0777) | (mode_t)bits;
	if (n <= 3) {
		/* Owner, group and other only: the mode bits are the ACL. */
		free(acl);
		return 0;
	}
	*access = acl;
	*access_len = len;
	return 0;
}

int vd_acl_chmod(void *acl, size_t len, mode_t mode)
{
	int n = acl_count(acl, len);

	if (n < 0)
		return n;
	n = acl_apply(acl, n, mode, 0);
	return n < 0 ? n : 0;
}

int vd_acl_mode(const void *acl, size_t len, mode_t *perm, int *extended)
{
	const struct acl_entry *e =
		(const struct acl_entry *)((const char *)acl + 4);
	int n = acl_count(acl, len), have = 0;
	mode_t bits = 0, group = 0, mask = 0;
	int has_mask = 0;

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		struct acl_entry x;

		memcpy(&x, &e[i], sizeof(x));
		mode_t p = le16toh(x.perm) & 7;
		switch (le16toh(x.tag)) {
		case TAG_USER_OBJ:
			bits |= p << 6;
			have |= 1;
			break;
		case TAG_GROUP_OBJ:
			group = p;
			have |= 2;
			break;
		case TAG_MASK:
			mask = p;
			has_mask = 1;
			break;
		case TAG_OTHER:
			bits |= p;
			have |= 4;
			break;
		}
	}
	if (have != 7)
		return -EINVAL;
	*perm = bits | (has_mask ? mask : group) << 3;
	*extended = n > 3;
	return 0;
}
