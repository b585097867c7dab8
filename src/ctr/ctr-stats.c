/* A container's stats: its unit's cgroup sampled on the loop (small reads of kernel files), the CPU
 * rate kept between samples, and its writable layer's usage walked by a child in the background. */
#include <errno.h>
#include <ftw.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "ctr-internal.h"
#include "log.h"
#include "macro.h"
#include "systemd-manager.h"
#include "time-util.h"

#define LAYER_WALK_TIMEOUT_USEC (5ULL * 60 * USEC_PER_SEC)

char *ctr_cgroup_path(const Container *c) {
        const char *root = c->table->env.cgroup_root(c->table->env.userdata);
        Pod *pod = pod_find(c->table->env.pods, c->pod_id);
        _cleanup_free_ char *slice = NULL, *unit = NULL;
        char *p;

        if (!root || !pod || !(slice = systemd_slice_path(pod->slice)) || !(unit = ctr_unit_name(c)))
                return NULL;
        return asprintf(&p, "%s%s/%s", root, slice, unit) < 0 ? NULL : p;
}

char *ctr_layers_dir(const CtrTable *t) {
        char *p;
        return asprintf(&p, "%s/containers", t->env.root_dir) < 0 ? NULL : p;
}

/* --- the walk, in the child ---------------------------------------------------------------------- */

typedef struct Inode {
        dev_t dev;
        ino_t ino;
} Inode;

static uint64_t walk_bytes, walk_inodes;
static void *walk_seen; /* tsearch() tree of hard-linked inodes already counted */

static int inode_cmp(const void *a, const void *b) {
        const Inode *x = a, *y = b;
        if (x->dev != y->dev)
                return x->dev < y->dev ? -1 : 1;
        return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static int walk_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) path;
        (void) ftw;
        if (flag == FTW_NS)
                return 0;
        if (st->st_nlink > 1 && !S_ISDIR(st->st_mode)) {
                Inode *k = malloc(sizeof *k), **found;
                if (!k)
                        return -1;
                *k = (Inode) { .dev = st->st_dev, .ino = st->st_ino };
                found = tsearch(k, &walk_seen, inode_cmp);
                if (!found)
                        return -1;
                if (*found != k) {
                        free(k);
                        return 0; /* counted under another name */
                }
        }
        walk_bytes += (uint64_t) st->st_blocks * 512;
        walk_inodes++;
        return 0;
}

/* The child: du of the upper directory (blocks and inodes, hard links once, one file system), on
 * its stdout. */
static int layer_walk_child(void *userdata) {
        const char *upper = userdata;

        (void) setpriority(PRIO_PROCESS, 0, 10);
        if (nftw(upper, walk_one, 16, FTW_PHYS | FTW_MOUNT) != 0)
                return -errno ?: -EIO;
        printf("%llu %llu\n", (unsigned long long) walk_bytes, (unsigned long long) walk_inodes);
        return fflush(stdout) == 0 ? 0 : -EIO;
}

/* --- scheduling the walks ------------------------------------------------------------------------ */

static void layer_walk_next(CtrTable *t);

/* Whether c's layer has a walk due: it has one, and the last began CTR_LAYER_WALK_INTERVAL_USEC ago
 * (one in flight counts as begun). */
static bool layer_walk_due(const Container *c, uint64_t now) {
        return c->rootfs_mounted && !c->creating && !c->removing &&
               (c->layer_walked_usec == 0 || now - c->layer_walked_usec >= CTR_LAYER_WALK_INTERVAL_USEC) &&
               !(c->table->layer_child && strcmp(c->table->layer_id, c->id) == 0);
}

static void layer_walk_done(Child *child, const ChildResult *result, void *userdata) {
        CtrTable *t = userdata;
        unsigned long long bytes, inodes;
        Container *c = ctr_find(t, t->layer_id);

        (void) child;
        t->layer_child = NULL;
        if (c && result->exit_code == 0 && sscanf(result->out ?: "", "%llu %llu", &bytes, &inodes) == 2) {
                c->layer_bytes = bytes;
                c->layer_inodes = inodes;
                c->layer_at_ns = now_usec(CLOCK_REALTIME) * NSEC_PER_USEC;
        } else if (c)
                log_debug("Walking the writable layer of container %s failed (exit %d, signal %d): %.*s", c->id,
                          result->exit_code, result->signal, (int) MIN(result->err_len, (size_t) 200), result->err ?: "");
        layer_walk_next(t);
}

static void layer_walk_next(CtrTable *t) {
        Container *next = NULL;
        int r;

        if (t->layer_child)
                return;
        /* The one waiting longest. */
        for (Container *c = t->containers; c; c = c->next)
                if (c->layer_wanted && (!next || c->layer_walked_usec < next->layer_walked_usec))
                        next = c;
        if (!next)
                return;
        next->layer_wanted = false;
        next->layer_walked_usec = now_usec(CLOCK_MONOTONIC);

        _cleanup_free_ char *upper = ctr_path(next, false, "upper");
        if (!upper)
                return;
        ChildSpec spec = {
                .timeout_usec = LAYER_WALK_TIMEOUT_USEC,
                .max_output = 4096,
                .setup = layer_walk_child,
                .setup_userdata = upper,
        };
        memcpy(t->layer_id, next->id, sizeof t->layer_id);
        r = child_spawn(t->env.loop, &spec, layer_walk_done, t, &t->layer_child);
        if (r < 0) {
                t->layer_child = NULL;
                log_debug_errno(r, "Failed to start the walk of container %s's writable layer: %m", next->id);
        }
}

void ctr_stats_stop(CtrTable *t) {
        if (t->layer_child)
                child_abandon(t->layer_child);
        t->layer_child = NULL;
}

void ctr_stats(Container *c, StatsRead what, CtrStats *ret) {
        CtrStats s = {};
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (c->state == CTR_RUNNING && !c->creating) {
                _cleanup_free_ char *path = ctr_cgroup_path(c);
                s.has_cgroup = path && stats_cgroup_read(path, what, &s.cgroup) >= 0;
                if (s.has_cgroup && s.cgroup.has_cpu)
                        s.has_nano_cores = stats_rate_update(&c->cpu_rate, s.cgroup.cpu_usage_ns, s.cgroup.monotonic_ns,
                                                             &s.nano_cores);
        }
        if (layer_walk_due(c, now)) {
                c->layer_wanted = true;
                layer_walk_next(c->table);
        }
        if (c->layer_at_ns) {
                s.has_layer = true;
                s.layer_bytes = c->layer_bytes;
                s.layer_inodes = c->layer_inodes;
                s.layer_at_ns = c->layer_at_ns;
        }
        *ret = s;
}

void ctr_layers_usage(CtrTable *t, uint64_t *ret_bytes, uint64_t *ret_inodes) {
        uint64_t bytes = 0, inodes = 0, now = now_usec(CLOCK_MONOTONIC);

        for (Container *c = t->containers; c; c = c->next) {
                bytes += c->layer_bytes;
                inodes += c->layer_inodes;
                if (layer_walk_due(c, now))
                        c->layer_wanted = true;
        }
        layer_walk_next(t);
        *ret_bytes = bytes;
        *ret_inodes = inodes;
}
