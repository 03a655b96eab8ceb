/*
 * mounthelper.c - `mount -t vdrive` and `mount -t fuse.vdrive`.
 *
 * mount(8) runs /sbin/mount.TYPE SOURCE MOUNTPOINT [-sfnv] [-o OPTS]
 * [-t TYPE]; `make install` makes /sbin/mount.vdrive and
 * /sbin/mount.fuse.vdrive links to the vdrive binary, which lands here
 * when called by one of those names. It sorts mount(8)'s options the way
 * mount.fuse3 does and runs `vdrive mount SOURCE MOUNTPOINT -o OPTS`:
 *  - ignored: user, users, nouser, auto, noauto, _netdev, nofail,
 *    defaults, comment=..., x-... (fstab's and systemd's, not the drive's);
 *  - suid and dev are added unless nosuid / nodev is given, as mount.fuse3
 *    and every other file system mount(8) mounts do (vdrive mount alone
 *    keeps libfuse's nosuid,nodev);
 *  - name=NAME names the drive for `vdrive list/unmount`;
 *  - everything else must be a vdrive option (`vdrive mount --help`,
 *    which takes rw, ro, noexec, noatime and the other per-mount flags):
 *    an unknown one fails the mount with nothing mounted, unless -s
 *    (sloppy) asks to drop it with a warning.
 * `umount MOUNTPOINT` needs no helper: the drive process sees its mount go
 * and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vdrive.h"

static const char *const ignored[] = {
	"",	  "user",    "users",  "nouser",   "auto",
	"noauto", "_netdev", "nofail", "defaults", NULL,
};

/* The help, also the MOUNT HELPER section of vdrive(1). */
static void usage(FILE *f)
{
	fputs("usage: mount -t vdrive SOURCE MOUNTPOINT [-o OPTS]\n"
	      "       mount -t fuse.vdrive SOURCE MOUNTPOINT [-o OPTS]\n"
	      "       mount.vdrive SOURCE MOUNTPOINT [-sfnv] [-o OPTS]\n"
	      "\n"
	      "mount(8)'s helper, installed as /sbin/mount.vdrive and\n"
	      "/sbin/mount.fuse.vdrive: runs `vdrive mount SOURCE MOUNTPOINT "
	      "-o "
	      "OPTS`.\n"
	      "An /etc/fstab line:\n"
	      "  sqlite:/srv/app.db /srv/files fuse.vdrive "
	      "_netdev,x-systemd.automount,nofail 0 0\n"
	      "`umount MOUNTPOINT` ends the drive.\n"
	      "\n"
	      "  -o OPTS        `vdrive mount` options (mount(8)'s rw, ro, "
	      "noexec,\n"
	      "                 noatime, nosuid, nodev... among them); "
	      "name=NAME\n"
	      "                 names the drive; suid,dev unless nosuid or "
	      "nodev\n"
	      "                 (as mount.fuse3); ignored:",
	      f);
	for (int i = 1; ignored[i]; i++)
		fprintf(f, "%s%s", i % 5 ? " " : "\n                 ",
			ignored[i]);
	fputs(" comment=... x-...;\n"
	      "                 anything else fails the mount\n"
	      "  -s             sloppy: drop unknown options with a warning\n"
	      "  -f             fake: check the options, mount nothing\n"
	      "  -n, -v         accepted, no effect\n",
	      f);
}

static bool is_ignored(const char *opt)
{
	if (!strncmp(opt, "x-", 2) || !strncmp(opt, "comment=", 8))
		return true;
	for (int i = 0; ignored[i]; i++)
		if (!strcmp(opt, ignored[i]))
			return true;
	return false;
}

/* Whether libvdrive takes opt; its message goes to err. */
static bool drive_takes(const char *opt, char *err, size_t n)
{
	static const struct vd_ops none;
	struct vd_drive *d;
	bool ok;

	if (vd_drive_new(&none, sizeof(none), NULL, &d) != 0) {
		snprintf(err, n, "out of memory");
		return false;
	}
	ok = vd_drive_set_options(d, opt) == 0;
	if (!ok)
		snprintf(err, n, "%s", vd_drive_error(d));
	vd_drive_free(d);
	return ok;
}

/* Append opt to the comma-separated list in buf. */
static int add(char *buf, size_t n, const char *opt)
{
	size_t len = strlen(buf);

	if (len + strlen(opt) + 2 > n)
		return -1;
	snprintf(buf + len, n - len, "%s%s", len ? "," : "", opt);
	return 0;
}

int cli_mount_helper(int argc, char **argv)
{
	const char *prog =
		strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	char opts[4096] = "", name[128] = "", err[512];
	const char *in = NULL;
	bool sloppy = false, fake = false, suid = true, dev = true;
	char *copy, *tok, *save = NULL, *margv[8];
	int r, n = 0;

	if (argc == 2 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc < 3 || argv[1][0] == '-') {
		usage(stderr);
		return 1;
	}
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-o") && i + 1 < argc) {
			in = argv[++i];
		} else if (!strcmp(a, "-t") && i + 1 < argc) {
			a = argv[++i];
			if (strcmp(a, "vdrive") && strcmp(a, "fuse.vdrive")) {
				fprintf(stderr, "%s: type '%s' is not vdrive\n",
					prog, a);
				return 1;
			}
		} else if (a[0] == '-' && a[1] &&
			   strspn(a + 1, "sfnvrw") == strlen(a + 1)) {
			sloppy |= strchr(a, 's') != NULL;
			fake |= strchr(a, 'f') != NULL;
			/* -r / -w from an old mount(8): as -o ro / -o rw. */
			if (strchr(a, 'r'))
				add(opts, sizeof(opts), "ro");
			if (strchr(a, 'w'))
				add(opts, sizeof(opts), "rw");
		} else {
			fprintf(stderr,
				"%s: unknown argument '%s' (mount(8) helper "
				"flags: -s -f -n -v -o OPTS)\n",
				prog, a);
			return 1;
		}
	}

	copy = strdup(in ? in : "");
	if (!copy)
		return 1;
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (is_ignored(tok))
			continue;
		if (!strncmp(tok, "name=", 5)) {
			snprintf(name, sizeof(name), "%s", tok + 5);
			continue;
		}
		if (!drive_takes(tok, err, sizeof(err))) {
			if (sloppy) {
				fprintf(stderr, "%s: ignoring %s (-s)\n", prog,
					err);
				continue;
			}
			fprintf(stderr,
				"%s: %s (vdrive's options: `vdrive mount "
				"--help`; mount(8)'s own: rw, ro, noexec, "
				"noatime, nosuid, nodev, _netdev, nofail, "
				"x-systemd.*, ...)\n",
				prog, err);
			free(copy);
			return 1;
		}
		if (!strcmp(tok, "nosuid"))
			suid = false;
		else if (!strcmp(tok, "nodev"))
			dev = false;
		r = add(opts, sizeof(opts), tok);
		if (r) {
			fprintf(stderr, "%s: options too long\n", prog);
			free(copy);
			return 1;
		}
	}
	free(copy);
	if (dev && add(opts, sizeof(opts), "dev"))
		return 1;
	if (suid && add(opts, sizeof(opts), "suid"))
		return 1;
	if (fake)
		return 0;
	margv[n++] = "mount";
	margv[n++] = argv[1];
	margv[n++] = argv[2];
	margv[n++] = "-o";
	margv[n++] = opts;
	if (name[0]) {
		margv[n++] = "--name";
		margv[n++] = name;
	}
	margv[n] = NULL;
	return cmd_mount(n, margv) ? 1 : 0;
}
