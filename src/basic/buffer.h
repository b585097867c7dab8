/* A growable byte buffer with a read offset, for socket and pipe I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct Buffer {
        uint8_t *data;
        size_t size;  /* allocated */
        size_t start; /* first unread byte */
        size_t end;   /* one past the last byte */
} Buffer;

static inline size_t buffer_len(const Buffer *b) {
        return b->end - b->start;
}
static inline const uint8_t *buffer_peek(const Buffer *b) {
        /* Never NULL, even before the first allocation: callers pass it on with a length of 0. */
        return b->data ? b->data + b->start : (const uint8_t *) "";
}

/* Returns a pointer to n writable bytes at the end; commit them with buffer_commit(). NULL on OOM. */
uint8_t *buffer_reserve(Buffer *b, size_t n);
static inline void buffer_commit(Buffer *b, size_t n) {
        b->end += n;
}
int buffer_append(Buffer *b, const void *p, size_t n);
void buffer_consume(Buffer *b, size_t n);
void buffer_free(Buffer *b);
