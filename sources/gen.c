/*
 * gen.c - gen:CONFIG: read-only files whose content is made when they are
 * opened, by a command or a template, for the caller who opens them.
 *
 * CONFIG maps paths to generators, one a line (docs/sources.md):
 *
 *   # comment
 *   default timeout=5 max=16M
 *   motd.txt        template  Hello uid ${uid} in container ${container}
 *   sys/meminfo     cmd timeout=2  free -b
 *
 * Each open runs the generator again (direct_io, nothing cached), with the
 * caller's pid, uid, gid and mount namespace in its environment or
 * template, so each caller and each container can read its own content.
 * A generator that fails, runs out of time or writes too much gives EIO
 * and a log line; its whole process group is killed on a timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sources.h"
#include "util/buf.h"

#define GEN_TIMEOUT_MS 5000
#define GEN_MAX_OUT (16u << 20)
#define GEN_ERR_KEEP 300 /* bytes of a failing command's stderr to log */

extern char **environ;

enum gen_kind { GEN_DIR, GEN_CMD, GEN_TEMPLATE };

/* One path of the drive; its node handle is its index + 1 (root: 1). */
struct gen_node {
	char *name;
	enum gen_kind kind;
	char *text; /* command line for /bin/sh -c, or template */
	char *path; /* full path in the drive, for logs and env */
	unsigned int timeout_ms;
	size_t max;
	mode_t mode;
	size_t parent;	    /* index of the folder */
	size_t child, next; /* first child, next sibling (0: none) */
};

struct gen {
	struct gen_node *n;
	size_t count;
	char *dir; /* the config file's folder: commands run there */
	uid_t uid;
	gid_t gid;
	struct timespec loaded;
};

/* The content one open made. */
struct gen_open {
	char *p;
	size_t len;
};

static void gen_free(struct gen *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->count; i++) {
		free(g->n[i].name);
		free(g->n[i].text);
		free(g->n[i].path);
	}
	free(g->n);
	free(g->dir);
	free(g);
}

static void gen_destroy(void *data)
{
	gen_free(data);
}

/* Append a node under parent; returns its index or 0 on failure. */
static size_t add_node(struct gen *g, size_t parent, const char *name,
		       size_t namelen)
{
	struct gen_node *n = realloc(g->n, (g->count + 1) * sizeof(*n));
	size_t i = g->count;
	size_t *link;

	if (!n)
		return 0;
	g->n = n;
	memset(&n[i], 0, sizeof(n[i]));
	n[i].name = strndup(name, namelen);
	if (!n[i].name)
		return 0;
	n[i].kind = GEN_DIR;
	n[i].mode = 0555;
	n[i].parent = parent;
	g->count++;
	/* Keep children in config order. */
	for (link = &n[parent].child; *link; link = &n[*link].next)
		;
	*link = i;
	return i;
}

static size_t find_child(const struct gen *g, size_t dir, const char *name,
			 size_t namelen)
{
	for (size_t c = g->n[dir].child; c; c = g->n[c].next)
		if (strlen(g->n[c].name) == namelen &&
		    !memcmp(g->n[c].name, name, namelen))
			return c;
	return 0;
}

/* Parse "5", "0.5" seconds into milliseconds (1 ms .. 1 hour). */
static int parse_timeout(const char *v, unsigned int *ms)
{
	char *end;
	double s = strtod(v, &end);

	if (end == v || *end || !(s >= 0.001 && s <= 3600))
		return -EINVAL;
	*ms = (unsigned int)(s * 1000 + 0.5);
	return 0;
}

/* Parse "4096", "64K", "16M", "1G" into bytes (1 .. 1 GiB). */
static int parse_size(const char *v, size_t *out)
{
	char *end;
	unsigned long long n = strtoull(v, &end, 10);

	if (end == v || *v == '-')
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		n <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		n <<= 20, end++;
	else if (*end == 'G' || *end == 'g')
		n <<= 30, end++;
	if (*end || n == 0 || n > (1ull << 30))
		return -EINVAL;
	*out = (size_t)n;
	return 0;
}

/* Take the next white-space separated word of *p (NUL-terminating it). */
static char *next_word(char **p)
{
	char *s = *p, *w;

	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return *p = s, NULL;
	w = s;
	while (*s && *s != ' ' && *s != '\t')
		s++;
	if (*s)
		*s++ = 0;
	*p = s;
	return w;
}

/* Apply "timeout=", "max=" or "mode=" to n; 1 if w is not an option. */
static int parse_option(const char *w, struct gen_node *n)
{
	char *end;

	if (!strncmp(w, "timeout=", 8))
		return parse_timeout(w + 8, &n->timeout_ms);
	if (!strncmp(w, "max=", 4))
		return parse_size(w + 4, &n->max);
	if (!strncmp(w, "mode=", 5)) {
		unsigned long m = strtoul(w + 5, &end, 8);

		if (end == w + 5 || *end || m > 0777 || (m & 0222))
			return -EINVAL;
		n->mode = (mode_t)m;
		return 0;
	}
	return 1;
}

/* Check a template's ${...} names now, so a typo fails the mount. */
static int check_template(const char *t)
{
	static const char *const vars[] = {"uid",   "gid",  "pid", "container",
					   "mntns", "time", "path"};

	for (const char *p = t; (p = strstr(p, "${")); p++) {
		const char *e = strchr(p, '}');
		size_t i;

		if (p > t && p[-1] == '\\')
			continue;
		if (!e)
			return -EINVAL;
		for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
			if ((size_t)(e - p - 2) == strlen(vars[i]) &&
			    !strncmp(p + 2, vars[i], strlen(vars[i])))
				break;
		if (i == sizeof(vars) / sizeof(vars[0]))
			return -EINVAL;
	}
	return 0;
}

/* Add the file of one config line "PATH KIND [OPTS] REST" to g. */
static int parse_line(struct gen *g, char *line, struct gen_node *def,
		      const char **why)
{
	char *p = line, *path, *kind, *w, *comp;
	struct gen_node opts = *def;
	size_t dir = 0, i = 0, full;
	int r;

	path = next_word(&p);
	kind = next_word(&p);
	if (!path || !kind)
		return *why = "expected PATH KIND ...", -EINVAL;
	if (!strcmp(path, "default")) {
		/* "default OPTS": the options of every later line */
		for (w = kind; w; w = next_word(&p)) {
			r = parse_option(w, def);
			if (r)
				return *why = "bad default option", -EINVAL;
		}
		return 0;
	}
	if (strcmp(kind, "cmd") && strcmp(kind, "template"))
		return *why = "KIND is cmd or template", -EINVAL;
	/* Options, up to the first word that is not one: the command or
	 * text, taken verbatim to the end of the line. */
	for (;;) {
		char tok[64];
		size_t len;

		while (*p == ' ' || *p == '\t')
			p++;
		len = strcspn(p, " \t");
		if (!len || len >= sizeof(tok))
			break;
		memcpy(tok, p, len);
		tok[len] = 0;
		r = parse_option(tok, &opts);
		if (r < 0)
			return *why = "bad option (timeout=SEC, max=SIZE, "
				      "mode=OCTAL)",
			       -EINVAL;
		if (r == 1)
			break;
		p += len;
	}
	if (!*p && !strcmp(kind, "cmd"))
		return *why = "cmd needs a command", -EINVAL;
	if (!strcmp(kind, "template") && check_template(p))
		return *why = "unknown ${variable} in template", -EINVAL;
	while (*path == '/')
		path++;
	if (!*path)
		return *why = "bad path", -EINVAL;
	for (comp = path; *comp;) {
		char *slash = strchr(comp, '/');
		size_t len = slash ? (size_t)(slash - comp) : strlen(comp);

		if (len == 0 || (len == 1 && comp[0] == '.') ||
		    (len == 2 && !strncmp(comp, "..", 2)) || len > 255)
			return *why = "bad path", -EINVAL;
		i = find_child(g, dir, comp, len);
		if (slash && slash[1]) {
			if (i && g->n[i].kind != GEN_DIR)
				return *why = "a file is used as a folder",
				       -EINVAL;
			if (!i && !(i = add_node(g, dir, comp, len)))
				return -ENOMEM;
			dir = i;
			comp = slash + 1;
			continue;
		}
		if (i)
			return *why = "path given twice", -EINVAL;
		i = add_node(g, dir, comp, len);
		if (!i)
			return -ENOMEM;
		break;
	}
	full = strlen(path);
	g->n[i].kind = strcmp(kind, "cmd") ? GEN_TEMPLATE : GEN_CMD;
	g->n[i].text = strdup(p);
	g->n[i].path = strndup(path, full - (path[full - 1] == '/'));
	g->n[i].timeout_ms = opts.timeout_ms;
	g->n[i].max = opts.max;
	g->n[i].mode = opts.mode;
	if (!g->n[i].text || !g->n[i].path)
		return -ENOMEM;
	return 0;
}

/* Read and parse the config file. */
static int load_config(struct gen *g, const char *file, char *err,
		       size_t errlen)
{
	struct gen_node def = {
		.timeout_ms = GEN_TIMEOUT_MS, .max = GEN_MAX_OUT, .mode = 0444};
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0, r = 0;
	FILE *f = fopen(file, "re");

	if (!f) {
		r = -errno;
		snprintf(err, errlen, "gen: %s: %s", file, strerror(errno));
		return r;
	}
	while (getline(&line, &cap, f) > 0) {
		const char *why = NULL;
		char *s = line;
		size_t n;

		lineno++;
		n = strlen(s);
		while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
			s[--n] = 0;
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s || *s == '#')
			continue;
		r = parse_line(g, s, &def, &why);
		if (r) {
			snprintf(err, errlen, "gen: %s:%d: %s", file, lineno,
				 why ? why : strerror(-r));
			break;
		}
	}
	free(line);
	fclose(f);
	return r;
}

static void fill_stat(const struct gen *g, size_t i, struct stat *st)
{
	const struct gen_node *n = &g->n[i];

	memset(st, 0, sizeof(*st));
	st->st_ino = i + 1;
	st->st_uid = g->uid;
	st->st_gid = g->gid;
	st->st_mode = (n->kind == GEN_DIR ? S_IFDIR : S_IFREG) | n->mode;
	st->st_nlink = n->kind == GEN_DIR ? 2 : 1;
	/* Size 0 like /proc: the content exists only per open. */
	st->st_blksize = 4096;
	st->st_mtim = g->loaded;
	st->st_ctim = g->loaded;
	st->st_atim = g->loaded;
}

/* The index for node handle node, or -1 if it names nothing. */
static long node_index(const struct gen *g, vd_node_t node)
{
	return node >= 1 && node <= g->count ? (long)(node - 1) : -1;
}

static int gen_lookup(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t *node, struct stat *st)
{
	const struct gen *g = ctx->data;
	long p = node_index(g, parent);
	size_t c;

	if (p < 0)
		return -ESTALE;
	if (g->n[p].kind != GEN_DIR)
		return -ENOTDIR;
	c = find_child(g, (size_t)p, name, strlen(name));
	if (!c)
		return -ENOENT;
	*node = c + 1;
	fill_stat(g, c, st);
	return 0;
}

static int gen_getattr(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, struct stat *st)
{
	const struct gen *g = ctx->data;
	long i = node_index(g, node);

	if (i < 0)
		return -ESTALE;
	fill_stat(g, (size_t)i, st);
	if (fi && fi->fh)
		st->st_size =
			(off_t)((struct gen_open *)(uintptr_t)fi->fh)->len;
	return 0;
}

static int gen_readdir(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi, off_t off, vd_fill_fn fill,
		       void *buf)
{
	const struct gen *g = ctx->data;
	long d = node_index(g, node);
	struct stat st;
	off_t pos = 2;

	(void)fi;
	if (d < 0)
		return -ESTALE;
	if (g->n[d].kind != GEN_DIR)
		return -ENOTDIR;
	if (off < 1) {
		fill_stat(g, (size_t)d, &st);
		if (fill(buf, ".", 0, &st, 1))
			return 0;
	}
	if (off < 2) {
		fill_stat(g, g->n[d].parent, &st);
		if (fill(buf, "..", 0, &st, 2))
			return 0;
	}
	for (size_t c = g->n[d].child; c; c = g->n[c].next) {
		pos++;
		if (pos <= off)
			continue;
		fill_stat(g, c, &st);
		if (fill(buf, g->n[c].name, c + 1, &st, pos))
			break;
	}
	return 0;
}

/* Expand a template for the caller: \n \t \\ \$ escapes and ${var}s,
 * then a final newline. */
static int run_template(const struct vd_ctx *ctx, const struct gen_node *n,
			struct vd_buf *out)
{
	const char *t = n->text;
	char num[64];
	int r = 0;

	for (const char *p = t; *p && !r; p++) {
		if (*p == '\\' && p[1]) {
			char c = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : p[1];

			r = vd_buf_add(out, &c, 1);
			p++;
			continue;
		}
		if (p[0] != '$' || p[1] != '{') {
			r = vd_buf_add(out, p, 1);
			continue;
		}
		p += 2;
		if (!strncmp(p, "path}", 5)) {
			r = vd_buf_add(out, "/", 1);
			if (!r)
				r = vd_buf_add(out, n->path, strlen(n->path));
			p = strchr(p, '}');
			continue;
		}
		/* check_template() let only these names through. */
		if (!strncmp(p, "uid}", 4))
			snprintf(num, sizeof(num), "%u",
				 (unsigned int)ctx->uid);
		else if (!strncmp(p, "gid}", 4))
			snprintf(num, sizeof(num), "%u",
				 (unsigned int)ctx->gid);
		else if (!strncmp(p, "pid}", 4))
			snprintf(num, sizeof(num), "%d", (int)ctx->pid);
		else if (!strncmp(p, "time}", 5))
			snprintf(num, sizeof(num), "%lld",
				 (long long)time(NULL));
		else /* container, mntns */
			snprintf(num, sizeof(num), "%llu",
				 (unsigned long long)vd_ctx_mntns(ctx));
		r = vd_buf_add(out, num, strlen(num));
		p = strchr(p, '}');
	}
	if (!r)
		r = vd_buf_add(out, "\n", 1);
	return r;
}

/* A command's environment: ours without VDRIVE_*, then the caller's. */
struct gen_env {
	char pid[32], uid[32], gid[32], mntns[48];
	char *path;
	char **env;
};

/* Build e for the caller of ctx opening n; -ENOMEM on failure. */
static int make_env(struct gen_env *e, const struct vd_ctx *ctx,
		    const struct gen_node *n)
{
	size_t cnt = 0, k = 0;

	while (environ[cnt])
		cnt++;
	e->env = calloc(cnt + 6, sizeof(*e->env));
	e->path = malloc(strlen(n->path) + sizeof("VDRIVE_PATH=/"));
	if (!e->env || !e->path) {
		free(e->env);
		free(e->path);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cnt; i++)
		if (strncmp(environ[i], "VDRIVE_", 7))
			e->env[k++] = environ[i];
	snprintf(e->pid, sizeof(e->pid), "VDRIVE_PID=%d", (int)ctx->pid);
	snprintf(e->uid, sizeof(e->uid), "VDRIVE_UID=%u",
		 (unsigned int)ctx->uid);
	snprintf(e->gid, sizeof(e->gid), "VDRIVE_GID=%u",
		 (unsigned int)ctx->gid);
	snprintf(e->mntns, sizeof(e->mntns), "VDRIVE_MNTNS=%llu",
		 (unsigned long long)vd_ctx_mntns(ctx));
	sprintf(e->path, "VDRIVE_PATH=/%s", n->path);
	e->env[k++] = e->pid;
	e->env[k++] = e->uid;
	e->env[k++] = e->gid;
	e->env[k++] = e->mntns;
	e->env[k++] = e->path;
	e->env[k] = NULL;
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Start /bin/sh -c TEXT in its own process group, stdout and stderr to
 * the pipes, stdin from /dev/null, in the config file's folder. */
static int spawn_cmd(const struct gen *g, const struct gen_node *n, char **env,
		     int out, int err, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, def;
	char *argv[] = {"/bin/sh", "-c", n->text, NULL};
	int r;

	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGHUP);
	sigaddset(&def, SIGCHLD);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out, 1);
	posix_spawn_file_actions_adddup2(&fa, err, 2);
	posix_spawn_file_actions_addchdir_np(&fa, g->dir);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &def);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP |
					      POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	r = posix_spawn(pid, "/bin/sh", &fa, &at, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return -r;
}

/*
 * Run n's command for the caller and collect its standard output into out.
 * Returns 0, or -EIO with the reason in why (timeout, too much output,
 * exit status, cannot start). Never waits past the time limit: on any
 * failure the command's whole process group is killed and reaped.
 */
static int run_cmd(const struct vd_ctx *ctx, const struct gen *g,
		   const struct gen_node *n, struct vd_buf *out, char *why,
		   size_t wlen)
{
	int op[2] = {-1, -1}, ep[2] = {-1, -1}, status = 0, r, done = 0;
	char errtext[GEN_ERR_KEEP + 1] = "";
	size_t errlen = 0;
	long long deadline = now_ms() + n->timeout_ms;
	struct gen_env env;
	pid_t pid = -1;

	if (make_env(&env, ctx, n))
		return snprintf(why, wlen, "out of memory"), -EIO;
	if (pipe2(op, O_CLOEXEC) || pipe2(ep, O_CLOEXEC)) {
		snprintf(why, wlen, "pipe: %s", strerror(errno));
		r = -EIO;
		goto out;
	}
	r = spawn_cmd(g, n, env.env, op[1], ep[1], &pid);
	close(op[1]);
	close(ep[1]);
	op[1] = ep[1] = -1;
	if (r) {
		snprintf(why, wlen, "cannot start /bin/sh: %s", strerror(-r));
		r = -EIO;
		goto out;
	}
	/* Read both pipes until they close, the deadline or the limit. */
	while (!r && (op[0] >= 0 || ep[0] >= 0)) {
		struct pollfd pf[2] = {{op[0], POLLIN, 0}, {ep[0], POLLIN, 0}};
		long long left = deadline - now_ms();
		char tmp[65536];
		ssize_t got;

		if (left <= 0) {
			snprintf(why, wlen, "no end of output within %u ms",
				 n->timeout_ms);
			r = -ETIMEDOUT;
			break;
		}
		if (poll(pf, 2, (int)left) < 0 && errno != EINTR) {
			r = -errno;
			snprintf(why, wlen, "poll: %s", strerror(errno));
			break;
		}
		for (int k = 0; k < 2 && !r; k++) {
			int *fd = k ? &ep[0] : &op[0];

			if (*fd < 0 || !pf[k].revents)
				continue;
			got = read(*fd, tmp, sizeof(tmp));
			if (got <= 0) {
				if (got < 0 && errno == EINTR)
					continue;
				close(*fd);
				*fd = -1;
			} else if (k == 0) {
				r = vd_buf_add(out, tmp, (size_t)got);
				if (r == -EFBIG)
					snprintf(
						why, wlen,
						"more than %zu bytes of output",
						n->max);
			} else if (errlen < GEN_ERR_KEEP) {
				size_t take =
					(size_t)got < GEN_ERR_KEEP - errlen
						? (size_t)got
						: GEN_ERR_KEEP - errlen;

				memcpy(errtext + errlen, tmp, take);
				errlen += take;
				errtext[errlen] = 0;
			}
		}
	}
	/* Output ended: the exit status, still within the deadline. */
	while (!r) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid) {
			done = 1;
			break;
		}
		if (w < 0 && errno != EINTR) {
			r = -errno;
			snprintf(why, wlen, "waitpid: %s", strerror(errno));
		} else if (now_ms() >= deadline) {
			snprintf(why, wlen, "did not exit within %u ms",
				 n->timeout_ms);
			r = -ETIMEDOUT;
		} else {
			usleep(1000);
		}
	}
	if (!done) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	if (!r && WIFEXITED(status) && WEXITSTATUS(status)) {
		snprintf(why, wlen, "exit status %d", WEXITSTATUS(status));
		r = -EIO;
	} else if (!r && WIFSIGNALED(status)) {
		snprintf(why, wlen, "killed by signal %d", WTERMSIG(status));
		r = -EIO;
	}
	if (r && errlen) {
		size_t used = strlen(why);

		for (size_t i = 0; i < errlen; i++)
			if (errtext[i] == '\n' || errtext[i] == '\r')
				errtext[i] = ' ';
		snprintf(why + used, wlen - used, "; stderr: %s", errtext);
	}
out:
	for (int k = 0; k < 2; k++) {
		if (op[k] >= 0)
			close(op[k]);
		if (ep[k] >= 0)
			close(ep[k]);
	}
	free(env.env);
	free(env.path);
	return r ? -EIO : 0;
}

static int gen_open(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi)
{
	const struct gen *g = ctx->data;
	long i = node_index(g, node);
	struct vd_buf b = {0};
	struct gen_open *h;
	const struct gen_node *n;
	char why[512] = "";
	int r;

	if (i < 0)
		return -ESTALE;
	n = &g->n[i];
	if (n->kind == GEN_DIR)
		return -EISDIR;
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EROFS;
	b.max = n->max;
	if (n->kind == GEN_TEMPLATE) {
		r = run_template(ctx, n, &b);
		if (r == -EFBIG)
			snprintf(why, sizeof(why),
				 "more than %zu bytes of output", n->max);
		if (r)
			r = -EIO;
	} else {
		r = run_cmd(ctx, g, n, &b, why, sizeof(why));
	}
	if (r) {
		vd_log(ctx->drive, "gen: /%s for pid %d uid %u: %s", n->path,
		       (int)ctx->pid, (unsigned int)ctx->uid,
		       why[0] ? why : strerror(-r));
		free(b.p);
		return -EIO;
	}
	h = malloc(sizeof(*h));
	if (!h) {
		free(b.p);
		return -ENOMEM;
	}
	h->p = b.p;
	h->len = b.len;
	fi->fh = (uint64_t)(uintptr_t)h;
	/* Made for this caller: never served from or kept in the cache. */
	fi->direct_io = 1;
	fi->keep_cache = 0;
	return 0;
}

static int gen_read(const struct vd_ctx *ctx, vd_node_t node,
		    struct vd_file *fi, char *buf, size_t size, off_t off)
{
	const struct gen_open *h = (const struct gen_open *)(uintptr_t)fi->fh;

	(void)ctx, (void)node;
	if (off < 0 || (size_t)off >= h->len)
		return 0;
	if (size > h->len - (size_t)off)
		size = h->len - (size_t)off;
	if (size > INT_MAX)
		size = INT_MAX;
	memcpy(buf, h->p + off, size);
	return (int)size;
}

static int gen_release(const struct vd_ctx *ctx, vd_node_t node,
		       struct vd_file *fi)
{
	struct gen_open *h = (struct gen_open *)(uintptr_t)fi->fh;

	(void)ctx, (void)node;
	if (h) {
		free(h->p);
		free(h);
	}
	return 0;
}

static int gen_statfs(const struct vd_ctx *ctx, vd_node_t node,
		      struct statvfs *st)
{
	(void)ctx, (void)node;
	memset(st, 0, sizeof(*st));
	st->f_bsize = 4096;
	st->f_frsize = 4096;
	st->f_namemax = 255;
	st->f_flag = ST_RDONLY;
	return 0;
}

/* The drive is read-only: changes fail as on a read-only mount. */
static int gen_setattr(const struct vd_ctx *ctx, vd_node_t node,
		       struct stat *st, int to_set, struct vd_file *fi)
{
	(void)ctx, (void)node, (void)st, (void)to_set, (void)fi;
	return -EROFS;
}

static int gen_create(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, mode_t mode, struct vd_file *fi,
		      vd_node_t *node, struct stat *st)
{
	(void)ctx, (void)parent, (void)name, (void)mode, (void)fi;
	(void)node, (void)st;
	return -EROFS;
}

static int gen_mkdir(const struct vd_ctx *ctx, vd_node_t parent,
		     const char *name, mode_t mode, vd_node_t *node,
		     struct stat *st)
{
	(void)ctx, (void)parent, (void)name, (void)mode, (void)node, (void)st;
	return -EROFS;
}

static int gen_unlink(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name)
{
	(void)ctx, (void)parent, (void)name;
	return -EROFS;
}

static int gen_rename(const struct vd_ctx *ctx, vd_node_t parent,
		      const char *name, vd_node_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)ctx, (void)parent, (void)name, (void)newparent, (void)newname;
	(void)flags;
	return -EROFS;
}

static const struct vd_ops gen_ops = {
	.flags = VD_OPS_THREAD_SAFE,
	.destroy = gen_destroy,
	.lookup = gen_lookup,
	.getattr = gen_getattr,
	.readdir = gen_readdir,
	.open = gen_open,
	.read = gen_read,
	.release = gen_release,
	.statfs = gen_statfs,
	.setattr = gen_setattr,
	.create = gen_create,
	.mkdir = gen_mkdir,
	.unlink = gen_unlink,
	.rmdir = gen_unlink,
	.rename = gen_rename,
};

static int gen_new(const char *arg, const struct vd_ops **ops, void **data,
		   char *err, size_t errlen)
{
	struct gen *g = calloc(1, sizeof(*g));
	char *abs = NULL, *slash;
	int r;

	if (!g)
		return -ENOMEM;
	if (!arg || !*arg) {
		snprintf(err, errlen, "gen: give the config file: gen:CONFIG");
		r = -EINVAL;
		goto fail;
	}
	abs = realpath(arg, NULL);
	if (!abs) {
		r = -errno;
		snprintf(err, errlen, "gen: %s: %s", arg, strerror(errno));
		goto fail;
	}
	slash = strrchr(abs, '/');
	g->dir = slash == abs ? strdup("/")
			      : strndup(abs, (size_t)(slash - abs));
	if (!g->dir) {
		r = -ENOMEM;
		goto fail;
	}
	g->uid = geteuid();
	g->gid = getegid();
	clock_gettime(CLOCK_REALTIME, &g->loaded);
	/* The root folder, index 0. */
	g->n = calloc(1, sizeof(*g->n));
	if (!g->n || !(g->n[0].name = strdup("")) ||
	    !(g->n[0].path = strdup(""))) {
		r = -ENOMEM;
		goto fail;
	}
	g->n[0].kind = GEN_DIR;
	g->n[0].mode = 0555;
	g->count = 1;
	r = load_config(g, abs, err, errlen);
	if (r)
		goto fail;
	free(abs);
	*ops = &gen_ops;
	*data = g;
	return 0;
fail:
	free(abs);
	gen_free(g);
	return r;
}

const struct vd_source vd_source_gen = {
	.kind = "gen",
	.usage = "gen:CONFIG",
	.help = "read-only files made per open by commands or templates (per "
		"caller)",
	.open = gen_new,
};
