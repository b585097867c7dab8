/* A growable byte buffer with a read offset, for socket and pipe I/O. */
#include "buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint8_t *buffer_reserve(Buffer *b, size_t n) {
        if (b->data && b->size - b->end >= n)
                return b->data + b->end;

        /* Slide unread bytes to the front before growing. */
        if (b->start > 0) {
                memmove(b->data, b->data + b->start, b->end - b->start);
                b->end -= b->start;
                b->start = 0;
                if (b->size - b->end >= n)
                        return b->data + b->end;
        }

        size_t want = b->end + n, size = b->size ? b->size : 256;
        while (size < want) {
                if (size > SIZE_MAX / 2)
                        return NULL;
                size *= 2;
        }
        uint8_t *p = realloc(b->data, size);
        if (!p)
                return NULL;
        b->data = p;
        b->size = size;
        return b->data + b->end;
}

int buffer_append(Buffer *b, const void *p, size_t n) {
        uint8_t *dst = buffer_reserve(b, n);
        if (!dst)
                return -ENOMEM;
        if (n > 0)
                memcpy(dst, p, n);
        b->end += n;
        return 0;
}

void buffer_consume(Buffer *b, size_t n) {
        b->start += n;
        if (b->start >= b->end)
                b->start = b->end = 0;
}

void buffer_free(Buffer *b) {
        free(b->data);
        *b = (Buffer) {};
}
