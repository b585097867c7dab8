/* The daemon's metrics: families registered at start, observations from the modules' callbacks,
 * and gauges from the Manager's tables and /proc computed at each scrape. */
#include "build-config.h"
#include "manager-metrics.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "manager.h"
#include "metrics-server.h"
#include "metrics.h"
#include "time-util.h"

struct ManagerMetrics {
        Metrics *registry;
        MetricsServer *server;
        /* A reload: the server bound to the new address (none when it is ""), until it is put in
         * place or dropped; and the one it replaced, while that answers its last requests. */
        MetricsServer *next, *draining;
        bool reloading;
        MetricFamily *grpc_requests, *grpc_duration;
        MetricFamily *pods, *containers;
        MetricFamily *pulls, *pull_bytes, *pull_duration;
        MetricFamily *cni_duration, *systemd_duration;
        MetricFamily *fds, *rss, *iterations, *start_time, *build_info;
};

/* From 100 µs (a lookup) to 10 s (a pod's teardown). */
static const double call_buckets[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                       0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10 };
/* CNI plugins and systemd jobs: milliseconds to a minute. */
static const double job_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                      0.5,   1,      2.5,   5,    10,   30,    60 };
/* Pulls: a cached image's manifest to a big image. */
static const double pull_buckets[] = { 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600 };

static int add_families(ManagerMetrics *mm) {
        static const char *const method_code[] = { "method", "code", NULL };
        static const char *const method[] = { "method", NULL };
        static const char *const state[] = { "state", NULL };
        static const char *const result[] = { "result", NULL };
        static const char *const version[] = { "version", NULL };
        Metrics *r = mm->registry;
        int k = 0;

        k = k ?: metrics_add_family(r, "rktlet_grpc_requests_total", "CRI calls that ended, by method and gRPC status code.",
                                    METRIC_COUNTER, method_code, NULL, 0, &mm->grpc_requests);
        k = k ?: metrics_add_family(r, "rktlet_grpc_request_duration_seconds",
                                    "Time from a CRI call's headers to its end, by method.", METRIC_HISTOGRAM, method,
                                    call_buckets, ELEMENTSOF(call_buckets), &mm->grpc_duration);
        k = k ?: metrics_add_family(r, "rktlet_pods", "Pod sandboxes by state.", METRIC_GAUGE, state, NULL, 0,
                                    &mm->pods);
        k = k ?: metrics_add_family(r, "rktlet_containers", "Containers by state.", METRIC_GAUGE, state, NULL, 0,
                                    &mm->containers);
        k = k ?: metrics_add_family(r, "rktlet_image_pulls_total", "Image pulls that ended, by result.", METRIC_COUNTER,
                                    result, NULL, 0, &mm->pulls);
        k = k ?: metrics_add_family(r, "rktlet_image_pull_bytes_total", "Bytes received from registries by pulls.",
                                    METRIC_COUNTER, NULL, NULL, 0, &mm->pull_bytes);
        k = k ?: metrics_add_family(r, "rktlet_image_pull_duration_seconds", "Time a pull took, by result.",
                                    METRIC_HISTOGRAM, result, pull_buckets, ELEMENTSOF(pull_buckets),
                                    &mm->pull_duration);
        k = k ?: metrics_add_family(r, "rktlet_cni_duration_seconds",
                                    "Time a CNI plugin chain took, by command (ADD, DEL, CHECK) and result.",
                                    METRIC_HISTOGRAM, (const char *const[]) { "command", "result", NULL }, job_buckets,
                                    ELEMENTSOF(job_buckets), &mm->cni_duration);
        k = k ?: metrics_add_family(r, "rktlet_systemd_job_duration_seconds",
                                    "Time a systemd unit operation took, from the call to its job's end, by type and result.",
                                    METRIC_HISTOGRAM, (const char *const[]) { "type", "result", NULL }, job_buckets,
                                    ELEMENTSOF(job_buckets), &mm->systemd_duration);
        k = k ?: metrics_add_family(r, "process_open_fds", "Open file descriptors of the daemon.", METRIC_GAUGE, NULL,
                                    NULL, 0, &mm->fds);
        k = k ?: metrics_add_family(r, "process_resident_memory_bytes", "Resident memory of the daemon in bytes.",
                                    METRIC_GAUGE, NULL, NULL, 0, &mm->rss);
        k = k ?: metrics_add_family(r, "process_start_time_seconds", "When the daemon started, in seconds since the epoch.",
                                    METRIC_GAUGE, NULL, NULL, 0, &mm->start_time);
        k = k ?: metrics_add_family(r, "rktlet_loop_iterations_total", "Iterations of the daemon's event loop.",
                                    METRIC_COUNTER, NULL, NULL, 0, &mm->iterations);
        k = k ?: metrics_add_family(r, "rktlet_build_info", "The daemon's version.", METRIC_GAUGE, version, NULL, 0,
                                    &mm->build_info);
        if (k < 0)
                return k;
        k = metrics_set(mm->start_time, NULL, (double) now_usec(CLOCK_REALTIME) / USEC_PER_SEC);
        return k ?: metrics_set(mm->build_info, (const char *const[]) { PROJECT_VERSION }, 1);
}

int manager_metrics_new(Manager *m) {
        ManagerMetrics *mm;
        int r;

        /* Also without an address: a reload may set one, and what it serves counts from the start. */
        mm = calloc(1, sizeof *mm);
        if (!mm)
                return -ENOMEM;
        m->metrics = mm;
        r = metrics_new(&mm->registry);
        return r < 0 ? r : add_families(mm);
}

static void collect(Metrics *registry, void *userdata) {
        Manager *m = userdata;
        ManagerMetrics *mm = m->metrics;
        double pods[_POD_STATE_MAX] = {}, ctrs[_CTR_STATE_MAX] = {};
        uint64_t fds, rss;

        for (Pod *p = m->pods ? m->pods->pods : NULL; p; p = p->next) {
                PodState s = pod_state(p);
                if (s >= 0 && s < _POD_STATE_MAX)
                        pods[s]++;
        }
        for (Container *c = m->containers ? m->containers->containers : NULL; c; c = c->next) {
                CtrState s = ctr_reported_state(c);
                if (s >= 0 && s < _CTR_STATE_MAX)
                        ctrs[s]++;
        }
        for (PodState s = 0; s < _POD_STATE_MAX; s++)
                (void) metrics_set(mm->pods, (const char *const[]) { pod_state_to_string(s) }, pods[s]);
        for (CtrState s = 0; s < _CTR_STATE_MAX; s++)
                (void) metrics_set(mm->containers, (const char *const[]) { ctr_state_to_string(s) }, ctrs[s]);
        if (metrics_process_sample(&fds, &rss) >= 0) {
                (void) metrics_set(mm->fds, NULL, (double) fds);
                (void) metrics_set(mm->rss, NULL, (double) rss);
        }
        (void) metrics_set(mm->iterations, NULL, (double) ev_iteration(m->loop));
}

int manager_metrics_start(Manager *m) {
        ManagerMetrics *mm = m->metrics;
        int r;

        if (!mm || !m->config.metrics_address[0])
                return 0;
        r = metrics_server_new(m->loop, m->config.metrics_address, mm->registry, collect, m, &mm->server);
        if (r < 0)
                return log_error_errno(r, "Failed to serve metrics on %s: %m", m->config.metrics_address);
        log_info("Metrics on %s.", metrics_server_url(mm->server));
        return 0;
}

void manager_metrics_free(Manager *m) {
        ManagerMetrics *mm = m->metrics;

        if (!mm)
                return;
        metrics_server_free(mm->server);
        metrics_server_free(mm->next);
        metrics_server_free(mm->draining);
        metrics_free(mm->registry);
        free(mm);
        m->metrics = NULL;
}

int manager_metrics_reload_prepare(Manager *m, const char *address) {
        ManagerMetrics *mm = m->metrics;

        assert(mm && !mm->reloading);
        /* The same address keeps its server (and, with port 0, the port the kernel chose). */
        if (strcmp(address, m->config.metrics_address) == 0)
                return 0;
        if (address[0]) {
                int r = metrics_server_new(m->loop, address, mm->registry, collect, m, &mm->next);
                if (r < 0)
                        return r;
        }
        mm->reloading = true;
        return 0;
}

static void drained(MetricsServer *s, void *userdata) {
        ManagerMetrics *mm = userdata;

        assert(s == mm->draining);
        mm->draining = metrics_server_free(s);
}

void manager_metrics_reload_finish(Manager *m, bool commit) {
        ManagerMetrics *mm = m->metrics;
        MetricsServer *old;

        if (!mm || !mm->reloading)
                return;
        mm->reloading = false;
        if (!commit) {
                mm->next = metrics_server_free(mm->next);
                return;
        }
        old = mm->server;
        mm->server = TAKE_PTR(mm->next);
        if (!old)
                return;
        /* One server draining at a time: a second move within its 10 s cuts the first one's last
         * requests short. */
        mm->draining = metrics_server_free(mm->draining);
        if (metrics_server_drain(old, drained, mm))
                mm->draining = old;
        else
                metrics_server_free(old);
}

const char *manager_metrics_url(Manager *m) {
        return m->metrics && m->metrics->server ? metrics_server_url(m->metrics->server) : NULL;
}

static const char *result_of(bool ok) {
        return ok ? "success" : "failure";
}

void manager_metrics_observe_grpc(const char *method, GrpcStatus status, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        ManagerMetrics *mm = m->metrics;
        /* A path no method has is one name: clients choose paths, and every one would be a series. */
        const char *name = method ?: "unknown";

        if (!mm)
                return;
        (void) metrics_inc(mm->grpc_requests, (const char *const[]) { name, grpc_status_to_string(status) }, 1);
        (void) metrics_observe(mm->grpc_duration, (const char *const[]) { name }, (double) usec / USEC_PER_SEC);
}

void manager_metrics_observe_cni(const char *command, bool ok, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (m->metrics)
                (void) metrics_observe(m->metrics->cni_duration, (const char *const[]) { command, result_of(ok) },
                                       (double) usec / USEC_PER_SEC);
}

void manager_metrics_observe_systemd(const char *kind, bool ok, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (m->metrics)
                (void) metrics_observe(m->metrics->systemd_duration, (const char *const[]) { kind, result_of(ok) },
                                       (double) usec / USEC_PER_SEC);
}

void manager_metrics_observe_pull(bool ok, uint64_t bytes, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        ManagerMetrics *mm = m->metrics;

        if (!mm)
                return;
        (void) metrics_inc(mm->pulls, (const char *const[]) { result_of(ok) }, 1);
        (void) metrics_inc(mm->pull_bytes, NULL, (double) bytes);
        (void) metrics_observe(mm->pull_duration, (const char *const[]) { result_of(ok) }, (double) usec / USEC_PER_SEC);
}
