/* Fuzzes the wire check of request strings (src/cri/cri-strings.c) on every CRI request type: the
 * first byte picks the method, the rest is its request's bytes. */
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "cri-strings.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const ProtobufCServiceDescriptor *services[] = {
                &runtime__v1__runtime_service__descriptor,
                &runtime__v1__image_service__descriptor,
        };
        size_t n = services[0]->n_methods + services[1]->n_methods;
        char why[512];

        if (size < 1)
                return 0;
        size_t k = data[0] % n;
        const ProtobufCMethodDescriptor *m = k < services[0]->n_methods ? &services[0]->methods[k]
                                                                          : &services[1]->methods[k - services[0]->n_methods];
        why[0] = '\0';
        if (cri_check_strings(m->input, data + 1, size - 1, why, sizeof why) < 0) {
                /* A refusal names the field. */
                if (!why[0] || !memchr(why, '\0', sizeof why) || !strstr(why, " holds "))
                        abort();
                return 0;
        }
        /* What passes may still not decode; what decodes is unpacked and freed as a handler would. */
        ProtobufCMessage *msg = protobuf_c_message_unpack(m->input, NULL, size - 1, data + 1);
        if (msg)
                protobuf_c_message_free_unpacked(msg, NULL);
        return 0;
}
