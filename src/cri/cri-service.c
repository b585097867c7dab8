/* The CRI method table: every RuntimeService and ImageService method, implemented or not. */
#include "cri-service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
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
        { "/runtime.v1.RuntimeService/UpdateRuntimeConfig", cri_update_runtime_config },
        { "/runtime.v1.RuntimeService/CreateContainer", cri_create_container },
        { "/runtime.v1.RuntimeService/StartContainer", cri_start_container },
        { "/runtime.v1.RuntimeService/StopContainer", cri_stop_container },
        { "/runtime.v1.RuntimeService/RemoveContainer", cri_remove_container },
        { "/runtime.v1.RuntimeService/ContainerStatus", cri_container_status },
        { "/runtime.v1.RuntimeService/ListContainers", cri_list_containers },
        { "/runtime.v1.RuntimeService/ReopenContainerLog", cri_reopen_container_log },
        { "/runtime.v1.ImageService/PullImage", cri_pull_image },
        { "/runtime.v1.ImageService/ListImages", cri_list_images },
        { "/runtime.v1.ImageService/ImageStatus", cri_image_status },
        { "/runtime.v1.ImageService/RemoveImage", cri_remove_image },
        { "/runtime.v1.ImageService/ImageFsInfo", cri_image_fs_info },
};

static GrpcMethod *methods = NULL;
static size_t n_methods = 0;

static int cri_unimplemented(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        const GrpcMethod *method = userdata;
        return grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "%s is not implemented by rktlet yet",
                                method->name);
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

int cri_service_init(Manager *m) {
        const ProtobufCServiceDescriptor *services[] = {
                &runtime__v1__runtime_service__descriptor,
                &runtime__v1__image_service__descriptor,
        };
        size_t total = 0;

        for (size_t i = 0; i < ELEMENTSOF(services); i++)
                total += services[i]->n_methods;
        methods = calloc(total, sizeof *methods);
        if (!methods)
                return -ENOMEM;

        for (size_t i = 0; i < ELEMENTSOF(services); i++)
                for (unsigned j = 0; j < services[i]->n_methods; j++) {
                        GrpcMethod *gm = &methods[n_methods++];
                        char *path;

                        if (asprintf(&path, "/%s/%s", services[i]->name, services[i]->methods[j].name) < 0) {
                                cri_service_done();
                                return -ENOMEM;
                        }
                        gm->path = path;
                        gm->name = services[i]->methods[j].name;
                        gm->handler = cri_unimplemented;
                        gm->userdata = gm;
                        /* protobuf-c keeps no streaming flag: the CRI's one server-streaming method. */
                        gm->server_streaming = strcmp(gm->name, "GetContainerEvents") == 0;
                        for (size_t k = 0; k < ELEMENTSOF(impls); k++)
                                if (strcmp(impls[k].path, path) == 0) {
                                        gm->handler = impls[k].handler;
                                        gm->userdata = m;
                                }
                }

        qsort(methods, n_methods, sizeof *methods, method_cmp);
        /* qsort moved the entries: the unimplemented ones point at themselves again. */
        for (size_t i = 0; i < n_methods; i++)
                if (methods[i].handler == cri_unimplemented)
                        methods[i].userdata = &methods[i];
        return 0;
}

void cri_service_done(void) {
        for (size_t i = 0; i < n_methods; i++)
                free((char *) methods[i].path);
        free(methods);
        methods = NULL;
        n_methods = 0;
}

const GrpcMethod *cri_service_lookup(const char *path, void *userdata) {
        GrpcMethod key = { .path = path };
        return bsearch(&key, methods, n_methods, sizeof *methods, method_cmp);
}

char **cri_strv_dup(char **l, size_t n) {
        char **out = calloc(n + 1, sizeof(char *));

        for (size_t i = 0; out && i < n; i++)
                if (!(out[i] = strdup(l[i] ?: ""))) {
                        strv_free(out);
                        return NULL;
                }
        return out;
}

void cri_pairs_out_free(void *pe) {
        if (pe)
                free(((void **) pe)[0]);
        free(pe);
}
