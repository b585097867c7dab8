/* A container's root file system: an overlay of its image's layers (read-only, top layer first)
 * with an upper and a work directory of its own, mounted by a forked child. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctr-internal.h"
#include "fd-util.h"
#include "macro.h"

void ctr_rootfs_done(CtrRootfs *r) {
        free(r->lower);
        free(r->upper);
        free(r->work);
        free(r->target);
        free(r->userns);
        for (size_t i = 0; i < r->n_volumes; i++)
                free(r->volumes[i]);
        free(r->volumes);
        free(r->readonly);
        free(r->volumes_dir);
        *r = (CtrRootfs) {};
}

int ctr_rootfs_prepare(const Container *c, const Pod *pod, const CtrSpec *spec, ImageStore *s, const Image *image,
                       CtrRootfs *ret) {
        CtrRootfs r = {
                .upper = ctr_path(c, false, "upper"),
                .work = ctr_path(c, false, "work"),
                .target = ctr_path(c, true, "rootfs"),
                .daemon_pid = getpid(),
        };

        if (pod && pod->spec.userns == POD_NS_POD) {
                r.userns = pod_ns_path(pod, "user");
                r.root_uid = pod->spec.uids[0].host_id;
                r.root_gid = pod->spec.gids[0].host_id;
                r.volumes_dir = ctr_path(c, true, "volumes");
                r.volumes = calloc(spec->n_mounts + 1, sizeof *r.volumes);
                r.readonly = calloc(spec->n_mounts + 1, sizeof *r.readonly);
                if (!r.userns || !r.volumes_dir || !r.volumes || !r.readonly) {
                        ctr_rootfs_done(&r);
                        return -ENOMEM;
                }
                /* Only private ones (CreateContainer refuses others): a copy of a mount would not pass
                 * on what later propagates. */
                for (; r.n_volumes < spec->n_mounts; r.n_volumes++) {
                        const CtrMount *m = &spec->mounts[r.n_volumes];
                        r.readonly[r.n_volumes] = m->recursive_readonly ? 2 : m->readonly ? 1 : 0;
                        if (m->propagation == 0 && !(r.volumes[r.n_volumes] = strdup(m->host_path))) {
                                ctr_rootfs_done(&r);
                                return -ENOMEM;
                        }
                }
        }
        size_t len = 0;
        FILE *f;

        if (!r.upper || !r.work || !r.target) {
                ctr_rootfs_done(&r);
                return -ENOMEM;
        }
        f = open_memstream(&r.lower, &len);
        if (!f) {
                ctr_rootfs_done(&r);
                return -ENOMEM;
        }
        if (image->n_layers == 0) {
                /* overlayfs needs a lower directory: an empty one. */
                char *empty = ctr_path(c, false, "empty");
                fputs(empty ?: "", f);
                free(empty);
        }
        for (size_t i = image->n_layers; i > 0; i--) {
                char *l = image_store_layer_path(s, image->layers[i - 1].chain_id);
                fprintf(f, "%s%s", i == image->n_layers ? "" : ":", l ?: "");
                free(l);
        }
        if (fclose(f) != 0 || !r.lower) {
                ctr_rootfs_done(&r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

int ctr_rootfs_mount_child(void *userdata) {
        const CtrRootfs *r = userdata;
        char *options = NULL;

        /* Killed, the daemon leaves its children running: one that went on mounting after the next
         * daemon removed the container would leave mounts (of volumes too) nobody knows of. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
                fprintf(stderr, "prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
                return -errno;
        }
        if (getppid() != r->daemon_pid) { /* it died before the line above */
                fprintf(stderr, "rktlet is gone\n");
                return -ESRCH;
        }
        if (mkdir_p(r->upper, 0755) < 0 || mkdir_p(r->work, 0700) < 0 || mkdir_p(r->target, 0755) < 0) {
                fprintf(stderr, "create the container's directories: %s\n", strerror(errno));
                return -errno;
        }
        if (strchr(r->lower, ',') || strchr(r->upper, ',') || strchr(r->work, ',')) {
                fprintf(stderr, "layer paths must not hold ','\n");
                return -EINVAL;
        }
        if (!strchr(r->lower, ':') && access(r->lower, F_OK) < 0)
                (void) mkdir_p(r->lower, 0755); /* the empty lower directory of an image without layers */
        if (r->userns)
                return ctr_rootfs_mount_idmapped(r);
        if (asprintf(&options, "lowerdir=%s,upperdir=%s,workdir=%s", r->lower, r->upper, r->work) < 0)
                return -ENOMEM;
        if (strlen(options) >= (size_t) sysconf(_SC_PAGESIZE)) {
                fprintf(stderr, "too many layers for one overlay mount (%zu bytes of options)\n", strlen(options));
                return -E2BIG;
        }
        if (mount("overlay", r->target, "overlay", MS_NODEV, options) < 0) {
                fprintf(stderr, "mount the overlay on %s: %s\n", r->target, strerror(errno));
                return -errno;
        }
        return 0;
}

int ctr_rootfs_umount_child(void *userdata) {
        const char *target = userdata;
        _cleanup_free_ char *volumes = NULL;
        char *slash = strrchr(target, '/');

        /* <run>/rootfs: the idmapped volumes are beside it, in <run>/volumes. */
        if (slash && asprintf(&volumes, "%.*s/volumes", (int) (slash - target), target) >= 0 &&
            ctr_volumes_umount(volumes) < 0)
                return -EBUSY;

        if (umount2(target, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
                fprintf(stderr, "unmount %s: %s\n", target, strerror(errno));
                return -errno;
        }
        return 0;
}
