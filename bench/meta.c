/*
 * meta.c - metadata benchmark for bench/run.
 *
 * Usage: meta DIR N
 * In DIR (which must exist), creates N empty files (open O_CREAT, close,
 * stat each), lists DIR (readdir to the end), then unlinks the N files.
 * Prints one line: "create_per_s list_per_s unlink_per_s", each the
 * number of files handled per second (CLOCK_MONOTONIC). Exits non-zero,
 * with a message, on the first failing call.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Seconds on the monotonic clock. */
static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Print what failed and why, and exit with 1. */
static void fail(const char *what, const char *path)
{
	fprintf(stderr, "meta: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

/* Create and stat n files; returns elapsed seconds. */
static double do_create(int dfd, long n)
{
	char name[32];
	struct stat st;
	double t0 = now();
	long i;
	int fd;

	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%07ld", i);
		fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			fail("create", name);
		if (close(fd))
			fail("close", name);
		if (fstatat(dfd, name, &st, 0))
			fail("stat", name);
	}
	return now() - t0;
}

/* Read the whole listing of dir; checks that at least n entries came
 * back and returns elapsed seconds. */
static double do_list(const char *dir, long n)
{
	double t0 = now();
	struct dirent *de;
	long count = 0;
	DIR *d;

	d = opendir(dir);
	if (!d)
		fail("opendir", dir);
	errno = 0;
	while ((de = readdir(d)))
		count++;
	if (errno)
		fail("readdir", dir);
	closedir(d);
	if (count < n) {
		fprintf(stderr, "meta: listed %ld entries, expected %ld\n",
			count, n);
		exit(1);
	}
	return now() - t0;
}

/* Unlink the n files; returns elapsed seconds. */
static double do_unlink(int dfd, long n)
{
	char name[32];
	double t0 = now();
	long i;

	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%07ld", i);
		if (unlinkat(dfd, name, 0))
			fail("unlink", name);
	}
	return now() - t0;
}

int main(int argc, char **argv)
{
	double tc, tl, tu;
	long n;
	int dfd;

	if (argc != 3 || (n = atol(argv[2])) <= 0) {
		fprintf(stderr, "usage: meta DIR N\n");
		return 2;
	}
	dfd = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		fail("open", argv[1]);
	tc = do_create(dfd, n);
	tl = do_list(argv[1], n);
	tu = do_unlink(dfd, n);
	close(dfd);
	printf("%.0f %.0f %.0f\n", n / tc, n / tl, n / tu);
	return 0;
}
