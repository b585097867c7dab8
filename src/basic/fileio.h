/* Whole files: read at once, written atomically (a temp file renamed over the old one). */
#pragma once

#include <stddef.h>

/* Writes data to path atomically: a temp file in the same directory, fsync, rename, fsync of the
 * directory. */
int write_file_atomic(const char *path, const char *data, size_t len, unsigned mode);
/* The same without the fsyncs: no crash of the daemon can lose it or leave it half written, a
 * power loss can (fs-sync.h makes it durable soon after, off the loop). */
int write_file_replace(const char *path, const char *data, size_t len, unsigned mode);
/* Reads a whole file (at most max bytes) into a NUL-terminated string. */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* read_file() of a regular file only, for paths an operator names (on the daemon's loop): a FIFO
 * or a device there is -EINVAL at once, without waiting for a writer or reading a device. */
int read_regular_file(const char *path, size_t max, char **ret, size_t *ret_len);
