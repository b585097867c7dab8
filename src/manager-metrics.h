/* The Manager's metrics: the registry and its families, what the modules observe (through their
 * observer callbacks) and what is computed from the tables at each scrape; the endpoint of
 * [Metrics] Address=. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "grpc-status.h"

typedef struct Manager Manager;
typedef struct ManagerMetrics ManagerMetrics;

/* Makes the registry when [Metrics] Address= is set; nothing (0) otherwise. */
int manager_metrics_new(Manager *m);
/* Starts serving; a clear error (logged) when the address cannot be bound. */
int manager_metrics_start(Manager *m);
void manager_metrics_free(Manager *m);

/* The observers the manager registers with grpc/, net/, systemd/ and image/ (userdata: the Manager);
 * without a registry they do nothing. */
void manager_metrics_observe_grpc(const char *method, GrpcStatus status, uint64_t usec, void *userdata);
void manager_metrics_observe_cni(const char *command, bool ok, uint64_t usec, void *userdata);
void manager_metrics_observe_systemd(const char *kind, bool ok, uint64_t usec, void *userdata);
void manager_metrics_observe_pull(bool ok, uint64_t bytes, uint64_t usec, void *userdata);
