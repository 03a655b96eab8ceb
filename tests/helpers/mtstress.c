/*
 * mtstress.c - many threads at once creating, writing, reading back,
 * renaming and removing files and folders, in private folders and in one
 * shared folder, each checking what it sees against what it knows.
 *
 *   mtstress [-t THREADS] [-n OPS] [-s SEED] [-k MODELS | -V MODELS] DIR
 *
 * Each thread owns a set of names (its private folder t<i>/f<k>, and
 * s<i>_<k> / d<i>_<k> in shared/) and models exactly which exist, where,
 * and with which bytes. All threads also race on a few contended names
 * shared/c<k>, only ever replaced whole by rename() of a finished
 * temporary file: a reader must see a complete, self-checking record or
 * nothing. At the end the listings must match the threads' models, every
 * listed entry must stat, every contended file must be whole and no
 * temporary may be left; then everything is removed again.
 * -k MODELS keeps the tree and saves the models to the file MODELS; -V
 * MODELS runs no threads but checks a kept tree (say, after the drive was
 * mounted again) against them.
 * Prints one TAP line; on failure the thread, operation, name, expected
 * and actual results.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOTS 48
#define CONTENDED 8
#define MAXLEN (24 << 10)
#define MAGIC 0x56545354u /* "VTST" */

enum slot_state { S_NONE, S_PRIV, S_SHARED, S_DIR };

struct slot {
	enum slot_state state;
	unsigned int seq; /* which content: see fill() */
	unsigned int len;
};

struct thread {
	pthread_t tid;
	int id;
	uint64_t rng;
	long ops;
	struct slot slot[SLOTS];
	char buf[MAXLEN + 64], back[MAXLEN + 64];
};

/* The head of a contended file; the body is fill(seq) of len bytes. */
struct record {
	uint32_t magic, writer, seq, len;
};

static const char *dir;
static long nops = 2000;
static int nthreads = 16;
static unsigned long seed = 1;
static const char *verify; /* -V: the saved models to check against */
static volatile int failed;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

/* Report the first failure of any thread; later ones are dropped. */
__attribute__((format(printf, 2, 3))) static int fail(struct thread *t,
						      const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&fail_lock);
	if (!failed) {
		failed = 1;
		if (verify)
			printf("not ok 1 - mtstress: kept tree matches %s\n",
			       verify);
		else
			printf("not ok 1 - mtstress: %d threads x %ld ops "
			       "(seed %lu)\n",
			       nthreads, nops, seed);
		if (t)
			printf("# thread %d, op %ld: ", t->id, t->ops);
		else
			printf("# final check: ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
		fflush(stdout);
	}
	pthread_mutex_unlock(&fail_lock);
	return -1;
}

/* xorshift64*, one state per thread. */
static uint64_t rnd(struct thread *t)
{
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return t->rng * 2685821657736338717ULL;
}

/* The len content bytes of (writer, seq): checkable without a copy. */
static void fill(char *p, unsigned int writer, unsigned int seq,
		 unsigned int len)
{
	uint32_t x = writer * 2654435761u ^ seq * 40503u;

	for (unsigned int i = 0; i < len; i++) {
		x = x * 1664525u + 1013904223u;
		p[i] = (char)(x >> 24);
	}
}

/* The path of slot k of thread t in its current (or given) place. */
static void slot_path(const struct thread *t, int k, enum slot_state where,
		      char *out, size_t n)
{
	if (where == S_PRIV)
		snprintf(out, n, "%s/t%d/f%d", dir, t->id, k);
	else if (where == S_DIR)
		snprintf(out, n, "%s/shared/d%d_%d", dir, t->id, k);
	else
		snprintf(out, n, "%s/shared/s%d_%d", dir, t->id, k);
}

/* Read a whole file into buf (up to max); the length or -errno. */
static long read_file(const char *path, char *buf, size_t max)
{
	long got = 0, n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf + got, max - got)) > 0)
		got += n;
	if (n < 0)
		got = -errno;
	close(fd);
	return got;
}

/* Check that slot k holds exactly the content the model says. */
static int verify_slot(struct thread *t, int k)
{
	struct slot *s = &t->slot[k];
	char path[PATH_MAX];
	struct stat st;
	long n;

	slot_path(t, k, s->state, path, sizeof(path));
	if (s->state == S_DIR) {
		if (stat(path, &st) || !S_ISDIR(st.st_mode))
			return fail(t, "stat %s: %s, want a folder", path,
				    strerror(errno));
		return 0;
	}
	n = read_file(path, t->back, sizeof(t->back));
	if (n < 0)
		return fail(t, "read %s: %s, want %u bytes", path,
			    strerror((int)-n), s->len);
	fill(t->buf, t->id, s->seq, s->len);
	if (n != s->len || memcmp(t->buf, t->back, n))
		return fail(t, "%s: read %ld bytes%s, want %u bytes of seq %u",
			    path, n, n == s->len ? " that differ" : "", s->len,
			    s->seq);
	if (stat(path, &st) || st.st_size != s->len)
		return fail(t, "stat %s: size %ld (%s), want %u", path,
			    (long)st.st_size, strerror(errno), s->len);
	return 0;
}

/* Create slot k as a new file (O_EXCL) with fresh content. */
static int op_create(struct thread *t, int k)
{
	struct slot *s = &t->slot[k];
	char path[PATH_MAX];
	int fd;

	s->state = rnd(t) % 2 ? S_PRIV : S_SHARED;
	s->seq = (unsigned int)t->ops;
	s->len = (unsigned int)(rnd(t) % MAXLEN);
	slot_path(t, k, s->state, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return fail(t, "create %s: %s", path, strerror(errno));
	fill(t->buf, t->id, s->seq, s->len);
	if (write(fd, t->buf, s->len) != s->len) {
		close(fd);
		return fail(t, "write %s: %s", path, strerror(errno));
	}
	if (close(fd))
		return fail(t, "close %s: %s", path, strerror(errno));
	return 0;
}

/* Rewrite slot k in place (truncate, new content), then check it. */
static int op_rewrite(struct thread *t, int k)
{
	struct slot *s = &t->slot[k];
	char path[PATH_MAX];
	int fd;

	slot_path(t, k, s->state, path, sizeof(path));
	s->seq = (unsigned int)t->ops;
	s->len = (unsigned int)(rnd(t) % MAXLEN);
	fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0)
		return fail(t, "open for rewrite %s: %s", path,
			    strerror(errno));
	fill(t->buf, t->id, s->seq, s->len);
	if (write(fd, t->buf, s->len) != s->len) {
		close(fd);
		return fail(t, "rewrite %s: %s", path, strerror(errno));
	}
	close(fd);
	return verify_slot(t, k);
}

/* Rename slot k to free slot j, perhaps into the other folder. */
static int op_rename(struct thread *t, int k, int j)
{
	char from[PATH_MAX], to[PATH_MAX];
	enum slot_state where = t->slot[k].state;
	struct stat st;

	if (where != S_DIR)
		where = rnd(t) % 2 ? S_PRIV : S_SHARED;
	slot_path(t, k, t->slot[k].state, from, sizeof(from));
	slot_path(t, j, where, to, sizeof(to));
	if (rename(from, to))
		return fail(t, "rename %s -> %s: %s", from, to,
			    strerror(errno));
	if (lstat(from, &st) == 0 || errno != ENOENT)
		return fail(t, "%s still there after rename (%s)", from,
			    strerror(errno));
	t->slot[j] = t->slot[k];
	t->slot[j].state = where;
	t->slot[k].state = S_NONE;
	return verify_slot(t, j);
}

/* Remove slot k (file or folder) and check it is gone. */
static int op_remove(struct thread *t, int k)
{
	char path[PATH_MAX];
	struct stat st;
	int r;

	slot_path(t, k, t->slot[k].state, path, sizeof(path));
	r = t->slot[k].state == S_DIR ? rmdir(path) : unlink(path);
	if (r)
		return fail(t, "remove %s: %s", path, strerror(errno));
	if (lstat(path, &st) == 0 || errno != ENOENT)
		return fail(t, "%s still there after remove (%s)", path,
			    strerror(errno));
	t->slot[k].state = S_NONE;
	return 0;
}

/* Make slot k a folder in shared/. */
static int op_mkdir(struct thread *t, int k)
{
	char path[PATH_MAX];

	slot_path(t, k, S_DIR, path, sizeof(path));
	if (mkdir(path, 0755))
		return fail(t, "mkdir %s: %s", path, strerror(errno));
	t->slot[k].state = S_DIR;
	return 0;
}

/* Check a contended file's bytes: a whole record. n is its length. */
static int check_record(struct thread *t, const char *path, const char *p,
			long n)
{
	const struct record *r = (const struct record *)p;
	char *want;

	if (n < (long)sizeof(*r) || r->magic != MAGIC ||
	    n != (long)(sizeof(*r) + r->len))
		return fail(t, "%s: torn or foreign record (%ld bytes)", path,
			    n);
	want = malloc(r->len + 1);
	fill(want, r->writer, r->seq, r->len);
	if (memcmp(want, p + sizeof(*r), r->len)) {
		free(want);
		return fail(t, "%s: body of writer %u seq %u corrupted", path,
			    r->writer, r->seq);
	}
	free(want);
	return 0;
}

/* Replace a contended name by rename() of a finished temporary. */
static int op_contend_write(struct thread *t, int c)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	struct record *r = (struct record *)t->buf;
	long n;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s/shared/tmp.%d.%ld", dir, t->id, t->ops);
	snprintf(path, sizeof(path), "%s/shared/c%d", dir, c);
	r->magic = MAGIC;
	r->writer = t->id;
	r->seq = (uint32_t)t->ops;
	r->len = (uint32_t)(rnd(t) % (MAXLEN - 64));
	fill(t->buf + sizeof(*r), r->writer, r->seq, r->len);
	n = sizeof(*r) + r->len;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return fail(t, "create %s: %s", tmp, strerror(errno));
	if (write(fd, t->buf, n) != n) {
		close(fd);
		return fail(t, "write %s: %s", tmp, strerror(errno));
	}
	close(fd);
	if (rename(tmp, path))
		return fail(t, "rename %s -> %s: %s", tmp, path,
			    strerror(errno));
	return 0;
}

/* Read a contended name: nothing, or a whole record. */
static int op_contend_read(struct thread *t, int c)
{
	char path[PATH_MAX];
	long n;

	snprintf(path, sizeof(path), "%s/shared/c%d", dir, c);
	n = read_file(path, t->back, sizeof(t->back));
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return fail(t, "read %s: %s", path, strerror((int)-n));
	return check_record(t, path, t->back, n);
}

/* Unlink a contended name; ENOENT is fine (someone else did). */
static int op_contend_unlink(struct thread *t, int c)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/shared/c%d", dir, c);
	if (unlink(path) && errno != ENOENT)
		return fail(t, "unlink %s: %s", path, strerror(errno));
	return 0;
}

/* One thread: nops random operations on its own and contended names. */
static void *worker(void *arg)
{
	struct thread *t = arg;
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/t%d", dir, t->id);
	if (mkdir(path, 0755)) {
		fail(t, "mkdir %s: %s", path, strerror(errno));
		return NULL;
	}
	for (t->ops = 1; t->ops <= nops && !failed; t->ops++) {
		int k = (int)(rnd(t) % SLOTS), j = (int)(rnd(t) % SLOTS);
		int c = (int)(rnd(t) % CONTENDED), what = (int)(rnd(t) % 100);
		enum slot_state st = t->slot[k].state;
		int r = 0;

		if (what < 25)
			r = op_contend_read(t, c);
		else if (what < 33)
			r = op_contend_write(t, c);
		else if (what < 36)
			r = op_contend_unlink(t, c);
		else if (st == S_NONE)
			r = what < 90 ? op_create(t, k) : op_mkdir(t, k);
		else if (what < 55)
			r = verify_slot(t, k);
		else if (what < 65 && st != S_DIR)
			r = op_rewrite(t, k);
		else if (what < 80 && t->slot[j].state == S_NONE)
			r = op_rename(t, k, j);
		else if (what >= 80)
			r = op_remove(t, k);
		if (r)
			break;
	}
	return NULL;
}

/*
 * After all threads: the listing of shared/ and each t<i>/ must hold
 * exactly the names the models say, each entry must stat, contended files
 * must be whole records, and no temporary may be left.
 */
static int check_tree(struct thread *ts)
{
	char path[PATH_MAX];
	static char buf[MAXLEN + 64];
	int listed[256][SLOTS];
	struct dirent *e;
	struct stat st;
	DIR *d;

	memset(listed, 0, sizeof(listed));
	snprintf(path, sizeof(path), "%s/shared", dir);
	d = opendir(path);
	if (!d)
		return fail(NULL, "opendir %s: %s", path, strerror(errno));
	while ((e = readdir(d))) {
		int i, k, c;
		char kind;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/shared/%s", dir, e->d_name);
		if (lstat(path, &st)) {
			closedir(d);
			return fail(NULL, "listed %s does not stat: %s", path,
				    strerror(errno));
		}
		if (sscanf(e->d_name, "c%d", &c) == 1) {
			long n = read_file(path, buf, sizeof(buf));

			if (n < 0 || check_record(NULL, path, buf, n)) {
				closedir(d);
				return fail(NULL, "contended %s bad", path);
			}
		} else if (sscanf(e->d_name, "%c%d_%d", &kind, &i, &k) == 3 &&
			   (kind == 's' || kind == 'd') && i >= 0 &&
			   i < nthreads && k >= 0 && k < SLOTS) {
			enum slot_state want = kind == 's' ? S_SHARED : S_DIR;

			if (ts[i].slot[k].state != want) {
				closedir(d);
				return fail(NULL,
					    "%s is listed but thread %d "
					    "removed or moved it",
					    path, i);
			}
			listed[i][k]++;
		} else {
			closedir(d);
			return fail(NULL, "unexpected entry %s", path);
		}
	}
	closedir(d);
	for (int i = 0; i < nthreads; i++) {
		snprintf(path, sizeof(path), "%s/t%d", dir, i);
		d = opendir(path);
		if (!d)
			return fail(NULL, "opendir %s: %s", path,
				    strerror(errno));
		while ((e = readdir(d))) {
			int k;

			if (e->d_name[0] == '.')
				continue;
			if (sscanf(e->d_name, "f%d", &k) != 1 || k < 0 ||
			    k >= SLOTS || ts[i].slot[k].state != S_PRIV) {
				closedir(d);
				return fail(NULL,
					    "%s/%s listed, not in the "
					    "model of thread %d",
					    path, e->d_name, i);
			}
			listed[i][k]++;
		}
		closedir(d);
		for (int k = 0; k < SLOTS; k++) {
			int want = ts[i].slot[k].state != S_NONE;

			if (listed[i][k] != want)
				return fail(NULL,
					    "thread %d slot %d (state %d)"
					    " listed %d times, want %d",
					    i, k, ts[i].slot[k].state,
					    listed[i][k], want);
			if (want && verify_slot(&ts[i], k))
				return -1;
		}
	}
	return 0;
}

/* Remove the whole tree; every removal must succeed. */
static int remove_tree(struct thread *ts)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d;

	for (int i = 0; i < nthreads; i++)
		for (int k = 0; k < SLOTS; k++)
			if (ts[i].slot[k].state != S_NONE &&
			    op_remove(&ts[i], k))
				return -1;
	snprintf(path, sizeof(path), "%s/shared", dir);
	d = opendir(path);
	if (!d)
		return fail(NULL, "opendir %s: %s", path, strerror(errno));
	while ((e = readdir(d))) {
		char p[PATH_MAX];

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (unlink(p)) {
			closedir(d);
			return fail(NULL, "unlink %s: %s", p, strerror(errno));
		}
	}
	closedir(d);
	if (rmdir(path))
		return fail(NULL, "rmdir %s: %s", path, strerror(errno));
	for (int i = 0; i < nthreads; i++) {
		snprintf(path, sizeof(path), "%s/t%d", dir, i);
		if (rmdir(path))
			return fail(NULL, "rmdir %s: %s", path,
				    strerror(errno));
	}
	return 0;
}

/* Save every thread's model to path (for -V after a remount). */
static int save_models(const struct thread *ts, const char *path)
{
	FILE *f = fopen(path, "w");
	int ok = f && fwrite(&nthreads, sizeof(nthreads), 1, f) == 1;

	for (int i = 0; ok && i < nthreads; i++)
		ok = fwrite(ts[i].slot, sizeof(ts[i].slot), 1, f) == 1;
	if (!f || fclose(f) || !ok)
		return fail(NULL, "write %s: %s", path, strerror(errno));
	return 0;
}

/* Load the models saved by save_models() into ts (nthreads of them). */
static int load_models(struct thread *ts, const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, ok = f && fread(&n, sizeof(n), 1, f) == 1 && n == nthreads;

	for (int i = 0; ok && i < nthreads; i++)
		ok = fread(ts[i].slot, sizeof(ts[i].slot), 1, f) == 1;
	if (f)
		fclose(f);
	if (!ok)
		return fail(NULL, "read %s: %s (or not for %d threads)", path,
			    strerror(errno), nthreads);
	return 0;
}

/*
 * Parse arguments, run the threads, check and remove the tree. With -k
 * the tree stays and the models are saved; -V checks a kept tree (after
 * a remount) against saved models, without running threads.
 */
int main(int argc, char **argv)
{
	const char *keep = NULL;
	struct thread *ts;
	char path[PATH_MAX];
	int c, r;

	while ((c = getopt(argc, argv, "t:n:s:k:V:")) != -1) {
		if (c == 't')
			nthreads = atoi(optarg);
		else if (c == 'n')
			nops = atol(optarg);
		else if (c == 's')
			seed = strtoul(optarg, NULL, 0);
		else if (c == 'k')
			keep = optarg;
		else if (c == 'V')
			verify = optarg;
		else
			goto usage;
	}
	if (optind != argc - 1 || nthreads < 1 || nthreads > 256)
		goto usage;
	dir = argv[optind];
	printf("1..1\n");
	ts = calloc(nthreads, sizeof(*ts));
	for (int i = 0; i < nthreads; i++) {
		ts[i].id = i;
		ts[i].rng = (seed * 0x9E3779B97F4A7C15ULL) ^ (i + 1) * 7919;
	}
	if (verify) {
		r = load_models(ts, verify) || check_tree(ts);
		if (!r)
			printf("ok 1 - mtstress: kept tree of %d threads "
			       "matches "
			       "%s\n",
			       nthreads, verify);
		free(ts);
		return r ? 1 : 0;
	}
	snprintf(path, sizeof(path), "%s/shared", dir);
	if (mkdir(path, 0755)) {
		free(ts);
		return fail(NULL, "mkdir %s: %s", path, strerror(errno)), 1;
	}
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&ts[i].tid, NULL, worker, &ts[i]))
			return fail(NULL, "pthread_create failed"), 1;
	for (int i = 0; i < nthreads; i++)
		pthread_join(ts[i].tid, NULL);
	r = failed || check_tree(ts) ||
	    (keep ? save_models(ts, keep) : remove_tree(ts));
	if (!r)
		printf("ok 1 - mtstress: %d threads x %ld ops (seed %lu), tree "
		       "consistent and %s\n",
		       nthreads, nops, seed, keep ? "kept" : "removed");
	free(ts);
	return r ? 1 : 0;
usage:
	fprintf(stderr,
		"usage: %s [-t THREADS] [-n OPS] [-s SEED] [-k MODELS | "
		"-V MODELS] DIR\n",
		argv[0]);
	return 2;
}
