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
			  "process is gone).\n";

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
	printf(", \"pid\": %d, \"state\": \"%s\"}", (int)r->pid,
	       cli_pid_alive(r->pid) ? "running" : "dead");
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
