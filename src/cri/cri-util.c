/* What the CRI handlers share to translate between protobuf-c messages and the model. */
#include "cri-util.h"

#include <assert.h>

#include "grpc-status.h"

int cri_finish_error(GrpcCall *call, const Error *error) {
        assert(call);
        assert(error_is_set(error));
        return grpc_call_finish(call, grpc_status_from_error(error), "%s", error_text(error));
}

char **cri_strv_dup(char **l, size_t n) {
        char **out = calloc(n + 1, sizeof(char *));

        for (size_t i = 0; out && i < n; i++)
                if (!(out[i] = strdup(l[i] ?: ""))) {
                        strv_free(out);
                        return NULL;
                }
        return out;
}

void cri_pairs_out_free(void *pe) {
        if (pe)
                free(((void **) pe)[0]);
        free(pe);
}

bool cri_pairs_has(const StrPair *pairs, size_t n, const char *key, const char *value) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(pairs[i].key, key ?: "") == 0 && strcmp(pairs[i].value, value ?: "") == 0)
                        return true;
        return false;
}
