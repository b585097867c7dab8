/* What the CRI handlers share to translate between protobuf-c messages and the model. */
#pragma once

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "error-chain.h"
#include "grpc-server.h"
#include "ctr.h"
#include "pod.h"
#include "strv.h"

/* Ends call with the status error's kind maps to (grpc_status_from_error()) and error_text() as the
 * message: how every failure is answered. */
int cri_finish_error(GrpcCall *call, const Error *error);

/* A NULL-terminated copy of a repeated string field (NULL entries become ""); NULL on OOM. */
char **cri_strv_dup(char **l, size_t n);

/* StrPairs from a map field's entries (key/value strings); true unless out of memory. */
#define CRI_PAIRS_DUP(entries, n, ret_pairs, ret_n)                                          \
        ({                                                                               \
                StrPair *_p = calloc((n) + 1, sizeof(StrPair));                         \
                bool _ok = _p != NULL;                                                   \
                for (size_t _i = 0; _p && _i < (n); _i++) {                              \
                        _p[_i].key = strdup((entries)[_i]->key ?: "");                   \
                        _p[_i].value = strdup((entries)[_i]->value ?: "");               \
                        _ok = _ok && _p[_i].key && _p[_i].value;                         \
                }                                                                        \
                *(ret_pairs) = _p;                                                       \
                *(ret_n) = _p ? (n) : 0;                                                 \
                _ok;                                                                     \
        })

/* A map field's entry array over pairs (pointing into them, nothing copied); free with
 * cri_pairs_out_free(). NULL on OOM. */
#define CRI_PAIRS_OUT(TYPE, INIT, pairs, n)                                                     \
        ({                                                                                      \
                TYPE *_e = calloc((n) + 1, sizeof(TYPE));                                       \
                TYPE **_pe = calloc((n) + 1, sizeof(TYPE *));                                   \
                if (!_e || !_pe) {                                                              \
                        free(_e);                                                               \
                        free(_pe);                                                              \
                        _pe = NULL;                                                             \
                } else {                                                                        \
                        for (size_t _i = 0; _i < (n); _i++) {                                   \
                                _e[_i] = (TYPE) INIT;                                           \
                                _e[_i].key = (pairs)[_i].key;                                   \
                                _e[_i].value = (pairs)[_i].value;                               \
                                _pe[_i] = &_e[_i];                                              \
                        }                                                                       \
                        if ((n) == 0)                                                           \
                                free(_e); /* cri_pairs_out_free() finds it through _pe[0] */   \
                }                                                                               \
                _pe;                                                                            \
        })

void cri_pairs_out_free(void *pe);

/* Whether pairs hold key with value (NULL is ""). */
bool cri_pairs_has(const StrPair *pairs, size_t n, const char *key, const char *value);

/* Whether labels hold every entry of a filter's label selector (key/value strings). */
#define CRI_LABELS_MATCH(labels, n_labels, sel, n_sel)                                               \
        ({                                                                                        \
                bool _m = true;                                                                   \
                for (size_t _i = 0; _m && _i < (n_sel); _i++)                                     \
                        _m = cri_pairs_has((labels), (n_labels), (sel)[_i]->key, (sel)[_i]->value); \
                _m;                                                                               \
        })

/* RunPodSandbox's PodSandboxConfig (and runtime handler) as a PodSpec, unchecked: pod_spec_validate()
 * judges it. -ENOMEM only. Public for tests/fuzz/fuzz-cri-validate. */
int cri_pod_spec_from_config(const Runtime__V1__PodSandboxConfig *c, const char *handler, PodSpec *s);

/* CreateContainer's ContainerConfig as a CtrSpec (cri-ctr-spec.c), checked: ERROR_INVALID_ARGUMENT
 * naming the field for what no container may ask for. The spec is the caller's to free, also on
 * failure. */
int cri_ctr_spec_from_config(const Runtime__V1__ContainerConfig *c, CtrSpec *s, Error *error);

/* --- what a status, a list and an event share ------------------------------------------------------ */

struct Manager;

/* A ContainerStatus as ContainerStatus answers it (cri-container.c); strings point into c (valid
 * while it is). */
typedef struct CriCtrStatus {
        Runtime__V1__ContainerStatus st;
        Runtime__V1__ContainerMetadata md;
        Runtime__V1__ImageSpec image;
        Runtime__V1__ContainerResources resources;
        Runtime__V1__LinuxContainerResources linux_res;
        Runtime__V1__ContainerUser user;
        Runtime__V1__LinuxContainerUser linux_user;
        Runtime__V1__ContainerConfig *config;
} CriCtrStatus;
void cri_ctr_status_fill(struct Manager *m, const Container *c, CriCtrStatus *s);
void cri_ctr_status_done(CriCtrStatus *s);

/* A Container as ListContainers answers it, and its filter. */
typedef struct CriCtrItem {
        Runtime__V1__Container it;
        Runtime__V1__ContainerMetadata md;
        Runtime__V1__ImageSpec image;
} CriCtrItem;
bool cri_ctr_matches(const Container *c, const Runtime__V1__ContainerFilter *f);
void cri_ctr_item_fill(struct Manager *m, const Container *c, CriCtrItem *s);
void cri_ctr_item_done(CriCtrItem *s);

/* A PodSandboxStatus as PodSandboxStatus answers it (not verbose; cri-pod.c). */
typedef struct CriPodStatus {
        Runtime__V1__PodSandboxStatus st;
        Runtime__V1__PodSandboxMetadata md;
        Runtime__V1__PodSandboxNetworkStatus net;
        Runtime__V1__LinuxPodSandboxStatus lx;
        Runtime__V1__Namespace ns;
        Runtime__V1__NamespaceOption nso;
        Runtime__V1__PodIP *extra, **extra_p;
} CriPodStatus;
void cri_pod_status_fill(const Pod *pod, CriPodStatus *s);
void cri_pod_status_done(CriPodStatus *s);

/* A PodSandbox as ListPodSandbox answers it, and its filter. */
typedef struct CriPodItem {
        Runtime__V1__PodSandbox it;
        Runtime__V1__PodSandboxMetadata md;
} CriPodItem;
bool cri_pod_matches(const Pod *p, const Runtime__V1__PodSandboxFilter *f);
void cri_pod_item_fill(const Pod *p, CriPodItem *s);
void cri_pod_item_done(CriPodItem *s);

/* --- flow-controlled lists (cri-chunk.c) ----------------------------------------------------------- */

/* Upper bound of one streamed message's items, in bytes, well under the 16 MiB clients accept. */
#define CRI_CHUNK_MAX_BYTES (4u << 20)

/* What a streamed list is made of: its response message and the repeated field of items in it, and
 * an item struct (which begins with the item's protobuf message) filled from an object's id as the
 * List twin fills it. */
typedef struct CriChunkType {
        const ProtobufCMessageDescriptor *response; /* StreamContainersResponse… */
        const char *field;                          /* its repeated message field: "containers"… */
        size_t item_size;
        /* false when the object is gone */
        bool (*fill)(struct Manager *m, const char *id, void *item);
        void (*done)(void *item); /* NULL: nothing to free */
} CriChunkType;

int cri_chunk_stream(GrpcCall *call, struct Manager *m, char **ids, size_t n, const CriChunkType *type);
