/* Fuzzes the small gRPC parsers: message framing, grpc-timeout and grpc-message percent-decoding. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "grpc-frame.h"
#include "grpc-status.h"
#include "grpc-timeout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *msg;
        size_t msg_len;
        bool compressed;
        uint32_t len;
        uint64_t usec;
        char *s, *e;

        (void) grpc_frame_header_read(data, size, &compressed, &len);
        (void) grpc_frame_decode_unary(data, size, &compressed, &msg, &msg_len);
        (void) grpc_timeout_parse((const char *) data, size, &usec);

        /* decode(encode(x)) == x for any NUL-free string; decode of anything must not crash. */
        free(grpc_percent_decode((const char *) data, size));
        s = strndup((const char *) data, size);
        if (!s)
                return 0;
        e = grpc_percent_encode(s);
        if (e) {
                char *d = grpc_percent_decode(e, strlen(e));
                if (d && strcmp(d, s) != 0)
                        abort();
                free(d);
        }
        free(e);
        free(s);
        return 0;
}
