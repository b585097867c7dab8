/* Flow-controlled streamed lists: a snapshot of ids sent as a sequence of messages, each made only
 * once the client took the last. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cri-service.h"
#include "cri-util.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "strv.h"

typedef struct CriChunker {
        GrpcCall *call;
        Manager *m;
        char **ids;
        size_t n, pos;
        CriChunkEncode encode;
} CriChunker;

static void chunker_free(CriChunker *ch) {
        for (size_t i = ch->pos; i < ch->n; i++)
                free(ch->ids[i]);
        free(ch->ids);
        grpc_call_set_cancel(ch->call, NULL, NULL);
        grpc_call_when_drained(ch->call, NULL, NULL);
        grpc_call_unref(ch->call);
        free(ch);
}

static void chunker_cancel(GrpcCall *call, void *userdata) {
        chunker_free(userdata);
}

/* The last message was taken (or none was sent yet): the next one, or the end. */
static void chunker_next(GrpcCall *call, void *userdata) {
        CriChunker *ch = userdata;
        size_t k, used = 0;
        int r;

        if (ch->pos >= ch->n) {
                (void) grpc_call_finish(call, GRPC_STATUS_OK, NULL);
                chunker_free(ch);
                return;
        }
        k = MIN((size_t) ch->m->config.stream_chunk_items, ch->n - ch->pos);
        r = ch->encode(call, ch->m, ch->ids + ch->pos, k, CRI_CHUNK_MAX_BYTES, &used);
        if (r < 0) {
                (void) grpc_call_finish_errno(call, r, "%s: %s", grpc_call_path(call), strerror(-r));
                chunker_free(ch);
                return;
        }
        used = MIN(MAX(used, (size_t) 1), k); /* an encoder always makes progress */
        for (size_t i = ch->pos; i < ch->pos + used; i++) {
                free(ch->ids[i]);
                ch->ids[i] = NULL;
        }
        ch->pos += used;
        grpc_call_when_drained(call, chunker_next, ch);
}

int cri_chunk_stream(GrpcCall *call, Manager *m, char **ids, size_t n, CriChunkEncode encode) {
        CriChunker *ch = calloc(1, sizeof *ch);

        if (!ch) {
                strv_free(ids);
                return -ENOMEM;
        }
        *ch = (CriChunker) { .call = grpc_call_ref(call), .m = m, .ids = ids, .n = n, .encode = encode };
        grpc_call_set_cancel(call, chunker_cancel, ch);
        /* The first message from the loop too: every message takes the same path. */
        grpc_call_when_drained(call, chunker_next, ch);
        return 0;
}
