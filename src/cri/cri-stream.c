/* Exec, Attach and PortForward: the request judged at the call, answered with a streaming-server
 * URL; the work (an interactive exec, an attachment to the container's stdio, a connection in the
 * pod's network namespace) when the client comes. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.pb-c.h"
#include "cri-call.h"
#include "cri-service.h"
#include "cri-util.h"
#include "ctr.h"
#include "error-chain.h"
#include "fd-util.h"
#include "fileio.h"
#include "grpc-status.h"
#include "log.h"
#include "manager.h"
#include "quote.h"
#include "stream-server.h"
#include "strv.h"

/* An attach client may have this much output queued (beyond what its socket took); past it, it is
 * dropped, so that a client that does not read costs a bounded amount of memory and slows nobody. */
#define ATTACH_MAX_QUEUE (1024u * 1024)

typedef struct StreamJob {
        Manager *m;
        StreamKind kind;
        char id[65]; /* the container's (exec, attach), the pod's (port-forward) */
        char **cmd;
        bool in, tty;
        bool stdin_once; /* attach: the container's */
        CtrExec *exec;
        CtrAttach *attach;
        StreamConn *conn;
} StreamJob;

static void job_free(void *data) {
        StreamJob *j = data;

        if (!j)
                return;
        if (j->exec)
                ctr_exec_cancel(j->exec);
        ctr_attach_free(j->attach);
        strv_free(j->cmd);
        free(j);
}

static void job_started(const CtrExecIo *io, void *userdata) {
        StreamJob *j = userdata;
        stream_conn_set_io(j->conn, io->in_fd, io->out_fd, io->err_fd, io->pty_fd);
}

static void job_done(const Error *error, const CtrExecResult *res, void *userdata) {
        StreamJob *j = userdata;

        j->exec = NULL; /* freed after this */
        stream_conn_exit(j->conn, res ? res->exit_code : -1, error ? error_text(error) : NULL);
}

/* --- attach: the container's output as the log writer reads it, the client's stdin to it --------- */

static void attach_output(CriStream stream, const void *data, size_t len, void *userdata) {
        StreamJob *j = userdata;
        size_t queued = stream_conn_queued(j->conn);
        int r;

        if (queued + len > ATTACH_MAX_QUEUE) {
                log_warning("container %s: an attached client reads too slowly (%zu bytes queued for it); dropping it.",
                            j->id, queued);
                stream_conn_close(j->conn); /* frees j */
                return;
        }
        r = stream_conn_send(j->conn, stream == CRI_STDERR, data, len);
        if (r == -ENOBUFS || r == -ENOMEM) {
                log_warning_errno(r, "container %s: cannot queue output for an attached client, dropping it: %m", j->id);
                stream_conn_close(j->conn);
        }
}

static void attach_ended(void *userdata) {
        StreamJob *j = userdata;
        /* As containerd's and CRI-O's: a plain end (Success), whatever the exit code; kubectl reads
         * that from the pod's status. */
        stream_conn_exit(j->conn, 0, NULL);
}

static void attach_stdin_gone(void *userdata) {
        StreamJob *j = userdata;
        stream_conn_close_stdin(j->conn);
}

static const CtrAttachOps attach_ops = {
        .output = attach_output,
        .ended = attach_ended,
        .stdin_closed = attach_stdin_gone,
};

static int attach_start(StreamJob *j, Container *c, Error *error) {
        int in = -1, r;

        if (c->state != CTR_RUNNING)
                return error_set(error, ERROR_WRONG_STATE, 0, "container %s is not running", c->id);
        r = ctr_attach(c, &attach_ops, j, &in, &j->attach, error);
        if (r < 0)
                return r;
        if (!j->in)
                in = safe_close(in);
        else if (in < 0) {
                /* A container without stdin: what the client sends is dropped (containerd's way). */
                in = open("/dev/null", O_WRONLY | O_CLOEXEC | O_NOCTTY);
        }
        stream_conn_set_io(j->conn, in, -1, -1, -1);
        return 0;
}

/* The client's stdin ended. stdin_once (without a tty, as containerd and docker have it): the
 * container's stdin is closed for good, and the output goes on until it exits. Otherwise the
 * container's stdin stays open and this client is detached. */
static void job_stdin_closed(StreamConn *conn, void *data) {
        StreamJob *j = data;

        if (j->kind != STREAM_ATTACH)
                return;
        if (j->stdin_once && !j->tty)
                ctr_attach_close_stdin(j->attach);
        else
                stream_conn_exit(conn, 0, NULL);
}

static void job_resize(StreamConn *conn, void *data, unsigned short cols, unsigned short rows) {
        StreamJob *j = data;

        if (j->kind == STREAM_ATTACH)
                (void) ctr_attach_resize(j->attach, cols, rows);
}

static int job_start(StreamConn *conn, void *data, Error *error) {
        StreamJob *j = data;
        Container *c = ctr_find(j->m->containers, j->id);

        j->conn = conn;
        if (!c)
                return error_set(error, ERROR_NOT_FOUND, ENOENT, "the container is gone");
        if (j->kind == STREAM_ATTACH)
                return attach_start(j, c, error);
        return ctr_exec_interactive(c, j->cmd, j->in, j->tty, job_started, job_done, j, &j->exec, error);
}

static void job_stop(StreamConn *conn, void *data) {
        StreamJob *j = data;

        if (j->exec) {
                ctr_exec_cancel(j->exec);
                j->exec = NULL;
        }
        j->attach = ctr_attach_free(j->attach);
}

/* A socket in the pod's network namespace (setns around socket() only), connecting to
 * 127.0.0.1:port without blocking. */
static int job_connect(void *data, uint16_t port, int *ret_fd, Error *error) {
        StreamJob *j = data;
        Pod *pod = pod_find(j->m->pods, j->id);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd, r;

        if (!pod || pod_state(pod) != POD_READY)
                return error_set(error, ERROR_WRONG_STATE, ENOENT, "the pod is not ready");
        if (pod->spec.network == POD_NS_NODE)
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        else {
                _cleanup_free_ char *path = pod_ns_path(pod, "net");
                int ns = path ? open(path, O_RDONLY | O_CLOEXEC) : -1, self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
                if (ns < 0 || self < 0 || setns(ns, CLONE_NEWNET) < 0) {
                        r = -errno;
                        safe_close(ns);
                        safe_close(self);
                        return error_errno(error, r ?: -EIO, "cannot enter the pod's network namespace");
                }
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                r = -errno;
                if (setns(self, CLONE_NEWNET) < 0) {
                        /* The daemon cannot live in the pod's namespace: nothing sane is left to do. */
                        log_error_errno(errno, "Failed to return to the daemon's network namespace: %m");
                        abort();
                }
                safe_close(ns);
                safe_close(self);
                if (fd < 0)
                        return error_errno(error, r, "socket() in the pod's network namespace");
        }
        if (fd < 0)
                return error_errno(error, errno, "socket()");
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                r = -errno;
                close(fd);
                return error_errno(error, r, "dial tcp4 127.0.0.1:%u: connect", (unsigned) port);
        }
        *ret_fd = fd;
        return 0;
}

static const StreamHandler handler = {
        .start = job_start,
        .stop = job_stop,
        .connect = job_connect,
        .free_data = job_free,
        .stdin_closed = job_stdin_closed,
        .resize = job_resize,
};

int cri_stream_server_new(Manager *m, StreamServer **ret) {
        _cleanup_free_ char *cert = NULL, *key = NULL;
        const char *cert_path = m->config.stream_tls_cert, *key_path = m->config.stream_tls_key;
        int r;

        if (!!cert_path[0] != !!key_path[0])
                return log_error_errno(-EINVAL, "[Streaming] TLSCertificate= and TLSKey= go together: set both or neither.");
        if (cert_path[0]) {
                r = read_file(cert_path, 1024 * 1024, &cert, NULL);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the streaming certificate %s: %m", cert_path);
                r = read_file(key_path, 1024 * 1024, &key, NULL);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the streaming key %s: %m", key_path);
        }
        StreamServerConfig sc = {
                .address = m->config.stream_address,
                .port = (uint16_t) m->config.stream_port,
                .max_connections = m->config.stream_max_connections,
                .max_header_size = 16 * 1024,
                .creation_timeout_usec = m->config.stream_creation_timeout_usec,
                .idle_timeout_usec = m->config.stream_idle_timeout_usec,
                .tls_cert_pem = cert,
                .tls_key_pem = key,
        };
        r = stream_server_new(m->loop, &sc, &handler, ret);
        if (key)
                explicit_bzero(key, strlen(key));
        return r;
}

static int register_job(GrpcCall *call, Manager *m, StreamJob *j, const StreamRequest *proto, char **ret_url) {
        StreamRequest req = *proto;
        int r;

        req.data = j;
        if (!m->streaming) {
                job_free(j);
                return grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "the streaming server is not running");
        }
        r = stream_server_add(m->streaming, &req, ret_url);
        if (r < 0) {
                job_free(j);
                if (r == -EBUSY)
                        return grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                                "maximum number of pending streaming requests reached");
                return grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        }
        return 0;
}

static int find_running(GrpcCall *call, Manager *m, const char *id, Container **ret) {
        int r;
        Container *c = cri_find_container(call, m->containers, id, false, &r);

        if (!c)
                return r;
        if (c->state != CTR_RUNNING || c->removing)
                return grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION, "container %s is not running (%s)", c->id,
                                        c->removing ? "being removed" : ctr_state_to_string(ctr_reported_state(c)));
        *ret = c;
        return 1;
}

static int check_streams(GrpcCall *call, bool in, bool out, bool err, bool tty) {
        if (!in && !out && !err)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "one of stdin, stdout and stderr must be set");
        if (tty && err)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "tty and stderr cannot both be set");
        return 1;
}

int cri_exec(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ExecRequest *req = runtime__v1__exec_request__unpack(NULL, len, msg);
        Runtime__V1__ExecResponse resp = RUNTIME__V1__EXEC_RESPONSE__INIT;
        _cleanup_free_ char *url = NULL;
        Container *c = NULL;
        StreamJob *j;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ExecRequest does not decode");
        if ((r = find_running(call, m, req->container_id, &c)) <= 0 ||
            (r = check_streams(call, req->stdin, req->stdout, req->stderr, req->tty)) <= 0)
                goto out;
        if (req->n_cmd == 0 || !req->cmd[0][0]) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "cmd: no command given");
                goto out;
        }
        j = calloc(1, sizeof *j);
        if (!j || !(j->cmd = cri_strv_dup(req->cmd, req->n_cmd))) {
                free(j);
                r = grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        j->m = m;
        j->kind = STREAM_EXEC;
        strcpy(j->id, c->id);
        j->in = req->stdin;
        j->tty = req->tty;
        StreamRequest sr = { .kind = STREAM_EXEC, .in = req->stdin, .out = req->stdout, .err = req->stderr, .tty = req->tty };
        r = register_job(call, m, j, &sr, &url);
        if (r < 0 || !url)
                goto out;
        log_debug("container %s: exec %s%s: %s", c->id, QUOTE(req->cmd[0]), req->tty ? " (tty)" : "", url);
        resp.url = url;
        r = cri_reply(call, &resp.base);
out:
        runtime__v1__exec_request__free_unpacked(req, NULL);
        return r;
}

int cri_attach(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__AttachRequest *req = runtime__v1__attach_request__unpack(NULL, len, msg);
        Runtime__V1__AttachResponse resp = RUNTIME__V1__ATTACH_RESPONSE__INIT;
        _cleanup_free_ char *url = NULL;
        Container *c = NULL;
        StreamJob *j;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "AttachRequest does not decode");
        if ((r = find_running(call, m, req->container_id, &c)) <= 0 ||
            (r = check_streams(call, req->stdin, req->stdout, req->stderr, req->tty)) <= 0)
                goto out;
        /* containerd goes by the container's tty whatever the request says; a client that asks for
         * the other kind gets streams that do not match what it reads, so it is told instead. */
        if (req->tty != c->tty) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                                     "tty: container %s was created %s a tty; attach with tty %s", c->id,
                                     c->tty ? "with" : "without", c->tty ? "set" : "unset");
                goto out;
        }
        if (!c->io) {
                r = grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION,
                                     "container %s: its output was lost when rktlet restarted without systemd's fd store",
                                     c->id);
                goto out;
        }
        j = calloc(1, sizeof *j);
        if (!j) {
                r = grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        j->m = m;
        j->kind = STREAM_ATTACH;
        strcpy(j->id, c->id);
        j->in = req->stdin;
        j->tty = c->tty;
        j->stdin_once = c->stdin_once;
        StreamRequest sr = { .kind = STREAM_ATTACH, .in = req->stdin, .out = req->stdout, .err = req->stderr, .tty = req->tty };
        r = register_job(call, m, j, &sr, &url);
        if (r < 0 || !url)
                goto out;
        log_debug("container %s: attach%s%s: %s", c->id, req->stdin ? " (stdin)" : "", req->tty ? " (tty)" : "", url);
        resp.url = url;
        r = cri_reply(call, &resp.base);
out:
        runtime__v1__attach_request__free_unpacked(req, NULL);
        return r;
}

int cri_port_forward(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__PortForwardRequest *req = runtime__v1__port_forward_request__unpack(NULL, len, msg);
        Runtime__V1__PortForwardResponse resp = RUNTIME__V1__PORT_FORWARD_RESPONSE__INIT;
        _cleanup_free_ char *url = NULL;
        Pod *pod = NULL;
        StreamJob *j;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "PortForwardRequest does not decode");
        pod = cri_find_pod(call, m->pods, req->pod_sandbox_id, false, &r);
        if (!pod)
                goto out;
        if (pod_state(pod) != POD_READY) {
                r = grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION, "pod %s is not ready (%s)", pod->id,
                                     pod_state_to_string(pod_state(pod)));
                goto out;
        }
        for (size_t i = 0; i < req->n_port; i++)
                if (req->port[i] <= 0 || req->port[i] > 65535) {
                        r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "port %i is not a TCP port",
                                             (int) req->port[i]);
                        goto out;
                }
        j = calloc(1, sizeof *j);
        if (!j) {
                r = grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        j->m = m;
        j->kind = STREAM_PORTFORWARD;
        strcpy(j->id, pod->id);
        StreamRequest sr = { .kind = STREAM_PORTFORWARD };
        r = register_job(call, m, j, &sr, &url);
        if (r < 0 || !url)
                goto out;
        resp.url = url;
        r = cri_reply(call, &resp.base);
out:
        runtime__v1__port_forward_request__free_unpacked(req, NULL);
        return r;
}
