/* A gRPC call waiting for an asynchronous operation of the model. */
#include "cri-call.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "cri-service.h"
#include "cri-util.h"
#include "quote.h"

CriCall *cri_call_new(GrpcCall *call, Manager *m, int kind, CriCallDetach detach) {
        CriCall *cc;

        assert(call);
        assert(detach);
        cc = calloc(1, sizeof *cc);
        if (!cc)
                return NULL;
        *cc = (CriCall) {
                .call = grpc_call_ref(call),
                .manager = m,
                .kind = kind,
                .detach = detach,
        };
        return cc;
}

CriCall *cri_call_free(CriCall *cc) {
        if (!cc)
                return NULL;
        grpc_call_unref(cc->call);
        free(cc->id);
        free(cc);
        return NULL;
}

static void call_cancelled(GrpcCall *call, void *userdata) {
        CriCall *cc = userdata;

        /* The operation completes (or stops) anyway; nobody hears of it. */
        cc->detach(cc->op);
        cri_call_free(cc);
}

int cri_call_wait(CriCall *cc, void *op) {
        assert(cc);
        if (cc->finished) {
                cri_call_free(cc);
                return 0;
        }
        cc->op = op;
        cc->waiting = true;
        grpc_call_set_cancel(cc->call, call_cancelled, cc);
        return 0;
}

void cri_call_done(CriCall *cc) {
        assert(cc);
        cc->finished = true;
        cc->op = NULL;
        /* Finishing the call took its cancel callback away; done() may also come without an answer. */
        grpc_call_set_cancel(cc->call, NULL, NULL);
        if (cc->waiting)
                cri_call_free(cc);
}

void cri_call_done_empty(CriCall *cc, const Error *error) {
        if (error_is_set(error))
                (void) cri_finish_error(cc->call, error);
        else
                (void) cri_reply_empty(cc->call);
        cri_call_done(cc);
}

/* --- ids in requests -------------------------------------------------------------------------------- */

Container *cri_find_container(GrpcCall *call, CtrTable *t, const char *id, bool missing_is_ok, int *ret_r) {
        Container *c;
        int r;

        if (!id || !id[0]) {
                *ret_r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "container_id is empty");
                return NULL;
        }
        r = ctr_find_prefix(t, id, &c);
        if (r == -ENOTUNIQ) {
                *ret_r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "container_id prefix %s is ambiguous",
                                          QUOTE(id));
                return NULL;
        }
        if (r < 0) {
                *ret_r = missing_is_ok ? cri_reply_empty(call)
                                       : grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "container_id %s does not exist",
                                                          QUOTE(id));
                return NULL;
        }
        return c;
}

Pod *cri_find_pod(GrpcCall *call, PodTable *t, const char *id, bool missing_is_ok, int *ret_r) {
        Pod *pod;
        int r;

        if (!id || !id[0]) {
                *ret_r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "pod_sandbox_id is empty");
                return NULL;
        }
        r = pod_find_prefix(t, id, &pod);
        if (r == -ENOTUNIQ) {
                *ret_r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "pod_sandbox_id prefix %s is ambiguous",
                                          QUOTE(id));
                return NULL;
        }
        if (r < 0) {
                *ret_r = missing_is_ok ? cri_reply_empty(call)
                                       : grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "pod_sandbox_id %s does not exist",
                                                          QUOTE(id));
                return NULL;
        }
        return pod;
}
