/* GetContainerEvents: the containers' events (ctr/'s observer) encoded once and sent to every
 * subscriber, each with a bounded queue; and the backlog a restarted daemon keeps for its first
 * subscribers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "cri-service.h"
#include "cri-util.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "time-util.h"

/* What a subscriber may leave unsent besides the count ([CRI] EventQueueLength=). */
#define SUB_MAX_BYTES (16u << 20)
/* The events of the daemon's first minute are kept (at most this many, the oldest dropped) and
 * replayed to each subscriber that connects within that minute: what recovery learned at start (a
 * container that exited while the daemon was down) reaches a kubelet that reconnects. */
#define BACKLOG_MAX 1000u
#define BACKLOG_USEC (60ULL * USEC_PER_SEC)

typedef struct CriEventSub CriEventSub;

typedef struct CriEventBlob {
        uint8_t *data;
        size_t len;
} CriEventBlob;

struct CriEventSub {
        CriEvents *hub;
        GrpcCall *call;
        CriEventSub *prev, *next;
        bool dead; /* dropped during a walk: freed once the walk is over */
};

struct CriEvents {
        Manager *m;
        CriEventSub *subs;
        unsigned n_subs;
        CriEventBlob *backlog; /* oldest first */
        size_t n_backlog;
        bool backlog_open;
        ev_timer backlog_timer;
        /* Sends in progress: a send may flush a connection, whose failure detaches every call on it
         * (sub_cancel() of other subscribers, even of the one being sent to); those are only marked
         * dead meanwhile, and freed by the walk's end. */
        unsigned walking;
};

static void sub_free(CriEventSub *s) {
        CriEvents *e = s->hub;

        if (s->prev)
                s->prev->next = s->next;
        else
                e->subs = s->next;
        if (s->next)
                s->next->prev = s->prev;
        e->n_subs--;
        grpc_call_set_cancel(s->call, NULL, NULL);
        grpc_call_unref(s->call);
        free(s);
}

/* s goes: now, or at the end of the walk in progress. */
static void sub_drop(CriEventSub *s) {
        if (s->hub->walking > 0) {
                s->dead = true;
                grpc_call_set_cancel(s->call, NULL, NULL);
        } else
                sub_free(s);
}

static void walk_begin(CriEvents *e) {
        e->walking++;
}

static void walk_end(CriEvents *e) {
        if (--e->walking > 0)
                return;
        for (CriEventSub *s = e->subs, *next; s; s = next) {
                next = s->next;
                if (s->dead)
                        sub_free(s);
        }
}

static void sub_cancel(GrpcCall *call, void *userdata) {
        sub_drop(userdata);
}

/* Queues one event on s; a subscriber that left too many unread is ended, and freed. Returns false
 * then. */
static bool sub_send(CriEventSub *s, const CriEventBlob *b) {
        unsigned max = s->hub->m->config.event_queue_length;
        unsigned queued = grpc_call_pending_messages(s->call);
        size_t bytes = grpc_call_pending_bytes(s->call);
        int r;

        if (s->dead)
                return false;
        if (queued >= max || bytes + b->len > SUB_MAX_BYTES) {
                log_warning("GetContainerEvents: a subscriber left %u events (%zu bytes) unread; ending its stream.",
                            queued, bytes);
                (void) grpc_call_finish_discard(s->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                                "the client left %u container events (%zu bytes) unread, the limit "
                                                "is %u: subscribe again and list what changed",
                                                queued, bytes, max);
                sub_drop(s);
                return false;
        }
        r = grpc_call_send(s->call, b->data, b->len);
        if (r < 0) {
                (void) grpc_call_finish_errno(s->call, r, "cannot queue a container event: %s", strerror(-r));
                sub_drop(s);
                return false;
        }
        return true;
}

/* The event as the CRI has it: the container, the kind, when rktlet learned it, its pod's status
 * and the statuses of the pod's containers, as PodSandboxStatus and ContainerStatus answer them. */
static int event_encode(Manager *m, CtrEvent event, const char *id, const char *pod_id, CriEventBlob *ret) {
        Runtime__V1__ContainerEventResponse resp = RUNTIME__V1__CONTAINER_EVENT_RESPONSE__INIT;
        CriPodStatus pod_status = {};
        CriCtrStatus *sts = NULL;
        Runtime__V1__ContainerStatus **ptrs = NULL;
        Pod *pod = pod_find(m->pods, pod_id);
        size_t n = 0, cap = m->containers->n_containers + 1;
        int r = -ENOMEM;

        resp.container_id = (char *) id;
        resp.container_event_type = (Runtime__V1__ContainerEventType) event;
        resp.created_at = (int64_t) (now_usec(CLOCK_REALTIME) * 1000ULL);
        if (pod) {
                cri_pod_status_fill(pod, &pod_status);
                resp.pod_sandbox_status = &pod_status.st;
        }
        sts = calloc(cap, sizeof *sts);
        ptrs = calloc(cap, sizeof *ptrs);
        if (!sts || !ptrs)
                goto out;
        for (Container *c = m->containers->containers; c; c = c->next) {
                if (c->creating || strcmp(c->pod_id, pod_id) != 0)
                        continue;
                cri_ctr_status_fill(m, c, &sts[n]);
                ptrs[n] = &sts[n].st;
                n++;
        }
        resp.containers_statuses = ptrs;
        resp.n_containers_statuses = n;
        ret->len = protobuf_c_message_get_packed_size(&resp.base);
        ret->data = malloc(ret->len ?: 1);
        if (ret->data) {
                protobuf_c_message_pack(&resp.base, ret->data);
                r = 0;
        }
out:
        for (size_t i = 0; sts && i < n; i++)
                cri_ctr_status_done(&sts[i]);
        free(sts);
        free(ptrs);
        if (pod)
                cri_pod_status_done(&pod_status);
        return r;
}

static void backlog_drop(CriEvents *e) {
        for (size_t i = 0; i < e->n_backlog; i++)
                free(e->backlog[i].data);
        free(e->backlog);
        e->backlog = NULL;
        e->n_backlog = 0;
        e->backlog_open = false;
}

static void backlog_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        CriEvents *e = container_of(w, CriEvents, backlog_timer);

        log_debug("GetContainerEvents: dropping the start-up backlog (%zu events).", e->n_backlog);
        backlog_drop(e);
}

/* Takes b over. */
static void backlog_add(CriEvents *e, CriEventBlob *b) {
        if (!e->backlog_open) {
                free(b->data);
                return;
        }
        if (e->n_backlog == BACKLOG_MAX) {
                free(e->backlog[0].data);
                memmove(e->backlog, e->backlog + 1, (BACKLOG_MAX - 1) * sizeof *e->backlog);
                e->n_backlog--;
        }
        e->backlog[e->n_backlog++] = *b;
}

static void on_container_event(CtrTable *t, CtrEvent event, const char *id, const char *pod_id, void *userdata) {
        CriEvents *e = userdata;
        CriEventBlob b = {};
        int r;

        if (e->n_subs == 0 && !e->backlog_open)
                return;
        r = event_encode(e->m, event, id, pod_id, &b);
        if (r < 0) {
                log_warning_errno(r, "GetContainerEvents: cannot encode an event of container %s: %m", id);
                return;
        }
        walk_begin(e);
        for (CriEventSub *s = e->subs; s; s = s->next) /* dead ones stay linked until walk_end() */
                (void) sub_send(s, &b);
        walk_end(e);
        backlog_add(e, &b);
}

int cri_get_container_events(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__GetEventsRequest *req = runtime__v1__get_events_request__unpack(NULL, len, msg);
        CriEvents *e = m->events;
        CriEventSub *s;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "GetEventsRequest does not decode");
        runtime__v1__get_events_request__free_unpacked(req, NULL);
        if (!e || m->stopping)
                return grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "rktlet is stopping: subscribe again once it is back");
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        *s = (CriEventSub) { .hub = e, .call = grpc_call_ref(call), .next = e->subs };
        if (e->subs)
                e->subs->prev = s;
        e->subs = s;
        e->n_subs++;
        grpc_call_set_cancel(call, sub_cancel, s);
        /* The headers at once: a client knows it is subscribed before the first event. */
        r = grpc_call_send_headers(call);
        if (r < 0) {
                sub_free(s);
                return r;
        }
        /* What happened since the daemon started, the newest it can queue. */
        size_t max = m->config.event_queue_length, from = e->n_backlog > max ? e->n_backlog - max : 0;
        walk_begin(e);
        for (size_t i = from; i < e->n_backlog; i++)
                if (!sub_send(s, &e->backlog[i]))
                        break;
        walk_end(e);
        return 0;
}

int cri_events_new(Manager *m, CriEvents **ret) {
        CriEvents *e = calloc(1, sizeof *e);

        if (!e)
                return -ENOMEM;
        e->m = m;
        e->backlog = calloc(BACKLOG_MAX, sizeof *e->backlog);
        if (!e->backlog) {
                free(e);
                return -ENOMEM;
        }
        e->backlog_open = true;
        ev_timer_init(&e->backlog_timer, backlog_timeout_cb, (double) BACKLOG_USEC / USEC_PER_SEC, 0.);
        ev_timer_start(m->loop, &e->backlog_timer);
        ctr_table_set_observer(m->containers, on_container_event, e);
        *ret = e;
        return 0;
}

void cri_events_close(CriEvents *e) {
        if (!e)
                return;
        walk_begin(e);
        for (CriEventSub *s = e->subs; s; s = s->next)
                if (!s->dead) {
                        (void) grpc_call_finish(s->call, GRPC_STATUS_UNAVAILABLE,
                                                "rktlet is stopping: subscribe again once it is back");
                        sub_drop(s);
                }
        walk_end(e);
}

CriEvents *cri_events_free(CriEvents *e) {
        if (!e)
                return NULL;
        cri_events_close(e);
        if (e->m->containers)
                ctr_table_set_observer(e->m->containers, NULL, NULL);
        ev_timer_stop(e->m->loop, &e->backlog_timer);
        backlog_drop(e);
        free(e);
        return NULL;
}
