/*
 * htab.c - see htab.h.
 */
#include <errno.h>
#include <stdlib.h>

#include "util/htab.h"

int vd_htab_init(struct vd_htab *t, size_t nb)
{
	size_t n = 1;

	while (n < nb)
		n *= 2;
	t->b = calloc(n, sizeof(*t->b));
	if (!t->b)
		return -ENOMEM;
	t->nb = n;
	t->count = 0;
	return 0;
}

void vd_htab_fini(struct vd_htab *t)
{
	free(t->b);
	t->b = NULL;
	t->nb = t->count = 0;
}

static void grow(struct vd_htab *t)
{
	size_t nb = t->nb * 2;
	struct vd_hlink **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < t->nb; i++) {
		struct vd_hlink *l = t->b[i], *next;

		for (; l; l = next) {
			next = l->next;
			l->next = b[l->hash & (nb - 1)];
			b[l->hash & (nb - 1)] = l;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

void vd_htab_add(struct vd_htab *t, struct vd_hlink *l, uint64_t hash)
{
	struct vd_hlink **head = &t->b[hash & (t->nb - 1)];

	l->hash = hash;
	l->next = *head;
	*head = l;
	if (++t->count > t->nb * 2)
		grow(t);
}

int vd_htab_del(struct vd_htab *t, struct vd_hlink *l)
{
	struct vd_hlink **pp = &t->b[l->hash & (t->nb - 1)];

	for (; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			l->next = NULL;
			t->count--;
			return 1;
		}
	return 0;
}
