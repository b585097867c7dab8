/* A gRPC call waiting for an asynchronous operation of the model. */
#include "cri-call.h"

#include <assert.h>
#include <stdlib.h>

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
