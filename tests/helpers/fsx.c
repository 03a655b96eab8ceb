/*
 * fsx.c - a file system exerciser in the style of the classic fsx: random
 * writes, reads, truncates, fallocate (plain, punch hole, zero range),
 * mmap reads and writes, renames of the open file, close/reopen and fsync
 * on one file, each checked against an in-memory model of its bytes.
 *
 *   fsx [-s SEED] [-n OPS] [-l MAXLEN] [-w MAXIO] [-K MODEL] [-M] [-F] [-v] DIR
 *
 * -s seed (default 1), -n operations (10000), -l largest file size
 * (1 MiB), -w largest single write/read (64 KiB), -M no mmap, -F no
 * fallocate, -v print every operation, -K keep the file at the end as
 * DIR/fsx.SEED.final and write the expected bytes to the file MODEL.
 * The run is deterministic for a seed: a failure prints the seed, the
 * failing operation, the first bad bytes, a hint at which earlier write
 * produced the bad data, and the last operations, and exits 1.
 * An operation kind the file system answers with EOPNOTSUPP (or ENODEV
 * for mmap) is reported as a "# note" and left out from then on.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum fsx_kind {
	OP_WRITE,
	OP_READ,
	OP_TRUNCATE,
	OP_FALLOC,
	OP_PUNCH,
	OP_ZERO,
	OP_MAPREAD,
	OP_MAPWRITE,
	OP_RENAME,
	OP_REOPEN,
	OP_FSYNC,
	OP_NKINDS
};

static const char *const kind_names[OP_NKINDS] = {
	"WRITE",   "READ",     "TRUNCATE", "FALLOC", "PUNCH", "ZERO",
	"MAPREAD", "MAPWRITE", "RENAME",   "REOPEN", "FSYNC",
};

/* Relative frequency of each kind. */
static const int kind_weight[OP_NKINDS] = {30, 25, 8, 4, 5, 4, 5, 5, 3, 3, 2};

struct fsx_op {
	enum fsx_kind kind;
	long off;
	long len;
	long size_after;
};

#define LOG_KEEP 30

static uint64_t rng_state;
static char *model, *buf, *got;
static long size, maxlen = 1 << 20, maxio = 64 << 10, nops = 10000;
static long opnum;
static unsigned long seed = 1;
static int fd = -1, verbose, disabled[OP_NKINDS];
static const char *keep;
static char dir[PATH_MAX], path[PATH_MAX];
static struct fsx_op oplog[LOG_KEEP];
static long pagesize;

/* xorshift64*: a small PRNG that gives the same run on every machine. */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/* A random number in [0, n). */
static long rnd_below(long n)
{
	return n > 0 ? (long)(rnd() % (uint64_t)n) : 0;
}

/* The byte operation op writes at file offset pos: both can be recovered. */
static char pattern(long op, long pos)
{
	return (char)((op * 7 + pos) % 255 + 1);
}

/* Print the last operations, oldest first. */
static void dump_log(void)
{
	long first = opnum - LOG_KEEP + 1;

	printf("# last operations (seed %lu):\n", seed);
	for (long i = first < 1 ? 1 : first; i <= opnum; i++) {
		struct fsx_op *o = &oplog[i % LOG_KEEP];

		printf("#   %6ld %-8s off=%-8ld len=%-7ld -> size %ld\n", i,
		       kind_names[o->kind], o->off, o->len, o->size_after);
	}
	printf("# reproduce: fsx -s %lu -n %ld -l %ld -w %ld%s%s DIR\n", seed,
	       opnum, maxlen, maxio, disabled[OP_MAPREAD] ? " -M" : "",
	       disabled[OP_FALLOC] ? " -F" : "");
}

/* Report a failure of the current operation and exit. */
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt,
								...)
{
	va_list ap;

	printf("not ok 1 - fsx seed %lu: failed at op %ld (%s)\n# ", seed,
	       opnum, kind_names[oplog[opnum % LOG_KEEP].kind]);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	dump_log();
	exit(1);
}

/* Compare len bytes read at off with the model; die on a difference. */
static void check(const char *what, const char *data, long off, long len)
{
	long i, j, inv7 = 73; /* 7 * 73 = 511 = 1 (mod 255) */

	if (memcmp(data, model + off, len) == 0)
		return;
	for (i = 0; data[i] == model[off + i]; i++)
		;
	for (j = len - 1; data[j] == model[off + j]; j--)
		;
	printf("# %s: bytes %ld..%ld (of %ld at %ld) differ\n", what, off + i,
	       off + j, len, off);
	for (long k = i; k <= j && k < i + 8; k++)
		printf("#   at %ld: got 0x%02x want 0x%02x\n", off + k,
		       (unsigned char)data[k], (unsigned char)model[off + k]);
	if (data[i] == 0)
		printf("# the bad data is zeros (lost write or stale hole)\n");
	else
		printf("# the bad byte fits a write by an op = %ld (mod 255)\n",
		       (((unsigned char)data[i] - 1 - (off + i)) % 255 + 255) *
			       inv7 % 255);
	die("%s returned data that differs from the model", what);
}

/* fstat the file and compare its size with the model. */
static void check_size(void)
{
	struct stat st;

	if (fstat(fd, &st))
		die("fstat: %s", strerror(errno));
	if (st.st_size != size)
		die("size is %ld, model says %ld", (long)st.st_size, size);
}

/* Turn off an operation kind the file system does not have. */
static int unsupported(enum fsx_kind k, int err)
{
	if (err != EOPNOTSUPP && !(err == ENODEV && k >= OP_MAPREAD))
		return 0;
	printf("# note: %s is not supported here (%s): left out\n",
	       kind_names[k], strerrorname_np(err));
	disabled[k] = 1;
	if (k == OP_MAPREAD || k == OP_MAPWRITE)
		disabled[OP_MAPREAD] = disabled[OP_MAPWRITE] = 1;
	return 1;
}

/* Write random-length pattern data at a random offset. */
static void do_write(struct fsx_op *o)
{
	o->off = rnd_below(maxlen);
	o->len = 1 + rnd_below(maxio);
	if (o->off + o->len > maxlen)
		o->len = maxlen - o->off;
	for (long i = 0; i < o->len; i++)
		buf[i] = pattern(opnum, o->off + i);
	if (pwrite(fd, buf, o->len, o->off) != o->len)
		die("pwrite(%ld, %ld): %s", o->off, o->len, strerror(errno));
	memcpy(model + o->off, buf, o->len);
	if (o->off + o->len > size)
		size = o->off + o->len;
}

/* Read a random range (sometimes past EOF) and compare. */
static void do_read(struct fsx_op *o)
{
	long want, n;

	o->off = rnd_below(size + 1 + size / 8);
	o->len = 1 + rnd_below(maxio);
	want = o->off >= size ? 0 : o->len;
	if (want && o->off + want > size)
		want = size - o->off;
	n = pread(fd, got, o->len, o->off);
	if (n != want)
		die("pread(%ld, %ld) = %ld (%s), want %ld", o->off, o->len, n,
		    n < 0 ? strerror(errno) : "short", want);
	check("pread", got, o->off, want);
}

/*
 * Truncate to a random size, up or down. The model keeps every byte past
 * the size zero, so growing needs no clearing anywhere.
 */
static void do_truncate(struct fsx_op *o)
{
	o->off = rnd_below(maxlen + 1);
	if (rnd_below(4) == 0)
		o->off &= ~(pagesize - 1);
	if (ftruncate(fd, o->off))
		die("ftruncate(%ld): %s", o->off, strerror(errno));
	if (o->off < size)
		memset(model + o->off, 0, size - o->off);
	size = o->off;
	check_size();
}

/* fallocate: plain (may extend), punch hole, or zero range. */
static void do_falloc(struct fsx_op *o)
{
	int mode = 0;

	o->off = rnd_below(o->kind == OP_FALLOC ? maxlen : size + 1);
	o->len = 1 + rnd_below(maxio);
	if (o->off + o->len > maxlen)
		o->len = maxlen - o->off;
	if (o->len <= 0)
		return;
	if (o->kind == OP_PUNCH)
		mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	else if (o->kind == OP_ZERO)
		mode = FALLOC_FL_ZERO_RANGE |
		       (rnd_below(2) ? FALLOC_FL_KEEP_SIZE : 0);
	else if (rnd_below(2))
		mode = FALLOC_FL_KEEP_SIZE;
	if (fallocate(fd, mode, o->off, o->len)) {
		if (unsupported(o->kind, errno))
			return;
		die("fallocate(mode %#x, %ld, %ld): %s", mode, o->off, o->len,
		    strerror(errno));
	}
	if (o->kind != OP_FALLOC) {
		long end = o->off + o->len;

		if (mode & FALLOC_FL_KEEP_SIZE && end > size)
			end = size;
		if (end > o->off)
			memset(model + o->off, 0, end - o->off);
	}
	if (!(mode & FALLOC_FL_KEEP_SIZE) && o->off + o->len > size)
		size = o->off + o->len;
	check_size();
}

/* Read or write through a shared mapping of part of the file. */
static void do_map(struct fsx_op *o)
{
	long start, maplen;
	char *m;

	if (o->kind == OP_MAPREAD && size == 0)
		return;
	if (o->kind == OP_MAPWRITE) {
		o->off = rnd_below(maxlen);
		o->len = 1 + rnd_below(maxio);
		if (o->off + o->len > maxlen)
			o->len = maxlen - o->off;
		if (o->off + o->len > size) {
			if (ftruncate(fd, o->off + o->len))
				die("ftruncate for mapwrite: %s",
				    strerror(errno));
			size = o->off + o->len;
		}
	} else {
		o->off = rnd_below(size);
		o->len = 1 + rnd_below(maxio);
		if (o->off + o->len > size)
			o->len = size - o->off;
	}
	start = o->off & ~(pagesize - 1);
	maplen = o->off + o->len - start;
	m = mmap(NULL, maplen,
		 PROT_READ | (o->kind == OP_MAPWRITE ? PROT_WRITE : 0),
		 MAP_SHARED, fd, start);
	if (m == MAP_FAILED) {
		if (unsupported(o->kind, errno))
			return;
		die("mmap(%ld, %ld): %s", start, maplen, strerror(errno));
	}
	if (o->kind == OP_MAPWRITE) {
		for (long i = 0; i < o->len; i++)
			model[o->off + i] = pattern(opnum, o->off + i);
		memcpy(m + (o->off - start), model + o->off, o->len);
		if (msync(m, maplen, MS_SYNC))
			die("msync: %s", strerror(errno));
	} else {
		check("mmap read", m + (o->off - start), o->off, o->len);
	}
	munmap(m, maplen);
}

/* Rename the open file to a new name; sometimes reopen by the new name. */
static void do_rename(struct fsx_op *o)
{
	char to[PATH_MAX];

	snprintf(to, sizeof(to), "%s/fsx.%lu.%ld", dir, seed, opnum);
	if (rename(path, to))
		die("rename %s -> %s: %s", path, to, strerror(errno));
	snprintf(path, sizeof(path), "%s", to);
	o->off = o->len = 0;
	if (access(path, F_OK))
		die("renamed file %s not found: %s", path, strerror(errno));
}

/* Close and open again by name, so the next reads start from a new open. */
static void do_reopen(struct fsx_op *o)
{
	int flags = O_RDWR;

	o->off = o->len = 0;
	if (close(fd))
		die("close: %s", strerror(errno));
	fd = open(path, flags);
	if (fd < 0)
		die("reopen %s: %s", path, strerror(errno));
	check_size();
}

/* Read the whole file in one go and compare. */
static void check_all(const char *what)
{
	long n = pread(fd, got, maxlen + 1, 0);

	if (n != size)
		die("%s: full read gave %ld bytes (%s), want %ld", what, n,
		    n < 0 ? strerror(errno) : "", size);
	check(what, got, 0, size);
}

/*
 * Leave the file as DIR/fsx.SEED.final and write the model's bytes to
 * model_path (outside the drive), so a later remount can be compared.
 */
static void keep_file(const char *model_path)
{
	char final[PATH_MAX];
	FILE *f;

	snprintf(final, sizeof(final), "%s/fsx.%lu.final", dir, seed);
	if (rename(path, final))
		die("rename %s -> %s: %s", path, final, strerror(errno));
	f = fopen(model_path, "w");
	if (!f || fwrite(model, 1, size, f) != (size_t)size || fclose(f))
		die("write model %s: %s", model_path, strerror(errno));
}

/* Pick an operation kind by weight, skipping disabled kinds. */
static enum fsx_kind pick(void)
{
	int total = 0, r;

	for (int k = 0; k < OP_NKINDS; k++)
		total += disabled[k] ? 0 : kind_weight[k];
	r = (int)rnd_below(total);
	for (int k = 0; k < OP_NKINDS; k++) {
		if (disabled[k])
			continue;
		if (r < kind_weight[k])
			return k;
		r -= kind_weight[k];
	}
	return OP_READ;
}

/* Parse arguments, run the operations, check the end state. */
int main(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "s:n:l:w:K:MFv")) != -1) {
		switch (c) {
		case 's':
			seed = strtoul(optarg, NULL, 0);
			break;
		case 'n':
			nops = atol(optarg);
			break;
		case 'l':
			maxlen = atol(optarg);
			break;
		case 'w':
			maxio = atol(optarg);
			break;
		case 'M':
			disabled[OP_MAPREAD] = disabled[OP_MAPWRITE] = 1;
			break;
		case 'F':
			disabled[OP_FALLOC] = disabled[OP_PUNCH] = 1;
			disabled[OP_ZERO] = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'K':
			keep = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || maxlen < 1 || maxio < 1)
		goto usage;
	setvbuf(stdout, NULL, _IOLBF, 0);
	pagesize = sysconf(_SC_PAGESIZE);
	rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
	snprintf(dir, sizeof(dir), "%s", argv[optind]);
	snprintf(path, sizeof(path), "%s/fsx.%lu.start", dir, seed);
	model = calloc(1, maxlen + maxio);
	buf = malloc(maxio);
	got = malloc(maxlen + maxio + 1);
	if (!model || !buf || !got)
		return 2;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		printf("not ok 1 - fsx seed %lu: create %s: %s\n", seed, path,
		       strerror(errno));
		return 1;
	}
	printf("1..1\n");
	for (opnum = 1; opnum <= nops; opnum++) {
		struct fsx_op *o = &oplog[opnum % LOG_KEEP];

		memset(o, 0, sizeof(*o));
		o->kind = pick();
		o->size_after = size;
		switch (o->kind) {
		case OP_WRITE:
			do_write(o);
			break;
		case OP_READ:
			do_read(o);
			break;
		case OP_TRUNCATE:
			do_truncate(o);
			break;
		case OP_FALLOC:
		case OP_PUNCH:
		case OP_ZERO:
			do_falloc(o);
			break;
		case OP_MAPREAD:
		case OP_MAPWRITE:
			do_map(o);
			break;
		case OP_RENAME:
			do_rename(o);
			break;
		case OP_REOPEN:
			do_reopen(o);
			break;
		case OP_FSYNC:
			if (fsync(fd))
				die("fsync: %s", strerror(errno));
			break;
		case OP_NKINDS:
			break;
		}
		o->size_after = size;
		if (verbose)
			printf("# %6ld %-8s off=%ld len=%ld size=%ld\n", opnum,
			       kind_names[o->kind], o->off, o->len, size);
		if (opnum % 500 == 0)
			check_all("periodic full read");
	}
	opnum--;
	check_size();
	check_all("final full read");
	close(fd);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open at end: %s", strerror(errno));
	check_size();
	check_all("full read after reopen");
	close(fd);
	if (keep)
		keep_file(keep);
	else if (unlink(path))
		die("unlink %s: %s", path, strerror(errno));
	printf("ok 1 - fsx seed %lu: %ld operations, final size %ld\n", seed,
	       nops, size);
	return 0;
usage:
	fprintf(stderr,
		"usage: %s [-s SEED] [-n OPS] [-l MAXLEN] [-w MAXIO] "
		"[-K MODEL] [-M] [-F] [-v] DIR\n",
		argv[0]);
	return 2;
}
