/*
 * remote.c - what the backing folder's file system allows.
 *
 * Whether it may answer slowly (network and FUSE file systems: no
 * VD_OPS_QUICK), and whether files can be reopened from handles there.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "dir/dir.h"

/* Whether the folder's file system may answer slowly (network, FUSE). */
bool dir_remote_fs(int fd)
{
	static const unsigned long remote[] = {
		0x6969 /* NFS */,      0xFF534D42 /* CIFS */,
		0xFE534D42 /* SMB2 */, 0x517B /* SMB */,
		0x65735546 /* FUSE */, 0x01021997 /* 9P */,
		0x00C36400 /* Ceph */, 0x5346414F /* AFS */,
		0x47504653 /* GPFS */, 0x0BD00BD0 /* Lustre */,
		0x73757245 /* Coda */, 0x564C /* NCP */,
	};
	struct statfs sf;

	if (fstatfs(fd, &sf) != 0)
		return true;
	for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++)
		if ((unsigned long)sf.f_type == remote[i])
			return true;
	return false;
}

/*
 * Whether files can be reopened from handles here: the file system makes
 * them and we may use them (CAP_DAC_READ_SEARCH). If so, registers the
 * root's mount for open_by_handle_at().
 */
bool dir_handles_work(struct dir_src *s)
{
	union dir_fh h;
	int mnt_id, mfd, fd;

	h.h.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(s->root.fd, "", &h.h, &mnt_id, AT_EMPTY_PATH) < 0)
		return false;
	mfd = openat(s->root.fd, ".", MOUNT_FD_FLAGS);
	if (mfd < 0)
		return false;
	fd = open_by_handle_at(mfd, &h.h, O_PATH | O_CLOEXEC);
	if (fd < 0) {
		close(mfd);
		return false;
	}
	close(fd);
	s->mounts[0].id = mnt_id;
	s->mounts[0].fd = mfd;
	s->nmounts = 1;
	return true;
}
