/*
 * main.c - the vdrive command: dispatch to one file per subcommand.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sources.h"

static int cmd_help(int argc, char **argv);

static const struct vd_cmd cmds[] = {
	{"init", cmd_init, usage_init, "make a new, empty store"},
	{"mount", cmd_mount, usage_mount, "mount a drive"},
	{"unmount", cmd_unmount, usage_unmount, "stop a drive and unmount it"},
	{"list", cmd_list, usage_list, "show the live drives and their shares"},
	{"share", cmd_share, usage_share,
	 "share a drive with a container, the host, or over SMB"},
	{"unshare", cmd_unshare, usage_unshare, "end a share"},
	{"help", cmd_help, "usage: vdrive help [COMMAND]\n", "show help"},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fputs("vdrive: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

bool cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
		if (!strcmp(argv[i], "--"))
			break;
	}
	return false;
}

static const struct vd_cmd *find_cmd(const char *name)
{
	if (!strcmp(name, "umount"))
		name = "unmount";
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

static void usage(FILE *f)
{
	fputs("usage: vdrive COMMAND [ARGS]\n\ncommands:\n", f);
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
	fputs("\nsources:\n", f);
	for (size_t i = 0; vd_sources[i]; i++)
		fprintf(f, "  %-16s %s\n", vd_sources[i]->usage,
			vd_sources[i]->help);
	fputs("\n`vdrive COMMAND --help` for a command's options.\n", f);
}

static int cmd_help(int argc, char **argv)
{
	const struct vd_cmd *c;

	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	/* `vdrive help --help` is help's own help. */
	c = cli_wants_help(argc, argv) ? find_cmd("help") : find_cmd(argv[1]);
	if (!c) {
		cli_err("no command '%s' (see `vdrive help`)", argv[1]);
		return 2;
	}
	fputs(c->usage, stdout);
	return 0;
}

/*
 * A password typed into a conninfo ("password=..." or a URI's
 * "user:...@") must not stay readable in /proc/PID/cmdline (ps): keep a
 * private copy for the command and overwrite the original.
 */
static void hide_passwords(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char *p = strstr(argv[i], "password="), *copy, *at, *colon;

		at = strstr(argv[i], "://") ? strchr(argv[i], '@') : NULL;
		if (!p && !at)
			continue;
		copy = strdup(argv[i]);
		if (!copy)
			continue;
		if (p)
			for (p += strlen("password="); *p && *p != ' '; p++)
				*p = '*';
		if (at) {
			colon = strchr(strstr(argv[i], "://") + 3, ':');
			for (p = colon && colon < at ? colon + 1 : at; p < at;
			     p++)
				*p = '*';
		}
		argv[i] = copy;
	}
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	const struct vd_cmd *c;

	hide_passwords(argc, argv);
	/* Called by mount(8) through /sbin/mount.vdrive or mount.fuse.vdrive */
	base = base ? base + 1 : argv[0];
	if (!strncmp(base, "mount.", 6))
		return cli_mount_helper(argc, argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	c = find_cmd(argv[1]);
	if (!c) {
		cli_err("unknown command '%s' (see `vdrive help`)", argv[1]);
		return 2;
	}
	if (c->run != cmd_help && cli_wants_help(argc - 1, argv + 1)) {
		fputs(c->usage, stdout);
		return 0;
	}
	return c->run(argc - 1, argv + 1);
}
