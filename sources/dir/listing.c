/*
 * listing.c - reading folders ahead.
 *
 * One thread reads a folder's next getdents64 batch while the kernel
 * digests the last reply, so that reading the backing folder overlaps
 * with the kernel's share of a listing (dir_readdir in dir.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dir/dir.h"

/* The read-ahead thread: one getdents64 per queued handle. */
static void *ra_main(void *arg)
{
	struct dir_src *s = arg;
	struct dir_handle *h;
	long n;

	pthread_mutex_lock(&s->ra_lock);
	for (;;) {
		while (!s->ra_head && !s->ra_stop)
			pthread_cond_wait(&s->ra_cv, &s->ra_lock);
		if (!s->ra_head)
			break;
		h = s->ra_head;
		s->ra_head = h->ra_next;
		if (!s->ra_head)
			s->ra_tail = &s->ra_head;
		pthread_mutex_unlock(&s->ra_lock);

		pthread_mutex_lock(&h->lock);
		h->ra_state = RA_BUSY;
		pthread_mutex_unlock(&h->lock);
		n = syscall(SYS_getdents64, h->fd, h->ra_buf, DIR_BUF);
		pthread_mutex_lock(&h->lock);
		h->ra_len = n < 0 ? -errno : n;
		h->ra_state = RA_DONE;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->lock);

		pthread_mutex_lock(&s->ra_lock);
	}
	pthread_mutex_unlock(&s->ra_lock);
	return NULL;
}

/* Queue h for read-ahead (h->lock held, ra_state RA_IDLE). Without a
 * thread (it could not start) nothing is queued: reads stay inline. */
void dir_ra_queue(struct dir_src *s, struct dir_handle *h)
{
	pthread_mutex_lock(&s->ra_lock);
	if (!s->ra_started && !s->ra_stop) {
		s->ra_started =
			pthread_create(&s->ra_thread, NULL, ra_main, s) == 0;
	}
	if (s->ra_started && !s->ra_stop) {
		h->ra_next = NULL;
		*s->ra_tail = h;
		s->ra_tail = &h->ra_next;
		h->ra_state = RA_QUEUED;
		pthread_cond_signal(&s->ra_cv);
	}
	pthread_mutex_unlock(&s->ra_lock);
}

/* Wait out a queued or running read-ahead of h (h->lock held). */
void dir_ra_wait(struct dir_handle *h)
{
	while (h->ra_state == RA_QUEUED || h->ra_state == RA_BUSY)
		pthread_cond_wait(&h->cv, &h->lock);
}

/* The next batch of h into h->buf: the read-ahead one if there is one.
 * Returns the bytes (0 at the end) or -errno. */
long dir_next_batch(struct dir_handle *h)
{
	char *t;

	dir_ra_wait(h);
	if (h->ra_state == RA_DONE) {
		h->ra_state = RA_IDLE;
		t = h->buf;
		h->buf = h->ra_buf;
		h->ra_buf = t;
		return h->ra_len;
	}
	long n = syscall(SYS_getdents64, h->fd, h->buf, DIR_BUF);
	return n < 0 ? -errno : n;
}
