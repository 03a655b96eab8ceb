/*
 * lib_test.c - libvdrive's own parts, without a kernel mount: the node
 * table (nodes.c), the option parser (through vd_drive_set_options), and
 * the gate's admit/revoke list, hook and verdict cache (gate.c, through
 * vd_gate_check). Linked against lib/'s objects, not the shared library,
 * so the hidden internals are reachable. fuse_req_ctx() is wrapped
 * (-Wl,--wrap): a "request" here is a pointer to the fuse_ctx to answer.
 */
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"
#include "vdrive_i.h"

const struct fuse_ctx *__wrap_fuse_req_ctx(fuse_req_t req);
const struct fuse_ctx *__wrap_fuse_req_ctx(fuse_req_t req)
{
	return (const struct fuse_ctx *)req;
}

/* A request from pid, as vd_gate_check() sees it. */
static int gate(struct vd_drive *d, pid_t pid, bool write)
{
	struct fuse_ctx fc = {.pid = pid};

	return vd_gate_check(d, (fuse_req_t)(void *)&fc, write);
}

static int hook_calls, hook_answer;
static uint64_t hook_ino;

static int hook(void *arg, pid_t pid, uint64_t mntns_ino)
{
	(void)arg, (void)pid;
	hook_calls++;
	hook_ino = mntns_ino;
	return hook_answer;
}

static void test_nodes(void)
{
	struct vd_nodes t;
	struct vd_entry *a, *b, *e;
	bool gone;
	int n = 5000, same = 1;

	IS(vd_nodes_init(&t), 0, "nodes: init");
	ok(vd_nodes_get(&t, FUSE_ROOT_ID) == &t.root &&
		   vd_nodes_ref(&t, VD_ROOT) == &t.root &&
		   vd_nodes_ino(&t, VD_ROOT) == FUSE_ROOT_ID,
	   "nodes: the root is FUSE_ROOT_ID, never counted");
	ok(!vd_nodes_unref(&t, &t.root, 100), "nodes: the root is never gone");
	IS(vd_nodes_ino(&t, 42), 0, "nodes: an unknown node has no nodeid");
	a = vd_nodes_ref(&t, 42);
	b = vd_nodes_ref(&t, 42);
	ok(a && a == b && a->nlookup == 2 && a->node == 42,
	   "nodes: two lookups of a node share one entry, counted twice");
	ok(vd_nodes_get(&t, vd_nodes_ino(&t, 42)) == a,
	   "nodes: nodeid and entry map both ways");
	gone = vd_nodes_unref(&t, a, 1);
	ok(!gone && a->nlookup == 1, "nodes: a forget of one keeps the entry");
	gone = vd_nodes_unref(&t, a, 5);
	ok(gone && vd_nodes_ino(&t, 42) == 0,
	   "nodes: forgetting more than held drops it (count clamps at 0)");
	/* Past 2 per bucket the table grows; every entry must survive it. */
	for (int i = 1; i <= n; i++)
		if (!vd_nodes_ref(&t, (vd_node_t)i * 7919))
			same = 0;
	for (int i = 1; i <= n && same; i++) {
		e = vd_nodes_get(&t, vd_nodes_ino(&t, (vd_node_t)i * 7919));
		same = e && e->node == (vd_node_t)i * 7919 && e->nlookup == 1;
	}
	ok(same && t.count == (size_t)n && t.nbuckets > 1024,
	   "nodes: %d entries, all found after growing to %zu buckets", n,
	   t.nbuckets);
	vd_nodes_fini(&t);
}

static void test_options(const struct vd_ops *o)
{
	struct vd_drive *d;

	IS(vd_drive_new(o, 0, NULL, &d), -EINVAL, "new: op_size 0: EINVAL");
	IS(vd_drive_new(o, sizeof(*o), NULL, &d), 0, "new");
	IS(vd_drive_set_options(d, ""), 0, "options: empty");
	IS(vd_drive_set_options(d, "ro,threads=8,entry_timeout=2.5,fsname=x,"
				   "io_uring=no,readdirplus=auto,max_io=65536"),
	   0, "options: a good list");
	ok(d->ro && d->threads == 8 && d->entry_timeout == 2.5 &&
		   !strcmp(d->fsname, "x") && d->io_uring == 0 &&
		   d->readdirplus == 2 && d->max_io == 65536,
	   "options: each took effect");
	IS(vd_drive_set_options(d, "rw,no_perm_check"), 0, "options: flags");
	ok(!d->ro && !d->default_permissions, "options: rw, no_perm_check");
	IS(vd_drive_set_options(d, "bogus"), -EINVAL,
	   "options: unknown: EINVAL");
	ok(strstr(vd_drive_error(d), "unknown option 'bogus'") != NULL,
	   "options: ... and says which (%s)", vd_drive_error(d));
	IS(vd_drive_set_options(d, "ro"), 0, "options: a good one after it");
	ok(!strcmp(vd_drive_error(d), ""),
	   "options: ... leaves no stale message (%s)", vd_drive_error(d));
	IS(vd_drive_set_options(d, "threads=lots"), -EINVAL,
	   "options: bad number: EINVAL");
	ok(strstr(vd_drive_error(d), "'threads': 'lots'") != NULL,
	   "options: ... and says which (%s)", vd_drive_error(d));
	IS(vd_drive_set_options(d, "threads=100000"), -EINVAL,
	   "options: out of range: EINVAL");
	IS(vd_drive_set_options(d, "ro=maybe"), -EINVAL,
	   "options: bad yes/no: EINVAL");
	IS(vd_drive_set_options(d, "io_uring=sometimes"), -EINVAL,
	   "options: bad yes/no/auto: EINVAL");
	IS(vd_drive_set_options(d, "threads=4,bogus,ro"), -EINVAL,
	   "options: one bad option fails the list");
	IS(vd_drive_set_options(NULL, "ro"), -EINVAL, "options: no drive");
	IS(vd_drive_set_options(d, NULL), -EINVAL, "options: no list");
	vd_drive_free(d);
}

/* A caller built against a newer, larger table: accepted, with a warning
 * on stderr, and the members this library knows are used. */
static void test_newer_table(void)
{
	struct {
		struct vd_ops o;
		char newer[64];
	} big;
	struct vd_drive *d;

	memset(&big, 0, sizeof(big));
	big.o.flags = VD_OPS_EXCLUSIVE;
	memset(big.newer, 0xff, sizeof(big.newer));
	IS(vd_drive_new(&big.o, sizeof(big), NULL, &d), 0,
	   "new: a larger table is accepted");
	ok(d->ops.flags == VD_OPS_EXCLUSIVE && d->entry_timeout > 1.0,
	   "new: ... and its known members are used");
	vd_drive_free(d);
}

static void test_gate(const struct vd_ops *o)
{
	uint64_t own = vd_ns_ino_of("/proc/self/ns/mnt");
	struct vd_drive *d;
	pid_t me = getpid(), gone;
	int r, full = 0;

	IS(vd_drive_new(o, sizeof(*o), NULL, &d), 0, "gate: new");
	ok(own != 0, "gate: our mount namespace is %llu",
	   (unsigned long long)own);
	IS(gate(d, me, false), -EACCES, "gate: nobody admitted: EACCES");
	IS(gate(d, 0, false), -EACCES,
	   "gate: a caller in another pid namespace (pid 0): EACCES");
	IS(vd_drive_admit(d, 0, 0), 0, "gate: admit our namespace");
	ok(vd_gate_admitted(d, own) && d->gate, "gate: ... it is listed");
	IS(gate(d, me, false), 0, "gate: our read passes");
	IS(gate(d, me, true), 0, "gate: our write passes");
	IS(vd_drive_admit(d, 0, VD_ADMIT_READONLY), 0,
	   "gate: admit it again, read-only");
	IS(gate(d, me, true), -EROFS,
	   "gate: the cached verdict went stale: a write is EROFS");
	IS(gate(d, me, false), 0, "gate: a read still passes");
	IS(vd_drive_revoke(d, own), 0, "gate: revoke");
	IS(gate(d, me, false), -EACCES, "gate: revoked at once: EACCES");
	IS(vd_drive_revoke(d, own), -ENOENT, "gate: revoke again: ENOENT");
	IS(vd_drive_revoke(d, 0), -EINVAL, "gate: revoke 0: EINVAL");
	IS(vd_drive_admit(d, 1, 4), -EINVAL, "gate: unknown flags: EINVAL");

	hook_answer = VD_ADMIT_READONLY | 8;
	IS(vd_drive_set_gate_hook(d, hook, NULL), 0, "gate: set a hook");
	r = gate(d, me, true);
	ok(r == -EROFS && hook_calls == 1 && hook_ino == own,
	   "gate: the hook admits read-only (%d, %d calls)", r, hook_calls);
	gate(d, me, false);
	gate(d, me, true);
	IS(hook_calls, 1, "gate: its verdict is cached");
	hook_answer = -1;
	IS(vd_drive_set_gate_hook(d, hook, NULL), 0, "gate: set it again");
	IS(gate(d, me, false), -EACCES,
	   "gate: a new hook is asked anew; a negative answer is EACCES");
	IS(hook_calls, 2, "gate: ... once more");
	IS(vd_drive_set_gate_hook(d, NULL, NULL), 0, "gate: no hook");

	gone = fork();
	if (gone == 0)
		_exit(0);
	waitpid(gone, NULL, 0);
	IS(gate(d, gone, false), -EACCES,
	   "gate: a process that is gone: EACCES");

	for (uint64_t i = 1; i <= VD_MAX_ALLOWED; i++)
		if (vd_drive_admit(d, i, 0))
			full = 1;
	ok(!full, "gate: admit %d namespaces", VD_MAX_ALLOWED);
	IS(vd_drive_admit(d, VD_MAX_ALLOWED + 1, 0), -ENOSPC,
	   "gate: one more: ENOSPC");
	IS(vd_drive_admit(d, 3, VD_ADMIT_READONLY), 0,
	   "gate: a listed one changes in place");
	ok(d->nallowed == VD_MAX_ALLOWED && d->nreadonly == 1,
	   "gate: ... the list keeps %d entries, 1 read-only", VD_MAX_ALLOWED);
	vd_drive_free(d);
}

int main(void)
{
	static const struct vd_ops o = {.flags = VD_OPS_THREAD_SAFE};

	test_nodes();
	test_options(&o);
	test_newer_table();
	test_gate(&o);
	return tap_done();
}
