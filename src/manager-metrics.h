/* The Manager's metrics: the registry and its families, what the modules observe (through their
 * observer callbacks) and what is computed from the tables at each scrape; the endpoint of
 * [Metrics] Address=. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "grpc-status.h"

typedef struct Manager Manager;
typedef struct ManagerMetrics ManagerMetrics;

/* Makes the registry (whether [Metrics] Address= is set or not: a reload may set it). */
int manager_metrics_new(Manager *m);
/* Starts serving when Address= is set; a clear error (logged) when the address cannot be bound. */
int manager_metrics_start(Manager *m);
void manager_metrics_free(Manager *m);

/* A reload to a new Address= (the Config still holds the one in use), all or nothing: prepare binds
 * the new address (nothing to do when it is the same; nothing to bind when it is ""), and fails
 * with bind()'s errno leaving the server in use as it is. finish(true) then puts the new server in
 * place of the old one, which stops listening at once and answers the requests it has; finish(false)
 * drops the new one. The registry, and so every value counted, stays. */
int manager_metrics_reload_prepare(Manager *m, const char *address);
void manager_metrics_reload_finish(Manager *m, bool commit);
/* "http://127.0.0.1:9899/metrics", or NULL when none is served. */
const char *manager_metrics_url(Manager *m);

/* The observers the manager registers with grpc/, net/, systemd/ and image/ (userdata: the Manager);
 * without a registry they do nothing. */
void manager_metrics_observe_grpc(const char *method, GrpcStatus status, uint64_t usec, void *userdata);
void manager_metrics_observe_cni(const char *command, bool ok, uint64_t usec, void *userdata);
void manager_metrics_observe_systemd(const char *kind, bool ok, uint64_t usec, void *userdata);
void manager_metrics_observe_pull(bool ok, uint64_t bytes, uint64_t usec, void *userdata);
