/* The CRI method table: every RuntimeService and ImageService method, implemented or not. */
#pragma once

#include "grpc-server.h"

typedef struct Manager Manager;

int cri_service_init(Manager *m);
void cri_service_done(void);
const GrpcMethod *cri_service_lookup(const char *path, void *userdata);

/* Packs a protobuf-c message as the call's single reply and ends it with OK. */
struct ProtobufCMessage;
int cri_reply(GrpcCall *call, const struct ProtobufCMessage *msg);
/* Ends the call with OK and an empty message (StopPodSandboxResponse, RemoveContainerResponse…). */
int cri_reply_empty(GrpcCall *call);

/* Handlers (cri-runtime.c). */
int cri_version(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_runtime_config(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);

/* Handlers (cri-pod.c). */
int cri_run_pod_sandbox(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stop_pod_sandbox(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_remove_pod_sandbox(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_pod_sandbox_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_list_pod_sandbox(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_update_pod_sandbox_resources(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_update_runtime_config(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);

/* Handlers (cri-container.c). */
int cri_create_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_start_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stop_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_remove_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_container_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_list_containers(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_checkpoint_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_update_container_resources(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_reopen_container_log(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);

/* Handlers (cri-exec.c). */
int cri_exec_sync(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);

/* Handlers (cri-stream.c), and the streaming server they register with. */
struct StreamServer;
int cri_exec(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_port_forward(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stream_server_new(Manager *m, struct StreamServer **ret);

/* Handlers (cri-image.c). */
int cri_pull_image(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_list_images(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_image_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_remove_image(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_image_fs_info(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
