/*
 * htab.h - a growing chained hash table for the built-in sources (dir:
 * and records: use it; mem: and sqlite: have their own still). Not part
 * of the public API.
 *
 * Intrusive: an entry embeds a struct vd_hlink, and the table links those
 * (vd_container_of() gets back the entry), so adding never allocates but
 * for growing. The caller computes hashes and compares keys: walk a
 * hash's chain from vd_htab_first() and skip links whose hash differs.
 * No locking: the caller's.
 */
#ifndef VD_UTIL_HTAB_H
#define VD_UTIL_HTAB_H

#include <stddef.h>
#include <stdint.h>

#define vd_container_of(p, type, member)                                       \
	((type *)(void *)((char *)(p)-offsetof(type, member)))

struct vd_hlink {
	struct vd_hlink *next;
	uint64_t hash;
};

struct vd_htab {
	struct vd_hlink **b;
	size_t nb; /* a power of two */
	size_t count;
};

/* nb buckets to start with (rounded up to a power of two): 0 or -ENOMEM. */
int vd_htab_init(struct vd_htab *t, size_t nb);
/* Free the buckets; the entries are the caller's. */
void vd_htab_fini(struct vd_htab *t);
/* Link l under hash. Doubles the buckets past two entries per bucket; if
 * that allocation fails, chains get longer, still correct. */
void vd_htab_add(struct vd_htab *t, struct vd_hlink *l, uint64_t hash);
/* Unlink l if it is linked; 1 if it was. */
int vd_htab_del(struct vd_htab *t, struct vd_hlink *l);

/* The chain that hash falls in: follow ->next, check ->hash. */
static inline struct vd_hlink *vd_htab_first(const struct vd_htab *t,
					     uint64_t hash)
{
	return t->b[hash & (t->nb - 1)];
}

/* For walking every entry: bucket i < t->nb's chain. */
static inline struct vd_hlink *vd_htab_bucket(const struct vd_htab *t, size_t i)
{
	return t->b[i];
}

#endif
