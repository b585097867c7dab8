/* Pulling images from OCI distribution (Docker registry v2) endpoints with libcurl's multi
 * interface on the daemon's loop: manifests and indexes, bearer and basic auth, mirrors,
 * digest-verified blobs, layers unpacked in children. Identical pulls in flight share one. */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "error-chain.h"
#include "image-store.h"

typedef struct Puller Puller;
typedef struct PullWaiter PullWaiter;

typedef struct PullAuth {
        const char *username, *password;
        const char *auth;           /* base64 of "username:password" */
        const char *registry_token; /* a bearer token to use as is */
        const char *identity_token; /* an OAuth2 refresh token */
} PullAuth;

/* What one pull may unpack and the free space it must leave ([Images] in rktlet.conf(5)); a 0
 * field is no limit. */
typedef struct PullLimits {
        uint64_t max_layer_size;   /* uncompressed bytes of one layer (its tar stream) */
        uint64_t max_image_size;   /* uncompressed bytes of all of an image's layers */
        uint32_t max_ratio;        /* uncompressed / compressed size of a layer, past 16M */
        uint64_t min_free_bytes;   /* left free on the store's file system, as bytes… */
        uint32_t min_free_percent; /* …or as a percentage of its size */
} PullLimits;

/* error set, with a message that says why (never with credentials), or img on success. The kinds:
 * ERROR_NOT_FOUND (HTTP 404), ERROR_UNAUTHENTICATED (401), ERROR_DENIED (403), ERROR_UNAVAILABLE
 * (the registry cannot be reached), ERROR_CORRUPT (what it sent does not match its digest, or is
 * no valid manifest or config), ERROR_EXHAUSTED (a limit of [Images], or the free space),
 * ERROR_WRONG_STATE (a layer refused: a path out of it, a device…; a host's certs.d directory or the
 * auth file that cannot be used), ERROR_DENIED (a registry of [Registries] Blocked=). */
typedef void (*PullDone)(const Error *error, Image *img, void *userdata);

/* [Registries] in rktlet.conf(5); NULL or "" is none. */
typedef struct PullRegistries {
        const char *insecure;  /* comma-separated hosts spoken to over plain HTTP */
        const char *mirrors;   /* comma-separated "registry=mirror|mirror", tried before the registry */
        const char *blocked;   /* comma-separated hosts never pulled from, nor used as mirrors */
        const char *certs_dir; /* <dir>/<host>/: *.crt CAs, <name>.cert + <name>.key, read at each pull */
        const char *auth_file; /* containers-auth.json, read at each pull that kubelet gave no credentials */
} PullRegistries;

int puller_new(struct ev_loop *loop, ImageStore *store, const PullRegistries *registries, const PullLimits *limits,
               Puller **ret);
Puller *puller_free(Puller *p);
/* New registries and limits (SIGHUP): pulls that start from now on use them; those in flight keep
 * the endpoints they started with. On failure (-ENOMEM) nothing changed. */
int puller_reconfigure(Puller *p, const PullRegistries *registries, const PullLimits *limits);

/* Told of every pull that ended, when its waiters are: whether it succeeded, the bytes it received
 * from registries (manifests, configs, tokens and blobs) and how long it took. */
typedef void (*PullObserve)(bool ok, uint64_t bytes, uint64_t usec, void *userdata);
void puller_set_observer(Puller *p, PullObserve observe, void *userdata);

/* done() is never called from inside image_pull(). -EINVAL with ret_error for a bad reference. */
int image_pull(Puller *p, const char *image, const PullAuth *auth, PullDone done, void *userdata,
               PullWaiter **ret, const char **ret_error);
/* The caller lost interest. The pull goes on for the other waiters; without any, it stops (as
 * containerd's does with its context): transfers and the unpacking child end, and its partial
 * downloads and whatever it brought that nothing else uses are deleted. */
void pull_waiter_cancel(PullWaiter *w);

/* A parameter ("realm", "service", "scope") of a WWW-Authenticate challenge as a 401's handling
 * reads it: a new string, or NULL when it is not there. Public for tests/fuzz/fuzz-www-authenticate. */
char *image_pull_auth_param(const char *challenge, const char *key);
