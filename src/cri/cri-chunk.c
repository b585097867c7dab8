/* Flow-controlled streamed lists: a snapshot of ids sent as a sequence of messages, each made only
 * once the client took the last. */
#include <assert.h>
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
        const CriChunkType *type;
} CriChunker;

/* One message of the objects named by the next k ids that still exist, at most CRI_CHUNK_MAX_BYTES
 * of items (at least one), none when all are gone; says how many ids it used up. */
static int chunk_encode(CriChunker *ch, size_t k, size_t *ret_used) {
        const CriChunkType *t = ch->type;
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(t->response, t->field);
        _cleanup_free_ uint8_t *items = calloc(k + 1, t->item_size);
        _cleanup_free_ ProtobufCMessage **ptrs = calloc(k + 1, sizeof *ptrs);
        _cleanup_free_ ProtobufCMessage *resp = calloc(1, t->response->sizeof_message);
        size_t n = 0, used = 0, bytes = 0;
        int r = 0;

        assert(f && f->label == PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE);
        if (!items || !ptrs || !resp)
                return -ENOMEM;
        for (; used < k; used++) {
                void *item = items + n * t->item_size;
                ProtobufCMessage *msg = item;
                size_t size;

                if (!t->fill(ch->m, ch->ids[ch->pos + used], item))
                        continue; /* removed since the stream began */
                size = protobuf_c_message_get_packed_size(msg) + 8; /* with its tag and length */
                if (n > 0 && bytes + size > CRI_CHUNK_MAX_BYTES) {
                        if (t->done)
                                t->done(item);
                        break;
                }
                bytes += size;
                ptrs[n++] = msg;
        }
        if (n > 0) {
                protobuf_c_message_init(t->response, resp);
                *(size_t *) ((uint8_t *) resp + f->quantifier_offset) = n;
                *(ProtobufCMessage ***) ((uint8_t *) resp + f->offset) = ptrs;
                r = cri_send(ch->call, resp);
        }
        for (size_t i = 0; t->done && i < n; i++)
                t->done(items + i * t->item_size);
        *ret_used = used;
        return r;
}

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
        r = chunk_encode(ch, k, &used);
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

int cri_chunk_stream(GrpcCall *call, Manager *m, char **ids, size_t n, const CriChunkType *type) {
        CriChunker *ch = calloc(1, sizeof *ch);

        if (!ch) {
                strv_free(ids);
                return -ENOMEM;
        }
        *ch = (CriChunker) { .call = grpc_call_ref(call), .m = m, .ids = ids, .n = n, .type = type };
        grpc_call_set_cancel(call, chunker_cancel, ch);
        /* The first message from the loop too: every message takes the same path. */
        grpc_call_when_drained(call, chunker_next, ch);
        return 0;
}
