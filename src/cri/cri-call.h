/* A gRPC call waiting for an asynchronous operation of the model (a pod's, a container's, a
 * pull's, a CNI CHECK's): one shape for every handler that answers later. */
#pragma once

#include <stdbool.h>

#include "ctr.h"
#include "grpc-server.h"
#include "pod.h"

typedef struct Manager Manager;

/* Tells the operation its caller is gone (ctr_op_detach(), pod_op_detach(), pull_waiter_cancel(),
 * cni_op_cancel(), sandbox_op_detach()…): it completes, or stops, without calling back. */
typedef void (*CriCallDetach)(void *op);

typedef struct CriCall {
        GrpcCall *call;
        Manager *manager;
        int kind;   /* which answer, for handlers that share a done() */
        char *id;   /* the object's id, for a done() that finds it again; freed with the call */
        void *op;   /* while waiting: the operation to detach when the call is cancelled */
        CriCallDetach detach;
        bool waiting;  /* cri_call_wait() returned: done() frees the call */
        bool finished; /* done() ran */
} CriCall;

/* NULL when out of memory. */
CriCall *cri_call_new(GrpcCall *call, Manager *m, int kind, CriCallDetach detach);
CriCall *cri_call_free(CriCall *cc);

/* After the operation started (op what it returned, stale if done() already ran): frees cc if
 * done() already ran, else waits, detaching op if the call is cancelled meanwhile. 0. */
int cri_call_wait(CriCall *cc, void *op);
/* From the operation's done(), once it answered the call: frees cc when cri_call_wait() returned,
 * else leaves that to it. */
void cri_call_done(CriCall *cc);
/* The done() of an operation whose success is an empty reply: error answered, or the empty reply,
 * then cri_call_done(). */
void cri_call_done_empty(CriCall *cc, const Error *error);

/* The container (or pod) a request's id or unique prefix names. NULL after answering the call, with
 * *ret_r what answering returned: INVALID_ARGUMENT for an empty or ambiguous id, NOT_FOUND for none
 * (or, missing_is_ok, the empty reply: the CRI's stop and remove of what is gone succeed). */
Container *cri_find_container(GrpcCall *call, CtrTable *t, const char *id, bool missing_is_ok, int *ret_r);
Pod *cri_find_pod(GrpcCall *call, PodTable *t, const char *id, bool missing_is_ok, int *ret_r);
