/*
 * list.c - `vdrive list [--json]`.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

const char usage_list[] = "usage: vdrive list [--json]\n"
			  "\n"
			  "Show every drive recorded in the registry: name, "
			  "source, mount point,\n"
			  "container, pid and state (running, or dead when its "
			  "process is gone),\n"
			  "then each place it is shared: a container or the "
			  "host (where it is\n"
			  "attached) or SMB (its address), read-only or not, "
			  "and the share's state.\n";

/* JSON string with the escapes the values can need. */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int print_json(const struct vd_rec *r, void *arg)
{
	int *n = arg;

	fputs((*n)++ ? ",\n  {" : "\n  {", stdout);
	fputs("\"name\": ", stdout);
	json_str(r->name);
	fputs(", \"source\": ", stdout);
	json_str(r->source);
	fputs(", \"mountpoint\": ", stdout);
	json_str(r->mountpoint);
	fputs(", \"container\": ", stdout);
	json_str(r->container[0] ? r->container : "host");
	printf(", \"pid\": %d, \"state\": \"%s\", \"shares\": [", (int)r->pid,
	       cli_pid_alive(r->pid) ? "running" : "dead");
	for (int i = 0; i < r->nshares; i++) {
		const struct cli_share *s = &r->shares[i];

		fputs(i ? ", {\"kind\": " : "{\"kind\": ", stdout);
		json_str(s->kind);
		fputs(", \"target\": ", stdout);
		json_str(s->label);
		fputs(!strcmp(s->kind, "smb") ? ", \"address\": "
					      : ", \"path\": ",
		      stdout);
		json_str(s->path);
		printf(", \"read_only\": %s, \"state\": ",
		       s->ro ? "true" : "false");
		json_str(s->state);
		fputs("}", stdout);
	}
	fputs("]}", stdout);
	return 0;
}

static int print_row(const struct vd_rec *r, void *arg)
{
	int *n = arg;

	if ((*n)++ == 0)
		printf("%-16s %-24s %-32s %-12s %-8s %s\n", "NAME", "SOURCE",
		       "MOUNTPOINT", "CONTAINER", "PID", "STATE");
	printf("%-16s %-24s %-32s %-12s %-8d %s\n", r->name, r->source,
	       r->mountpoint, r->container[0] ? r->container : "host",
	       (int)r->pid, cli_pid_alive(r->pid) ? "running" : "dead");
	/* Every place the drive is attached, and every network share. */
	for (int i = 0; i < r->nshares; i++)
		printf("  shared: %-9s %-20s %s%s (%s)\n", r->shares[i].kind,
		       r->shares[i].label, r->shares[i].path,
		       r->shares[i].ro ? " read-only" : "", r->shares[i].state);
	return 0;
}

int cmd_list(int argc, char **argv)
{
	bool json = false;
	int n = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else {
			cli_err("list: unknown argument '%s'\n%s", argv[i],
				usage_list);
			return 2;
		}
	}
	if (json) {
		fputs("[", stdout);
		cli_rec_each(print_json, &n);
		fputs(n ? "\n]\n" : "]\n", stdout);
	} else {
		cli_rec_each(print_row, &n);
		if (n == 0)
			puts("no drives");
	}
	return 0;
}
