/* The Manager: owns the loop, the configuration, the bus, the gRPC server and every table. */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "bus-ev.h"
#include "config.h"
#include "cni.h"
#include "ctr.h"
#include "grpc-server.h"
#include "image-pull.h"
#include "image-store.h"
#include "manager-metrics.h"
#include "pod.h"
#include "stream-server.h"
#include "systemd-manager.h"
#include "systemd-unit.h"

typedef struct Manager {
        struct ev_loop *loop;
        Config config;
        char *config_json;

        sd_bus *bus; /* NULL while there is none: reconnect_timer is then running */
        BusEv bus_ev;
        char *bus_error;       /* why there is no bus, for Status */
        char *systemd_version; /* last Version the manager answered */
        sd_bus_slot *version_slot;
        sd_bus_slot *cgroup_slot;
        char *systemd_cgroup; /* the manager's ControlGroup: where its units' cgroups are */
        /* Unit jobs and watches; made with the first bus, it lives on across the next ones: what was
         * in flight when a bus dropped is checked on the next (see systemd-unit.h). */
        SystemdClient *systemd;
        unsigned bus_connections; /* how many buses were opened */
        ev_timer reconnect_timer;
        uint64_t reconnect_usec; /* the next delay: doubles from 50 ms to 2 s, 0 again once systemd answers */

        Cni *cni;
        PodTable *pods;
        ImageStore *images;
        Puller *puller;
        char *pod_cidr; /* from UpdateRuntimeConfig */
        char *pod_init; /* path of rktlet-pod-init */
        CtrTable *containers;
        CtrStoredFds stored; /* what systemd's fd store gave back at start (log pipes) */

        GrpcServer *server;
        bool socket_activated;
        StreamServer *streaming; /* Exec, Attach and PortForward (cri-stream.c) */
        struct CriEvents *events; /* GetContainerEvents' subscribers (cri-events.c) */
        ManagerMetrics *metrics; /* the registry and the [Metrics] Address= endpoint (manager-metrics.c) */

        ev_signal sigterm, sigint, sighup;
        /* Reads the configuration again as start-up did (files, drop-ins, command line), for SIGHUP;
         * NULL: no reload. Logs its own failures. */
        int (*load_config)(Config *ret, void *userdata);
        void *load_config_userdata;
        ev_timer recovery_timer; /* serving waits for systemd's word on the running containers */
        ev_timer shutdown_timer;
        bool stopping;

        struct {
                bool enabled; /* --teardown: remove every pod and container, then exit */
                bool began;
                bool systemd_ready; /* systemd has owned its name on a bus, and we are subscribed */
                unsigned total, pending, failed;
                ev_timer timer;
        } teardown;
} Manager;

/* Takes over config. */
int manager_new(Config *config, Manager **ret);
Manager *manager_free(Manager *m);
/* Connects the bus (failure is not fatal) and starts listening. */
int manager_start(Manager *m);
/* Runs the loop; a teardown that failed gives -EIO. */
int manager_run(Manager *m);
/* --teardown: begins once systemd is on the bus and has said what became of the containers. */
void manager_teardown_maybe_begin(Manager *m);

/* The bus; NULL with m->bus_error set while there is none (a timer connects again). */
sd_bus *manager_get_bus(Manager *m);
/* Persists what UpdateRuntimeConfig set (<root>/runtime.json). */
void manager_save_runtime_state(Manager *m);
/* The unit-job client, while it has a bus; NULL likewise. */
SystemdClient *manager_get_systemd(Manager *m);
