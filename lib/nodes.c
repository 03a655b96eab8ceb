/*
 * nodes.c - the table between kernel nodeids and source node handles.
 */
#include <errno.h>
#include <stdlib.h>

#include "vdrive_i.h"

static size_t hash_node(vd_node_t n, size_t nb)
{
	n ^= n >> 33;
	n *= 0xff51afd7ed558ccdULL;
	n ^= n >> 33;
	return (size_t)(n & (nb - 1));
}

int vd_nodes_init(struct vd_nodes *t)
{
	t->nbuckets = 1024;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	t->count = 0;
	t->root.node = VD_ROOT;
	t->root.nlookup = 1; /* the kernel never forgets the root */
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void vd_nodes_fini(struct vd_nodes *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct vd_entry *e = t->buckets[i];
		while (e) {
			struct vd_entry *next = e->hnext;
			free(e);
			e = next;
		}
	}
	free(t->buckets);
	t->buckets = NULL;
	pthread_mutex_destroy(&t->lock);
}

/* The entry behind a nodeid the kernel sent; valid while it holds a ref. */
struct vd_entry *vd_nodes_get(struct vd_nodes *t, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &t->root;
	return (struct vd_entry *)(uintptr_t)ino;
}

static fuse_ino_t entry_ino(struct vd_nodes *t, struct vd_entry *e)
{
	return e == &t->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)e;
}

static void grow(struct vd_nodes *t)
{
	size_t nb = t->nbuckets * 2;
	struct vd_entry **b = calloc(nb, sizeof(*b));
	if (!b)
		return; /* keep the longer chains; still correct */
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct vd_entry *e = t->buckets[i];
		while (e) {
			struct vd_entry *next = e->hnext;
			size_t h = hash_node(e->node, nb);
			e->hnext = b[h];
			b[h] = e;
			e = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
}

/*
 * Count one kernel reference to node, creating its entry if new.
 * Returns NULL only when out of memory.
 */
struct vd_entry *vd_nodes_ref(struct vd_nodes *t, vd_node_t node)
{
	struct vd_entry *e;

	if (node == VD_ROOT)
		return &t->root; /* root lookups are not counted by the kernel
				  */
	pthread_mutex_lock(&t->lock);
	size_t h = hash_node(node, t->nbuckets);
	for (e = t->buckets[h]; e; e = e->hnext) {
		if (e->node == node) {
			e->nlookup++;
			goto out;
		}
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	e->node = node;
	e->nlookup = 1;
	e->hnext = t->buckets[h];
	t->buckets[h] = e;
	if (++t->count > t->nbuckets * 2)
		grow(t);
out:
	pthread_mutex_unlock(&t->lock);
	return e;
}

/*
 * Drop n references. Returns true when that was the last one: the entry
 * is gone and the caller tells the source.
 */
bool vd_nodes_unref(struct vd_nodes *t, struct vd_entry *e, uint64_t n)
{
	bool gone = false;

	if (e == &t->root)
		return false;
	pthread_mutex_lock(&t->lock);
	e->nlookup = n >= e->nlookup ? 0 : e->nlookup - n;
	if (e->nlookup == 0) {
		struct vd_entry **pp =
			&t->buckets[hash_node(e->node, t->nbuckets)];
		while (*pp && *pp != e)
			pp = &(*pp)->hnext;
		if (*pp)
			*pp = e->hnext;
		t->count--;
		gone = true;
	}
	pthread_mutex_unlock(&t->lock);
	if (gone)
		free(e);
	return gone;
}

/* The nodeid the kernel knows node by, or 0 if it holds no reference. */
fuse_ino_t vd_nodes_ino(struct vd_nodes *t, vd_node_t node)
{
	fuse_ino_t ino = 0;

	if (node == VD_ROOT)
		return FUSE_ROOT_ID;
	pthread_mutex_lock(&t->lock);
	for (struct vd_entry *e = t->buckets[hash_node(node, t->nbuckets)]; e;
	     e = e->hnext) {
		if (e->node == node) {
			ino = entry_ino(t, e);
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return ino;
}
