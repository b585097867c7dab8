/* The CRI container log format kubelet reads: "<RFC3339Nano time> <stdout|stderr> <P|F> <text>\n",
 * one record per line of output, a line longer than the maximum split into P(artial) records and
 * ended by an F(ull) one. A container's two pipes feed one file, reopened after kubelet rotates it,
 * always beneath the pod's log directory and through no symlink. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef enum CriStream {
        CRI_STDOUT,
        CRI_STDERR,
        _CRI_STREAM_MAX,
} CriStream;

typedef struct CriLog CriLog;

/* The file path beneath the directory dir (the pod's log directory, which is opened as any path is,
 * symlinks and all). path is relative to dir and resolved beneath it without following any
 * symlink: the directories on the way are made where missing (0755), the file is created (0640)
 * or appended to. -ELOOP when path holds a symlink anywhere, -EXDEV when it leads out of dir,
 * -EINVAL when the file is not a regular one. max_line: the longest text in one record (0: 16 KiB,
 * containerd's default). */
int cri_log_open(const char *dir, const char *path, size_t max_line, CriLog **ret);
CriLog *cri_log_free(CriLog *l);
/* ReopenContainerLog: kubelet renamed the file; write to a new one at the same path, opened as
 * cri_log_open() opens it. On failure the old file is kept and written on. */
int cri_log_reopen(CriLog *l);
/* Bytes read from a stream's pipe: complete lines are written now, the rest waits for more. */
int cri_log_feed(CriLog *l, CriStream s, const void *data, size_t len);
/* Bytes in a stream's pipe, pipe_fd: data is a copy of its first len bytes (taken by tee()). Each
 * record's text is moved from the pipe into the file by splice(), so that nothing read is lost or
 * written twice when the daemon is killed; a line not ended yet goes out as a P record at once.
 * *ret_consumed: the bytes that left the pipe (all len unless an error is returned). */
int cri_log_splice(CriLog *l, CriStream s, int pipe_fd, const void *data, size_t len, size_t *ret_consumed);
/* What cri_log_feed() holds of a line is written as a full line (the daemon stops: the bytes are
 * out of the pipe, the next daemon will not see them). */
int cri_log_flush(CriLog *l, CriStream s);
/* The stream ended: what is left is written as a last full line, and a line left open by P
 * records is ended. */
int cri_log_end(CriLog *l, CriStream s);

/* Formats t (ns since the epoch, UTC) as Go's RFC3339Nano does; buf must hold 36 bytes. */
size_t cri_log_timestamp(uint64_t ns, char *buf);
