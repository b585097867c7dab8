/* `rktlet --teardown`: every pod and container the state describes is stopped and removed, as
 * RemovePodSandbox would (units, network, mounts, records), and then the daemon exits. The Debian
 * package's prerm runs it on removal, once the serving daemon is stopped. No CRI is served meanwhile. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "manager.h"
#include "sandbox.h"
#include "time-util.h"

#define TEARDOWN_TIMEOUT_USEC (120 * USEC_PER_SEC)

static void teardown_end(Manager *m) {
        if (m->teardown.pending > 0)
                return;
        ev_timer_stop(m->loop, &m->teardown.timer);
        if (m->teardown.failed > 0)
                log_error("Teardown: %u of %u pod(s) and container(s) could not be removed.", m->teardown.failed,
                          m->teardown.total);
        else
                log_info("Teardown: %u pod(s) and container(s) removed.", m->teardown.total);
        ev_break(m->loop, EVBREAK_ALL);
}

static void pod_removed(const Error *error, SandboxStep step, void *userdata) {
        Manager *m = userdata;

        if (error_is_set(error)) {
                log_error("Teardown: %s", error_text(error));
                m->teardown.failed++;
        }
        m->teardown.pending--;
        teardown_end(m);
}

static void container_removed(Container *c, const Error *error, void *userdata) {
        Manager *m = userdata;

        if (error_is_set(error)) {
                log_error("Teardown: %s", error_text(error));
                m->teardown.failed++;
        }
        m->teardown.pending--;
        teardown_end(m);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        Manager *m = container_of(w, Manager, teardown.timer);

        log_error("Teardown: %u removal(s) still unfinished after %llus; giving up.", m->teardown.pending,
                  (unsigned long long) (TEARDOWN_TIMEOUT_USEC / USEC_PER_SEC));
        m->teardown.failed += m->teardown.pending;
        m->teardown.pending = 0;
        ev_break(m->loop, EVBREAK_ALL);
}

/* The removal r began (done() may have run already), or its failure. */
static void began(Manager *m, int r, const Error *error) {
        if (r >= 0)
                return;
        log_error("Teardown: %s", error_is_set(error) ? error_text(error) : strerror(-r));
        m->teardown.failed++;
        m->teardown.pending--;
}

/* Any container whose pod is gone, then the pods, each with its containers. */
static void teardown_begin(Manager *m) {
        Container *next_c;
        Pod *next_p;

        m->teardown.began = true;
        log_info("Teardown: removing %u pod(s) with %u container(s).", m->pods->n_pods, m->containers->n_containers);
        m->teardown.pending++; /* held while starting, so that an early finish cannot end it */
        for (Container *c = m->containers->containers; c; c = next_c) {
                Error error = ERROR_INIT;
                CtrOp *op = NULL;

                next_c = c->next;
                if (pod_find(m->pods, c->pod_id))
                        continue; /* its pod removes it */
                m->teardown.total++;
                m->teardown.pending++;
                began(m, ctr_remove(c, container_removed, m, &error, &op), &error);
                error_done(&error);
        }
        for (Pod *p = m->pods->pods; p; p = next_p) {
                Error error = ERROR_INIT;
                SandboxOp *op = NULL;

                next_p = p->next;
                m->teardown.total++;
                m->teardown.pending++;
                began(m, sandbox_remove(m->containers, p, pod_removed, m, &error, &op), &error);
                error_done(&error);
        }
        m->teardown.pending--;
        teardown_end(m);
}

void manager_teardown_maybe_begin(Manager *m) {
        if (!m->teardown.enabled || m->teardown.began)
                return;
        if (!ev_is_active(&m->teardown.timer)) {
                ev_timer_init(&m->teardown.timer, timeout_cb, (double) TEARDOWN_TIMEOUT_USEC / USEC_PER_SEC, 0.);
                ev_timer_start(m->loop, &m->teardown.timer);
        }
        /* Both systemd on the bus and its word on the containers that were running are needed. */
        if (!m->containers || m->containers->all_confirmed || !m->teardown.systemd_ready || !manager_get_systemd(m))
                return;
        teardown_begin(m);
}
