/*
 * init.c - `vdrive init KIND:ARG`: make a new, empty store for sources
 * that need one made before the first mount (postgres:). Sources that
 * make their store on first open (sqlite:) or need none say so.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sources.h"

const char usage_init[] =
	"usage: vdrive init KIND:ARG\n"
	"\n"
	"Make a new, empty store, e.g. the tables of a postgres: drive in an\n"
	"existing database: vdrive init 'postgres:host=db dbname=files'.\n"
	"Credentials come from a libpq service file, PGPASSFILE or the\n"
	"environment; a password in the conninfo is never shown.\n";

int cmd_init(int argc, char **argv)
{
	const struct vd_source *src;
	char msg[1024] = "", shown[512];
	int r;

	if (argc != 2) {
		fputs(usage_init, stderr);
		return 2;
	}
	src = vd_source_find(argv[1]);
	if (!src || !strchr(argv[1], ':')) {
		cli_err("'%s' is not KIND:ARG with a known kind (see `vdrive "
			"help`)",
			argv[1]);
		return 2;
	}
	vd_source_shown(argv[1], shown, sizeof(shown));
	if (!src->init) {
		cli_err("%s: nothing to initialise (%s: makes its store when "
			"first mounted, or needs none)",
			shown, src->kind);
		return 2;
	}
	r = src->init(strchr(argv[1], ':') + 1, msg, sizeof(msg));
	if (r) {
		cli_err("%s", msg[0] ? msg : shown);
		return 1;
	}
	printf("initialised %s\n", shown);
	return 0;
}
