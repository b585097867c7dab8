/* ExecSync: a command in a running container, its output and exit code in one reply. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "cri-call.h"
#include "cri-service.h"
#include "cri-util.h"
#include "ctr.h"
#include "error-chain.h"
#include "grpc-status.h"
#include "log.h"
#include "manager.h"
#include "quote.h"
#include "time-util.h"

/* kubelet's message limit is 16 MiB: the output, and the reply's few bytes around it, fit. */
#define EXEC_SYNC_MAX_OUTPUT (16U * 1024 * 1024 - 4096)

static void exec_detach(void *exec) {
        /* The deadline passed or the client went away: nothing of the command may stay. */
        ctr_exec_cancel(exec);
}

static void exec_done(const Error *error, const CtrExecResult *res, void *userdata) {
        CriCall *cc = userdata;

        if (error)
                (void) cri_finish_error(cc->call, error);
        else {
                Runtime__V1__ExecSyncResponse resp = RUNTIME__V1__EXEC_SYNC_RESPONSE__INIT;
                resp.stdout = (ProtobufCBinaryData) { .len = res->out_len, .data = (uint8_t *) res->out };
                resp.stderr = (ProtobufCBinaryData) { .len = res->err_len, .data = (uint8_t *) res->err };
                resp.exit_code = res->exit_code;
                (void) cri_reply(cc->call, &resp.base);
        }
        cri_call_done(cc);
}

int cri_exec_sync(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ExecSyncRequest *req = runtime__v1__exec_sync_request__unpack(NULL, len, msg);
        Error error = ERROR_INIT;
        char **cmd = NULL;
        CriCall *cc = NULL;
        CtrExec *exec = NULL;
        Container *c = NULL;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ExecSyncRequest does not decode");
        if (req->timeout < 0) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "timeout %lld is negative",
                                     (long long) req->timeout);
                goto out;
        }
        c = cri_find_container(call, m->containers, req->container_id, false, &r);
        if (!c)
                goto out;
        cmd = cri_strv_dup(req->cmd, req->n_cmd);
        cc = cri_call_new(call, m, 0, exec_detach);
        if (!cmd || !cc) {
                r = grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        /* timeout is in seconds; 0 is none (the gRPC deadline still holds). */
        uint64_t timeout_usec = req->timeout > 0 ? (uint64_t) MIN(req->timeout, (int64_t) 365 * 24 * 3600) * USEC_PER_SEC : 0;
        r = ctr_exec_sync(c, cmd, timeout_usec, EXEC_SYNC_MAX_OUTPUT, exec_done, cc, &exec, &error);
        if (r < 0) {
                r = cri_finish_error(call, &error);
                goto out;
        }
        r = cri_call_wait(TAKE_PTR(cc), exec);
out:
        error_done(&error);
        cri_call_free(cc);
        strv_free(cmd);
        runtime__v1__exec_sync_request__free_unpacked(req, NULL);
        return r;
}
