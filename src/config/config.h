/* rktlet.conf and its drop-ins, overlaid by command-line flags, parsed into one Config. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* A reserve given as bytes or as a percentage of a file system's size (the other is 0). */
typedef struct SpaceReserve {
        uint64_t bytes;
        uint32_t percent;
} SpaceReserve;

/* [Runtime.<name>]: an OCI runtime offered as the RuntimeClass handler <name>. */
typedef struct ConfigRuntime {
        char *name;
        char *path;    /* a name looked up in $PATH, or an absolute path; "" for the handler's name */
        char *root;    /* its --root; "": <StateDirectory>/runc for runc, else <StateDirectory>/runtimes/<name> */
        char *options; /* global options before the command, separated by spaces; "" none */
} ConfigRuntime;

typedef struct Config {
        char *listen;
        char *state_dir;
        char *root_dir;
        bool user_bus;
        int log_level;
        uint64_t shutdown_timeout_usec;
        uint64_t max_message_size;
        uint32_t max_concurrent_streams;
        uint32_t max_connections;
        char *cni_conf_dir;
        char *cni_bin_dirs; /* ':'-separated */
        uint64_t cni_timeout_usec;
        char *cni_conf_template; /* written to the conf dir with the pod CIDR kubelet sets; "" none */
        char *registry_insecure; /* comma-separated hosts spoken to over plain HTTP */
        char *registry_mirrors;  /* comma-separated "registry=mirror|mirror" */
        char *registry_blocked;  /* comma-separated hosts never pulled from */
        char *registry_certs_dir; /* <dir>/<host>/ holds CAs and client certificates; "" none */
        char *registry_auth_file; /* containers-auth.json; "" none */
        char *oci_runtime;       /* runc, crun or a path; "" to detect */
        char *default_runtime;   /* [Containers] DefaultRuntime=: the handler "" means; "" to choose */
        ConfigRuntime *runtimes; /* the [Runtime.<name>] sections, in the order first seen */
        size_t n_runtimes;
        /* [Images]: what one pull may unpack, and the free space it must leave. */
        uint64_t image_max_layer_size;  /* uncompressed bytes of one layer */
        uint64_t image_max_size;        /* uncompressed bytes of an image's layers together */
        uint32_t image_max_ratio;       /* uncompressed / compressed size of a layer */
        SpaceReserve image_min_free;    /* what unpacking leaves free on the store's file system */
        /* [Streaming]: the HTTP server of Exec, Attach and PortForward. */
        char *stream_address;                 /* a numeric IP address; 127.0.0.1 by default */
        uint32_t stream_port;                 /* 0: chosen by the kernel */
        uint32_t stream_max_connections;
        uint64_t stream_creation_timeout_usec; /* the request, then every stream of a session */
        uint64_t stream_idle_timeout_usec;
        char *stream_tls_cert;                /* PEM files; both set: HTTPS (both "" by default) */
        char *stream_tls_key;
        /* [CRI]: the streaming methods. */
        uint32_t stream_chunk_items;  /* items per message of StreamContainers and its twins */
        uint32_t event_queue_length;  /* GetContainerEvents: events a subscriber may leave unread */
        /* [Metrics]: the Prometheus endpoint; "" (the default) serves none. */
        char *metrics_address; /* "127.0.0.1:9899", "[::1]:9899" */
} Config;

/* Told about an unknown section or key; origin is "file:line". */
typedef void (*ConfigWarn)(const char *origin, const char *message, void *userdata);

int config_init(Config *c);
void config_done(Config *c);

/* A RuntimeClass handler name, as Kubernetes allows them: a DNS label (1-63 of a-z, 0-9 and '-', not
 * starting or ending with '-'). */
bool config_runtime_name_is_valid(const char *name);

/* Sets one key from a section, validating it. On a bad value returns -EINVAL and a message. */
int config_set(Config *c, const char *section, const char *key, const char *value, char **ret_error);

/* Reads path (a missing file is fine) and then path.d/ *.conf in lexical order, later files winning.
 * Unknown keys go to warn; a bad value stops with -EINVAL and a message naming file:line. */
int config_load(Config *c, const char *path, ConfigWarn warn, void *userdata, char **ret_error);

/* The effective configuration as a JSON object (for Status verbose). */
int config_to_json(const Config *c, char **ret);
/* The effective configuration as rktlet.conf text, every key in its section (unset strings as
 * comments), in the forms config_load() reads back. -EOPNOTSUPP for a key of a kind it cannot write. */
int config_dump(const Config *c, FILE *f);
