/* The CRI method table: every RuntimeService and ImageService method, implemented or not. */
#include "cri-service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "cri-strings.h"
#include "cri-util.h"
#include "macro.h"

typedef struct CriImpl {
        const char *path;
        GrpcHandler handler;
} CriImpl;

static const CriImpl impls[] = {
        { "/runtime.v1.RuntimeService/Version", cri_version },
        { "/runtime.v1.RuntimeService/Status", cri_status },
        { "/runtime.v1.RuntimeService/RuntimeConfig", cri_runtime_config },
        { "/runtime.v1.RuntimeService/RunPodSandbox", cri_run_pod_sandbox },
        { "/runtime.v1.RuntimeService/StopPodSandbox", cri_stop_pod_sandbox },
        { "/runtime.v1.RuntimeService/RemovePodSandbox", cri_remove_pod_sandbox },
        { "/runtime.v1.RuntimeService/PodSandboxStatus", cri_pod_sandbox_status },
        { "/runtime.v1.RuntimeService/ListPodSandbox", cri_list_pod_sandbox },
        { "/runtime.v1.RuntimeService/StreamPodSandboxes", cri_stream_pod_sandboxes },
        { "/runtime.v1.RuntimeService/UpdateRuntimeConfig", cri_update_runtime_config },
        { "/runtime.v1.RuntimeService/UpdatePodSandboxResources", cri_update_pod_sandbox_resources },
        { "/runtime.v1.RuntimeService/CreateContainer", cri_create_container },
        { "/runtime.v1.RuntimeService/StartContainer", cri_start_container },
        { "/runtime.v1.RuntimeService/StopContainer", cri_stop_container },
        { "/runtime.v1.RuntimeService/RemoveContainer", cri_remove_container },
        { "/runtime.v1.RuntimeService/ContainerStatus", cri_container_status },
        { "/runtime.v1.RuntimeService/ListContainers", cri_list_containers },
        { "/runtime.v1.RuntimeService/StreamContainers", cri_stream_containers },
        { "/runtime.v1.RuntimeService/UpdateContainerResources", cri_update_container_resources },
        { "/runtime.v1.RuntimeService/ReopenContainerLog", cri_reopen_container_log },
        { "/runtime.v1.RuntimeService/CheckpointContainer", cri_checkpoint_container },
        { "/runtime.v1.RuntimeService/ExecSync", cri_exec_sync },
        { "/runtime.v1.RuntimeService/Exec", cri_exec },
        { "/runtime.v1.RuntimeService/Attach", cri_attach },
        { "/runtime.v1.RuntimeService/PortForward", cri_port_forward },
        { "/runtime.v1.RuntimeService/GetContainerEvents", cri_get_container_events },
        { "/runtime.v1.RuntimeService/ContainerStats", cri_container_stats },
        { "/runtime.v1.RuntimeService/ListContainerStats", cri_list_container_stats },
        { "/runtime.v1.RuntimeService/PodSandboxStats", cri_pod_sandbox_stats },
        { "/runtime.v1.RuntimeService/ListPodSandboxStats", cri_list_pod_sandbox_stats },
        { "/runtime.v1.RuntimeService/ListMetricDescriptors", cri_list_metric_descriptors },
        { "/runtime.v1.RuntimeService/ListPodSandboxMetrics", cri_list_pod_sandbox_metrics },
        { "/runtime.v1.RuntimeService/StreamContainerStats", cri_stream_container_stats },
        { "/runtime.v1.RuntimeService/StreamPodSandboxStats", cri_stream_pod_sandbox_stats },
        { "/runtime.v1.RuntimeService/StreamPodSandboxMetrics", cri_stream_pod_sandbox_metrics },
        { "/runtime.v1.ImageService/PullImage", cri_pull_image },
        { "/runtime.v1.ImageService/ListImages", cri_list_images },
        { "/runtime.v1.ImageService/StreamImages", cri_stream_images },
        { "/runtime.v1.ImageService/ImageStatus", cri_image_status },
        { "/runtime.v1.ImageService/RemoveImage", cri_remove_image },
        { "/runtime.v1.ImageService/ImageFsInfo", cri_image_fs_info },
};

/* One entry per CRI method, in the protobuf service's order; the GrpcMethods (sorted by path for
 * the look-up) point here. */
typedef struct CriMethod {
        GrpcHandler handler; /* NULL: not implemented */
        const ProtobufCMessageDescriptor *input;
        const char *name;
        Manager *manager;
} CriMethod;

static GrpcMethod *methods = NULL;
static CriMethod *cri_methods = NULL;
static size_t n_methods = 0;

/* Every call comes through here: the request's strings are judged once, for every method, before
 * any handler turns them into the model. */
static int cri_dispatch(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        const CriMethod *cm = userdata;
        char why[512];

        if (!cm->handler)
                return grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "%s is not implemented by rktlet yet",
                                        cm->name);
        if (cri_check_strings(cm->input, msg, len, why, sizeof why) < 0)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: %s", cm->input->short_name, why);
        return cm->handler(call, msg, len, cm->manager);
}

/* protobuf-c keeps no streaming flag: the CRI's server-streaming methods, by name. */
static bool is_server_streaming(const char *name) {
        static const char *const streaming[] = {
                "GetContainerEvents", "StreamPodSandboxes",   "StreamContainers",        "StreamImages",
                "StreamContainerStats", "StreamPodSandboxStats", "StreamPodSandboxMetrics",
        };
        for (size_t i = 0; i < ELEMENTSOF(streaming); i++)
                if (strcmp(name, streaming[i]) == 0)
                        return true;
        return false;
}

static int method_cmp(const void *a, const void *b) {
        return strcmp(((const GrpcMethod *) a)->path, ((const GrpcMethod *) b)->path);
}

int cri_reply(GrpcCall *call, const ProtobufCMessage *msg) {
        size_t n = protobuf_c_message_get_packed_size(msg);
        uint8_t *p = grpc_call_reserve_message(call, n);

        if (!p)
                return -errno;
        protobuf_c_message_pack(msg, p);
        return grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

int cri_send(GrpcCall *call, const ProtobufCMessage *msg) {
        size_t n = protobuf_c_message_get_packed_size(msg);
        uint8_t *p = grpc_call_reserve_message(call, n);

        if (!p)
                return -errno;
        protobuf_c_message_pack(msg, p);
        grpc_call_commit(call);
        return 0;
}

int cri_reply_empty(GrpcCall *call) {
        /* An empty message packs to no bytes, whatever its type. */
        if (!grpc_call_reserve_message(call, 0))
                return -errno;
        return grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

int cri_service_init(Manager *m) {
        const ProtobufCServiceDescriptor *services[] = {
                &runtime__v1__runtime_service__descriptor,
                &runtime__v1__image_service__descriptor,
        };
        size_t total = 0;

        for (size_t i = 0; i < ELEMENTSOF(services); i++)
                total += services[i]->n_methods;
        methods = calloc(total, sizeof *methods);
        cri_methods = calloc(total, sizeof *cri_methods);
        if (!methods || !cri_methods) {
                cri_service_done();
                return -ENOMEM;
        }

        for (size_t i = 0; i < ELEMENTSOF(services); i++)
                for (unsigned j = 0; j < services[i]->n_methods; j++) {
                        const ProtobufCMethodDescriptor *md = &services[i]->methods[j];
                        CriMethod *cm = &cri_methods[n_methods];
                        GrpcMethod *gm = &methods[n_methods++];
                        char *path;

                        if (asprintf(&path, "/%s/%s", services[i]->name, md->name) < 0) {
                                cri_service_done();
                                return -ENOMEM;
                        }
                        *cm = (CriMethod) { .input = md->input, .name = md->name, .manager = m };
                        for (size_t k = 0; k < ELEMENTSOF(impls); k++)
                                if (strcmp(impls[k].path, path) == 0)
                                        cm->handler = impls[k].handler;
                        *gm = (GrpcMethod) {
                                .path = path,
                                .name = md->name,
                                .handler = cri_dispatch,
                                .userdata = cm,
                                .server_streaming = is_server_streaming(md->name),
                        };
                }

        qsort(methods, n_methods, sizeof *methods, method_cmp);
        return 0;
}

void cri_service_done(void) {
        for (size_t i = 0; methods && i < n_methods; i++)
                free((char *) methods[i].path);
        free(methods);
        free(cri_methods);
        methods = NULL;
        cri_methods = NULL;
        n_methods = 0;
}

const GrpcMethod *cri_service_lookup(const char *path, void *userdata) {
        GrpcMethod key = { .path = path };
        return bsearch(&key, methods, n_methods, sizeof *methods, method_cmp);
}

