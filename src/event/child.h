/* Child processes watched through pidfds in the loop: output captured, optional stdin, timeout. */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct Child Child;

/* In a child's setup function: says on stderr what failed ("<format>: <strerror(error)>"), which
 * the parent reads in ChildResult.err, and returns -error. */
int child_fail(int error, const char *format, ...) __attribute__((format(printf, 2, 3)));

typedef struct ChildResult {
        pid_t pid;
        int exit_code;  /* the exit status when exited normally, else -1 */
        int signal;     /* the killing signal, else 0 */
        bool timed_out; /* killed by us after the timeout */
        const char *out; /* stdout, NUL-terminated, at most max_output bytes kept */
        size_t out_len;
        const char *err; /* stderr, likewise */
        size_t err_len;
        bool out_truncated, err_truncated;
} ChildResult;

/* Called once when the child ended (and its output was drained). The Child is freed right after. */
typedef void (*ChildDone)(Child *child, const ChildResult *result, void *userdata);

typedef struct ChildSpec {
        char *const *argv;   /* argv[0] is looked up in $PATH when it holds no '/'; NULL: no exec, the
                              * child runs setup() and exits 0, or 1 when it fails */
        char *const *envp;   /* NULL: inherit */
        const char *cwd;     /* NULL: inherit */
        const void *stdin_data; /* NULL: /dev/null */
        size_t stdin_len;
        uint64_t timeout_usec;  /* 0: none; past it the child gets SIGKILL */
        size_t max_output;      /* per stream; 0: 1 MiB */
        /* NULL: stdin as above, stdout and stderr captured. Else the three fds the child gets as
         * its stdin, stdout and stderr (the caller keeps them; nothing is captured). */
        const int *stdio;
        /* Runs in the child just before exec (namespaces, mounts…); a negative errno aborts with 127. */
        int (*setup)(void *userdata);
        void *setup_userdata;
} ChildSpec;

int child_spawn(struct ev_loop *loop, const ChildSpec *spec, ChildDone done, void *userdata, Child **ret);
pid_t child_pid(const Child *c);
int child_kill(Child *c, int sig);
/* The caller loses interest: no callback; the child is killed and reaped in the background. */
void child_abandon(Child *c);
/* At exit, before the loop goes: frees the abandoned children not reaped yet. */
void child_free_abandoned(void);
/* Children still running (abandoned ones included). */
unsigned child_count(void);

/* Orphans. With child_orphans_watch() the daemon is the child subreaper: a process whose parent,
 * a child of the daemon, exits before it (a detached `runc exec`'s process) becomes the daemon's
 * child. child_adopt() watches one like a spawned child; on SIGCHLD the others are reaped, unless
 * held: between a detached runtime's exit and the adoption of what it started, nothing may reap
 * it. */
int child_orphans_watch(struct ev_loop *loop);
void child_orphans_unwatch(void);
void child_orphans_hold(void);
void child_orphans_release(void);
/* Watches pid, which must be the daemon's child, through a pidfd, reading out_fd and err_fd
 * (taken over; -1: none) as a spawned child's output, at most max_total bytes of both together
 * (0: max per stream as child_spawn()'s default). -ECHILD when pid is not the daemon's child. */
int child_adopt(struct ev_loop *loop, pid_t pid, int out_fd, int err_fd, size_t max_total, ChildDone done,
                void *userdata, Child **ret);
