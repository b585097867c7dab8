/* CNI (spec 1.0): the network configuration from the config directory, watched with inotify, and
 * plugin chains (ADD, DEL, CHECK) run as non-blocking children with a timeout. */
#pragma once
#include "error-chain.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct Cni Cni;
typedef struct CniOp CniOp;

typedef struct CniPortMapping {
        const char *protocol; /* "tcp", "udp", "sctp" */
        int host_port, container_port;
        const char *host_ip; /* NULL or "" for all */
} CniPortMapping;

typedef struct CniPod {
        const char *id;    /* CNI_CONTAINERID: the pod id */
        const char *netns; /* CNI_NETNS: path of the pod's network namespace */
        const char *name, *namespace, *uid;
        const CniPortMapping *ports;
        size_t n_ports;
} CniPod;

/* error set on failure (the plugin's own message, or why it could not run). ADD: result is the
 * final plugin's result (JSON) and network the configuration list it was made with (JSON), to be
 * kept for DEL and CHECK. */
typedef void (*CniDone)(const Error *error, const char *result, const char *network, void *userdata);

int cni_new(struct ev_loop *loop, const char *conf_dir, const char *bin_dirs, uint64_t timeout_usec, Cni **ret);
Cni *cni_free(Cni *c);

/* Told of every plugin chain that finished (not of one cancelled): "ADD", "DEL" or "CHECK", whether it
 * succeeded and how long the chain took. */
typedef void (*CniObserve)(const char *command, bool ok, uint64_t usec, void *userdata);
void cni_set_observer(Cni *c, CniObserve observe, void *userdata);

/* Reads the configuration directory again (done by inotify on its own). */
void cni_reload(Cni *c);
/* New plugin directories and time limit (SIGHUP), for the plugins run from now on; then the
 * directory is read again. On failure (-ENOMEM) nothing changed. */
int cni_reconfigure(Cni *c, const char *bin_dirs, uint64_t timeout_usec);
/* True when a configuration and all its plugins exist; otherwise reason/detail say what lacks. */
bool cni_ready(Cni *c, const char **ret_reason, const char **ret_detail);
const char *cni_network_name(Cni *c);

int cni_add(Cni *c, const CniPod *pod, CniDone done, void *userdata, CniOp **ret);
/* network/prev_result: what ADD returned; network NULL: the current configuration. done() may run
 * before these return (then *ret is already stale): clear the pointer kept to the op in done(). */
int cni_del(Cni *c, const CniPod *pod, const char *network, const char *prev_result, CniDone done,
            void *userdata, CniOp **ret);
int cni_check(Cni *c, const CniPod *pod, const char *network, const char *prev_result, CniDone done,
              void *userdata, CniOp **ret);
/* Drops interest; the running plugin is killed and reaped in the background. */
void cni_op_cancel(CniOp *op);

/* The addresses (without prefix length) of a CNI result's "ips": the first IPv4 one first (the
 * pod's IP, as containerd picks it), then the others in the result's order. */
int cni_result_ips(const char *result, char ***ret_ips, size_t *ret_n);

/* With a template ([CNI] ConfTemplate=, "" none) and a pod CIDR (NULL none): writes
 * <conf_dir>/10-rktlet.conflist from the template, {{.PodCIDR}} replaced (cni-template.c). 0 when
 * there is nothing to do; an error with a message naming the file otherwise. */
int cni_render_template(const char *template_path, const char *conf_dir, const char *pod_cidr, Error *error);
