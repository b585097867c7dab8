/* ExecSync: a command in a running container, its output and exit code in one reply. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
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

typedef struct ExecCall {
        GrpcCall *call;
        CtrExec *exec;
} ExecCall;

static void exec_call_cancel(GrpcCall *call, void *userdata) {
        ExecCall *ec = userdata;

        /* The deadline passed or the client went away: nothing of the command may stay. */
        ctr_exec_cancel(ec->exec);
        grpc_call_unref(ec->call);
        free(ec);
}

static void exec_done(const Error *error, const CtrExecResult *res, void *userdata) {
        ExecCall *ec = userdata;

        if (error)
                (void) grpc_call_finish(ec->call, grpc_status_from_error(error), "%s", error_text(error));
        else {
                Runtime__V1__ExecSyncResponse resp = RUNTIME__V1__EXEC_SYNC_RESPONSE__INIT;
                resp.stdout = (ProtobufCBinaryData) { .len = res->out_len, .data = (uint8_t *) res->out };
                resp.stderr = (ProtobufCBinaryData) { .len = res->err_len, .data = (uint8_t *) res->err };
                resp.exit_code = res->exit_code;
                (void) cri_reply(ec->call, &resp.base);
        }
        grpc_call_set_cancel(ec->call, NULL, NULL);
        grpc_call_unref(ec->call);
        free(ec);
}

int cri_exec_sync(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ExecSyncRequest *req = runtime__v1__exec_sync_request__unpack(NULL, len, msg);
        Error error = ERROR_INIT;
        char **cmd = NULL;
        ExecCall *ec = NULL;
        Container *c = NULL;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ExecSyncRequest does not decode");
        if (!req->container_id[0]) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "container_id is empty");
                goto out;
        }
        if (req->timeout < 0) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "timeout %lld is negative",
                                     (long long) req->timeout);
                goto out;
        }
        r = ctr_find_prefix(m->containers, req->container_id, &c);
        if (r == -ENOTUNIQ) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "container_id prefix %s is ambiguous",
                                     QUOTE(req->container_id));
                goto out;
        }
        if (r < 0) {
                r = grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "container_id %s does not exist",
                                     QUOTE(req->container_id));
                goto out;
        }
        cmd = cri_strv_dup(req->cmd, req->n_cmd);
        ec = calloc(1, sizeof *ec);
        if (!cmd || !ec) {
                r = grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        ec->call = grpc_call_ref(call);
        /* timeout is in seconds; 0 is none (the gRPC deadline still holds). */
        uint64_t timeout_usec = req->timeout > 0 ? (uint64_t) MIN(req->timeout, (int64_t) 365 * 24 * 3600) * USEC_PER_SEC : 0;
        r = ctr_exec_sync(c, cmd, timeout_usec, EXEC_SYNC_MAX_OUTPUT, exec_done, ec, &ec->exec, &error);
        if (r < 0) {
                grpc_call_unref(ec->call);
                free(TAKE_PTR(ec));
                r = grpc_call_finish(call, grpc_status_from_error(&error), "%s", error_text(&error));
                goto out;
        }
        grpc_call_set_cancel(call, exec_call_cancel, TAKE_PTR(ec));
        r = 0;
out:
        error_done(&error);
        free(ec);
        strv_free(cmd);
        runtime__v1__exec_sync_request__free_unpacked(req, NULL);
        return r;
}
