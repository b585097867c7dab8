/* Fuzzes the CRI request validators a RunPodSandbox and a CreateContainer go through: the wire
 * check of strings (cri_check_strings(), as cri-service.c runs it before any handler), protobuf-c's
 * unpacking, and for pods pod_spec_validate() on the PodSpec the request makes. The first byte picks
 * the request; the rest is its bytes.
 *
 * For containers, cri_ctr_spec_from_config() (cri-ctr-spec.c) makes and checks the CtrSpec as
 * CreateContainer does; for pods, cri_pod_spec_from_config() (cri-util.c) makes the PodSpec.
 *
 * A refusal says why (-EINVAL and a message, user strings quoted and bounded); what passes obeys
 * the rules written out here: names that are path components, an absolute log directory without
 * "..", a valid host name, supported namespace modes, sysctls that cannot smuggle a second setting,
 * ports in range and addresses that parse. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "cri-strings.h"
#include "cri-util.h"
#include "ctr.h"
#include "fuzz.h"
#include "pod.h"

static bool is_ip(const char *s) {
        unsigned char buf[16];
        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool name_ok(const char *s) {
        if (!s[0] || strlen(s) > 253 || strchr(s, '/') || strstr(s, "..") || strcmp(s, ".") == 0)
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

/* What a pod spec that passed must be. */
static void check_valid(const PodSpec *s) {
        if (!name_ok(s->name) || !name_ok(s->namespace) || !name_ok(s->uid))
                abort();
        if (s->log_directory[0] && (s->log_directory[0] != '/' || strstr(s->log_directory, "/../") ||
                                    (strlen(s->log_directory) >= 3 &&
                                     strcmp(s->log_directory + strlen(s->log_directory) - 3, "/..") == 0)))
                abort();
        if (strlen(s->hostname) > 64 || strspn(s->hostname, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") !=
                                                strlen(s->hostname))
                abort();
        if ((s->network != POD_NS_POD && s->network != POD_NS_NODE) || (s->ipc != POD_NS_POD && s->ipc != POD_NS_NODE) ||
            (s->pid != POD_NS_POD && s->pid != POD_NS_CONTAINER && s->pid != POD_NS_NODE))
                abort();
        /* a handler name: a DNS label */
        size_t hn = strlen(s->runtime_handler);
        if (hn > 63 || strspn(s->runtime_handler, "abcdefghijklmnopqrstuvwxyz0123456789-") != hn ||
            (hn && (s->runtime_handler[0] == '-' || s->runtime_handler[hn - 1] == '-')))
                abort();
        for (size_t i = 0; i < s->n_sysctls; i++) {
                const char *k = s->sysctls[i].key, *v = s->sysctls[i].value;
                if (!k[0] || strpbrk(k, "/= \n") || strpbrk(v, "+=\n\r"))
                        abort();
        }
        for (size_t i = 0; i < s->n_ports; i++)
                if (s->ports[i].container_port < 1 || s->ports[i].container_port > 65535 || s->ports[i].host_port < 0 ||
                    s->ports[i].host_port > 65535 || !s->ports[i].protocol[0] ||
                    (s->ports[i].host_ip[0] && !is_ip(s->ports[i].host_ip)))
                        abort();
        for (char **d = s->dns_servers; *d; d++)
                if (!is_ip(*d))
                        abort();
        for (char **d = s->dns_searches; *d; d++)
                if (strpbrk(*d, " \t\n"))
                        abort();
}

static void run_pod_sandbox(const uint8_t *data, size_t size) {
        Runtime__V1__RunPodSandboxRequest *req = runtime__v1__run_pod_sandbox_request__unpack(NULL, size, data);
        PodSpec spec;
        Error message = ERROR_INIT;
        int r;

        if (!req)
                return;
        if (!req->config || !req->config->metadata) {
                runtime__v1__run_pod_sandbox_request__free_unpacked(req, NULL);
                return;
        }
        r = cri_pod_spec_from_config(req->config, req->runtime_handler, &spec);
        runtime__v1__run_pod_sandbox_request__free_unpacked(req, NULL);
        if (r < 0) {
                pod_spec_done(&spec);
                return;
        }
        r = pod_spec_validate(&spec, &message);
        if (r < 0) {
                /* Refused with a message of bounded length (user strings are quoted and cut). */
                if (r != -EINVAL || !message.message || !message.message[0] || strlen(message.message) > 2048 ||
                    error_kind(&message) != ERROR_INVALID_ARGUMENT)
                        abort();
        } else {
                if (error_is_set(&message))
                        abort();
                check_valid(&spec);
        }
        error_done(&message);
        pod_spec_done(&spec);
}

/* What a container spec that passed may hold: paths that stay where they belong, a known stop
 * signal, a log path below the pod's log directory. */
static void check_valid_ctr(const CtrSpec *s) {
        for (size_t i = 0; i < s->n_mounts; i++)
                if (s->mounts[i].container_path[0] != '/' || strstr(s->mounts[i].container_path, "/../") ||
                    s->mounts[i].host_path[0] != '/')
                        abort();
        for (size_t i = 0; i < s->n_devices; i++)
                if (s->devices[i].container_path[0] != '/' || s->devices[i].host_path[0] != '/')
                        abort();
        if (s->log_path && (s->log_path[0] == '/' || strncmp(s->log_path, "../", 3) == 0 ||
                            strcmp(s->log_path, "..") == 0 || strstr(s->log_path, "/../")))
                abort();
        if (s->stop_signal < 0 || s->stop_signal >= 65)
                abort();
}

static void create_container(const uint8_t *data, size_t size) {
        Runtime__V1__CreateContainerRequest *req = runtime__v1__create_container_request__unpack(NULL, size, data);
        Error error = ERROR_INIT;
        CtrSpec spec = {};
        int r;

        if (!req)
                return;
        if (req->config) {
                r = cri_ctr_spec_from_config(req->config, &spec, &error);
                if (r < 0) {
                        /* Refused with a message of bounded length that names the field. */
                        if (r != -ENOMEM && (!error.message || !error.message[0] || strlen(error.message) > 2048))
                                abort();
                } else {
                        if (error_is_set(&error))
                                abort();
                        check_valid_ctr(&spec);
                }
        }
        error_done(&error);
        ctr_spec_done(&spec);
        runtime__v1__create_container_request__free_unpacked(req, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const ProtobufCMessageDescriptor *d;
        char why[512];

        if (size < 1)
                return 0;
        d = data[0] % 2 == 0 ? &runtime__v1__run_pod_sandbox_request__descriptor
                             : &runtime__v1__create_container_request__descriptor;
        why[0] = '\0';
        if (cri_check_strings(d, data + 1, size - 1, why, sizeof why) < 0) {
                if (!why[0] || !strstr(why, " holds "))
                        abort();
                return 0;
        }
        if (data[0] % 2 == 0)
                run_pod_sandbox(data + 1, size - 1);
        else
                create_container(data + 1, size - 1);
        return 0;
}
