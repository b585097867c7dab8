/* Containers of pods with a user namespace of their own: the rootfs an overlay of idmapped layers,
 * and whether this host can make one (the probe behind ctr_handler_user_namespaces()).
 *
 * overlayfs refuses to be idmapped itself, and an idmapped upper directory would have it create its
 * work files as the node's root, which the mapping lacks. So, as containerd does: each layer is an
 * idmapped mount (the pod's user namespace: on-disk 0 is the pod's root), the overlay is made over
 * them, and the upper directory belongs to the pod's root on the host (what the container writes
 * is stored under its host IDs). overlayfs clones the layers' mounts privately, but only from
 * attached mounts: they are attached in a mount namespace of the child's own, the overlay is made
 * there, and a detached copy of it is moved into the daemon's mount namespace. Nothing but the
 * overlay is left, and a child killed half way leaves nothing (its namespace dies with it). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "ctr-internal.h"
#include "fd-util.h"
#include "log.h"
#include "macro.h"

/* An idmapped clone of path's mount (detached), mapped through the user namespace userns_fd. */
static int idmapped_clone(const char *path, int userns_fd) {
        struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t) userns_fd };
        int fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);

        if (fd < 0)
                return child_fail(errno, "clone the mount of %s", path);
        if (mount_setattr(fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
                int r = child_fail(errno, "idmap the mount of %s (its file system may not support idmapped mounts)", path);
                close(fd);
                return r;
        }
        return fd;
}

/* In a mount namespace of our own (from here on nothing we mount is seen outside): a tmpfs on
 * scratch with layer i attached at scratch/<i>, and the overlay of them at scratch/m, returned as
 * a detached clone. */
static int overlay_in_private(const char *scratch, const int *layers, size_t n_layers, const char *upper,
                              const char *work, int *ret) {
        _cleanup_free_ char *options = NULL, *merged = NULL;
        size_t len = 0;
        FILE *f;
        int fd;

        if (unshare(CLONE_NEWNS) < 0)
                return child_fail(errno, "unshare the mount namespace");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return child_fail(errno, "make the mount namespace private");
        if (mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") < 0)
                return child_fail(errno, "mount a scratch tmpfs on %s", scratch);
        f = open_memstream(&options, &len);
        if (!f)
                return -ENOMEM;
        fputs("lowerdir=", f);
        for (size_t i = 0; i < n_layers; i++) {
                char dir[4096];
                snprintf(dir, sizeof dir, "%s/%zu", scratch, i);
                if (mkdir(dir, 0700) < 0 || move_mount(layers[i], "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
                        int r = child_fail(errno, "attach layer %zu at %s", i, dir);
                        fclose(f);
                        return r;
                }
                fprintf(f, "%s%s", i ? ":" : "", dir);
        }
        fprintf(f, ",upperdir=%s,workdir=%s", upper, work);
        if (fclose(f) != 0 || !options || asprintf(&merged, "%s/m", scratch) < 0)
                return -ENOMEM;
        if (strlen(options) >= (size_t) sysconf(_SC_PAGESIZE))
                return child_fail(E2BIG, "too many layers for one overlay mount (%zu bytes of options)", strlen(options));
        if (mkdir(merged, 0700) < 0)
                return child_fail(errno, "create %s", merged);
        if (mount("overlay", merged, "overlay", MS_NODEV, options) < 0)
                return child_fail(errno, "mount the overlay of idmapped layers");
        fd = open_tree(AT_FDCWD, merged, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (fd < 0)
                return child_fail(errno, "clone the overlay's mount");
        *ret = fd;
        return 0;
}

/* The CRI's mounts, idmapped where their file systems allow it, so that what is root's on the host
 * is the pod's root's inside (and what it writes is root's on the host), as containerd does. One
 * that cannot be is mounted as it is (ctr_volume_source() finds no mount): no failure. */
static void idmap_volumes(const CtrRootfs *r, int userns) {
        struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t) userns },
                          ro = { .attr_set = MOUNT_ATTR_RDONLY };

        if (r->n_volumes == 0)
                return;
        /* Only the node's root passes: the clones are the volumes themselves. The runtime opens a
         * bind mount's source before it joins the user namespace (runc does), unlike the rootfs,
         * which it reaches as the pod's root: the bundle is that one's, this directory is not. */
        if ((mkdir(r->volumes_dir, 0700) < 0 && errno != EEXIST) || chmod(r->volumes_dir, 0700) < 0) {
                (void) child_fail(errno, "create %s", r->volumes_dir);
                return;
        }
        for (size_t i = 0; i < r->n_volumes; i++) {
                _cleanup_close_ int fd = -EBADF;
                char at[4096];
                struct stat st;

                if (!r->volumes[i])
                        continue;
                if (stat(r->volumes[i], &st) < 0) {
                        /* ctr-oci.c would make it: a directory, as containerd does. */
                        if (errno != ENOENT || mkdir_p(r->volumes[i], 0755) < 0 || stat(r->volumes[i], &st) < 0)
                                continue;
                }
                snprintf(at, sizeof at, "%s/%zu", r->volumes_dir, i);
                fd = open_tree(AT_FDCWD, r->volumes[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
                if (fd < 0 || mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
                        fprintf(stderr, "mount %s as it is: idmapping it failed: %s\n", r->volumes[i], strerror(errno));
                        continue;
                }
                /* A read-only mount's clone is too, with its submounts where the CRI's are (runc's
                 * bind only makes its own mount read-only, not the one it binds). */
                if (r->readonly[i] && mount_setattr(fd, "", AT_EMPTY_PATH | (r->readonly[i] > 1 ? AT_RECURSIVE : 0),
                                                    &ro, sizeof ro) < 0) {
                        fprintf(stderr, "mount %s as it is: making its clone read-only failed: %s\n", r->volumes[i],
                                strerror(errno));
                        continue;
                }
                if (S_ISDIR(st.st_mode) ? mkdir(at, 0700) < 0 : mknod(at, S_IFREG | 0600, 0) < 0)
                        continue;
                if (move_mount(fd, "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
                        fprintf(stderr, "mount %s as it is: attaching it failed: %s\n", r->volumes[i], strerror(errno));
                        (void) (S_ISDIR(st.st_mode) ? rmdir(at) : unlink(at));
                }
        }
}

char *ctr_volume_source(const Container *c, size_t i) {
        _cleanup_free_ char *dir = ctr_path(c, true, "volumes");
        struct statx stx;
        char *p;

        if (!dir || asprintf(&p, "%s/%zu", dir, i) < 0)
                return NULL;
        /* Only a mount the mount child made: no file system's file of the same name. */
        if (statx(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0 ||
            !(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) || !(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
                free(p);
                return NULL;
        }
        return p;
}

int ctr_volumes_umount(const char *volumes_dir) {
        DIR *d = opendir(volumes_dir);
        struct dirent *de;
        int r = 0;

        if (!d)
                return errno == ENOENT ? 0 : child_fail(errno, "open %s", volumes_dir);
        while ((de = readdir(d))) {
                char p[4096];
                if (de->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof p, "%s/%s", volumes_dir, de->d_name);
                if (umount2(p, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
                        r = child_fail(errno, "unmount %s", p);
                        continue;
                }
                /* An empty mount point: nothing of the volume's is removed, whatever this is. */
                if (rmdir(p) < 0 && (errno != ENOTDIR || unlink(p) < 0) && errno != ENOENT)
                        r = child_fail(errno, "remove %s", p);
        }
        closedir(d);
        if (r >= 0 && rmdir(volumes_dir) < 0 && errno != ENOENT)
                r = child_fail(errno, "remove %s", volumes_dir);
        return r;
}

int ctr_rootfs_mount_idmapped(const CtrRootfs *r) {
        _cleanup_close_ int userns = -EBADF, mntns = -EBADF, overlay = -EBADF;
        _cleanup_free_ char *lower = strdup(r->lower);
        int layers[128], ret = 0;
        size_t n = 0;

        if (!lower)
                return -ENOMEM;
        userns = open(r->userns, O_RDONLY | O_CLOEXEC);
        if (userns < 0)
                return child_fail(errno, "open the pod's user namespace %s", r->userns);
        mntns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        if (mntns < 0)
                return child_fail(errno, "open our mount namespace");
        /* The pod's root owns the top of the upper directory: the rootfs's "/" is its. */
        if (chown(r->upper, r->root_uid, r->root_gid) < 0)
                return child_fail(errno, "chown %s", r->upper);
        for (char *p = lower, *l; ret >= 0 && (l = strsep(&p, ":"));) {
                if (n == ELEMENTSOF(layers)) {
                        ret = child_fail(E2BIG, "more than %zu layers", ELEMENTSOF(layers));
                        break;
                }
                ret = idmapped_clone(l, userns);
                if (ret >= 0)
                        layers[n++] = ret;
        }
        if (ret >= 0)
                ret = overlay_in_private(r->target, layers, n, r->upper, r->work, &overlay);
        for (size_t i = 0; i < n; i++)
                close(layers[i]);
        if (ret < 0)
                return ret;
        if (setns(mntns, CLONE_NEWNS) < 0)
                return child_fail(errno, "return to the daemon's mount namespace");
        if (move_mount(overlay, "", AT_FDCWD, r->target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return child_fail(errno, "mount the overlay on %s", r->target);
        idmap_volumes(r, userns);
        return 0;
}

/* --- the probe ----------------------------------------------------------------------------------- */

/* A user namespace mapping 65536 IDs, held by a child until we have its fd. */
static int probe_userns(void) {
        static const char map[] = "0 1879048192 65536\n"; /* any range: nothing is owned through it */
        int p[2], r = 0;
        char path[64], c = 0;
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
                return child_fail(errno, "pipe");
        pid = fork();
        if (pid < 0)
                return child_fail(errno, "fork");
        if (pid == 0) {
                close(p[0]);
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || unshare(CLONE_NEWUSER) < 0)
                        _exit(1);
                if (write(p[1], &c, 1) != 1)
                        _exit(1);
                pause();
                _exit(0);
        }
        close(p[1]);
        if (read(p[0], &c, 1) != 1)
                r = child_fail(EPERM, "cannot make a user namespace");
        close(p[0]);
        for (const char *const *f = (const char *const[]) { "uid_map", "gid_map", NULL }; r >= 0 && *f; f++) {
                int m;
                snprintf(path, sizeof path, "/proc/%d/%s", (int) pid, *f);
                m = open(path, O_WRONLY | O_CLOEXEC);
                if (m < 0 || write(m, map, strlen(map)) != (ssize_t) strlen(map))
                        r = child_fail(errno, "write %s", path);
                if (m >= 0)
                        close(m);
        }
        if (r >= 0) {
                snprintf(path, sizeof path, "/proc/%d/ns/user", (int) pid);
                r = open(path, O_RDONLY | O_CLOEXEC);
                if (r < 0)
                        r = child_fail(errno, "open %s", path);
        }
        kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
        return r;
}

/* The runtime reaches the bundle in the state directory as the pod's root, an unprivileged user
 * on the host: every directory above it must be searchable by others (/run is). */
static int searchable(const char *dir) {
        _cleanup_free_ char *p = strdup(dir);
        struct stat st;

        if (!p)
                return -ENOMEM;
        for (char *slash = p + strlen(p); slash; slash = strrchr(p, '/')) {
                *slash = '\0';
                const char *d = p[0] ? p : "/";
                if (stat(d, &st) < 0)
                        return child_fail(errno, "stat %s", d);
                if (!(st.st_mode & S_IXOTH)) {
                        fprintf(stderr, "%s (mode %04o) is not searchable by others, as the pods' users must reach the "
                                "state directory %s\n", d, (unsigned) (st.st_mode & 07777), dir);
                        return -EACCES;
                }
                if (!p[0])
                        break;
        }
        return 0;
}

/* Does what a container's mount does, in a mount namespace of its own: the root directory's file
 * system (where the layers are) idmapped, an overlay over it on a scratch tmpfs. */
static int probe_child(void *userdata) {
        const CtrTable *t = userdata;
        _cleanup_close_ int userns = -EBADF, overlay = -EBADF;
        _cleanup_free_ char *upper = NULL, *work = NULL, *scratch = NULL;
        int layer, r;

        if ((r = searchable(t->env.state_dir)) < 0)
                return r;
        userns = probe_userns();
        if (userns < 0)
                return userns;
        layer = idmapped_clone(t->env.root_dir, userns);
        if (layer < 0)
                return layer;
        /* The upper and work directories are on the scratch tmpfs, made once it is mounted: the
         * paths are known before. */
        if (asprintf(&upper, "%s/u", t->env.state_dir) < 0 || asprintf(&work, "%s/w", t->env.state_dir) < 0)
                return -ENOMEM;
        if (unshare(CLONE_NEWNS) < 0)
                return child_fail(errno, "unshare the mount namespace");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return child_fail(errno, "make the mount namespace private");
        if (mount("tmpfs", t->env.state_dir, "tmpfs", 0, "mode=0700") < 0)
                return child_fail(errno, "mount a scratch tmpfs on %s", t->env.state_dir);
        if (mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0)
                return child_fail(errno, "create %s", upper);
        if (asprintf(&scratch, "%s/s", t->env.state_dir) < 0)
                return -ENOMEM;
        if (mkdir(scratch, 0700) < 0)
                return child_fail(errno, "create %s", scratch);
        /* overlay_in_private() unshares again: harmless, a namespace of our namespace's own. */
        r = overlay_in_private(scratch, &layer, 1, upper, work, &overlay);
        close(layer);
        return r;
}

static void probe_done(Child *child, const ChildResult *res, void *userdata) {
        CtrTable *t = userdata;

        t->userns_child = NULL;
        t->kernel_userns = res->exit_code == 0;
        free(t->userns_reason);
        t->userns_reason = NULL;
        if (!t->kernel_userns) {
                size_t n = res->err_len;
                while (n > 0 && res->err[n - 1] == '\n')
                        n--;
                if (asprintf(&t->userns_reason, "a container's rootfs of idmapped layers failed (in %s): %.*s",
                             t->env.root_dir, (int) n, n ? res->err : "the probe failed") < 0)
                        t->userns_reason = NULL;
        }
        log_debug("user namespaces: %s", t->kernel_userns ? "an overlay of idmapped layers works" : t->userns_reason ?: "no");
}

void ctr_userns_probe(CtrTable *t) {
        ChildSpec spec = {
                .setup = probe_child,
                .setup_userdata = t,
                .timeout_usec = CTR_CHILD_TIMEOUT_USEC,
                .max_output = 4096,
        };

        if (t->userns_child)
                return;
        if (child_spawn(t->env.loop, &spec, probe_done, t, &t->userns_child) < 0)
                log_warning("cannot probe idmapped mounts: user namespaces are not offered");
}
