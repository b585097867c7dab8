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
/* Packs msg as one more message of a streaming call (not ended). */
int cri_send(GrpcCall *call, const struct ProtobufCMessage *msg);
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
int cri_stream_pod_sandboxes(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_update_pod_sandbox_resources(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_update_runtime_config(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);

/* Handlers (cri-container.c). */
int cri_create_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_start_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stop_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_remove_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_container_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_list_containers(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stream_containers(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_checkpoint_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_update_container_resources(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_reopen_container_log(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);

/* Handlers (cri-exec.c). */
int cri_exec_sync(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);

/* Handlers (cri-stream.c), and the streaming server they register with. */
struct StreamServer;
int cri_exec(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_attach(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_port_forward(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stream_server_new(Manager *m, struct StreamServer **ret);

/* Handlers (cri-stats.c). */
int cri_container_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_list_container_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_pod_sandbox_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_list_pod_sandbox_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_list_metric_descriptors(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_list_pod_sandbox_metrics(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stream_container_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stream_pod_sandbox_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stream_pod_sandbox_metrics(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);

/* Handlers (cri-image.c). */
int cri_pull_image(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_list_images(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_stream_images(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_image_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_remove_image(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_image_fs_info(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);

/* GetContainerEvents (cri-events.c): the hub every container event goes through, made by the
 * Manager with its container table (before the table loads: what recovery learns is kept), closed
 * when it stops. */
typedef struct CriEvents CriEvents;
int cri_get_container_events(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
int cri_events_new(Manager *m, CriEvents **ret);
/* Ends every subscriber's stream with UNAVAILABLE (the daemon stops: clients reconnect). */
void cri_events_close(CriEvents *e);
CriEvents *cri_events_free(CriEvents *e);
