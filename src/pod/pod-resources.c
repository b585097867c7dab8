/* UpdatePodSandboxResources: the pod's slice gets the pod's limits (its containers' and its
 * overhead together) as unit properties, live (SetUnitProperties, runtime). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "pod.h"
#include "time-util.h"

#define POD_SYSTEMD_TIMEOUT_USEC (90ULL * USEC_PER_SEC)

struct PodUpdate {
        char id[65];
        PodResources v;
        PodDone done;
        void *userdata;
        PodTable *table;
};

static int check_one(const char *what, const PodResources *r, Error *error) {
        if (r->cpu_shares < 0 || r->cpu_quota < 0 || r->cpu_period < 0 || r->memory_limit < 0)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "%s: negative values", what);
        if (r->cpu_period != 0 && (r->cpu_period < 1000 || r->cpu_period > 1000000))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "%s: cpu_period %" PRIi64 " is not in 1000…1000000 (µs)", what, r->cpu_period);
        for (int i = 0; i < 2; i++) {
                const char *s = i == 0 ? r->cpuset_cpus : r->cpuset_mems;
                int k = systemd_cpuset_check(s);

                if (k == -ENOMEM)
                        return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
                if (k < 0)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "%s: %s %s is no list like \"0-3,7\"",
                                         what, i == 0 ? "cpuset_cpus" : "cpuset_mems", s);
        }
        return 0;
}

static int append(sd_bus_message *m, void *userdata) {
        const PodResources *v = userdata;
        int r = systemd_append_limits(m, v->cpu_shares, v->cpu_quota, v->cpu_period, v->memory_limit);

        if (r >= 0 && v->cpuset_cpus && v->cpuset_cpus[0])
                r = systemd_append_cpuset(m, "AllowedCPUs", v->cpuset_cpus);
        if (r >= 0 && v->cpuset_mems && v->cpuset_mems[0])
                r = systemd_append_cpuset(m, "AllowedMemoryNodes", v->cpuset_mems);
        return r;
}

static void update_free(PodUpdate *u) {
        free(u->v.cpuset_cpus);
        free(u->v.cpuset_mems);
        free(u);
}

static void properties_set(const Error *error, void *userdata) {
        PodUpdate *u = userdata;
        Error e = ERROR_INIT;

        if (error_is_set(error)) {
                (void) error_copy(&e, error);
                (void) error_wrap(&e, "pod sandbox %s: set the slice's properties", u->id);
                log_warning("%s", error_text(&e));
        } else
                log_info("pod sandbox %s: resources updated.", u->id);
        if (u->done)
                u->done(pod_find(u->table, u->id), error_is_set(&e) ? &e : NULL, u->userdata);
        error_done(&e);
        update_free(u);
}

int pod_update_resources(Pod *pod, const PodResources *resources, const PodResources *overhead, PodDone done,
                         void *userdata, Error *error, PodUpdate **ret) {
        const PodResources none = {};
        SystemdClient *sd;
        PodUpdate *u;
        int r;

        assert(pod && resources);
        overhead = overhead ?: &none;
        r = check_one("resources", resources, error);
        if (r >= 0)
                r = check_one("overhead", overhead, error);
        if (r < 0)
                return r;
        if (pod_state(pod) != POD_READY || !pod->slice_started || !pod->slice)
                return error_set(error, ERROR_WRONG_STATE, 0, "pod sandbox %s is not ready", pod->id);
        sd = pod->table->env.systemd(pod->table->env.userdata);
        if (!sd)
                return error_set(error, ERROR_UNAVAILABLE, ENOTCONN, "pod sandbox %s: systemd is unreachable", pod->id);
        u = calloc(1, sizeof *u);
        if (!u)
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        memcpy(u->id, pod->id, sizeof u->id);
        u->table = pod->table;
        u->done = done;
        u->userdata = userdata;
        /* The pod's limits: its containers' and the overhead's together. A limit the containers do
         * not have (0) stays as it is, whatever the overhead. */
        u->v = (PodResources) {
                .cpu_shares = resources->cpu_shares > 0 ? resources->cpu_shares + overhead->cpu_shares : 0,
                .cpu_quota = resources->cpu_quota > 0 ? resources->cpu_quota + overhead->cpu_quota : 0,
                .cpu_period = resources->cpu_period,
                .memory_limit = resources->memory_limit > 0 ? resources->memory_limit + overhead->memory_limit : 0,
                .cpuset_cpus = resources->cpuset_cpus && resources->cpuset_cpus[0] ? strdup(resources->cpuset_cpus) : NULL,
                .cpuset_mems = resources->cpuset_mems && resources->cpuset_mems[0] ? strdup(resources->cpuset_mems) : NULL,
        };
        if ((resources->cpuset_cpus && resources->cpuset_cpus[0] && !u->v.cpuset_cpus) ||
            (resources->cpuset_mems && resources->cpuset_mems[0] && !u->v.cpuset_mems)) {
                update_free(u);
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        }
        r = systemd_set_unit_properties(sd, pod->slice, append, &u->v, POD_SYSTEMD_TIMEOUT_USEC, properties_set, u, NULL);
        if (r < 0) {
                update_free(u);
                return error_set(error, ERROR_SYSTEM, -r, "pod sandbox %s: SetUnitProperties: %s", pod->id, strerror(-r));
        }
        if (ret)
                *ret = u;
        return 0;
}

void pod_update_detach(PodUpdate *u) {
        if (u)
                u->done = NULL;
}
